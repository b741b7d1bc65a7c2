"""Standard prediction and clustering scores on arrays (numpy, scipy sparse, AnnData).

The measured matrix may be sparse: every score streams over blocks of rows (or columns, for the
per-feature rank correlation), so at most one block is dense at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclibra._errors import SclibraError, format_names

from ._utils import (
    COL_CHUNK,
    align_labels,
    as_2d,
    as_labels,
    check_finite,
    check_same_shape,
    dense_rows,
    iter_row_blocks,
)


def _names(x):
    """``(cell names, feature names)`` of an AnnData or DataFrame (``None`` for a RangeIndex);
    ``None`` for arrays.
    """
    if type(x).__name__ == "AnnData":
        return pd.Index(x.obs_names.astype(str)), pd.Index(x.var_names.astype(str))
    if isinstance(x, pd.DataFrame):
        return tuple(
            None if isinstance(i, pd.RangeIndex) else pd.Index(i.astype(str))
            for i in (x.index, x.columns)
        )
    return None


def _check_same_names(p, t) -> None:
    """Scores compare entries by position: named inputs (:func:`_names` ``p`` and ``t``) must
    name the same cells and features in the same order (an AnnData prediction against measured
    data read in another order would otherwise be scored cell against the wrong cell).
    """
    if p is None or t is None:
        return
    for what, a, b in (("cell", p[0], t[0]), ("feature", p[1], t[1])):
        if a is None or b is None or a.equals(b):
            continue
        if set(a) == set(b):
            problem = "in another order"
        else:
            problem = f"not the same: {format_names(a[~a.isin(b)])} only in the prediction"
        raise SclibraError(
            f"the prediction and the measured data have the same shape but their {what} names "
            f"are {problem}; scores compare entries by position, so align them first (e.g. "
            "truth[pred.obs_names, pred.var_names])"
        )


def _pair(pred, truth):
    names = _names(pred), _names(truth)
    pred = as_2d(pred, "prediction")
    truth = as_2d(truth, "measured")
    check_same_shape(pred, truth)
    _check_same_names(*names)
    if pred.shape[0] == 0:
        raise SclibraError("no cells to score (0 rows)")
    check_finite(pred, "prediction")
    check_finite(truth, "measured")
    return pred, truth


def _squared_errors(pred, truth):
    """Per-feature and per-cell sums of squared errors, streamed over row blocks."""
    per_feature = np.zeros(pred.shape[1])
    per_cell = np.empty(pred.shape[0])
    for start, stop in iter_row_blocks(pred):
        diff = dense_rows(pred, start, stop) - dense_rows(truth, start, stop)
        sq = diff * diff
        per_feature += sq.sum(axis=0)
        per_cell[start:stop] = sq.sum(axis=1)
    return per_feature, per_cell


def mse(pred, truth) -> float:
    """Mean squared error over all entries of ``pred`` and ``truth`` (cells x features)."""
    pred, truth = _pair(pred, truth)
    per_feature, _ = _squared_errors(pred, truth)
    return float(per_feature.sum() / (pred.shape[0] * pred.shape[1]))


def rmse(pred, truth) -> float:
    """Root mean squared error over all entries (``sqrt`` of :func:`mse`).

    Parameters
    ----------
    pred, truth
        Predicted and measured matrices (cells x features) of the same shape and order; numpy,
        scipy sparse (never densified as a whole), DataFrame or AnnData. Two named inputs
        (AnnData, DataFrame) must name the same cells and features in the same order.
    """
    return float(np.sqrt(mse(pred, truth)))


def mse_per_feature(pred, truth) -> np.ndarray:
    """Mean squared error of every feature (column), averaged over cells."""
    pred, truth = _pair(pred, truth)
    per_feature, _ = _squared_errors(pred, truth)
    return per_feature / pred.shape[0]


def mse_per_cell(pred, truth) -> np.ndarray:
    """Mean squared error of every cell (row), averaged over features."""
    pred, truth = _pair(pred, truth)
    _, per_cell = _squared_errors(pred, truth)
    return per_cell / pred.shape[1]


def _row_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    num = (xc * yc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _rank_rows(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=1)


def pearson_per_cell(pred, truth) -> np.ndarray:
    """Pearson correlation between predicted and measured profile of each cell (NaN if constant)."""
    pred, truth = _pair(pred, truth)
    out = np.empty(pred.shape[0])
    for start, stop in iter_row_blocks(pred):
        out[start:stop] = _row_corr(dense_rows(pred, start, stop), dense_rows(truth, start, stop))
    return out


def spearman_per_cell(pred, truth) -> np.ndarray:
    """Spearman rank correlation per cell (ties get average ranks; NaN if constant)."""
    pred, truth = _pair(pred, truth)
    out = np.empty(pred.shape[0])
    for start, stop in iter_row_blocks(pred):
        out[start:stop] = _row_corr(
            _rank_rows(dense_rows(pred, start, stop)), _rank_rows(dense_rows(truth, start, stop))
        )
    return out


def _column_blocks(x, start: int, stop: int) -> np.ndarray:
    """Columns ``start:stop`` as a dense float64 block, transposed (features x cells)."""
    block = x[:, start:stop]
    if sp.issparse(block):
        block = block.toarray()
    return np.asarray(block, dtype=np.float64).T


def _per_feature(pred, truth, rank: bool) -> np.ndarray:
    pred, truth = _pair(pred, truth)
    if sp.issparse(truth):
        truth = truth.tocsc()  # one sparse copy; column blocks are then cheap
    if sp.issparse(pred):
        pred = pred.tocsc()
    p = pred.shape[1]
    out = np.empty(p)
    for start in range(0, p, COL_CHUNK):
        stop = min(start + COL_CHUNK, p)
        x = _column_blocks(pred, start, stop)
        y = _column_blocks(truth, start, stop)
        if rank:
            x, y = _rank_rows(x), _rank_rows(y)
        out[start:stop] = _row_corr(x, y)
    return out


def pearson_per_feature(pred, truth) -> np.ndarray:
    """Pearson correlation across cells for every feature (NaN where a feature is constant)."""
    return _per_feature(pred, truth, rank=False)


def spearman_per_feature(pred, truth) -> np.ndarray:
    """Spearman rank correlation across cells for every feature (NaN where constant)."""
    return _per_feature(pred, truth, rank=True)


def _nan_summary(values: np.ndarray, stat) -> float:
    finite = values[np.isfinite(values)]
    return float(stat(finite)) if finite.size else float("nan")


def prediction_scores(pred, truth, *, spearman: bool = True) -> dict[str, float]:
    """All prediction scores of one predicted vs measured matrix.

    Parameters
    ----------
    pred, truth
        Predicted and measured matrices (cells x features), same shape and order.
    spearman
        Also compute the rank correlations (slower: one rank per cell and per feature).

    Returns
    -------
    dict
        ``mse``, ``rmse``, ``pearson_feature_mean``/``_median``, ``pearson_cell_mean``/``_median``,
        (``spearman_*`` likewise), ``n_cells``, ``n_features`` and ``n_constant_features``
        (features constant in the measured or predicted values, whose correlation is undefined
        and left out of the averages).
    """
    pred, truth = _pair(pred, truth)
    per_feature, _ = _squared_errors(pred, truth)
    value = float(per_feature.sum() / (pred.shape[0] * pred.shape[1]))
    out = {"mse": value, "rmse": float(np.sqrt(value))}
    corr = {"pearson": (pearson_per_feature(pred, truth), pearson_per_cell(pred, truth))}
    if spearman:
        corr["spearman"] = (spearman_per_feature(pred, truth), spearman_per_cell(pred, truth))
    for name, (feat, cell) in corr.items():
        out[f"{name}_feature_mean"] = _nan_summary(feat, np.mean)
        out[f"{name}_feature_median"] = _nan_summary(feat, np.median)
        out[f"{name}_cell_mean"] = _nan_summary(cell, np.mean)
        out[f"{name}_cell_median"] = _nan_summary(cell, np.median)
    out["n_cells"] = float(pred.shape[0])
    out["n_features"] = float(pred.shape[1])
    out["n_constant_features"] = float(np.isnan(corr["pearson"][0]).sum())
    return out


def clustering_scores(clusters, labels, *, cells=None) -> dict[str, float]:
    """Adjusted Rand index and normalised mutual information of clusters against labels.

    Parameters
    ----------
    clusters, labels
        Two partitions of the same cells: pandas Series indexed by cell name (matched by name;
        unmatched names are an error) or plain arrays of the same length (matched by position).
    cells
        Optional subset of cell names to score on.

    Returns
    -------
    dict
        ``ari`` (:func:`sklearn.metrics.adjusted_rand_score`) and ``nmi``
        (:func:`sklearn.metrics.normalized_mutual_info_score`, arithmetic normalisation).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    c, lab, _ = align_labels(
        as_labels(clusters, "clusters"), as_labels(labels, "labels"), "clusters", "labels", cells
    )
    return {
        "ari": float(adjusted_rand_score(lab, c)),
        "nmi": float(normalized_mutual_info_score(lab, c)),
    }


def silhouette(latent, labels, *, sample_size: int | None = 5000, seed=0) -> float:
    """Mean silhouette width of ``labels`` in ``latent`` (Euclidean), in [-1, 1].

    Parameters
    ----------
    latent
        Cells x dimensions embedding (numpy, DataFrame with cell names as index).
    labels
        One label per row of ``latent`` (by position; a Series indexed by cell name is matched
        to a DataFrame's index).
    sample_size
        Score a random subset of this many cells when there are more (``None``: all cells).
    seed
        Random state of the subsample.
    """
    from sklearn.metrics import silhouette_score

    lab = as_labels(labels, "labels")
    if isinstance(latent, pd.DataFrame) and not isinstance(latent.index, pd.RangeIndex):
        names = pd.Index(latent.index.astype(str))
        if lab.index.dtype == object and not isinstance(lab.index, pd.RangeIndex):
            missing = names[~names.isin(lab.index)]
            if len(missing):
                raise SclibraError(f"{len(missing)} cells of the latent space have no label")
            lab = lab.loc[names]
    x = np.asarray(latent, dtype=np.float64)
    if x.ndim != 2:
        raise SclibraError(
            f"latent: expected a 2-D cells x dimensions matrix, got {x.ndim} dimension(s)"
        )
    if len(lab) != x.shape[0]:
        raise SclibraError(f"latent has {x.shape[0]} cells but labels has {len(lab)}")
    n_labels = lab.nunique()
    if n_labels < 2 or n_labels >= x.shape[0]:
        raise SclibraError(
            f"silhouette needs between 2 and n_cells - 1 distinct labels, got {n_labels} for {x.shape[0]} cells"
        )
    if sample_size is not None and x.shape[0] > sample_size:
        return float(
            silhouette_score(x, lab.to_numpy(), sample_size=sample_size, random_state=seed)
        )
    return float(silhouette_score(x, lab.to_numpy()))
