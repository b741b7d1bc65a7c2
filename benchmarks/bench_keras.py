"""Time for sclibra to reach the published Keras LIBRA model's final validation MSE.

What it measures
----------------
On the same training and validation cells, the published Keras model (TensorFlow CPU: Dense
blocks of 512 and 256 units with LeakyReLU(0.3) and Dropout(0.2), a 10-unit bottleneck, a mirrored
decoder and a ReLU output; MSE, Adam(1e-3), batch size 7000, ReduceLROnPlateau(factor 0.1,
patience 15, min_lr 1e-5) and EarlyStopping(patience 20) on the training loss, up to 1500 epochs)
is trained first, recording the validation MSE after every epoch. Its **final** validation MSE is
the target. Then default ``sclibra.LIBRA()`` is trained on the same cells (its validation split is
the same cells Keras validates on) and stopped as soon as its validation MSE reaches the target.
Reported: Keras's total time (when it had its final MSE) and the time it first reached that MSE,
sclibra's time to reach it, and the ratios (wall and CPU seconds).

Directions: bundled bone-marrow CITE RNA -> ADT (``is_train`` cells) and sci-CAR ATAC -> RNA
(``../shared/data/scicar_a549``, a seeded random 70 % of cells, as ``bench_peers``). The Keras
run has a wall-clock cap (``--keras-cap`` seconds, default 1200); a capped run is marked, and its
MSE at the cap is the target.

TensorFlow is an optional benchmark dependency, installed in its own virtual environment
(never in the project's):

    python3 -m venv benchmarks/_work/tfenv
    benchmarks/_work/tfenv/bin/pip install tensorflow-cpu "numpy<2"

Both run with the same number of threads (``--threads``, default 1). Run
``python benchmarks/bench_keras.py`` (``--quick``: CITE only, Keras capped at 120 s). Results:
``benchmarks/results/bench_keras.{md,json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import WorkerError, log, markdown_table, run_worker, scicar_a549, shared_data_dir

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "keras"
TF_PYTHON = Path(os.environ.get("SCLIBRA_TF_PYTHON", HERE / "_work" / "tfenv" / "bin" / "python"))
SHARED = shared_data_dir()

PUBLISHED = dict(
    widths=[512, 256],
    alpha=0.3,
    dropout=0.2,
    latent=10,
    lr=1e-3,
    batch_size=7000,
    max_epochs=1500,
    lr_factor=0.1,
    lr_patience=15,
    min_lr=1e-5,
    es_patience=20,
)


# ----------------------------------------------------------------------------------------------
# Keras side (runs in the TensorFlow venv; imports neither sclibra nor torch)
# ----------------------------------------------------------------------------------------------
def keras_worker(npz: str, threads: int, cap: float) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    d = np.load(npz)
    xt, yt, xv, yv = d["xt"], d["yt"], d["xv"], d["yv"]
    p = PUBLISHED
    inp = keras.Input((xt.shape[1],))
    h = inp
    for w in p["widths"]:
        h = layers.Dense(w)(h)
        h = layers.LeakyReLU(negative_slope=p["alpha"])(h)
        h = layers.Dropout(p["dropout"])(h)
    h = layers.Dense(p["latent"])(h)
    for w in reversed(p["widths"]):
        h = layers.Dense(w)(h)
        h = layers.LeakyReLU(negative_slope=p["alpha"])(h)
        h = layers.Dropout(p["dropout"])(h)
    out = layers.Dense(yt.shape[1], activation="relu")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(p["lr"]), loss="mse")

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self.t0
            self.rows.append(
                (epoch + 1, wall, time.process_time() - self.c0, float(logs["val_loss"]))
            )
            if wall > cap:
                self.model.stop_training = True

    clock = Clock()
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(
        xt,
        yt,
        batch_size=p["batch_size"],
        epochs=p["max_epochs"],
        validation_data=(xv, yv),
        shuffle=True,
        verbose=0,
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(
                "loss", factor=p["lr_factor"], patience=p["lr_patience"], min_lr=p["min_lr"]
            ),
            keras.callbacks.EarlyStopping("loss", patience=p["es_patience"]),
            clock,
        ],
    )
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = clock.rows
    final = rows[-1][3]
    first = next(r for r in rows if r[3] <= final)
    return {
        "epochs": len(rows),
        "capped": rows[-1][1] > cap,
        "total_s": total,
        "total_cpu_s": total_cpu,
        "final_val_mse": final,
        "first_reach_epoch": first[0],
        "first_reach_s": first[1],
        "first_reach_cpu_s": first[2],
        "val_curve": [r[3] for r in rows],
        "tf_version": tf.__version__,
    }


# ----------------------------------------------------------------------------------------------
# sclibra side
# ----------------------------------------------------------------------------------------------
def load_direction(name: str):
    """``(a, b)`` AnnData of the training cells of a direction."""

    if name == "bmmc_cite RNA->ADT":
        import sclibra

        rna, adt = sclibra.datasets.bmmc_cite()
        tr = rna.obs["is_train"].to_numpy(dtype=bool)
        return rna[tr], adt[rna.obs_names][tr]
    rna, atac, tr = scicar_a549(SHARED)
    return atac[tr], rna[tr]


def _dense(x) -> np.ndarray:
    import scipy.sparse as sp

    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def run_direction(name: str, threads: int, cap: float) -> dict:
    import sclibra
    from sclibra._model import _split_validation

    a, b = load_direction(name)
    seed = 0
    train_idx, val_idx = _split_validation(a.n_obs, 0.1, seed)  # sclibra's own split
    WORK.mkdir(parents=True, exist_ok=True)
    npz = WORK / f"{name.split()[0]}.npz"
    xa, xb = _dense(a.X), _dense(b.X)
    np.savez(npz, xt=xa[train_idx], yt=xb[train_idx], xv=xa[val_idx], yv=xb[val_idx])
    del xa, xb
    log(f"{name}: Keras (published, batch 7000), {len(train_idx)} + {len(val_idx)} cells")
    try:
        keras_res = run_worker(
            [os.path.abspath(__file__), "--keras-worker", npz, threads, cap],
            python=TF_PYTHON,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except WorkerError as err:
        raise RuntimeError(f"Keras run failed: {err.line}") from None
    target = keras_res["final_val_mse"]
    log(
        f"  Keras: {keras_res['epochs']} epochs, {keras_res['total_s']:.1f} s, final val MSE "
        f"{target:.4f}"
    )

    log(f"{name}: sclibra default until val MSE <= {target:.4f}")
    marks = []
    t0, c0 = time.perf_counter(), time.process_time()

    def stop_at_target(model, epoch, tl, vl):
        marks.append((epoch, time.perf_counter() - t0, time.process_time() - c0, vl))
        return vl <= target

    model = sclibra.LIBRA(seed=seed)
    model.fit(a, b, validation_split=0.1, callback=stop_at_target, progress=False)
    if list(model.val_cells_) != list(a.obs_names[val_idx]):
        raise RuntimeError("sclibra's validation cells differ from Keras's")
    reached = [m for m in marks if m[3] <= target]
    best = min(m[3] for m in marks)
    res = {
        "keras": keras_res,
        "target_val_mse": target,
        "sclibra_reached": bool(reached),
        "sclibra_epochs": reached[0][0] if reached else len(marks),
        "sclibra_s": reached[0][1] if reached else marks[-1][1],
        "sclibra_cpu_s": reached[0][2] if reached else marks[-1][2],
        "sclibra_best_val_mse": best,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "shape": [int(a.n_vars), int(b.n_vars)],
    }
    log(
        f"  sclibra: {'reached' if reached else 'did NOT reach'} it at epoch "
        f"{res['sclibra_epochs']}, {res['sclibra_s']:.1f} s"
    )
    return res


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--keras-worker":
        res = keras_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        print("RESULT " + json.dumps(res), flush=True)
        return
    from _common import parse_args, write_results

    def extra(parser):
        parser.add_argument(
            "--keras-cap", type=float, default=1200, help="wall-clock cap of a Keras run (s)"
        )

    args = parse_args(__doc__, extra)
    if not TF_PYTHON.is_file():
        log(f"TensorFlow venv not found at {TF_PYTHON}; see this script's docstring. Skipped.")
        return
    directions = ["bmmc_cite RNA->ADT"]
    if not args.quick and (SHARED / "scicar_a549").is_dir():
        directions.append("sci-CAR ATAC->RNA")
    cap = 120.0 if args.quick else args.keras_cap
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    results = {}
    for name in directions:
        results[name] = run_direction(name, args.threads, cap)
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    for name, r in results.items():
        k = r["keras"]
        rows.append(
            [
                name,
                f"{r['n_train']} + {r['n_val']}",
                f"{k['epochs']}{' (capped)' if k['capped'] else ''}",
                f"{r['target_val_mse']:.4f}",
                f"{k['total_s']:.1f} / {k['total_cpu_s']:.1f}",
                f"{k['first_reach_s']:.1f} (epoch {k['first_reach_epoch']})",
                (
                    f"{r['sclibra_s']:.1f} / {r['sclibra_cpu_s']:.1f} (epoch {r['sclibra_epochs']})"
                    if r["sclibra_reached"]
                    else f"not reached (best {r['sclibra_best_val_mse']:.4f})"
                ),
                f"**{r['sclibra_s'] / k['total_s']:.3f}**" if r["sclibra_reached"] else "-",
                f"{r['sclibra_cpu_s'] / k['total_cpu_s']:.3f}" if r["sclibra_reached"] else "-",
                f"{r['sclibra_s'] / k['first_reach_s']:.3f}" if r["sclibra_reached"] else "-",
            ]
        )
    table = markdown_table(
        [
            "direction",
            "train + validation cells",
            "Keras epochs",
            "Keras final val MSE (target)",
            "Keras s (wall / CPU)",
            "Keras first at target, s",
            "sclibra to target, s (wall / CPU)",
            "sclibra / Keras (wall)",
            "sclibra / Keras (CPU)",
            "sclibra / Keras first reach (wall)",
        ],
        rows,
    )
    up = "\n".join(f"- `{u}`" for u in uptime)
    tfv = next(iter(results.values()))["keras"]["tf_version"] if results else "?"
    markdown = f"""# Time to reach the published Keras model's final validation MSE

Keras (TensorFlow {tfv}, CPU): the published LIBRA network and schedule (Dense 512 / 256 with
LeakyReLU(0.3) and Dropout(0.2), latent 10, mirrored decoder, ReLU output; MSE, Adam(1e-3),
batch 7000, ReduceLROnPlateau and EarlyStopping on the training loss, up to 1500 epochs;
wall-clock cap {cap:.0f} s). sclibra: default `LIBRA(seed=0)`, same training and validation cells,
stopped when its validation MSE first reaches Keras's final one. {args.threads} thread(s) for
both. Target: sclibra <= 1/10 of Keras's time.

{table}

Machine load (`uptime`) before and after each direction:

{up}
"""
    write_results("bench_keras", args, markdown, {"published": PUBLISHED, "results": results})


if __name__ == "__main__":
    main()
