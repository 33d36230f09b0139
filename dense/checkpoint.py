"""Checkpoints: written atomically (temporary file, fsync, rename), read with clear errors."""

from __future__ import annotations

import errno
import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dense.errors import DenseError

FORMAT = "dense-checkpoint-v1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that ``path`` holds either the old or the new file, never half of one.

    Ctrl-C during the write is held back until the file is complete; a failed write (disk
    full, say) removes the temporary file and leaves the previous checkpoint as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    with deferred_interrupt():
        try:
            with open(temporary, "wb") as handle:
                torch.save({"format": FORMAT, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except (OSError, RuntimeError) as error:
            temporary.unlink(missing_ok=True)
            reason = "the disk is full" if disk_full(error) else str(error).splitlines()[0]
            raise DenseError(
                f"could not write checkpoint {path}: {reason}; the previous checkpoint is kept"
            ) from None


def temporary_path(path: Path) -> Path:
    """Where :func:`save_checkpoint` writes before renaming (a stale one is safe to delete)."""
    return path.with_name(f".{path.name}.tmp")


def disk_full(error: BaseException) -> bool:
    """ENOSPC, also when torch's writer reports it as a RuntimeError."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    cause = error.__cause__ or error.__context__
    return "No space left" in str(error) or (cause is not None and disk_full(cause))


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back SIGINT for the block (main thread only), then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` that holds every one of ``keys``."""
    path = Path(path)
    if not path.is_file():
        raise DenseError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # corrupt bytes can make the unpickler fail in any way
        raise DenseError(f"{path} is not a readable dense checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DenseError(f"{path} is not a dense checkpoint (no '{FORMAT}' marker)")
    if missing := [key for key in keys if key not in state]:
        kind = " (a fit-inverseform network?)" if "fit" in state else ""
        raise DenseError(f"{path} is not a training checkpoint{kind}: it has no {missing}")
    return state


def rng_state() -> dict[str, Any]:
    """Every random generator the training loop may draw from, in a weights_only-safe form."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy_key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "numpy_pos": numpy_state["state"]["pos"],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": state["numpy_key"].numpy().astype(np.uint32),
                "pos": state["numpy_pos"],
            },
            "has_gauss": 0,
            "gauss": 0.0,
        }
    )
