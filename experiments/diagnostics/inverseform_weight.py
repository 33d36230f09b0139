"""How strongly two inverse networks push a misaligned boundary map, to carry a loss weight
from one to the other.

NYU label maps are shifted by known amounts; for each network the InverseForm loss between the
shifted and the true boundaries, and the norm of its gradient with respect to the shifted
(predicted) map, are measured per magnitude. A weight ``w`` tuned for network A gives the
same push with network B at ``w × |∇A| / |∇B|`` (the ratio printed, averaged over the
magnitudes).

    python experiments/diagnostics/inverseform_weight.py A.pt[:distance] B.pt[:distance] \
        [--labels ../shared/nyuv2/labels13] [--maps 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dense.errors import run_script
from dense.inverseform.loss import InverseFormLoss
from dense.inverseform.network import load_inverse_net
from dense.inverseform.sweep import displacement, pixel_grid, warp_labels
from losses.boundary import boundary_from_labels

SHIFTS = (1.0, 2.0, 4.0, 8.0, 16.0)  # pixels at 240×320


def read_labels(folder: Path, count: int) -> torch.Tensor:
    """(N, 240, 320) label maps (nearest-neighbour from the files' size)."""
    maps = []
    for path in sorted(folder.glob("*.png"))[:count]:
        image = Image.open(path).resize((320, 240), Image.NEAREST)
        maps.append(torch.from_numpy(np.asarray(image, dtype=np.int64)))
    return torch.stack(maps)


def push(loss: InverseFormLoss, labels: torch.Tensor, shift: float) -> tuple[float, float]:
    """Mean loss and mean per-map gradient norm at one shift magnitude."""
    g = torch.Generator().manual_seed(0)
    size = tuple(labels.shape[-2:])
    target, _ = boundary_from_labels(labels, 2, 0)
    warped = [
        warp_labels(m, pixel_grid(size) + displacement("shift", shift, size, 64, g), 0)[0]
        for m in labels
    ]
    predicted, _ = boundary_from_labels(torch.stack(warped), 2, 0)
    predicted = predicted.float().requires_grad_(True)
    value = loss(predicted, target.float())
    (gradient,) = torch.autograd.grad(value, predicted)
    return value.item(), (gradient.flatten(1).norm(dim=1) * len(labels)).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs=2, help="FILE or FILE:distance (pixels, euclidean)")
    parser.add_argument("--labels", type=Path, default=Path("../shared/nyuv2/labels13"))
    parser.add_argument("--maps", type=int, default=40)
    args = parser.parse_args()
    labels = read_labels(args.labels, args.maps)
    norms = []
    for spec in args.networks:
        path, _, distance = spec.partition(":")
        loss = InverseFormLoss(load_inverse_net(path), distance or "pixels")
        rows = [push(loss, labels, s) for s in SHIFTS]
        norms.append(np.array([r[1] for r in rows]))
        print(f"{spec}:")
        for shift, (value, norm) in zip(SHIFTS, rows, strict=True):
            print(f"  shift {shift:4.1f} px: loss {value:.3f}, |∇| per map {norm:.4f}")
    ratio = norms[0] / norms[1]
    print("gradient ratio A ÷ B per shift: " + " ".join(f"{r:.3f}" for r in ratio))
    print(f"a weight w for A pushes like w × {ratio.mean():.3f} for B (mean over shifts)")


if __name__ == "__main__":
    run_script(main)
