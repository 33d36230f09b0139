"""Grid figures: validation curves (mean ± std over seeds, one line per arm that has data),
example pictures (image | ground truth | each pictured arm's prediction) and the same cut to
the densest true boundaries, enlarged."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from dense.experiment.grid import Grid
from dense.pictures import (
    Column,
    aligned_predictions,
    cropped,
    densest_window,
    save_comparison,
    task_column,
)
from dense.rundir import CHECKPOINT
from dense.visualize import to_uint8


def curves(grid: Grid, metric: str) -> dict[str, dict[int, list[float]]]:
    """arm → step → the seeds' values of ``metric`` at that validation (arms with data only)."""
    out = {}
    for arm in grid.arms:
        by_step: dict[int, list[float]] = {}
        for seed in grid.config.seeds:
            for step, value in grid.validation_curve(arm, seed, metric).items():
                by_step.setdefault(step, []).append(value)
        if by_step:
            out[arm] = dict(sorted(by_step.items()))
    return out


def plot(series: dict[str, dict[int, list[float]]], title: str, path: Path) -> bool:
    """One line per arm (mean over seeds) with a band of ± one std; False if nothing to draw."""
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7.2, 4.0), dpi=110, layout="constrained")
    for arm, by_step in series.items():
        steps = list(by_step)
        means = [statistics.fmean(v) for v in by_step.values()]
        spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in by_step.values()]
        (line,) = axes.plot(steps, means, marker="o", markersize=3, label=arm)
        low = [m - s for m, s in zip(means, spread, strict=True)]
        high = [m + s for m, s in zip(means, spread, strict=True)]
        axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    axes.set_xlabel("training step")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def write_plots(grid: Grid) -> list[Path]:
    paths = []
    for metric in grid.config.metrics:
        path = grid.folder / f"{metric.replace('/', '_')}.png"
        seeds = len(grid.config.seeds)
        title = f"{grid.config.name}: {metric} on validation (mean ± std over {seeds} seeds)"
        if plot(curves(grid, metric), title, path):
            paths.append(path)
    return paths


CROP = 4  # boundary crops are a quarter of the frame's height and width, enlarged 4× more


def picture_seed(grid: Grid, arms: list[str]) -> int:
    """The first seed whose runs of every pictured arm kept their checkpoint (a grid resumed
    from copied metrics may lack its first seeds' checkpoints), else the first seed."""
    for seed in grid.config.seeds:
        if all((grid.run_dir(arm, seed) / CHECKPOINT).is_file() for arm in arms):
            return seed
    return grid.config.seeds[0]


@torch.no_grad()
def write_pictures(grid: Grid) -> list[Path]:
    """Per drawable task, ``<task>_examples.png``: the first validation images | ground truth |
    the prediction of each pictured arm (``picture_seed``), boundaries drawn in white; and, for
    tasks that outline their targets, ``<task>_boundary_crops.png``: the same columns cut to
    each image's window of densest true boundaries, enlarged (nearest-neighbour)."""
    from dense.assemble import load_trained
    from dense.data import build_dataset

    arms = grid.config.pictures or list(grid.arms)
    seed = picture_seed(grid, arms)
    runs = {arm: grid.run_dir(arm, seed) / CHECKPOINT for arm in arms}
    trained = {arm: load_trained(path) for arm, path in runs.items() if path.is_file()}
    if not trained:
        return []
    data = next(iter(trained.values())).config.data
    dataset = build_dataset(data, data.val_split)
    samples = [dataset[i] for i in range(min(grid.config.picture_samples, len(dataset)))]
    images = torch.stack([sample["image"] for sample in samples])
    outputs = {arm: run.model(images) for arm, run in trained.items()}
    paths = []
    for name in dict.fromkeys(name for run in trained.values() for name in run.tasks):
        pictured = [arm for arm, run in trained.items() if name in run.tasks]
        first = trained[pictured[0]].tasks[name]
        targets = [sample[first.target_key] for sample in samples]
        truth = task_column("ground truth", first, targets)
        if truth is None:
            continue  # the task draws nothing
        columns = [Column("image", [to_uint8(sample["image"]) for sample in samples]), truth]
        for arm in pictured:
            task = trained[arm].tasks[name]
            predictions = aligned_predictions(task, outputs[arm][name], targets)
            columns.append(task_column(arm, task, predictions))
        title = f"{grid.config.name}: {name}, seed {seed}"
        path = grid.folder / f"{name}_examples.png"
        save_comparison(path, columns, title=title)
        paths.append(path)
        outlines = [first.outline(target) for target in targets]
        if all(outline is not None for outline in outlines):
            height, width = targets[0].shape[-2:]
            size = (max(1, height // CROP), max(1, width // CROP))
            windows = [densest_window(outline, size) for outline in outlines]
            path = grid.folder / f"{name}_boundary_crops.png"
            save_comparison(
                path, cropped(columns, windows), scale=2 * CROP, title=f"{title}, boundary crops"
            )
            paths.append(path)
    return paths
