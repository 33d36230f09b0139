"""The training loop: one ``Trainer`` wires config, data, model, objective and run folder.

Resuming restores model, optimizer, scheduler, loss weighting, step and every RNG; with the
step-indexed sampler of :mod:`dense.data`, a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from dense import distributed
from dense.assemble import build_tasks, checkpoint_data
from dense.checkpoint import rng_state, set_rng_state
from dense.config import Config, to_toml
from dense.data import build_dataset, data_info, eval_loader, to_device, train_loader
from dense.errors import DenseError
from dense.evaluate import evaluate
from dense.metrics import flatten_metrics
from dense.model import build_model
from dense.objective import Objective
from dense.pictures import Column, aligned_predictions, save_comparison, task_column
from dense.progress import format_terms, metrics_table, training_progress
from dense.rundir import PICTURE, SUMMARY, RunDir, locked
from dense.runlog import RunLog
from dense.visualize import to_uint8


class TrainingError(DenseError):
    """Training cannot go on (for example, the loss stays non-finite)."""


@dataclass
class TrainResult:
    step: int
    metrics: dict[str, dict[str, float]]
    run_dir: Path


class Trainer:
    def __init__(self, config: Config, context: distributed.Context, console: Console) -> None:
        self.config = config
        self.context = context
        self.console = console
        self.device = context.device
        self.run_dir = config.run_dir
        torch.manual_seed(config.run.seed)

        self.train_set = build_dataset(
            config.data, config.data.train_split, augment=True, world_size=self.context.world_size
        )
        self.val_set = build_dataset(config.data, config.data.val_split)
        self.tasks = build_tasks(config, data_info(self.train_set))
        self.model = build_model(config.model, self.tasks).to(self.device)
        self.amp = distributed.bf16_autocast(config.train.amp, self.device)
        nhwc = distributed.channels_last(config.train.channels_last, self.amp)
        self.memory_format = torch.channels_last if nhwc else None
        if self.memory_format:
            self.model.to(memory_format=self.memory_format)
        self.objective = Objective(self.tasks, config).to(self.device)
        self.optimizer = make_optimizer(self.model, self.objective.weighting, config)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.step = 0
        self.folder = RunDir(self.run_dir, context.is_main)
        self.log = RunLog(self.run_dir, False, False)  # opened by prepare()
        self.network: nn.Module = self.model
        if context.world_size > 1:
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    # ------------------------------------------------------------------ run directory

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """Start fresh or continue from the last checkpoint (see :meth:`RunDir.start`)."""
        config = self.config.to_dict()
        state = self.folder.start(config, to_toml(config), resume, overwrite)
        if state is not None:
            self.restore(state)
            if self.context.is_main:
                self.console.print(f"resuming {self.folder.checkpoint} at step {self.step}")
        elif resume and self.context.is_main:
            self.console.print(f"nothing to resume in {self.run_dir}: starting a new run")
        main = self.context.is_main
        self.log = RunLog(self.run_dir, main, self.config.train.tensorboard, self.step)
        precision = distributed.precision_name(self.amp)
        self.log.record({"step": self.step, "split": "run", "precision": precision})
        if main:
            self.console.print(
                f"training in {precision} on {self.device} (train.amp={self.config.train.amp})"
            )
        distributed.barrier()

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.weighting.load_state_dict(state["weighting"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        set_rng_state(state["rng"])

    def save(self) -> None:
        """Checkpoint on rank 0; weights that are no longer finite are never written."""
        weighting = self.objective.weighting
        state = [*self.model.state_dict().values(), *weighting.state_dict().values()]
        if not all_finite(extremes(state)):
            raise TrainingError(
                f"the model's weights or statistics stopped being finite at step {self.step}; "
                f"training stopped ({self.folder.last_good()}). Lower optim.lr or check the data"
            )
        if not self.context.is_main:
            return
        self.folder.save(
            {
                "model": self.model.state_dict(),
                "weighting": weighting.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "rng": rng_state(),
                "config": self.config.to_dict(),
                **checkpoint_data(self.train_set),
            }
        )

    # ------------------------------------------------------------------------ training

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float] | None:
        """One optimisation step; None when it was skipped for a non-finite loss or gradient."""
        image = batch["image"]
        if self.memory_format:
            image = image.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.network(image, batch)
        loss = self.objective(outputs, batch, self.step)
        total = loss.total
        self.optimizer.zero_grad(set_to_none=True)
        if not all_finite(total):
            return None
        total.backward()
        clip = self.config.optim.grad_clip
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip if clip > 0 else math.inf)
        if not all_finite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        self.scheduler.step()
        values = {"loss": total.item(), **{k: v.item() for k, v in loss.terms.items()}}
        values.update({f"weight/{name}": w for name, w in loss.weights.items()})
        return values

    def fit(self) -> TrainResult:
        config = self.config.train
        main = self.context.is_main
        interactive = self.console.is_terminal
        loader = train_loader(
            self.train_set, self.config.data, self.config.run.seed, self.step, self.context
        )
        self.network.train()
        if main and self.amp and self.device.type == "cpu" and not distributed.native_bf16():
            self.console.print(
                "[yellow]warning:[/] this CPU has no native bf16 kernels (oneDNN reports none), "
                "so bf16 autocast runs PyTorch's reference convolutions, about 19× slower than "
                "float32 on such a CPU: use train.amp=off"
            )
        bad_steps = 0
        window: list[dict[str, float]] = []
        started, images = time.perf_counter(), 0
        metrics: dict[str, dict[str, float]] = {}
        with training_progress(self.console, enabled=main and interactive) as progress:
            bar = progress.add_task(
                self.config.run.name, total=config.steps, completed=self.step, status=""
            )
            batches = iter(loader)
            while self.step < config.steps:
                batch = to_device(next(batches), self.device)
                values = self.train_step(batch)
                if values is None:
                    bad_steps += 1
                    self.warn_bad_step(bad_steps)
                    continue
                bad_steps = 0
                self.step += 1
                images += batch["image"].shape[0] * self.context.world_size
                window.append(values)
                if self.step % config.log_every == 0 or self.step == config.steps:
                    rate = images / max(time.perf_counter() - started, 1e-9)
                    record = mean_record(window) | {"lr": self.scheduler.get_last_lr()[0]}
                    self.log.record(
                        {"step": self.step, "split": "train", **record, "images_per_s": rate}
                    )
                    status = format_terms(
                        {k: v for k, v in record.items() if "/" in k and "weight/" not in k}
                    )
                    progress.update(bar, status=f"{status}  {rate:.1f} img/s")
                    if main and not interactive:
                        self.console.print(f"step {self.step}/{config.steps}  {status}")
                    window, started, images = [], time.perf_counter(), 0
                progress.update(bar, completed=self.step)
                if self.step % config.eval_every == 0 and self.step < config.steps:
                    metrics = self.run_evaluation()
                if self.step % config.checkpoint_every == 0:
                    self.save()
        metrics = self.run_evaluation()
        self.save()
        if main:
            (self.run_dir / SUMMARY).write_text(
                json.dumps({"step": self.step, **metrics}, indent=2)
            )
            self.preview()
            self.log.picture("predictions", self.run_dir / PICTURE, self.step)
        self.log.close()
        return TrainResult(self.step, metrics, self.run_dir)

    def warn_bad_step(self, count: int) -> None:
        limit = self.config.train.max_bad_steps
        if self.context.is_main:
            self.console.print(
                f"[yellow]warning:[/] non-finite loss or gradient at step {self.step + 1}: "
                f"step skipped ({count}/{limit} in a row)"
            )
        if count >= limit:
            raise TrainingError(
                f"the loss was not finite for {limit} steps in a row at step {self.step + 1}; "
                f"training stopped ({self.folder.last_good()}). Lower optim.lr or check the data"
            )

    def run_evaluation(self) -> dict[str, dict[str, float]]:
        distributed.broadcast_buffers(self.model)
        loader = eval_loader(
            self.val_set, self.config.data, self.context, self.config.train.eval_batches
        )
        console = self.console if self.context.is_main and self.console.is_terminal else None
        metrics = evaluate(self.model, self.tasks, loader, self.device, self.amp, console)
        self.log.record({"step": self.step, "split": "val", **flatten_metrics(metrics)})
        if self.context.is_main:
            self.console.print(metrics_table(metrics, f"validation at step {self.step}"))
        return metrics

    @torch.no_grad()
    def preview(self) -> None:
        """predictions.png: per validation sample, the image, then target | prediction of
        every drawable task, with titles and colour keys."""
        count = min(self.config.train.preview_samples, len(self.val_set))
        if count == 0:
            return
        samples = [self.val_set[i] for i in range(count)]
        images = torch.stack([s["image"] for s in samples]).to(self.device)
        self.model.eval()
        outputs = self.model(images)
        columns = [Column("image", [to_uint8(s["image"]) for s in samples])]
        for name, task in self.tasks.items():
            targets = [s[task.target_key] for s in samples]
            predictions = aligned_predictions(task, outputs[name], targets)
            for title, values in (
                (f"{name}: target", targets),
                (f"{name}: prediction", predictions),
            ):
                if column := task_column(title, task, values):
                    columns.append(column)
        save_comparison(self.run_dir / PICTURE, columns)


# ---------------------------------------------------------------------------- helpers


def make_optimizer(model: nn.Module, weighting: nn.Module, config: Config) -> torch.optim.AdamW:
    """AdamW (fused kernel if ``optim.fused``); no weight decay on biases, norm layers or
    loss-weighting parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    no_decay += list(weighting.parameters())
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr, fused=config.optim.fused or None)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: Config
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine or poly decay to zero at ``train.steps`` (or constant)."""
    warmup, total = config.optim.warmup_steps, config.train.steps
    schedule, power = config.optim.schedule, config.optim.poly_power

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "poly":
            return (1 - progress) ** power
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def all_finite(value: Tensor) -> bool:
    """True when ``value`` is finite on every process (so all ranks skip a step together)."""
    flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0])
    distributed.all_reduce_sum(flag)
    return flag.item() == 0


def extremes(tensors: list[Tensor]) -> Tensor:
    """The largest magnitude of each floating-point tensor: finite when every entry is."""
    return torch.stack(
        [t.detach().abs().amax().float() for t in tensors if t.is_floating_point() and t.numel()]
    )


def mean_record(window: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(v[key] for v in window) / len(window) for key in window[0]}


def train(
    config: Config, resume: bool = False, overwrite: bool = False, console: Console | None = None
) -> TrainResult:
    """Train ``config`` (under torchrun: distributed). The CLI's ``dense train``."""
    context = distributed.setup(config.run.device)
    console = console or Console()
    try:
        trainer = Trainer(config, context, console)
        with locked(config.run_dir) if context.is_main else contextlib.nullcontext():
            trainer.prepare(resume, overwrite)
            return trainer.fit()
    finally:
        distributed.teardown()
