"""The ``dense`` command: train, eval, predict, fit-inverseform, experiment, data, info."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape

from dense.download import Download
from dense.errors import DenseError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        return args.handler(args, console) or 0
    except DenseError as error:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/] {escape(str(error))}", highlight=False
        )
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; checkpoints written so far are intact")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dense", description="Multi-task dense prediction with InverseForm."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a TOML config")
    train.add_argument("config", help="TOML experiment file")
    train.add_argument("overrides", nargs="*", help="section.key=value settings")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    group.add_argument("--overwrite", action="store_true", help="delete the run and start again")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("overrides", nargs="*", help="data.* settings, e.g. data.val_split=test")
    evaluate.add_argument("--split", help="split to evaluate (default: the config's val split)")
    evaluate.add_argument("--out", help="write the metrics as JSON here")
    evaluate.set_defaults(handler=run_eval)

    predict = commands.add_parser("predict", help="predict on image files or folders")
    predict.add_argument("checkpoint")
    predict.add_argument("inputs", nargs="+", help="image files or folders of images")
    predict.add_argument("--out", default="predictions", help="output folder")
    predict.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize to H W for the network (default: the training size)",
    )
    predict.set_defaults(handler=run_predict)

    fit = commands.add_parser(
        "fit-inverseform", help="train the inverse-transformation network on GT boundaries"
    )
    fit.add_argument("config", nargs="?", help="TOML file of fit options (optional)")
    fit.add_argument("overrides", nargs="*", help="key=value fit options")
    fit.set_defaults(handler=run_fit_inverseform)

    experiment = commands.add_parser(
        "experiment", help="run a grid of arms × seeds and summarise it (tables, plots)"
    )
    experiment.add_argument("grid", help="grid TOML file ([grid] and [arms.NAME] tables)")
    experiment.add_argument(
        "--summary-only", action="store_true", help="only rebuild tables, plots and pictures"
    )
    experiment.set_defaults(handler=run_experiment)

    data = commands.add_parser("data", help="download and verify a dataset")
    data.add_argument("dataset", help="a dataset with a download (nyuv2: the labelled .mat)")
    data.add_argument("--root", help="folder to put the file in (default: the dataset's)")
    data.add_argument("--url", help="where to download from (default: the official URL)")
    data.add_argument("--sha256", default="", help="expected SHA-256 of the file (optional)")
    data.add_argument("--retries", type=int, default=3, help="resumes after a dropped connection")
    data.set_defaults(handler=run_data)

    info = commands.add_parser("info", help="list tasks, datasets and encoders")
    info.add_argument("--encoders", default="resnet*", help="glob filter for timm encoders")
    info.set_defaults(handler=run_info)
    return parser


def run_train(args: argparse.Namespace, console: Console) -> int:
    from dense.config import load_config
    from dense.trainer import train

    config = load_config(args.config, args.overrides)
    check_folder_target(config.run_dir, "run.out_dir/run.name")
    result = train(config, resume=args.resume, overwrite=args.overwrite, console=console)
    console.print(f"run directory: {result.run_dir}  (step {result.step})")
    return 0


def run_eval(args: argparse.Namespace, console: Console) -> int:
    from dense import distributed
    from dense.assemble import load_trained
    from dense.data import build_dataset, eval_loader
    from dense.evaluate import evaluate
    from dense.progress import metrics_table

    if args.out:
        check_file_target(Path(args.out), "--out")
    trained = load_trained(args.checkpoint, args.overrides)
    config = trained.config
    split = args.split or config.data.val_split
    dataset = build_dataset(config.data, split)
    context = distributed.Context(0, 1, 0, distributed.resolve_device(config.run.device))
    model = trained.model.to(context.device)
    loader = eval_loader(dataset, config.data, context)
    metrics = evaluate(model, trained.tasks, loader, context.device, console=console)
    console.print(metrics_table(metrics, f"{args.checkpoint} on {config.data.dataset}/{split}"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"step": trained.step, **metrics}, indent=2))
    return 0


def run_predict(args: argparse.Namespace, console: Console) -> int:
    from dense.assemble import load_trained
    from dense.predict import check_readable, find_images, predict_files

    if args.size and min(args.size) < 1:
        raise DenseError(f"--size {args.size[0]} {args.size[1]}: both must be at least 1")
    out = Path(args.out)
    check_folder_target(out, "--out")
    trained = load_trained(args.checkpoint)
    paths = find_images(args.inputs, out, list(trained.tasks))
    check_readable(paths)
    size = tuple(args.size) if args.size else None
    written = predict_files(trained, paths, out, size)
    console.print(f"{len(paths)} image(s) → {len(written)} file(s) in {args.out}")
    return 0


def run_fit_inverseform(args: argparse.Namespace, console: Console) -> int:
    from dense.inverseform.fit import fit_inverse_net, load_fit_config, sweep_picture
    from dense.inverseform.sweep import summary_lines

    config_file = args.config
    overrides = list(args.overrides)
    if config_file and "=" in config_file:  # only overrides were given
        overrides.insert(0, config_file)
        config_file = None
    config = load_fit_config(config_file, overrides)
    report = fit_inverse_net(config, console)
    names = {4: "sx sy tx ty", 6: "a11 a12 tx a21 a22 ty", 8: "h11..h32"}[config.parameters]
    errors = " ".join(f"{e:.4f}" for e in report["mae_per_parameter"])
    console.print(f"held-out mean abs error ({names}): {errors}")
    console.print(
        f"held-out Spearman(distance, magnitude): {report['spearman_distance_vs_magnitude']:.3f}"
    )
    for line in summary_lines(report["sweep"]):
        console.print(line)
    console.print(f"saved {config.out} and {sweep_picture(Path(config.out))}")
    return 0


def run_experiment(args: argparse.Namespace, console: Console) -> int:
    from dense.experiment import load_grid, run_grid, write_pictures, write_plots, write_tables

    grid = load_grid(args.grid)
    check_folder_target(grid.folder, "grid.out_dir/grid.name")
    if not args.summary_only:
        run_grid(grid, console)
    table = write_tables(grid, console)
    plots = write_plots(grid)
    pictures = write_pictures(grid)
    console.print(
        f"results: {table}, {len(plots)} plot(s), {len(pictures)} picture(s) in {grid.folder}"
    )
    return 0


def run_data(args: argparse.Namespace, console: Console) -> int:
    from dense.download import download, file_sha256
    from dense.registry import DATASETS

    spec = getattr(DATASETS.get(args.dataset), "DOWNLOAD", None)
    if not isinstance(spec, Download):
        raise DenseError(f"dataset '{args.dataset}' has nothing to download")
    root = Path(args.root or spec.root)
    destination = root / spec.filename
    url = args.url or spec.url
    if args.retries < 0:
        raise DenseError(f"--retries {args.retries}: give 0 or more")
    if urlsplit(url).scheme not in ("http", "https", "ftp", "file"):
        raise DenseError(f"--url {url}: give a full address (http://, https://, ftp:// or file://)")
    check_folder_target(root, "--root")
    if destination.is_file():
        console.print(f"{destination} is already there; verifying it")
        count = spec.verify(destination)
    else:
        console.print(f"downloading {url}")
        try:
            download(url, destination, args.sha256, args.retries, console=console)
        except DenseError as error:
            raise DenseError(
                f"{error}. If the download keeps failing, fetch {spec.filename} yourself (from "
                f"{url}, e.g. in a browser) and put it at {destination}"
            ) from None
        count = verify_download(destination, spec)
    console.print(f"{destination}: {count} samples, layout verified")
    console.print(f"sha256 {file_sha256(destination)}")
    return 0


def verify_download(path: Path, spec: Download) -> int:
    """Verify a fresh download; one that fails is renamed ``.invalid`` (not kept as the file)."""
    try:
        return spec.verify(path)
    except DenseError as error:
        invalid = path.with_name(path.name + ".invalid")
        path.replace(invalid)
        raise DenseError(f"{error}; the downloaded file was moved to {invalid}") from None


def check_folder_target(folder: Path, option: str) -> None:
    """Refuse a folder to write into that exists as a file or lies below a file."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise DenseError(f"{option} {folder}: {path} is a file, not a folder")
            return


def check_file_target(path: Path, option: str) -> None:
    """Refuse a file to write that is a folder or lies below a file."""
    if path.is_dir():
        raise DenseError(f"{option} {path} is a folder; give a file name")
    check_folder_target(path.parent, option)


def run_info(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    import timm
    from rich.table import Table

    from dense.registry import DATASETS, TASKS

    for title, registry in (("tasks", TASKS), ("datasets", DATASETS)):
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("options (default)")
        for name, cls in registry:
            options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config))
            table.add_row(name, options)
        console.print(table)
    encoders = timm.list_models(args.encoders)
    console.print(
        f"timm encoders matching '{args.encoders}' ({len(encoders)}): {' '.join(encoders)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
