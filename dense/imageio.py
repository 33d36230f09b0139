"""Reading images from disk with clear errors: RGB, 16-bit depth and label PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from dense.errors import DenseError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_array(path: Path, mode: str | None = None) -> np.ndarray:
    """The pixels of an image file, converted to a Pillow ``mode`` if given."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert(mode) if mode else image)
    except FileNotFoundError:
        raise DenseError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise DenseError(f"{path} is not an image that can be read (PNG, JPEG, ...)") from None


def read_rgb(path: Path) -> Tensor:
    """(3, H, W) float image in [0, 1]; greyscale is replicated, alpha is dropped."""
    return torch.from_numpy(read_array(path, "RGB")).permute(2, 0, 1).float() / 255.0


def read_depth_png(path: Path) -> Tensor:
    """(1, H, W) depth in metres from a 16-bit PNG in millimetres; 0 (no reading) stays 0."""
    pixels = read_array(path)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint16, np.int32, np.uint8):
        raise DenseError(f"{path}: a depth PNG must be single-channel 16-bit (millimetres)")
    return torch.from_numpy(pixels.astype(np.float32) / 1000.0)[None]


def read_labels(path: Path) -> Tensor:
    """(H, W) int64 label map from a single-channel (8- or 16-bit) PNG."""
    pixels = read_array(path)
    if pixels.ndim != 2:
        raise DenseError(f"{path}: a label map must be a single-channel PNG")
    return torch.from_numpy(pixels.astype(np.int64))
