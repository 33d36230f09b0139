"""Supervised monocular depth: a bounded log-depth head trained with SILog or log-L1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.boundary_metrics import DepthBoundaryErrors, MetricGroup
from dense.errors import DenseError
from dense.layers import ConvHead
from dense.metrics import EIGEN_CROP, DepthMetrics, Metric, median_scale
from dense.structure import Edges
from dense.task import ColourKey, DataInfo, Outputs, Task, TaskConfig
from dense.visualize import DEPTH_ANCHORS, colorize_depth, save_png, save_png16
from losses.boundary import boundary_from_depth, soft_depth_edges
from losses.depth import log_l1_loss, silog_loss


@dataclass
class DepthOutputConfig(TaskConfig):
    """Options of every task that predicts metric depth: range, edges and evaluation."""

    # options whose default changed: a saved run config without one was made with this value
    FORMER_DEFAULTS: ClassVar[dict[str, object]] = {"edge_sharpness": 4.0}

    evaluation: ClassVar[tuple[str, ...]] = (
        "eval_min_depth",
        "eval_max_depth",
        "eval_crop",
        "eval_preset",
        "median_scaling",
    )
    min_depth: float = 0.1  # predictions lie in [min_depth, max_depth] metres
    max_depth: float = 10.0  # and ground truth outside (0, max_depth] is ignored in training
    edge_threshold: float = 0.05  # relative depth jump that makes an edge (structure losses)
    edge_sharpness: float = 16.0  # slope of the predicted soft edges (losses.soft_depth_edges)
    eval_min_depth: float = 1e-3  # evaluation counts ground truth in (eval_min, eval_max]
    eval_max_depth: float = 10.0  # and clamps predictions to that range
    eval_crop: Literal["none", "eigen"] = "none"  # "eigen": the standard NYU evaluation crop
    eval_preset: Literal["", "nyu"] = ""  # "nyu": Eigen crop and a 10 m cap (overrides both)
    median_scaling: bool = False  # scale each prediction by median(gt) / median(prediction)


@dataclass
class DepthConfig(DepthOutputConfig):
    loss: Literal["silog", "l1_log"] = "silog"
    silog_lambda: float = 0.85


class LogDepthHead(nn.Module):
    """Maps a sigmoid to log-depth in [log min, log max]: bounded, scale-aware, never ≤ 0."""

    def __init__(self, channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.conv = ConvHead(channels, 1)
        self.log_min = math.log(min_depth)
        self.log_range = math.log(max_depth) - self.log_min

    def forward(self, pyramid: list[Tensor], size: tuple[int, int]) -> Tensor:
        x = self.conv(pyramid, size).float()
        return torch.exp(self.log_min + self.log_range * torch.sigmoid(x))  # (B, 1, H, W)


def check_edge_sharpness(name: str, config: DepthOutputConfig) -> None:
    if not config.edge_sharpness > 0:
        raise DenseError(f"tasks.{name}.edge_sharpness must be > 0")


class Depth(Task):
    Config = DepthConfig
    target_key = "depth"

    def __init__(self, name: str, config: DepthConfig, data: DataInfo) -> None:
        super().__init__(name, config, data)
        if not 0 < config.min_depth < config.max_depth:
            raise DenseError(f"tasks.{name}: need 0 < min_depth < max_depth")
        if not 0 <= config.eval_min_depth < config.eval_max_depth:
            raise DenseError(f"tasks.{name}: need 0 <= eval_min_depth < eval_max_depth")
        check_edge_sharpness(name, config)

    def head(self, channels: int) -> nn.Module:
        return LogDepthHead(channels, self.config.min_depth, self.config.max_depth)

    def valid(self, target: Tensor) -> Tensor:
        return torch.isfinite(target) & (target > 0) & (target <= self.config.max_depth)

    def loss(
        self, prediction: Tensor, batch: dict[str, Tensor], outputs: Outputs
    ) -> dict[str, Tensor]:
        target = batch[self.target_key]
        valid = self.valid(target)
        target = torch.where(valid, target, torch.ones_like(target))
        if self.config.loss == "silog":
            value = silog_loss(prediction, target, valid, self.config.silog_lambda)
        else:
            value = log_l1_loss(prediction, target, valid)
        return {f"{self.name}/{self.config.loss}": value}

    def edges(self, prediction: Tensor, batch: dict[str, Tensor], outputs: Outputs) -> Edges:
        """Soft edges of the predicted depth against the ground truth's depth edges."""
        target = batch[self.target_key]
        valid = self.valid(target)
        threshold, radius = self.config.edge_threshold, self.config.structure.radius
        edges = boundary_from_depth(target, threshold, radius, valid)
        # pixels next to invalid depth cannot be judged either way
        judged = -F.max_pool2d(-valid.float(), 3, stride=1, padding=1) > 0
        predicted = soft_depth_edges(
            prediction.float(), threshold, radius, self.config.edge_sharpness
        )
        return Edges(predicted, edges, judged)

    def metric(self) -> Metric:
        config = self.config
        crop, low, high = config.eval_crop, config.eval_min_depth, config.eval_max_depth
        if config.eval_preset == "nyu":
            crop, low, high = "eigen", 1e-3, 10.0
        window = EIGEN_CROP if crop == "eigen" else None
        return MetricGroup(
            DepthMetrics(low, high, config.median_scaling, window),
            DepthBoundaryErrors(config.edge_threshold, max_depth=high),
        )

    def render(self, value: Tensor) -> Tensor:
        return colorize_depth(value, self.config.min_depth, self.config.max_depth)

    def colour_key(self) -> ColourKey:
        near_to_far = tuple(tuple(c) for c in DEPTH_ANCHORS.flip(0).tolist())
        scale = (self.config.min_depth, self.config.max_depth)
        return ColourKey(scale=scale, colours=near_to_far, label="depth (m)")

    def outline(self, value: Tensor) -> Tensor:
        depth = value.reshape(1, 1, *value.shape[-2:]).float()
        return boundary_from_depth(depth, self.config.edge_threshold, 1)[0, 0] > 0

    def align(self, value: Tensor, target: Tensor) -> Tensor:
        if not self.config.median_scaling:
            return value
        flat, goal = value.reshape(1, -1).float(), target.reshape(1, -1).float()
        scaled = median_scale(flat, goal, self.valid(goal))
        return scaled.reshape(value.shape).clamp(self.config.min_depth, self.config.max_depth)

    def save(self, value: Tensor, stem: Path) -> list[Path]:
        colour = stem.with_name(f"{stem.name}_{self.name}.png")
        millimetres = stem.with_name(f"{stem.name}_{self.name}16.png")
        save_png(self.render(value), colour)
        save_png16((value.float() * 1000).round().clamp(0, 65535), millimetres)
        return [colour, millimetres]
