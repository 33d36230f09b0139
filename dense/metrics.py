"""Streaming metrics: ``update`` per batch, ``compute`` at the end, summed across DDP ranks.

Each metric keeps its state as a few tensors of sums; ``reduce`` adds them over processes,
so a distributed evaluation gives exactly the numbers a single process would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from dense import distributed


class Metric(ABC):
    """Base class: subclasses fill ``self.state`` (name → tensor of sums) in ``reset`` and
    name the results where lower is better in ``lower_is_better`` (higher is better otherwise)."""

    state: dict[str, Tensor]
    lower_is_better: frozenset[str] = frozenset()

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def update(self, prediction: Tensor, target: Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...

    def reduce(self) -> None:
        """Sum the state over all processes (no-op when not distributed)."""
        for value in self.state.values():
            distributed.all_reduce_sum(value)


class ConfusionMatrix(Metric):
    """Segmentation: mIoU, pixel accuracy and mean class accuracy from a confusion matrix.

    mIoU averages over classes present in the ground truth or the prediction; mean class
    accuracy over classes present in the ground truth. Pixels labelled ``ignore_index`` count
    for nothing.
    """

    def __init__(self, num_classes: int, ignore_index: int, class_names: tuple[str, ...] = ()):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names or tuple(str(c) for c in range(num_classes))
        self.reset()

    def reset(self) -> None:
        self.state = {"matrix": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """prediction, target: integer labels with the same number of elements."""
        prediction, target = prediction.reshape(-1), target.reshape(-1)
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        index = target[valid].long() * self.num_classes + prediction[valid].long()
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.state["matrix"] += counts.reshape(self.num_classes, self.num_classes).cpu()

    def compute(self) -> dict[str, float]:
        matrix = self.state["matrix"].double()  # rows: ground truth, columns: prediction
        true_positive = matrix.diag()
        in_target, in_prediction = matrix.sum(1), matrix.sum(0)
        union = in_target + in_prediction - true_positive
        present = union > 0
        iou = true_positive / union.clamp(min=1)
        accuracy = true_positive / in_target.clamp(min=1)
        total = matrix.sum().clamp(min=1)
        results = {
            "miou": iou[present].mean().item() if present.any() else 0.0,
            "pixel_acc": (true_positive.sum() / total).item(),
            "mean_acc": accuracy[in_target > 0].mean().item() if (in_target > 0).any() else 0.0,
        }
        for name, value, seen in zip(self.class_names, iou.tolist(), present.tolist(), strict=True):
            if seen:
                results[f"iou/{name}"] = value
        return results


DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
DEPTH_ERRORS = frozenset(DEPTH_KEYS[:5])  # lower is better; the δ thresholds higher


# the Eigen crop, as fractions of a 480×640 NYU image: rows 45–470, columns 41–600
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)


def crop_mask(height: int, width: int, crop: tuple[float, float, float, float]) -> Tensor:
    """(H, W) mask of the pixels inside a crop given as fractions (top, bottom, left, right)."""
    top, bottom = round(crop[0] * height), round(crop[1] * height)
    left, right = round(crop[2] * width), round(crop[3] * width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


class DepthMetrics(Metric):
    """Depth: the standard error measures, computed per image and averaged over images.

    Pixels count when the target lies in (min_depth, max_depth] (and inside ``crop``, if given);
    predictions are clamped to the same range, after per-image median scaling if asked for
    (monocular models with unknown scale). Images without a valid pixel are skipped.
    """

    lower_is_better = DEPTH_ERRORS

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        median_scaling: bool = False,
        crop: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.min_depth, self.max_depth = min_depth, max_depth
        self.median_scaling, self.crop = median_scaling, crop
        self.reset()

    def reset(self) -> None:
        self.state = {
            "sums": torch.zeros(len(DEPTH_KEYS), dtype=torch.float64),
            "images": torch.zeros((), dtype=torch.float64),
        }

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """prediction, target: (B, 1, H, W) or (B, H, W) depths in metres."""
        mask = None
        if self.crop is not None:
            mask = crop_mask(*target.shape[-2:], self.crop).to(target.device)
        per_image = depth_errors(
            prediction, target, self.min_depth, self.max_depth, self.median_scaling, mask
        )
        if per_image.numel():
            self.state["sums"] += per_image.sum(0).double().cpu()
            self.state["images"] += per_image.shape[0]

    def compute(self) -> dict[str, float]:
        mean = self.state["sums"] / self.state["images"].clamp(min=1)
        return dict(zip(DEPTH_KEYS, mean.tolist(), strict=True))


def depth_errors(
    prediction: Tensor,
    target: Tensor,
    min_depth: float,
    max_depth: float,
    median_scaling: bool = False,
    mask: Tensor | None = None,
) -> Tensor:
    """(N, 8) errors in the order of ``DEPTH_KEYS`` for the N images with valid pixels; ``mask``
    (H, W) limits the pixels that count."""
    pred = prediction.reshape(prediction.shape[0], -1).float()
    gt = target.reshape(target.shape[0], -1).float()
    valid = (gt > min_depth) & (gt <= max_depth)
    if mask is not None:
        valid &= mask.reshape(1, -1)
    count = valid.sum(1)
    keep = count > 0
    pred, gt, valid, count = pred[keep], gt[keep], valid[keep], count[keep].float()
    if median_scaling:
        pred = median_scale(pred, gt, valid)
    gt_safe = torch.where(valid, gt, torch.ones_like(gt))
    pred = torch.where(valid, pred.clamp(min_depth, max_depth), torch.ones_like(pred))

    def mean(values: Tensor) -> Tensor:
        return torch.where(valid, values, torch.zeros_like(values)).sum(1) / count

    ratio = torch.maximum(pred / gt_safe, gt_safe / pred)
    diff = pred - gt_safe
    return torch.stack(
        [
            mean(diff.abs() / gt_safe),
            mean(diff.square() / gt_safe),
            mean(diff.square()).sqrt(),
            mean((pred.log() - gt_safe.log()).square()).sqrt(),
            mean((pred.log10() - gt_safe.log10()).abs()),
            mean((ratio < 1.25).float()),
            mean((ratio < 1.25**2).float()),
            mean((ratio < 1.25**3).float()),
        ],
        dim=1,
    )


def median_scale(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Scale each row of (N, P) ``prediction`` by median(target) / median(prediction) over its
    ``valid`` pixels: the evaluation of depth known only up to scale."""
    nan = torch.full_like(target, torch.nan)
    target_median = target.where(valid, nan).nanmedian(1).values
    return prediction * (target_median / prediction.where(valid, nan).nanmedian(1).values)[:, None]


class PoseErrors(Metric):
    """Relative camera poses (N, 4, 4) against the true ones: the rotation error (angle of
    R̂ᵀR) and the translation-direction error (angle between t̂ and t), both in degrees and
    averaged over pairs. Direction only: monocular translation has no scale. Computes nothing
    (an empty dict) when no pose was seen."""

    lower_is_better = frozenset({"pose_rot_deg", "pose_dir_deg"})

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state = {"sums": torch.zeros(3, dtype=torch.float64)}  # rotation, direction, count

    def update(self, prediction: Tensor, target: Tensor) -> None:
        prediction, target = prediction.double(), target.double()
        relative = prediction[:, :3, :3].transpose(1, 2) @ target[:, :3, :3]
        cosine = (relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
        rotation = torch.rad2deg(torch.acos(cosine.clamp(-1, 1)))
        direction = torch.rad2deg(angle_between(prediction[:, :3, 3], target[:, :3, 3]))
        sums = torch.stack([rotation.sum(), direction.sum(), rotation.new_tensor(len(rotation))])
        self.state["sums"] += sums.cpu()

    def compute(self) -> dict[str, float]:
        rotation, direction, count = self.state["sums"].tolist()
        if count == 0:
            return {}
        return {"pose_rot_deg": rotation / count, "pose_dir_deg": direction / count}


def angle_between(a: Tensor, b: Tensor) -> Tensor:
    """Angles (radians) between the rows of (N, 3) vectors; 0 where either is zero."""
    cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)
    return torch.acos(cosine.clamp(-1, 1))


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """``{task: {name: value}}`` → ``{"task/name": value}`` (other top-level entries dropped)."""
    return {
        f"{task}/{name}": value
        for task, values in metrics.items()
        if isinstance(values, dict)
        for name, value in values.items()
    }
