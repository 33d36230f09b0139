import math

import pytest
import torch

from dense.metrics import ConfusionMatrix, DepthMetrics


def test_confusion_matrix_by_hand():
    metric = ConfusionMatrix(num_classes=3, ignore_index=255, class_names=("a", "b", "c"))
    target = torch.tensor([0, 0, 1, 1, 255, 0])
    prediction = torch.tensor([0, 1, 1, 1, 2, 0])
    metric.update(prediction[:3], target[:3])  # streaming: two updates
    metric.update(prediction[3:], target[3:])
    result = metric.compute()
    # class a: TP 2, FN 1, FP 0 → 2/3; class b: TP 2, FP 1 → 2/3; class c: absent everywhere
    # (its only prediction sits on an ignored pixel) → left out of the mean
    assert result["miou"] == pytest.approx(2 / 3)
    assert result["pixel_acc"] == pytest.approx(4 / 5)
    assert result["mean_acc"] == pytest.approx((2 / 3 + 1) / 2)
    assert "iou/c" not in result and result["iou/a"] == pytest.approx(2 / 3)


def test_class_present_only_in_prediction_counts_in_miou():
    metric = ConfusionMatrix(num_classes=3, ignore_index=255)
    metric.update(torch.tensor([0, 2]), torch.tensor([0, 0]))
    result = metric.compute()
    assert result["miou"] == pytest.approx((1 / 2 + 0) / 2)  # class 2 IoU 0, class 1 left out
    assert result["mean_acc"] == pytest.approx(0.5)


def test_depth_metrics_by_hand():
    target = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]])  # last pixel invalid
    prediction = torch.tensor([[[[2.0, 2.0], [2.0, 9.0]]]])
    metric = DepthMetrics(max_depth=10)
    metric.update(prediction, target)
    r = metric.compute()
    assert r["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4) / 3)
    assert r["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4) / 3)
    assert r["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    logs = [math.log(2) - 0, 0, math.log(2) - math.log(4)]
    assert r["rmse_log"] == pytest.approx(math.sqrt(sum(x * x for x in logs) / 3))
    assert r["log10"] == pytest.approx((math.log10(2) + 0 + abs(math.log10(0.5))) / 3)
    # ratios max(p/g, g/p) are 2, 1, 2 and 1.25, 1.25², 1.25³ are all below 2
    assert r["delta1"] == r["delta2"] == r["delta3"] == pytest.approx(1 / 3)


def test_depth_metrics_average_per_image_and_skip_empty_images():
    target = torch.stack(
        [torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 2.0), torch.zeros(1, 2, 2)]
    )
    prediction = torch.stack(
        [torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 3.0), torch.ones(1, 2, 2)]
    )
    metric = DepthMetrics()
    metric.update(prediction, target)
    assert metric.state["images"].item() == 2
    assert metric.compute()["abs_rel"] == pytest.approx((0 + 0.5) / 2)


def test_tasks_declare_which_results_are_better_lower():
    from dense.task import DataInfo
    from tasks.depth import Depth, DepthConfig
    from tasks.segmentation import Segmentation, SegmentationConfig

    info = DataInfo(("a", "b"), 255)
    depth = Depth("depth", DepthConfig(), info).metric()
    errors = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "eps_acc", "eps_comp"}
    assert depth.lower_is_better == errors
    assert errors < set(depth.compute()) and "delta1" in depth.compute()
    assert Segmentation("seg", SegmentationConfig(), info).metric().lower_is_better == set()


def test_display_alignment_and_outlines_of_tasks():
    from dense.task import DataInfo
    from tasks.depth import Depth, DepthConfig
    from tasks.segmentation import Segmentation, SegmentationConfig

    info = DataInfo(("a", "b"), 255)
    target = torch.full((1, 4, 6), 2.0)
    target[..., 3:] = 4.0
    target[0, 0, 0] = 0.0  # invalid: ignored by the median
    plain = Depth("depth", DepthConfig(), info)
    scaled = Depth("depth", DepthConfig(median_scaling=True), info)
    prediction = target.clamp(min=1.0) * 0.5
    assert torch.equal(plain.align(prediction, target), prediction)
    aligned = scaled.align(prediction, target)
    assert torch.allclose(aligned[..., 1:], target[..., 1:])  # median ratio 2 recovered
    # a depth jump between columns 2 and 3, a class border at the same place
    assert plain.outline(target[..., 1:, :]).nonzero()[:, 1].unique().tolist() == [2, 3]
    labels = (target > 3).long()
    segmentation = Segmentation("seg", SegmentationConfig(), info)
    assert segmentation.outline(labels).nonzero()[:, 1].unique().tolist() == [2, 3]
