"""Training throughput on the CPU: what `dense train` costs over a plain PyTorch loop, where a
training step's time goes, what each speed-up buys, and whole runs of the default experiment.

1. Framework overhead: `dense train`'s loop (``Trainer.fit`` in a scratch folder, evaluation
   and checkpoints out of the way, logging and TensorBoard as configured) against a plain loop
   over the same model, task losses, optimizer, loader and batches, in the precision
   ``train.amp`` resolves to on this CPU and the config's memory format and AdamW kernel,
   without a sample cache (target: overhead ≤ 5 %).
   The two alternate, twice each; images/s are medians over windows of ``--window`` steps,
   the first window (loader start-up) left out.
2. Where a step goes: forward time of the encoder, decoder, heads and auxiliary networks
   (forward hooks), losses, backward, optimizer, and the data loader alone; then the
   heaviest operators by self time (torch.profiler).
3. Speed-ups, each as images/s ÷ the float32 plain loop from the loader measured in the same
   run (``PLAIN``: float32, NCHW, AdamW's loop kernel, one worker, no cache, no echo):
   batches rendered beforehand (what data costs), the ``data.cache`` sample cache filled
   beforehand, AdamW's fused kernel, bf16 autocast, channels-last memory, ``torch.compile``,
   data workers 0 and 2, all three speed-ups on rendered batches (the ceiling when data is
   free), and `dense train` itself with ``train.amp=off`` and ``bf16``, then with
   ``train.channels_last`` and ``optim.fused``, then with the samples made in the training
   process (``data.num_workers=0``) and data echoing (``data.echo`` 2 and 4); last, `dense
   train` as the config sets it (its cache, if any, starting empty: the first pass), and with
   the cache filled (later passes, or a grid's later arms of a seed).
4. Whole runs of the config's steps, fresh (an empty cache), evaluation and checkpoints moved
   to the end, images/s over all log windows: as first shipped (``PLAIN``, and for the
   synthetic rooms a new room for every sample) and as configured, alternating, twice each
   (means), then once as configured but with new rooms and no cache; each ÷ the first.

    python experiments/benchmarks/train_throughput.py [CONFIG.toml] [--steps N] [--sections 1234]
        [key=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor, nn

from dense import distributed
from dense.config import Config, load_config
from dense.data import to_device, train_loader
from dense.errors import run_script
from dense.rundir import LOG, read_log
from dense.trainer import Trainer, make_optimizer

# the baseline's settings (the default experiment as first shipped: float32, NCHW, AdamW's
# loop kernel, one loader worker, no sample cache or echo) and the plain-loop options of all
# three training speed-ups together
PLAIN = [
    "train.amp=off",
    "train.channels_last=false",
    "optim.fused=false",
    "data.num_workers=1",
    "data.cache=''",
    "data.echo=1",
]
ENDLESS_ROOMS = "data.options.train_length=10000"  # the synthetic rooms as first shipped
FAST = {"amp": True, "channels_last": True, "fused": True}


def scratch_config(config: Config, folder: str, steps: int, window: int) -> Config:
    """``config`` trained for ``steps`` in ``folder``, logging every ``window`` steps, with
    evaluation, checkpoints and the preview reduced to once, at the end."""
    config.run.out_dir = folder
    config.train.steps = steps
    config.train.log_every = window
    config.train.eval_every = config.train.checkpoint_every = steps + 1
    config.train.eval_batches = 1
    config.train.preview_samples = 0
    return config


class PlainLoop:
    """The same model, losses, optimizer and batches as ``Trainer``, in a bare PyTorch loop:
    forward, weighted sum of the task losses, backward, clipping, optimizer step."""

    def __init__(
        self,
        trainer: Trainer,
        amp: bool = False,
        channels_last: bool = False,
        fused: bool | None = None,
        compiled: bool = False,
    ) -> None:
        self.trainer = trainer
        self.model, self.tasks = trainer.model, trainer.tasks
        self.weights = {name: trainer.config.tasks[name].weight for name in self.tasks}
        self.optimizer = make_optimizer(self.model, trainer.objective.weighting, trainer.config)
        if fused is not None:  # the same AdamW with its fused kernel on or off
            groups = [
                {k: v for k, v in g.items() if k not in ("fused", "foreach")}
                for g in self.optimizer.param_groups
            ]
            self.optimizer = torch.optim.AdamW(groups, fused=fused)
        self.amp, self.channels_last = amp, channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.forward = torch.compile(self.model) if compiled else self.model

    def step(self, batch: dict[str, Tensor]) -> None:
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.forward(image, batch)
        total = sum(
            self.weights[name] * sum(task.loss(outputs[name], batch, outputs).values())
            for name, task in self.tasks.items()
        )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip = self.trainer.config.optim.grad_clip
        if clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()


def loader_batches(trainer: Trainer) -> Iterator[dict[str, Tensor]]:
    loader = train_loader(
        trainer.train_set, trainer.config.data, trainer.config.run.seed, 0, trainer.context
    )
    for batch in loader:
        yield to_device(batch, trainer.device)


def window_rates(step: Callable[[], int], steps: int, window: int) -> list[float]:
    """images/s of each ``window`` consecutive calls of ``step`` (which returns its images)."""
    rates = []
    for _ in range(steps // window):
        started, images = time.perf_counter(), 0
        for _ in range(window):
            images += step()
        rates.append(images / (time.perf_counter() - started))
    return rates


def plain_rates(
    trainer: Trainer,
    steps: int,
    window: int,
    batches: list[dict[str, Tensor]] | None = None,
    **options: bool,
) -> list[float]:
    """Window rates of the plain loop, the first window dropped; from the loader unless
    ``batches`` (rendered beforehand, cycled) are given."""
    loop = PlainLoop(trainer, **options)
    source = iter(loader_batches(trainer)) if batches is None else cycle(batches)

    def step() -> int:
        batch = next(source)
        loop.step(batch)
        return batch["image"].shape[0]

    return window_rates(step, steps + window, window)[1:]


def cycle(batches: list[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    while True:
        yield from batches


def logged_rates(config_path: str, overrides: list[str], steps: int, window: int) -> list[float]:
    """The images/s that ``dense train`` logs for each window of a run of ``steps``."""
    with tempfile.TemporaryDirectory() as folder:
        config = scratch_config(load_config(config_path, overrides), folder, steps, window)
        trainer = Trainer(config, distributed.setup("cpu"), Console(quiet=True))
        trainer.prepare(resume=False, overwrite=False)
        trainer.fit()
        records = read_log(Path(folder) / config.run.name / LOG)
    return [r["images_per_s"] for r in records if r.get("split") == "train"]


def dense_rates(config_path: str, overrides: list[str], steps: int, window: int) -> list[float]:
    """Window rates of ``dense train``, the first window (loader start-up) dropped."""
    return logged_rates(config_path, overrides, steps + window, window)[1:]


def run_rate(config_path: str, overrides: list[str]) -> float:
    """images/s of a whole run of the config's steps: its images over the time of all its log
    windows (evaluation and checkpoints moved after the last)."""
    config = load_config(config_path, overrides)
    steps, window = config.train.steps, config.train.log_every
    return statistics.harmonic_mean(logged_rates(config_path, overrides, steps, window))


def fresh_cache(config: Config, scratch: str) -> list[str]:
    """The config's ``data.cache`` as a first run finds it: a folder cache moved to a new empty
    folder under ``scratch`` (nothing written where the config points); ``"memory"`` or none
    as they are (a run's memory starts empty)."""
    if config.data.cache in ("", "memory"):
        return []
    return [f"data.cache={tempfile.mkdtemp(prefix='cache-', dir=scratch)}"]


def build_trainer(config_path: str, overrides: list[str]) -> Trainer:
    """A Trainer for the plain loops (it only builds; nothing is written)."""
    config = load_config(config_path, overrides)
    return Trainer(config, distributed.setup("cpu"), Console(quiet=True))


def breakdown(trainer: Trainer, batches: list[dict[str, Tensor]]) -> dict[str, float]:
    """Mean seconds per step of each part of the plain loop on rendered batches."""
    loop = PlainLoop(trainer)
    model = loop.model
    parts: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    modules = {"encoder": model.encoder, "decoder": model.decoder}
    modules |= {f"head {name}": head for name, head in model.heads.items()}
    modules |= {f"auxiliary {name}": net for name, net in model.auxiliary.items()}
    handles = []
    for name, module in modules.items():
        handles.append(
            module.register_forward_pre_hook(
                lambda *_, n=name: starts.__setitem__(n, time.perf_counter())
            )
        )
        handles.append(
            module.register_forward_hook(
                lambda *_, n=name: parts.__setitem__(n, parts[n] + time.perf_counter() - starts[n])
            )
        )

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        parts[name] += time.perf_counter() - started

    loop.step(batches[0])  # warm-up
    parts.clear()
    for batch in batches:
        with timed("forward (all)"):
            outputs = model(batch["image"], batch)
        with timed("losses"):
            total = sum(
                loop.weights[name] * sum(task.loss(outputs[name], batch, outputs).values())
                for name, task in loop.tasks.items()
            )
        loop.optimizer.zero_grad(set_to_none=True)
        with timed("backward"):
            total.backward()
        with timed("optimizer"):
            loop.optimizer.step()
    for handle in handles:
        handle.remove()
    return {name: seconds / len(batches) for name, seconds in parts.items()}


def heaviest_operators(trainer: Trainer, batches: list[dict[str, Tensor]], count: int) -> list:
    loop = PlainLoop(trainer)
    loop.step(batches[0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for batch in batches:
            loop.step(batch)
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    return [(e.key, e.self_cpu_time_total / total) for e in ranked]


def loader_rate(trainer: Trainer, steps: int) -> float:
    """images/s the loader delivers with nothing else running."""
    source = iter(loader_batches(trainer))
    next(source)  # start-up
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += next(source)["image"].shape[0]
    return images / (time.perf_counter() - started)


def median(rates: list[float]) -> float:
    return statistics.median(rates)


def overhead(config_path: str, overrides: list[str], steps: int, window: int) -> None:
    config = load_config(config_path, overrides)
    amp = distributed.bf16_autocast(config.train.amp, torch.device("cpu"))
    print(f"\n1. framework overhead ({distributed.precision_name(amp)}, alternating, twice each)")
    plain, framework = [], []
    uncached = [*overrides, "data.cache=''"]
    for _ in range(2):
        trainer = build_trainer(config_path, uncached)
        nhwc = distributed.channels_last(config.train.channels_last, amp)
        plain += plain_rates(trainer, steps, window, amp=amp, channels_last=nhwc)
        framework += dense_rates(config_path, uncached, steps, window)
    base = median(plain)
    print(f"  plain PyTorch loop: {base:6.2f} images/s")
    ratio = median(framework) / base
    print(f"  dense train:        {median(framework):6.2f} images/s")
    print(f"  dense ÷ plain: {ratio:.3f} (overhead {1 - ratio:+.1%})")


def rendered_batches(config_path: str, overrides: list[str], count: int) -> list:
    """The first ``count`` float32 batches of the loader, made beforehand."""
    source = loader_batches(build_trainer(config_path, [*overrides, *PLAIN]))
    return [batch for batch, _ in zip(source, range(count), strict=False)]


def step_parts(config_path: str, overrides: list[str], steps: int) -> None:
    print("\n2. where a step goes (plain loop, rendered batches, float32)")
    float32 = [*overrides, *PLAIN]
    rendered = rendered_batches(config_path, overrides, steps // 2)
    parts = breakdown(build_trainer(config_path, float32), rendered)
    step_time = sum(parts[k] for k in ("forward (all)", "losses", "backward", "optimizer"))
    batch = rendered[0]["image"].shape[0]
    data = batch / loader_rate(build_trainer(config_path, float32), steps // 2)
    for name, seconds in [*parts.items(), ("data loader alone (per batch)", data)]:
        print(f"  {name:34s} {1000 * seconds:7.1f} ms  {seconds / step_time:6.1%} of a step")
    print("  heaviest operators (self time share):")
    for name, share in heaviest_operators(build_trainer(config_path, float32), rendered[:8], 12):
        print(f"    {name:40s} {share:6.1%}")


def speedups(config_path: str, overrides: list[str], steps: int, window: int, scratch: str) -> None:
    print("\n3. speed-ups against the float32 plain loop from the loader, same run")
    config = load_config(config_path, overrides)
    rendered = rendered_batches(config_path, overrides, steps // 2)
    cache = f"data.cache={tempfile.mkdtemp(prefix='filled-', dir=scratch)}"
    filling = loader_batches(build_trainer(config_path, [*overrides, cache]))
    for _ in itertools.islice(filling, steps + 2 * window):
        pass  # fills the cache with the batches the cached variant will read
    filling.close()  # stops its loader's worker
    fast = ["train.amp=bf16", "train.channels_last=true"]
    inline = [*fast, "optim.fused=true", "data.num_workers=0"]
    variants: list[tuple[str, list[str], dict | None]] = [
        # name, extra overrides, plain-loop options (None: `dense train` itself); bf16 last:
        # on some CPUs it is far slower than float32
        ("float32, from the loader (baseline)", [], {}),
        ("batches rendered beforehand", [], {"batches": rendered}),
        ("data.cache, filled beforehand", [cache], {}),
        ("AdamW's fused kernel", [], {"fused": True}),
        ("channels-last", [], {"channels_last": True}),
        ("torch.compile (inductor; compiling in the dropped window)", [], {"compiled": True}),
        ("data.num_workers=0", ["data.num_workers=0"], {}),
        ("data.num_workers=2", ["data.num_workers=2"], {}),
        ("dense train, train.amp=off", ["train.amp=off"], None),
        ("bf16 autocast", [], {"amp": True}),
        ("bf16 autocast + fused AdamW", [], {"amp": True, "fused": True}),
        ("bf16 + channels-last", [], {"amp": True, "channels_last": True}),
        (
            "bf16 + channels-last + fused, batches rendered beforehand",
            [],
            FAST | {"batches": rendered},
        ),
        ("dense train, train.amp=bf16", ["train.amp=bf16"], None),
        ("dense train, bf16 + channels-last", fast, None),
        ("dense train, bf16 + channels-last + fused AdamW", [*fast, "optim.fused=true"], None),
        ("dense train, bf16 + CL + fused, data.num_workers=0", inline, None),
        ("dense train, bf16 + CL + fused, workers 0, data.echo=2", [*inline, "data.echo=2"], None),
        ("dense train, bf16 + CL + fused, workers 0, data.echo=4", [*inline, "data.echo=4"], None),
    ]
    runs = [(name, [*overrides, *PLAIN, *extra], options) for name, extra, options in variants]
    runs += [  # the config's own settings, not PLAIN's
        (
            "dense train as configured (first pass)",
            [*overrides, *fresh_cache(config, scratch)],
            None,
        ),
        ("dense train as configured, samples from a filled cache", [*overrides, cache], None),
    ]
    baseline = None
    for name, extra, options in runs:
        amp = (options or {}).get("amp") or distributed.bf16_autocast(
            load_config(config_path, extra).train.amp, torch.device("cpu")
        )
        if amp and not distributed.native_bf16():
            print(f"  {name:48s} skipped: this CPU has no native bf16 kernels (see README)")
            continue
        if options is None:
            rates = dense_rates(config_path, extra, steps, window)
        else:
            rates = plain_rates(build_trainer(config_path, extra), steps, window, **options)
        rate = median(rates)
        baseline = baseline or rate
        print(f"  {name:48s} {rate:6.2f} images/s  {rate / baseline:5.2f}×")


def whole_runs(config_path: str, overrides: list[str], scratch: str) -> None:
    config = load_config(config_path, overrides)
    print(f"\n4. whole runs of {config.train.steps} steps, fresh (images over all log windows)")
    endless = [ENDLESS_ROOMS] if config.data.dataset == "synthetic" else []
    shipped, configured = "as first shipped (float32, 1 worker, new rooms)", "as configured"
    rates: dict[str, list[float]] = defaultdict(list)
    for _ in range(2):  # these two alternate, twice each
        rates[shipped].append(run_rate(config_path, [*overrides, *PLAIN, *endless]))
        fresh = [*overrides, *fresh_cache(config, scratch)]
        rates[configured].append(run_rate(config_path, fresh))
    rates["as configured, but new rooms and no cache (once)"].append(
        run_rate(config_path, [*overrides, "data.cache=''", *endless])
    )
    first = statistics.mean(rates[shipped])
    for name, values in rates.items():
        rate = statistics.mean(values)
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:48s} {rate:6.2f} images/s  {rate / first:5.2f}×  ({each})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="experiments/synthetic_joint.toml")
    parser.add_argument("--steps", type=int, default=40, help="measured steps per variant")
    parser.add_argument("--window", type=int, default=10, help="steps per timing window")
    parser.add_argument(
        "--sections", default="1234", help="which sections to run, e.g. 4 (default: all)"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    steps, window, overrides = args.steps, args.window, args.overrides
    config = load_config(args.config, overrides)
    batch, threads = config.data.batch_size, torch.get_num_threads()
    print(f"{args.config}: batch {batch}, {threads} threads, {config.data.num_workers} worker(s)")
    with tempfile.TemporaryDirectory(prefix="dense-bench-") as scratch:  # caches, removed after
        if "1" in args.sections:
            overhead(args.config, overrides, steps, window)
        if "2" in args.sections:
            step_parts(args.config, overrides, steps)
        if "3" in args.sections:
            speedups(args.config, overrides, steps, window, scratch)
        if "4" in args.sections:
            whole_runs(args.config, overrides, scratch)


if __name__ == "__main__":
    run_script(main)
