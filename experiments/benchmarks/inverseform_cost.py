"""What InverseForm costs.

1. Loss forward + backward on the same (B, 1, H, W) boundary maps: this project's loss (the
   default convolutional network, einops tiling at the maps' own size) against the public
   release's recipe (resize to 672×1344, 18 tiles of 224² built by repeated torch.cat, the
   official 2·224·224 → 1000 → 32 → 4 MLP), plus the official MLP behind this project's
   tiling, to separate the two effects.
2. Parameters and FLOPs per tile of the inverse networks and, for fitted networks given with
   --networks, the whole-map sweep of `dense fit-inverseform` on their held-out label maps
   (--labels; distance "pixels" for networks with a distance head, else "euclidean").
3. Training-step time of the default experiment with InverseForm on ÷ off (target ≤ 1.05),
   the two runs' steps interleaved on the same batches, medians compared.

    python experiments/benchmarks/inverseform_cost.py [--networks A.pt B.pt --labels DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from dense import distributed
from dense.config import load_config
from dense.data import to_device, train_loader
from dense.errors import run_script
from dense.inverseform.fit import FitConfig, load_label_maps
from dense.inverseform.loss import InverseFormLoss
from dense.inverseform.network import BUNDLED, InverseNet, load_inverse_net
from dense.inverseform.sweep import sweep
from dense.trainer import Trainer


def release_loss(net: InverseNet, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The release's InverseTransform2D tiling: resize, then tiles by repeated concatenation."""
    predicted = F.interpolate(predicted, size=(672, 1344), mode="bilinear")
    target = F.interpolate(target, size=(672, 1344), mode="bilinear")
    size = 224
    tiles_p, tiles_t = predicted[:, :, :size, :size], target[:, :, :size, :size]
    for i in range(3):
        for j in range(6):
            if i + j:
                rows, cols = slice(size * i, size * (i + 1)), slice(size * j, size * (j + 1))
                tiles_p = torch.cat((tiles_p, predicted[:, :, rows, cols]), dim=0)
                tiles_t = torch.cat((tiles_t, target[:, :, rows, cols]), dim=0)
    return net(tiles_p, tiles_t).norm(dim=1).mean()


def timed(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(loss_fn, predicted, target):
    def run():
        predicted.grad = None
        loss_fn(predicted, target).backward()

    return run


def flops_per_tile(net: InverseNet) -> int:
    """Multiply-adds ×2 of the linear and conv layers for one tile pair."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += 2 * kernel * output.shape[1] * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in net.modules() if m is not net]
    with torch.no_grad():
        net(torch.zeros(1, 1, net.tile, net.tile), torch.zeros(1, 1, net.tile, net.tile))
    for handle in handles:
        handle.remove()
    return total


def step_times(variants: list[list[str]], steps: int) -> list[float]:
    """Median training-step time of each override set, their steps interleaved (on, off, on,
    ...) on the same batches so that drift in the machine's speed hits both alike."""
    trainers, data = [], None
    for overrides in variants:
        config = load_config("experiments/synthetic_joint.toml", ["data.num_workers=0", *overrides])
        context = distributed.Context(0, 1, 0, torch.device("cpu"))
        trainer = Trainer(config, context, Console(quiet=True))
        if data is None:
            batches = iter(train_loader(trainer.train_set, config.data, 0, 0, context))
            data = [to_device(next(batches), context.device) for _ in range(steps + 3)]
        for batch in data[:3]:
            trainer.train_step(batch)
        trainers.append(trainer)
    times: list[list[float]] = [[] for _ in variants]
    for batch in data[3:]:
        for trainer, spent in zip(trainers, times, strict=True):
            start = time.perf_counter()
            trainer.train_step(batch)
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def network_summary(path: str, labels: str) -> str:
    """Parameters, FLOPs per tile and the held-out sweep of a fitted network."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = InverseNet.from_state(state)
    fit = FitConfig(source=labels, ignore_index=state["fit"]["ignore_index"])
    maps, ignore = load_label_maps(fit)
    split = max(1, int(round(len(maps) * (1 - state["fit"]["heldout"]))))
    distance = "pixels" if net.distance_head else "euclidean"
    result = sweep(InverseFormLoss(net, distance), maps[split:], ignore, fit.radius)
    shapes = " ".join(
        f"{name} {'monotone' if values['monotone'] else 'NOT monotone'}"
        for name, values in result["families"].items()
    )
    params = sum(p.numel() for p in net.parameters())
    return (
        f"{params / 1e6:.3f} M params, {flops_per_tile(net) / 1e6:.1f} MFLOP/tile, {distance}: "
        f"sweep Spearman {result['spearman']:.3f}, identical "
        f"{result['identical_vs_quarter_shift']:.1%} of the 4-px shift; {shapes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(120, 160))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--networks", nargs="*", default=[], help="fit-inverseform networks")
    parser.add_argument("--labels", default="../shared/nyuv2/labels13", help="their label maps")
    args = parser.parse_args()
    torch.manual_seed(0)

    predicted = torch.rand(args.batch, 1, *args.size, requires_grad=True)
    target = (torch.rand(args.batch, 1, *args.size) > 0.9).float()
    official = InverseNet("mlp", 224, 4, (1000, 32)).eval().requires_grad_(False)
    ours = load_inverse_net(BUNDLED["nyu13"])
    t_release = timed(
        forward_backward(lambda p, t: release_loss(official, p, t), predicted, target), args.repeats
    )
    t_official = timed(
        forward_backward(InverseFormLoss(official, resize=(672, 1344)), predicted, target),
        args.repeats,
    )
    t_ours = timed(forward_backward(InverseFormLoss(ours), predicted, target), args.repeats)
    print(
        f"1. InverseForm loss forward+backward, batch {args.batch} at {args.size[0]}x{args.size[1]}"
    )
    print(f"   release recipe (cat tiles, official MLP)   {1000 * t_release:9.1f} ms")
    gain_tiling, gain_total = t_release / t_official, t_release / t_ours
    print(
        f"   einops tiles + official MLP (resized) {1000 * t_official:9.1f} ms ({gain_tiling:.1f}x)"
    )
    print(
        f"   this project's default (conv, own size)   {1000 * t_ours:9.1f} ms  ({gain_total:.1f}x)"
    )

    print("2. inverse networks")
    for name, net in (("official MLP 224", official), ("default conv 64", ours)):
        params = sum(p.numel() for p in net.parameters())
        tiles = -(-args.size[0] // net.tile) * -(-args.size[1] // net.tile)
        if net is official:
            tiles = 18
        mflop = flops_per_tile(net) / 1e6
        print(
            f"   {name:18s} {params / 1e6:7.2f} M params {mflop:7.1f} MFLOP/tile {tiles} tiles/map"
        )
    for path in args.networks:
        print(f"   {Path(path).stem}: {network_summary(path, args.labels)}")

    structure = ["tasks.segmentation.boundary_head=true"]
    for task in ("segmentation", "depth"):
        structure += [
            f"tasks.{task}.structure.inverseform=0.3",
            f"tasks.{task}.structure.network='nyu13'",
        ]
    off, on = step_times([["tasks.segmentation.boundary_head=true"], structure], args.steps)
    print(f"3. training step, default experiment (median of {args.steps} interleaved steps)")
    print(
        f"   InverseForm off {1000 * off:7.1f} ms   on {1000 * on:7.1f} ms   ratio {on / off:.3f}"
        f"   (target <= 1.05: {'met' if on / off <= 1.05 else 'MISSED'})"
    )


if __name__ == "__main__":
    run_script(main)
