"""The one error type snlad raises for problems a user can fix.

The CLI prints ``str(error)`` as a single line and exits non-zero; anything
else is a bug and keeps its traceback. Messages name the offending file or key
and, where possible, the fix.
"""


class SnladError(Exception):
    """A user-fixable problem: bad input, bad config, incompatible checkpoint."""
