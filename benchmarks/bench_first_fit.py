"""The first fit of a fresh process, before and after training stopped using ``torch.optim``.

What it measures
----------------
``torch.optim``'s optimizers import ``torch._dynamo`` the first time one is built (about a
second, once per process). Every fresh process paid it before its first epoch: an R session's
first ``RunLIBRA()``, every ``sclibra`` CLI call, a notebook's first ``fit``. Since ``dbc52a4``
training uses :mod:`sclibra._optim` (the same fused Adam kernel and the same plateau rule,
bit-identical results) and no longer imports it.

Each run is a fresh Python process that imports sclibra, loads the data, fits the default
``LIBRA(seed=0)`` on the training cells (``--threads 0``: the automatic thread choice a user gets;
else that many), then fits the
same model again in the same process (warm: every one-time cost paid). Two versions alternate,
``--repeats`` times, so both see the same machine load:

* **before**: commit ``4a9cc79`` (exported with ``git archive`` to ``benchmarks/_work/first_fit_before``);
* **after**: this checkout.

Rows: medians of ``import sclibra`` seconds, the first fit, the second fit, their difference
(the one-time cost inside the first fit), the whole process wall time, and the held-out RMSE
(the same in both versions: the models are identical). Cases: the bundled bone-marrow CITE RNA
-> ADT and, where ``../shared/data`` is present, sci-CAR RNA -> ATAC.

Run ``python benchmarks/bench_first_fit.py --threads 0`` (about 10 minutes on 2 cores) or ``--quick`` (one
repeat, bundled case only). Results: ``benchmarks/results/bench_first_fit.{md,json}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from _common import (
    REPO_ROOT,
    export_package,
    log,
    markdown_table,
    parse_args,
    run_worker,
    serve_worker,
    shared_data_dir,
    version_env,
    write_results,
)

BEFORE_COMMIT = "4a9cc79"
BEFORE_DIR = REPO_ROOT / "benchmarks" / "_work" / "first_fit_before"
#: cases of ``bench_speed.load_case`` (the same data and split as its default-recipe rows)
CASES = ["bmmc_cite RNA->ADT", "sci-CAR RNA->ATAC"]


def worker(spec: dict) -> dict:
    """In a fresh process: import, load, fit twice; the seconds of each and the held-out RMSE."""
    t0 = time.perf_counter()
    import sclibra

    t_import = time.perf_counter() - t0
    sclibra.settings.verbosity = "error"
    if spec["threads"]:
        sclibra.settings.num_threads = spec["threads"]
    from bench_speed import load_case

    rna, adt, is_train = load_case(spec["case"])
    a, b = rna[is_train].copy(), adt[is_train].copy()
    fits = []
    for _ in range(2):
        model = sclibra.LIBRA(seed=0)
        t = time.perf_counter()
        model.fit(a, b, progress=False)
        fits.append(time.perf_counter() - t)
    pred = model.predict(rna[~is_train])
    return {
        "import_s": t_import,
        "first_fit_s": fits[0],
        "second_fit_s": fits[1],
        "epochs": int(model.n_epochs_),
        "rmse": float(sclibra.metrics.rmse(pred.X, adt[~is_train].X)),
        "dynamo_imported": "torch._dynamo" in sys.modules,
    }


def main() -> None:
    def extra(parser):
        parser.add_argument("--repeats", type=int, default=5, help="alternations (default 5)")

    args = parse_args(__doc__, extra)
    paths = {"before": export_package(BEFORE_COMMIT, BEFORE_DIR), "after": REPO_ROOT / "python"}
    cases = CASES[:1] if args.quick or not shared_data_dir().is_dir() else CASES
    repeats = 1 if args.quick else args.repeats
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    runs = {case: {v: [] for v in paths} for case in cases}
    for case in cases:
        for i in range(repeats):
            for version in ("before", "after") if i % 2 == 0 else ("after", "before"):
                env = version_env(paths[version])
                t = time.perf_counter()
                spec = {"case": case, "threads": args.threads}
                res = run_worker([__file__, "--worker", json.dumps(spec)], env=env)
                res["process_s"] = time.perf_counter() - t
                runs[case][version].append(res)
                log(
                    f"{case} {version} #{i + 1}: first fit {res['first_fit_s']:.2f} s, "
                    f"second {res['second_fit_s']:.2f} s"
                )
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())

    def med(rs, key):
        return float(np.median([r[key] for r in rs]))

    rows, ratios = [], []
    for case in cases:
        for version in ("before", "after"):
            rs = runs[case][version]
            first, second = med(rs, "first_fit_s"), med(rs, "second_fit_s")
            rows.append(
                [
                    case,
                    version,
                    f"{med(rs, 'import_s'):.2f}",
                    f"{first:.2f}",
                    f"{second:.2f}",
                    f"{first - second:+.2f}",
                    f"{med(rs, 'process_s'):.2f}",
                    rs[0]["epochs"],
                    f"{rs[0]['rmse']:.6f}",
                    "yes" if rs[0]["dynamo_imported"] else "no",
                ]
            )
        b, a = runs[case]["before"], runs[case]["after"]
        ratios.append(
            [
                case,
                f"{med(a, 'first_fit_s') / med(b, 'first_fit_s'):.2f}",
                f"{med(a, 'process_s') / med(b, 'process_s'):.2f}",
                f"{med(a, 'second_fit_s') / med(b, 'second_fit_s'):.2f}",
            ]
        )
    md = f"""# The first fit of a fresh process, before and after dropping `torch.optim`

Each run: a fresh Python process imports sclibra, loads the data, fits `LIBRA(seed=0)` on the
training cells (default recipe, {"automatic threads" if not args.threads else f"{args.threads} thread(s)"}), then fits the same model again (warm).
Versions alternate, {repeats} run(s) each: **before** = commit `{BEFORE_COMMIT}` (`torch.optim.Adam`
and `ReduceLROnPlateau`, whose first optimizer imports `torch._dynamo`), **after** = this checkout
(`sclibra._optim`: the same fused kernel and plateau rule). Medians; seconds are wall time.
"first - second" is what the first fit pays once per process.

| case | version | `import sclibra` s | first fit s | second fit s | first - second | whole process s | epochs | held-out RMSE | `torch._dynamo` imported |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
    md += "\n\nAfter / before (same run):\n\n" + markdown_table(
        ["case", "first fit", "whole process", "second fit"], ratios
    )
    md += "\n\n`uptime` before and after each case:\n\n" + "\n".join(f"- `{u}`" for u in uptime)
    write_results(
        "bench_first_fit",
        args,
        md,
        {"before_commit": BEFORE_COMMIT, "repeats": repeats, "runs": runs, "uptime": uptime},
    )


if __name__ == "__main__":
    if not serve_worker(worker):
        main()
