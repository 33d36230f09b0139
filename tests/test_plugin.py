"""A task defined entirely in this file trains through the engine: no edit to dense/."""

import json
import sys
import textwrap
from dataclasses import dataclass

import torch

from dense.config import config_from_dict
from dense.layers import ConvHead
from dense.metrics import Metric
from dense.registry import TASKS, Registry
from dense.task import Task, TaskConfig
from dense.trainer import train
from tests.conftest import tiny_dict


class MeanAbsoluteError(Metric):
    def reset(self):
        self.state = {"sum": torch.zeros((), dtype=torch.float64), "count": torch.zeros(())}

    def __init__(self):
        self.reset()

    def update(self, prediction, target):
        self.state["sum"] += (prediction - target).abs().sum().double()
        self.state["count"] += target.numel()

    def compute(self):
        return {"mae": (self.state["sum"] / self.state["count"]).item()}


@dataclass
class BrightnessConfig(TaskConfig):
    scale: float = 1.0


@TASKS.register("test_brightness")
class Brightness(Task):
    """Toy task: predict each pixel's grey level from the image."""

    Config = BrightnessConfig
    target_key = "image"

    def target(self, batch):
        return batch["image"].mean(1, keepdim=True) * self.config.scale

    def head(self, channels):
        return ConvHead(channels, 1)

    def loss(self, prediction, batch, outputs):
        return {f"{self.name}/l1": (prediction - self.target(batch)).abs().mean()}

    def metric(self):
        return MeanAbsoluteError()

    def update_metric(self, metric, prediction, batch, outputs):
        metric.update(prediction, self.target(batch))


def test_a_task_from_outside_trains(tmp_path):
    raw = tiny_dict(tmp_path, "train.steps=30", "train.eval_every=30", "optim.lr=5e-3")
    raw["tasks"] = {"test_brightness": {"scale": 2.0}}
    result = train(config_from_dict(raw))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    losses = [r["test_brightness/l1"] for r in records if r["split"] == "train"]
    assert losses[-1] < 0.5 * losses[0]
    assert result.metrics["test_brightness"]["mae"] < 0.5


def test_tasks_register_through_entry_points(tmp_path, monkeypatch):
    """A third-party package declares `[dense.tasks] name = module:Class` and is found."""
    (tmp_path / "toy_plugin.py").write_text(
        textwrap.dedent(
            """
            from dense.task import Task
            class Toy(Task):
                target_key = "image"  # found through its entry point, never instantiated
            """
        )
    )
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dense.tasks]\ntoy = toy_plugin:Toy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("task", "dense.tasks")
    assert registry.get("toy").__name__ == "Toy"
    sys.modules.pop("toy_plugin", None)
