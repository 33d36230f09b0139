"""Boundary targets from label maps: this project's tensor version against the per-class scipy
distance-transform approach of the public InverseForm code, on 480×640 NYU 13-class maps.

Both mark pixels within ``radius`` of a class change. The baseline, as in the release, pads
each class mask and treats the image border and ignored pixels as "another class", so it also
marks pixels along the border and around unlabeled areas; the agreement printed below is
measured away from those places. Target: ≥ 20× faster.

    python experiments/benchmarks/boundary_speed.py [--maps 100] [--labels DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from dense.errors import run_script
from losses.boundary import boundary_from_labels, dilate_max

DEFAULT_LABELS = Path(__file__).resolve().parents[3] / "shared" / "nyuv2" / "labels13"


def scipy_boundaries(labels: np.ndarray, num_classes: int, radius: int, ignore: int) -> np.ndarray:
    """The release's recipe: per class, distance transforms of the padded one-hot mask."""
    edges = np.zeros(labels.shape, dtype=bool)
    for c in range(num_classes):
        if c == ignore:
            continue
        mask = np.pad(labels == c, 1).astype(np.float64)
        distance = distance_transform_edt(mask) + distance_transform_edt(1.0 - mask)
        distance = distance[1:-1, 1:-1]
        edges |= (distance > 0) & (distance <= radius)
    return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--maps", type=int, default=100)
    parser.add_argument("--radius", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(args.labels.glob("*.png"))[: args.maps]
    if not files:
        raise SystemExit(f"no label maps in {args.labels} (the NYU maps of ../shared/nyuv2)")
    labels = np.stack([np.asarray(Image.open(f)) for f in files]).astype(np.int64)
    tensor = torch.from_numpy(labels)

    start = time.perf_counter()
    ours = torch.cat(
        [boundary_from_labels(b, args.radius, ignore_index=0)[0] for b in tensor.split(8)]
    )
    ours_time = time.perf_counter() - start
    start = time.perf_counter()
    theirs = np.stack([scipy_boundaries(m, 14, args.radius, ignore=0) for m in labels])
    theirs_time = time.perf_counter() - start

    # compare away from the border and from unlabeled pixels, where the definitions differ
    near_ignore = dilate_max((tensor == 0)[:, None].float(), args.radius + 1)[:, 0] > 0
    inner = torch.zeros_like(near_ignore)
    inner[:, args.radius + 1 : -args.radius - 1, args.radius + 1 : -args.radius - 1] = True
    compare = inner & ~near_ignore
    a, b = ours[:, 0].bool()[compare], torch.from_numpy(theirs)[compare]
    agreement = (a & b).sum().item() / max(1, (a | b).sum().item())

    n, (h, w) = len(files), labels.shape[1:]
    print(f"boundaries of {n} NYU label maps at {h}x{w}, radius {args.radius}, 1 thread")
    print(f"  torch (this project)        {1000 * ours_time / n:8.2f} ms/map")
    print(f"  scipy per-class EDT         {1000 * theirs_time / n:8.2f} ms/map")
    speedup = theirs_time / ours_time
    verdict = "met" if speedup >= 20 else "MISSED"
    print(f"  speed-up                    {speedup:8.1f}x   (target >= 20: {verdict})")
    print(f"  agreement (IoU, interior)   {agreement:8.4f}")


if __name__ == "__main__":
    run_script(main)
