"""Caches of dataset samples (``data.cache``), for data that is slow to make: on disk
(:class:`CachedDataset`) or in memory (:class:`SampleMemory`, also the bounded memory that
``data.echo`` uses).

The synthetic rooms are ray-cast on the fly: on the 2-core CPU rendering takes about a fifth
of a training step's compute. Every later epoch, and every run of a grid (all arms and seeds
share one dataset), reads the same samples again; with a cache each is made once and then
loaded. The folder holds one subfolder per dataset, split and options (a hash of them, with
the options written beside as ``dataset.json``) and one ``INDEX.pt`` file per sample.

Samples are cached before augmentation, so this is exact only for datasets whose item
``index`` is always the same (every dataset here). Files are written to a temporary name and
renamed, so parallel workers and interrupted runs never leave half a sample; an unreadable
file is made again, and a full disk only stops the caching.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dense.errors import DenseError


def cache_folder(root: str, dataset: str, split: str, options: Any) -> Path:
    """``root/<dataset>-<split>-<hash of the options>``, created, with ``dataset.json``."""
    described = {"dataset": dataset, "split": split, "options": dataclasses.asdict(options)}
    text = json.dumps(described, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = Path(root) / f"{dataset}-{split}-{key}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dataset.json").write_text(json.dumps(described, indent=2, default=str))
    except OSError as error:
        raise DenseError(f"data.cache: cannot use '{root}' ({error.strerror})") from None
    return folder


class WrappedDataset(Dataset):
    """A dataset in front of another, with its length, class names and ignore index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        for name in ("class_names", "ignore_index"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.dataset)


class CachedDataset(WrappedDataset):
    """``dataset[index]``, made once and then read from ``folder``."""

    def __init__(self, dataset: Dataset, folder: Path) -> None:
        super().__init__(dataset)
        self.folder = folder

    def __getitem__(self, index: int) -> Any:
        path = self.folder / f"{index}.pt"
        if path.is_file():
            try:
                return torch.load(path, weights_only=True)
            except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError):
                pass  # a damaged file: make the sample again
        sample = self.dataset[index]
        partial = path.with_name(f".{index}.{os.getpid()}.tmp")
        try:
            torch.save(sample, partial)
            os.replace(partial, path)
        except OSError:  # full disk, read-only folder: train on without caching this one
            partial.unlink(missing_ok=True)
        return sample


class SampleMemory(WrappedDataset):
    """``dataset[index]`` kept in this process's memory for the last ``capacity`` indices asked
    for (least recently used out first). A miss runs the dataset with the torch RNG forked, so
    what follows (augmentation) draws the same numbers whether or not the sample was kept."""

    def __init__(self, dataset: Dataset, capacity: int) -> None:
        super().__init__(dataset)
        self.capacity = capacity
        self.memory: OrderedDict[int, Any] = OrderedDict()

    def __getitem__(self, index: int) -> Any:
        if index in self.memory:
            self.memory.move_to_end(index)
            return self.memory[index]
        with torch.random.fork_rng(devices=[]):
            sample = self.dataset[index]
        self.memory[index] = sample
        if len(self.memory) > self.capacity:
            self.memory.popitem(last=False)
        return sample
