"""Is the R path as fast as Python? ``RunLIBRA()`` against ``LIBRA.fit`` on the same data.

What it measures
----------------
The bundled CITE-seq data (RNA -> ADT, training on the ``is_train`` donor, seed 0, default
settings otherwise) is trained from Python (``LIBRA(seed=0).fit(rna, adt, train="is_train")``)
and from R (``RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", train.cells =
"is_train", seed = 0)``), each in a fresh process, alternating Python and R ``--repeats`` times
so that both see the same machine load. Each process trains twice: the first call pays one-time
imports (what a user sees), the second is warm. Recorded: the median seconds per epoch (from the
core's training history) and the wall-clock seconds of the whole call. The R call also predicts
and embeds every cell, serialises the model and stores the results in the Seurat object, so its
whole call is compared with Python's ``fit`` alone (the issue's target) and with
``fit`` + ``predict``.

A third row ("R, torch on R's BLAS") is the R path as it was before the fix: torch imported
without ``RTLD_DEEPBIND`` (``SCLIBRA_TORCH_DEEPBIND=0``), so that its matrix products went to R's
reference BLAS. It is capped at a few epochs (it is slow) and gives the per-epoch ratio only.

Targets (issue 13): R per epoch <= 1.3x Python, R whole call <= 1.5x Python.

Run ``python benchmarks/bench_r_path.py`` (a few minutes; needs R with the sclibra package
installed, e.g. ``make r-install``) or ``--quick`` (one repeat, epochs capped at 20). Results:
``benchmarks/results/bench_r_path.{md,json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import log, markdown_table, parse_args, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PY_WORKER = r"""
import json, sys, time
import sclibra
threads, out = int(sys.argv[1]), sys.argv[2]
max_epochs = int(sys.argv[3]) if len(sys.argv) > 3 else None
sclibra.settings.verbosity = "warning"
if threads:
    sclibra.settings.num_threads = threads
t0 = time.perf_counter()
rna, adt = sclibra.datasets.bmmc_cite()
load_s = time.perf_counter() - t0
LIBRA = sclibra.LIBRA  # imports torch (R imports it when the core loads, before timing too)
extra = {} if max_epochs is None else {"max_epochs": max_epochs}
runs = []
for _ in range(2):
    t0 = time.perf_counter()
    model = LIBRA(seed=0).fit(rna, adt, train="is_train", progress=False, **extra)
    fit_s = time.perf_counter() - t0
    model.predict(rna)
    runs.append({
        "call_s": fit_s,
        "fit_predict_s": time.perf_counter() - t0,
        "epochs": int(model.n_epochs_),
        "epoch_s": [float(s) for s in model.history["seconds"]],
        "best_val_loss": float(model.best_val_loss_),
    })
import torch
json.dump({"load_s": load_s, "runs": runs, "torch_threads": torch.get_num_threads()}, open(out, "w"))
"""


def _run(kind: str, threads: int, max_epochs: int | None, env_extra=None) -> dict:
    env = dict(os.environ)
    env.setdefault("R_LIBS_USER", str(ROOT / ".Rlib"))
    env["SCLIBRA_PYTHON"] = sys.executable
    env["RETICULATE_PYTHON"] = sys.executable
    env.update(env_extra or {})
    with tempfile.TemporaryDirectory(prefix="bench-r-path-") as tmp:
        out = Path(tmp) / "out.json"
        if kind == "python":
            cmd = [sys.executable, "-c", PY_WORKER, str(threads), str(out)]
        else:
            cmd = ["Rscript", str(HERE / "bench_r_path.R"), str(out), str(threads)]
        if max_epochs is not None:
            cmd.append(str(max_epochs))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{kind} worker failed:\n{proc.stdout}\n{proc.stderr}")
        res = json.loads(out.read_text())
    res["process_s"] = time.perf_counter() - t0
    return res


def _summary(results: list[dict], run: int) -> dict:
    """Medians over repeats of the per-epoch median and of the call time of run ``run``."""
    per_epoch = [float(np.median(r["runs"][run]["epoch_s"])) for r in results]
    calls = [r["runs"][run]["call_s"] for r in results]
    out = {
        "epoch_s": float(np.median(per_epoch)),
        "call_s": float(np.median(calls)),
        "epochs": [r["runs"][run]["epochs"] for r in results],
        "best_val_loss": [r["runs"][run]["best_val_loss"] for r in results],
    }
    if "fit_predict_s" in results[0]["runs"][run]:
        out["fit_predict_s"] = float(np.median([r["runs"][run]["fit_predict_s"] for r in results]))
    return out


def main() -> None:
    def extra(p):
        p.add_argument("--repeats", type=int, default=3, help="alternating Python/R repeats")
        p.add_argument(
            "--before-epochs",
            type=int,
            default=5,
            help="epochs of the 'torch on R's BLAS' row (0 skips it)",
        )

    args = parse_args(__doc__, extra)
    repeats = 1 if args.quick else args.repeats
    max_epochs = 20 if args.quick else None
    load_before = os.getloadavg()
    py_res, r_res = [], []
    for i in range(repeats):
        py_res.append(_run("python", args.threads, max_epochs))
        log(f"repeat {i + 1}: python {py_res[-1]['runs'][0]['call_s']:.2f} s")
        r_res.append(_run("r", args.threads, max_epochs))
        log(f"repeat {i + 1}: R {r_res[-1]['runs'][0]['call_s']:.2f} s")
    before = None
    if args.before_epochs:
        before = _run("r", args.threads, args.before_epochs, {"SCLIBRA_TORCH_DEEPBIND": "0"})
        log(f"R with torch on R's BLAS: {before['runs'][0]['call_s']:.2f} s")
    load_after = os.getloadavg()

    rows, data_rows = [], []
    for run, label in ((0, "first call"), (1, "second call")):
        p, r = _summary(py_res, run), _summary(r_res, run)
        row = {
            "call": label,
            "python_epoch_s": p["epoch_s"],
            "r_epoch_s": r["epoch_s"],
            "epoch_ratio": r["epoch_s"] / p["epoch_s"],
            "python_fit_s": p["call_s"],
            "python_fit_predict_s": p["fit_predict_s"],
            "r_call_s": r["call_s"],
            "call_ratio": r["call_s"] / p["call_s"],
            "call_ratio_vs_fit_predict": r["call_s"] / p["fit_predict_s"],
            "python_epochs": p["epochs"],
            "r_epochs": r["epochs"],
            "python_best_val_loss": p["best_val_loss"],
            "r_best_val_loss": r["best_val_loss"],
        }
        data_rows.append(row)
        rows.append(
            [
                label,
                f"{p['epoch_s'] * 1000:.1f}",
                f"{r['epoch_s'] * 1000:.1f}",
                f"**{row['epoch_ratio']:.2f}**",
                f"{p['call_s']:.2f}",
                f"{p['fit_predict_s']:.2f}",
                f"{r['call_s']:.2f}",
                f"**{row['call_ratio']:.2f}**",
                f"{row['call_ratio_vs_fit_predict']:.2f}",
                f"{p['epochs'][0]} / {r['epochs'][0]}",
            ]
        )
    header = [
        "call",
        "Python ms/epoch",
        "R ms/epoch",
        "R/Python per epoch",
        "Python fit s",
        "Python fit+predict s",
        "R RunLIBRA s",
        "R/Python whole call",
        "R / (fit+predict)",
        "epochs Py / R",
    ]
    md = [
        "# The R path against Python (bench_r_path)",
        "",
        "Bundled CITE-seq RNA -> ADT, `is_train` cells, seed 0, default settings"
        + (f" (epochs capped at {max_epochs})" if max_epochs else "")
        + f"; {repeats} alternating repeat(s) of a fresh Python and a fresh R process, "
        f"{args.threads} torch thread(s) in both; medians over repeats (per epoch: median of "
        "each run's epochs). Targets: per epoch <= 1.3, whole call <= 1.5.",
        "",
        markdown_table(header, rows),
    ]
    before_row = None
    if before is not None:
        ref = _summary(py_res, 0)["epoch_s"]
        b_epoch = float(np.median(before["runs"][0]["epoch_s"]))
        before_row = {"epochs": args.before_epochs, "epoch_s": b_epoch, "ratio": b_epoch / ref}
        md += [
            "",
            "Before the fix (torch imported without `RTLD_DEEPBIND`, so its matrix products ran "
            f"on R's BLAS; {args.before_epochs} epochs): **{b_epoch * 1000:.0f} ms/epoch, "
            f"{b_epoch / ref:.1f}x** the Python path.",
        ]
    md += [
        "",
        "R and Python train on the same features (R keeps features that are zero in every "
        "training cell, as the core does), so with the same seed they train the same model.",
        "",
        f"torch import in R: `{r_res[0].get('torch_import')}`; load average before/after: "
        f"{', '.join(f'{x:.1f}' for x in load_before)} / "
        f"{', '.join(f'{x:.1f}' for x in load_after)}.",
    ]
    write_results(
        "bench_r_path",
        args,
        "\n".join(md),
        {
            "repeats": repeats,
            "threads": args.threads,
            "max_epochs": max_epochs,
            "rows": data_rows,
            "before_fix": before_row,
            "load_before": load_before,
            "load_after": load_after,
            "raw": {"python": py_res, "r": r_res, "before": before},
        },
    )


if __name__ == "__main__":
    main()
