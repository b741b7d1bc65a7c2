"""``sclibra.evaluate``: the scores of :func:`sclibra.metrics.evaluate`, their figures and files.

Computing lives in :mod:`sclibra.metrics`, drawing in :mod:`sclibra.pl`; this module joins them
and writes the results, so neither of those imports the other's job.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from . import pl
from ._errors import SclibraError, format_names
from ._fs import atomic_file
from ._settings import logger, settings
from .metrics import evaluate as _scores

#: the tables written to ``out_dir``
TABLES = ("scores.csv", "per_feature_mse.csv", "per_cell.csv")


def _check_plot_features(features, model) -> None:
    """Feature names for the predicted-vs-measured plot must be features of the model's B."""
    if model.features_b is None:  # not trained: the scores' own check says so
        return
    if isinstance(features, str):
        features = [features]
    known = set(map(str, model.features_b))
    unknown = [f for f in features if isinstance(f, str) and f not in known]
    if unknown:
        raise SclibraError(
            f"plot_features: {len(unknown)} not among the model's {len(known)} features of "
            f"{model.names_[1]}: {format_names(unknown)}"
        )


def evaluate(
    model,
    adata_a,
    adata_b,
    labels=None,
    *,
    out_dir=None,
    overwrite: bool = False,
    plots: bool | None = None,
    plot_features=None,
    details: bool = False,
    seed: int | None = None,
    **kwargs,
):
    """Evaluate a trained LIBRA model, draw its figures and write them with the scores.

    Scores are those of :func:`sclibra.metrics.evaluate` (prediction against the mean, kNN and
    ridge baselines, PPJI, ARI/NMI, silhouette, nn_consistency); figures those of
    :func:`sclibra.pl.evaluation`.

    Parameters
    ----------
    model, adata_a, adata_b, labels
        As in :func:`sclibra.metrics.evaluate`: the trained model, its input and the measured
        output (paired by cell name), and optional cell labels.
    out_dir
        If given, write ``scores.csv``, ``per_feature_mse.csv``, ``per_cell.csv`` and the plots
        (PNG) there. Existing files are an error unless ``overwrite=True``; other files in the
        folder are left alone.
    overwrite
        Replace existing result files in ``out_dir``.
    plots
        Make the figures (default: when ``out_dir`` is given or ``details=True``).
    plot_features
        Features of B for the predicted-vs-measured plot (default: the 4 most variable).
    details
        Return the :class:`sclibra.metrics.Evaluation` (with ``figures`` and ``files``) instead
        of the table alone.
    seed
        Random state of clusterings, PCA and UMAP (default: ``sclibra.settings.seed`` or 0).
    **kwargs
        Passed on to :func:`sclibra.metrics.evaluate` (``held_out``, ``layer_a``,
        ``baselines``, ``consistency``, ``n_neighbors``, ``resolution``, ``progress``, ...).

    Returns
    -------
    pandas.DataFrame or sclibra.metrics.Evaluation
        The tidy score table, or everything with ``details=True``.

    Examples
    --------
    >>> rna, atac = sclibra.datasets.bmmc_multiome()
    >>> model = sclibra.LIBRA(n_nodes=128).fit(atac, rna, train="is_train")
    >>> table = sclibra.evaluate(model, atac, rna, labels="cell_type", out_dir="eval")
    """
    seed = (settings.seed if settings.seed is not None else 0) if seed is None else int(seed)
    make_plots = (out_dir is not None or details) if plots is None else bool(plots)
    names = list(TABLES) + ([f"{f}.png" for f in pl.EVALUATION_FIGURES] if make_plots else [])
    if make_plots and plot_features is not None:  # checked before any work, not after it
        _check_plot_features(plot_features, model)
    out = _check_out_dir(out_dir, overwrite, names)
    ev = _scores(model, adata_a, adata_b, labels, seed=seed, details=True, **kwargs)
    if make_plots:
        ev.figures = pl.evaluation(ev, model, features=plot_features, seed=seed)
    if out is not None:
        ev.files = _write(ev, out)
        logger.info("evaluate: wrote %d files to %s", len(ev.files), out)
    if not details:
        _close(ev.figures)
        return ev.table
    return ev


def _signature():
    """Signature of :func:`evaluate`: its own arguments, then those it passes on to scoring.

    ``inspect.signature(sclibra.evaluate)`` (and so ``help()``, and R's argument check) lists
    every argument once, although they are written only in :func:`sclibra.metrics.evaluate`.
    """
    own = inspect.signature(evaluate)
    params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in params}
    passed = [
        p
        for p in inspect.signature(_scores).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in names
    ]
    return own.replace(parameters=params + passed)


evaluate.__signature__ = _signature()


def _check_out_dir(out_dir, overwrite, names) -> Path | None:
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SclibraError(f"out_dir {out} exists and is not a directory")
    clash = [n for n in names if (out / n).exists()]
    if clash and not overwrite:
        raise SclibraError(
            f"{out} already holds {format_names(clash)}; pass overwrite=True to replace them "
            "or choose another out_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write(ev, out: Path) -> list[Path]:
    per_cell = ev.errors.per_cell.copy()
    if ev.consistency is not None:
        per_cell["consistency_distance"] = ev.consistency.distances.reindex(per_cell.index)
        per_cell["consistency_mode"] = ev.consistency.mode.reindex(per_cell.index)
    per_cell["latent_cluster"] = ev.clusters["latent"].reindex(per_cell.index).astype(str)
    written = [
        _write_csv(ev.table, out / "scores.csv"),
        _write_csv(
            ev.errors.per_feature.rename_axis("feature"), out / "per_feature_mse.csv", index=True
        ),
        _write_csv(per_cell.rename_axis("cell"), out / "per_cell.csv", index=True),
    ]
    for name, fig in ev.figures.items():
        if fig is not None:
            written.append(pl.save_figure(fig, out / f"{name}.png", overwrite=True))
    return written


def _write_csv(df, path: Path, index=False) -> Path:
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=index)
    return path


def _close(figures):
    if not any(f is not None for f in (figures or {}).values()):
        return
    import matplotlib.pyplot as plt  # already imported: the figures exist

    for fig in figures.values():
        if fig is not None:
            plt.close(fig)
