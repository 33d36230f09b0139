"""Multi-task loss weighting: fixed, uncertainty (Kendall et al. 2018) and DWA (Liu et al. 2019).

Each strategy is a module mapping per-task losses to a total, so its state (learned
log-variances, DWA loss history) lives in its state dict and is checkpointed with the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class FixedWeighting(nn.Module):
    """total = Σ w_t · L_t with the weights from each task's config."""

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.weights = dict(weights)

    def forward(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        total = sum(self.weights[name] * loss for name, loss in losses.items())
        return total, dict(self.weights)


class UncertaintyWeighting(nn.Module):
    """total = Σ exp(−s_t) · L_t + s_t with one learned log-variance s_t per task."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        precision = torch.exp(-self.log_vars)
        total = sum(
            precision[i] * losses[name] + self.log_vars[i] for i, name in enumerate(self.tasks)
        )
        return total, {name: precision[i].item() for i, name in enumerate(self.tasks)}


class DynamicWeightAverage(nn.Module):
    """Weights from how fast each loss falls: λ_t = T·softmax(r / temperature),
    r_t = L̄_t(k−1) / L̄_t(k−2), where L̄(k) is a task's mean loss over training window k of
    ``window`` steps. The first two windows use λ = 1. ``average`` maps this process's window
    means to the means over all processes (the identity in a single process)."""

    def __init__(
        self,
        tasks: list[str],
        temperature: float = 2.0,
        window: int = 50,
        average: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.average = average or (lambda means: means)
        self.temperature = temperature
        self.window = window
        self.register_buffer("sums", torch.zeros(len(tasks), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("history", torch.zeros(2, len(tasks), dtype=torch.float64))
        self.register_buffer("windows", torch.zeros((), dtype=torch.int64))

    def current_weights(self) -> Tensor:
        if self.windows < 2:
            return torch.ones(len(self.tasks), dtype=torch.float64)
        ratio = self.history[1] / self.history[0].clamp(min=1e-12)
        return len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0)

    def forward(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        weights = self.current_weights()
        total = sum(weights[i].item() * losses[name] for i, name in enumerate(self.tasks))
        if self.training:
            self.observe(torch.stack([losses[name].detach().double().cpu() for name in self.tasks]))
        return total, {name: weights[i].item() for i, name in enumerate(self.tasks)}

    def observe(self, values: Tensor) -> None:
        self.sums += values
        self.steps += 1
        if self.steps >= self.window:
            mean = self.average(self.sums / self.window)
            self.history.copy_(torch.stack([self.history[1], mean]))
            self.windows += 1
            self.sums.zero_()
            self.steps.zero_()


def make_weighting(
    method: str,
    weights: dict[str, float],
    temperature: float = 2.0,
    window: int = 50,
    average: Callable[[Tensor], Tensor] | None = None,
) -> nn.Module:
    if method == "fixed":
        return FixedWeighting(weights)
    if method == "uncertainty":
        return UncertaintyWeighting(list(weights))
    if method == "dwa":
        return DynamicWeightAverage(list(weights), temperature, window, average)
    raise ValueError(f"unknown weighting method {method!r}")
