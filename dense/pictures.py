"""Comparison pictures (the trainer's ``predictions.png``, the experiments' examples): one row
per sample, one titled column per picture kind, and each task's colour key under the grid —
a legend of the class colours, a colour bar in the task's unit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dense.task import ColourKey, Task


@dataclass
class Column:
    """One column of a comparison picture: its title, a (3, H, W) uint8 picture per row, and
    the colour key that reads it (None for photographs)."""

    title: str
    pictures: list[Tensor]
    key: ColourKey | None = None


def draw(task: Task, value: Tensor) -> Tensor | None:
    """``task.render`` of a decoded value (C, H, W) with its ``outline`` painted white."""
    picture = task.render(value)
    outline = task.outline(value)
    if picture is not None and outline is not None:
        picture = picture.clone()
        picture[:, outline] = 255
    return picture


def aligned_predictions(task: Task, output: Tensor, targets: list[Tensor]) -> list[Tensor]:
    """Each sample's decoded prediction (C, H, W), made comparable to its target."""
    return [task.align(task.decode(output[i : i + 1])[0].cpu(), t) for i, t in enumerate(targets)]


def task_column(title: str, task: Task, values: list[Tensor]) -> Column | None:
    """A column of ``task``'s pictures of decoded values with its colour key; None when the
    task draws nothing."""
    drawn = [draw(task, value) for value in values]
    if any(picture is None for picture in drawn):
        return None
    return Column(title, drawn, task.colour_key())


def densest_window(mask: Tensor, size: tuple[int, int]) -> tuple[slice, slice]:
    """The (rows, cols) window of ``size`` holding the most ``True`` pixels of the (H, W)
    ``mask`` (the top-left-most of equals)."""
    density = F.avg_pool2d(mask[None, None].float(), size, stride=1)[0, 0]
    row, col = divmod(int(density.flatten().argmax()), density.shape[1])
    return slice(row, row + size[0]), slice(col, col + size[1])


def cropped(columns: list[Column], windows: list[tuple[slice, slice]]) -> list[Column]:
    """Every column cut to one window per row."""
    return [
        Column(c.title, [p[:, r, k] for p, (r, k) in zip(c.pictures, windows, strict=True)], c.key)
        for c in columns
    ]


def save_comparison(path: Path, columns: list[Column], scale: int = 2, title: str = "") -> None:
    """Draw ``columns`` side by side (pixels enlarged ``scale`` times, no smoothing) with
    their titles and colour keys, and write the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.patches import Patch

    rows = len(columns[0].pictures)
    height, width = columns[0].pictures[0].shape[-2:]
    inches = scale / 100
    keys = list(dict.fromkeys(c.key for c in columns if c.key is not None))
    figure, axes = plt.subplots(
        rows,
        len(columns),
        figsize=(
            len(columns) * width * inches + 0.4,
            rows * height * inches + 0.6 + 0.5 * len(keys),
        ),
        dpi=100,
        squeeze=False,
        layout="constrained",
    )
    for c, column in enumerate(columns):
        for r, picture in enumerate(column.pictures):
            axis = axes[r, c]
            axis.imshow(picture.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, c].set_title(column.title, fontsize=8)
    for key in keys:
        if key.scale is not None:
            colours = LinearSegmentedColormap.from_list("key", list(key.colours))
            mappable = ScalarMappable(Normalize(*key.scale), colours)
            owners = [
                axes[r, c] for c, col in enumerate(columns) if col.key == key for r in range(rows)
            ]
            bar = figure.colorbar(
                mappable, ax=owners, orientation="horizontal", shrink=0.9, aspect=30
            )
            bar.set_label(key.label, fontsize=7)
            bar.ax.tick_params(labelsize=7)
        if key.classes:
            handles = [
                Patch(color=torch.tensor(rgb).div(255).tolist(), label=n) for n, rgb in key.classes
            ]
            figure.legend(
                handles=handles,
                loc="outside lower center",
                ncol=min(7, len(handles)),
                fontsize=6,
                frameon=False,
                handlelength=1.0,
            )
    if title:
        figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
