"""Which default ``batch_size`` should LIBRA use? Held-out error and cost per batch size.

What it measures
----------------
For each bundled direction (Multiome ATAC -> RNA, CITE-seq RNA -> ADT), ``sclibra.LIBRA`` is
trained with its default settings except ``batch_size`` in {32, 64, 128, 256, 512, 7000}, with
3 seeds each, on the ``is_train`` cells (10 % of them for validation). For every run it records
the RMSE on the held-out cells (``is_train == False``), the epochs trained until early stopping,
the wall-clock seconds of ``fit`` and the seconds per epoch.

Why
---
The published LIBRA used ``batch_size=7000``, which on data sets of a few thousand cells means
one optimiser step per epoch: full-batch training, which needs many epochs and tends to stop in
a flat, poorly generalising region. Small batches take many noisy steps per epoch, which usually
generalises better but costs more Python overhead per cell. This benchmark shows the trade-off
on the bundled data so the default is chosen from evidence, not habit. The bundled sets are small
(~200-300 training cells), so ``batch_size=7000`` here is full-batch, exactly as published.

Run ``python benchmarks/bench_batch_size.py`` (about 2-3 minutes on 2 cores) or with
``--quick`` (batch sizes 64 and 7000, one seed, at most 20 epochs). Results:
``benchmarks/results/bench_batch_size.{md,json}``.
"""

from __future__ import annotations

import json

import numpy as np
from _common import (
    DIRECTIONS,
    fit_and_score,
    log,
    markdown_table,
    mean_sd,
    parse_args,
    write_results,
)

BATCH_SIZES = (32, 64, 128, 256, 512, 7000)
SEEDS = (0, 1, 2)
CURRENT_DEFAULT = 128


def main() -> None:
    def extra(parser):
        parser.add_argument(
            "--report-only",
            action="store_true",
            help="rebuild the report from the saved JSON (no training)",
        )

    args = parse_args(__doc__, extra)
    batch_sizes = (64, 7000) if args.quick else BATCH_SIZES
    seeds = SEEDS[:1] if args.quick else SEEDS
    fit_kwargs = {"max_epochs": 20} if args.quick else {}
    if args.report_only:
        saved = json.loads(
            (args.out / f"bench_batch_size{'_quick' if args.quick else ''}.json").read_text()
        )
        runs, batch_sizes, seeds = saved["runs"], tuple(saved["batch_sizes"]), tuple(saved["seeds"])
        fit_kwargs, machine = saved["fit_kwargs"], {"machine": saved["machine"]}
    else:
        runs, machine = [], {}
        for direction in DIRECTIONS:
            for bs in batch_sizes:
                for seed in seeds:
                    run = fit_and_score(direction, seed, fit_kwargs, batch_size=bs)
                    run["batch_size"] = bs
                    runs.append(run)
                    log(
                        f"{direction} batch_size={bs} seed={seed}: RMSE {run['rmse']:.4f}, "
                        f"{run['epochs']} epochs, {run['seconds']:.1f} s"
                    )

    summary = [
        _summarise(
            direction,
            bs,
            [r for r in runs if r["direction"] == direction and r["batch_size"] == bs],
        )
        for direction in DIRECTIONS
        for bs in batch_sizes
    ]
    rows, notes = [], []
    for direction in DIRECTIONS:
        entries = [e for e in summary if e["direction"] == direction]
        default = next((e for e in entries if e["batch_size"] == CURRENT_DEFAULT), None)
        best = min(entries, key=lambda e: e["rmse_mean"])
        full = [e["batch_size"] for e in entries if e["steps_per_epoch"] == 1]
        if len(full) > 1:
            notes.append(
                f"{direction}: batch sizes {', '.join(map(str, full))} all exceed the "
                f"{entries[0]['n_train']} training cells, so they are the same full-batch run."
            )
        for e in entries:
            delta = "" if default is None else f"{e['rmse_mean'] - default['rmse_mean']:+.4f}"
            delta = delta.replace("-0.0000", "+0.0000")
            rows.append(
                [
                    direction,
                    f"**{e['batch_size']}** (default)"
                    if e["batch_size"] == CURRENT_DEFAULT
                    else e["batch_size"],
                    e["steps_per_epoch"],
                    mean_sd(e["rmse"]) + (" (lowest)" if e is best else ""),
                    delta,
                    f"{e['epochs_mean']:.0f}",
                    f"{e['seconds_mean']:.1f}",
                    f"{e['seconds_per_epoch_mean']:.3f}",
                ]
            )
        if default is not None and best is not default:
            gap = default["rmse_mean"] - best["rmse_mean"]
            sd = max(default["rmse_sd"], best["rmse_sd"])
            notes.append(
                f"{direction}: the lowest mean RMSE (batch_size={best['batch_size']}) is "
                f"{gap:.4f} below the default's, "
                + (
                    f"less than the seed-to-seed sd ({sd:.4f}): not a meaningful difference."
                    if gap < sd
                    else f"more than the seed-to-seed sd ({sd:.4f})."
                )
            )
    table = markdown_table(
        [
            "direction",
            "batch_size",
            "steps/epoch",
            f"held-out RMSE (n={len(seeds)} seeds)",
            "Δ vs default",
            "epochs",
            "fit seconds",
            "s/epoch",
        ],
        rows,
    )
    note_text = "\n".join(f"- {n}" for n in notes)
    markdown = f"""# Batch size: held-out RMSE, epochs and time

Default `sclibra.LIBRA()` (the default recipe, its early stopping included) except
`batch_size`; trained on the `is_train` cells (10 % for validation), RMSE on the held-out cells. `7000` is the
published value: with the bundled sets' ~200-300 training cells it is full-batch (one step per
epoch), as it would be on any data set of up to 7000 cells.{" **Quick run: 1 seed, at most 20 epochs.**" if args.quick else ""}

{table}

{note_text}

Timings are wall-clock on a shared 2-core machine (see the load average in the JSON); runs
that are the same computation (full-batch rows) show how much the load alone moves them.
"""
    write_results(
        "bench_batch_size",
        args,
        markdown,
        {
            "batch_sizes": list(batch_sizes),
            "seeds": list(seeds),
            "current_default": CURRENT_DEFAULT,
            "fit_kwargs": fit_kwargs,
            "summary": summary,
            "notes": notes,
            "runs": runs,
            **machine,
        },
    )


def _summarise(direction: str, bs: int, mine: list[dict]) -> dict:
    rmse = [r["rmse"] for r in mine]
    n_train = mine[0]["n_train"]
    return {
        "direction": direction,
        "batch_size": bs,
        "rmse": rmse,
        "rmse_mean": float(np.mean(rmse)),
        "rmse_sd": float(np.std(rmse, ddof=1)) if len(rmse) > 1 else 0.0,
        "epochs_mean": float(np.mean([r["epochs"] for r in mine])),
        "seconds_mean": float(np.mean([r["seconds"] for r in mine])),
        "seconds_per_epoch_mean": float(np.mean([r["seconds_per_epoch"] for r in mine])),
        "n_train": n_train,
        "steps_per_epoch": int(np.ceil(n_train / min(bs, n_train))),
    }


if __name__ == "__main__":
    main()
