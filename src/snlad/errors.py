"""The one error type snlad raises for problems a user can fix, and how any error becomes one line.

The CLI prints ``str(error)`` as a single line and exits non-zero; anything
else is a bug and keeps its traceback. Messages name the offending file or key
and, where possible, the fix.
"""

from __future__ import annotations

import sys


class SnladError(Exception):
    """A user-fixable problem: bad input, bad config, incompatible checkpoint."""


def brief(error: BaseException, limit: int = 200) -> str:
    """``Type: first sentence`` of an exception on one line, at most ``limit`` characters.

    Library messages (torch, Pillow, YAML, inductor) run to paragraphs and
    tracebacks; an snlad message quotes only their gist. A DataLoader worker
    re-raises an error wrapped in its traceback (``Caught SnladError in
    DataLoader worker ...``), whose last line is the original message.
    """
    text = str(error).strip()
    if text.startswith("Caught ") and "\n" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    first = next((line for line in text.splitlines() if line.strip()), "")
    message = " ".join(first.split()).split(". ")[0].rstrip(".")[:limit]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def one_line(error: SnladError) -> str:
    """An snlad error's own message for the terminal, unwrapped from a DataLoader worker's traceback."""
    text = str(error)
    if text.startswith("Caught ") and "\n" in text:
        return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def notice(message: str) -> None:
    """Tell the user something worth knowing that is not an error (one line on stderr, ``snlad: note: ...``)."""
    print(f"snlad: note: {message}", file=sys.stderr, flush=True)
