"""Pose networks of self-supervised depth: camera motion from the target frame to each source.

Both map a batch's target ``image`` and its ``<source>_image`` frames to target-to-source 4×4
poses (axis-angle rotation and translation: the network's 6 outputs times ``scales``), and
return None when the batch lacks the source frames (evaluation on still images).

- ``stacked``: Monodepth2's separate pose encoder — the pair stacked on 6 channels through a
  timm backbone, then 1×1 → 3×3 → 3×3 → 1×1 convolutions, averaged over space.
- ``correlation``: a siamese convolutional stem (stride 4) on each frame, the local correlation
  of the target's features with the source's over ±``radius`` cells (a cost volume: where each
  patch moved), plus pixel coordinates (the flow pattern of a rotation or a translation depends
  on where it is seen), then strided convolutions averaged over space.
- ``motion``: the same cost volume read, cell by cell, as a flow and a confidence (a
  ``MotionField``); the task solves the pose from it *and its predicted depth* by least squares
  (``dense.geometry.pose_from_motion``). From two frames alone a pan and a sideways step make
  the same flow; the depth tells them apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.errors import DenseError
from dense.geometry import pose_from_motion, pose_from_vector


def conv_block(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def local_correlation(a: Tensor, b: Tensor, radius: int) -> Tensor:
    """Mean over channels of a (B, C, H, W) times b shifted by every offset within ±radius
    cells → (B, (2r+1)², H, W); zero padding outside b."""
    B, C, H, W = a.shape
    size = 2 * radius + 1
    patches = F.unfold(b, size, padding=radius).view(B, C, size * size, H, W)
    return torch.einsum("bchw,bckhw->bkhw", a, patches) / C


def coordinates(like: Tensor) -> Tensor:
    """(B, 2, H, W) x and y in [−1, 1]."""
    B, _, H, W = like.shape
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, H, device=like.device, dtype=like.dtype),
        torch.linspace(-1, 1, W, device=like.device, dtype=like.dtype),
        indexing="ij",
    )
    return torch.stack([x, y]).expand(B, 2, H, W)


def frame_pairs(
    batch: dict[str, Tensor], sources: list[str], resolution: float
) -> tuple[Tensor, Tensor] | None:
    """(target, source) frames, one pair per source stacked on the batch axis, resized and
    normalised; None when the batch lacks the source frames."""
    if any(f"{s}_image" not in batch for s in sources):
        return None
    frames = [batch["image"].repeat(len(sources), 1, 1, 1)]
    frames.append(torch.cat([batch[f"{s}_image"] for s in sources]))
    if resolution != 1:
        frames = [F.interpolate(f, scale_factor=resolution, mode="area") for f in frames]
    target, source = ((f - 0.45) / 0.225 for f in frames)
    return target, source


class CostVolume(nn.Module):
    """A siamese stem (stride 4) on both frames; per cell of the target, the local correlation
    with the source over ±``radius`` cells, the target's features and pixel coordinates."""

    def __init__(self, channels: int, radius: int) -> None:
        super().__init__()
        self.radius = radius
        self.stem = nn.Sequential(
            conv_block(3, channels, 7, 2),
            conv_block(channels, channels, 3, 2),
            conv_block(channels, channels, 3, 1),
        )
        self.out_channels = (2 * radius + 1) ** 2 + channels + 2

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        a, b = self.stem(torch.cat([target, source])).chunk(2)
        return torch.cat([local_correlation(a, b, self.radius), a, coordinates(a)], 1)


class PoseNetwork(nn.Module, ABC):
    """Shared plumbing: gather the frame pairs, run ``pair_vectors``, scale, build 4×4 poses."""

    def __init__(self, sources: list[str], scales: tuple[float, float], resolution: float):
        super().__init__()
        self.sources, self.resolution = sources, resolution
        self.register_buffer("scales", torch.tensor([scales[0]] * 3 + [scales[1]] * 3))

    @abstractmethod
    def pair_vectors(self, target: Tensor, source: Tensor) -> Tensor:
        """(N, 6) raw outputs for N normalised frame pairs (N, 3, h, w)."""

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor] | None:
        pairs = frame_pairs(batch, self.sources, self.resolution)
        if pairs is None:
            return None
        vectors = self.pair_vectors(*pairs)
        with torch.autocast(vectors.device.type, enabled=False):  # poses in float32
            poses = pose_from_vector(vectors.float() * self.scales).chunk(len(self.sources))
        return dict(zip(self.sources, poses, strict=True))


class StackedPoseNetwork(PoseNetwork):
    def __init__(
        self, sources: list[str], scales: tuple[float, float], resolution: float, encoder: str
    ):
        super().__init__(sources, scales, resolution)
        try:
            self.body = timm.create_model(encoder, in_chans=6, num_classes=0, global_pool="")
        except RuntimeError as error:
            raise DenseError(f"pose_encoder '{encoder}': {error}") from None
        self.decoder = nn.Sequential(
            nn.Conv2d(self.body.num_features, 256, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 6, 1),
        )

    def pair_vectors(self, target: Tensor, source: Tensor) -> Tensor:
        return self.decoder(self.body(torch.cat([target, source], 1))).mean((2, 3))


class CorrelationPoseNetwork(PoseNetwork):
    def __init__(
        self,
        sources: list[str],
        scales: tuple[float, float],
        resolution: float,
        channels: int,
        radius: int,
    ):
        super().__init__(sources, scales, resolution)
        self.volume = CostVolume(channels, radius)
        self.head = nn.Sequential(
            conv_block(self.volume.out_channels, 4 * channels, 3, 2),
            conv_block(4 * channels, 4 * channels, 3, 2),
            conv_block(4 * channels, 8 * channels, 3, 2),
            nn.Conv2d(8 * channels, 6, 1),
        )

    def pair_vectors(self, target: Tensor, source: Tensor) -> Tensor:
        return self.head(self.volume(target, source)).mean((2, 3))


@dataclass
class MotionField:
    """Per-cell flow (B, 2, h, w) in full-size pixels and confidence (B, 1, h, w) ≥ 0 of one
    frame pair; cell (i, j) sits at full-size pixel ``(offset + stride·j, offset + stride·i)``."""

    flow: Tensor
    weight: Tensor
    stride: float
    offset: float

    def pose(self, depth: Tensor, K: Tensor) -> Tensor:
        """Target-to-source poses (B, 4, 4) from the field and the target's depth (B, 1, H, W)
        with intrinsics K (B, 3, 3); no gradient reaches the depth."""
        B, _, h, w = self.flow.shape
        with torch.autocast(self.flow.device.type, enabled=False):
            v, u = torch.meshgrid(
                self.offset + self.stride * torch.arange(h, device=depth.device),
                self.offset + self.stride * torch.arange(w, device=depth.device),
                indexing="ij",
            )
            pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1).float()
            K = K.float()
            points = (torch.linalg.inv(K) @ pixels)[:, :2]  # (B, 2, N)
            focal = torch.stack([K[:, 0, 0], K[:, 1, 1]], 1)[..., None]
            flow = self.flow.float().reshape(B, 2, -1) / focal
            cells = F.adaptive_avg_pool2d(1 / depth.detach().float(), (h, w)).reshape(B, -1)
            weight = self.weight.float().reshape(B, -1)
            return pose_from_motion(flow, points, cells, weight)


class MotionPoseNetwork(nn.Module):
    """The correlation network's cost volume read per cell as flow and confidence; returns a
    ``MotionField`` per source (the task solves the pose with its depth), or None when the
    batch lacks the source frames."""

    def __init__(
        self, sources: list[str], resolution: float, channels: int, radius: int, flow_scale: float
    ):
        super().__init__()
        self.sources, self.resolution, self.flow_scale = sources, resolution, flow_scale
        self.volume = CostVolume(channels, radius)
        self.head = nn.Sequential(
            conv_block(self.volume.out_channels, 4 * channels, 3, 1),
            conv_block(4 * channels, 4 * channels, 3, 1),
            nn.Conv2d(4 * channels, 3, 1),
        )

    def forward(self, batch: dict[str, Tensor]) -> dict[str, MotionField] | None:
        pairs = frame_pairs(batch, self.sources, self.resolution)
        if pairs is None:
            return None
        out = self.head(self.volume(*pairs)).float()
        flows = (self.flow_scale * out[:, :2]).chunk(len(self.sources))
        weights = F.softplus(out[:, 2:]).add(1e-3).chunk(len(self.sources))
        stride = 4 / self.resolution  # the stem's stride 4, in full-size pixels
        offset = 0.5 / self.resolution - 0.5  # centre of cell 0 (pixel centres at integers)
        return {
            name: MotionField(flow, weight, stride, offset)
            for name, flow, weight in zip(self.sources, flows, weights, strict=True)
        }
