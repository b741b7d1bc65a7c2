"""Plots of LIBRA models and their metrics (matplotlib).

Every function returns a :class:`matplotlib.figure.Figure` and, with ``save=path``, also writes
it (atomically; the format follows the file extension). matplotlib is imported lazily, and the
non-interactive Agg backend is selected when there is no display, so plots render on servers
and in CI.

Examples
--------
>>> sclibra.pl.loss(model, save="loss.png")
>>> res = sclibra.metrics.nn_consistency(model, atac, rna)
>>> sclibra.pl.consistency(res)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ._errors import SclibraError, format_names
from ._fs import atomic_file
from ._settings import keep_torch_threads

__all__ = [
    "loss",
    "jaccard",
    "consistency",
    "latent_umap",
    "predicted_vs_measured",
    "evaluation",
    "save_figure",
]

#: the figures of :func:`evaluation`, in the order they are drawn
EVALUATION_FIGURES = ("loss", "jaccard", "consistency", "umap", "predicted_vs_measured")


def _pyplot():
    """Import pyplot, choosing Agg first when no display is available."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        headless = sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        if headless and "ipykernel" not in sys.modules:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, overwrite: bool = False, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    fig
        A matplotlib figure.
    path
        Destination; the format follows the extension (``.png``, ``.pdf``, ``.svg``, ...).
    overwrite
        Replace an existing file; if False, an existing file is an error.
    dpi
        Resolution of raster formats.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise SclibraError(f"{path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _figure(ax, figsize):
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def _done(fig, save, overwrite=False):
    if save is not None:
        save_figure(fig, save, overwrite=overwrite)
    return fig


# ------------------------------------------------------------------------------------------------
def loss(
    model,
    *,
    b_encoder: bool = False,
    log: bool = True,
    ax=None,
    save=None,
    overwrite: bool = False,
    title: str | None = None,
):
    """Training and validation loss per epoch, with the restored (best) epoch marked.

    Parameters
    ----------
    model
        Trained :class:`sclibra.LIBRA`, or its ``history`` DataFrame (columns ``epoch``,
        ``train_loss``, ``val_loss``).
    b_encoder
        Plot the history of the second network (nn_consistency) instead.
    log
        Logarithmic loss axis when the losses span more than a factor of 10.
    ax
        Axes to draw into (default: a new figure).
    save
        File to write the figure to (atomically; the format follows the extension).
    overwrite
        Replace an existing ``save`` file (otherwise an existing file is an error).
    title
        Plot title.
    """
    if isinstance(model, pd.DataFrame):
        hist = model
    else:
        hist = getattr(model, "b_encoder_history" if b_encoder else "history", None)
    if hist is None or len(hist) == 0:
        what = "second network (fit_b_encoder)" if b_encoder else "model"
        raise SclibraError(f"no training history to plot: the {what} has not been trained")
    for col in ("train_loss", "val_loss"):
        if col not in hist.columns:
            raise SclibraError(f"the history has no {col!r} column (columns: {list(hist.columns)})")
    if "member" in hist.columns:  # an ensemble (n_models > 1): the first member's curve
        hist = hist[hist["member"] == hist["member"].min()]
    epoch = hist["epoch"] if "epoch" in hist.columns else pd.Series(np.arange(1, len(hist) + 1))
    fig, ax = _figure(ax, (5.5, 3.8))
    ax.plot(epoch, hist["train_loss"], label="training", color="#1f77b4")
    val = hist["val_loss"]
    if val.notna().any():
        ax.plot(epoch, val, label="validation", color="#d62728")
        best = int(np.nanargmin(val.to_numpy()))
        ax.axvline(epoch.iloc[best], color="grey", ls=":", lw=1)
        ax.scatter(
            [epoch.iloc[best]],
            [val.iloc[best]],
            color="#d62728",
            zorder=3,
            label=f"best (epoch {epoch.iloc[best]})",
        )
    losses = hist[["train_loss", "val_loss"]].to_numpy(dtype=float)
    lo, hi = np.nanmin(losses), np.nanmax(losses)
    if log and lo > 0 and hi / lo > 10:  # a log axis only pays off over more than a decade
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE)")
    ax.set_title(title or ("Second network (B -> latent)" if b_encoder else "LIBRA training"))
    ax.legend(frameon=False)
    return _done(fig, save, overwrite)


def jaccard(
    jaccard_matrix,
    query=None,
    *,
    annotate: bool | None = None,
    cmap: str = "Reds",
    ax=None,
    save=None,
    overwrite: bool = False,
    title=None,
):
    """Heatmap of a Jaccard matrix (reference clusters x query clusters), PPJI in the title.

    Parameters
    ----------
    jaccard_matrix
        DataFrame from :func:`sclibra.metrics.jaccard_matrix` (or ``ppji(...,
        return_matrix=True)``), or a reference partition when ``query`` is given.
    query
        Query partition, to compute the matrix from two partitions.
    annotate
        Print values in the cells (default: when the matrix is at most 20 x 20).
    cmap
        Colour map (0 = white).
    ax, save, overwrite, title
        As in :func:`loss`.
    """
    from .metrics import jaccard_matrix as _jm
    from .metrics import ppji_from_matrix

    mat = _jm(jaccard_matrix, query) if query is not None else jaccard_matrix
    if not isinstance(mat, pd.DataFrame):
        mat = pd.DataFrame(np.asarray(mat))
    value = ppji_from_matrix(mat)
    n_r, n_q = mat.shape
    fig, ax = _figure(ax, (max(4.0, 0.45 * n_q + 2.5), max(3.0, 0.4 * n_r + 1.5)))
    im = ax.imshow(mat.to_numpy(dtype=float), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_q))
    ax.set_xticklabels([str(c) for c in mat.columns], rotation=90)
    ax.set_yticks(range(n_r))
    ax.set_yticklabels([str(r) for r in mat.index])
    ax.set_xlabel(mat.columns.name or "query clusters")
    ax.set_ylabel(mat.index.name or "reference clusters")
    if annotate is None:
        annotate = n_r <= 20 and n_q <= 20
    if annotate:
        for i in range(n_r):
            for j in range(n_q):
                v = mat.iat[i, j]
                if v > 0:
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if v > 0.6 else "black",
                    )
    fig.colorbar(im, ax=ax, label="Jaccard index", shrink=0.8)
    ax.set_title(title or f"PPJI = {value:.3f}")
    return _done(fig, save, overwrite)


def consistency(result, *, bins: int = 50, ax=None, save=None, overwrite: bool = False, title=None):
    """Density of the nn_consistency distances, with the two modes, their peaks and windows.

    Parameters
    ----------
    result
        :class:`sclibra.metrics.ConsistencyResult` (from :func:`sclibra.metrics.nn_consistency`).
    bins
        Histogram bins drawn under the density.
    ax, save, overwrite, title
        As in :func:`loss`.
    """
    if not hasattr(result, "distances") or not hasattr(result, "density"):
        raise SclibraError("expected the result of sclibra.metrics.nn_consistency")
    fig, ax = _figure(ax, (6.0, 3.8))
    d = result.distances.to_numpy()
    ax.hist(d, bins=bins, density=True, color="0.85", edgecolor="white")
    ax.plot(
        result.density["distance"],
        result.density["density"],
        color="black",
        lw=1.5,
        label="density",
    )
    colors = {"low": "#2ca02c", "high": "#d62728", "all": "#1f77b4"}
    dens_x = result.density["distance"].to_numpy()
    dens_y = result.density["density"].to_numpy()
    for mode, row in result.modes.iterrows():
        c = colors.get(mode, "#1f77b4")
        ax.axvspan(row["window_low"], row["window_high"], color=c, alpha=0.12)
        peak_y = float(np.interp(row["peak"], dens_x, dens_y))
        ax.plot(
            [row["peak"]],
            [peak_y],
            marker="v",
            color=c,
            ms=9,
            ls="none",
            label=f"{mode} peak {row['peak']:.3g}",
        )
    if result.is_bimodal:
        ax.axvline(
            result.threshold, color="black", ls="--", lw=1, label=f"split {result.threshold:.3g}"
        )
    ax.set_xlabel("distance between latent(A) and second network(B)")
    ax.set_ylabel("density")
    if title is None:
        if result.is_bimodal:
            title = f"nn_consistency: bimodal, {result.share_high:.1%} of cells in the high mode"
            if np.isfinite(result.share_held_out_high):
                title += f"\n({result.share_held_out_high:.1%} of held-out cells)"
        else:
            title = "nn_consistency: unimodal"
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return _done(fig, save, overwrite)


def _latent_of(data, use_rep):
    if type(data).__name__ == "AnnData":
        key = use_rep or ("X_libra" if "X_libra" in data.obsm else None)
        if key is None:
            raise SclibraError(
                "the AnnData has no obsm['X_libra']; run sclibra.tl.libra(adata, model) or pass use_rep="
            )
        if key not in data.obsm:
            raise SclibraError(f"use_rep={key!r} is not in adata.obsm")
        return (
            np.asarray(data.obsm[key], dtype=np.float32),
            pd.Index(data.obs_names.astype(str)),
            data.obs,
        )
    if isinstance(data, pd.DataFrame):
        return data.to_numpy(dtype=np.float32), pd.Index(data.index.astype(str)), None
    x = np.asarray(data, dtype=np.float32)
    return x, pd.Index([str(i) for i in range(x.shape[0])]), None


def umap_coordinates(latent, *, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-D UMAP of a latent space (scanpy neighbours + UMAP; deterministic with ``seed``)."""
    import warnings

    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.asarray(latent, dtype=np.float32))
    with warnings.catch_warnings(), keep_torch_threads():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(
            tmp, n_neighbors=min(n_neighbors, tmp.n_obs - 1), use_rep="X", random_state=seed
        )
        sc.tl.umap(tmp, random_state=seed)
    return tmp.obsm["X_umap"]


def latent_umap(
    data,
    color=None,
    *,
    use_rep=None,
    coordinates=None,
    n_neighbors: int = 15,
    seed: int = 0,
    point_size=None,
    save=None,
    overwrite: bool = False,
):
    """UMAP of the latent space, one panel per colouring (labels, clusters, ...).

    Parameters
    ----------
    data
        Latent space: AnnData (``obsm['X_libra']`` or ``use_rep``), DataFrame (index = cells) or
        array (cells x dimensions).
    color
        One or several colourings: an obs column name (AnnData input), a Series indexed by
        cell name, an array of labels (by position), or a dict ``{title: colouring}``.
    use_rep
        ``obsm`` key of an AnnData input.
    coordinates
        Precomputed 2-D coordinates (skip the UMAP).
    n_neighbors, seed
        UMAP neighbourhood size and random state.
    point_size
        Marker size (default: by number of cells).
    save
        File to write the figure to (atomically; the format follows the extension).
    overwrite
        Replace an existing ``save`` file (otherwise an existing file is an error).
    """
    plt = _pyplot()
    x, names, obs = _latent_of(data, use_rep)
    coords = (
        umap_coordinates(x, n_neighbors=n_neighbors, seed=seed)
        if coordinates is None
        else np.asarray(coordinates)
    )
    if coords.shape != (x.shape[0], 2):
        raise SclibraError(f"coordinates must be cells x 2, got {coords.shape}")
    if color is None:
        panels = {"": None}
    elif isinstance(color, dict):
        panels = dict(color)
    elif isinstance(color, (str, pd.Series, np.ndarray)) or not isinstance(color, (list, tuple)):
        panels = {color if isinstance(color, str) else getattr(color, "name", None) or "": color}
    else:
        panels = {
            (c if isinstance(c, str) else getattr(c, "name", None) or f"colour {i + 1}"): c
            for i, c in enumerate(color)
        }
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    size = point_size or max(2.0, min(30.0, 12000 / max(x.shape[0], 1)))
    for ax, (title, col) in zip(axes[0], panels.items()):
        labels = _colour_values(col, names, obs)
        if labels is None:
            ax.scatter(coords[:, 0], coords[:, 1], s=size, color="0.4", lw=0)
        else:
            _scatter_categories(ax, coords, labels, size)
        ax.set_title(str(title) if title else "LIBRA latent space")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
    fig.tight_layout()
    return _done(fig, save, overwrite)


def _colour_values(col, names, obs):
    if col is None:
        return None
    if isinstance(col, str):
        if obs is None or col not in obs.columns:
            raise SclibraError(f"color={col!r}: not an obs column of the input")
        s = obs[col]
        s.index = s.index.astype(str)
        return s.reindex(names)
    if isinstance(col, pd.Series) and not isinstance(col.index, pd.RangeIndex):
        s = col.copy()
        s.index = s.index.astype(str)
        missing = names[~names.isin(s.index)]
        if len(missing):
            raise SclibraError(
                f"the colouring has no value for {len(missing)} cells of the latent space"
            )
        return s.reindex(names)
    arr = np.asarray(col)
    if arr.shape[0] != len(names):
        raise SclibraError(f"the colouring has {arr.shape[0]} values for {len(names)} cells")
    return pd.Series(arr, index=names)


def _scatter_categories(ax, coords, labels: pd.Series, size):
    plt = _pyplot()
    if pd.api.types.is_numeric_dtype(labels) and labels.nunique() > 20:
        sc = ax.scatter(
            coords[:, 0], coords[:, 1], c=labels.to_numpy(dtype=float), s=size, lw=0, cmap="viridis"
        )
        ax.figure.colorbar(sc, ax=ax, shrink=0.8)
        return
    cats = (
        labels.astype("category").cat.categories
        if not hasattr(labels, "cat")
        else labels.cat.categories
    )
    cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
    for i, cat in enumerate(cats):
        mask = (labels == cat).to_numpy()
        ax.scatter(
            coords[mask, 0], coords[mask, 1], s=size, lw=0, color=cmap(i % cmap.N), label=str(cat)
        )
    ax.legend(
        frameon=False, fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5)
    )


def predicted_vs_measured(
    pred,
    truth,
    features=None,
    *,
    n_features: int = 4,
    cells=None,
    title=None,
    save=None,
    overwrite: bool = False,
):
    """Scatter of predicted against measured values for chosen features of modality B.

    Parameters
    ----------
    pred
        Prediction: AnnData from ``model.predict`` or an array (cells x features).
    truth
        Measured modality B: AnnData or array, same cells (matched by name for AnnData inputs).
    features
        Feature names (AnnData inputs) or column positions; default: the ``n_features``
        most variable measured features.
    n_features
        Number of features when ``features`` is None.
    cells
        Optional subset of cell names (e.g. held-out cells).
    title
        Figure title.
    save
        File to write the figure to (atomically; the format follows the extension).
    overwrite
        Replace an existing ``save`` file (otherwise an existing file is an error).
    """
    import scipy.sparse as sp

    plt = _pyplot()
    p_names, p_x, p_vars = _named_matrix(pred, "prediction")
    t_names, t_x, t_vars = _named_matrix(truth, "measured")
    if p_names is not None and t_names is not None:
        keep = p_names if cells is None else pd.Index(np.asarray(cells).astype(str).ravel())
        for names, what in ((p_names, "prediction"), (t_names, "measured data")):
            missing = keep[~keep.isin(names)]
            if len(missing):
                raise SclibraError(
                    f"{len(missing)} {'predicted ' if cells is None else ''}cells are not in "
                    f"the {what}: {format_names(missing)}"
                )
        p_x = p_x[p_names.get_indexer(keep)]
        t_x = t_x[t_names.get_indexer(keep)]
    elif cells is not None:
        raise SclibraError(
            "cells= needs cell names: pass the prediction and the measured data as AnnData or "
            "DataFrames, or subset the arrays yourself"
        )
    elif p_x.shape[0] != t_x.shape[0]:
        raise SclibraError(f"prediction has {p_x.shape[0]} cells but measured has {t_x.shape[0]}")
    if p_vars is not None and t_vars is not None:
        shared = p_vars[p_vars.isin(t_vars)]
        if len(shared) == 0:
            raise SclibraError("prediction and measured data share no feature names")
        p_x = p_x[:, p_vars.get_indexer(shared)]
        t_x = t_x[:, t_vars.get_indexer(shared)]
        var_names = shared
    else:
        if p_x.shape[1] != t_x.shape[1]:
            raise SclibraError(
                f"prediction has {p_x.shape[1]} features but measured has {t_x.shape[1]}"
            )
        var_names = pd.Index([str(j) for j in range(p_x.shape[1])])
    if features is None:
        if sp.issparse(t_x):
            mean = np.asarray(t_x.mean(axis=0)).ravel()
            var = np.asarray(t_x.multiply(t_x).mean(axis=0)).ravel() - mean**2
        else:
            var = np.asarray(t_x, dtype=np.float64).var(axis=0)
        if int(n_features) < 1:
            raise SclibraError(f"n_features must be >= 1, got {n_features!r}")
        cols = list(np.argsort(-var)[: int(n_features)])
    else:
        feats = [features] if isinstance(features, (str, int)) else list(features)
        cols = []
        for f in feats:
            if isinstance(f, (int, np.integer)):
                if not -len(var_names) <= f < len(var_names):
                    raise SclibraError(
                        f"feature position {f} is out of range: the prediction and the "
                        f"measured data share {len(var_names)} features"
                    )
                cols.append(int(f))
            else:
                pos = var_names.get_indexer([str(f)])[0]
                if pos < 0:
                    raise SclibraError(f"feature {f!r} is not among the predicted features")
                cols.append(int(pos))
        if not cols:
            raise SclibraError("features= names no feature to plot")
    n = len(cols)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.1 * nrow), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        j = cols[k]
        y = t_x[:, j]
        y = np.asarray(y.toarray() if sp.issparse(y) else y, dtype=np.float64).ravel()
        x = np.asarray(p_x[:, j], dtype=np.float64).ravel()
        ax.scatter(y, x, s=6, alpha=0.6, lw=0, color="#1f77b4")
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
        r = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else np.nan
        ax.set_title(f"{var_names[j]}  (r = {r:.2f})", fontsize=9)
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _done(fig, save, overwrite)


def _named_matrix(x, name):
    import scipy.sparse as sp

    if type(x).__name__ == "AnnData":
        X = x.X
        X = X.tocsr() if sp.issparse(X) else np.asarray(X)
        return pd.Index(x.obs_names.astype(str)), X, pd.Index(x.var_names.astype(str))
    if isinstance(x, pd.DataFrame):
        return pd.Index(x.index.astype(str)), x.to_numpy(), pd.Index(x.columns.astype(str))
    if sp.issparse(x):
        return None, x.tocsr(), None
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise SclibraError(f"{name}: expected a 2-D cells x features matrix")
    return None, arr, None


# ------------------------------------------------------------------------------------------------
def evaluation(ev, model, *, features=None, seed: int = 0) -> dict:
    """Draw the figures of an evaluation (:func:`sclibra.metrics.evaluate` with ``details=True``).

    Parameters
    ----------
    ev
        The :class:`sclibra.metrics.Evaluation`.
    model
        The evaluated model (its training history is drawn).
    features
        Features of B for the predicted-vs-measured plot (default: the 4 most variable).
    seed
        Random state of the UMAP layout.

    Returns
    -------
    dict
        Figure name (see ``EVALUATION_FIGURES``) -> matplotlib figure, or None when the
        evaluation has nothing to draw for it (no consistency, no reference partition).
    """
    figures = {"loss": loss(model)}
    ref_name = next(iter(ev.jaccard), None)
    figures["jaccard"] = None
    if ref_name is not None:
        fig = jaccard(ev.jaccard[ref_name], title=None)
        ax = fig.axes[0]
        ax.set_title(f"{ax.get_title()} ({ref_name} vs latent clusters)", fontsize=10)
        figures["jaccard"] = fig
    figures["consistency"] = consistency(ev.consistency) if ev.consistency is not None else None
    colour = {}
    if ev.labels is not None:
        colour[ev.labels.name or "labels"] = ev.labels
    colour["latent clusters"] = ev.clusters["latent"]
    if ev.split is not None:
        colour["split"] = ev.split
    figures["umap"] = latent_umap(ev.latent, colour, seed=seed)
    figures["predicted_vs_measured"] = predicted_vs_measured(ev.predicted, ev.measured, features)
    return figures
