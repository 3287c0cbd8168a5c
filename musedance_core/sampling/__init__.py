"""Making a video: the conditioning rules shared with the trainer, the guided denoiser and the clip-by-clip sampler."""
