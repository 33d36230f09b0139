"""Dataset plug-ins. Importing this package registers the built-in datasets."""

from datasets import folder, nyuv2, sequences, synthetic  # noqa: F401
