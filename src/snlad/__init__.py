"""snlad: multi-class anomaly detection with structural teacher-student normality learning."""

import os
import re
import signal
import sys

__version__ = "0.1.0"

IGNORED_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")
"""A value of ``OMP_NUM_THREADS`` that is no thread count, taken out before torch loads; None when it was fine.

libgomp would print its own ``Invalid value`` line at torch's import and
ignore the value; snlad ignores it too, and the CLI says so in one note.
"""
if IGNORED_OMP_NUM_THREADS is not None and re.fullmatch(r"\s*[1-9]\d*(\s*,\s*[1-9]\d*)*\s*", IGNORED_OMP_NUM_THREADS):
    IGNORED_OMP_NUM_THREADS = None
if IGNORED_OMP_NUM_THREADS is not None:
    del os.environ["OMP_NUM_THREADS"]


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("snlad: interrupted while starting; nothing was done\n")
    os._exit(130)


def end_start_up() -> None:
    """Give Ctrl-C back to Python (KeyboardInterrupt) once the CLI's imports are done; see below."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The snlad command (``snlad ...``, ``python -m snlad.cli``) spends seconds importing torch and scipy
# before its own handling starts; Ctrl-C then printed an import traceback. For the command only (a
# program importing snlad keeps its own Ctrl-C), it is one line and exit 130 until snlad.cli.main runs.
_MODULE = sys.orig_argv[sys.orig_argv.index("-m") + 1] if "-m" in sys.orig_argv[:-1] else None
if (os.path.basename(sys.argv[0]) == "snlad" or _MODULE == "snlad.cli") and signal.getsignal(
    signal.SIGINT
) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
