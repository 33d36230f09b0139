"""The training log: every record appended to ``metrics.jsonl`` and, by default, the same
numbers and the prediction picture written as TensorBoard events (``tensorboard --logdir``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dense.rundir import LOG, TENSORBOARD


class RunLog:
    """``record({"step": …, "split": "train" | "val", name: value, …})`` on the main process;
    TensorBoard tags are ``<split>/<name>``. ``step`` is where a resumed run continues:
    TensorBoard events written after it by the interrupted run are dropped."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, step: int = 0) -> None:
        self.path = run_dir / LOG
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=step or None)

    def record(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            split = record.get("split", "train")
            for name, value in record.items():
                if name not in ("step", "split") and isinstance(value, int | float):
                    self.writer.add_scalar(f"{split}/{name}", value, record["step"])
            self.writer.flush()

    def picture(self, tag: str, path: Path, step: int) -> None:
        """A PNG the run wrote, as a TensorBoard image."""
        if self.writer is not None and path.is_file():
            array = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(tag, array, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
