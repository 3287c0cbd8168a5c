"""Two-stage MuseDance training (appearance stage, then music/beat/motion stage).

Arrives in a later issue; it will call the same `musedance_core` functions as the sampler for
frame timing, beats, music tokens and masks.
"""
