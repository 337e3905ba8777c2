"""Writing files atomically and reading torch files safely: the primitives every layer uses.

Every file snlad writes goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target: a crash, SIGKILL or full disk
at any moment leaves either the old file or the new one, never half of one.
The temporary files are named ``.<target name>.<random>.snlad.tmp`` (a name
no other program uses); one left by a SIGKILL during a write is removed by
:func:`remove_stale_temporaries` the next time snlad writes into that folder.

Every path that comes from a data file, a config or a run file (a split CSV's
image column, an experiment's configuration name, a run's category) goes
through :func:`confined`: it stays inside its root or is refused.

Torch files are read with ``weights_only=True``: a file that would run code
when unpickled is refused, not executed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import pickle
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snlad.errors import SnladError, brief

TEMPORARY_SUFFIX = ".snlad.tmp"  # not plain ".tmp": a user's own hidden .tmp files are never snlad's to delete
STALE_AFTER_S = 60.0  # a temporary file older than this belongs to no write in progress


def make_folder(folder: Path, purpose: Path | None = None) -> None:
    """Create ``folder`` (and its parents); a file in the way or no permission is one SnladError naming ``purpose``."""
    purpose = purpose or folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SnladError(
            f"cannot write {purpose}: {folder} or a folder above it is a file, not a folder; choose another output folder"
        ) from None
    except OSError as error:
        raise SnladError(
            f"cannot write {purpose}: {error.strerror} (check the folder exists and is writable)"
        ) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    make_folder(path.parent, path)
    try:
        # The name is cut: a legal 240-character file name plus the temporary's additions would exceed 255 bytes.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise SnladError(f"cannot write {path}: {error.strerror} (check the folder exists and is writable)") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), _new_file_mode())
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:  # also Ctrl-C mid-write: never leave the temporary file behind
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise SnladError(f"cannot write {path}: {error.strerror}; earlier files there are unchanged") from None
        raise


def ensure_writable(folder: Path, purpose: Path) -> None:
    """Fail now, in one line, if ``purpose`` cannot be written into ``folder`` (read-only, no permission, full).

    For commands that write only at the end of a long evaluation: finding out
    then would waste all of it.
    """
    make_folder(folder, purpose)
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise SnladError(f"cannot write {purpose}: {error.strerror} (check the folder is writable)") from None
    os.close(handle)
    Path(probe).unlink(missing_ok=True)


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 minus the umask); mkstemp's own 0o600 would hide results from the team."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8, except that a file name that was not UTF-8 (decoded by Python with surrogate escapes) keeps its bytes."""
    atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def write_json(path: Path, payload: Any) -> None:
    """Indented JSON; numpy and torch numbers and arrays become plain numbers and lists."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=_plain))


def _plain(value: object) -> object:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
    """A CSV with ``header``; each row a sequence in header order or a mapping by column name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header] if isinstance(row, Mapping) else row)
    atomic_write_text(path, buffer.getvalue())


def write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def save_torch(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically (torch.save itself is not atomic)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: Path, what: str, fix: str) -> Any:
    """Read a torch file with ``weights_only=True``; every failure is one SnladError naming ``what`` and ``path``.

    ``what`` says what the file is meant to be ("checkpoint", "teacher weights"),
    ``fix`` what the user can do about a bad one.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in unpickling_detail(error).lower():  # no object refused: bytes that are no pickle (ONNX, text)
            raise SnladError(
                f"{what} {path} is truncated or corrupt, or not a torch file ({brief(error)}); {fix}"
            ) from None
        raise SnladError(
            f"{what} {path} refused by torch.load(weights_only=True): loading it would run code or build objects "
            f"other than tensors ({unpickling_detail(error)[:200]}); snlad never does that: {fix}"
        ) from None
    except Exception as error:  # corrupt bytes surface as a dozen exception types (found by fuzzing)
        raise SnladError(
            f"{what} {path} is truncated or corrupt, or not a torch file ({brief(error)}); {fix}"
        ) from None


def unpickling_detail(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that names the offending object or opcode."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in str(error).splitlines():
        if line.strip() and not line.startswith(boilerplate):
            return line.strip().rstrip(".")
    return "it holds objects other than tensors"


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete snlad's own temporary files (``.<name>.<random>.snlad.tmp``) left in ``folder`` by a killed write.

    Only files of that naming, older than ``older_than_s`` (no write takes
    that long between creating and renaming), are touched; returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for path in folder.glob(f".*{TEMPORARY_SUFFIX}"):
        try:
            if path.is_file() and now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
        except OSError:  # raced with another cleaner, or not ours to delete: leave it
            continue
    return removed


def confined(root: Path, relative: str | Path, what: str, single: bool = False) -> Path:
    """``root / relative``, refused unless it stays inside ``root``: the one check for paths read from files.

    A split CSV, an experiment file or a run's ``run.json`` names files and
    folders relative to its root; an absolute path or one that climbs out
    with ``..`` would train on, copy or overwrite what lies elsewhere. The
    check is lexical (``..`` and absolute paths, after normalising), not
    symlink resolution: a dataset assembled from symlinks is the user's own
    choice, a name written in a file is not. ``what`` says where the name
    came from, for the one-line error; ``single`` asks for one folder name
    (a category), not a path below ``root``.
    """
    text = str(relative)
    parts = Path(os.path.normpath(text)).parts if text else ()
    if (
        not text
        or "\0" in text
        or Path(text).is_absolute()
        or not parts
        or parts[0] in ("..", ".")
        or (single and (len(parts) != 1 or text != parts[0]))
    ):
        raise SnladError(
            f"{what}: {text!r} is not a {'folder name' if single else 'path'} inside {root} "
            "(absolute, empty or climbing out with '..'); only names relative to it are allowed"
        )
    return Path(root) / Path(*parts)


@contextlib.contextmanager
def exclusive_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold ``folder/.lock`` for ``command``; a second snlad process on the same folder gets a clear error at once.

    Two processes writing one folder would leave files of both mixed (a
    prediction's scores from one, its maps from the other); the lock is an
    ``flock`` the kernel drops when a process dies, so a killed run never
    leaves the folder locked.
    """
    make_folder(folder)
    lock_file = folder / ".lock"
    try:
        handle = open(lock_file, "a+")  # noqa: SIM115 -- closed below, after the lock is released
    except OSError as error:
        raise SnladError(f"cannot write {lock_file}: {error.strerror} (check the folder is writable)") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "snlad process"
            raise SnladError(
                f"{folder} is in use by another {holder}: wait for it to finish, or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(folder: Path) -> str | None:
    """Who holds ``folder/.lock`` right now (e.g. "snlad train (pid 12)"), or None when nobody does."""
    try:
        with open(folder / ".lock") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:  # no lock file, or not readable: nobody we can name
        return None
    return None
