"""The training recipe: presets, loss choice, ensembles, batch-aware validation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, resign_manifest

import sclibra
from sclibra._errors import ModelFileError, SclibraError
from sclibra._recipe import PRESETS, EnsembleNet, split_by_batch

#: sclibra 0.1.0's LIBRA() and LIBRA.fit() defaults, written out by hand (not read from PRESETS)
V010 = {
    "n_layers": 2,
    "n_nodes": 512,
    "alpha": 0.3,
    "dropout": 0.2,
    "latent_dim": 10,
    "output_activation": "auto",
    "batch_size": 128,
    "learning_rate": 1e-3,
}
V010_FIT = {
    "validation_split": 0.1,
    "max_epochs": 1500,
    "early_stopping_patience": 20,
    "lr_patience": 15,
    "lr_factor": 0.1,
    "min_lr": 1e-5,
}


def test_published_preset_is_the_paper_model():
    m = sclibra.LIBRA(preset="published")
    assert {k: m.config[k] for k in V010} == {
        **V010,
        "output_activation": "relu",
        "batch_size": 7000,
    }
    assert (m.n_models, m.loss, m.weight_decay) == (1, "mse", 0.0)
    assert {k: m.fit_defaults[k] for k in V010_FIT} == {**V010_FIT, "validation_split": 0.0}


def test_010_preset_equals_the_010_defaults_and_explicit_arguments_win():
    m = sclibra.LIBRA(preset="0.1.0")
    assert {k: m.config[k] for k in V010} == V010
    assert {k: m.fit_defaults[k] for k in V010_FIT} == V010_FIT  # (a later argument may join)
    assert (m.n_models, m.loss, m.weight_decay) == (1, "mse", 0.0)
    m = sclibra.LIBRA(preset="published", batch_size=64, n_models=2)
    assert (m.batch_size, m.n_models, m.n_nodes) == (64, 2, 512)


def test_unknown_preset_and_bad_recipe_values():
    with pytest.raises(SclibraError, match="unknown preset 'paper'"):
        sclibra.LIBRA(preset="paper")
    with pytest.raises(SclibraError, match="loss must be one of"):
        sclibra.LIBRA(loss="poisson")
    with pytest.raises(SclibraError, match="n_models must be an integer >= 1"):
        sclibra.LIBRA(n_models=0)
    with pytest.raises(SclibraError, match="weight_decay"):
        sclibra.LIBRA(weight_decay=-1)


def test_config_is_json_and_rebuilds_the_same_model():
    m = sclibra.LIBRA(n_models=3, weight_decay=0.01, seed=1)
    cfg = json.loads(json.dumps(m.config))
    again = sclibra.LIBRA(**cfg)
    assert again.config == m.config
    assert again.fit_defaults == m.fit_defaults


def test_binary_target_gets_bce_and_sigmoid(multiome):
    rna, atac = multiome
    m = sclibra.LIBRA(**FAST).fit(rna, atac, train="is_train", max_epochs=3)
    assert m.loss_ == "bce"
    assert m.output_activation_ == "sigmoid"
    pred = m.predict(rna[~rna.obs["is_train"]]).X
    assert pred.min() > 0
    assert pred.max() < 1
    # a non-binary target keeps MSE; asking BCE for it is refused before training
    m2 = sclibra.LIBRA(**FAST).fit(atac, rna, train="is_train", max_epochs=2)
    assert m2.loss_ == "mse"
    with pytest.raises(SclibraError, match="loss='bce' needs a binary target"):
        sclibra.LIBRA(**FAST, loss="bce").fit(atac, rna, train="is_train", max_epochs=2)
    # the 0.1.0 recipe stays MSE on binary targets
    m3 = sclibra.LIBRA(**FAST, preset="0.1.0").fit(rna, atac, train="is_train", max_epochs=2)
    assert m3.loss_ == "mse"


def test_ensemble_is_the_average_of_its_members_and_round_trips(tmp_path, cite):
    rna, adt = cite
    m = sclibra.LIBRA(**{**FAST, "n_models": 3}).fit(rna, adt, train="is_train", max_epochs=3)
    assert isinstance(m.module, EnsembleNet)
    assert len(m.module.members) == 3
    test = rna[~rna.obs["is_train"]]
    out = m.predict(test)
    x = torch.from_numpy(np.asarray(test[:, m.features_a].X.toarray(), dtype=np.float32))
    with torch.no_grad():
        members = [mm(x).numpy() for mm in m.module.members]
        latents = [mm.encode(x).numpy() for mm in m.module.members]
    np.testing.assert_allclose(out.X, np.mean(members, axis=0), rtol=1e-4, atol=1e-5)
    # decode sums in place without autograd, out of place with it: the same average
    z = m.module.encode(x).detach()
    tracked = m.module.decode(z)
    assert tracked.requires_grad
    with torch.no_grad():
        untracked = m.module.decode(z)
    torch.testing.assert_close(untracked, tracked.detach())
    # the latent space is the members' latent spaces side by side
    assert out.obsm["X_libra"].shape == (test.n_obs, 3 * FAST["latent_dim"])
    np.testing.assert_allclose(out.obsm["X_libra"], np.hstack(latents), rtol=1e-4, atol=1e-5)
    # members trained with their own validation cells, so every training cell was used
    assert len(m.train_cells_) == int(rna.obs["is_train"].sum())
    assert set(m.history["member"]) == {0, 1, 2}
    # one input PCA for all members, applied once per minibatch
    projections = {id(mm.projection) for mm in m.module.members}
    assert len(projections) == 1
    assert m.module.members[0].projection is not None
    calls = []
    hook = m.module.members[0].projection.register_forward_hook(lambda *a: calls.append(1))
    m.get_latent(test, batch_size=test.n_obs)
    hook.remove()
    assert len(calls) == 1
    path = m.save(tmp_path / "ens")
    back = sclibra.LIBRA.load(path)
    assert back.n_models == 3
    assert isinstance(back.module, EnsembleNet)
    assert len({id(mm.projection) for mm in back.module.members}) == 1
    np.testing.assert_allclose(back.predict(test).X, out.X, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.get_latent(test), out.obsm["X_libra"], rtol=1e-5, atol=1e-6)


def test_model_saved_without_recipe_fields_loads_as_010(tmp_path, cite):
    rna, adt = cite
    model = sclibra.LIBRA(**FAST, input_pca=0).fit(rna, adt, train="is_train", max_epochs=3)
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    for k in (
        "preset", "n_models", "loss", "weight_decay", "output_rank", "input_pca", "latent_pcs"
    ):  # fmt: skip
        meta["config"].pop(k)
    meta.pop("n_members")
    meta.pop("loss_")
    meta.pop("input_pcs")
    meta.pop("latent_pcs_used")
    meta.pop("fit_params")
    meta["format_version"] = 1  # as sclibra 0.1.0 wrote it: format 1, no manifest
    (path / "manifest.json").unlink()
    (path / "config.json").write_text(json.dumps(meta))
    back = sclibra.LIBRA.load(path)
    assert back.preset == "0.1.0"
    assert back.n_models == 1
    assert back.input_pca == 0
    assert back.latent_pcs == 10
    assert back.module.projection is None
    assert back.fit_params_ is None  # not recorded before format 6
    np.testing.assert_allclose(back.predict(rna).X, model.predict(rna).X, rtol=1e-5)


def _rewrite_config(path, meta):
    """Write ``meta`` as the model's config.json and update its checksum in the manifest."""
    (path / "config.json").write_text(json.dumps(meta))
    resign_manifest(path)


def test_format_2_model_of_the_default_preset_loads_without_an_input_pca(tmp_path, cite):
    # sclibra 0.2.0 before the input PCA saved preset "default" without input_pca / input_pcs:
    # the missing argument is a feature that model did not have, not today's default
    rna, adt = cite
    model = sclibra.LIBRA(**FAST, input_pca=0).fit(rna, adt, train="is_train", max_epochs=3)
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    assert meta["format_version"] == 6
    assert meta["input_pcs"] == 0
    meta["config"].pop("input_pca")
    meta.pop("input_pcs")
    meta.pop("output_rank_used")
    meta["format_version"] = 2
    _rewrite_config(path, meta)
    back = sclibra.LIBRA.load(path)
    assert back.preset == "default"
    assert back.input_pca == 0
    assert back.input_pcs_ == 0
    np.testing.assert_allclose(back.predict(rna).X, model.predict(rna).X, rtol=1e-5)


def test_the_schedule_a_model_trained_with_is_kept_and_saved(tmp_path, cite):
    rna, adt = cite
    model = sclibra.LIBRA(**FAST).fit(
        rna, adt, train="is_train", max_epochs=3, ema_decay=0.5, min_delta=0.0, progress=False
    )
    fit = model.fit_params_
    assert set(fit) == set(sclibra._recipe.FIT_KEYS)
    assert (fit["max_epochs"], fit["ema_decay"], fit["min_delta"]) == (3, 0.5, 0.0)
    # the rest are the preset's
    defaults = model.fit_defaults
    assert {k: v for k, v in fit.items() if k not in ("max_epochs", "ema_decay", "min_delta")} == {
        k: v for k, v in defaults.items() if k not in ("max_epochs", "ema_decay", "min_delta")
    }
    path = model.save(tmp_path / "m")
    assert sclibra.LIBRA.load(path).fit_params_ == fit
    meta = json.loads((path / "config.json").read_text())
    meta["fit_params"]["max_epoch"] = 3
    _rewrite_config(path, meta)
    with pytest.raises(sclibra.ModelFileError, match="fit_params has unknown keys 'max_epoch'"):
        sclibra.LIBRA.load(path)


def test_input_pca_is_a_frozen_first_layer_fitted_once(tmp_path, cite):
    import scipy.sparse as sp

    from sclibra._data import as_matrix
    from sclibra._recipe import input_pca_scores

    rna, adt = cite
    train = rna[rna.obs["is_train"]]
    model = sclibra.LIBRA(**FAST, input_pca=20).fit(rna, adt, train="is_train", max_epochs=5)
    assert model.input_pcs_ == 20
    proj = model.module.projection
    assert proj.n_pcs == 20
    assert model.module.encoder.net[0].in_features == 20
    assert not any(p.requires_grad for p in proj.parameters())
    # after training the first layer is still the PCA of the training cells (scaled by PC1's sd)
    _, scores, _ = input_pca_scores(as_matrix(train, name="RNA"), 20, model._seed_used)
    with torch.no_grad():
        got = proj(torch.as_tensor(np.asarray(train.X.toarray(), dtype=np.float32))).numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(scores), rtol=1e-3, atol=1e-3)
    assert abs(got[:, 0].std() - 1) < 1e-3
    # sparse and dense input give the same prediction; the model round-trips
    dense = rna.copy()
    dense.X = rna.X.toarray()
    assert sp.issparse(rna.X)
    np.testing.assert_allclose(model.predict(dense).X, model.predict(rna).X, rtol=1e-4, atol=1e-5)
    path = model.save(tmp_path / "m")
    assert json.loads((path / "config.json").read_text())["input_pcs"] == 20
    back = sclibra.LIBRA.load(path)
    assert back.input_pcs_ == 20
    np.testing.assert_allclose(back.predict(rna).X, model.predict(rna).X, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.get_latent(rna), model.get_latent(rna), rtol=1e-5, atol=1e-6)


def _standardised_pc_scores(x: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` PC scores of ``x``'s standardised columns (constant ones left at 0), divided
    by the first one's sd: written out with numpy's SVD, not with sclibra's PCA."""
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    scores = u[:, :k] * s[:k]
    return scores / scores[:, 0].std()


def test_binary_input_is_read_through_a_pca_of_its_standardised_features(
    monkeypatch, tmp_path, multiome
):
    from sclibra._data import as_matrix
    from sclibra._recipe import input_pca_scores

    rna, atac = multiome
    train = atac[atac.obs["is_train"].to_numpy()]
    x = np.asarray(train.X.toarray(), dtype=np.float64)
    assert set(np.unique(x)) == {0.0, 1.0}  # the bundled peaks are binary
    seen = _regulariser_targets(monkeypatch)
    fit = {"train": "is_train", "max_epochs": 2, "progress": False}
    kw = {**FAST, "input_pca": 20, "latent_pca": 5.0}
    model = sclibra.LIBRA(**kw, latent_pcs=30).fit(atac, rna, **fit)
    want = _standardised_pc_scores(x, 30)
    with torch.no_grad():  # the first layer maps the raw 0/1 values
        got = model.module.projection(torch.as_tensor(x, dtype=torch.float32)).numpy()
    # the leading components, to the randomized PCA's precision (a flat spectrum: the
    # standardised peaks share their variance more evenly than raw values)
    np.testing.assert_allclose(np.abs(got[:, :3]), np.abs(want[:, :3]), atol=0.02)
    np.testing.assert_allclose(np.abs(seen[0][:, :3]), np.abs(want[:, :3]), atol=0.02)
    assert seen[0].shape == (train.n_obs, 30)  # more PCs than the input PCA: their own PCA
    # not what a PCA of the raw values gives (what continuous inputs keep)
    _, raw, _ = input_pca_scores(as_matrix(train, name="ATAC"), 20, model._seed_used)
    assert not np.allclose(np.abs(raw[:, :3]), np.abs(want[:, :3]), atol=0.1)
    # the same standardised PCs, from within the input PCA, without an input PCA, in any form
    inner = sclibra.LIBRA(**kw, latent_pcs=10).fit(atac, rna, **fit)
    np.testing.assert_allclose(np.abs(seen[1][:, :3]), np.abs(want[:, :3]), atol=0.02)
    sclibra.LIBRA(**{**kw, "input_pca": 0}, latent_pcs=10).fit(atac, rna, **fit)
    np.testing.assert_allclose(np.abs(seen[2][:, :3]), np.abs(want[:, :3]), atol=0.02)
    dense = atac.copy()
    dense.X = atac.X.toarray()
    twin = sclibra.LIBRA(**kw, latent_pcs=10).fit(dense, rna, **fit)
    np.testing.assert_allclose(twin.predict(atac).X, inner.predict(atac).X, rtol=1e-4, atol=1e-5)
    back = sclibra.LIBRA.load(inner.save(tmp_path / "m"))
    np.testing.assert_allclose(back.predict(dense).X, inner.predict(atac).X, rtol=1e-4, atol=1e-5)


def test_input_pca_is_off_for_narrow_inputs_and_capped_by_cells(cite):
    rna, adt = cite
    # 134 proteins read directly when input_pca is not below their number
    m = sclibra.LIBRA(**FAST, input_pca=134).fit(adt, rna, train="is_train", max_epochs=2)
    assert m.input_pcs_ == 0
    assert m.module.projection is None
    assert m.module.encoder.net[0].in_features == 134
    # 40 training cells: at most 39 components
    few = rna.obs_names[:40]
    m = sclibra.LIBRA(**FAST, input_pca=50).fit(rna, adt, train=list(few), max_epochs=2)
    assert m.input_pcs_ == 39
    assert PRESETS["published"]["input_pca"] == PRESETS["0.1.0"]["input_pca"] == 0
    with pytest.raises(SclibraError, match="input_pca must be an integer >= 0"):
        sclibra.LIBRA(input_pca=-1)


def test_batch_split_holds_out_whole_batches():
    batches = np.repeat(["d1", "d2", "d3", "d4", "d5"], [30, 20, 25, 15, 10])
    for seed in range(5):
        tr, va = split_by_batch(batches, 0.2, seed)
        assert len(tr) + len(va) == len(batches)
        assert len(va) > 0
        assert not set(batches[tr]) & set(batches[va])  # no batch on both sides
        assert set(batches[tr])  # training keeps at least one batch
    assert split_by_batch(np.array(["a"] * 10), 0.2, 0) is None


def test_ensemble_members_hold_out_different_batches():
    """The members take the batches in turn: with two donors each is held out by some member,
    so together the members learn from both (independent draws left a donor out of every
    member's training one time in four with three members)."""
    two = np.repeat(["d1", "d2"], [60, 40])
    for seed in range(10):
        held = [set(two[split_by_batch(two, 0.1, seed, member=k)[1]]) for k in range(3)]
        assert all(len(h) == 1 for h in held)
        assert held[0] != held[1]
        assert held[2] == held[0]  # the turn comes round again
    # four donors of a quarter each: four members hold out each donor once
    four = np.repeat(["d1", "d2", "d3", "d4"], 25)
    for seed in range(10):
        held = [tuple(set(four[split_by_batch(four, 0.25, seed, member=k)[1]])) for k in range(4)]
        assert sorted(held) == [("d1",), ("d2",), ("d3",), ("d4",)]
    # uneven donors: every member's split is whole batches with a batch left to train on, and
    # member 0 is the split a single model gets
    five = np.repeat(["d1", "d2", "d3", "d4", "d5"], [30, 20, 25, 15, 10])
    for seed in range(10):
        for k in range(6):
            tr, va = split_by_batch(five, 0.2, seed, member=k)
            assert len(tr) + len(va) == len(five)
            assert not set(five[tr]) & set(five[va])
            assert set(five[tr])
        a, b = split_by_batch(five, 0.2, seed), split_by_batch(five, 0.2, seed, member=0)
        np.testing.assert_array_equal(a[1], b[1])


def test_fit_with_batch_key(cite):
    rna, adt = cite
    rna = rna.copy()
    rng = np.random.default_rng(0)
    rna.obs["donor"] = pd.Categorical(rng.choice(["a", "b", "c", "d"], rna.n_obs))
    m = sclibra.LIBRA(**FAST).fit(rna, adt, batch_key="donor", max_epochs=2)
    donors = rna.obs["donor"].astype(str)
    assert not set(donors[m.train_cells_]) & set(donors[m.val_cells_])
    with pytest.raises(SclibraError, match="batch_key='nope': no such obs column"):
        sclibra.LIBRA(**FAST).fit(rna, adt, batch_key="nope", max_epochs=2)


def test_whole_batch_validation_far_above_the_split_is_said(cite, caplog, tmp_path):
    """Two donors: each member validates on one whole donor (about half the cells) and the fit
    says so, with each member's share; with many small donors the validation stays near
    validation_split and nothing is said. An aLIBRA search says it once, not once per trial."""
    import logging

    rna, adt = cite
    rna = rna.copy()
    log = logging.getLogger("sclibra")
    log.addHandler(caplog.handler)

    def warned():
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        return [m for m in said if "whole batches" in m]

    try:
        rng = np.random.default_rng(0)
        rna.obs["donor"] = rng.choice(["a", "b"], rna.n_obs)
        m = sclibra.LIBRA(**{**FAST, "n_models": 2}).fit(
            rna, adt, batch_key="donor", max_epochs=1, progress=False
        )
        (said,) = warned()
        assert said.startswith("batch_key='donor': each member's validation cells are whole")
        assert "validation_split asks for 10 %" in said
        # one share per member, each that of one whole donor: the members take them in turn
        donor_shares = {round(100 * x) for x in rna.obs["donor"].value_counts(normalize=True)}
        found = [int(x) for x in re.findall(r"(\d+) %", said.split("where")[0])]
        assert len(found) == 2
        assert sorted(found) == sorted(donor_shares)  # each member holds out the other donor
        assert m.n_epochs_ == 1
        # an aLIBRA search fits the split once per trial and once more for the chosen model:
        # said once; a fit after the search says it again
        sclibra.tune(
            rna,
            adt,
            grid={"n_nodes": [16, 32]},
            strategy="grid",
            max_epochs=1,
            fit_kwargs={"batch_key": "donor"},
            out_dir=str(tmp_path / "search"),
            progress=False,
        )
        assert len(warned()) == 1
        sclibra.LIBRA(**FAST).fit(rna, adt, batch_key="donor", max_epochs=1, progress=False)
        assert len(warned()) == 1
        # twenty donors of 30 cells: 10 % is two of them, nothing to say
        rna.obs["donor"] = np.repeat([f"d{i}" for i in range(20)], rna.n_obs // 20)
        sclibra.LIBRA(**FAST).fit(rna, adt, batch_key="donor", max_epochs=1, progress=False)
        assert warned() == []
    finally:
        log.removeHandler(caplog.handler)


def test_batch_key_as_labels_gives_the_column_split(cite):
    """batch_key read from labels (as R passes a metadata column) splits as the obs column does."""
    rna, adt = cite
    rna = rna.copy()
    rna.obs["donor"] = np.random.default_rng(0).choice(["a", "b", "c", "d"], rna.n_obs)
    train = rna.obs_names[rna.obs["is_train"].astype(bool)]
    by_column = sclibra.LIBRA(**FAST).fit(
        rna, adt, train="is_train", batch_key="donor", max_epochs=1
    )
    donors = rna.obs["donor"]
    for labels in (
        donors.to_numpy(),  # over all of A's cells
        donors[train].to_numpy(),  # over the training cells
        donors.iloc[::-1],  # a Series: matched by cell name, not by position
        list(donors),
    ):
        m = sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", batch_key=labels, max_epochs=1)
        assert m.val_cells_.equals(by_column.val_cells_)
        assert m.train_cells_.equals(by_column.train_cells_)
    assert not set(donors[by_column.train_cells_]) & set(donors[by_column.val_cells_])
    # a held-out cell needs no batch; a training cell does, and is named
    held_out = rna.obs_names[~rna.obs["is_train"].astype(bool)]
    partial = donors.astype(object).copy()
    partial[held_out] = np.nan
    m = sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", batch_key=partial, max_epochs=1)
    assert m.val_cells_.equals(by_column.val_cells_)
    partial[train[3]] = np.nan
    with pytest.raises(
        SclibraError, match=rf"batch_key: 1 training cells have a missing label.*{train[3]}"
    ):
        sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", batch_key=partial, max_epochs=1)
    with pytest.raises(
        SclibraError, match=r"batch_key: 5 labels for \d+ training cells \(600 cells"
    ):
        sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", batch_key=["a"] * 5, max_epochs=1)
    with pytest.raises(SclibraError, match="batch_key: expected a 1-D vector"):
        sclibra.LIBRA(**FAST).fit(rna, adt, batch_key=np.zeros((rna.n_obs, 2)), max_epochs=1)


def test_weight_decay_uses_adamw_and_changes_training(cite):
    rna, adt = cite
    a = sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", max_epochs=2)
    b = sclibra.LIBRA(**FAST, weight_decay=0.5).fit(rna, adt, train="is_train", max_epochs=2)
    assert not np.allclose(a.predict(rna).X, b.predict(rna).X)


def test_presets_are_complete():
    for name, values in PRESETS.items():
        m = sclibra.LIBRA(preset=name)
        assert set(values) == set(m.config) - {"seed", "preset"} | set(m.fit_defaults)


def test_latent_pca_regulariser_trains_and_leaves_a_plain_network(tmp_path, cite):
    from sclibra._data import as_matrix
    from sclibra._module import LIBRANet
    from sclibra._recipe import input_pc_scores

    rna, adt = cite
    scores = input_pc_scores(as_matrix(rna, name="RNA"), 50, 0)
    assert scores.shape == (rna.n_obs, 50)
    assert abs(scores[:, 0].std() - 1) < 1e-4
    m = sclibra.LIBRA(**FAST, latent_pca=1.0).fit(rna, adt, train="is_train", max_epochs=3)
    assert type(m.module) is LIBRANet  # the PCA head was only used in training
    off = sclibra.LIBRA(**FAST, latent_pca=0.0).fit(rna, adt, train="is_train", max_epochs=3)
    assert not np.allclose(m.get_latent(rna), off.get_latent(rna))
    back = sclibra.LIBRA.load(m.save(tmp_path / "m"))
    assert back.latent_pca == 1.0
    np.testing.assert_allclose(back.get_latent(rna), m.get_latent(rna), rtol=1e-5, atol=1e-6)


def _regulariser_targets(monkeypatch):
    """The PC scores each fit gives the latent regulariser (one array per fit)."""
    from sclibra import _model

    seen = []
    real = _model.LatentPCARegularised

    def spy(net, scores, weight):
        seen.append(np.array(scores))
        return real(net, scores, weight)

    monkeypatch.setattr(_model, "LatentPCARegularised", spy)
    return seen


def test_latent_pcs_sets_the_components_the_latent_regulariser_predicts(monkeypatch, cite):
    from sclibra._data import as_matrix
    from sclibra._recipe import input_pca_scores

    rna, adt = cite
    assert PRESETS["default"]["latent_pcs"] == 0  # from the loss
    assert PRESETS["published"]["latent_pcs"] == PRESETS["0.1.0"]["latent_pcs"] == 10
    seen = _regulariser_targets(monkeypatch)
    fit = {"train": "is_train", "max_epochs": 2, "progress": False}
    kw = {**FAST, "latent_pca": 5.0, "input_pca": 40}
    few = sclibra.LIBRA(**kw, latent_pcs=3).fit(rna, adt, **fit)
    more = sclibra.LIBRA(**kw, latent_pcs=20).fit(rna, adt, **fit)
    # within the input PCA: its top components, in its scale (the first one's sd is 1)
    train = rna[rna.obs["is_train"].to_numpy()]
    _, scores, _ = input_pca_scores(as_matrix(train, name="RNA"), 40, 0)
    assert [s.shape for s in seen] == [(train.n_obs, 3), (train.n_obs, 20)]
    np.testing.assert_allclose(seen[1], scores[:, :20], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(seen[0], seen[1][:, :3])
    assert not np.allclose(few.get_latent(rna), more.get_latent(rna))
    assert (few.latent_pcs_used_, more.latent_pcs_used_) == (3, 20)
    # more than the input PCA reads: a PCA of their own; capped at what the cells allow
    sclibra.LIBRA(**kw, latent_pcs=60).fit(rna, adt, **fit)
    capped = sclibra.LIBRA(**{**kw, "input_pca": 0}, latent_pcs=10_000).fit(rna, adt, **fit)
    assert seen[2].shape == (train.n_obs, 60)
    np.testing.assert_allclose(seen[2][:, :10], scores[:, :10], rtol=1e-3, atol=1e-3)
    assert seen[3].shape == (train.n_obs, train.n_obs - 1)
    assert capped.latent_pcs_used_ == train.n_obs - 1
    with pytest.raises(SclibraError, match="latent_pcs must be an integer >= 0, got -1"):
        sclibra.LIBRA(latent_pcs=-1)


def test_latent_pcs_whiten_gives_every_predicted_component_the_same_variance(
    monkeypatch, tmp_path, cite
):
    from sclibra._recipe import whitened_pc_scores

    rna, adt = cite
    assert not any(values["latent_pcs_whiten"] for values in PRESETS.values())
    seen = _regulariser_targets(monkeypatch)
    fit = {"train": "is_train", "max_epochs": 2, "progress": False}
    kw = {**FAST, "latent_pca": 5.0, "input_pca": 40, "latent_pcs": 8}
    plain = sclibra.LIBRA(**kw).fit(rna, adt, **fit)
    white = sclibra.LIBRA(**kw, latent_pcs_whiten=True).fit(rna, adt, **fit)
    raw, even = seen[0].astype(np.float64), seen[1].astype(np.float64)
    sd_raw, sd_even = raw.std(axis=0), even.std(axis=0)
    assert sd_raw[0] > 2 * sd_raw[-1]  # as they are, the leading components weigh most
    np.testing.assert_allclose(sd_even, np.sqrt(np.mean(sd_raw**2)), rtol=1e-5)  # all equal
    # each column only rescaled: the same components, the same cells
    np.testing.assert_allclose(even * sd_raw / sd_even, raw, rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain.get_latent(rna), white.get_latent(rna))
    assert white.latent_pcs_used_ == plain.latent_pcs_used_ == 8
    assert sclibra.LIBRA.load(white.save(tmp_path / "m")).latent_pcs_whiten is True
    # a constant column (no variance to equalise) stays as it is
    x = np.c_[np.arange(6.0), 3 * np.arange(6.0), np.full(6, 2.0)].astype(np.float32)
    out = whitened_pc_scores(x)
    np.testing.assert_array_equal(out[:, 2], x[:, 2])
    np.testing.assert_allclose(out[:, :2].std(axis=0), np.sqrt(np.mean(x.std(axis=0) ** 2)))
    with pytest.raises(SclibraError, match="latent_pcs_whiten must be True or False"):
        sclibra.LIBRA(latent_pcs_whiten="yes")


def test_latent_pcs_0_is_chosen_from_the_loss_and_saved(monkeypatch, tmp_path, cite, multiome):
    from sclibra._recipe import LATENT_PCS_AUTO

    assert LATENT_PCS_AUTO == {"bce": 30, "mse": 10}
    rna, adt = cite
    rna_m, atac = multiome
    seen = _regulariser_targets(monkeypatch)
    fit = {"train": "is_train", "max_epochs": 2, "progress": False}
    kw = {**FAST, "latent_pca": 5.0, "input_pca": 40}
    mse = sclibra.LIBRA(**kw).fit(rna, adt, **fit)  # latent_pcs: the default preset's 0
    bce = sclibra.LIBRA(**kw).fit(rna_m, atac, **fit)
    explicit = sclibra.LIBRA(**kw, latent_pcs=7).fit(rna_m, atac, **fit)
    off = sclibra.LIBRA(**{**kw, "latent_pca": 0.0}).fit(rna_m, atac, **fit)
    assert (mse.loss_, bce.loss_) == ("mse", "bce")
    assert mse.latent_pcs == bce.latent_pcs == 0  # the setting is kept; what it meant is _used_
    assert [s.shape[1] for s in seen] == [10, 30, 7]  # no regulariser without latent_pca
    assert [m.latent_pcs_used_ for m in (mse, bce, explicit, off)] == [10, 30, 7, 0]
    back = sclibra.LIBRA.load(bce.save(tmp_path / "bce"))
    assert (back.latent_pcs, back.latent_pcs_used_) == (0, 30)
    # a file from before format 5 has no latent_pcs_used: its latent_pcs was what it used
    path = explicit.save(tmp_path / "old")
    meta = json.loads((path / "config.json").read_text())
    assert meta["latent_pcs_used"] == 7
    meta.pop("latent_pcs_used")
    meta["format_version"] = 4
    _rewrite_config(path, meta)
    assert sclibra.LIBRA.load(path).latent_pcs_used_ == 7
    meta["latent_pcs_used"] = -3
    _rewrite_config(path, meta)
    with pytest.raises(ModelFileError, match="latent_pcs_used must be >= 0, got -3"):
        sclibra.LIBRA.load(path)


def test_published_preset_trains_like_the_paper(cite):
    rna, adt = cite
    m = sclibra.LIBRA(preset="published", n_nodes=32, seed=0)
    m.fit(rna, adt, train="is_train", max_epochs=2)
    # no validation split: the training loss is monitored; one batch of all cells; ReLU; MSE
    assert len(m.val_cells_) == 0
    assert len(m.train_cells_) == int(rna.obs["is_train"].sum())
    assert m.history["val_loss"].isna().all()
    assert m.output_activation_ == "relu"
    assert m.loss_ == "mse"
    assert m.latent_width_ == 10
    assert m.batch_size == 7000
    assert m.mean_fallback is False  # and without validation cells there is nothing to judge
    assert m.members_at_mean_ == []


def test_every_recipe_argument_is_written_once_and_read_everywhere():
    """LIBRA(), fit() and the command line take every recipe argument, none restating a default."""
    import argparse
    import inspect

    from sclibra._recipe import FIT_KEYS, MODEL_KEYS, PRESETS, RECIPE_HELP
    from sclibra.cli import build_parser

    init = inspect.signature(sclibra.LIBRA.__init__).parameters
    fit = inspect.signature(sclibra.LIBRA.fit).parameters
    assert all(init[k].default is None for k in MODEL_KEYS)
    assert all(fit[k].default is None for k in FIT_KEYS)
    for preset in PRESETS.values():
        assert set(preset) == set(MODEL_KEYS) | set(FIT_KEYS)
    assert set(RECIPE_HELP) == set(MODEL_KEYS) | set(FIT_KEYS)
    train = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["train"]
    flags = {a.dest: a for a in train._actions}
    for key in (*MODEL_KEYS, *FIT_KEYS):
        assert flags[key].default is None, key
        assert flags[key].option_strings == ["--" + key.replace("_", "-")]
    args = train.parse_args(
        ["--input-a", "a", "--input-b", "b", "--out", "o", "--weight-decay", "0.01",
         "--start-at-mean", "true", "--lr-factor", "0.5", "--loss", "bce"]
    )  # fmt: skip
    assert args.weight_decay == 0.01
    assert args.start_at_mean is True
    assert args.lr_factor == 0.5
    assert args.loss == "bce"


def test_recipe_arguments_are_declared_once():
    """LIBRA() and fit() take the recipe's arguments through generated signatures: positional
    order as in 0.1.0, an unknown name refused with the valid names, documentation written."""
    import inspect
    import re

    from sclibra._recipe import RECIPE, check_recipe_value

    m = sclibra.LIBRA(1, 64, 0.1, 0.0, 4, "linear", 32, 1e-2, 7, "cpu", n_models=2)
    assert (m.n_layers, m.n_nodes, m.alpha, m.dropout, m.latent_dim) == (1, 64, 0.1, 0.0, 4)
    assert (m.output_activation, m.batch_size, m.learning_rate) == ("linear", 32, 1e-2)
    assert (m.seed, m.device, m.n_models) == (7, "cpu", 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_neurons'.*n_nodes"):
        sclibra.LIBRA(n_neurons=3)
    with pytest.raises(SclibraError, match="unexpected keyword argument 'max_epoch'.*max_epochs"):
        sclibra.LIBRA().fit(object(), object(), max_epoch=3)
    # the error says where an argument of the other call goes, or the name a typo stands for
    with pytest.raises(
        SclibraError, match=r"'max_epochs' \(max_epochs is an argument of LIBRA\.fit"
    ):
        sclibra.LIBRA(max_epochs=3)
    with pytest.raises(
        SclibraError, match=r"latent_dim is an argument of LIBRA\(\.\.\.\), not of LIBRA\.fit\(\)"
    ):
        sclibra.LIBRA().fit(object(), object(), latent_dim=3)
    with pytest.raises(SclibraError, match=r"'latent_dimm' \(did you mean 'latent_dim'\?\)"):
        sclibra.LIBRA(latent_dimm=3)
    with pytest.raises(SclibraError) as err:
        sclibra.LIBRA(n_neurons=3)  # nothing close: no guess
    assert "did you mean" not in str(err.value)
    assert "is an argument of" not in str(err.value)
    init = inspect.signature(sclibra.LIBRA).parameters
    for a in RECIPE:
        fn = sclibra.LIBRA if a.stage == "model" else sclibra.LIBRA.fit
        assert re.search(rf"^ +{a.name}\n +\S", fn.__doc__, re.M), a.name  # a numpy entry
        if a.stage == "model":
            kind = init[a.name].kind
            assert (kind is inspect.Parameter.KEYWORD_ONLY) is not a.positional
        else:
            assert a.name in inspect.signature(sclibra.LIBRA.fit_b_encoder).parameters
            assert re.search(rf"^ +{a.name}$", sclibra.LIBRA.fit_b_encoder.__doc__, re.M)
    with pytest.raises(SclibraError, match=r"alpha must be in \[0.0, 1.0\], got 2"):
        check_recipe_value("alpha", 2)
    with pytest.raises(SclibraError, match="start_at_mean must be True or False"):
        sclibra.LIBRA(start_at_mean="yes")


def test_wide_output_goes_through_a_rank_limited_layer(tmp_path):
    import scipy.sparse as sp

    from sclibra._recipe import WIDE_OUTPUT

    rng = np.random.default_rng(0)
    a = rng.random((120, 20), dtype=np.float32)
    n_wide = WIDE_OUTPUT + 5
    b = sp.random(120, n_wide, density=0.01, format="csr", dtype=np.float32, random_state=0)
    kw = {**FAST, "output_rank": 8}
    model = sclibra.LIBRA(**kw).fit(a, b, max_epochs=2, progress=False)
    layers = [m for m in model.module.decoder.net if isinstance(m, torch.nn.Linear)]
    assert (layers[-2].in_features, layers[-2].out_features) == (FAST["n_nodes"], 8)
    assert layers[-2].bias is None
    assert (layers[-1].in_features, layers[-1].out_features) == (8, n_wide)
    assert model.output_rank_used_ == 8
    # the factorised model saves and loads with the same predictions
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["output_rank_used"] == 8
    back = sclibra.LIBRA.load(tmp_path / "m")
    assert back.output_rank == 8
    assert back.output_rank_used_ == 8
    np.testing.assert_allclose(back.predict(a).X, model.predict(a).X, rtol=1e-5, atol=1e-6)
    # a narrow target keeps the full output layer; the published model never factorises
    narrow = sclibra.LIBRA(**kw).fit(a, b[:, :50], max_epochs=2, progress=False)
    assert narrow.module.decoder.net[-1].in_features == FAST["n_nodes"]
    assert narrow.output_rank_used_ == 0
    assert PRESETS["published"]["output_rank"] == PRESETS["0.1.0"]["output_rank"] == 0
    with pytest.raises(SclibraError, match="output_rank"):
        sclibra.LIBRA(output_rank=-1)


def test_bce_trains_on_logits_and_predicts_probabilities(multiome):
    from sclibra._data import as_matrix
    from sclibra._recipe import loss_function
    from sclibra._train import evaluate_loss, logits_for_bce

    rna, atac = multiome
    m = sclibra.LIBRA(**FAST, input_pca=0).fit(rna, atac, train="is_train", max_epochs=3)
    assert m.loss_ == "bce"
    decoder = m.module.decoder
    assert decoder.emit_logits is False  # restored after training
    x = torch.as_tensor(rna.X[:20].toarray(), dtype=torch.float32)
    with torch.no_grad():
        prob = m.module(x)
        with logits_for_bce(m.module, "bce"):
            logits = m.module(x)
        assert decoder.emit_logits is False
        with logits_for_bce(m.module, "mse"):  # only BCE asks for logits
            assert torch.equal(m.module(x), prob)
    assert float(prob.min()) >= 0
    assert float(prob.max()) <= 1
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), prob.numpy(), rtol=1e-5, atol=1e-6)
    # the BCE from logits equals the BCE of the probabilities (away from saturation)
    y = torch.as_tensor(atac.X[:20].toarray(), dtype=torch.float32)
    from_logits = float(loss_function("bce")(logits, y))
    from_prob = float(torch.nn.functional.binary_cross_entropy(prob, y))
    assert abs(from_logits - from_prob) < 1e-4
    # and the validation loss of the model is that BCE, computed the same way
    idx = np.arange(20)
    got = evaluate_loss(
        m.module, as_matrix(rna[:20], name="RNA"), as_matrix(atac[:20], name="ATAC"), idx,
        batch_size=8, device=torch.device("cpu"), sparse=False, loss="bce",
    )  # fmt: skip
    assert abs(got - from_logits) < 1e-4
    assert decoder.emit_logits is False


def test_randomized_pca_finds_arpack_s_components_sparse_and_dense():
    import scipy.sparse as sp

    from sclibra.metrics._utils import RandomizedPCA, pca_scores

    rng = np.random.default_rng(0)
    # 6 strong directions plus sparse noise: the leading components are well separated
    factors = rng.normal(size=(400, 6)) * np.array([9.0, 7, 5, 4, 3, 2])
    x = factors @ rng.normal(size=(6, 300)) + 5.0
    x = sp.csr_matrix(x * (rng.random(x.shape) < 0.3))
    ref, ref_scores = pca_scores(x, 30, seed=0)  # ARPACK
    est, scores = pca_scores(x, 30, seed=0, randomized=True)
    assert isinstance(est, RandomizedPCA)
    assert scores.shape == (400, 30)
    cos = np.abs(np.sum(ref.components_[:6] * est.components_[:6], axis=1))
    assert np.all(cos > 0.999)
    assert scores.var(axis=0).sum() >= 0.99 * ref_scores.var(axis=0).sum()
    np.testing.assert_allclose(est.transform(x), scores)
    np.testing.assert_allclose(est.mean_, np.asarray(x.mean(axis=0)).ravel())
    # the centring is implicit: the same as a dense, explicitly centred product
    dense = x.toarray()
    np.testing.assert_allclose(scores, (dense - dense.mean(0)) @ est.components_.T, atol=1e-8)
    # the same data as a dense array: the same PCA (training on either form gives one model)
    _, dense_scores = pca_scores(dense, 30, seed=0, randomized=True)
    np.testing.assert_allclose(dense_scores, scores, atol=1e-8)
    # seeded: the same components again; another seed gives the same leading subspace
    again = RandomizedPCA(30, seed=0).fit(x)
    np.testing.assert_array_equal(again.components_, est.components_)
    other = RandomizedPCA(30, seed=1).fit(x)
    assert np.all(np.abs(np.sum(other.components_[:6] * est.components_[:6], axis=1)) > 0.999)


def test_format_3_model_of_a_mid_width_target_loads_its_full_output_layer(tmp_path, monkeypatch):
    # before format 4 the rank-limited layer started above 10,000 features and the rank was not
    # recorded: a 3,000-gene target saved then has a full output layer, whatever today's rule
    from sclibra import _model
    from sclibra._recipe import WIDE_OUTPUT, WIDE_OUTPUT_BEFORE_FORMAT_4

    rng = np.random.default_rng(0)
    a = rng.random((80, 20), dtype=np.float32)
    b = rng.random((80, 3000), dtype=np.float32)
    assert WIDE_OUTPUT < 3000 <= WIDE_OUTPUT_BEFORE_FORMAT_4
    monkeypatch.setattr(_model, "WIDE_OUTPUT", WIDE_OUTPUT_BEFORE_FORMAT_4)
    old = sclibra.LIBRA(**FAST, output_rank=8).fit(a, b, max_epochs=2, progress=False)
    monkeypatch.undo()
    assert old.output_rank_used_ == 0
    path = old.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta.pop("output_rank_used")
    meta["format_version"] = 3
    _rewrite_config(path, meta)
    back = sclibra.LIBRA.load(path)
    assert back.output_rank_used_ == 0
    assert back.module.decoder.net[-1].in_features == FAST["n_nodes"]
    np.testing.assert_allclose(back.predict(a).X, old.predict(a).X, rtol=1e-5, atol=1e-6)
    # today the same target gets the rank-limited layer, and the file says so
    new = sclibra.LIBRA(**FAST, output_rank=8).fit(a, b, max_epochs=2, progress=False)
    assert new.output_rank_used_ == 8
    assert new.module.decoder.net[-1].in_features == 8
    meta["output_rank_used"] = -1
    meta["format_version"] = 4
    _rewrite_config(path, meta)
    with pytest.raises(sclibra.ModelFileError, match="output_rank_used must be >= 0"):
        sclibra.LIBRA.load(path)


def test_smoothed_targets_mix_each_training_cell_with_its_neighbours_and_keep_the_others():
    import scipy.sparse as sp

    from sclibra._data import as_matrix
    from sclibra._recipe import smoothed_targets, smoothing_neighbours

    rng = np.random.default_rng(0)
    y = rng.poisson(0.5, size=(12, 4)).astype(np.float32)
    scores = rng.normal(size=(12, 3)).astype(np.float32)
    train, val = np.arange(9), np.arange(9, 12)
    (near,) = smoothing_neighbours(scores, [train], 3)
    # B as the fit reads it (dense rows of a dense or sparse matrix), left unchanged
    for m in (as_matrix(y), as_matrix(sp.csr_matrix(y))):
        values = m.dense_rows(np.arange(12))
        out = smoothed_targets(values, train, near, 0.5)
        np.testing.assert_array_equal(values, y)
        np.testing.assert_array_equal(out[val], y[val])  # validation cells: as measured
        for row, i in enumerate(train):  # brute force: the 3 nearest training cells
            d = ((scores[train] - scores[i]) ** 2).sum(axis=1)
            nearest = train[np.argsort(d)[:3]]
            assert nearest[0] == i  # the cell itself first
            np.testing.assert_array_equal(near[row], nearest)
            np.testing.assert_allclose(
                out[i], 0.5 * y[i] + 0.5 * y[nearest].mean(axis=0), rtol=1e-6
            )
    # more neighbours than training cells: all of them; weight 1 replaces the cell's values
    (every,) = smoothing_neighbours(scores, [train], 50)
    out = smoothed_targets(y, train, every, 1.0)
    np.testing.assert_allclose(out[train], np.tile(y[train].mean(axis=0), (9, 1)), rtol=1e-6)


def test_one_neighbour_search_gives_each_member_the_neighbours_of_its_own_search():
    from sklearn.neighbors import NearestNeighbors

    from sclibra._recipe import smoothing_neighbours

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(300, 5)).astype(np.float32)
    # members leave out 10 % at random, or a tight cluster that fills the first
    # 2 x 5 + 10 candidates of the cells around it (those are searched again)
    cluster = np.argsort(((scores - scores[0]) ** 2).sum(axis=1))[:60]
    sets = [
        np.setdiff1d(np.arange(300), rng.choice(300, 30, replace=False)),
        np.setdiff1d(np.arange(300), cluster[1:]),
        np.arange(300),
    ]
    for train, got in zip(sets, smoothing_neighbours(scores, sets, 5)):
        own = NearestNeighbors(n_neighbors=5).fit(scores[train])
        expected = train[own.kneighbors(scores[train], return_distance=False)]
        np.testing.assert_array_equal(got, expected)


def test_smoothing_applies_to_sparse_continuous_targets_only():
    from sclibra._data import as_matrix, scan
    from sclibra._recipe import (
        SMOOTHING_MAX_CELLS,
        SMOOTHING_MAX_ENTRIES,
        WIDE_OUTPUT,
        smoothing_skipped,
    )

    rng = np.random.default_rng(1)
    counts = np.log1p(rng.poisson(0.3, size=(40, 6))).astype(np.float32)  # mostly zeros
    assert smoothing_skipped(scan(as_matrix(counts)), 0.5, 40) is None
    assert smoothing_skipped(scan(as_matrix(counts)), 0.0, 40) is None  # off: nothing to say
    clr = rng.normal(size=(40, 6)).astype(np.float32)  # every entry non-zero
    assert "100% of the target's entries are non-zero" in smoothing_skipped(
        scan(as_matrix(clr)), 0.5, 40
    )
    peaks = (counts > 0).astype(np.float32)
    assert smoothing_skipped(scan(as_matrix(peaks)), 0.5, 40) == "the target is binary"
    wide = np.log1p(rng.poisson(0.3, size=(40, WIDE_OUTPUT + 1))).astype(np.float32)
    assert f"more than {WIDE_OUTPUT:,} features" in smoothing_skipped(
        scan(as_matrix(wide)), 0.5, 40
    )
    narrow = wide[:, :WIDE_OUTPUT]
    assert smoothing_skipped(scan(as_matrix(narrow)), 0.5, 40) is None
    assert "of its exact neighbour search" in smoothing_skipped(
        scan(as_matrix(counts)), 0.5, SMOOTHING_MAX_CELLS + 1
    )
    assert smoothing_skipped(scan(as_matrix(counts)), 0.5, SMOOTHING_MAX_CELLS) is None
    genes = narrow[:, :800]  # as many cells as the search takes, too many entries for a copy
    cells = SMOOTHING_MAX_ENTRIES // 800 + 1
    assert cells <= SMOOTHING_MAX_CELLS
    assert "entries of a smoothed copy" in smoothing_skipped(scan(as_matrix(genes)), 0.5, cells)
    assert smoothing_skipped(scan(as_matrix(genes)), 0.5, cells - 1) is None


def test_target_smoothing_trains_on_denoised_rna_and_leaves_protein_targets_alone(
    cite, caplog, tmp_path
):
    import logging

    rna, adt = cite
    assert PRESETS["default"]["target_smoothing"] > 0
    assert PRESETS["published"]["target_smoothing"] == PRESETS["0.1.0"]["target_smoothing"] == 0
    fit = {"train": "is_train", "max_epochs": 3, "progress": False}
    kw = {**FAST, "input_pca": 20}
    with caplog.at_level(logging.INFO, logger="sclibra"):
        smooth = sclibra.LIBRA(**kw).fit(adt, rna, **fit)
    assert "RNA's training cells learn 50 % of the mean of their 15 nearest" in caplog.text
    plain = sclibra.LIBRA(**kw, target_smoothing=0.0).fit(adt, rna, **fit)
    again = sclibra.LIBRA(**kw).fit(adt, rna, **fit)
    p_smooth, p_plain = smooth.predict(adt).X, plain.predict(adt).X
    assert not np.allclose(p_smooth, p_plain)
    np.testing.assert_array_equal(p_smooth, again.predict(adt).X)  # deterministic
    # the validation loss is that of the measured target: smoothing-free baseline, same cells
    assert smooth.val_cells_.equals(plain.val_cells_)
    loaded = sclibra.LIBRA.load(smooth.save(tmp_path / "m"))
    assert (loaded.target_smoothing, loaded.target_neighbors) == (0.5, 15)
    # a protein target (CLR: every entry non-zero) trains on its own values: the same model
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sclibra"):
        on = sclibra.LIBRA(**kw).fit(rna, adt, **fit)
    assert "target_smoothing: ADT trains on its own values" in caplog.text
    off = sclibra.LIBRA(**kw, target_smoothing=0.0).fit(rna, adt, **fit)
    np.testing.assert_array_equal(on.predict(rna).X, off.predict(rna).X)
    # a target with fewer features than the smoothing's PCs: neighbours in its own values
    one_gene = rna[:, rna.var_names[:1]].copy()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sclibra"):
        single = sclibra.LIBRA(**kw).fit(adt, one_gene, **fit)
    assert "nearest training cells (in its values)" in caplog.text
    assert single.predict(adt).X.shape == (adt.n_obs, 1)
    with pytest.raises(SclibraError, match="target_smoothing must be in"):
        sclibra.LIBRA(target_smoothing=1.5)
    with pytest.raises(SclibraError, match="target_neighbors must be an integer >= 1"):
        sclibra.LIBRA(target_neighbors=0)
