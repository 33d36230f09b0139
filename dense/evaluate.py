"""Evaluation: stream a split through the model and compute every task's metrics."""

from __future__ import annotations

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from dense.data import to_device
from dense.task import Task


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tasks: dict[str, Task],
    loader: DataLoader,
    device: torch.device,
    amp: bool = False,
    console: Console | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per task, reduced over all processes. Restores the model's training mode."""
    was_training = model.training
    model.eval()
    metrics = {name: task.metric() for name, task in tasks.items()}
    with Progress(console=console, transient=True, disable=console is None) as progress:
        bar = progress.add_task("evaluating", total=len(loader))
        for batch in loader:
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = model(batch["image"], batch)  # auxiliary networks too (pose errors)
            for name, task in tasks.items():
                task.update_metric(metrics[name], outputs[name], batch, outputs)
            progress.advance(bar)
    model.train(was_training)
    results = {}
    for name, metric in metrics.items():
        metric.reduce()
        results[name] = metric.compute()
    return results
