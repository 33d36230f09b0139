"""Structure losses on any task's edges: class-balanced boundary BCE and InverseForm.

A task opts in by implementing ``Task.edges`` (predicted soft edges, target edges) and the
user switches the terms on per task with ``[tasks.NAME.structure]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dense.errors import DenseError
from dense.inverseform import Distance, InverseFormLoss, load_inverse_net
from losses.boundary import balanced_bce


@dataclass
class StructureConfig:
    boundary_bce: float = 0.0  # weight of class-balanced BCE between predicted and target edges
    inverseform: float = 0.0  # weight of the InverseForm term
    network: str = ""  # a `dense fit-inverseform` file, the official .pth, or "nyu13" (bundled)
    distance: Distance = "pixels"  # RMS displacement in px; "euclidean" ‖θ̂‖; "geodesic" (8 p.)
    empty_tile: float = 0.01  # tile pairs whose maps both have a smaller mean are skipped
    resize: list[int] = field(default_factory=list)  # [H, W] before tiling; [] keeps the size
    radius: int = 2  # thickness of target boundaries, pixels
    start_step: int = 0  # InverseForm is off (0) before this training step (BCE is not)
    ramp_steps: int = 0  # then grows linearly to its full weight over this many steps


@dataclass
class Edges:
    """What a task exposes to the structure losses; all maps (B, 1, H, W)."""

    predicted: Tensor  # soft edge probabilities in [0, 1], differentiable
    target: Tensor  # target edges in {0, 1}
    valid: Tensor  # pixels that count
    logits: Tensor | None = None  # pre-sigmoid edge logits, when the task has an edge head


class StructureLoss(nn.Module):
    """Named structure terms ``{"<task>/boundary_bce": …, "<task>/inverseform": …}``, each
    weighted by its config weight; InverseForm's also by the schedule's :meth:`factor` at the
    step, so that it can join after the network has learned the coarse layout."""

    def __init__(self, task: str, config: StructureConfig) -> None:
        super().__init__()
        if config.start_step < 0 or config.ramp_steps < 0:
            raise DenseError(f"tasks.{task}.structure: start_step and ramp_steps must be ≥ 0")
        self.task = task
        self.config = config
        self.inverseform = None
        if config.inverseform > 0:
            resize = tuple(config.resize) if config.resize else None
            net = load_inverse_net(config.network)
            self.inverseform = InverseFormLoss(net, config.distance, resize, config.empty_tile)

    @staticmethod
    def active(config: StructureConfig) -> bool:
        return config.boundary_bce > 0 or config.inverseform > 0

    def factor(self, step: int) -> float:
        """InverseForm's schedule: 0 before ``start_step``, then a linear ramp over
        ``ramp_steps`` up to 1."""
        since = step - self.config.start_step
        if since < 0:
            return 0.0
        return min(1.0, (since + 1) / self.config.ramp_steps) if self.config.ramp_steps else 1.0

    def needs_edges(self, step: int) -> bool:
        """Whether a term is on at ``step`` (otherwise the task's edges need not be made)."""
        return self.config.boundary_bce > 0 or (
            self.inverseform is not None and self.factor(step) > 0
        )

    def forward(self, edges: Edges | None, step: int = 0) -> dict[str, Tensor]:
        """The terms at ``step``; a term that is off is 0, and ``edges`` may be None where
        :meth:`needs_edges` says so."""
        config = self.config
        terms = {
            f"{self.task}/{n}": torch.zeros(())
            for n in ("boundary_bce", "inverseform")
            if getattr(config, n) > 0
        }
        if edges is None:
            return terms
        if config.boundary_bce > 0:
            logits = edges.logits
            if logits is None:
                p = edges.predicted.clamp(1e-6, 1 - 1e-6)
                logits = torch.log(p) - torch.log1p(-p)
            bce = balanced_bce(logits, edges.target, edges.valid)
            terms[f"{self.task}/boundary_bce"] = config.boundary_bce * bce
        factor = self.factor(step)
        if self.inverseform is not None and factor > 0:
            valid = edges.valid.float()
            distance = self.inverseform(edges.predicted * valid, edges.target * valid)
            terms[f"{self.task}/inverseform"] = factor * config.inverseform * distance
        return terms
