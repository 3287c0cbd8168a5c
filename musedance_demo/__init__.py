"""The main job (`python -m musedance_demo`): the sample dancer, or your image, dancing to your music with the
default model; and the synthetic sample it ships with."""
