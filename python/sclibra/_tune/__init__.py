"""aLIBRA: hyperparameter search for LIBRA, optimising prediction, integration or both.

The public entry point is :func:`tune` (exported as ``sclibra.tune``); it returns a
:class:`TuneResult`. Presets of the published grids are in :data:`SEARCH_SPACES`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from sclibra._data import (
    PairInputs,
    pair_cells,
    resolve_pair_labels,
    select_pair_cells,
    takes_fields,
)
from sclibra._errors import SclibraError
from sclibra._settings import logger, settings, warnings_once

from ._result import TuneResult, compromise, pareto_mask, rows_to_frame
from ._runner import (
    SearchData,
    SearchJob,
    TrialContext,
    available_cpus,
    libra_trainer,
    one_search_per_folder,
    run_local,
    run_ray,
    trial_devices,
)
from ._spaces import (
    FIT_PARAMS,
    SEARCH_SPACES,
    SEARCHABLE,
    SearchSpace,
    choice,
    loguniform,
    randint,
    uniform,
)
from ._storage import TrialStore, atomic_write_text
from ._strategies import make_trials, rung_epochs

OBJECTIVES = ("prediction", "integration", "both")
BACKENDS = ("local", "ray")


@one_search_per_folder
@warnings_once()  # a warning that every trial's fit would repeat is said once
@takes_fields("inputs", PairInputs)
def tune(
    a,
    b=None,
    *,
    inputs: PairInputs,  # the arguments mod_a, mod_b, layer_a, layer_b, obsm_a, obsm_b
    train=None,
    grid: str | Mapping[str, Any] = "prediction",
    objective: str = "prediction",
    strategy: str = "asha",
    n_trials: int | None = None,
    labels=None,
    max_epochs: int = 1500,
    grace_period: int = 10,
    eta: float = 3,
    fit_kwargs: Mapping[str, Any] | None = None,
    n_jobs: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_trial: float | None = None,
    device=None,
    out_dir: str | None = None,
    overwrite: bool = False,
    save_models: bool = False,
    save_latent: bool = False,
    retry_failed: bool = False,
    refit: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
    cluster_resolution: float = 1.0,
    trainer: Callable[[TrialContext], dict] | None = None,
) -> TuneResult:
    """Search LIBRA hyperparameters for prediction, integration or both (aLIBRA).

    Every trial trains :class:`sclibra.LIBRA` on the *search cells* (``train``), with its own
    validation split inside them (``fit_kwargs['validation_split']``, default 0.1, the same
    cells for every trial through the shared seed); held-out test cells are never looked at.

    Parameters
    ----------
    a, b, mod_a, mod_b, layer_a, layer_b, obsm_a, obsm_b
        The data, as for :meth:`sclibra.LIBRA.fit` (modality A is read, B is reconstructed).
    train
        The search cells: ``None`` (all shared cells), an obs column of booleans (e.g.
        ``"is_train"``), a boolean mask over ``a``'s cells, or a list of cell names. Keep your
        test cells out of it.
    grid
        A preset of :data:`SEARCH_SPACES` (``"default"``, ``"prediction"`` (960 combinations),
        ``"integration"`` (1152)), or a dict ``{hyperparameter: list}`` (a grid) or
        ``{hyperparameter: distribution}`` (sampled: ``sclibra.tune.uniform``, ``loguniform``,
        ``randint``, ``choice``). The recipe's searchable hyperparameters can be searched:
        {searchable}. A ``batch_size`` above the
        number of training cells means full batch (recorded as ``batch_size_used``).
    objective
        ``"prediction"``: minimise ``val_loss``, the validation MSE of modality B on cells held
        out from training. ``"integration"``: maximise ``ppji`` (preserved pairwise Jaccard
        index; ``ari`` is reported too) of Leiden clusters of the latent space of the search
        cells against ``labels``, or, without labels, the mean over clusterings of each modality
        on its own (the paper's comparison). ``"both"``: the Pareto front of the two;
        the selected trial is the front's compromise point (each objective rescaled to [0, 1]
        over the front, the point closest to the ideal; see :attr:`TuneResult.pareto_front`).
    strategy
        ``"grid"``: every combination (the published aLIBRA). ``"random"``: ``n_trials``
        configurations drawn from the space. ``"asha"``: ``n_trials`` configurations (all of a
        finite grid when None) with asynchronous successive halving: at epochs
        ``grace_period * eta**k`` a trial goes on only if its best validation loss so far is in
        the top ``1/eta`` of the trials that reached that epoch; the others are recorded as
        ``pruned``. Pruning always uses the validation loss (cheap at every rung); integration
        metrics are measured on completed trials. With ``n_jobs=1``
        ASHA is deterministic; with parallel workers its decisions depend on which trials reach
        a rung first, so two runs may prune slightly differently.
    n_trials
        Number of configurations for ``random`` / ``asha``. The draw for a given ``seed`` does
        not depend on it, so a larger ``n_trials`` on the same ``out_dir`` extends a search.
    labels
        Reference labels for integration: an obs column of ``a`` or an array over ``a``'s cells.
    max_epochs, fit_kwargs
        Passed to :meth:`sclibra.LIBRA.fit` (e.g. ``validation_split``,
        ``early_stopping_patience``). ``fit_kwargs['batch_key']`` (an obs column or labels, as
        in :meth:`~sclibra.LIBRA.fit`) is read and checked once, before any trial: every trial
        then validates on whole batches of the search cells.
    grace_period, eta
        ASHA's first rung (epochs) and reduction factor.
    n_jobs
        Trials run at once: local worker processes (spawned; each uses
        ``max(1, cpus // n_jobs)`` torch threads so workers do not oversubscribe the CPUs), or
        concurrent Ray trials. ``-1``: one per CPU.
    backend
        ``"local"`` (needs nothing else) or ``"ray"``: the same trials through Ray Tune
        (``pip install 'sclibra[ray]'``), on the cluster at ``ray_address`` or a local Ray
        instance. Rows and results are the same.
    gpus_per_trial, device
        Trials are placed on the GPU(s) when present (``device="auto"``); locally trial ``i``
        uses GPU ``i % n_gpus``; with Ray each trial asks for ``gpus_per_trial`` (default 1 when
        CUDA is visible to the driver, else 0).
    out_dir
        Folder of the durable trial records (see :mod:`sclibra._tune._storage`). Every finished
        trial is written (atomically) before the worker starts another; running the same search
        on the same folder resumes it, skipping finished trials. A different search in the
        folder is refused unless ``overwrite=True``. ``None``: a new temporary folder.
    save_models, save_latent
        Also keep each trial's model (``models/<trial_id>``) / latent space of the search cells
        (``latents/<trial_id>.npz``).
    retry_failed
        On resume, run failed trials again instead of keeping their error rows.
    refit
        Train the selected model at the end (``result.best_model``; otherwise on first access).
    seed
        Seed of the configuration draw and of every trial's model (default
        ``sclibra.settings.seed``; 0 when that is None).
    progress
        Progress bar over trials (default ``sclibra.settings.progress``).
    cluster_resolution
        Leiden resolution for latent-space clusters (integration).
    trainer
        Advanced: ``trainer(ctx) -> dict`` trains and scores one configuration (see
        :class:`TrialContext`); the default trains LIBRA. Must be picklable for ``n_jobs > 1``.

    Returns
    -------
    :class:`TuneResult` with ``trials``, ``best_config``, ``best_model``, ``pareto_front``,
    ``to_csv()`` and plots.
    """
    if objective not in OBJECTIVES:
        raise SclibraError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if backend not in BACKENDS:
        raise SclibraError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    space = SearchSpace(grid)
    seed = settings.seed if seed is None else seed
    order_seed = 0 if seed is None else int(seed)
    n_jobs = _check_n_jobs(n_jobs)
    max_epochs = _positive_int(max_epochs, "max_epochs")
    fit_kwargs = dict(fit_kwargs or {})
    for bad in ("callback", "train", "progress"):
        if bad in fit_kwargs:
            raise SclibraError(f"fit_kwargs may not set {bad!r}: tune() sets it for every trial")
    if "max_epochs" in fit_kwargs:
        raise SclibraError("pass max_epochs to tune() directly, not in fit_kwargs")
    _check_fit_kwargs(fit_kwargs)
    if fit_kwargs.get("validation_split", 0.1) <= 0:
        raise SclibraError(
            "tune() selects configurations on validation cells held out from training: "
            "fit_kwargs['validation_split'] must be > 0 (e.g. 0.1)"
        )
    fit_kwargs["max_epochs"] = max_epochs
    searched_fit = [k for k in space.dims if k in FIT_PARAMS]
    if strategy == "asha" and "max_epochs" in space.dims:
        raise SclibraError(
            "max_epochs cannot be searched with strategy='asha' (ASHA sets the budget)"
        )
    trials = make_trials(space, strategy, n_trials, order_seed)
    rungs = rung_epochs(int(grace_period), float(eta), max_epochs) if strategy == "asha" else []
    if progress is None:
        progress = settings.progress

    data_kwargs = inputs.given()
    ma, mb = _matrices(a, b, data_kwargs)  # read once: the cells, batches and references
    cells = _search_cells(ma, mb, train)
    if fit_kwargs.get("batch_key") is not None:
        # read and checked once, before any trial: each trial reads these labels by cell name
        fit_kwargs["batch_key"] = resolve_pair_labels(
            fit_kwargs["batch_key"], cells, ma, mb, name="batch_key", what="search cells"
        )
    references = None
    if objective != "prediction":
        references = _references(ma, mb, cells, labels, cluster_resolution, order_seed)
    data = SearchData(a=a, b=b, data_kwargs=data_kwargs, cells=list(cells), references=references)

    trainer = trainer or libra_trainer
    definition = {
        "space": space.describe(),
        "strategy": strategy,
        "objective": objective,
        "seed": seed,
        "rungs": rungs,
        "eta": float(eta) if strategy == "asha" else None,
        # batches by their labels: a column and the same labels as an array are one search
        "fit": {
            k: _hash(v.to_numpy()) if k == "batch_key" and v is not None else v
            for k, v in sorted(fit_kwargs.items())
        },
        "searched_fit_options": searched_fit,
        "data": {
            "n_cells": len(cells),
            "cells": _hash(cells),
            "features_a": _hash(ma.features),
            "features_b": _hash(mb.features),
            **{k: str(v) for k, v in data_kwargs.items()},
        },
        "references": None if references is None else {k: _hash(v) for k, v in references.items()},
        "cluster_resolution": cluster_resolution if objective != "prediction" else None,
        "trainer": f"{getattr(trainer, '__module__', '?')}.{getattr(trainer, '__qualname__', '?')}",
    }
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="sclibra-tune-")
        logger.info("aLIBRA: writing trials to %s (pass out_dir= to keep them)", out_dir)
    store = TrialStore(out_dir)
    finished = store.prepare(definition, overwrite=overwrite)
    ids = {t.trial_id for t in trials}
    done = {k: v for k, v in finished.items() if k in ids}
    if retry_failed:
        done = {k: v for k, v in done.items() if v["status"] != "failed"}
    pending = [t for t in trials if t.trial_id not in done]

    cpus = available_cpus()
    threads = settings.num_threads or max(1, cpus // n_jobs)
    job = SearchJob(
        data=data,
        fit_kwargs=fit_kwargs,
        objective=objective,
        seed=seed,
        rungs=rungs,
        eta=float(eta),
        out_dir=str(out_dir),
        trainer=trainer,
        save_models=save_models,
        save_latent=save_latent,
        threads=threads,
        cluster_resolution=cluster_resolution,
    )
    logger.info(
        "aLIBRA %s search (%s, objective=%s): %d trials, %d already finished in %s, %d to run "
        "(%s, n_jobs=%d)",
        space.name,
        strategy,
        objective,
        len(trials),
        len(done),
        out_dir,
        len(pending),
        backend,
        n_jobs,
    )
    rows = dict(done)
    bar = _progress(len(trials), len(done), progress)

    def on_row(row: dict) -> None:
        rows[row["trial_id"]] = row
        bar.update(1)
        best = [r["metrics"].get("val_loss") for r in rows.values() if r["status"] == "ok"]
        best = [v for v in best if v is not None]
        if best:
            bar.set_postfix(best_val_loss=f"{min(best):.4g}", refresh=False)
        if row["status"] == "failed":
            logger.warning("trial %s failed: %s", row["trial_id"], row.get("error"))

    try:
        if pending:
            if backend == "local":
                run_local(job, pending, n_jobs=n_jobs, devices=trial_devices(device), on_row=on_row)
            else:
                if gpus_per_trial is None:
                    gpus_per_trial = 1.0 if trial_devices(device)[0].startswith("cuda") else 0.0
                run_ray(
                    job,
                    pending,
                    n_jobs=n_jobs,
                    gpus_per_trial=float(gpus_per_trial),
                    address=ray_address,
                    on_row=on_row,
                )
    except KeyboardInterrupt:
        n = len(store.finished())
        logger.warning(
            "aLIBRA interrupted: %d finished trials are kept in %s; run the same call again to resume",
            n,
            out_dir,
        )
        raise
    finally:
        bar.close()

    rows = {k: v for k, v in store.finished().items() if k in ids}
    table = rows_to_frame(list(rows.values()), list(space.dims))
    atomic_write_text(store.table_path, table.to_csv(index=False))

    def _refit(tid: str):
        spec = next(t for t in trials if t.trial_id == tid)
        return _train_final(job, spec, progress, device)

    result = TuneResult(table, objective, list(space.dims), out_dir, definition, refit=_refit)
    if refit and trainer is libra_trainer:
        try:
            result.best_model  # noqa: B018 - train (and save) it now
        except SclibraError as err:
            logger.warning("aLIBRA: no model selected: %s", err)
    return result


# the searchable hyperparameters, listed from the recipe's declarations
tune.__doc__ = tune.__doc__.replace(
    "{searchable}",
    textwrap.fill(
        ", ".join(f"``{name}``" for name in SEARCHABLE), width=88, subsequent_indent=" " * 8
    ),
)


def _train_final(job: SearchJob, spec, progress, device):
    """Train the selected configuration again, exactly as in its trial (same cells, seed)."""
    from sclibra._model import LIBRA

    ctx = TrialContext(spec, job, None, trial_devices(device)[0])
    model = LIBRA(**ctx.model_kwargs)
    model.fit(
        job.data.a,
        job.data.b,
        train=job.data.cells,
        progress=progress,
        **job.data.data_kwargs,
        **ctx.fit_kwargs,
    )
    return model


def _check_fit_kwargs(fit_kwargs: dict) -> None:
    import inspect

    from sclibra._model import LIBRA

    allowed = {
        name
        for name, p in inspect.signature(LIBRA.fit).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    } - {f.name for f in dataclasses.fields(PairInputs)}
    unknown = sorted(set(fit_kwargs) - allowed)
    if unknown:
        raise SclibraError(
            f"fit_kwargs has unknown option(s) {', '.join(map(repr, unknown))}; LIBRA.fit takes "
            + ", ".join(sorted(allowed))
        )


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="aLIBRA trials", unit="trial", disable=not enabled
    )


def _check_n_jobs(n_jobs) -> int:
    if (
        isinstance(n_jobs, bool)
        or not isinstance(n_jobs, (int, np.integer))
        or n_jobs == 0
        or n_jobs < -1
    ):
        raise SclibraError(f"n_jobs must be a positive integer or -1 (all CPUs), got {n_jobs!r}")
    return available_cpus() if n_jobs == -1 else int(n_jobs)


def _positive_int(v, name) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise SclibraError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _hash(values) -> str:
    h = hashlib.sha1()
    for v in np.asarray(values, dtype=str):
        h.update(v.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _matrices(a, b, data_kwargs):
    """Modality A and B as paired :class:`Matrix` views (cells in A's order)."""
    return pair_cells(*PairInputs(**data_kwargs).read(a, b))


def _search_cells(ma, mb, train) -> pd.Index:
    """The paired cells of ``ma`` / ``mb`` selected by ``train`` (in A's order)."""
    cells = select_pair_cells(train, ma, mb, what="train")
    if len(cells) < 10:
        raise SclibraError(
            f"train={train!r} selects {len(cells)} cells; a search needs at least 10"
        )
    return pd.Index(cells)


def _references(ma, mb, cells, labels, resolution, seed) -> dict[str, np.ndarray]:
    """Reference labels over the search cells: the user's labels, or each modality's clusters."""
    if labels is not None:
        ser = resolve_pair_labels(labels, cells, ma, mb, name="labels", what="search cells")
        return {"labels": ser.astype(str).to_numpy()}
    from sclibra.metrics import cluster_modality

    refs = {}
    for key, m in (("A", ma), ("B", mb)):
        sub = m.subset_cells(cells)
        x = sub._apply_cols(sub._read_rows(np.arange(sub.n_obs)))  # sparse stays sparse
        refs[key] = np.asarray(cluster_modality(x, resolution=resolution, seed=seed)).astype(str)
    return refs


# ``sclibra.tune`` is this function: hang the space helpers on it, so that users can write
# ``sclibra.tune.loguniform(1e-4, 1e-2)`` and read ``sclibra.tune.SEARCH_SPACES``.
tune.SEARCH_SPACES = SEARCH_SPACES
tune.uniform = uniform
tune.loguniform = loguniform
tune.randint = randint
tune.choice = choice
tune.TuneResult = TuneResult

__all__ = [
    "tune",
    "TuneResult",
    "SEARCH_SPACES",
    "SearchSpace",
    "TrialContext",
    "uniform",
    "loguniform",
    "randint",
    "choice",
    "pareto_mask",
    "compromise",
    "rows_to_frame",
]
