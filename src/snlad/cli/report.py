"""Command line of the analyses: ``snlad probe mixup|cutpaste``, ``snlad report``, ``snlad figure onevsmulti``.

Kept apart from :mod:`snlad.cli` so the training commands stay short; the
main CLI registers these parsers, each of which names its handler.
"""

from __future__ import annotations

import argparse

from snlad import api
from snlad.cli.options import Commands
from snlad.data.synthesis import DEFAULT_LAMBDAS
from snlad.errors import SnladError
from snlad.scoring.metrics import percent


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", action="append", required=True, help="run directory (repeatable: one per model to compare)"
    )
    parser.add_argument(
        "--data", required=True, help="data root; the probes use its defect-free TEST images, never training images"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the numpy generator that picks pairs and places (default 0)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="images per batch (default 8); speed and memory only, the results do not change",
    )
    parser.add_argument("--out", required=True, help="output directory for the CSV, JSON and PNG files")


def _add_probe(commands: Commands) -> None:
    probes = commands.group(
        "probe",
        summary="cross-class interference probes (mixup, cut-paste)",
        description="Synthetic anomalies made of another class's normal content (paper Fig. 2).",
    )
    mixup = probes.add(
        "mixup",
        summary="blend two categories' normal images",
        description="Anomalies (1 - lambda) * base + lambda * other from both categories' good test images; writes mixup.csv/json (AUROC normal vs mixture per lambda), mixup_auroc.png, mixup_scores.png, mixup_examples.png.",
        handler=_mixup,
    )
    _add_common(mixup)
    mixup.add_argument("--base", required=True, help="category whose normals are the negatives and whose model scores")
    mixup.add_argument("--other", required=True, help="category blended in")
    mixup.add_argument(
        "--lambdas",
        type=_floats,
        default=DEFAULT_LAMBDAS,
        help="comma-separated ratios in [0, 1] (default 0.1,...,0.9)",
    )
    mixup.add_argument(
        "--pairs",
        type=int,
        default=40,
        help="(base, other) image pairs, drawn without replacement (default 40; all when fewer)",
    )
    cutpaste = probes.add(
        "cutpaste",
        summary="paste one category's patches onto another",
        description="A square cut from a good test image of --source pasted at a random place onto good test images of each --target; writes cutpaste.csv/json (image AUROC, pixel AUROC, AUPRO), cutpaste_metrics.png and cutpaste_examples_<target>.png.",
        handler=_cutpaste,
    )
    _add_common(cutpaste)
    cutpaste.add_argument("--source", required=True, help="category the patches are cut from")
    cutpaste.add_argument("--target", type=_names, required=True, help="comma-separated categories pasted onto")
    cutpaste.add_argument(
        "--patch-size", type=float, default=0.15, help="patch side as a fraction of the image side (default 0.15)"
    )
    cutpaste.add_argument("--count", type=int, default=40, help="synthetic anomalies per target (default 40)")
    cutpaste.add_argument("--examples", type=int, default=4, help="rows of the example figure (default 4)")


def _add_report(commands: Commands) -> None:
    parser = commands.add(
        "report",
        summary="HTML report comparing runs",
        description="Write OUT/index.html (images in OUT/images): metrics, per-category test images with each run's anomaly map, score histograms, ROC curves, and optionally probe results and the one-class vs multi-class figure. Runs must have been tested (`snlad test`).",
        handler=_report,
    )
    parser.add_argument("--run", action="append", required=True, help="run directory (repeatable)")
    parser.add_argument("--data", required=True, help="data root the runs were tested on")
    parser.add_argument(
        "--out", required=True, help="output directory (refused if it holds a report, unless --overwrite)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    parser.add_argument("--probes", action="append", default=[], help="output directory of `snlad probe` (repeatable)")
    parser.add_argument("--experiment-dir", help="output directory of `snlad experiment` (results-<mode>.csv)")
    parser.add_argument(
        "--examples", type=int, default=3, help="defective test images shown per category, plus one good (default 3)"
    )


def _add_figure(commands: Commands) -> None:
    figures = commands.group(
        "figure",
        summary="paper figures from experiment results",
        description="Figures drawn from finished experiments.",
    )
    onevsmulti = figures.add(
        "onevsmulti",
        summary="I-AUROC and P-AUROC bars, one-class vs multi-class (paper Fig. 1)",
        description="Bars per configuration from OUT/results-one-class.csv and OUT/results-multi-class.csv: mean over categories and seeds, error bars = std over seeds.",
        handler=_onevsmulti,
    )
    onevsmulti.add_argument("--experiment-dir", required=True, help="output directory of `snlad experiment`")
    onevsmulti.add_argument("--out", required=True, help="PNG file to write")
    onevsmulti.add_argument(
        "--only",
        type=lambda text: [name for name in text.split(",") if name],
        help="comma-separated configurations to draw, in this order (default: every one the tables hold)",
    )


def add_commands(commands: Commands) -> None:
    _add_probe(commands)
    _add_report(commands)
    _add_figure(commands)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise SnladError(f"{name} must be at least 1, got {value}")


def _seed(value: int) -> None:
    if not api.is_seed(value):
        raise SnladError(f"--seed must be in [0, {api.MAX_SEED}], got {value}")


METRICS_IN_PERCENT = ("image_auroc", "pixel_auroc", "aupro")


def _print_rows(rows: list[dict], keys: tuple[str, ...], out: str) -> None:
    """One line per row; metrics in percent like every table printed for people (the CSV and JSON hold fractions)."""
    for row in rows:
        print(row["run"], *(_shown(key, row[key]) for key in keys))
    print(f"-> {out}")


def _shown(key: str, value: object) -> str:
    if key in METRICS_IN_PERCENT and isinstance(value, float):
        return f"{key}={percent(value)} %"
    return f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"


def _common_settings(args: argparse.Namespace, count_option: str, count: int) -> dict[str, int]:
    """The settings every probe takes from :func:`_add_common` (``--seed``, ``--batch-size``), checked with its ``count``."""
    _positive("--batch-size", args.batch_size)
    _positive(count_option, count)
    _seed(args.seed)
    return {"seed": args.seed, "batch_size": args.batch_size}


def _mixup(args: argparse.Namespace) -> None:
    settings = api.MixupSettings(
        **_common_settings(args, "--pairs", args.pairs),
        base=args.base,
        other=args.other,
        lambdas=args.lambdas,
        pairs=args.pairs,
    )
    rows = api.probe_mixup(runs=args.run, data=args.data, settings=settings, out=args.out)
    _print_rows(rows, ("lambda", "image_auroc"), args.out)


def _cutpaste(args: argparse.Namespace) -> None:
    settings = api.CutPasteSettings(
        **_common_settings(args, "--count", args.count),
        source=args.source,
        targets=args.target,
        patch_size=args.patch_size,
        count=args.count,
        examples=args.examples,
    )
    rows = api.probe_cutpaste(runs=args.run, data=args.data, settings=settings, out=args.out)
    _print_rows(rows, ("target", "image_auroc", "pixel_auroc", "aupro"), args.out)


def _report(args: argparse.Namespace) -> None:
    _positive("--examples", args.examples)
    print(
        api.report(
            runs=args.run,
            data=args.data,
            out=args.out,
            probe_dirs=args.probes,
            experiment_dir=args.experiment_dir,
            examples=args.examples,
            overwrite=args.overwrite,
        )
    )


def _onevsmulti(args: argparse.Namespace) -> None:
    print(api.figure_onevsmulti(experiment_dir=args.experiment_dir, out=args.out, configurations=args.only))
