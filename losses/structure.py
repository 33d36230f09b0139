"""Structure losses on any task's edges: class-balanced boundary BCE and InverseForm.

A task opts in by implementing ``Task.edges`` (predicted soft edges, target edges) and the
user switches the terms on per task with ``[tasks.NAME.structure]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from dense.errors import DenseError
from losses.boundary import balanced_bce
from losses.inverseform import Distance, InverseFormLoss, InverseNet


@dataclass
class StructureConfig:
    boundary_bce: float = 0.0  # weight of class-balanced BCE between predicted and target edges
    inverseform: float = 0.0  # weight of the InverseForm term
    network: str = ""  # a `dense fit-inverseform` file, the official .pth, or "nyu13" (bundled)
    distance: Distance = "pixels"  # RMS displacement in px; "euclidean" ‖θ̂‖; "geodesic" (8 p.)
    empty_tile: float = 0.01  # tile pairs whose maps both have a smaller mean are skipped
    resize: list[int] = field(default_factory=list)  # [H, W] before tiling; [] keeps the size
    radius: int = 2  # thickness of target boundaries, pixels


@dataclass
class Edges:
    """What a task exposes to the structure losses; all maps (B, 1, H, W)."""

    predicted: Tensor  # soft edge probabilities in [0, 1], differentiable
    target: Tensor  # target edges in {0, 1}
    valid: Tensor  # pixels that count
    logits: Tensor | None = None  # pre-sigmoid edge logits, when the task has an edge head


BUNDLED_NETWORKS = {"nyu13": str(Path(__file__).parent / "data" / "inverse_net_nyu13.pt")}


def load_inverse_net(path: str) -> InverseNet:
    """Load a fitted inverse network: a file, or the name of a bundled one (``"nyu13"``)."""
    path = BUNDLED_NETWORKS.get(path, path)
    if not path:
        raise DenseError(
            "structure.inverseform > 0 needs structure.network (an inverse network file)"
        )
    if not Path(path).is_file():
        raise DenseError(f"structure.network: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return InverseNet.from_state(state)
    except Exception as error:  # any unreadable or foreign file
        raise DenseError(f"structure.network {path} is not an inverse network: {error}") from None


class StructureLoss(nn.Module):
    """Named structure terms ``{"<task>/boundary_bce": …, "<task>/inverseform": …}``."""

    def __init__(self, task: str, config: StructureConfig) -> None:
        super().__init__()
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

    def forward(self, edges: Edges) -> dict[str, Tensor]:
        terms = {}
        if self.config.boundary_bce > 0:
            logits = edges.logits
            if logits is None:
                p = edges.predicted.clamp(1e-6, 1 - 1e-6)
                logits = torch.log(p) - torch.log1p(-p)
            bce = balanced_bce(logits, edges.target, edges.valid)
            terms[f"{self.task}/boundary_bce"] = self.config.boundary_bce * bce
        if self.inverseform is not None:
            valid = edges.valid.float()
            distance = self.inverseform(edges.predicted * valid, edges.target * valid)
            terms[f"{self.task}/inverseform"] = self.config.inverseform * distance
        return terms
