"""Exception types raised by sclibra.

Every error that is caused by the user's input derives from :class:`SclibraError`, a
:class:`ValueError`, so that callers (the CLI, the R package) can tell input problems from bugs.
"""

from __future__ import annotations


class SclibraError(ValueError):
    """Base class of all input and usage errors raised by sclibra."""


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
