"""nn_mse: the model's prediction error of modality B, by split, feature and cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sclibra._errors import SclibraError, format_names

from ._scores import _pair, _squared_errors
from ._utils import model_splits, paired_matrices

SPLITS = ("held_out", "train", "validation")


@dataclass
class PredictionContext:
    """Everything the prediction metrics share: paired cells, splits, prediction, truth."""

    cells: pd.Index
    obs: pd.DataFrame | None
    splits: dict
    pred: np.ndarray  # paired cells x model.features_b (dense, what the model returns)
    truth: object  # Matrix over the paired cells and model.features_b
    a: object  # Matrix over the paired cells and model.features_a

    def rows(self, names) -> np.ndarray:
        return self.cells.get_indexer(pd.Index(names))

    def truth_of(self, names):
        """Measured B of ``names``: CSR when stored sparse (never densified), else dense."""
        return _rows_of(self.truth, self.rows(names))

    def a_of(self, names):
        return _rows_of(self.a, self.rows(names))


def _rows_of(m, idx):
    if m.is_sparse:
        return m.sparse_rows(idx)
    return m.dense_rows(idx)


def prepare(
    model, a, b, *, held_out=None, layer_a=None, layer_b=None, obsm_a=None, obsm_b=None
) -> PredictionContext:
    """Pair cells, split them as the model was trained, predict B and read measured B."""
    from sclibra._data import match_features

    if not getattr(model, "is_trained", False):
        raise SclibraError(
            "the model is not trained: call model.fit(a, b) or sclibra.LIBRA.load(path) first"
        )
    names = getattr(model, "names_", ("A", "B"))
    ma, mb, obs = paired_matrices(
        a, b, layer_a=layer_a, layer_b=layer_b, obsm_a=obsm_a, obsm_b=obsm_b, names=names
    )
    cells = pd.Index(ma.cells)
    splits = model_splits(model, cells, held_out, obs)
    missing = model.features_b[~model.features_b.isin(mb.features)]
    if len(missing) and mb.named:
        raise SclibraError(
            f"{mb.name}: {len(missing)} of the {len(model.features_b)} features the model predicts "
            f"are missing from the measured data: {format_names(missing)}"
        )
    ma = match_features(ma, model.features_a)
    mb = match_features(mb, model.features_b, what="model (B features)")
    pred = model.predict(ma).X
    return PredictionContext(cells, obs, splits, np.asarray(pred, dtype=np.float32), mb, ma)


@dataclass
class PredictionErrors:
    """Result of :func:`nn_mse`.

    Attributes
    ----------
    summary
        One row per split (``held_out``, ``train``, ``validation``; only those with cells):
        ``mse``, ``rmse`` and ``n_cells``.
    per_feature
        Features of B x splits: mean squared error of each feature over the split's cells.
    per_cell
        Cells x (``mse``, ``split``): mean squared error of each cell over the features.
    """

    summary: pd.DataFrame
    per_feature: pd.DataFrame
    per_cell: pd.DataFrame

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{s}: {r.mse:.4g} ({int(r.n_cells)} cells)" for s, r in self.summary.iterrows()
        )
        return f"PredictionErrors(MSE {parts})"


def errors_from_context(ctx: PredictionContext, features: pd.Index) -> PredictionErrors:
    rows, per_feature, cell_mse, cell_split = {}, {}, [], []
    for split in SPLITS:
        names = ctx.splits[split]
        if len(names) == 0:
            continue
        pred, truth = _pair(ctx.pred[ctx.rows(names)], ctx.truth_of(names))
        feat_sse, cell_sse = _squared_errors(pred, truth)
        value = float(feat_sse.sum() / pred.size)
        rows[split] = {"mse": value, "rmse": float(np.sqrt(value)), "n_cells": len(names)}
        per_feature[split] = feat_sse / pred.shape[0]
        cell_mse.append(pd.Series(cell_sse / pred.shape[1], index=names))
        cell_split.append(pd.Series(split, index=names))
    if not rows:
        raise SclibraError("no cells to score: none of the paired cells belong to any split")
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "split"
    per_cell = pd.DataFrame({"mse": pd.concat(cell_mse), "split": pd.concat(cell_split)})
    per_cell = per_cell.reindex([c for c in ctx.cells if c in per_cell.index])
    return PredictionErrors(summary, pd.DataFrame(per_feature, index=features), per_cell)


def nn_mse(
    model, a, b, *, held_out=None, layer_a=None, layer_b=None, obsm_a=None, obsm_b=None
) -> PredictionErrors:
    """Mean squared error of the model's prediction of modality B (LIBRA's nn_mse).

    Unlike the original, which measured the error on the training cells, the error is reported
    on held-out cells, and separately (labelled as such) on the training and validation cells:
    overall, per feature and per cell.

    Parameters
    ----------
    model
        Trained :class:`sclibra.LIBRA` (A -> B).
    a, b
        Modality A (input) and measured modality B of the cells, paired by cell name.
    held_out
        Held-out cells: ``None`` (paired cells the model neither trained nor validated on), an
        obs column of booleans (True = held out), a boolean mask or cell names.
    layer_a, layer_b, obsm_a, obsm_b
        AnnData layers or obsm keys to read instead of ``X``.

    Returns
    -------
    PredictionErrors
    """
    ctx = prepare(
        model,
        a,
        b,
        held_out=held_out,
        layer_a=layer_a,
        layer_b=layer_b,
        obsm_a=obsm_a,
        obsm_b=obsm_b,
    )
    return errors_from_context(ctx, model.features_b)
