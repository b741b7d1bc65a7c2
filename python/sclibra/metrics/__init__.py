"""Metrics of LIBRA models: PPJI, nn_mse, nn_consistency, standard scores and baselines.

Everything works on plain arrays (numpy, scipy sparse), on AnnData and on a trained
:class:`sclibra.LIBRA` model. :func:`evaluate` runs them all and returns one tidy table.

LIBRA's own metrics
    :func:`ppji` (with :func:`jaccard_matrix`, :func:`cluster_latent`, :func:`cluster_modality`),
    :func:`nn_mse`, :func:`nn_consistency` (with :func:`bimodal_distances`).
Standard scores
    :func:`rmse`, :func:`mse`, per-feature / per-cell Pearson and Spearman correlation,
    :func:`prediction_scores`, :func:`clustering_scores` (ARI, NMI), :func:`silhouette`.
Baselines
    :func:`baseline_predictions` (per-feature mean, kNN and ridge regression on a PCA of A).
"""

from ._baselines import BASELINE_METHODS, Baselines, baseline_predictions
from ._consistency import (
    BimodalSummary,
    ConsistencyResult,
    bimodal_distances,
    consistency_from_latents,
    nn_consistency,
)
from ._evaluate import Evaluation, evaluate
from ._ppji import cluster_latent, cluster_modality, jaccard_matrix, ppji, ppji_from_matrix
from ._prediction import PredictionErrors, nn_mse
from ._scores import (
    clustering_scores,
    mse,
    mse_per_cell,
    mse_per_feature,
    pearson_per_cell,
    pearson_per_feature,
    prediction_scores,
    rmse,
    silhouette,
    spearman_per_cell,
    spearman_per_feature,
)

__all__ = [
    "BASELINE_METHODS",
    "Baselines",
    "BimodalSummary",
    "ConsistencyResult",
    "Evaluation",
    "PredictionErrors",
    "baseline_predictions",
    "bimodal_distances",
    "cluster_latent",
    "cluster_modality",
    "clustering_scores",
    "consistency_from_latents",
    "evaluate",
    "jaccard_matrix",
    "mse",
    "mse_per_cell",
    "mse_per_feature",
    "nn_consistency",
    "nn_mse",
    "pearson_per_cell",
    "pearson_per_feature",
    "ppji",
    "ppji_from_matrix",
    "prediction_scores",
    "rmse",
    "silhouette",
    "spearman_per_cell",
    "spearman_per_feature",
]
