"""Glue used only by the R package (``sclibra`` on the R side, through reticulate).

R stores single-cell matrices as *features x cells* (``dgCMatrix``, column-compressed); the
core wants *cells x features*. reticulate hands a ``dgCMatrix`` to Python as a
``scipy.sparse.csc_matrix`` whose ``data``/``indices``/``indptr`` arrays are NumPy views of the
R vectors (no copy), and a dense R matrix as a Fortran-ordered NumPy view. Transposing either
on the Python side is free: ``csc.T`` is a CSR matrix over the same three arrays and
``fortran.T`` is a C-ordered view. So a matrix crosses from R into an AnnData here without
being copied or densified (:func:`anndata_from_r`). Results go back once: a float64
Fortran-ordered *features x cells* array that reticulate copies into R memory
(:func:`dense_to_r`).

Nothing here is public API; the functions keep the R code free of Python idioms.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._errors import SclibraError

# reticulate (< 1.36) converts pandas objects with Index.format(), deprecated in pandas 2
warnings.filterwarnings("ignore", message="Index.format is deprecated", category=FutureWarning)


def _names(values, what: str, n: int) -> pd.Index:
    if isinstance(values, str):
        values = [values]
    index = pd.Index([str(v) for v in values], dtype=object)
    if len(index) != n:
        raise SclibraError(f"{len(index)} {what} names were given for {n} {what}s")
    return index


def anndata_from_r(x, obs_names, var_names, name: str = "input"):
    """Wrap an R *features x cells* matrix as a *cells x features* AnnData, without copying.

    Parameters
    ----------
    x
        ``scipy.sparse.csc_matrix`` (an R ``dgCMatrix``) or a NumPy array (an R matrix),
        features x cells.
    obs_names, var_names
        Cell and feature names, kept exactly as given.
    name
        Name of the modality, used in error messages.

    Returns
    -------
    AnnData whose ``X`` is ``x.T``: a CSR matrix (or C-ordered array) sharing memory with ``x``.
    """
    import anndata as ad

    if sp.issparse(x):
        if x.format != "csc":
            x = sp.csc_matrix(x)
        X = x.T  # CSR over the same data / indices / indptr: no copy
    else:
        X = np.asarray(x).T  # a Fortran-ordered array transposes into a C-ordered view
    if X.ndim != 2:
        raise SclibraError(f"{name}: expected a 2-dimensional matrix, got {X.ndim} dimension(s)")
    obs = pd.DataFrame(index=_names(obs_names, "cell", X.shape[0]))
    var = pd.DataFrame(index=_names(var_names, "feature", X.shape[1]))
    var["feature_types"] = name  # the core names modalities in its messages after this column
    return ad.AnnData(X=X, obs=obs, var=var)


def shares_memory(adata, x) -> bool:
    """Whether ``adata.X`` still shares memory with the R-provided matrix ``x`` (tests)."""
    X = adata.X
    if sp.issparse(X) and sp.issparse(x):
        return bool(np.shares_memory(X.data, x.data) and np.shares_memory(X.indices, x.indices))
    return bool(np.shares_memory(np.asarray(X), np.asarray(x)))


def dense_to_r(X) -> np.ndarray:
    """A *cells x features* result as the float64 Fortran-ordered *features x cells* array R copies once."""
    if sp.issparse(X):
        X = X.toarray()
    return np.asfortranarray(np.asarray(X).T, dtype=np.float64)


def latent_to_r(Z) -> np.ndarray:
    """A *cells x latent* embedding as a float64 Fortran-ordered array (R's layout)."""
    return np.asfortranarray(np.asarray(Z), dtype=np.float64)


def sparse_to_r(X) -> dict:
    """A *cells x features* matrix as the slots of an R *features x cells* ``dgCMatrix``.

    Returns ``x`` (float64), ``i`` (0-based row indices), ``p`` (column pointers) and ``dim``;
    R builds the ``dgCMatrix`` from them (reticulate's own scipy conversion fails with
    recent SciPy versions).
    """
    if sp.issparse(X):
        csc = sp.csc_matrix(X.T, dtype=np.float64)
    else:
        csc = sp.csc_matrix(np.asarray(X, dtype=np.float64).T)
    csc.sum_duplicates()
    csc.sort_indices()
    return {
        "x": csc.data,
        "i": csc.indices.astype(np.int32, copy=False),
        "p": csc.indptr.astype(np.int32, copy=False),
        "dim": np.asarray(csc.shape, dtype=np.int32),
    }


def read_h5ad_for_r(path: str) -> dict:
    """Read an h5ad file into the pieces an R single-cell container needs.

    Returns a dict with ``X`` and ``counts`` (features x cells, CSC; ``counts`` is ``None``
    without ``layers['counts']``), ``obs`` (a DataFrame), ``obs_names`` and ``var_names``.
    """
    import anndata as ad

    adata = ad.read_h5ad(path)
    counts = adata.layers["counts"] if "counts" in adata.layers else None
    obs = adata.obs.copy()
    obs.index = obs.index.astype(str)
    return {
        "X": sparse_to_r(adata.X),
        "counts": None if counts is None else sparse_to_r(counts),
        "obs": obs,
        "obs_names": [str(v) for v in adata.obs_names],
        "var_names": [str(v) for v in adata.var_names],
    }


def model_to_bytes(model) -> np.ndarray:
    """Serialise a trained model (its ``save()`` directory, zipped) into a uint8 array for R."""
    with tempfile.TemporaryDirectory(prefix="sclibra-r-") as tmp:
        target = Path(tmp) / "model"
        model.save(str(target))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(target.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(target).as_posix())
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()


def model_from_bytes(data, device=None):
    """Inverse of :func:`model_to_bytes`: rebuild the model from the zipped ``save()`` directory."""
    from . import LIBRA

    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        payload = np.asarray(data, dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory(prefix="sclibra-r-") as tmp:
        target = Path(tmp) / "model"
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise SclibraError(f"serialised model holds an unsafe path: {member!r}")
            zf.extractall(target)
        return LIBRA.load(str(target), device=device)


def environment_report() -> dict:
    """Versions of the Python pieces the R package depends on (for ``sclibra_config()``)."""
    import sys

    report = {"python": sys.executable, "python_version": sys.version.split()[0]}
    from importlib import metadata

    for module in ("sclibra", "numpy", "scipy", "pandas", "anndata", "torch"):
        try:
            report[module] = metadata.version(module)
        except metadata.PackageNotFoundError:
            report[module] = "not installed"
    report["sclibra_path"] = os.path.dirname(__file__)
    return report
