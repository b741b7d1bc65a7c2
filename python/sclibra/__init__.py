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

__version__ = "0.1.0"

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
