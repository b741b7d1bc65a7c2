"""Durable storage of a search: one JSON row per finished trial, written atomically.

Layout of an output folder::

    out_dir/
        search.json          the search definition and its fingerprint (resume refuses another search)
        trials/<id>.json     one row per finished trial (ok, pruned or failed), written atomically
        rungs.jsonl          ASHA rung records (append-only; a torn last line is ignored)
        models/<id>/         trained models (save_models=True)
        latents/<id>.npz     latent spaces of the search cells (save_latent=True)
        best_model/          the selected model, trained again after the search (refit=True)
        trials.csv           the table of all trials, rewritten at the end of a run
        running/<id>         markers of trials being trained by local worker processes
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sclibra._errors import SclibraError
from sclibra._fs import write_text

SEARCH_FILE = "search.json"
TRIALS_DIR = "trials"
RUNGS_FILE = "rungs.jsonl"
MODELS_DIR = "models"
LATENTS_DIR = "latents"
BEST_DIR = "best_model"
TABLE_FILE = "trials.csv"
RUNNING_DIR = "running"
_OURS = (
    SEARCH_FILE,
    TRIALS_DIR,
    RUNGS_FILE,
    MODELS_DIR,
    LATENTS_DIR,
    BEST_DIR,
    TABLE_FILE,
    RUNNING_DIR,
)

FINISHED = ("ok", "pruned", "failed")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def fingerprint(definition: dict) -> str:
    """A short hash of a search definition (what must match for a resume)."""
    return hashlib.sha1(canonical_json(definition).encode()).hexdigest()[:16]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`sclibra._fs.write_text`)."""
    write_text(path, text)


def atomic_write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default))


class TrialStore:
    """Reads and writes the trials of one search in ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir)

    # -- paths --------------------------------------------------------------------------------
    @property
    def trials_dir(self) -> Path:
        return self.root / TRIALS_DIR

    @property
    def rungs_path(self) -> Path:
        return self.root / RUNGS_FILE

    def row_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.json"

    @property
    def running_dir(self) -> Path:
        return self.root / RUNNING_DIR

    def running_path(self, trial_id: str) -> Path:
        return self.running_dir / trial_id

    def model_dir(self, trial_id: str) -> Path:
        return self.root / MODELS_DIR / trial_id

    def latent_path(self, trial_id: str) -> Path:
        return self.root / LATENTS_DIR / f"{trial_id}.npz"

    @property
    def best_dir(self) -> Path:
        return self.root / BEST_DIR

    @property
    def table_path(self) -> Path:
        return self.root / TABLE_FILE

    # -- search definition --------------------------------------------------------------------
    def read_definition(self) -> dict | None:
        p = self.root / SEARCH_FILE
        if not p.exists():
            return None
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)

    def prepare(self, definition: dict, *, overwrite: bool = False) -> dict[str, dict]:
        """Create or reopen the folder for ``definition``; return the finished rows by trial id.

        A folder holding a different search is refused unless ``overwrite=True``, which removes
        the previous search's files (only the files a search writes; nothing else in the folder).
        """
        fp = fingerprint(definition)
        old = self.read_definition()
        if old is not None and old.get("fingerprint") != fp:
            if not overwrite:
                diffs = _differences(old.get("definition", {}), definition)
                raise SclibraError(
                    f"{self.root} holds a different search (differs in: {', '.join(diffs) or 'data'}); "
                    "pass overwrite=True to replace it, or choose another out_dir"
                )
            self.clear()
        elif old is None and self.trials_dir.exists() and any(self.trials_dir.iterdir()):
            if not overwrite:
                raise SclibraError(
                    f"{self.root} has trial files but no {SEARCH_FILE}; pass overwrite=True to replace them"
                )
            self.clear()
        elif old is not None and overwrite:
            self.clear()
        self.root.mkdir(parents=True, exist_ok=True)
        self.trials_dir.mkdir(exist_ok=True)
        if self.read_definition() is None:
            atomic_write_json(
                self.root / SEARCH_FILE, {"fingerprint": fp, "definition": definition}
            )
        return self.finished()

    def clear(self) -> None:
        for name in _OURS:
            p = self.root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    # -- rows ---------------------------------------------------------------------------------
    def write_row(self, row: dict) -> None:
        atomic_write_json(self.row_path(row["trial_id"]), row)

    def finished(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if not self.trials_dir.exists():
            return rows
        for p in sorted(self.trials_dir.glob("*.json")):
            try:
                with open(p, encoding="utf-8") as fh:
                    row = json.load(fh)
            except (OSError, json.JSONDecodeError):
                continue  # cannot happen with atomic writes, but never crash a resume on it
            if row.get("status") in FINISHED:
                rows[row["trial_id"]] = row
        return rows


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if canonical_json(old.get(k)) != canonical_json(new.get(k))]
