"""Reading data through anndata / scanpy / mudata (no hand-written parsers)."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import SclibraError

FORMATS = "h5ad, h5mu, 10x h5 (.h5), 10x mtx folder, csv/tsv, mtx"


def read(path, *, backed: bool = False, transpose: bool = False, **kwargs):
    """Read single-cell data from a file or folder.

    Parameters
    ----------
    path
        ``.h5ad`` (AnnData), ``.h5mu`` (MuData), ``.h5`` (10x Genomics HDF5), a 10x folder with
        ``matrix.mtx(.gz)``, ``.csv``/``.tsv`` (cells x features with a header row and cell names
        in the first column), or ``.mtx`` (with ``barcodes.tsv``/``features.tsv`` beside it when
        present).
    backed
        Open ``.h5ad`` files on disk (``backed='r'``) for data larger than memory.
    transpose
        For csv/tsv/mtx: the file is features x cells.
    **kwargs
        Passed on to the underlying reader.

    Returns
    -------
    AnnData or MuData.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise SclibraError(f"no such file or folder: {path}")
    name = path.name.lower()
    if path.is_dir():
        if any((path / f).exists() for f in ("matrix.mtx", "matrix.mtx.gz")):
            import scanpy as sc

            return sc.read_10x_mtx(path, **kwargs)
        raise SclibraError(
            f"{path} is a folder without matrix.mtx(.gz); supported formats: {FORMATS}"
        )
    if name.endswith(".h5ad"):
        import anndata as ad

        return ad.read_h5ad(path, backed="r" if backed else None, **kwargs)
    if name.endswith(".h5mu"):
        try:
            import mudata as md
        except ImportError:
            raise SclibraError(
                "reading .h5mu needs the mudata package: pip install mudata"
            ) from None
        return md.read_h5mu(path, backed="r" if backed else None, **kwargs)
    if name.endswith(".h5"):
        import scanpy as sc

        return sc.read_10x_h5(path, **kwargs)
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")):
        import anndata as ad

        delim = "," if ".csv" in name else "\t"
        adata = (
            ad.read_csv(path, delimiter=delim, **kwargs)
            if delim == ","
            else ad.read_text(path, delimiter=delim, **kwargs)
        )
        return adata.T if transpose else adata
    if name.endswith((".mtx", ".mtx.gz")):
        return _read_mtx(path, transpose, **kwargs)
    raise SclibraError(f"unknown file type: {path.name}; supported formats: {FORMATS}")


def _read_mtx(path: Path, transpose: bool, **kwargs):
    import anndata as ad
    import pandas as pd

    adata = ad.read_mtx(path, **kwargs)
    if transpose:
        adata = adata.T
    adata.X = adata.X.tocsr() if hasattr(adata.X, "tocsr") else adata.X
    folder = path.parent
    for kind, attr in (
        ("barcodes", "obs_names"),
        ("features", "var_names"),
        ("genes", "var_names"),
    ):
        for ext in (".tsv", ".tsv.gz", ".txt"):
            f = folder / f"{kind}{ext}"
            if f.exists():
                names = pd.read_csv(f, sep="\t", header=None).iloc[:, 0].astype(str)
                expected = adata.n_obs if attr == "obs_names" else adata.n_vars
                if len(names) != expected:
                    raise SclibraError(
                        f"{f.name} has {len(names)} names but the matrix has {expected} {attr[:3]}"
                    )
                setattr(adata, attr, names.to_numpy())
                break
    return adata
