"""Writes small files in the layout of the official nyu_depth_v2_labeled.mat (MATLAB v7.3).

MATLAB stores arrays column-major, so h5py sees every axis reversed: an H×W×3×N image stack
is an (N, 3, W, H) dataset. Cell arrays are datasets of object references into ``#refs#``,
char arrays are uint16 code units. A v7.3 file starts with a 512-byte MATLAB header (the HDF5
user block).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import h5py
import numpy as np

HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 "
COUNT = 1449


def names894() -> list[str]:
    text = (resources.files("datasets") / "data" / "nyuv2" / "names894.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def pattern(index: int, height: int, width: int) -> dict[str, np.ndarray]:
    """The sample as MATLAB sees it (H×W...): asymmetric, and tagged with its index."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(10 * y + x) % 256, np.full_like(y, index % 256), np.full_like(y, 200)], -1)
    depth = (1 + 0.1 * y + 0.01 * x).astype(np.float32)
    depth[0, 0], depth[0, 1] = np.nan, 0.0  # missing readings
    ids = names894()
    labels = np.zeros((height, width), np.uint16)
    labels[1, :] = ids.index("wall") + 1
    labels[2, :] = ids.index("bed") + 1
    labels[3, :] = ids.index("television") + 1
    labels[4, :] = ids.index("floor") + 1
    return {"image": image.astype(np.uint8), "depth": depth, "labels": labels}


def write_nyu_mat(
    path: Path,
    height: int = 6,
    width: int = 8,
    count: int = COUNT,
    names: bool = True,
    skip: tuple[str, ...] = (),
) -> Path:
    """A v7.3 file with ``count`` images of ``pattern`` (leaving out the datasets in ``skip``)."""
    samples = [pattern(i, height, width) for i in range(count)]
    return write_mat(path, samples, names, skip)


def write_mat(
    path: Path, samples: list[dict[str, np.ndarray]], names: bool = True, skip: tuple = ()
) -> Path:
    """Samples (``image`` H×W×3 uint8, ``depth`` H×W float32 metres, ``labels`` H×W uint16
    NYU ids) as a v7.3 file: one gzip-compressed chunk per image, as MATLAB writes them."""
    arrays = {
        "images": np.stack([s["image"] for s in samples], -1),  # H×W×3×N
        "depths": np.stack([s["depth"] for s in samples], -1),  # H×W×N
        "labels": np.stack([s["labels"] for s in samples], -1),
    }
    classes = {"images": "uint8", "depths": "single", "labels": "uint16"}
    with h5py.File(path, "w", userblock_size=512) as file:
        for name, array in arrays.items():
            if name in skip:
                continue
            reversed_axes = array.transpose(*range(array.ndim)[::-1])
            chunks = (1, *reversed_axes.shape[1:])
            dataset = file.create_dataset(
                name, data=reversed_axes, chunks=chunks, compression="gzip", compression_opts=3
            )
            dataset.attrs["MATLAB_class"] = np.bytes_(classes[name])
        if names:
            write_names(file)
    with path.open("r+b") as file:
        file.write(HEADER.ljust(116) + bytes(8) + b"\x00\x02IM")  # text, subsystem, version
    return path


def write_names(file: h5py.File) -> None:
    """``names``: a MATLAB 894×1 cell, i.e. (1, 894) references to uint16 char arrays."""
    refs = file.create_group("#refs#")
    references = []
    for i, name in enumerate(names894()):
        chars = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], np.uint16))
        chars.attrs["MATLAB_class"] = np.bytes_("char")
        references.append(chars.ref)
    cell = file.create_dataset("names", data=np.array([references], dtype=h5py.ref_dtype))
    cell.attrs["MATLAB_class"] = np.bytes_("cell")
