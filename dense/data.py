"""Datasets and loaders: deterministic, resumable training batches and rank-sharded evaluation.

Training batches are a pure function of (seed, step): epoch e visits a permutation drawn from
(seed, e), and step s takes the next ``batch_size × world_size`` items of that stream, rank r
every world_size-th of them (with ``data.echo``, of the echoed stream: ``dense.echo``). Each
item also carries its own seed, under which the dataset (and any random transform) runs, so a
resumed run sees exactly the batches an uninterrupted one would, whatever the number of
DataLoader workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dense.cache import CachedDataset, SampleMemory, cache_folder
from dense.config import DataConfig, build_dataclass
from dense.distributed import Context
from dense.echo import ECHO_WINDOW_STEPS, echo_capacity, echoed_items
from dense.errors import DenseError
from dense.registry import DATASETS
from dense.task import DataInfo
from dense.transforms import Augmented, JointTransform


def build_dataset(
    config: DataConfig, split: str, augment: bool = False, world_size: int = 1
) -> Dataset:
    """The split of the configured dataset; with ``augment`` (the training split), behind
    ``data.echo``'s memory and ``data.augment``."""
    cls = DATASETS.get(config.dataset)
    options = build_dataclass(cls.Config, config.options, "data.options.")
    dataset = cls(split, options)
    if len(dataset) == 0:
        raise DenseError(f"dataset '{config.dataset}' split '{split}' is empty")
    if config.cache == "memory":
        dataset = SampleMemory(dataset, capacity=len(dataset))
    elif config.cache:
        folder = cache_folder(config.cache, config.dataset, split, options)
        dataset = CachedDataset(dataset, folder)
    if augment and config.echo > 1 and config.cache != "memory":
        capacity = echo_capacity(config.echo, config.batch_size, world_size)
        dataset = SampleMemory(dataset, capacity)
    if augment and config.augment.active():
        transform = JointTransform(config.augment, getattr(dataset, "ignore_index", 255))
        return Augmented(dataset, transform)
    return dataset


def data_root(root: str) -> Path:
    """``data.options.root`` as a folder that exists, or a clear error."""
    if not root or not Path(root).is_dir():
        raise DenseError(f"data.options.root: not a folder: '{root}'")
    return Path(root)


def data_info(dataset: Dataset) -> DataInfo:
    return DataInfo(
        class_names=tuple(getattr(dataset, "class_names", ())),
        ignore_index=getattr(dataset, "ignore_index", 255),
    )


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's batches of (index, item seed) from ``start_step`` on, forever; with
    ``echo`` > 1, each item ``echo`` times (``dense.echo``)."""

    def __init__(
        self,
        length: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        echo: int = 1,
    ) -> None:
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.echo = echo

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=generator).tolist()

    def fresh_items(self, position: int) -> Iterator[tuple[int, int]]:
        """The endless stream of (index, item seed) of permutation after permutation, from
        ``position`` on."""
        epoch, offset = divmod(position, self.length)
        order = self.permutation(epoch)
        while True:
            if offset == self.length:
                epoch, offset = epoch + 1, 0
                order = self.permutation(epoch)
            yield order[offset], (self.seed << 32) + epoch * self.length + offset
            offset += 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_step = self.batch_size * self.world_size
        position = self.start_step * per_step  # in the endless stream of items
        if self.echo > 1:
            window = ECHO_WINDOW_STEPS * per_step
            items = echoed_items(self.fresh_items, position, self.echo, window, self.seed)
        else:
            items = self.fresh_items(position)
        while True:
            batch = list(itertools.islice(items, per_step))
            yield batch[self.rank :: self.world_size]


class SeededDataset(Dataset):
    """Runs ``dataset[index]`` under the item's own torch seed, leaving the caller's RNG alone."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed would also queue a lazy seeding of
            # every uninitialised accelerator, with a formatted stack, for each item
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def train_loader(
    dataset: Dataset, config: DataConfig, seed: int, start_step: int, context: Context
) -> DataLoader:
    sampler = StepBatchSampler(
        len(dataset),
        config.batch_size,
        seed,
        start_step,
        context.rank,
        context.world_size,
        config.echo,
    )
    return DataLoader(
        SeededDataset(dataset),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=context.device.type == "cuda",
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),  # keep the global RNG untouched
    )


def eval_loader(
    dataset: Dataset, config: DataConfig, context: Context, max_batches: int = 0
) -> DataLoader:
    """Every item exactly once over all ranks (no padding), so reduced metrics are exact."""
    length = len(dataset)
    if max_batches:
        length = min(length, max_batches * config.eval_batch_size * context.world_size)
    shard = Subset(dataset, range(context.rank, length, context.world_size))
    return DataLoader(
        shard,
        batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        pin_memory=context.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
        for key, value in batch.items()
    }
