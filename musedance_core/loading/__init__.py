"""Weights from local files: MuseDance checkpoints, SD1.5 single files, AnimateDiff motion modules, and the
loader that builds a pipeline from them. Importing this package loads no torch (`formats` is read by the nodes at
start-up)."""
