"""Training speed before and after the fast mechanics of issue 13, measured side by side.

What it measures
----------------
For each data set, the *same* ``sclibra.LIBRA()`` (0.1.0's recipe: ``preset="0.1.0"`` where the
package has presets) is trained by
two versions of the package in fresh subprocesses of the same run, alternately:

* **before**: the code of commit ``4f42f40`` (exported with ``git archive`` to
  ``benchmarks/_work/before``, put first on ``PYTHONPATH``);
* **after**: this checkout.

Rows: seconds per epoch (median over a fixed number of epochs, early stopping off so both versions
run the same number) and per step (epoch / steps, validation included), their ratio; a per-step
profile (data, forward + loss, backward, optimizer step; mean over steps after a warm-up);
the full default fit of the new version (to early stopping: epochs, seconds, held-out RMSE) and
the time of a kNN regression peer (k = 15 on a 50-dimension TruncatedSVD of the input, fitted and
applied to the held-out cells) in the same run.

Data sets: (a) bundled bone-marrow CITE RNA -> ADT, (b) ``pbmc5k_cite`` RNA -> ADT, (c) synthetic
10k cells x 5k features at 9 % density (pbmc5k's RNA density) -> 100 targets, (d) sci-CAR RNA ->
ATAC (52,761 output peaks; a few epochs only). (b) and (d) read ``../shared/data`` (or
``$SCLIBRA_SHARED_DATA``) and are skipped where it is absent.

Every run uses the same number of torch threads (``--threads``, default 1, so a loaded machine
does not decide the ratio); the thread count the new default would pick is recorded too.

Run ``python benchmarks/bench_speed.py`` (about 15 minutes on 2 cores) or with ``--quick``.
Results: ``benchmarks/results/bench_speed.{md,json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO_ROOT,
    WorkerError,
    export_package,
    log,
    markdown_table,
    parse_args,
    prepare_worker,
    run_worker,
    scicar_a549,
    serve_worker,
    shared_data_dir,
    version_env,
    write_results,
)

HERE = Path(__file__).resolve().parent
BEFORE_COMMIT = "4f42f40"
BEFORE_DIR = HERE / "_work" / "before"
SHARED = shared_data_dir()

#: name -> (epochs timed per version, profile steps)
CASES = {
    "bmmc_cite RNA->ADT": (20, 20),
    "pbmc5k_cite RNA->ADT": (8, 20),
    "synthetic 10k x 5k -> 100": (4, 20),
    "sci-CAR RNA->ATAC": (2, 6),
}
QUICK = {"bmmc_cite RNA->ADT": (5, 5), "synthetic 10k x 5k -> 100": (1, 5)}


# ----------------------------------------------------------------------------------------------
# data (worker side)
# ----------------------------------------------------------------------------------------------
def synthetic(n=10_000, p=5_000, q=100, density=0.09, seed=0):
    """Sparse non-negative input driven by 10 hidden factors; targets a noisy mix of them."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    z = rng.random((n, 10), dtype=np.float32)
    a = sp.random(n, p, density=density, format="csr", random_state=seed, dtype=np.float32)
    rows = np.repeat(np.arange(n), np.diff(a.indptr))
    a.data = (1 + 2 * z[rows, a.indices % 10]) * a.data  # values carry the factors
    b = (z - 0.5) @ rng.standard_normal((10, q)).astype(np.float32)
    b += 0.3 * b.std() * rng.standard_normal(b.shape).astype(np.float32)
    is_train = rng.random(n) < 0.8
    return a, b.astype(np.float32), is_train


def same_recipe() -> dict:
    """``LIBRA()`` arguments giving 0.1.0's recipe in every version (presets came with 0.2.0,
    whose default is an ensemble of 3): this benchmark compares mechanics, not recipes."""
    import inspect

    import sclibra

    return {"preset": "0.1.0"} if "preset" in inspect.signature(sclibra.LIBRA).parameters else {}


def load_case(name: str):
    """``(a, b, is_train)``: modality A and B (AnnData or arrays, same cells) and the split."""
    import anndata as ad

    if name == "bmmc_cite RNA->ADT":
        import sclibra

        rna, adt = sclibra.datasets.bmmc_cite()
        adt = adt[rna.obs_names]
        return rna, adt, rna.obs["is_train"].to_numpy(dtype=bool)
    if name == "pbmc5k_cite RNA->ADT":
        rna = ad.read_h5ad(SHARED / "pbmc5k_cite" / "rna.h5ad")
        rna.var_names_make_unique()
        adt = ad.read_h5ad(SHARED / "pbmc5k_cite" / "adt.h5ad")[rna.obs_names]
        return rna, adt, rna.obs["is_train"].to_numpy(dtype=bool)
    if name == "sci-CAR RNA->ATAC":
        return scicar_a549(SHARED)
    if name.startswith("synthetic"):
        return synthetic()
    raise ValueError(name)


def _rows(x, mask):
    return x[mask]


def _dense(x):
    import scipy.sparse as sp

    x = getattr(x, "X", x)
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def _rmse(pred, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))


# ----------------------------------------------------------------------------------------------
# worker tasks
# ----------------------------------------------------------------------------------------------
def task_fit(spec):
    """Fixed number of epochs (early stopping off): per-epoch and per-step seconds."""
    import sclibra

    a, b, is_train = load_case(spec["case"])
    model = sclibra.LIBRA(seed=0, **same_recipe())
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(
        _rows(a, is_train),
        _rows(b, is_train),
        max_epochs=spec["epochs"],
        early_stopping_patience=10**6,
        progress=False,
    )
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    sec = model.history["seconds"].to_numpy()
    n_train = len(model.train_cells_)
    return {
        "epoch_s": float(np.median(sec)),
        "epoch_s_all": sec.tolist(),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu,
        "cpu_epoch_s": fit_cpu / spec["epochs"],
        "steps": int(np.ceil(n_train / min(model.batch_size, n_train))),
        "n_train": n_train,
        "val_loss": model.history["val_loss"].tolist(),
    }


def task_profile(spec):
    """Per-step time split into data, forward + loss, backward and optimizer step."""
    import torch

    import sclibra
    from sclibra import _train
    from sclibra._data import as_matrix, pair_cells

    a, b, is_train = load_case(spec["case"])
    ma, mb = pair_cells(as_matrix(_rows(a, is_train), name="A"), as_matrix(_rows(b, is_train)))
    cpu = torch.device("cpu")
    model = sclibra.LIBRA(seed=0, **same_recipe())
    torch.manual_seed(0)
    net = sclibra.LIBRANet(ma.n_vars, mb.n_vars, latent_dim=10, output_activation="relu")
    sparse = _train.use_sparse_path(ma, cpu)
    if hasattr(_train, "make_optimizer"):  # after
        opt = _train.make_optimizer(net.parameters(), learning_rate=1e-3, device=cpu)
        ys = _train.RowSource(mb, cpu)
        xs = _train.RowSource(ma, cpu, sparse=sparse)
    else:  # before
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def ys(idx):
            return _train._targets(mb, idx, cpu)

        def xs(idx):
            return _train.to_tensor(ma, idx, cpu, sparse)

    rng = np.random.default_rng(0)
    order = rng.permutation(ma.n_obs)
    bs = model.batch_size
    parts = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    n_steps, warm = spec["steps"], 2
    clock = time.process_time  # CPU seconds: robust to other jobs on a loaded machine
    net.train()
    for i in range(n_steps + warm):
        idx = order[(i * bs) % max(ma.n_obs - bs, 1) :][:bs]
        t0 = clock()
        xb, yb = xs(idx), ys(idx)
        t1 = clock()
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((net(xb) - yb) ** 2)
        t2 = clock()
        loss.backward()
        t3 = clock()
        opt.step()
        t4 = clock()
        if i >= warm:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[k] += v
    return {k: v / n_steps for k, v in parts.items()} | {"sparse_input": bool(sparse)}


def automatic_threads() -> None:
    """Undo :func:`prepare_worker`'s fixed thread count: the package decides (its default)."""
    import torch

    import sclibra

    sclibra.settings.num_threads = None
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # torch's default: no ceiling


def task_full(spec):
    """The default fit to early stopping (new version): epochs, seconds, held-out RMSE."""
    import sclibra
    from sclibra import _settings, _train

    a, b, is_train = load_case(spec["case"])
    recipe = spec.get("recipe")
    recipe = {} if recipe == "default" else (recipe if isinstance(recipe, dict) else same_recipe())
    model = sclibra.LIBRA(seed=0, **recipe)
    decided = {}
    if spec.get("auto_threads"):
        automatic_threads()
        from sclibra import _model

        if spec.get("members_at_a_time"):  # --members-check: impose the members at a time
            forced = (int(spec["members_at_a_time"]), 1)
            _model.member_workers = lambda *args: forced
        elif hasattr(_train, "member_workers"):  # record the decision (members at a time)
            real_workers = _train.member_workers

            def spy(*args):
                decided["members_at_a_time"], decided["threads_each"] = real_workers(*args)
                return decided["members_at_a_time"], decided["threads_each"]

            _model.member_workers = spy
    net_flops = None
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(_rows(a, is_train), _rows(b, is_train), progress=False)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    if hasattr(_train, "step_flops"):
        net_flops = _train.step_flops(model.module, model.batch_size)
    t0 = time.perf_counter()
    pred = model.predict(_rows(a, ~is_train)).X
    pred_s = time.perf_counter() - t0
    truth = _dense(_rows(b, ~is_train))
    auroc = None
    if "ATAC" in spec["case"]:
        import bench_peers

        auroc = bench_peers.per_cell_auc(np.asarray(pred, dtype=np.float32), truth)[0]
    return {
        "auroc_cell": auroc,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu,
        "predict_s": pred_s,
        "epochs": int(model.n_epochs_),
        "rmse": _rmse(pred, truth),
        "auto_threads_now": _settings.auto_num_threads(net_flops) if net_flops else None,
        **decided,
    }


def task_knn(spec):
    """kNN regression peer: k = 15 on a 50-dim TruncatedSVD of the input (fit + predict)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neighbors import KNeighborsRegressor

    a, b, is_train = load_case(spec["case"])
    xa = getattr(a, "X", a)
    t0, c0 = time.perf_counter(), time.process_time()
    svd = TruncatedSVD(50, random_state=0).fit(xa[is_train])
    knn = KNeighborsRegressor(15).fit(svd.transform(xa[is_train]), _dense(_rows(b, is_train)))
    pred = knn.predict(svd.transform(xa[~is_train]))
    knn_s, knn_cpu = time.perf_counter() - t0, time.process_time() - c0
    truth = _dense(_rows(b, ~is_train))
    return {
        "knn_s": knn_s,
        "knn_cpu_s": knn_cpu,
        "rmse": _rmse(pred, truth),
    }


def task_seurat(spec):
    """Seurat v4 FindTransferAnchors + TransferData peer (``bench_peers.run_seurat``): the wall
    time of the whole Rscript call (reading the exported matrices included) and Seurat's own
    seconds for anchors + transfer, with the held-out RMSE.
    """
    import bench_peers

    a, b, is_train = load_case(spec["case"])
    t0 = time.perf_counter()
    res = bench_peers.run_seurat(_rows(a, is_train), _rows(b, is_train), _rows(a, ~is_train))
    wall = time.perf_counter() - t0
    if res is None:
        return {"seurat_s": None}
    pred, _, seconds = res
    truth = _dense(_rows(b, ~is_train))
    return {
        "seurat_s": seconds,
        "seurat_call_s": wall,
        "rmse": _rmse(pred, truth),
    }


def task_threads(spec):
    """Fixed epochs with ``spec['n']`` threads, or the automatic choice (``n = 'auto'``)."""
    import torch

    import sclibra
    from sclibra import _train

    picked = {}
    if spec["n"] == "auto":
        automatic_threads()
        real = _train.training_threads

        def spy(flops):
            picked["n"] = real(flops)
            return picked["n"]

        _train.training_threads = spy
    else:
        torch.set_num_threads(int(spec["n"]))
        sclibra.settings.num_threads = int(spec["n"])
    res = task_fit(spec)
    res["threads_used"] = picked.get("n", spec["n"])
    return res


def worker(spec: dict) -> dict:
    prepare_worker(spec["threads"])
    fn = {
        "fit": task_fit,
        "profile": task_profile,
        "full": task_full,
        "knn": task_knn,
        "seurat": task_seurat,
        "threads": task_threads,
    }
    return fn[spec["task"]](spec)


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def run(spec: dict, version: str, paths: dict, timeout: int = 3600) -> dict:
    env = version_env(paths[version])
    try:
        return run_worker(
            [os.path.abspath(__file__), "--worker", json.dumps(spec)], env=env, timeout=timeout
        )
    except WorkerError as err:
        raise RuntimeError(f"{version} {spec['task']} {spec['case']}: {err.line}") from None


def default_recipe(args, paths) -> None:
    """The package's default recipe, fitted to early stopping, next to kNN and Seurat, same run.

    With ``--rank-ablation`` the wide-output case (sci-CAR RNA -> ATAC) is also fitted with a
    full output layer (``output_rank=0``, the 0.1.0 layout) for the same-run cost of that default;
    with ``--pca-ablation`` every case is also fitted reading A's features (``input_pca=0``).
    """
    cases = ["bmmc_cite RNA->ADT", "pbmc5k_cite RNA->ADT", "synthetic 10k x 5k -> 100"]
    cases.append("sci-CAR RNA->ATAC")
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    rows, results = [], {}
    for case in cases:
        if ("pbmc5k" in case or "sci-CAR" in case) and not SHARED.is_dir():
            log(f"{case}: {SHARED} not found, skipped")
            continue
        base = {"case": case, "threads": args.threads}
        variants = [("default", "default")]
        if args.auto_threads:
            variants.append(("default, automatic threads", "default"))
        if args.pca_ablation:
            variants.append(("input_pca=0", {"input_pca": 0}))
        if args.rank_ablation and "sci-CAR" in case:
            variants.append(("output_rank=0", {"output_rank": 0}))
        knn = run({**base, "task": "knn"}, "after", paths)
        seurat = None
        if not case.startswith("synthetic"):
            log(f"{case}: Seurat TransferData")
            seurat = run({**base, "task": "seurat"}, "after", paths)
        results[case] = {"knn": knn, "seurat": seurat}
        for label, recipe in variants:
            log(f"{case}: {label} recipe to early stopping")
            spec = {**base, "task": "full", "recipe": recipe, "auto_threads": "automatic" in label}
            full = run(spec, "after", paths)
            if "automatic" in label:
                label += f" ({full.get('members_at_a_time', 1)} members at a time)"
            results[case][label] = full
            s_s = seurat["seurat_s"] if seurat and seurat.get("seurat_s") else None
            rows.append(
                [
                    case,
                    label,
                    full["epochs"],
                    f"{full['fit_s']:.1f}",
                    f"{full['fit_cpu_s']:.1f}",
                    f"{full['rmse']:.4f}"
                    + (
                        ""
                        if full.get("auroc_cell") is None
                        else f" (AUROC {full['auroc_cell']:.4f})"
                    ),
                    f"{knn['knn_s']:.2f}",
                    f"{knn['rmse']:.4f}",
                    f"{full['fit_s'] / knn['knn_s']:.1f}x",
                    "-" if s_s is None else f"{s_s:.1f} ({seurat['seurat_call_s']:.1f})",
                    "-" if s_s is None else f"{seurat['rmse']:.4f}",
                    "-" if s_s is None else f"{full['fit_s'] / s_s:.2f}x",
                    f"{full['predict_s']:.2f}",
                    "-" if s_s is None else f"{(full['fit_s'] + full['predict_s']) / s_s:.2f}x",
                ]
            )
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    table = markdown_table(
        [
            "data",
            "recipe",
            "epochs (longest member)",
            "fit s (wall)",
            "fit CPU s",
            "held-out RMSE (per-cell AUROC)",
            "kNN s (wall)",
            "kNN RMSE",
            "fit / kNN (wall)",
            "Seurat s (wall: anchors + transfer (whole Rscript call))",
            "Seurat RMSE",
            "fit / Seurat (wall)",
            "predict s (held-out cells)",
            "(fit + predict) / Seurat (wall)",
        ],
        rows,
    )
    md = [
        "# The default recipe's fit time, same run as kNN and Seurat",
        "",
        "`sclibra.LIBRA(seed=0)` with the package's default recipe (an ensemble of 3 networks "
        "with latent 32, reading the input's top 100 principal components (randomized PCA), a "
        "rank-32 output layer for targets wider than 1,000 features, trained in closed form "
        "for a sparse MSE target such as sci-CAR's normalised peaks; see "
        "`bench_peers_ablation*.md`), fitted to early stopping on the training cells, one torch "
        "thread (rows 'automatic threads': the package's own thread decision, which on an idle "
        "2-core machine trains the three ensemble members at once, one thread each, sharing the "
        "two cores; the results are identical); kNN: k = 15 on a 50-dimension TruncatedSVD of "
        "the input (fit + predict); Seurat v4: FindTransferAnchors + TransferData "
        "(`peers/seurat_transfer.R`, one thread; the ratio uses Seurat's own seconds for its "
        "scaling, PCA, anchors and transfer, the stricter comparison; in brackets the whole "
        "Rscript call, loading Seurat and the data included). Seurat's seconds include the "
        "transfer to the held-out cells, so the last column adds sclibra's prediction of them "
        "to its fit. Held-out RMSE on the other cells. Every method of a row ran in the same "
        "run, one after the other.",
        "",
        table,
        "",
        "`uptime` before and after each data set:",
        "",
        *[f"- `{u}`" for u in uptime],
    ]
    write_results("bench_speed_default", args, "\n".join(md), {"results": results})


def seurat_repeats(args, paths) -> None:
    """Issue 13's target 3, measured ``--seurat-repeats`` times: sci-CAR RNA -> ATAC, the
    default recipe with the automatic thread decision (what a user gets) against Seurat's
    FindTransferAnchors + TransferData, each in a fresh worker process, one after the other in
    pairs (the order alternates), so every pair sees the same load. One such pair in
    ``bench_speed_default.md`` is a single draw of a ratio that moves with the machine's load.
    """
    case = "sci-CAR RNA->ATAC"
    if not SHARED.is_dir():
        log(f"{case}: {SHARED} not found")
        return
    base = {"case": case, "threads": args.threads}
    fit_spec = {**base, "task": "full", "recipe": "default", "auto_threads": True}
    pairs, rows = [], []
    for i in range(args.seurat_repeats):
        load = [round(x, 2) for x in os.getloadavg()]
        order = ("seurat", "sclibra") if i % 2 == 0 else ("sclibra", "seurat")
        got = {}
        for who in order:
            log(f"{case}: pair {i + 1}, {who}")
            got[who] = run(
                {**base, "task": "seurat"} if who == "seurat" else fit_spec, "after", paths
            )
        fit, seurat = got["sclibra"], got["seurat"]
        ratio = fit["fit_s"] / seurat["seurat_s"]
        pairs.append({"order": list(order), "load_before": load, **got, "ratio": ratio})
        rows.append(
            [
                i + 1,
                " then ".join(order),
                " / ".join(f"{x:.2f}" for x in load),
                f"{fit['fit_s']:.2f}",
                f"{fit['fit_cpu_s']:.2f}",
                f"{fit.get('members_at_a_time', 1)}",
                f"{seurat['seurat_s']:.2f}",
                f"{seurat['seurat_call_s']:.1f}",
                f"{ratio:.2f}x",
                f"{(fit['fit_s'] + fit['predict_s']) / seurat['seurat_s']:.2f}x",
            ]
        )
    ratios = np.array([p["ratio"] for p in pairs])
    table = markdown_table(
        [
            "pair",
            "order",
            "load average before (1 / 5 / 15 min)",
            "sclibra fit s (wall)",
            "fit CPU s",
            "members at a time",
            "Seurat s (anchors + transfer)",
            "whole Rscript call s",
            "fit / Seurat",
            "(fit + predict) / Seurat",
        ],
        rows,
    )
    md = [
        "# sci-CAR RNA -> ATAC: the default fit against Seurat TransferData, repeated",
        "",
        "Issue 13's target 3: the default fit's wall time <= Seurat v4 FindTransferAnchors + "
        "TransferData's on the same split (sci-CAR A549, seeded random 70/30; 52,761 output "
        "peaks). sclibra: `LIBRA(seed=0)`, the default recipe, the package's automatic thread "
        "decision (on an idle 2-core machine: the 3 ensemble members side by side, one thread "
        "each). Seurat: `peers/seurat_transfer.R`, one thread, its own seconds for scaling, PCA, "
        "anchors and transfer (the whole Rscript call, loading R, Seurat and the data, in its "
        "own column). Each measurement is a fresh process; the two members of a pair ran one "
        "after the other, in alternating order.",
        "",
        table,
        "",
        f"**Median fit / Seurat over {len(ratios)} pairs: {np.median(ratios):.2f}x** "
        f"(range {ratios.min():.2f}-{ratios.max():.2f}x; "
        f"{int((ratios <= 1.0).sum())} of {len(ratios)} pairs <= 1.0). Held-out RMSE: sclibra "
        f"{pairs[0]['sclibra']['rmse']:.4f} (per-cell AUROC "
        f"{pairs[0]['sclibra']['auroc_cell']:.4f}), Seurat {pairs[0]['seurat']['rmse']:.4f}.",
    ]
    summary = {"median_ratio": float(np.median(ratios)), "ratios": ratios.tolist()}
    write_results(
        "bench_speed_scicar_seurat", args, "\n".join(md), {"summary": summary, "pairs": pairs}
    )


def main() -> None:
    if serve_worker(worker):
        return

    def extra(parser):
        parser.add_argument(
            "--default-recipe",
            action="store_true",
            help="only time the package's default recipe (an ensemble since 0.2.0) to early "
            "stopping next to kNN, on every case (bench_speed_default.*)",
        )
        parser.add_argument(
            "--rank-ablation",
            action="store_true",
            help="with --default-recipe: also fit sci-CAR RNA->ATAC with output_rank=0",
        )
        parser.add_argument(
            "--auto-threads",
            action="store_true",
            help="with --default-recipe: also fit every case with the automatic thread decision "
            "(ensemble members side by side when the process may use several cores)",
        )
        parser.add_argument(
            "--pca-ablation",
            action="store_true",
            help="with --default-recipe: also fit every case with input_pca=0",
        )
        parser.add_argument(
            "--seurat-repeats",
            type=int,
            default=0,
            metavar="N",
            help="only time sci-CAR RNA->ATAC's default fit (automatic threads) against Seurat "
            "TransferData N times in pairs (bench_speed_scicar_seurat.*)",
        )
        parser.add_argument(
            "--members-check",
            action="store_true",
            help="only compare 2 and 3 ensemble members at a time (bench_speed_members.*)",
        )
        parser.add_argument(
            "--threads-check",
            action="store_true",
            help="only compare 1 and 2 threads with the automatic choice (bench_speed_threads.*)",
        )

    args = parse_args(__doc__, extra)
    paths = {"after": REPO_ROOT / "python"}
    if args.threads_check:
        threads_check(args, paths)
        return
    if args.members_check:
        members_check(args, paths)
        return
    if args.seurat_repeats:
        seurat_repeats(args, paths)
        return
    if args.default_recipe:
        default_recipe(args, paths)
        return
    # only the before/after comparison runs the older package
    paths["before"] = export_package(BEFORE_COMMIT, BEFORE_DIR)
    cases = QUICK if args.quick else CASES
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    results = {}
    for case, (epochs, steps) in cases.items():
        if "shared" not in case and ("pbmc5k" in case or "sci-CAR" in case) and not SHARED.is_dir():
            log(f"{case}: {SHARED} not found, skipped")
            continue
        res = {"epochs_timed": epochs, "profile_steps": steps}
        base = {"case": case, "threads": args.threads}
        for task in ("fit", "profile"):
            for version in ("before", "after"):
                log(f"{case}: {task} ({version})")
                spec = {**base, "task": task, "epochs": epochs, "steps": steps}
                res[f"{task}_{version}"] = run(spec, version, paths)
        if "sci-CAR" not in case:
            log(f"{case}: full default fit (after) and kNN")
            res["full_after"] = run({**base, "task": "full"}, "after", paths)
            res["knn"] = run({**base, "task": "knn"}, "after", paths)
        results[case] = res
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        log(f"  {uptime[-1]}")

    # -- tables ------------------------------------------------------------------------------
    rows = []
    for case, r in results.items():
        fb, fa = r["fit_before"], r["fit_after"]
        rows.append(
            [
                case,
                fa["n_train"],
                fa["steps"],
                r["epochs_timed"],
                f"{fb['epoch_s']:.3g}",
                f"{fa['epoch_s']:.3g}",
                f"{1e3 * fb['epoch_s'] / fb['steps']:.3g}",
                f"{1e3 * fa['epoch_s'] / fa['steps']:.3g}",
                f"**{fb['epoch_s'] / fa['epoch_s']:.2f}x**",
                f"{fb['cpu_epoch_s']:.3g}",
                f"{fa['cpu_epoch_s']:.3g}",
                f"**{fb['cpu_epoch_s'] / fa['cpu_epoch_s']:.2f}x**",
            ]
        )
    speed = markdown_table(
        [
            "data",
            "training cells",
            "steps/epoch",
            "epochs timed",
            "s/epoch before",
            "s/epoch after",
            "ms/step before",
            "ms/step after",
            "speed-up (wall)",
            "CPU s/epoch before",
            "CPU s/epoch after",
            "speed-up (CPU)",
        ],
        rows,
    )
    prow = []
    for case, r in results.items():
        for version in ("before", "after"):
            p = r[f"profile_{version}"]
            tot = sum(p[k] for k in ("data", "forward", "backward", "optimizer"))
            prow.append(
                [
                    case,
                    version,
                    f"{1e3 * tot:.3g}",
                    *(
                        f"{1e3 * p[k]:.3g} ({100 * p[k] / tot:.0f} %)"
                        for k in ("data", "forward", "backward", "optimizer")
                    ),
                ]
            )
    profile = markdown_table(
        [
            "data",
            "version",
            "ms/step",
            "data ms",
            "forward + loss ms",
            "backward ms",
            "optimizer ms",
        ],
        prow,
    )
    frow = []
    for case, r in results.items():
        if "full_after" not in r:
            continue
        f, k = r["full_after"], r["knn"]
        est_before = f["epochs"] * r["fit_before"]["epoch_s"]
        frow.append(
            [
                case,
                f["epochs"],
                f"{f['fit_s']:.1f}",
                f"{f['fit_cpu_s']:.1f}",
                f"{est_before:.1f}",
                f"{f['rmse']:.4f}",
                f"{k['knn_s']:.2f}",
                f"{k['knn_cpu_s']:.2f}",
                f"{k['rmse']:.4f}",
                f"{f['fit_cpu_s'] / k['knn_cpu_s']:.1f}x",
                f["auto_threads_now"],
            ]
        )
    full = markdown_table(
        [
            "data",
            "epochs (early stop)",
            "fit s after (wall)",
            "fit CPU s after",
            "before, estimated wall s (epochs x s/epoch before)",
            "held-out RMSE",
            "kNN s (wall)",
            "kNN CPU s",
            "kNN RMSE",
            "fit / kNN (CPU)",
            "threads auto would pick now",
        ],
        frow,
    )
    up = "\n".join(f"- `{u}`" for u in uptime)
    markdown = f"""# Training speed: before (commit {BEFORE_COMMIT}) and after, same run

Default `sclibra.LIBRA()` (2 layers of 512 and 256, latent 10, batch 128, Adam 1e-3; the recipe is
the same in both versions), trained by each version in a fresh subprocess, {args.threads} torch
thread(s) for both. "before" is commit `{BEFORE_COMMIT}` (`git archive` into
`benchmarks/_work/before`), "after" this checkout. What changed: the first layer's weight is
stored (in, out) and a sparse minibatch goes through scipy's CSC product and CSR weight gradient
(no transposed weight copies, no dense minibatch); fused Adam; in-memory dense data converted to a
tensor once; best weights copied into buffers allocated once.

## Seconds per epoch (median over the epochs timed; early stopping off so both run as many)

`ms/step` = s/epoch / steps (the validation pass included). Wall-clock seconds depend on what
else runs on the machine; CPU seconds (`time.process_time` of the whole fit / epochs, one torch
thread) are what the work itself costs, and approximate the wall time on an idle machine.

{speed}

## Per-step profile, CPU milliseconds (mean over {"/".join(str(v[1]) for v in cases.values())} steps after 2 warm-up steps)

{profile}

## Full default fit (after) next to a kNN regression peer, same run

Default fit to early stopping on the training cells; held-out RMSE on the other cells. kNN:
k = 15 on a 50-dimension TruncatedSVD of the input (SVD fit + kNN fit + prediction), one
process. "before, estimated" multiplies the epochs of the new fit by the old seconds per epoch
(the same recipe converges in about as many epochs; the old version was not run to the end).

{full}

## Machine load during the run (`uptime`, before and after each data set)

{up}
"""
    write_results(
        "bench_speed",
        args,
        markdown,
        {"before_commit": BEFORE_COMMIT, "uptime": uptime, "results": results},
    )


def members_check(args, paths) -> None:
    """The default 3-model fit with two members at a time (then the third alone) against all
    three at once sharing the threads (the package's decision on 2 cores since 0.2.0), one
    thread per member, alternating, same run: seconds and whether the models are the same.
    """
    cases = ["pbmc5k_cite RNA->ADT", "synthetic 10k x 5k -> 100", "sci-CAR RNA->ATAC"]
    rounds = 1 if args.quick else 2
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    res = {}
    for case in cases:
        if ("pbmc5k" in case or "sci-CAR" in case) and not SHARED.is_dir():
            log(f"{case}: {SHARED} not found, skipped")
            continue
        for r in range(rounds):
            for at_once in (2, 3):
                log(f"{case}: {at_once} members at a time (round {r + 1})")
                spec = {
                    "case": case,
                    "threads": args.threads,
                    "task": "full",
                    "recipe": "default",
                    "auto_threads": True,
                    "members_at_a_time": at_once,
                }
                res.setdefault(case, {}).setdefault(at_once, []).append(run(spec, "after", paths))
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for case, by in res.items():
        two, three = (float(np.median([o["fit_s"] for o in by[k]])) for k in (2, 3))
        rmse = {k: {round(o["rmse"], 7) for o in by[k]} for k in (2, 3)}
        rows.append(
            [
                case,
                by[3][0]["epochs"],
                ", ".join(f"{o['fit_s']:.1f}" for o in by[2]),
                ", ".join(f"{o['fit_s']:.1f}" for o in by[3]),
                f"{two / three:.2f}x",
                "yes" if rmse[2] == rmse[3] and len(rmse[2]) == 1 else f"no: {rmse}",
            ]
        )
    table = markdown_table(
        [
            "data",
            "epochs (longest member)",
            "fit s, 2 at a time then 1",
            "fit s, 3 at once",
            "speed-up (medians)",
            "same held-out RMSE",
        ],
        rows,
    )
    up = "\n".join(f"- `{u}`" for u in uptime)
    markdown = f"""# Ensemble members at a time on 2 cores, same run

Default `LIBRA(seed=0)` (3 members) fitted to early stopping with the automatic thread decision,
one torch thread per member, {rounds} round(s) alternating: two members side by side and then the
third alone (the rule before), against all three at once sharing the two cores
(`sclibra._train.member_workers` now). Wall seconds of `fit`.

{table}

`uptime`:

{up}"""
    write_results("bench_speed_members", args, markdown, {"results": res})


def threads_check(args, paths) -> None:
    """Seconds per epoch with 1 and 2 threads and the automatic choice, alternating, same run."""
    cases = {"bmmc_cite RNA->ADT": 10, "synthetic 10k x 5k -> 100": 2}
    rounds = 1 if args.quick else 2
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    res = {}
    for case, epochs in cases.items():
        for r in range(rounds):
            for n in (1, 2, "auto"):
                log(f"{case}: threads {n} (round {r + 1})")
                spec = {"case": case, "threads": 1, "task": "threads", "n": n, "epochs": epochs}
                out = run(spec, "after", paths)
                res.setdefault(case, {}).setdefault(str(n), []).append(out)
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for case, by_n in res.items():
        med = {n: float(np.median([o["epoch_s"] for o in v])) for n, v in by_n.items()}
        best = min(med["1"], med["2"])
        rows.append(
            [
                case,
                f"{med['1']:.3g}",
                f"{med['2']:.3g}",
                f"{med['auto']:.3g}",
                ", ".join(str(o["threads_used"]) for o in by_n["auto"]),
                f"{med['auto'] / best:.2f}",
            ]
        )
    table = markdown_table(
        [
            "data",
            "s/epoch, 1 thread",
            "s/epoch, 2 threads",
            "s/epoch, automatic",
            "automatic chose",
            "automatic / best of 1 and 2",
        ],
        rows,
    )
    up = "\n".join(f"- `{u}`" for u in uptime)
    markdown = f"""# Thread default: automatic choice against 1 and 2 threads, same run

Default `LIBRA()` (new version), a fixed number of epochs, runs alternating 1 thread, 2 threads and
the automatic choice (`sclibra.settings.num_threads = None`: CPUs this process may use, less those
other processes keep busy, and one thread per 5e7 FLOPs of a step), {rounds} round(s), median
seconds per epoch (wall-clock: threads only matter for wall time).

{table}

`uptime`:

{up}
"""
    write_results("bench_speed_threads", args, markdown, {"uptime": uptime, "results": res})


if __name__ == "__main__":
    main()
