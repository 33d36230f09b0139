"""Prediction on image files: each task writes its outputs next to the image's name."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dense.assemble import Trained
from dense.errors import DenseError
from dense.imageio import IMAGE_SUFFIXES, read_rgb


def find_images(inputs: list[str]) -> list[Path]:
    """Expand files and folders (their image files, sorted) into a list of paths."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DenseError(f"no image files in folder {path}")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise DenseError(f"input not found: {path}")
    return paths


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
