"""A parameterisation-free check of an inverse network: whole held-out label maps are shifted,
rotated, scaled or elastically deformed by known amounts, their boundaries recomputed, and the
InverseForm loss between warped and true boundaries measured per map.

The network passes when, in every family, each magnitude's mean distance is above the previous
one (monotone), identical maps score about 0, and distance and magnitude rank alike
(Spearman). Magnitudes are set at 240×320 with tile 64 (shift 0–16 px, rotation 0–15°, scale
0–20 %, elastic 0–8 px RMS) and scale with the fitting size and tile: pixel magnitudes with
the tile (÷ 64), rotation and scale so that the map's border moves by the same number of
tiles (× tile / 64 × 200 / half the map's diagonal).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dense.inverseform.loss import InverseFormLoss
from losses.boundary import boundary_from_labels

LEVELS = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)  # fractions of each family's largest magnitude
REFERENCE = {"shift": 16.0, "rotation": 15.0, "scale": 20.0, "elastic": 8.0}  # 240×320, tile 64
UNITS = {"shift": "px", "rotation": "°", "scale": "%", "elastic": "px RMS"}


def sweep_ranges(size: tuple[int, int], tile: int) -> dict[str, float]:
    """Each family's largest magnitude at this fitting size and tile."""
    pixels = tile / 64
    reach = pixels * 200 / (0.5 * math.hypot(*size))
    factors = {"shift": pixels, "rotation": reach, "scale": reach, "elastic": pixels}
    return {name: REFERENCE[name] * factor for name, factor in factors.items()}


def pixel_grid(size: tuple[int, int]) -> Tensor:
    """(H, W, 2) pixel centres (x, y) about the map's centre."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
    xs = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def displacement(
    family: str, magnitude: float, size: tuple[int, int], tile: int, g: torch.Generator
) -> Tensor:
    """(H, W, 2) how far (pixels) each output pixel reads from its own position; the elastic
    field is smooth noise with one random knot per tile, scaled to an RMS of ``magnitude``."""
    points = pixel_grid(size)
    sign = 1.0 if torch.rand(1, generator=g).item() < 0.5 else -1.0
    if family == "shift":
        angle = 2 * math.pi * torch.rand(1, generator=g).item()
        return magnitude * torch.tensor([math.cos(angle), math.sin(angle)]).expand_as(points)
    if family == "rotation":
        a = math.radians(sign * magnitude)
        rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return points @ rotation.T - points
    if family == "scale":
        return points * (sign * magnitude / 100)
    h, w = size
    coarse = torch.randn(1, 2, h // tile + 2, w // tile + 2, generator=g)
    field = F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)[0]
    return magnitude * (field / field.square().sum(0).mean().sqrt()).permute(1, 2, 0)


def warp_labels(labels: Tensor, points: Tensor, ignore: int) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour resampling of (H, W) labels at pixel ``points`` → (labels, inside);
    pixels that read outside the map are ``ignore``."""
    h, w = labels.shape
    grid = points / torch.tensor([w / 2, h / 2], dtype=points.dtype)
    warped = F.grid_sample(
        labels[None, None].float() + 1, grid[None], mode="nearest", align_corners=False
    )[0, 0].long()
    inside = warped > 0
    return torch.where(inside, warped - 1, torch.full_like(warped, ignore)), inside


@torch.no_grad()
def sweep(loss: InverseFormLoss, labels: Tensor, ignore: int, radius: int, seed: int = 0) -> dict:
    """Distance per family, magnitude and held-out label map (N, H, W), with its summary."""
    size = tuple(labels.shape[-2:])
    ranges = sweep_ranges(size, loss.net.tile)
    g = torch.Generator().manual_seed(seed)
    target, _ = boundary_from_labels(labels, radius, ignore)
    families, pooled_moved, pooled_distance = {}, [], []
    for family, largest in ranges.items():
        distances, moved = (
            torch.zeros(len(LEVELS), len(labels)),
            torch.zeros(len(LEVELS), len(labels)),
        )
        for i, level in enumerate(LEVELS):
            warped, inside = [], []
            for j, label_map in enumerate(labels):
                field = displacement(family, level * largest, size, loss.net.tile, g)
                moved[i, j] = field.square().sum(-1).mean().sqrt()
                warped_map, visible = warp_labels(label_map, pixel_grid(size) + field, ignore)
                warped.append(warped_map)
                inside.append(visible)
            predicted, _ = boundary_from_labels(torch.stack(warped), radius, ignore)
            distances[i] = loss.per_map(predicted, target * torch.stack(inside)[:, None])
        means = distances.mean(1)
        families[family] = {
            "magnitudes": [level * largest for level in LEVELS],
            "unit": UNITS[family],
            "mean": means.tolist(),
            "std": distances.std(1, correction=min(1, distances.shape[1] - 1)).tolist(),
            "spearman": spearman(moved.flatten(), distances.flatten()),
            "monotone": bool((means[1:] > means[:-1]).all()),
        }
        pooled_moved.append(moved.flatten())
        pooled_distance.append(distances.flatten())
    identical = families["shift"]["mean"][0]
    quarter = families["shift"]["mean"][LEVELS.index(0.25)]  # 4 px at 240×320, tile 64
    return {
        "maps": len(labels),
        "size": list(size),
        "families": families,
        "identical": identical,
        "identical_vs_quarter_shift": identical / max(quarter, 1e-12),
        "spearman": spearman(torch.cat(pooled_moved), torch.cat(pooled_distance)),
        "monotone": all(f["monotone"] for f in families.values()),
    }


def spearman(a: Tensor, b: Tensor) -> float:
    """Rank correlation, ties given their mean rank."""

    def ranks(x: Tensor) -> Tensor:
        order = x.double().argsort()
        rank = torch.empty_like(order, dtype=torch.float64)
        rank[order] = torch.arange(len(x), dtype=torch.float64)
        _, groups = torch.unique(x, return_inverse=True)
        total = torch.zeros(groups.max() + 1, dtype=torch.float64).index_add_(0, groups, rank)
        counts = torch.bincount(groups).double()
        return (total / counts)[groups]

    return torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1].item()


def plot_sweep(result: dict, path: Path, title: str) -> None:
    """Mean ± std distance against the fraction of each family's range, one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for family, values in result["families"].items():
        largest = values["magnitudes"][-1]
        label = f"{family} 0–{largest:.3g} {values['unit']} (ρ {values['spearman']:.2f})"
        axes.errorbar(
            LEVELS, values["mean"], yerr=values["std"], marker="o", capsize=3, label=label
        )
    axes.set_xlabel("magnitude, fraction of the family's largest")
    axes.set_ylabel("InverseForm distance per map")
    axes.set_title(
        f"{title}\nSpearman {result['spearman']:.3f} over {result['maps']} held-out maps"
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def summary_lines(result: dict) -> list[str]:
    """The sweep in a few printable lines."""
    lines = []
    for family, values in result["families"].items():
        means = " ".join(f"{m:.2f}" for m in values["mean"])
        shape = "monotone" if values["monotone"] else "NOT monotone"
        lines.append(
            f"sweep {family:8s} 0–{values['magnitudes'][-1]:.3g} {values['unit']}: {means}"
            f"  (ρ {values['spearman']:.3f}, {shape})"
        )
    ratio = result["identical_vs_quarter_shift"]
    lines.append(
        f"sweep: identical maps {result['identical']:.3f} ({ratio:.1%} of the quarter-range "
        f"shift); Spearman(distance, displacement) {result['spearman']:.3f}"
    )
    return lines
