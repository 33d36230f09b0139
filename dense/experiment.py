"""Experiment grids: arms × seeds of one base config, run resumably, summarised as tables/plots.

A grid file (TOML)::

    [grid]
    name = "segmentation_inverseform"
    base = "experiments/synthetic_joint.toml"   # relative to the grid file
    seeds = [0, 1, 2]
    overrides = ["train.steps=300"]             # applied to every arm
    metrics = ["segmentation/miou", "segmentation/bf3"]
    reference = { segmentation = "ce" }         # optional: task → single-task arm, for Δm
    pictures = ["ce", "ce_bce"]                 # optional: arms compared in the pictures

    [arms.ce]
    overrides = []
    [arms.ce_bce]
    overrides = ["tasks.segmentation.boundary_head=true", "..."]

Runs live in ``OUT/<grid>/<arm>/seed<k>/``; a run whose ``metrics.json`` reports the final
step is finished and never rerun, an interrupted one resumes from its checkpoint, and one whose
config equals a finished run's in another arm or grid under ``OUT`` (a shared single-task
reference, say) is copied from it: training is deterministic, so it would repeat it. The summary
goes to ``OUT/<grid>/``: ``results.md`` and ``results.csv`` (mean ± sample std over seeds,
plus Δm when single-task reference arms are named), ``<metric>.png`` per metric (validation
value against step, mean over seeds, per arm), and ``<task>_examples.png`` per task
(validation images | ground truth | each pictured arm's prediction, boundaries in white).
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
import torch
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table
from torch import Tensor

from dense.config import Config, build_dataclass, load_config, to_toml, toml_value
from dense.errors import DenseError
from dense.rundir import read_log
from dense.visualize import caption_columns, enlarge, image_grid, save_png, to_uint8
from tasks.base import Task


@dataclass
class GridConfig:
    name: str
    base: str  # the base experiment TOML, relative to the grid file
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)  # for every arm
    metrics: list[str] = field(default_factory=list)  # "task/metric" columns of the table
    reference: dict[str, str] = field(default_factory=dict)  # task → its single-task arm (Δm)
    pictures: list[str] = field(default_factory=list)  # arms in the example pictures; [] all
    picture_samples: int = 4  # validation images in the example pictures
    out_dir: str = "runs/grids"


@dataclass
class ArmConfig:
    overrides: list[str] = field(default_factory=list)


@dataclass
class Grid:
    config: GridConfig
    arms: dict[str, ArmConfig]
    base: Path

    @property
    def folder(self) -> Path:
        return Path(self.config.out_dir) / self.config.name

    def run_config(self, arm: str, seed: int) -> Config:
        overrides = [
            *self.config.overrides,
            *self.arms[arm].overrides,
            f"run.seed={seed}",
            f"run.name=seed{seed}",
            f"run.out_dir={toml_value((self.folder / arm).as_posix())}",
        ]
        return load_config(self.base, overrides)


SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # grid and arm names become folder names


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every arm's config is validated before anything runs."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DenseError(f"grid file not found: {path}") from None
    except OSError as error:
        raise DenseError(f"cannot read grid file {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DenseError(f"{path} is not valid TOML: {error}") from None
    unknown = set(raw) - {"grid", "arms"}
    if unknown or "grid" not in raw or not raw.get("arms"):
        raise DenseError(f"{path}: needs a [grid] table and [arms.NAME] tables, nothing else")
    config = build_dataclass(GridConfig, raw["grid"], "grid.")
    arms = {
        name: build_dataclass(ArmConfig, options, f"arms.{name}.")
        for name, options in raw["arms"].items()
    }
    if not config.seeds:
        raise DenseError(f"{path}: grid.seeds is empty")
    if config.picture_samples < 1:
        raise DenseError(f"{path}: grid.picture_samples must be at least 1")
    for key, name in (("grid.name", config.name), *((f"arms.{arm}", arm) for arm in arms)):
        if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
            raise DenseError(f"{path}: {key}: use letters, digits, '_', '-' and '.' only")
    for key, named in (("reference", config.reference.values()), ("pictures", config.pictures)):
        if unknown := [arm for arm in named if arm not in arms]:
            raise DenseError(f"{path}: grid.{key} names arms that do not exist: {unknown}")
    if unmeasured := [t for t in config.reference if not task_metrics(config.metrics, t)]:
        raise DenseError(f"{path}: grid.metrics has no metric of reference task(s) {unmeasured}")
    grid = Grid(config, arms, (path.parent / config.base).resolve())
    for arm in arms:
        grid.run_config(arm, config.seeds[0])  # fails early, naming the bad key
    return grid


def finished(run_dir: Path, steps: int) -> bool:
    """A run is finished when its metrics.json is whole and reports the final step."""
    try:
        return read_summary(run_dir / "metrics.json").get("step") == steps
    except DenseError:
        return False  # no summary, or one cut short: the run resumes and writes it again


def read_summary(path: Path) -> dict:
    """A run's metrics.json; a missing or damaged one is a DenseError naming the file."""
    try:
        summary = json.loads(path.read_text())
    except OSError:
        raise DenseError(f"cannot read {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DenseError(f"{path} is damaged: rerun the grid without --summary-only") from None
    if not isinstance(summary, dict):
        raise DenseError(f"{path} is damaged: rerun the grid without --summary-only")
    return summary


def recipe(saved: dict) -> dict:
    """A saved run config without where the run is kept: equal recipes train identical runs."""
    return {**saved, "run": {k: v for k, v in saved["run"].items() if k not in ("out_dir", "name")}}


def saved_recipe(path: Path) -> dict | None:
    try:
        return recipe(tomllib.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, AttributeError):
        return None  # not a run's config (or a damaged one): no twin of anything


def find_twin(grid: Grid, config: Config) -> Path | None:
    """A finished run under the grid's ``out_dir`` with the same recipe as ``config``."""
    wanted = recipe(tomllib.loads(to_toml(config.to_dict())))
    for saved in sorted(Path(grid.config.out_dir).glob("*/*/*/config.toml")):
        if saved_recipe(saved) == wanted and finished(saved.parent, config.train.steps):
            return saved.parent
    return None


def copy_run(source: Path, run_dir: Path, config: Config) -> None:
    shutil.copytree(source, run_dir, dirs_exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(config.to_dict()))


def run_grid(grid: Grid, console: Console) -> None:
    """Train every arm × seed that has not finished (resuming interrupted runs, copying runs
    that a finished run with the same config already holds)."""
    from dense.trainer import train

    jobs = [(arm, seed) for arm in grid.arms for seed in grid.config.seeds]
    for number, (arm, seed) in enumerate(jobs, 1):
        config = grid.run_config(arm, seed)
        run_dir = grid.folder / arm / f"seed{seed}"
        heading = f"[{number}/{len(jobs)}] {arm} seed {seed}"
        if finished(run_dir, config.train.steps):
            console.print(f"{heading}: finished, skipped")
        elif twin := find_twin(grid, config):
            copy_run(twin, run_dir, config)
            console.print(f"{heading}: same config as {twin}, copied")
        else:
            console.print(heading)
            train(config, resume=(run_dir / "last.pt").is_file(), console=console)


def flatten(metrics: dict) -> dict[str, float]:
    return {
        f"{task}/{name}": value
        for task, values in metrics.items()
        if isinstance(values, dict)
        for name, value in values.items()
    }


def summarise(grid: Grid) -> dict[str, dict[str, list[float]]]:
    """arm → metric → the finished seeds' final values."""
    values: dict[str, dict[str, list[float]]] = {}
    for arm in grid.arms:
        values[arm] = {}
        for seed in grid.config.seeds:
            summary = grid.folder / arm / f"seed{seed}" / "metrics.json"
            if not summary.is_file():
                continue
            for name, value in flatten(read_summary(summary)).items():
                values[arm].setdefault(name, []).append(value)
    return values


DELTA_M = "Δm (%)"  # its table column; "delta_m_percent" in the CSV


def task_metrics(metrics: list[str], task: str) -> list[str]:
    return [metric for metric in metrics if metric.startswith(f"{task}/")]


def lower_is_better(grid: Grid) -> set[str]:
    """The "task/metric" names of the reference tasks where lower is better, as their metric
    classes declare (read from the reference arms' first finished run)."""
    from dense.assemble import load_trained

    lower = set()
    for task, arm in grid.config.reference.items():
        runs = [grid.folder / arm / f"seed{seed}" / "last.pt" for seed in grid.config.seeds]
        if found := [run for run in runs if run.is_file()]:
            metric = load_trained(found[0]).tasks[task].metric()
            lower |= {f"{task}/{name}" for name in metric.lower_is_better}
    return lower


def delta_m(grid: Grid, values: dict[str, dict[str, list[float]]]) -> dict[str, list[float]]:
    """arm → Δm (%) of each of its seeds: the mean over tasks of the mean relative gain over the
    task's single-task reference arm (mean over its seeds) on the task's grid metrics, signed
    so that positive is better (Maninis et al. 2019; Vandenhende et al. 2021)."""
    reference = grid.config.reference
    if not reference:
        return {}
    lower = lower_is_better(grid)
    out = {}
    for arm, arm_values in values.items():
        gains = []  # per task: per seed
        for task, reference_arm in reference.items():
            per_metric = []
            for metric in task_metrics(grid.config.metrics, task):
                base = statistics.fmean(values[reference_arm].get(metric) or [math.nan])
                sign = -1.0 if metric in lower else 1.0
                per_metric.append([sign * (v - base) / base for v in arm_values.get(metric, [])])
            if not all(per_metric):
                break  # the arm lacks this task: no Δm
            gains.append([statistics.fmean(seed) for seed in zip(*per_metric, strict=True)])
        else:
            out[arm] = [100 * statistics.fmean(seed) for seed in zip(*gains, strict=True)]
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_tables(grid: Grid, console: Console) -> Path:
    """results.md, results.csv and a rich table of mean ± std per arm and metric (and Δm)."""
    values = summarise(grid)
    metrics = grid.config.metrics or sorted(
        {m for arm in values.values() for m in arm if m.count("/") == 1}
    )
    if gains := delta_m(grid, values):
        for arm, arm_gains in gains.items():
            values[arm][DELTA_M] = arm_gains
        metrics = [*metrics, DELTA_M]
    table = Table(title=f"{grid.config.name} (mean ± std over seeds)", title_justify="left")
    for column in ("arm", "seeds", *metrics):
        table.add_column(column, justify="left" if column == "arm" else "right")
    lines = [f"| arm | seeds | {' | '.join(metrics)} |", "|" + " --- |" * (len(metrics) + 2)]
    folder = grid.folder
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        names = ["delta_m_percent" if m == DELTA_M else m for m in metrics]
        writer.writerow(["arm", "seeds", *(f"{m} {s}" for m in names for s in ("mean", "std"))])
        for arm, arm_values in values.items():
            seeds = max((len(v) for v in arm_values.values()), default=0)
            cells = [mean_std(arm_values.get(metric, [])) for metric in metrics]
            text = ["—" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}" for mean, std in cells]
            table.add_row(arm, str(seeds), *text)
            lines.append(f"| {arm} | {seeds} | {' | '.join(text)} |")
            writer.writerow([arm, seeds, *(f"{x:.10g}" for cell in cells for x in cell)])
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    console.print(table)
    return folder / "results.md"


def curves(grid: Grid, metric: str) -> dict[str, list[tuple[int, float]]]:
    """arm → (step, mean over seeds) of ``metric`` at every validation of the runs."""
    out = {}
    for arm in grid.arms:
        by_step: dict[int, list[float]] = {}
        for seed in grid.config.seeds:
            log = grid.folder / arm / f"seed{seed}" / "metrics.jsonl"
            if not log.is_file():
                continue
            for record in read_log(log):
                if record.get("split") == "val" and metric in record:
                    by_step.setdefault(record["step"], []).append(record[metric])
        out[arm] = [(step, statistics.fmean(v)) for step, v in sorted(by_step.items())]
    return out


COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))


def plot(series: dict[str, list[tuple[int, float]]], title: str, path: Path) -> bool:
    """A small line chart (PNG): one polyline per arm, a tick and grid line at every step and
    at five values, the legend right of the frame; False if there is nothing to draw."""
    width, height, left, right, top, bottom = 800, 400, 70, 590, 50, 340
    points = [p for line in series.values() for p in line]
    if not points:
        return False
    steps = sorted({p[0] for p in points})
    x0, x1 = steps[0], max(steps[-1], steps[0] + 1)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    y1 = y1 if y1 > y0 else y0 + 1e-6
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def xy(step: float, value: float) -> tuple[float, float]:
        return (
            left + (step - x0) / (x1 - x0) * (right - left),
            bottom - (value - y0) / (y1 - y0) * (bottom - top),
        )

    for step in steps:
        x = xy(step, y0)[0]
        draw.line([x, top, x, bottom], fill=(225, 225, 225))
        draw.text((x - 12, bottom + 8), str(step), fill="black")
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = xy(x0, value)[1]
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((6, y - 6), f"{value:.4g}", fill="black")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((left, 18), title, fill="black")
    draw.text(((left + right) // 2 - 30, bottom + 26), "training step", fill="black")
    for index, (arm, line) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        if len(line) > 1:
            draw.line([xy(*p) for p in line], fill=colour, width=2)
        for p in line:
            cx, cy = xy(*p)
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        draw.line([right + 12, top + 7 + 16 * index, right + 30, top + 7 + 16 * index], colour, 3)
        draw.text((right + 36, top + 16 * index), arm, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return True


def write_plots(grid: Grid) -> list[Path]:
    paths = []
    for metric in grid.config.metrics:
        path = grid.folder / f"{metric.replace('/', '_')}.png"
        seeds = len(grid.config.seeds)
        title = f"{grid.config.name}: {metric} (validation, mean over {seeds} seeds)"
        if plot(curves(grid, metric), title, path):
            paths.append(path)
    return paths


def draw(task: Task, value: Tensor) -> Tensor | None:
    """``task.render`` of a decoded value with its ``outline`` painted white."""
    picture = task.render(value)
    outline = task.outline(value)
    if picture is not None and outline is not None:
        picture[:, outline] = 255
    return picture


@torch.no_grad()
def write_pictures(grid: Grid) -> list[Path]:
    """``<task>_examples.png`` per drawable task: the first validation images | ground truth |
    the prediction of each pictured arm's first seed, boundaries drawn in white."""
    from dense.assemble import load_trained
    from dense.data import build_dataset

    seed = grid.config.seeds[0]
    runs = {arm: grid.folder / arm / f"seed{seed}" / "last.pt" for arm in grid.config.pictures}
    runs = runs or {arm: grid.folder / arm / f"seed{seed}" / "last.pt" for arm in grid.arms}
    trained = {arm: load_trained(path) for arm, path in runs.items() if path.is_file()}
    if not trained:
        return []
    data = next(iter(trained.values())).config.data
    dataset = build_dataset(data, data.val_split)
    samples = [dataset[i] for i in range(min(grid.config.picture_samples, len(dataset)))]
    images = torch.stack([sample["image"] for sample in samples])
    outputs = {arm: run.model(images) for arm, run in trained.items()}
    scale = max(1, 256 // images.shape[-1])
    paths = []
    for name in dict.fromkeys(name for run in trained.values() for name in run.tasks):
        arms = [arm for arm, run in trained.items() if name in run.tasks]
        rows = []
        for i, sample in enumerate(samples):
            target = sample[trained[arms[0]].tasks[name].target_key]
            row = [to_uint8(sample["image"]), draw(trained[arms[0]].tasks[name], target)]
            for arm in arms:
                task = trained[arm].tasks[name]
                prediction = task.decode(outputs[arm][name][i : i + 1])[0]
                row.append(draw(task, task.align(prediction, target)))
            rows.append([enlarge(picture, scale) for picture in row if picture is not None])
        if len(rows[0]) < 3:  # the task draws nothing
            continue
        path = grid.folder / f"{name}_examples.png"
        save_png(caption_columns(image_grid(rows), ["image", "ground truth", *arms]), path)
        paths.append(path)
    return paths
