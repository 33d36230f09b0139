"""Has a grid converged? Each arm's change in every grid metric over the last 20 % of its
steps, read from the finished runs' validation logs: under 1 % counts as converged."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dense.experiment.grid import Grid
from dense.experiment.markdown import markdown_table
from dense.rundir import SUMMARY

LATE_FRACTION = 0.2  # the part of the budget a converged metric must barely move in
CONVERGED = 0.01  # the largest relative move that still counts as converged


@dataclass
class LateChange:
    """The seeds' mean of a metric at the final step against theirs at ``start``."""

    start: int  # the last validation at or before (1 − LATE_FRACTION) × the budget
    end: int  # the final step
    relative: float  # (mean at end − mean at start) / |mean at start|

    @property
    def converged(self) -> bool:
        return abs(self.relative) < CONVERGED


def late_change(runs: list[dict[int, float]], steps: int) -> LateChange | None:
    """``runs``: each seed's validation curve (step → value) under a budget of ``steps``.
    Compares the runs that reached the end at the last step at or before the cut that all of
    them validated; None when no run reached the end or they share no such step."""
    done = [run for run in runs if steps in run]
    cut = (1 - LATE_FRACTION) * steps
    shared = set.intersection(*(set(run) for run in done)) if done else set()
    start = max((s for s in shared if s <= cut), default=None)
    if start is None:
        return None
    before = statistics.fmean(run[start] for run in done)
    after = statistics.fmean(run[steps] for run in done)
    if before == 0:
        return LateChange(start, steps, 0.0 if after == 0 else math.inf)
    return LateChange(start, steps, (after - before) / abs(before))


def late_changes(grid: Grid, metrics: list[str]) -> dict[str, dict[str, LateChange]]:
    """arm → metric → its late change over the arm's finished seeds that logged the metric
    (arms without a finished seed: none)."""
    out = {}
    for arm in grid.arms:
        seeds = [s for s in grid.config.seeds if (grid.run_dir(arm, s) / SUMMARY).is_file()]
        if not seeds:
            continue
        steps = grid.run_config(arm, seeds[0]).train.steps
        changes = {}
        for metric in metrics:
            runs = [grid.validation_curve(arm, seed, metric) for seed in seeds]
            if change := late_change([run for run in runs if run], steps):
                changes[metric] = change
        if changes:
            out[arm] = changes
    return out


def convergence_lines(grid: Grid, metrics: list[str]) -> list[str]:
    """The markdown table of late changes, ✓ where a metric counts as converged."""
    changes = late_changes(grid, metrics)
    if not changes:
        return []
    caption = (
        f"Change in the last {LATE_FRACTION:.0%} of training: the seeds' mean at the final step "
        f"against their mean at the last validation at or before {1 - LATE_FRACTION:.0%} of "
        "the steps (column `steps`: earlier where validations are sparser, a stricter test "
        f"for a curve that keeps its direction), relative; ✓ where under {CONVERGED:.0%} "
        "(converged)."
    )
    rows = []
    for arm, arm_changes in changes.items():
        first = next(iter(arm_changes.values()))
        cells = [
            f"{c.relative:+.1%}{' ✓' if c.converged else ''}" if (c := arm_changes.get(m)) else "—"
            for m in metrics
        ]
        rows.append([arm, f"{first.start} → {first.end}", *cells])
    return markdown_table(caption, ["arm", "steps", *metrics], rows)
