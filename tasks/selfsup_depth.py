"""Self-supervised monocular depth from video (Monodepth2's recipe) on the shared encoder.

A disparity head predicts sigmoid disparity at several decoder scales; a training-only pose
network predicts the camera motion from the target frame to each source frame. Each scale's
disparity, upsampled to full resolution and mapped to depth, warps the source frames onto
the target (intrinsics per sample from the batch); the loss is the per-pixel minimum of the
SSIM + L1 photometric error over the sources, with auto-masking (the unwarped sources join
the minimum, so pixels that do not move are ignored), plus edge-aware smoothness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.errors import DenseError
from dense.geometry import inverse_warp, pose_from_vector
from dense.layers import ConvHead
from dense.registry import TASKS
from losses.boundary import boundary_from_image, boundary_from_labels, soft_depth_edges
from losses.photometric import disparity_to_depth, edge_aware_smoothness, photometric_error
from losses.structure import Edges
from tasks.base import DataInfo, Task
from tasks.depth import Depth, DepthOutputConfig

EdgeTarget = Literal["segmentation", "predicted_segmentation", "image", "depth"]


@dataclass
class SelfSupervisedDepthConfig(DepthOutputConfig):
    sources: list[str] = field(default_factory=lambda: ["prev", "next"])  # "<s>_image" keys
    scales: int = 4  # decoder scales with a loss: full resolution, then strides 8, 16, 32
    ssim_weight: float = 0.85  # photometric error = w·(1 − SSIM)/2 + (1 − w)·L1
    smoothness: float = 1e-3  # edge-aware smoothness weight (divided by 2^scale)
    automask: bool = True  # ignore pixels that the unwarped source already explains
    pose_scale: float = 0.01  # the pose network's outputs are multiplied by this
    pose_channels: int = 16  # width of the pose network's first layer (doubles per layer)
    pose_resolution: float = 0.5  # the pose network sees the frames at this fraction of size
    median_scaling: bool = True  # monocular depth has no scale: evaluate after median scaling
    edge_target: EdgeTarget = "segmentation"  # target edges of the structure losses
    edge_task: str = "segmentation"  # the task whose prediction predicted_segmentation uses
    image_edge_threshold: float = 0.1  # grey-level jump that makes an image edge


def source_frames(batch: dict[str, Any], sources: list[str]) -> list[Tensor]:
    """The batch's ``<source>_image`` frames; a clear error when the data has none."""
    missing = [f"{s}_image" for s in sources if f"{s}_image" not in batch] + [
        key for key in ("K",) if key not in batch
    ]
    if missing:
        raise DenseError(
            f"self-supervised depth needs batch keys {missing}: use data with neighbour "
            "frames (synthetic: data.options.neighbours = true; or the sequences dataset)"
        )
    return [batch[f"{s}_image"] for s in sources]


class DisparityHead(nn.Module):
    """Sigmoid disparity: full resolution from the finest pyramid level and, in training, one
    map per coarser level (``scales`` in all); in eval mode only the full-resolution map."""

    def __init__(self, channels: int, scales: int) -> None:
        super().__init__()
        self.full = ConvHead(channels, 1)
        self.coarse = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1) for _ in range(scales - 1))

    def forward(self, pyramid: list[Tensor], size: tuple[int, int]) -> Tensor | list[Tensor]:
        full = torch.sigmoid(self.full(pyramid, size).float())
        if not self.training:
            return full
        if len(pyramid) < len(self.coarse) + 1:
            raise DenseError(f"scales = {len(self.coarse) + 1} needs that many decoder levels")
        coarse = [conv(level) for conv, level in zip(self.coarse, pyramid[1:], strict=False)]
        return [full, *(torch.sigmoid(x.float()) for x in coarse)]


class PoseNetwork(nn.Module):
    """Camera motion from a (target, source) pair stacked on channels, seen at ``resolution``
    times the image size: seven stride-2 conv-BN-ReLU layers, a 1×1 conv to 6 numbers averaged
    over space and scaled down → target-to-source 4×4 poses (axis-angle, translation)."""

    def __init__(self, sources: list[str], channels: int, scale: float, resolution: float):
        super().__init__()
        self.sources, self.scale, self.resolution = sources, scale, resolution
        widths = [6] + [channels * 2**i for i in range(5)] + [channels * 16] * 2
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            kernel = 7 if i == 0 else 5 if i == 1 else 3
            layers += [
                nn.Conv2d(a, b, kernel, stride=2, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], 6, 1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        target = batch["image"]
        frames = source_frames(batch, self.sources)
        pairs = torch.cat([torch.cat([target, frame], dim=1) for frame in frames], dim=0)
        if self.resolution != 1:
            pairs = F.interpolate(pairs, scale_factor=self.resolution, mode="area")
        features = self.body((pairs - 0.45) / 0.225)
        with torch.autocast(features.device.type, enabled=False):  # poses in float32
            vector = self.out(features.float()).mean((2, 3)) * self.scale
        poses = pose_from_vector(vector).chunk(len(self.sources))
        return dict(zip(self.sources, poses, strict=True))


@TASKS.register("selfsup_depth")
class SelfSupervisedDepth(Depth):
    """Depth learned from video; evaluated (and drawn) like supervised depth."""

    Config = SelfSupervisedDepthConfig
    target_key = "depth"  # ground truth for evaluation only
    keys = ("image", "K")

    def __init__(self, name: str, config: SelfSupervisedDepthConfig, data: DataInfo) -> None:
        super().__init__(name, config, data)
        if not config.sources:
            raise DenseError(f"tasks.{name}.sources: name at least one source frame")
        if not 1 <= config.scales <= 4:
            raise DenseError(f"tasks.{name}.scales must be between 1 and 4")
        if not 0 < config.pose_resolution <= 1:
            raise DenseError(f"tasks.{name}.pose_resolution must lie in (0, 1]")
        self.peer: Task | None = None

    def connect(self, tasks: dict[str, Task]) -> None:
        if self.config.edge_target != "predicted_segmentation":
            return
        if self.config.edge_task not in tasks or self.config.edge_task == self.name:
            raise DenseError(
                f"tasks.{self.name}.edge_task: edge_target = 'predicted_segmentation' needs a "
                f"segmentation task named '{self.config.edge_task}' in the run"
            )
        self.peer = tasks[self.config.edge_task]

    def head(self, channels: int) -> nn.Module:
        return DisparityHead(channels, self.config.scales)

    def auxiliary(self) -> nn.Module:
        config = self.config
        return PoseNetwork(
            list(config.sources), config.pose_channels, config.pose_scale, config.pose_resolution
        )

    def decode(self, prediction: Tensor) -> Tensor:
        return disparity_to_depth(prediction, self.config.min_depth, self.config.max_depth)

    def loss(self, prediction: list[Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        config = self.config
        target, K = batch["image"], batch["K"].float()
        sources = source_frames(batch, config.sources)
        poses = batch["outputs"][f"{self.name}.auxiliary"]
        size = target.shape[-2:]
        identity = []
        if config.automask:  # tiny noise breaks ties between identical errors
            identity = [
                photometric_error(source, target, config.ssim_weight)
                + 1e-5 * torch.randn_like(target[:, :1])
                for source in sources
            ]
        photometric = smoothness = target.new_zeros(())
        for scale, disparity in enumerate(prediction):
            full = F.interpolate(disparity, size=size, mode="bilinear", align_corners=False)
            depth = self.decode(full)
            errors = identity + [
                photometric_error(
                    inverse_warp(source, depth, K, poses[name]), target, config.ssim_weight
                )
                for name, source in zip(config.sources, sources, strict=True)
            ]
            photometric = photometric + torch.stack(errors).amin(0).mean()
            image = F.interpolate(target, size=disparity.shape[-2:], mode="area")
            smoothness = smoothness + edge_aware_smoothness(disparity, image) / 2**scale
        count = len(prediction)
        return {
            f"{self.name}/photometric": photometric / count,
            f"{self.name}/smoothness": config.smoothness * smoothness / count,
        }

    def edges(self, prediction: Tensor | list[Tensor], batch: dict[str, Any]) -> Edges:
        """Soft edges of the predicted depth against the configured target edges."""
        disparity = prediction[0] if isinstance(prediction, list) else prediction
        depth = self.decode(disparity)
        config, radius = self.config, self.config.structure.radius
        if config.edge_target == "depth":
            return super().edges(depth, batch)
        predicted = soft_depth_edges(depth, config.edge_threshold, radius)
        if config.edge_target == "image":
            target = boundary_from_image(batch["image"], config.image_edge_threshold, radius)
            return Edges(predicted, target, torch.ones_like(target, dtype=torch.bool))
        if config.edge_target == "segmentation":
            if "segmentation" not in batch:
                raise DenseError(f"tasks.{self.name}.edge_target: the data has no segmentation")
            labels, ignore = batch["segmentation"], self.data.ignore_index
        else:
            peer_output = batch["outputs"][config.edge_task].detach()
            labels, ignore = self.peer.decode(peer_output)[:, 0], -1
        target, valid = boundary_from_labels(labels, radius, ignore)
        return Edges(predicted, target, valid)
