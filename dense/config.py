"""Experiment configuration: dataclasses read from TOML plus dotted ``key=value`` overrides.

Every section is a dataclass; unknown keys and values of the wrong type are reported with
their dotted path. Task options (``[tasks.NAME]``) and dataset options (``[data.options]``)
are validated against the dataclass that the registered plug-in declares.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w
import tomllib

from dense.errors import DenseError
from dense.registry import DATASETS, TASKS


@dataclass
class RunConfig:
    name: str = "run"  # the run directory is out_dir/name
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class AugmentConfig:
    """Random training augmentation (``[data.augment]``); the defaults change nothing."""

    scale_min: float = 1.0  # rescale by a factor drawn uniformly from [scale_min, scale_max]
    scale_max: float = 1.0
    crop_height: int = 0  # random crop to this size (padded first if smaller); 0 = no crop
    crop_width: int = 0
    flip: bool = False  # horizontal flip with probability 1/2
    colour_jitter: float = 0.0  # brightness, contrast, saturation strength (hue: a quarter)

    def active(self) -> bool:
        return self != AugmentConfig()


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = 8  # per process
    eval_batch_size: int = 8
    num_workers: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # the dataset's own options
    cache: str = ""  # folder keeping made samples for later epochs and runs, "memory", "": none
    echo: int = 1  # uses of each training sample made (data echoing, dense/echo.py); 1 = off
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training split only


@dataclass
class ModelConfig:
    encoder: str = "resnet18"  # any timm model that supports features_only=True
    pretrained: bool = False  # timm's pretrained weights (needs a download)
    weights: str = ""  # or: a local weights file for the encoder
    decoder_channels: int = 64


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "poly", "constant"] = "cosine"
    warmup_steps: int = 50
    poly_power: float = 0.9
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    fused: bool = True  # AdamW's fused kernel: one pass over all parameters per step


@dataclass
class TrainConfig:
    steps: int = 1000
    eval_every: int = 250
    checkpoint_every: int = 100
    log_every: int = 10
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on CUDA and on bf16-native CPUs
    channels_last: bool | Literal["auto"] = "auto"  # NHWC model and images; auto: under bf16
    max_bad_steps: int = 5  # consecutive non-finite losses before training stops
    eval_batches: int = 0  # evaluate on at most this many batches; 0 = the whole split
    preview_samples: int = 4  # rows in the predictions picture written after training
    tensorboard: bool = True  # also log to TensorBoard event files in RUN/tensorboard/


@dataclass
class WeightingConfig:
    method: Literal["fixed", "uncertainty", "dwa"] = "fixed"
    dwa_temperature: float = 2.0
    dwa_window: int = 50  # steps per DWA "epoch" (loss averages are compared across windows)


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    tasks: dict[str, Any] = field(default_factory=dict)  # task name → the task's options

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML file (or start from defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DenseError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise DenseError(f"{path} is not valid TOML: {error}") from None
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as TOML, else kept as text."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise DenseError(f"override '{override}' is not of the form section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise DenseError(f"override '{override}': '{part}' is not a section")
    node[leaf] = value


# engine options whose default changed: the value runs made before they were saved had
FORMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "optim": {"fused": False},  # default true since 2026-12-04
    "train": {"channels_last": False},  # default "auto" since 2026-12-04
}


def with_former_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run's saved config (its config.toml or a checkpoint's) in which each option
    that the saved config lacks and whose default is no longer what such runs were made with
    holds that former value (``FORMER_DEFAULTS``, and each task config's); other options it
    lacks still read as today's defaults, which keep the old behaviour."""
    saved = copy.deepcopy(saved)
    for section, former in FORMER_DEFAULTS.items():
        if isinstance(saved.get(section, {}), dict):
            saved[section] = {**former, **saved.get(section, {})}
    tasks = saved.get("tasks")
    for name, options in list(tasks.items()) if isinstance(tasks, dict) else ():
        try:
            former = getattr(TASKS.get(name).Config, "FORMER_DEFAULTS", {})
        except DenseError:
            continue  # an unknown task: config_from_dict names it
        if former and isinstance(options or {}, dict):
            tasks[name] = {**former, **(options or {})}
    return saved


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a :class:`Config`."""
    config = build_dataclass(Config, raw, "")
    if not config.tasks:
        raise DenseError("the config names no task: add a [tasks.NAME] section")
    config.tasks = {
        name: build_dataclass(TASKS.get(name).Config, options or {}, f"tasks.{name}.")
        for name, options in config.tasks.items()
    }
    dataset_cls = DATASETS.get(config.data.dataset)
    config.data.options = dataclasses.asdict(
        build_dataclass(dataset_cls.Config, config.data.options, "data.options.")
    )
    check_values(config)
    return config


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_values(config: Config) -> None:
    """Refuse values that would fail (or silently misbehave) only once training has started."""
    check_run_name(config.run.name)
    if not DEVICE.fullmatch(config.run.device):
        raise DenseError(f"run.device = {config.run.device!r}: use auto, cpu, cuda, cuda:N or mps")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(config.data, key) < 1:
            raise DenseError(f"data.{key} must be at least 1")
    for key in ("steps", "eval_every", "checkpoint_every", "log_every", "max_bad_steps"):
        if getattr(config.train, key) < 1:
            raise DenseError(f"train.{key} must be at least 1")
    for key in ("preview_samples", "eval_batches"):
        if getattr(config.train, key) < 0:
            raise DenseError(f"train.{key} must be 0 or more")
    if config.data.echo < 1:
        raise DenseError("data.echo must be at least 1 (1: every training sample is new)")
    if config.data.num_workers < 0:
        raise DenseError("data.num_workers must be 0 or more")
    if config.model.decoder_channels < 1:
        raise DenseError("model.decoder_channels must be at least 1")
    optim = config.optim
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise DenseError(f"optim.lr = {optim.lr} must be a positive number")
    if not (math.isfinite(optim.weight_decay) and optim.weight_decay >= 0):
        raise DenseError(f"optim.weight_decay = {optim.weight_decay} must be 0 or more")
    if config.weighting.dwa_window < 1:
        raise DenseError("weighting.dwa_window must be at least 1")
    if not config.weighting.dwa_temperature > 0:
        raise DenseError("weighting.dwa_temperature must be positive")
    check_augment(config.data.augment)


def check_run_name(name: str) -> None:
    """A run name is a relative path below ``run.out_dir``: not empty, absolute or ``..``."""
    parts = Path(name).parts
    if not name.strip() or Path(name).is_absolute() or not parts or ".." in parts:
        raise DenseError(
            f"run.name = {name!r} must name a folder inside run.out_dir (not empty, absolute "
            "or containing '..')"
        )


def check_augment(augment: AugmentConfig) -> None:
    if not 0 < augment.scale_min <= augment.scale_max < math.inf:
        raise DenseError("data.augment: need 0 < scale_min <= scale_max")
    if min(augment.crop_height, augment.crop_width) < 0 or (augment.crop_height > 0) != (
        augment.crop_width > 0
    ):
        raise DenseError("data.augment: crop_height and crop_width are both 0 or both positive")
    if not 0 <= augment.colour_jitter <= 1:
        raise DenseError("data.augment.colour_jitter must be in [0, 1]")


def build_dataclass(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise DenseError(f"'{prefix.rstrip('.')}' must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise DenseError(f"unknown config key '{prefix}{key}'{hint}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in raw:
            raise DenseError(f"missing config key '{prefix}{f.name}'")
    values = {}
    for name in names:
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = build_dataclass(hint, raw[name], f"{prefix}{name}.")
        else:
            values[name] = check_type(raw[name], hint, f"{prefix}{name}")
    return cls(**values)


def check_type(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` (int → float, list → tuple) or raise DenseError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise DenseError(f"{key} = {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return check_type(value, arg, key)
            except DenseError:
                continue
        expected = " or ".join(type_name(arg) for arg in args)
        raise DenseError(f"{key} = {value!r} has the wrong type (expected {expected})")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise DenseError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise DenseError(f"{key} must be a table, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise DenseError(f"{key} = {value!r} has the wrong type (expected {hint.__name__})")


def type_name(hint: Any) -> str:
    """How an error names a type: ``bool``, ``'auto'``, ``float``..."""
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def to_toml(data: dict[str, Any]) -> str:
    """``data`` (nested dicts of scalars and lists) as TOML, written by tomli-w; keys whose
    value is None are left out (TOML has no null, and reading falls back to the default)."""
    return tomli_w.dumps(without_none(data))


def without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: without_none(value) if isinstance(value, dict) else value
        for key, value in data.items()
        if value is not None
    }


def toml_value(value: Any) -> str:
    """One value as TOML source text (for building ``key=value`` overrides)."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip().replace("\n", " ")
