"""A grid file: its options, its checks, and where each of its runs lives."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from dense.config import Config, build_dataclass, load_config, toml_value
from dense.errors import DenseError
from dense.rundir import CONFIG, LOG, read_log


@dataclass
class GridConfig:
    name: str
    base: str  # the base experiment TOML, relative to the grid file
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)  # for every arm
    metrics: list[str] = field(default_factory=list)  # "task/metric" columns of the table
    baseline: str = ""  # the arm the others are compared with, seed by seed ("" = none)
    reference: dict[str, str] = field(default_factory=dict)  # task → its single-task arm (Δm)
    pictures: list[str] = field(default_factory=list)  # arms in the example pictures; [] all
    picture_samples: int = 4  # validation images in the example pictures
    out_dir: str = "runs/grids"


@dataclass
class ArmConfig:
    overrides: list[str] = field(default_factory=list)


@dataclass
class Grid:
    config: GridConfig
    arms: dict[str, ArmConfig]
    base: Path

    @property
    def folder(self) -> Path:
        return Path(self.config.out_dir) / self.config.name

    def run_dir(self, arm: str, seed: int) -> Path:
        """Where the run of ``arm`` with ``seed`` lives: ``OUT/<grid>/<arm>/seed<k>``."""
        return self.folder / arm / f"seed{seed}"

    def every_run_dir(self) -> list[Path]:
        """The run folders of every grid under this grid's ``out_dir`` (the same layout)."""
        return sorted(p.parent for p in Path(self.config.out_dir).glob(f"*/*/seed*/{CONFIG}"))

    def run_config(self, arm: str, seed: int) -> Config:
        run_dir = self.run_dir(arm, seed)
        overrides = [
            *self.config.overrides,
            *self.arms[arm].overrides,
            f"run.seed={seed}",
            f"run.name={toml_value(run_dir.name)}",
            f"run.out_dir={toml_value(run_dir.parent.as_posix())}",
        ]
        return load_config(self.base, overrides)

    def validation_curve(self, arm: str, seed: int, metric: str) -> dict[int, float]:
        """step → ``metric`` at each validation the run of ``arm`` with ``seed`` has logged."""
        log = self.run_dir(arm, seed) / LOG
        if not log.is_file():
            return {}
        records = read_log(log)
        return {r["step"]: r[metric] for r in records if r.get("split") == "val" and metric in r}


SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # grid and arm names become folder names


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every arm's config is validated before anything runs."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DenseError(f"grid file not found: {path}") from None
    except OSError as error:
        raise DenseError(f"cannot read grid file {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DenseError(f"{path} is not valid TOML: {error}") from None
    unknown = set(raw) - {"grid", "arms"}
    if unknown or "grid" not in raw or not raw.get("arms"):
        raise DenseError(f"{path}: needs a [grid] table and [arms.NAME] tables, nothing else")
    config = build_dataclass(GridConfig, raw["grid"], "grid.")
    arms = {
        name: build_dataclass(ArmConfig, options, f"arms.{name}.")
        for name, options in raw["arms"].items()
    }
    if not config.seeds:
        raise DenseError(f"{path}: grid.seeds is empty")
    if len(set(config.seeds)) != len(config.seeds):
        raise DenseError(f"{path}: grid.seeds names a seed twice")
    if config.picture_samples < 1:
        raise DenseError(f"{path}: grid.picture_samples must be at least 1")
    for key, name in (("grid.name", config.name), *((f"arms.{arm}", arm) for arm in arms)):
        if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
            raise DenseError(f"{path}: {key}: use letters, digits, '_', '-' and '.' only")
    named = (
        ("reference", config.reference.values()),
        ("pictures", config.pictures),
        ("baseline", [config.baseline] if config.baseline else []),
    )
    for key, arm_names in named:
        if missing := [arm for arm in arm_names if arm not in arms]:
            raise DenseError(f"{path}: grid.{key} names arms that do not exist: {missing}")
    if unmeasured := [t for t in config.reference if not task_metrics(config.metrics, t)]:
        raise DenseError(f"{path}: grid.metrics has no metric of reference task(s) {unmeasured}")
    grid = Grid(config, arms, (path.parent / config.base).resolve())
    for arm in arms:
        grid.run_config(arm, config.seeds[0])  # fails early, naming the bad key
    return grid


def task_metrics(metrics: list[str], task: str) -> list[str]:
    return [metric for metric in metrics if metric.startswith(f"{task}/")]


def read_summary(path: Path) -> dict:
    """A run's metrics.json; a missing or damaged one is a DenseError naming the file."""
    try:
        summary = json.loads(path.read_text())
    except OSError:
        raise DenseError(f"cannot read {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DenseError(f"{path} is damaged: rerun the grid without --summary-only") from None
    if not isinstance(summary, dict):
        raise DenseError(f"{path} is damaged: rerun the grid without --summary-only")
    return summary
