"""Joint transforms: images, labels, depth and intrinsics stay consistent."""

from __future__ import annotations

import pytest
import torch

from dense.config import AugmentConfig, config_from_dict
from dense.errors import DenseError
from dense.geometry import nyu_intrinsics
from dense.transforms import JointTransform, resize
from tests.conftest import tiny_dict


def marked_sample(height: int = 48, width: int = 64) -> dict[str, torch.Tensor]:
    """Checkerboard depth of 0 (no reading) and 5 m, and one labelled marker pixel."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    depth = torch.where((y // 2 + x // 2) % 2 == 0, 5.0, 0.0)[None]
    labels = torch.zeros(height, width, dtype=torch.int64)
    labels[30:32, 40:42] = 7  # marker
    depth[:, 30:32, 40:42] = 2.0
    image = torch.rand(3, height, width)
    return {
        "image": image,
        "prev_image": image.clone(),
        "segmentation": labels,
        "depth": depth,
        "K": nyu_intrinsics(height, width),
    }


def marker_ray(sample: dict[str, torch.Tensor]) -> torch.Tensor:
    """Normalised camera ray (x/z, y/z) through the centre of the marker."""
    v, u = (sample["segmentation"] == 7).nonzero().float().mean(0)
    K = sample["K"]
    return torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]])


def test_intrinsics_follow_scale_and_crop():
    """The marker's camera ray (its 3D direction) is the same before and after, to within a
    pixel of the output, whenever the crop keeps it."""
    config = AugmentConfig(scale_min=0.7, scale_max=1.6, crop_height=40, crop_width=56)
    sample = marked_sample()
    kept = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out = JointTransform(config, 255)(sample)
        assert out["image"].shape == (3, 40, 56) and out["depth"].shape == (1, 40, 56)
        if (out["segmentation"] == 7).sum() >= 4:
            kept += 1
            pixel = 1.0 / out["K"][0, 0].item()
            assert torch.allclose(marker_ray(out), marker_ray(sample), atol=pixel), seed
    assert kept >= 6


def test_flip_mirrors_image_labels_and_principal_point():
    sample = marked_sample()
    outcomes = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out = JointTransform(AugmentConfig(flip=True), 255)(sample)
        flipped = torch.equal(out["image"], sample["image"].flip(-1))
        outcomes.add(flipped)
        if flipped:
            assert torch.equal(out["segmentation"], sample["segmentation"].flip(-1))
            assert torch.equal(out["depth"], sample["depth"].flip(-1))
            assert out["K"][0, 2] == pytest.approx(63 - sample["K"][0, 2].item())
            mirrored = marker_ray(sample) * torch.tensor([-1.0, 1.0])
            assert torch.allclose(marker_ray(out), mirrored, atol=1e-6)
        else:
            assert torch.equal(out["image"], sample["image"])
    assert outcomes == {True, False}


@pytest.mark.parametrize("seed", range(4))
def test_depth_never_mixes_valid_and_missing_readings(seed):
    config = AugmentConfig(scale_min=0.6, scale_max=1.7, crop_height=48, crop_width=64)
    torch.manual_seed(seed)
    out = JointTransform(config, 255)(marked_sample())
    assert set(out["depth"].unique().tolist()) <= {0.0, 2.0, 5.0}
    assert set(out["segmentation"].unique().tolist()) <= {0, 7, 255}


def test_padding_uses_ignore_and_no_reading():
    config = AugmentConfig(crop_height=60, crop_width=80)
    out = JointTransform(config, 255)(marked_sample())
    assert out["image"].shape == (3, 60, 80)
    labels, depth = out["segmentation"], out["depth"][0]
    padded = labels == 255
    assert padded.sum() == 60 * 80 - 48 * 64
    assert (depth[padded] == 0).all()


def test_colour_jitter_is_the_same_for_every_frame_and_leaves_geometry():
    sample = marked_sample()
    torch.manual_seed(0)
    out = JointTransform(AugmentConfig(colour_jitter=0.4), 255)(sample)
    assert torch.equal(out["image"], out["prev_image"])
    assert not torch.allclose(out["image"], sample["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    for key in ("segmentation", "depth", "K"):
        assert torch.equal(out[key], sample[key])


def test_resize_scales_intrinsics_and_uses_nearest_for_labels():
    out = resize(marked_sample(), 24, 32)
    assert torch.allclose(out["K"], nyu_intrinsics(24, 32))
    assert set(out["depth"].unique().tolist()) <= {0.0, 2.0, 5.0}
    assert out["segmentation"].dtype == torch.int64


def test_augmentation_reaches_training_batches_only(tmp_path):
    from dense.data import build_dataset

    raw = tiny_dict(tmp_path, "data.augment.crop_height=24", "data.augment.crop_width=32")
    config = config_from_dict(raw)
    assert build_dataset(config.data, "train", augment=True)[0]["image"].shape == (3, 24, 32)
    assert build_dataset(config.data, "val")[0]["image"].shape == (3, 32, 48)


@pytest.mark.parametrize(
    "override",
    ["data.augment.scale_min=2.0", "data.augment.crop_height=8", "data.augment.colour_jitter=-1"],
)
def test_bad_augment_settings(tmp_path, override):
    with pytest.raises(DenseError, match="data.augment"):
        config_from_dict(tiny_dict(tmp_path, override))
