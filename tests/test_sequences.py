"""The folder-of-sequences dataset (SC-Depth's layout) for self-supervised depth."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.sequences import Sequences, SequencesConfig
from dense.errors import DenseError

K_TEXT = "100 0 31.5\n0 100 23.5\n0 0 1\n"


def write_scene(folder: Path, frames: int, depth: bool = False, size=(48, 64)) -> None:
    folder.mkdir(parents=True)
    (folder / "cam.txt").write_text(K_TEXT)
    for i in range(frames):  # frame i is filled with grey level 10·i: the order is visible
        pixels = np.full((*size, 3), 10 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        if depth:
            (folder / "depth").mkdir(exist_ok=True)
            millimetres = np.full(size, 1000 + i, dtype=np.uint16)
            Image.fromarray(millimetres).save(folder / "depth" / f"{i}.png")


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "seq"
    write_scene(root / "a", 12, depth=True)
    write_scene(root / "b", 5)
    (root / "train.txt").write_text("a\nb\n")
    (root / "val.txt").write_text("a\n")
    return root


def grey(image: torch.Tensor) -> int:
    return round(image.mean().item() * 255 / 10)


def test_targets_neighbours_and_sequence_ends(tmp_path):
    root = make_root(tmp_path)
    dataset = Sequences("train", SequencesConfig(root=str(root), frame_stride=2))
    assert len(dataset) == (12 - 4) + (5 - 4)  # the first and last 2 frames are sources only
    first = dataset[0]  # scene a, frames sorted naturally (2 before 10)
    assert (grey(first["prev_image"]), grey(first["image"]), grey(first["next_image"])) == (0, 2, 4)
    last_of_a = dataset[7]
    assert grey(last_of_a["image"]) == 9 and grey(last_of_a["next_image"]) == 11
    assert first["depth"].shape == (1, 48, 64)
    assert first["depth"][0, 0, 0].item() == pytest.approx(1.002)
    assert "depth" not in dataset[8]  # scene b has no ground truth
    assert torch.equal(first["K"], torch.tensor([[100.0, 0, 31.5], [0, 100, 23.5], [0, 0, 1]]))
    assert len(Sequences("val", SequencesConfig(root=str(root)))) == 10


def test_resizing_scales_the_intrinsics(tmp_path):
    root = make_root(tmp_path)
    sample = Sequences("train", SequencesConfig(root=str(root), height=24, width=32))[0]
    assert sample["image"].shape == sample["prev_image"].shape == (3, 24, 32)
    assert sample["depth"].shape == (1, 24, 32)
    # pixel centres at integers: cx' = (cx + 0.5)·s − 0.5
    assert sample["K"][0, 0].item() == pytest.approx(50.0)
    assert sample["K"][0, 2].item() == pytest.approx(15.5)
    assert sample["K"][1, 2].item() == pytest.approx(11.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 2 3\n4 5 6\n7 8\n", "9 numbers"),
        ("fx fy\n", "9 numbers"),
        ("1 0 0 0 1 0 1 1 1", "pinhole"),
    ],
)
def test_a_malformed_cam_txt_is_named(tmp_path, content, message):
    root = make_root(tmp_path)
    (root / "a" / "cam.txt").write_text(content)
    with pytest.raises(DenseError, match=rf"a/cam\.txt.*{message}"):
        Sequences("train", SequencesConfig(root=str(root)))


def test_too_few_frames_and_missing_lists_are_clear_errors(tmp_path):
    root = make_root(tmp_path)
    with pytest.raises(DenseError, match=r"seq/b: 5 frames, but frame_stride = 3 needs at least 7"):
        Sequences("train", SequencesConfig(root=str(root), frame_stride=3))
    with pytest.raises(DenseError, match="test.txt: missing"):
        Sequences("test", SequencesConfig(root=str(root)))
    (root / "train.txt").unlink()  # without a list, every scene folder trains
    assert len(Sequences("train", SequencesConfig(root=str(root)))) == 10 + 3
    with pytest.raises(DenseError, match="not a folder"):
        Sequences("train", SequencesConfig(root=str(tmp_path / "nowhere")))


def test_self_supervised_training_on_sequences(tiny, tmp_path):
    from dense.trainer import train

    root = make_root(tmp_path)
    config = tiny(
        "tasks={}",
        "tasks.selfsup_depth.scales=2",
        "data.dataset=sequences",
        f"data.options={{root = '{root}', height = 32, width = 48}}",
        "train.steps=2",
    )
    assert train(config).metrics["selfsup_depth"]["abs_rel"] > 0  # evaluated on scene a
    (root / "val.txt").write_text("b\n")  # no ground truth to evaluate against
    with pytest.raises(DenseError, match="batch key 'depth'"):
        train(config, overwrite=True)
