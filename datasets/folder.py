"""Custom RGB-D data as plain files: images, label PNGs and 16-bit depth PNGs in millimetres.

    ROOT/
      classes.txt              class names, one per line: label value i is class i
      cam.txt                  optional 3×3 intrinsics of the stored images
      SPLIT/                   train, val, test, ...
        images/NAME.jpg|png    RGB
        labels/NAME.png        optional: single-channel class indices, ``ignore_index`` = none
        depth/NAME.png         optional: 16-bit depth in millimetres, 0 = no reading

A sample has ``segmentation`` and ``depth`` where the split has those folders; every image
must then have its label and depth file (the error names the one missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datasets.sequences import natural_key, read_intrinsics
from dense.data import data_root
from dense.errors import DenseError
from dense.imageio import IMAGE_SUFFIXES, read_depth_png, read_labels, read_rgb
from dense.transforms import check_size, resize


@dataclass
class FolderConfig:
    root: str = ""  # the folder holding classes.txt and one folder per split
    ignore_index: int = 255  # label value of unlabelled pixels
    height: int = 0  # output size; 0 keeps the stored size (then all images must match)
    width: int = 0


class FolderDataset(torch.utils.data.Dataset):
    """Images with optional label and depth PNGs of the same name; see the module docstring."""

    Config = FolderConfig

    def __init__(self, split: str, config: FolderConfig) -> None:
        root = data_root(config.root)
        check_size(config.height, config.width)
        self.config = config
        self.ignore_index = config.ignore_index
        names = root / "classes.txt"
        self.class_names = (
            tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
            if names.is_file()
            else ()
        )
        self.K = read_intrinsics(root / "cam.txt") if (root / "cam.txt").exists() else None
        folder = root / split
        if not (folder / "images").is_dir():
            raise DenseError(f"{folder / 'images'}: not a folder (no split '{split}' in {root})")
        self.images = sorted(
            (p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
            key=natural_key,
        )
        self.targets = [kind for kind in ("labels", "depth") if (folder / kind).is_dir()]
        if "labels" in self.targets and not self.class_names:
            raise DenseError(f"{names}: missing (labels need the class names, one per line)")
        self.folder = folder

    def __len__(self) -> int:
        return len(self.images)

    def target(self, kind: str, image: Path) -> Path:
        path = self.folder / kind / f"{image.stem}.png"
        if not path.is_file():
            raise DenseError(f"{path}: missing ({kind} for {image.name})")
        return path

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = self.images[index]
        sample = {"image": read_rgb(image)}
        height, width = sample["image"].shape[-2:]
        if "labels" in self.targets:
            labels = read_labels(self.target("labels", image))
            valid = labels != self.ignore_index
            if (labels[valid] >= len(self.class_names)).any() or (labels[valid] < 0).any():
                raise DenseError(
                    f"{self.target('labels', image)}: label values outside 0.."
                    f"{len(self.class_names) - 1} (and ignore_index {self.ignore_index})"
                )
            sample["segmentation"] = labels
        if "depth" in self.targets:
            sample["depth"] = read_depth_png(self.target("depth", image))
        for key in ("segmentation", "depth"):
            if key in sample and sample[key].shape[-2:] != (height, width):
                raise DenseError(f"{self.folder}: {key} of {image.name} is not {height}×{width}")
        if self.K is not None:
            sample["K"] = self.K.clone()
        if self.config.height > 0:
            sample = resize(sample, self.config.height, self.config.width)
        return sample
