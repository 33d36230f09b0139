"""Data echoing (``data.echo``): each training sample made is used several times.

Where making a sample costs a real share of a training step (the ray-cast synthetic rooms on a
2-core CPU), echoing trades fresh samples for speed: with ``data.echo = k`` only one sample in k
is made, the rest are repeats (Choi et al., "Faster Neural Network Training with Data
Echoing", 2019). Whether the trade keeps a recipe's final metrics is an empirical question;
the ``echo`` grid answers it for the default experiment (README, "Experiments").

The batch sampler (``dense.data.StepBatchSampler``) orders the repeats: the stream of fresh
items is cut into windows of ``ECHO_WINDOW_STEPS`` steps' worth, and period p shuffles together
window p and the repeats of the k − 1 windows before it. So each batch holds about one new
sample in k (the loader's worker makes samples at an even pace, not in bursts), never the same
sample twice, and a sample's k uses fall within k periods (k² × ``ECHO_WINDOW_STEPS`` steps).
The worker keeps the live windows' samples in memory (``dense.cache.SampleMemory``), so each is made
once per worker; augmentation runs on every use, after the memory.
"""

from __future__ import annotations

ECHO_WINDOW_STEPS = 4  # steps' worth of fresh items in a window


def echo_capacity(echo: int, batch_size: int, world_size: int) -> int:
    """Samples a worker must remember so that every repeat is a hit: the windows used in this
    period and the last (all more recent than any sample no longer needed)."""
    return (echo + 1) * ECHO_WINDOW_STEPS * batch_size * world_size
