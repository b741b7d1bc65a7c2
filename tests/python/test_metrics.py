"""Tests of sclibra.metrics: baselines, standard scores, PPJI, consistency, evaluate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sclibra import SclibraError
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
        assert p.shape == (50, 20) and p.dtype == np.float32
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
    assert sp.issparse(a) and sp.issparse(b)


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
    assert s["n_cells"] == 200 and s["n_features"] == 20


def test_scores_sparse_truth_and_constant_feature():
    truth = sp.random(60, 12, density=0.3, format="csr", random_state=3)
    truth = sp.csr_matrix(truth.toarray() * (np.arange(12) != 5))  # feature 5 all zero
    pred = np.random.default_rng(0).normal(size=(60, 12)).astype(np.float32)
    dense = truth.toarray()
    assert M.rmse(pred, truth) == pytest.approx(M.rmse(pred, dense))
    pf = M.pearson_per_feature(pred, truth)
    assert np.isnan(pf[5]) and np.isfinite(np.delete(pf, 5)).all()
    np.testing.assert_allclose(
        M.spearman_per_feature(pred, truth), M.spearman_per_feature(pred, dense)
    )
    s = M.prediction_scores(pred, truth)
    assert s["n_constant_features"] == 1
    assert np.isfinite(s["pearson_feature_mean"])


def test_scores_shape_mismatch_is_an_error():
    with pytest.raises(SclibraError, match="shape 5 x 3"):
        M.rmse(np.zeros((5, 3)), np.zeros((5, 4)))


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
