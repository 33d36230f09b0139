"""Prediction on image files: each task writes its outputs next to the image's name."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from dense.assemble import Trained
from dense.errors import DenseError
from dense.imageio import IMAGE_SUFFIXES, read_array, read_rgb


def find_images(inputs: list[str], out_dir: Path, tasks: list[str]) -> list[Path]:
    """Expand files and folders (their image files, sorted) into a list of paths. A folder
    that is also ``out_dir`` loses the files named like predictions (``NAME_TASK*``)."""
    predictions = re.compile(rf".+_(?:{'|'.join(map(re.escape, tasks))})[0-9]*")
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if same_folder(path, out_dir):
                found = [p for p in found if not predictions.fullmatch(p.stem)]
            if not found:
                raise DenseError(f"no image files in folder {path}")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise DenseError(f"input not found: {path}")
    return unique_outputs(paths)


def same_folder(a: Path, b: Path) -> bool:
    return b.is_dir() and a.resolve() == b.resolve()


def unique_outputs(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats; two files whose outputs would share a name are refused."""
    by_stem: dict[str, Path] = {}
    for path in dict.fromkeys(p.resolve() for p in paths):
        if (other := by_stem.setdefault(path.stem, path)) != path:
            raise DenseError(
                f"{other} and {path} would write the same outputs ({path.stem}_*): rename one "
                "or predict them into separate --out folders"
            )
    return list(by_stem.values())


def check_readable(paths: list[Path]) -> None:
    """Open every image's header, so a bad file is reported before anything is written."""
    for path in paths:
        read_array(path, lambda image: image.size)


@torch.no_grad()
def predict_files(
    trained: Trained, paths: list[Path], out_dir: Path, size: tuple[int, int] | None = None
) -> list[Path]:
    """Predict every image at ``size`` (default: as trained), resize back, save per task."""
    out_dir.mkdir(parents=True, exist_ok=True)
    size = size or training_size(trained)
    written: list[Path] = []
    for path in paths:
        image = read_rgb(path)
        height, width = image.shape[-2:]
        batch = image[None]
        if size is not None:
            batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        predictions = trained.model(batch)
        for name, task in trained.tasks.items():
            raw = predictions[name]
            if torch.is_tensor(raw):
                raw = F.interpolate(raw.float(), size=(height, width), mode="bilinear")
            written += task.save(task.decode(raw)[0], out_dir / path.stem)
    return written


def training_size(trained: Trained) -> tuple[int, int] | None:
    """The dataset's ``height``/``width`` options; None where it kept the stored size (0)."""
    options = trained.config.data.options
    if options.get("height", 0) > 0 and options.get("width", 0) > 0:
        return options["height"], options["width"]
    return None
