import pytest
import torch

from dense.boundary_metrics import BoundaryScores, DepthBoundaryErrors, truncated_distance


def halves(change_at: int, height: int = 8, width: int = 12) -> torch.Tensor:
    labels = torch.zeros(1, height, width, dtype=torch.long)
    labels[..., change_at:] = 1
    return labels


def test_truncated_distance():
    edges = torch.zeros(1, 1, 1, 9, dtype=torch.bool)
    edges[..., 2] = True
    assert truncated_distance(edges, 4)[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 4, 4]


def test_boundary_f_score_by_hand():
    metric = BoundaryScores(num_classes=2, ignore_index=255, tolerances=(1, 2, 3))
    metric.update(halves(7), halves(5))  # every predicted boundary pixel is 2 px off
    result = metric.compute()
    assert result["bf1"] == 0.0
    assert result["bf2"] == pytest.approx(1.0)
    assert result["bf3"] == pytest.approx(1.0)
    assert result["boundary_iou"] == 0.0  # 1-pixel bands, 2 pixels apart

    perfect = BoundaryScores(num_classes=2, ignore_index=255, tolerances=(1,))
    perfect.update(halves(5), halves(5))
    assert perfect.compute() == {"bf1": pytest.approx(1.0), "boundary_iou": pytest.approx(1.0)}


def test_boundary_iou_by_hand():
    """8×40 image, change at column 20, band width round(0.1·√(8²+40²)) = 4: class 0's GT
    band is columns 16–19, predicted (change at 21) 17–20: IoU 3/5; class 1 likewise."""
    metric = BoundaryScores(num_classes=2, ignore_index=255, tolerances=(1,), iou_ratio=0.1)
    metric.update(halves(21, 8, 40), halves(20, 8, 40))
    assert metric.compute()["boundary_iou"] == pytest.approx(0.6)


def test_depth_boundary_errors_by_hand():
    target = torch.full((1, 1, 6, 16), 2.0)
    target[..., 6:] = 4.0  # GT edges at columns 5 and 6
    prediction = torch.full((1, 1, 6, 16), 2.0)
    prediction[..., 8:] = 4.0  # predicted edges at columns 7 and 8
    metric = DepthBoundaryErrors(threshold=0.05, limit=10)
    metric.update(prediction, target)
    result = metric.compute()
    assert result["eps_acc"] == pytest.approx((1 + 2) / 2)
    assert result["eps_comp"] == pytest.approx((2 + 1) / 2)
    exact = DepthBoundaryErrors()
    exact.update(target, target)
    assert exact.compute() == {"eps_acc": 0.0, "eps_comp": 0.0}


def test_metric_group_merges_and_resets():
    from dense.boundary_metrics import MetricGroup
    from dense.metrics import ConfusionMatrix

    group = MetricGroup(ConfusionMatrix(2, 255), BoundaryScores(2, 255, tolerances=(1,)))
    group.update(halves(5), halves(5))
    assert {"miou", "bf1", "boundary_iou"} <= set(group.compute())
    group.reset()
    assert all(value.sum() == 0 for value in group.state.values())
    assert group.compute()["miou"] == 0.0


@pytest.mark.parametrize(("density", "limit"), [(0.002, 10), (0.02, 6), (0.0, 3), (0.3, 1)])
def test_truncated_distance_is_the_rounded_up_euclidean_distance(density, limit):
    """Against brute force: the smallest whole radius whose disk reaches an edge pixel."""
    g = torch.Generator().manual_seed(limit)
    edges = (torch.rand(2, 3, 23, 31, generator=g) < density).float()
    edges[0, 0, 11, 15] = 1.0  # at least one edge in one channel
    ys, xs = torch.meshgrid(torch.arange(23.0), torch.arange(31.0), indexing="ij")
    expected = torch.full(edges.shape, float(limit))
    for b, c, y, x in edges.nonzero().tolist():
        squared = (ys - y) ** 2 + (xs - x) ** 2
        expected[b, c] = torch.minimum(expected[b, c], squared.sqrt().ceil())
    assert torch.equal(truncated_distance(edges, limit), expected.clamp(max=limit))
