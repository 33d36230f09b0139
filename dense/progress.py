"""Console output: a training progress bar and metric tables (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def training_progress(console: Console, enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def metrics_table(metrics: dict[str, dict[str, float]], title: str) -> Table:
    """One row per (task, metric); per-class entries (with a '/') are left to the JSON files."""
    table = Table(title=title, title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, values in metrics.items():
        for name, value in values.items():
            if "/" not in name:
                table.add_row(task, name, f"{value:.4f}")
    return table


def format_terms(values: dict[str, float]) -> str:
    """``name value`` pairs with four significant digits (small terms stay readable)."""
    return "  ".join(f"{name} {value:.4g}" for name, value in values.items())
