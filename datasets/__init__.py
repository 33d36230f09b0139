"""Dataset plug-ins: synthetic rooms, video sequences, NYU-Depth-v2 and image folders. Each is
declared as an entry point in the group ``dense.datasets`` (pyproject.toml), as a third-party
dataset is."""
