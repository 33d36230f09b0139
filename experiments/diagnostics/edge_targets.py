"""Does an edge target reward the true depth? For each target that self-supervised depth's
InverseForm term can use (ground-truth segmentation boundaries, image edges, and the true
depth's own jumps as an oracle), on a config's validation split:

- agreement with the true depth jumps: the share of target edge pixels within ``--tolerance``
  px of a true jump (precision), and of true jumps within it of a target edge (recall);
- the InverseForm distance (px, the config's network and structure settings) that the term
  charges the true depth, a flat depth (the untrained start), and the true depth shifted by
  ``--shift`` px (edges misplaced). A target that rewards the truth charges it least.

    python experiments/diagnostics/edge_targets.py CONFIG.toml [key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from rich.console import Console
from torch import Tensor

from dense import distributed
from dense.config import load_config
from dense.data import eval_loader
from dense.errors import run_script
from dense.structure import StructureLoss
from dense.trainer import Trainer
from losses.boundary import boundary_from_depth, dilate_max

TARGETS = ("segmentation", "image", "depth")


def disparity_of(depth: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """The sigmoid output that the task decodes to ``depth`` (the inverse of its decode)."""
    depth = depth.clamp(min_depth, max_depth)
    return (1 / depth - 1 / max_depth) / (1 / min_depth - 1 / max_depth)


def candidate_depths(depth: Tensor, init_depth: float, shift: int) -> dict[str, Tensor]:
    return {
        "true depth": depth,
        "flat depth": torch.full_like(depth, init_depth),
        f"true depth shifted {shift} px": torch.roll(depth, shifts=shift, dims=-1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--tolerance", type=int, default=2, help="px, for the agreement")
    parser.add_argument("--shift", type=int, default=4, help="px, for the misplaced depth")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))  # writes nothing
    name = next(n for n, t in trainer.tasks.items() if hasattr(t.config, "edge_target"))
    task = trainer.tasks[name]
    task_config = task.config
    if not task_config.structure.network:
        parser.error("the config names no structure.network for the task")
    structure = StructureLoss(name, dataclasses.replace(task_config.structure, inverseform=1.0))
    loader = eval_loader(trainer.val_set, config.data, trainer.context, config.train.eval_batches)
    sums: dict[tuple[str, str], float] = {}
    hits = {t: [0.0, 0.0, 0.0, 0.0] for t in TARGETS}  # precise, target, recalled, jumps
    batches = 0
    with torch.no_grad():
        for batch in loader:
            depth = batch["depth"]
            jumps = boundary_from_depth(depth, task_config.edge_threshold, 1)
            for target_name in TARGETS:
                task_config.edge_target = target_name
                for label, candidate in candidate_depths(
                    depth, task_config.init_depth, args.shift
                ).items():
                    disparity = disparity_of(
                        candidate, task_config.min_depth, task_config.max_depth
                    )
                    edges = task.edges(disparity, batch, None)
                    distance = structure(
                        edges, step=structure.config.start_step + structure.config.ramp_steps
                    )
                    key = (target_name, label)
                    sums[key] = sums.get(key, 0.0) + float(distance[f"{name}/inverseform"])
                target = edges.target * edges.valid
                near_jump = dilate_max(jumps, args.tolerance)
                near_target = dilate_max(target, args.tolerance)
                counts = hits[target_name]
                counts[0] += float((target * near_jump).sum())
                counts[1] += float(target.sum())
                counts[2] += float((jumps * near_target).sum())
                counts[3] += float(jumps.sum())
            batches += 1
    print(f"{args.config}: {batches} validation batches, task {name}")
    print(f"agreement with the true depth jumps (within {args.tolerance} px):")
    for target_name, (precise, target, recalled, jumps) in hits.items():
        print(
            f"  {target_name:13s} precision {precise / max(target, 1):.3f}  "
            f"recall {recalled / max(jumps, 1):.3f}"
        )
    print("InverseForm distance charged (px, mean over batches):")
    for (target_name, label), total in sums.items():
        print(f"  target {target_name:13s} {label:28s} {total / batches:7.3f}")


if __name__ == "__main__":
    run_script(main)
