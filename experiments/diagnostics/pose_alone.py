"""Train a self-supervised config's pose network alone, warping with the true depth, and report
its pose errors on held-out rooms: the "true depth, learned pose" oracle in minutes, without the
shared encoder, so that pose-network variants can be compared quickly.

The loss is the task's own photometric term (multi-scale, auto-masked, at ``image_scales``)
with ``depth_source = "ground_truth"``. Adam at the config's learning rate, cosine decay.

    python experiments/diagnostics/pose_alone.py CONFIG.toml [--task NAME] [--steps N]
        [--every N] [key=value ...]

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
from dense.metrics import PoseErrors
from dense.task import Outputs


def pose_errors(network: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Rotation and translation-direction errors of ``network`` over ``loader``."""
    metric = PoseErrors()
    network.eval()
    with torch.no_grad():
        for batch in loader:
            for name, pose in network(batch).items():
                metric.update(pose, batch[f"{name}_pose"])
    network.train()
    return metric.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--task", default="selfsup_depth")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=200)
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    torch.manual_seed(config.run.seed)
    context = distributed.setup("cpu")
    train_set = build_dataset(config.data, config.data.train_split, augment=False)
    val_set = build_dataset(config.data, config.data.val_split)
    task = build_tasks(config, data_info(train_set))[args.task]
    task.config.depth_source = "ground_truth"
    network = task.auxiliary()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.optim.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    val = eval_loader(val_set, config.data, context, config.train.eval_batches)
    print(f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters")
    print("step | photometric | train rotation / direction (°) | eval rotation / direction (°) | s")
    errors = pose_errors(network, val)
    print(f"0 | | | {errors['pose_rot_deg']:.3f} / {errors['pose_dir_deg']:.1f} | 0")
    start, total, count, seen = time.perf_counter(), 0.0, 0, PoseErrors()
    for step, batch in enumerate(train_loader(train_set, config.data, 0, 0, context), 1):
        unused = batch["image"].new_zeros(batch["image"][:, :1].shape)  # the true depth warps
        poses = network(batch)
        for name, pose in poses.items():
            seen.update(pose.detach(), batch[f"{name}_pose"])
        outputs = Outputs({}, {args.task: poses})
        loss = task.loss([unused], batch, outputs)[f"{args.task}/photometric"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, count = total + loss.item(), count + 1
        if step % args.every == 0 or step == args.steps:
            train, errors = seen.compute(), pose_errors(network, val)
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
    main()
