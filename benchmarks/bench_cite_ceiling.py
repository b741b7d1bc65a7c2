"""Where the held-out error of the CITE directions comes from, and what local averaging reaches.

What it measures
----------------
Held-out RMSE on the CITE directions of ``bench_peers.py`` (same splits: bmmc CITE trains on
donor s1d1 and scores donor s1d2; pbmc5k scores a random 30 % of one sample), split into two
parts: the error of each feature's mean over the held-out cells (``bias share``: the share of
the MSE that a per-feature offset, such as a donor's batch effect on a gene, would remove) and
the rest (``RMSE without bias``). Predictors:

``mean``               each feature's training mean (the mean peer);
``test_mean``          an oracle: each feature's mean over the held-out cells themselves;
``label_mean``         an oracle (bmmc, which has cell types): the training mean of the held-out
                       cell's *true* cell type (the overall mean for a type absent from
                       training). It knows the held-out donor's composition exactly, so the
                       per-feature bias left in its error is the donor's own offset, which no
                       prediction from modality A can know;
``knn15``              the kNN peer of ``bench_peers.py`` (15 neighbours, 50-PC PCA of A);
``knn50``              the same with 50 neighbours (more smoothing);
``knn_best_k``         an oracle choice: the same kNN with whichever of ``KNN_KS`` neighbours
                       scores best on the held-out cells themselves (an upper bound of kNN);
``extra_trees``        a flexible non-linear regressor that is not a neural network:
                       scikit-learn's ExtraTreesRegressor (60 trees, at least 20 cells a leaf,
                       one multi-output forest) on the same 50-PC PCA of A, not tuned;
``within_test_knn15``  an oracle: each held-out cell predicted by its 15 nearest *other held-out*
                       cells (PCA of their A): local averaging with no shift between training
                       and scored cells, which no method has at prediction time;
``sclibra``            the default model (``LIBRA(seed=s)``, seeds 0-2, as ``bench_peers.py``);
``sclibra_latent_knn<k>``  exploration: the default model's prediction averaged 1:1 with the mean
                       target of the ``k`` training cells nearest in its latent space, per seed;
                       the weight and ``k`` are not chosen on validation cells, so this row says
                       what such smoothing could give, not what a method reaches.

Where a set has cell types (bmmc), the held-out error of ``knn15`` and ``sclibra`` is then split
by the held-out cells' true type: how many cells of the type the training donor has, each
predictor's RMSE over the type's cells, and the type's part of the difference between
sclibra's and kNN's held-out MSE (the parts add up to the whole difference), also for the
held-out cells whose type is rare in training (fewer than ``RARE_IN_TRAINING`` cells) against
the rest. A new donor's composition differs from the training
donor's; this says whether sclibra loses on the types it saw or on those it barely saw.

A learning curve follows for the directions of ``LEARNING_CURVE`` (pbmc5k ADT->RNA, the CITE
direction with no donor shift that stays short of 2 % below its best peer): the same predictors
trained on nested random subsets (a quarter, a half) of the training cells, scored on the same
held-out cells. How much the error falls when the training cells double says how much a better
estimator of the same function of A could still gain there.

Run ``python benchmarks/bench_cite_ceiling.py`` (results:
``benchmarks/results/bench_cite_ceiling.{md,json}``).
"""

from __future__ import annotations

import bench_peers as bp
import numpy as np
from _common import TARGET_GAIN, log, markdown_table, parse_args, write_results

DIRECTIONS = (
    ("bmmc_cite", "ADT", "RNA"),
    ("bmmc_cite", "RNA", "ADT"),
    ("pbmc5k_cite", "ADT", "RNA"),
    ("pbmc5k_cite", "RNA", "ADT"),
)
LATENT_KS = (15, 50)
#: neighbours tried by the ``knn_best_k`` oracle
KNN_KS = (15, 30, 50, 100, 200)
#: a held-out cell type with fewer training cells than this counts as rare in training
RARE_IN_TRAINING = 10
#: cell types listed one by one in the report: at least this many held-out cells
MIN_TEST_CELLS = 5
#: directions with a learning curve, and the shares of the training cells it trains on
LEARNING_CURVE = (("pbmc5k_cite", "ADT", "RNA"),)
FRACTIONS = (0.25, 0.5, 1.0)
ORDER = (
    "mean",
    "test_mean",
    "label_mean",
    "knn15",
    "knn50",
    "knn_best_k",
    "extra_trees",
    "within_test_knn15",
    "sclibra",
    *[f"sclibra_latent_knn{k}" for k in LATENT_KS],
)


def decompose(pred: np.ndarray, truth: np.ndarray) -> dict:
    """RMSE, the share of the MSE from each feature's mean error, and the RMSE without it."""
    err = np.asarray(pred, dtype=np.float64) - truth
    mse = float(np.mean(err**2))
    bias = float(np.mean(err.mean(axis=0) ** 2))
    return {
        "rmse": float(np.sqrt(mse)),
        "bias_share": bias / mse,
        "rmse_without_bias": float(np.sqrt(mse - bias)),
    }


def _knn_means(ref: np.ndarray, query: np.ndarray, y: np.ndarray, k: int, skip_self=False):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + int(skip_self)).fit(ref)
    _, idx = nn.kneighbors(query)
    return y[idx[:, int(skip_self) :]].mean(axis=1)


def ceiling(set_name: str, a: str, b: str) -> dict:
    """RMSE decomposition of each predictor of the module docstring."""
    from sklearn.ensemble import ExtraTreesRegressor

    import sclibra
    from sclibra.metrics import baseline_predictions
    from sclibra.metrics._utils import pca_scores, pca_transform

    data = bp.load_set(set_name)
    a_train, b_train, a_test, b_test = bp._split(data, a, b)
    y_train, truth = bp._dense(b_train.X), bp._dense(b_test.X).astype(np.float64)
    n = a_test.n_obs
    preds = {
        "mean": np.tile(y_train.mean(axis=0), (n, 1)),
        "test_mean": np.tile(truth.mean(axis=0), (n, 1)),
    }
    label = bp.SETS[set_name][1]
    if label:
        lab_train = a_train.obs[label].astype(str).to_numpy()
        by_label = {lab: y_train[lab_train == lab].mean(axis=0) for lab in np.unique(lab_train)}
        overall = y_train.mean(axis=0)
        preds["label_mean"] = np.stack(
            [by_label.get(lab, overall) for lab in a_test.obs[label].astype(str).to_numpy()]
        )
    knn = {
        k: baseline_predictions(a_train.X, b_train.X, a_test.X, methods=("knn",), n_neighbors=k)[
            "knn"
        ]
        for k in sorted({15, 50, *KNN_KS})
    }
    preds["knn15"], preds["knn50"] = knn[15], knn[50]
    best_k = min(KNN_KS, key=lambda k: decompose(knn[k], truth)["rmse"])
    preds["knn_best_k"] = knn[best_k]
    est, z_train = pca_scores(a_train.X, 50, seed=0)
    forest = ExtraTreesRegressor(
        n_estimators=60, min_samples_leaf=20, max_features=1.0, random_state=0
    ).fit(z_train, y_train)
    preds["extra_trees"] = forest.predict(pca_transform(est, a_test.X))
    est, _ = pca_scores(a_test.X, 50, seed=0)
    z_test = pca_transform(est, a_test.X)
    preds["within_test_knn15"] = _knn_means(z_test, z_test, truth, 15, skip_self=True)
    out = {name: decompose(p, truth) for name, p in preds.items()}
    out["knn_best_k"]["k"] = best_k
    cell_mse = {"knn15": np.mean((preds["knn15"] - truth) ** 2, axis=1)}
    runs: dict[str, list] = {}
    for seed in bp.SEEDS:
        model = sclibra.LIBRA(seed=seed)
        model.fit(a_train, b_train, progress=False)
        res_test, res_train = model.predict(a_test), model.predict(a_train)
        pred = np.asarray(res_test.X, dtype=np.float32)
        runs.setdefault("sclibra", []).append(decompose(pred, truth))
        cell_mse.setdefault("sclibra", []).append(np.mean((pred - truth) ** 2, axis=1))
        for k in LATENT_KS:
            near = _knn_means(res_train.obsm["X_libra"], res_test.obsm["X_libra"], y_train, k)
            runs.setdefault(f"sclibra_latent_knn{k}", []).append(
                decompose(0.5 * pred + 0.5 * near, truth)
            )
    for name, vals in runs.items():
        out[name] = {key: float(np.mean([v[key] for v in vals])) for key in vals[0]}
        out[name]["rmse_sd"] = float(np.std([v["rmse"] for v in vals], ddof=1))
        out[name]["n_seeds"] = len(vals)
    for name in (n for n in ORDER if n in out):
        log(f"{set_name} {a}->{b} {name}: {out[name]}")
    if label:
        cell_mse["sclibra"] = np.mean(cell_mse["sclibra"], axis=0)  # per cell, over the seeds
        out["by_label"] = by_label_errors(
            lab_train, a_test.obs[label].astype(str).to_numpy(), cell_mse
        )
    return out


def by_label_errors(lab_train: np.ndarray, lab_test: np.ndarray, cell_mse: dict) -> dict:
    """Per held-out label: cells in training and held out, RMSE of each predictor of
    ``cell_mse`` (per-cell MSE), and the label's part of the difference between sclibra's and
    kNN's held-out MSE (``mse_diff``, summed over the label's cells and divided by every
    held-out cell, so the parts add up to ``gap_mse``; positive: sclibra's error is higher
    there); ``groups`` does the same for the held-out cells whose label has fewer than
    :data:`RARE_IN_TRAINING` training cells and for the rest.
    """
    train_counts = dict(zip(*np.unique(lab_train, return_counts=True)))
    n = len(lab_test)
    gap = float(np.mean(cell_mse["sclibra"]) - np.mean(cell_mse["knn15"]))

    def summary(mask) -> dict:
        row = {name: float(np.sqrt(np.mean(v[mask]))) for name, v in cell_mse.items()}
        row["mse_diff"] = float(np.sum(cell_mse["sclibra"][mask] - cell_mse["knn15"][mask]) / n)
        row["n_test"] = int(mask.sum())
        return row

    labels = {}
    for lab in np.unique(lab_test):
        mask = lab_test == lab
        labels[str(lab)] = {"n_train": int(train_counts.get(lab, 0)), **summary(mask)}
    rare = np.array([train_counts.get(lab, 0) < RARE_IN_TRAINING for lab in lab_test])
    groups = {
        f"fewer than {RARE_IN_TRAINING} training cells": summary(rare),
        f"{RARE_IN_TRAINING} or more training cells": summary(~rare),
    }
    return {"gap_mse": gap, "labels": labels, "groups": groups}


def learning_curve(set_name: str, a: str, b: str, full: dict) -> list[dict]:
    """Held-out RMSE of the mean, kNN15, ridge and sclibra (3 seeds) on nested training subsets.

    ``full``: :func:`ceiling`'s results for the direction, whose sclibra runs (every training
    cell, the same seeds) are the last row's: they are not fitted again.
    """
    import sclibra
    from sclibra.metrics import baseline_predictions

    data = bp.load_set(set_name)
    a_train, b_train, a_test, b_test = bp._split(data, a, b)
    truth = bp._dense(b_test.X).astype(np.float64)
    order = np.random.default_rng(0).permutation(a_train.n_obs)
    rows = []
    for frac in FRACTIONS:
        keep = np.sort(order[: int(round(frac * a_train.n_obs))])
        at, bt = a_train[keep], b_train[keep]
        peers = baseline_predictions(at.X, bt.X, a_test.X, methods=("mean", "knn", "ridge"))
        row = {"fraction": frac, "n_cells": len(keep)}
        row.update({name: decompose(p, truth)["rmse"] for name, p in peers.items()})
        if len(keep) == a_train.n_obs:
            row["sclibra"], row["sclibra_sd"] = full["sclibra"]["rmse"], full["sclibra"]["rmse_sd"]
        else:
            fits = []
            for seed in bp.SEEDS:
                model = sclibra.LIBRA(seed=seed).fit(at, bt, progress=False)
                fits.append(decompose(np.asarray(model.predict(a_test).X), truth)["rmse"])
            row["sclibra"] = float(np.mean(fits))
            row["sclibra_sd"] = float(np.std(fits, ddof=1))
        log(f"{set_name} {a}->{b} learning curve: {row}")
        rows.append(row)
    return rows


def main() -> None:
    args = parse_args(__doc__)
    results = {f"{s} {a}->{b}": ceiling(s, a, b) for s, a, b in DIRECTIONS}
    curves = {
        f"{s} {a}->{b}": learning_curve(s, a, b, results[f"{s} {a}->{b}"])
        for s, a, b in LEARNING_CURVE
    }
    rows = []
    for key, r in results.items():
        peer = r["knn15"]["rmse"]
        for name in (n for n in ORDER if n in r):
            v = r[name]
            rmse = f"{v['rmse']:.4f}"
            if "rmse_sd" in v:
                rmse += f" ± {v['rmse_sd']:.4f} (n={v['n_seeds']})"
            rows.append(
                [
                    key,
                    f"{name} (k = {v['k']})" if "k" in v else name,
                    rmse,
                    f"{100 * (1 - v['rmse'] / peer):+.1f} %",
                    f"{v['bias_share']:.3f}",
                    f"{v['rmse_without_bias']:.4f}",
                ]
            )
    table = markdown_table(
        ["direction", "predictor", "RMSE", "vs knn15", "bias share", "RMSE without bias"], rows
    )
    curve_rows = [
        [
            key,
            f"{r['fraction']:g} ({r['n_cells']:,})",
            f"{r['mean']:.4f}",
            f"{r['knn']:.4f}",
            f"{r['ridge']:.4f}",
            f"{r['sclibra']:.4f} ± {r['sclibra_sd']:.4f}",
            f"{100 * (1 - r['sclibra'] / min(r['knn'], r['ridge'])):+.1f} %",
        ]
        for key, rs in curves.items()
        for r in rs
    ]
    curve_notes = []
    for key, rs in curves.items():
        drops = [a["sclibra"] - b["sclibra"] for a, b in zip(rs, rs[1:])]
        full = rs[-1]
        target = (1 - TARGET_GAIN) * min(full["knn"], full["ridge"])  # issue 11
        curve_notes.append(
            f"- {key}: sclibra's RMSE falls by "
            + ", ".join(f"{d:.4f}" for d in drops)
            + f" from one row to the next; {100 * TARGET_GAIN:g} % below the better of kNN and ridge"
            f" is {target:.4f}, "
            f"{full['sclibra'] - target:.4f} below its error with every training cell "
            f"({(full['sclibra'] - target) / max(np.mean(drops), 1e-12):.1f} such steps)."
        )
    label_rows, group_rows, label_notes = [], [], []
    for key, r in results.items():
        if "by_label" not in r:
            continue
        bl = r["by_label"]
        for name, g in bl["groups"].items():
            group_rows.append(
                [
                    key,
                    name,
                    g["n_test"],
                    f"{g['knn15']:.4f}",
                    f"{g['sclibra']:.4f}",
                    f"{1000 * g['mse_diff']:+.2f}",
                ]
            )
        listed = sorted(
            ((lab, v) for lab, v in bl["labels"].items() if v["n_test"] >= MIN_TEST_CELLS),
            key=lambda t: -abs(t[1]["mse_diff"]),
        )
        for lab, v in listed:
            label_rows.append(
                [
                    key,
                    lab,
                    v["n_train"],
                    v["n_test"],
                    f"{v['knn15']:.4f}",
                    f"{v['sclibra']:.4f}",
                    f"{1000 * v['mse_diff']:+.2f}",
                ]
            )
        worst = listed[0] if listed else None
        if worst is not None:
            side = "above" if bl["gap_mse"] > 0 else "below"
            label_notes.append(
                f"- {key}: sclibra's held-out MSE is {abs(bl['gap_mse']):.4f} {side} kNN's; "
                f"the largest part of either sign, {worst[1]['mse_diff']:+.4f} (+: sclibra "
                f"behind), comes from {worst[0]} ({worst[1]['n_train']} training, "
                f"{worst[1]['n_test']} held-out cells)."
            )
    group_table = markdown_table(
        [
            "direction",
            "held-out cells whose type has",
            "cells",
            "knn15 RMSE",
            "sclibra RMSE (3 seeds)",
            "sclibra - knn15, part of the MSE (x 1e-3)",
        ],
        group_rows,
    )
    label_table = markdown_table(
        [
            "direction",
            "cell type",
            "training cells",
            "held-out cells",
            "knn15 RMSE",
            "sclibra RMSE (3 seeds)",
            "sclibra - knn15, part of the MSE (x 1e-3)",
        ],
        label_rows,
    )
    curve_table = markdown_table(
        [
            "direction",
            "training cells used",
            "mean",
            "knn15",
            "ridge",
            "sclibra (3 seeds)",
            "sclibra vs best of kNN, ridge",
        ],
        curve_rows,
    )
    md = f"""# CITE directions: where the held-out error comes from

Held-out cells of `bench_peers.py` (same splits). `test_mean` and `within_test_knn15` are
oracles that read the held-out cells' own targets, `label_mean` one that reads their true cell
type, and `knn_best_k` picks its number of neighbours on the held-out cells; no method has them
at prediction time. `extra_trees` is an untuned multi-output forest on the input's 50-PC PCA:
a flexible regressor of another family, to see whether a better estimator of the same
function of A is in reach.
"bias share": the share of the MSE that each feature's mean error over the held-out cells makes
(what a per-feature offset, such as a new donor's batch effect on a gene, costs); "vs knn15":
relative RMSE below the kNN peer (positive = lower error). The `sclibra_latent_knn` rows are an
exploration (weight and `k` not chosen on validation cells). Made with
`python benchmarks/bench_cite_ceiling.py`.

{table}

## By cell type (bmmc, held-out donor)

Where sclibra and the kNN peer differ, by the held-out cells' true cell type (which neither
reads). RMSE over the cells of the type (sclibra: per-cell MSE averaged over the 3 seeds); "part
of the MSE": the type's part of the difference between sclibra's and kNN's held-out MSE (the sum
over its cells of sclibra's squared error less kNN's, divided by all held-out cells, so a
direction's parts add up to the whole difference; positive: sclibra's error is higher there).
First the held-out cells grouped by how many cells of their type the training donor has, then
every type with at least {MIN_TEST_CELLS} held-out cells, largest part first.

{group_table}

{label_table}

{chr(10).join(label_notes)}

## Learning curve

The same held-out cells; the models train on nested random subsets of the training cells
(fraction 1: every training cell, the sclibra runs of the table above). The fall in error from
one row to the next says what one more doubling of the training cells might gain.

{curve_table}

{chr(10).join(curve_notes)}
"""
    write_results("bench_cite_ceiling", args, md, {"results": results, "learning_curve": curves})


if __name__ == "__main__":
    main()
