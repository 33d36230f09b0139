"""Synthetic-room generation speed: frames per second at 240×320 on one CPU core.

Baseline, measured in the same run: the same renderer with screen-rectangle culling switched
off (every box slab-tested against every pixel). Target: ≥ 50 frames/s.

    python experiments/benchmarks/synthetic_fps.py [--frames 200] [--height 240 --width 320]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch

from datasets import synthetic
from datasets.synthetic import SyntheticConfig, SyntheticRooms
from dense.errors import run_script


def frames_per_second(dataset: SyntheticRooms, frames: int) -> float:
    dataset[0]  # warm caches (texture rows, camera rays)
    start = time.perf_counter()
    for index in range(frames):
        dataset[index]
    return frames / (time.perf_counter() - start)


def no_culling(bounds, world_to_cam, origin, K, height, width):
    full = (slice(0, height), slice(0, width))
    return [(i, full) for i in range(len(bounds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = SyntheticRooms("train", SyntheticConfig(height=args.height, width=args.width))
    fps = frames_per_second(dataset, args.frames)
    with mock.patch.object(synthetic, "visible_boxes", no_culling):
        baseline = frames_per_second(dataset, max(20, args.frames // 5))
    print(f"synthetic rooms at {args.height}x{args.width}, 1 thread, {args.frames} frames")
    verdict = "met" if fps >= 50 else "MISSED"
    print(f"  frames/s                 {fps:8.1f}   (target >= 50: {verdict})")
    print(f"  frames/s without culling {baseline:8.1f}")
    print(f"  ratio                    {fps / baseline:8.2f}x")


if __name__ == "__main__":
    run_script(main)
