"""The objective on its own: no trainer, no dataset — tasks, fixed predictions, a config."""

from __future__ import annotations

import pytest
import torch

from dense.config import config_from_dict
from dense.errors import DenseError
from dense.objective import Objective
from dense.structure import StructureConfig, StructureLoss
from dense.task import DataInfo, Outputs, Task
from tasks.depth import Depth
from tasks.segmentation import Segmentation
from tests.conftest import tiny_dict

INFO = DataInfo(tuple(f"c{i}" for i in range(3)), 255)


def setup(tmp_path, *overrides):
    config = config_from_dict(tiny_dict(tmp_path, *overrides))
    tasks = {
        "segmentation": Segmentation("segmentation", config.tasks["segmentation"], INFO),
        "depth": Depth("depth", config.tasks["depth"], INFO),
    }
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, :, 8:] = 1
    batch = {"segmentation": labels, "depth": 1 + 2 * labels[:, None].float()}  # a 1 m → 3 m step
    logits = torch.randn(2, 3, 16, 16, generator=g, requires_grad=True)
    depth = (1 + torch.rand(2, 1, 16, 16, generator=g)).requires_grad_(True)
    return Objective(tasks, config), Outputs({"segmentation": logits, "depth": depth}), batch


def test_the_total_is_the_weighted_sum_of_every_tasks_terms(tmp_path):
    objective, outputs, batch = setup(
        tmp_path, "tasks.segmentation.weight=0.5", "tasks.depth.weight=2.0"
    )
    loss = objective(outputs, batch)
    assert set(loss.terms) == {"segmentation/ce", "depth/silog"}
    expected = 0.5 * loss.terms["segmentation/ce"] + 2.0 * loss.terms["depth/silog"]
    assert loss.total.item() == pytest.approx(expected.item())
    assert loss.weights == {"segmentation": 0.5, "depth": 2.0}
    loss.total.backward()
    assert outputs["segmentation"].grad.abs().sum() > 0 and outputs["depth"].grad.abs().sum() > 0


def test_structure_terms_join_their_tasks_loss(tmp_path):
    objective, outputs, batch = setup(tmp_path, "tasks.depth.structure.boundary_bce=0.3")
    loss = objective(outputs, batch)
    assert set(loss.terms) == {"segmentation/ce", "depth/silog", "depth/boundary_bce"}
    assert loss.terms["depth/boundary_bce"] > 0
    expected = sum(loss.terms.values())
    assert loss.total.item() == pytest.approx(expected.item())


def test_inverseform_starts_late_and_ramps_up_while_boundary_bce_stays_on(tmp_path):
    objective, outputs, batch = setup(
        tmp_path,
        "tasks.depth.structure.boundary_bce=0.3",
        "tasks.depth.structure.inverseform=0.5",
        "tasks.depth.structure.network='nyu13'",
        "tasks.depth.structure.start_step=10",
        "tasks.depth.structure.ramp_steps=4",
    )
    steps = (0, 9, 10, 11, 13, 50)
    terms = [objective(outputs, batch, step).terms for step in steps]
    inverseform = [t["depth/inverseform"].item() for t in terms]
    assert inverseform[:2] == [0.0, 0.0]
    full = inverseform[-1]
    assert full > 0 and inverseform[2:5] == pytest.approx([full / 4, full / 2, full])
    bce = [t["depth/boundary_bce"].item() for t in terms]
    assert bce[0] > 0 and bce == pytest.approx([bce[0]] * len(steps))
    factor = StructureLoss("t", StructureConfig(boundary_bce=1.0, start_step=3)).factor
    assert [factor(s) for s in (0, 2, 3, 100)] == [0.0, 0.0, 1.0, 1.0]


def test_inverseform_alone_makes_no_edges_before_its_start_step(tmp_path, monkeypatch):
    objective, outputs, batch = setup(
        tmp_path,
        "tasks.depth.structure.inverseform=0.5",
        "tasks.depth.structure.network='nyu13'",
        "tasks.depth.structure.start_step=10",
    )
    made = []
    edges = Depth.edges
    monkeypatch.setattr(Depth, "edges", lambda *a: made.append(1) or edges(*a))
    assert objective(outputs, batch, 9).terms["depth/inverseform"].item() == 0.0
    assert made == []
    assert objective(outputs, batch, 10).terms["depth/inverseform"].item() > 0
    assert made == [1]


def test_a_negative_start_step_and_a_task_without_edges_are_refused(tmp_path):
    with pytest.raises(DenseError, match="start_step"):
        setup(
            tmp_path,
            "tasks.depth.structure.boundary_bce=0.3",
            "tasks.depth.structure.start_step=-1",
        )

    class NoEdges(Depth):
        edges = Task.edges  # the base class's: no edges

    config = config_from_dict(tiny_dict(tmp_path, "tasks.depth.structure.boundary_bce=0.3"))
    with pytest.raises(DenseError, match="exposes no edges"):
        Objective({"depth": NoEdges("depth", config.tasks["depth"], INFO)}, config)


def test_uncertainty_weighting_learns_through_the_objective(tmp_path):
    objective, outputs, batch = setup(tmp_path, "weighting.method='uncertainty'")
    loss = objective(outputs, batch)
    loss.total.backward()
    assert objective.weighting.log_vars.grad.abs().sum() > 0
