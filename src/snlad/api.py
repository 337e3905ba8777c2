"""The Python API: everything the ``snlad`` command does, as functions of keyword-only arguments; the CLI is a thin layer over them.

```python
from snlad import api
config = api.resolve_config(model="snl-fd", overrides=["train.epochs=20"])
api.train(config=config, data="ROOT", out="runs/mine")
metrics = api.test(run="runs/mine")                 # {category: {metric: value}, "mean": {...}}
detector = api.load(run="runs/mine", category="bottle")  # score images in memory, nothing written
[detection] = detector.score(pil_image)             # also numpy arrays, tensors, paths, or a list of them
detection.score, detection.anomalous, detection.map, detection.mask
```

Each function composes the engine's pieces (index the data, train, calibrate,
save; load, optimise, evaluate, write). Progress bars and per-epoch lines are
on; ``with api.show_progress(False): ...`` turns them off for whatever runs
inside. Models are scored on the ``device`` asked for ("auto": a GPU where
the machine has one), never the one they were trained on. Metrics are
fractions in [0, 1] here and in the files; printed tables show percentages.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from snlad.backbones import BACKBONE_NAMES
from snlad.config import (
    MAX_SEED,
    MODEL_NAMES,
    RESUMABLE_SETTINGS,
    Config,
    MapConfig,
    is_seed,
    load_config,
    merge,
    parse_override,
)
from snlad.data import Sample, holdout_split, index_dataset, list_categories
from snlad.deploy.deployed import calibration_images, deployed_run
from snlad.deploy.export import export as export_graph
from snlad.deploy.runtime import RUNTIMES
from snlad.device import resolve_device, warn_if_oversubscribed
from snlad.engine.calibration import calibrate as calibrate_held_out
from snlad.engine.calibration import recalibrate_run
from snlad.engine.detector import Detection, Detector, ImageLike
from snlad.engine.distributed import DistContext, init_distributed
from snlad.engine.evaluate import evaluate, metrics_markdown, write_metrics, write_metrics_json
from snlad.engine.optimise import optimise_run
from snlad.engine.predict import MAP_DTYPES, MAP_RESOLUTIONS
from snlad.engine.predict import predict as predict_images
from snlad.engine.selection import synthetic_validation, validation_metrics
from snlad.engine.train import TrainingInterrupted, train_model
from snlad.errors import SnladError, notice
from snlad.files import atomic_write_text, ensure_writable, write_json
from snlad.probes import CutPasteSettings, MixupSettings, run_cutpaste, run_mixup
from snlad.progress import show_progress
from snlad.report import build_report, onevsmulti_figure
from snlad.runs.experiments import (
    Experiment,
    check_selection,
    load_experiment,
    planned_runs,
    run_overrides,
    write_mode_tables,
)
from snlad.runs.run import MULTI_CLASS, ONE_CLASS, ModelDir, Run, known_categories, start_training
from snlad.runs.run import resume_config as stored_resume_config
from snlad.runs.trained import TrainedModel, build_scorer, per_model
from snlad.scoring.metrics import percent
from snlad.scoring.thresholds import RULES, Rule

__all__ = [
    "BACKBONE_NAMES",
    "MAP_DTYPES",
    "MAP_RESOLUTIONS",
    "MAX_SEED",
    "MODEL_NAMES",
    "RESUMABLE_SETTINGS",
    "RULES",
    "RUNTIMES",
    "Config",
    "CutPasteSettings",
    "Detection",
    "Detector",
    "ExperimentSelection",
    "ImageLike",
    "MixupSettings",
    "Rule",
    "Run",
    "ScoringOptions",
    "TrainedModel",
    "TrainingInterrupted",
    "calibrate",
    "experiment",
    "export",
    "figure_onevsmulti",
    "is_seed",
    "load",
    "metrics_table",
    "predict",
    "probe_cutpaste",
    "probe_mixup",
    "report",
    "resolve_config",
    "resume_config",
    "run_model",
    "show_progress",
    "test",
    "train",
    "validate",
    "validate_real",
]


@dataclasses.dataclass(frozen=True)
class ScoringOptions:
    """How a run's networks score images (``snlad test`` and ``predict``): where and how fast, and with which map.

    ``device``: "auto" (a GPU where there is one), "cpu" or "cuda[:N]".
    ``batch_size``, ``micro_batch`` (images per forward pass inside a batch;
    None: 4 at 256 px on a CPU, the whole batch on a GPU) and ``compile``
    (torch.compile first) change speed and memory only, never the results.
    ``map_settings`` (e.g. ``("map.beta=2",)``) score the same networks with
    another anomaly map; the thresholds were calibrated for the trained one.
    ``runtime`` "onnxruntime" or "openvino" scores the run's graph there instead
    of PyTorch: the ``exported`` file (``snlad export``, e.g. an int8 IR) or,
    without one, the graph exported in memory; ``precision`` "bf16" or "mixed"
    is OpenVINO's (:mod:`snlad.deploy.runtime`, docs/scaling.md).
    """

    device: str = "auto"
    batch_size: int = 8  # as `--batch-size`: speed and memory only
    micro_batch: int | None = None
    compile: bool = False
    map_settings: tuple[str, ...] = ()
    runtime: str = "torch"
    exported: str | Path | None = None
    precision: str = "fp32"


def _deployed(models: dict[str, TrainedModel], scoring: ScoringOptions) -> dict[str, TrainedModel]:
    """The run's models ready to score in ``scoring.runtime`` (torch: optimised for inference)."""
    if scoring.exported is not None and scoring.map_settings:
        raise SnladError("an exported graph holds the map it was exported with: drop --set map.* or --exported")
    exported = Path(scoring.exported) if scoring.exported is not None else None
    return deployed_run(models, scoring.runtime, exported, scoring.precision, scoring.micro_batch, scoring.compile)


# ---------------------------------------------------------------- training


def resolve_config(
    *,
    model: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    teacher: str | None = None,
    teacher_weights: str | Path | None = None,
    categories: Sequence[str] | None = None,
) -> Config:
    """Preset -> file -> overrides, then the explicit arguments (they win)."""
    extra = list(overrides)
    if teacher is not None:
        extra.append(f"model.teacher={teacher}")
    if teacher_weights is not None:
        extra.append(f"model.teacher_weights='{Path(teacher_weights).resolve()}'")
    config = load_config(model, config_file, extra)
    if categories is not None:
        config.data.categories = list(categories)
    return config


def resume_config(
    *, run: str | Path, overrides: Sequence[str] = (), requested: Config | None = None
) -> tuple[Config, bool]:
    """The stored config of an interrupted (or finished) run, and whether it is one-class; see :func:`snlad.runs.run.resume_config`.

    Only :data:`RESUMABLE_SETTINGS` may change through ``overrides``; a
    ``requested`` config (the original command's --model/--config/...) must agree with the stored one.
    """
    return stored_resume_config(run, tuple(overrides), requested)


def train(
    *,
    config: Config,
    data: str | Path,
    out: str | Path,
    one_class: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    drop_checkpoint: bool = False,
) -> dict[str, TrainedModel]:
    """Train one multi-class model (or one model per category) on ``data`` and write the run directory ``out``.

    The run folder is locked for the whole call. ``resume`` continues an
    interrupted run (``config`` must be its stored config, see :func:`resume_config`;
    the checkpoint refuses any other); ``drop_checkpoint`` deletes the training
    state once ``model.pt`` is written (the run can then not be continued with more epochs).
    """
    run = Run(Path(out))
    samples = index_dataset(data, "train", config.data.categories)
    categories = sorted({s.category for s in samples})
    config.data.categories = categories
    context = init_distributed(resolve_device(config.train.device))  # torchrun: one rank of many
    mode = ONE_CLASS if one_class else MULTI_CLASS
    with run.lock() if context.is_main else contextlib.nullcontext():
        written: list[Path] = []
        try:
            if context.is_main:
                written = start_training(run, config, mode, categories, resume, overwrite, data)
                warn_if_oversubscribed()
            models = _train_models(config, samples, run, mode, context, resume, overwrite, drop_checkpoint)
        except BaseException:
            if context.is_main and not run.model_dirs():
                run.restore_replaced(written)  # the new run saved nothing: the one it was to replace comes back
            elif context.is_main and run.replaced.is_dir():
                notice(f"the run this one replaces is kept in {run.replaced} until this one finishes")
            raise
        if context.is_main:
            run.write_index(mode, categories, finished=True, data_root=data)
            run.drop_replaced()
    return models


def _train_models(
    config: Config,
    samples: Sequence[Sample],
    run: Run,
    mode: str,
    context: DistContext,
    resume: bool,
    overwrite: bool,
    drop_checkpoint: bool,
) -> dict[str, TrainedModel]:
    """The one multi-class model, or one model per category, each trained and saved in its model folder."""
    categories = config.data.categories
    if mode == MULTI_CLASS:
        folder = run.model_dir(mode, categories[0])
        trained = _train_one(config, samples, folder, context, resume, overwrite, drop_checkpoint)
        return dict.fromkeys(categories, trained)
    models = {}
    for category in categories:
        folder = run.model_dir(mode, category)
        category_config = copy.deepcopy(config)
        category_config.data.categories = [category]
        # A category finished before an interruption resumes at its last epoch: nothing left to train.
        sub_resume = resume and folder.checkpoint.exists()
        category_samples = [s for s in samples if s.category == category]
        models[category] = _train_one(
            category_config, category_samples, folder, context, sub_resume, overwrite, drop_checkpoint
        )
    return models


def _train_one(
    config: Config,
    samples: Sequence[Sample],
    folder: ModelDir,
    context: DistContext,
    resume: bool,
    overwrite: bool,
    drop_checkpoint: bool,
) -> TrainedModel:
    """Train on all but the held-out normals, calibrate thresholds on those, save ``model.pt`` (rank 0)."""
    train_samples, held_out = holdout_split(samples, config.data.holdout_fraction, config.train.seed)
    model = train_model(config, train_samples, folder, context, resume, overwrite)
    trained = TrainedModel(config, model, build_scorer(config, model), sorted({s.category for s in samples})).eval()
    if context.is_main:
        trained.calibration = calibrate_held_out(trained, held_out, config)
        trained.save(folder.model)
        if drop_checkpoint:
            folder.checkpoint.unlink(missing_ok=True)
    context.barrier()
    return trained


# ---------------------------------------------------------------- using a run


def run_model(*, run: str | Path, category: str | None = None, device: str = "auto") -> TrainedModel:
    """The model of a run that serves ``category`` (required for a one-class run), on ``device``."""
    return Run(Path(run)).model_for(category, device)


def load(*, run: str | Path, category: str | None = None, device: str = "auto") -> Detector:
    """A run's model ready to score images in memory (:class:`Detector`); ``category`` picks its thresholds.

    Each detection has the image ``score``, the anomaly ``map`` at the image's
    size, and with a calibrated category ``anomalous`` (score > image
    threshold) and the defect ``mask`` (map > pixel threshold), as ``snlad predict`` writes them.
    """
    return Detector(run_model(run=run, category=category, device=device), category)


def _with_map_settings(models: dict[str, TrainedModel], overrides: Sequence[str]) -> dict[str, TrainedModel]:
    """The same trained networks scored with other anomaly-map settings (``map.*`` only; a shared model once)."""
    if not overrides:
        return models
    parsed = [parse_override(text) for text in overrides]
    if any(set(update) != {"map"} for update in parsed):
        names = ", ".join(field.name for field in dataclasses.fields(MapConfig))
        raise SnladError(f"only map.* settings ({names}) can change after training")

    def rescore(trained: TrainedModel) -> TrainedModel:
        config = trained.config
        for text, update in zip(overrides, parsed, strict=True):
            config = merge(config, update, source=f"override '{text}'")
        return dataclasses.replace(trained, config=config, scorer=build_scorer(config, trained.model))

    return per_model(models, rescore)


def test(
    *,
    run: str | Path,
    data: str | Path | None = None,
    categories: Sequence[str] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    scoring: ScoringOptions = ScoringOptions(),
) -> dict[str, dict[str, float]]:
    """Evaluate a run on the test split of ``data``; write metrics files into ``out`` (default: the run).

    Without ``data``, the root the run was trained on (recorded in its run.json), if it is still there.
    Metrics are fractions; each calibrated category also gets the accuracy,
    precision, recall and F1 of its stored image threshold, unless
    ``scoring.map_settings`` change the map the thresholds were calibrated for.
    An ``out`` other than the run never holds another run, and its earlier
    metrics files are replaced only with ``overwrite``.
    """
    source = Run(Path(run))
    models = _with_map_settings(source.load_models(scoring.device), scoring.map_settings)
    models = _deployed(models, scoring)
    if scoring.map_settings:  # the thresholds belong to the trained map: their decisions on another say nothing
        models = {category: dataclasses.replace(trained, calibration={}) for category, trained in models.items()}
    wanted = list(categories) if categories is not None else list(models)
    known_categories(source.path, models, wanted)
    samples = index_dataset(data if data is not None else source.trained_root(), "test", wanted)
    target = Run(Path(out or run))
    if out is not None and target.path.resolve() != source.path.resolve():
        _check_out(target, (target.metrics_csv, target.metrics_json, target.metrics_md, target.test_scores), overwrite)
    ensure_writable(target.path, target.metrics_csv)  # now, not after the whole evaluation
    per_category, rows = evaluate(models, samples, scoring.batch_size, partial=target.partial_test_scores)
    target.partial_test_scores.unlink(missing_ok=True)
    first = next(iter(models.values())).config
    title = f"{first.model.name} ({first.model.teacher}, {first.data.image_size} px)"
    write_metrics(target.path, per_category, rows, title=title)
    return per_category


def _check_out(out: Run, files: Sequence[Path], overwrite: bool) -> None:
    """``test``/``validate --out`` elsewhere than the run: never into another run, never over earlier ``files`` without ``overwrite``."""
    if out.index_file.exists() or out.model_dirs():
        raise SnladError(
            f"{out.path} holds another run: its metrics describe its own model; choose a folder outside any run for --out"
        )
    earlier = [path for path in files if path.exists()]
    if earlier and not overwrite:
        raise SnladError(
            f"{earlier[0]} already exists ({len(earlier)} metrics file(s) in {out.path}): use --overwrite to replace them, or another --out"
        )


def metrics_table(*, per_category: dict[str, dict[str, float]], title: str | None = None) -> str:
    """The Markdown table ``snlad test`` prints and writes to ``metrics.md``."""
    return metrics_markdown(per_category, title)


def predict(
    *,
    run: str | Path,
    images: Iterable[str | Path],
    out: str | Path,
    category: str | None = None,
    maps: str = "original",
    map_dtype: str = "float32",
    overwrite: bool = False,
    scoring: ScoringOptions = ScoringOptions(),
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Score image files (or folders of them) with a trained run; see :func:`snlad.engine.predict.predict`.

    Returns the score rows and the (path, error) of every unreadable file skipped.
    """
    models = _with_map_settings(
        {"model": run_model(run=run, category=category, device=scoring.device)}, scoring.map_settings
    )
    if scoring.map_settings and category is not None and category in models["model"].calibration:
        notice(
            f"the thresholds of {category} were calibrated for the trained map settings, not for {', '.join(scoring.map_settings)}: recalibrate for is_anomalous and masks/ to match"
        )
    trained = _deployed(models, scoring)["model"]
    return predict_images(trained, images, Path(out), category, scoring.batch_size, maps, map_dtype, overwrite)


def calibrate(
    *,
    run: str | Path,
    data: str | Path,
    split: str = "train",
    rule: Rule = Rule(),
    categories: Sequence[str] | None = None,
    overwrite: bool = False,
    device: str = "auto",
) -> dict[str, dict]:
    """Recompute a run's decision thresholds by ``rule`` and store them in its model files; see docs/thresholds.md.

    Thresholds the run already holds are replaced only with ``overwrite``.
    """
    return recalibrate_run(Path(run), data, split, rule, categories, overwrite, device)


def export(
    *,
    run: str | Path,
    fmt: str,
    out: str | Path,
    category: str | None = None,
    overwrite: bool = False,
    precision: str = "fp32",
    data: str | Path | None = None,
) -> Path:
    """Write the run's model as one ONNX ("onnx"), TorchScript ("torchscript") or OpenVINO ("openvino") graph; see :mod:`snlad.deploy.export`.

    An existing ``out`` is replaced only with ``overwrite``. Without ``category`` a
    multi-class model's file carries no thresholds (one per category exists).
    ``precision`` "int8" (OpenVINO) calibrates on the run's held-out normals under
    ``data`` (default: the root it was trained on).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SnladError(f"{out} already exists: use --overwrite to replace it, or another --out")
    trained = run_model(run=run, category=category, device="cpu")  # the graph is traced on the CPU
    if category is None and trained.calibration:
        notice(
            f"no --category: {out} carries no decision thresholds (snlad.threshold is null); the run has one per category "
            f"({', '.join(trained.calibration)}): export with --category C to embed C's"
        )
    images = None
    if precision == "int8":
        images = calibration_images(trained, Path(data) if data is not None else Run(Path(run)).trained_root())
    return export_graph(trained, fmt, out, category, precision, images)


# ---------------------------------------------------------------- choosing settings


def validate(*, run: str | Path, data: str | Path, device: str = "auto") -> dict[str, dict[str, float]]:
    """Score a run on its validation set (held-out normals + cut-paste anomalies from other categories; no test image).

    Writes ``RUN/validation.json`` and ``RUN/validation.md``; this is what settings are chosen on.
    """
    source = Run(Path(run))
    models = source.load_models(device)
    results = validation_metrics(
        models, synthetic_validation(data, source.stored_config())
    )  # every category, the hold-out
    write_json(source.validation_json, results)
    lines = ["| category | I-AUROC | P-AUROC | AUPRO |", "|---|---|---|---|"]
    lines += [
        f"| {c} | " + " | ".join(percent(m[k]) for k in ("image_auroc", "pixel_auroc", "aupro")) + " |"
        for c, m in results.items()
    ]
    atomic_write_text(source.validation_md, "\n".join(lines) + "\n")
    return results


def validate_real(
    *,
    run: str | Path,
    data: str | Path,
    batch_size: int = 8,
    device: str = "auto",
    map_settings: Sequence[str] = (),
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, float]]:
    """Score a run on the real defects of ``data`` (its test split), for the categories both share.

    Such a root (``../shared/data/realad-val``) holds real defective and good
    images disjoint from the data's test split: settings are chosen on it, the
    test split only reports. Its ``train/`` folder is never read. Writes
    ``validation-real.json`` (per category, ``mean`` with how many categories
    it covers) and ``validation-real.md`` into ``out`` (default: the run).
    ``map_settings`` (``map.*`` overrides) score the same networks with
    another anomaly map, as ``test`` does: with the same ``out`` the two
    files of a rescored variant sit together (e.g. an ablation of a map term
    without retraining); ``out`` never holds another run, and replaces
    earlier files only with ``overwrite``.
    """
    source = Run(Path(run))
    models = optimise_run(_with_map_settings(source.load_models(device), map_settings), None, False)
    target = Run(Path(out or run))
    if out is not None and target.path.resolve() != source.path.resolve():
        _check_out(target, (target.real_validation_json, target.real_validation_md), overwrite)
    shared = [category for category in list_categories(data) if category in models]
    if not shared:
        raise SnladError(f"{data} holds none of the run's categories ({', '.join(models)}): nothing to validate on")
    per_category, _ = evaluate(models, index_dataset(data, "test", shared), batch_size)
    per_category["mean"]["run_categories"] = len(set(models))
    write_metrics_json(target.real_validation_json, per_category)
    title = f"real-defect validation on {Path(data).name}: {len(shared)} of the run's {len(models)} categories"
    if map_settings:
        title += f", scored with {', '.join(map_settings)}"
    atomic_write_text(target.real_validation_md, metrics_markdown(per_category, title))
    return per_category


@dataclasses.dataclass(frozen=True)
class ExperimentSelection:
    """Which part of an experiment file to run (``snlad experiment --only/--seeds/--modes/--category``); None: the file's.

    ``only`` (configuration names), ``seeds`` and ``modes`` restrict what is
    trained, so several processes can share one experiment; ``categories``
    replaces the file's ``categories`` (or its settings' ``data.categories``;
    default all under the data root).
    """

    only: Sequence[str] | None = None
    seeds: Sequence[int] | None = None
    modes: Sequence[str] | None = None
    categories: Sequence[str] | None = None


def experiment(
    *,
    file: str | Path,
    data: str | Path,
    out: str | Path,
    selection: ExperimentSelection = ExperimentSelection(),
    real_defects: str | Path | None = None,
    tables_only: bool = False,
) -> dict[str, Path]:
    """Train, test and validate every configuration x seed x mode of an experiment ``file`` not yet done; returns the tables written.

    ``selection``: the configurations, seeds, modes and categories to run
    (default: the file's); ``tables_only`` trains nothing.
    ``real_defects``: a root of real defects disjoint from the test split (e.g. realad-val) every run is also validated on.
    """
    spec, out = load_experiment(file), Path(out)
    only = list(selection.only) if selection.only else None
    check_selection(spec, out, only)
    chosen = list(selection.categories or spec.categories or list_categories(data))
    seeds, modes = (list(selection.seeds) if selection.seeds else None), selection.modes
    tables: dict[str, Path] = {}
    for mode in spec.modes:
        if not tables_only and (not modes or mode in modes):
            for name, seed, folder in planned_runs(spec, out, mode, only, seeds):
                _experiment_run(spec, mode, name, seed, folder, data, chosen, real_defects)
        tables |= write_mode_tables(spec, out, mode, chosen, real_defects)
    return tables


def _experiment_run(
    spec: Experiment,
    mode: str,
    name: str,
    seed: int,
    run: Run,
    data: str | Path,
    categories: list[str],
    real_defects: str | Path | None,
) -> None:
    """Train and test one run unless its results exist, then validate it where that is missing (and its model is here)."""
    label = f"[{spec.name}] {mode} {name} seed {seed}"
    if not run.metrics_json.exists():
        model = spec.configurations[name]["model"]
        config = resolve_config(model=model, overrides=run_overrides(spec, name, seed), categories=categories)
        resume = any(folder.checkpoint.exists() for folder in run.model_dirs())
        print(label, flush=True)
        train(config=config, data=data, out=run.path, one_class=mode == ONE_CLASS, resume=resume, overwrite=not resume)
        test(run=run.path, data=data, categories=categories)
    missing = (spec.validate and not run.validation_json.exists()) or (
        real_defects is not None and not run.real_validation_json.exists()
    )
    if missing and not all(path.is_file() for path in run.model_files().values()):
        print(f"{label}: results kept without the model, not validated again", flush=True)
        return
    if spec.validate and not run.validation_json.exists():  # --overwrite training removes it
        validate(run=run.path, data=data)
    if real_defects is not None and not run.real_validation_json.exists():
        validate_real(run=run.path, data=real_defects)


# ---------------------------------------------------------------- analyses


def probe_mixup(
    *, runs: Sequence[str | Path], data: str | Path, settings: MixupSettings, out: str | Path
) -> list[dict]:
    """Mixup interference probe (paper Fig. 2, left); see :mod:`snlad.probes.mixup`."""
    return run_mixup(runs, data, settings, out)


def probe_cutpaste(
    *, runs: Sequence[str | Path], data: str | Path, settings: CutPasteSettings, out: str | Path
) -> list[dict]:
    """Cut-paste interference probe (paper Fig. 2, right); see :mod:`snlad.probes.cutpaste`."""
    return run_cutpaste(runs, data, settings, out)


def report(
    *,
    runs: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    probe_dirs: Sequence[str | Path] = (),
    experiment_dir: str | Path | None = None,
    examples: int = 3,
    overwrite: bool = False,
) -> Path:
    """The HTML report comparing tested runs; returns ``OUT/index.html`` (an earlier one replaced only with ``overwrite``)."""
    return build_report(runs, data, out, probe_dirs, experiment_dir, examples, overwrite)


def figure_onevsmulti(
    *, experiment_dir: str | Path, out: str | Path, configurations: Sequence[str] | None = None
) -> Path:
    """Paper Fig. 1 from a finished experiment: one-class vs multi-class bars (``configurations``: these, in this order)."""
    return onevsmulti_figure(experiment_dir, out, configurations)
