"""Video sequences in SC-Depth's folder format, for self-supervised depth on real video.

    ROOT/
      train.txt, val.txt        scene folder names, one per line (train.txt optional: every
                                folder holding a cam.txt is a training scene)
      SCENE/
        cam.txt                 3×3 intrinsics of the frames as stored, whitespace-separated
        000000.jpg ...          frames in order (names sorted naturally: 2 before 10)
        depth/000000.png ...    optional ground truth: 16-bit PNG in millimetres, 0 = none

A sample is a target frame with its neighbours ``frame_stride`` frames before and after
(``prev_image``, ``next_image``), the intrinsics ``K`` scaled to the output size and, where the
scene has it, ``depth``. Sequence ends: the first and last ``frame_stride`` frames of a scene
serve only as source frames, never as targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dense.data import data_root
from dense.errors import DenseError
from dense.imageio import IMAGE_SUFFIXES, read_depth_png, read_rgb
from dense.transforms import check_size, resize


@dataclass
class SequencesConfig:
    root: str = ""  # the folder holding the scenes and the split lists
    frame_stride: int = 1  # frames between the target and each source frame
    height: int = 0  # output size; 0 keeps the stored size (then all frames must match)
    width: int = 0


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_intrinsics(path: Path) -> Tensor:
    """The 3×3 matrix in a cam.txt; a clear error naming the file otherwise."""
    if not path.is_file():
        raise DenseError(f"{path}: missing (each scene needs its 3×3 intrinsics in cam.txt)")
    try:
        values = [float(v) for v in path.read_text().split()]
    except ValueError:
        raise DenseError(f"{path}: cam.txt must hold 9 numbers (a 3×3 matrix)") from None
    if len(values) != 9:
        raise DenseError(f"{path}: cam.txt must hold 9 numbers (a 3×3 matrix), not {len(values)}")
    K = torch.tensor(values, dtype=torch.float32).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2].tolist() != [0.0, 0.0, 1.0]:
        raise DenseError(f"{path}: not a pinhole matrix [[fx 0 cx] [0 fy cy] [0 0 1]]")
    return K


@dataclass(frozen=True)
class Scene:
    folder: Path
    frames: tuple[Path, ...]
    K: Tensor


class Sequences(torch.utils.data.Dataset):
    """Target frames with their neighbours from folders of ordered video frames."""

    Config = SequencesConfig

    def __init__(self, split: str, config: SequencesConfig) -> None:
        root = data_root(config.root)
        if config.frame_stride < 1:
            raise DenseError("data.options.frame_stride must be at least 1")
        check_size(config.height, config.width)
        self.config = config
        self.scenes = [self.load_scene(folder) for folder in scene_folders(root, split)]
        stride = config.frame_stride
        self.samples = [
            (s, i)
            for s, scene in enumerate(self.scenes)
            for i in range(stride, len(scene.frames) - stride)
        ]

    def load_scene(self, folder: Path) -> Scene:
        frames = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key
        )
        needed = 2 * self.config.frame_stride + 1
        if len(frames) < needed:
            raise DenseError(
                f"{folder}: {len(frames)} frames, but frame_stride = "
                f"{self.config.frame_stride} needs at least {needed}"
            )
        return Scene(folder, tuple(frames), read_intrinsics(folder / "cam.txt"))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        scene_index, frame = self.samples[index]
        scene, stride = self.scenes[scene_index], self.config.frame_stride
        sample = {"image": read_rgb(scene.frames[frame]), "K": scene.K.clone()}
        for name, offset in (("prev", -stride), ("next", stride)):
            source = read_rgb(scene.frames[frame + offset])
            if source.shape != sample["image"].shape:
                raise DenseError(f"{scene.frames[frame + offset]}: size differs from its scene")
            sample[f"{name}_image"] = source
        depth_file = scene.folder / "depth" / f"{scene.frames[frame].stem}.png"
        if depth_file.is_file():
            sample["depth"] = read_depth_png(depth_file)
        if self.config.height > 0:
            sample = resize(sample, self.config.height, self.config.width)
        return sample


def scene_folders(root: Path, split: str) -> list[Path]:
    """The scenes listed in ROOT/<split>.txt (train: every scene folder if there is none)."""
    listing = root / f"{split}.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        folders = [root / name for name in names]
        for folder in folders:
            if not folder.is_dir():
                raise DenseError(f"{listing}: scene folder not found: {folder}")
        return folders
    if split == "train":
        return sorted(p for p in root.iterdir() if (p / "cam.txt").is_file())
    raise DenseError(f"{listing}: missing (list the {split} scene folders in it, one per line)")
