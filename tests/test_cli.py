"""The `dense` command as a user meets it: outputs on success, one line and exit 2 on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dense.cli import main
from dense.trainer import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from dense.config import config_from_dict
    from tests.conftest import tiny_dict

    root = tmp_path_factory.mktemp("cli")
    result = train(config_from_dict(tiny_dict(root)))
    return result.run_dir / "last.pt"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    return err


def test_predict_writes_every_output_for_rgb_grey_and_rgba(checkpoint, tmp_path):
    inputs = tmp_path / "images"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)).save(inputs / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (30, 41), dtype=np.uint8)).save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 255, (30, 41, 4), dtype=np.uint8)).save(inputs / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)).save(inputs / "photo.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(inputs), "--out", str(out)]) == 0
    for stem in ("rgb", "grey", "rgba", "photo"):
        seg = Image.open(out / f"{stem}_segmentation.png")
        assert seg.size == (41, 30) and seg.mode == "RGB"
        assert Image.open(out / f"{stem}_depth.png").mode == "RGB"
        millimetres = np.asarray(Image.open(out / f"{stem}_depth16.png"))
        assert millimetres.dtype == np.uint16 and millimetres.shape == (30, 41)
        assert millimetres.min() >= 100 and millimetres.max() <= 10000


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda c, t: ["predict", str(c), str(t / "missing.png")], "input not found"),
        (lambda c, t: ["predict", str(c), str(t / "fake.png")], "not an image"),
        (lambda c, t: ["predict", str(c), str(t)], "no image files"),
        (lambda c, t: ["eval", str(t / "fake.png")], "not a readable dense checkpoint"),
        (lambda c, t: ["eval", str(c), "model.decoder_channels=32"], "does not fit"),
        (lambda c, t: ["eval", str(c), "data.options.bogus=1"], "data.options.bogus"),
        (lambda c, t: ["train", str(t / "none.toml")], "config file not found"),
        (
            lambda c, t: [
                "train",
                str(Path(__file__).parents[1] / "experiments/synthetic_joint.toml"),
                "tasks.depth.edge_sharpness=0",
                f"run.out_dir={(t / 'runs').as_posix()!r}",
            ],
            "tasks.depth.edge_sharpness must be > 0",
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(checkpoint, tmp_path, capsys, make_args, message):
    (tmp_path / "fake.png").write_text("this is not a picture")
    empty = tmp_path / "empty"
    empty.mkdir()
    args = make_args(checkpoint, tmp_path if "no image" not in message else empty)
    assert main(args) == 2
    assert message in error_line(capsys)


def test_eval_prints_a_table_and_writes_json(checkpoint, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", str(checkpoint), "--split", "test", "--out", str(out)]) == 0
    assert "miou" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["step"] == 6
    assert 0 <= metrics["segmentation"]["miou"] <= 1
    assert metrics["depth"]["abs_rel"] > 0


def test_info_lists_plugins(capsys):
    assert main(["info", "--encoders", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "segmentation" in out and "depth" in out and "synthetic" in out and "resnet18" in out


def test_predict_keeps_the_stored_size_when_training_did():
    from types import SimpleNamespace

    from dense.predict import training_size

    def trained(options: dict) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(options=options)))

    assert training_size(trained({"height": 0, "width": 0, "path": "x.mat"})) is None
    assert training_size(trained({"root": "frames"})) is None
    assert training_size(trained({"height": 24, "width": 32})) == (24, 32)
