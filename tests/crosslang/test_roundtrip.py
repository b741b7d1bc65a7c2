"""AnnData -> Seurat -> AnnData and AnnData -> SingleCellExperiment -> AnnData round trips
keep values, sparsity, cell and feature names (and their order).

AnnData -> R goes through the package's readers (LIBRAExampleData(), which reads the bundled
h5ad files with the core, and the bridge's sparse_to_r()); R -> AnnData through the bridge
RunLIBRA() and LIBRAPredict() use to hand matrices to the core (sclibra:::.to_anndata)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def _assert_same_sparse(r_csc: sp.csc_matrix, x) -> None:
    """An R features x cells dgCMatrix equals the AnnData cells x features matrix exactly."""
    x = sp.csr_matrix(x)
    assert r_csc.shape == x.T.shape
    assert r_csc.nnz == x.nnz  # no zero stored, none dropped
    assert (r_csc != x.T).nnz == 0


def _assert_same_anndata(back, adata, x) -> None:
    """An AnnData that came back from R equals the original matrix ``x``, names included."""
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.var_names) == list(adata.var_names)
    assert sp.issparse(back.X)
    assert back.X.format == "csr"
    assert back.X.nnz == sp.csr_matrix(x).nnz
    assert (back.X != sp.csr_matrix(x)).nnz == 0


def _r_to_anndata(r, expr: str, name: str):
    """Send the R matrix ``expr`` through the package's bridge into a Python AnnData."""
    back = r(f'sclibra:::.to_anndata({expr}, "{name}")')
    assert type(back).__name__ == "AnnData"
    return back


def test_anndata_seurat_anndata(r, cite, r_cite):
    rna, adt = cite
    seu = r_cite
    assert r.strings(f"colnames({seu})") == list(rna.obs_names)
    for assay, adata in (("RNA", rna), ("ADT", adt)):
        for slot, x in (("data", adata.X), ("counts", adata.layers["counts"])):
            m, features, cells = r.dgc(
                f'SeuratObject::GetAssayData({seu}, assay = "{assay}", slot = "{slot}")'
            )
            assert features == list(adata.var_names)
            assert cells == list(adata.obs_names)
            _assert_same_sparse(m, x)
        back = _r_to_anndata(
            r, f'SeuratObject::GetAssayData({seu}, assay = "{assay}", slot = "data")', assay
        )
        _assert_same_anndata(back, adata, adata.X)
    # metadata and identities
    meta = rna.obs
    assert r.strings(f'{seu}[["cell_type", drop = TRUE]]') == list(meta["cell_type"].astype(str))
    # identities: the 8 lineages R adds (cell_type_coarse), each a group of fine cell types
    coarse = r.strings(f'as.character({seu}[["cell_type_coarse", drop = TRUE]])')
    assert r.strings(f"SeuratObject::Idents({seu})") == coarse
    assert len(set(coarse)) <= 8
    fine_to_coarse = dict(zip(meta["cell_type"].astype(str), coarse))
    assert [fine_to_coarse[f] for f in meta["cell_type"].astype(str)] == coarse
    is_train = [bool(v) for v in r(f'{seu}[["is_train", drop = TRUE]]')]
    assert is_train == list(meta["is_train"])


def test_anndata_sce_anndata(r, multiome):
    rna, atac = multiome
    r('sce_mo <- LIBRAExampleData("multiome", format = "SingleCellExperiment"); NULL')
    assert r.strings("SingleCellExperiment::mainExpName(sce_mo)") == ["RNA"]
    assert r.strings("SingleCellExperiment::altExpNames(sce_mo)") == ["ATAC"]
    for exp, adata in (("sce_mo", rna), ("SingleCellExperiment::altExp(sce_mo, 'ATAC')", atac)):
        for assay, x in (("logcounts", adata.X), ("counts", adata.layers["counts"])):
            m, features, cells = r.dgc(f'SummarizedExperiment::assay({exp}, "{assay}")')
            assert features == list(adata.var_names)
            assert cells == list(adata.obs_names)
            _assert_same_sparse(m, x)
        back = _r_to_anndata(r, f'SummarizedExperiment::assay({exp}, "logcounts")', "m")
        _assert_same_anndata(back, adata, adata.X)
    assert r.strings("sce_mo$cell_type") == list(rna.obs["cell_type"].astype(str))


def test_awkward_names_and_float32_roundtrip_through_sce(r):
    """Names Seurat would rewrite ('_', '|', spaces, non-ASCII), float32 CSR values, an empty
    cell and an empty feature: AnnData -> dgCMatrix -> SingleCellExperiment -> AnnData."""
    rng = np.random.default_rng(0)
    x = sp.random(7, 5, density=0.4, format="csr", dtype=np.float32, random_state=rng)
    x = x.tolil()
    x[3, :] = 0  # an empty cell
    x[:, 2] = 0  # an empty feature
    x = sp.csr_matrix(x)
    x.eliminate_zeros()
    cells = ["cell 1", "cellule-é", "c|3", "c_4", "5", "TTT-1-s1d1", "x.y"]
    genes = ["GENE_A", "HLA|B", "MT-CO1", "gène", "chr1-100-200"]
    adata = ad.AnnData(X=x, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=genes))
    r.put("awkward", adata)
    r(
        'a <- xl_get("awkward")\n'
        "slots <- reticulate::py_to_r(sclibra:::.bridge()$sparse_to_r(a$X))\n"
        "names <- function(i) as.character(reticulate::py_to_r(i$tolist()))\n"
        "x <- sclibra:::.dgc_from_slots(slots, list(names(a$var_names), names(a$obs_names)))\n"
        "sce_aw <- SingleCellExperiment::SingleCellExperiment(assays = list(logcounts = x))\n"
        "NULL"
    )
    m, features, r_cells = r.dgc('SummarizedExperiment::assay(sce_aw, "logcounts")')
    assert features == genes
    assert r_cells == cells
    _assert_same_sparse(m, x.astype(np.float64))
    back = _r_to_anndata(r, 'SummarizedExperiment::assay(sce_aw, "logcounts")', "aw")
    _assert_same_anndata(back, adata, x.astype(np.float64))
    np.testing.assert_array_equal(back.X.toarray(), x.toarray())  # float32 -> float64 exact


def test_dense_matrix_roundtrip(r):
    """A dense R matrix reaches Python transposed, with names and values kept."""
    values = np.arange(12, dtype=np.float64).reshape(3, 4)  # features x cells, as in R
    r.assign_matrix("dense", values, rows=["f1", "f2", "f3"], cols=["a", "b", "c", "d"])
    back = _r_to_anndata(r, "dense", "dense")
    assert list(back.obs_names) == ["a", "b", "c", "d"]
    assert list(back.var_names) == ["f1", "f2", "f3"]
    assert not sp.issparse(back.X)
    np.testing.assert_array_equal(np.asarray(back.X), values.T)
