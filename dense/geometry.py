"""Camera geometry shared by datasets and losses (OpenCV convention: x right, y down, z forward).

Pixel centres sit at integer coordinates, so pixel (row i, column j) is the point u=j, v=i.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    T = rotation.new_zeros(*rotation.shape[:-2], 4, 4)
    T[..., :3, :3] = rotation
    T[..., :3, 3] = translation
    T[..., 3, 3] = 1.0
    return T


def invert_rigid(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    R = T[..., :3, :3].transpose(-1, -2)
    t = -(R @ T[..., :3, 3:]).squeeze(-1)
    return rigid(R, t)


def axis_angle_to_matrix(vector: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3) (Rodrigues' formula)."""
    angle = vector.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    x, y, z = (vector / angle).unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*x.shape, 3, 3)
    sin, cos = angle.sin()[..., None], angle.cos()[..., None]
    eye = torch.eye(3, dtype=vector.dtype, device=vector.device)
    return eye + sin * cross + (1 - cos) * (cross @ cross)


def pose_from_vector(vector: Tensor) -> Tensor:
    """4×4 rigid transforms (..., 4, 4) from (..., 6) = axis-angle rotation, translation."""
    return rigid(axis_angle_to_matrix(vector[..., :3]), vector[..., 3:])


def pose_from_motion(
    flow: Tensor, points: Tensor, inverse_depth: Tensor, weight: Tensor, damping: float = 1e-4
) -> Tensor:
    """Target-to-source transforms (B, 4, 4) that best explain a motion field.

    flow (B, 2, N): displacement of N target points in normalised camera coordinates (pixels
    through K⁻¹); points (B, 2, N): those points (x, y); inverse_depth (B, N) in 1/m; weight
    (B, N) ≥ 0. Solves the instantaneous-motion equations (small rotation ω, translation t)

        Δx = ρ(t_x − x t_z) + ω_y(1 + x²) − ω_x x y − ω_z y
        Δy = ρ(t_y − y t_z) + ω_z x − ω_x(1 + y²) + ω_y x y

    by damped weighted least squares, and returns the rigid transform of axis-angle ω and t.
    A pan and a sideways translation give the same flow where the depth is constant; the
    inverse depth is what tells them apart.
    """
    x, y = points[:, 0], points[:, 1]
    rho, zero = inverse_depth, torch.zeros_like(inverse_depth)
    u_rows = torch.stack([-x * y, 1 + x * x, -y, rho, zero, -rho * x], -1)
    v_rows = torch.stack([-(1 + y * y), x * y, x, zero, rho, -rho * y], -1)
    A = torch.cat([u_rows, v_rows], 1)  # (B, 2N, 6)
    b = torch.cat([flow[:, 0], flow[:, 1]], 1)  # (B, 2N)
    w = torch.cat([weight, weight], 1)
    w = w / w.sum(1, keepdim=True).clamp(min=1e-12)
    normal = A.transpose(1, 2) @ (A * w[..., None])
    normal = normal + damping * torch.eye(6, dtype=A.dtype, device=A.device)
    motion = torch.linalg.solve(normal, (A.transpose(1, 2) @ (w * b)[..., None]).squeeze(-1))
    return pose_from_vector(motion)


def inverse_warp(source: Tensor, depth: Tensor, K: Tensor, target_to_source: Tensor) -> Tensor:
    """Sample the source image at the pixels the target's depth and pose project to.

    source (B, C, H, W); depth (B, 1, H, W) of the target view in metres; K (B, 3, 3) shared
    by both views; target_to_source (B, 4, 4) maps target-camera points to source-camera
    points. Returns the source resampled onto the target grid (B, C, H, W), bilinearly, with
    border padding for pixels that leave the source view.
    """
    B, _, H, W = depth.shape
    v, u = torch.meshgrid(
        torch.arange(H, device=depth.device, dtype=depth.dtype),
        torch.arange(W, device=depth.device, dtype=depth.dtype),
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)  # (3, HW)
    R, t = target_to_source[:, :3, :3], target_to_source[:, :3, 3:]
    projection = K @ R @ torch.linalg.inv(K)  # pixel-ray map, then depth scales it
    points = (projection @ pixels) * depth.reshape(B, 1, -1) + K @ t  # (B, 3, HW)
    uv = points[:, :2] / points[:, 2:].clamp(min=1e-6)
    size = torch.tensor([W - 1, H - 1], device=depth.device, dtype=depth.dtype).clamp(min=1)
    grid = (uv / size[:, None] * 2 - 1).transpose(1, 2).reshape(B, H, W, 2)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
