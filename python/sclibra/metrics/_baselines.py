"""Reference predictors of modality B from modality A, so every accuracy has a baseline.

All three are fitted on the training cells only and evaluated on the same split as the model:

``mean``
    the per-feature mean of B over the training cells (ignores A entirely).
``knn``
    the average B profile of the ``n_neighbors`` nearest training cells in a PCA of A.
``ridge``
    ridge regression (with intercept) of B on a PCA of A.

Sparse input stays sparse: the PCA of a sparse A is computed with scikit-learn's implicitly
centred ARPACK solver, and B enters the kNN average and the ridge solution only through sparse
matrix products. Only the predictions (cells x features of B, what the caller asked for) are dense.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sclibra._errors import SclibraError

from ._utils import as_2d, check_finite, pca_scores, pca_transform

BASELINE_METHODS = ("mean", "knn", "ridge")


def check_methods(methods) -> tuple[str, ...]:
    """``methods`` (a name or several) as a tuple, each one of :data:`BASELINE_METHODS`."""
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    unknown = [m for m in methods if m not in BASELINE_METHODS]
    if unknown:
        raise SclibraError(
            f"unknown baseline method(s) {unknown}; choose from {', '.join(BASELINE_METHODS)}"
        )
    if not methods:
        raise SclibraError("no baseline method given")
    return methods


class Baselines:
    """Fitted baseline predictors (fit once on the training cells, predict any split).

    Parameters
    ----------
    methods
        Any of ``"mean"``, ``"knn"``, ``"ridge"``.
    n_pcs
        Components of the PCA of A used by ``knn`` and ``ridge``.
    n_neighbors
        Neighbours averaged by ``knn``.
    alpha
        L2 penalty of ``ridge``.
    seed
        Random state of the PCA solver.
    """

    def __init__(
        self,
        methods=BASELINE_METHODS,
        n_pcs: int = 50,
        n_neighbors: int = 15,
        alpha: float = 1.0,
        seed=0,
    ):
        methods = check_methods(methods)
        if int(n_neighbors) < 1:
            raise SclibraError(f"n_neighbors must be >= 1, got {n_neighbors}")
        if float(alpha) < 0:
            raise SclibraError(f"alpha must be >= 0, got {alpha}")
        self.methods = methods
        self.n_pcs = n_pcs
        self.n_neighbors = int(n_neighbors)
        self.alpha = float(alpha)
        self.seed = seed

    def fit(self, a_train, b_train) -> Baselines:
        a_train = as_2d(a_train, "a_train")
        b_train = as_2d(b_train, "b_train")
        if a_train.shape[0] != b_train.shape[0]:
            raise SclibraError(
                f"a_train has {a_train.shape[0]} cells but b_train has {b_train.shape[0]}; "
                "they must hold the same cells in the same order"
            )
        if a_train.shape[0] < 2:
            raise SclibraError(f"baselines need at least 2 training cells, got {a_train.shape[0]}")
        check_finite(a_train, "a_train")
        check_finite(b_train, "b_train")
        self.n_features_a_ = a_train.shape[1]
        self.n_features_b_ = b_train.shape[1]
        mean = b_train.mean(axis=0)
        self.mean_ = np.asarray(mean, dtype=np.float64).ravel()
        if "knn" in self.methods or "ridge" in self.methods:
            self.pca_, z = pca_scores(a_train, self.n_pcs, self.seed)
        if "knn" in self.methods:
            from sklearn.neighbors import NearestNeighbors

            self.k_ = min(self.n_neighbors, a_train.shape[0])
            self.nn_ = NearestNeighbors(n_neighbors=self.k_).fit(z)
            self.b_train_ = b_train  # kept by reference, never densified
        if "ridge" in self.methods:
            z_mean = z.mean(axis=0)
            zc = z - z_mean
            gram = zc.T @ zc + self.alpha * np.eye(zc.shape[1])
            # Zc' (B - 1 mean_B') = Zc' B because Zc is centred; B' Zc is a sparse-safe product
            zty = np.asarray((b_train.T @ zc).T, dtype=np.float64)
            self.coef_ = np.linalg.solve(gram, zty)
            self.intercept_ = self.mean_ - z_mean @ self.coef_
        return self

    def predict(self, a_test) -> dict[str, np.ndarray]:
        a_test = as_2d(a_test, "a_test")
        if a_test.shape[1] != self.n_features_a_:
            raise SclibraError(
                f"a_test has {a_test.shape[1]} features but a_train had {self.n_features_a_}; "
                "use the same features in the same order"
            )
        check_finite(a_test, "a_test")
        n = a_test.shape[0]
        out: dict[str, np.ndarray] = {}
        z = (
            pca_transform(self.pca_, a_test)
            if ("knn" in self.methods or "ridge" in self.methods)
            else None
        )
        for method in self.methods:
            if method == "mean":
                pred = np.broadcast_to(self.mean_, (n, self.n_features_b_))
            elif method == "knn":
                idx = self.nn_.kneighbors(z, return_distance=False)
                rows = np.repeat(np.arange(n), self.k_)
                w = sp.csr_matrix(
                    (np.full(idx.size, 1.0 / self.k_), (rows, idx.ravel())),
                    shape=(n, self.b_train_.shape[0]),
                )
                pred = w @ self.b_train_
                pred = pred.toarray() if sp.issparse(pred) else np.asarray(pred)
            else:
                pred = z @ self.coef_ + self.intercept_
            out[method] = np.ascontiguousarray(pred, dtype=np.float32)
        return out


def baseline_predictions(
    a_train,
    b_train,
    a_test,
    methods=BASELINE_METHODS,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    alpha: float = 1.0,
    seed=0,
) -> dict[str, np.ndarray]:
    """Predict modality B of ``a_test`` cells with simple baselines fitted on training cells.

    Parameters
    ----------
    a_train, b_train
        Modality A and B of the training cells (cells x features; numpy, scipy sparse,
        DataFrame or AnnData), same cells in the same order. Sparse input is never densified.
    a_test
        Modality A of the cells to predict (same features as ``a_train``).
    methods
        Subset of ``("mean", "knn", "ridge")``: per-feature training mean; average of the
        ``n_neighbors`` nearest training cells in a PCA of A; ridge regression on that PCA.
    n_pcs
        Number of principal components of A (capped at ``min(cells, features) - 1``).
    n_neighbors
        Neighbours averaged by ``knn`` (capped at the number of training cells).
    alpha
        L2 penalty of ``ridge`` (same objective as :class:`sklearn.linear_model.Ridge`).
    seed
        Random state of the PCA solver.

    Returns
    -------
    dict
        Method name -> dense ``float32`` array (``a_test`` cells x B features).

    Examples
    --------
    >>> preds = sclibra.metrics.baseline_predictions(atac_train.X, rna_train.X, atac_test.X)
    >>> sclibra.metrics.rmse(preds["ridge"], rna_test.X)
    """
    return (
        Baselines(methods, n_pcs=n_pcs, n_neighbors=n_neighbors, alpha=alpha, seed=seed)
        .fit(a_train, b_train)
        .predict(a_test)
    )
