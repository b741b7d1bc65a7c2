"""Exception types raised by sclibra.

Every error that is caused by the user's input derives from :class:`SclibraError`, a
:class:`ValueError`, so that callers (the CLI, the R package) can tell input problems from bugs.
"""

from __future__ import annotations

import numbers


class SclibraError(ValueError):
    """Base class of all input and usage errors raised by sclibra."""


def check_int(name, value, minimum=1, *, none_ok=False):
    """``value`` as an int (Python or NumPy integer, not a bool) of at least ``minimum``; with
    ``none_ok``, ``None`` too. Otherwise a :class:`SclibraError` naming ``name`` and the bound.
    """
    if none_ok and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        also = " or None" if none_ok else ""
        raise SclibraError(f"{name} must be an integer >= {minimum}{also}, got {value!r}")
    return int(value)


class UnknownArgumentError(SclibraError, TypeError):
    """A function was given a keyword argument it does not take (also a :class:`TypeError`)."""


class NotTrainedError(SclibraError):
    """The model must be trained (``fit``) or loaded before this call."""


class FeatureMismatchError(SclibraError):
    """Features required by a trained model are missing from the input."""

    def __init__(self, message: str, missing: list[str] | None = None):
        super().__init__(message)
        self.missing = list(missing or [])


class ModelFileError(SclibraError):
    """A saved model folder is missing, incomplete, changed after saving or malformed.

    The message names the file and the problem.
    """


class OutputError(SclibraError):
    """An output location cannot be written (full disk, no permission, a file in the way)."""


class LockedError(SclibraError):
    """Another process holds the lock of an output folder (e.g. a running ``tune`` search)."""


def format_names(names, limit: int = 5) -> str:
    """Format a few names for an error message: ``'a', 'b', ... (+12 more)``."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... (+{len(names) - limit} more)"
    return shown
