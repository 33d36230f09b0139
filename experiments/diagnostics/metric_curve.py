"""Draw one validation metric against the training step for several runs, with constant
baselines as horizontal lines (for the README's learning curves).

    python experiments/diagnostics/metric_curve.py OUT.png METRIC LABEL=RUN_DIR ... \
        [--baseline LABEL=VALUE ...] [--title TEXT]

METRIC is a key of the runs' metrics.jsonl, such as selfsup_depth/abs_rel, or several
separated by commas (each run draws the first one its log has: selfsup_depth/abs_rel,depth/abs_rel
puts self-supervised and supervised depth on one plot).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dense.errors import run_script


def curve(run_dir: Path, metrics: list[str]) -> tuple[list[int], list[float]]:
    """Validation steps and values of the first of ``metrics`` that the run logged."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("split") == "val"]
    metric = next((m for m in metrics if any(m in r for r in records)), metrics[0])
    pairs = [(r["step"], r[metric]) for r in records if metric in r]
    return [step for step, _ in pairs], [value for _, value in pairs]


def labelled(text: str) -> tuple[str, str]:
    label, _, value = text.partition("=")
    return label, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("metric")
    parser.add_argument("runs", nargs="+", type=labelled, help="LABEL=RUN_DIR")
    parser.add_argument("--baseline", nargs="*", type=labelled, default=[], help="LABEL=VALUE")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, run_dir in args.runs:
        steps, values = curve(Path(run_dir), args.metric.split(","))
        axes.plot(steps, values, marker="o", label=label)
    for (label, value), style in zip(args.baseline, ["--", ":", "-."] * 4, strict=False):
        axes.axhline(float(value), linestyle=style, color="grey", label=label)
    axes.set_xlabel("training step")
    name = args.metric.split(",")[0]
    axes.set_ylabel(name if "," not in args.metric else name.rpartition("/")[2])
    axes.set_title(args.title or name)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out)


if __name__ == "__main__":
    run_script(main)
