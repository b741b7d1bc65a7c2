"""The outcome of a search: :class:`TuneResult`, selection rules, and plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from sclibra._errors import SclibraError

from ._storage import TrialStore, atomic_write_text

#: direction of each objective metric
MINIMISE = ("val_loss",)
MAXIMISE = ("ppji", "ari")
#: the metric that ranks trials for each objective (``both`` uses the Pareto front)
PRIMARY = {"prediction": "val_loss", "integration": "ppji"}
_FIRST_COLUMNS = ("trial_id", "index", "status")
_LAST_COLUMNS = ("n_epochs", "seconds", "rung", "device", "error")


def rows_to_frame(rows: list[dict], param_names: list[str] | None = None) -> pd.DataFrame:
    """The tidy table: one row per trial, hyperparameters and metrics as columns."""
    records = []
    for row in rows:
        rec = {k: row.get(k) for k in _FIRST_COLUMNS}
        rec.update(row.get("params", {}))
        rec.update(row.get("metrics", {}))
        for k in _LAST_COLUMNS:
            rec[k] = row.get(k)
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        cols = list(_FIRST_COLUMNS) + list(param_names or []) + ["val_loss"] + list(_LAST_COLUMNS)
        return pd.DataFrame(columns=cols)
    df = df.sort_values("index", kind="stable").reset_index(drop=True)
    params = [c for c in (param_names or []) if c in df.columns]
    metrics = [c for c in df.columns if c not in _FIRST_COLUMNS + _LAST_COLUMNS and c not in params]
    df = df[list(_FIRST_COLUMNS) + params + metrics + list(_LAST_COLUMNS)]
    for c in ("val_loss", "ppji", "ari"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def pareto_mask(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """Rows of ``values`` (n x k) not dominated by any other row.

    Row ``i`` is dominated when some row is at least as good in every column and strictly better
    in one. ``maximise[j]`` says whether column ``j`` is better high. Rows with a non-finite value
    are never on the front.
    """
    v = np.asarray(values, dtype=float).copy()
    if v.ndim != 2 or v.shape[1] != len(maximise):
        raise SclibraError("pareto_mask needs an n x k array and k directions")
    for j, up in enumerate(maximise):
        if up:
            v[:, j] = -v[:, j]  # now everything is minimised
    finite = np.isfinite(v).all(axis=1)
    mask = finite.copy()
    for i in np.flatnonzero(finite):
        others = v[finite]
        dominated = np.any(np.all(others <= v[i], axis=1) & np.any(others < v[i], axis=1))
        mask[i] = not dominated
    return mask


def compromise(front: pd.DataFrame) -> int:
    """The documented single choice on the prediction–integration front.

    Each objective is rescaled to [0, 1] over the front (0 = the best value on the front); the
    choice is the trial closest (Euclidean) to the ideal point (0, 0), ties broken by the lower
    validation loss. With one trial on the front, that trial.
    """
    if front.empty:
        raise SclibraError("the Pareto front is empty (no finished trial has both metrics)")
    loss = front["val_loss"].to_numpy(float)
    ppji = front["ppji"].to_numpy(float)

    def scale(x):
        span = np.nanmax(x) - np.nanmin(x)
        return np.zeros_like(x) if span == 0 else (x - np.nanmin(x)) / span

    d = np.hypot(scale(loss), 1.0 - scale(ppji))
    order = np.lexsort((loss, d))
    return int(front.index[order[0]])


class TuneResult:
    """Trials of an aLIBRA search, the selected configuration(s) and the selected model.

    Attributes
    ----------
    trials
        Tidy table: ``trial_id``, ``index``, ``status`` (``ok``, ``pruned`` or ``failed``), one
        column per hyperparameter, the metrics (``val_loss``: validation MSE of modality B on
        cells held out from training inside the search cells; ``ppji`` / ``ari`` for integration;
        ``batch_size_used`` where a batch was larger than the training cells), ``n_epochs``
        (epochs trained), ``seconds``, ``rung`` (last ASHA rung reached), ``device``, ``error``.
    objective
        ``"prediction"``, ``"integration"`` or ``"both"``.
    out_dir
        Folder holding the durable trial records.
    """

    def __init__(
        self,
        trials: pd.DataFrame,
        objective: str,
        param_names: list[str],
        out_dir: str | os.PathLike | None = None,
        definition: dict | None = None,
        refit=None,
    ):
        self.trials = trials
        self.objective = objective
        self.param_names = list(param_names)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.definition = definition or {}
        self._refit = refit
        self._models: dict[str, object] = {}

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> TuneResult:
        """Read a search's trials from ``out_dir`` (models only if they were saved)."""
        store = TrialStore(out_dir)
        d = store.read_definition()
        if d is None:
            raise SclibraError(f"{out_dir} does not hold a sclibra search (no search.json)")
        definition = d.get("definition", {})
        params = list(definition.get("space", {}))
        rows = list(store.finished().values())
        return cls(
            rows_to_frame(rows, params),
            definition.get("objective", "prediction"),
            params,
            out_dir,
            definition,
        )

    # -- selection ----------------------------------------------------------------------------
    @property
    def completed(self) -> pd.DataFrame:
        """Trials that trained to completion (not pruned, not failed)."""
        return self.trials[self.trials["status"] == "ok"]

    def _ranked(self, metric: str) -> pd.DataFrame:
        ok = self.completed
        if metric not in ok.columns or ok[metric].notna().sum() == 0:
            raise SclibraError(
                f"no completed trial has {metric!r} (statuses: "
                f"{self.trials['status'].value_counts().to_dict()}); see result.trials['error']"
            )
        ok = ok[ok[metric].notna()]
        ascending = metric not in MAXIMISE
        return ok.sort_values([metric, "index"], ascending=[ascending, True], kind="stable")

    @property
    def pareto_front(self) -> pd.DataFrame:
        """Completed trials on the prediction–integration Pareto front, by validation loss."""
        ok = self.completed
        if "ppji" not in ok.columns:
            raise SclibraError("the Pareto front needs integration metrics: use objective='both'")
        mask = pareto_mask(ok[["val_loss", "ppji"]].to_numpy(float), [False, True])
        return ok[mask].sort_values("val_loss", kind="stable")

    @property
    def best_trial(self) -> pd.Series:
        """The selected trial: lowest ``val_loss`` (prediction), highest ``ppji`` (integration),
        or the compromise point of the Pareto front (both; see :func:`compromise`).
        """
        if self.objective == "both":
            return self.trials.loc[compromise(self.pareto_front)]
        return self._ranked(PRIMARY[self.objective]).iloc[0]

    def best_trials(self) -> dict[str, pd.Series]:
        """The best trial per criterion: ``prediction``, ``integration`` (when measured), and
        ``both`` (when both are measured).
        """
        out = {"prediction": self._ranked("val_loss").iloc[0]}
        if "ppji" in self.trials.columns and self.trials["ppji"].notna().any():
            out["integration"] = self._ranked("ppji").iloc[0]
            out["both"] = self.trials.loc[compromise(self.pareto_front)]
        return out

    def _config(self, row: pd.Series) -> dict:
        cfg = {}
        for k in self.param_names:
            v = row[k]
            cfg[k] = v.item() if isinstance(v, np.generic) else v
        return cfg

    @property
    def best_config(self) -> dict:
        """Hyperparameters of :attr:`best_trial`."""
        return self._config(self.best_trial)

    @property
    def best_configs(self) -> dict[str, dict]:
        """Hyperparameters of :meth:`best_trials`, by criterion."""
        return {k: self._config(r) for k, r in self.best_trials().items()}

    @property
    def best_model(self):
        """The selected model, trained and ready (see :meth:`get_model`)."""
        return self.get_model()

    def get_model(self, which: str | None = None):
        """The trained model of the best trial for ``which`` (default: the search's objective).

        Loaded from the search folder when it was saved (``save_models=True`` or an earlier
        refit), otherwise trained again on the search cells with the trial's configuration and
        seed (the same training as in the search) and saved to ``out_dir/best_model``.
        """
        which = which or self.objective
        row = self.best_trial if which == self.objective else self.best_trials()[which]
        tid = row["trial_id"]
        if tid in self._models:
            return self._models[tid]
        from sclibra._model import LIBRA

        model = None
        if self.out_dir is not None:
            store = TrialStore(self.out_dir)
            for d in (store.best_dir / tid, store.model_dir(tid)):
                if (d / "model.pt").exists() or (d.is_dir() and any(d.iterdir())):
                    model = LIBRA.load(str(d))
                    break
        if model is None:
            if self._refit is None:
                raise SclibraError(
                    f"the model of trial {tid} was not saved; run the search with save_models=True "
                    "or use the TuneResult returned by sclibra.tune() to train it"
                )
            model = self._refit(tid)
            if self.out_dir is not None:
                model.save(str(TrialStore(self.out_dir).best_dir / tid), overwrite=True)
        self._models[tid] = model
        return model

    # -- output -------------------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write :attr:`trials` to ``path`` (atomically; refuses to replace a file unless asked)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise SclibraError(f"{path} exists; pass overwrite=True to replace it")
        atomic_write_text(path, self.trials.to_csv(index=False))

    def summary(self) -> str:
        counts = self.trials["status"].value_counts().to_dict() if len(self.trials) else {}
        lines = [
            f"aLIBRA search ({self.objective}): {len(self.trials)} trials "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
            f"epochs trained: {int(self.trials['n_epochs'].fillna(0).sum()) if len(self.trials) else 0}",
        ]
        try:
            best = self.best_trial
            metrics = ", ".join(
                f"{m}={best[m]:.5g}"
                for m in ("val_loss", "ppji", "ari")
                if m in best and pd.notna(best[m])
            )
            lines.append(f"best: {json.dumps(self._config(best), default=str)} ({metrics})")
        except SclibraError:
            lines.append("best: none (no completed trial)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "TuneResult\n" + self.summary()

    # -- plots --------------------------------------------------------------------------------
    def plot_hyperparameters(
        self, metric: str | None = None, *, include_pruned: bool = False, ncols: int = 3
    ):
        """Metric against each searched hyperparameter (one panel each); returns the Figure.

        Every trial is a point (jittered for discrete values) and the median per value is a line.
        """
        import matplotlib.pyplot as plt

        metric = metric or PRIMARY.get(self.objective, "val_loss")
        df = self.trials if include_pruned else self.completed
        df = df[df["status"] != "failed"]
        if metric not in df.columns:
            raise SclibraError(f"no metric {metric!r} in the trials; have {list(df.columns)}")
        params = [p for p in self.param_names if p in df.columns and df[p].nunique(dropna=True) > 1]
        params = params or [p for p in self.param_names if p in df.columns]
        n = max(1, len(params))
        ncols = min(ncols, n)
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
        rng = np.random.default_rng(0)
        for ax, p in zip(axes.flat, params):
            x = df[p]
            y = df[metric].to_numpy(float)
            if pd.api.types.is_numeric_dtype(x) and x.nunique() > 8:
                ax.scatter(x.to_numpy(float), y, s=12, alpha=0.7)
                if x.min() > 0 and x.max() / x.min() > 50:
                    ax.set_xscale("log")
            else:
                cats = sorted(x.dropna().unique(), key=lambda v: (isinstance(v, str), v))
                pos = {c: i for i, c in enumerate(cats)}
                xi = np.array([pos.get(v, np.nan) for v in x], dtype=float)
                ax.scatter(xi + rng.uniform(-0.15, 0.15, len(xi)), y, s=12, alpha=0.7)
                med = [
                    np.nanmedian(y[xi == i]) if np.any(xi == i) else np.nan
                    for i in range(len(cats))
                ]
                ax.plot(range(len(cats)), med, color="black", lw=1)
                ax.set_xticks(range(len(cats)))
                ax.set_xticklabels([str(c) for c in cats], rotation=45 if len(cats) > 5 else 0)
            ax.set_xlabel(p)
            ax.set_ylabel(metric)
        for ax in list(axes.flat)[len(params) :]:
            ax.set_visible(False)
        fig.suptitle(f"aLIBRA: {metric} by hyperparameter ({len(df)} trials)")
        fig.tight_layout()
        return fig

    def plot_pareto(self, ax=None):
        """Validation loss against PPJI for completed trials, with the Pareto front and the
        selected compromise marked; returns the Axes.
        """
        import matplotlib.pyplot as plt

        front = self.pareto_front
        ok = self.completed
        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 4))
        ax.scatter(ok["val_loss"], ok["ppji"], s=14, color="0.6", label="trials")
        ax.plot(front["val_loss"], front["ppji"], "o-", color="C3", ms=5, label="Pareto front")
        best = self.trials.loc[compromise(front)]
        ax.scatter(
            [best["val_loss"]],
            [best["ppji"]],
            s=120,
            facecolors="none",
            edgecolors="C0",
            linewidths=2,
            label="selected",
        )
        ax.set_xlabel("validation MSE (prediction, lower is better)")
        ax.set_ylabel("PPJI (integration, higher is better)")
        ax.legend(frameon=False, fontsize=8)
        return ax
