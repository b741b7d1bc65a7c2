"""Metrics of LIBRA models: PPJI, nn_mse, nn_consistency, standard scores and baselines.

Everything works on plain arrays (numpy, scipy sparse), on AnnData and on a trained
:class:`sclibra.LIBRA` model. :func:`evaluate` runs them all and returns one tidy table.
"""

from ._baselines import BASELINE_METHODS, Baselines, baseline_predictions
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
    "baseline_predictions",
    "clustering_scores",
    "mse",
    "mse_per_cell",
    "mse_per_feature",
    "pearson_per_cell",
    "pearson_per_feature",
    "prediction_scores",
    "rmse",
    "silhouette",
    "spearman_per_cell",
    "spearman_per_feature",
]
