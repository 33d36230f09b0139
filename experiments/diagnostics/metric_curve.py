"""Draw one validation metric against the training step for several runs, with constant
baselines as horizontal lines (for the README's learning curves).

    python experiments/diagnostics/metric_curve.py OUT.png METRIC LABEL=RUN_DIR ... \
        [--baseline LABEL=VALUE ...] [--title TEXT]

METRIC is a key of the run's metrics.jsonl, such as selfsup_depth/abs_rel.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "val" and metric in record:
            steps.append(record["step"])
            values.append(record[metric])
    return steps, values


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
        steps, values = curve(Path(run_dir), args.metric)
        axes.plot(steps, values, marker="o", label=label)
    for (label, value), style in zip(args.baseline, ["--", ":", "-."] * 4, strict=False):
        axes.axhline(float(value), linestyle=style, color="grey", label=label)
    axes.set_xlabel("training step")
    axes.set_ylabel(args.metric)
    axes.set_title(args.title or args.metric)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out)


if __name__ == "__main__":
    main()
