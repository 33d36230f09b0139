"""Semantic segmentation: per-pixel class logits trained with cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.boundary_metrics import BoundaryScores, MetricGroup
from dense.errors import DenseError
from dense.layers import ConvHead
from dense.metrics import ConfusionMatrix, Metric
from dense.structure import Edges
from dense.task import ColourKey, DataInfo, Outputs, Task, TaskConfig
from dense.visualize import colorize_labels, label_palette, save_png
from losses.boundary import boundary_from_labels, soft_label_edges


@dataclass
class SegmentationConfig(TaskConfig):
    evaluation: ClassVar[tuple[str, ...]] = ("boundary_tolerances",)
    num_classes: int = 0  # 0: as many as the dataset names
    ignore_index: int = -1  # -1: the dataset's ignore index
    label_smoothing: float = 0.0
    boundary_head: bool = False  # a 1-channel boundary output (sigmoid) beside the classes
    edge_source: Literal["head", "probs"] = "head"  # predicted edges: boundary head, or
    # boundaries of the soft class probabilities
    edge_attention: float = 0.0  # weight of CE on pixels the boundary head calls boundary
    boundary_tolerances: list[int] = field(default_factory=lambda: [1, 3, 5])  # F-score, px


class SegmentationHead(nn.Module):
    """Class logits, plus one boundary logit channel appended when ``boundary`` is set."""

    def __init__(self, channels: int, num_classes: int, boundary: bool) -> None:
        super().__init__()
        self.classes = ConvHead(channels, num_classes)
        self.boundary = ConvHead(channels, 1) if boundary else None

    def forward(self, pyramid: list[Tensor], size: tuple[int, int]) -> Tensor:
        logits = self.classes(pyramid, size)
        if self.boundary is None:
            return logits
        return torch.cat([logits, self.boundary(pyramid, size)], dim=1)  # (B, K + 1, H, W)


class Segmentation(Task):
    Config = SegmentationConfig
    target_key = "segmentation"

    def __init__(self, name: str, config: SegmentationConfig, data: DataInfo) -> None:
        super().__init__(name, config, data)
        self.num_classes = config.num_classes or len(data.class_names)
        if self.num_classes < 2:
            raise DenseError(
                f"tasks.{name}.num_classes must be at least 2 (the dataset names no classes)"
            )
        if self.num_classes < len(data.class_names):
            raise DenseError(
                f"tasks.{name}.num_classes = {self.num_classes} is less than the dataset's "
                f"{len(data.class_names)} classes (0 takes the dataset's number)"
            )
        if not 0 <= config.label_smoothing < 1:
            raise DenseError(f"tasks.{name}.label_smoothing must be in [0, 1)")
        if not config.boundary_tolerances or min(config.boundary_tolerances) < 0:
            raise DenseError(f"tasks.{name}.boundary_tolerances: give one or more pixel counts ≥ 0")
        self.ignore_index = data.ignore_index if config.ignore_index < 0 else config.ignore_index
        names = data.class_names
        self.class_names = names if len(names) == self.num_classes else ()
        needs_head = config.edge_source == "head" and config.structure.inverseform > 0
        if (needs_head or config.edge_attention > 0) and not config.boundary_head:
            raise DenseError(
                f"tasks.{name}: edge_source='head' and edge_attention need boundary_head = true"
            )

    def head(self, channels: int) -> nn.Module:
        return SegmentationHead(channels, self.num_classes, self.config.boundary_head)

    def cross_entropy(self, logits: Tensor, target: Tensor) -> Tensor:
        if not (target != self.ignore_index).any():  # cross_entropy gives NaN on no pixel
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits.float(),
            target,
            ignore_index=self.ignore_index,
            label_smoothing=self.config.label_smoothing,
        )

    def loss(
        self, prediction: Tensor, batch: dict[str, Tensor], outputs: Outputs
    ) -> dict[str, Tensor]:
        target = batch[self.target_key].long()
        logits = prediction[:, : self.num_classes]
        terms = {f"{self.name}/ce": self.cross_entropy(logits, target)}
        if self.config.edge_attention > 0:
            # Gated-SCNN's term: CE only where the boundary head is confident (p > 0.8)
            on_edge = torch.sigmoid(prediction[:, self.num_classes]) > 0.8
            focused = torch.where(on_edge, target, self.ignore_index)
            attention = self.cross_entropy(logits, focused)
            terms[f"{self.name}/edge_attention"] = self.config.edge_attention * attention
        return terms

    def edges(self, prediction: Tensor, batch: dict[str, Tensor], outputs: Outputs) -> Edges:
        radius = self.config.structure.radius
        target, valid = boundary_from_labels(batch[self.target_key], radius, self.ignore_index)
        if self.config.edge_source == "head":
            logits = prediction[:, self.num_classes :].float()
            return Edges(torch.sigmoid(logits), target, valid, logits)
        probabilities = torch.softmax(prediction[:, : self.num_classes].float(), dim=1)
        return Edges(soft_label_edges(probabilities, radius), target, valid)

    def metric(self) -> Metric:
        return MetricGroup(
            ConfusionMatrix(self.num_classes, self.ignore_index, self.class_names),
            BoundaryScores(
                self.num_classes, self.ignore_index, tuple(self.config.boundary_tolerances)
            ),
        )

    def decode(self, prediction: Tensor) -> Tensor:
        return prediction[:, : self.num_classes].argmax(dim=1, keepdim=True)  # (B, 1, H, W)

    def render(self, value: Tensor) -> Tensor:
        return colorize_labels(value, self.num_classes, self.ignore_index)

    def colour_key(self) -> ColourKey:
        palette = label_palette(self.num_classes).tolist()
        names = self.class_names or tuple(f"class {i}" for i in range(self.num_classes))
        return ColourKey(classes=tuple((n, tuple(c)) for n, c in zip(names, palette, strict=True)))

    def outline(self, value: Tensor) -> Tensor:
        edges, _ = boundary_from_labels(value.reshape(1, *value.shape[-2:]), 1, self.ignore_index)
        return edges[0, 0] > 0

    def save(self, value: Tensor, stem: Path) -> list[Path]:
        path = stem.with_name(f"{stem.name}_{self.name}.png")
        save_png(self.render(value), path)
        return [path]
