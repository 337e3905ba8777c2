"""What a command does, from data root or run directory to files: train, test, predict, calibrate, export.

Each function composes the engine's pieces (index the data, train, calibrate,
save; load, optimise, evaluate, write). :mod:`snlad.api` is the public face of
these functions; :mod:`snlad.experiments` uses them directly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from snlad.config import (
    RESUMABLE_SETTINGS,
    Config,
    from_dict,
    load_config,
    merge,
    parse_override,
    read_yaml,
    write_yaml,
)
from snlad.data import Sample, holdout_split, index_dataset, list_categories
from snlad.engine.calibration import calibrate as calibrate_held_out
from snlad.engine.calibration import recalibrate_run
from snlad.engine.device import resolve_device, warn_if_oversubscribed
from snlad.engine.distributed import DistContext, init_distributed
from snlad.engine.evaluate import evaluate, metrics_markdown, write_metrics, write_metrics_json
from snlad.engine.optimise import optimise_for_inference, optimise_run
from snlad.engine.predict import predict as predict_images
from snlad.engine.run import MULTI_CLASS, ONE_CLASS, ModelDir, Run
from snlad.engine.train import train_model
from snlad.engine.trained import TrainedModel, build_scorer
from snlad.errors import SnladError, notice
from snlad.export import export as export_graph
from snlad.files import atomic_write_text, ensure_writable, remove_stale_temporaries, write_json
from snlad.selection import synthetic_validation, validation_metrics
from snlad.thresholds import Rule


def resolve_config(
    model: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    teacher: str | None = None,
    teacher_weights: str | None = None,
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


def _train_one(
    config: Config,
    samples: Sequence[Sample],
    folder: ModelDir,
    context: DistContext,
    resume: bool,
    overwrite: bool,
    progress: bool,
    drop_checkpoint: bool,
) -> TrainedModel:
    """Train on all but the held-out normals, calibrate thresholds on those, save ``model.pt`` (rank 0)."""
    train_samples, held_out = holdout_split(samples, config.data.holdout_fraction, config.train.seed)
    model = train_model(config, train_samples, folder, context, resume, overwrite, progress)
    trained = TrainedModel(config, model, build_scorer(config, model), sorted({s.category for s in samples})).eval()
    if context.is_main:
        trained.calibration = calibrate_held_out(trained, held_out, config, progress=progress)
        trained.save(folder.model)
        if drop_checkpoint:
            folder.checkpoint.unlink(missing_ok=True)
    context.barrier()
    return trained


def train(
    config: Config,
    data_root: str | Path,
    out_dir: str | Path,
    one_class: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    drop_checkpoint: bool = False,
) -> dict[str, TrainedModel]:
    """Train one multi-class model (or one model per category) and write the run directory.

    The run folder is locked for the whole call. ``resume`` continues an
    interrupted run (``config`` must be its stored config, see :func:`resume_config`);
    ``drop_checkpoint`` deletes the training state once ``model.pt`` is written
    (the run can then not be continued with more epochs).
    """
    run = Run(Path(out_dir))
    samples = index_dataset(data_root, "train", config.data.categories)
    categories = sorted({s.category for s in samples})
    config.data.categories = categories
    context = init_distributed(resolve_device(config.train.device))  # torchrun: one rank of many
    mode = ONE_CLASS if one_class else MULTI_CLASS
    with run.lock() if context.is_main else contextlib.nullcontext():
        written: list[Path] = []
        try:
            if context.is_main:
                written = _start(run, config, mode, categories, resume, overwrite, data_root)
                warn_if_oversubscribed()
            models = _train_models(config, samples, run, mode, context, resume, overwrite, progress, drop_checkpoint)
        except BaseException:
            if context.is_main and not run.model_dirs():
                run.restore_replaced(written)  # the new run saved nothing: the one it was to replace comes back
            elif context.is_main and run.replaced.is_dir():
                notice(f"the run this one replaces is kept in {run.replaced} until this one finishes")
            raise
        if context.is_main:
            run.write_index(mode, categories, finished=True, data_root=data_root)
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
    progress: bool,
    drop_checkpoint: bool,
) -> dict[str, TrainedModel]:
    """The one multi-class model, or one model per category, each trained and saved in its model folder."""
    categories = config.data.categories
    if mode == MULTI_CLASS:
        folder = run.model_dir(mode, categories[0])
        trained = _train_one(config, samples, folder, context, resume, overwrite, progress, drop_checkpoint)
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
            category_config, category_samples, folder, context, sub_resume, overwrite, progress, drop_checkpoint
        )
    return models


def _start(
    run: Run, config: Config, mode: str, categories: list[str], resume: bool, overwrite: bool, data_root: str | Path
) -> list[Path]:
    """Clean up after a killed write, refuse to clobber anything, and write the plan: run.json (unfinished) and config.yaml.

    ``--overwrite`` sets the replaced run aside (:meth:`Run.set_aside`) rather
    than deleting it: a new run that fails before its first checkpoint (a
    corrupt image, a full disk) gives it back. Files that are not a run's
    (a folder of the user's that happens to hold a config.yaml) are never
    replaced, with or without ``--overwrite``. Returns the files the new run
    may write, for :meth:`Run.restore_replaced`.
    """
    for folder in [run.path, *(run.path / category for category in categories)]:
        remove_stale_temporaries(folder)
    folders = [run.model_dir(mode, category) for category in categories] + run.model_dirs()
    files = run.training_files(folders)
    if resume:
        return files
    present = [path for path in files if path.exists()]
    if _holds_run(run):
        if not overwrite:
            raise SnladError(
                f"{run.path} already holds a run: use --resume to continue it, --overwrite to replace it, or another --out"
            )
        run.set_aside(present)  # --overwrite: the replaced run's results would describe another model
    elif present and not _only_a_plan(run):
        names = ", ".join(str(path.relative_to(run.path)) for path in present[:4])
        raise SnladError(
            f"{run.path} holds no snlad run but files a training would replace ({names}): "
            "choose another --out (an empty or new folder)"
        )
    write_yaml(config, run.config)
    run.write_index(mode, categories, finished=False, data_root=data_root)
    return files


def _holds_run(run: Run) -> bool:
    """A finished run, or one with training state to continue (not just the plan of a start that failed at once)."""
    return bool(run.model_dirs()) or (run.index_file.exists() and not _only_a_plan(run))


def _only_a_plan(run: Run) -> bool:
    """``run.json`` unfinished and nothing trained: a start that failed before its first checkpoint, safe to start again."""
    if run.model_dirs() or not run.index_file.is_file():
        return False
    try:
        return not run.read_plan().finished
    except SnladError:  # a corrupt run.json: not snlad's to replace without --overwrite
        return False


def resume_config(
    run_dir: str | Path, overrides: Sequence[str] = (), requested: Config | None = None
) -> tuple[Config, bool]:
    """The stored config of an interrupted (or finished) run with the safe ``overrides`` applied, and whether it is one-class.

    Only :data:`RESUMABLE_SETTINGS` may change. The original command repeated
    is fine: an override, or a ``requested`` config (what the command's
    --model/--config/... would give), that agrees with the stored settings is
    accepted; one that differs is refused, naming the settings.
    """
    run = Run(Path(run_dir))
    if not run.config.is_file():
        raise SnladError(f"nothing to resume in {run.path}: it has no config.yaml (start without --resume)")
    stored = from_dict(read_yaml(run.config), source=str(run.config))
    config = stored
    changed = [] if requested is None else _differences(stored, requested)
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        updated = merge(config, parse_override(text), source=f"override {text!r}")
        if key in RESUMABLE_SETTINGS:
            config = updated
        elif _differences(stored, updated):
            changed.append(key)
    if changed:
        raise SnladError(
            f"--resume continues {run.path} with its stored settings, and {', '.join(dict.fromkeys(changed))} would change; "
            f"only {', '.join(RESUMABLE_SETTINGS)} can (train a new run with another --out for the rest)"
        )
    one_class = (
        run.read_plan().mode == ONE_CLASS if run.index_file.is_file() else not ModelDir(run.path).checkpoint.exists()
    )
    return config, one_class


def _differences(stored: Config, other: Config) -> list[str]:
    """The ``section.key`` settings in which ``other`` differs from ``stored``, the resumable ones aside."""
    a, b = stored.to_dict(), other.to_dict()
    return [
        f"{section}.{key}"
        for section, values in a.items()
        for key, value in values.items()
        if f"{section}.{key}" not in RESUMABLE_SETTINGS
        and b[section][key] != value
        and not (key == "categories" and b[section][key] is None)
    ]


def with_map_settings(models: dict[str, TrainedModel], overrides: Sequence[str]) -> dict[str, TrainedModel]:
    """The same trained networks scored with other anomaly-map settings (``map.*`` only)."""
    if not overrides:
        return models
    parsed = [parse_override(text) for text in overrides]
    if any(set(update) != {"map"} for update in parsed):
        raise SnladError("only map.* settings (beta, sigma, image_score, topk_fraction) can change after training")
    rescored: dict[int, TrainedModel] = {}
    for trained in models.values():
        if id(trained) not in rescored:
            config = trained.config
            for text, update in zip(overrides, parsed, strict=True):
                config = merge(config, update, source=f"override '{text}'")
            rescored[id(trained)] = dataclasses.replace(
                trained, config=config, scorer=build_scorer(config, trained.model)
            )
    return {category: rescored[id(trained)] for category, trained in models.items()}


def _known_categories(run: Run, models: dict[str, TrainedModel], wanted: Sequence[str]) -> None:
    unknown = [c for c in wanted if c not in models]
    if unknown:
        raise SnladError(f"the run {run.path} was not trained on {', '.join(unknown)} (it knows {', '.join(models)})")


def test(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    categories: Sequence[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    map_overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    micro_batch: int | None = None,
    torch_compile: bool = False,
    overwrite: bool = False,
) -> dict[str, dict[str, float]]:
    """Evaluate a run on the test split of ``data_root``; write metrics files into ``out_dir`` (default: the run).

    Without ``data_root``, the root the run was trained on (recorded in its run.json), if it is still there.
    Metrics are fractions; each calibrated category also gets the accuracy,
    precision, recall and F1 of its stored image threshold, unless
    ``map_overrides`` change the map the thresholds were calibrated for.

    ``map_overrides`` (e.g. ``["map.beta=2"]``) score the same networks with another anomaly map;
    ``micro_batch`` and ``torch_compile`` change speed only (:func:`snlad.engine.optimise.optimise_for_inference`).
    An ``out_dir`` other than the run never holds another run, and its earlier
    metrics files are replaced only with ``overwrite``.
    """
    run = Run(Path(run_dir))
    models = optimise_run(with_map_settings(run.load_models(), map_overrides), micro_batch, torch_compile)
    if map_overrides:  # the thresholds belong to the trained map: their decisions on another say nothing
        models = {category: dataclasses.replace(trained, calibration={}) for category, trained in models.items()}
    wanted = list(categories) if categories is not None else list(models)
    _known_categories(run, models, wanted)
    samples = index_dataset(data_root if data_root is not None else trained_root(run), "test", wanted)
    out = Run(Path(out_dir or run_dir))
    if out_dir is not None and out.path.resolve() != run.path.resolve():
        _check_test_out(out, overwrite)
    ensure_writable(out.path, out.metrics_csv)  # now, not after the whole evaluation
    per_category, rows = evaluate(models, samples, batch_size, progress, partial=out.partial_test_scores)
    out.partial_test_scores.unlink(missing_ok=True)
    first = next(iter(models.values())).config
    write_metrics(
        out.path,
        per_category,
        rows,
        title=f"{first.model.name} ({first.model.teacher}, {first.data.image_size} px)",
    )
    return per_category


def trained_root(run: Run) -> Path:
    """The data root ``run`` was trained on, for commands given no ``--data``; a clear error where it is unknown or gone."""
    recorded = run.read_index().data_root
    if recorded is None:
        raise SnladError(f"{run.path} does not record its data root (trained by an earlier snlad): pass --data ROOT")
    if not Path(recorded).is_dir():
        raise SnladError(f"{run.path} was trained on {recorded}, which is no longer there: pass --data ROOT")
    return Path(recorded)


def _check_test_out(out: Run, overwrite: bool) -> None:
    """``test --out`` elsewhere than the run: never into another run, never over earlier files without ``overwrite``."""
    if out.index_file.exists() or out.model_dirs():
        raise SnladError(
            f"{out.path} holds another run: its metrics describe its own model; choose a folder outside any run for --out"
        )
    earlier = [path for path in out.results() if path.exists()]
    if earlier and not overwrite:
        raise SnladError(
            f"{earlier[0]} already exists ({len(earlier)} metrics file(s) in {out.path}): use --overwrite to replace them, or another --out"
        )


def run_model(run_dir: str | Path, category: str | None = None) -> TrainedModel:
    """The model of a run that serves ``category`` (required for a one-class run)."""
    models = Run(Path(run_dir)).load_models()
    if category is not None and category not in models:
        raise SnladError(f"unknown category '{category}': the run knows {', '.join(models)}")
    distinct = {id(m) for m in models.values()}
    if category is None and len(distinct) > 1:
        raise SnladError(f"{run_dir} is a one-class run: say which model to use with --category ({', '.join(models)})")
    return models[category] if category is not None else next(iter(models.values()))


def predict(
    run_dir: str | Path,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    category: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    micro_batch: int | None = None,
    torch_compile: bool = False,
    map_overrides: Sequence[str] = (),
    maps: str = "original",
    map_dtype: str = "float32",
    overwrite: bool = False,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Score images with a trained run; see :func:`snlad.engine.predict.predict` (map and speed options as in :func:`test`)."""
    models = with_map_settings({"model": run_model(run_dir, category)}, map_overrides)
    if map_overrides and category is not None and category in models["model"].calibration:
        notice(
            f"the thresholds of {category} were calibrated for the trained map settings, not for {', '.join(map_overrides)}: recalibrate for is_anomalous and masks/ to match"
        )
    trained = optimise_for_inference(models["model"], micro_batch=micro_batch, torch_compile=torch_compile)
    return predict_images(trained, inputs, Path(out_dir), category, batch_size, progress, maps, map_dtype, overwrite)


def calibrate(
    run_dir: str | Path,
    data_root: str | Path,
    split: str = "train",
    rule: str = "max",
    quantile: float = 1.0,
    margin: float = 0.0,
    categories: Sequence[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, dict]:
    """Recompute a run's decision thresholds and store them in its model files; see docs/thresholds.md.

    Thresholds the run already holds are replaced only with ``overwrite``.
    """
    return recalibrate_run(
        Path(run_dir), data_root, split, Rule(rule, quantile, margin), categories, progress, overwrite
    )


def export(
    run_dir: str | Path, fmt: str, out: str | Path, category: str | None = None, overwrite: bool = False
) -> Path:
    """Write the run's model as one ONNX or TorchScript graph; see :mod:`snlad.export`.

    An existing ``out`` is replaced only with ``overwrite``. Without ``category`` a
    multi-class model's file carries no thresholds (one per category exists).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SnladError(f"{out} already exists: use --overwrite to replace it, or another --out")
    trained = run_model(run_dir, category)
    if category is None and trained.calibration:
        notice(
            f"no --category: {out} carries no decision thresholds (snlad.threshold is null); the run has one per category "
            f"({', '.join(trained.calibration)}): export with --category C to embed C's"
        )
    return export_graph(trained, fmt, out, category)


def validate(run_dir: str | Path, data_root: str | Path) -> dict[str, dict[str, float]]:
    """Score a run on its validation set (held-out normals + cut-paste anomalies from other categories; no test image).

    Writes ``RUN/validation.json`` and ``RUN/validation.md``; this is what settings are chosen on.
    """
    run = Run(Path(run_dir))
    models = run.load_models()
    config = from_dict(read_yaml(run.config), source=str(run.config))  # run-wide: every category, the hold-out
    results = validation_metrics(models, synthetic_validation(data_root, config))
    write_json(run.validation_json, results)
    lines = ["| category | I-AUROC | P-AUROC | AUPRO |", "|---|---|---|---|"]
    lines += [
        f"| {c} | " + " | ".join(f"{100 * m[k]:.1f}" for k in ("image_auroc", "pixel_auroc", "aupro")) + " |"
        for c, m in results.items()
    ]
    atomic_write_text(run.validation_md, "\n".join(lines) + "\n")
    return results


def validate_real(
    run_dir: str | Path, validation_root: str | Path, batch_size: int = 8, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Score a run on the real defects of ``validation_root`` (its test split), for the categories both share.

    Such a root (``../shared/data/realad-val``) holds real defective and good
    images disjoint from the data's test split: settings are chosen on it, the
    test split only reports. Its ``train/`` folder is never read. Writes
    ``RUN/validation-real.json`` (per category, ``mean`` with how many
    categories it covers) and ``RUN/validation-real.md``.
    """
    run = Run(Path(run_dir))
    models = optimise_run(run.load_models(), None, False)
    shared = [category for category in list_categories(validation_root) if category in models]
    if not shared:
        raise SnladError(
            f"{validation_root} holds none of the run's categories ({', '.join(models)}): nothing to validate on"
        )
    per_category, _ = evaluate(models, index_dataset(validation_root, "test", shared), batch_size, progress)
    per_category["mean"]["run_categories"] = len(set(models))
    write_metrics_json(run.real_validation_json, per_category)
    title = (
        f"real-defect validation on {Path(validation_root).name}: {len(shared)} of the run's {len(models)} categories"
    )
    atomic_write_text(run.real_validation_md, metrics_markdown(per_category, title))
    return per_category
