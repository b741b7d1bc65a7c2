"""Global settings (``sclibra.settings``), in the spirit of ``scvi.settings``."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("sclibra")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("sclibra: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Settings:
    """Package-wide defaults.

    Attributes
    ----------
    seed
        Default random seed used by models whose ``seed`` is ``None``. ``None`` means
        non-deterministic.
    device
        Default torch device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ...
    progress
        Show tqdm progress bars for long work.
    num_threads
        If set, the number of torch intra-op threads used for training.
    verbosity
        Logging level of the ``sclibra`` logger (``"info"``, ``"warning"``, ...).
    """

    def __init__(self) -> None:
        self.seed: int | None = 0
        self.device = os.environ.get("SCLIBRA_DEVICE", "auto")
        self.progress: bool = True
        self.num_threads: int | None = None

    @property
    def verbosity(self) -> str:
        return logging.getLevelName(logger.level).lower()

    @verbosity.setter
    def verbosity(self, level) -> None:
        if isinstance(level, str):
            level = level.upper()
        logger.setLevel(level)

    def __repr__(self) -> str:
        return (
            f"sclibra.settings(seed={self.seed!r}, device={self.device!r}, "
            f"progress={self.progress!r}, num_threads={self.num_threads!r}, "
            f"verbosity={self.verbosity!r})"
        )


settings = Settings()


def resolve_device(device=None):
    """Turn ``"auto"``/``None``/a name into a :class:`torch.device`."""
    import torch

    from ._errors import SclibraError

    if device is None:
        device = settings.device
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SclibraError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SclibraError(f"device {device!r} was requested but CUDA is not available here")
    return dev
