"""Small real paired data sets bundled with the package (package data: ``sclibra/_extdata``).

- :func:`bmmc_cite`: NeurIPS 2021 bone-marrow CITE-seq starter subset, 600 cells,
  1000 genes (RNA) + 134 proteins (ADT).
- :func:`bmmc_multiome`: NeurIPS 2021 bone-marrow 10x Multiome starter subset, 500 cells,
  600 genes (RNA) + 600 peaks (ATAC).

Both carry ``obs['cell_type']``, ``obs['batch']`` and ``obs['is_train']`` (donor split: s1d1
train, s1d2 test). ``X`` is log-normalised RNA, CLR-like ADT and binary ATAC; raw counts are in
``layers['counts']``. See the ``SOURCE.md`` next to each file for provenance and licence.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import SclibraError


def extdata_dir() -> Path:
    """Directory of the bundled data.

    The ``SCLIBRA_EXTDATA`` environment variable when set, else the package's own ``_extdata``
    folder: the one copy in the repository, shipped as package data in the wheel and, inside
    the Python core it carries, in the R package.
    """
    candidates = []
    if os.environ.get("SCLIBRA_EXTDATA"):
        candidates.append(Path(os.environ["SCLIBRA_EXTDATA"]))
    here = Path(__file__).resolve().parent
    candidates.append(here / "_extdata")
    for c in candidates:
        if (c / "bmmc_cite").is_dir():
            return c
    raise SclibraError(
        "bundled data not found (looked in: " + ", ".join(map(str, candidates)) + "); set "
        "SCLIBRA_EXTDATA to a folder holding bmmc_cite/ and bmmc_multiome/ (reinstall sclibra: the "
        "data are package data of its wheel)"
    )


def _read_pair(folder: str, a: str, b: str, backed: bool):
    import anndata as ad

    base = extdata_dir() / folder
    mode = "r" if backed else None
    return ad.read_h5ad(base / f"{a}.h5ad", backed=mode), ad.read_h5ad(
        base / f"{b}.h5ad", backed=mode
    )


def bmmc_cite(backed: bool = False):
    """Bone-marrow CITE-seq (RNA + ADT), 600 cells. Returns ``(rna, adt)`` AnnData objects."""
    return _read_pair("bmmc_cite", "rna", "adt", backed)


def bmmc_multiome(backed: bool = False):
    """Bone-marrow 10x Multiome (RNA + ATAC), 500 cells. Returns ``(rna, atac)`` AnnData objects."""
    return _read_pair("bmmc_multiome", "rna", "atac", backed)
