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

import contextlib
import inspect
import io
import logging
import os
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._errors import SclibraError
from ._settings import logger

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


#: how :func:`import_torch` loaded torch (reported by :func:`environment_report`)
_TORCH_IMPORT: str | None = None


def import_torch() -> str:
    """Import torch for the R session so that it calls its own BLAS, not R's.

    R is linked against the system BLAS (``libblas.so.3``, often the slow reference BLAS) and
    loads it into the global symbol scope before Python starts. PyTorch's CPU wheel carries
    MKL inside ``libtorch_cpu.so`` but calls ``sgemm_`` and friends through the dynamic linker,
    so inside R every matrix product of torch went to R's BLAS: about 30x slower per epoch than
    the same training run from Python (benchmarks/bench_r_path.py). Importing torch with
    ``RTLD_DEEPBIND`` (glibc only) makes torch's libraries resolve their own symbols first.

    Returns
    -------
    ``"deepbind"`` (torch imported with its own BLAS), ``"already-imported"`` (torch was loaded
    before sclibra: nothing can be changed), ``"host-python"`` (R runs inside Python through
    rpy2, which imported torch first: no conflict), ``"default"`` (no ``RTLD_DEEPBIND`` on this
    platform, or switched off with ``SCLIBRA_TORCH_DEEPBIND=0``).
    """
    global _TORCH_IMPORT
    import sys

    if "torch" in sys.modules:
        # R embedded in Python (rpy2): Python loaded torch before R and its BLAS, and torch
        # keeps its own (measured: same speed as without R)
        host = "host-python" if "rpy2" in sys.modules else "already-imported"
        _TORCH_IMPORT = _TORCH_IMPORT or host
        return _TORCH_IMPORT
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or os.environ.get("SCLIBRA_TORCH_DEEPBIND", "1") == "0":
        import torch  # noqa: F401

        _TORCH_IMPORT = "default"
        return _TORCH_IMPORT
    old = sys.getdlopenflags()
    sys.setdlopenflags(old | deepbind)
    try:
        import torch  # noqa: F401
    finally:
        sys.setdlopenflags(old)
    _TORCH_IMPORT = "deepbind"
    return _TORCH_IMPORT


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


@contextlib.contextmanager
def _logs_to(callback):
    """Send the ``sclibra`` logger's records to ``callback(level, text)`` (an R function that
    turns them into R conditions, so that ``suppressMessages()`` works) instead of stderr.
    """
    if callback is None:
        yield
        return

    saved = logger.handlers[:]
    pid = os.getpid()

    class _ToR(logging.Handler):
        def emit(self, record):
            # R may only be called from its own thread and process; anything else (a thread
            # or a forked worker) keeps the core's usual stderr handlers
            if os.getpid() == pid and threading.current_thread() is threading.main_thread():
                callback(int(record.levelno), record.getMessage())
            else:
                for handler in saved:
                    handler.handle(record)

    logger.handlers = [_ToR()]
    try:
        yield
    finally:
        logger.handlers = saved


@contextlib.contextmanager
def _bars_to(callback):
    """Send the core's tqdm progress bars to ``callback(desc, n, total, postfix, done)`` (an R
    function that draws R progress through R's conditions) instead of stderr.

    The core creates its bars with ``from tqdm.auto import tqdm`` at the moment it needs one
    (the aLIBRA trial bar, the epoch bar of a training), so replacing ``tqdm.auto.tqdm`` while
    the call runs reaches every bar without a change to the core. A bar created disabled
    (``progress=False``) stays silent; nothing is ever written to stderr; updates from another
    thread or process (tqdm's monitor thread, workers) are dropped: R may only be called from
    its own thread.
    """
    if callback is None:
        yield
        return

    import tqdm.auto as tqdm_auto
    from tqdm.std import tqdm as std_tqdm

    pid = os.getpid()

    class _ToR(std_tqdm):
        monitor_interval = 0  # no monitor thread: it would refresh from outside R's thread

        def __init__(self, *args, **kwargs):
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            if os.getpid() != pid or threading.current_thread() is not threading.main_thread():
                return True
            d = self.format_dict
            callback(
                str(d.get("prefix") or ""),
                int(d.get("n") or 0),
                None if d.get("total") is None else int(d["total"]),
                str(d.get("postfix") or ""),
                bool(self.disable) or self.n >= (self.total or float("inf")),
            )
            return True

    saved = tqdm_auto.tqdm
    tqdm_auto.tqdm = _ToR
    try:
        yield
    finally:
        tqdm_auto.tqdm = saved


def call_capturing_warnings(fn, *args, _r_log=None, _r_bars=None, **kwargs) -> dict:
    """Call ``fn`` and return ``{"result": ..., "warnings": [...]}`` so that R can re-raise the
    core's warnings as R warnings (reticulate would only print them). Deprecation and
    FutureWarnings from libraries are left out: they are not for the user. ``_r_log``: an R
    callback receiving the core's log records (see :func:`_logs_to`); ``_r_bars``: one
    receiving the core's progress bars (see :func:`_bars_to`).
    """
    with warnings.catch_warnings(record=True) as caught, _logs_to(_r_log), _bars_to(_r_bars):
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    skip = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    messages = []
    for w in caught:
        if issubclass(w.category, skip):
            continue
        text = str(w.message)
        if text not in messages:
            messages.append(text)
    return {"result": result, "warnings": messages}


def frame_to_r(df, keep_index: bool | None = None) -> dict:
    """A DataFrame as plain columns for R: numbers as float64 (NaN for missing), booleans
    as bool, anything else as a list of str / None. ``index`` holds the row names when the
    index is not a default RangeIndex (or ``keep_index`` says so).
    """
    out = {}
    for col in df.columns:
        v = df[col]
        if pd.api.types.is_bool_dtype(v.dtype):
            out[str(col)] = v.to_numpy(dtype=bool)
        elif pd.api.types.is_numeric_dtype(v.dtype):
            out[str(col)] = v.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[str(col)] = [None if pd.isna(e) else str(e) for e in v.astype(object)]
    if keep_index is None:
        keep_index = not isinstance(df.index, pd.RangeIndex)
    return {
        "columns": [str(c) for c in df.columns],
        "data": out,
        "index": [str(i) for i in df.index] if keep_index else [],
    }


def ppji_for_r(
    reference,
    cells,
    query=None,
    embedding=None,
    subset=None,
    n_neighbors: int = 10,
    resolution: float = 1.0,
    seed: int = 0,
) -> dict:
    """PPJI of ``reference`` labels against ``query`` labels, or against Leiden clusters of
    ``embedding`` (cells x dimensions) when ``query`` is None. ``cells`` names the rows of
    every input; ``subset`` restricts the comparison to some of them.
    """
    from .metrics import cluster_latent, ppji

    cells = pd.Index([str(c) for c in cells])
    ref = pd.Series(list(reference), index=cells, dtype=object)
    if query is None:
        if embedding is None:
            raise SclibraError("PPJI needs query labels or an embedding to cluster")
        z = np.asarray(embedding, dtype=np.float64)
        if subset is not None:
            from ._data import select_cells

            keep = cells.get_indexer(select_cells(list(subset), cells, what="cells"))
            z, cells_used = z[keep], cells[keep]
        else:
            cells_used = cells
        q = cluster_latent(
            z,
            n_neighbors=int(n_neighbors),
            resolution=float(resolution),
            seed=int(seed),
            cells=cells_used,
        )
    else:
        q = pd.Series(list(query), index=cells, dtype=object)
    value, jac = ppji(ref, q, cells=None if subset is None else list(subset), return_matrix=True)
    return {
        "ppji": float(value),
        "clusters": [str(v) for v in q.astype(str)],
        "cluster_cells": [str(c) for c in q.index],
        "jaccard": np.asfortranarray(jac.to_numpy(dtype=np.float64)),
        "jaccard_rows": [str(v) for v in jac.index],
        "jaccard_cols": [str(v) for v in jac.columns],
    }


def consistency_to_r(res) -> dict:
    """A :class:`sclibra.metrics.ConsistencyResult` as plain values for R."""
    return {
        "distances": res.distances.to_numpy(dtype=np.float64),
        "cells": [str(c) for c in res.distances.index],
        "mode": [str(m) for m in res.mode],
        "threshold": float(res.threshold),
        "is_bimodal": bool(res.is_bimodal),
        "share_high": float(res.share_high),
        "share_held_out_high": float(res.share_held_out_high),
        "held_out": [str(c) for c in res.held_out],
        "modes": frame_to_r(res.modes.reset_index()),
        "summary": {k: float(v) for k, v in res.summary().items()},
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
    report["torch_import"] = _TORCH_IMPORT or "not imported"
    if "torch" in sys.modules:
        report["torch_threads"] = str(sys.modules["torch"].get_num_threads())
    return report


def core_arguments() -> dict:
    """The core's public arguments and their defaults, by function, for R.

    R passes only the arguments a user gave (its formals default to ``NULL``, "the core's
    default"), so the core stays the one source of defaults and bounds: R reads the names to
    refuse an unknown argument before any work starts, and the defaults to describe them
    (e.g. the epoch limit in progress lines). A default that is not a plain value is ``None``.
    """
    from . import LIBRA, evaluate, tune
    from .metrics import nn_consistency

    def plain(value):
        return value if isinstance(value, (bool, int, float, str)) else None

    def arguments(fn):
        return {
            p.name: None if p.default is p.empty else plain(p.default)
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
        }

    from ._recipe import FIT_KEYS, PRESETS

    def resolved(args):
        # a None default of LIBRA()/fit() means "the default preset's value"
        preset = PRESETS["default"]
        return {k: preset.get(k, v) if v is None else v for k, v in args.items()}

    return {
        "model": resolved(arguments(LIBRA.__init__)),
        "fit": resolved(arguments(LIBRA.fit)),
        "tune": arguments(tune),
        "evaluate": arguments(evaluate),
        "consistency": arguments(nn_consistency),
        # the schedule of the second network (LIBRA.fit_b_encoder): the recipe's fit stage
        "schedule": {k: PRESETS["default"][k] for k in FIT_KEYS},
    }
