"""Shared fixtures: the bundled real data sets, loaded once per test session."""

from __future__ import annotations

import hashlib
import json
import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

import sclibra  # noqa: E402

sclibra.settings.progress = False
sclibra.settings.verbosity = "warning"


def resign_manifest(path) -> None:
    """Rewrite a saved model's manifest.json for its files as they are now (what a tamperer could
    also do), so a check beyond the checksums is reached; listed files that are gone stay listed.
    """
    man = json.loads((path / "manifest.json").read_text())
    for name in list(man["files"]):
        if (path / name).is_file():
            data = (path / name).read_bytes()
            man["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(man))


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
