"""The subject's foreground mask from any source (a mask, alpha, DensePose, automatic segmentation) and fitting
images and masks to the generation size."""
