"""Search strategies: exhaustive grid, random sampling, and ASHA early stopping.

ASHA (asynchronous successive halving; Li et al., MLSys 2020) is implemented in its "stopping"
form: every trial trains in one go, and at each *rung* (``grace_period * eta**k`` epochs) it
reports its best validation value so far; it goes on only if that value is in the top ``1/eta``
of the values recorded at that rung by all trials so far. Nothing has to be checkpointed and
resumed, so it works the same in local worker processes and on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sclibra._errors import SclibraError

from ._spaces import SearchSpace
from ._storage import canonical_json

STRATEGIES = ("grid", "random", "asha")


@dataclass(frozen=True)
class TrialSpec:
    """One configuration to train: a stable id (hash of its parameters), its index and parameters."""

    trial_id: str
    index: int
    params: dict


def trial_id(params: dict) -> str:
    return "t" + hashlib.sha1(canonical_json(params).encode()).hexdigest()[:10]


def make_trials(
    space: SearchSpace, strategy: str, n_trials: int | None, seed: int
) -> list[TrialSpec]:
    """The trials of a search, in a deterministic order.

    ``grid`` enumerates every combination; ``random`` and ``asha`` draw ``n_trials``
    configurations (without replacement from a finite space; all of it, shuffled, when
    ``n_trials`` is None for ``asha``). The order for a given ``seed`` does not depend on
    ``n_trials``, so a larger ``n_trials`` extends an earlier search rather than replacing it.
    """
    if strategy not in STRATEGIES:
        raise SclibraError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if n_trials is not None:
        if (
            isinstance(n_trials, bool)
            or not isinstance(n_trials, (int, np.integer))
            or n_trials < 1
        ):
            raise SclibraError(f"n_trials must be a positive integer, got {n_trials!r}")
        n_trials = int(n_trials)
    if strategy == "grid":
        if n_trials is not None:
            raise SclibraError(
                "n_trials does not apply to strategy='grid' (it trains every combination); "
                "use strategy='random' or 'asha' to train a subset"
            )
        configs = space.grid()
    else:
        rng = np.random.default_rng(seed)
        if space.is_finite:
            grid = space.grid()
            order = rng.permutation(len(grid))
            if n_trials is None:
                if strategy == "random":
                    raise SclibraError("strategy='random' needs n_trials")
                n_trials = len(grid)
            configs = [grid[i] for i in order[: min(n_trials, len(grid))]]
        else:
            if n_trials is None:
                raise SclibraError(
                    f"strategy={strategy!r} on a space with distributions needs n_trials"
                )
            configs, seen = [], set()
            tries = 0
            while len(configs) < n_trials and tries < 100 * n_trials:
                c = space.sample(rng)
                tries += 1
                key = canonical_json(c)
                if key not in seen:
                    seen.add(key)
                    configs.append(c)
    return [TrialSpec(trial_id(c), i, c) for i, c in enumerate(configs)]


def rung_epochs(grace_period: int, eta: float, max_epochs: int) -> list[int]:
    """Epochs at which ASHA compares trials: ``grace_period * eta**k`` below ``max_epochs``."""
    if grace_period < 1:
        raise SclibraError(f"grace_period must be >= 1 epoch, got {grace_period}")
    if eta <= 1:
        raise SclibraError(f"eta (the reduction factor) must be > 1, got {eta}")
    rungs, r = [], float(grace_period)
    while round(r) < max_epochs:
        if not rungs or round(r) > rungs[-1]:
            rungs.append(int(round(r)))
        r *= eta
    return rungs


def asha_continue(value: float, others: list[float], eta: float) -> bool:
    """Whether a trial with ``value`` (lower is better) is in the top ``1/eta`` at its rung.

    ``others`` are the values other trials recorded at the same rung. A non-finite value
    (a diverged trial) never continues.
    """
    if not math.isfinite(value):
        return False
    vals = sorted([v for v in others if math.isfinite(v)] + [value])
    k = max(1, math.ceil(len(vals) / eta))
    return value <= vals[k - 1]


class FileRungs:
    """ASHA rung records shared by local worker processes through an append-only file."""

    def __init__(self, path: str | os.PathLike, eta: float):
        self.path = Path(path)
        self.eta = eta

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn line from a killed process
        return out

    def report(self, trial: str, rung: int, value: float) -> bool:
        """Record ``value`` of ``trial`` at ``rung``; return True when the trial should stop."""
        with open(self.path, "a+", encoding="utf-8") as fh:
            with _locked(fh):
                others: dict[str, float] = {}
                for rec in self._read():
                    if rec.get("rung") == rung and rec.get("trial") != trial:
                        others[rec["trial"]] = float(rec["value"])
                go_on = asha_continue(value, list(others.values()), self.eta)
                fh.write(json.dumps({"trial": trial, "rung": rung, "value": value}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return not go_on

    def extend(self, records: list[dict]) -> None:
        """Append records (e.g. those a Ray actor collected) to the file."""
        if not records:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            with _locked(fh):
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


class MemoryRungs:
    """The same records in memory (one process, or inside a Ray actor)."""

    def __init__(self, eta: float, records: list[dict] | None = None):
        self.eta = eta
        self.values: dict[int, dict[str, float]] = {}
        self._records: list[dict] = []
        for rec in records or []:
            self.values.setdefault(rec["rung"], {})[rec["trial"]] = float(rec["value"])
            self._records.append(rec)

    def records(self) -> list[dict]:
        return list(self._records)

    def report(self, trial: str, rung: int, value: float) -> bool:
        at = self.values.setdefault(rung, {})
        others = [v for t, v in at.items() if t != trial]
        at[trial] = float(value)
        self._records.append({"trial": trial, "rung": rung, "value": float(value)})
        return not asha_continue(value, others, self.eta)


@contextlib.contextmanager
def _locked(fh):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: best effort without a lock
        yield
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
