"""Boundary maps as tensor operations on the training device, and class-balanced boundary BCE.

A pixel is a *label boundary* when a pixel of another class lies within ``radius`` (Euclidean)
of it; ignored pixels neither create boundaries nor are scored; the image border is not a
boundary. A pixel is a *depth edge* when depth jumps by more than ``threshold`` (relative)
between it and a 3×3 neighbour, dilated to ``radius``. Dilation by a disk is a max over
max-pools with the rectangles whose union is the disk. Everything is tensor operations that
run on the training device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def disk_rectangles(radius: int) -> list[tuple[int, int]]:
    """Half-sizes (dy, dx) of rectangles whose union is the digital disk of ``radius``."""
    rectangles = []
    for dy in range(radius + 1):
        dx = math.isqrt(radius * radius - dy * dy)
        rectangles.append((dy, dx))
    return rectangles


def dilate_max(x: Tensor, radius: int) -> Tensor:
    """Max of ``x`` (B, C, H, W) over a disk of ``radius`` around each pixel (borders ignored).

    Small disks take the max over shifted views of a padded copy (a few cheap elementwise
    maxima, also in the backward pass); larger ones max-pool with the rectangles whose union
    is the disk.
    """
    if radius <= 0:
        return x
    if radius <= 2:
        height, width = x.shape[-2:]
        padded = F.pad(x, (radius,) * 4, value=-math.inf)
        out = x
        for dy, dx in half_disk(radius):
            for sy, sx in ((dy, dx), (-dy, -dx)):
                shifted = padded[
                    ..., radius + sy : radius + sy + height, radius + sx : radius + sx + width
                ]
                out = torch.maximum(out, shifted)
        return out
    out = None
    for dy, dx in disk_rectangles(radius):
        pooled = F.max_pool2d(x, kernel_size=(2 * dy + 1, 2 * dx + 1), stride=1, padding=(dy, dx))
        out = pooled if out is None else torch.maximum(out, pooled)
    return out


def half_disk(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) of one half of the digital disk of ``radius`` (the other half is their
    negation), without the centre."""
    return [
        (dy, dx)
        for dy in range(0, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dy > 0 or dx > 0) and dy * dy + dx * dx <= radius * radius
    ]


def boundary_from_labels(
    labels: Tensor, radius: int = 2, ignore_index: int = 255
) -> tuple[Tensor, Tensor]:
    """Label boundaries. labels (B, H, W) integers → (boundary (B,1,H,W) float, valid (B,1,H,W)).

    For each offset of half the disk, the pixel pairs (p, p + offset) with different valid
    labels mark both p and p + offset; the other half of the disk is the same pairs seen from
    the other end. Small integer comparisons on shifted views: no pooling, no copies.
    """
    labels = labels.to(torch.int32)
    valid = labels != ignore_index
    boundary = torch.zeros_like(valid)
    height, width = labels.shape[-2:]
    for dy, dx in half_disk(max(radius, 1)):
        if dy >= height or abs(dx) >= width:
            continue
        a = (..., slice(0, height - dy), slice(max(0, -dx), width - max(0, dx)))
        b = (..., slice(dy, height), slice(max(0, dx), width - max(0, -dx)))
        change = (labels[a] != labels[b]) & valid[a] & valid[b]
        boundary[a] |= change
        boundary[b] |= change
    return boundary[:, None].float(), valid[:, None]


def boundary_from_depth(
    depth: Tensor, threshold: float = 0.05, radius: int = 1, valid: Tensor | None = None
) -> Tensor:
    """Depth discontinuities: relative jump > ``threshold`` to a 3×3 neighbour, dilated.
    depth (B, 1, H, W) metres → (B, 1, H, W) float in {0, 1}; invalid pixels (≤ 0, non-finite
    or outside ``valid``) take part in no jump."""
    ok = torch.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok = ok & valid
    log_depth = depth.clamp(min=1e-6).log()
    high = dilate_max(torch.where(ok, log_depth, -math.inf), 1)
    low = -dilate_max(torch.where(ok, -log_depth, -math.inf), 1)
    jump = torch.where(ok, torch.maximum(high - log_depth, log_depth - low), 0.0)
    edges = (jump > math.log1p(threshold)).float()
    return dilate_max(edges, radius - 1) if radius > 1 else edges


def boundary_from_image(image: Tensor, threshold: float = 0.1, radius: int = 1) -> Tensor:
    """Image edges: grey-level jump > ``threshold`` to a 3×3 neighbour, dilated to ``radius``.
    image (B, C, H, W) in [0, 1] → (B, 1, H, W) float in {0, 1}."""
    grey = image.float().mean(1, keepdim=True)
    jump = torch.maximum(dilate_max(grey, 1) - grey, grey + dilate_max(-grey, 1))
    edges = (jump > threshold).float()
    return dilate_max(edges, radius - 1) if radius > 1 else edges


def balanced_bce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Class-balanced binary cross-entropy on boundary logits (B, 1, H, W).

    Positives are weighted by the fraction of negatives and negatives by the fraction of
    positives (over the valid pixels of the batch), so thin boundaries are not drowned out.
    """
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    valid = valid.float()
    positives = (target * valid).sum()
    total = valid.sum().clamp(min=1)
    negatives = total - positives
    weight = torch.where(target > 0.5, negatives / total, positives / total) * valid
    loss = F.binary_cross_entropy_with_logits(logits.float(), target, weight, reduction="sum")
    return loss / total


def soft_label_edges(probabilities: Tensor, radius: int = 1) -> Tensor:
    """Differentiable boundaries of soft class maps (B, C, H, W): the largest change of any
    class probability within ``radius`` → (B, 1, H, W) in [0, 1]."""
    high = dilate_max(probabilities, max(radius, 1))
    low = -dilate_max(-probabilities, max(radius, 1))
    return (high - low).amax(dim=1, keepdim=True)


def soft_depth_edges(
    depth: Tensor, threshold: float = 0.05, radius: int = 1, sharpness: float = 16.0
) -> Tensor:
    """Differentiable depth edges (B, 1, H, W) in (0, 1): a sigmoid of the largest log-depth
    jump to a 3×3 neighbour, centred on log(1 + threshold) with slope ``sharpness`` per
    log(1 + threshold) — the soft version of :func:`boundary_from_depth` with the same
    thickness. Where depth is flat the map reads sigmoid(−sharpness): at 4 that is 0.018
    everywhere, enough background for an inverse network to charge the true depth about what
    it charges a flat one (experiments/diagnostics/edge_targets.py); at 16 it is 1e-7."""
    log_depth = depth.clamp(min=1e-6).log()
    high = dilate_max(log_depth, 1)
    low = -dilate_max(-log_depth, 1)
    jump = torch.maximum(high - log_depth, log_depth - low)
    centre = math.log1p(threshold)
    edges = torch.sigmoid((jump - centre) * (sharpness / centre))
    return dilate_max(edges, radius - 1) if radius > 1 else edges
