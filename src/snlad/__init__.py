"""snlad: multi-class anomaly detection with structural teacher-student normality learning."""

import os
import re

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
