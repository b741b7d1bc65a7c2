"""Helpers shared by the benchmark scripts (not part of the sclibra package).

Every benchmark writes ``benchmarks/results/<name>.md`` (a Markdown report with tables) and
``benchmarks/results/<name>.json`` (the raw numbers and every setting used), atomically, and
prints where they went. ``--quick`` runs are written with a ``_quick`` suffix so they never
overwrite a full run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
#: issue 11's target in the CITE directions: held-out RMSE this fraction below the best peer's
TARGET_GAIN = 0.02


def shared_data_dir() -> Path:
    """The shared data sets (``pbmc5k_cite``, ``scicar_a549``): ``$SCLIBRA_SHARED_DATA``, else
    ``../shared/data`` beside the checkout, else ``/work/shared/data``. Benchmarks only: tests
    and vignettes never read it."""
    env = os.environ.get("SCLIBRA_SHARED_DATA")
    if env:
        return Path(env)
    beside = REPO_ROOT.parent / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


def version_env(python_path: Path) -> dict:
    """The environment of a subprocess that runs the package found at ``python_path`` (first on
    ``PYTHONPATH``) on this checkout's bundled data (older versions kept theirs elsewhere)."""
    env = dict(os.environ, PYTHONPATH=str(python_path), PYTHONWARNINGS="ignore")
    env["SCLIBRA_EXTDATA"] = str(REPO_ROOT / "python" / "sclibra" / "_extdata")
    return env


def export_package(commit: str, target: Path) -> Path:
    """``git archive`` of ``commit``'s ``python/sclibra`` into ``target`` (once; kept for later
    runs); returns the folder to put first on ``PYTHONPATH`` for that version of the package."""
    import subprocess

    if not (target / "python" / "sclibra").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", commit, "python/sclibra"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "python"


#: the two bundled directions: name -> (loader, index of A, index of B, A name, B name)
DIRECTIONS = {
    "ATAC->RNA": ("bmmc_multiome", 1, 0, "ATAC", "RNA"),
    "RNA->ADT": ("bmmc_cite", 0, 1, "RNA", "ADT"),
}


def parse_args(doc: str, extra=None) -> argparse.Namespace:
    """The common command line: ``--quick`` and ``--out DIR`` (plus script-specific options)."""
    parser = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short version (smoke test)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a small, shared machine one thread is "
        "faster than oversubscribed OpenMP; recorded in the results)",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.threads:
        import torch

        import sclibra

        torch.set_num_threads(args.threads)
        sclibra.settings.num_threads = args.threads
        sclibra.settings.verbosity = "warning"
    return args


def load_direction(direction: str):
    """``(a, b)`` AnnData of a bundled direction, e.g. ``"RNA->ADT"``."""
    import sclibra

    loader, ia, ib, _, _ = DIRECTIONS[direction]
    data = getattr(sclibra.datasets, loader)()
    return data[ia], data[ib]


def held_out(a, b):
    """Training and held-out (``is_train`` False) parts of a bundled pair, same cell order."""
    is_train = a.obs["is_train"].to_numpy(dtype=bool)
    b = b[a.obs_names]
    return a[is_train], b[is_train], a[~is_train], b[~is_train]


def scicar_a549(shared: Path):
    """``(rna, atac, is_train)`` of sci-CAR A549 under ``shared`` (unique feature names, ATAC in
    RNA's cell order); it has no split, so the training cells are a seeded random 70 %, as in
    ``bench_peers``."""
    import anndata as ad

    rna = ad.read_h5ad(shared / "scicar_a549" / "rna.h5ad")
    atac = ad.read_h5ad(shared / "scicar_a549" / "atac.h5ad")
    for x in (rna, atac):
        x.var_names_make_unique()
    is_train = np.random.default_rng(0).random(rna.n_obs) < 0.7
    return rna, atac[rna.obs_names], is_train


def fit_and_score(direction: str, seed: int, fit_kwargs=None, **model_kwargs) -> dict:
    """Train LIBRA on the training cells of a bundled direction; score the held-out cells.

    Returns the held-out RMSE, epochs trained, why training stopped, wall-clock seconds of
    ``fit`` and seconds per epoch.
    """
    import sclibra

    a, b = load_direction(direction)
    _, _, a_test, b_test = held_out(a, b)
    model = sclibra.LIBRA(seed=seed, **model_kwargs)
    t0 = time.perf_counter()
    model.fit(a, b, train="is_train", progress=False, **(fit_kwargs or {}))
    seconds = time.perf_counter() - t0
    pred = model.predict(a_test)
    return {
        "direction": direction,
        "seed": seed,
        "rmse": sclibra.metrics.rmse(pred.X, b_test.X),
        "epochs": int(model.n_epochs_),
        "stopped_by": model.stopped_by_,
        "best_val_mse": float(model.best_val_loss_),
        "seconds": seconds,
        "seconds_per_epoch": seconds / max(model.n_epochs_, 1),
        "n_train": len(model.train_cells_),
        "n_val": len(model.val_cells_),
        "n_test": a_test.n_obs,
        "config": model.config,
    }


def prepare_worker(threads: int) -> None:
    """Set up a timing subprocess: torch threads, quiet sclibra, one-time imports done."""
    import torch

    import sclibra

    torch.set_num_threads(threads)
    sclibra.settings.num_threads = threads
    # torch.optim imports torch._dynamo on first use (seconds, once per process): do it before
    # anything is timed, in every version alike
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    sclibra.settings.progress = False
    sclibra.settings.verbosity = "warning"


class WorkerError(RuntimeError):
    """A benchmark subprocess failed: its exit status and the last line of its stderr."""

    def __init__(self, returncode: int, line: str):
        super().__init__(f"exit {returncode}: {line}")
        self.returncode, self.line = returncode, line


def run_worker(argv: list, *, python=None, env=None, timeout=None) -> dict:
    """Run ``python ARGV...`` (this interpreter unless ``python`` names another) and return the
    JSON of the line it prints as ``RESULT {...}``.

    Raises :class:`WorkerError` when it fails or prints no result; a timeout raises
    :class:`subprocess.TimeoutExpired`.
    """
    import subprocess

    proc = subprocess.run(
        [str(python or sys.executable), *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise WorkerError(proc.returncode, (proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(line[0][len("RESULT ") :])


def serve_worker(worker) -> bool:
    """In a process started as ``script --worker SPEC`` (see :func:`run_worker`): print
    ``RESULT`` and the JSON of ``worker(SPEC)``, and return ``True``; elsewhere ``False``.
    """
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
        return True
    return False


def log(msg: str) -> None:
    """A progress line on stderr (benchmarks run unattended; one line per finished run)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    """Where the numbers come from (CPU, threads, versions)."""
    import torch

    import sclibra

    info = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "sclibra": getattr(sclibra, "__version__", "unknown"),
        # the machine may be shared: a load average above the core count inflates timings
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with open("/proc/meminfo") as fh:
            total_kb = int(fh.readline().split()[1])
        info["memory_gib"] = round(total_kb / 2**20, 1)
    except OSError:
        pass
    return info


def mean_sd(values) -> str:
    """``"mean ± sd"`` of a list of numbers (sd with ddof=1; just the value when n=1)."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return f"{v[0]:.4f}"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def command_line() -> str:
    """The command that is running, as typed from the repository root."""
    import shlex

    script = f"benchmarks/{Path(sys.argv[0]).name}"
    return " ".join(["python", script, *map(shlex.quote, sys.argv[1:])])


def write_results(name: str, args, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` (``<name>_quick.*`` for ``--quick``) and print where."""
    stem = f"{name}_quick" if args.quick else name
    md_path, json_path = args.out / f"{stem}.md", args.out / f"{stem}.json"
    data = {"benchmark": name, "quick": bool(args.quick), "machine": machine_info(), **data}
    footer = (
        f"\n\n_Machine: {data['machine']['cpu_count']} CPU cores, "
        f"{data['machine'].get('memory_gib', '?')} GiB RAM, torch {data['machine']['torch']} "
        f"({data['machine']['torch_threads']} threads), {data['machine']['date_utc']} UTC. "
        f"Command: `{command_line()}`. "
        f"Raw numbers: `{json_path.name}`._\n"
    )
    _atomic_write(md_path, markdown.rstrip() + "\n" + footer)
    _atomic_write(json_path, json.dumps(data, indent=2, default=_json_default) + "\n")
    print(f"results written to {md_path} and {json_path}", file=sys.stderr)
    return md_path, json_path


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
