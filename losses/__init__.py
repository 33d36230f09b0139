"""Loss functions and modules that depend only on torch (and einops): depth, photometric,
boundary and multi-task weighting. Nothing here imports the rest of the project."""
