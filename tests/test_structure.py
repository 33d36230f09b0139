"""Structure losses through the engine: InverseForm trains the boundary head (the public
release's log_softmax pitfall would leave it untouched) and never the inverse network."""

import json

import pytest
import torch
from rich.console import Console

from dense import distributed
from dense.checkpoint import save_checkpoint
from dense.cli import main
from dense.config import config_from_dict
from dense.errors import DenseError
from dense.inverseform.fit import FitConfig, fit_inverse_net
from dense.inverseform.network import InverseNet
from dense.trainer import Trainer
from tests.conftest import tiny_dict


@pytest.fixture
def network_file(tmp_path):
    torch.manual_seed(0)
    net = InverseNet("conv", tile=16, parameters=4)
    path = tmp_path / "inverse.pt"
    save_checkpoint(path, {"network": net.config(), "state_dict": net.state_dict()})
    return path


def run(tmp_path, *overrides):
    config = config_from_dict(
        tiny_dict(
            tmp_path,
            "tasks.segmentation.boundary_head=true",
            "train.log_every=1",
            "optim.weight_decay=0",
            *overrides,
        )
    )
    context = distributed.Context(0, 1, 0, torch.device("cpu"))
    trainer = Trainer(config, context, Console(quiet=True))
    head = trainer.model.heads["segmentation"].boundary
    before = {k: v.detach().clone() for k, v in head.named_parameters()}
    trainer.prepare(resume=False, overwrite=True)
    trainer.fit()
    changed = any(not torch.equal(before[k], v) for k, v in head.named_parameters())
    return trainer, changed


def test_inverseform_trains_the_boundary_head_and_not_the_network(tmp_path, network_file):
    trainer, changed = run(
        tmp_path,
        "tasks.segmentation.structure.inverseform=1.0",
        f"tasks.segmentation.structure.network='{network_file}'",
        "tasks.depth.structure.inverseform=0.5",
        f"tasks.depth.structure.network='{network_file}'",
    )
    assert changed
    saved = torch.load(network_file)["state_dict"]
    for loss in trainer.objective.structure.values():
        assert not loss.inverseform.net.training
        for key, value in loss.inverseform.net.state_dict().items():
            assert torch.equal(value, saved[key]), key
    records = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").open()]
    train = [r for r in records if r["split"] == "train"]
    assert all(r["segmentation/inverseform"] > 0 and r["depth/inverseform"] > 0 for r in train)


def test_without_structure_terms_the_boundary_head_is_untouched(tmp_path):
    _, changed = run(tmp_path)
    assert not changed


def test_boundary_bce_and_edge_attention_terms(tmp_path):
    trainer, changed = run(
        tmp_path,
        "tasks.segmentation.structure.boundary_bce=0.3",
        "tasks.segmentation.edge_attention=0.1",
        "tasks.depth.structure.boundary_bce=0.3",
    )
    assert changed
    records = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").open()]
    record = next(r for r in records if r["split"] == "train")
    assert {
        "segmentation/boundary_bce",
        "segmentation/edge_attention",
        "depth/boundary_bce",
    } <= set(record)


def test_structure_options_are_validated(tmp_path):
    with pytest.raises(DenseError, match="boundary_head"):
        run(
            tmp_path,
            "tasks.segmentation.boundary_head=false",
            "tasks.segmentation.edge_attention=0.1",
        )
    with pytest.raises(DenseError, match="needs structure.network"):
        run(tmp_path, "tasks.depth.structure.inverseform=1.0")


def test_fit_inverseform_saves_a_loadable_network_and_a_report(tmp_path):
    config = FitConfig(
        steps=20,
        batch_size=16,
        maps=12,
        tile=16,
        size=[48, 64],
        options={"height": 48, "width": 64},
        heldout_samples=64,
        out=str(tmp_path / "net.pt"),
    )
    report = fit_inverse_net(config, Console(quiet=True))
    assert len(report["mae_per_parameter"]) == 6
    assert -1 <= report["spearman_distance_vs_magnitude"] <= 1
    assert set(report["sweep"]["families"]) == {"shift", "rotation", "scale", "elastic"}
    assert (tmp_path / "net_sweep.png").stat().st_size > 0
    state = torch.load(tmp_path / "net.pt")
    assert state["fit"]["tile"] == 16 and state["heldout"] == report
    net = InverseNet.from_state(state)
    assert net.param_scale.min() > 0 and (net.param_scale != 1).any()
    assert json.loads((tmp_path / "net.json").read_text()) == report


def test_fit_inverseform_cli_reads_label_folders_and_rejects_bad_options(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "labels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        labels = np.zeros((48, 64), dtype=np.uint8)
        labels[:, rng.integers(10, 50) :] = 3
        labels[rng.integers(10, 40) :, :] += 1
        Image.fromarray(labels).save(folder / f"{i}.png")
    out = tmp_path / "net.pt"
    args = [
        "fit-inverseform",
        f"source={folder}",
        "ignore_index=0",
        "tile=16",
        "size=[48, 64]",
        "steps=5",
        "batch_size=8",
        "heldout=0.25",
        "heldout_samples=16",
        f"out={out}",
    ]
    assert main(args) == 0
    assert out.exists()
    assert main(["fit-inverseform", "tile=64", "size=[48, 64]"]) == 2
    assert "at least twice the tile" in capsys.readouterr().err
