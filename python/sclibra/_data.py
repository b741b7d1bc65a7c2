"""Input handling: one view over AnnData / MuData / numpy / scipy sparse / backed h5ad.

The central object is :class:`Matrix`, a lazy, row- and column-subsettable view of a
cells x features matrix that hands out *one minibatch at a time* as a dense float32 array (or
a CSR block for the sparse input layer). Nothing here densifies a whole matrix.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._errors import SclibraError, check_int, format_names
from ._settings import logger

#: rows read per chunk when scanning a whole matrix (validation, statistics)
SCAN_CHUNK = 8192


def _is_anndata(obj) -> bool:
    return type(obj).__name__ == "AnnData" and hasattr(obj, "obs_names")


def _is_mudata(obj) -> bool:
    return type(obj).__name__ == "MuData" and hasattr(obj, "mod")


def _is_backed_sparse(obj) -> bool:
    # anndata's on-disk CSR/CSC datasets (class names differ between anndata versions)
    return hasattr(obj, "format") and hasattr(obj, "shape") and "Dataset" in type(obj).__name__


def _is_h5_dataset(obj) -> bool:
    return type(obj).__module__.startswith("h5py") and hasattr(obj, "shape")


@dataclass
class Matrix:
    """A cells x features view with names, read one block of rows at a time.

    Parameters
    ----------
    X
        numpy array, scipy CSR matrix, h5py dataset or anndata backed sparse dataset.
    obs_names, var_names
        Names of all rows and columns of ``X``.
    name
        Name of the modality, used in messages.
    named
        Whether ``obs_names`` came from the user (AnnData) or were generated (numpy).
    rows, cols
        Optional integer positions selecting (and ordering) rows / columns of ``X``. A column
        position of ``-1`` yields a column of zeros (used for ``fill_missing``).
    """

    X: Any
    obs_names: pd.Index
    var_names: pd.Index
    name: str = "input"
    named: bool = True
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    obs: pd.DataFrame | None = field(default=None, repr=False)

    # -- shape and names ----------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        return len(self.obs_names) if self.rows is None else len(self.rows)

    @property
    def n_vars(self) -> int:
        return len(self.var_names) if self.cols is None else len(self.cols)

    @property
    def cells(self) -> pd.Index:
        return self.obs_names if self.rows is None else self.obs_names[self.rows]

    @property
    def features(self) -> pd.Index:
        if self.cols is None:
            return self.var_names
        return pd.Index([self.var_names[c] if c >= 0 else "" for c in self.cols])

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.X) or _is_backed_sparse(self.X)

    @property
    def is_backed(self) -> bool:
        return _is_backed_sparse(self.X) or _is_h5_dataset(self.X)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_obs, self.n_vars)

    def density(self) -> float:
        """Fraction of stored entries (1.0 for dense)."""
        if sp.issparse(self.X):
            nnz = self.X.nnz
        elif _is_backed_sparse(self.X):
            nnz = self.X.group["data"].shape[0] if hasattr(self.X, "group") else np.inf
        else:
            return 1.0
        total = float(self.X.shape[0]) * float(self.X.shape[1])
        return min(1.0, nnz / total) if total else 1.0

    # -- subsetting ---------------------------------------------------------------------------
    def subset_rows(self, positions) -> Matrix:
        positions = np.asarray(positions, dtype=np.int64)
        base = positions if self.rows is None else self.rows[positions]
        return Matrix(
            self.X, self.obs_names, self.var_names, self.name, self.named, base, self.cols, self.obs
        )

    def subset_cells(self, names) -> Matrix:
        """Subset and order rows by cell name."""
        idx = pd.Index(self.cells).get_indexer(pd.Index(names))
        if (idx < 0).any():
            missing = pd.Index(names)[idx < 0]
            raise SclibraError(
                f"{len(missing)} cells are not in {self.name}: {format_names(missing)}"
            )
        return self.subset_rows(idx)

    def with_columns(self, cols) -> Matrix:
        cols = np.asarray(cols, dtype=np.int64)
        base = (
            cols if self.cols is None else np.where(cols >= 0, self.cols[np.maximum(cols, 0)], -1)
        )
        return Matrix(
            self.X, self.obs_names, self.var_names, self.name, self.named, self.rows, base, self.obs
        )

    # -- reading ------------------------------------------------------------------------------
    def _read_rows(self, idx: np.ndarray):
        """Rows ``idx`` (positions in this view) of the underlying matrix, columns not applied."""
        pos = idx if self.rows is None else self.rows[idx]
        X = self.X
        if isinstance(X, np.ndarray) or sp.issparse(X):
            if sp.issparse(X) and len(pos) > 1 and (np.diff(pos) == 1).all():
                # consecutive rows (chunked scans): a slice (a copy in scipy) is cheaper than a gather
                return X[int(pos[0]) : int(pos[-1]) + 1]
            return X[pos]
        # on-disk (backed) storage: h5py wants increasing, unique indices
        order = np.argsort(pos, kind="stable")
        sorted_pos = pos[order]
        uniq, inverse = np.unique(sorted_pos, return_inverse=True)
        if len(uniq) and uniq[-1] - uniq[0] + 1 == len(uniq):
            block = X[int(uniq[0]) : int(uniq[-1]) + 1]  # contiguous: one slice read
        else:
            block = X[uniq]
        block = block[inverse]
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return block[back]

    def _apply_cols(self, block):
        if self.cols is None:
            return block
        if (self.cols >= 0).all():
            return block[:, self.cols]
        out = block[:, np.maximum(self.cols, 0)]
        if sp.issparse(out):
            out = out.tocsc()
            keep = sp.diags((self.cols >= 0).astype(np.float32))
            return (out @ keep).tocsr()
        out = np.array(out, copy=True)
        out[:, self.cols < 0] = 0
        return out

    def dense_rows(self, idx) -> np.ndarray:
        """Rows ``idx`` as a dense ``float32`` array (a single minibatch)."""
        block = self._apply_cols(self._read_rows(np.asarray(idx, dtype=np.int64)))
        if sp.issparse(block):
            block = block.toarray()
        return np.ascontiguousarray(block, dtype=np.float32)

    def sparse_rows(self, idx) -> sp.csr_matrix:
        """Rows ``idx`` as a ``float32`` CSR block (for the sparse input layer)."""
        block = self._apply_cols(self._read_rows(np.asarray(idx, dtype=np.int64)))
        return sp.csr_matrix(block, dtype=np.float32)

    def iter_blocks(self, chunk: int = SCAN_CHUNK, rows=None):
        """Iterate over blocks of rows (dense numpy or CSR), columns applied: every row in
        order, or the rows ``rows`` in their order.
        """
        rows = np.arange(self.n_obs) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), chunk):
            block = self._apply_cols(self._read_rows(rows[start : start + chunk]))
            yield sp.csr_matrix(block) if sp.issparse(block) else np.asarray(block)


# ----------------------------------------------------------------------------------------------
# building a Matrix from what users pass
# ----------------------------------------------------------------------------------------------
def _as_csr(X):
    if sp.issparse(X):
        if X.format != "csr":
            # one sparse copy; row minibatches from CSC/COO would be slow
            X = X.tocsr()
        return X
    return X


def as_matrix(data, *, layer=None, obsm=None, mod=None, name="input") -> Matrix:
    """Wrap ``data`` as a :class:`Matrix`.

    Parameters
    ----------
    data
        AnnData (in memory or backed), MuData (with ``mod``), :class:`pandas.DataFrame`,
        numpy array or scipy sparse matrix (cells x features).
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    obsm
        Use ``adata.obsm[obsm]`` (e.g. a PCA or LSI) instead of ``adata.X``.
    mod
        Modality name when ``data`` is a MuData.
    name
        Name used in messages (e.g. ``"ATAC"``).
    """
    if isinstance(data, Matrix):
        return data
    if data is None:
        raise SclibraError(f"{name}: no data given")
    if _is_mudata(data):
        if mod is None:
            raise SclibraError(
                f"{name}: a MuData needs a modality name (mod_a=/mod_b=); available: "
                f"{format_names(list(data.mod))}"
            )
        if mod not in data.mod:
            raise SclibraError(
                f"{name}: modality {mod!r} not in the MuData; available: {format_names(list(data.mod))}"
            )
        return as_matrix(
            data.mod[mod], layer=layer, obsm=obsm, name=mod if name == "input" else name
        )
    if mod is not None and not _is_mudata(data):
        raise SclibraError(f"{name}: mod={mod!r} given but the input is not a MuData")
    if layer is not None and obsm is not None:
        raise SclibraError(f"{name}: give either layer= or obsm=, not both")

    if _is_anndata(data):
        obs_names = pd.Index(data.obs_names.astype(str))
        if obsm is not None:
            if obsm not in data.obsm:
                raise SclibraError(
                    f"{name}: obsm key {obsm!r} not found; available: {format_names(list(data.obsm.keys()))}"
                )
            X = data.obsm[obsm]
            if isinstance(X, pd.DataFrame):
                var_names = pd.Index(X.columns.astype(str))
                X = X.to_numpy()
            else:
                var_names = pd.Index([f"{obsm}_{i}" for i in range(X.shape[1])])
        elif layer is not None:
            if layer not in data.layers:
                raise SclibraError(
                    f"{name}: layer {layer!r} not found; available: {format_names(list(data.layers.keys()))}"
                )
            X = data.layers[layer]
            var_names = pd.Index(data.var_names.astype(str))
        else:
            X = data.X
            var_names = pd.Index(data.var_names.astype(str))
            if X is None:
                raise SclibraError(f"{name}: the AnnData has no X; pass layer= or obsm=")
        X = _as_csr(X) if sp.issparse(X) else X
        if not (sp.issparse(X) or _is_backed_sparse(X) or _is_h5_dataset(X)):
            X = np.asarray(X)
        if _is_backed_sparse(X) and getattr(X, "format", "csr") == "csc":
            logger.warning(
                "%s: backed matrix is stored as CSC; reading rows from it is slow. "
                "Store on-disk data as CSR for training.",
                name,
            )
        return Matrix(X, obs_names, var_names, name, True, obs=data.obs)

    if isinstance(data, pd.DataFrame):
        numeric = [pd.api.types.is_numeric_dtype(t) for t in data.dtypes]
        if not all(numeric):
            bad = data.columns[[not ok for ok in numeric]]
            raise SclibraError(
                f"{name}: expected a numeric matrix, but {len(bad)} columns of the DataFrame are "
                f"not numbers: {format_names(bad)}"
            )
        return Matrix(
            data.to_numpy(dtype=np.float32, copy=False),
            pd.Index(data.index.astype(str)),
            pd.Index(data.columns.astype(str)),
            name,
            True,
        )
    if layer is not None or obsm is not None:
        raise SclibraError(f"{name}: layer=/obsm= need an AnnData input, got {type(data).__name__}")
    if sp.issparse(data):
        X = _as_csr(data)
    elif isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        X = np.asarray(data)
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise SclibraError(f"{name}: expected a numeric matrix, got dtype {X.dtype}")
    else:
        raise SclibraError(
            f"{name}: unsupported input type {type(data).__name__}; use AnnData, MuData, "
            "a pandas DataFrame, a numpy array or a scipy sparse matrix"
        )
    if X.ndim != 2:
        raise SclibraError(
            f"{name}: expected a 2-D cells x features matrix, got {X.ndim} dimension(s)"
        )
    obs_names = pd.Index([str(i) for i in range(X.shape[0])])
    var_names = pd.Index([f"{name}_{j}" for j in range(X.shape[1])])
    return Matrix(X, obs_names, var_names, name, False)


def check_unique(index: pd.Index, what: str, name: str) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()].unique()
        raise SclibraError(
            f"{name}: {len(dup)} duplicated {what} names ({format_names(dup)}); make them unique first "
            "(e.g. adata.obs_names_make_unique() / adata.var_names_make_unique())"
        )


def pair_cells(ma: Matrix, mb: Matrix) -> tuple[Matrix, Matrix]:
    """Pair the cells of two modalities by name (intersection, in the order of ``ma``)."""
    for m in (ma, mb):
        if m.n_obs == 0:
            raise SclibraError(f"{m.name}: the input has no cells")
        check_unique(m.cells, "cell", m.name)
    if not (ma.named and mb.named):
        if ma.n_obs != mb.n_obs:
            raise SclibraError(
                f"{ma.name} has {ma.n_obs} cells but {mb.name} has {mb.n_obs}: inputs without cell "
                "names (numpy/scipy) are paired by position and must have the same number of rows"
            )
        names = ma.cells if ma.named else mb.cells
        if ma.named or mb.named:
            named, unnamed = (ma, mb) if ma.named else (mb, ma)
            logger.warning(
                "%s has no cell names (numpy/scipy input): pairing its %d rows with the cells of "
                "%s by position (row i is cell %s, ...); pass an AnnData or DataFrame with cell "
                "names to pair by name",
                unnamed.name,
                unnamed.n_obs,
                named.name,
                format_names(named.cells[:1], 1),
            )
        if not ma.named:
            ma = replace(ma, obs_names=names, rows=None, named=True)
        if not mb.named:
            mb = replace(mb, obs_names=names, rows=None, named=True)
        return ma, mb
    shared = ma.cells.intersection(mb.cells, sort=False)
    if len(shared) == 0:
        raise SclibraError(
            f"cells in {ma.name} and {mb.name} do not overlap (no shared cell names; e.g. "
            f"{ma.name}: {format_names(ma.cells[:3], 3)}; {mb.name}: {format_names(mb.cells[:3], 3)})"
        )
    if len(shared) < max(ma.n_obs, mb.n_obs):
        logger.info(
            "pairing cells by name: %d shared cells (%s has %d, %s has %d)",
            len(shared),
            ma.name,
            ma.n_obs,
            mb.name,
            mb.n_obs,
        )
    # keep the order of ma
    shared = ma.cells[ma.cells.isin(shared)]
    if len(shared) < ma.n_obs:
        ma = ma.subset_cells(shared)
    mb = mb.subset_cells(shared) if not mb.cells.equals(shared) else mb
    return ma, mb


@dataclass
class MatrixStats:
    """Per-feature statistics from one pass over a matrix."""

    n_nan: np.ndarray
    n_inf: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    min: float
    max: float
    #: every (finite) value is 0 or 1, e.g. binarised peaks
    binary: bool = False
    #: fraction of the entries that are not zero (NaN and Inf count as non-zero)
    nonzero: float = 1.0


def scan(m: Matrix) -> MatrixStats:
    """One chunked pass: NaN/Inf counts, mean/variance per feature, min/max, 0/1 values only."""
    p = m.n_vars
    n_nan = np.zeros(p, dtype=np.int64)
    n_inf = np.zeros(p, dtype=np.int64)
    s1 = np.zeros(p, dtype=np.float64)
    s2 = np.zeros(p, dtype=np.float64)
    vmin, vmax = np.inf, -np.inf
    binary = True
    n = 0
    nonzero = 0
    for block in m.iter_blocks():
        n += block.shape[0]
        if sp.issparse(block):
            data = block.data
            nonzero += int(np.count_nonzero(data))
            cols = block.indices
            ok = np.isfinite(data)
            if ok.all():  # the usual case: one check, no masking passes
                finite = data.astype(np.float64)
                fin = data
            else:
                bad_nan = np.isnan(data)
                n_nan += np.bincount(cols[bad_nan], minlength=p)
                n_inf += np.bincount(cols[~ok & ~bad_nan], minlength=p)
                finite = np.where(ok, data, 0.0).astype(np.float64)
                fin = data[ok]
            s1 += np.bincount(cols, weights=finite, minlength=p)
            finite *= finite
            s2 += np.bincount(cols, weights=finite, minlength=p)
            if fin.size:
                vmin = min(vmin, float(fin.min()))
                vmax = max(vmax, float(fin.max()))
                binary = binary and bool(np.all((fin == 0) | (fin == 1)))
            if block.nnz < block.shape[0] * block.shape[1]:
                vmin = min(vmin, 0.0)
                vmax = max(vmax, 0.0)
        else:
            block = np.asarray(block, dtype=np.float64)
            nonzero += int(np.count_nonzero(block))
            bad_nan = np.isnan(block)
            bad_inf = np.isinf(block)
            n_nan += bad_nan.sum(axis=0)
            n_inf += bad_inf.sum(axis=0)
            finite = np.where(bad_nan | bad_inf, 0.0, block)
            s1 += finite.sum(axis=0)
            s2 += (finite * finite).sum(axis=0)
            ok = ~(bad_nan | bad_inf)
            if ok.any():
                vals = block[ok]
                vmin = min(vmin, float(vals.min()))
                vmax = max(vmax, float(vals.max()))
                binary = binary and bool(np.all((vals == 0) | (vals == 1)))
    mean = s1 / max(n, 1)
    var = np.maximum(s2 / max(n, 1) - mean * mean, 0.0)
    nonzero_frac = nonzero / (n * p) if n * p else 1.0
    return MatrixStats(n_nan, n_inf, mean, var, vmin, vmax, binary, nonzero_frac)


#: raw counts are whole numbers with more than this median total per cell (log-normalised data
#: are not whole numbers; binary data such as binarised ATAC have a maximum of 1)
COUNTS_MEDIAN_TOTAL = 100.0
#: rows read to decide whether a matrix holds raw counts
COUNTS_SAMPLE_ROWS = 2000


def looks_like_counts(m: Matrix) -> tuple[bool, float]:
    """Whether ``m`` holds raw counts: whole numbers, not binary, large per-cell totals.

    Decided on the first :data:`COUNTS_SAMPLE_ROWS` rows. Returns ``(verdict, median total)``.
    """
    idx = np.arange(min(m.n_obs, COUNTS_SAMPLE_ROWS))
    if not len(idx):
        return False, 0.0
    block = m._apply_cols(m._read_rows(idx))
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    values = values[np.isfinite(values)]
    if not values.size or values.max() <= 1 or values.min() < 0:
        return False, 0.0
    if not np.array_equal(values, np.round(values)):
        return False, 0.0
    totals = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
    median = float(np.median(totals))
    return median > COUNTS_MEDIAN_TOTAL, median


def validate(
    m: Matrix, *, role: str = "input", require_variance: bool = True, allow_counts: bool = False
) -> MatrixStats:
    """Check a matrix before training; raise :class:`SclibraError` naming the problem.

    Besides shape, names, NaN/Inf and variance, raw counts are refused unless ``allow_counts``:
    LIBRA is trained on normalised data, and on counts it "trains" to a useless model (a
    validation MSE in the thousands, predictions mostly zero).
    """
    if m.n_obs == 0:
        raise SclibraError(f"{m.name}: the {role} matrix has no cells (0 rows)")
    if m.n_vars == 0:
        raise SclibraError(f"{m.name}: the {role} matrix has no features (0 columns)")
    check_unique(m.features, "feature", m.name)
    dtype = getattr(m.X, "dtype", None)
    if dtype is not None and not (
        np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)
    ):
        raise SclibraError(f"{m.name}: expected numeric values, got dtype {dtype}")
    stats = scan(m)
    for label, counts in (("NaN", stats.n_nan), ("infinite values", stats.n_inf)):
        bad = np.flatnonzero(counts)
        if len(bad):
            raise SclibraError(
                f"{m.name}: {len(bad)} features contain {label} "
                f"({format_names(m.features[bad])}); remove or impute them before training"
            )
    if not allow_counts:
        counts, median = looks_like_counts(m)
        if counts:
            raise SclibraError(
                f"{m.name}: the {role} matrix looks like raw counts (whole numbers, median "
                f"{median:.0f} per cell); LIBRA needs normalised data. Log-normalise it first "
                "(scanpy: sc.pp.normalize_total + sc.pp.log1p; Seurat: NormalizeData(); "
                "Bioconductor: the logcounts assay; ATAC: binarise), or pass allow_counts=True "
                "(R: allow.counts = TRUE; CLI: --allow-counts) to train on counts anyway"
            )
    if require_variance and m.n_obs > 1 and not (stats.var > 0).any():
        raise SclibraError(
            f"{m.name}: all {m.n_vars} features are constant (zero variance) across the "
            f"{m.n_obs} training cells; there is nothing to learn from"
        )
    n_const = int((stats.var == 0).sum())
    if n_const and m.n_obs > 1:
        logger.info(
            "%s: %d of %d features are constant over the training cells", m.name, n_const, m.n_vars
        )
    return stats


#: spellings of a boolean obs column (compared lower-case)
_TRUE = frozenset({"true", "1", "1.0", "yes"})
_FALSE = frozenset({"false", "0", "0.0", "no"})


def _obs_column(spec: str, frames, what: str) -> pd.Series:
    """Column ``spec`` of the first obs frame holding it; an error listing every frame's columns."""
    for _, obs in frames:
        if obs is not None and spec in obs.columns:
            col = obs[spec]
            return pd.Series(col.to_numpy(), index=pd.Index(obs.index.astype(str)), name=spec)
    names = [n for n, _ in frames]
    listed = [
        f"columns of {n}: {format_names(list(o.columns), 8) if len(o.columns) else '(none)'}"
        for n, o in frames
        if o is not None
    ]
    raise SclibraError(
        f"{what}={spec!r}: no such obs column in {' or '.join(names) or 'the input'}"
        + ("; " + "; ".join(listed) if listed else " (the inputs have no obs table)")
    )


def as_boolean(col: pd.Series, what: str) -> pd.Series:
    """A boolean obs column: True/False, 1/0, "true"/"false" (any case); missing is False."""
    if col.dtype == bool:
        return col
    text = col.astype(object).where(col.notna(), None)
    low = text.map(lambda v: None if v is None else str(v).strip().lower())
    bad = sorted(set(low.dropna()) - _TRUE - _FALSE)
    if bad:
        raise SclibraError(
            f"{what}: the obs column must be boolean (True/False or 1/0), found values "
            f"{format_names(bad)}"
        )
    return low.isin(_TRUE).astype(bool)


def select_cells(spec, cells, *, obs=(), all_cells=None, what: str = "train") -> pd.Index:
    """The one reader of a cell selection (``train=``, ``held_out=``, ``cells=``).

    Parameters
    ----------
    spec
        ``None`` (all ``cells``); the name of a boolean obs column (True/False, 1/0,
        "true"/"false"; missing values are False), looked up in each of ``obs`` in turn; a
        boolean Series indexed by cell name; a boolean mask over ``cells`` (or over
        ``all_cells``); or a list of cell names.
    cells
        The cells to choose from (e.g. the paired cells), in their order.
    obs
        ``(name, DataFrame or None)`` pairs, searched in order for a column name.
    all_cells
        The rows a mask may also cover (e.g. all cells of A before pairing).
    what
        The argument's name, for messages.

    Returns
    -------
    The selected cell names: in the order of ``cells``, or of ``spec`` for a list of names.
    """
    cells = pd.Index(cells).astype(str)
    if spec is None:
        return cells
    if isinstance(spec, str):
        spec = as_boolean(_obs_column(spec, obs, what), f"{what}={spec!r}")
    if isinstance(spec, pd.Series) and not isinstance(spec.index, pd.RangeIndex):
        try:
            flags = as_boolean(spec, what)
        except SclibraError:
            flags = None  # not booleans: a Series of cell names (handled below)
        if flags is not None:
            chosen = pd.Index(spec.index.astype(str))[flags.to_numpy(dtype=bool)]
            return cells[cells.isin(chosen)]
    arr = np.asarray(spec)
    if arr.dtype == bool:
        if arr.ndim == 1 and len(arr) == len(cells):
            return cells[arr]
        if all_cells is not None and arr.ndim == 1 and len(arr) == len(all_cells):
            chosen = pd.Index(all_cells).astype(str)[arr]
            return cells[cells.isin(chosen)]
        sizes = f"{len(cells)} paired cells" + (
            f" or {len(all_cells)} input cells"
            if all_cells is not None and len(all_cells) != len(cells)
            else ""
        )
        raise SclibraError(f"{what}: boolean mask has {arr.size} entries for {sizes}")
    names = pd.Index(arr.astype(str).ravel())
    missing = names[~names.isin(cells)]
    if len(missing):
        raise SclibraError(
            f"{what}: {len(missing)} cells are not among the paired cells: {format_names(missing)}"
        )
    if not names.is_unique:
        dup = names[names.duplicated()].unique()
        raise SclibraError(f"{what}: {len(dup)} cells are listed twice ({format_names(dup)})")
    return names


#: a training run whose best monitored loss ends above this multiple of the mean baseline's
#: (predicting each output feature's mean) diverged: it is an error, not a model
DIVERGENCE_FACTOR = 10.0
#: the training loss (auxiliary terms included; dropout on; possibly early in a short run) is
#: held to a much looser bound: only an exploded run (orders of magnitude) is refused
EXPLOSION_FACTOR = 1e6


def clipped_frequency(mean) -> np.ndarray:
    """Each binary feature's frequency as the mean baseline predicts it for a BCE loss: clipped
    to ``[1e-6, 1 - 1e-6]`` so that a feature never (or always) seen has a finite loss.
    """
    return np.clip(np.asarray(mean, dtype=np.float64), 1e-6, 1 - 1e-6)


def check_not_diverged(
    best_loss: float,
    stats: MatrixStats,
    name: str,
    monitor: str,
    loss: str = "mse",
    *,
    train_loss: float | None = None,
    auxiliary_baseline: float = 0.0,
) -> None:
    """Raise :class:`SclibraError` when training ended far above the mean baseline's error.

    ``stats`` are the output's training statistics (:func:`validate`): the mean baseline's MSE
    is the mean per-feature variance; its binary cross-entropy (``loss="bce"``, binary targets)
    the mean per-feature entropy of the feature's frequency. ``train_loss`` (the training loss
    at the best epoch, auxiliary terms included) is held to :data:`EXPLOSION_FACTOR` times the
    baseline plus ``auxiliary_baseline`` (the auxiliary terms' own error at the start): a run
    whose training loss exploded is refused even when its monitored loss happened to look fair.
    """
    if loss == "bce":
        p = clipped_frequency(stats.mean)
        entropy = -(p * np.log(p) + (1 - p) * np.log1p(-p))
        baseline = float(np.mean(entropy)) if len(p) else 0.0
    else:
        baseline = float(np.mean(stats.var)) if len(stats.var) else 0.0
    checks = [(f"the best {monitor}", best_loss, DIVERGENCE_FACTOR * baseline)]
    if train_loss is not None:
        bound = EXPLOSION_FACTOR * (baseline + auxiliary_baseline)
        checks.append(("the training loss at the best epoch", train_loss, bound))
    for what, value, bound in checks:
        if np.isfinite(value) and (bound <= 0 or value <= bound):
            continue
        raise SclibraError(
            f"training diverged: {what} ({value:.4g}) is far above the error of predicting "
            f"each {name} feature's mean ({baseline:.4g}); no model was kept. Lower "
            "learning_rate, or check the input scale (log-normalise raw counts)"
        )


#: a model whose validation loss is less than this share below the mean baseline's on the same
#: cells predicts little of its target: the fit says so (:func:`report_gain_over_mean`)
LITTLE_GAIN_OVER_MEAN = 0.01


def mean_baseline_loss(m: Matrix, rows: np.ndarray, mean: np.ndarray, loss: str = "mse") -> float:
    """The loss of predicting each feature's ``mean`` for the cells ``rows`` of ``m``.

    The mean squared error, or for ``loss="bce"`` (a 0/1 target) the binary cross-entropy of
    each feature's frequency ``mean`` (:func:`clipped_frequency`), averaged over every entry:
    the loss a model trained on ``m`` must beat. Read in blocks of rows
    (:meth:`Matrix.iter_blocks`); sparse rows stay sparse.
    """
    mean = np.asarray(mean, dtype=np.float64)
    if loss == "bce":
        p = clipped_frequency(mean)
        log_p, log_q = np.log(p), np.log1p(-p)
    total = 0.0
    for block in m.iter_blocks(rows=rows):
        n = block.shape[0]
        if loss == "bce":  # ones per feature: -(c log p + (n - c) log(1 - p))
            ones = np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
            total -= float(ones @ log_p + (n - ones) @ log_q)
        elif sp.issparse(block):  # sum (y - mean)^2 without densifying
            data = block.data.astype(np.float64)
            total += float(data @ data - 2.0 * (data @ mean[block.indices]) + n * (mean @ mean))
        else:
            total += float(np.square(np.asarray(block, dtype=np.float64) - mean).sum())
    return total / max(len(rows) * len(mean), 1)


def mean_of_other_rows(m: Matrix, rows: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Each feature's mean over the cells of ``m`` not in ``rows``, from ``mean`` (over every
    cell): the mean baseline of a model that trained on the other cells. Reads only ``rows``.
    """
    n, k = m.n_obs, len(rows)
    total = np.asarray(mean, dtype=np.float64) * n
    for block in m.iter_blocks(rows=rows):
        total -= np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
    return total / max(n - k, 1)


def report_gain_over_mean(
    best_losses,
    baselines,
    name: str,
    *,
    converged: bool = True,
    peaks: bool = False,
    at_mean: int = 0,
) -> float:
    """The mean relative decrease of ``best_losses`` below ``baselines`` (one pair per model of
    an ensemble: its best validation loss and the mean baseline's on its validation cells).

    A model that stopped by itself (``converged``: early stopping, not the epoch limit or a
    callback) with a decrease under :data:`LITTLE_GAIN_OVER_MEAN` is reported with a warning:
    one that predicts ``name`` barely better than each feature's training mean should not be
    mistaken for one that learned it. ``peaks``: the target is binary (peaks), whose mean is
    their popularity. ``at_mean``: members that now predict the mean (``mean_fallback``),
    always reported.
    """
    gains = [1.0 - b / m for b, m in zip(best_losses, baselines) if m > 0 and np.isfinite(b)]
    if not gains:
        return float("nan")
    gain = float(np.mean(gains))
    best, base = float(np.mean(best_losses)), float(np.mean(baselines))
    if gain < LITTLE_GAIN_OVER_MEAN and converged:
        logger.warning(
            "the model predicts %s %s better than each feature's training mean: on the "
            "validation cells its loss is %.4g and the mean's %.4g (%.2f %% %s). The input "
            "carries little of what varies in %s here%s. Compare with "
            "sclibra.metrics.baseline_predictions before using the prediction",
            name,
            "barely" if gain > 0 else "no",
            best,
            base,
            100 * abs(gain),
            "lower" if gain > 0 else "higher",
            name,
            " (the prediction is close to each peak's popularity)" if peaks else "",
        )
    else:
        logger.debug("validation loss %.2f %% below the mean baseline's", 100 * gain)
    if at_mean:
        n = len(best_losses)
        if n == 1:
            why = "its validation loss was not"
        elif at_mean == n:
            why = f"none of its {n} members' validation losses was"
        else:
            why = "their validation loss was not"
        logger.warning(
            "%s: %s below the mean baseline's on the same cells by min_delta "
            "(mean_fallback; mean_fallback=False keeps the trained network%s)",
            mean_fallback_note(at_mean, n),
            why,
            "" if n == 1 else "s",
        )
    return gain


def mean_fallback_note(at_mean: int, n_members: int) -> str:
    """What ``mean_fallback`` did to a model, in words: who now predicts the training mean.

    ``at_mean`` of the model's ``n_members`` members do. The one wording of the fit's warning,
    the model's ``repr`` and R's ``print()`` of a model; ``""`` when no member does.
    """
    if not at_mean:
        return ""
    if n_members == 1 or at_mean == n_members:
        who = "the model predicts"
    else:
        who = f"{at_mean} of its {n_members} ensemble members predict"
    return f"{who} each feature's training mean"


def resolve_cells(spec, m: Matrix, *, what: str = "train") -> pd.Index:
    """:func:`select_cells` over the cells of one :class:`Matrix` (its obs columns)."""
    return select_cells(spec, m.cells, obs=[(m.name, m.obs)], all_cells=m.obs_names, what=what)


def select_pair_cells(spec, ma: Matrix, mb: Matrix, *, what: str = "train") -> pd.Index:
    """:func:`select_cells` over paired cells: obs columns of A, then of B."""
    return select_cells(
        spec,
        ma.cells,
        obs=[(ma.name, ma.obs), (mb.name, mb.obs)],
        all_cells=ma.obs_names,
        what=what,
    )


def resolve_labels(
    labels, cells, *, obs=(), all_cells=None, name: str = "labels", what: str = "paired cells"
):
    """The one reader of cell labels: a Series of strings over ``cells`` (``None`` for none).

    ``labels`` is an obs column name (looked up in each of ``obs`` in turn), a Series indexed
    by cell name, or an array over ``cells`` (or over ``all_cells``). Cells without a label
    (absent or NaN) are an error; ``what`` names ``cells`` in the messages.
    """
    if labels is None:
        return None
    cells = pd.Index(cells).astype(str)
    if isinstance(labels, str):
        s = _obs_column(labels, obs, name)
    elif isinstance(labels, pd.Series) and not isinstance(labels.index, pd.RangeIndex):
        s = pd.Series(labels.to_numpy(), index=pd.Index(labels.index.astype(str)), name=labels.name)
    else:
        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1:
            raise SclibraError(
                f"{name}: expected a 1-D vector of labels, got {arr.ndim} dimensions"
            )
        if len(arr) == len(cells):
            s = pd.Series(arr, index=cells, name=name)
        elif all_cells is not None and len(arr) == len(all_cells):
            s = pd.Series(arr, index=pd.Index(all_cells).astype(str), name=name)
        else:
            raise SclibraError(
                f"{name}: {len(arr)} labels for {len(cells)} {what}"
                + (f" ({len(all_cells)} cells in all)" if all_cells is not None else "")
            )
    if not s.index.is_unique:
        dup = s.index[s.index.duplicated()].unique()
        raise SclibraError(f"{name}: {len(dup)} duplicated cell names ({format_names(dup)})")
    missing = cells[~cells.isin(s.index)]
    if len(missing):
        raise SclibraError(f"{name}: {len(missing)} {what} have no label ({format_names(missing)})")
    s = s.loc[cells]
    if s.isna().any():
        raise SclibraError(
            f"{name}: {int(s.isna().sum())} {what} have a missing label (NaN)"
            f" ({format_names(s.index[s.isna().to_numpy()])})"
        )
    return s.astype(str)


def resolve_pair_labels(labels, cells, ma: Matrix, mb: Matrix, *, name: str, what: str):
    """:func:`resolve_labels` over paired cells: obs columns of A, then of B; an array may also
    cover all of A's cells.
    """
    return resolve_labels(
        labels,
        cells,
        obs=[(ma.name, ma.obs), (mb.name, mb.obs)],
        all_cells=ma.obs_names,
        name=name,
        what=what,
    )


def match_features(
    m: Matrix,
    features: pd.Index,
    *,
    fill_missing: bool | None = None,
    what: str = "model",
) -> Matrix:
    """Select and order the columns of ``m`` to ``features`` (by name).

    ``fill_missing``: fill missing features with zeros (``True``), or refuse them; ``False``
    says the caller has that option (the error suggests it), ``None`` that it has not.
    """
    if m.features.equals(features):
        return m
    positional = m.features.str.startswith(f"{m.name}_").all() if m.n_vars else True
    if not m.named and positional and m.n_vars != len(features):
        from ._errors import FeatureMismatchError

        raise FeatureMismatchError(
            f"{m.name}: expected {len(features)} columns (the features the {what} was trained "
            f"on, in training order), got {m.n_vars}; a matrix without feature names is matched "
            "by position"
        )
    if not m.named and m.n_vars == len(features) and m.features.str.startswith(f"{m.name}_").all():
        # unnamed numpy input with the right width: positional
        return m
    pos = pd.Index(m.features).get_indexer(features)
    missing = features[pos < 0]
    if len(missing):
        if not fill_missing:
            from ._errors import FeatureMismatchError

            hint = (
                "give the input every feature the model was trained on"
                if fill_missing is None
                else "pass fill_missing=True to fill them with zeros"
            )
            raise FeatureMismatchError(
                f"{m.name}: {len(missing)} of the {len(features)} features the {what} was trained on "
                f"are missing from the input: {format_names(missing, 10)}; {hint}",
                missing=list(missing),
            )
        import warnings

        warnings.warn(
            f"{m.name}: {len(missing)} of {len(features)} model features are missing and were "
            f"filled with zeros: {format_names(missing, 10)}",
            UserWarning,
            stacklevel=3,
        )
    return m.with_columns(pos)


# ----------------------------------------------------------------------------------------------
# the data-input arguments of the public functions, declared once
# ----------------------------------------------------------------------------------------------
def _modality_name(data, default: str, mod=None) -> str:
    """A readable name for messages: the MuData modality, or the AnnData's feature type."""
    if mod is not None:
        return str(mod)
    var = getattr(data, "var", None)
    if isinstance(var, pd.DataFrame) and "feature_types" in var.columns:
        kinds = pd.unique(var["feature_types"].astype(str))
        if len(kinds) == 1:
            kind = {
                "GEX": "RNA",
                "Gene Expression": "RNA",
                "Peaks": "ATAC",
                "Antibody Capture": "ADT",
            }.get(kinds[0], kinds[0])
            return kind
    return default


@dataclass(frozen=True)
class PairInputs:
    """Where to read paired modalities A and B: MuData modality, ``layers`` or ``obsm`` key.

    The arguments ``mod_a`` ... ``obsm_b`` of ``LIBRA.fit``, ``LIBRA.fit_b_encoder`` and
    ``tune`` (see :func:`takes_fields`).
    """

    mod_a: str | None = None
    mod_b: str | None = None
    layer_a: str | None = None
    layer_b: str | None = None
    obsm_a: str | None = None
    obsm_b: str | None = None

    def given(self) -> dict:
        """The arguments that are not ``None``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if v is not None}

    def read(self, a, b) -> tuple[Matrix, Matrix]:
        """Modalities A and B as :class:`Matrix` views (``b=None``: both from the MuData ``a``)."""
        if b is None:
            if type(a).__name__ != "MuData":
                raise SclibraError(
                    "fit() needs two modalities: fit(adata_a, adata_b) or fit(mdata, mod_a=..., mod_b=...)"
                )
            b = a
        name_a = _modality_name(self._modality(a, self.mod_a), "A", self.mod_a)
        name_b = _modality_name(self._modality(b, self.mod_b), "B", self.mod_b)
        if name_a == name_b:
            name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
        ma = as_matrix(a, layer=self.layer_a, obsm=self.obsm_a, mod=self.mod_a, name=name_a)
        mb = as_matrix(b, layer=self.layer_b, obsm=self.obsm_b, mod=self.mod_b, name=name_b)
        return ma, mb

    @staticmethod
    def _modality(data, mod):
        return data.mod[mod] if mod and hasattr(data, "mod") and mod in data.mod else data


@dataclass(frozen=True)
class CellInputs:
    """Where to read one modality of the cells to apply a model to, and the minibatch size.

    The keyword arguments of ``LIBRA.get_latent``, ``predict`` and ``get_latent_from_b``.
    """

    layer: str | None = None
    obsm: str | None = None
    mod: str | None = None
    fill_missing: bool = False
    batch_size: int | None = None

    def __post_init__(self):
        check_int("batch_size", self.batch_size, 1, none_ok=True)


def takes_fields(name: str, cls):
    """Decorator: ``fn``'s keyword-only parameter ``name`` stands for the fields of the dataclass
    ``cls``.

    The wrapper's signature (``help()``, ``inspect.signature``, the R package's argument check)
    lists each field in its place as a keyword-only argument with the field's default; ``fn``
    receives the given ones gathered into one ``cls`` as ``name``.
    """
    P = inspect.Parameter
    own = [P(f.name, P.KEYWORD_ONLY, default=f.default, annotation=f.type) for f in fields(cls)]

    def decorate(fn):
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index(name)
        signature = signature.replace(parameters=[*params[:at], *own, *params[at + 1 :]])

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {p.name: kwargs.pop(p.name) for p in own if p.name in kwargs}
            return fn(*args, **kwargs, **{name: cls(**values)})

        wrapper.__signature__ = signature
        return wrapper

    return decorate
