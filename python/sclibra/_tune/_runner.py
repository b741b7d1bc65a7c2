"""Running trials: one trial (:func:`execute_trial`), local worker processes, or Ray Tune.

Every backend runs the same :func:`execute_trial`, which trains one configuration, scores it and
returns its row; a failing trial becomes a row with ``status="failed"`` and its error. The local
backend writes each row from the worker that trained it, before that worker starts its next
trial; the Ray backend writes rows from the driver as trials report them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sclibra._errors import SclibraError
from sclibra._fs import FolderLock, atomic_file
from sclibra._settings import begin_warnings_once, logger, usable_cores

from ._spaces import FIT_PARAMS, MODEL_PARAMS
from ._storage import TrialStore, atomic_write_json
from ._strategies import FileRungs, MemoryRungs, TrialSpec


@dataclass
class SearchData:
    """The data every trial trains on (pickled once per worker)."""

    a: Any
    b: Any = None
    data_kwargs: dict = field(default_factory=dict)  # mod_a, mod_b, layer_a, ... for LIBRA.fit
    cells: list | None = None  # the search cells (training cells of the user's split)
    references: dict[str, np.ndarray] | None = None  # reference labels aligned to ``cells``

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("a", "b"):
            obj = state[key]
            if getattr(obj, "isbacked", False):  # a backed AnnData: re-open it from its file
                state[key] = _BackedRef(str(obj.filename))
        return state

    def __setstate__(self, state):
        for key in ("a", "b"):
            if isinstance(state[key], _BackedRef):
                state[key] = state[key].open()
        self.__dict__.update(state)


@dataclass
class _BackedRef:
    filename: str

    def open(self):
        import anndata

        return anndata.read_h5ad(self.filename, backed="r")


@dataclass
class SearchJob:
    """Everything a worker needs besides the trial itself."""

    data: SearchData
    fit_kwargs: dict
    objective: str
    seed: int | None
    rungs: list[int]
    eta: float
    out_dir: str
    trainer: Callable
    save_models: bool = False
    save_latent: bool = False
    threads: int | None = None
    cluster_resolution: float = 1.0


class TrialContext:
    """What a trainer gets: the configuration, the data and the ASHA reporting hook.

    A trainer is ``trainer(ctx) -> dict`` with at least ``val_loss`` and ``n_epochs``; it may add
    ``model`` (a trained :class:`sclibra.LIBRA`, used for integration metrics and saving) and any
    other numeric metric. It passes :attr:`callback` to ``LIBRA.fit`` (or calls :meth:`report`
    once per epoch itself) so that ASHA can stop it.
    """

    def __init__(self, spec: TrialSpec, job: SearchJob, rungs, device):
        self.spec = spec
        self.job = job
        self.trial_id = spec.trial_id
        self.params = dict(spec.params)
        self.data = job.data
        self.device = device
        self.model_kwargs = {k: v for k, v in self.params.items() if k in MODEL_PARAMS}
        self.model_kwargs.setdefault("n_models", 1)  # a trial scores one network
        self.model_kwargs["seed"] = job.seed
        self.model_kwargs["device"] = device
        self.fit_kwargs = dict(job.fit_kwargs)
        self.fit_kwargs.update({k: v for k, v in self.params.items() if k in FIT_PARAMS})
        self._rungs = list(job.rungs)
        self._rung_store = rungs
        self.pruned = False
        self.epochs = 0
        self.best_value = math.inf
        self.last_rung: int | None = None

    def report(self, epoch: int, value: float) -> bool:
        """Report the validation value after ``epoch``; returns True when the trial must stop."""
        self.epochs = max(self.epochs, int(epoch))
        if value is not None and math.isfinite(value):
            self.best_value = min(self.best_value, float(value))
        elif value is not None:
            self.best_value = math.nan if math.isinf(self.best_value) else self.best_value
        if self._rung_store is None or epoch not in self._rungs:
            return False
        self.last_rung = int(epoch)
        stop = self._rung_store.report(self.trial_id, int(epoch), float(self.best_value))
        if stop:
            self.pruned = True
        return stop

    def callback(self, model, epoch: int, train_loss: float, val_loss: float) -> bool:
        """A ``LIBRA.fit(callback=...)`` hook that reports to ASHA."""
        return self.report(epoch, val_loss)


def libra_trainer(ctx: TrialContext) -> dict:
    """The default trainer: fit :class:`sclibra.LIBRA` with the trial's configuration."""
    from sclibra._model import LIBRA

    data = ctx.data
    model = LIBRA(**ctx.model_kwargs)
    model.fit(
        data.a,
        data.b,
        train=data.cells,
        progress=False,
        callback=ctx.callback,
        **data.data_kwargs,
        **ctx.fit_kwargs,
    )
    out = {
        "val_loss": float(model.best_val_loss_),
        "n_epochs": int(model.n_epochs_),
        "model": model,
    }
    hist = getattr(model, "history", None)
    if hist is not None and len(hist):
        out["best_epoch"] = int(hist["epoch"].iloc[int(np.nanargmin(hist["val_loss"].to_numpy()))])
    if "batch_size" in ctx.params:
        out["batch_size_used"] = int(min(ctx.params["batch_size"], len(model.train_cells_)))
    return out


def execute_trial(job: SearchJob, spec: TrialSpec, rungs, device=None) -> dict:
    """Train and score one configuration; never raises for a trial's own failure."""
    if device is None:
        device = "cpu"
    row: dict[str, Any] = {
        "trial_id": spec.trial_id,
        "index": spec.index,
        "params": dict(spec.params),
        "device": str(device),
    }
    ctx = TrialContext(spec, job, rungs, device)
    t0 = time.perf_counter()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))  # one line per trial would drown the progress bar
    try:
        out = dict(job.trainer(ctx))
        model = out.pop("model", None)
        wants = job.objective in ("integration", "both") and not ctx.pruned
        if wants and model is not None and "ppji" not in out:
            out.update(integration_scores(model, job))
        if model is not None:
            _save_outputs(model, job, spec.trial_id)
        n_epochs = int(out.pop("n_epochs", ctx.epochs))
        metrics = {k: _num(v) for k, v in out.items()}
        row.update(status="pruned" if ctx.pruned else "ok", metrics=metrics, n_epochs=n_epochs)
        row["error"] = None
    except Exception as err:  # noqa: BLE001 - a failing trial is recorded, the search goes on
        row.update(status="failed", metrics={}, n_epochs=ctx.epochs)
        row["error"] = f"{type(err).__name__}: {err}"
        row["traceback"] = "".join(
            traceback.format_exception(type(err), err, err.__traceback__)[-6:]
        )
    finally:
        logger.setLevel(level)
    row["seconds"] = round(time.perf_counter() - t0, 4)
    row["rung"] = ctx.last_rung
    return row


def one_search_per_folder(fn):
    """Run ``fn`` (``tune``) holding the lock of its ``out_dir``: a second search on the same
    folder refuses, naming the running one; a lock left by a killed run is taken over.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out_dir = kwargs.get("out_dir")
        if out_dir is None:
            return fn(*args, **kwargs)
        existed = os.path.exists(out_dir)
        try:
            with FolderLock(out_dir, what="sclibra tune search"):
                return fn(*args, **kwargs)
        finally:
            if not existed:  # refused before any trial: leave no empty folder behind
                with contextlib.suppress(OSError):
                    os.rmdir(out_dir)

    return wrapper


def _num(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


def _save_outputs(model, job: SearchJob, trial_id: str) -> None:
    store = TrialStore(job.out_dir)
    if job.save_models:
        model.save(str(store.model_dir(trial_id)), overwrite=True)
    if job.save_latent:
        z, cells = search_latent(model, job.data)
        path = store.latent_path(trial_id)
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, latent=z, obs_names=np.asarray(cells, dtype=str))


def search_latent(model, data: SearchData):
    """Latent coordinates of the search cells (never the held-out test cells)."""
    from sclibra._data import as_matrix

    kw = data.data_kwargs
    z = model.get_latent(
        data.a, layer=kw.get("layer_a"), obsm=kw.get("obsm_a"), mod=kw.get("mod_a")
    )
    if data.cells is None:
        return np.asarray(z), None
    m = as_matrix(
        data.a, layer=kw.get("layer_a"), obsm=kw.get("obsm_a"), mod=kw.get("mod_a"), name="A"
    )
    pos = pd.Index(m.cells).get_indexer(pd.Index(data.cells))
    return np.asarray(z)[pos], list(data.cells)


def integration_scores(model, job: SearchJob) -> dict:
    """PPJI and ARI of Leiden clusters of the latent space against each reference partition.

    With several references (each modality clustered on its own), ``ppji`` / ``ari`` are their
    means and ``ppji_<name>`` / ``ari_<name>`` the single values.
    """
    from sclibra.metrics import cluster_latent, clustering_scores, ppji

    refs = job.data.references
    if not refs:
        raise SclibraError("an integration objective needs reference labels or clusterings")
    z, cells = search_latent(model, job.data)
    seed = 0 if job.seed is None else job.seed
    clusters = cluster_latent(z, resolution=job.cluster_resolution, seed=seed, cells=cells)
    out: dict[str, float] = {"n_clusters": float(clusters.nunique())}
    values: dict[str, list[float]] = {"ppji": [], "ari": []}
    for name, labels in refs.items():
        ref = pd.Series(np.asarray(labels), index=clusters.index)
        p = float(ppji(ref, clusters))
        r = float(clustering_scores(clusters, ref)["ari"])
        values["ppji"].append(p)
        values["ari"].append(r)
        if len(refs) > 1:
            out[f"ppji_{name}"], out[f"ari_{name}"] = p, r
    out["ppji"] = float(np.mean(values["ppji"]))
    out["ari"] = float(np.mean(values["ari"]))
    return out


# -- devices and threads ------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may run on (see :func:`sclibra._settings.usable_cores`)."""
    return usable_cores()


def trial_devices(device) -> list[str]:
    """Devices trials are placed on: every visible GPU in turn when ``device`` is auto/cuda."""
    from sclibra._settings import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda"]
    return [str(dev)]


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(int(n))


# -- local backend ------------------------------------------------------------------------------
_WORKER_JOB: SearchJob | None = None


def _init_worker(job: SearchJob) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    _set_threads(job.threads)
    # a worker runs trials of one search only: it says each repeated warning once
    begin_warnings_once()


def _worker_run(spec: TrialSpec, device: str) -> dict:
    job = _WORKER_JOB
    store = TrialStore(job.out_dir)
    marker = store.running_path(spec.trial_id)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(str(os.getpid()))  # tells the parent which trials a dead worker held
    rungs = FileRungs(store.rungs_path, job.eta) if job.rungs else None
    row = execute_trial(job, spec, rungs, device)
    store.write_row(row)  # durable before this worker takes its next trial
    marker.unlink(missing_ok=True)
    return row


def failed_row(spec: TrialSpec, device: str, error: str) -> dict:
    """The row of a trial that could not report itself (its process died)."""
    return {
        "trial_id": spec.trial_id,
        "index": spec.index,
        "params": dict(spec.params),
        "status": "failed",
        "metrics": {},
        "n_epochs": 0,
        "seconds": 0.0,
        "rung": None,
        "device": device,
        "error": error,
    }


_DEAD_WORKER = "the worker process running this trial died (killed, crashed or out of memory)"


def _run_pool(job, specs, n_workers, devices, on_row) -> set[str] | None:
    """Run ``specs`` in a pool of spawned workers; return None, or the ids of the trials that
    were running when a worker died (the pool is then gone).
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    store = TrialStore(job.out_dir)
    pool = ProcessPoolExecutor(
        max_workers=min(n_workers, len(specs)),
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(job,),
    )
    futures = [pool.submit(_worker_run, s, devices[s.index % len(devices)]) for s in specs]
    broken = False
    try:
        not_done = set(futures)
        while not_done and not broken:
            done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    on_row(fut.result())
                except BrokenProcessPool:
                    broken = True
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    if not broken:
        return None
    finished = store.finished()
    running = set()
    for p in store.running_dir.glob("*"):
        if p.name not in finished:
            running.add(p.name)
        p.unlink(missing_ok=True)
    return running


def run_local(
    job: SearchJob,
    pending: list[TrialSpec],
    *,
    n_jobs: int,
    devices: list[str],
    on_row: Callable[[dict], None],
) -> None:
    """Run ``pending`` trials in this process (``n_jobs=1``) or in spawned worker processes.

    When a worker process dies (killed, crashed, out of memory), the trials it may have been
    running are retried one at a time in a fresh worker; one that kills its worker again is
    recorded as failed, and the search goes on with the others.
    """
    store = TrialStore(job.out_dir)
    if n_jobs == 1:
        rungs = FileRungs(store.rungs_path, job.eta) if job.rungs else None
        import torch

        old = torch.get_num_threads()
        _set_threads(job.threads)
        try:
            for spec in pending:
                row = execute_trial(job, spec, rungs, devices[spec.index % len(devices)])
                store.write_row(row)
                on_row(row)
        finally:
            torch.set_num_threads(old)
        return

    if store.running_dir.exists():  # markers left by workers of an interrupted run
        for p in store.running_dir.glob("*"):
            p.unlink(missing_ok=True)
    todo = list(pending)
    while todo:
        suspects = _run_pool(job, todo, n_jobs, devices, on_row)
        if suspects is None:
            return
        logger.warning(
            "a worker process died while running %d trial(s); retrying them one at a time",
            len(suspects),
        )
        for spec in [s for s in todo if s.trial_id in suspects]:
            if _run_pool(job, [spec], 1, devices, on_row) is not None:
                row = failed_row(spec, devices[spec.index % len(devices)], _DEAD_WORKER)
                store.write_row(row)
                on_row(row)
        finished = store.finished()
        todo = [s for s in todo if s.trial_id not in finished]


# -- Ray backend --------------------------------------------------------------------------------
def _ray_trial(config, job=None, specs=None, rungs=None):
    from ray import tune as rtune

    spec = specs[config["trial_id"]]
    _set_threads(job.threads)
    device = "cpu"
    try:
        import torch

        if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") != "":
            device = "cuda"
    except ImportError:  # pragma: no cover
        pass
    store = _ActorRungs(rungs) if rungs is not None else None
    row = execute_trial(job, spec, store, device)
    rtune.report({"row": row, "done_trial": True})


class _ActorRungs:
    def __init__(self, actor):
        self.actor = actor

    def report(self, trial, rung, value):
        import ray

        return ray.get(self.actor.report.remote(trial, rung, value))


def run_ray(
    job: SearchJob,
    pending: list[TrialSpec],
    *,
    n_jobs: int,
    gpus_per_trial: float,
    address: str | None,
    on_row: Callable[[dict], None],
) -> None:
    """Run ``pending`` trials through Ray Tune; the driver writes each row as it is reported."""
    try:
        import ray
        from ray import tune as rtune
    except ImportError as err:
        raise SclibraError(
            "backend='ray' needs Ray Tune: pip install 'sclibra[ray]' (or 'ray[tune]')"
        ) from err
    import tempfile

    store = TrialStore(job.out_dir)
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is not None:
            kw["address"] = address
        else:
            kw["num_cpus"] = max(1, available_cpus())
        ray.init(**kw)
        started = True

    class _RowWriter(rtune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = result.get("row")
            if isinstance(row, dict) and row.get("status"):
                store.write_row(row)
                on_row(row)

    actor, records = None, []
    try:
        if job.rungs:
            records = FileRungs(store.rungs_path, job.eta)._read()
            actor = ray.remote(MemoryRungs).remote(job.eta, records)
        trainable = rtune.with_parameters(
            _ray_trial, job=job, specs={s.trial_id: s for s in pending}, rungs=actor
        )
        trainable = rtune.with_resources(
            trainable, {"cpu": max(1, job.threads or 1), "gpu": gpus_per_trial}
        )
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment tables on stdout
        with tempfile.TemporaryDirectory(prefix="sclibra-ray-") as tmp:
            tuner = rtune.Tuner(
                trainable,
                param_space={"trial_id": rtune.grid_search([s.trial_id for s in pending])},
                tune_config=rtune.TuneConfig(
                    num_samples=1, max_concurrent_trials=n_jobs, reuse_actors=True
                ),
                run_config=rtune.RunConfig(
                    name="sclibra", storage_path=tmp, callbacks=[_RowWriter()], verbose=0
                ),
            )
            grid = tuner.fit()
            for res in grid:  # a trial that crashed outside execute_trial (a dead Ray worker)
                if res.error is not None:
                    tid = (res.config or {}).get("trial_id")
                    if tid and tid not in store.finished():
                        spec = {s.trial_id: s for s in pending}[tid]
                        row = failed_row(spec, "ray", f"Ray trial error: {res.error}")
                        store.write_row(row)
                        on_row(row)
    finally:
        if actor is not None:  # keep the rung records for a resume
            try:
                new = ray.get(actor.records.remote())
                FileRungs(store.rungs_path, job.eta).extend(new[len(records) :])
            except Exception as err:  # noqa: BLE001  # pragma: no cover - Ray already gone
                logger.debug("could not save ASHA rung records: %s", err)
        if started:
            ray.shutdown()


__all__ = [
    "SearchData",
    "SearchJob",
    "TrialContext",
    "execute_trial",
    "libra_trainer",
    "run_local",
    "run_ray",
    "atomic_write_json",
]
