"""Whether snlad shows its progress (bars, one line per epoch): one setting for a whole call, not a parameter of every function.

The ``snlad`` command turns it off with ``--quiet``; a program turns it off
around any api call with ``with show_progress(False): ...``. It is a context
variable, so each thread (and asyncio task) keeps its own setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from tqdm import tqdm

_SHOWN: ContextVar[bool] = ContextVar("snlad_progress", default=True)


def progress_shown() -> bool:
    """Whether progress is shown in this context (the default: yes)."""
    return _SHOWN.get()


@contextlib.contextmanager
def show_progress(enabled: bool) -> Iterator[None]:
    """Show (or hide) snlad's progress inside the ``with`` block; the previous setting returns after it."""
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    unit: str,
    total: int | None = None,
    hidden: bool = False,
) -> tqdm:
    """A bar that disappears when done, shown only while progress is; ``hidden`` hides it anyway (a non-main rank)."""
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=hidden or not _SHOWN.get(), leave=False)
