"""dense: multi-task dense prediction with InverseForm as a structure loss."""

__version__ = "0.1.0"
