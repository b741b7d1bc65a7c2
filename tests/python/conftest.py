"""Shared fixtures: the bundled real data sets, loaded once per test session."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

import sclibra  # noqa: E402

sclibra.settings.progress = False
sclibra.settings.verbosity = "warning"

#: small, fast architecture for tests (the defaults are exercised by the demo and benchmarks)
FAST = dict(n_layers=2, n_nodes=64, latent_dim=8, batch_size=64, seed=0, n_models=1)


@pytest.fixture(scope="session")
def cite():
    """(rna, adt) bone-marrow CITE-seq, 600 cells."""
    return sclibra.datasets.bmmc_cite()


@pytest.fixture(scope="session")
def multiome():
    """(rna, atac) bone-marrow Multiome, 500 cells."""
    return sclibra.datasets.bmmc_multiome()


@pytest.fixture(scope="session")
def cite_model(cite):
    """A small model trained RNA -> ADT on the training donor."""
    rna, adt = cite
    return sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", max_epochs=30)


@pytest.fixture(autouse=True)
def _quiet_settings():
    """Restore global settings a test may change."""
    saved = (sclibra.settings.seed, sclibra.settings.device, sclibra.settings.progress)
    yield
    sclibra.settings.seed, sclibra.settings.device, sclibra.settings.progress = saved
