"""The training objective: each task's loss terms, the structure losses on the tasks' edges
and the multi-task weighting, composed into the total that training minimises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from dense import distributed
from dense.config import Config
from dense.errors import DenseError
from dense.structure import StructureLoss
from dense.task import Outputs, Task
from losses.weighting import make_weighting


@dataclass
class Loss:
    """One evaluation of the objective."""

    total: Tensor  # what is minimised
    terms: dict[str, Tensor]  # every named term "<task>/<term>" (structure terms weighted)
    weights: dict[str, float]  # each task's weight in the total, as the weighting set it


class Objective(nn.Module):
    """``Objective(tasks, config)(outputs, batch, step)`` → :class:`Loss`.

    A task's loss is the sum of its own terms and its structure terms (switched on in
    ``[tasks.NAME.structure]``, where InverseForm may start at a later step or ramp up);
    the weighting (fixed, uncertainty or DWA) combines the tasks' losses into the total.
    """

    def __init__(self, tasks: dict[str, Task], config: Config) -> None:
        super().__init__()
        self.tasks = tasks
        structure = {}
        for name, task in tasks.items():
            options = config.tasks[name].structure
            if StructureLoss.active(options):
                if not task.has_edges():
                    raise DenseError(f"tasks.{name}.structure: task '{name}' exposes no edges")
                structure[name] = StructureLoss(name, options)
        self.structure = nn.ModuleDict(structure)
        weighting = config.weighting
        self.weighting = make_weighting(
            weighting.method,
            {name: options.weight for name, options in config.tasks.items()},
            weighting.dwa_temperature,
            weighting.dwa_window,
            distributed.mean_over_processes,
        )

    def forward(self, outputs: Outputs, batch: dict[str, Any], step: int = 0) -> Loss:
        terms: dict[str, Tensor] = {}
        task_losses: dict[str, Tensor] = {}
        for name, task in self.tasks.items():
            prediction = outputs[name]
            task_terms = task.loss(prediction, batch, outputs)
            if name in self.structure:
                structure = self.structure[name]
                needed = structure.needs_edges(step)
                edges = task.edges(prediction, batch, outputs) if needed else None
                task_terms |= structure(edges, step)
            terms.update(task_terms)
            task_losses[name] = sum(task_terms.values())
        total, weights = self.weighting(task_losses)
        return Loss(total, terms, weights)
