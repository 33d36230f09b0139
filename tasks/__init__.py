"""Task plug-ins. Importing this package registers the built-in tasks."""

from tasks import depth, segmentation, selfsup_depth  # noqa: F401
