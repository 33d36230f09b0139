import json
import os
import signal
import subprocess
import time

import pytest
import torch
from rich.console import Console
from torch import Tensor

from dense.checkpoint import load_checkpoint
from dense.config import config_from_dict, to_toml
from dense.errors import DenseError
from dense.registry import TASKS
from dense.trainer import TrainingError, train
from tasks.segmentation import Segmentation, SegmentationConfig
from tests.conftest import ROOT, dense_command, tiny_dict


def test_training_writes_log_checkpoint_metrics_and_picture(tiny):
    result = train(tiny())
    run = result.run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [3, 6]
    assert {"segmentation/miou", "depth/abs_rel", "depth/delta1"} <= set(val[0])
    assert load_checkpoint(run / "last.pt")["step"] == 6
    assert json.loads((run / "metrics.json").read_text())["segmentation"]["miou"] > 0
    assert (run / "predictions.png").stat().st_size > 0
    assert (run / "config.toml").exists()


def test_tensorboard_gets_every_logged_number_and_the_preview(tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tiny()).run_dir
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/segmentation/ce", "train/depth/silog", "train/lr"} <= scalars
    assert {"train/weight/segmentation", "val/segmentation/miou", "val/depth/abs_rel"} <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    val = [json.loads(line) for line in (run / "metrics.jsonl").open() if '"val"' in line]
    assert events.Scalars("val/depth/abs_rel")[-1].value == pytest.approx(val[-1]["depth/abs_rel"])
    assert events.Tags()["images"] == ["predictions"]


def test_tensorboard_can_be_switched_off(tiny):
    assert not (train(tiny("train.tensorboard=false")).run_dir / "tensorboard").exists()


def test_the_preview_titles_its_columns_and_keys_each_task(tiny, monkeypatch):
    drawn = {}
    monkeypatch.setattr(
        "dense.trainer.save_comparison", lambda path, columns: drawn.update(columns=columns)
    )
    train(tiny())
    columns = drawn["columns"]
    titles = [
        "image",
        "segmentation: target",
        "segmentation: prediction",
        "depth: target",
        "depth: prediction",
    ]
    assert [c.title for c in columns] == titles
    assert all(len(c.pictures) == 2 for c in columns)  # train.preview_samples
    classes = dict(columns[1].key.classes)
    assert "wall" in classes and len(classes) == 13
    assert columns[3].key.scale == (0.1, 10.0) and columns[3].key.label == "depth (m)"


def test_a_finished_run_is_not_overwritten_by_accident(tiny):
    train(tiny())
    with pytest.raises(DenseError, match="--resume"):
        train(tiny())
    assert train(tiny(), overwrite=True).step == 6


def test_resume_refuses_a_different_model(tiny):
    train(tiny())
    with pytest.raises(DenseError, match="'model' differs"):
        train(tiny("model.decoder_channels=8"), resume=True)
    assert train(tiny("train.steps=8"), resume=True).step == 8  # longer training is fine


def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path):
    overrides = (
        "train.steps=40",
        "train.checkpoint_every=5",
        "train.eval_every=100",
        "weighting.method=dwa",
        "weighting.dwa_window=3",
        "optim.schedule=poly",
    )
    reference = train(config_from_dict(tiny_dict(tmp_path, *overrides, "run.name=reference")))

    raw = tiny_dict(tmp_path, *overrides, "run.name=killed")
    path = tmp_path / "killed.toml"
    path.write_text(to_toml(raw))
    checkpoint = tmp_path / "runs" / "killed" / "last.pt"
    process = subprocess.Popen(
        dense_command("train", str(path)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert killed_at < 40, "the run finished before it could be killed"

    resumed = train(config_from_dict(raw), resume=True)
    assert resumed.step == 40
    final = load_checkpoint(checkpoint)
    expected = load_checkpoint(reference.run_dir / "last.pt")
    for key, value in expected["model"].items():
        assert torch.allclose(final["model"][key].float(), value.float(), atol=1e-6), key
    assert torch.equal(final["weighting"]["history"], expected["weighting"]["history"])
    records = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").open()]
    steps = [r["step"] for r in records if r["split"] != "run"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) + 1  # one val record at 40


FAILING_CALLS: set[int] = set()


@TASKS.register("test_flaky_segmentation")
class FlakySegmentation(Segmentation):
    """Segmentation whose loss is NaN on the calls listed in FAILING_CALLS."""

    Config = SegmentationConfig
    calls = 0

    def loss(self, prediction, batch, outputs):
        FlakySegmentation.calls += 1
        terms = super().loss(prediction, batch, outputs)
        if FlakySegmentation.calls in FAILING_CALLS:
            terms = {key: value * float("nan") for key, value in terms.items()}
        return terms


def flaky_config(tmp_path, *overrides):
    raw = tiny_dict(tmp_path, "train.max_bad_steps=3", "train.checkpoint_every=2", *overrides)
    raw["tasks"] = {"test_flaky_segmentation": {}}
    return config_from_dict(raw)


def test_isolated_non_finite_losses_are_skipped(tmp_path, capsys):
    FlakySegmentation.calls = 0
    FAILING_CALLS.clear()
    FAILING_CALLS.update({2, 4})
    result = train(flaky_config(tmp_path))
    assert result.step == 6 and FlakySegmentation.calls == 8
    assert "step skipped" in capsys.readouterr().out


def test_repeated_non_finite_losses_stop_training_and_keep_the_checkpoint(tmp_path):
    FlakySegmentation.calls = 0
    FAILING_CALLS.clear()
    FAILING_CALLS.update(range(5, 100))
    with pytest.raises(TrainingError, match="3 steps in a row.*last good checkpoint"):
        train(flaky_config(tmp_path))
    state = load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v.float()).all() for v in state["model"].values())


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_kernels_warns(tiny, capsys, monkeypatch, native):
    """Such CPUs run bf16 convolutions through PyTorch's slow reference code."""
    from dense import distributed

    monkeypatch.setattr(distributed, "native_bf16", lambda: native)
    train(
        tiny("train.amp=bf16", "train.steps=1", "train.eval_every=1", "tasks={}", "tasks.depth={}")
    )
    assert ("no native bf16 kernels" in capsys.readouterr().out) is not native


@pytest.mark.parametrize(
    ("amp", "device", "native", "bf16"),
    [
        ("auto", "cpu", True, True),
        ("auto", "cpu", False, False),
        ("auto", "cuda", False, True),
        ("off", "cuda", True, False),
        ("bf16", "cpu", False, True),
    ],
)
def test_auto_precision_is_bf16_on_cuda_and_on_cpus_with_native_bf16(
    monkeypatch, amp, device, native, bf16
):
    from dense import distributed

    monkeypatch.setattr(distributed, "native_bf16", lambda: native)
    assert distributed.bf16_autocast(amp, torch.device(device)) is bf16


@pytest.mark.parametrize("native", [False, True])
def test_each_start_logs_the_precision_it_trains_in(tiny, monkeypatch, native):
    from dense import distributed
    from dense.rundir import run_precision

    monkeypatch.setattr(distributed, "native_bf16", lambda: native)
    result = train(tiny("train.amp=auto", "train.steps=2", "train.eval_every=2"))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert records[0] == {
        "step": 0,
        "split": "run",
        "precision": "bf16" if native else "float32",
    }
    assert run_precision(result.run_dir) == records[0]["precision"]


def test_a_run_logged_before_the_precision_record_read_as_float32(tmp_path):
    from dense.rundir import run_precision

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    assert run_precision(tmp_path) == "float32"
    assert run_precision(tmp_path / "missing") == "float32"


def test_channels_last_keeps_the_model_nhwc_and_trains_the_same_run(tiny):
    from dense import distributed
    from dense.trainer import Trainer

    config = tiny("train.channels_last=true")
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))
    convolutions = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert convolutions
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)

    nhwc = train(tiny("train.channels_last=true", "run.name=nhwc"))
    nchw = train(tiny("train.channels_last=false", "run.name=nchw"))
    for task, metrics in nchw.metrics.items():
        for name, value in metrics.items():
            assert nhwc.metrics[task][name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    saved = load_checkpoint(nhwc.run_dir / "last.pt")["model"]
    assert saved.keys() == load_checkpoint(nchw.run_dir / "last.pt")["model"].keys()


def test_fused_adamw_takes_the_same_steps_as_the_loop_kernel(tiny):
    from dense.trainer import make_optimizer

    def trained(*overrides: str) -> tuple[torch.optim.AdamW, list[Tensor]]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        optimizer = make_optimizer(model, torch.nn.Module(), tiny(*overrides))
        for step in range(3):
            torch.manual_seed(step)
            model(torch.randn(2, 3, 8, 8)).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        return optimizer, [p.detach() for p in model.parameters()]

    decay = "optim.weight_decay=0.5"  # large enough that a lost weight decay shows
    fused, fused_weights = trained("optim.fused=true", decay)
    loop, loop_weights = trained("optim.fused=false", decay)
    assert all(group["fused"] for group in fused.param_groups)
    assert not any(group["fused"] for group in loop.param_groups)
    for a, b in zip(fused_weights, loop_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # a step moves ~lr = 2e-3


@pytest.mark.parametrize(
    ("setting", "bf16", "nhwc"),
    [("auto", True, True), ("auto", False, False), (True, False, True), (False, True, False)],
)
def test_channels_last_auto_follows_bf16(setting, bf16, nhwc):
    from dense.distributed import channels_last

    assert channels_last(setting, bf16) is nhwc


@pytest.mark.parametrize(("amp", "nhwc"), [("off", False), ("bf16", True)])
def test_trainer_under_auto_is_channels_last_only_in_bf16(tiny, amp, nhwc):
    from dense import distributed
    from dense.trainer import Trainer

    config = tiny("train.channels_last='auto'", f"train.amp='{amp}'")  # built, not trained
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))
    assert (trainer.memory_format == torch.channels_last) is nhwc
    weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    layout = torch.channels_last if nhwc else torch.contiguous_format
    assert all(p.is_contiguous(memory_format=layout) for p in weights)
    assert all(group["fused"] for group in trainer.optimizer.param_groups)  # the default
