"""Loss functions: depth losses, multi-task weighting (InverseForm and boundaries to come)."""
