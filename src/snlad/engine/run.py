"""A run directory: the one place that knows its layout, its index and how to load its models.

A multi-class run is one model in ``RUN/``; a one-class run holds one model
per category in ``RUN/<category>/``. Each model folder (:class:`ModelDir`)
has ``config.yaml``, ``train_log.csv``, ``checkpoint.pt`` (the training state,
kept for ``--resume``) and, once finished, ``model.pt``. ``RUN/run.json`` lists
the mode and the categories; it is written when training starts (the plan,
``"finished": false``, with the run-wide ``RUN/config.yaml``) and again when
it ends. ``snlad test`` adds ``metrics.{csv,json,md}`` and ``test_scores.csv``
to ``RUN/``. While ``snlad train`` works in a run it holds ``RUN/.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from snlad.engine.trained import TrainedModel, load_trained
from snlad.errors import SnladError
from snlad.files import atomic_write_text, make_folder

MULTI_CLASS, ONE_CLASS = "multi-class", "one-class"
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

    def clear(self) -> None:
        """Delete what training writes (``--overwrite``); anything else in the folder stays."""
        for path in (self.checkpoint, self.model, self.train_log, self.config):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RunIndex:
    mode: str
    categories: list[str]
    finished: bool = True


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
    def lock_file(self) -> Path:
        return self.path / ".lock"

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
            [self.path, *(sub for sub in sorted(self.path.glob("*")) if sub.is_dir())] if self.path.is_dir() else []
        )
        return [ModelDir(folder) for folder in folders if ModelDir(folder).started()]

    def write_index(self, mode: str, categories: list[str], finished: bool) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown run mode {mode!r}")
        atomic_write_text(
            self.index_file, json.dumps({"mode": mode, "categories": categories, "finished": finished}, indent=2)
        )

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
            if (
                mode not in MODES
                or not isinstance(categories, list)
                or not all(isinstance(c, str) for c in categories)
                or not isinstance(finished, bool)
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SnladError(f"{self.index_file} is corrupt; retrain the run") from None
        return RunIndex(mode, categories, finished)

    def read_index(self) -> RunIndex:
        """The mode and categories of a finished run; a clear error for anything else."""
        index = self.read_plan()
        if not index.finished:
            raise SnladError(
                f"{self.path} is not a finished snlad run (its training was interrupted): continue it with `snlad train --out {self.path} --resume`"
            )
        return index

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``RUN/.lock`` exclusively; a second snlad process on the same run gets a clear error at once."""
        make_folder(self.path)
        try:
            handle = open(self.lock_file, "a+")  # noqa: SIM115 -- closed below, after the lock is released
        except OSError as error:
            raise SnladError(
                f"cannot write {self.lock_file}: {error.strerror} (check the folder is writable)"
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise SnladError(
                    f"{self.path} is in use by another snlad train ({holder}): wait for it to finish, or use another --out"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def model_files(self) -> dict[str, Path]:
        """Each category's ``model.pt``."""
        index = self.read_index()
        return {category: self.model_dir(index.mode, category).model for category in index.categories}

    def load_models(self) -> dict[str, TrainedModel]:
        """Map every category of the run to the model that serves it (a multi-class model is loaded once)."""
        loaded: dict[Path, TrainedModel] = {}
        models = {}
        for category, path in self.model_files().items():
            if path not in loaded:
                loaded[path] = load_trained(path)
            models[category] = loaded[path]
        return models


def load_run(run_dir: str | Path) -> dict[str, TrainedModel]:
    """Every category of the run in ``run_dir`` mapped to the model that serves it."""
    return Run(Path(run_dir)).load_models()
