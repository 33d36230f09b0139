"""Shared fixtures: a tiny, fast experiment (tiny timm encoder, 32×48 synthetic rooms)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from dense.config import Config, apply_override, config_from_dict

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "run": {"name": "tiny", "seed": 0, "device": "cpu"},
    "data": {
        "dataset": "synthetic",
        "batch_size": 4,
        "eval_batch_size": 4,
        "num_workers": 0,
        "options": {"height": 32, "width": 48, "train_length": 64, "val_length": 8},
    },
    "model": {"encoder": "test_resnet", "decoder_channels": 16},
    "optim": {"lr": 2e-3, "warmup_steps": 2},
    "train": {
        "steps": 6,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 1,
        "preview_samples": 2,
        "amp": "off",  # float32 on every CPU, so that results do not depend on the machine
    },
    "tasks": {"segmentation": {}, "depth": {}},
}


def tiny_dict(tmp_path: Path, *overrides: str) -> dict:
    raw = copy.deepcopy(TINY)
    raw["run"]["out_dir"] = str(tmp_path / "runs")
    for override in overrides:
        apply_override(raw, override)
    return raw


@pytest.fixture
def tiny(tmp_path: Path):
    """Factory: tiny(*overrides) → Config writing its runs under tmp_path."""

    def make(*overrides: str) -> Config:
        return config_from_dict(tiny_dict(tmp_path, *overrides))

    return make


@pytest.fixture(scope="session")
def nyu_mat(tmp_path_factory) -> Path:
    """A small file (1449 images of 6×8) in the official nyu_depth_v2_labeled.mat layout."""
    from tests.nyu_mat import write_nyu_mat

    return write_nyu_mat(tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat")


def dense_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dense", *args]
