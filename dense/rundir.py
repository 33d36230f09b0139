"""Run directories: where a training run keeps its config, checkpoint and log; one training
process at a time; resuming checks that the run is the same; only the run's own files are
ever deleted."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dense.checkpoint import load_checkpoint, save_checkpoint, temporary_path
from dense.config import config_from_dict, with_former_defaults
from dense.errors import DenseError

CONFIG = "config.toml"  # the resolved config
CHECKPOINT = "last.pt"
LOG = "metrics.jsonl"
SUMMARY = "metrics.json"  # the final evaluation
PICTURE = "predictions.png"
LOCK = ".lock"
# everything a training run writes into its directory; --overwrite deletes these and no more
RUN_FILES = (CONFIG, CHECKPOINT, LOG, SUMMARY, PICTURE)
TENSORBOARD = "tensorboard"  # a folder of event files, also the run's own
# config sections a resumed run may not change: they define the model and what it learns
FROZEN_ON_RESUME = ("model", "tasks", "data.dataset", "weighting.method")
RESUME_KEYS = ("config", "model", "weighting", "optimizer", "scheduler", "step", "rng")


class RunDir:
    """One run's folder as training sees it. Only the main process writes."""

    def __init__(self, path: Path, is_main: bool = True) -> None:
        self.path = path
        self.is_main = is_main
        self.checkpoint = path / CHECKPOINT

    def start(self, config: dict, config_text: str, resume: bool, overwrite: bool) -> dict | None:
        """Begin the run: the checkpoint's state when resuming one (after checking that
        ``config`` may continue it), else None after clearing the folder (``--overwrite``, or
        a run that died before its first checkpoint) and writing ``config_text``.
        Refuses to silently overwrite a run."""
        if self.is_main:
            temporary_path(self.checkpoint).unlink(missing_ok=True)  # a write cut short
        if self.checkpoint.exists() and not (resume or overwrite):
            raise DenseError(
                f"{self.path} already holds a run: pass --resume to continue it, "
                "--overwrite to start again, or choose another run.name"
            )
        if resume and self.checkpoint.exists():
            state = load_checkpoint(self.checkpoint, RESUME_KEYS)
            check_resumable(saved_as_today(state["config"]), config, self.checkpoint)
            if self.is_main:
                truncate_log(self.path / LOG, state["step"])
            return state
        if self.is_main:
            clear_run(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / CONFIG).write_text(config_text)
        return None

    def save(self, state: dict) -> None:
        if self.is_main:
            save_checkpoint(self.checkpoint, state)

    def last_good(self) -> str:
        """Where training can be picked up again, for error messages."""
        if self.checkpoint.exists():
            return f"the last good checkpoint is {self.checkpoint}"
        return "no checkpoint yet"


def saved_as_today(saved: dict) -> dict:
    """A checkpoint's config as today's config reads it (options added since at their
    defaults, changed defaults at their former values); as saved if today's config refuses it
    (the comparison then names what differs)."""
    try:
        return config_from_dict(with_former_defaults(saved)).to_dict()
    except DenseError:
        return saved


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    for key in FROZEN_ON_RESUME:
        a, b = saved, current
        for part in key.split("."):
            a, b = a.get(part), b.get(part)
        if a != b:
            raise DenseError(
                f"cannot resume {path}: its '{key}' differs from the config's "
                "(only training length, schedule, evaluation and logging may change)"
            )


def truncate_log(path: Path, step: int) -> None:
    """Drop log records written after ``step`` by a run that died before its next checkpoint."""
    if not path.exists():
        return
    kept = [r for r in read_log(path) if isinstance(r.get("step"), int) and r["step"] <= step]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept))


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Create ``run_dir`` and hold an advisory lock on it for the block (the system drops it
    when the process ends, however it ends). A second process is refused, naming the holder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DenseError(
                f"{run_dir} is in use by {holder}: wait for it to finish or choose another run.name"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield


def read_log(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line cut short (by a kill) is skipped."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def is_run_dir(folder: Path) -> bool:
    """True when ``folder`` holds a training run's config or checkpoint."""
    return (folder / CONFIG).is_file() or (folder / CHECKPOINT).is_file()


def clear_run(run_dir: Path) -> None:
    """Delete the run's own files (and a checkpoint write cut short); nothing else there."""
    if not is_run_dir(run_dir):
        return
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)
    temporary_path(run_dir / CHECKPOINT).unlink(missing_ok=True)


def run_precision(run_dir: Path) -> str:
    """The precision a run last trained in, from its log's ``"split": "run"`` record: "bf16" or
    "float32" (runs logged before that record existed trained in float32 on the CPU)."""
    log = run_dir / LOG
    records = read_log(log) if log.is_file() else []
    starts = [r for r in records if r.get("split") == "run"]
    return starts[-1].get("precision", "float32") if starts else "float32"
