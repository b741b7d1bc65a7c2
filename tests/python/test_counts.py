"""Raw counts and diverged training runs are errors before anything is saved."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, resign_manifest

import sclibra
from sclibra import SclibraError
from sclibra._data import (
    as_matrix,
    check_not_diverged,
    looks_like_counts,
    mean_baseline_loss,
    scan,
)
from sclibra._train import TrainResult
from sclibra.cli import main


@pytest.fixture(scope="module")
def small_cite(cite):
    rna, adt = cite
    keep = np.r_[0:60, 400:420]  # training donor first, then held-out cells
    return rna[keep].copy(), adt[keep].copy()


def test_counts_are_recognised_and_normalised_or_binary_data_are_not(cite, multiome):
    rna, adt = cite
    is_counts, median = looks_like_counts(as_matrix(rna, layer="counts"))
    assert is_counts
    assert median > 1000
    assert looks_like_counts(as_matrix(adt, layer="counts"))[0]
    assert not looks_like_counts(as_matrix(rna))[0]  # log-normalised
    assert not looks_like_counts(as_matrix(adt))[0]  # CLR
    _, atac = multiome
    assert not looks_like_counts(as_matrix(atac))[0]  # binarised ATAC: whole numbers, max 1
    # small whole numbers (e.g. a toy Poisson matrix with a few features) are not counts
    toy = np.random.default_rng(0).poisson(1.0, size=(50, 20)).astype(np.float32)
    assert not looks_like_counts(as_matrix(toy))[0]


def test_fit_on_raw_counts_is_an_error_naming_the_fix(small_cite):
    rna, adt = small_cite
    model = sclibra.LIBRA(**FAST)
    with pytest.raises(SclibraError, match="raw counts") as err:
        model.fit(rna, adt, layer_a="counts", train="is_train", max_epochs=2)
    msg = str(err.value)
    for fix in ("log1p", "NormalizeData()", "logcounts", "allow_counts=True"):
        assert fix in msg
    assert model.module is None
    assert model.history is None
    with pytest.raises(SclibraError, match="ADT: the output matrix looks like raw counts"):
        sclibra.LIBRA(**FAST).fit(rna, adt, layer_b="counts", train="is_train", max_epochs=2)


def test_allow_counts_trains_anyway(small_cite):
    rna, adt = small_cite
    model = sclibra.LIBRA(**FAST).fit(
        rna, adt, layer_b="counts", train="is_train", max_epochs=2, allow_counts=True
    )
    assert model.n_epochs_ == 2
    assert model.predict(rna).shape == (80, 134)


def test_divergence_check():
    stats = scan(as_matrix(np.random.default_rng(0).normal(size=(40, 5))))
    baseline = float(np.mean(stats.var))
    check_not_diverged(baseline * 2, stats, "B", "val_loss")  # worse than the mean, not diverged
    with pytest.raises(SclibraError, match="training diverged"):
        check_not_diverged(baseline * 1e3, stats, "B", "val_loss")
    with pytest.raises(SclibraError, match="training diverged"):
        check_not_diverged(float("inf"), stats, "B", "val_loss")


def test_divergence_check_bce_uses_the_entropy_of_rare_features():
    # rare binary features (1 in 40,000 cells): the mean baseline's BCE is ~12x its MSE, so an
    # MSE yardstick would call a model that merely matches the peak frequencies diverged
    x = np.zeros((40000, 3))
    x[0, :] = 1.0
    stats = scan(as_matrix(x))
    p = stats.mean
    entropy = float(np.mean(-(p * np.log(p) + (1 - p) * np.log1p(-p))))
    check_not_diverged(entropy, stats, "ATAC", "val_loss", "bce")
    with pytest.raises(SclibraError, match="training diverged"):
        check_not_diverged(entropy, stats, "ATAC", "val_loss", "mse")
    with pytest.raises(SclibraError, match="training diverged"):
        check_not_diverged(entropy * 100, stats, "ATAC", "val_loss", "bce")


def test_mean_baseline_loss_sparse_dense_and_binary():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    y = sp.random(300, 40, density=0.1, format="csr", random_state=1, dtype=np.float32)
    mean = np.asarray(y.mean(axis=0)).ravel() + 0.01
    rows = rng.choice(300, 50, replace=False)
    dense = y.toarray()[rows].astype(np.float64)
    want = float(np.mean((dense - mean) ** 2))
    for m in (as_matrix(y), as_matrix(y.toarray())):
        assert mean_baseline_loss(m, rows, mean) == pytest.approx(want, rel=1e-9)
    peaks = (y.toarray() > 0).astype(np.float32)
    freq = np.clip(peaks.mean(axis=0, dtype=np.float64), 1e-6, 1 - 1e-6)
    t = peaks[rows].astype(np.float64)
    bce = float(np.mean(-(t * np.log(freq) + (1 - t) * np.log1p(-freq))))
    for m in (as_matrix(sp.csr_matrix(peaks)), as_matrix(peaks)):
        assert mean_baseline_loss(m, rows, freq, "bce") == pytest.approx(bce, rel=1e-9)


def test_a_fit_that_predicts_little_says_so(cite, caplog):
    import logging

    log = logging.getLogger("sclibra")
    log.addHandler(caplog.handler)
    try:
        rna, adt = cite
        fit = {"train": "is_train", "progress": False}
        noise = np.random.default_rng(0).standard_normal((rna.n_obs, 5)).astype(np.float32)

        def warned():
            said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            caplog.clear()
            return [m for m in said if "training mean" in m]

        # a target the input knows nothing of, trained until it stops by itself
        model = sclibra.LIBRA(**FAST).fit(rna, noise, **fit)
        assert model.stopped_by_ == "early_stopping"
        (said,) = warned()
        assert re.search(r"predicts B (barely|no) better than each feature's training mean", said)
        assert "popularity" not in said  # not peaks
        # cut short by the epoch limit it is not said: the model may not have learned yet
        sclibra.LIBRA(**FAST).fit(rna, noise, max_epochs=3, **fit)
        assert warned() == []
        # a target the input predicts
        sclibra.LIBRA(**{**FAST, "n_models": 2}).fit(rna, adt, max_epochs=30, **fit)
        assert warned() == []
    finally:
        log.removeHandler(caplog.handler)


def test_mean_of_other_rows_is_the_mean_of_the_cells_left(cite):
    import scipy.sparse as sp

    from sclibra._data import mean_of_other_rows

    _, adt = cite
    y = adt.X.toarray() if sp.issparse(adt.X) else np.asarray(adt.X)
    rows = np.random.default_rng(1).choice(len(y), 80, replace=False)
    rest = np.setdiff1d(np.arange(len(y)), rows)
    for m in (as_matrix(sp.csr_matrix(y)), as_matrix(y)):
        got = mean_of_other_rows(m, rows, y.mean(axis=0, dtype=np.float64))
        np.testing.assert_allclose(got, y[rest].mean(axis=0, dtype=np.float64), rtol=1e-6)


def test_mean_fallback_note_names_who_predicts_the_mean():
    from sclibra._data import mean_fallback_note

    assert mean_fallback_note(0, 3) == ""
    assert mean_fallback_note(1, 1) == "the model predicts each feature's training mean"
    assert mean_fallback_note(3, 3) == "the model predicts each feature's training mean"
    assert mean_fallback_note(2, 3) == (
        "2 of its 3 ensemble members predict each feature's training mean"
    )


def test_a_member_no_better_than_the_mean_predicts_the_mean(
    small_cite, monkeypatch, tmp_path, caplog
):
    import logging

    from sclibra import _model

    rna, adt = small_cite
    real = _model.train_module

    def fake(net, x_train, mb, train_idx, val_idx, schedule, *, seed, **kw):
        # member 1 ties the mean baseline (each feature's mean over its own training cells)
        # on its validation cells, and a tie is not below it; member 0 trains as usual
        out = real(net, x_train, mb, train_idx, val_idx, schedule, seed=seed, **kw)
        if seed // 1000 == 1:
            own = np.setdiff1d(np.arange(mb.n_obs), val_idx)
            mean = sum(np.asarray(b.sum(axis=0)).ravel() for b in mb.iter_blocks(rows=own))
            tie = mean_baseline_loss(mb, val_idx, mean / len(own), schedule.loss)
            # stopped by itself, unless the test cuts it short
            out = dataclasses.replace(out, best_loss=tie * below[0], stopped_by=stopped_by[0])
        return out

    stopped_by = ["early_stopping"]
    below = [1.0]  # member 1's loss as a share of the mean baseline's

    monkeypatch.setattr(_model, "train_module", fake)
    log = logging.getLogger("sclibra")
    log.addHandler(caplog.handler)
    kw = {**FAST, "n_models": 2}
    fit = {"train": "is_train", "max_epochs": 5, "progress": False}
    try:
        model = sclibra.LIBRA(**kw).fit(rna, adt, **fit)
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    finally:
        log.removeHandler(caplog.handler)
    assert model.mean_fallback is True  # the default preset's
    assert model.members_at_mean_ == [1]
    # the same words in the fit's warning and the model's repr
    note = "1 of its 2 ensemble members predict each feature's training mean"
    assert model.mean_fallback_note_ == note
    assert f"{note} (mean_fallback)" in repr(model)
    assert any(m.startswith(f"{note}: their validation loss was not below") for m in said)
    train = adt[adt.obs["is_train"].to_numpy()]
    mean = np.asarray(train.X.mean(axis=0, dtype=np.float64)).ravel()  # every training cell

    def member(m, k):  # the model's prediction with member k alone
        one = copy.copy(m)
        one.module = m.module.members[k]
        return np.asarray(one.predict(rna).X, dtype=np.float64)

    at_mean, trained = member(model, 1), member(model, 0)
    np.testing.assert_allclose(at_mean, np.broadcast_to(mean, at_mean.shape), rtol=1e-5)
    assert trained.std(axis=0).max() > 0.1  # member 0 is still a model of the cells
    np.testing.assert_allclose(model.predict(rna).X, (at_mean + trained) / 2, rtol=1e-4, atol=1e-5)
    latent = model.get_latent(rna)  # the trained encoders': compared below
    # mean_fallback=False keeps the network; the same member 0
    kept = sclibra.LIBRA(**{**kw, "mean_fallback": False}).fit(rna, adt, **fit)
    assert kept.members_at_mean_ == []
    assert kept.mean_fallback_note_ == ""
    assert "training mean" not in repr(kept)
    assert member(kept, 1).std(axis=0).max() > 0.1
    np.testing.assert_allclose(member(kept, 0), trained, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kept.get_latent(rna), latent, rtol=1e-5, atol=1e-6)
    # a member cut short by the epoch limit (a quick run) is kept: it may not have learned yet
    stopped_by[0] = "max_epochs"
    assert sclibra.LIBRA(**kw).fit(rna, adt, **fit).members_at_mean_ == []
    # below the mean by less than min_delta is no improvement (as in early stopping); any
    # decrease is one with min_delta = 0
    stopped_by[0], below[0] = "early_stopping", 1 - 5e-4
    assert sclibra.LIBRA(**kw).fit(rna, adt, min_delta=1e-3, **fit).members_at_mean_ == [1]
    assert sclibra.LIBRA(**kw).fit(rna, adt, min_delta=0.0, **fit).members_at_mean_ == []
    # saved and loaded: the same predictions, and the record of which members predict the mean
    back = sclibra.LIBRA.load(model.save(tmp_path / "m"))
    assert back.members_at_mean_ == [1]
    np.testing.assert_allclose(back.predict(rna).X, model.predict(rna).X, rtol=1e-6)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["members_at_mean"] = [2]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    resign_manifest(tmp_path / "m")
    with pytest.raises(sclibra.ModelFileError, match=r"members_at_mean must list member"):
        sclibra.LIBRA.load(tmp_path / "m")


@pytest.mark.parametrize(
    ("train_loss", "val_loss", "message"),
    [
        # both losses exploded
        ([7e23], [7e23], r"training diverged: the best val_loss \(7e\+23\)"),
        # with the latent regulariser, lr=10 once ended at val_loss 1.7 (3x the mean's) while
        # the training loss was 2.5e23, and the model was kept: both are now held to a bound
        ([3e23, 2.5e23], [9e22, 1.7], r"the training loss at the best epoch \(2\.5e\+23\)"),
    ],
)
def test_a_diverged_fit_keeps_no_model(small_cite, monkeypatch, train_loss, val_loss, message):
    rna, adt = small_cite
    n = len(val_loss)
    calls = []

    def diverged(*args, **kwargs):
        calls.append(1)
        history = pd.DataFrame(
            {"epoch": range(1, n + 1), "train_loss": train_loss, "val_loss": val_loss}
        )
        return TrainResult(history, n, val_loss[-1], n, "max_epochs", "val_loss")

    monkeypatch.setattr(sclibra._model, "train_module", diverged)
    model = sclibra.LIBRA(**{**FAST, "n_models": 3})
    with pytest.raises(SclibraError, match=message):
        model.fit(rna, adt, train="is_train", max_epochs=2)
    assert calls == [1]  # the first member's divergence stops the fit: no further member trains
    assert model.module is None
    with pytest.raises(sclibra.NotTrainedError):
        model.predict(rna)


def test_cli_refuses_counts_and_allow_counts_overrides(small_cite, tmp_path, capsys):
    rna, adt = small_cite
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt.write_h5ad(tmp_path / "adt.h5ad")
    args = ["train", "--input-a", str(tmp_path / "rna.h5ad"), "--input-b", str(tmp_path / "adt.h5ad"),
            "--layer-a", "counts", "--n-nodes", "32", "--max-epochs", "2", "--quiet",
            "--train-key", "is_train"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    assert "raw counts" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--out", str(tmp_path / "model"), "--allow-counts"]) == 0
    assert (tmp_path / "model").is_dir()


def test_scan_says_whether_a_matrix_is_binary_in_its_one_pass():
    import scipy.sparse as sp

    peaks = np.random.default_rng(0).integers(0, 2, size=(30, 8)).astype(float)
    assert scan(as_matrix(peaks)).binary
    assert scan(as_matrix(sp.csr_matrix(peaks))).binary
    peaks[3, 2] = 0.5
    assert not scan(as_matrix(peaks)).binary
    assert not scan(as_matrix(sp.csr_matrix(peaks))).binary


def test_scan_counts_the_non_zero_entries_sparse_or_dense():
    import scipy.sparse as sp

    x = np.zeros((10, 5))
    x[0, :3] = [1.5, -2.0, 0.25]
    x[4, 4] = 7.0
    stored = sp.csr_matrix(x)
    stored.data[1] = 0.0  # an explicitly stored zero is still a zero
    assert scan(as_matrix(x)).nonzero == pytest.approx(4 / 50)
    assert scan(as_matrix(stored)).nonzero == pytest.approx(3 / 50)
