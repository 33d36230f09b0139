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
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dense.errors import DenseError
from dense.geometry import pose_from_vector


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
        if any(f"{s}_image" not in batch for s in self.sources):
            return None
        count = len(self.sources)
        frames = [batch["image"].repeat(count, 1, 1, 1)]
        frames.append(torch.cat([batch[f"{s}_image"] for s in self.sources]))
        if self.resolution != 1:
            frames = [F.interpolate(f, scale_factor=self.resolution, mode="area") for f in frames]
        target, source = ((f - 0.45) / 0.225 for f in frames)
        vectors = self.pair_vectors(target, source)
        with torch.autocast(vectors.device.type, enabled=False):  # poses in float32
            poses = pose_from_vector(vectors.float() * self.scales).chunk(count)
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
        self.radius = radius
        self.stem = nn.Sequential(
            conv_block(3, channels, 7, 2),
            conv_block(channels, channels, 3, 2),
            conv_block(channels, channels, 3, 1),
        )
        cost = (2 * radius + 1) ** 2
        self.head = nn.Sequential(
            conv_block(cost + channels + 2, 4 * channels, 3, 2),
            conv_block(4 * channels, 4 * channels, 3, 2),
            conv_block(4 * channels, 8 * channels, 3, 2),
            nn.Conv2d(8 * channels, 6, 1),
        )

    def pair_vectors(self, target: Tensor, source: Tensor) -> Tensor:
        features = self.stem(torch.cat([target, source]))
        a, b = features.chunk(2)
        volume = local_correlation(a, b, self.radius)
        return self.head(torch.cat([volume, a, coordinates(a)], 1)).mean((2, 3))
