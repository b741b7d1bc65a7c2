"""PPJI (preserved pairwise Jaccard index) and the clustering it is computed on.

Definitions follow the original LIBRA code (``PairWiseJaccardSets`` and ``ppji`` in its R
metrics): for reference clusters ``R_i`` and query clusters ``Q_j``

    J[i, j] = |R_i & Q_j| / |R_i | Q_j|

zeros are treated as missing, query columns that are missing for every reference cluster are
dropped, and PPJI is the mean over reference clusters of the row sums of ``J`` (missing values
ignored). Because ``sum_j |R_i & Q_j| / |R_i | Q_j| <= sum_j |R_i & Q_j| / |R_i| = 1``, PPJI lies
in (0, 1]; it is 1 when the partitions are identical (and, as in the original, also when the
query only splits reference clusters further, since each row still sums to 1).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclibra._errors import SclibraError, format_names
from sclibra._settings import keep_torch_threads, logger, settings

from ._utils import align_labels, as_labels, natural_sorted, pca_scores


def jaccard_matrix(reference, query, *, cells=None) -> pd.DataFrame:
    """Pairwise Jaccard index between every reference and every query cluster.

    Parameters
    ----------
    reference
        Reference partition (e.g. cell types, or clusters of one modality): a pandas Series of
        labels indexed by cell name, or a plain array (then matched to ``query`` by position).
    query
        Query partition (e.g. Leiden clusters of the LIBRA latent space), same form.
    cells
        Optional subset of cell names (e.g. held-out cells) to compute the index on.

    Returns
    -------
    pandas.DataFrame
        Reference clusters (rows) x query clusters (columns), values in [0, 1].

    Raises
    ------
    SclibraError
        If cell names do not match (unmatched cells are an error, never silently dropped), a
        cell has no label, or names are duplicated.
    """
    ref = as_labels(reference, "reference")
    qry = as_labels(query, "query")
    r, q, _ = align_labels(ref, qry, "reference", "query", cells)
    if len(r) == 0:
        raise SclibraError("no cells to compare (the partitions are empty)")
    r_levels = _levels(reference, r)
    q_levels = _levels(query, q)
    r_codes = pd.Categorical(r, categories=r_levels).codes
    q_codes = pd.Categorical(q, categories=q_levels).codes
    # contingency table |R_i & Q_j| as a sparse count matrix (cheap for many clusters)
    counts = sp.coo_matrix(
        (np.ones(len(r)), (r_codes, q_codes)), shape=(len(r_levels), len(q_levels))
    ).toarray()
    r_size = counts.sum(axis=1, keepdims=True)
    q_size = counts.sum(axis=0, keepdims=True)
    union = r_size + q_size - counts
    jac = np.divide(counts, union, out=np.zeros_like(counts), where=union > 0)
    out = pd.DataFrame(
        jac, index=pd.Index(r_levels, name="reference"), columns=pd.Index(q_levels, name="query")
    )
    return out


def _levels(original, values) -> list:
    """Cluster order: the categories of a categorical input (those present), else natural sort."""
    present = set(values)
    cats = getattr(getattr(original, "cat", None), "categories", None)
    if cats is None and isinstance(original, pd.Categorical):
        cats = original.categories
    if cats is not None:
        ordered = [str(c) for c in cats if str(c) in present]
        if len(ordered) == len(present):
            return ordered
    return natural_sorted(present)


def ppji_from_matrix(jaccard: pd.DataFrame) -> float:
    """PPJI of a Jaccard matrix (reference x query) as in the original LIBRA code.

    Zeros are treated as missing, all-missing query columns are dropped, and the result is the
    mean over reference clusters of the row sums (missing values ignored).
    """
    jac = np.asarray(jaccard, dtype=np.float64)
    if jac.ndim != 2 or jac.size == 0:
        raise SclibraError("the Jaccard matrix is empty")
    masked = np.where(jac == 0, np.nan, jac)
    keep = ~np.isnan(masked).all(axis=0)
    masked = masked[:, keep]
    return float(np.mean(np.nansum(masked, axis=1)))


def ppji(reference, query, *, cells=None, return_matrix: bool = False):
    """Preserved pairwise Jaccard index (PPJI) between two partitions of the same cells.

    Parameters
    ----------
    reference
        Reference partition (cell types, or clusters of one modality alone): pandas Series of
        labels indexed by cell name, or an array matched by position.
    query
        Query partition, typically :func:`cluster_latent` of the LIBRA latent space.
    cells
        Optional subset of cell names (e.g. the held-out cells).
    return_matrix
        Also return the Jaccard matrix (:func:`jaccard_matrix`).

    Returns
    -------
    float or (float, pandas.DataFrame)
        PPJI in (0, 1]: 1 for identical partitions (renaming labels does not change it).

    Examples
    --------
    >>> clusters = sclibra.metrics.cluster_latent(model.get_latent(atac), cells=atac.obs_names)
    >>> sclibra.metrics.ppji(atac.obs["cell_type"], clusters)
    """
    jac = jaccard_matrix(reference, query, cells=cells)
    value = ppji_from_matrix(jac)
    return (value, jac) if return_matrix else value


# ------------------------------------------------------------------------------------------------
# clustering
# ------------------------------------------------------------------------------------------------
def _embedding(data, use_rep, cells):
    """Return (matrix, cell names, AnnData or None) for cluster_latent's accepted inputs."""
    adata = None
    if type(data).__name__ == "AnnData":
        if cells is not None:
            raise SclibraError(
                "cells= names the rows of an array or DataFrame; an AnnData's cells are its "
                "obs_names (drop cells=, or subset the AnnData)"
            )
        adata = data
        names = pd.Index(data.obs_names.astype(str))
        if use_rep is None:
            use_rep = "X_libra" if "X_libra" in data.obsm else "X"
        if use_rep == "X":
            x = data.X
        elif use_rep in data.obsm:
            x = data.obsm[use_rep]
        else:
            raise SclibraError(
                f"use_rep={use_rep!r} is not in adata.obsm (available: {format_names(list(data.obsm))}); "
                "run sclibra.tl.libra(adata, model) first or pass use_rep="
            )
    elif isinstance(data, pd.DataFrame):
        x = data.to_numpy()
        names = pd.Index(data.index.astype(str))
    else:
        x = data
        names = None
    if sp.issparse(x):
        raise SclibraError(
            "cluster_latent expects a dense embedding (latent space, PCA), got a sparse matrix"
        )
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise SclibraError(
            f"expected a 2-D cells x dimensions embedding, got {x.ndim} dimension(s)"
        )
    if not np.isfinite(x).all():
        raise SclibraError(
            f"the embedding has {int((~np.isfinite(x)).any(axis=1).sum())} cells with NaN/Inf values"
        )
    if cells is not None:
        cells = pd.Index(np.asarray(cells).astype(str))
        if len(cells) != x.shape[0]:
            raise SclibraError(
                f"cells= has {len(cells)} names but the embedding has {x.shape[0]} rows"
            )
        names = cells
    if names is None:
        names = pd.Index([str(i) for i in range(x.shape[0])])
    return x, names, adata


def cluster_latent(
    data,
    *,
    n_neighbors: int = 10,
    resolution: float = 1.0,
    seed: int | None = 0,
    use_rep: str | None = None,
    cells=None,
    key_added: str | None = None,
) -> pd.Series:
    """Leiden clusters of an embedding, as used for PPJI (k-NN graph + Leiden, through scanpy).

    Parameters
    ----------
    data
        Cells x dimensions embedding: numpy array, DataFrame (index = cell names), or AnnData
        (``obsm[use_rep]``; default ``"X_libra"`` when present, else ``X``).
    n_neighbors
        Size of the k-nearest-neighbour graph (the original LIBRA used 10).
    resolution
        Leiden resolution (higher: more clusters).
    seed
        Random state of the neighbour search and of Leiden (same seed, same clusters).
    use_rep
        ``obsm`` key of an AnnData input.
    cells
        Cell names of the rows of an array input (default ``"0"``, ``"1"``, ...; a DataFrame's
        are replaced; refused with an AnnData, whose names are its ``obs_names``).
    key_added
        With an AnnData input, also store the clusters in ``adata.obs[key_added]`` (refused for
        other inputs, which have no ``obs``).

    Returns
    -------
    pandas.Series
        Categorical cluster labels (``"0"`` = largest cluster) indexed by cell name.
    """
    import anndata as ad
    import scanpy as sc

    x, names, adata = _embedding(data, use_rep, cells)
    if key_added is not None and adata is None:
        raise SclibraError(
            f"key_added={key_added!r} stores the clusters in adata.obs, but the input is not an "
            "AnnData; use the returned Series"
        )
    n = x.shape[0]
    if n < 3:
        raise SclibraError(f"need at least 3 cells to cluster, got {n}")
    if int(n_neighbors) < 2:
        raise SclibraError(f"n_neighbors must be >= 2, got {n_neighbors}")
    if float(resolution) <= 0:
        raise SclibraError(f"resolution must be > 0, got {resolution}")
    k = min(int(n_neighbors), n - 1)
    if seed is None:
        seed = settings.seed if settings.seed is not None else 0
    tmp = ad.AnnData(x)
    with warnings.catch_warnings(), keep_torch_threads():
        warnings.simplefilter("ignore", FutureWarning)
        sc.pp.neighbors(tmp, n_neighbors=k, use_rep="X", random_state=seed)
        try:
            sc.tl.leiden(
                tmp,
                resolution=resolution,
                random_state=seed,
                flavor="igraph",
                n_iterations=2,
                directed=False,
            )
        except (TypeError, ImportError, ValueError):  # older scanpy without the igraph flavour
            sc.tl.leiden(tmp, resolution=resolution, random_state=seed)
    labels = pd.Series(pd.Categorical(tmp.obs["leiden"].astype(str)), index=names, name="leiden")
    labels = labels.cat.reorder_categories(natural_sorted(labels.cat.categories))
    logger.debug("Leiden: %d clusters from %d cells", labels.cat.categories.size, n)
    if adata is not None and key_added is not None:
        adata.obs[key_added] = labels.to_numpy()
    return labels


def cluster_modality(
    data,
    *,
    layer: str | None = None,
    n_pcs: int = 50,
    n_neighbors: int = 10,
    resolution: float = 1.0,
    seed: int | None = 0,
) -> pd.Series:
    """Leiden clusters of one modality alone (PCA, k-NN graph, Leiden): a PPJI reference.

    Parameters
    ----------
    data
        AnnData (``X`` or ``layer``), numpy array or scipy sparse matrix (cells x features).
        Sparse input is never densified (implicitly centred PCA).
    layer
        AnnData layer to use instead of ``X``.
    n_pcs, n_neighbors, resolution, seed
        PCA size and :func:`cluster_latent` parameters.

    Returns
    -------
    pandas.Series
        Categorical cluster labels indexed by cell name (``"0"``, ``"1"``, ... for arrays).
    """
    from ._utils import as_2d, check_finite

    names = pd.Index(data.obs_names.astype(str)) if type(data).__name__ == "AnnData" else None
    x = as_2d(data, "modality", layer=layer)
    check_finite(x, "modality")
    _, scores = pca_scores(x, n_pcs, seed)
    return cluster_latent(
        scores, n_neighbors=n_neighbors, resolution=resolution, seed=seed, cells=names
    )
