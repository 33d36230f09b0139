"""Supervised depth losses on valid pixels, computed in log space."""

from __future__ import annotations

import torch
from torch import Tensor


def silog_loss(prediction: Tensor, target: Tensor, valid: Tensor, lam: float = 0.85) -> Tensor:
    """Scale-invariant log loss (Eigen et al. 2014) per image, averaged over images.

    sqrt(mean(d²) − λ·mean(d)²) with d = log p − log g over the valid pixels; images without
    a valid pixel are left out (the loss is 0 if none has one).
    """
    d = torch.where(valid, prediction.clamp(min=1e-6).log() - target.clamp(min=1e-6).log(), 0.0)
    d = d.flatten(1)
    count = valid.flatten(1).sum(1)
    keep = count > 0
    if not keep.any():
        return prediction.sum() * 0.0
    d, count = d[keep], count[keep].float()
    mean = d.sum(1) / count
    mean_sq = d.square().sum(1) / count
    return (mean_sq - lam * mean.square()).clamp(min=1e-8).sqrt().mean()


def log_l1_loss(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean |log p − log g| over all valid pixels of the batch."""
    if not valid.any():
        return prediction.sum() * 0.0
    diff = prediction.clamp(min=1e-6).log() - target.clamp(min=1e-6).log()
    return diff[valid].abs().mean()
