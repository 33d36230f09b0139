"""Random-access read speed of NYU-Depth-v2 samples from a MATLAB v7.3 .mat file.

Writes a file in the official layout (480×640, one gzip chunk per image, as MATLAB does) from
synthetic-room renders, so it compresses like real images, then reads random images with
the loader's ``read_sample``. Ours: one handle kept open per process with a 16 MB chunk
cache (what each DataLoader worker does). Baseline, measured in the same run: opening the
file for every sample, the usual way to make h5py safe in DataLoader workers.

    python experiments/benchmarks/nyuv2_read.py [--images 48] [--reads 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datasets.nyuv2 import label_table, open_mat, read_sample  # noqa: E402
from datasets.synthetic import SyntheticConfig, SyntheticRooms  # noqa: E402
from dense.errors import run_script
from tests.nyu_mat import names894, write_mat  # noqa: E402


def rendered_samples(count: int) -> list[dict[str, np.ndarray]]:
    """Synthetic rooms at 480×640 with labels turned into NYU ids of the same 13 classes."""
    rooms = SyntheticRooms("train", SyntheticConfig(height=480, width=640))
    names = names894()
    nyu_id = np.array([names.index(n) + 1 for n in ("bed", "book", "ceiling", "chair", "floor",
                       "cabinet", "box", "picture", "sofa", "table", "television", "wall",
                       "window")] + [0] * 243, dtype=np.uint16)  # fmt: skip
    samples = []
    for index in range(count):
        room = rooms[index]
        samples.append({
            "image": (room["image"].permute(1, 2, 0) * 255).round().byte().numpy(),
            "depth": room["depth"][0].numpy(),
            "labels": nyu_id[room["segmentation"].numpy()],
        })  # fmt: skip
    return samples


def reads_per_second(path: Path, order: list[int], reopen: bool) -> float:
    table = label_table(40)
    start = time.perf_counter()
    file = None if reopen else open_mat(path)
    for index in order:
        if reopen:
            with h5py.File(path, "r") as handle:
                read_sample(handle, index, table, path)
        else:
            read_sample(file, index, table, path)
    if file is not None:
        file.close()
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        path = write_mat(Path(folder) / "nyu.mat", rendered_samples(args.images), names=False)
        order = [random.Random(0).randrange(args.images) for _ in range(args.reads)]
        reads_per_second(path, order[:10], reopen=False)  # warm the page cache
        ours = reads_per_second(path, order, reopen=False)
        baseline = reads_per_second(path, order, reopen=True)
        size = path.stat().st_size / args.images / 1e6
    print(f"NYUv2 .mat random access, 480x640, {args.images} images ({size:.2f} MB each), "
          f"{args.reads} reads, 1 thread")  # fmt: skip
    print(f"  images/s, one open handle      {ours:8.1f}")
    print(f"  images/s, reopening per sample {baseline:8.1f}")
    print(f"  ratio                          {ours / baseline:8.2f}x")


if __name__ == "__main__":
    run_script(main)
