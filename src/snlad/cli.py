"""Command line: ``snlad train | test | predict``, thin over :mod:`snlad.api`.

A user-fixable problem prints one line, ``snlad: error: ...``, and exits 2;
Ctrl-C during training saves a resumable state and exits 130. ``--debug``
shows the full traceback instead. ``snlad predict`` exits 3 (partial failure)
when it skipped unreadable files but scored the others; each skipped file is
listed on stderr. Exit codes: 0 ok, 2 error, 3 partial, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from snlad import api, cli_report
from snlad.backbones import BACKBONE_NAMES
from snlad.config import MODEL_NAMES
from snlad.engine.train import TrainingInterrupted
from snlad.errors import SnladError, one_line

PARTIAL_FAILURE = 3  # predict skipped unreadable files and scored the rest


def _categories(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model (multi-class by default)",
        description="Train one multi-class model on the union of the categories' normal training images (or one model per category with --one-class).",
    )
    parser.add_argument("--data", required=True, help="data root (MVTec AD, VisA or plain-folder layout)")
    parser.add_argument("--out", required=True, help="run directory to write (model.pt, config.yaml, train_log.csv)")
    parser.add_argument("--categories", help="comma-separated categories (default: all under --data)")
    parser.add_argument(
        "--model", choices=MODEL_NAMES, default=None, help="model (default: snl-fd, or the config file's)"
    )
    parser.add_argument("--teacher", choices=BACKBONE_NAMES, help="teacher backbone (default efficientnet_lite0)")
    parser.add_argument(
        "--teacher-weights", help="teacher state dict (required for resnet18 / wide_resnet50_2, torchvision format)"
    )
    parser.add_argument("--config", help="YAML file with sections data/model/loss/map/train")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=5 (repeatable)",
    )
    parser.add_argument("--one-class", action="store_true", help="train one model per category instead of one for all")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> None:
    config = api.resolve_config(
        args.model, args.config, args.set, args.teacher, args.teacher_weights, _categories(args.categories)
    )
    api.train(
        config,
        args.data,
        args.out,
        one_class=args.one_class,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"trained {config.model.name} on {', '.join(config.data.categories)} -> {args.out}")


def _add_test(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "test",
        help="evaluate a run on test images",
        description="Evaluate a run on the test split; writes metrics.csv, metrics.json, metrics.md and test_scores.csv into the run.",
    )
    parser.add_argument("--run", required=True, help="run directory written by `snlad train`")
    parser.add_argument("--data", required=True, help="data root with test images and masks")
    parser.add_argument("--categories", help="comma-separated subset of the run's categories")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="map.KEY=VALUE",
        help="score with another anomaly map, e.g. --set map.image_score=topk (repeatable; map.* only)",
    )
    parser.add_argument("--out", help="write the metrics files here instead of into the run")
    _add_speed_options(parser)
    parser.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> None:
    per_category = api.test(
        args.run,
        args.data,
        _categories(args.categories),
        args.batch_size,
        not args.quiet,
        args.set,
        args.out,
        args.micro_batch,
        args.compile,
    )
    print(api.metrics_table(per_category), end="")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--micro-batch",
        type=_non_negative,
        metavar="N",
        help="images per forward pass inside a batch (default: 4 at 256 px on a CPU, the whole batch on a GPU; 0 = whole batch); the results do not change",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks first (needs a C++ compiler; ~20 s once, then ~1.1x faster on a CPU)",
    )


def _add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="score new images",
        description="Score images: writes OUT/scores.csv (image,score[,is_anomalous]), OUT/maps/<stem>.npy (float32, original size) and OUT/overlays/<stem>.png.",
    )
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--run", required=True, help="run directory written by `snlad train`")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--category", help="category of the images: picks the model of a one-class run and the decision threshold"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    _add_speed_options(parser)
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int | None:
    rows, failed = api.predict(
        args.run, args.inputs, args.out, args.category, args.batch_size, not args.quiet, args.micro_batch, args.compile
    )
    for path, error in failed:
        print(f"skipped {path}: {error}", file=sys.stderr)
    if failed and not rows:
        raise SnladError(f"none of the {len(failed)} input files could be read (each is listed above)")
    print(f"scored {len(rows)} images -> {args.out}/scores.csv")
    if failed:
        print(
            f"snlad: {len(failed)} of {len(rows) + len(failed)} files could not be read and were skipped (listed above)",
            file=sys.stderr,
        )
        return PARTIAL_FAILURE
    return None


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="export a run's model as one ONNX or TorchScript graph",
        description="Write one graph from images (float32 B x 3 x S x S, RGB in [0, 1]) to anomaly maps (B x S x S) and scores (B): teacher, student, map and smoothing included; thresholds travel as metadata.",
    )
    parser.add_argument("--run", required=True, help="run directory written by `snlad train`")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    parser.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    parser.add_argument("--category", help="category whose model (one-class run) and thresholds to export")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> None:
    print(f"exported -> {api.export(args.run, args.format, args.out, args.category)}")


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="recompute a run's decision thresholds",
        description="Recompute the image and pixel thresholds of a run (stored in its model.pt) from held-out normals (--split train), synthetic cut-paste anomalies, or a labelled split. Rules in docs/thresholds.md; never calibrate on the split you report results on.",
    )
    parser.add_argument("--run", required=True, help="run directory written by `snlad train`")
    parser.add_argument(
        "--data", required=True, help="data root the run was trained on (or a labelled validation root)"
    )
    parser.add_argument(
        "--split",
        default="train",
        choices=("train", "test"),
        help="train: the held-out normals of training (default); test: every image of --data's test split -- give a labelled validation root, not the one you report on",
    )
    parser.add_argument(
        "--rule",
        default="max",
        choices=("max", "quantile", "synthetic-f1", "f1"),
        help="max (default), quantile, synthetic-f1 (cut-paste anomalies from held-out normals), f1 (labelled defects)",
    )
    parser.add_argument(
        "--quantile", type=float, default=1.0, help="rule quantile: quantile of normal scores and pixels"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="normal-based rules: threshold x (1 + margin)")
    parser.add_argument("--categories", help="comma-separated subset of the run's categories")
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> None:
    results = api.calibrate(
        args.run, args.data, args.split, args.rule, args.quantile, args.margin, _categories(args.categories)
    )
    for category, result in results.items():
        print(
            f"{category}: threshold {result['threshold']:.6g}, pixel threshold {result['pixel_threshold']:.6g} ({result['rule']} on {len(result['normal_scores'])} normal + {result['anomalous_images']} anomalous images)"
        )


def _add_experiment(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "experiment",
        help="train and test a list of configurations; write comparison tables",
        description="Run an experiment file (configs/experiments/*.yaml): every configuration x seed x mode is trained and tested into OUT/<mode>/<name>/seed<k>; finished runs are skipped, interrupted ones resumed. Writes OUT/results-<mode>.md and .csv.",
    )
    parser.add_argument("--experiment", required=True, help="experiment YAML, e.g. configs/experiments/cpu.yaml")
    parser.add_argument("--data", required=True, help="data root")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--only", help="comma-separated configuration names to run (default: all)")
    parser.add_argument("--seeds", help="comma-separated seeds to run (default: the file's)")
    parser.add_argument("--modes", help="comma-separated modes to run: multi-class, one-class (default: the file's)")
    parser.add_argument(
        "--tables-only", action="store_true", help="train nothing; rewrite the tables from finished runs"
    )
    parser.set_defaults(handler=_experiment)


def _experiment(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in _categories(args.seeds)] if args.seeds else None
    tables = api.experiment(
        args.experiment,
        args.data,
        args.out,
        _categories(args.only),
        seeds,
        _categories(args.modes),
        args.tables_only,
        not args.quiet,
    )
    for mode, path in tables.items():
        print(f"{mode}: {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snlad", description="Multi-class anomaly detection with structural teacher-student normality learning."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_test(commands)
    _add_predict(commands)
    _add_experiment(commands)
    _add_export(commands)
    _add_calibrate(commands)
    cli_report.add_commands(commands)  # probe, report, figure
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a scheduler's stop saves state like Ctrl-C
    try:
        status = args.handler(args)
    except TrainingInterrupted as error:
        print(f"snlad: {error}", file=sys.stderr)
        return 130
    except SnladError as error:
        if args.debug:
            raise
        print(f"snlad: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snlad: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    return status or 0


def _resume_hint(args: argparse.Namespace) -> str:
    """What Ctrl-C kept: training's last checkpoint (also outside a step), predict's scores so far."""
    if args.command == "predict" and (Path(args.out) / "scores.csv").is_file():
        return f"; scores of the images done so far are in {Path(args.out) / 'scores.csv'}"
    if args.command != "train" or not any(Path(args.out).glob("**/checkpoint.pt")):
        return ""
    return f"; the last saved state in {args.out} is kept: continue with the same command plus --resume"


if __name__ == "__main__":
    sys.exit(main())
