"""Tests of sclibra.metrics: baselines, standard scores, PPJI, consistency, evaluate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sclibra import LIBRA, SclibraError
from sclibra import metrics as M


@pytest.fixture
def linear_data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5))
    a = z @ rng.normal(size=(5, 30)) + 0.1 * rng.normal(size=(200, 30))
    b = z @ rng.normal(size=(5, 20)) + 0.1 * rng.normal(size=(200, 20))
    return a, b


# ------------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------------
def test_baselines_match_scikit_learn(linear_data):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor

    a, b = linear_data
    preds = M.baseline_predictions(a[:150], b[:150], a[150:], n_pcs=10, n_neighbors=7, alpha=2.0)
    assert set(preds) == {"mean", "knn", "ridge"}
    for p in preds.values():
        assert p.shape == (50, 20)
        assert p.dtype == np.float32
    pca = PCA(10, svd_solver="full").fit(a[:150])
    z_train, z_test = pca.transform(a[:150]), pca.transform(a[150:])
    ridge = Ridge(alpha=2.0).fit(z_train, b[:150]).predict(z_test)
    knn = KNeighborsRegressor(7).fit(z_train, b[:150]).predict(z_test)
    np.testing.assert_allclose(preds["ridge"], ridge, atol=1e-4)
    np.testing.assert_allclose(preds["knn"], knn, atol=1e-4)
    np.testing.assert_allclose(preds["mean"], np.tile(b[:150].mean(0), (50, 1)), atol=1e-5)
    # the linear signal is learnable: ridge beats the mean
    assert M.rmse(preds["ridge"], b[150:]) < 0.5 * M.rmse(preds["mean"], b[150:])


def test_baselines_sparse_input_equals_dense():
    a = sp.random(120, 40, density=0.2, format="csr", random_state=1)
    b = sp.random(120, 15, density=0.3, format="csr", random_state=2)
    sparse = M.baseline_predictions(a[:90], b[:90], a[90:], n_pcs=8)
    dense = M.baseline_predictions(a[:90].toarray(), b[:90].toarray(), a[90:].toarray(), n_pcs=8)
    for method in ("mean", "knn", "ridge"):
        np.testing.assert_allclose(sparse[method], dense[method], atol=1e-4)
    # the inputs were not densified in place
    assert sp.issparse(a)
    assert sp.issparse(b)


def test_baselines_subset_and_errors(linear_data):
    a, b = linear_data
    only = M.baseline_predictions(a[:100], b[:100], a[100:], methods=("mean",))
    assert list(only) == ["mean"]
    with pytest.raises(SclibraError, match="unknown baseline"):
        M.baseline_predictions(a[:100], b[:100], a[100:], methods=("lasso",))
    with pytest.raises(SclibraError, match="same cells"):
        M.baseline_predictions(a[:100], b[:90], a[100:])
    with pytest.raises(SclibraError, match="features but a_train"):
        M.baseline_predictions(a[:100], b[:100], a[100:, :10])
    bad = b[:100].copy()
    bad[3, 4] = np.nan
    with pytest.raises(SclibraError, match="1 features contain NaN"):
        M.baseline_predictions(a[:100], bad, a[100:])


# ------------------------------------------------------------------------------------------------
# standard scores
# ------------------------------------------------------------------------------------------------
def test_scores_agree_with_scikit_learn_and_scipy(linear_data):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_squared_error

    a, truth = linear_data
    rng = np.random.default_rng(1)
    pred = truth + rng.normal(size=truth.shape)
    assert M.mse(pred, truth) == pytest.approx(mean_squared_error(truth, pred))
    assert M.rmse(pred, truth) == pytest.approx(np.sqrt(mean_squared_error(truth, pred)))
    np.testing.assert_allclose(
        M.mse_per_feature(pred, truth), mean_squared_error(truth, pred, multioutput="raw_values")
    )
    np.testing.assert_allclose(M.mse_per_cell(pred, truth), ((pred - truth) ** 2).mean(axis=1))
    pf = M.pearson_per_feature(pred, truth)
    sf = M.spearman_per_feature(pred, truth)
    pc = M.pearson_per_cell(pred, truth)
    sc_ = M.spearman_per_cell(pred, truth)
    for j in (0, 7, 19):
        assert pf[j] == pytest.approx(pearsonr(pred[:, j], truth[:, j])[0])
        assert sf[j] == pytest.approx(spearmanr(pred[:, j], truth[:, j])[0])
    for i in (0, 50, 199):
        assert pc[i] == pytest.approx(pearsonr(pred[i], truth[i])[0])
        assert sc_[i] == pytest.approx(spearmanr(pred[i], truth[i])[0])
    s = M.prediction_scores(pred, truth)
    assert s["rmse"] == pytest.approx(M.rmse(pred, truth))
    assert s["pearson_feature_mean"] == pytest.approx(pf.mean())
    assert s["n_cells"] == 200
    assert s["n_features"] == 20


def test_scores_sparse_truth_and_constant_feature():
    truth = sp.random(60, 12, density=0.3, format="csr", random_state=3)
    truth = sp.csr_matrix(truth.toarray() * (np.arange(12) != 5))  # feature 5 all zero
    pred = np.random.default_rng(0).normal(size=(60, 12)).astype(np.float32)
    dense = truth.toarray()
    assert M.rmse(pred, truth) == pytest.approx(M.rmse(pred, dense))
    pf = M.pearson_per_feature(pred, truth)
    assert np.isnan(pf[5])
    assert np.isfinite(np.delete(pf, 5)).all()
    np.testing.assert_allclose(
        M.spearman_per_feature(pred, truth), M.spearman_per_feature(pred, dense)
    )
    s = M.prediction_scores(pred, truth)
    assert s["n_constant_features"] == 1
    assert np.isfinite(s["pearson_feature_mean"])


def test_scores_shape_mismatch_is_an_error():
    with pytest.raises(SclibraError, match="shape 5 x 3"):
        M.rmse(np.zeros((5, 3)), np.zeros((5, 4)))


def test_scores_of_named_inputs_in_another_order_are_an_error():
    # before: two AnnData of the same shape were scored by position, cell against the wrong
    # cell, when the measured data came in another order (e.g. read from its own file)
    import anndata as ad

    rng = np.random.default_rng(0)
    truth = rng.random((20, 4)).astype(np.float32)
    cells, feats = [f"c{i}" for i in range(20)], ["f0", "f1", "f2", "f3"]
    t = ad.AnnData(truth, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=feats))
    pred = t.copy()
    assert M.rmse(pred, t) == 0.0
    with pytest.raises(SclibraError, match="cell names are in another order"):
        M.rmse(pred, t[::-1].copy())
    with pytest.raises(SclibraError, match="feature names are in another order"):
        M.pearson_per_feature(pred, t[:, ::-1].copy())
    other = t.copy()
    other.obs_names = [f"x{i}" for i in range(20)]
    with pytest.raises(SclibraError, match="cell names are not the same: 'c0'"):
        M.prediction_scores(pred, other)
    frame = pd.DataFrame(truth[::-1], index=cells[::-1], columns=feats)
    with pytest.raises(SclibraError, match="cell names are in another order"):
        M.mse(pred, frame)
    # arrays and unnamed DataFrames are still matched by position
    assert M.rmse(pred, truth) == 0.0
    assert M.rmse(pred, pd.DataFrame(truth)) == 0.0


def test_clustering_scores_match_scikit_learn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    rng = np.random.default_rng(0)
    labels = rng.choice(["B", "T", "NK"], size=90)
    clusters = np.where(rng.random(90) < 0.8, labels, "x")
    s = M.clustering_scores(clusters, labels)
    assert s["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    names = [f"c{i}" for i in range(90)]
    shuffled = pd.Series(clusters, index=names).sample(frac=1, random_state=0)
    assert M.clustering_scores(shuffled, pd.Series(labels, index=names))["ari"] == pytest.approx(
        s["ari"]
    )
    latent = rng.normal(size=(90, 4)) + (labels[:, None] == "B") * 3
    assert M.silhouette(latent, labels) == pytest.approx(silhouette_score(latent, labels))


# ------------------------------------------------------------------------------------------------
# PPJI
# ------------------------------------------------------------------------------------------------
CELLS = [f"cell{i}" for i in range(5)]


def test_ppji_hand_worked_example():
    # reference A = {0, 1, 2}, B = {3, 4}; query x = {0, 1}, y = {2, 3, 4}
    ref = pd.Series(list("AAABB"), index=CELLS)
    qry = pd.Series(list("xxyyy"), index=CELLS)
    jac = M.jaccard_matrix(ref, qry)
    expected = pd.DataFrame([[2 / 3, 1 / 5], [0.0, 2 / 3]], index=["A", "B"], columns=["x", "y"])
    np.testing.assert_allclose(jac.to_numpy(), expected.to_numpy())
    assert list(jac.index) == ["A", "B"]
    assert list(jac.columns) == ["x", "y"]
    # row sums 13/15 and 10/15 -> mean 23/30
    assert M.ppji(ref, qry) == pytest.approx(23 / 30)
    value, mat = M.ppji(ref, qry, return_matrix=True)
    assert value == pytest.approx(23 / 30)
    assert mat.equals(jac)


def test_ppji_identical_partitions_and_renaming():
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(300)]
    labels = pd.Series(rng.choice(["T", "B", "NK", "Mono"], size=300), index=names)
    renamed = labels.map({"T": "3", "B": "0", "NK": "1", "Mono": "2"})
    assert M.ppji(labels, labels) == pytest.approx(1.0)
    assert M.ppji(labels, renamed) == pytest.approx(1.0)
    # a noisy query: renaming either side or shuffling the cell order changes nothing
    noisy = labels.where(rng.random(300) < 0.7, "x")
    base = M.ppji(labels, noisy)
    assert 0 < base < 1
    assert M.ppji(renamed, noisy) == pytest.approx(base)
    assert M.ppji(labels, noisy.map(lambda v: f"cluster_{v}")) == pytest.approx(base)
    assert M.ppji(labels.sample(frac=1, random_state=1), noisy) == pytest.approx(base)
    # plain arrays are matched by position
    assert M.ppji(labels.to_numpy(), noisy.to_numpy()) == pytest.approx(base)


def test_ppji_zero_columns_dropped_and_refinement():
    jac = pd.DataFrame([[0.5, 0.0, 0.25], [0.0, 0.0, 1.0]], columns=["a", "empty", "b"])
    assert M.ppji_from_matrix(jac) == pytest.approx((0.75 + 1.0) / 2)
    assert M.ppji_from_matrix(jac.drop(columns="empty")) == pytest.approx(M.ppji_from_matrix(jac))
    # as in the original, a query that only splits reference clusters also scores 1
    ref = pd.Series(list("AAAABB"), index=[f"c{i}" for i in range(6)])
    split = pd.Series(list("xxyyzz"), index=ref.index)
    assert M.ppji(ref, split) == pytest.approx(1.0)
    # merging two reference clusters does not
    merged = pd.Series(["m"] * 6, index=ref.index)
    assert M.ppji(ref, merged) == pytest.approx((4 / 6 + 2 / 6) / 2)


def test_ppji_cell_subset_and_natural_order():
    names = [f"c{i}" for i in range(12)]
    ref = pd.Series([str(i % 11) for i in range(12)], index=names)
    jac = M.jaccard_matrix(ref, ref)
    assert list(jac.index[:3]) == ["0", "1", "2"]
    assert jac.index[-1] == "10"
    sub = M.jaccard_matrix(ref, ref, cells=names[:3])
    assert sub.shape == (3, 3)


def test_ppji_errors_on_mismatched_cells():
    ref = pd.Series(list("AAB"), index=["a", "b", "c"])
    with pytest.raises(SclibraError, match="1 cells of reference are not in query"):
        M.ppji(ref, pd.Series(list("xxy"), index=["a", "b", "z"]))
    with pytest.raises(SclibraError, match="cells of query are not in reference"):
        M.ppji(ref, pd.Series(list("xxyy"), index=["a", "b", "c", "d"]))
    with pytest.raises(SclibraError, match="same length"):
        M.ppji(list("AAB"), list("xy"))
    with pytest.raises(SclibraError, match="no cell names and 2 entries"):
        M.ppji(ref, list("xy"))
    assert M.ppji(ref, list("xxy")) == pytest.approx(
        M.ppji(ref, pd.Series(list("xxy"), index=ref.index))
    )
    with pytest.raises(SclibraError, match="no label"):
        M.ppji(ref, pd.Series(["x", None, "y"], index=ref.index))
    with pytest.raises(SclibraError, match="not in query"):
        M.ppji(ref, ref.iloc[:2].rename(lambda n: n), cells=["a", "c"])


def _blobs(n_per=60, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0], [8, 0, 0, 0], [0, 8, 0, 0]], dtype=float)
    x = np.vstack([c + rng.normal(size=(n_per, 4)) for c in centers])
    truth = np.repeat(["a", "b", "c"], n_per)
    return x, truth


def test_cluster_latent_is_seeded_and_recovers_blobs():
    x, truth = _blobs()
    names = [f"cell{i}" for i in range(len(x))]
    c1 = M.cluster_latent(x, cells=names, seed=0)
    c2 = M.cluster_latent(x, cells=names, seed=0)
    assert c1.equals(c2)
    assert list(c1.index) == names
    assert c1.dtype == "category"
    assert list(c1.cat.categories) == [str(i) for i in range(c1.nunique())]
    # no Leiden cluster mixes two blobs: PPJI against the blobs (as reference) is 1
    assert M.ppji(pd.Series(truth, index=names), c1) == pytest.approx(1.0)
    coarse = M.cluster_latent(x, cells=names, resolution=0.05, seed=0)
    assert M.clustering_scores(coarse, pd.Series(truth, index=names))["ari"] == pytest.approx(1.0)


def test_cluster_latent_anndata_and_modality():
    import anndata as ad

    x, truth = _blobs(40)
    adata = ad.AnnData(np.zeros((len(x), 2), dtype=np.float32))
    adata.obs_names = [f"c{i}" for i in range(len(x))]
    adata.obsm["X_libra"] = x.astype(np.float32)
    labels = M.cluster_latent(adata, key_added="libra_leiden", resolution=0.05)
    assert "libra_leiden" in adata.obs
    assert (adata.obs["libra_leiden"].astype(str) == labels.astype(str)).all()
    # a sparse modality is clustered through its PCA without densifying
    counts = sp.csr_matrix(
        np.clip(np.round(np.abs(x @ np.random.default_rng(1).normal(size=(4, 30)))), 0, None)
    )
    mod = M.cluster_modality(counts, n_pcs=5, resolution=0.05)
    assert len(mod) == len(x)
    assert M.clustering_scores(mod, truth)["ari"] > 0.9
    with pytest.raises(SclibraError, match="use_rep='X_pca' is not in adata.obsm"):
        M.cluster_latent(adata, use_rep="X_pca")
    with pytest.raises(SclibraError, match="NaN"):
        M.cluster_latent(np.full((10, 2), np.nan))
    # key_added needs an obs to write to; an AnnData's cell names are its own
    with pytest.raises(SclibraError, match="key_added='k' stores the clusters in adata.obs"):
        M.cluster_latent(x, key_added="k")
    with pytest.raises(SclibraError, match="an AnnData's cells are its obs_names"):
        M.cluster_latent(adata, cells=list(adata.obs_names[::-1]))
    assert "k" not in adata.obs


# ------------------------------------------------------------------------------------------------
# consistency: mode summary on known distributions
# ------------------------------------------------------------------------------------------------
def test_bimodal_distances_finds_two_modes():
    rng = np.random.default_rng(0)
    low = rng.gamma(5, 0.2, 700)  # peak near 0.8
    high = rng.normal(4, 0.4, 300)
    res = M.bimodal_distances(np.r_[low, high])
    assert res.is_bimodal
    assert low.max() * 0.8 < res.threshold < high.min() * 1.5
    assert list(res.modes.index) == ["low", "high"]
    assert res.modes.loc["low", "peak"] == pytest.approx(0.8, abs=0.25)
    assert res.modes.loc["high", "peak"] == pytest.approx(4.0, abs=0.3)
    assert res.modes["n_cells"].sum() == 1000
    n_high = int((np.r_[low, high] >= res.threshold).sum())
    assert res.modes.loc["high", "n_cells"] == n_high
    for mode in ("low", "high"):
        row = res.modes.loc[mode]
        assert row["window_low"] <= row["peak"] <= row["window_high"]
        assert row["window_low"] <= row["mean"] <= row["window_high"]
        assert row["sd"] > 0
        assert 0 < row["n_window"] <= row["n_cells"]
    # the window half-width is (threshold - min) / 4, as in the original
    half = (res.threshold - np.r_[low, high].min()) / 4
    assert res.modes.loc["high", "window_high"] - res.modes.loc["high", "peak"] <= half + 1e-9


@pytest.mark.parametrize("kind", ["normal", "gamma", "lognormal"])
def test_bimodal_distances_reports_unimodal(kind):
    rng = np.random.default_rng(3)
    x = {
        "normal": np.abs(rng.normal(3, 0.5, 800)),
        "gamma": rng.gamma(2, 1, 800),
        "lognormal": rng.lognormal(0, 0.5, 800),
    }[kind]
    res = M.bimodal_distances(x)
    assert not res.is_bimodal
    assert np.isnan(res.threshold)
    assert list(res.modes.index) == ["all"]
    assert res.modes.loc["all", "n_cells"] == 800
    assert res.modes.loc["all", "mean"] == pytest.approx(x.mean())


def test_bimodal_distances_errors():
    with pytest.raises(SclibraError, match="negative"):
        M.bimodal_distances([1.0, 2.0, -0.5, 3.0])
    with pytest.raises(SclibraError, match="NaN"):
        M.bimodal_distances([1.0, np.nan, 2.0, 3.0])


def test_consistency_from_latents_shares():
    rng = np.random.default_rng(0)
    za = rng.normal(size=(400, 5))
    shift = (
        np.where(np.arange(400) < 300, 0.3, 3.0)[:, None] * rng.normal(size=(400, 5)) / np.sqrt(5)
    )
    names = [f"c{i}" for i in range(400)]
    held = names[250:]  # 50 consistent + 100 inconsistent cells
    res = M.consistency_from_latents(za, za + shift, names, held)
    np.testing.assert_allclose(res.distances.to_numpy(), np.linalg.norm(shift, axis=1))
    assert res.is_bimodal
    assert res.share_high == pytest.approx((res.distances >= res.threshold).mean())
    assert res.share_held_out_high == pytest.approx((res.distances[held] >= res.threshold).mean())
    assert 0.55 < res.share_held_out_high < 0.75  # about 100 of 150
    assert set(res.mode.unique()) == {"low", "high"}
    assert res.summary()["is_bimodal"] == 1.0
    with pytest.raises(SclibraError, match="not among the compared cells"):
        M.consistency_from_latents(za, za, names, ["nope"])


# ------------------------------------------------------------------------------------------------
# with a trained model on the bundled Multiome data (ATAC -> RNA)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multiome_model(multiome):
    import sclibra

    rna, atac = multiome
    model = sclibra.LIBRA(n_layers=1, n_nodes=32, latent_dim=8, batch_size=64, seed=0, n_models=1)
    return model.fit(atac, rna, train="is_train", max_epochs=8)


def test_nn_mse_splits_and_values(multiome, multiome_model):
    rna, atac = multiome
    model = multiome_model
    err = M.nn_mse(model, atac, rna)
    n_held = int((~rna.obs["is_train"]).sum())
    assert err.summary.loc["held_out", "n_cells"] == n_held
    assert (
        err.summary.loc["train", "n_cells"] + err.summary.loc["validation", "n_cells"]
        == 500 - n_held
    )
    assert err.per_cell.shape == (500, 2)
    assert list(err.per_cell.index) == list(atac.obs_names)
    assert err.per_feature.shape == (600, 3)
    held = rna.obs_names[~rna.obs["is_train"].to_numpy()]
    pred = model.predict(atac[held]).X
    truth = rna[held].X.toarray()
    assert err.summary.loc["held_out", "mse"] == pytest.approx(
        ((pred - truth) ** 2).mean(), rel=1e-5
    )
    np.testing.assert_allclose(
        err.per_feature["held_out"], ((pred - truth) ** 2).mean(0), rtol=1e-4
    )
    np.testing.assert_allclose(
        err.per_cell.loc[held, "mse"], ((pred - truth) ** 2).mean(1), rtol=1e-4
    )
    assert (err.per_cell.loc[held, "split"] == "held_out").all()
    # explicit held-out cells that the model trained on are flagged
    with pytest.warns(UserWarning, match="used to train or validate"):
        M.nn_mse(model, atac, rna, held_out="is_train")
    with pytest.raises(SclibraError, match="not among the paired cells"):
        M.nn_mse(model, atac, rna, held_out=["no_such_cell"])


def test_nn_consistency_on_bundled_data(multiome, multiome_model, caplog):
    import copy
    import logging

    rna, atac = multiome
    model = copy.deepcopy(multiome_model)
    with pytest.raises(SclibraError, match="not among the paired cells"):
        M.nn_consistency(model, atac, rna, held_out=["no_such_cell"])
    assert model.b_encoder is None  # bad input is refused before the second network trains
    res = M.nn_consistency(model, atac, rna, fit_kwargs={"max_epochs": 10})
    assert isinstance(res, M.ConsistencyResult)
    assert len(res.distances) == 500
    assert list(res.distances.index) == list(atac.obs_names)
    assert (res.distances >= 0).all()
    assert np.isfinite(res.distances).all()
    assert len(res.held_out) == int((~rna.obs["is_train"]).sum())
    assert res.modes["n_cells"].sum() == 500
    assert list(res.modes.index) == (["low", "high"] if res.is_bimodal else ["all"])
    if res.is_bimodal:
        assert 0 <= res.share_held_out_high <= 1
    else:
        assert np.isnan(res.threshold)
        assert np.isnan(res.share_held_out_high)
    # the second network stays in the model: B-only cells can be placed in the latent space
    assert model.b_encoder is not None
    zb = model.get_latent_from_b(rna[:10])
    za = model.get_latent(atac[:10])
    np.testing.assert_allclose(
        np.linalg.norm(za - zb, axis=1), res.distances.iloc[:10], rtol=1e-4, atol=1e-5
    )
    # an existing second network is reused (same distances, no retraining)
    again = M.nn_consistency(model, atac, rna)
    pd.testing.assert_series_equal(again.distances, res.distances)
    # settings for its training then change nothing: a warning says so and names refit
    log = logging.getLogger("sclibra")
    log.addHandler(caplog.handler)
    try:
        warned = M.nn_consistency(model, atac, rna, fit_kwargs={"max_epochs": 3})
    finally:
        log.removeHandler(caplog.handler)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "second network (10 epochs)" in m and "max_epochs=3" in m and "refit=True" in m
        for m in said
    ), said
    pd.testing.assert_series_equal(warned.distances, res.distances)
    assert len(model.b_encoder_history) == 10
    refit = M.nn_consistency(model, atac, rna, fit_kwargs={"max_epochs": 3}, refit=True)
    assert len(model.b_encoder_history) == 3
    assert not np.allclose(refit.distances, res.distances)


def test_evaluate_table_and_files(multiome, multiome_model, tmp_path):
    import copy

    import sclibra

    rna, atac = multiome
    model = copy.deepcopy(multiome_model)
    out = tmp_path / "eval"
    ev = sclibra.evaluate(
        model,
        atac,
        rna,
        labels="cell_type",
        out_dir=out,
        consistency_kwargs={"fit_kwargs": {"max_epochs": 10}},
        details=True,
    )
    table = ev.table
    assert list(table.columns) == ["metric", "value", "split", "method", "reference", "n_cells"]
    rmse = table[(table.metric == "rmse") & (table.split == "held_out")].set_index("method")[
        "value"
    ]
    assert set(rmse.index) == {"libra", "baseline_mean", "baseline_knn", "baseline_ridge"}
    assert rmse["libra"] == pytest.approx(
        np.sqrt(M.nn_mse(model, atac, rna).summary.loc["held_out", "mse"])
    )
    assert {"held_out", "train", "validation"} <= set(table.split)
    refs = set(table.loc[table.metric == "ppji", "reference"])
    assert refs == {"labels:cell_type", "clusters:RNA_only", "clusters:ATAC_only"}
    ppji_ct = table[
        (table.metric == "ppji") & (table.reference == "labels:cell_type") & (table.split == "all")
    ]
    assert ppji_ct["value"].iloc[0] == pytest.approx(
        M.ppji(rna.obs["cell_type"], ev.clusters["latent"])
    )
    assert {
        "ari",
        "nmi",
        "silhouette",
        "consistency_is_bimodal",
        "consistency_share_held_out_high",
    } <= set(table.metric)
    for name in (
        "scores.csv",
        "per_feature_mse.csv",
        "per_cell.csv",
        "loss.png",
        "jaccard.png",
        "consistency.png",
        "umap.png",
        "predicted_vs_measured.png",
    ):
        assert (out / name).stat().st_size > 0, name
    written = pd.read_csv(out / "scores.csv")
    assert len(written) == len(table)
    assert set(ev.figures) == set(sclibra.pl.EVALUATION_FIGURES)
    assert sorted(p.name for p in ev.files) == sorted(p.name for p in out.iterdir())
    # existing outputs are not overwritten unless asked
    with pytest.raises(SclibraError, match="already holds"):
        sclibra.evaluate(model, atac, rna, out_dir=out, consistency=False)
    # without labels and plots: a table only, no label-based rows
    plain = sclibra.metrics.evaluate(
        model, atac, rna, consistency=False, reference_clusters=False, baselines=()
    )
    assert isinstance(plain, pd.DataFrame)
    assert not plain.metric.isin(["ari", "ppji"]).any()
    assert set(plain.method) == {"libra"}
    with pytest.raises(SclibraError, match="labels='nope': no such obs column"):
        sclibra.metrics.evaluate(model, atac, rna, labels="nope", consistency=False)


def test_cli_metrics(multiome_model, tmp_path, capsys):
    from sclibra.cli import main
    from sclibra.datasets import extdata_dir

    model_dir = tmp_path / "model"
    multiome_model.save(model_dir)
    data = extdata_dir() / "bmmc_multiome"
    args = [
        "metrics",
        "--model",
        str(model_dir),
        "--input-a",
        str(data / "atac.h5ad"),
        "--input-b",
        str(data / "rna.h5ad"),
    ]
    out = tmp_path / "out"
    rc = main(
        args
        + [
            "--out-dir",
            str(out),
            "--labels",
            "cell_type",
            "--no-consistency",
            "--no-plots",
            "--quiet",
        ]
    )
    assert rc == 0
    table = pd.read_csv(out / "scores.csv")
    assert (table.metric == "ppji").any()
    assert not (out / "umap.png").exists()
    assert (
        main(args + ["--out-dir", str(out), "--no-consistency", "--quiet"]) == 2
    )  # refuses to overwrite
    assert (
        main(args + ["--out-dir", str(tmp_path / "o2"), "--held-out-key", "cell_type", "--quiet"])
        == 2
    )
    # a choice of baselines, the PCA size and the plotted features reach the evaluation
    chosen = [*args, "--labels", "cell_type", "--no-consistency", "--quiet"]
    assert main([*chosen, "--out-dir", str(tmp_path / "b1"), "--baselines", "mean, ridge",
                 "--n-pcs", "20", "--plot-features", "RPL22,HBB"]) == 0  # fmt: skip
    methods = set(pd.read_csv(tmp_path / "b1" / "scores.csv")["method"].dropna())
    assert {"baseline_mean", "baseline_ridge"} <= methods
    assert "baseline_knn" not in methods

    def ridge_rmse(folder):
        t = pd.read_csv(folder / "scores.csv")
        pick = (t.metric == "rmse") & (t.split == "held_out") & (t.method == "baseline_ridge")
        return float(t.loc[pick, "value"].iloc[0])

    assert ridge_rmse(tmp_path / "b1") != pytest.approx(ridge_rmse(out))  # 20 PCs, not 50
    assert (tmp_path / "b1" / "predicted_vs_measured.png").stat().st_size > 1000
    bad = [*chosen, "--out-dir", str(tmp_path / "b2")]
    assert main([*bad, "--baselines", "mean,svm"]) == 2
    assert "choose from mean, knn, ridge" in capsys.readouterr().err
    assert main([*bad, "--plot-features", "RPL22,NOPE1"]) == 2
    assert "1 not among the model's" in capsys.readouterr().err
    assert not (tmp_path / "b2").exists()  # refused before any work or file
    # the second network: trained with --consistency-epochs, kept by --save-model; a later
    # --consistency-epochs retrains it only with --refit-consistency
    common = ["--no-baselines", "--no-plots", "--quiet"]
    saved, again = tmp_path / "with_b", tmp_path / "with_b2"
    run = [*args, "--consistency-epochs", "2", *common]
    assert main([*run, "--out-dir", str(tmp_path / "c1"), "--save-model", str(saved)]) == 0
    assert len(LIBRA.load(saved).b_encoder_history) == 2
    args[2] = str(saved)
    run = [*args, "--consistency-epochs", "4", *common]
    assert main([*run, "--out-dir", str(tmp_path / "c2"), "--save-model", str(again)]) == 0
    assert len(LIBRA.load(again).b_encoder_history) == 2  # kept, with a warning
    refit = [*run, "--refit-consistency", "--overwrite"]
    assert main([*refit, "--out-dir", str(tmp_path / "c2"), "--save-model", str(again)]) == 0
    assert len(LIBRA.load(again).b_encoder_history) == 4


def test_plot_features_are_checked_before_any_work(multiome, multiome_model, tmp_path):
    from sclibra import evaluate

    rna, atac = multiome
    out = tmp_path / "ev"
    with pytest.raises(SclibraError, match=r"plot_features: 1 not among the model's 600 features"):
        evaluate(multiome_model, atac, rna, plot_features=["HBB", "NOPE1"], out_dir=out)
    assert not out.exists()
    # an untrained model gets the scores' own message, not a TypeError from the check
    with pytest.raises(SclibraError, match="not trained"):
        evaluate(LIBRA(), atac, rna, plot_features="HBB", plots=True)
    # so are the baselines' names: an untrained model would otherwise fail first, in prediction
    with pytest.raises(SclibraError, match="unknown baseline method.*choose from mean, knn, ridge"):
        M.evaluate(LIBRA(), atac, rna, baselines=("mean", "svm"), consistency=False)


def test_labels_and_held_out_from_either_modality(multiome, multiome_model):
    rna, atac = multiome
    bare = atac.copy()
    bare.obs = bare.obs[[]]
    table = M.evaluate(
        multiome_model,
        bare,
        rna,
        labels="cell_type",
        held_out=~rna.obs["is_train"],
        consistency=False,
    )
    assert (table.reference == "labels:cell_type").any()
    assert table.loc[table.split == "held_out", "n_cells"].max() == int(
        (~rna.obs["is_train"]).sum()
    )
    with pytest.raises(SclibraError, match="must be boolean"):
        M.nn_mse(multiome_model, bare, rna, held_out="cell_type")


@pytest.mark.parametrize(
    "call",
    [
        "sclibra.metrics.cluster_latent(x, resolution=0.5)",
        "sclibra.pl.umap_coordinates(x)",
    ],
)
def test_scanpy_graphs_keep_the_users_torch_threads(call):
    # numba's OpenMP layer (scanpy's neighbours, UMAP) resets OpenMP's thread count to every
    # core at its first parallel run in a process, and torch reads that count: a fresh process
    # with a count numba would never choose keeps it after sclibra's clustering / UMAP
    code = (
        "import os, numpy as np, torch, sclibra\n"
        "n = (os.cpu_count() or 1) + 1\n"
        "torch.set_num_threads(n); assert torch.get_num_threads() == n\n"
        "x = np.random.default_rng(0).random((200, 8), dtype=np.float32)\n"
        f"{call}\n"
        "print(torch.get_num_threads() == n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
