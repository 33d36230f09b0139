"""Building tasks and models from a config, and rebuilding them from a checkpoint."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

from torch.utils.data import Dataset

from dense.checkpoint import load_checkpoint
from dense.config import Config, config_from_dict, with_former_defaults
from dense.data import data_info
from dense.errors import DenseError
from dense.model import DenseModel, build_model
from dense.registry import TASKS
from dense.task import DataInfo, Task

TRAINED_KEYS = ("config", "model", "step", "class_names", "ignore_index")


def build_tasks(config: Config, info: DataInfo) -> dict[str, Task]:
    tasks = {name: TASKS.get(name)(name, options, info) for name, options in config.tasks.items()}
    for task in tasks.values():
        task.connect(tasks)
    return tasks


@dataclass
class Trained:
    """A model restored from a checkpoint with the config and tasks it was trained with."""

    config: Config
    tasks: dict[str, Task]
    model: DenseModel
    step: int


def load_trained(path: str | Path, overrides: list[str] = ()) -> Trained:
    """Rebuild the model of a checkpoint. Overrides may change data and evaluation settings;
    ones that change the model are reported as a mismatch."""
    from dense.config import apply_override

    state = load_checkpoint(path, TRAINED_KEYS)
    raw = with_former_defaults(state["config"])
    saved = config_from_dict(copy.deepcopy(raw))
    for override in overrides:
        apply_override(raw, override)
    config = config_from_dict(raw)
    if model_options(config) != model_options(saved):
        raise DenseError(
            f"checkpoint {path} does not fit the overrides {' '.join(overrides)}: they change "
            "the model it was trained as (eval may change data.*, run.* and evaluation options "
            "such as tasks.NAME.eval_max_depth)"
        )
    info = DataInfo(tuple(state["class_names"]), state["ignore_index"])
    tasks = build_tasks(config, info)
    model = build_model(config.model, tasks)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise DenseError(
            f"checkpoint {path} does not fit the model built from its config: {detail}"
        ) from None
    model.eval()
    return Trained(config, tasks, model, state["step"])


def model_options(config: Config) -> dict:
    """The options that shape a model and its outputs: model.* and every task option that is
    not evaluation-only (the task config's ``evaluation``)."""
    tasks = {
        name: {
            key: value for key, value in asdict(options).items() if key not in options.evaluation
        }
        for name, options in config.tasks.items()
    }
    return {"model": asdict(config.model), "tasks": tasks}


def checkpoint_data(dataset: Dataset) -> dict:
    """What a checkpoint stores about its training data, so predict needs no dataset."""
    info = data_info(dataset)
    return {"class_names": list(info.class_names), "ignore_index": info.ignore_index}
