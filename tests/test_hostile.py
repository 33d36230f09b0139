"""Hostile and careless input through the `dense` command (issue 13): bad input costs no data,
and every refusal is one line `error: …` with exit status 2, given before the work starts."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dense.checkpoint import load_checkpoint, save_checkpoint
from dense.cli import main
from dense.config import to_toml
from dense.errors import DenseError, run_script
from dense.rundir import locked
from dense.trainer import Trainer
from tests.conftest import tiny_dict

FAST = (
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.preview_samples=0",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    config = folder / "tiny.toml"
    config.write_text(to_toml(tiny_dict(folder, *FAST)))
    assert main(["train", str(config)]) == 0
    return folder / "runs" / "tiny" / "last.pt"


def write_config(tmp_path: Path, *overrides: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(tiny_dict(tmp_path, *FAST, *overrides)))
    return path


def snapshot(root: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file()
    }


def refused(args: list[str], capsys, message: str, root: Path, kept: list[Path] | None = None):
    """Run ``dense ARGS``: exit 2, one `error:` line containing ``message``, no traceback, and
    every file under ``root`` (or only those in ``kept``) unchanged."""
    capsys.readouterr()
    before = snapshot(root)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.count("\n") == 0 and err.startswith("error: "), err
    assert message in err, err
    after = snapshot(root)
    for path in kept if kept is not None else before:
        assert after.get(path) == before[path], f"{path} was changed"
    return err


def png(path: Path, size: tuple[int, int] = (20, 30), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------------- data loss


@pytest.mark.parametrize("name", ["''", "'.'", "'/tmp/elsewhere'", "'../up'", "'a/../../up'"])
def test_a_run_name_outside_out_dir_is_refused(tmp_path, capsys, name):
    (tmp_path / "scratch" / "x").mkdir(parents=True)
    (tmp_path / "scratch" / "x" / "a").write_text("keep")
    config = write_config(tmp_path)
    args = ["train", str(config), f"run.out_dir='{tmp_path / 'scratch'}'", f"run.name={name}"]
    refused([*args, "--overwrite"], capsys, "run.name", tmp_path)


def test_overwrite_deletes_only_the_runs_own_files(tmp_path):
    folder = tmp_path / "runs" / "tiny"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not a run")
    config = write_config(tmp_path)
    assert main(["train", str(config), "--overwrite"]) == 0  # not a run: nothing deleted
    assert (folder / "notes.txt").read_text() == "not a run"
    (folder / "metrics.jsonl").write_text('{"step": 99}\n')
    assert main(["train", str(config), "--overwrite"]) == 0
    assert (folder / "notes.txt").read_text() == "not a run"
    assert '"step": 99' not in (folder / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    "override",
    ["optim.lr=inf", "optim.lr=nan", "optim.lr=0", "optim.lr=-1", "optim.weight_decay=nan"]
    + ["optim.weight_decay=inf", "optim.weight_decay=-0.1"],
)
def test_non_finite_or_negative_rates_are_refused(tmp_path, capsys, override):
    refused(["train", str(write_config(tmp_path, override))], capsys, override[:8], tmp_path)


def test_an_update_that_poisons_the_weights_is_never_checkpointed(tmp_path, capsys, monkeypatch):
    update = Trainer.train_step

    def poisoned(self, batch):
        values = update(self, batch)
        if self.step == 2:  # the third update
            next(self.model.parameters()).data.fill_(float("inf"))
        return values

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    config = write_config(tmp_path, "train.steps=4", "train.checkpoint_every=1")
    run = tmp_path / "runs" / "tiny"
    refused(["train", str(config)], capsys, "stopped being finite at step 3", tmp_path, kept=[])
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(value.float()).all() for value in state["model"].values())


def test_a_huge_learning_rate_leaves_a_finite_checkpoint(tmp_path, capsys):
    overrides = ["optim.lr=1e6", "optim.warmup_steps=0", "train.max_bad_steps=2"]
    config = write_config(tmp_path, *overrides, "train.steps=8", "train.checkpoint_every=1")
    refused(["train", str(config)], capsys, "Lower optim.lr", tmp_path, kept=[])
    state = load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    assert all(torch.isfinite(value.float()).all() for value in state["model"].values())


@pytest.mark.parametrize(
    "inputs", [("a/x.png", "b/x.png"), ("ok.png", "ok.jpg")], ids=["folders", "suffixes"]
)
def test_predict_refuses_inputs_whose_outputs_share_a_name(checkpoint, tmp_path, capsys, inputs):
    paths = [png(tmp_path / name) for name in inputs]
    out = tmp_path / "out"
    args = ["predict", str(checkpoint), *map(str, paths), "--out", str(out)]
    refused(args, capsys, "would write the same outputs", tmp_path)
    assert not out.exists()


def test_predict_into_its_input_folder_does_not_read_its_own_outputs(checkpoint, tmp_path, capsys):
    folder = tmp_path / "photos"
    png(folder / "room.png")
    png(folder / "room_2.png", seed=1)
    for _ in range(2):
        assert main(["predict", str(checkpoint), str(folder), "--out", str(folder)]) == 0
        assert "2 image(s) → 6 file(s)" in capsys.readouterr().out
    assert len(list(folder.iterdir())) == 8


def test_a_second_training_process_is_refused_naming_the_holder(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "runs" / "tiny"
    with locked(run):
        args = ["train", str(config), "train.steps=4", "--resume"]
        refused(args, capsys, f"in use by process {os.getpid()}", tmp_path)
    assert main(["train", str(config), "train.steps=4", "--resume"]) == 0


def test_disk_full_keeps_the_previous_checkpoint_and_no_partial_file(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "runs" / "tiny"
    (run / ".last.pt.tmp").write_bytes(b"left by a kill")

    def full(state, handle):
        handle.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dense.checkpoint.torch.save", full)
    args = ["train", str(config), "train.steps=4", "--resume"]
    refused(args, capsys, "the disk is full", tmp_path, kept=[run / "last.pt"])
    assert not (run / ".last.pt.tmp").exists()
    assert load_checkpoint(run / "last.pt")["step"] == 2


def test_ctrl_c_during_a_checkpoint_write_finishes_it_then_exits_130(tmp_path, capsys, monkeypatch):
    save = torch.save

    def interrupted(state, handle):
        os.kill(os.getpid(), signal.SIGINT)
        save(state, handle)

    monkeypatch.setattr("dense.checkpoint.torch.save", interrupted)
    assert main(["train", str(write_config(tmp_path))]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("interrupted")
    run = tmp_path / "runs" / "tiny"
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert not (run / ".last.pt.tmp").exists()


# ---------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.decoder_channels=0", "model.decoder_channels"),
        ("tasks.segmentation.num_classes=3", "tasks.segmentation.num_classes"),
        ("run.device=banana", "run.device"),
        ("tasks.segmentation.label_smoothing=1.0", "label_smoothing"),
        ("tasks.segmentation.label_smoothing=-0.1", "label_smoothing"),
        ("tasks.segmentation.boundary_tolerances=[]", "boundary_tolerances"),
        ("data.augment.scale_min=0", "scale_min"),
        ("data.augment.scale_max=-1", "scale_min"),
        ("data.echo=0", "data.echo"),
        ("data.echo=2.5", "data.echo"),
        ("train.preview_samples=-1", "train.preview_samples"),
        ("train.eval_batches=-1", "train.eval_batches"),
        ("weighting.dwa_window=0", "weighting.dwa_window"),
        ("tasks={}", "add a [tasks.NAME] section"),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, capsys, override, message):
    refused(["train", str(write_config(tmp_path, override))], capsys, message, tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    config = write_config(tmp_path, "run.device=cuda")
    refused(["train", str(config)], capsys, "0 CUDA GPU(s)", tmp_path)


# ------------------------------------------------------------- paths and checkpoints


@pytest.mark.parametrize(
    "make_args",
    [
        lambda c, f: ["eval", str(c), "--out", str(f / "metrics.json")],
        lambda c, f: ["predict", str(c), str(f.parent / "in.png"), "--out", str(f / "out")],
        lambda c, f: ["data", "nyuv2", "--root", str(f / "nyu")],
        lambda c, f: ["train", str(f.parent / "tiny.toml"), f"run.out_dir='{f / 'runs'}'"],
    ],
    ids=["eval", "predict", "data", "train"],
)
def test_an_output_path_under_a_regular_file_is_refused_first(
    checkpoint, tmp_path, capsys, make_args
):
    png(tmp_path / "in.png")
    write_config(tmp_path)
    (tmp_path / "file").write_text("a file, not a folder")
    refused(make_args(checkpoint, tmp_path / "file"), capsys, "is a file, not a folder", tmp_path)


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"network": {}, "state_dict": {}, "fit": {}, "heldout": {}}, "fit-inverseform"),
        ({}, "not a training checkpoint"),
    ],
    ids=["inverseform", "marker-only"],
)
def test_a_checkpoint_that_is_not_a_training_run_is_refused(
    tmp_path, capsys, command, state, message
):
    save_checkpoint(tmp_path / "other.pt", state)
    args = [command, str(tmp_path / "other.pt")] + (
        [str(png(tmp_path / "x.png"))] * (command == "predict")
    )
    refused(args, capsys, message, tmp_path)


def test_model_weights_must_be_encoder_weights(checkpoint, tmp_path, capsys):
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    for weights, message in (
        (checkpoint, "is a dense checkpoint"),
        (tmp_path / "random.bin", "not a readable"),
    ):
        config = write_config(tmp_path, f"model.weights='{weights}'")
        refused(["train", str(config)], capsys, message, tmp_path)


def test_eval_refuses_overrides_that_change_the_model(checkpoint, tmp_path, capsys):
    refused(
        ["eval", str(checkpoint), "tasks.depth.max_depth=100"], capsys, "does not fit", tmp_path
    )
    assert main(["eval", str(checkpoint), "tasks.depth.eval_max_depth=5"]) == 0


# ---------------------------------------------------------------------------- predict


def test_predict_size_must_be_positive(checkpoint, tmp_path, capsys):
    args = ["predict", str(checkpoint), str(png(tmp_path / "x.png")), "--size", "0", "8"]
    refused([*args, "--out", str(tmp_path / "out")], capsys, "--size", tmp_path)


def test_predict_names_the_decompression_bomb_limit(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    args = ["predict", str(checkpoint), str(png(tmp_path / "big.png")), "--out", str(tmp_path)]
    refused(args, capsys, "downscale it first", tmp_path)


def test_predict_reads_16_bit_float_and_rotated_images_faithfully(checkpoint, tmp_path):
    from dense.imageio import read_rgb

    out = tmp_path / "out"

    Image.fromarray(np.full((4, 6), 32768, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert read_rgb(tmp_path / "deep.png").mean().item() == pytest.approx(0.5, abs=1e-3)
    Image.fromarray(np.full((4, 6), 0.25, dtype=np.float32)).save(tmp_path / "float.tiff")
    assert read_rgb(tmp_path / "float.tiff").mean().item() == pytest.approx(0.25)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.new("RGB", (6, 4)).save(tmp_path / "rotated.jpg", exif=exif)
    assert read_rgb(tmp_path / "rotated.jpg").shape == (3, 6, 4)
    assert main(["predict", str(checkpoint), str(tmp_path / "rotated.jpg"), "--out", str(out)]) == 0
    assert Image.open(out / "rotated_segmentation.png").size == (4, 6)


# ------------------------------------------------------------------------- experiment


def write_grid(tmp_path: Path, grid: str, arms: str = "[arms.plain]\noverrides = []") -> Path:
    (tmp_path / "base.toml").write_text(to_toml(tiny_dict(tmp_path, *FAST)))
    path = tmp_path / "grid.toml"
    out = (tmp_path / "grids").as_posix()
    path.write_text(f'[grid]\nbase = "base.toml"\nseeds = [0]\nout_dir = "{out}"\n{grid}\n{arms}\n')
    return path


@pytest.mark.parametrize(
    ("grid", "arms", "message"),
    [
        ("", "[arms.plain]\noverrides = []", "missing config key 'grid.name'"),
        ('name = "g"\npicture_samples = 0', "[arms.plain]\noverrides = []", "picture_samples"),
        ('name = "g"', '[arms."it\'s"]\noverrides = []', "arms.it's"),
        ('name = "../g"', "[arms.plain]\noverrides = []", "grid.name"),
    ],
    ids=["no-name", "no-pictures", "arm-name", "grid-name"],
)
def test_bad_grids_are_one_line(tmp_path, capsys, grid, arms, message):
    refused(["experiment", str(write_grid(tmp_path, grid, arms))], capsys, message, tmp_path)


def test_a_grid_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    refused(["experiment", str(tmp_path)], capsys, "cannot read grid file", tmp_path)


def test_summaries_refuse_a_cut_metrics_json_and_skip_a_cut_log_line(tmp_path, capsys):
    grid = write_grid(tmp_path, 'name = "g"\nmetrics = ["depth/abs_rel"]')
    run = tmp_path / "grids" / "g" / "plain" / "seed0"
    run.mkdir(parents=True)
    record = '{"step": 2, "split": "val", "depth/abs_rel": 0.5}\n'
    (run / "metrics.jsonl").write_text(record + '{"step": 3, "spl')
    (run / "metrics.json").write_text('{"step": 2, "depth": {"abs_')
    refused(["experiment", str(grid), "--summary-only"], capsys, "is damaged", tmp_path)
    (run / "metrics.json").write_text('{"step": 2, "depth": {"abs_rel": 0.5}}')
    assert main(["experiment", str(grid), "--summary-only"]) == 0
    assert (tmp_path / "grids" / "g" / "depth_abs_rel.png").is_file()


# ------------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--retries", "-1"], "--retries"), (["--url", "example.com/nyu.mat"], "full address")],
)
def test_bad_download_options_are_one_line(tmp_path, capsys, options, message):
    refused(["data", "nyuv2", "--root", str(tmp_path / "nyu"), *options], capsys, message, tmp_path)


def test_a_download_that_fails_verification_is_not_kept_as_the_file(tmp_path, capsys):
    served = tmp_path / "served.mat"
    served.write_bytes(b"not an HDF5 file" * 64)
    root = tmp_path / "nyu"
    args = ["data", "nyuv2", "--root", str(root), "--url", served.as_uri()]
    refused(args, capsys, "moved to", tmp_path)
    assert not (root / "nyu_depth_v2_labeled.mat").exists()
    assert (root / "nyu_depth_v2_labeled.mat.invalid").is_file()


# ----------------------------------------------------------------------- predict fuzz


def fuzz_inputs(folder: Path, seed: int = 13) -> list[Path]:
    """Random bytes, truncated files, odd modes and tiny sizes under image names."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    files = []
    for i, length in enumerate((0, 1, 64, 4096)):
        for suffix in (".png", ".jpg", ".tif", ".gif"):
            files.append(folder / f"bytes{i}{suffix}")
            files[-1].write_bytes(rng.bytes(length))
    sizes = ((1, 1), (1, 9), (9, 1), (2, 3), (33, 17))
    modes = {"1": ".png", "L": ".png", "LA": ".png", "P": ".gif", "RGBA": ".webp"}
    modes |= {"CMYK": ".jpg", "I;16": ".png", "I": ".tif", "F": ".tif", "RGB": ".bmp"}
    for j, (mode, suffix) in enumerate(modes.items()):
        height, width = sizes[j % len(sizes)]
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(mode if mode not in ("I;16", "F") else "I")
        if mode in ("I;16", "F"):
            image = image.convert(mode)
        path = folder / f"mode{j}{suffix}"
        image.save(path)
        files.append(path)
        whole = path.read_bytes()
        cut = folder / f"cut{j}{suffix}"
        cut.write_bytes(whole[: int(len(whole) * rng.uniform(0.2, 0.9))])
        files.append(cut)
    return files


@pytest.mark.filterwarnings("error")  # a warning would be a second line on stderr
def test_predict_fuzz_never_crashes_nor_writes_outside_out(checkpoint, tmp_path, capsys):
    inputs = fuzz_inputs(tmp_path / "in")
    statuses = []
    for i, path in enumerate(inputs):
        out = tmp_path / f"out{i}"
        before = snapshot(tmp_path)
        size = [["--size", "1", "1"], ["--size", "5", "3"], []][i % 3]
        status = main(["predict", str(checkpoint), str(path), "--out", str(out), *size])
        captured = capsys.readouterr()
        assert status in (0, 2) and "Traceback" not in captured.err, (path, captured.err)
        if status == 2:
            assert captured.err.strip().count("\n") == 0 and captured.err.startswith("error: ")
        after = snapshot(tmp_path)
        assert all(after.get(p) == digest for p, digest in before.items()), path
        assert all(p.is_relative_to(out) for p in set(after) - set(before)), path
        statuses.append(status)
    assert statuses.count(0) >= 10 and statuses.count(2) >= 10


def test_an_experiment_script_reports_a_bad_input_as_one_line(capsys):
    def bad_config() -> None:
        raise DenseError("tasks.depth.edge_sharpness must be > 0")

    with pytest.raises(SystemExit) as exit_info:
        run_script(bad_config)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: tasks.depth.edge_sharpness must be > 0\n"


@pytest.mark.parametrize(
    "script", sorted(str(p) for p in Path("experiments").glob("*/*.py")), ids=lambda p: Path(p).stem
)
def test_every_experiment_script_runs_through_run_script(script):
    """Every benchmark and diagnostic turns a bad config or path into one error line."""
    ending = 'if __name__ == "__main__":\n    run_script(main)'
    assert Path(script).read_text().rstrip().endswith(ending)
