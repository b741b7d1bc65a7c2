"""A model saved from Python loads in R and predicts identically, and the reverse; a model
kept inside a Seurat object survives saveRDS() / readRDS()."""

from __future__ import annotations

import json

import numpy as np
from conftest import R_ARGS

import sclibra

ATOL = 1e-6


def _r_prediction(r, result: str):
    """Embedding (cells x k) and prediction (features x cells) of an R LIBRAResult."""
    emb, emb_cells, _ = r.matrix(f"{result}$embedding")
    pred, features, cells = r.matrix(f"{result}$prediction")
    assert emb_cells == cells
    return emb, pred, features, cells


def test_python_model_loads_in_r_and_predicts_identically(r, cite, r_cite, cite_model, tmp_path):
    rna, adt = cite
    path = tmp_path / "py_model"
    cite_model.save(path)
    held = ~rna.obs["is_train"].to_numpy()
    r(f'm_py <- LoadLIBRA("{path}"); NULL')
    assert r.strings("m_py$features.input") == list(cite_model.features_a)
    assert r.strings("m_py$features.output") == list(cite_model.features_b)
    assert r.strings("m_py$train.cells") == list(cite_model.train_cells_)
    assert int(r.scalar("m_py$config$latent_dim")) == cite_model.latent_dim

    # predict the held-out donor from R (matrix method), with the features in another order
    r(
        f'x <- SeuratObject::GetAssayData({r_cite}, assay = "RNA", slot = "data")\n'
        f"x <- x[rev(rownames(x)), !{r_cite}$is_train]\n"
        "res <- LIBRAPredict(x, model = m_py, verbose = FALSE); NULL"
    )
    emb, pred, features, cells = _r_prediction(r, "res")
    expected = cite_model.predict(rna[held])
    assert cells == list(rna.obs_names[held])
    assert features == list(adt.var_names)
    np.testing.assert_allclose(pred, expected.X.T, atol=ATOL)
    np.testing.assert_allclose(emb, cite_model.get_latent(rna[held]), atol=ATOL)


def test_r_model_loads_in_python_and_predicts_identically(r, cite, r_cite, tmp_path):
    rna, adt = cite
    path = tmp_path / "r_model"
    r(
        f'seu_tr <- RunLIBRA({r_cite}, input.assay = "RNA", output.assay = "ADT", '
        f'train.cells = "is_train", {R_ARGS})\n'
        f'SaveLIBRA(seu_tr, "{path}"); NULL'
    )
    assert json.loads((path / "config.json").read_text())["format"] == "sclibra.LIBRA"
    model = sclibra.LIBRA.load(path)
    assert list(model.features_a) == r.strings("GetLIBRAModel(seu_tr)$features.input")
    assert list(model.train_cells_) == r.strings("GetLIBRAModel(seu_tr)$train.cells")
    assert set(model.train_cells_) | set(model.val_cells_) == set(
        rna.obs_names[rna.obs["is_train"].to_numpy()]
    )

    pred, features, cells = r.matrix(
        'SeuratObject::GetAssayData(seu_tr, assay = "predicted_ADT", slot = "data")'
    )
    emb, emb_cells, _ = r.matrix('SeuratObject::Embeddings(seu_tr, reduction = "libra")')
    expected = model.predict(rna)
    assert cells == emb_cells == list(rna.obs_names)
    assert features == list(adt.var_names)
    np.testing.assert_allclose(pred, expected.X.T, atol=ATOL)
    np.testing.assert_allclose(emb, model.get_latent(rna), atol=ATOL)

    # and back: the same files loaded in R predict what Python predicts
    r(
        f'res <- LIBRAPredict(SeuratObject::GetAssayData({r_cite}, assay = "RNA", slot = "data"), '
        f'model = LoadLIBRA("{path}"), verbose = FALSE); NULL'
    )
    _, pred2, _, _ = _r_prediction(r, "res")
    np.testing.assert_allclose(pred2, expected.X.T, atol=ATOL)


def test_model_survives_saverds_in_a_seurat_object(r, cite, r_cite, tmp_path):
    """The weights travel inside the R object: after readRDS() (no live Python object), the
    restored model predicts what the Python model it came from predicts."""
    rna, _ = cite
    rds, live_dir = tmp_path / "seu.rds", tmp_path / "live"
    r(
        f'seu_rds <- RunLIBRA({r_cite}, input.assay = "RNA", output.assay = "ADT", {R_ARGS})\n'
        f'saveRDS(seu_rds, "{rds}")\n'
        f'SaveLIBRA(seu_rds, "{live_dir}")\n'
        f'seu_back <- readRDS("{rds}")\n'
        'seu_back <- LIBRAPredict(seu_back, new.assay.name = "again", verbose = FALSE); NULL'
    )
    assert not r.scalar(
        'is.null(SeuratObject::Misc(seu_back[["libra"]], slot = "model")$serialized)'
    )
    live = sclibra.LIBRA.load(live_dir)
    again, features, cells = r.matrix(
        'SeuratObject::GetAssayData(seu_back, assay = "again", slot = "data")'
    )
    assert cells == list(rna.obs_names)
    assert features == list(live.features_b)
    np.testing.assert_allclose(again, live.predict(rna).X.T, atol=ATOL)
