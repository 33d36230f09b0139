"""Semantic segmentation: per-pixel class logits trained with cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from dense.errors import DenseError
from dense.layers import ConvHead
from dense.metrics import ConfusionMatrix, Metric
from dense.registry import TASKS
from dense.visualize import colorize_labels, save_png
from tasks.base import DataInfo, Task, TaskConfig


@dataclass
class SegmentationConfig(TaskConfig):
    num_classes: int = 0  # 0: as many as the dataset names
    ignore_index: int = -1  # -1: the dataset's ignore index
    label_smoothing: float = 0.0


@TASKS.register("segmentation")
class Segmentation(Task):
    Config = SegmentationConfig
    target_key = "segmentation"
    keys = ("segmentation",)

    def __init__(self, name: str, config: SegmentationConfig, data: DataInfo) -> None:
        super().__init__(name, config, data)
        self.num_classes = config.num_classes or len(data.class_names)
        if self.num_classes < 2:
            raise DenseError(
                f"tasks.{name}.num_classes must be at least 2 (the dataset names no classes)"
            )
        self.ignore_index = data.ignore_index if config.ignore_index < 0 else config.ignore_index
        names = data.class_names
        self.class_names = names if len(names) == self.num_classes else ()

    def head(self, channels: int) -> nn.Module:
        return ConvHead(channels, self.num_classes)

    def loss(self, prediction: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        target = batch[self.target_key].long()
        ce = F.cross_entropy(
            prediction.float(),
            target,
            ignore_index=self.ignore_index,
            label_smoothing=self.config.label_smoothing,
        )
        if not (target != self.ignore_index).any():  # cross_entropy gives NaN on no pixel
            ce = prediction.sum() * 0.0
        return {f"{self.name}/ce": ce}

    def metric(self) -> Metric:
        return ConfusionMatrix(self.num_classes, self.ignore_index, self.class_names)

    def decode(self, prediction: Tensor) -> Tensor:
        return prediction.argmax(dim=1, keepdim=True)  # (B, 1, H, W)

    def render(self, value: Tensor) -> Tensor:
        return colorize_labels(value, self.num_classes, self.ignore_index)

    def save(self, value: Tensor, stem: Path) -> list[Path]:
        path = stem.with_name(f"{stem.name}_{self.name}.png")
        save_png(self.render(value), path)
        return [path]
