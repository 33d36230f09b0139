"""Run directories: one training process at a time, and only the run's own files deleted."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dense.checkpoint import temporary_path
from dense.errors import DenseError

CHECKPOINT = "last.pt"
LOG = "metrics.jsonl"
LOCK = ".lock"
# everything a training run writes into its directory; --overwrite deletes these and no more
RUN_FILES = ("config.toml", CHECKPOINT, LOG, "metrics.json", "predictions.png")


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
    return (folder / "config.toml").is_file() or (folder / CHECKPOINT).is_file()


def clear_run(run_dir: Path) -> None:
    """Delete the run's own files (and a checkpoint write cut short); nothing else there."""
    if not is_run_dir(run_dir):
        return
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    temporary_path(run_dir / CHECKPOINT).unlink(missing_ok=True)
