"""How hard does each loss term push? For one training batch of a config: every term of the
objective, its value, and the norm of its gradient on its task's full-resolution prediction,
as a multiple of the largest such gradient among that task's other terms. A structure term
whose gradient is many times its task's main loss's dominates training, whatever its value.

    python experiments/diagnostics/structure_gradients.py CONFIG.toml [--checkpoint last.pt]
        [key=value ...]

Without ``--checkpoint`` the model is the config's untrained one; with it, its weights are
that run's (which must have the same model).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from rich.console import Console

from dense import distributed
from dense.checkpoint import load_checkpoint
from dense.config import load_config
from dense.data import to_device, train_loader
from dense.errors import run_script
from dense.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--checkpoint", help="a run's last.pt to take the weights from")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    config = load_config(args.config, [*args.overrides, "data.num_workers=0"])
    config.run.out_dir = tempfile.mkdtemp(prefix="dense-gradients-")  # nothing is written
    trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))
    if args.checkpoint:
        trainer.model.load_state_dict(load_checkpoint(args.checkpoint, ("model",))["model"])
    trainer.model.train()
    loader = train_loader(trainer.train_set, config.data, config.run.seed, 0, trainer.context)
    batch = to_device(next(iter(loader)), trainer.device)
    outputs = trainer.model(batch["image"], batch)
    loss = trainer.objective(outputs, batch, step=config.train.steps)  # every term switched on
    print(f"{args.config} {' '.join(args.overrides)}")
    print(f"weights: {args.checkpoint or 'untrained'}; one batch of {len(batch['image'])}")
    for task in trainer.tasks:
        prediction = outputs.predictions[task]
        full = prediction[0] if isinstance(prediction, list) else prediction
        norms = {}
        for name, value in loss.terms.items():
            if name.startswith(f"{task}/") and value.requires_grad:
                (gradient,) = torch.autograd.grad(value, full, retain_graph=True, allow_unused=True)
                norms[name] = (
                    float(value.detach()),
                    0.0 if gradient is None else float(gradient.norm()),
                )
        for name, (value, norm) in norms.items():
            others = max((n for k, (_, n) in norms.items() if k != name), default=0.0)
            ratio = f"{norm / others:8.2f}×" if others else "        —"
            print(f"  {name:32s} value {value:9.4f}  |gradient| {norm:9.2e}  {ratio}")


if __name__ == "__main__":
    run_script(main)
