"""Run by tests/test_distributed.py under torchrun: train, then save this rank's results."""

import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from dense import distributed
from dense.config import load_config
from dense.trainer import Trainer

config = load_config(sys.argv[1])
out = Path(sys.argv[2])
context = distributed.setup("cpu")
trainer = Trainer(config, context, Console(quiet=True))
trainer.prepare(resume=False, overwrite=False)
result = trainer.fit()
torch.save(trainer.model.state_dict(), out / f"weights{context.rank}.pt")
(out / f"metrics{context.rank}.json").write_text(json.dumps(result.metrics))
distributed.teardown()
