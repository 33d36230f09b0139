"""Photometric pose refinement: Gauss-Newton on the warp's colour residual, coarse to fine.

A pose network reads the camera motion from the two frames alone, where a pan and a sideways
step look alike; the photometric loss with the depth tells them apart (README, *Closing the
pose gap*). This module aligns each source frame to the target directly, as direct visual
odometry does: a left-multiplied correction ``exp(δ)`` of the given target-to-source pose,
found by a few iteratively reweighted Gauss-Newton steps on ``I_source(warp(δ)) − I_target``
at each image downsampling factor in turn. The Jacobian is taken by central differences
(``grid_sample`` has no forward-mode derivative), 12 extra warps per step at a coarse size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dense.geometry import inverse_warp, pose_from_vector, scale_intrinsics

STEP = 1e-3  # finite-difference step in radians and metres
ROBUST = 0.05  # IRLS weights 1 / (|r| + ROBUST): an L1-like fit that discounts occlusions
DAMPING = 1e-3  # Levenberg-Marquardt damping, relative to the normal matrix's diagonal


def correction(
    target: Tensor, source: Tensor, depth: Tensor, K: Tensor, pose: Tensor, iterations: int
) -> Tensor:
    """The 6-vector δ (B, 6) that best aligns ``source`` (B, C, H, W) onto ``target`` through
    ``depth`` (B, 1, H, W), intrinsics K (B, 3, 3) and ``exp(δ) · pose`` (B, 4, 4)."""
    B = target.shape[0]
    delta = target.new_zeros(B, 6)
    basis = STEP * torch.eye(6, dtype=target.dtype, device=target.device)

    def residual(vector: Tensor) -> Tensor:
        warped = inverse_warp(source, depth, K, pose_from_vector(vector) @ pose)
        return (warped - target).flatten(1)

    for _ in range(iterations):
        r = residual(delta)
        J = torch.stack(
            [(residual(delta + e) - residual(delta - e)) / (2 * STEP) for e in basis], -1
        )
        weight = 1 / (r.abs() + ROBUST)
        normal = J.transpose(1, 2) @ (J * weight[..., None])
        damping = DAMPING * torch.diag_embed(normal.diagonal(dim1=1, dim2=2))
        normal = normal + damping + 1e-9 * torch.eye(6, dtype=J.dtype, device=J.device)
        gradient = J.transpose(1, 2) @ (weight * r)[..., None]
        delta = delta - torch.linalg.solve(normal, gradient).squeeze(-1)
    return delta


@torch.no_grad()
def refine_poses(
    target: Tensor,
    sources: dict[str, Tensor],
    depth: Tensor,
    K: Tensor,
    poses: dict[str, Tensor],
    factors: list[int],
    iterations: int,
) -> dict[str, Tensor]:
    """Each target-to-source pose (B, 4, 4) refined against its source frame with the target's
    ``depth`` (B, 1, H, W), at each downsampling factor of ``factors`` in turn (coarse first).
    Nothing here is differentiated: the caller decides how gradients pass the refinement."""
    refined = {name: pose.detach().float() for name, pose in poses.items()}
    for factor in factors:
        small = [F.avg_pool2d(x, factor, ceil_mode=True) for x in (target, depth)]
        K_small = scale_intrinsics(K, 1 / factor, 1 / factor).float()
        for name, source in sources.items():
            frame = F.avg_pool2d(source, factor, ceil_mode=True)
            delta = correction(small[0], frame, small[1], K_small, refined[name], iterations)
            refined[name] = pose_from_vector(delta) @ refined[name]
    return refined
