"""A run directory: the one place that knows its layout, its index and how to load its models.

A multi-class run is one model in ``RUN/``; a one-class run holds one model
per category in ``RUN/<category>/``. Each model folder (:class:`ModelDir`)
has ``config.yaml``, ``train_log.csv``, ``checkpoint.pt`` (the training state,
kept for ``--resume``) and, once finished, ``model.pt``. ``RUN/run.json`` lists
the mode and the categories; it is written when training starts (the plan,
``"finished": false``, with the run-wide ``RUN/config.yaml``) and again when
it ends. ``snlad test`` adds ``metrics.{csv,json,md}`` and ``test_scores.csv``
to ``RUN/``. While ``snlad train`` works in a run it holds ``RUN/.lock``;
``--overwrite`` moves the run it replaces to ``RUN/.replaced/`` and deletes it
only once the new run has finished (or moves it back if the new one failed
before saving anything).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from snlad.config import RESUMABLE_SETTINGS, Config, from_dict, merge, parse_override, read_yaml, write_yaml
from snlad.errors import SnladError
from snlad.files import atomic_write_text, confined, exclusive_lock, lock_holder, make_folder, remove_stale_temporaries
from snlad.runs.trained import TrainedModel, distinct_models, load_trained

MULTI_CLASS, ONE_CLASS = "multi-class", "one-class"
REPLACED = ".replaced"  # hidden: never a category name (categories are data folders, listed without dot-names)
MODES = (MULTI_CLASS, ONE_CLASS)


@dataclass(frozen=True)
class ModelDir:
    """The files of one model: ``RUN/`` of a multi-class run, ``RUN/<category>/`` of a one-class run."""

    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.csv"

    def started(self) -> bool:
        return self.checkpoint.exists() or self.model.exists()

    def files(self) -> tuple[Path, ...]:
        """What training writes here; anything else in the folder is not snlad's."""
        return (self.checkpoint, self.model, self.train_log, self.config)


@dataclass(frozen=True)
class RunIndex:
    mode: str
    categories: list[str]
    finished: bool = True
    data_root: str | None = None  # the root trained on (absolute), so `snlad test` need not be told it again


@dataclass(frozen=True)
class Run:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def index_file(self) -> Path:
        return self.path / "run.json"

    @property
    def config(self) -> Path:
        """The run-wide config (for a multi-class run the model's own)."""
        return self.path / "config.yaml"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def metrics_md(self) -> Path:
        return self.path / "metrics.md"

    @property
    def test_scores(self) -> Path:
        return self.path / "test_scores.csv"

    @property
    def validation_json(self) -> Path:
        """``snlad validate``: metrics on held-out normals + synthetic anomalies (what settings are chosen on)."""
        return self.path / "validation.json"

    @property
    def validation_md(self) -> Path:
        return self.path / "validation.md"

    @property
    def real_validation_json(self) -> Path:
        """``snlad validate --real-defects``: metrics on a root of real defects disjoint from the test split."""
        return self.path / "validation-real.json"

    @property
    def real_validation_md(self) -> Path:
        return self.path / "validation-real.md"

    @property
    def partial_test_scores(self) -> Path:
        """What an interrupted ``snlad test`` keeps: the scores of the categories it finished."""
        return self.path / "test_scores.partial.csv"

    def model_dir(self, mode: str, category: str) -> ModelDir:
        """Where the model serving ``category`` lives in a run of ``mode``."""
        return ModelDir(self.path / category if mode == ONE_CLASS else self.path)

    def model_dirs(self) -> list[ModelDir]:
        """Every model folder that holds training files, whether or not the run finished (resume, cleanup)."""
        folders = (
            [self.path, *(sub for sub in sorted(self.path.glob("*")) if sub.is_dir() and sub.name != REPLACED)]
            if self.path.is_dir()
            else []
        )
        return [ModelDir(folder) for folder in folders if ModelDir(folder).started()]

    def results(self) -> tuple[Path, ...]:
        """What ``snlad test`` and ``snlad validate`` write into the run: they describe its model, no other."""
        return (
            self.metrics_csv,
            self.metrics_json,
            self.metrics_md,
            self.test_scores,
            self.partial_test_scores,
            self.validation_json,
            self.validation_md,
            self.real_validation_json,
            self.real_validation_md,
        )

    def training_files(self, folders: list[ModelDir]) -> list[Path]:
        """Every file ``snlad train`` writes or retires in this run with model folders ``folders``."""
        paths = [self.index_file, self.config, *self.results(), *(p for folder in folders for p in folder.files())]
        return list(dict.fromkeys(paths))

    @property
    def replaced(self) -> Path:
        """``--overwrite`` keeps the replaced run here until the new one has finished (or restores it)."""
        return self.path / REPLACED

    def set_aside(self, files: list[Path]) -> None:
        """Move ``files`` (the run being replaced) into :attr:`replaced`; renames, so nothing is copied or lost.

        An earlier ``--overwrite`` interrupted after its first checkpoint left
        the run it replaced there: that finished run stays, and ``files`` (the
        interrupted replacement the user now replaces again) are deleted.
        """
        keep = not self.replaced.exists()
        for path in files:
            if keep:
                target = self.replaced / path.relative_to(self.path)
                make_folder(target.parent)
                os.replace(path, target)
            else:
                path.unlink()

    def restore_replaced(self, written: list[Path]) -> None:
        """Undo :meth:`set_aside` after a replacement that failed before saving anything: ``written`` goes, the old run returns."""
        if not self.replaced.is_dir():
            return
        for path in written:
            path.unlink(missing_ok=True)
        for path in sorted(p for p in self.replaced.rglob("*") if p.is_file()):
            target = self.path / path.relative_to(self.replaced)
            make_folder(target.parent)
            os.replace(path, target)
        shutil.rmtree(self.replaced)

    def drop_replaced(self) -> None:
        """The replacement finished: the run it replaced is no longer needed."""
        shutil.rmtree(self.replaced, ignore_errors=True)

    def write_index(self, mode: str, categories: list[str], finished: bool, data_root: str | Path) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown run mode {mode!r}")
        index = {
            "mode": mode,
            "categories": categories,
            "finished": finished,
            "data_root": str(Path(data_root).resolve()),
        }
        atomic_write_text(self.index_file, json.dumps(index, indent=2))

    def read_plan(self) -> RunIndex:
        """The run's mode and categories, finished or not; a clear error when there is no run here."""
        if self.path.is_file():
            raise SnladError(
                f"--run takes the run folder, not a file: use --run {self.path.parent} (the folder that holds {self.path.name})"
            )
        if not self.path.is_dir():
            raise SnladError(f"run directory {self.path} does not exist")
        if not self.index_file.is_file():
            if self.model_dirs():
                raise SnladError(
                    f"{self.path} is not a finished snlad run (no run.json; its training was interrupted): continue it with the same `snlad train --out {self.path}` command plus --resume"
                )
            raise SnladError(
                f"{self.path} is not a finished snlad run (no run.json): train it with `snlad train --out {self.path}`"
            )
        try:
            index = json.loads(self.index_file.read_text())
            mode, categories, finished = index["mode"], index["categories"], index.get("finished", True)
            data_root = index.get("data_root")  # runs trained before it was recorded have none
            if (
                not isinstance(data_root, str | None)
                or mode not in MODES
                or not isinstance(categories, list)
                or not all(isinstance(c, str) for c in categories)
                or not isinstance(finished, bool)
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SnladError(f"{self.index_file} is corrupt; retrain the run") from None
        for category in categories:  # a one-class run loads RUN/<category>/model.pt: never a folder elsewhere
            confined(self.path, category, f"{self.index_file} names category", single=True)
        return RunIndex(mode, categories, finished, data_root)

    def read_index(self) -> RunIndex:
        """The mode and categories of a finished run; a clear error for anything else."""
        index = self.read_plan()
        if not index.finished and (holder := lock_holder(self.path)) is not None:
            raise SnladError(f"{self.path} is being trained right now ({holder}): wait for it to finish")
        if not index.finished:
            raise SnladError(
                f"{self.path} is not a finished snlad run (its training was interrupted): continue it with `snlad train --out {self.path} --resume`"
            )
        return index

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold ``RUN/.lock`` exclusively; a second snlad process on the same run gets a clear error at once."""
        return exclusive_lock(self.path, "snlad train")

    def model_files(self) -> dict[str, Path]:
        """Each category's ``model.pt``."""
        index = self.read_index()
        return {category: self.model_dir(index.mode, category).model for category in index.categories}

    def stored_config(self) -> Config:
        """The run-wide ``config.yaml`` (every category, the hold-out): what the run was started with."""
        return from_dict(read_yaml(self.config), source=str(self.config))

    def model_for(self, category: str | None = None, device: str = "auto") -> TrainedModel:
        """The model that serves ``category`` (required for a one-class run), on ``device``."""
        models = self.load_models(device)
        if category is not None:
            known_categories(self.path, models, [category])
            return models[category]
        if len(distinct_models(models)) > 1:
            raise SnladError(
                f"{self.path} is a one-class run: say which model to use with --category ({', '.join(models)})"
            )
        return next(iter(models.values()))

    def trained_root(self) -> Path:
        """The data root the run was trained on, for commands given no ``--data``; a clear error where it is unknown or gone."""
        recorded = self.read_index().data_root
        if recorded is None:
            raise SnladError(
                f"{self.path} does not record its data root (trained by an earlier snlad): pass --data ROOT"
            )
        if not Path(recorded).is_dir():
            raise SnladError(f"{self.path} was trained on {recorded}, which is no longer there: pass --data ROOT")
        return Path(recorded)

    def load_models(self, device: str = "auto") -> dict[str, TrainedModel]:
        """Map every category of the run to the model that serves it (a multi-class model is loaded once), on ``device``."""
        loaded: dict[Path, TrainedModel] = {}
        models = {}
        for category, path in self.model_files().items():
            if path not in loaded:
                loaded[path] = load_trained(path, device)
            models[category] = loaded[path]
        return models


def known_categories(run_dir: Path, models: dict[str, TrainedModel], wanted: list[str]) -> None:
    """Refuse, naming them, the categories of ``wanted`` that the run in ``run_dir`` was not trained on."""
    unknown = [category for category in wanted if category not in models]
    if unknown:
        raise SnladError(f"the run {run_dir} was not trained on {', '.join(unknown)} (it knows {', '.join(models)})")


def load_run(run_dir: str | Path) -> dict[str, TrainedModel]:
    """Every category of the run in ``run_dir`` mapped to the model that serves it."""
    return Run(Path(run_dir)).load_models()


def start_training(
    run: Run, config: Config, mode: str, categories: list[str], resume: bool, overwrite: bool, data_root: str | Path
) -> list[Path]:
    """Clean up after a killed write, refuse to clobber anything, and write the plan: run.json (unfinished) and config.yaml.

    ``--overwrite`` sets the replaced run aside (:meth:`Run.set_aside`) rather
    than deleting it: a new run that fails before its first checkpoint (a
    corrupt image, a full disk) gives it back. Files that are not a run's
    (a folder of the user's that happens to hold a config.yaml) are never
    replaced, with or without ``--overwrite``. A multi-class run's
    ``config.yaml`` is its model's, which training writes; a one-class run's
    is written here. Returns the files the new run may write, for :meth:`Run.restore_replaced`.
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
    if mode == ONE_CLASS:
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


def changed_settings(stored: Config, other: Config) -> list[str]:
    """The resume-identity check: the ``section.key`` settings in which ``other`` differs from ``stored``.

    The :data:`~snlad.config.RESUMABLE_SETTINGS` may differ (they do not change
    what is trained), and ``data.categories`` None (all of them) matches any.
    Resuming continues the same training only where this is empty.
    """
    a, b = stored.to_dict(), other.to_dict()
    return [
        f"{section}.{key}"
        for section, values in a.items()
        for key, value in values.items()
        if f"{section}.{key}" not in RESUMABLE_SETTINGS
        and b[section][key] != value
        and not (key == "categories" and b[section][key] is None)
    ]


def resume_config(
    run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), requested: Config | None = None
) -> tuple[Config, bool]:
    """The stored config of an interrupted (or finished) run with the safe ``overrides`` applied, and whether it is one-class.

    Only :data:`~snlad.config.RESUMABLE_SETTINGS` may change. The original
    command repeated is fine: an override, or a ``requested`` config (what the
    command's --model/--config/... would give), that agrees with the stored
    settings is accepted; one that differs is refused, naming the settings.
    """
    run = Run(Path(run_dir))
    if not run.config.is_file():
        raise SnladError(f"nothing to resume in {run.path}: it has no config.yaml (start without --resume)")
    stored = run.stored_config()
    config = stored
    changed = [] if requested is None else changed_settings(stored, requested)
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        updated = merge(config, parse_override(text), source=f"override {text!r}")
        if key in RESUMABLE_SETTINGS:
            config = updated
        elif changed_settings(stored, updated):
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
