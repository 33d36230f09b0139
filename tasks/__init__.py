"""Task plug-ins: segmentation, supervised and self-supervised depth. Each is declared as an
entry point in the group ``dense.tasks`` (pyproject.toml), exactly as a third-party task is."""
