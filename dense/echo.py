"""Data echoing (``data.echo``): each training sample made is used several times.

Where making a sample costs a real share of a training step (the ray-cast synthetic rooms on a
2-core CPU), echoing trades fresh samples for speed: with ``data.echo = k`` only one sample in k
is made, the rest are repeats (Choi et al., "Faster Neural Network Training with Data
Echoing", 2019). Whether the trade keeps a recipe's final metrics is an empirical question;
the ``echo`` grid answers it for the default experiment (README, "Experiments").

The batch sampler (``dense.data.StepBatchSampler``) orders the repeats (:func:`echoed_items`):
the stream of fresh items is cut into windows of ``ECHO_WINDOW_STEPS`` steps' worth, and
period p shuffles together window p and the repeats of the k − 1 windows before it. So each
batch holds about one new sample in k (samples are made at an even pace, not in bursts), the
same sample twice only where a window holds an index twice (a dataset smaller than a window,
or a window across an epoch's end), and a sample's k uses fall within k periods
(k² × ``ECHO_WINDOW_STEPS`` steps). The loader process keeps the live windows' samples in
memory (``dense.cache.SampleMemory``), so each is made once there (after a resume the memory
starts empty: the first repeats are made again, the batches are the same); augmentation runs
on every use, after the memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch

ECHO_WINDOW_STEPS = 4  # steps' worth of fresh items in a window
Item = tuple[int, int]  # (index, item seed)


def echoed_items(
    fresh_items: Callable[[int], Iterator[Item]], position: int, echo: int, window: int, seed: int
) -> Iterator[Item]:
    """The echoed stream from ``position`` on. ``fresh_items(p)`` is the stream of new items
    from its position p; it is cut into windows of ``window`` items, and period p shuffles
    together window p and the repeats of the ``echo - 1`` windows before it (a permutation
    drawn from (seed, p)). A repeat keeps its index and gets its own item seed."""
    period, skip = 0, position
    while skip >= min(period + 1, echo) * window:
        skip -= min(period + 1, echo) * window
        period += 1

    def periods() -> Iterator[Item]:
        for p in itertools.count(period):
            items = []
            for visit in range(min(p + 1, echo)):
                fresh = itertools.islice(fresh_items((p - visit) * window), window)
                items += [(index, repeat_seed(s, visit)) for index, s in fresh]
            key = (seed * 1_000_003 + p) % 2**63
            order = torch.randperm(len(items), generator=torch.Generator().manual_seed(key))
            yield from (items[i] for i in order.tolist())

    return itertools.islice(periods(), skip, None)


def repeat_seed(seed: int, visit: int) -> int:
    """The item seed of a sample's ``visit``-th use (0: its first, the seed itself)."""
    return (seed * 1_000_003 + visit) % 2**63 if visit else seed


def echo_capacity(echo: int, batch_size: int, world_size: int) -> int:
    """Samples a worker must remember so that every repeat is a hit: the windows used in this
    period and the last (all more recent than any sample no longer needed)."""
    return (echo + 1) * ECHO_WINDOW_STEPS * batch_size * world_size
