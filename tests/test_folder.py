"""The generic folder dataset: images + label PNGs + 16-bit depth PNGs in millimetres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.folder import FolderConfig, FolderDataset
from dense.errors import DenseError


def write_folder(root: Path, split: str = "train", count: int = 3) -> None:
    for kind in ("images", "labels", "depth"):
        (root / split / kind).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("floor\nwall\nchair\n")
    (root / "cam.txt").write_text("100 0 15.5\n0 100 11.5\n0 0 1\n")
    for i in range(count):
        y, x = np.mgrid[0:24, 0:32]
        rgb = np.stack([y * 10, x * 8, np.full_like(y, 50 * i)], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / split / "images" / f"frame{i}.png")
        labels = np.where(y < 8, 0, np.where(x < 16, 1, 2)).astype(np.uint8)
        labels[0, 0] = 255
        Image.fromarray(labels).save(root / split / "labels" / f"frame{i}.png")
        millimetres = (1000 + 100 * y + x).astype(np.uint16)
        millimetres[5, 5] = 0
        Image.fromarray(millimetres).save(root / split / "depth" / f"frame{i}.png")


def test_reads_images_labels_depth_and_intrinsics(tmp_path):
    write_folder(tmp_path)
    dataset = FolderDataset("train", FolderConfig(root=str(tmp_path)))
    assert len(dataset) == 3 and dataset.class_names == ("floor", "wall", "chair")
    sample = dataset[2]
    assert sample["image"][0, 2, 0] == pytest.approx(20 / 255) and sample["image"][
        2, 0, 0
    ] == pytest.approx(100 / 255)
    assert sample["segmentation"][0, 0] == 255 and sample["segmentation"][10, 20] == 2
    assert sample["depth"][0, 3, 7] == pytest.approx(1.307) and sample["depth"][0, 5, 5] == 0
    assert sample["K"][0, 2] == 15.5
    small = FolderDataset("train", FolderConfig(root=str(tmp_path), height=12, width=16))[0]
    assert small["image"].shape == (3, 12, 16) and small["K"][0, 0] == pytest.approx(50)


def test_clear_errors(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(DenseError, match="no split 'val'"):
        FolderDataset("val", FolderConfig(root=str(tmp_path)))
    Image.fromarray(np.full((24, 32), 3, np.uint8)).save(tmp_path / "train/labels/frame1.png")
    (tmp_path / "train/depth/frame0.png").unlink()
    dataset = FolderDataset("train", FolderConfig(root=str(tmp_path)))
    with pytest.raises(DenseError, match="frame0.png: missing"):
        dataset[0]
    with pytest.raises(DenseError, match="outside 0..2"):
        dataset[1]
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DenseError, match="classes.txt: missing"):
        FolderDataset("train", FolderConfig(root=str(tmp_path)))


def test_images_only(tmp_path):
    (tmp_path / "test" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "test/images/a.jpg")
    sample = FolderDataset("test", FolderConfig(root=str(tmp_path)))[0]
    assert set(sample) == {"image"} and torch.equal(sample["image"], torch.zeros(3, 4, 6))
