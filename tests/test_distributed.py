"""Two CPU processes with gloo: identical weights, and reduced metrics equal to one process."""

import json
import subprocess
import sys

import pytest
import torch

from dense.assemble import build_tasks
from dense.config import config_from_dict, to_toml
from dense.data import build_dataset, data_info, eval_loader
from dense.distributed import Context
from dense.evaluate import evaluate
from dense.model import build_model
from tests.conftest import ROOT, tiny_dict


def test_two_processes_train_in_lockstep_and_reduce_metrics_exactly(tmp_path):
    raw = tiny_dict(
        tmp_path,
        "train.steps=4",
        "train.eval_every=100",
        "data.batch_size=2",
        "data.options.val_length=7",
    )  # 7 samples: uneven shards
    path = tmp_path / "ddp.toml"
    path.write_text(to_toml(raw))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "tests/ddp_worker.py",
        str(path),
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    weights = [torch.load(tmp_path / f"weights{r}.pt") for r in range(2)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    reduced = [json.loads((tmp_path / f"metrics{r}.json").read_text()) for r in range(2)]
    assert reduced[0] == reduced[1]

    config = config_from_dict(raw)
    dataset = build_dataset(config.data, "val")
    tasks = build_tasks(config, data_info(dataset))
    model = build_model(config.model, tasks)
    model.load_state_dict(weights[0])
    context = Context(0, 1, 0, torch.device("cpu"))
    single = evaluate(model, tasks, eval_loader(dataset, config.data, context), context.device)
    for task, values in single.items():
        for name, value in values.items():
            assert reduced[0][task][name] == pytest.approx(value, rel=1e-6), (task, name)
