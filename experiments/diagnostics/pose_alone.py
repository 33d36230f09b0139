"""Train a self-supervised config's pose network alone, warping with the true depth, and report
its pose errors on held-out rooms: the "true depth, learned pose" oracle in minutes, without the
shared encoder, so that pose-network variants can be compared quickly.

The loss is the task's own photometric term (multi-scale, auto-masked, at ``image_scales``)
with ``depth_source = "ground_truth"``. Adam at the config's learning rate, cosine decay.

    python experiments/diagnostics/pose_alone.py CONFIG.toml [--task NAME] [--steps N]
        [--every N] [--landscape] [key=value ...]

``--landscape`` first prints the loss on two evaluation batches with the true depth and
translation and the true rotation scaled by 0, 0.5, 1, 1.5 and 2 (is the rotation in the loss?).

Prints one row per evaluation: step, photometric loss (train, mean since the last row), rotation
error and translation-direction error in degrees on the training batches since the last row
(training mode) and on the evaluation split.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from dense import distributed
from dense.assemble import build_tasks
from dense.config import load_config
from dense.data import build_dataset, data_info, eval_loader, train_loader
from dense.errors import run_script
from dense.geometry import axis_angle_to_matrix
from dense.metrics import PoseErrors
from dense.task import Outputs, Task
from tasks.selfsup_depth import true_depth


def network_poses(task: Task, network: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The network's poses on ``batch`` (motion fields solved with the true depth)."""
    depth = true_depth(batch, task.config.max_depth)
    return task.network_poses(Outputs({}, {task.name: network(batch)}), depth, batch["K"])


def pose_errors(task: Task, network: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Rotation and translation-direction errors of ``network`` over ``loader``."""
    metric = PoseErrors()
    network.eval()
    with torch.no_grad():
        for batch in loader:
            for name, pose in network_poses(task, network, batch).items():
                metric.update(pose, batch[f"{name}_pose"])
    network.train()
    return metric.compute()


def rotation_landscape(task: Task, loader: DataLoader) -> dict[float, float]:
    """Mean photometric loss with the true depth and translation and the true rotation scaled
    by each factor (two batches)."""
    losses: dict[float, list[float]] = {}
    for index, batch in enumerate(loader):
        if index == 2:
            break
        unused = batch["image"].new_zeros(batch["image"][:, :1].shape)
        for factor in (0.0, 0.5, 1.0, 1.5, 2.0):
            poses = {}
            for name in task.config.sources:
                pose = batch[f"{name}_pose"].float().clone()
                pose[:, :3, :3] = axis_angle_to_matrix(factor * rotation_vector(pose[:, :3, :3]))
                poses[name] = pose
            torch.manual_seed(0)  # the auto-mask's tie-breaking noise
            loss = task.loss([unused], batch, Outputs({}, {task.name: poses}))
            losses.setdefault(factor, []).append(loss[f"{task.name}/photometric"].item())
    return {factor: sum(values) / len(values) for factor, values in losses.items()}


def rotation_vector(R: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors (B, 3) of rotations (B, 3, 3) with angles in (0, π)."""
    angle = torch.acos(((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    axis = torch.stack(
        [R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1
    )
    return axis / (2 * torch.sin(angle).clamp(min=1e-8))[:, None] * angle[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--task", default="selfsup_depth")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--landscape", action="store_true")
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    torch.manual_seed(config.run.seed)
    context = distributed.setup("cpu")
    train_set = build_dataset(config.data, config.data.train_split, augment=False)
    val_set = build_dataset(config.data, config.data.val_split)
    task = build_tasks(config, data_info(train_set))[args.task]
    task.config.depth_source = "ground_truth"
    task.config.pose_refinement = 0  # the network's own pose, unrefined
    network = task.auxiliary()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.optim.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    val = eval_loader(val_set, config.data, context, config.train.eval_batches)
    if args.landscape:
        for factor, loss in rotation_landscape(task, val).items():
            print(f"true rotation × {factor}: photometric {loss:.4f}")
    print(f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters")
    print("step | photometric | train rotation / direction (°) | eval rotation / direction (°) | s")
    errors = pose_errors(task, network, val)
    print(f"0 | | | {errors['pose_rot_deg']:.3f} / {errors['pose_dir_deg']:.1f} | 0")
    start, total, count, seen = time.perf_counter(), 0.0, 0, PoseErrors()
    for step, batch in enumerate(train_loader(train_set, config.data, 0, 0, context), 1):
        unused = batch["image"].new_zeros(batch["image"][:, :1].shape)  # the true depth warps
        outputs = Outputs({}, {args.task: network(batch)})
        loss = task.loss([unused], batch, outputs)[f"{args.task}/photometric"]
        with torch.no_grad():
            depth = true_depth(batch, task.config.max_depth)
            for name, pose in task.network_poses(outputs, depth, batch["K"]).items():
                seen.update(pose, batch[f"{name}_pose"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, count = total + loss.item(), count + 1
        if step % args.every == 0 or step == args.steps:
            train, errors = seen.compute(), pose_errors(task, network, val)
            print(
                f"{step} | {total / count:.4f} | {train['pose_rot_deg']:.3f} / "
                f"{train['pose_dir_deg']:.1f} | {errors['pose_rot_deg']:.3f} / "
                f"{errors['pose_dir_deg']:.1f} | {time.perf_counter() - start:.0f}",
                flush=True,
            )
            total, count, seen = 0.0, 0, PoseErrors()
        if step == args.steps:
            break


if __name__ == "__main__":
    run_script(main)
