"""aLIBRA (sclibra.tune): spaces, strategies, durable resume, failures, Pareto selection, backends.

Most tests use a fake trainer (a synthetic learning curve) so they run in milliseconds; a few
train real LIBRA models on the bundled CITE-seq set with tiny networks and few epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import sclibra
from sclibra._tune import (
    SEARCH_SPACES,
    SearchSpace,
    TuneResult,
    choice,
    compromise,
    loguniform,
    pareto_mask,
    randint,
    tune,
    uniform,
)
from sclibra._tune._strategies import asha_continue, make_trials, rung_epochs

matplotlib.use("Agg")

CALLS_ENV = "SCLIBRA_TEST_TUNE_CALLS"


# -- fake trainers (top level: picklable for spawned workers) -------------------------------------
def _curve(params: dict, epoch: int) -> float:
    """Validation loss of a configuration after ``epoch`` epochs: the floor depends on the
    configuration (n_nodes 64 best, larger dropout worse), and improves as 1/epoch."""
    floor = abs(params.get("n_nodes", 64) - 64) / 100 + params.get("dropout", 0.1)
    return floor + 1.0 / epoch


def fake_trainer(ctx):
    calls = os.environ.get(CALLS_ENV)
    if calls:
        with open(calls, "a") as fh:
            fh.write(ctx.trial_id + "\n")
    if ctx.params.get("n_layers") == 3:
        raise RuntimeError("boom: three layers are not allowed here")
    delay = float(os.environ.get("SCLIBRA_TEST_TUNE_SLEEP", "0"))
    best, epoch = np.inf, 0
    for epoch in range(1, ctx.fit_kwargs["max_epochs"] + 1):
        value = _curve(ctx.params, epoch)
        best = min(best, value)
        if ctx.report(epoch, value):
            break
    if delay:
        time.sleep(delay)
    out = {"val_loss": best, "n_epochs": epoch}
    if ctx.job.objective != "prediction":
        out["ppji"] = 1.0 - ctx.params.get("dropout", 0.1) - ctx.params.get("n_nodes", 64) / 1000
    return out


def killing_trainer(ctx):
    """Kills its own worker process for one configuration (like the out-of-memory killer)."""
    if ctx.params["n_nodes"] == 128:
        with open(os.environ[CALLS_ENV] + ".killed", "a") as fh:
            fh.write(ctx.trial_id + "\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_trainer(ctx)


def checking_trainer(ctx):
    """Logs how many trial rows are on disk when each trial starts."""
    n_rows = len(list((Path(ctx.job.out_dir) / "trials").glob("*.json")))
    with open(os.environ[CALLS_ENV] + ".rows", "a") as fh:
        fh.write(f"{n_rows}\n")
    return fake_trainer(ctx)


def one_model_trainer(ctx):
    """Trains one real LIBRA network (no ensemble) and records its cells' batches."""
    from sclibra._model import LIBRA

    model = LIBRA(**{**ctx.model_kwargs, "n_models": 1}).fit(
        ctx.data.a, ctx.data.b, train=ctx.data.cells, progress=False, **ctx.fit_kwargs
    )
    batches = ctx.fit_kwargs["batch_key"]
    record = {
        "type": type(batches).__name__,
        "train": sorted(set(batches[model.train_cells_])),
        "val": sorted(set(batches[model.val_cells_])),
    }
    with open(os.environ[CALLS_ENV], "a") as fh:
        fh.write(json.dumps(record).replace(" ", "") + "\n")
    return {"val_loss": float(model.best_val_loss_), "n_epochs": int(model.n_epochs_)}


SMALL = {"n_nodes": [32, 64, 128, 256], "dropout": [0.1, 0.2, 0.3]}
SMALL4 = {"n_nodes": [32, 64], "dropout": [0.1, 0.2]}


@pytest.fixture
def calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    monkeypatch.setenv(CALLS_ENV, str(path))

    def count():
        return len(path.read_text().split()) if path.exists() else 0

    return count


def _tune(out_dir, **kw):
    kw.setdefault("grid", SMALL)
    kw.setdefault("strategy", "grid")
    kw.setdefault("max_epochs", 30)
    kw.setdefault("trainer", fake_trainer)
    kw.setdefault("progress", False)
    kw.setdefault("train", "is_train")
    rna, adt = sclibra.datasets.bmmc_cite()
    return tune(rna, adt, out_dir=str(out_dir), **kw)


# -- search spaces -----------------------------------------------------------------------------
def test_presets_have_the_published_sizes():
    assert len(SearchSpace("default")) == 1
    assert len(SearchSpace("prediction")) == 960
    assert len(SearchSpace("integration")) == 1152
    grid = SearchSpace("prediction").grid()
    assert len({json.dumps(c, sort_keys=True) for c in grid}) == 960
    assert set(grid[0]) == {"n_layers", "n_nodes", "alpha", "dropout", "batch_size", "latent_dim"}
    assert SEARCH_SPACES["integration"]["n_layers"] == [1, 2, 3, 4, 5, 6]
    assert SEARCH_SPACES["default"]["n_nodes"] == [512]
    assert sclibra.tune is tune
    assert sclibra.TuneResult is TuneResult
    assert sclibra.tune.SEARCH_SPACES is SEARCH_SPACES
    assert sclibra.tune.loguniform is loguniform


def test_custom_space_validation_and_sampling():
    with pytest.raises(sclibra.SclibraError, match="unknown hyperparameter 'n_neurons'"):
        SearchSpace({"n_neurons": [1, 2]})
    with pytest.raises(sclibra.SclibraError, match="unknown search space 'fast'"):
        SearchSpace("fast")
    with pytest.raises(sclibra.SclibraError, match="no values given for hyperparameter 'alpha'"):
        SearchSpace({"alpha": []})
    space = SearchSpace(
        {
            "learning_rate": loguniform(1e-4, 1e-2),
            "n_nodes": randint(16, 64),
            "alpha": uniform(0.1, 0.5),
            "output_activation": choice(["relu", "linear"]),
            "dropout": 0.2,
        }
    )
    assert not space.is_finite
    assert space.size == float("inf")
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(200)]
    lr = np.array([d["learning_rate"] for d in draws])
    assert lr.min() >= 1e-4
    assert lr.max() <= 1e-2
    assert (lr < 1e-3).mean() == pytest.approx(
        0.5, abs=0.12
    )  # log-uniform: half below the midpoint
    assert all(16 <= d["n_nodes"] <= 64 and isinstance(d["n_nodes"], int) for d in draws)
    assert {d["output_activation"] for d in draws} == {"relu", "linear"}
    assert {d["dropout"] for d in draws} == {0.2}
    with pytest.raises(sclibra.SclibraError, match="exhaustive grid needs lists"):
        space.grid()
    with pytest.raises(sclibra.SclibraError, match="low < high"):
        uniform(1, 1)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"n_layers": [2, -1]}, r"search space: n_layers must be an integer >= 0, got -1"),
        ({"dropout": uniform(0.0, 1.0)}, r"search space: dropout must be in \[0.0, 1.0\)"),
        ({"n_nodes": uniform(16, 64)}, "search space: n_nodes takes integers"),
        ({"output_activation": choice(["relu", "tanh"])}, "output_activation must be one of"),
        ({"lr_factor": 2.0}, r"search space: lr_factor must be in \(0.0, 1.0\), got 2.0"),
    ],
)
def test_custom_space_values_are_checked_against_the_recipe(space, message):
    # the bounds are the recipe's (sclibra._recipe.RECIPE): refused before any trial runs
    with pytest.raises(sclibra.SclibraError, match=message):
        SearchSpace(space)


def test_searchable_parameters_are_the_recipes():
    from sclibra._recipe import RECIPE
    from sclibra._tune._spaces import FIT_PARAMS, MODEL_PARAMS

    assert set(MODEL_PARAMS) | set(FIT_PARAMS) == {a.name for a in RECIPE if a.searchable}
    for name, grid in SEARCH_SPACES.items():
        assert SearchSpace(name).describe() == grid


def test_make_trials_strategies_are_deterministic_and_extendable():
    space = SearchSpace(SMALL)
    grid = make_trials(space, "grid", None, 0)
    assert [t.index for t in grid] == list(range(12))
    assert len({t.trial_id for t in grid}) == 12
    with pytest.raises(sclibra.SclibraError, match="n_trials does not apply"):
        make_trials(space, "grid", 5, 0)
    r5 = make_trials(space, "random", 5, 1)
    r10 = make_trials(space, "random", 10, 1)
    assert [t.params for t in r5] == [t.params for t in r10[:5]]  # a larger n_trials extends
    assert len({t.trial_id for t in make_trials(space, "random", 50, 1)}) == 12  # no repeats
    assert make_trials(space, "random", 5, 2) != r5
    asha = make_trials(space, "asha", None, 0)
    assert sorted(t.trial_id for t in asha) == sorted(t.trial_id for t in grid)
    with pytest.raises(sclibra.SclibraError, match="needs n_trials"):
        make_trials(SearchSpace({"alpha": uniform(0.1, 0.5)}), "asha", None, 0)
    with pytest.raises(sclibra.SclibraError, match="unknown strategy"):
        make_trials(space, "bayes", 5, 0)


def test_rungs_and_asha_rule():
    assert rung_epochs(10, 3, 1500) == [10, 30, 90, 270, 810]
    assert rung_epochs(5, 2, 20) == [5, 10]
    with pytest.raises(sclibra.SclibraError, match="eta"):
        rung_epochs(5, 1, 20)
    assert asha_continue(1.0, [], 3)  # the first trial at a rung always goes on
    assert not asha_continue(2.0, [1.0], 3)  # top 1/3 of two values = the best one
    assert asha_continue(1.0, [2.0, 3.0], 3)
    assert asha_continue(2.0, [1.0, 3.0, 4.0], 3)  # ceil(4/3) = 2: the two best go on
    assert not asha_continue(3.0, [1.0, 2.0, 4.0], 3)
    assert not asha_continue(float("nan"), [], 3)


# -- searches with the fake trainer ------------------------------------------------------------
def test_grid_search_table_and_selection(tmp_path, calls):
    res = _tune(tmp_path / "s")
    assert isinstance(res, TuneResult)
    assert calls() == 12
    t = res.trials
    assert len(t) == 12
    assert (t["status"] == "ok").all()
    for col in (
        "trial_id",
        "n_nodes",
        "dropout",
        "val_loss",
        "n_epochs",
        "seconds",
        "status",
        "error",
    ):
        assert col in t.columns
    assert (t["n_epochs"] == 30).all()
    assert res.best_config == {"n_nodes": 64, "dropout": 0.1}
    assert res.best_trial["val_loss"] == pytest.approx(0.1 + 1 / 30)
    on_disk = pd.read_csv(tmp_path / "s" / "trials.csv")
    assert list(on_disk["trial_id"]) == list(t["trial_id"])
    loaded = TuneResult.load(tmp_path / "s")
    assert loaded.best_config == res.best_config
    with pytest.raises(sclibra.SclibraError, match="was not saved"):
        loaded.best_model  # noqa: B018 - no model kept and no data to train it


def test_asha_prunes_and_finds_the_grid_best_with_fewer_epochs(tmp_path, calls):
    full = _tune(tmp_path / "grid", max_epochs=90)
    asha = _tune(tmp_path / "asha", strategy="asha", max_epochs=90, grace_period=3, eta=3)
    assert set(asha.trials["status"]) == {"ok", "pruned"}
    assert asha.best_config == full.best_config
    assert asha.trials["n_epochs"].sum() < 0.6 * full.trials["n_epochs"].sum()
    pruned = asha.trials[asha.trials["status"] == "pruned"]
    assert pruned["rung"].isin([3, 9, 27]).all()
    assert (pruned["n_epochs"] == pruned["rung"]).all()


def test_random_search_and_extension(tmp_path, calls):
    res = _tune(tmp_path / "r", strategy="random", n_trials=4)
    assert len(res.trials) == 4
    assert calls() == 4
    res = _tune(tmp_path / "r", strategy="random", n_trials=7)
    assert len(res.trials) == 7
    assert calls() == 7


def test_resume_skips_finished_trials_and_rows_are_durable(tmp_path, calls):
    _tune(tmp_path / "s", trainer=checking_trainer)
    assert calls() == 12
    rows_seen = Path(os.environ[CALLS_ENV] + ".rows")
    # every finished trial was on disk before the next one started
    assert rows_seen.read_text().split() == [str(i) for i in range(12)]
    rows = sorted((tmp_path / "s" / "trials").glob("*.json"))
    assert len(rows) == 12
    os.unlink(rows[0])  # as if the run had stopped before this trial
    res = _tune(tmp_path / "s", trainer=checking_trainer)
    assert calls() == 13
    assert len(res.trials) == 12
    assert rows_seen.read_text().split()[-1] == "11"


def test_different_search_in_same_folder_is_refused(tmp_path, calls):
    _tune(tmp_path / "s")
    with pytest.raises(sclibra.SclibraError, match=r"different search \(differs in: space\)"):
        _tune(tmp_path / "s", grid={"n_nodes": [32, 64]})
    with pytest.raises(sclibra.SclibraError, match="differs in: fit"):
        _tune(tmp_path / "s", max_epochs=10)
    keep = tmp_path / "s" / "notes.txt"
    keep.write_text("mine")
    res = _tune(tmp_path / "s", grid={"n_nodes": [32, 64]}, overwrite=True)
    assert len(res.trials) == 2
    assert keep.read_text() == "mine"


def test_failing_trial_is_recorded_and_search_goes_on(tmp_path, calls):
    res = _tune(tmp_path / "f", grid={"n_layers": [2, 3], "n_nodes": [32, 64]})
    t = res.trials.set_index("n_layers")
    assert (t.loc[3, "status"] == "failed").all()
    assert t.loc[3, "error"].str.contains("RuntimeError: boom: three layers").all()
    assert (t.loc[2, "status"] == "ok").all()
    assert res.best_config["n_layers"] == 2
    calls_before = calls()
    _tune(tmp_path / "f", grid={"n_layers": [2, 3], "n_nodes": [32, 64]})
    assert calls() == calls_before  # failed rows are finished: not retried ...
    _tune(tmp_path / "f", grid={"n_layers": [2, 3], "n_nodes": [32, 64]}, retry_failed=True)
    assert calls() == calls_before + 2  # ... unless asked


def test_parallel_workers_same_table_and_a_dead_worker_is_recorded(tmp_path, calls):
    grid = {"n_nodes": [32, 64, 128, 256], "dropout": [0.1]}
    one = _tune(tmp_path / "one", grid=grid)
    two = _tune(tmp_path / "two", grid=grid, n_jobs=2, trainer=killing_trainer)
    t = two.trials.set_index("n_nodes")
    assert t.loc[128, "status"] == "failed"
    assert "worker process running this trial died" in t.loc[128, "error"]
    assert not list((tmp_path / "two" / "running").glob("*"))
    cols = ["trial_id", "status", "n_nodes", "dropout", "val_loss", "n_epochs"]
    keep = two.trials["n_nodes"] != 128
    pd.testing.assert_frame_equal(
        one.trials.loc[keep, cols].reset_index(drop=True),
        two.trials.loc[keep, cols].reset_index(drop=True),
    )
    assert calls() == 4 + 3
    # the killer ran twice: in the pool, then alone to tell it from its neighbours
    assert len(Path(os.environ[CALLS_ENV] + ".killed").read_text().split()) == 2


def test_killed_run_keeps_finished_trials_and_resumes(tmp_path):
    out, calls_file = tmp_path / "k", tmp_path / "calls.txt"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_tune
        test_tune._tune({str(out)!r})
        """
    )
    env = dict(os.environ, SCLIBRA_TEST_TUNE_SLEEP="0.4", **{CALLS_ENV: str(calls_file)})
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if len(list((out / "trials").glob("*.json"))) >= 3:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = list((out / "trials").glob("*.json"))
    assert 3 <= len(kept) < 12
    assert all(json.loads(p.read_text())["status"] == "ok" for p in kept)
    n_started = len(calls_file.read_text().split())
    os.environ[CALLS_ENV] = str(calls_file)
    try:
        res = _tune(out)
    finally:
        del os.environ[CALLS_ENV]
    assert len(res.trials) == 12
    assert (res.trials["status"] == "ok").all()
    assert len(calls_file.read_text().split()) == n_started + 12 - len(kept)


# -- selection and plots -----------------------------------------------------------------------
def test_pareto_front_on_a_hand_made_table():
    #          loss  ppji
    values = [
        [0.10, 0.50],  # 0 front (best loss)
        [0.20, 0.80],  # 1 front
        [0.30, 0.90],  # 2 front (best ppji)
        [0.25, 0.70],  # 3 dominated by 1
        [0.10, 0.40],  # 4 dominated by 0 (same loss, lower ppji)
        [np.nan, 0.99],  # 5 never on the front
        [0.40, 0.90],  # 6 dominated by 2
    ]
    mask = pareto_mask(np.array(values), [False, True])
    assert mask.tolist() == [True, True, True, False, False, False, False]
    front = pd.DataFrame(np.array(values)[mask], columns=["val_loss", "ppji"], index=[0, 1, 2])
    # rescaled: 0 -> (0, 1), 1 -> (0.5, 0.25), 2 -> (1, 0); closest to (0, 0) is trial 1
    assert compromise(front) == 1


def test_both_objective_result_and_plots(tmp_path, calls):
    res = _tune(tmp_path / "b", objective="both")
    front = res.pareto_front
    assert len(front) >= 2
    assert front["val_loss"].is_monotonic_increasing
    assert front["ppji"].is_monotonic_increasing
    best = res.best_configs
    assert best["prediction"] == {"n_nodes": 64, "dropout": 0.1}
    assert best["integration"] == {"n_nodes": 32, "dropout": 0.1}
    assert res.best_trial["trial_id"] in set(front["trial_id"])
    fig = res.plot_hyperparameters()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    ax = res.plot_pareto()
    assert ax.get_xlabel().startswith("validation MSE")
    res.to_csv(tmp_path / "t.csv")
    with pytest.raises(sclibra.SclibraError, match="exists"):
        res.to_csv(tmp_path / "t.csv")
    assert len(pd.read_csv(tmp_path / "t.csv")) == 12


def test_bad_arguments_have_clear_errors(tmp_path):
    with pytest.raises(sclibra.SclibraError, match="unknown objective 'speed'"):
        _tune(tmp_path / "x", objective="speed")
    with pytest.raises(sclibra.SclibraError, match="unknown backend"):
        _tune(tmp_path / "x", backend="dask")
    with pytest.raises(sclibra.SclibraError, match="n_jobs must be"):
        _tune(tmp_path / "x", n_jobs=0)
    with pytest.raises(sclibra.SclibraError, match="fit_kwargs may not set 'callback'"):
        _tune(tmp_path / "x", fit_kwargs={"callback": print})
    with pytest.raises(sclibra.SclibraError, match="unknown option.*'patience'"):
        _tune(tmp_path / "x", fit_kwargs={"patience": 3})
    with pytest.raises(sclibra.SclibraError, match=r"validation_split'\] must be > 0"):
        _tune(tmp_path / "x", fit_kwargs={"validation_split": 0})
    with pytest.raises(sclibra.SclibraError, match="train='nope'"):
        _tune(tmp_path / "x", train="nope")


def test_batch_key_is_checked_once_and_every_trial_validates_on_whole_batches(tmp_path, calls):
    with pytest.raises(sclibra.SclibraError, match="batch_key='nope': no such obs column"):
        _tune(tmp_path / "bad", fit_kwargs={"batch_key": "nope"})
    with pytest.raises(sclibra.SclibraError, match="batch_key: 3 labels for 600 search cells"):
        _tune(tmp_path / "bad", train=None, fit_kwargs={"batch_key": ["a", "b", "c"]})
    assert calls() == 0  # refused before any trial
    rna, _ = sclibra.datasets.bmmc_cite()
    donors = rna.obs["batch"].astype(str)
    assert donors.nunique() == 2
    grid = {"n_nodes": [16, 32], "n_layers": [1], "latent_dim": [4]}
    kw = dict(grid=grid, train=None, trainer=one_model_trainer, max_epochs=2)
    res = _tune(tmp_path / "s", fit_kwargs={"batch_key": "batch"}, **kw)
    assert (res.trials["status"] == "ok").all()
    rows = [json.loads(line) for line in Path(os.environ[CALLS_ENV]).read_text().split()]
    assert len(rows) == 2
    for row in rows:  # the trial read labels; its validation cells are one whole donor
        assert row["type"] == "Series"
        assert len(row["val"]) == 1
        assert row["train"] == sorted(set(donors) - set(row["val"]))
    # the same labels given as an array are the same search: it resumes, training nothing
    _tune(tmp_path / "s", fit_kwargs={"batch_key": donors.to_numpy()}, **kw)
    assert calls() == 2
    with pytest.raises(sclibra.SclibraError, match="differs in: fit"):
        _tune(tmp_path / "s", fit_kwargs={"batch_key": donors.to_numpy()[::-1]}, **kw)


# -- real LIBRA trials ---------------------------------------------------------------------------
def test_real_search_on_bundled_cite(tmp_path):
    grid = {"n_nodes": [16, 32], "latent_dim": [4], "batch_size": [64, 7000], "n_layers": [1]}
    res = _tune(
        tmp_path / "real",
        grid=grid,
        trainer=None,
        objective="both",
        labels="cell_type",
        max_epochs=8,
        save_latent=True,
    )
    t = res.trials
    assert (t["status"] == "ok").all()
    assert len(t) == 4
    assert t["val_loss"].between(0, 10).all()
    assert t["ppji"].between(0, 1).all()
    assert t["ari"].notna().all()
    assert (t["n_epochs"] == 8).all()
    full = t[t["batch_size"] == 7000]
    assert (full["batch_size_used"] < 7000).all()  # clamped to the training cells, recorded
    model = res.best_model
    assert isinstance(model, sclibra.LIBRA)
    assert model.config["n_nodes"] == res.best_config["n_nodes"]
    # the selected model is trained exactly as in its trial
    assert model.best_val_loss_ == pytest.approx(res.best_trial["val_loss"], rel=1e-5)
    # selection never saw the held-out cells
    rna, _ = sclibra.datasets.bmmc_cite()
    test_cells = set(rna.obs_names[~rna.obs["is_train"].to_numpy()])
    assert not test_cells & (set(model.train_cells_) | set(model.val_cells_))
    z = np.load(tmp_path / "real" / "latents" / f"{res.best_trial['trial_id']}.npz")
    assert z["latent"].shape == (int(rna.obs["is_train"].sum()), 4)
    assert not test_cells & set(z["obs_names"])
    again = sclibra.LIBRA.load(tmp_path / "real" / "best_model" / res.best_trial["trial_id"])
    assert again.config == model.config


def test_integration_search_over_the_latent_regulariser(tmp_path):
    # the regulariser's weight and components are searchable: each trial trains with its own
    grid = {"latent_pca": [0.0, 5.0], "latent_pcs": [2, 20], "n_nodes": [16], "n_layers": [1]}
    res = _tune(
        tmp_path / "reg", grid=grid, trainer=None, objective="integration",
        labels="cell_type", max_epochs=3, save_latent=True,
    )  # fmt: skip
    t = res.trials
    assert (t["status"] == "ok").all()
    assert len(t) == 4
    assert sorted(zip(t["latent_pca"], t["latent_pcs"])) == [(0, 2), (0, 20), (5, 2), (5, 20)]
    z = {
        (r.latent_pca, r.latent_pcs): np.load(tmp_path / "reg" / "latents" / f"{r.trial_id}.npz")
        for r in t.itertuples()
    }
    assert not np.allclose(z[5, 2]["latent"], z[5, 20]["latent"])
    # without the regulariser its components change nothing
    np.testing.assert_array_equal(z[0, 2]["latent"], z[0, 20]["latent"])
    assert res.best_model.config["latent_pcs"] == res.best_config["latent_pcs"]


def test_cli_tune(tmp_path, capsys):
    from sclibra.cli import main

    ext = Path(sclibra.datasets.extdata_dir()) / "bmmc_cite"
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"n_nodes": [16, 32], "n_layers": [1], "latent_dim": [4]}))
    args = [
        "tune",
        "--input-a", str(ext / "rna.h5ad"),
        "--input-b", str(ext / "adt.h5ad"),
        "--train-key", "is_train",
        "--grid", str(grid),
        "--strategy", "grid",
        "--max-epochs", "4",
        "--out-dir", str(tmp_path / "cli"),
        "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 trials" in printed
    assert "best:" in printed
    assert len(pd.read_csv(tmp_path / "cli" / "trials.csv")) == 2
    assert (tmp_path / "cli" / "hyperparameters.png").stat().st_size > 1000
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_nodes": {"normal": [1, 2]}}))
    assert main(args[:8] + [str(bad)] + args[9:]) == 2
    assert "must be a list or one of" in capsys.readouterr().err
    # raw counts: every trial fails, and the command says so with a non-zero status; the fit
    # options that train takes (--allow-counts, the recipe's fit flags) reach every trial
    counts = [*args[:-3], "--layer-a", "counts", "--min-delta", "0.01"]
    assert main([*counts, "--out-dir", str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err
    assert "no trial completed (2 run); the first error:" in err
    assert "raw counts" in err
    assert main([*counts, "--allow-counts", "--out-dir", str(tmp_path / "raw2")]) == 0
    trials = pd.read_csv(tmp_path / "raw2" / "trials.csv")
    assert (trials["status"] == "ok").all()
    saved = json.loads((tmp_path / "raw2" / "search.json").read_text())
    fit = saved["definition"]["fit"]
    assert fit["min_delta"] == 0.01
    assert fit["allow_counts"] is True


# -- Ray backend -------------------------------------------------------------------------------
def test_ray_backend_gives_the_same_table(tmp_path, calls):
    if os.environ.get("CI") != "true":  # CI installs the extra: there the test must run
        pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra (sclibra[ray])")
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fake trainer
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        kw = dict(strategy="asha", max_epochs=27, grace_period=3, grid=SMALL4)
        local = _tune(tmp_path / "local", **kw)
        viaray = _tune(tmp_path / "ray", backend="ray", n_jobs=2, **kw)
    finally:
        ray.shutdown()
    assert list(viaray.trials.columns) == list(local.trials.columns)
    assert sorted(viaray.trials["trial_id"]) == sorted(local.trials["trial_id"])
    assert viaray.best_config == local.best_config == {"n_nodes": 64, "dropout": 0.1}
    assert set(viaray.trials["status"]) <= {"ok", "pruned"}
    assert (viaray.trials["status"] == "ok").any()
    # rows were written durably by the driver: a resume trains nothing
    n = calls()
    again = _tune(tmp_path / "ray", backend="ray", **kw)
    assert calls() == n
    assert len(again.trials) == 4


def test_input_pca_can_be_searched(tmp_path):
    rna, adt = sclibra.datasets.bmmc_cite()
    grid = {"input_pca": [0, 20], "n_nodes": [16], "latent_dim": [4], "batch_size": [64]}
    res = tune(
        rna, adt, grid=grid, strategy="grid", train="is_train", max_epochs=2, refit=False,
        out_dir=str(tmp_path / "t"), progress=False,
    )  # fmt: skip
    assert sorted(res.trials["input_pca"].tolist()) == [0, 20]
    assert res.trials["status"].eq("ok").all()
    with pytest.raises(sclibra.SclibraError, match="input_pca"):
        tune(rna, adt, grid={"input_pca": [-1]}, strategy="grid", train="is_train")
