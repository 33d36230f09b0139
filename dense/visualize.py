"""Pictures of values: label palettes, depth colour maps and PNG writing (8 and 16 bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# hand-picked anchors of a dark-to-bright colour map (colorize_depth draws near as bright)
DEPTH_ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 0.02],
        [0.2, 0.05, 0.4],
        [0.55, 0.1, 0.5],
        [0.85, 0.25, 0.3],
        [0.98, 0.55, 0.1],
        [0.99, 0.85, 0.3],
        [0.99, 1.0, 0.75],
    ]
)


def label_palette(num_classes: int) -> Tensor:
    """(num_classes, 3) distinct uint8 colours, the same for every run."""
    generator = torch.Generator().manual_seed(7)
    hues = (torch.arange(num_classes) * 0.618034) % 1.0
    saturation = 0.55 + 0.4 * torch.rand(num_classes, generator=generator)
    value = 0.6 + 0.4 * torch.rand(num_classes, generator=generator)
    return (hsv_to_rgb(hues, saturation, value) * 255).round().to(torch.uint8)


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def colorize_labels(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """(H, W) or (1, H, W) integer labels → (3, H, W) uint8; ignored pixels black."""
    labels = labels.reshape(labels.shape[-2:]).long().cpu()
    palette = torch.cat([label_palette(num_classes), torch.zeros(1, 3, dtype=torch.uint8)])
    index = torch.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    index = torch.where(labels == ignore_index, num_classes, index)
    return palette[index].permute(2, 0, 1).contiguous()


def colorize_depth(depth: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """(H, W) or (1, H, W) depth → (3, H, W) uint8, near bright, far dark, invalid black."""
    depth = depth.reshape(depth.shape[-2:]).float().cpu()
    valid = torch.isfinite(depth) & (depth > 0)
    t = 1 - ((depth - min_depth) / (max_depth - min_depth)).clamp(0, 1)
    position = t * (len(DEPTH_ANCHORS) - 1)
    index = position.floor().long().clamp(max=len(DEPTH_ANCHORS) - 2)
    frac = (position - index)[..., None]
    rgb = DEPTH_ANCHORS[index] * (1 - frac) + DEPTH_ANCHORS[index + 1] * frac
    rgb = torch.where(valid[..., None], rgb, torch.zeros_like(rgb))
    return (rgb * 255).round().to(torch.uint8).permute(2, 0, 1).contiguous()


def to_uint8(image: Tensor) -> Tensor:
    """(3, H, W) float image in [0, 1] → uint8."""
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def save_png(image: Tensor, path: Path) -> None:
    """Write a (3, H, W) or (1, H, W) uint8 tensor as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format="PNG")


def save_png16(values: Tensor, path: Path) -> None:
    """Write (H, W) integers in [0, 65535] as a 16-bit greyscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = values.reshape(values.shape[-2:]).cpu().numpy().astype(np.uint16)
    Image.fromarray(array).save(path, format="PNG")
