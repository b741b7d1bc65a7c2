"""Tests of the LIBRA core: training, prediction, latent space, persistence, reproducibility."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import FAST, resign_manifest

import sclibra
from sclibra import FeatureMismatchError, NotTrainedError, SclibraError
from sclibra._module import LIBRANet, layer_widths


def _held_out(adata):
    return adata[~adata.obs["is_train"].astype(bool)]


# ------------------------------------------------------------------------------------------------
# architecture
# ------------------------------------------------------------------------------------------------
def test_architecture_halves_widths_and_mirrors():
    assert layer_widths(3, 512) == [512, 256, 128]
    net = LIBRANet(100, 20, n_layers=3, n_nodes=512, alpha=0.3, dropout=0.2, latent_dim=10)
    enc = [m for m in net.encoder.net if isinstance(m, torch.nn.Linear)]
    dec = [m for m in net.decoder.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in enc] == [512, 256, 128, 10]
    assert [m.out_features for m in dec] == [128, 256, 512, 20]
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.3}
    drops = {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)}
    assert drops == {0.2}


def test_sparse_input_layer_matches_dense():
    torch.manual_seed(0)
    net = LIBRANet(50, 7, n_layers=1, n_nodes=16, latent_dim=4).eval()
    x = sp.random(9, 50, density=0.05, format="coo", random_state=0, dtype=np.float32)
    xs = torch.sparse_coo_tensor(np.vstack([x.row, x.col]), x.data, x.shape).coalesce()
    xd = torch.from_numpy(x.toarray())
    dense = net(xd)
    np.testing.assert_allclose(
        net(xs).detach().numpy(), dense.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    # CSR minibatch (what training uses): same output and same weight gradient as dense
    csr = x.tocsr()
    xc = torch.sparse_csr_tensor(
        torch.from_numpy(csr.indptr.astype(np.int64)), torch.from_numpy(csr.indices.astype(np.int64)),
        torch.from_numpy(csr.data), size=csr.shape,
    )  # fmt: skip
    grads = []
    for inp in (xd, xc):
        net.zero_grad()
        out = net(inp)
        out.sum().backward()
        grads.append(net.encoder.net[0].weight.grad.clone())
        np.testing.assert_allclose(
            out.detach().numpy(), dense.detach().numpy(), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_layers=-1), "n_layers"),
        (dict(n_nodes=0), "n_nodes"),
        (dict(dropout=1.0), "dropout"),
        (dict(alpha=2), "alpha"),
        (dict(latent_dim=2.5), "latent_dim"),
        (dict(output_activation="tanh"), "output_activation"),
        (dict(learning_rate=0), "learning_rate"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(SclibraError, match=message):
        sclibra.LIBRA(**kwargs)


def test_device_is_checked_when_the_model_is_made(tmp_path, cite_model, monkeypatch):
    import torch

    with pytest.raises(SclibraError, match="unknown device 'tpu'"):
        sclibra.LIBRA(device="tpu")
    cite_model.save(tmp_path / "m")
    with pytest.raises(SclibraError, match="unknown device 'tpu'"):
        sclibra.LIBRA.load(tmp_path / "m", device="tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SclibraError, match="'cuda' was requested but CUDA is not available"):
        sclibra.LIBRA(device="cuda")
    assert sclibra.LIBRA(device="auto").device == "auto"  # kept as given, resolved on use
    assert sclibra.LIBRA.load(tmp_path / "m", device="cpu").device == "cpu"


# ------------------------------------------------------------------------------------------------
# training on the bundled real data
# ------------------------------------------------------------------------------------------------
def test_training_reduces_validation_loss_and_records_history(cite_model):
    h = cite_model.history
    assert list(h.columns[:4]) == ["epoch", "train_loss", "val_loss", "lr"]
    assert len(h) == cite_model.n_epochs_ <= 30
    assert h["val_loss"].min() < h["val_loss"].iloc[0]
    assert cite_model.best_val_loss_ == pytest.approx(h["val_loss"].min())
    # training used only training-donor cells, 10 % of them for validation
    assert len(cite_model.train_cells_) + len(cite_model.val_cells_) == 311
    assert len(cite_model.val_cells_) == 31
    assert not set(cite_model.train_cells_) & set(cite_model.val_cells_)


def test_prediction_shape_names_and_accuracy(cite, cite_model):
    rna, adt = cite
    test_rna = _held_out(rna)
    pred = cite_model.predict(test_rna)
    assert isinstance(pred, ad.AnnData)
    assert pred.shape == (289, 134)
    assert list(pred.obs_names) == list(test_rna.obs_names)
    assert list(pred.var_names) == list(adt.var_names)
    assert pred.obsm["X_libra"].shape == (289, FAST["latent_dim"])
    assert "cell_type" in pred.obs  # obs carried over
    truth = adt[pred.obs_names].X.toarray()
    mean_pred = adt[cite_model.train_cells_].X.toarray().mean(axis=0)
    rmse = np.sqrt(np.mean((pred.X - truth) ** 2))
    rmse_mean = np.sqrt(np.mean((mean_pred - truth) ** 2))
    assert rmse < rmse_mean


def test_latent_and_tl_helper(cite, cite_model):
    rna, _ = cite
    z = cite_model.get_latent(rna)
    assert z.shape == (600, FAST["latent_dim"])
    assert z.dtype == np.float32
    np.testing.assert_allclose(cite_model.predict(rna).obsm["X_libra"], z, rtol=1e-5, atol=1e-6)
    out = sclibra.tl.libra(rna, cite_model, key_added="X_test", copy=True)
    assert "X_test" in out.obsm
    assert "X_test" not in rna.obsm
    np.testing.assert_array_equal(out.obsm["X_test"], z)


def test_tl_libra_with_a_path_instead_of_a_model_is_named(tmp_path, cite, cite_model):
    # before: AttributeError "'str' object has no attribute 'get_latent'"
    adata = cite[0][:20].copy()
    cite_model.save(tmp_path / "model")
    with pytest.raises(SclibraError, match="needs a sclibra.LIBRA model, got str.*LIBRA.load"):
        sclibra.tl.libra(adata, str(tmp_path / "model"))
    assert "X_libra" not in adata.obsm


def test_tl_libra_never_replaces_an_obsm_it_did_not_write(cite, cite_model):
    adata = cite[0][:30].copy()
    pca = np.arange(60, dtype=np.float32).reshape(30, 2)
    adata.obsm["X_libra"] = pca.copy()
    with pytest.raises(SclibraError, match=r"obsm\['X_libra'\] exists and sclibra did not write"):
        sclibra.tl.libra(adata, cite_model)
    np.testing.assert_array_equal(adata.obsm["X_libra"], pca)  # untouched
    assert "sclibra" not in adata.uns
    # its own result is replaced on a second call (same values: same model, same cells)
    sclibra.tl.libra(adata, cite_model, key_added="X_mine")
    first = adata.obsm["X_mine"].copy()
    sclibra.tl.libra(adata, cite_model, key_added="X_mine")
    np.testing.assert_array_equal(adata.obsm["X_mine"], first)
    with pytest.raises(SclibraError, match="key_added must be a non-empty string, got ''"):
        sclibra.tl.libra(adata, cite_model, key_added="")


def test_tl_libra_refuses_copy_of_backed_data_before_any_work(
    tmp_path, cite, cite_model, monkeypatch
):
    # before: the latent space was computed, then anndata refused to copy a backed object
    path = tmp_path / "rna.h5ad"
    cite[0][:20].copy().write_h5ad(path)
    adata = ad.read_h5ad(path, backed="r")
    monkeypatch.setattr(type(cite_model), "get_latent", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SclibraError, match="copy=True needs in-memory data.*to_memory"):
        sclibra.tl.libra(adata, cite_model, copy=True)
    adata.file.close()


def test_cell_order_follows_input(cite, cite_model):
    rna, _ = cite
    order = rna.obs_names[::-1][:50]
    z_rev = cite_model.get_latent(rna[order])
    z = pd.DataFrame(cite_model.get_latent(rna), index=rna.obs_names)
    np.testing.assert_allclose(z_rev, z.loc[order].to_numpy(), rtol=1e-5, atol=1e-6)


def test_signed_target_gets_linear_output_and_relu_is_refused(cite):
    rna, adt = cite
    signed = adt.copy()
    signed.X = signed.X.toarray() - 1.0
    m = sclibra.LIBRA(**FAST).fit(rna, signed, max_epochs=3)
    assert m.output_activation_ == "linear"
    assert (m.predict(rna).X < 0).any()
    with pytest.raises(SclibraError, match="negative values"):
        sclibra.LIBRA(**{**FAST, "output_activation": "relu"}).fit(rna, signed, max_epochs=2)
    m = sclibra.LIBRA(**FAST).fit(rna, adt, max_epochs=2)
    assert m.output_activation_ == "relu"


def test_seed_reproduces_exactly(cite):
    rna, adt = cite
    runs = [
        sclibra.LIBRA(**{**FAST, "seed": 7})
        .fit(rna, adt, train="is_train", max_epochs=5)
        .predict(rna)
        .X
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = sclibra.LIBRA(**{**FAST, "seed": 8}).fit(rna, adt, train="is_train", max_epochs=5)
    assert not np.array_equal(other.predict(rna).X, runs[0])


def test_global_seed_setting_is_used(cite):
    rna, adt = cite
    sclibra.settings.seed = 3
    params = {k: v for k, v in FAST.items() if k != "seed"}
    a = sclibra.LIBRA(**params).fit(rna, adt, max_epochs=2).get_latent(rna)
    b = sclibra.LIBRA(**params).fit(rna, adt, max_epochs=2).get_latent(rna)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_global_seed_is_refused_when_set(seed):
    # before: accepted, then a fit failed inside numpy ("expected non-negative integer",
    # "SeedSequence expects int", "invalid literal for int()")
    with pytest.raises(SclibraError, match=f"seed must be an integer >= 0 or None, got {seed!r}"):
        sclibra.settings.seed = seed
    sclibra.settings.seed = np.int64(4)
    assert sclibra.settings.seed == 4
    assert type(sclibra.settings.seed) is int
    sclibra.settings.seed = None
    assert sclibra.settings.seed is None


def test_unknown_verbosity_is_named():
    before = sclibra.settings.verbosity
    with pytest.raises(SclibraError, match="verbosity must be a logging level.*'loud'"):
        sclibra.settings.verbosity = "loud"
    assert sclibra.settings.verbosity == before


def test_sparse_numpy_and_dense_inputs_agree(cite):
    rna, adt = cite
    kw = dict(max_epochs=3, validation_split=0.1)
    m_ad = sclibra.LIBRA(**FAST).fit(rna, adt, **kw)
    m_np = sclibra.LIBRA(**FAST).fit(rna.X.toarray(), adt.X.toarray(), **kw)
    np.testing.assert_allclose(
        m_ad.predict(rna).X, m_np.predict(rna.X.toarray()).X, rtol=1e-4, atol=1e-5
    )


def test_very_sparse_input_uses_sparse_path(multiome):
    from sclibra._train import use_sparse_path

    rna, atac = multiome
    m = sclibra.LIBRA(**FAST).fit(atac, rna, train="is_train", max_epochs=3)
    assert m.n_epochs_ == 3
    assert m.predict(atac).shape == (500, 600)
    assert (
        use_sparse_path(sclibra._data.as_matrix(atac), torch.device("cpu")) is False
    )  # 14 % dense
    tiny = sp.random(200, 3000, density=0.01, format="csr", random_state=1, dtype=np.float32)
    assert use_sparse_path(sclibra._data.as_matrix(tiny), torch.device("cpu"))
    target = np.abs(np.random.default_rng(0).normal(size=(200, 5))).astype(np.float32)
    m = sclibra.LIBRA(**FAST).fit(tiny, target, max_epochs=2)
    assert m.get_latent(tiny).shape == (200, FAST["latent_dim"])


def test_mudata_input(multiome):
    md = pytest.importorskip("mudata")
    rna, atac = multiome
    mdata = md.MuData({"rna": rna, "atac": atac})
    m = sclibra.LIBRA(**FAST).fit(mdata, mod_a="atac", mod_b="rna", train="is_train", max_epochs=2)
    assert m.names_ == ("atac", "rna")
    assert m.predict(mdata, mod="atac").shape == (500, 600)
    with pytest.raises(SclibraError, match="modality 'protein' not in the MuData"):
        sclibra.LIBRA(**FAST).fit(mdata, mod_a="protein", mod_b="rna")


def test_layer_and_obsm_inputs(cite):
    rna, adt = cite
    rna = rna.copy()
    rna.obsm["X_pca"] = np.asarray(rna.X[:, :20].toarray())
    m = sclibra.LIBRA(**FAST).fit(rna, adt, obsm_a="X_pca", max_epochs=2)
    assert len(m.features_a) == 20
    assert m.predict(rna, obsm="X_pca").shape == (600, 134)
    m = sclibra.LIBRA(**FAST).fit(rna, adt, layer_a="counts", max_epochs=2, allow_counts=True)
    assert m.predict(rna, layer="counts").n_obs == 600
    with pytest.raises(SclibraError, match="layer 'nope' not found"):
        sclibra.LIBRA(**FAST).fit(rna, adt, layer_a="nope")


def test_highly_variable_selection(cite):
    rna, adt = cite
    m = sclibra.LIBRA(**FAST).fit(rna, adt, n_top_genes=200, max_epochs=2)
    assert len(m.features_a) == 200
    assert set(m.features_a) <= set(rna.var_names)
    assert m.predict(rna).shape == (600, 134)


def test_highly_variable_of_a_backed_anndata_asks_for_in_memory_data(tmp_path, cite):
    # before: scanpy's AttributeError "'_CSRDataset' object has no attribute 'copy'"
    rna, _ = cite
    rna.write_h5ad(tmp_path / "rna.h5ad")
    backed = ad.read_h5ad(tmp_path / "rna.h5ad", backed="r")
    for copy in (False, True):
        with pytest.raises(SclibraError, match="needs in-memory data.*to_memory"):
            sclibra.pp.highly_variable(backed, 100, copy=copy)
    assert "highly_variable" not in backed.var


def test_pairing_by_name_uses_intersection(cite):
    rna, adt = cite
    shuffled = adt[adt.obs_names[::-1][:400]]
    m = sclibra.LIBRA(**FAST).fit(rna, shuffled, max_epochs=2, validation_split=0.1)
    assert len(m.train_cells_) + len(m.val_cells_) == 400


def test_backed_h5ad_trains_like_in_memory(tmp_path, cite):
    rna, adt = cite
    path = tmp_path / "rna_csr.h5ad"
    on_disk = rna.copy()
    on_disk.X = sp.csr_matrix(on_disk.X)
    on_disk.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    m_backed = sclibra.LIBRA(**FAST).fit(backed, adt, max_epochs=3)
    m_mem = sclibra.LIBRA(**FAST).fit(rna, adt, max_epochs=3)
    np.testing.assert_allclose(
        m_backed.predict(backed).X, m_mem.predict(rna).X, rtol=1e-4, atol=1e-5
    )
    backed.file.close()


def test_callback_can_stop_training(cite):
    rna, adt = cite
    seen = []

    def cb(model, epoch, train_loss, val_loss):
        seen.append((epoch, train_loss, val_loss))
        return epoch >= 4

    m = sclibra.LIBRA(**FAST).fit(rna, adt, max_epochs=50, callback=cb)
    assert m.n_epochs_ == 4
    assert m.stopped_by_ == "callback"
    assert [s[0] for s in seen] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------
# bad input: clear errors before training
# ------------------------------------------------------------------------------------------------
def _ad(X, cells, feats):
    return ad.AnnData(X=X, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=feats))


def test_no_shared_cells_is_an_error_naming_both(cite):
    rna, adt = cite
    other = adt.copy()
    other.obs_names = [f"x{i}" for i in range(adt.n_obs)]
    with pytest.raises(SclibraError, match="cells in RNA and ADT do not overlap"):
        sclibra.LIBRA(**FAST).fit(rna, other)


def test_duplicated_cell_names(cite):
    rna, adt = cite
    dup = rna.copy()
    dup.obs_names = ["c1"] * 2 + list(rna.obs_names[2:])
    with pytest.raises(SclibraError, match="1 duplicated cell names"):
        sclibra.LIBRA(**FAST).fit(dup, adt)


def test_nan_and_inf_are_reported_with_counts():
    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(40)]
    x = rng.random((40, 10)).astype(np.float32)
    y = rng.random((40, 3)).astype(np.float32)
    bad = x.copy()
    bad[3, [1, 4]] = np.nan
    with pytest.raises(SclibraError, match="2 features contain NaN"):
        sclibra.LIBRA(**FAST).fit(
            _ad(bad, cells, [f"g{i}" for i in range(10)]), _ad(y, cells, ["p0", "p1", "p2"])
        )
    bad = sp.csr_matrix(x)
    bad.data[0] = np.inf
    with pytest.raises(SclibraError, match="1 features contain infinite values"):
        sclibra.LIBRA(**FAST).fit(bad, y)


def test_empty_constant_and_mismatched_inputs():
    rng = np.random.default_rng(0)
    y = rng.random((20, 3))
    with pytest.raises(SclibraError, match="no features"):
        sclibra.LIBRA(**FAST).fit(np.zeros((20, 0)), y)
    with pytest.raises(SclibraError, match="no cells"):
        sclibra.LIBRA(**FAST).fit(np.zeros((0, 5)), np.zeros((0, 3)))
    with pytest.raises(SclibraError, match="all 5 features are constant"):
        sclibra.LIBRA(**FAST).fit(np.ones((20, 5)), y)
    with pytest.raises(SclibraError, match="has 20 cells but .* has 19"):
        sclibra.LIBRA(**FAST).fit(rng.random((20, 5)), y[:19])
    with pytest.raises(SclibraError, match="numeric"):
        sclibra.LIBRA(**FAST).fit(np.array([["a", "b"], ["c", "d"]]), y[:2])
    with pytest.raises(SclibraError, match="train='missing_col'"):
        sclibra.LIBRA(**FAST).fit(
            _ad(rng.random((20, 5)), [f"c{i}" for i in range(20)], list("abcde")),
            y,
            train="missing_col",
        )


def test_boolean_numpy_input_is_read_like_sparse_and_anndata_booleans():
    # binarised peaks as a dense boolean array (e.g. atac > 0): read as 0/1 like a sparse
    # boolean matrix or an AnnData of booleans, not refused as "not numeric"
    rng = np.random.default_rng(0)
    x = rng.random((40, 10)).astype(np.float32)
    peaks = rng.random((40, 12)) > 0.7
    dense = sclibra.LIBRA(**FAST).fit(x, peaks, max_epochs=2)
    as_sparse = sclibra.LIBRA(**FAST).fit(x, sp.csr_matrix(peaks), max_epochs=2)
    assert dense.loss_ == "bce"
    np.testing.assert_array_equal(dense.predict(x).X, as_sparse.predict(x).X)
    model = sclibra.LIBRA(**FAST).fit(peaks, x, max_epochs=2)
    np.testing.assert_array_equal(model.predict(peaks).X, model.predict(peaks.astype(np.float32)).X)


def test_dataframe_with_a_text_column_is_named():
    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(20)]
    x = pd.DataFrame(rng.random((20, 3)), index=cells, columns=["g0", "g1", "g2"])
    x["cell_type"] = "B"
    y = pd.DataFrame(rng.random((20, 2)), index=cells)
    with pytest.raises(
        SclibraError, match="1 columns of the DataFrame are not numbers: 'cell_type'"
    ):
        sclibra.LIBRA(**FAST).fit(x, y)


def test_predict_requires_training_features(cite, cite_model):
    rna, _ = cite
    fewer = rna[:, rna.var_names[5:]]
    with pytest.raises(FeatureMismatchError, match="5 of the 1000 features") as info:
        cite_model.predict(fewer)
    assert info.value.missing == list(rna.var_names[:5])
    assert "pass fill_missing=True" in str(info.value)
    # where there is no fill_missing option, the error does not suggest one
    _, adt = cite
    with pytest.raises(FeatureMismatchError, match="5 of the 1000 features") as info:
        cite_model.fit_b_encoder(fewer, adt, max_epochs=1)
    assert "fill_missing" not in str(info.value)
    assert "every feature the model was trained on" in str(info.value)
    with pytest.warns(UserWarning, match="filled with zeros"):
        pred = cite_model.predict(fewer, fill_missing=True)
    assert pred.shape == (600, 134)
    # reordered features are matched by name, not position
    shuffled = rna[:, rna.var_names[::-1]]
    np.testing.assert_allclose(
        cite_model.predict(shuffled).X, cite_model.predict(rna).X, rtol=1e-5, atol=1e-6
    )


def test_nan_input_at_predict_time_names_the_cells(cite, cite_model):
    rna, _ = cite
    bad = rna[:10].copy()
    bad.X = bad.X.toarray()
    bad.X[2, 0] = np.nan
    with pytest.raises(SclibraError, match="1 cells give non-finite output"):
        cite_model.predict(bad)
    with pytest.raises(SclibraError, match=bad.obs_names[2]):
        cite_model.get_latent(bad)


def test_predict_in_one_minibatch_or_many_gives_the_same_arrays(cite, cite_model):
    rna, _ = cite
    one = cite_model.predict(rna)  # 600 cells: one minibatch, the decoder's own array
    many = cite_model.predict(rna, batch_size=64)  # written block by block
    np.testing.assert_array_equal(one.X, many.X)
    np.testing.assert_array_equal(one.obsm["X_libra"], many.obsm["X_libra"])
    assert one.X.flags.writeable
    assert one.X.flags.c_contiguous
    assert one.X.dtype == np.float32
    assert (one.X >= 0).all()  # the ReLU output, applied in place


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "64", True])
def test_bad_batch_size_of_predict_and_latent_is_named(cite, cite_model, batch_size):
    # before: an empty prediction's anndata/reshape error, or "'float' object cannot be
    # interpreted as an integer" from inside the minibatch loop (0 silently meant 1024)
    rna, _ = cite
    for apply in (cite_model.predict, cite_model.get_latent):
        with pytest.raises(
            SclibraError, match=f"batch_size must be an integer >= 1.*{batch_size!r}"
        ):
            apply(rna[:10], batch_size=batch_size)


def test_finite_output_check_flags_the_rows_with_a_non_finite_value():
    from sclibra._data import as_matrix
    from sclibra._model import _check_finite_output

    out = np.ones((4, 3), dtype=np.float32)
    out[1, 1] = 3e38  # finite values whose row sum overflows float32 are not flagged
    out[1, 2] = 3e38
    m = as_matrix(out, name="B")
    _check_finite_output(out, m)
    out[2, 0], out[3, 2] = np.nan, -np.inf
    with pytest.raises(SclibraError, match=r"2 cells give non-finite output.*'2', '3'"):
        _check_finite_output(out, as_matrix(out, name="B"))


def test_untrained_model_errors(cite):
    rna, _ = cite
    m = sclibra.LIBRA()
    with pytest.raises(NotTrainedError):
        m.predict(rna)
    with pytest.raises(NotTrainedError):
        m.save("/tmp/never")
    assert "not trained" in repr(m)


# ------------------------------------------------------------------------------------------------
# persistence
# ------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, cite, cite_model):
    rna, _ = cite
    path = cite_model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == [
        "cells.json",
        "config.json",
        "features.json",
        "history.csv",
        "manifest.json",
        "weights.pt",
    ]
    loaded = sclibra.LIBRA.load(path)
    np.testing.assert_array_equal(loaded.predict(rna).X, cite_model.predict(rna).X)
    assert list(loaded.features_a) == list(cite_model.features_a)
    assert list(loaded.features_b) == list(cite_model.features_b)
    assert loaded.config == cite_model.config
    pd.testing.assert_frame_equal(loaded.history, cite_model.history, check_dtype=False)
    assert list(loaded.train_cells_) == list(cite_model.train_cells_)
    # no leftovers from the atomic write
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_refuses_to_overwrite(tmp_path, cite_model):
    target = tmp_path / "model"
    target.mkdir()
    (target / "user_file.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cite_model.save(target)
    assert (target / "user_file.txt").read_text() == "keep me"
    # overwrite=True never deletes what sclibra did not write: the folder is not a model
    with pytest.raises(SclibraError, match="not a sclibra model.*user_file.txt"):
        cite_model.save(target, overwrite=True)
    assert (target / "user_file.txt").read_text() == "keep me"
    (target / "user_file.txt").unlink()
    cite_model.save(target, overwrite=True)  # an empty folder may be replaced
    cite_model.save(target, overwrite=True)  # a model replaces a model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_load_validates(tmp_path, cite, cite_model):
    rna, _ = cite
    path = cite_model.save(tmp_path / "m")
    with pytest.raises(FeatureMismatchError):
        sclibra.LIBRA.load(path, adata=rna[:, 10:])
    assert sclibra.LIBRA.load(path, adata=rna).is_trained
    with pytest.raises(SclibraError, match="not a directory"):
        sclibra.LIBRA.load(tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(SclibraError, match="missing config.json"):
        sclibra.LIBRA.load(broken)
    # features that do not match the weights
    feats = json.loads((path / "features.json").read_text())
    feats["a"] = feats["a"][:-1]
    (path / "features.json").write_text(json.dumps(feats))
    with pytest.raises(SclibraError, match="features.json: does not match manifest.json"):
        sclibra.LIBRA.load(path)
    resign_manifest(path)
    with pytest.raises(SclibraError, match="feature counts differ"):
        sclibra.LIBRA.load(path)


def test_load_never_unpickles_code(tmp_path, cite_model):
    path = cite_model.save(tmp_path / "m")

    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('/tmp/sclibra_pwned').touch()",))

    torch.save({"x": Evil()}, path / "weights.pt")
    resign_manifest(path)
    with pytest.raises(SclibraError, match="cannot read the weights safely"):
        sclibra.LIBRA.load(path)
    import os

    assert not os.path.exists("/tmp/sclibra_pwned")


# ------------------------------------------------------------------------------------------------
# second network (B -> latent)
# ------------------------------------------------------------------------------------------------
def test_b_encoder_places_b_only_cells(tmp_path, cite, cite_model):
    rna, adt = cite
    model = sclibra.LIBRA.load(cite_model.save(tmp_path / "m"))
    with pytest.raises(NotTrainedError, match="fit_b_encoder"):
        model.get_latent_from_b(adt)
    model.fit_b_encoder(rna, adt, max_epochs=20)
    zb = model.get_latent_from_b(_held_out(adt))
    za = model.get_latent(_held_out(rna))
    assert zb.shape == za.shape
    # B-only placement is closer to the cell's own A latent than to a random other cell's
    own = np.linalg.norm(zb - za, axis=1).mean()
    other = np.linalg.norm(zb - za[np.random.default_rng(0).permutation(len(za))], axis=1).mean()
    assert own < other
    again = sclibra.LIBRA.load(model.save(tmp_path / "m2"))
    np.testing.assert_array_equal(again.get_latent_from_b(adt), model.get_latent_from_b(adt))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_factor": 1.0}, "lr_factor must be in \\(0.0, 1.0\\)"),
        ({"lr_factor": 0}, "lr_factor must be in \\(0.0, 1.0\\)"),
        ({"min_lr": -1}, "min_lr must be in"),
        ({"max_epochs": 0}, "max_epochs must be an integer >= 1"),
        ({"early_stopping_patience": -1}, "early_stopping_patience must be an integer >= 0"),
        ({"validation_split": 1.0}, "validation_split must be in"),
    ],
)
def test_schedule_bounds_are_checked_before_the_data_is_read(kwargs, message):
    # the data are not even read: a bad schedule is refused first
    with pytest.raises(sclibra.SclibraError, match=message):
        sclibra.LIBRA().fit(object(), object(), **kwargs)
    with pytest.raises(sclibra.SclibraError, match=message):
        sclibra.LIBRA()._schedule(**kwargs)
