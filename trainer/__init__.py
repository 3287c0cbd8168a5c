"""Two-stage MuseDance training on Hugging Face Accelerate (run from the checkout; see the README's "Training").

    python -m trainer.prepare ...   clips -> prepared shards (trainer/prepare.py, read by trainer/data.py)
    python -m trainer.train ...     stage 1 or 2 (trainer/train.py, losses and sampling in trainer/stages.py)

It calls the same `musedance_core` functions as the sampler for frame timing, beats, music tokens,
masks and the reference path.
"""
