"""How far above peak popularity can any predictor rank a held-out cell's accessible peaks?

What it measures
----------------
Per-cell AUROC and AUPRC (target > 0 is a positive) on the held-out cells of the two ATAC-target
directions of ``bench_peers.py`` (same splits): ``bmmc_multiome`` RNA -> ATAC and
``scicar_a549`` RNA -> ATAC. Predictors, from the training cells only:

``mean``          peak popularity (the mean baseline);
``label_mean``    an oracle: the training mean of the held-out cell's *true* label (cell type,
                  or treatment time in sci-CAR), which no method has at prediction time;
``label_blend``   the oracle shrunk towards popularity (0.3 label mean + 0.7 mean);
``knn<k>``        the mean of the ``k`` nearest training cells in a 50-component PCA of RNA;
``knn150_blend``  0.5 knn150 + 0.5 mean;
``sclibra``       the default model, read from ``bench_peers.py``'s cached runs (3 seeds).

Per-cell AUROC only depends on the order of the peaks within a cell, so a predictor beats
popularity only where it knows which peaks a cell opens *beyond the popular ones*. This script
measures how much of that the data hold (the oracle) and what the tools reach.

Run ``python benchmarks/bench_atac_ceiling.py`` after ``bench_peers.py`` (results:
``benchmarks/results/bench_atac_ceiling.{md,json}``).
"""

from __future__ import annotations

import json

import bench_peers as bp
import numpy as np
from _common import log, markdown_table, parse_args, write_results

DIRECTIONS = (("bmmc_multiome", "RNA", "ATAC"), ("scicar_a549", "RNA", "ATAC"))
KS = (15, 50, 150)


def ceiling(set_name: str, a: str, b: str) -> dict:
    """Per-cell (AUROC, AUPRC) of each predictor of the module docstring."""
    import scipy.sparse as sp

    from sclibra.metrics import baseline_predictions

    data = bp.load_set(set_name)
    a_train, b_train, a_test, b_test = bp._split(data, a, b)
    target = sp.csr_matrix(b_train.X > 0, dtype=np.float32)  # binarised peaks, kept sparse
    mean = np.asarray(target.mean(axis=0), dtype=np.float32).ravel()
    preds = {"mean": np.tile(mean, (a_test.n_obs, 1))}
    label = bp.SETS[set_name][1]
    lab_train = a_train.obs[label].astype(str).to_numpy()
    lab_test = a_test.obs[label].astype(str).to_numpy()
    by_label = {
        lab: np.asarray(target[lab_train == lab].mean(axis=0)).ravel()
        for lab in np.unique(lab_train)
    }
    oracle = np.stack([by_label.get(lab, mean) for lab in lab_test])
    preds["label_mean"] = oracle
    preds["label_blend"] = 0.3 * oracle + 0.7 * mean
    for k in KS:  # the kNN peer of bench_peers.py (50-PC PCA of A), with k neighbours
        preds[f"knn{k}"] = baseline_predictions(
            a_train.X, target, a_test.X, methods=("knn",), n_neighbors=k
        )["knn"]
    preds["knn150_blend"] = 0.5 * preds["knn150"] + 0.5 * mean
    out = {}
    for name, p in preds.items():
        out[name] = bp.per_cell_auc(p, b_test.X)
        log(f"{set_name} {a}->{b} {name}: AUROC {out[name][0]:.4f} AUPRC {out[name][1]:.4f}")
    runs = []
    for seed in bp.SEEDS:
        f = bp.WORK / "sclibra" / "default" / f"{set_name}_{a}_to_{b}_seed{seed}.json"
        if f.is_file():
            r = json.loads(f.read_text())
            runs.append((r["auroc_cell"], r["auprc_cell"]))
    if runs:
        out["sclibra"] = tuple(np.mean(runs, axis=0).tolist())
        out["sclibra_n"] = len(runs)
    return out


def main() -> None:
    args = parse_args(__doc__)
    results = {f"{s} {a}->{b}": ceiling(s, a, b) for s, a, b in DIRECTIONS}
    names = ["mean", "label_mean", "label_blend", *[f"knn{k}" for k in KS], "knn150_blend"]
    names.append("sclibra")
    rows = []
    for key, r in results.items():
        base = r["mean"][0]
        for name in names:
            if name not in r:
                continue
            auroc, auprc = r[name]
            label = name + (f" (default, {r['sclibra_n']} seeds)" if name == "sclibra" else "")
            rows.append([key, label, f"{auroc:.4f}", f"{auroc - base:+.4f}", f"{auprc:.4f}"])
    table = markdown_table(
        ["direction", "predictor", "per-cell AUROC", "vs popularity", "per-cell AUPRC"], rows
    )
    md = f"""# ATAC targets: the per-cell AUROC that the data allow

Held-out cells of `bench_peers.py` (same splits). `label_mean` is an oracle (the training mean of
the held-out cell's true label); no method has that label at prediction time. Made with
`python benchmarks/bench_atac_ceiling.py`.

{table}
"""
    write_results("bench_atac_ceiling", args, md, {"results": results})


if __name__ == "__main__":
    main()
