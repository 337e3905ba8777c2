"""The snlad checkpoint file: ``model.pt`` (a finished model) and ``checkpoint.pt`` (training state).

Both are a torch file holding a dict with ``format``/``version`` and a
``kind`` ("model" or "training"), written atomically and read with
``weights_only=True``, so a file that would run code is refused, not executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snlad.errors import SnladError
from snlad.files import load_torch, save_torch

CHECKPOINT_FORMAT = "snlad-checkpoint"
CHECKPOINT_VERSION = 1


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    save_torch(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """An snlad checkpoint's contents; a missing, refused, corrupt or foreign file is one SnladError."""
    path = Path(path)
    if not path.is_file():
        raise SnladError(f"checkpoint {path} does not exist (train a model first with `snlad train`)")
    payload = load_torch(path, "checkpoint", "use a checkpoint written by `snlad train`, or retrain or restore it")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise SnladError(f"checkpoint {path} is not an snlad checkpoint; use a run written by `snlad train`")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise SnladError(
            f"checkpoint {path} has format version {payload.get('version')}, this snlad reads {CHECKPOINT_VERSION}"
        )
    return payload
