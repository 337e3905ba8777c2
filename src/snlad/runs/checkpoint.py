"""The snlad checkpoint file: ``model.pt`` (a finished model) and ``checkpoint.pt`` (training state).

Both are a torch file holding a dict with ``format``/``version`` and a
``kind`` ("model" or "training"), written atomically and read with
``weights_only=True``, so a file that would run code is refused, not executed.
What a reader takes from the dict goes through :func:`entry` and
:func:`state_dict`: a key removed or a value of another type (an edited file)
is one SnladError naming the file and the key, never a KeyError or TypeError
deep inside torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

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


ALTERED = "it was altered or written by another snlad version"


def entry(payload: dict[str, Any], key: str, kind: type, path: Path, fix: str) -> Any:
    """``payload[key]`` if it is a ``kind`` (a bool is no int); else one SnladError naming ``path`` and ``key``."""
    value = payload.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        found = "missing" if key not in payload else f"a {type(value).__name__}"
        raise SnladError(f"checkpoint {path}: '{key}' is {found}, not a {kind.__name__}; {ALTERED}: {fix}")
    return value


def state_dict(payload: dict[str, Any], key: str, path: Path, fix: str) -> dict[str, torch.Tensor]:
    """``payload[key]`` as weights (names to tensors); anything else is one SnladError naming ``path`` and ``key``."""
    value = entry(payload, key, dict, path, fix)
    bad = next((name for name, tensor in value.items() if not isinstance(tensor, torch.Tensor)), None)
    if bad is not None or not all(isinstance(name, str) for name in value):
        raise SnladError(f"checkpoint {path}: '{key}' holds {bad!r}, which is not a tensor; {ALTERED}: {fix}")
    return value


def real(value: object) -> bool:
    """A finite int or float (not a bool): what a stored threshold or score must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
