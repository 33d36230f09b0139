"""NYU-Depth-v2 from a small file in the official MATLAB v7.3 layout, and the MTAN format."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.nyuv2 import MTANConfig, NYUv2, NYUv2Config, NYUv2MTAN, nyu_class_names
from dense.config import load_config
from dense.errors import DenseError
from dense.geometry import nyu_intrinsics
from dense.trainer import train
from tests.conftest import ROOT
from tests.nyu_mat import pattern, write_nyu_mat

SHARED = Path(__file__).resolve().parents[2] / "shared" / "nyuv2"


@pytest.fixture
def mat(nyu_mat) -> Path:
    return nyu_mat


def nyu(path: Path, split: str = "train", **options) -> NYUv2:
    return NYUv2(split, NYUv2Config(path=str(path), **options))


def test_the_file_is_read_in_matlab_orientation(mat):
    dataset = nyu(mat)
    sample = dataset[0]
    expected = pattern(int(dataset.indices[0]), 6, 8)
    image = (sample["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert image.shape == (6, 8, 3)
    assert np.array_equal(image, expected["image"])  # row y, column x: 10 y + x
    depth = sample["depth"][0]
    assert depth.shape == (6, 8)
    assert depth[0, 0] == 0 and depth[0, 1] == 0  # NaN and 0 readings → 0 (masked)
    assert torch.allclose(depth[1:], torch.from_numpy(expected["depth"][1:]))
    assert torch.equal(sample["K"], nyu_intrinsics(6, 8))


def test_split_is_the_official_one(mat):
    train, test = nyu(mat, "train"), nyu(mat, "test")
    assert (len(train), len(test)) == (795, 654)
    assert len(nyu(mat, "val")) == 654  # NYUv2 has no val split: it is the test split
    indices = (
        [int(v) for v in (SHARED / "train_idx.txt").read_text().split()]
        if (SHARED.is_dir())
        else None
    )
    for position in (0, 1, 400, 794):
        image_index = int(train.indices[position])
        tag = int(round(train[position]["image"][1, 0, 0].item() * 255))
        assert tag == image_index % 256  # the sample really is that image of the file
        if indices:
            assert image_index == indices[position] - 1
    assert not set(train.indices) & set(test.indices)
    assert sorted([*train.indices, *test.indices]) == list(range(1449))


@pytest.mark.parametrize(
    ("classes", "expected"),
    [(40, ["wall", "bed", "television", "floor"]), (13, ["wall", "bed", "tv", "floor"])],
)
def test_label_mappings_on_known_names(mat, classes, expected):
    dataset = nyu(mat, classes=classes)
    assert len(dataset.class_names) == classes
    labels = dataset[0]["segmentation"]
    assert labels.dtype == torch.int64
    assert (labels[0] == 255).all() and (labels[5] == 255).all()  # id 0: unlabelled
    names = [dataset.class_names[int(labels[row, 0])] for row in (1, 2, 3, 4)]
    assert names == expected
    assert nyu_class_names(13)[11] == "wall"


def test_resizing_keeps_labels_and_scales_intrinsics(mat):
    sample, stored = nyu(mat, height=12, width=16)[0], nyu(mat)[0]
    assert sample["image"].shape == (3, 12, 16)
    assert torch.equal(sample["segmentation"][::2, ::2], stored["segmentation"])  # nearest
    assert torch.allclose(sample["K"], nyu_intrinsics(12, 16))


def test_lazy_handles_in_dataloader_workers(mat):
    dataset = nyu(mat, "test")
    assert dataset.handle is None  # the constructor's handle is closed again
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.handle is None
    single = [dataset[i]["image"] for i in range(4)]
    loader = DataLoader(torch.utils.data.Subset(dataset, range(4)), batch_size=2, num_workers=2)
    batched = torch.cat([batch["image"] for batch in loader])
    assert torch.equal(batched, torch.stack(single))


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DenseError, match="dense data nyuv2"):
        nyu(tmp_path / "absent.mat")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_truncated_or_corrupt_files_give_clear_errors(mat, tmp_path, damage):
    broken = tmp_path / "broken.mat"
    data = mat.read_bytes()
    data = data[: len(data) // 2] if damage == "truncated" else b"\x00" * 512 + data[512:][::-1]
    broken.write_bytes(data)
    with pytest.raises(DenseError, match="truncated or corrupt"):
        dataset = nyu(broken, "test")
        for i in range(len(dataset)):
            dataset[i]


def test_missing_datasets_and_wrong_shapes(tmp_path):
    with pytest.raises(DenseError, match="no dataset 'labels'"):
        nyu(write_nyu_mat(tmp_path / "a.mat", skip=("labels",)))
    with pytest.raises(DenseError, match="1449"):
        nyu(write_nyu_mat(tmp_path / "b.mat", count=10))
    path = write_nyu_mat(tmp_path / "c.mat")
    with h5py.File(path, "r+") as file:
        del file["depths"]
        file["depths"] = np.zeros((1449, 8, 5), np.float32)
    with pytest.raises(DenseError, match="'depths' has shape"):
        nyu(path)
    with h5py.File(path, "r+") as file:
        del file["depths"]
        file["depths"] = np.zeros((1449, 8, 6), np.float32)
        file["names"][0, 3] = file["names"][0, 4]
    with pytest.raises(DenseError, match="'names' differs"):
        nyu(path)


def test_label_ids_outside_the_894_classes(tmp_path):
    path = write_nyu_mat(tmp_path / "ids.mat", names=False)
    with h5py.File(path, "r+") as file:
        labels = file["labels"][0]
        labels[3, 2] = 900
        file["labels"][0] = labels
    with pytest.raises(DenseError, match="image 1 has label id 900"):
        nyu(path, "test")[0]  # image 1 is a test image


def test_nyu_experiment_trains_on_the_file(nyu_mat, tmp_path):
    """experiments/nyuv2_seg13_depth_resnet50.toml end to end on the small file (tiny encoder
    and sizes): augmentation, both tasks, NYU depth evaluation."""
    overrides = [
        f"data.options.path={nyu_mat}",
        f"run.out_dir={tmp_path}",
        "run.device=cpu",
        "model.encoder=test_resnet",
        "model.pretrained=false",
        "model.decoder_channels=16",
        "data.options.height=24",
        "data.options.width=32",
        "data.augment.crop_height=24",
        "data.augment.crop_width=32",
        "data.augment.colour_jitter=0.2",
        "data.batch_size=2",
        "data.num_workers=0",
        "train.steps=2",
        "train.eval_every=2",
        "train.eval_batches=2",
        "train.preview_samples=1",
    ]
    config = load_config(ROOT / "experiments/nyuv2_seg13_depth_resnet50.toml", overrides)
    result = train(config)
    assert result.step == 2
    assert len(result.metrics["segmentation"]) > 0 and result.metrics["depth"]["abs_rel"] > 0


def write_mtan(root: Path, split: str, count: int) -> None:
    for kind in ("image", "label", "depth", "normal"):
        (root / split / kind).mkdir(parents=True)
    for i in range(count):
        y, x = np.mgrid[0:6, 0:8]
        image = np.stack([y / 10, x / 10, np.full((6, 8), i / 10)], -1).astype(np.float32)
        label = np.full((6, 8), -1.0)
        label[1:, :] = (y[1:] + x[1:]) % 13
        depth = (1 + y + 0.1 * x)[..., None].astype(np.float32)
        depth[0, 0] = 0
        np.save(root / split / "image" / f"{i}.npy", image)
        np.save(root / split / "label" / f"{i}.npy", label)
        np.save(root / split / "depth" / f"{i}.npy", depth)
        np.save(root / split / "normal" / f"{i}.npy", np.zeros((6, 8, 3), np.float32))


def test_mtan_format(tmp_path):
    write_mtan(tmp_path, "train", 3)
    write_mtan(tmp_path, "val", 2)
    train = NYUv2MTAN("train", MTANConfig(root=str(tmp_path)))
    assert len(train) == 3 and len(NYUv2MTAN("test", MTANConfig(root=str(tmp_path)))) == 2
    sample = train[2]
    assert torch.allclose(sample["image"][0, :, 0], torch.arange(6) / 10)  # rows are y
    assert torch.allclose(sample["image"][2], torch.full((6, 8), 0.2))
    assert (sample["segmentation"][0] == 255).all()
    assert sample["segmentation"][2, 3] == 5 and sample["depth"][0, 0, 0] == 0
    assert sample["depth"][0, 2, 3] == pytest.approx(3.3)
    assert train.class_names == nyu_class_names(13)


def test_mtan_bad_input(tmp_path):
    write_mtan(tmp_path, "train", 2)
    np.save(tmp_path / "train" / "label" / "1.npy", np.full((6, 8), 13.0))
    dataset = NYUv2MTAN("train", MTANConfig(root=str(tmp_path)))
    with pytest.raises(DenseError, match="labels outside -1..12"):
        dataset[1]
    (tmp_path / "train" / "depth" / "0.npy").unlink()
    with pytest.raises(DenseError, match="0.npy: missing"):
        dataset[0]
    with pytest.raises(DenseError, match="not a folder"):
        NYUv2MTAN("val", MTANConfig(root=str(tmp_path)))
