"""Atomic writes and safe checkpoint loading.

Every file snlad writes goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target: a crash, SIGKILL or full disk
at any moment leaves either the old file or the new one, never half of one.
Checkpoints are read with ``weights_only=True``: a file that would run code
when unpickled is refused, not executed.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from snlad.backbones import unpickling_detail
from snlad.errors import SnladError

CHECKPOINT_FORMAT = "snlad-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (FileExistsError, NotADirectoryError):
        raise SnladError(f"cannot write {path}: {path.parent} or a folder above it is a file, not a folder; choose another output folder") from None
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


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 minus the umask); mkstemp's own 0o600 would hide results from the team."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically (torch.save itself is not atomic)."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load an snlad checkpoint without executing any code the file may contain."""
    path = Path(path)
    if not path.is_file():
        raise SnladError(f"checkpoint {path} does not exist (train a model first with `snlad train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = unpickling_detail(error, fallback="it holds objects other than tensors")[:200]
        raise SnladError(
            f"checkpoint {path} refused: loading it would run code or build objects other than tensors ({reason}); "
            "snlad never does that: use a checkpoint written by `snlad train`"
        ) from None
    except Exception as error:  # corrupt bytes surface as a dozen exception types (Index/Key/TypeError... found by fuzzing)
        raise SnladError(f"checkpoint {path} is truncated or corrupt ({type(error).__name__}); retrain or restore it") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise SnladError(f"checkpoint {path} is not an snlad checkpoint; use a run written by `snlad train`")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise SnladError(f"checkpoint {path} has format version {payload.get('version')}, this snlad reads {CHECKPOINT_VERSION}")
    return payload
