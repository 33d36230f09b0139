"""``dense fit-inverseform``: train the inverse-transformation network on a dataset's own
ground-truth boundaries, warped by known random transformations (the procedure the paper
describes and the public release left out).

Each example is a tile of a boundary map and the same tile seen through a random
transformation (warped from a context twice the tile's size, so no border goes empty); the
network regresses the transformation's normalised parameters and, with a distance head, how
far the tile's content moved (RMS, pixels). A share of the pairs are identical, so identical
tiles read 0. Label maps are split by file into training and held-out maps; the held-out report
gives the regression error per parameter, the Spearman rank correlation between the
InverseForm distance and the true displacement on tile pairs, and the whole-map sweep of
:mod:`dense.inverseform.sweep` (also drawn as a PNG beside the network).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor

from dense.checkpoint import save_checkpoint
from dense.config import DataConfig, apply_override, build_dataclass
from dense.data import build_dataset
from dense.errors import DenseError
from dense.imageio import read_labels
from dense.inverseform.loss import Distance, InverseFormLoss, tile_distance
from dense.inverseform.network import InverseNet, Kind
from dense.inverseform.sweep import plot_sweep, spearman, sweep
from dense.inverseform.transforms import (
    TransformRanges,
    matrix_to_params,
    rms_displacement,
    sample_transforms,
    warp,
)
from dense.progress import training_progress
from losses.boundary import boundary_from_labels


@dataclass
class FitConfig:
    source: str = "synthetic"  # a registered dataset, or a folder of label PNGs
    split: str = "train"  # dataset split to read label maps from
    options: dict = field(default_factory=dict)  # the dataset's options
    ignore_index: int = -1  # -1: the dataset's; label folders: the unlabeled value (NYU: 0)
    maps: int = 400  # label maps to read (the first ones)
    heldout: float = 0.2  # fraction of maps kept for the held-out report
    size: list[int] = field(default_factory=lambda: [240, 320])  # maps resized (nearest) to this
    radius: int = 2  # boundary thickness, pixels
    kind: Kind = "conv"
    tile: int = 64
    parameters: int = 6  # 4 (scale, shift), 6 (affine) or 8 (homography)
    distance_head: bool = True  # also regress the RMS displacement (the "pixels" distance)
    distance: Distance = "pixels"  # the distance the held-out report and sweep measure
    identity: float = 0.2  # share of identical tile pairs while fitting
    hidden: list[int] = field(default_factory=lambda: [1000, 32])  # MLP widths
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])  # conv widths
    ranges: TransformRanges = field(default_factory=TransformRanges)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    min_boundary: float = 0.01  # tiles with less boundary are redrawn (= the loss's empty_tile)
    heldout_samples: int = 1024
    out: str = "runs/inverseform/inverse_net.pt"


def load_fit_config(path: str | None, overrides: list[str]) -> FitConfig:
    import tomllib

    raw: dict = {}
    if path:
        if not Path(path).is_file():
            raise DenseError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DenseError(f"{path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as error:
            raise DenseError(f"{path} is not valid TOML: {error}") from None
    for override in overrides:
        apply_override(raw, override)
    config = build_dataclass(FitConfig, raw, "")
    check_fit_config(config)
    return config


def check_fit_config(config: FitConfig) -> None:
    """Reject settings that would fail (or do nothing) only after the maps are read."""
    for name in ("steps", "batch_size", "heldout_samples", "tile", "maps"):
        if getattr(config, name) < 1:
            raise DenseError(f"{name} must be at least 1, got {getattr(config, name)}")
    blocked = next((p for p in Path(config.out).parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise DenseError(f"out {config.out}: {blocked} is a file, not a folder")
    if config.parameters not in (4, 6, 8):
        raise DenseError("parameters must be 4, 6 or 8")
    if config.distance == "geodesic" and config.parameters != 8:
        raise DenseError("the geodesic distance needs parameters = 8")
    if min(config.size) < 2 * config.tile:
        raise DenseError(f"size {config.size} must be at least twice the tile ({config.tile})")
    if not 0 < config.heldout < 1:
        raise DenseError("heldout must lie between 0 and 1")
    if not 0 <= config.identity < 1:
        raise DenseError("identity must lie in [0, 1)")


def load_label_maps(config: FitConfig) -> tuple[Tensor, int]:
    """(N, H, W) label maps resized to ``config.size`` and the ignore index."""
    folder = Path(config.source)
    if folder.is_dir():
        files = sorted(folder.glob("*.png"))[: config.maps]
        if not files:
            raise DenseError(f"no PNG label maps in {folder}")
        maps = [read_labels(f) for f in files]
        ignore = config.ignore_index if config.ignore_index >= 0 else 255
    else:
        data = DataConfig(dataset=config.source, options=config.options)
        dataset = build_dataset(data, config.split)
        count = min(config.maps, len(dataset))
        maps = [dataset[i]["segmentation"] for i in range(count)]
        default = getattr(dataset, "ignore_index", 255)
        ignore = config.ignore_index if config.ignore_index >= 0 else default
    resized = [
        F.interpolate(m[None, None].float(), size=tuple(config.size), mode="nearest")[0, 0]
        for m in maps
    ]
    return torch.stack(resized).long(), ignore


class TileSampler:
    """Random (warped, original) boundary tile pairs with their transformations."""

    def __init__(self, boundaries: Tensor, config: FitConfig, generator: torch.Generator):
        self.boundaries = boundaries  # (N, 1, H, W) float
        self.config = config
        self.generator = generator

    def contexts(self, count: int) -> Tensor:
        """(count, 1, 2T, 2T) windows whose central T×T tile holds enough boundary."""
        t, (h, w) = self.config.tile, self.boundaries.shape[-2:]
        offsets = torch.arange(2 * t)
        chosen = []
        found = 0
        for _ in range(50):
            n = 4 * count
            index = torch.randint(len(self.boundaries), (n,), generator=self.generator)
            top = torch.randint(h - 2 * t + 1, (n,), generator=self.generator)
            left = torch.randint(w - 2 * t + 1, (n,), generator=self.generator)
            rows = (top[:, None] + offsets)[:, :, None]  # (n, 2T, 1)
            cols = (left[:, None] + offsets)[:, None, :]  # (n, 1, 2T)
            windows = self.boundaries[index[:, None, None], 0, rows, cols][:, None]
            centre = windows[..., t // 2 : t // 2 + t, t // 2 : t // 2 + t].mean(dim=(1, 2, 3))
            keep = windows[centre >= self.config.min_boundary][: count - found]
            chosen.append(keep)
            found += len(keep)
            if found == count:
                return torch.cat(chosen)
        raise DenseError(
            f"too few tiles with ≥ {self.config.min_boundary:.0%} boundary: "
            "lower min_boundary or the tile size"
        )

    def batch(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        context = self.contexts(count)
        t = self.config.tile
        matrix = sample_transforms(
            count, self.config.parameters, self.config.ranges, self.generator
        )
        same = torch.rand(count, generator=self.generator) < self.config.identity
        matrix[same] = torch.eye(3)
        warped = warp(context, matrix, size=(t, t), extent=2.0)
        original = context[..., t // 2 : t // 2 + t, t // 2 : t // 2 + t]
        return warped, original, matrix


IDENTITY_MARGIN = 0.1  # the distance head's target for identical tiles: −0.1 half-tile


def regression_target(net: InverseNet, matrix: Tensor) -> Tensor:
    """(N, P[+1]) what the network should output for these transformations: the normalised
    parameters, and the normalised RMS displacement with the distance head — below 0 for the
    identity, so that identical tiles read exactly 0 after the loss's ReLU."""
    params = matrix_to_params(matrix, net.num_params)
    if net.distance_head:
        moved = rms_displacement(matrix)
        moved = torch.where(moved > 0, moved, -IDENTITY_MARGIN)
        params = torch.cat([params, moved[:, None]], dim=1)
    return params / net.param_scale


@torch.no_grad()
def heldout_report(net: InverseNet, sampler: TileSampler, samples: int, distance: Distance) -> dict:
    """Regression error and Spearman(distance, true RMS displacement) on held-out tile pairs."""
    net.eval()
    warped, original, matrix = sampler.batch(samples)
    predicted = net(warped, original)
    truth = regression_target(net, matrix)
    error = ((predicted - truth) * net.param_scale).abs().mean(0)[: net.num_params]
    return {
        "mae_per_parameter": error.tolist(),
        "normalised_rmse": (predicted - truth).square().mean().sqrt().item(),
        "spearman_distance_vs_magnitude": spearman(
            tile_distance(net, predicted, distance), rms_displacement(matrix)
        ),
        "samples": samples,
    }


def fit_inverse_net(config: FitConfig, console: Console | None = None) -> dict:
    """Train, report on held-out maps, save ``config.out`` and a .json report; return it."""
    console = console or Console()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    labels, ignore = load_label_maps(config)
    boundaries = torch.cat(
        [boundary_from_labels(chunk, config.radius, ignore)[0] for chunk in labels.split(32)]
    )
    split = max(1, int(round(len(boundaries) * (1 - config.heldout))))
    if split >= len(boundaries):
        raise DenseError(f"need at least 2 label maps, found {len(boundaries)}")
    train = TileSampler(boundaries[:split], config, generator)
    heldout = TileSampler(
        boundaries[split:], config, torch.Generator().manual_seed(config.seed + 1)
    )

    net = InverseNet(
        config.kind,
        config.tile,
        config.parameters,
        tuple(config.hidden),
        tuple(config.channels),
        config.distance_head,
    )
    matrix = sample_transforms(
        20000, config.parameters, config.ranges, torch.Generator().manual_seed(0)
    )
    net.param_scale.copy_(regression_target(net, matrix).std(0).clamp(min=1e-6))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps)
    net.train()
    with training_progress(console, enabled=console.is_terminal) as progress:
        bar = progress.add_task("fit-inverseform", total=config.steps, status="")
        for step in range(1, config.steps + 1):
            warped, original, matrix = train.batch(config.batch_size)
            loss = F.mse_loss(net(warped, original), regression_target(net, matrix))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update(bar, advance=1, status=f"mse {loss.item():.4f}")
            if not console.is_terminal and (step % 200 == 0 or step == config.steps):
                console.print(f"step {step}/{config.steps}  mse {loss.item():.4f}")
    report = heldout_report(net, heldout, config.heldout_samples, config.distance)
    out = Path(config.out)
    report["sweep"] = sweep(
        InverseFormLoss(net, config.distance), labels[split:], ignore, config.radius, config.seed
    )
    save_checkpoint(
        out,
        {
            "network": net.config(),
            "state_dict": net.state_dict(),
            "fit": dataclasses.asdict(config),
            "heldout": report,
        },
    )
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    plot_sweep(report["sweep"], sweep_picture(out), f"{out.name}: {net.kind} {net.num_params}")
    return report


def sweep_picture(out: Path) -> Path:
    """Where the sweep's PNG goes: beside the network, ``NAME_sweep.png``."""
    return out.with_name(f"{out.stem}_sweep.png")
