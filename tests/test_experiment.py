"""`dense experiment`: a grid of arms × seeds, resumable, summarised as tables and plots."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from PIL import Image

from dense.cli import main
from dense.config import to_toml
from dense.errors import DenseError
from dense.experiment import load_grid
from tests.conftest import tiny_dict


def write_grid(tmp_path: Path, arms: str) -> Path:
    base = tiny_dict(tmp_path, "train.steps=2", "train.eval_every=1", "train.checkpoint_every=2")
    (tmp_path / "base.toml").write_text(to_toml(base))
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f"""
[grid]
name = "g"
base = "base.toml"
seeds = [0, 1]
overrides = ["data.options.val_length=4"]
metrics = ["segmentation/miou", "depth/abs_rel"]
out_dir = "{(tmp_path / "grids").as_posix()}"
{arms}
"""
    )
    return grid


ARMS = """
[arms.plain]
overrides = []
[arms.bce]
overrides = [
    "tasks.segmentation.boundary_head=true",
    "tasks.segmentation.structure.boundary_bce=1.0",
]
"""


def test_grid_runs_summarises_and_skips_finished_runs(tmp_path, capsys):
    grid = write_grid(tmp_path, ARMS)
    assert main(["experiment", str(grid)]) == 0
    folder = tmp_path / "grids" / "g"
    finals = {
        (arm, seed): json.loads((folder / arm / f"seed{seed}" / "metrics.json").read_text())
        for arm in ("plain", "bce")
        for seed in (0, 1)
    }
    assert all(f["step"] == 2 for f in finals.values())
    # seeds differ, so the std is a real one
    plain = [finals["plain", s]["depth"]["abs_rel"] for s in (0, 1)]
    assert plain[0] != plain[1]
    rows = {row["arm"]: row for row in csv.DictReader((folder / "results.csv").open())}
    assert float(rows["plain"]["depth/abs_rel mean"]) == pytest.approx(statistics.fmean(plain))
    assert float(rows["plain"]["depth/abs_rel std"]) == pytest.approx(statistics.stdev(plain))
    assert rows["bce"]["seeds"] == "2"
    markdown = (folder / "results.md").read_text()
    assert "| plain | 2 |" in markdown and "±" in markdown
    plot = Image.open(folder / "segmentation_miou.png")
    assert plot.size == (640, 400)
    capsys.readouterr()

    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("last.pt")}
    assert main(["experiment", str(grid)]) == 0
    assert "finished, skipped" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.rglob("last.pt")}


def test_bad_grids_fail_before_running(tmp_path):
    with pytest.raises(DenseError, match="arms.bad.overrides"):
        load_grid(write_grid(tmp_path, "[arms.bad]\noverrides = 3\n"))
    with pytest.raises(DenseError, match="unknown config key 'train.stepz'"):
        load_grid(write_grid(tmp_path, '[arms.typo]\noverrides = ["train.stepz=3"]\n'))
    with pytest.raises(DenseError, match="needs a \\[grid\\] table"):
        load_grid(write_grid(tmp_path, ""))
    assert main(["experiment", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[1].glob("experiments/grids/*.toml")),
    ids=lambda p: p.name,
)
def test_every_shipped_grid_is_valid(path):
    grid = load_grid(path)
    assert len(grid.arms) >= 2 and len(grid.config.seeds) >= 3
