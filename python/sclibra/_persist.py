"""The saved-model folder: what :meth:`LIBRA.save` writes and :meth:`LIBRA.load` checks.

Layout (format 6)::

    model/
        config.json            format, versions, hyperparameters, training summary
        features.json          feature names of both modalities, in training order
        weights.pt             the network's tensors (state dict; read with weights_only=True)
        b_encoder.pt           the optional B -> latent network (nn_consistency)
        history.csv            training history (optional)
        b_encoder_history.csv  its history (optional)
        cells.json             training and validation cell names (optional)
        manifest.json          sha256 and size of every file above, checked on load

Format 6 added ``fit_params`` to ``config.json`` (the schedule the model trained with: the
recipe's fit arguments, given or the preset's); earlier files load without it. Format 5 added
``latent_pcs_used`` to ``config.json`` (the input PCs the latent regulariser predicted;
``latent_pcs = 0`` now means "from the loss", which an older sclibra would refuse; earlier files
used ``latent_pcs`` itself) and ``members_at_mean`` (the ensemble members that predict the
training mean, ``mean_fallback``; their weights already do). Format 4 added
``output_rank_used`` to ``config.json`` (the rank of the output layer, 0 for a full layer;
earlier files used the rank-limited layer for targets wider than 10,000 features, the threshold
is now 1,000, so the rank is recorded instead of re-derived). Format 3 added ``input_pcs`` (the
input PCA's width; its weights are in ``weights.pt``); format 2 (sclibra 0.2.0 before it) is the
same without it and format 1 (sclibra 0.1.0) also without ``manifest.json``; both still load. A
recipe argument missing from an older file's hyperparameters takes its sclibra 0.1.0 value (the
feature did not exist). Every problem in a model folder raises
:class:`~sclibra.ModelFileError` naming the file; an unreadable optional file only warns.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._errors import ModelFileError, format_names
from ._fs import PARTIAL_MARKER, recover_dir, replace_dir, write_file

FORMAT = "sclibra.LIBRA"
FORMAT_VERSION = 6
MANIFEST = "manifest.json"
REQUIRED_FILES = ("config.json", "features.json", "weights.pt")
OPTIONAL_FILES = ("cells.json", "history.csv", "b_encoder.pt", "b_encoder_history.csv")
MODEL_FILES = (*REQUIRED_FILES, *OPTIONAL_FILES, MANIFEST)

#: keys of config.json: name -> (accepted types, required)
_INT = (int,)
_NUM = (int, float)
META_KEYS = {
    "format": ((str,), True),
    "format_version": (_INT, True),
    "config": ((dict,), True),
    "n_input": (_INT, True),
    "n_output": (_INT, True),
    "sclibra_version": ((str,), False),
    "torch_version": ((str,), False),
    "output_activation_": ((str, type(None)), False),
    "modality_names": ((list,), False),
    "n_epochs": (_INT, False),
    "best_val_loss": ((*_NUM, type(None)), False),
    "stopped_by": ((str, type(None)), False),
    "seed_used": ((int, type(None)), False),
    "has_b_encoder": ((bool,), False),
    "n_members": (_INT, False),
    "loss_": ((str,), False),
    "input_pcs": (_INT, False),
    "output_rank_used": (_INT, False),
    "latent_pcs_used": (_INT, False),
    "members_at_mean": ((list,), False),
    "fit_params": ((dict, type(None)), False),
}


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _torch_bytes(module) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    return buf.getvalue()


def model_files(model) -> dict[str, bytes]:
    """The files of a saved model, in memory (written, fsynced and hashed by :func:`save`)."""
    import torch

    from . import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sclibra_version": __version__,
        "torch_version": torch.__version__,
        "config": model.config,
        "output_activation_": model.output_activation_,
        "n_input": len(model.features_a),
        "n_output": len(model.features_b),
        "modality_names": list(model.names_),
        "n_epochs": model.n_epochs_,
        "best_val_loss": model.best_val_loss_,
        "stopped_by": model.stopped_by_,
        "seed_used": model._seed_used,
        "has_b_encoder": model.b_encoder is not None,
        "n_members": len(getattr(model.module, "members", [None])),
        "loss_": model.loss_,
        "input_pcs": model.input_pcs_,
        "output_rank_used": model.output_rank_used_,
        "latent_pcs_used": model.latent_pcs_used_,
        "members_at_mean": list(model.members_at_mean_),
        "fit_params": model.fit_params_,
    }
    files = {
        "config.json": json.dumps(meta, indent=2, default=_json_default).encode(),
        "features.json": json.dumps(
            {"a": list(map(str, model.features_a)), "b": list(map(str, model.features_b))}
        ).encode(),
        "cells.json": json.dumps(
            {
                "train": list(map(str, model.train_cells_)),
                "validation": list(map(str, model.val_cells_)),
            }
        ).encode(),
        "weights.pt": _torch_bytes(model.module),
    }
    if model.b_encoder is not None:
        files["b_encoder.pt"] = _torch_bytes(model.b_encoder)
    if model.history is not None:
        files["history.csv"] = model.history.to_csv(index=False).encode()
    if model.b_encoder_history is not None:
        files["b_encoder_history.csv"] = model.b_encoder_history.to_csv(index=False).encode()
    files[MANIFEST] = json.dumps(
        {
            "format": FORMAT,
            "algorithm": "sha256",
            "files": {
                name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                for name, data in files.items()
            },
        },
        indent=1,
    ).encode()
    return files


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def foreign_entries(path: Path) -> list[str]:
    """Entries of an existing folder that saving a model there would delete (none: replaceable).

    An empty folder may be replaced; so may a sclibra model holding only model files. Anything
    else is named (all its entries when it is not a model at all).
    """
    entries = sorted(p.name for p in Path(path).iterdir())
    if not entries:
        return []
    if not _looks_like_model(Path(path)):
        return entries
    allowed = {*MODEL_FILES, PARTIAL_MARKER}
    return [e for e in entries if e not in allowed]


def _looks_like_model(path: Path) -> bool:
    try:
        meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def save(model, path, overwrite: bool = False) -> Path:
    """Write ``model`` to folder ``path`` (see :meth:`LIBRA.save`)."""
    files = model_files(model)

    def write(tmp: Path) -> None:
        for name, data in files.items():
            write_file(tmp / name, data)

    return replace_dir(path, write, overwrite=overwrite, owned=foreign_entries, what="model")


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
@dataclass
class ModelFolder:
    """The checked contents of a model folder (tensors not yet loaded into networks)."""

    path: Path
    meta: dict
    features_a: pd.Index
    features_b: pd.Index
    weights: dict
    b_encoder: dict | None = None
    history: pd.DataFrame | None = None
    b_encoder_history: pd.DataFrame | None = None
    cells: dict = field(default_factory=lambda: {"train": [], "validation": []})


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(v), type(v).__name__
    )


def _check_meta(meta, file: Path, hyperparameters) -> dict:
    if not isinstance(meta, dict):
        raise ModelFileError(f"{file}: must hold a JSON object, got {_kind(meta)}")
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{file}: not a sclibra LIBRA model (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{file}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{file}: saved with a newer model format ({version}; this sclibra reads up to "
            f"{FORMAT_VERSION}); upgrade sclibra"
        )
    missing = [k for k, (_, req) in META_KEYS.items() if req and k not in meta]
    if missing:
        raise ModelFileError(f"{file}: missing keys {format_names(missing)}")
    extra = [k for k in meta if k not in META_KEYS]
    if extra:
        raise ModelFileError(f"{file}: unknown keys {format_names(extra)}")
    for key, (types, _) in META_KEYS.items():
        if key not in meta:
            continue
        v = meta[key]
        bad = not isinstance(v, types) or (isinstance(v, bool) and bool not in types)
        if bad:
            raise ModelFileError(f"{file}: {key} has the wrong type ({_kind(v)}: {v!r})")
    for key in ("n_input", "n_output"):
        if meta[key] < 1:
            raise ModelFileError(f"{file}: {key} must be >= 1, got {meta[key]}")
    loss = meta.get("best_val_loss")
    if isinstance(loss, float) and math.isnan(loss):
        meta["best_val_loss"] = None
    names = meta.get("modality_names", ["A", "B"])
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{file}: modality_names must be two strings, got {names!r}")
    unknown = [k for k in meta["config"] if k not in hyperparameters]
    if unknown:
        raise ModelFileError(
            f"{file}: unknown hyperparameter {format_names(unknown)} (this sclibra knows "
            f"{format_names(sorted(hyperparameters), 20)})"
        )
    return meta


def _read_json(file: Path, data: bytes):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{file}: not valid JSON ({err})") from None


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{file}: cannot read it ({err.strerror or err})") from None


def _verify(path: Path, data: dict[str, bytes], version: int) -> dict:
    """Check files against manifest.json; return the manifest's table (empty for format 1)."""
    if version < 2:
        return {}
    file = path / MANIFEST
    if not file.is_file():
        raise ModelFileError(f"{file}: missing (format {version} models list their checksums)")
    manifest = _read_json(file, _read_bytes(file))
    table = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(table, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in table.values()
    ):
        raise ModelFileError(f"{file}: expected {{'files': {{name: {{'sha256': ...}}}}}}")
    unlisted = [f for f in REQUIRED_FILES if f not in table]
    if unlisted:
        raise ModelFileError(f"{file}: does not list {format_names(unlisted)}")
    return table


def _matches(table: dict, name: str, data: bytes) -> bool:
    return not table or (
        name in table and hashlib.sha256(data).hexdigest() == table[name].get("sha256")
    )


def _load_tensors(file: Path, data: bytes) -> dict:
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors, truncated files, foreign objects
        raise ModelFileError(
            f"{file}: cannot read the weights safely ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelFileError(f"{file}: expected a dictionary of tensors")
    # a sum is NaN or infinite when any entry is (one pass, no boolean copy of each tensor)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v.sum())]
    if bad:
        raise ModelFileError(
            f"{file}: the model's weights contain NaN or infinite values (in {format_names(bad)}); "
            "the model is broken (did training diverge?): train it again"
        )
    return state


def _optional(path: Path, name: str, table: dict, read):
    """Read an optional file; on any problem warn and return None."""
    file = path / name
    if not file.is_file():
        return None
    try:
        data = file.read_bytes()
        if not _matches(table, name, data):
            raise ValueError("it does not match manifest.json (changed after saving)")
        return read(data)
    except Exception as err:  # noqa: BLE001 - an optional file never blocks loading
        warnings.warn(
            f"{file}: cannot read it ({type(err).__name__}: {err}); loading the model without it",
            UserWarning,
            stacklevel=4,
        )
        return None


def _csv(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), encoding="utf-8")


def _cells(data: bytes) -> dict:
    cells = json.loads(data.decode("utf-8"))
    if not isinstance(cells, dict) or not all(
        isinstance(cells.get(k, []), list) for k in ("train", "validation")
    ):
        raise ValueError("expected {'train': [...], 'validation': [...]}")
    return {k: [str(c) for c in cells.get(k, [])] for k in ("train", "validation")}


def read(path, hyperparameters) -> ModelFolder:
    """Read and check a model folder (see :meth:`LIBRA.load`)."""
    path = Path(path)
    recover_dir(path)
    if not path.is_dir():
        raise ModelFileError(f"no saved LIBRA model at {path}: not a directory")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelFileError(f"{path} is not a saved LIBRA model: missing {', '.join(missing)}")
    data = {f: _read_bytes(path / f) for f in REQUIRED_FILES}
    cfg = path / "config.json"
    meta = _read_json(cfg, data["config.json"])
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version >= 2:
        table = _verify(path, data, version)
        for name in REQUIRED_FILES:
            if not _matches(table, name, data[name]):
                raise ModelFileError(
                    f"{path / name}: does not match {MANIFEST} (sha256 differs): the file was "
                    "changed after saving; save the model again"
                )
    else:
        table = {}
    meta = _check_meta(meta, cfg, hyperparameters)
    ffile = path / "features.json"
    feats = _read_json(ffile, data["features.json"])
    if not isinstance(feats, dict) or not all(
        isinstance(feats.get(k), list) and all(isinstance(n, str) for n in feats[k])
        for k in ("a", "b")
    ):
        raise ModelFileError(f"{ffile}: expected {{'a': [names], 'b': [names]}}")
    fa, fb = pd.Index(feats["a"], dtype=object), pd.Index(feats["b"], dtype=object)
    if len(fa) != meta["n_input"] or len(fb) != meta["n_output"]:
        raise ModelFileError(
            f"{ffile}: does not match config.json (feature counts differ: {len(fa)} and {len(fb)} "
            f"names for {meta['n_input']} inputs and {meta['n_output']} outputs)"
        )
    for idx, side in ((fa, "a"), (fb, "b")):
        if not idx.is_unique:
            dup = idx[idx.duplicated()].unique()
            raise ModelFileError(
                f"{ffile}: duplicated feature names in {side!r} ({format_names(dup)})"
            )
    folder = ModelFolder(path, meta, fa, fb, _load_tensors(path / "weights.pt", data["weights.pt"]))
    if meta.get("has_b_encoder"):
        bfile = path / "b_encoder.pt"
        if not bfile.is_file():
            raise ModelFileError(f"{bfile}: missing (config.json says the model has a B encoder)")
        bdata = _read_bytes(bfile)
        if not _matches(table, "b_encoder.pt", bdata):
            raise ModelFileError(
                f"{bfile}: does not match {MANIFEST} (sha256 differs): the file was changed "
                "after saving"
            )
        folder.b_encoder = _load_tensors(bfile, bdata)
        folder.b_encoder_history = _optional(path, "b_encoder_history.csv", table, _csv)
    folder.history = _optional(path, "history.csv", table, _csv)
    cells = _optional(path, "cells.json", table, _cells)
    if cells is not None:
        folder.cells = cells
    return folder


def load_state(module, state: dict, file: Path):
    """Put ``state`` into ``module`` (strict), as a :class:`ModelFileError` naming ``file``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines()]
        first = " ".join(lines[1:3] if len(lines) > 1 else lines)
        raise ModelFileError(
            f"{file}: the weights do not fit the saved configuration ({first})"
        ) from None
    module.eval()
    return module
