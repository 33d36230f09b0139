"""Evaluation cost: one validation pass of a config with the boundary metrics' truncated
distances as computed now (two separable passes) against the earlier disk dilations (one
dilation per radius, kept here as the baseline), in the same run; both must give identical
metrics.

    python experiments/benchmarks/eval_cost.py [CONFIG.toml] [--batches N] [key=value ...]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console

import dense.boundary_metrics as boundary_metrics
from dense import distributed
from dense.config import load_config
from dense.data import eval_loader
from dense.errors import run_script
from dense.evaluate import evaluate
from dense.trainer import Trainer
from losses.boundary import dilate_max


def dilated_distance(edges: torch.Tensor, limit: int) -> torch.Tensor:
    """The baseline: the smallest disk radius whose dilation of ``edges`` reaches a pixel."""
    distance = torch.full(edges.shape, float(limit))
    edges = edges.float()
    for radius in range(limit - 1, -1, -1):
        distance = torch.where(dilate_max(edges, radius) > 0, float(radius), distance)
    return distance


def timed(trainer: Trainer, loader) -> tuple[float, dict]:
    started = time.perf_counter()
    metrics = evaluate(trainer.model, trainer.tasks, loader, trainer.device)
    return time.perf_counter() - started, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="experiments/synthetic_selfsup.toml")
    parser.add_argument("--batches", type=int, default=2, help="validation batches per pass")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))  # writes nothing
    loader = eval_loader(trainer.val_set, config.data, trainer.context, args.batches)
    timed(trainer, loader)  # warm-up: data workers, first-call allocations
    separable, now = timed(trainer, loader)
    current = boundary_metrics.truncated_distance
    boundary_metrics.truncated_distance = dilated_distance
    try:
        dilated, before = timed(trainer, loader)
    finally:
        boundary_metrics.truncated_distance = current
    images = args.batches * config.data.eval_batch_size
    print(f"{args.config}: {images} validation images, untrained model")
    print(f"  disk dilations (baseline): {dilated:.2f} s")
    print(f"  separable passes (now):    {separable:.2f} s   ratio {dilated / separable:.1f}×")
    print(f"  identical metrics: {now == before}")


if __name__ == "__main__":
    run_script(main)
