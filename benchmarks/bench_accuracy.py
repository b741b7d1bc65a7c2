"""Held-out prediction accuracy of default LIBRA against simple baselines.

What it measures
----------------
For each bundled direction (Multiome ATAC -> RNA, CITE-seq RNA -> ADT), the root mean squared
error of the predicted modality on the held-out cells (``obs["is_train"] == False``), for

* ``sclibra.LIBRA()`` with its default hyperparameters, trained on the ``is_train`` cells
  (of which the default 10 % monitor training), with 3 seeds (mean ± sd);
* three baselines fitted on all ``is_train`` cells
  (:func:`sclibra.metrics.baseline_predictions`): the per-feature training mean, kNN
  regression (15 neighbours in a 50-PC PCA of A) and ridge regression on that PCA.

Why
---
The published LIBRA reports error on the training cells, which says nothing about prediction.
A learned model is only worth its training time if it beats these baselines on cells it has not
seen: at the very least the mean (a model that ignores its input), and ideally kNN and ridge.
The bundled sets are small (500 / 600 cells), so this is a sanity check of the defaults, not a
benchmark of the method on real-size data.

Run ``python benchmarks/bench_accuracy.py`` (a few minutes on 2 cores) or with ``--quick``
(one seed, at most 20 epochs). Results: ``benchmarks/results/bench_accuracy.{md,json}``.
"""

from __future__ import annotations

import numpy as np
from _common import (
    DIRECTIONS,
    fit_and_score,
    held_out,
    load_direction,
    log,
    markdown_table,
    mean_sd,
    parse_args,
    write_results,
)

SEEDS = (0, 1, 2)


def baselines(direction: str) -> dict[str, float]:
    """Held-out RMSE of the mean, kNN and ridge baselines fitted on all training cells."""
    import sclibra

    a, b = load_direction(direction)
    a_train, b_train, a_test, b_test = held_out(a, b)
    preds = sclibra.metrics.baseline_predictions(
        a_train.X, b_train.X, a_test.X, methods=("mean", "knn", "ridge")
    )
    return {name: sclibra.metrics.rmse(pred, b_test.X) for name, pred in preds.items()}


def main() -> None:
    args = parse_args(__doc__)
    seeds = SEEDS[:1] if args.quick else SEEDS
    fit_kwargs = {"max_epochs": 20} if args.quick else {}
    runs, base = [], {}
    for direction in DIRECTIONS:
        base[direction] = baselines(direction)
        log(f"{direction}: baselines {base[direction]}")
        for seed in seeds:
            run = fit_and_score(direction, seed, fit_kwargs)
            runs.append(run)
            log(
                f"{direction} seed {seed}: RMSE {run['rmse']:.4f}, {run['epochs']} epochs, "
                f"{run['seconds']:.1f} s"
            )

    rows, summary = [], {}
    for direction in DIRECTIONS:
        mine = [r for r in runs if r["direction"] == direction]
        rmse = np.array([r["rmse"] for r in mine])
        b = base[direction]
        summary[direction] = {
            "libra_rmse_mean": float(rmse.mean()),
            "libra_rmse_sd": float(rmse.std(ddof=1)) if len(rmse) > 1 else 0.0,
            **{f"{k}_rmse": v for k, v in b.items()},
            **{f"beats_{k}": bool(rmse.mean() < v) for k, v in b.items()},
            **{f"seeds_beating_{k}": int((rmse < v).sum()) for k, v in b.items()},
        }
        _, _, a_name, b_name = DIRECTIONS[direction][1:]
        rows.append(
            [
                direction,
                mine[0]["n_train"] + mine[0]["n_val"],
                mine[0]["n_test"],
                mean_sd(rmse),
                f"{b['mean']:.4f}",
                f"{b['knn']:.4f}",
                f"{b['ridge']:.4f}",
                ", ".join(
                    f"{k} {int((rmse < v).sum())}/{len(rmse)}"
                    + (
                        " (within 1 sd)"
                        if len(rmse) > 1 and 0 < v - rmse.mean() < rmse.std(ddof=1)
                        else ""
                    )
                    for k, v in b.items()
                ),
                f"{np.mean([r['epochs'] for r in mine]):.0f}",
            ]
        )
    table = markdown_table(
        [
            "direction",
            "train cells",
            "held-out cells",
            f"sclibra RMSE (n={len(seeds)} seeds)",
            "mean",
            "kNN",
            "ridge",
            "seeds where sclibra beats the baseline",
            "mean epochs",
        ],
        rows,
    )
    per_seed = markdown_table(
        ["direction", "seed", "RMSE", "epochs", "stopped by", "seconds"],
        [
            [r["direction"], r["seed"], f"{r['rmse']:.4f}", r["epochs"], r["stopped_by"]]
            + [f"{r['seconds']:.1f}"]
            for r in runs
        ],
    )
    markdown = f"""# Held-out accuracy: sclibra vs baselines

Held-out RMSE (cells with `is_train == False`) of default `sclibra.LIBRA()` trained on the
`is_train` cells (10 % of them for validation), against baselines fitted on all `is_train`
cells: per-feature mean, kNN regression (15 neighbours, 50-PC PCA of A) and ridge regression
on that PCA. Lower is better. "Within 1 sd": sclibra's mean is lower than the baseline by
less than the seed-to-seed standard deviation, i.e. not a reliable win.{" **Quick run: 1 seed, at most 20 epochs.**" if args.quick else ""}

{table}

Per seed:

{per_seed}
"""
    write_results(
        "bench_accuracy",
        args,
        markdown,
        {"seeds": list(seeds), "fit_kwargs": fit_kwargs, "summary": summary, "runs": runs},
    )


if __name__ == "__main__":
    main()
