"""Self-supervised monocular depth from video (Monodepth2's recipe) on the shared encoder.

A disparity head predicts sigmoid disparity at several decoder scales; a training-only pose
network predicts the camera motion from the target frame to each source frame. Each scale's
disparity, upsampled to full resolution and mapped to depth, warps the source frames onto
the target (intrinsics per sample from the batch); the loss is the per-pixel minimum of the
SSIM + L1 photometric error over the sources, with auto-masking (the unwarped sources join
the minimum, so pixels that do not move are ignored), plus edge-aware smoothness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.boundary_metrics import MetricGroup
from dense.errors import DenseError
from dense.geometry import inverse_warp, scale_intrinsics
from dense.layers import ConvHead
from dense.metrics import Metric, PoseErrors
from dense.structure import Edges
from dense.task import DataInfo, Outputs, Task
from losses.boundary import boundary_from_image, boundary_from_labels, soft_depth_edges
from losses.photometric import disparity_to_depth, edge_aware_smoothness, photometric_error
from tasks.depth import Depth, DepthOutputConfig, check_edge_sharpness
from tasks.pose_networks import (
    CorrelationPoseNetwork,
    MotionField,
    MotionPoseNetwork,
    StackedPoseNetwork,
)
from tasks.pose_refinement import refine_poses

EdgeTarget = Literal["segmentation", "predicted_segmentation", "image", "depth"]
Source = Literal["network", "ground_truth"]
PoseSource = Literal["network", "ground_truth", "true_rotation", "true_translation"]


@dataclass
class SelfSupervisedDepthConfig(DepthOutputConfig):
    # options whose default changed: a saved run config without one was made with this value
    FORMER_DEFAULTS: ClassVar[dict[str, object]] = {
        **DepthOutputConfig.FORMER_DEFAULTS,
        "pose_refinement": 0,
    }

    sources: list[str] = field(default_factory=lambda: ["prev", "next"])  # "<s>_image" keys
    scales: int = 4  # decoder scales with a loss: full resolution, then strides 8, 16, 32
    ssim_weight: float = 0.85  # photometric error = w·(1 − SSIM)/2 + (1 − w)·L1
    smoothness: float = 1e-3  # edge-aware smoothness weight (divided by 2^scale)
    automask: bool = True  # ignore pixels that the unwarped source already explains
    image_scales: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # photometric loss
    # at each of these image downsampling factors: coarse views give the pose useful gradients
    init_depth: float = 2.5  # metres the untrained head predicts everywhere (room scale)
    pose_network: Literal["correlation", "stacked", "motion"] = "correlation"  # see
    # tasks/pose_networks.py; "motion": flow + confidence, pose solved with the depth
    pose_channels: int = 32  # correlation: width of the siamese stem
    pose_radius: int = 4  # correlation: offsets ±radius cells (stride 4) in the cost volume
    pose_encoder: str = "resnet18"  # stacked: timm backbone of the pose network
    pose_scale: float = 0.01  # the pose network's rotation outputs are multiplied by this
    translation_scale: float = 0.1  # and its translation outputs by this (metres)
    flow_scale: float = 2.0  # motion: its flow outputs times this are full-size pixels
    pose_resolution: float = 0.5  # the pose network sees the frames at this fraction of size
    pose_refinement: int = 3  # Gauss-Newton steps per factor of refine_factors that align each
    # source to the target photometrically with the predicted depth (0: the network's pose)
    refine_factors: list[int] = field(default_factory=lambda: [8, 4, 2])  # coarse to fine
    pose_source: PoseSource = "network"  # "ground_truth": the data's poses (an oracle);
    # "true_rotation" / "true_translation": that half from the data, the other the network's
    depth_source: Source = "network"  # "ground_truth": warp with true depth (an oracle)
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
    map per coarser level (``scales`` in all); in eval mode only the full-resolution map.

    Every output starts at ``initial`` disparity (its bias is the logit of it), so the untrained
    network predicts a room-scale depth rather than the sigmoid's midpoint, which is near
    ``min_depth``: against real camera motion a depth that small warps every pixel worse than
    no warp at all, the auto-mask then hides the whole image and the depth gets no gradient.
    """

    def __init__(self, channels: int, scales: int, initial: float) -> None:
        super().__init__()
        self.full = ConvHead(channels, 1)
        self.coarse = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1) for _ in range(scales - 1))
        logit = math.log(initial / (1 - initial))
        for conv in [self.full.out, *self.coarse]:
            nn.init.constant_(conv.bias, logit)

    def forward(self, pyramid: list[Tensor], size: tuple[int, int]) -> Tensor | list[Tensor]:
        full = torch.sigmoid(self.full(pyramid, size).float())
        if not self.training:
            return full
        if len(pyramid) < len(self.coarse) + 1:
            raise DenseError(f"scales = {len(self.coarse) + 1} needs that many decoder levels")
        coarse = [conv(level) for conv, level in zip(self.coarse, pyramid[1:], strict=False)]
        return [full, *(torch.sigmoid(x.float()) for x in coarse)]


def reprojection_errors(
    target: Tensor,
    sources: dict[str, Tensor],
    depth: Tensor,
    K: Tensor,
    poses: dict[str, Tensor],
    ssim_weight: float = 0.85,
) -> list[Tensor]:
    """Photometric error (B, 1, H, W) of each source warped onto the target by the target's
    depth (B, 1, H, W) and the target-to-source poses (B, 4, 4)."""
    return [
        photometric_error(inverse_warp(source, depth, K, poses[name]), target, ssim_weight)
        for name, source in sources.items()
    ]


def unwarped_errors(
    target: Tensor, sources: dict[str, Tensor], ssim_weight: float = 0.85
) -> list[Tensor]:
    """Auto-masking's terms: each unwarped source against the target, plus tiny noise that
    breaks ties between identical errors."""
    return [
        photometric_error(source, target, ssim_weight) + 1e-5 * torch.randn_like(target[:, :1])
        for source in sources.values()
    ]


@dataclass
class View:
    """The target and source frames seen at 1/``factor`` of the image size, with the
    intrinsics scaled to match and the auto-mask's unwarped errors at that size."""

    factor: int
    target: Tensor
    sources: dict[str, Tensor]
    K: Tensor
    identity: list[Tensor]

    @classmethod
    def of(
        cls,
        target: Tensor,
        sources: dict[str, Tensor],
        K: Tensor,
        factor: int,
        config: SelfSupervisedDepthConfig,
    ) -> View:
        if factor > 1:
            target = F.avg_pool2d(target, factor, ceil_mode=True)
            sources = {name: F.avg_pool2d(s, factor, ceil_mode=True) for name, s in sources.items()}
            K = scale_intrinsics(K, 1 / factor, 1 / factor)
        identity = unwarped_errors(target, sources, config.ssim_weight) if config.automask else []
        return cls(factor, target, sources, K.float(), identity)

    def loss(self, depth: Tensor, poses: dict[str, Tensor], ssim_weight: float) -> Tensor:
        """Mean over pixels of the per-pixel minimum photometric error over the sources warped
        by ``depth`` (full size; pooled here) and the poses, and the unwarped sources."""
        if self.factor > 1:
            depth = F.avg_pool2d(depth, self.factor, ceil_mode=True)
        errors = reprojection_errors(self.target, self.sources, depth, self.K, poses, ssim_weight)
        return torch.stack(self.identity + errors).amin(0).mean()


def true_depth(batch: dict[str, Any], max_depth: float) -> Tensor:
    """The data's depth for the depth oracle, holes filled with the farthest valid depth."""
    if "depth" not in batch:
        raise DenseError("depth_source = 'ground_truth' needs data with depth")
    depth = batch["depth"].float()
    valid = torch.isfinite(depth) & (depth > 0)
    return torch.where(valid, depth, torch.full_like(depth, max_depth)).clamp(max=max_depth)


class SelfSupervisedDepth(Depth):
    """Depth learned from video; evaluated (and drawn) like supervised depth."""

    Config = SelfSupervisedDepthConfig
    target_key = "depth"  # ground truth for evaluation only

    def __init__(self, name: str, config: SelfSupervisedDepthConfig, data: DataInfo) -> None:
        super().__init__(name, config, data)
        if not config.sources:
            raise DenseError(f"tasks.{name}.sources: name at least one source frame")
        if not 1 <= config.scales <= 4:
            raise DenseError(f"tasks.{name}.scales must be between 1 and 4")
        if not 0 < config.pose_resolution <= 1:
            raise DenseError(f"tasks.{name}.pose_resolution must lie in (0, 1]")
        if not config.image_scales or any(f < 1 for f in config.image_scales):
            raise DenseError(f"tasks.{name}.image_scales: give factors ≥ 1, such as [1, 2, 4, 8]")
        if (
            config.pose_refinement < 0
            or not config.refine_factors
            or min(config.refine_factors) < 1
        ):
            raise DenseError(
                f"tasks.{name}.pose_refinement must be ≥ 0 and refine_factors factors ≥ 1"
            )
        if not config.min_depth < config.init_depth < config.max_depth:
            raise DenseError(f"tasks.{name}.init_depth must lie between min_depth and max_depth")
        check_edge_sharpness(name, config)
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
        config = self.config
        low, high = 1 / config.max_depth, 1 / config.min_depth
        return DisparityHead(channels, config.scales, (1 / config.init_depth - low) / (high - low))

    def auxiliary(self) -> nn.Module | None:
        config = self.config
        if config.pose_source == "ground_truth":
            return None
        sources, resolution = list(config.sources), config.pose_resolution
        scales = (config.pose_scale, config.translation_scale)
        if config.pose_network == "stacked":
            return StackedPoseNetwork(sources, scales, resolution, config.pose_encoder)
        if config.pose_network == "motion":
            return MotionPoseNetwork(
                sources, resolution, config.pose_channels, config.pose_radius, config.flow_scale
            )
        return CorrelationPoseNetwork(
            sources, scales, resolution, config.pose_channels, config.pose_radius
        )

    def decode(self, prediction: Tensor) -> Tensor:
        return disparity_to_depth(prediction, self.config.min_depth, self.config.max_depth)

    def loss(
        self, prediction: list[Tensor], batch: dict[str, Any], outputs: Outputs
    ) -> dict[str, Tensor]:
        config = self.config
        frames = dict(zip(config.sources, source_frames(batch, config.sources), strict=True))
        image, K = batch["image"], batch["K"]
        views = [View.of(image, frames, K, factor, config) for factor in config.image_scales]
        photometric = smoothness = batch["image"].new_zeros(())
        poses = None
        for scale, disparity in enumerate(prediction):
            size = batch["image"].shape[-2:]
            full = F.interpolate(disparity, size, mode="bilinear", align_corners=False)
            depth = self.decode(full)
            if config.depth_source == "ground_truth":
                depth = true_depth(batch, config.max_depth)
            if poses is None:  # a motion field's pose comes from the full-resolution depth
                poses = self.poses(batch, outputs, depth)
            for view in views:
                photometric = photometric + view.loss(depth, poses, config.ssim_weight)
            image = F.interpolate(batch["image"], size=disparity.shape[-2:], mode="area")
            smoothness = smoothness + edge_aware_smoothness(disparity, image) / 2**scale
        count = len(prediction)
        return {
            f"{self.name}/photometric": photometric / (count * len(views)),
            f"{self.name}/smoothness": config.smoothness * smoothness / count,
        }

    def network_poses(self, outputs: Outputs, depth: Tensor, K: Tensor) -> dict[str, Tensor]:
        """The pose network's poses; motion fields are solved with the target's depth."""
        return {
            name: out.pose(depth, K) if isinstance(out, MotionField) else out
            for name, out in outputs.auxiliary[self.name].items()
        }

    def estimated_poses(
        self, batch: dict[str, Any], outputs: Outputs, depth: Tensor
    ) -> dict[str, Tensor]:
        """The network's poses, photometrically refined with the (detached) ``depth`` when
        ``pose_refinement`` > 0: the refined value, with the gradient of the network's pose."""
        config = self.config
        poses = self.network_poses(outputs, depth, batch["K"])
        if config.pose_refinement == 0:
            return poses
        frames = dict(zip(config.sources, source_frames(batch, config.sources), strict=True))
        refined = refine_poses(
            batch["image"], frames, depth.detach(), batch["K"], poses,
            config.refine_factors, config.pose_refinement,
        )  # fmt: skip
        return {name: pose + (refined[name] - pose).detach() for name, pose in poses.items()}

    def poses(self, batch: dict[str, Any], outputs: Outputs, depth: Tensor) -> dict[str, Tensor]:
        """Target-to-source poses: the pose network's (refined if configured), the data's (the
        oracle), or the network's with its rotation or its translation replaced by the data's."""
        source = self.config.pose_source
        if source == "network":
            return self.estimated_poses(batch, outputs, depth)
        missing = [f"{s}_pose" for s in self.config.sources if f"{s}_pose" not in batch]
        if missing:
            raise DenseError(f"tasks.{self.name}.pose_source = '{source}': no {missing}")
        truth = {s: batch[f"{s}_pose"].float() for s in self.config.sources}
        if source == "ground_truth":
            return truth
        mixed = {}
        for name, predicted in self.network_poses(outputs, depth, batch["K"]).items():
            pose = predicted.clone()
            if source == "true_rotation":
                pose[:, :3, :3] = truth[name][:, :3, :3]
            else:
                pose[:, :3, 3] = truth[name][:, :3, 3]
            mixed[name] = pose
        return mixed

    def metric(self) -> Metric:
        return MetricGroup(super().metric(), PoseErrors())

    def update_metric(
        self, metric: Metric, prediction: Tensor, batch: dict[str, Any], outputs: Outputs
    ) -> None:
        """Depth metrics and, where the data has true poses, the errors of the poses the loss
        would use (the network's, refined if configured)."""
        depth, pose = metric.metrics
        super().update_metric(depth, prediction, batch, outputs)
        if outputs.auxiliary.get(self.name) is None:
            return
        for name, predicted in self.estimated_poses(
            batch, outputs, self.decode(prediction)
        ).items():
            if f"{name}_pose" in batch:
                pose.update(predicted, batch[f"{name}_pose"])

    def edges(
        self, prediction: Tensor | list[Tensor], batch: dict[str, Any], outputs: Outputs
    ) -> Edges:
        """Soft edges of the predicted depth against the configured target edges."""
        disparity = prediction[0] if isinstance(prediction, list) else prediction
        depth = self.decode(disparity)
        config, radius = self.config, self.config.structure.radius
        if config.edge_target == "depth":
            return super().edges(depth, batch, outputs)
        predicted = soft_depth_edges(depth, config.edge_threshold, radius, config.edge_sharpness)
        if config.edge_target == "image":
            target = boundary_from_image(batch["image"], config.image_edge_threshold, radius)
            return Edges(predicted, target, torch.ones_like(target, dtype=torch.bool))
        if config.edge_target == "segmentation":
            if "segmentation" not in batch:
                raise DenseError(f"tasks.{self.name}.edge_target: the data has no segmentation")
            labels, ignore = batch["segmentation"], self.data.ignore_index
        else:
            peer_output = outputs[config.edge_task].detach()
            labels, ignore = self.peer.decode(peer_output)[:, 0], -1
        target, valid = boundary_from_labels(labels, radius, ignore)
        return Edges(predicted, target, valid)
