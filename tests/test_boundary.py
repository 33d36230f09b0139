import math

import pytest
import torch

from losses.boundary import (
    balanced_bce,
    boundary_from_depth,
    boundary_from_labels,
    soft_depth_edges,
    soft_label_edges,
)


def test_label_change_gives_a_band_of_twice_the_radius():
    labels = torch.zeros(1, 8, 10, dtype=torch.long)
    labels[:, :, 5:] = 1
    for radius, columns in [(1, [4, 5]), (2, [3, 4, 5, 6])]:
        boundary, valid = boundary_from_labels(labels, radius)
        assert valid.all()
        marked = boundary[0, 0].nonzero()[:, 1].unique().tolist()
        assert marked == columns


def test_radius_is_euclidean():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 4, 4] = 3
    boundary, _ = boundary_from_labels(labels, radius=2)
    assert boundary.sum().item() == 13  # the digital disk of radius 2


def test_ignore_region_makes_no_boundary_and_is_not_valid():
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[:, :, 3:] = 255
    boundary, valid = boundary_from_labels(labels, radius=2, ignore_index=255)
    assert boundary.sum() == 0
    assert valid[0, 0, :, :3].all() and not valid[0, 0, :, 3:].any()


def test_depth_edges_mark_jumps_not_slopes():
    depth = torch.full((1, 1, 6, 12), 2.0)
    depth[..., 6:] = 3.0
    edges = boundary_from_depth(depth, threshold=0.05, radius=1)
    assert edges[0, 0].nonzero()[:, 1].unique().tolist() == [5, 6]
    ramp = (1.0 + 0.01 * torch.arange(12.0)).expand(1, 1, 6, 12)
    assert boundary_from_depth(ramp, threshold=0.05).sum() == 0
    holes = depth.clone()
    holes[..., 2:4] = 0  # invalid pixels make no edges
    assert boundary_from_depth(holes, 0.05)[..., :5].sum() == 0


def test_soft_edges_agree_with_hard_ones_and_carry_gradient():
    depth = torch.full((1, 1, 6, 12), 2.0)
    depth[..., 6:] = 3.0
    depth.requires_grad_(True)
    soft = soft_depth_edges(depth, threshold=0.05)
    hard = boundary_from_depth(depth.detach(), threshold=0.05)
    assert ((soft > 0.5).float() == hard).all()
    soft.sum().backward()
    assert depth.grad.abs().sum() > 0

    probs = torch.zeros(1, 2, 4, 8)
    probs[:, 0, :, :4], probs[:, 1, :, 4:] = 1, 1
    assert soft_label_edges(probs)[0, 0].nonzero()[:, 1].unique().tolist() == [3, 4]


def test_balanced_bce_by_hand():
    target = torch.tensor([1.0, 0, 0, 0]).reshape(1, 1, 1, 4)
    loss = balanced_bce(torch.zeros_like(target), target)
    # positive weight 3/4, negative weights 1/4; each BCE term is log 2; mean over 4 pixels
    assert loss.item() == pytest.approx((0.75 + 3 * 0.25) * math.log(2) / 4)
    valid = torch.tensor([True, True, False, False]).reshape(1, 1, 1, 4)
    masked = balanced_bce(torch.zeros_like(target), target, valid)
    assert masked.item() == pytest.approx((0.5 + 0.5) * math.log(2) / 2)
