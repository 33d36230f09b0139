"""Grid tables: each arm's mean ± std over seeds, its paired difference from the baseline arm
with a 95 % confidence interval, and Δm against single-task reference arms."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dense.experiment.convergence import convergence_lines
from dense.experiment.grid import Grid, read_summary, task_metrics
from dense.experiment.markdown import markdown_table
from dense.metrics import flatten_metrics
from dense.rundir import CHECKPOINT, SUMMARY

DELTA_M = "Δm (%)"  # its table column; "delta_m_percent" in the CSV
# two-sided 95 % quantiles of Student's t for 1…30 degrees of freedom (beyond: the normal's)
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def summarise(grid: Grid) -> dict[str, dict[str, dict[int, float]]]:
    """arm → metric → seed → the finished run's final value."""
    values: dict[str, dict[str, dict[int, float]]] = {}
    for arm in grid.arms:
        values[arm] = {}
        for seed in grid.config.seeds:
            summary = grid.run_dir(arm, seed) / SUMMARY
            if not summary.is_file():
                continue
            for name, value in flatten_metrics(read_summary(summary)).items():
                values[arm].setdefault(name, {})[seed] = value
    return values


@dataclass
class Paired:
    """The mean over seeds of (arm − baseline), with its 95 % t-interval."""

    mean: float
    low: float
    high: float
    seeds: int

    @property
    def significant(self) -> bool:
        return self.seeds > 1 and not self.low <= 0 <= self.high


def paired_difference(arm: dict[int, float], baseline: dict[int, float]) -> Paired | None:
    """Over the seeds both have (the same seed: same initialisation and batches)."""
    differences = [arm[seed] - baseline[seed] for seed in arm if seed in baseline]
    if not differences:
        return None
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return Paired(mean, -math.inf, math.inf, 1)
    df = len(differences) - 1
    t = T_975[df - 1] if df <= len(T_975) else 1.960
    half = t * statistics.stdev(differences) / math.sqrt(len(differences))
    return Paired(mean, mean - half, mean + half, len(differences))


def lower_is_better(grid: Grid) -> set[str]:
    """The "task/metric" names of the reference tasks where lower is better, as their metric
    classes declare (read from the reference arms' first finished run)."""
    from dense.assemble import load_trained

    lower = set()
    for task, arm in grid.config.reference.items():
        runs = [grid.run_dir(arm, seed) / CHECKPOINT for seed in grid.config.seeds]
        if found := [run for run in runs if run.is_file()]:
            metric = load_trained(found[0]).tasks[task].metric()
            lower |= {f"{task}/{name}" for name in metric.lower_is_better}
    return lower


def delta_m(grid: Grid, values: dict[str, dict[str, dict[int, float]]]) -> dict[str, dict]:
    """arm → seed → Δm (%): the mean over tasks of the mean relative gain over the task's
    single-task reference arm (mean over its seeds) on the task's grid metrics, signed so that
    positive is better (Maninis et al. 2019; Vandenhende et al. 2021)."""
    reference = grid.config.reference
    if not reference:
        return {}
    lower = lower_is_better(grid)
    out = {}
    for arm, arm_values in values.items():
        gains: list[dict[int, float]] = []  # per task: seed → gain
        for task, reference_arm in reference.items():
            per_metric = []
            for metric in task_metrics(grid.config.metrics, task):
                base = statistics.fmean(
                    values[reference_arm].get(metric, {}).values() or [math.nan]
                )
                sign = -1.0 if metric in lower else 1.0
                seeds = arm_values.get(metric, {})
                per_metric.append({s: sign * (v - base) / base for s, v in seeds.items()})
            if not all(per_metric):
                break  # the arm lacks this task: no Δm
            seeds = sorted(set.intersection(*(set(m) for m in per_metric)))
            gains.append({s: statistics.fmean(m[s] for m in per_metric) for s in seeds})
        else:
            seeds = sorted(set.intersection(*(set(g) for g in gains)))
            out[arm] = {s: 100 * statistics.fmean(g[s] for g in gains) for s in seeds}
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_paired(paired: Paired | None) -> str:
    if paired is None:
        return "—"
    if paired.seeds < 2:
        return f"{paired.mean:+.4f} (1 seed)"
    mark = " *" if paired.significant else ""
    return f"{paired.mean:+.4f} [{paired.low:+.4f}, {paired.high:+.4f}]{mark}"


def write_tables(grid: Grid, console: Console) -> Path:
    """results.md, results.csv and a rich table: mean ± std per arm and metric (and Δm), then,
    with a baseline arm, each arm's paired difference from it with its 95 % interval, then
    (results.md) each metric's change over the last 20 % of training."""
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
    baseline = grid.config.baseline
    with (folder / "results.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        names = ["delta_m_percent" if m == DELTA_M else m for m in metrics]
        header = [f"{m} {s}" for m in names for s in ("mean", "std")]
        if baseline:
            header += [f"{m} {s}" for m in names for s in ("paired_diff", "ci_low", "ci_high")]
        writer.writerow(["arm", "seeds", *header])
        for arm, arm_values in values.items():
            seeds = max((len(v) for v in arm_values.values()), default=0)
            cells = [mean_std(list(arm_values.get(metric, {}).values())) for metric in metrics]
            text = ["—" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}" for mean, std in cells]
            table.add_row(arm, str(seeds), *text)
            lines.append(f"| {arm} | {seeds} | {' | '.join(text)} |")
            row = [arm, seeds, *(f"{x:.10g}" for cell in cells for x in cell)]
            if baseline:
                for metric in metrics:
                    paired = paired_difference(
                        arm_values.get(metric, {}), values[baseline].get(metric, {})
                    )
                    bounds = (paired.mean, paired.low, paired.high) if paired else ()
                    row += [f"{x:.10g}" for x in bounds] or ["", "", ""]
            writer.writerow(row)
    if baseline:
        lines += paired_lines(grid, values, metrics)
    lines += convergence_lines(grid, [m for m in metrics if m != DELTA_M])
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    console.print(table)
    return folder / "results.md"


def paired_lines(grid: Grid, values: dict, metrics: list[str]) -> list[str]:
    """The markdown table of paired differences from the baseline arm."""
    baseline = grid.config.baseline
    caption = (
        f"Paired difference from `{baseline}` (same seed = same initialisation and batches): "
        "mean over seeds [95 % t-interval]; * where the interval excludes 0."
    )
    rows = []
    for arm, arm_values in values.items():
        if arm != baseline:
            base = values[baseline]
            cells = [
                format_paired(paired_difference(arm_values.get(m, {}), base.get(m, {})))
                for m in metrics
            ]
            rows.append([arm, *cells])
    return markdown_table(caption, ["arm", *metrics], rows)
