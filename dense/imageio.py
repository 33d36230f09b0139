"""Reading images from disk with clear errors: RGB, 16-bit depth and label PNGs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from dense.errors import DenseError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_array(path: Path, convert: Callable[[Image.Image], np.ndarray] = np.array) -> np.ndarray:
    """The pixels of an image file, as ``convert`` makes them of the opened image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on damaged metadata
            with Image.open(path) as image:
                return convert(image)
    except FileNotFoundError:
        raise DenseError(f"file not found: {path}") from None
    except Image.DecompressionBombError:
        raise DenseError(
            f"{path} has more than {2 * Image.MAX_IMAGE_PIXELS} pixels, Pillow's guard against "
            "decompression bombs: downscale it first (the network sees the training size anyway)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DenseError(f"{path} is not an image that can be read (PNG, JPEG, ...)") from None


def read_rgb(path: Path) -> Tensor:
    """(3, H, W) float image in [0, 1], upright as its EXIF orientation says; greyscale is
    replicated, alpha is dropped, 16-bit scaled down, floats over 1 scaled by their maximum."""
    return torch.from_numpy(read_array(path, rgb_array)).permute(2, 0, 1)


def rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] of any Pillow image."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float32), posinf=0.0, neginf=0.0)
        if image.mode != "F":  # 16-bit greyscale (Pillow reads some PNGs as 32-bit "I")
            pixels = pixels / 65535.0
        elif pixels.max(initial=0.0) > 1:  # floats beyond [0, 1]: scaled by their maximum
            pixels = pixels / pixels.max()
        return np.repeat(pixels.clip(0.0, 1.0)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


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
