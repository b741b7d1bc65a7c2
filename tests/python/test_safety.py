"""Adversarial tests: nothing lost, no raw tracebacks (issue 10).

Every case asserts the error type, the key words of the message and that nothing on disk
changed. Families of malformed model files and CLI misuse are parametrised
(``pytest tests/python/test_safety.py --collect-only -q`` lists every case).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import resign_manifest

import sclibra
from sclibra import FeatureMismatchError, ModelFileError, SclibraError
from sclibra._data import as_matrix, select_cells
from sclibra._fs import PARTIAL_MARKER, FolderLock, LockedError, OutputError
from sclibra._persist import FORMAT_VERSION
from sclibra.cli import main

TINY = dict(n_layers=1, n_nodes=16, latent_dim=4, batch_size=32, n_models=1)


# ------------------------------------------------------------------------------------------------
# helpers and fixtures
# ------------------------------------------------------------------------------------------------
def snapshot(root) -> dict:
    """Every path under ``root`` (hidden ones too) with the bytes of files."""
    root = Path(root)
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "<dir>")
        for p in sorted(root.rglob("*"))
    }


def _pair(n_cells=40, n_a=50, n_b=4, seed=0):
    rng = np.random.default_rng(seed)
    cells = [f"c{i}" for i in range(n_cells)]
    a = ad.AnnData(
        X=rng.random((n_cells, n_a)).astype(np.float32),
        obs=pd.DataFrame(
            {"is_train": np.arange(n_cells) % 4 != 0, "batch": ["x", "y"] * (n_cells // 2)},
            index=cells,
        ),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_a)]),
    )
    b = ad.AnnData(
        X=rng.random((n_cells, n_b)).astype(np.float32),
        obs=pd.DataFrame({"donor": ["d1"] * n_cells}, index=cells),
        var=pd.DataFrame(index=[f"p{j}" for j in range(n_b)]),
    )
    return a, b


@pytest.fixture(scope="module")
def pair():
    return _pair()


@pytest.fixture(scope="module")
def model(pair):
    a, b = pair
    return sclibra.LIBRA(**TINY, seed=0).fit(a, b, max_epochs=2)


@pytest.fixture(scope="module")
def other_model(pair):
    a, b = pair
    return sclibra.LIBRA(**TINY, seed=1).fit(a, b, max_epochs=2)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    """A pristine saved model; tests copy it before changing anything."""
    return model.save(tmp_path_factory.mktemp("pristine") / "m")


@pytest.fixture
def copy_of(saved, tmp_path):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(saved, target)
    return target


@pytest.fixture
def sclibra_log(caplog):
    """Capture the sclibra logger (it does not propagate to the root logger)."""
    log = logging.getLogger("sclibra")
    log.addHandler(caplog.handler)
    old = log.level
    log.setLevel(logging.INFO)
    yield caplog
    log.removeHandler(caplog.handler)
    log.setLevel(old)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


CONFIG_0_1_0 = (
    "n_layers",
    "n_nodes",
    "alpha",
    "dropout",
    "latent_dim",
    "output_activation",
    "batch_size",
    "learning_rate",
    "seed",
)


def write_format1(model, path: Path) -> Path:
    """The layout sclibra 0.1.0 wrote (format 1, no manifest), written the way it did."""
    path.mkdir(parents=True)
    meta = {
        "format": "sclibra.LIBRA",
        "format_version": 1,
        "sclibra_version": "0.1.0",
        "torch_version": torch.__version__,
        # 0.1.0's hyperparameters only (it had no presets, ensembles or loss choice)
        "config": {k: v for k, v in model.config.items() if k in CONFIG_0_1_0},
        "output_activation_": model.output_activation_,
        "n_input": len(model.features_a),
        "n_output": len(model.features_b),
        "modality_names": list(model.names_),
        "n_epochs": model.n_epochs_,
        "best_val_loss": model.best_val_loss_,
        "stopped_by": model.stopped_by_,
        "seed_used": model._seed_used,
        "has_b_encoder": False,
    }
    (path / "config.json").write_text(json.dumps(meta, indent=2))
    (path / "features.json").write_text(
        json.dumps({"a": list(model.features_a), "b": list(model.features_b)})
    )
    (path / "cells.json").write_text(
        json.dumps({"train": list(model.train_cells_), "validation": list(model.val_cells_)})
    )
    torch.save(
        {k: v.detach().cpu() for k, v in model.module.state_dict().items()}, path / "weights.pt"
    )
    model.history.to_csv(path / "history.csv", index=False)
    return path


# ------------------------------------------------------------------------------------------------
# 1. safe overwrite: never delete what sclibra did not write
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("contents", "named"),
    [
        ({"thesis.tex": b"\\documentclass{article}"}, "thesis.tex"),
        ({"notes.txt": b"mine", "sub/data.csv": b"1,2"}, "notes.txt"),
        ({"config.json": b'{"tool": "other"}', "weights.pt": b"x"}, "config.json"),
    ],
    ids=["thesis", "notes-and-subfolder", "other-tools-config"],
)
def test_overwrite_refuses_a_folder_that_is_not_a_model(tmp_path, model, contents, named):
    target = tmp_path / "m"
    for name, data in contents.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    before = snapshot(tmp_path)
    with pytest.raises(SclibraError, match=f"not a sclibra model: it holds .*{named}"):
        model.save(target, overwrite=True)
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_model_folder_with_a_foreign_file(copy_of, model):
    (copy_of / "notes.txt").write_text("keep me")
    before = snapshot(copy_of.parent)
    with pytest.raises(SclibraError, match="holds 'notes.txt'"):
        model.save(copy_of, overwrite=True)
    assert snapshot(copy_of.parent) == before


def test_save_onto_a_file_or_without_overwrite_is_refused(tmp_path, copy_of, model):
    f = tmp_path / "file"
    f.write_text("data")
    before = snapshot(tmp_path)
    with pytest.raises(SclibraError, match="not a folder"):
        model.save(f, overwrite=True)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        model.save(copy_of)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_model_and_leaves_nothing_behind(copy_of, other_model, pair):
    other_model.save(copy_of, overwrite=True)
    assert sorted(p.name for p in copy_of.parent.iterdir()) == ["m"]
    loaded = sclibra.LIBRA.load(copy_of)
    np.testing.assert_array_equal(loaded.predict(pair[0]).X, other_model.predict(pair[0]).X)


def test_cli_train_overwrite_refuses_foreign_folder_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("chapter 1")
    before = snapshot(tmp_path)
    # the inputs do not exist: the output is checked first, before reading or training
    rc = main(["train", "--input-a", str(tmp_path / "no_a.h5ad"), "--input-b",
               str(tmp_path / "no_b.h5ad"), "--out", str(out), "--overwrite", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert "not a sclibra model" in err
    assert "thesis.tex" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_cli_demo_overwrite_refuses_foreign_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.xlsx").write_text("mine")
    before = snapshot(tmp_path)
    assert main(["demo", "--out", str(out), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not a sclibra demo output" in err
    assert "results.xlsx" in err
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# 2. atomic, recoverable replace
# ------------------------------------------------------------------------------------------------
def _crash_on_swap(mp, *, die: bool):
    """os.replace fails when the new folder is moved in (after the old one was moved away);
    ``die``: every later rename fails too (the process is gone), else they work again."""
    real = os.replace
    state = {"crashed": False}

    def fake(src, dst, *a, **kw):
        if state["crashed"] and die:
            raise RuntimeError("killed")
        if Path(src).name.startswith(".m.tmp-") and Path(dst).name == "m" and not state["crashed"]:
            state["crashed"] = True
            if die:
                raise RuntimeError("killed")
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst, *a, **kw)

    mp.setattr(os, "replace", fake)


def test_crash_between_the_two_renames_is_finished_by_the_next_load(
    copy_of, other_model, pair, monkeypatch, sclibra_log
):
    with monkeypatch.context() as mp:
        _crash_on_swap(mp, die=True)
        with pytest.raises(RuntimeError, match="killed"):
            other_model.save(copy_of, overwrite=True)
    assert not copy_of.exists()  # the state a crash leaves: no model at the path, a journal
    assert (copy_of.parent / ".m.replace.json").exists()
    loaded = sclibra.LIBRA.load(copy_of)  # recovers: the new model is complete, move it in
    np.testing.assert_array_equal(loaded.predict(pair[0]).X, other_model.predict(pair[0]).X)
    assert sorted(p.name for p in copy_of.parent.iterdir()) == ["m"]
    assert "interrupted save" in sclibra_log.text
    assert "rolled forward" in sclibra_log.text


def test_crash_between_the_two_renames_is_finished_by_the_next_save(
    copy_of, model, other_model, pair, monkeypatch
):
    with monkeypatch.context() as mp:
        _crash_on_swap(mp, die=True)
        with pytest.raises(RuntimeError):
            other_model.save(copy_of, overwrite=True)
    model.save(copy_of, overwrite=True)
    assert sorted(p.name for p in copy_of.parent.iterdir()) == ["m"]
    loaded = sclibra.LIBRA.load(copy_of)
    np.testing.assert_array_equal(loaded.predict(pair[0]).X, model.predict(pair[0]).X)


def test_failed_swap_rolls_back_to_the_old_model(copy_of, other_model, monkeypatch):
    before = snapshot(copy_of.parent)
    with monkeypatch.context() as mp:
        _crash_on_swap(mp, die=False)
        with pytest.raises(OutputError, match="cannot write"):
            other_model.save(copy_of, overwrite=True)
    assert snapshot(copy_of.parent) == before


_KILLER = """
import os, signal, sys
from pathlib import Path
import sclibra
new = sclibra.LIBRA.load(sys.argv[1])
target, when = Path(sys.argv[2]), sys.argv[3]
real_replace, real_write, n = os.replace, os.write, [0]
def replace(src, dst, *a, **k):
    if when == "swap" and Path(src).name.startswith(".m.tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)  # the old model is already moved away
    return real_replace(src, dst, *a, **k)
def write(fd, data):
    n[0] += 1
    if when == "write" and n[0] > 3:
        os.kill(os.getpid(), signal.SIGKILL)  # half-way through writing the files
    return real_write(fd, data)
os.replace, os.write = replace, write
new.save(target, overwrite=True)
"""


@pytest.mark.parametrize("when", ["swap", "write"])
def test_a_killed_save_is_recovered_by_the_next_load(copy_of, tmp_path, other_model, pair, when):
    source = other_model.save(tmp_path / "source")
    before = snapshot(copy_of)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(source), str(copy_of), when], env=env, timeout=300
    )
    assert proc.returncode == -9  # killed
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.")]
    assert hidden  # what a kill leaves: temporaries (and a journal after the first rename)
    loaded = sclibra.LIBRA.load(copy_of)
    expected = other_model if when == "swap" else None
    if expected is not None:  # the new model was complete: the replace is finished
        np.testing.assert_array_equal(loaded.predict(pair[0]).X, expected.predict(pair[0]).X)
    else:  # killed while writing: the old model is untouched
        assert snapshot(copy_of) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "source"]


def test_journal_of_a_killed_save_that_never_swapped_is_rolled_back(copy_of, tmp_path):
    before = snapshot(tmp_path)
    new = tmp_path / ".m.tmp-dead1"
    new.mkdir()
    (new / PARTIAL_MARKER).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    (new / "weights.pt").write_bytes(b"half")
    (tmp_path / ".m.replace.json").write_text(
        json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "new": new.name, "old": "x"})
    )
    sclibra.LIBRA.load(copy_of)
    assert snapshot(tmp_path) == before


def test_stale_temporaries_are_cleaned_but_only_ours(copy_of, model, tmp_path):
    stale = tmp_path / ".m.tmp-abc123"
    stale.mkdir()
    (stale / PARTIAL_MARKER).write_text(
        json.dumps({"pid": dead_pid(), "host": socket.gethostname()})
    )
    (stale / "weights.pt").write_bytes(b"0" * 1000)
    old = tmp_path / ".m.old-def456"
    old.mkdir()
    (old / PARTIAL_MARKER).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    foreign = tmp_path / ".m.tmp-notours"  # no marker: not written by sclibra
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    live = tmp_path / ".m.tmp-live"  # a save in progress in another process
    live.mkdir()
    (live / PARTIAL_MARKER).write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname()})
    )
    sclibra.LIBRA.load(copy_of)
    assert not stale.exists()
    assert not old.exists()
    assert (foreign / "keep.txt").read_text() == "mine"
    assert live.exists()
    model.save(copy_of, overwrite=True)
    assert foreign.exists()
    assert live.exists()


def _enospc_after(mp, n_ok: int):
    real = os.write
    calls = {"n": 0}

    def fake(fd, data):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    mp.setattr(os, "write", fake)


@pytest.mark.parametrize("n_ok", [0, 2], ids=["at-once", "after-two-files"])
def test_disk_full_during_save_keeps_the_old_model(copy_of, other_model, monkeypatch, n_ok):
    before = snapshot(copy_of.parent)
    with monkeypatch.context() as mp:
        _enospc_after(mp, n_ok)
        with pytest.raises(OutputError, match=f"no space left on device while saving to {copy_of}"):
            other_model.save(copy_of, overwrite=True)
    assert snapshot(copy_of.parent) == before  # old model intact, temporaries removed


def test_disk_full_during_a_first_save_leaves_nothing(tmp_path, model, monkeypatch):
    with monkeypatch.context() as mp:
        _enospc_after(mp, 1)
        with pytest.raises(OutputError, match="no space left on device"):
            model.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_save_fsyncs_every_file_and_the_folders(tmp_path, model, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    path = model.save(tmp_path / "m")
    n_files = len(list(path.iterdir()))
    assert len(synced) >= n_files + 2  # each file, the model folder and its parent


# ------------------------------------------------------------------------------------------------
# 3. load: one error type naming the file and the problem
# ------------------------------------------------------------------------------------------------
def _json_edit(name, fn):
    def edit(p: Path):
        obj = json.loads((p / name).read_text())
        (p / name).write_text(json.dumps(fn(obj)))

    return edit


def _cfg(fn):
    return _json_edit("config.json", fn)


def _set(d, key, value):
    d = dict(d)
    d[key] = value
    return d


def _hyper(key, value):
    return _cfg(lambda m: _set(m, "config", _set(m["config"], key, value)))


def _weights(fn):
    def edit(p: Path):
        state = torch.load(p / "weights.pt", weights_only=True)
        out = fn(state)
        torch.save(out, p / "weights.pt")

    return edit


def _nan(state):
    k = next(iter(state))
    state[k] = state[k].clone()
    state[k][0] = float("nan")
    return state


def _drop_first(state):
    state.pop(next(iter(state)))
    return state


def _grow_first(state):
    k = next(iter(state))
    state[k] = torch.zeros(tuple(s + 1 for s in state[k].shape))
    return state


def _rm(name):
    return lambda p: (p / name).unlink()


def _write(name, data: bytes):
    return lambda p: (p / name).write_bytes(data)


MALFORMED = {
    # case: (edit, re-sign the manifest, file named, key words)
    "no-config": (_rm("config.json"), False, "m", "missing config.json"),
    "no-weights": (_rm("weights.pt"), False, "m", "missing weights.pt"),
    "no-features": (_rm("features.json"), False, "m", "missing features.json"),
    "config-not-json": (_write("config.json", b"{oops"), True, "config.json", "not valid JSON"),
    "config-binary": (
        _write("config.json", b"\xff\xfe\x00"),
        True,
        "config.json",
        "not valid JSON",
    ),
    "config-a-list": (
        _write("config.json", b"[1, 2]"),
        True,
        "config.json",
        "JSON object, got a list",
    ),
    "config-no-config-key": (
        _cfg(lambda m: {k: v for k, v in m.items() if k != "config"}),
        True,
        "config.json",
        "missing keys 'config'",
    ),  # fmt: skip
    "config-extra-key": (
        _cfg(lambda m: _set(m, "surprise", 1)),
        True,
        "config.json",
        "unknown keys 'surprise'",
    ),  # fmt: skip
    "unknown-hyperparameter": (
        _hyper("n_heads", 4),
        True,
        "config.json",
        "unknown hyperparameter 'n_heads'",
    ),  # fmt: skip
    "format-version-string": (
        _cfg(lambda m: _set(m, "format_version", "2")),
        True,
        "config.json",
        "format_version must be a positive integer",
    ),  # fmt: skip
    "format-version-newer": (
        _cfg(lambda m: _set(m, "format_version", 99)),
        True,
        "config.json",
        "newer model format",
    ),  # fmt: skip
    "format-other": (
        _cfg(lambda m: _set(m, "format", "keras")),
        True,
        "config.json",
        "not a sclibra LIBRA model",
    ),  # fmt: skip
    "bad-dropout": (_hyper("dropout", 5), True, "config.json", "dropout must be in"),
    "bad-n-layers": (_hyper("n_layers", "two"), True, "config.json", "n_layers must be an integer"),
    "n-input-string": (
        _cfg(lambda m: _set(m, "n_input", "50")),
        True,
        "config.json",
        "n_input has the wrong type",
    ),  # fmt: skip
    "n-input-zero": (
        _cfg(lambda m: _set(m, "n_input", 0)),
        True,
        "config.json",
        "n_input must be >= 1",
    ),
    "modality-names": (
        _cfg(lambda m: _set(m, "modality_names", ["A"])),
        True,
        "config.json",
        "modality_names must be two strings",
    ),  # fmt: skip
    "output-activation": (
        _cfg(lambda m: _set(m, "output_activation_", "tanh")),
        True,
        "config.json",
        "output_activation_ must be one of",
    ),  # fmt: skip
    "b-encoder-missing": (
        _cfg(lambda m: _set(m, "has_b_encoder", True)),
        True,
        "b_encoder.pt",
        "missing",
    ),  # fmt: skip
    "features-a-list": (_write("features.json", b'["g0"]'), True, "features.json", "expected"),
    "features-not-strings": (
        _json_edit("features.json", lambda f: _set(f, "a", list(range(50)))),
        True,
        "features.json",
        "expected",
    ),  # fmt: skip
    "features-duplicated": (
        _json_edit("features.json", lambda f: _set(f, "a", ["g0"] * 50)),
        True,
        "features.json",
        "duplicated feature names",
    ),  # fmt: skip
    "features-count": (
        _json_edit("features.json", lambda f: _set(f, "a", f["a"][:-1])),
        True,
        "features.json",
        "feature counts differ",
    ),  # fmt: skip
    "weights-truncated": (
        lambda p: (p / "weights.pt").write_bytes((p / "weights.pt").read_bytes()[:100]),
        True,
        "weights.pt",
        "cannot read the weights safely",
    ),  # fmt: skip
    "weights-a-tensor": (
        _weights(lambda s: torch.zeros(3)),
        True,
        "weights.pt",
        "expected a dictionary of tensors",
    ),  # fmt: skip
    "weights-missing-key": (
        _weights(_drop_first),
        True,
        "weights.pt",
        "do not fit the saved configuration",
    ),
    "weights-wrong-shape": (_weights(_grow_first), True, "weights.pt", "size mismatch"),
    "weights-nan": (_weights(_nan), True, "weights.pt", "the model's weights contain NaN"),
    "manifest-missing": (_rm("manifest.json"), False, "manifest.json", "missing"),
    "manifest-not-json": (
        _write("manifest.json", b"nope"),
        False,
        "manifest.json",
        "not valid JSON",
    ),
    "manifest-incomplete": (
        _json_edit("manifest.json", lambda m: _set(m, "files", {})),
        False,
        "manifest.json",
        "does not list",
    ),  # fmt: skip
    "tampered-features-reversed": (
        _json_edit("features.json", lambda f: _set(f, "a", f["a"][::-1])),
        False,
        "features.json",
        "does not match manifest.json",
    ),  # fmt: skip
    "tampered-features-duplicated": (
        _json_edit("features.json", lambda f: _set(f, "a", [f["a"][0], *f["a"][:-1]])),
        False,
        "features.json",
        "does not match manifest.json",
    ),  # fmt: skip
    "tampered-weights": (_weights(_nan), False, "weights.pt", "does not match manifest.json"),
    "tampered-config": (_hyper("alpha", 0.5), False, "config.json", "does not match manifest.json"),
    "config-is-a-folder": (
        lambda p: ((p / "config.json").unlink(), (p / "config.json").mkdir()),
        False,
        "m",
        "missing config.json",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_model_files_give_one_error_naming_the_file(copy_of, case):
    edit, sign, file, words = MALFORMED[case]
    edit(copy_of)
    if sign:
        resign_manifest(copy_of)
    before = snapshot(copy_of.parent)
    with pytest.raises(ModelFileError) as info:
        sclibra.LIBRA.load(copy_of)
    msg = str(info.value)
    assert words in msg, msg
    assert (str(copy_of / file) if file != "m" else str(copy_of)) in msg
    assert "Traceback" not in msg
    assert snapshot(copy_of.parent) == before


OPTIONAL = {
    "history-not-utf8": (_write("history.csv", b"epoch,loss\n\xff\xfe,1\n"), True, "history"),
    "history-tampered": (_write("history.csv", b"epoch\n1\n"), False, "history"),
    "cells-not-json": (_write("cells.json", b"{"), True, "cells"),
    "cells-a-list": (_write("cells.json", b"[1]"), True, "cells"),
}


@pytest.mark.parametrize("case", list(OPTIONAL))
def test_unreadable_optional_files_only_warn(copy_of, pair, model, case):
    edit, sign, what = OPTIONAL[case]
    edit(copy_of)
    if sign:
        resign_manifest(copy_of)
    before = snapshot(copy_of.parent)
    with pytest.warns(UserWarning, match="loading the model without it"):
        loaded = sclibra.LIBRA.load(copy_of)
    if what == "history":
        assert loaded.history is None
    else:
        assert len(loaded.train_cells_) == 0
    np.testing.assert_array_equal(loaded.predict(pair[0]).X, model.predict(pair[0]).X)
    assert snapshot(copy_of.parent) == before


def test_format_1_models_of_sclibra_0_1_0_still_load(tmp_path, model, pair):
    path = write_format1(model, tmp_path / "old")
    before = snapshot(tmp_path)
    loaded = sclibra.LIBRA.load(path)
    np.testing.assert_array_equal(loaded.predict(pair[0]).X, model.predict(pair[0]).X)
    assert list(loaded.train_cells_) == list(model.train_cells_)
    assert snapshot(tmp_path) == before
    # re-saving writes the current format with a manifest
    loaded.save(path, overwrite=True)
    assert json.loads((path / "config.json").read_text())["format_version"] == FORMAT_VERSION
    assert (path / "manifest.json").is_file()


def test_nan_weight_in_memory_is_named_as_such(model, pair):
    import copy

    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.module.parameters())[0, 0] = float("nan")
    with pytest.raises(SclibraError, match="the model's weights contain NaN") as info:
        broken.predict(pair[0])
    assert "input contains NaN" not in str(info.value)
    with pytest.raises(SclibraError, match="the model's weights contain NaN"):
        broken.get_latent(pair[0])


# ------------------------------------------------------------------------------------------------
# 4. CLI: output checked before any work; unreadable inputs are one error line
# ------------------------------------------------------------------------------------------------
def _cli(capsys, *argv):
    rc = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    return rc, err


def _one_error_line(rc, err, *words):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0], err
    assert "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.fixture
def afile(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("I am a file")
    return f


READONLY = Path("/sys/sclibra-test-out")


def _writable(folder: str) -> bool:
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--input-a", "A.h5ad", "--input-b", "B.h5ad", "--out", "{file}/model"],
        [
            "train",
            "--input-a",
            "A.h5ad",
            "--input-b",
            "B.h5ad",
            "--out",
            "{tmp}/m",
            "--predictions",
            "{file}/pred.h5ad",
        ],  # fmt: skip
        ["predict", "--model", "M", "--input", "A.h5ad", "--out", "{file}/pred.h5ad"],
        ["embed", "--model", "M", "--input", "A.h5ad", "--out", "{file}/emb.h5ad"],
        ["tune", "--input-a", "A.h5ad", "--input-b", "B.h5ad", "--out-dir", "{file}/search"],
        ["tune", "--input-a", "A.h5ad", "--input-b", "B.h5ad", "--out-dir", "{file}"],
        ["metrics", "--model", "M", "--input-a", "A", "--input-b", "B", "--out-dir", "{file}/ev"],
        [
            "metrics",
            "--model",
            "M",
            "--input-a",
            "A",
            "--input-b",
            "B",
            "--out-dir",
            "{tmp}/ev",
            "--save-model",
            "{file}/m",
        ],  # fmt: skip
        ["demo", "--out", "{file}/demo"],
    ],
    ids=[
        "train",
        "train-predictions",
        "predict",
        "embed",
        "tune-parent-file",
        "tune-is-file",
        "metrics",
        "metrics-save-model",
        "demo",
    ],  # fmt: skip
)
def test_cli_checks_the_output_before_any_work(tmp_path, afile, capsys, argv):
    # inputs and model do not exist: an output problem must be reported first
    argv = [a.format(file=afile, tmp=tmp_path) for a in argv]
    before = snapshot(tmp_path)
    rc, err = _cli(capsys, *argv)
    _one_error_line(rc, err, "a_file")
    assert "is a file" in err or "not a folder" in err
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not Path("/sys").is_dir() or _writable("/sys"), reason="no read-only /sys")
@pytest.mark.parametrize("cmd", ["train", "predict", "tune"])
def test_cli_refuses_a_read_only_output_before_any_work(tmp_path, capsys, cmd):
    argv = {
        "train": ["train", "--input-a", "A", "--input-b", "B", "--out", str(READONLY / "m")],
        "predict": ["predict", "--model", "M", "--input", "A", "--out", str(READONLY / "p.h5ad")],
        "tune": ["tune", "--input-a", "A", "--input-b", "B", "--out-dir", str(READONLY / "s")],
    }[cmd]
    rc, err = _cli(capsys, *argv)
    _one_error_line(rc, err, "cannot write", str(READONLY))


def test_cli_refuses_a_read_only_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.name == "posix" and os.geteuid() == 0:
        # root ignores permission bits: the file system refuses instead, as a read-only mount
        # or an ACL would for root too
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(fn):
            def wrapped(path, *args, **kwargs):
                if str(path).startswith(str(ro)):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return fn(path, *args, **kwargs)

            return wrapped

        monkeypatch.setattr(os, "open", refuse(real_open))
        monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    try:
        rc, err = _cli(capsys, "train", "--input-a", "A", "--input-b", "B", "--out", str(ro / "m"))
        _one_error_line(rc, err, "cannot write", str(ro))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_cli_full_disk_is_found_before_training(tmp_path, capsys, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    rc, err = _cli(
        capsys, "train", "--input-a", "A", "--input-b", "B", "--out", str(tmp_path / "m")
    )
    monkeypatch.undo()
    _one_error_line(rc, err, "no space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def h5ad_pair(pair, tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    pair[0].write_h5ad(d / "a.h5ad")
    pair[1].write_h5ad(d / "b.h5ad")
    return d


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (
            lambda d, src: (d / "x.h5ad").write_bytes((src / "a.h5ad").read_bytes()[:3000]),
            "truncated or damaged",
        ),
        (lambda d, src: (d / "x.h5ad").write_bytes(b"hello, not hdf5"), "truncated or damaged"),
        (lambda d, src: (d / "x.csv").write_text("cell,g1,g2\nc1,1,2\nc2,x,3\n"), "not numbers"),
    ],
    ids=["truncated-h5ad", "garbage-h5ad", "non-numeric-csv"],
)
@pytest.mark.parametrize("cmd", ["train", "predict"])
def test_cli_unreadable_input_is_one_error_line(
    tmp_path, h5ad_pair, saved, capsys, make, words, cmd
):
    make(tmp_path, h5ad_pair)
    bad = next(p for p in tmp_path.iterdir() if p.name.startswith("x."))
    before = snapshot(tmp_path)
    if cmd == "train":
        argv = ["train", "--input-a", str(bad), "--input-b", str(h5ad_pair / "b.h5ad"),
                "--out", str(tmp_path / "m")]  # fmt: skip
    else:
        argv = [
            "predict",
            "--model",
            str(saved),
            "--input",
            str(bad),
            "--out",
            str(tmp_path / "p.h5ad"),
        ]
    rc, err = _cli(capsys, *argv)
    _one_error_line(rc, err, "cannot read", bad.name, words)
    assert snapshot(tmp_path) == before


def test_cli_model_file_error_is_one_line(tmp_path, copy_of, h5ad_pair, capsys):
    (copy_of / "config.json").write_text("[]")
    rc, err = _cli(capsys, "predict", "--model", str(copy_of), "--input", str(h5ad_pair / "a.h5ad"),
                   "--out", str(tmp_path / "p.h5ad"))  # fmt: skip
    _one_error_line(rc, err, "config.json")
    assert not (tmp_path / "p.h5ad").exists()


# ------------------------------------------------------------------------------------------------
# 5. one search per folder
# ------------------------------------------------------------------------------------------------
def fake_trainer(ctx):
    return {"val_loss": 1.0 / (1 + ctx.params.get("n_nodes", 1)), "n_epochs": 1}


def _tune(out_dir, **kw):
    a, b = _pair(n_cells=40)
    return sclibra.tune(a, b, out_dir=str(out_dir), grid={"n_nodes": [8, 16]}, strategy="grid",
                        max_epochs=2, trainer=fake_trainer, progress=False, refit=False, **kw)  # fmt: skip


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def _lock(folder: Path, pid: int):
    folder.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(), "started": "2026-11-29 18:00:00 UTC"}
    (folder / FolderLock.NAME).write_text(json.dumps(info))


def test_second_search_on_a_folder_is_refused_naming_the_running_one(tmp_path, sleeper):
    out = tmp_path / "search"
    _lock(out, sleeper.pid)
    before = snapshot(tmp_path)
    with pytest.raises(LockedError) as info:
        _tune(out)
    msg = str(info.value)
    assert f"process {sleeper.pid}" in msg
    assert socket.gethostname() in msg
    assert "2026-11-29 18:00:00" in msg
    assert "in use by another sclibra tune search" in msg
    assert snapshot(tmp_path) == before


def test_cli_second_search_is_refused(tmp_path, h5ad_pair, sleeper, capsys):
    out = tmp_path / "search"
    _lock(out, sleeper.pid)
    before = snapshot(tmp_path)
    rc, err = _cli(capsys, "tune", "--input-a", str(h5ad_pair / "a.h5ad"), "--input-b",
                   str(h5ad_pair / "b.h5ad"), "--out-dir", str(out))  # fmt: skip
    _one_error_line(rc, err, f"process {sleeper.pid}", "in use")
    assert snapshot(tmp_path) == before


def test_stale_lock_of_a_killed_search_is_taken_over(tmp_path, sclibra_log):
    out = tmp_path / "search"
    pid = dead_pid()
    _lock(out, pid)
    res = _tune(out)
    assert len(res.trials) == 2
    assert f"stale lock of process {pid}" in sclibra_log.text
    assert not (out / FolderLock.NAME).exists()  # released at the end


def test_torn_lock_file_is_taken_over(tmp_path, sclibra_log):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / FolderLock.NAME).write_text("")
    os.utime(folder / FolderLock.NAME, (0, 0))  # written long ago by a process that died
    with FolderLock(folder) as lock:
        assert json.loads(lock.file.read_text())["pid"] == os.getpid()
    assert "stale lock" in sclibra_log.text
    assert not (folder / FolderLock.NAME).exists()


def test_lock_is_released_after_a_failing_search(tmp_path):
    with pytest.raises(SclibraError):
        _tune(tmp_path / "s", objective="nonsense")
    assert list(tmp_path.iterdir()) == []  # no lock, and no empty folder left behind
    with FolderLock(tmp_path / "s") as lock:  # and can be taken again
        assert lock.file.exists()
    assert not lock.file.exists()


# ------------------------------------------------------------------------------------------------
# 6. inputs: too few cells, pairing by position, column counts, misspelt columns
# ------------------------------------------------------------------------------------------------
def test_fit_on_one_cell_is_an_error(pair):
    a, b = pair
    with pytest.raises(SclibraError, match="too few cells to hold out validation cells"):
        sclibra.LIBRA(**TINY).fit(a[:1], b[:1], max_epochs=1)


def test_fit_on_one_selected_cell_is_an_error(pair):
    a, b = pair
    with pytest.raises(SclibraError, match="too few cells"):
        sclibra.LIBRA(**TINY).fit(a, b, train=["c3"], max_epochs=1)


def test_anndata_and_numpy_are_paired_by_position_with_a_message(pair, sclibra_log):
    a, b = pair
    m = sclibra.LIBRA(**TINY, seed=0).fit(a, np.asarray(b.X), max_epochs=1)
    assert "B has no cell names" in sclibra_log.text
    assert "by position" in sclibra_log.text
    assert list(m.train_cells_.append(m.val_cells_).sort_values()) == sorted(a.obs_names)


def test_numpy_with_the_wrong_width_names_the_column_counts(model):
    with pytest.raises(FeatureMismatchError, match="expected 50 columns .* got 49"):
        model.predict(np.ones((4, 49)))
    with pytest.raises(FeatureMismatchError, match="expected 50 columns .* got 51"):
        model.get_latent(np.ones((4, 51)))
    assert model.predict(np.ones((4, 50))).shape == (4, 4)


def test_misspelt_train_column_lists_the_columns_of_a_and_b(pair):
    a, b = pair
    with pytest.raises(SclibraError) as info:
        sclibra.LIBRA(**TINY).fit(a, b, train="is_trian", max_epochs=1)
    msg = str(info.value)
    assert "train='is_trian': no such obs column" in msg
    assert "'is_train'" in msg
    assert "'batch'" in msg
    assert "'donor'" in msg


def test_train_column_only_in_b_and_string_booleans_are_read_alike(pair):
    a, b = pair
    b2 = b.copy()
    b2.obs["keep"] = np.where(a.obs["is_train"], "True", "false")
    m1 = sclibra.LIBRA(**TINY, seed=0).fit(a, b2, train="keep", max_epochs=1)
    m2 = sclibra.LIBRA(**TINY, seed=0).fit(a, b, train="is_train", max_epochs=1)
    assert sorted(m1.train_cells_.append(m1.val_cells_)) == sorted(
        m2.train_cells_.append(m2.val_cells_)
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("batch", "must be boolean"),
        (np.ones(7, dtype=bool), "boolean mask has 7 entries"),
        (["c1", "nope"], "1 cells are not among the paired cells"),
        (["c1", "c1"], "listed twice"),
    ],
    ids=["non-boolean-column", "mask-length", "unknown-names", "duplicates"],
)
def test_bad_cell_selections(pair, spec, words):
    a, b = pair
    with pytest.raises(SclibraError, match=words):
        sclibra.LIBRA(**TINY).fit(a, b, train=spec, max_epochs=1)


def test_one_cell_selection_for_fit_tune_and_metrics(pair):
    """The same spellings select the same cells everywhere (one function in _data)."""
    a, _ = pair
    cells = pd.Index(a.obs_names)
    obs = a.obs.assign(
        s=np.where(a.obs["is_train"], "TRUE", "0"),
        i=a.obs["is_train"].astype(int),
        f=a.obs["is_train"].astype(float),
    )
    want = list(cells[a.obs["is_train"].to_numpy()])
    for col in ("is_train", "s", "i", "f"):
        assert list(select_cells(col, cells, obs=[("A", obs)])) == want
    assert list(select_cells(a.obs["is_train"], cells)) == want
    assert list(select_cells(a.obs["is_train"].to_numpy(), cells)) == want
    m = as_matrix(a, name="A")
    from sclibra._data import resolve_cells

    assert list(resolve_cells("s", as_matrix(ad.AnnData(a.X, obs=obs), name="A"))) == want
    assert m.n_obs == 40


def test_misspelt_labels_and_held_out_list_the_columns(model, pair):
    a, b = pair
    with pytest.raises(SclibraError, match="held_out='is_tset': no such obs column.*'is_train'"):
        sclibra.metrics.nn_mse(model, a, b, held_out="is_tset")
    with pytest.raises(SclibraError, match="labels='cell_tpye': no such obs column.*'batch'"):
        sclibra.evaluate(model, a, b, labels="cell_tpye", consistency=False, baselines=None)


# ------------------------------------------------------------------------------------------------
# 7. determinism
# ------------------------------------------------------------------------------------------------
def test_same_seed_and_threads_reproduce_bit_for_bit_other_thread_counts_only_round(pair):
    a, b = pair
    old = (sclibra.settings.num_threads, torch.get_num_threads())

    def run(threads):
        sclibra.settings.num_threads = threads
        m = sclibra.LIBRA(n_layers=2, n_nodes=256, latent_dim=8, seed=5).fit(a, b, max_epochs=3)
        return m.predict(a).X

    try:
        one, again, two = run(1), run(1), run(2)
    finally:
        sclibra.settings.num_threads = old[0]
        torch.set_num_threads(old[1])
    np.testing.assert_array_equal(one, again)  # bit for bit
    # another thread count sums in another order: equal up to rounding, not guaranteed bit-equal
    np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-5)


def test_r_bridge_subset_uses_the_same_cell_selection():
    from sclibra._r_bridge import ppji_for_r

    cells = [f"c{i}" for i in range(30)]
    emb = np.random.default_rng(0).random((30, 3))
    with pytest.raises(SclibraError, match="cells: 1 cells are not among the paired cells: 'zz'"):
        ppji_for_r(["a", "b", "c"] * 10, cells, embedding=emb, subset=["c1", "zz"])
