"""Command line: ``snlad train | test | predict | calibrate | export | experiment | probe | report | figure``.

A thin layer over :mod:`snlad.api`: each subcommand's parser names its
handler, which calls one api function and prints what it returned. A
user-fixable problem prints one line, ``snlad: error: ...``, and exits 2;
Ctrl-C (or SIGTERM) keeps what was done and exits 130. ``--debug`` shows the
full traceback instead. ``snlad predict`` exits 3 (partial failure) when it
skipped unreadable files but scored the others; each skipped file is listed
on stderr. Exit codes: 0 ok, 2 error, 3 partial, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch

from snlad import IGNORED_OMP_NUM_THREADS, __version__, api, end_start_up
from snlad.api import (
    BACKBONE_NAMES,
    MAP_DTYPES,
    MAP_RESOLUTIONS,
    MODEL_NAMES,
    RESUMABLE_SETTINGS,
    RULES,
    Config,
    Run,
    TrainingInterrupted,
)
from snlad.cli import report as cli_report
from snlad.cli.options import Commands, run_option
from snlad.device import usable_cores
from snlad.errors import SnladError, notice, one_line
from snlad.scoring.metrics import percent

PARTIAL_FAILURE = 3  # predict skipped unreadable files and scored the rest
BATCH_HELP = "images per batch (default 8); speed and memory only, the results do not change"


def _names(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


class OneLineParser(argparse.ArgumentParser):
    """argparse with snlad's one-line error instead of its usage block (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"snlad: error: {message} (see {self.prog} --help)\n")


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative(text: str) -> int:
    return _whole_number(text, 0)


def global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--debug, --quiet and --threads, before or after the subcommand (``suppress``: a subcommand's copy keeps the top's value)."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--debug", action="store_true", help="show full tracebacks", **default)
    parser.add_argument("--quiet", action="store_true", help="no progress bars", **default)
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="compute threads (default: one per core); when several jobs share a machine, give each its share",
        **default,
    )


def _category_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--category`` (comma-separated where several make sense); ``--categories`` is the same option."""
    parser.add_argument("--category", help=help_text)
    parser.add_argument("--categories", dest="category", help=argparse.SUPPRESS)


def _add_train(commands: Commands) -> None:
    parser = commands.add(
        "train",
        summary="train a model (multi-class by default)",
        description="Train one multi-class model on the union of the categories' normal training images (or one model per category with --one-class). "
        "Prints one line per epoch; writes RUN/model.pt, config.yaml, train_log.csv (loss and each term per epoch) and keeps checkpoint.pt for --resume.",
        handler=_train,
    )
    parser.add_argument("--data", required=True, help="data root (MVTec AD, VisA or plain-folder layout)")
    parser.add_argument("--out", required=True, help="run directory to write (model.pt, config.yaml, train_log.csv)")
    _category_options(parser, "comma-separated categories (default: all under --data)")
    parser.add_argument(
        "--model", choices=MODEL_NAMES, default=None, help="model (default: snl-fd, or the config file's)"
    )
    parser.add_argument(
        "--teacher",
        choices=BACKBONE_NAMES,
        help="teacher backbone (default: efficientnet_lite2, efficientnet_lite0 for patchcore)",
    )
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted (or finished) run in --out with its stored settings (repeating the original options is fine); "
        f"only {', '.join(RESUMABLE_SETTINGS)} may change, e.g. --set train.epochs=40 trains on to 40 epochs; any other change is refused by name",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument(
        "--drop-checkpoint",
        action="store_true",
        help="delete the training state (checkpoint.pt, about 3x the model) once model.pt is written; the run can then not be resumed with more epochs",
    )


def _train(args: argparse.Namespace) -> None:
    if args.resume:
        identity = (args.model, args.config, args.teacher, args.teacher_weights, args.category)
        requested = None
        if any(identity):
            requested = _requested_config(args)
        config, one_class = api.resume_config(run=args.out, overrides=args.set, requested=requested)
        if args.one_class and not one_class:
            raise SnladError(f"--resume: {args.out} is a multi-class run; drop --one-class")
    else:
        config = _requested_config(args)
        one_class = args.one_class
    api.train(
        config=config,
        data=args.data,
        out=args.out,
        one_class=one_class,
        resume=args.resume,
        overwrite=args.overwrite,
        drop_checkpoint=args.drop_checkpoint,
    )
    kept = (
        ""
        if args.drop_checkpoint or config.model.name == "patchcore"  # a built memory bank has nothing to continue
        else "; checkpoint.pt is kept for `--resume --set train.epochs=N` (delete it, or train with --drop-checkpoint, if you will not continue)"
    )
    print(f"trained {config.model.name} on {', '.join(config.data.categories)} -> {args.out}{kept}")


def _requested_config(args: argparse.Namespace) -> Config:
    """The config ``snlad train``'s options describe (--model, --config, --set, --teacher, ...)."""
    return api.resolve_config(
        model=args.model,
        config_file=args.config,
        overrides=args.set,
        teacher=args.teacher,
        teacher_weights=args.teacher_weights,
        categories=_names(args.category),
    )


def _map_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="map.KEY=VALUE",
        help="score with another anomaly map, e.g. --set map.beta=2 (repeatable; map.* only)",
    )


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda[:N]",
        help="where the model runs: auto (default; a GPU where this machine has one), cpu or cuda[:N], whatever the run was trained on",
    )


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    _device_option(parser)
    parser.add_argument("--batch-size", type=_positive_int, default=8, help=BATCH_HELP)
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
    parser.add_argument(
        "--runtime",
        choices=api.RUNTIMES,
        default="torch",
        help="what scores: torch (default), or the run's graph in onnxruntime / openvino (faster on a CPU; docs/scaling.md)",
    )
    parser.add_argument(
        "--exported",
        metavar="FILE",
        help="a graph of this run written by `snlad export` (.onnx, or OpenVINO .xml, e.g. int8)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "mixed"),
        default="fp32",
        help="openvino only: bf16 (moves the maps slightly), or mixed (bf16 but the teacher's first stage and "
        "the scoring in fp32: maps within 1 %% of fp32's range on realad)",
    )


def _add_test(commands: Commands) -> None:
    parser = commands.add(
        "test",
        summary="evaluate a run on test images",
        description="Evaluate a run on the test split; writes metrics.csv, metrics.json, metrics.md and test_scores.csv into the run "
        "(interrupted: the scores so far in test_scores.partial.csv). Besides AUROC, AP, F1-max and AUPRO (threshold-free), "
        "each calibrated category gets the accuracy, precision, recall and F1 of its stored image threshold. "
        "The files hold fractions, the printed table percentages.",
        handler=_test,
    )
    run_option(parser)
    parser.add_argument(
        "--data",
        help="data root with test images (and masks, where there are); default: the root the run was trained on",
    )
    _category_options(parser, "comma-separated subset of the run's categories")
    _map_settings(parser)
    parser.add_argument("--out", help="write the metrics files here instead of into the run (never into another run)")
    parser.add_argument("--overwrite", action="store_true", help="replace metrics files written earlier in --out")
    _add_speed_options(parser)


def _scoring(args: argparse.Namespace) -> api.ScoringOptions:
    """``--device``, the speed options and ``--set map.*`` of test and predict."""
    return api.ScoringOptions(
        device=args.device,
        batch_size=args.batch_size,
        micro_batch=args.micro_batch,
        compile=args.compile,
        map_settings=tuple(args.set),
        runtime=args.runtime,
        exported=args.exported,
        precision=args.precision,
    )


def _test(args: argparse.Namespace) -> None:
    per_category = api.test(
        run=args.run,
        data=args.data,
        categories=_names(args.category),
        out=args.out,
        overwrite=args.overwrite,
        scoring=_scoring(args),
    )
    print(api.metrics_table(per_category=per_category), end="")


def _add_validate(commands: Commands) -> None:
    parser = commands.add(
        "validate",
        summary="score a run on validation data: real defects (--real-defects) and/or held-out normals + synthetic anomalies",
        description="Score a run where settings are chosen, never on the test split. --real-defects ROOT: the real good and "
        "defective images of ROOT's test split (e.g. ../shared/data/realad-val, disjoint from realad's test split), for the "
        "categories ROOT shares with the run; ROOT's train/ is not read; writes RUN/validation-real.json and .md. --data ROOT: "
        "the normal training images the run held back, and copies of them with a square pasted from another category's "
        "training image (cross-class cut-paste); writes RUN/validation.json and .md. Give either or both.",
        handler=_validate,
    )
    run_option(parser)
    parser.add_argument("--data", help="the data root the run was trained on (synthetic validation)")
    parser.add_argument(
        "--real-defects", metavar="ROOT", help="a root of real defects disjoint from the test split (real validation)"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="images per forward pass (default 8)")
    _device_option(parser)
    _map_settings(parser)
    parser.add_argument(
        "--out", help="--real-defects only: write its files here instead of into the run (never into another run)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace validation files written earlier in --out")


def _validate(args: argparse.Namespace) -> None:
    if args.data is None and args.real_defects is None:
        raise SnladError(
            "say what to validate on: --real-defects ROOT (real defects), --data ROOT (synthetic), or both"
        )
    if (args.set or args.out) and args.data is not None:
        raise SnladError("--set and --out go with --real-defects only (synthetic validation scores the run as trained)")
    run = Run(Path(args.run))
    if args.real_defects is not None:
        results = api.validate_real(
            run=args.run,
            data=args.real_defects,
            batch_size=args.batch_size,
            device=args.device,
            map_settings=tuple(args.set),
            out=args.out,
            overwrite=args.overwrite,
        )
        mean = results["mean"]
        print(f"validation (real defects, {_summary(mean)}) -> {Run(Path(args.out or args.run)).real_validation_md}")
    if args.data is not None:
        mean = api.validate(run=args.run, data=args.data, device=args.device)["mean"]
        print(f"validation (held-out normals + cut-paste, {_summary(mean)}) -> {run.validation_md}")


def _summary(mean: dict[str, float]) -> str:
    """I-AUROC / P-AUROC / AUPRO of a mean row in percent; a metric no category has is n/a."""
    return ", ".join(
        f"{label} {percent(mean[key])}"
        for key, label in (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))
    )


def _add_predict(commands: Commands) -> None:
    parser = commands.add(
        "predict",
        summary="score new images",
        description="Score images: writes OUT/scores.csv (image, output, score[, is_anomalous]), OUT/maps/<output>.npy (the anomaly map), "
        "OUT/overlays/<output>.png (the map over the image; blue = typical normal, yellow-orange = the decision threshold) and, "
        "for a calibrated --category, OUT/masks/<output>.png (255 = defect). <output> is the image's path below the folder all "
        "inputs share, without its suffix: the input's sub-folders are mirrored (crack/000, good/000; scores.csv says which).",
        handler=_predict,
    )
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    run_option(parser)
    parser.add_argument(
        "--out", required=True, help="output directory (refused if it holds an earlier prediction, unless --overwrite)"
    )
    _category_options(parser, "category of the images: picks the model of a one-class run and the decision thresholds")
    parser.add_argument(
        "--maps",
        choices=MAP_RESOLUTIONS,
        default="original",
        help="original (default): maps, overlays and masks at each image's size (a float32 map is 4 bytes per pixel: 96 MB for 6000 x 4000); "
        "model: all at the model's size (cheap for huge images); none: no .npy files",
    )
    parser.add_argument("--map-dtype", choices=MAP_DTYPES, default="float32", help="float16 halves the .npy files")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier prediction in --out (only the files predict writes)",
    )
    _map_settings(parser)
    _add_speed_options(parser)


def _predict(args: argparse.Namespace) -> int | None:
    rows, failed = api.predict(
        run=args.run,
        images=args.inputs,
        out=args.out,
        category=args.category,
        maps=args.maps,
        map_dtype=args.map_dtype,
        overwrite=args.overwrite,
        scoring=_scoring(args),
    )
    for path, error in failed:
        print(f"skipped {path}: {error}", file=sys.stderr)
    if failed and not rows:
        raise SnladError(f"none of the {len(failed)} input files could be read (each is listed above)")
    print(f"scored {len(rows)} image{'s' if len(rows) != 1 else ''} -> {Path(args.out) / 'scores.csv'}")
    if failed:
        print(
            f"snlad: {len(failed)} of {len(rows) + len(failed)} files could not be read and were skipped (listed above)",
            file=sys.stderr,
        )
        return PARTIAL_FAILURE
    return None


def _add_export(commands: Commands) -> None:
    parser = commands.add(
        "export",
        summary="export a run's model as one ONNX, TorchScript or OpenVINO graph",
        description="Write one graph from images (float32 B x 3 x S x S, RGB in [0, 1]) to anomaly maps (B x S x S) and scores (B): "
        "teacher, student, map and smoothing included; the category's thresholds travel as metadata.",
        handler=_export,
    )
    run_option(parser)
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript", "openvino"))
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="int8: openvino only, quantised with NNCF on the run's held-out normal training images (under --data)",
    )
    parser.add_argument("--data", help="data root for int8 calibration (default: the root the run was trained on)")
    parser.add_argument(
        "--out",
        required=True,
        help="file to write, e.g. model.onnx, or model.xml (+ model.bin) for openvino (refused if it exists, unless --overwrite)",
    )
    _category_options(
        parser,
        "category whose model (one-class run) and thresholds to embed; without it a multi-class file has no thresholds",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _export(args: argparse.Namespace) -> None:
    path = api.export(
        run=args.run,
        fmt=args.format,
        out=args.out,
        category=args.category,
        overwrite=args.overwrite,
        precision=args.precision,
        data=args.data,
    )
    print(f"exported -> {path}")


def _add_calibrate(commands: Commands) -> None:
    parser = commands.add(
        "calibrate",
        summary="recompute a run's decision thresholds",
        description="Recompute the image and pixel thresholds of a run (stored in its model.pt) from held-out normals (--split train), "
        "synthetic cut-paste anomalies, or a labelled split. Rules in docs/thresholds.md; never calibrate on the split you report results on. "
        "Training already stored thresholds: replacing them needs --overwrite, and each category's old -> new values and the file "
        "changed are printed. A category calibrated on fewer than 10 normal images gets a note: its thresholds are noisy.",
        handler=_calibrate,
    )
    run_option(parser)
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
        choices=RULES,
        help="max (default): the largest normal score and pixel; quantile: a quantile of them (--quantile 1.0, the default, is max); "
        "synthetic-f1: F1-optimal against cut-paste anomalies made from the normals; f1: F1-optimal on labelled defects (--split test)",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=1.0,
        help="rule quantile: the quantile of normal scores and pixels (default 1.0 = the max rule)",
    )
    parser.add_argument("--margin", type=float, default=0.0, help="normal-based rules: threshold x (1 + margin)")
    _category_options(parser, "comma-separated subset of the run's categories")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the thresholds the run already holds (training stores some); later predictions and reports use the new ones",
    )
    _device_option(parser)


def _calibrate(args: argparse.Namespace) -> None:
    results = api.calibrate(
        run=args.run,
        data=args.data,
        split=args.split,
        rule=api.Rule(name=args.rule, quantile=args.quantile, margin=args.margin),
        categories=_names(args.category),
        overwrite=args.overwrite,
        device=args.device,
    )
    for category, result in results.items():
        normals, old = len(result["normal_scores"]), result["previous"] or {}
        image, pixel = (
            f"{old[key]:.6g} -> {result[key]:.6g}" if key in old else f"{result[key]:.6g}"
            for key in ("threshold", "pixel_threshold")
        )
        was = f", was {old['rule']}" if old else ""
        print(
            f"{category}: image threshold {image}, pixel threshold {pixel} ({result['rule']}{was}; "
            f"{normals} normal image{'s' if normals != 1 else ''} + {result['anomalous_images']} anomalous) -> {result['file']}"
        )


def _add_experiment(commands: Commands) -> None:
    parser = commands.add(
        "experiment",
        summary="train and test a list of configurations; write comparison tables",
        description="Run an experiment file (configs/experiments/*.yaml): every configuration x seed x mode is trained and tested into "
        "OUT/<mode>/<name>/seed<k>, then validated on held-out normals + cross-class cut-paste (unless the file says validate: "
        "false); finished runs are skipped, interrupted ones resumed. Writes OUT/results-<mode>.md and .csv (test sets) and "
        "OUT/results-<mode>-validation.md and .csv (validation sets: choose settings on these).",
        handler=_experiment,
    )
    parser.add_argument("--experiment", required=True, help="experiment YAML, e.g. configs/experiments/cpu.yaml")
    parser.add_argument("--data", required=True, help="data root")
    parser.add_argument("--out", required=True, help="output directory")
    _category_options(
        parser,
        "comma-separated categories (default: the file's top-level categories or settings' data.categories, else all)",
    )
    parser.add_argument("--only", help="comma-separated configuration names to run (default: all)")
    parser.add_argument("--seeds", help="comma-separated seeds to run (default: the file's)")
    parser.add_argument("--modes", help="comma-separated modes to run: multi-class, one-class (default: the file's)")
    parser.add_argument(
        "--real-defects",
        metavar="ROOT",
        help="also validate every run on ROOT's real defects (e.g. ../shared/data/realad-val, disjoint from the test split); "
        "tables OUT/results-<mode>-realval.md and OUT/summary-<mode>.md (validation beside test)",
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="train nothing; rewrite the tables from finished runs"
    )


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``; anything else is one line naming the option, not a ValueError."""
    try:
        seeds = [int(seed) for seed in _names(text) or []]
    except ValueError:
        seeds = []
    if not seeds or not all(api.is_seed(seed) for seed in seeds):
        raise SnladError(f"--seeds must be comma-separated whole numbers in [0, {api.MAX_SEED}], got {text!r}")
    return seeds


def _experiment(args: argparse.Namespace) -> None:
    seeds = _seeds(args.seeds) if args.seeds else None
    tables = api.experiment(
        file=args.experiment,
        data=args.data,
        out=args.out,
        selection=api.ExperimentSelection(
            only=_names(args.only), seeds=seeds, modes=_names(args.modes), categories=_names(args.category)
        ),
        real_defects=args.real_defects,
        tables_only=args.tables_only,
    )
    for mode, path in tables.items():
        print(f"{mode}: {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="snlad", description="Multi-class anomaly detection with structural teacher-student normality learning."
    )
    parser.add_argument("--version", action="version", version=f"snlad {__version__}")
    global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, suppress=True)
    commands = Commands(parser.add_subparsers(dest="command", required=True), common)
    for add in (
        _add_train,
        _add_test,
        _add_validate,
        _add_predict,
        _add_experiment,
        _add_export,
        _add_calibrate,
        cli_report.add_commands,
    ):
        add(commands)
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _set_threads(threads: int) -> None:
    """``--threads N``, at most the cores this process may run on: more only wait on each other (999 took minutes to stop)."""
    cores = usable_cores()
    if threads > cores:
        raise SnladError(f"--threads {threads}: snlad may run on {cores} core(s) here; use at most {cores}")
    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    end_start_up()  # from here Ctrl-C is a KeyboardInterrupt, handled below
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a scheduler's stop saves state like Ctrl-C
    if IGNORED_OMP_NUM_THREADS is not None:
        notice(
            f"OMP_NUM_THREADS={IGNORED_OMP_NUM_THREADS!r} is not a number of threads and is ignored (use --threads N)"
        )
    try:
        if args.threads:
            _set_threads(args.threads)
        with warnings.catch_warnings():
            if not args.debug:  # EXIF and format quirks of files Pillow still reads: nothing for the user to do
                warnings.filterwarnings("ignore", module=r"PIL\.")
            with api.show_progress(not args.quiet):
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
        print(f"snlad: interrupted{_kept(args)}", file=sys.stderr)
        return 130
    return status or 0


def _kept(args: argparse.Namespace) -> str:
    """What Ctrl-C kept: training's last checkpoint (also outside a step), predict's and test's scores so far."""
    if args.command == "predict" and (Path(args.out) / "scores.csv").is_file():
        return f"; scores of the images done so far are in {Path(args.out) / 'scores.csv'}"
    if args.command == "test" and Run(Path(args.out or args.run)).partial_test_scores.is_file():
        return f"; scores of the images done so far are in {Run(Path(args.out or args.run)).partial_test_scores}"
    if args.command == "train" and any(folder.checkpoint.exists() for folder in Run(Path(args.out)).model_dirs()):
        return f"; the last saved state in {args.out} is kept: continue with `snlad train --data {args.data} --out {args.out} --resume`"
    return ""
