"""Self-supervised depth losses: SSIM + L1 photometric error and edge-aware smoothness
(the Monodepth2 recipe; constants in ../shared/REFERENCE.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel SSIM of images (B, C, H, W) over 3×3 windows with reflection padding."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return numerator / denominator


def photometric_error(a: Tensor, b: Tensor, alpha: float = 0.85) -> Tensor:
    """``alpha·(1 − SSIM)/2 + (1 − alpha)·|a − b|``, averaged over colour → (B, 1, H, W)."""
    structure = ((1 - ssim(a, b)) / 2).clamp(0, 1).mean(1, keepdim=True)
    return alpha * structure + (1 - alpha) * (a - b).abs().mean(1, keepdim=True)


def edge_aware_smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Gradients of mean-normalised disparity (B, 1, h, w), damped where the image (B, C, h, w)
    has edges: mean of ``|∂d|·exp(−|∂I|)`` along x plus along y."""
    d = disparity / (disparity.mean((2, 3), keepdim=True) + 1e-7)
    dx, dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


def disparity_to_depth(disparity: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Sigmoid disparity in (0, 1) → depth in (min_depth, max_depth) metres."""
    low, high = 1 / max_depth, 1 / min_depth
    return 1 / (low + (high - low) * disparity)
