"""Running a grid: train every arm × seed that has not finished, resume interrupted runs and
copy runs whose recipe a finished run already holds (training is deterministic)."""

from __future__ import annotations

import shutil
from pathlib import Path

import tomllib
from rich.console import Console

from dense import distributed
from dense.config import Config, config_from_dict, to_toml, with_former_defaults
from dense.errors import DenseError
from dense.experiment.grid import Grid, read_summary
from dense.rundir import CHECKPOINT, CONFIG, SUMMARY, run_precision


def finished(run_dir: Path, steps: int) -> bool:
    """A run is finished when its metrics.json is whole and reports the final step."""
    try:
        return read_summary(run_dir / SUMMARY).get("step") == steps
    except DenseError:
        return False  # no summary, or one cut short: the run resumes and writes it again


def recipe(saved: dict) -> dict:
    """A saved run config without where the run and its data cache are kept and how many
    loader workers made its batches (the same whatever the number): equal recipes train
    identical runs."""
    run = {k: v for k, v in saved["run"].items() if k not in ("out_dir", "name")}
    data = {k: v for k, v in saved.get("data", {}).items() if k not in ("cache", "num_workers")}
    return {**saved, "run": run, "data": data}


def config_recipe(config: Config) -> dict:
    """The recipe of ``config`` as it would read back from its saved config.toml."""
    return recipe(tomllib.loads(to_toml(config.to_dict())))


def saved_recipe(path: Path) -> dict | None:
    """The recipe of a saved config.toml, read through today's config so that keys added
    since the run was made read as their defaults (which keep the old behaviour) and keys
    whose default changed since as their former default."""
    try:
        saved = with_former_defaults(tomllib.loads(path.read_text()))
        return config_recipe(config_from_dict(saved))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, DenseError):
        return None  # not a run's config (or a damaged one): no twin of anything


def find_twin(grid: Grid, config: Config) -> Path | None:
    """A finished run under the grid's ``out_dir`` with the same recipe as ``config``, trained
    in the precision ``config`` trains in on this machine (``train.amp = "auto"`` depends on it)."""
    wanted = config_recipe(config)
    device = distributed.resolve_device(config.run.device)
    precision = distributed.precision_name(distributed.bf16_autocast(config.train.amp, device))
    for run_dir in grid.every_run_dir():
        if (
            saved_recipe(run_dir / CONFIG) == wanted
            and finished(run_dir, config.train.steps)
            and run_precision(run_dir) == precision
        ):
            return run_dir
    return None


def copy_run(source: Path, run_dir: Path, config: Config) -> None:
    shutil.copytree(source, run_dir, dirs_exist_ok=True)
    (run_dir / CONFIG).write_text(to_toml(config.to_dict()))


def check_same_recipe(run_dir: Path, config: Config) -> None:
    """Refuse a run folder that holds a run of another recipe (the arm's overrides changed
    since it ran): skipping or resuming it would report the old arm under the new name."""
    saved = run_dir / CONFIG
    if not saved.is_file():
        return
    if saved_recipe(saved) != config_recipe(config):
        raise DenseError(
            f"{run_dir} holds a run of a different config than the grid now asks for (were the "
            "arm's overrides changed?): move that folder away or delete it, then rerun"
        )


def run_grid(grid: Grid, console: Console) -> None:
    """Train every arm × seed that has not finished (resuming interrupted runs, copying runs
    that a finished run with the same config already holds), seed by seed across the arms, so
    that an interrupted grid already holds complete paired comparisons for its first seeds."""
    from dense.trainer import train

    jobs = [(arm, seed) for seed in grid.config.seeds for arm in grid.arms]
    for arm, seed in jobs:
        check_same_recipe(grid.run_dir(arm, seed), grid.run_config(arm, seed))
    for number, (arm, seed) in enumerate(jobs, 1):
        config = grid.run_config(arm, seed)
        run_dir = grid.run_dir(arm, seed)
        heading = f"[{number}/{len(jobs)}] {arm} seed {seed}"
        if finished(run_dir, config.train.steps):
            console.print(f"{heading}: finished, skipped")
        elif twin := find_twin(grid, config):
            copy_run(twin, run_dir, config)
            console.print(f"{heading}: same config as {twin}, copied")
        else:
            console.print(heading)
            train(config, resume=(run_dir / CHECKPOINT).is_file(), console=console)
