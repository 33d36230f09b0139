"""Dataset plug-ins. Importing this package registers the built-in datasets."""

from datasets import sequences, synthetic  # noqa: F401
