"""Seconds per epoch and peak memory of LIBRA on large sparse synthetic data.

What it measures
----------------
Synthetic paired data: modality A is a CSR float32 matrix with each entry non-zero with
probability ``density`` (1 %, positive values driven by 10 hidden factors per cell); modality B
has 200 dense targets, a linear mix of those factors plus noise, so there is something to learn
(see :func:`make_data`). For each size (cells x features) a *fresh subprocess* generates the data
chunk by chunk (a dense matrix is never allocated) and trains ``sclibra.LIBRA`` for exactly one
epoch (``max_epochs=1``, ``validation_split=0.01``), then reports

* seconds of the epoch (training steps + validation pass, from ``model.history``), the whole
  ``fit`` call (which also scans the input for NaN / constant features) and data generation;
* peak resident memory (RSS): of the whole process (``resource.getrusage().ru_maxrss``) and of
  ``fit`` alone (the kernel's high-water mark ``VmHWM``, reset just before ``fit`` through
  ``/proc/self/clear_refs``), next to the size of the CSR input and of a dense float32 copy.

The sweep covers the number of cells (10k, 100k, 1M at 100k features) and of features (1k, 10k,
100k at 100k cells), all at 1 % density, up to 1M cells x 100k features = 1e9 non-zeros (8 GB
as CSR, 400 GB dense).

Why
---
The issue asks for sparse input to stay sparse (one minibatch densified or multiplied sparse at
a time) and for a 1M-cell sparse set to train an epoch; this shows it does, and how time and
memory grow with cells and non-zeros. Every setting (batch size, width, threads) is recorded:
at 100k input features the first layer alone holds ``100k x n_nodes`` weights, whose dense
gradient and Adam update cost the same at every step whatever the batch size, so wide-input runs
use a large ``batch_size`` and a narrower ``n_nodes`` than the defaults.

Run ``python benchmarks/bench_scaling.py`` (15-25 minutes and 10 GB of RAM on 2 cores) or with
``--quick`` (10k and 50k cells x 20k features). ``--sizes 100000x100000,1000000x100000`` runs only
those sizes; ``--before`` also runs sizes up to ``--before-max-cells`` (default 100k) with the
package of commit 4f42f40 (before issue 13's speed work, ``git archive`` into
``benchmarks/_work/before``) in the same run, for a side-by-side ratio; the 1M-cell row is compared
with the 561 s per epoch that 0.1.0 recorded (:data:`REFERENCE`). Results:
``benchmarks/results/bench_scaling.{md,json}``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

import numpy as np
from _common import (
    WorkerError,
    export_package,
    log,
    markdown_table,
    parse_args,
    prepare_worker,
    run_worker,
    serve_worker,
    write_results,
)

N_TARGETS = 200
RANK = 10
#: model and training settings shared by every size (recorded in the results)
SETTINGS = {"n_nodes": 64, "batch_size": 4096, "validation_split": 0.01}

FULL = [
    # (sweep, cells, features, density)
    ("cells", 10_000, 100_000, 0.01),
    ("cells", 100_000, 100_000, 0.01),
    ("features", 100_000, 1_000, 0.01),
    ("features", 100_000, 10_000, 0.01),
    ("cells", 1_000_000, 100_000, 0.01),
]
QUICK = [
    ("cells", 10_000, 20_000, 0.01),
    ("cells", 50_000, 20_000, 0.01),
]
#: seconds per epoch recorded by sclibra 0.1.0 (this file's table of 2026-11-24, 1 thread)
REFERENCE = {(10_000, 100_000): 5.5, (100_000, 100_000): 46.4, (1_000_000, 100_000): 560.6}
BEFORE_COMMIT = "4f42f40"
HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------------------------
# synthetic data (worker side)
# ----------------------------------------------------------------------------------------------
def make_data(n_cells: int, n_features: int, density: float, seed: int = 0, chunk: int = 8192):
    """A sparse CSR ``A`` (float32, int32 indices) and dense targets ``B``, built chunk-wise.

    Non-zero positions of each row are a Bernoulli(``density``) process over the columns, drawn
    as cumulative sums of geometric gaps (sorted and unique by construction), so no dense block
    and no per-row sort is ever needed. Each cell has ``RANK`` hidden factors ``z`` in [0, 1);
    column ``j`` belongs to factor ``j % RANK`` and its non-zero values are
    ``1 + 2 z[factor]``. ``B = (z - 0.5) M + noise`` (standardised per target), so
    ``B`` is predictable from ``A`` through a rank-``RANK`` bottleneck.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    mean_k = density * n_features
    k_draw = int(np.ceil(mean_k + 8 * np.sqrt(mean_k) + 8))  # enough gaps to pass the last column
    cap = int(n_cells * mean_k + 8 * np.sqrt(n_cells * mean_k) + 1024)
    if cap >= 2**31:
        raise ValueError("more than 2^31 non-zeros: int32 indices would overflow")
    indices = np.empty(cap, dtype=np.int32)  # pages are only touched as they are filled
    data = np.empty(cap, dtype=np.float32)
    indptr = np.zeros(n_cells + 1, dtype=np.int32)
    row_base = np.arange(chunk, dtype=np.int32) * RANK
    mix = rng.standard_normal((RANK, N_TARGETS)).astype(np.float32)
    targets = np.empty((n_cells, N_TARGETS), dtype=np.float32)
    log_q = np.float32(np.log1p(-density))
    pos = 0
    for start in range(0, n_cells, chunk):
        m = min(chunk, n_cells - start)
        z = rng.random((m, RANK), dtype=np.float32)
        u = rng.random((m, k_draw), dtype=np.float32)
        np.log1p(-u, out=u)
        u /= log_q
        cols = np.cumsum(u.astype(np.int32) + 1, axis=1, dtype=np.int32) - 1  # geometric gaps
        keep = cols < n_features
        if keep[:, -1].any():
            raise RuntimeError("too few gaps drawn for a row; increase k_draw")
        counts = keep.sum(axis=1)
        nz = int(counts.sum())
        if pos + nz > cap:
            raise RuntimeError("non-zero capacity exceeded")
        c = cols[keep]
        idx = np.repeat(row_base[:m], counts)  # position of (cell, factor of column) in z
        idx += c % RANK
        vals = np.take(z.ravel(), idx)
        vals *= 2.0
        vals += 1.0
        indices[pos : pos + nz] = c
        data[pos : pos + nz] = vals
        indptr[start + 1 : start + m + 1] = pos + np.cumsum(counts)
        targets[start : start + m] = (z - 0.5) @ mix
        pos += nz
        del u, cols, keep, c, idx, vals
    targets += rng.standard_normal(targets.shape, dtype=np.float32) * 0.3 * targets.std()
    targets -= targets.mean(axis=0)
    targets /= targets.std(axis=0) + 1e-6
    a = sp.csr_matrix((data[:pos], indices[:pos], indptr), shape=(n_cells, n_features), copy=False)
    if not (np.shares_memory(a.indices, indices) and np.shares_memory(a.data, data)):
        raise RuntimeError("scipy copied the CSR arrays")
    return a, targets


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(spec: dict) -> dict:
    """Generate one size, train one epoch, return timings and memory (runs in a subprocess)."""
    import sclibra

    prepare_worker(spec["threads"])
    t0 = time.perf_counter()
    a, b = make_data(spec["cells"], spec["features"], spec["density"])
    gen_seconds = time.perf_counter() - t0
    csr_bytes = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
    rss_before = _status_kib("VmRSS")
    # ru_maxrss and VmHWM are the same counter: read the generation peak before resetting it
    peak_gen = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reset = _reset_peak()
    import inspect

    # the same network in every version: sclibra 0.1.0's recipe (one model, latent 10) where
    # the package has presets (0.2.0 defaults to an ensemble of 3)
    same = {"preset": "0.1.0"} if "preset" in inspect.signature(sclibra.LIBRA).parameters else {}
    model = sclibra.LIBRA(
        n_nodes=spec["n_nodes"],
        batch_size=spec["batch_size"],
        seed=0,
        output_activation="linear",
        **same,
    )
    # CPU seconds of the training loop alone (one epoch here; robust to other jobs' load)
    import sclibra._model as _m

    real_train, train_clock = _m.train_module, {}

    def timed_train(*args, **kwargs):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            return real_train(*args, **kwargs)
        finally:
            train_clock["cpu"] = time.process_time() - c0
            train_clock["wall"] = time.perf_counter() - t0

    _m.train_module = timed_train
    t0 = time.perf_counter()
    model.fit(a, b, max_epochs=1, validation_split=spec["validation_split"], progress=False)
    fit_seconds = time.perf_counter() - t0
    peak_fit = _status_kib("VmHWM") if reset else -1
    hist = model.history.iloc[0]
    n_train = len(model.train_cells_)
    return {
        **spec,
        "nnz": int(a.nnz),
        "actual_density": a.nnz / (spec["cells"] * spec["features"]),
        "csr_bytes": int(csr_bytes),
        "targets_bytes": int(b.nbytes),
        "dense_a_bytes": int(spec["cells"]) * int(spec["features"]) * 4,
        "first_layer_params": int(spec["features"]) * int(spec["n_nodes"]),
        "gen_seconds": gen_seconds,
        "fit_seconds": fit_seconds,
        "epoch_seconds": float(hist["seconds"]),
        "train_cpu_seconds": train_clock.get("cpu"),
        "train_wall_seconds": train_clock.get("wall"),
        "steps": int(np.ceil(n_train / spec["batch_size"])),
        "n_train": n_train,
        "n_val": len(model.val_cells_),
        "train_loss": float(hist["train_loss"]),
        "val_loss": float(hist["val_loss"]),
        "target_variance": 1.0,
        "rss_before_fit_bytes": rss_before * 1024,
        "peak_rss_fit_bytes": peak_fit * 1024 if peak_fit >= 0 else None,
        "peak_rss_generation_bytes": peak_gen,
        "peak_rss_process_bytes": max(
            peak_gen, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        ),
        "sparse_input_path": True,
    }


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def _gib(x) -> str:
    return "n/a" if x is None else f"{x / 2**30:.2f}"


def _size(x: float) -> str:
    if x >= 2**40:
        return f"{x / 2**40:.1f} TiB"
    if x >= 2**30:
        return f"{x / 2**30:.1f} GiB"
    return f"{x / 2**20:.0f} MiB"


def main() -> None:
    if serve_worker(worker):
        return

    def extra(parser):
        parser.add_argument(
            "--timeout", type=int, default=1800, help="seconds allowed per size (default 1800)"
        )
        parser.add_argument("--sizes", help="only these sizes: CELLSxFEATURES,...")
        parser.add_argument(
            "--before", action="store_true", help=f"also run commit {BEFORE_COMMIT}'s package"
        )
        parser.add_argument("--before-max-cells", type=int, default=100_000)

    args = parse_args(__doc__, extra)
    sizes = QUICK if args.quick else FULL
    if args.sizes:
        want = [tuple(int(v) for v in x.split("x")) for x in args.sizes.split(",")]
        sizes = [
            next((s for s in FULL + QUICK if (s[1], s[2]) == w), ("cells", *w, 0.01)) for w in want
        ]
    jobs = []
    for size in sizes:
        if args.before and size[1] <= args.before_max_cells:
            jobs.append((size, "before"))
        jobs.append((size, "after"))
    before_path = (
        str(export_package(BEFORE_COMMIT, Path(HERE) / "_work" / "before")) if args.before else None
    )
    uptime = []
    runs = []
    for (sweep, cells, features, density), version in jobs:
        spec = {
            "sweep": sweep,
            "cells": cells,
            "features": features,
            "density": density,
            "threads": args.threads,
            "version": version,
            **SETTINGS,
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = (
            before_path if version == "before" else os.path.join(HERE, "..", "python")
        )
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        log(
            f"{cells} cells x {features} features at {density:.0%} ({version}): generating and training"
        )
        try:
            run = run_worker(
                [os.path.abspath(__file__), "--worker", json.dumps(spec)],
                timeout=args.timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            log(f"  timed out after {args.timeout} s")
            runs.append({**spec, "error": f"timed out after {args.timeout} s"})
            continue
        except WorkerError as err:
            log(f"  failed (exit {err.returncode}): {err.line}")
            runs.append({**spec, "error": str(err)})
            continue
        runs.append(run)
        log(
            f"  epoch {run['epoch_seconds']:.1f} s, fit {run['fit_seconds']:.1f} s, peak RSS "
            f"(fit) {_gib(run['peak_rss_fit_bytes'])} GiB, CSR {_gib(run['csr_bytes'])} GiB"
        )

    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for r in runs:
        if "error" in r:
            rows.append(
                [r["sweep"], r.get("version", "after"), f"{r['cells']:,}", f"{r['features']:,}"]
                + ["-"] * 14
            )
            rows[-1][-1] = r["error"]
            continue
        same = [
            q
            for q in runs
            if q.get("version") == "before"
            and "error" not in q
            and (q["cells"], q["features"]) == (r["cells"], r["features"])
        ]
        if r.get("version") == "after" and same:
            b = same[0]
            ratio = f"**{b['epoch_seconds'] / r['epoch_seconds']:.2f}x** (same run)"
            if b.get("train_cpu_seconds") and r.get("train_cpu_seconds"):
                ratio += f"; CPU {b['train_cpu_seconds'] / r['train_cpu_seconds']:.2f}x"
        elif r.get("version") == "after" and (r["cells"], r["features"]) in REFERENCE:
            ref = REFERENCE[(r["cells"], r["features"])]
            ratio = f"{ref / r['epoch_seconds']:.2f}x vs {ref} s recorded by 0.1.0"
        else:
            ratio = "-"
        limit = 1.5 * r["csr_bytes"] + 2**30
        peak = r["peak_rss_fit_bytes"]
        rows.append(
            [
                r["sweep"],
                r.get("version", "after"),
                f"{r['cells']:,}",
                f"{r['features']:,}",
                f"{r['nnz']:.3g}",
                r["steps"],
                f"{r['epoch_seconds']:.1f}",
                f"{r['train_cpu_seconds']:.1f}" if r.get("train_cpu_seconds") else "-",
                f"{r['epoch_seconds'] / r['steps']:.2f}",
                f"{r['fit_seconds']:.1f}",
                _gib(r["csr_bytes"] + r["targets_bytes"]),
                _gib(r["rss_before_fit_bytes"]),
                _gib(r["peak_rss_fit_bytes"]),
                _gib(r["peak_rss_process_bytes"]),
                _size(r["dense_a_bytes"]),
                f"{r['val_loss']:.3f}",
                ratio,
                "-" if peak is None else ("yes" if peak <= limit else "**no**"),
            ]
        )
    table = markdown_table(
        [
            "sweep",
            "version",
            "cells",
            "features",
            "nnz",
            "steps",
            "s/epoch",
            "CPU s/epoch",
            "s/step",
            "fit s",
            "input GiB (CSR A + dense B)",
            "RSS before fit GiB",
            "peak RSS fit GiB",
            "peak RSS process GiB",
            "dense A would be",
            "val MSE after 1 epoch",
            "epoch speed-up (before / after)",
            "peak RSS <= 1.5 x CSR + 1 GiB",
        ],
        rows,
    )
    settings = ", ".join(f"`{k}={v}`" for k, v in SETTINGS.items())
    markdown = f"""# Scaling on sparse synthetic data: seconds per epoch and peak memory

One epoch of `sclibra.LIBRA` ({settings}, `max_epochs=1`, other settings default, torch
threads: {args.threads}; from sclibra 0.2.0 on, a worker thread prepares the next minibatch
while a step runs when the process may use a second core) on synthetic CSR float32 input at 1 % density with {N_TARGETS} dense
targets (a linear mix of the {RANK} hidden factors per cell that also set A's values, plus
noise; standardised, so MSE 1.0 = the mean predictor). Each size runs in a fresh process.

- `s/epoch`: training steps plus the validation pass (wall-clock); `CPU s/epoch`: CPU seconds of
  the training loop, all threads (what the work costs, robust to other jobs; about the wall time
  when idle and single-threaded); `s/step` = `s/epoch` / steps; `fit s` adds
  the input scan (NaN / constant-feature checks) and setup.
- `RSS before fit`: resident memory with the data in memory, before `fit`. `peak RSS fit`: peak
  resident memory during `fit` (kernel high-water mark reset just before `fit`), data included.
  `peak RSS process`: the whole process, data generation included.
- `dense A would be`: a dense float32 copy of A, which the sparse path never builds.{" **Quick run.**" if args.quick else ""}

{table}

`version`: "after" is this checkout; "before" is commit {BEFORE_COMMIT} (sclibra 0.1.0's training
code), run in the same session. Without a "before" row, the speed-up is against the seconds per
epoch 0.1.0 recorded in this file on 2026-11-24 (561 s for 1M cells), on the same machine.

Timings are wall-clock on a shared 2-core machine; `uptime` before each run:

{chr(10).join(f"- `{u}`" for u in uptime)}
"""
    write_results(
        "bench_scaling",
        args,
        markdown,
        {
            "settings": SETTINGS,
            "n_targets": N_TARGETS,
            "rank": RANK,
            "reference_seconds_per_epoch_0_1_0": {f"{c}x{f}": v for (c, f), v in REFERENCE.items()},
            "uptime": uptime,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
