"""One LIBRA in two languages: the same data and seed through the Python API and through
RunLIBRA() give the same model, latent space and predictions, in the same cell and feature
order with the same names."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ARCH, FIT, R_ARGS

import sclibra

ATOL = 1e-5


def _nonzero_features(adata, cells_mask) -> list[str]:
    x = adata.X[np.flatnonzero(cells_mask)]
    nnz = np.asarray((x != 0).sum(axis=0)).ravel()
    return list(adata.var_names[nnz > 0])


def _assert_same_model(r, r_model: str, py_model) -> None:
    """The R model's metadata equals the Python model's (names and order included)."""
    assert r.strings(f"{r_model}$features.input") == list(py_model.features_a)
    assert r.strings(f"{r_model}$features.output") == list(py_model.features_b)
    assert r.strings(f"{r_model}$train.cells") == list(py_model.train_cells_)
    assert r.strings(f"{r_model}$validation.cells") == list(py_model.val_cells_)
    assert int(r.scalar(f"{r_model}$n.epochs")) == py_model.n_epochs_
    np.testing.assert_allclose(
        r.numbers(f"{r_model}$history$train_loss"),
        py_model.history["train_loss"].to_numpy(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        r.scalar(f"{r_model}$best.val.loss"), py_model.best_val_loss_, rtol=1e-5
    )


@pytest.fixture(scope="module")
def py_cite_all(cite):
    """The Python model trained RNA -> ADT on all cells with the shared settings."""
    rna, adt = cite
    return sclibra.LIBRA(**ARCH).fit(rna, adt, progress=False, **FIT)


def test_runlibra_seurat_equals_python_api(r, cite, r_cite, py_cite_all):
    """CITE-seq RNA -> ADT on all cells: Seurat reduction and predicted assay equal Python's."""
    rna, adt = cite
    py_model = py_cite_all
    py_latent = py_model.get_latent(rna)
    py_pred = py_model.predict(rna)

    r(f'seu <- RunLIBRA({r_cite}, input.assay = "RNA", output.assay = "ADT", {R_ARGS}); NULL')
    _assert_same_model(r, "GetLIBRAModel(seu)", py_model)

    emb, cells, dims = r.matrix('SeuratObject::Embeddings(seu, reduction = "libra")')
    assert cells == list(rna.obs_names)
    # the default is an ensemble: its latent space concatenates the members' (R and Python alike)
    assert dims == [f"LIBRA_{i}" for i in range(1, py_model.latent_width_ + 1)]
    np.testing.assert_allclose(emb, py_latent, atol=ATOL)

    pred, features, pred_cells = r.matrix(
        'SeuratObject::GetAssayData(seu, slot = "data", assay = "predicted_ADT")'
    )
    assert features == list(adt.var_names) == list(py_pred.var_names)
    assert pred_cells == list(rna.obs_names) == list(py_pred.obs_names)
    np.testing.assert_allclose(pred, py_pred.X.T, atol=ATOL)
    # the prediction is not trivially constant: the comparison above means something
    assert np.std(pred, axis=1).min() > 0


def test_runlibra_sce_equals_python_api(r, multiome):
    """Multiome ATAC -> RNA on the training donor, through a SingleCellExperiment: R keeps every
    feature, as the core does (features zero in every training cell included), and the Python
    API gives the same reducedDim and predicted altExp for all cells, held-out ones included."""
    rna, atac = multiome
    train = rna.obs["is_train"].to_numpy()
    r('sce <- LIBRAExampleData("multiome", format = "SingleCellExperiment"); NULL')
    r(
        'sce <- RunLIBRA(sce, input.altexp = "ATAC", input.assay = "logcounts", '
        f'output.assay = "logcounts", train.cells = "is_train", {R_ARGS}); NULL'
    )
    feats_a = r.strings("GetLIBRAModel(sce)$features.input")
    feats_b = r.strings("GetLIBRAModel(sce)$features.output")
    assert feats_a == list(atac.var_names)
    assert feats_b == list(rna.var_names)
    # the bundled ATAC has peaks empty on this donor: they are kept, as in Python
    assert len(_nonzero_features(atac, train)) < atac.n_vars

    py_model = sclibra.LIBRA(**ARCH).fit(
        atac[:, feats_a], rna[:, feats_b], train="is_train", progress=False, **FIT
    )
    _assert_same_model(r, "GetLIBRAModel(sce)", py_model)
    assert set(py_model.train_cells_) | set(py_model.val_cells_) == set(rna.obs_names[train])

    emb, cells, _ = r.matrix('SingleCellExperiment::reducedDim(sce, "LIBRA")')
    assert cells == list(atac.obs_names)
    np.testing.assert_allclose(emb, py_model.get_latent(atac[:, feats_a]), atol=ATOL)

    pred, features, pred_cells = r.matrix(
        'SummarizedExperiment::assay(SingleCellExperiment::altExp(sce, "predicted_RNA"), '
        '"logcounts")'
    )
    py_pred = py_model.predict(atac[:, feats_a])
    assert features == feats_b
    assert pred_cells == list(atac.obs_names)
    np.testing.assert_allclose(pred, py_pred.X.T, atol=ATOL)


def test_matrix_method_same_seed_same_result(r, cite, r_cite, py_cite_all):
    """The matrix method (dgCMatrix in, list out) with the same seed equals Python too, and a
    different seed gives a different latent space (so the equality tests are not vacuous)."""
    rna, _ = cite
    r(
        f"m <- RunLIBRA(SeuratObject::GetAssayData({r_cite}, assay = 'RNA', slot = 'data'), "
        f"SeuratObject::GetAssayData({r_cite}, assay = 'ADT', slot = 'data'), {R_ARGS}); NULL"
    )
    first, cells, _ = r.matrix("m$embedding")
    assert cells == list(rna.obs_names)
    r(
        f"m2 <- RunLIBRA(SeuratObject::GetAssayData({r_cite}, assay = 'RNA', slot = 'data'), "
        f"SeuratObject::GetAssayData({r_cite}, assay = 'ADT', slot = 'data'), "
        f"{R_ARGS.replace('seed = 11', 'seed = 12')}); NULL"
    )
    other, _, _ = r.matrix("m2$embedding")
    np.testing.assert_allclose(first, py_cite_all.get_latent(rna), atol=ATOL)
    assert np.abs(other - first).max() > 1e-2


def test_batch_key_from_metadata_equals_python_batch_key(r, cite, r_cite, py_cite_all):
    """batch.key names a Seurat metadata column in R and an obs column in Python: every member
    validates on a whole donor, the members taking the two donors in turn, and both languages
    train the same model from the same splits."""
    from sclibra._recipe import split_by_batch

    rna, adt = cite
    py_model = sclibra.LIBRA(**ARCH).fit(rna, adt, batch_key="batch", progress=False, **FIT)
    donors = rna.obs["batch"].astype(str).to_numpy()
    assert len(set(donors)) == 2
    assert py_model.n_models == 3
    split = py_model.fit_params_["validation_split"]
    held = [
        set(donors[split_by_batch(donors, split, py_model._seed_used, member=k)[1]])
        for k in range(py_model.n_models)
    ]
    assert all(len(h) == 1 for h in held)  # a whole donor each
    assert held[0] != held[1]  # in turn: together the members train on every cell
    assert len(py_model.val_cells_) == 0
    assert list(py_model.train_cells_) == list(rna.obs_names)
    # not the model of the random split of the same seed without batch_key
    assert not np.allclose(py_model.predict(rna).X, py_cite_all.predict(rna).X, atol=1e-3)
    r(
        f'seu_b <- RunLIBRA({r_cite}, input.assay = "RNA", output.assay = "ADT", '
        f'batch.key = "batch", {R_ARGS}); NULL'
    )
    _assert_same_model(r, "GetLIBRAModel(seu_b)", py_model)
    assert r.strings('SeuratObject::Tool(seu_b, slot = "RunLIBRA")$libra$fit$batch_key') == [
        "batch"
    ]
    pred, _, _ = r.matrix(
        'SeuratObject::GetAssayData(seu_b, slot = "data", assay = "predicted_ADT")'
    )
    np.testing.assert_allclose(pred, py_model.predict(rna).X.T, atol=ATOL)
