"""Experiment grids: arms × seeds of one base config, run resumably, summarised as tables,
curves and example pictures.

A grid file (TOML)::

    [grid]
    name = "segmentation_inverseform"
    base = "../synthetic_joint.toml"            # relative to the grid file
    seeds = [0, 1, 2]
    overrides = ["train.steps=300"]             # applied to every arm
    metrics = ["segmentation/miou", "segmentation/bf3"]
    baseline = "ce"                             # optional: paired differences against it
    reference = { segmentation = "ce" }         # optional: task → single-task arm, for Δm
    pictures = ["ce", "ce_bce"]                 # optional: arms compared in the pictures

    [arms.ce]
    overrides = []
    [arms.ce_bce]
    overrides = ["tasks.segmentation.boundary_head=true", "..."]

The modules, one concern each: ``grid`` (the file, its checks, where each run lives),
``runner`` (training what has not finished, copying twins), ``summary`` (tables: mean ± std,
paired differences with confidence intervals, Δm), ``convergence`` (each metric's change over
the last 20 % of training), ``markdown`` (their tables in results.md) and ``figures``
(curves, example pictures).
"""

from dense.experiment.figures import write_pictures, write_plots
from dense.experiment.grid import Grid, load_grid
from dense.experiment.runner import run_grid
from dense.experiment.summary import write_tables

__all__ = ["Grid", "load_grid", "run_grid", "write_pictures", "write_plots", "write_tables"]
