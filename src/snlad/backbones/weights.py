"""Pretrained weights from a file: read a state dict safely, load it into a backbone exactly or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from snlad.errors import SnladError
from snlad.files import load_torch

# A checkpoint may legitimately lack these (older torchvision files do): BatchNorm
# then starts its counter at zero, which eval-mode inference never reads.
_OPTIONAL_KEY_SUFFIX = ".num_batches_tracked"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from ``path`` without ever executing pickled code.

    ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and a DataParallel
    ``module.`` prefix are accepted because training scripts commonly save them.
    """
    path = Path(path)
    if not path.is_file():
        raise SnladError(f"teacher weights {path} do not exist; check the path given to --teacher-weights")
    loaded = load_torch(path, "teacher weights", "check the file given to --teacher-weights")
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not loaded:
        raise SnladError(
            f"teacher weights {path} are not a state dict: expected a non-empty dict of "
            f"parameter names to tensors, found {type(loaded).__name__}"
        )
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SnladError(
                f"teacher weights {path} are not a state dict: entry {key!r} holds {type(value).__name__}, not a tensor"
            )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def load_pretrained(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    path: str | os.PathLike,
    arch: str,
    checkpoint_key: Callable[[str], str],
    ignored: Callable[[str], bool],
) -> None:
    """Load ``state`` (the file's naming) into ``module``, requiring an exact match.

    ``checkpoint_key`` maps each of ``module``'s state-dict keys to the file's
    name for it; file keys for which ``ignored`` is true (layers past stride
    16, classifier heads) are dropped. Everything else must match in name and
    shape; otherwise one SnladError line summarises what is wrong, in the
    file's own key names so the user can find them in it.
    """
    model_state = module.state_dict()
    expected = {checkpoint_key(key): key for key in model_state}
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in state if k not in expected and not ignored(k)]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(model_state[expected[k]].shape)}"
        for k in expected
        if k in state and state[k].shape != model_state[expected[k]].shape
    ]
    problems = [
        f"{_count(len(found), what)} (e.g. {found[0]})"
        for found, what in (
            (missing, "missing key"),
            (unexpected, "unexpected key"),
            (mismatched, "shape mismatch"),
        )
        if found
    ]
    if problems:
        raise SnladError(f"teacher weights {path} do not match {arch}: {', '.join(problems)}")
    module.load_state_dict({expected[k]: v for k, v in state.items() if k in expected}, strict=True)


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith("h") else f"{n} {noun}s"
