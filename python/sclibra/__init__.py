"""sclibra: LIBRA and aLIBRA for paired single-cell multi-omics.

LIBRA trains an unbalanced autoencoder that reads one modality (e.g. ATAC, RNA) and reconstructs
another (e.g. RNA, ADT). Its bottleneck is a shared latent space; its output a cross-modal
prediction. Heavy dependencies (torch, scanpy, matplotlib) are imported lazily.

Main entry points: :class:`LIBRA`, :func:`read`, :data:`settings`, :mod:`sclibra.tl`,
:mod:`sclibra.pl`, :mod:`sclibra.metrics`, :func:`evaluate`, :func:`tune`, :mod:`sclibra.datasets`.
"""

from __future__ import annotations

import importlib

from ._errors import (
    FeatureMismatchError,
    LockedError,
    ModelFileError,
    NotTrainedError,
    OutputError,
    SclibraError,
)
from ._settings import settings


def _version() -> str:
    """The version, written once: ``[project] version`` in pyproject.toml (package metadata)."""
    import re
    from importlib import metadata
    from pathlib import Path

    # a source checkout (or the copy inside the R package): read pyproject.toml itself, so the
    # version is right even when another copy of sclibra is installed in the environment
    pyproject = Path(__file__).resolve().parent.parent.parent / "pyproject.toml"
    if pyproject.is_file():
        project = re.search(r"^\[project\]$(.*?)(^\[|\Z)", pyproject.read_text(), re.M | re.S)
        found = project and re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M)
        if found:
            return found.group(1)
    try:
        return metadata.version("sclibra")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed, no pyproject
        return "unknown"


__version__ = _version()

_LAZY = {
    "LIBRA": ("._model", "LIBRA"),
    "LIBRANet": ("._module", "LIBRANet"),
    "read": (".io", "read"),
    "evaluate": ("._report", "evaluate"),
    "tune": ("._tune", "tune"),
    "TuneResult": ("._tune", "TuneResult"),
}
_SUBMODULES = {"tl", "pl", "pp", "io", "metrics", "datasets", "cli"}

__all__ = [
    "LIBRA",
    "LIBRANet",
    "read",
    "evaluate",
    "tune",
    "TuneResult",
    "settings",
    "SclibraError",
    "NotTrainedError",
    "FeatureMismatchError",
    "ModelFileError",
    "OutputError",
    "LockedError",
    *sorted(_SUBMODULES),
]


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'sclibra' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
