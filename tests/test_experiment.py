"""`dense experiment`: a grid of arms × seeds, resumable, summarised as tables and plots."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import tomllib
import torch
from PIL import Image
from rich.console import Console

from dense.cli import main
from dense.config import load_config, to_toml, with_former_defaults
from dense.errors import DenseError
from dense.experiment import load_grid, run_grid, write_pictures
from dense.experiment.convergence import late_change
from dense.experiment.figures import curves, picture_seed
from dense.experiment.runner import config_recipe, saved_recipe
from dense.experiment.summary import paired_difference
from dense.pictures import Column, cropped, densest_window
from dense.rundir import CHECKPOINT, check_resumable, saved_as_today
from tests.conftest import ROOT, tiny_dict


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


REFERENCED = """
reference = { segmentation = "segmentation_only", depth = "depth_only" }
pictures = ["joint", "bce"]
picture_samples = 3

[arms.segmentation_only]
overrides = ["tasks={}", "tasks.segmentation={}"]
[arms.depth_only]
overrides = ["tasks={}", "tasks.depth={}"]
[arms.joint]
overrides = []
[arms.bce]
overrides = [
    "tasks.segmentation.boundary_head=true",
    "tasks.segmentation.structure.boundary_bce=1.0",
]
"""


def expected_delta_m(finals: dict, arm: str, seed: int) -> float:
    """Δm by hand: miou higher is better, abs_rel lower is better, one metric per task."""
    miou = statistics.fmean(finals["segmentation_only", s]["segmentation"]["miou"] for s in (0, 1))
    rel = statistics.fmean(finals["depth_only", s]["depth"]["abs_rel"] for s in (0, 1))
    run = finals[arm, seed]
    gain_seg = (run["segmentation"]["miou"] - miou) / miou
    gain_depth = -(run["depth"]["abs_rel"] - rel) / rel
    return 100 * (gain_seg + gain_depth) / 2


ARMS_OF_RUN_GRID = ("segmentation_only", "depth_only", "joint", "bce")


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The REFERENCED grid run once: (grid file, its folder, (arm, seed) → metrics.json)."""
    tmp_path = tmp_path_factory.mktemp("grid")
    grid = write_grid(tmp_path, REFERENCED)
    assert main(["experiment", str(grid)]) == 0
    folder = tmp_path / "grids" / "g"
    finals = {
        (arm, seed): json.loads((folder / arm / f"seed{seed}" / "metrics.json").read_text())
        for arm in ARMS_OF_RUN_GRID
        for seed in (0, 1)
    }
    return grid, folder, finals


def test_grid_tables_hold_mean_and_std_over_seeds(ran):
    _, folder, finals = ran
    assert all(f["step"] == 2 for f in finals.values())
    # seeds differ, so the std is a real one
    joint = [finals["joint", s]["depth"]["abs_rel"] for s in (0, 1)]
    assert joint[0] != joint[1]
    rows = {row["arm"]: row for row in csv.DictReader((folder / "results.csv").open())}
    assert float(rows["joint"]["depth/abs_rel mean"]) == pytest.approx(statistics.fmean(joint))
    assert float(rows["joint"]["depth/abs_rel std"]) == pytest.approx(statistics.stdev(joint))
    assert rows["bce"]["seeds"] == "2"
    markdown = (folder / "results.md").read_text()
    assert "| joint | 2 |" in markdown and "±" in markdown
    assert Image.open(folder / "segmentation_miou.png").size[0] > 0


def test_curves_hold_every_seed_and_only_arms_with_the_metric(ran):
    grid_file, _, finals = ran
    series = curves(load_grid(grid_file), "depth/abs_rel")
    assert list(series) == ["depth_only", "joint", "bce"]  # segmentation_only has no depth
    assert list(series["joint"]) == [1, 2]  # every validation step
    assert sorted(series["joint"][2]) == sorted(
        finals["joint", s]["depth"]["abs_rel"] for s in (0, 1)
    )


def test_late_change_compares_the_final_step_with_the_last_fifths_start():
    runs = [{100: 0.5, 800: 0.60, 900: 0.61, 1000: 0.605}, {100: 0.4, 800: 0.62, 1000: 0.625}]
    change = late_change([*runs, {100: 0.9, 800: 0.1}], 1000)  # an unfinished run: left out
    assert (change.start, change.end) == (800, 1000)
    assert change.relative == pytest.approx((0.615 - 0.61) / 0.61)
    assert change.converged
    falling = late_change([{700: 0.30, 1000: 0.27}], 1000)  # the last check before 800 is 700
    assert falling.start == 700 and falling.relative == pytest.approx(-0.1)
    assert not falling.converged
    assert late_change([{100: 1.0, 200: 2.0}], 1000) is None  # nothing reached the end
    assert late_change([{1000: 1.0}], 1000) is None  # nothing to compare the end with
    uneven = late_change([{600: 1.0, 800: 2.0, 1000: 2.0}, {600: 1.0, 1000: 2.0}], 1000)
    assert uneven.start == 600  # the last step before the cut that every run validated
    assert late_change([{800: 0.0, 1000: 0.0}], 1000).converged  # 0 → 0 did not move
    assert not late_change([{800: 0.0, 1000: 0.1}], 1000).converged


def test_results_report_each_arms_late_change(ran):
    _, folder, finals = ran
    markdown = (folder / "results.md").read_text()
    assert "Change in the last 20% of training" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| joint | 1 → 2 |"))
    logs = [(folder / "joint" / f"seed{s}" / "metrics.jsonl").read_text() for s in (0, 1)]
    records = [json.loads(line) for log in logs for line in log.splitlines()]
    before = statistics.fmean(
        r["segmentation/miou"] for r in records if r.get("split") == "val" and r["step"] == 1
    )
    after = statistics.fmean(finals["joint", s]["segmentation"]["miou"] for s in (0, 1))
    assert row.split(" | ")[2].startswith(f"{(after - before) / abs(before):+.1%}")


def test_paired_differences_use_the_same_seeds_and_a_t_interval():
    arm, baseline = {0: 0.30, 1: 0.26, 2: 0.25}, {0: 0.31, 1: 0.28, 2: 0.27, 3: 0.9}
    paired = paired_difference(arm, baseline)  # seed 3 has no partner: left out
    differences = [-0.01, -0.02, -0.02]
    half = 4.303 * statistics.stdev(differences) / 3**0.5  # t(0.975, 2 df)
    assert paired.seeds == 3
    assert paired.mean == pytest.approx(statistics.fmean(differences))
    assert (paired.low, paired.high) == pytest.approx((paired.mean - half, paired.mean + half))
    assert paired.significant  # the whole interval lies below 0
    assert not paired_difference({0: 1.0, 1: 0.0}, {0: 0.5, 1: 0.5}).significant
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_a_grid_with_a_baseline_reports_paired_differences(tmp_path):
    grid = write_grid(tmp_path, ARMS.replace("[arms.plain]", 'baseline = "plain"\n[arms.plain]', 1))
    assert main(["experiment", str(grid)]) == 0
    markdown = (tmp_path / "grids" / "g" / "results.md").read_text()
    assert "Paired difference from `plain`" in markdown
    assert "| bce | " in markdown.split("Paired difference")[1]
    rows = {
        row["arm"]: row for row in csv.DictReader((tmp_path / "grids" / "g" / "results.csv").open())
    }
    assert float(rows["plain"]["depth/abs_rel paired_diff"]) == 0.0


def test_delta_m_is_measured_against_the_single_task_arms(ran):
    _, folder, finals = ran
    rows = {row["arm"]: row for row in csv.DictReader((folder / "results.csv").open())}
    for arm in ("joint", "bce"):
        by_seed = [expected_delta_m(finals, arm, seed) for seed in (0, 1)]
        assert float(rows[arm]["delta_m_percent mean"]) == pytest.approx(statistics.fmean(by_seed))
        assert float(rows[arm]["delta_m_percent std"]) == pytest.approx(statistics.stdev(by_seed))
    assert rows["depth_only"]["delta_m_percent mean"] == "nan"  # lacks a task: no Δm
    assert "Δm (%)" in (folder / "results.md").read_text()


def test_example_pictures_compare_the_pictured_arms_with_boundaries(ran, monkeypatch):
    grid, folder, _ = ran
    drawn = []
    monkeypatch.setattr(
        "dense.experiment.figures.save_comparison",
        lambda path, columns, **_: drawn.append((path.name, columns)),
    )
    write_pictures(load_grid(grid))
    assert [name for name, _ in drawn] == [
        "segmentation_examples.png",
        "segmentation_boundary_crops.png",
        "depth_examples.png",
        "depth_boundary_crops.png",
    ]
    for name, columns in drawn:
        assert [c.title for c in columns] == ["image", "ground truth", "joint", "bce"]
        assert all(len(c.pictures) == 3 for c in columns)  # picture_samples
        assert (columns[1].pictures[0] == 255).all(0).any(), "boundaries are drawn in white"
        assert columns[0].key is None and columns[2].key is not None  # photo; colour key
        size = (32 // 4, 48 // 4) if "crops" in name else (32, 48)
        assert all(p.shape[-2:] == size for c in columns for p in c.pictures)
    for task in ("segmentation", "depth"):
        assert Image.open(folder / f"{task}_examples.png").size[0] >= 4 * 48 * 2  # 2× pixels


def test_pictures_come_from_the_first_seed_that_kept_every_pictured_checkpoint(tmp_path):
    """A grid resumed from copied metrics lacks its first seeds' checkpoints: its pictures come
    from the first seed whose every pictured arm has one."""
    grid = load_grid(write_grid(tmp_path, ARMS))
    assert picture_seed(grid, ["plain", "bce"]) == 0  # none anywhere: the first seed
    for arm, seed in (("plain", 0), ("plain", 1), ("bce", 1)):
        grid.run_dir(arm, seed).mkdir(parents=True)
        (grid.run_dir(arm, seed) / CHECKPOINT).touch()
    assert picture_seed(grid, ["plain", "bce"]) == 1
    assert picture_seed(grid, ["plain"]) == 0


def test_pictures_skip_a_first_seed_whose_checkpoint_is_gone(ran, tmp_path, monkeypatch):
    """A copy of the run grid without one pictured arm's seed-0 checkpoint is pictured from
    seed 1, with gradients off."""
    grid, folder, _ = ran
    copy = tmp_path / "grids" / "g"
    shutil.copytree(folder, copy)
    (copy / "bce" / "seed0" / CHECKPOINT).unlink()
    shutil.copy(grid.parent / "base.toml", tmp_path)
    moved = tmp_path / "grid.toml"
    moved.write_text(grid.read_text().replace(folder.parent.as_posix(), copy.parent.as_posix()))
    titles = []

    def save(path, columns, title, **_):
        assert not torch.is_grad_enabled()
        titles.append(title)

    monkeypatch.setattr("dense.experiment.figures.save_comparison", save)
    write_pictures(load_grid(moved))
    assert titles and all(", seed 1" in title for title in titles)


def test_boundary_crops_take_the_window_of_densest_boundaries():
    mask = torch.zeros(12, 16, dtype=torch.bool)
    mask[1, 2] = True  # a lone pixel
    mask[6:9, 9:12] = True  # a dense patch
    rows, cols = densest_window(mask, (3, 4))
    assert mask[rows, cols].sum() == 9 and (rows.stop - rows.start, cols.stop - cols.start) == (
        3,
        4,
    )
    picture = torch.arange(2 * 12 * 16).reshape(2, 12, 16)
    column = Column("x", [picture, picture])
    (crop,) = cropped([column], [(rows, cols), (slice(0, 3), slice(0, 4))])
    assert torch.equal(crop.pictures[0], picture[:, rows, cols])
    assert torch.equal(crop.pictures[1], picture[:, :3, :4])


def test_rerunning_a_grid_skips_finished_runs(ran, capsys):
    grid, folder, _ = ran
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("last.pt")}
    assert main(["experiment", str(grid)]) == 0
    assert capsys.readouterr().out.count("finished, skipped") == 8
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.rglob("last.pt")}


def test_a_run_another_grid_already_holds_is_copied_not_retrained(ran, monkeypatch):
    grid, folder, finals = ran
    header = grid.read_text().split("reference =")[0].replace('name = "g"', 'name = "h"')
    other = grid.with_name("other.toml")
    other.write_text(
        header
        + """
[arms.seg]
overrides = ["tasks={}", "tasks.segmentation={}"]
[arms.seg_changed]
overrides = ["tasks={}", "tasks.segmentation={}", "data.options.val_length=3"]
"""
    )
    (folder.parent / "x" / "damaged" / "seed0").mkdir(parents=True)
    (folder.parent / "x" / "damaged" / "seed0" / "config.toml").write_text("[run\n")
    trained = []
    monkeypatch.setattr("dense.trainer.train", lambda config, **_: trained.append(config.run))
    console = Console(record=True, width=200)
    run_grid(load_grid(other), console)
    assert [(Path(run.out_dir).name, run.seed) for run in trained] == [
        ("seg_changed", 0),
        ("seg_changed", 1),
    ]
    for seed in (0, 1):
        copy = folder.parent / "h" / "seg" / f"seed{seed}"
        assert json.loads((copy / "metrics.json").read_text()) == finals["segmentation_only", seed]
        assert (copy / "last.pt").is_file()
        assert tomllib.loads((copy / "config.toml").read_text())["run"]["out_dir"].endswith("h/seg")
    assert console.export_text().count("segmentation_only/seed") == 2


def test_bad_grids_fail_before_running(tmp_path):
    with pytest.raises(DenseError, match="arms.bad.overrides"):
        load_grid(write_grid(tmp_path, "[arms.bad]\noverrides = 3\n"))
    with pytest.raises(DenseError, match="unknown config key 'train.stepz'"):
        load_grid(write_grid(tmp_path, '[arms.typo]\noverrides = ["train.stepz=3"]\n'))
    with pytest.raises(DenseError, match="grid.pictures names arms that do not exist"):
        load_grid(write_grid(tmp_path, 'pictures = ["nope"]\n' + ARMS))
    with pytest.raises(DenseError, match="no metric of reference task"):
        load_grid(write_grid(tmp_path, 'reference = { normals = "plain" }\n' + ARMS))
    with pytest.raises(DenseError, match="needs a \\[grid\\] table"):
        load_grid(write_grid(tmp_path, ""))
    assert main(["experiment", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[1].glob("experiments/grids/*.toml")),
    ids=lambda p: p.name,
)
def test_every_shipped_grid_is_valid(path):
    """Every grid loads; the grids that answer a question use three seeds or more (single-seed
    diagnosis grids say so in their name: NAME_ablations)."""
    grid = load_grid(path)
    assert len(grid.arms) >= 2
    assert len(grid.config.seeds) >= 3 or grid.config.name.endswith("_ablations")


def test_a_run_folder_of_another_recipe_is_refused_not_reused(tmp_path, capsys):
    grid = write_grid(tmp_path, "[arms.plain]\noverrides = []\n")
    grid.write_text(grid.read_text().replace("seeds = [0, 1]", "seeds = [0]"))
    assert main(["experiment", str(grid)]) == 0
    run = tmp_path / "grids" / "g" / "plain" / "seed0"
    before = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    grid.write_text(grid.read_text().replace("overrides = []", 'overrides = ["optim.lr=1e-4"]'))
    capsys.readouterr()
    assert main(["experiment", str(grid)]) == 2
    assert "holds a run of a different config" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_run_saved_before_a_config_key_existed_still_counts_as_finished(ran, capsys):
    """Keys added to the config since a run was made read as their defaults, which keep the
    old behaviour: the run is the same recipe, skipped, not refused."""
    grid, folder, _ = ran
    saved = folder / "joint" / "seed0" / "config.toml"
    original = saved.read_text()
    raw = tomllib.loads(original)
    del raw["train"]["tensorboard"]
    del raw["tasks"]["segmentation"]["structure"]["start_step"]
    try:
        saved.write_text(to_toml(raw))
        capsys.readouterr()
        assert main(["experiment", str(grid)]) == 0
        assert capsys.readouterr().out.count("finished, skipped") == 8
    finally:
        saved.write_text(original)


def test_a_run_trained_in_another_precision_is_no_twin(ran, monkeypatch):
    """``train.amp = "auto"`` trains in bf16 or float32 by machine: a grid copies only runs
    trained in the precision the arm would train in here."""
    from dense.experiment.runner import find_twin

    grid = load_grid(ran[0])
    config = grid.run_config("joint", 0)
    assert find_twin(grid, config) is not None
    monkeypatch.setattr("dense.experiment.runner.run_precision", lambda _: "bf16")
    assert find_twin(grid, config) is None  # the grid's runs train with amp off


def test_where_the_data_cache_lives_and_the_loader_workers_are_not_part_of_a_runs_recipe():
    """Runs that differ only in data.cache or data.num_workers train identically, so a grid
    treats them as twins."""
    from dense.experiment.runner import recipe

    saved = {"run": {"name": "a", "out_dir": "x", "seed": 0}, "data": {"batch_size": 8}}
    cached = {
        "run": {"name": "b", "out_dir": "y", "seed": 0},
        "data": {"batch_size": 8, "cache": "c", "num_workers": 0},
    }
    assert recipe(saved) == recipe(cached)
    assert recipe(saved) != recipe({**cached, "data": {"batch_size": 4, "cache": "c"}})
    assert recipe(saved) != recipe({**saved, "data": {"batch_size": 8, "echo": 2}})


SELFSUP_RUN = ("tasks.selfsup_depth.weight=1.0", "data.options.neighbours=true")


def test_a_saved_config_without_a_changed_option_reads_as_its_former_default(tmp_path):
    """pose_refinement became 3 after runs were made without the key: such a saved config is
    a run of 0 steps of refinement, never a twin of a refined run nor a mismatch for an arm
    pinned to 0."""
    config = load_config(None, [*SELFSUP_RUN, "tasks.selfsup_depth.pose_refinement=0"])
    saved = tomllib.loads(to_toml(config.to_dict()))
    del saved["tasks"]["selfsup_depth"]["pose_refinement"]  # written before the key existed
    assert with_former_defaults(saved)["tasks"]["selfsup_depth"]["pose_refinement"] == 0
    assert "pose_refinement" not in saved["tasks"]["selfsup_depth"]  # the input is untouched
    path = tmp_path / "config.toml"
    path.write_text(to_toml(saved))
    assert saved_recipe(path) == config_recipe(config)
    refined = load_config(None, [*SELFSUP_RUN, "tasks.selfsup_depth.pose_refinement=3"])
    assert saved_recipe(path) != config_recipe(refined)
    today = tomllib.loads(to_toml(refined.to_dict()))  # a key it holds is kept as it is
    assert with_former_defaults(today)["tasks"]["selfsup_depth"]["pose_refinement"] == 3
    # resuming: the old checkpoint continues under a config pinned to 0, not under the new one
    check_resumable(saved_as_today(saved), config.to_dict(), path)
    with pytest.raises(DenseError, match="'tasks' differs"):
        check_resumable(saved_as_today(saved), refined.to_dict(), path)


# committed grids whose runs were made with an older recipe than their TOML now asks for (kept
# as the record of those runs; re-running them trains new runs), and the keys that differ
LEGACY_GRIDS = {
    "joint": {  # trained before issue 14's camera speed, the pixel distance, sharper depth
        "data.options.camera_speed",  # edges and the weak InverseForm weight
        "tasks.depth.edge_sharpness",
        "tasks.depth.structure.distance",
        "tasks.depth.structure.inverseform",
        "tasks.segmentation.structure.distance",
        "tasks.segmentation.structure.inverseform",
    },
    "selfsup_ablations": {  # logged every 20 steps; its stacked-pose arms changed since
        "train.log_every",
        "tasks.selfsup_depth.image_scales",
        "tasks.selfsup_depth.pose_network",
        "tasks.selfsup_depth.translation_scale",
    },
}


def leaves(tree: dict, prefix: str = "") -> dict:
    """A nested config as {dotted key: value}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= leaves(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


@pytest.mark.parametrize(
    "toml", sorted((ROOT / "experiments" / "grids").glob("*.toml")), ids=lambda p: p.stem
)
def test_committed_grid_runs_are_the_recipe_their_grid_asks_for(toml):
    """A changed default (``FORMER_DEFAULTS``, or a grid that pins what its runs used) must
    leave every committed run the same recipe, so that a grid resumes on its committed runs;
    a legacy grid's runs differ in exactly its listed keys."""
    grid = load_grid(toml)
    results = ROOT / "experiments" / "results" / "grids" / grid.config.name
    differing: set[str] = set()
    checked = 0
    for arm in grid.arms:
        for seed in grid.config.seeds:
            saved = results / arm / f"seed{seed}" / "config.toml"
            if saved.is_file():
                a = leaves(saved_recipe(saved))
                b = leaves(config_recipe(grid.run_config(arm, seed)))
                differing |= {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
                checked += 1
    assert checked or not results.exists()
    assert differing == LEGACY_GRIDS.get(grid.config.name, set())


def test_every_grid_make_grids_runs_exists_and_loads():
    """`make grids` names its grids in the Makefile's GRIDS; a typo there would stop it hours in."""
    line = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("GRIDS ?=")
    )
    names = line.split("=", 1)[1].split()
    assert names
    for name in names:
        assert load_grid(ROOT / "experiments" / "grids" / f"{name}.toml").config.name == name


def test_a_run_saved_before_fused_adamw_reads_as_the_loop_kernel(tmp_path):
    raw = tomllib.loads(
        (
            ROOT
            / "experiments"
            / "results"
            / "grids"
            / "precision"
            / "float32"
            / "seed0"
            / "config.toml"
        ).read_text()
    )
    del raw["optim"]["fused"], raw["train"]["channels_last"]
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(raw))
    recipe = saved_recipe(saved)
    assert recipe["optim"]["fused"] is False and recipe["train"]["channels_last"] is False
