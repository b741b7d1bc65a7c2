"""Small input helpers shared by the metrics (no heavy imports)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclibra._errors import SclibraError, format_names
from sclibra._fs import atomic_file as atomic_output  # noqa: F401 - the one file writer

#: rows densified at once when streaming over a (possibly sparse) matrix
ROW_CHUNK = 4096
#: columns densified at once for per-feature rank statistics
COL_CHUNK = 256


def _is_anndata(obj) -> bool:
    return type(obj).__name__ == "AnnData" and hasattr(obj, "obs_names")


def as_2d(x, name: str = "input", layer: str | None = None):
    """Return ``x`` as a 2-D numpy array or scipy CSR matrix (sparse stays sparse).

    Accepts numpy, scipy sparse, :class:`pandas.DataFrame` and AnnData (``.X`` or ``layer``).
    """
    if _is_anndata(x):
        from sclibra._data import as_matrix

        x = as_matrix(x, layer=layer, name=name).X
        if hasattr(x, "to_memory"):  # backed sparse dataset
            x = x.to_memory()
        elif not sp.issparse(x) and hasattr(x, "shape") and not isinstance(x, np.ndarray):
            x = x[()]  # backed dense (h5py) dataset
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    if sp.issparse(x):
        x = x.tocsr() if x.format != "csr" else x
    else:
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise SclibraError(f"{name}: expected a numeric matrix, got dtype {x.dtype}")
    if x.ndim != 2:
        raise SclibraError(
            f"{name}: expected a 2-D cells x features matrix, got {x.ndim} dimension(s)"
        )
    return x


def check_finite(x, name: str) -> None:
    """Raise if ``x`` (numpy or sparse) holds NaN or infinite values, naming how many columns."""
    data = x.data if sp.issparse(x) else x
    if not np.issubdtype(data.dtype, np.floating):
        return
    bad = ~np.isfinite(data)
    if bad.any():
        if sp.issparse(x):
            n_cols = len(np.unique(x.indices[bad]))
        else:
            n_cols = int(bad.any(axis=0).sum())
        raise SclibraError(f"{name}: {n_cols} features contain NaN or infinite values")


def dense_rows(x, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a numpy/sparse matrix as dense float64 (one block)."""
    block = x[start:stop]
    if sp.issparse(block):
        block = block.toarray()
    return np.asarray(block, dtype=np.float64)


def iter_row_blocks(x, chunk: int = ROW_CHUNK):
    """Yield ``(start, stop)`` pairs covering the rows of ``x``."""
    n = x.shape[0]
    for start in range(0, n, chunk):
        yield start, min(start + chunk, n)


def check_same_shape(pred, truth, what: str = "prediction") -> None:
    if pred.shape != truth.shape:
        raise SclibraError(
            f"{what} has shape {pred.shape[0]} x {pred.shape[1]} but the measured matrix has "
            f"{truth.shape[0]} x {truth.shape[1]}; they must cover the same cells and features "
            "in the same order"
        )


def natural_sorted(values) -> list:
    """Sort labels numerically when they all look like integers (Leiden: '0', '1', '10')."""
    values = list(values)
    try:
        return sorted(values, key=lambda v: int(str(v)))
    except ValueError:
        return sorted(values, key=str)


def as_labels(labels, name: str = "labels") -> pd.Series:
    """Turn labels (Series, Categorical, list, array) into a Series of strings.

    A Series keeps its index as cell names unless it is a default ``RangeIndex``, in which case
    (as for arrays and lists) the result is unnamed: its index is a ``RangeIndex`` and it can only
    be matched by position.
    """
    if isinstance(labels, pd.DataFrame):
        if labels.shape[1] != 1:
            raise SclibraError(f"{name}: expected one column of labels, got {labels.shape[1]}")
        labels = labels.iloc[:, 0]
    if isinstance(labels, pd.Series):
        s = labels.copy()
        if not isinstance(s.index, pd.RangeIndex):
            s.index = pd.Index(s.index.astype(str))
    else:
        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1:
            raise SclibraError(
                f"{name}: expected a 1-D vector of labels, got {arr.ndim} dimensions"
            )
        s = pd.Series(arr)
    missing = s.isna()
    if missing.any():
        raise SclibraError(
            f"{name}: {int(missing.sum())} cells have no label (NaN); drop them or give them a label"
        )
    if not isinstance(s.index, pd.RangeIndex) and not s.index.is_unique:
        dup = s.index[s.index.duplicated()].unique()
        raise SclibraError(f"{name}: {len(dup)} duplicated cell names ({format_names(dup)})")
    return s.astype(str)


def is_named(s: pd.Series) -> bool:
    return not isinstance(s.index, pd.RangeIndex)


def align_labels(a: pd.Series, b: pd.Series, name_a: str, name_b: str, cells=None):
    """Align two label vectors by cell name (or position when neither has names).

    Unmatched cell names are an error, never silently dropped. A plain array (no names) is
    matched by position to the other vector's cells. ``cells`` restricts both to a subset of
    cell names (each vector must contain all of them).
    """
    if is_named(a) != is_named(b):
        # a plain array takes the cell names of the other partition, by position
        named, unnamed, nm_u = (a, b, name_b) if is_named(a) else (b, a, name_a)
        if len(unnamed) != len(named):
            raise SclibraError(
                f"{nm_u} has no cell names and {len(unnamed)} entries but the other partition has "
                f"{len(named)} cells; give both as pandas Series indexed by cell name"
            )
        unnamed = pd.Series(unnamed.to_numpy(), index=named.index)
        a, b = (named, unnamed) if is_named(a) else (unnamed, named)
    if not is_named(a):
        if len(a) != len(b):
            raise SclibraError(
                f"{name_a} has {len(a)} cells but {name_b} has {len(b)}; unnamed partitions are "
                "matched by position and must have the same length"
            )
        if cells is not None:
            raise SclibraError("cells= needs partitions indexed by cell name (pandas Series)")
        return a.to_numpy(), b.to_numpy(), pd.Index([str(i) for i in range(len(a))])
    if cells is not None:
        cells = pd.Index(np.asarray(cells).astype(str))
        for s, nm in ((a, name_a), (b, name_b)):
            missing = cells[~cells.isin(s.index)]
            if len(missing):
                raise SclibraError(
                    f"{len(missing)} of the requested cells are not in {nm}: {format_names(missing)}"
                )
        return a.loc[cells].to_numpy(), b.loc[cells].to_numpy(), cells
    only_a = a.index[~a.index.isin(b.index)]
    only_b = b.index[~b.index.isin(a.index)]
    if len(only_a) or len(only_b):
        parts = []
        if len(only_a):
            parts.append(
                f"{len(only_a)} cells of {name_a} are not in {name_b} ({format_names(only_a, 3)})"
            )
        if len(only_b):
            parts.append(
                f"{len(only_b)} cells of {name_b} are not in {name_a} ({format_names(only_b, 3)})"
            )
        raise SclibraError(
            "cells do not match: " + "; ".join(parts) + "; subset both to the same cells "
            "(or pass cells=) first"
        )
    return a.to_numpy(), b.loc[a.index].to_numpy(), pd.Index(a.index)


def pca_scores(x, n_pcs: int, seed: int | None = 0, *, randomized: bool = False):
    """Fit a PCA on ``x`` (numpy or sparse; sparse is never densified) and return the fitted
    estimator (with ``transform``) and the scores of ``x``.

    Sparse input uses scikit-learn's implicitly centred ARPACK PCA; ``randomized=True`` uses
    :class:`RandomizedPCA` for sparse and dense input alike (scikit-learn is then not
    imported). The number of components is capped below the matrix rank limits.
    """
    n, p = x.shape
    if n_pcs is None or int(n_pcs) < 1:
        raise SclibraError(f"n_pcs must be a positive integer, got {n_pcs!r}")
    limit = min(n, p) - 1
    if limit < 1:
        raise SclibraError(
            f"cannot compute a PCA of a {n} x {p} matrix; need at least 2 cells and 2 features"
        )
    k = min(int(n_pcs), limit)
    if randomized:  # sparse and dense alike, so both forms of the same data agree
        x = x.astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
        est = RandomizedPCA(k, seed=seed).fit(x)
        return est, est.transform(x)
    from sklearn.decomposition import PCA

    if sp.issparse(x):
        est = PCA(n_components=k, svd_solver="arpack", random_state=seed)
        scores = est.fit_transform(x.astype(np.float64))
    else:
        est = PCA(
            n_components=k,
            svd_solver="full" if max(n, p) <= 2000 else "randomized",
            random_state=seed,
        )
        scores = est.fit_transform(np.asarray(x, dtype=np.float64))
    return est, scores


class RandomizedPCA:
    """A PCA by a randomized range finder (Halko, Martinsson & Tropp 2011), implicitly centred.

    The products with ``x`` are blocks of ``n_components + oversamples`` vectors (sparse x dense
    kernels) instead of ARPACK's one vector at a time: several times faster on wide sparse
    input, with the leading components as accurate and the last few slightly rotated within the
    span of their neighbours (what a denoising first layer does not notice). Sparse input is
    never densified: the centring is applied to the small products.

    Attributes follow :class:`sklearn.decomposition.PCA`: ``components_`` (k, p), ``mean_``,
    ``explained_variance_``, ``n_components_``; :meth:`transform` gives the scores.
    """

    def __init__(self, n_components: int, *, n_iter: int = 7, oversamples: int = 20, seed=0):
        self.n_components = int(n_components)
        self.n_iter, self.oversamples, self.seed = int(n_iter), int(oversamples), seed

    def fit(self, x) -> RandomizedPCA:
        """Fit on the rows of ``x`` (numpy or scipy sparse)."""
        n, p = x.shape
        mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
        width = min(self.n_components + self.oversamples, n, p)
        rng = np.random.default_rng(self.seed)

        def right(m):  # (x - 1 mean^T) @ m
            return np.asarray(x @ m) - mean @ m

        def left(q):  # (x - 1 mean^T)^T @ q
            return np.asarray(x.T @ q) - np.outer(mean, q.sum(axis=0))

        q, _ = np.linalg.qr(right(rng.standard_normal((p, width))))
        for _ in range(self.n_iter):  # power iterations, re-orthonormalised each half-step
            z, _ = np.linalg.qr(left(q))
            q, _ = np.linalg.qr(right(z))
        _, s, vt = np.linalg.svd(left(q).T, full_matrices=False)
        k = self.n_components
        vt = vt[:k]
        signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
        self.components_ = vt * signs[:, None]  # largest loading positive: a fixed sign
        self.mean_ = mean
        self.explained_variance_ = s[:k] ** 2 / max(n - 1, 1)
        self.n_components_ = vt.shape[0]
        return self

    def transform(self, x) -> np.ndarray:
        """Scores of the rows of ``x``: ``(x - mean) @ components_.T``."""
        return np.asarray(x @ self.components_.T) - self.mean_ @ self.components_.T


def pca_transform(est, x) -> np.ndarray:
    if sp.issparse(x):
        return est.transform(x.astype(np.float64))
    return est.transform(np.asarray(x, dtype=np.float64))


def paired_matrices(
    a, b, *, layer_a=None, layer_b=None, obsm_a=None, obsm_b=None, names=("A", "B")
):
    """Matrix views of two modalities restricted to their shared cells (in the order of ``a``).

    Returns ``(ma, mb, obs)`` where ``obs`` holds the obs columns of ``a`` and those only ``b``
    has, for the shared cells (None without AnnData input).
    Nothing is read or densified here.
    """
    from sclibra._data import as_matrix, pair_cells

    ma = as_matrix(a, layer=layer_a, obsm=obsm_a, name=names[0])
    mb = as_matrix(b, layer=layer_b, obsm=obsm_b, name=names[1])
    ma, mb = pair_cells(ma, mb)
    obs = None
    for m in (ma, mb):  # obs columns of A, then those only B has
        if m.obs is None:
            continue
        o = m.obs.copy()
        o.index = o.index.astype(str)
        o = o.reindex(ma.cells)
        obs = o if obs is None else obs.join(o[[c for c in o.columns if c not in obs.columns]])
    return ma, mb, obs


def model_splits(model, cells: pd.Index, held_out=None, obs: pd.DataFrame | None = None) -> dict:
    """Split ``cells`` into the model's training, validation and held-out cells.

    ``held_out`` is ``None`` (cells the model neither trained nor validated on), the name of a
    boolean obs column (True = held out), a boolean mask over ``cells`` (or a boolean Series
    indexed by cell name), or a list of cell names.
    """
    import warnings

    cells = pd.Index(cells)
    train = pd.Index([] if getattr(model, "train_cells_", None) is None else model.train_cells_)
    val = pd.Index([] if getattr(model, "val_cells_", None) is None else model.val_cells_)
    seen = train.append(val)
    if held_out is None:
        held = cells[~cells.isin(seen)]
    else:
        from sclibra._data import select_cells

        held = select_cells(held_out, cells, obs=[("the inputs", obs)], what="held_out")
        leaked = held[held.isin(seen)]
        if len(leaked):
            warnings.warn(
                f"{len(leaked)} of the {len(held)} held-out cells were used to train or validate the "
                "model; their scores are not held-out scores",
                UserWarning,
                stacklevel=3,
            )
    rest = cells[~cells.isin(held)]
    return {
        "held_out": pd.Index(held),
        "train": rest[rest.isin(train)],
        "validation": rest[rest.isin(val)],
    }
