"""NYU-Depth-v2: the official labelled .mat file, and the preprocessed arrays of MTAN/LibMTL.

``nyuv2`` reads ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5) lazily with h5py: each
process (DataLoader worker) opens its own handle on first use and reads one image at a time.
h5py shows MATLAB arrays with their axes reversed — ``images`` is (N, 3, W, H) — so samples
are transposed back to (3, H, W). Labels are the 894 NYU classes, mapped to the 40 classes of
Gupta et al. or to 13 classes; the official 795/654 split. Mapping tables, class names and
the split ship in ``datasets/data/nyuv2``.

``nyuv2_mtan`` reads the preprocessed NYUv2 of MTAN and LibMTL:
``ROOT/{train,val}/{image,label,depth}/N.npy`` at 288×384, 13 classes (-1 = unlabelled).

Both give ``image`` (3, H, W) in [0, 1], ``segmentation`` (H, W) class indices with 255 =
ignore, ``depth`` (1, H, W) in metres with 0 = no reading (NaN, infinite, zero and negative
readings are all set to 0, which every depth loss and metric masks out) and the NYU colour
camera's ``K`` at the output size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch
from torch import Tensor

from dense.download import Download
from dense.errors import DenseError
from dense.geometry import nyu_intrinsics
from dense.transforms import check_size, resize

IGNORE_INDEX = 255
NYU_IMAGES = 1449
FILENAME = "nyu_depth_v2_labeled.mat"
NYU_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS = {"train": "train_idx.txt", "test": "test_idx.txt", "val": "test_idx.txt"}
DOWNLOAD_HINT = "get it with `dense data nyuv2 --root DIR`"


def package_lines(name: str) -> list[str]:
    text = (resources.files("datasets") / "data" / "nyuv2" / name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@cache
def nyu_class_names(classes: int) -> tuple[str, ...]:
    """The 13 or 40 class names; class index i is class id i + 1."""
    return tuple(package_lines(f"names{classes}.txt"))


@cache
def label_table(classes: int) -> np.ndarray:
    """Lookup from NYU class id (0..894) to class index (0..classes-1), unlabelled → 255."""
    to40 = np.array([0] + [int(v) for v in package_lines("map894to40.txt")], dtype=np.int64)
    if classes == 13:
        to13 = np.array([0] + [int(v) for v in package_lines("map40to13.txt")], dtype=np.int64)
        to40 = to13[to40]
    return np.where(to40 > 0, to40 - 1, IGNORE_INDEX).astype(np.uint8)


def official_split(split: str) -> np.ndarray:
    """0-based indices of the official split (``val`` is the 654 test images)."""
    if split not in SPLITS:
        raise DenseError(f"NYUv2 has no split '{split}' (choose train, val or test)")
    return np.array([int(v) - 1 for v in package_lines(SPLITS[split])])


def clean_depth(depth: Tensor) -> Tensor:
    """Metres with every missing or impossible reading (NaN, ±inf, ≤ 0) set to 0."""
    return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))


@dataclass
class NYUv2Config:
    path: str = "data/nyuv2/nyu_depth_v2_labeled.mat"  # the official labelled .mat file
    classes: Literal[13, 40] = 40
    height: int = 0  # output size; 0 keeps the stored 480×640
    width: int = 0


class NYUv2(torch.utils.data.Dataset):
    """The 1449 labelled NYU-Depth-v2 images from the official MATLAB v7.3 file."""

    Config = NYUv2Config
    ignore_index = IGNORE_INDEX
    DOWNLOAD = Download(FILENAME, NYU_URL, "data/nyuv2", lambda path: verify_file(path))

    def __init__(self, split: str, config: NYUv2Config) -> None:
        check_size(config.height, config.width)
        self.config = config
        self.path = Path(config.path)
        self.class_names = nyu_class_names(config.classes)
        self.table = label_table(config.classes)
        self.indices = official_split(split)
        self.handle: h5py.File | None = None
        self.handle_pid = -1
        with open_mat(self.path) as file:
            check_layout(file, self.path)

    def file(self) -> h5py.File:
        """This process's handle (DataLoader workers each open their own)."""
        if self.handle is None or self.handle_pid != os.getpid():
            self.handle, self.handle_pid = open_mat(self.path), os.getpid()
        return self.handle

    def __getstate__(self) -> dict:
        return {**self.__dict__, "handle": None, "handle_pid": -1}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = read_sample(self.file(), int(self.indices[index]), self.table, self.path)
        if self.config.height > 0:
            sample = resize(sample, self.config.height, self.config.width)
        return sample


def read_sample(file: h5py.File, i: int, table: np.ndarray, path: Path) -> dict[str, Tensor]:
    """Image ``i`` (0-based) of an open file at its stored size, labels mapped by ``table``."""
    try:
        image = file["images"][i].transpose(0, 2, 1)  # (3, W, H) → (3, H, W)
        depth = file["depths"][i].T
        ids = file["labels"][i].T
    except (OSError, KeyError, ValueError) as error:
        raise DenseError(
            f"{path}: cannot read image {i + 1}, truncated or corrupt ({error})"
        ) from None
    if ids.max(initial=0) >= len(table):
        raise DenseError(
            f"{path}: image {i + 1} has label id {int(ids.max())}, outside the 894 NYU classes"
        )
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)).float() / 255.0,
        "segmentation": torch.from_numpy(table[ids].astype(np.int64)),
        "depth": clean_depth(torch.from_numpy(np.ascontiguousarray(depth, np.float32)))[None],
        "K": nyu_intrinsics(*image.shape[1:]),
    }


def open_mat(path: Path) -> h5py.File:
    """The .mat file opened read-only, or a clear error."""
    if not path.is_file():
        raise DenseError(f"{path}: no such file ({DOWNLOAD_HINT})")
    try:
        return h5py.File(path, "r", rdcc_nbytes=16 << 20)
    except OSError as error:
        raise DenseError(
            f"{path}: not a readable MATLAB v7.3 file, truncated or corrupt "
            f"({error.args[0] if error.args else error}); {DOWNLOAD_HINT}"
        ) from None


def verify_file(path: Path) -> int:
    """Open the file, check its layout and read its last image; the number of images."""
    with open_mat(path) as file:
        check_layout(file, path)
        try:
            for name in ("images", "depths", "labels"):
                file[name][-1]
        except (OSError, ValueError) as error:
            raise DenseError(f"{path}: truncated or corrupt ({error})") from None
        return file["images"].shape[0]


def check_layout(file: h5py.File, path: Path) -> None:
    """Check the datasets the loader needs (names, axes, shapes, count); clear errors."""
    expected = {"images": 4, "depths": 3, "labels": 3}
    for name, ndim in expected.items():
        if name not in file or not isinstance(file[name], h5py.Dataset):
            raise DenseError(f"{path}: no dataset '{name}' (is this nyu_depth_v2_labeled.mat?)")
        if file[name].ndim != ndim:
            raise DenseError(f"{path}: '{name}' has {file[name].ndim} axes, expected {ndim}")
    count, channels, width, height = file["images"].shape
    if channels != 3:
        raise DenseError(
            f"{path}: 'images' has shape {file['images'].shape}, expected (N, 3, W, H)"
        )
    for name in ("depths", "labels"):
        if file[name].shape != (count, width, height):
            raise DenseError(
                f"{path}: '{name}' has shape {file[name].shape}, expected {(count, width, height)}"
            )
    if count != NYU_IMAGES:
        raise DenseError(f"{path}: {count} images, but the official split needs all {NYU_IMAGES}")
    if "names" in file:
        check_names(file, path)


def check_names(file: h5py.File, path: Path) -> None:
    """The file's class names (a MATLAB cell array of char arrays) are the 894 we map from."""
    try:
        references = file["names"][()].ravel()
        names = [matlab_string(file[reference]) for reference in references]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise DenseError(f"{path}: cannot read the class names 'names' ({error})") from None
    expected = list(package_lines("names894.txt"))
    if names != expected:
        raise DenseError(f"{path}: 'names' differs from the 894 NYU class names")


def matlab_string(dataset: h5py.Dataset) -> str:
    """A MATLAB char array (uint16 code units) as a Python string."""
    return "".join(map(chr, np.asarray(dataset[()]).ravel()))


@dataclass
class MTANConfig:
    root: str = "data/nyuv2_mtan"  # holds train/ and val/ (MTAN's preprocessed NYUv2)
    height: int = 0  # output size; 0 keeps the stored 288×384
    width: int = 0


class NYUv2MTAN(torch.utils.data.Dataset):
    """MTAN/LibMTL's preprocessed NYUv2: ``ROOT/SPLIT/{image,label,depth}/N.npy``.

    ``image`` (H, W, 3) floats in [0, 1], ``label`` (H, W) with 0..12 and -1 = unlabelled,
    ``depth`` (H, W, 1) metres, 0 = missing. Splits ``train`` (795) and ``val`` (654, the
    official test images); ``test`` means ``val``. ``normal/`` is not read.
    """

    Config = MTANConfig
    ignore_index = IGNORE_INDEX
    class_names = nyu_class_names(13)

    def __init__(self, split: str, config: MTANConfig) -> None:
        check_size(config.height, config.width)
        self.config = config
        self.folder = Path(config.root) / ("val" if split == "test" else split)
        if not (self.folder / "image").is_dir():
            raise DenseError(f"{self.folder}/image: not a folder (MTAN layout: ROOT/{split}/image)")
        stems = sorted(int(p.stem) for p in (self.folder / "image").glob("*.npy"))
        self.stems = stems

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, kind: str, index: int) -> np.ndarray:
        path = self.folder / kind / f"{self.stems[index]}.npy"
        try:
            return np.load(path)
        except FileNotFoundError:
            raise DenseError(f"{path}: missing") from None
        except (OSError, ValueError) as error:
            raise DenseError(f"{path}: not a readable .npy array ({error})") from None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image, label, depth = (self.load(kind, index) for kind in ("image", "label", "depth"))
        height, width = image.shape[:2]
        if image.shape != (height, width, 3) or label.shape != (height, width):
            raise DenseError(
                f"{self.folder}: sample {self.stems[index]} has image {image.shape} and label "
                f"{label.shape}, expected (H, W, 3) and (H, W)"
            )
        if depth.reshape(-1).size != height * width:
            raise DenseError(f"{self.folder}: sample {self.stems[index]}: depth is not H×W")
        label = np.rint(label).astype(np.int64)
        depth = torch.from_numpy(depth.astype(np.float32)).reshape(1, height, width)
        if label.max(initial=-1) > 12 or label.min(initial=0) < -1:
            raise DenseError(f"{self.folder}: sample {self.stems[index]} has labels outside -1..12")
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
            "segmentation": torch.from_numpy(np.where(label < 0, IGNORE_INDEX, label)),
            "depth": clean_depth(depth),
            "K": nyu_intrinsics(height, width),
        }
        if self.config.height > 0:
            sample = resize(sample, self.config.height, self.config.width)
        return sample
