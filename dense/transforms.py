"""Joint geometric and photometric transforms of a sample: images, labels, depth, intrinsics.

A sample is a dict of tensors: ``image`` and any neighbour frames (``prev_image``,
``next_image``) as (3, H, W) floats in [0, 1]; ``segmentation`` (H, W) class indices; ``depth``
(1, H, W) metres with 0 = no reading; ``K`` the 3×3 intrinsics. Transforms use
``torchvision.transforms.v2`` on ``tv_tensors``: images are resampled bilinearly (antialiased),
labels and depth by nearest neighbour (as masks), so a depth pixel is always one real reading
and never an average of a valid and a missing one. ``K`` follows every resize, crop and flip.
Depth values themselves never change: a rescaled image is a camera with another focal length.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dense.config import AugmentConfig
from dense.errors import DenseError
from dense.geometry import crop_intrinsics, scale_intrinsics

IMAGE_KEYS = ("image", "prev_image", "next_image")
MASK_KEYS = ("segmentation", "depth")


def wrap(sample: dict[str, Tensor]) -> dict[str, Tensor]:
    """The sample with its images and masks as tv_tensors (other entries unchanged)."""
    out = dict(sample)
    for key in IMAGE_KEYS:
        if key in out:
            out[key] = tv_tensors.Image(out[key])
    for key in MASK_KEYS:
        if key in out:
            out[key] = tv_tensors.Mask(out[key])
    return out


def unwrap(sample: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.as_subclass(Tensor) for key, value in sample.items()}


def spatial(sample: dict[str, Tensor]) -> list[str]:
    return [key for key in (*IMAGE_KEYS, *MASK_KEYS) if key in sample]


def check_size(height: int, width: int) -> None:
    """A dataset's ``height``/``width`` options: both 0 (stored size) or both positive."""
    if min(height, width) < 0 or (height > 0) != (width > 0):
        raise DenseError("data.options.height and width must be given together (or both 0)")


def resize(sample: dict[str, Tensor], height: int, width: int) -> dict[str, Tensor]:
    """Every image, label map and depth map resized to (height, width), K scaled to match."""
    in_h, in_w = sample["image"].shape[-2:]
    if (in_h, in_w) == (height, width):
        return sample
    out = wrap(sample)
    for key in spatial(out):
        out[key] = TF.resize(out[key], [height, width], antialias=True)
    if "K" in out:
        out["K"] = scale_intrinsics(out["K"], width / in_w, height / in_h)
    return unwrap(out)


class JointTransform:
    """Random scale → crop → flip → colour jitter, one draw per sample from torch's RNG.

    Every frame of a sample (target and neighbours) gets the same draw, so photometric
    consistency between frames survives augmentation. Padding (when the crop is larger than
    the rescaled image) is black in images, ``ignore_index`` in labels and 0 (no reading) in
    depth.
    """

    def __init__(self, config: AugmentConfig, ignore_index: int) -> None:
        self.config = config
        self.ignore_index = ignore_index
        strength = config.colour_jitter
        self.jitter = v2.ColorJitter(strength, strength, strength, min(strength / 4, 0.5))

    def __call__(self, sample: dict[str, Tensor]) -> dict[str, Tensor]:
        config = self.config
        height, width = sample["image"].shape[-2:]
        scale = config.scale_min + (config.scale_max - config.scale_min) * torch.rand(()).item()
        if scale != 1.0:
            sample = resize(sample, round(height * scale), round(width * scale))
        if config.crop_height > 0:
            sample = self.crop(sample, config.crop_height, config.crop_width)
        out = wrap(sample)
        if config.flip and torch.rand(()).item() < 0.5:
            for key in spatial(out):
                out[key] = TF.horizontal_flip(out[key])
            if "K" in out:
                K = out["K"].clone()
                K[0, 2] = out["image"].shape[-1] - 1 - K[0, 2]
                out["K"] = K
        if config.colour_jitter > 0:
            frames = [key for key in IMAGE_KEYS if key in out]
            jittered = self.jitter([out[key] for key in frames])  # one draw for all frames
            for key, frame in zip(frames, jittered, strict=True):
                out[key] = frame.clamp(0, 1)
        return unwrap(out)

    def crop(self, sample: dict[str, Tensor], height: int, width: int) -> dict[str, Tensor]:
        out = wrap(sample)
        in_h, in_w = out["image"].shape[-2:]
        pad_h, pad_w = max(height - in_h, 0), max(width - in_w, 0)
        if pad_h or pad_w:
            fills = {"segmentation": self.ignore_index}
            for key in spatial(out):
                out[key] = TF.pad(out[key], [0, 0, pad_w, pad_h], fill=fills.get(key, 0))
        top = int(torch.randint(in_h + pad_h - height + 1, ()))
        left = int(torch.randint(in_w + pad_w - width + 1, ()))
        for key in spatial(out):
            out[key] = TF.crop(out[key], top, left, height, width)
        if "K" in out:
            out["K"] = crop_intrinsics(out["K"], top, left)
        return unwrap(out)


class Augmented(torch.utils.data.Dataset):
    """A dataset whose samples pass through a :class:`JointTransform`."""

    def __init__(self, dataset: torch.utils.data.Dataset, transform: JointTransform) -> None:
        self.dataset = dataset
        self.transform = transform
        self.class_names = getattr(dataset, "class_names", ())
        self.ignore_index = getattr(dataset, "ignore_index", 255)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.transform(self.dataset[index])
