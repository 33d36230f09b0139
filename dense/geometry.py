"""Camera geometry shared by datasets and losses (OpenCV convention: x right, y down, z forward).

Pixel centres sit at integer coordinates, so pixel (row i, column j) is the point u=j, v=i.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)  # fx, fy, cx, cy at 640×480
NYU_SIZE = (480, 640)  # height, width


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """A 3×3 pinhole matrix."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics after resizing an image by (sx, sy), with pixel centres at integers."""
    K = K.clone()
    K[..., 0, 0] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: Tensor, top: int, left: int) -> Tensor:
    """Intrinsics after cropping an image at (top, left)."""
    K = K.clone()
    K[..., 0, 2] -= left
    K[..., 1, 2] -= top
    return K


def nyu_intrinsics(height: int, width: int) -> Tensor:
    """The NYU Kinect colour intrinsics scaled to an image of the given size."""
    return scale_intrinsics(intrinsics(*NYU_INTRINSICS), width / NYU_SIZE[1], height / NYU_SIZE[0])


def look_rotation(yaw: float, pitch: float) -> Tensor:
    """Camera-to-world rotation for a y-up world: yaw about +y, pitch up from the horizon."""
    forward = torch.tensor(
        [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)]
    )
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward], dim=1)


def rigid(rotation: Tensor, translation: Tensor) -> Tensor:
    """A 4×4 transform from a rotation (..., 3, 3) and translation (..., 3)."""
    T = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=rotation.dtype)
    T[..., :3, :3] = rotation
    T[..., :3, 3] = translation
    T[..., 3, 3] = 1.0
    return T


def invert_rigid(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    R = T[..., :3, :3].transpose(-1, -2)
    t = -(R @ T[..., :3, 3:]).squeeze(-1)
    return rigid(R, t)
