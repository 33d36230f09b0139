"""Small building blocks shared by decoders and task heads."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvHead(nn.Module):
    """3×3 conv-BN-ReLU then 1×1 conv on the finest pyramid level, upsampled to the input."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = conv_bn_relu(channels, channels)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, pyramid: list[Tensor], size: tuple[int, int]) -> Tensor:
        x = self.out(self.body(pyramid[0]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
