"""How well the synthetic video poses self-supervised depth, on held-out (val) rooms.

Prints, per camera speed: the median optical flow between the target and its next frame in
pixels (all of it, and the translational part alone: the flow a pure translation would give,
the only part that carries depth), and the auto-masked photometric loss (minimum over the
previous and next frames, with the true poses) at the true depth, at the true depth with
smooth ±20 % noise, and at a constant depth; then the gradient test: the cosine between the
negative gradient of that loss with respect to the pose (at no motion) and the true rotation /
translation, at each image downsampling factor.

    python experiments/diagnostics/synthetic_video.py [--scenes 16] [--speeds 0.08 0.25]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.synthetic import SyntheticConfig, SyntheticRooms
from dense.errors import run_script
from dense.geometry import pose_from_vector
from tasks.selfsup_depth import SelfSupervisedDepthConfig, View

SOURCES = ("prev", "next")


def pixel_flow(depth: Tensor, K: Tensor, pose: Tensor) -> Tensor:
    """(B, H·W) flow magnitude of every target pixel moved by its depth and the pose."""
    B, _, H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)
    points = torch.linalg.inv(K) @ pixels * depth.reshape(B, 1, -1)
    moved = K @ (pose[:, :3, :3] @ points + pose[:, :3, 3:])
    uv = moved[:, :2] / moved[:, 2:].clamp(min=1e-6)
    return (uv - pixels[:2]).norm(dim=1)


def without_rotation(pose: Tensor) -> Tensor:
    pure = torch.eye(4).repeat(len(pose), 1, 1)
    pure[:, :3, 3] = pose[:, :3, 3]
    return pure


def photometric(batch: dict, depth: Tensor, factor: int = 1, poses: dict | None = None) -> Tensor:
    sources = {name: batch[f"{name}_image"] for name in SOURCES}
    poses = poses or {name: batch[f"{name}_pose"] for name in SOURCES}
    view = View.of(batch["image"], sources, batch["K"], factor, SelfSupervisedDepthConfig())
    return view.loss(depth, poses, 0.85)


def smooth_noise(depth: Tensor, amplitude: float) -> Tensor:
    torch.manual_seed(0)
    bumps = torch.rand(depth.shape[0], 1, 4, 6) * 2 - 1
    return depth * (1 + amplitude * F.interpolate(bumps, size=depth.shape[-2:], mode="bilinear"))


def gradient_cosines(batch: dict, factor: int) -> tuple[float, float]:
    """Mean cosine of −∂loss/∂(rotation, translation) at no motion with the true ones."""
    vector = torch.zeros(len(batch["image"]), 6, requires_grad=True)
    sources = {"next": batch["next_image"]}
    view = View.of(batch["image"], sources, batch["K"], factor, SelfSupervisedDepthConfig())
    view.loss(batch["depth"], {"next": pose_from_vector(vector)}, 0.85).backward()
    descent, pose = -vector.grad, batch["next_pose"]
    R = pose[:, :3, :3]  # its skew part points along the rotation axis
    axis = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]])
    axis = axis.T
    rotation = F.cosine_similarity(descent[:, :3], axis, dim=1).mean().item()
    translation = F.cosine_similarity(descent[:, 3:], pose[:, :3, 3], dim=1).mean().item()
    return rotation, translation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--speeds", type=float, nargs="+", default=[0.08, 0.25])
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    for speed in args.speeds:
        config = SyntheticConfig(
            height=args.height, width=args.width, neighbours=True, camera_speed=speed
        )
        dataset = SyntheticRooms("val", config)
        batch = torch.utils.data.default_collate([dataset[i] for i in range(args.scenes)])
        depth, K, pose = batch["depth"], batch["K"], batch["next_pose"]
        flow = pixel_flow(depth, K, pose).median().item()
        translational = pixel_flow(depth, K, without_rotation(pose)).median().item()
        true, noisy = photometric(batch, depth), photometric(batch, smooth_noise(depth, 0.2))
        constant = photometric(batch, torch.full_like(depth, depth.median().item()))
        print(
            f"camera_speed {speed} m/frame at {args.height}×{args.width}: median flow "
            f"{flow:.1f} px (translational part {translational:.1f} px); photometric loss "
            f"true depth {true:.4f}, ±20 % {noisy:.4f} (ratio {true / noisy:.2f}), "
            f"constant {constant:.4f}"
        )
        for factor in (1, 2, 4, 8):
            rotation, translation = gradient_cosines(batch, factor)
            print(
                f"  images ÷{factor}: cos(−∂L/∂pose, true) rotation {rotation:.2f}, "
                f"translation {translation:.2f}"
            )


if __name__ == "__main__":
    run_script(main)
