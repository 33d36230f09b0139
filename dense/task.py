"""The task plug-in contract.

A task owns everything about one prediction target: its head, its named loss terms, its
metric, and how its outputs are decoded, drawn and saved. The engine only talks to this
interface, so a new task is one class in one file, declared as an entry point in the group
``dense.tasks`` (or registered with ``dense.registry.TASKS.register``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from dense.errors import DenseError
from dense.metrics import Metric
from dense.structure import Edges, StructureConfig


@dataclass
class TaskConfig:
    """Options every task has; a task's own ``Config`` dataclass extends this one."""

    # options that only change how predictions are scored: `dense eval` may override these
    evaluation: ClassVar[tuple[str, ...]] = ()
    weight: float = 1.0  # the task's loss weight under fixed weighting
    structure: StructureConfig = field(default_factory=StructureConfig)  # edge losses


@dataclass
class Outputs:
    """One forward pass of the model, by task name: each task's prediction and, where the
    model was given the batch, each task's auxiliary network output (its pose, say).
    ``outputs[name]`` is task ``name``'s prediction."""

    predictions: dict[str, Any]
    auxiliary: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.predictions[name]


@dataclass(frozen=True)
class ColourKey:
    """How to read a task's pictures: named class colours, or a colour scale (low → high)
    between two values in ``unit``."""

    classes: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    scale: tuple[float, float] | None = None
    colours: tuple[tuple[float, float, float], ...] = ()  # RGB in [0, 1], low → high
    label: str = ""  # what the scale measures, with its unit


@dataclass(frozen=True)
class DataInfo:
    """What a task may need to know about the dataset it trains on."""

    class_names: tuple[str, ...] = ()
    ignore_index: int = 255


class Task(ABC):
    """Base class of task plug-ins. Subclasses set the class attributes and override
    ``head``, ``loss`` and ``metric``; the other methods have working defaults."""

    Config: ClassVar[type] = TaskConfig
    target_key: ClassVar[str] = ""  # the batch key holding this task's ground truth

    def __init__(self, name: str, config: Any, data: DataInfo) -> None:
        self.name = name
        self.config = config
        self.data = data

    @abstractmethod
    def head(self, channels: int) -> nn.Module:
        """A module mapping (pyramid, (H, W)) to this task's raw prediction at size H×W."""

    @abstractmethod
    def loss(self, prediction: Any, batch: dict[str, Any], outputs: Outputs) -> dict[str, Tensor]:
        """Named loss terms ``{"<task>/<term>": scalar}``; the task's loss is their sum.
        ``outputs`` is the whole forward pass (other tasks' predictions, auxiliary outputs)."""

    @abstractmethod
    def metric(self) -> Metric:
        """A fresh streaming metric for this task."""

    def auxiliary(self) -> nn.Module | None:
        """A network the loss needs (a pose network, say), called with the batch in training
        steps and in evaluation (where it may return None when the batch lacks its inputs);
        its output reaches ``loss`` and ``update_metric`` as ``outputs.auxiliary[name]``.
        Trained and saved with the model, never run by predict."""
        return None

    def connect(self, tasks: dict[str, Task]) -> None:
        """Called once with every task of the run, for tasks that use another task's output."""
        return None

    def update_metric(
        self, metric: Metric, prediction: Tensor, batch: dict[str, Tensor], outputs: Outputs
    ) -> None:
        if self.target_key not in batch:
            raise DenseError(
                f"task {self.name} is evaluated against batch key '{self.target_key}', "
                "which this data split does not provide"
            )
        metric.update(self.decode(prediction), batch[self.target_key])

    def edges(self, prediction: Any, batch: dict[str, Any], outputs: Outputs) -> Edges | None:
        """Predicted soft edges and target edges for the structure losses; None when the task
        has no edges (the engine refuses structure losses for it, see ``has_edges``)."""
        return None

    @classmethod
    def has_edges(cls) -> bool:
        return cls.edges is not Task.edges

    def decode(self, prediction: Tensor) -> Tensor:
        """Raw head output → the task's output in its own units (labels, metres, ...)."""
        return prediction

    def render(self, value: Tensor) -> Tensor | None:
        """A decoded prediction or a target (C, H, W) as a uint8 RGB picture, if drawable."""
        return None

    def colour_key(self) -> ColourKey | None:
        """How to read ``render``'s colours (drawn beside comparison pictures); None: no key."""
        return None

    def outline(self, value: Tensor) -> Tensor | None:
        """(H, W) bool boundaries of a decoded prediction or target (C, H, W), drawn over
        ``render`` in comparison pictures; None when the task has none."""
        return None

    def align(self, value: Tensor, target: Tensor) -> Tensor:
        """A decoded prediction made comparable to its target for display (depth known only
        up to scale is median-scaled, say); unchanged by default."""
        return value

    def save(self, value: Tensor, stem: Path) -> list[Path]:
        """Write one decoded prediction (C, H, W) next to ``stem``; return the files written."""
        return []
