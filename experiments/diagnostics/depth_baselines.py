"""The baselines a learned depth must beat, on a config's evaluation split.

- untrained: the config's model before any step (its depth head starts at ``init_depth``);
- constant: one depth for every pixel, median-scaled like a monocular prediction (with median
  scaling every constant scores the same).

    python experiments/diagnostics/depth_baselines.py CONFIG.toml [key=value ...]
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console

from dense import distributed
from dense.config import load_config
from dense.data import eval_loader
from dense.errors import run_script
from dense.evaluate import evaluate
from dense.metrics import DepthMetrics
from dense.trainer import Trainer


def main() -> None:
    config = load_config(sys.argv[1], sys.argv[2:])
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))  # writes nothing
    loader = eval_loader(trainer.val_set, config.data, trainer.context, config.train.eval_batches)
    untrained = evaluate(trainer.model, trainer.tasks, loader, trainer.device)
    for name, task in trainer.tasks.items():
        if not hasattr(task.config, "median_scaling"):
            continue
        constant = DepthMetrics(task.config.eval_min_depth, task.config.eval_max_depth, True)
        for batch in loader:
            constant.update(torch.ones_like(batch["depth"]), batch["depth"])
        for label, values in (("untrained", untrained[name]), ("constant", constant.compute())):
            print(
                f"{name} {label}: abs rel {values['abs_rel']:.4f}, rmse {values['rmse']:.4f}, "
                f"δ1 {values['delta1']:.4f}"
            )


if __name__ == "__main__":
    run_script(main)
