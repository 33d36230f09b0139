"""Boundary-quality metrics, streaming and reducible like the others.

- ``BoundaryScores`` (segmentation): boundary F-score per class at pixel tolerances
  (Gated-SCNN / InverseForm evaluation) and boundary IoU (Cheng et al. 2021).
- ``DepthBoundaryErrors`` (depth): ε_acc and ε_comp (Koch et al. 2018) on depth edges.

Distances to the nearest boundary pixel are Euclidean on the pixel grid, truncated, and come
from disk dilations, so everything runs as pooling on the evaluation device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dense.metrics import Metric
from losses.boundary import boundary_from_depth, boundary_from_labels, dilate_max


def truncated_distance(edges: Tensor, limit: int) -> Tensor:
    """Distance (B, C, H, W) from each pixel to the nearest nonzero pixel of ``edges`` in the
    same channel, rounded up to whole pixels (the smallest disk radius that reaches an edge),
    capped at ``limit`` (also where there is no edge).

    Exact squared Euclidean distances within the window, in two separable passes of
    ``limit`` shifts each (rows, then columns): O(limit) tensor operations, where dilating by
    every disk up to ``limit`` costs O(limit³).
    """
    far = float(limit * limit + 1)  # beyond every distance that is not capped
    height, width = edges.shape[-2:]
    present = F.pad(edges > 0, (limit, limit))
    along_row = torch.where(edges > 0, 0.0, far)
    for k in range(1, limit + 1):
        near = (
            present[..., limit + k : limit + k + width]
            | present[..., limit - k : limit - k + width]
        )
        along_row = torch.where(near & (along_row > k), float(k), along_row)
    squared = torch.where(along_row < far, along_row.square(), far)
    padded = F.pad(squared, (0, 0, limit, limit), value=far)
    nearest = squared
    for j in range(1, limit + 1):
        above = padded[..., limit - j : limit - j + height, :]
        below = padded[..., limit + j : limit + j + height, :]
        nearest = torch.minimum(nearest, torch.minimum(above, below) + j * j)
    radius = nearest.sqrt().floor()
    radius = radius + (radius.square() < nearest).float()  # exact on whole squared distances
    return radius.clamp(max=float(limit))


def class_boundaries(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """(B, K, H, W) bool: the one-pixel inner boundary of each class's region."""
    boundary, valid = boundary_from_labels(labels, radius=1, ignore_index=ignore_index)
    classes = torch.arange(num_classes, device=labels.device)[None, :, None, None]
    return (boundary > 0) & valid & (labels[:, None] == classes)


class BoundaryScores(Metric):
    """Mean boundary F-score over classes at each tolerance, and mean boundary IoU.

    Classes without a boundary pixel in either ground truth or prediction are left out.
    Boundary IoU compares, per class, the parts of the two masks within ``d`` pixels of their
    contours, ``d`` = ``iou_ratio`` × the image diagonal.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int,
        tolerances: tuple[int, ...] = (1, 3, 5),
        iou_ratio: float = 0.02,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerances = tuple(tolerances)
        self.iou_ratio = iou_ratio
        self.reset()

    def reset(self) -> None:
        shape = (len(self.tolerances), 4, self.num_classes)  # matched/total pred, matched/total GT
        self.state = {
            "f_counts": torch.zeros(shape, dtype=torch.float64),
            "iou_counts": torch.zeros(2, self.num_classes, dtype=torch.float64),
        }

    def update(self, prediction: Tensor, target: Tensor) -> None:
        target = target.reshape(-1, *target.shape[-2:]).long()
        prediction = prediction.reshape(target.shape).long()
        valid = target != self.ignore_index
        prediction = torch.where(valid, prediction, self.ignore_index)
        k = self.num_classes
        predicted_edges = class_boundaries(prediction, k, self.ignore_index)
        target_edges = class_boundaries(target, k, self.ignore_index)
        limit = max(self.tolerances) + 1
        to_target = truncated_distance(target_edges, limit)
        to_predicted = truncated_distance(predicted_edges, limit)
        for i, tolerance in enumerate(self.tolerances):
            counts = torch.stack(
                [
                    (predicted_edges & (to_target <= tolerance)).sum(dim=(0, 2, 3)),
                    predicted_edges.sum(dim=(0, 2, 3)),
                    (target_edges & (to_predicted <= tolerance)).sum(dim=(0, 2, 3)),
                    target_edges.sum(dim=(0, 2, 3)),
                ]
            )
            self.state["f_counts"][i] += counts.double().cpu()
        height, width = target.shape[-2:]
        band = max(1, round(self.iou_ratio * math.hypot(height, width)))
        classes = torch.arange(k, device=target.device)[None, :, None, None]
        inner_target = contour_band((target[:, None] == classes) & valid[:, None], band)
        inner_predicted = contour_band((prediction[:, None] == classes) & valid[:, None], band)
        self.state["iou_counts"] += (
            torch.stack(
                [
                    (inner_target & inner_predicted).sum(dim=(0, 2, 3)),
                    (inner_target | inner_predicted).sum(dim=(0, 2, 3)),
                ]
            )
            .double()
            .cpu()
        )

    def compute(self) -> dict[str, float]:
        results = {}
        for i, tolerance in enumerate(self.tolerances):
            matched_p, total_p, matched_g, total_g = self.state["f_counts"][i]
            present = (total_p + total_g) > 0
            precision = matched_p / total_p.clamp(min=1)
            recall = matched_g / total_g.clamp(min=1)
            f = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
            results[f"bf{tolerance}"] = f[present].mean().item() if present.any() else 0.0
        intersection, union = self.state["iou_counts"]
        present = union > 0
        iou = intersection / union.clamp(min=1)
        results["boundary_iou"] = iou[present].mean().item() if present.any() else 0.0
        return results


def contour_band(masks: Tensor, width: int) -> Tensor:
    """Pixels of each mask within ``width`` of its contour (the image border is no contour)."""
    outside = (~masks).float()
    near_outside = dilate_max(outside, width) > 0
    return masks & near_outside


class DepthBoundaryErrors(Metric):
    """ε_acc: mean distance from predicted depth edges to the nearest GT edge; ε_comp: from GT
    edges to the nearest predicted edge; both in pixels, truncated at ``limit``. Edges are
    relative depth jumps above ``threshold`` (:func:`boundary_from_depth`) on valid pixels."""

    lower_is_better = frozenset({"eps_acc", "eps_comp"})

    def __init__(self, threshold: float = 0.05, limit: int = 10, max_depth: float = 10.0):
        self.threshold, self.limit, self.max_depth = threshold, limit, max_depth
        self.reset()

    def reset(self) -> None:
        self.state = {"sums": torch.zeros(4, dtype=torch.float64)}

    def update(self, prediction: Tensor, target: Tensor) -> None:
        target = target.reshape(-1, 1, *target.shape[-2:]).float()
        prediction = prediction.reshape(target.shape).float()
        valid = torch.isfinite(target) & (target > 0) & (target <= self.max_depth)
        target_edges = boundary_from_depth(target, self.threshold, 1, valid) > 0
        predicted_edges = (boundary_from_depth(prediction, self.threshold, 1, valid) > 0) & valid
        to_target = truncated_distance(target_edges, self.limit)
        to_predicted = truncated_distance(predicted_edges, self.limit)
        self.state["sums"] += (
            torch.stack(
                [
                    to_target[predicted_edges].sum(),
                    predicted_edges.sum(),
                    to_predicted[target_edges].sum(),
                    target_edges.sum(),
                ]
            )
            .double()
            .cpu()
        )

    def compute(self) -> dict[str, float]:
        acc, predicted, comp, target = self.state["sums"].tolist()
        return {
            "eps_acc": acc / predicted if predicted else float(self.limit),
            "eps_comp": comp / target if target else 0.0,
        }


class MetricGroup(Metric):
    """Several metrics fed the same (prediction, target); their results merged."""

    def __init__(self, *metrics: Metric) -> None:
        self.metrics = metrics
        self.state = self.collect_state()
        self.lower_is_better = frozenset().union(*(m.lower_is_better for m in metrics))

    def collect_state(self) -> dict[str, Tensor]:
        return {
            f"{index}/{key}": value
            for index, metric in enumerate(self.metrics)
            for key, value in metric.state.items()
        }

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()
        self.state = self.collect_state()

    def update(self, prediction: Tensor, target: Tensor) -> None:
        for metric in self.metrics:
            metric.update(prediction, target)

    def reduce(self) -> None:
        for metric in self.metrics:
            metric.reduce()

    def compute(self) -> dict[str, float]:
        results: dict[str, float] = {}
        for metric in self.metrics:
            results |= metric.compute()
        return results
