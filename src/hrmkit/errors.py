"""The exceptions the `hrm` command turns into a message and an exit code (no traceback).

`HrmkitError`: bad input or an impossible request (exit code 2); the one type for bad input. `RunCrashed`: a
training run that could not go on for a reason other than its input (its weights became non-finite and could
not be rolled back, or it ran out of memory); exit code 3.
"""


class HrmkitError(Exception):
    """Bad input or an impossible request. The message names the file, field and value at fault."""


class RunCrashed(Exception):
    """A training run stopped by a failure of training itself (divergence, out of memory). The message says at
    which step and what to change."""


def short_repr(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters ("..." at the end), for naming a bad value in an error message."""
    s = repr(value)
    return s if len(s) <= limit else s[:limit - 3] + "..."
