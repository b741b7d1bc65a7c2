"""Preprocessing helpers in the style of ``scanpy.pp``."""

from __future__ import annotations

import warnings

import numpy as np


def highly_variable(adata, n_top_genes: int = 2000, *, subset: bool = False, copy: bool = False):
    """Mark the ``n_top_genes`` most variable features in ``adata.var['highly_variable']``.

    Uses scanpy's ``'seurat'`` flavour on log-normalised values, the selection ``LIBRA.fit``
    applies with ``n_top_genes=`` (the paper kept 2000 genes for RNA). Sparse data stays sparse.

    Parameters
    ----------
    adata
        AnnData with log-normalised values in ``X``.
    n_top_genes
        Number of features to keep.
    subset
        Subset ``adata`` to the selected features.
    copy
        Work on a copy and return it.
    """
    import scanpy as sc

    from ._errors import SclibraError

    if type(adata).__name__ != "AnnData":
        raise SclibraError(f"highly_variable needs an AnnData, got {type(adata).__name__}")
    if adata.isbacked:
        raise SclibraError(
            "highly_variable needs in-memory data: the AnnData is backed by "
            f"{adata.filename}; load it with adata.to_memory() first"
        )
    if not isinstance(n_top_genes, (int, np.integer)) or n_top_genes < 1:
        raise SclibraError(f"n_top_genes must be a positive integer, got {n_top_genes!r}")
    if copy:
        adata = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(
            adata, n_top_genes=min(int(n_top_genes), adata.n_vars), flavor="seurat", subset=subset
        )
    return adata if copy else None
