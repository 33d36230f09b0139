"""The random transformations an inverse network learns to regress, their parameterisations
(4: scales and shifts, 6: affine, 8: homography; all 0 for the identity) and warping by them,
in normalised tile coordinates ([-1, 1])."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class TransformRanges:
    """Ranges of the random transformations the network learns to regress."""

    rotation: float = 20.0  # degrees, ±
    scale: float = 0.25  # relative, ±
    shear: float = 0.05  # ±
    shift: float = 0.75  # normalised units (1 = half the tile), ±
    perspective: float = 0.15  # homography h31, h32, ±


def sample_transforms(
    count: int, parameters: int, ranges: TransformRanges, generator: torch.Generator
) -> Tensor:
    """(count, 3, 3) random transformations of the given family. Each sample's deviation
    from the identity is scaled by a uniform factor, so small transformations are common."""

    def uniform(bound: float) -> Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * bound

    strength = torch.rand(count, generator=generator)
    sx = 1 + uniform(ranges.scale) * strength
    sy = 1 + uniform(ranges.scale) * strength
    tx, ty = uniform(ranges.shift) * strength, uniform(ranges.shift) * strength
    matrix = torch.eye(3).repeat(count, 1, 1)
    if parameters == 4:
        matrix[:, 0, 0], matrix[:, 1, 1] = sx, sy
    else:
        angle = uniform(math.radians(ranges.rotation)) * strength
        shear = uniform(ranges.shear) * strength
        cos, sin = torch.cos(angle), torch.sin(angle)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos * sx, -sin * sy + shear
        matrix[:, 1, 0], matrix[:, 1, 1] = sin * sx, cos * sy
        if parameters == 8:
            matrix[:, 2, 0] = uniform(ranges.perspective) * strength
            matrix[:, 2, 1] = uniform(ranges.perspective) * strength
    matrix[:, 0, 2], matrix[:, 1, 2] = tx, ty
    return matrix


def matrix_to_params(matrix: Tensor, parameters: int) -> Tensor:
    """(N, 3, 3) → (N, P) raw parameters, all 0 for the identity."""
    if parameters == 4:
        return torch.stack(
            [matrix[:, 0, 0] - 1, matrix[:, 1, 1] - 1, matrix[:, 0, 2], matrix[:, 1, 2]], dim=1
        )
    eye = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    if parameters == 6:
        return (matrix - eye)[:, :2].reshape(-1, 6)
    normalised = matrix / matrix[:, 2:3, 2:3]
    return (normalised - eye).reshape(-1, 9)[:, :8]


def params_to_matrix(params: Tensor, parameters: int) -> Tensor:
    """Inverse of :func:`matrix_to_params`."""
    n = params.shape[0]
    eye = torch.eye(3, dtype=params.dtype, device=params.device).repeat(n, 1, 1)
    if parameters == 4:
        matrix = eye.clone()
        matrix[:, 0, 0] += params[:, 0]
        matrix[:, 1, 1] += params[:, 1]
        matrix[:, 0, 2] = params[:, 2]
        matrix[:, 1, 2] = params[:, 3]
        return matrix
    if parameters == 6:
        return eye + F.pad(params.reshape(n, 2, 3), (0, 0, 0, 1))
    return eye + F.pad(params, (0, 1)).reshape(n, 3, 3)


def rms_displacement(matrix: Tensor, points: int = 8) -> Tensor:
    """(N,) root-mean-square distance, in normalised units (1 = half the tile), that the
    transformations (N, 3, 3) move the points of the tile (a ``points``² grid of cell centres)."""
    ticks = (torch.arange(points, dtype=matrix.dtype, device=matrix.device) + 0.5) / points * 2 - 1
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # (3, K)
    mapped = matrix @ grid
    moved = mapped[:, :2] / mapped[:, 2:3].clamp(min=1e-6) - grid[:2]
    return moved.square().sum(1).mean(1).sqrt()


def warp(
    maps: Tensor, matrix: Tensor, size: tuple[int, int] | None = None, extent: float = 1.0
) -> Tensor:
    """Warp (N, C, H, W) maps with (N, 3, 3) transformations in normalised coordinates.

    Output pixel x (normalised over an output of ``size``, default the input's) samples the
    input at ``matrix @ x``. ``extent`` says how far the input reaches in output units: 2
    means the input is twice the output's size and centred on it, so a warped tile is filled
    with real content instead of zeros. affine_grid builds the grid; homographies add the
    projective division; grid_sample reads the maps.
    """
    n, c, h, w = maps.shape
    size = size or (h, w)
    identity = torch.eye(2, 3, dtype=maps.dtype, device=maps.device).expand(n, 2, 3)
    base = F.affine_grid(identity, [n, c, *size], align_corners=False)  # (N, h, w, 2)
    points = F.pad(base, (0, 1), value=1.0)  # homogeneous (x, y, 1)
    mapped = points @ matrix.to(maps.dtype).transpose(1, 2)[:, None]
    grid = mapped[..., :2] / mapped[..., 2:3].clamp(min=1e-6) / extent
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
