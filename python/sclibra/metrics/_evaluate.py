"""One-call evaluation of a trained LIBRA model: every metric and its baselines (data only).

Figures are drawn by :func:`sclibra.pl.evaluation` and files written by
:func:`sclibra.evaluate`; this module neither draws nor writes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sclibra._settings import logger, settings

from ._baselines import BASELINE_METHODS, Baselines, check_methods
from ._consistency import ConsistencyResult, nn_consistency
from ._ppji import cluster_latent, cluster_modality, ppji
from ._prediction import SPLITS, PredictionErrors, errors_from_context, prepare
from ._scores import clustering_scores, prediction_scores, silhouette

TABLE_COLUMNS = ["metric", "value", "split", "method", "reference", "n_cells"]


@dataclass
class Evaluation:
    """Everything :func:`evaluate` computed (returned with ``details=True``).

    Attributes
    ----------
    table
        The tidy score table (columns ``metric``, ``value``, ``split``, ``method``,
        ``reference``, ``n_cells``).
    errors
        :class:`PredictionErrors` of the model (nn_mse by split, feature and cell).
    consistency
        :class:`ConsistencyResult` (None when ``consistency=False``).
    clusters
        Partitions used for PPJI: ``"latent"`` (Leiden of the LIBRA latent space) and
        ``"<modality B>_only"`` / ``"<modality A>_only"`` (Leiden of each modality alone), as
        Series indexed by cell name.
    jaccard
        Jaccard matrices by reference name.
    latent
        The latent space (DataFrame, cells x dimensions).
    labels
        The cell labels used (Series indexed by cell name), or None.
    split
        Each paired cell's role: ``"train"``, ``"validation"`` or ``"held_out"`` (Series).
    predicted, measured
        Predicted and measured modality B of the held-out cells (all cells when none are held
        out), as AnnData (the measured values stay sparse when stored sparse); what
        :func:`sclibra.pl.evaluation` plots.
    figures
        Figure name -> matplotlib figure, filled by :func:`sclibra.evaluate` when plots are made.
    files
        Files written by :func:`sclibra.evaluate` to its ``out_dir``.
    """

    table: pd.DataFrame
    errors: PredictionErrors
    consistency: ConsistencyResult | None
    clusters: dict
    jaccard: dict
    latent: pd.DataFrame
    labels: pd.Series | None = None
    split: pd.Series | None = None
    predicted: object = None
    measured: object = None
    figures: dict = field(default_factory=dict)
    files: list = field(default_factory=list)


class _Table:
    def __init__(self):
        self.rows = []

    def add(self, metric, value, *, split="all", method="libra", reference="", n_cells=np.nan):
        self.rows.append(
            {
                "metric": metric,
                "value": float(value) if value is not None else np.nan,
                "split": split,
                "method": method,
                "reference": reference,
                "n_cells": n_cells,
            }
        )

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=TABLE_COLUMNS)
        df["n_cells"] = df["n_cells"].astype("Int64")
        return df


def _labels_for(labels, cells: pd.Index, obs, name="labels") -> pd.Series | None:
    from sclibra._data import resolve_labels

    return resolve_labels(labels, cells, obs=[("the inputs", obs)], name=name)


def evaluate(
    model,
    adata_a,
    adata_b,
    labels=None,
    *,
    held_out=None,
    layer_a=None,
    layer_b=None,
    obsm_a=None,
    obsm_b=None,
    baselines=BASELINE_METHODS,
    consistency: bool = True,
    consistency_kwargs: dict | None = None,
    reference_clusters: bool = True,
    n_neighbors: int = 10,
    resolution: float = 1.0,
    n_pcs: int = 50,
    spearman: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
    details: bool = False,
):
    """Evaluate a trained LIBRA model on paired data: prediction, integration, consistency.

    Computes, on held-out cells and (labelled as such) on training and validation cells:

    * prediction of modality B: MSE (nn_mse), RMSE, per-feature and per-cell Pearson and
      Spearman correlation, for the model and for each baseline (``mean``, ``knn``, ``ridge``
      on a PCA of A, fitted on the model's training cells, so that validation and held-out
      cells are unseen by both);
    * integration: PPJI of Leiden clusters of the latent space against the labels and against
      clusters of each modality alone; ARI and NMI of the latent clusters against the labels;
      silhouette of the labels in the latent space;
    * nn_consistency (trains the second network if the model has none): distance modes,
      split threshold and the share of held-out cells in the high-distance mode.

    Parameters
    ----------
    model
        Trained :class:`sclibra.LIBRA` (A -> B).
    adata_a, adata_b
        Modality A (model input) and measured modality B, paired by cell name.
    labels
        Cell labels (e.g. ``"cell_type"``, an obs column of ``adata_a`` or ``adata_b``; or a
        Series indexed by cell name). Without labels, label-based scores are skipped.
    held_out
        Held-out cells (default: paired cells the model neither trained nor validated on); see
        :func:`nn_mse`.
    layer_a, layer_b, obsm_a, obsm_b
        AnnData layers or obsm keys to read instead of ``X``.
    baselines
        Baseline methods to run (``()`` for none).
    consistency
        Compute nn_consistency (trains the second network when needed: the slow part).
    consistency_kwargs
        Extra arguments for :func:`nn_consistency` (e.g. ``fit_kwargs={"max_epochs": 100}``).
    reference_clusters
        Also cluster each modality alone (PCA + Leiden) as PPJI references.
    n_neighbors, resolution
        k-NN graph size and Leiden resolution for all clusterings (original: 10 and 1).
    n_pcs
        PCA size for the baselines and the single-modality clusterings.
    spearman
        Include rank correlations.
    seed
        Random state of clusterings and PCA (default: ``sclibra.settings.seed`` or 0).
    progress
        Show progress (default: ``sclibra.settings.progress``).
    details
        Return an :class:`Evaluation` with the clusters, Jaccard matrices and per-cell
        results instead of the table alone.

    Returns
    -------
    pandas.DataFrame or Evaluation
        The tidy table: one row per (metric, split, method, reference) with ``value`` and the
        number of cells scored.

    Examples
    --------
    >>> rna, atac = sclibra.datasets.bmmc_multiome()
    >>> model = sclibra.LIBRA(n_nodes=128).fit(atac, rna, train="is_train")
    >>> table = sclibra.metrics.evaluate(model, atac, rna, labels="cell_type")
    >>> table.query("metric == 'rmse' and split == 'held_out'")

    :func:`sclibra.evaluate` does the same and also draws the figures and writes the files.
    """
    from tqdm.auto import tqdm

    seed = (settings.seed if settings.seed is not None else 0) if seed is None else int(seed)
    progress = settings.progress if progress is None else bool(progress)
    name_a, name_b = getattr(model, "names_", ("A", "B"))
    if baselines:  # checked before any work, not after the prediction
        baselines = check_methods(baselines)

    steps = ["predict", "baselines", "cluster", "consistency"]
    bar = tqdm(total=len(steps), desc="evaluate", disable=not progress, leave=False)

    def step(name):
        bar.set_postfix_str(name)

    # -- prediction ------------------------------------------------------------------------------
    step("predict")
    ctx = prepare(
        model,
        adata_a,
        adata_b,
        held_out=held_out,
        layer_a=layer_a,
        layer_b=layer_b,
        obsm_a=obsm_a,
        obsm_b=obsm_b,
    )
    lab = _labels_for(labels, ctx.cells, ctx.obs)
    if lab is None and labels is None:
        logger.info(
            "evaluate: no labels given; label-based scores (PPJI vs labels, ARI, NMI, silhouette) skipped"
        )
    splits = {s: ctx.splits[s] for s in SPLITS if len(ctx.splits[s])}
    if "held_out" not in splits:
        warnings.warn(
            "no held-out cells: every paired cell was used to train or validate the model, so only "
            "training scores are reported; train with train=... to keep cells aside",
            UserWarning,
            stacklevel=2,
        )
    errors = errors_from_context(ctx, model.features_b)
    t = _Table()
    for split, names in splits.items():
        scores = prediction_scores(
            ctx.pred[ctx.rows(names)], ctx.truth_of(names), spearman=spearman
        )
        for k, v in scores.items():
            if not k.startswith("n_"):
                t.add(k, v, split=split, n_cells=len(names))
    bar.update()

    # -- baselines -------------------------------------------------------------------------------
    step("baselines")
    fit_cells = ctx.splits["train"]
    if baselines and len(fit_cells) >= 2:
        base = Baselines(baselines, n_pcs=n_pcs, seed=seed).fit(
            ctx.a_of(fit_cells), ctx.truth_of(fit_cells)
        )
        for split, names in splits.items():
            preds = base.predict(ctx.a_of(names))
            truth = ctx.truth_of(names)
            for method, p in preds.items():
                scores = prediction_scores(p, truth, spearman=spearman)
                for k, v in scores.items():
                    if not k.startswith("n_"):
                        t.add(k, v, split=split, method=f"baseline_{method}", n_cells=len(names))
    elif baselines:
        logger.warning(
            "evaluate: fewer than 2 training cells among the paired cells; baselines skipped"
        )
    bar.update()

    # -- integration -----------------------------------------------------------------------------
    step("cluster")
    latent = pd.DataFrame(model.get_latent(ctx.a), index=ctx.cells)
    latent.columns = [f"LIBRA_{i + 1}" for i in range(latent.shape[1])]
    clusters = {
        "latent": cluster_latent(latent, n_neighbors=n_neighbors, resolution=resolution, seed=seed)
    }
    t.add("n_clusters", clusters["latent"].nunique(), reference="latent", n_cells=len(ctx.cells))
    references = {}
    if lab is not None:
        references[f"labels:{lab.name or 'labels'}"] = lab
    if reference_clusters:
        for nm, m in ((name_b, ctx.truth), (name_a, ctx.a)):
            x = (
                m.sparse_rows(np.arange(m.n_obs))
                if m.is_sparse
                else m.dense_rows(np.arange(m.n_obs))
            )
            key = f"{nm}_only"
            clusters[key] = cluster_modality(
                x, n_pcs=n_pcs, n_neighbors=n_neighbors, resolution=resolution, seed=seed
            )
            clusters[key].index = ctx.cells
            references[f"clusters:{key}"] = clusters[key]
            t.add(
                "n_clusters",
                clusters[key].nunique(),
                method="",
                reference=key,
                n_cells=len(ctx.cells),
            )
    jaccard = {}
    eval_splits = {"all": ctx.cells}
    if "held_out" in splits:
        eval_splits["held_out"] = splits["held_out"]
    for ref_name, ref in references.items():
        for split, names in eval_splits.items():
            value, jac = ppji(ref, clusters["latent"], cells=names, return_matrix=True)
            t.add("ppji", value, split=split, reference=ref_name, n_cells=len(names))
            if split == "all":
                jaccard[ref_name] = jac
        if ref_name.startswith("labels:"):
            for split, names in eval_splits.items():
                cs = clustering_scores(clusters["latent"], ref, cells=names)
                t.add("ari", cs["ari"], split=split, reference=ref_name, n_cells=len(names))
                t.add("nmi", cs["nmi"], split=split, reference=ref_name, n_cells=len(names))
                sub = lab.loc[names]
                if 2 <= sub.nunique() < len(names):
                    s = silhouette(latent.loc[names].to_numpy(), sub.to_numpy(), seed=seed)
                    t.add("silhouette", s, split=split, reference=ref_name, n_cells=len(names))
    bar.update()

    # -- consistency ------------------------------------------------------------------------------
    step("consistency")
    cons = None
    if consistency:
        kw = dict(consistency_kwargs or {})
        kw.setdefault("progress", progress)
        cons = nn_consistency(model, ctx.a, ctx.truth, held_out=ctx.splits["held_out"], **kw)
        for k, v in cons.summary().items():
            t.add(
                f"consistency_{k}",
                v,
                split="held_out" if "held_out" in k else "all",
                n_cells=len(cons.distances) if "held_out" not in k else len(cons.held_out),
            )
        for split, names in splits.items():
            t.add(
                "consistency_distance_mean",
                cons.distances.loc[names].mean(),
                split=split,
                n_cells=len(names),
            )
    bar.update()

    table = t.frame()
    bar.close()
    if not details:
        return table
    split_col = pd.Series("train", index=ctx.cells, name="split")
    split_col[ctx.cells.isin(ctx.splits["validation"])] = "validation"
    split_col[ctx.cells.isin(ctx.splits["held_out"])] = "held_out"
    show = splits.get("held_out", ctx.cells)
    features = pd.Index(model.features_b)
    return Evaluation(
        table,
        errors,
        cons,
        clusters,
        jaccard,
        latent,
        labels=lab,
        split=split_col,
        predicted=_as_anndata(ctx.pred[ctx.rows(show)], show, features),
        measured=_as_anndata(ctx.truth_of(show), show, features),
    )


def _as_anndata(x, cells, features):
    import anndata as ad

    return ad.AnnData(
        x, obs=pd.DataFrame(index=pd.Index(cells)), var=pd.DataFrame(index=pd.Index(features))
    )
