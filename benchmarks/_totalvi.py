"""totalVI as an optional RNA -> ADT peer of ``bench_peers.py`` (scvi-tools in its own venv).

scvi-tools is not a dependency of sclibra: it runs in a separate virtual environment whose
interpreter ``SCLIBRA_TOTALVI_PYTHON`` names (install line in ``benchmarks/README.md``), through
``benchmarks/peers/totalvi_transfer.py``. The predicted protein counts are mapped to the
benchmark's ADT target (``X``, a per-cell CLR of ``layers['counts']``) by :func:`fit_clr`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "peers" / "totalvi_transfer.py"
ENV_VAR = "SCLIBRA_TOTALVI_PYTHON"
#: posterior samples averaged for the protein expression of each query cell
N_SAMPLES = 25


def totalvi_python() -> tuple[str | None, str]:
    """The interpreter that can ``import scvi`` (or ``None``) and why."""
    return _check(os.environ.get(ENV_VAR))


@lru_cache
def _check(exe: str | None) -> tuple[str | None, str]:
    if not exe:
        return None, f"{ENV_VAR} is not set (see benchmarks/README.md)"
    try:
        r = subprocess.run(
            [exe, "-c", "import scvi; print(scvi.__version__)"], capture_output=True, text=True
        )
    except OSError as e:
        return None, f"{ENV_VAR}={exe} does not run ({e})"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [""])[-1]
        return None, f"{ENV_VAR}={exe} cannot import scvi ({last})"
    return exe, f"scvi-tools {r.stdout.strip()}"


def _counts(x) -> np.ndarray:
    import scipy.sparse as sp

    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def fit_clr(counts, target, tol: float = 1e-4):
    """The per-cell CLR that turns ADT counts into ``target``, found on the training cells.

    Two forms are tried, in this order:

    ``log1p_centred``
        ``log1p(x) - mean_j log1p(x_j)`` over the proteins of the cell (pbmc5k_cite, exact);
    ``seurat``
        Seurat's ``CLR`` with ``margin = 2``: ``log1p(x / g)`` with a per-cell ``g``. Seurat's
        ``g = exp(mean_j log1p(x_j))``; when the target's ``g`` was taken over a panel wider than
        the proteins kept (bmmc_cite: ``g`` is 0.90-0.99 times the one of its 134 proteins), ``g``
        is read off the training cells (``x / expm1(target)``) and ``log g = a + b mean_j
        log1p(x_j)`` is fitted to it by least squares on the training cells.

    Parameters
    ----------
    counts, target
        Training cells' ADT counts and normalised values (cells x proteins).
    tol
        Largest absolute difference on the training cells for a form to count as exact.

    Returns
    -------
    transform, info
        ``transform(counts) -> values`` and a dict describing the mapping (form, coefficients,
        largest absolute error of ``transform(counts)`` against ``target`` on the training cells).
    """
    c = _counts(counts)
    t = _counts(target)
    m = np.log1p(c).mean(axis=1, keepdims=True)
    err = float(np.abs(np.log1p(c) - m - t).max())
    if err < tol:

        def centred(x):
            lx = np.log1p(np.maximum(_counts(x), 0))
            return (lx - lx.mean(axis=1, keepdims=True)).astype(np.float32)

        return centred, {"form": "log1p(x) - mean_j log1p(x_j) (per cell)", "train_max_err": err}
    pos = c > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(pos & (t > 0), c / np.expm1(t), np.nan)
    keep = np.isfinite(g).any(axis=1)
    if not keep.any():
        raise ValueError("the ADT target is no per-cell CLR of the counts")
    log_g = np.log(np.nanmedian(g[keep], axis=1))
    design = np.c_[np.ones(keep.sum()), m[keep, 0]]
    (a, b), *_ = np.linalg.lstsq(design, log_g, rcond=None)

    def seurat(x):
        x = np.maximum(_counts(x), 0)
        lg = a + b * np.log1p(x).mean(axis=1, keepdims=True)
        return np.log1p(x / np.exp(lg)).astype(np.float32)

    err = float(np.abs(seurat(c) - t).max())
    if err > 0.5:
        raise ValueError(f"no per-cell CLR reproduces the ADT target (max error {err:.3g})")
    info = {
        "form": "log1p(x / g), log g = a + b * mean_j log1p(x_j) (per cell; Seurat CLR: a=0, b=1)",
        "a": float(a),
        "b": float(b),
        "train_max_err": err,
        "train_rmse": float(np.sqrt(np.mean((seurat(c) - t) ** 2))),
    }
    return seurat, info


def run_totalvi(
    python: str, work: Path, rna_train, adt_train, rna_test, proteins, max_epochs=None, seed=0
) -> dict:
    """Train totalVI in ``python`` (reference + query with missing proteins); its outputs.

    Parameters
    ----------
    python
        Interpreter with scvi-tools.
    work
        Folder for the temporary exchange directory.
    rna_train, adt_train, rna_test
        Raw counts (cells x genes / proteins) of the reference and the query cells.
    proteins
        Protein names.
    max_epochs
        ``TOTALVI.train(max_epochs=...)``; ``None`` is scvi-tools' heuristic (400 below 20k cells).
    seed
        ``scvi.settings.seed``.

    Returns
    -------
    dict
        ``pred`` (query x proteins, expected observed protein counts for the reference batch,
        background included), ``pred_denoised`` (foreground only), ``latent``, ``seconds``,
        ``epochs`` and ``scvi_version``.
    """
    import scipy.sparse as sp

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="totalvi_", dir=work) as d:
        tmp = Path(d)
        for name, x in (("ref_rna", rna_train), ("ref_adt", adt_train), ("query_rna", rna_test)):
            sp.save_npz(tmp / f"{name}.npz", sp.csr_matrix(x, dtype=np.float32))
        params = {"proteins": [str(p) for p in proteins], "max_epochs": max_epochs, "seed": seed}
        params["n_samples"] = N_SAMPLES
        (tmp / "params.json").write_text(json.dumps(params))
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        env["CUDA_VISIBLE_DEVICES"] = ""
        r = subprocess.run([python, str(SCRIPT), str(tmp)], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"totalVI failed: {r.stderr[-2000:]}")
        out = json.loads((tmp / "result.json").read_text())
        for name in ("pred", "pred_denoised", "latent"):
            out[name] = np.load(tmp / f"{name}.npy")
    return out


def add_totalvi(out: dict, load, a: str, b: str, label_key, work: Path, log, scores, latent_scores):
    """Add ``methods['totalvi']`` (and ``latent_totalvi``) to the peer results ``out``.

    Only for RNA -> ADT and when :func:`totalvi_python` finds scvi-tools; returns whether ``out``
    changed. ``load()`` gives ``bench_peers.load_set``'s ``{modality: AnnData}`` (called only when
    totalVI runs); ``scores`` and ``latent_scores`` are bench_peers' scoring functions.
    """
    if (a, b) != ("RNA", "ADT"):
        return False
    python, why = totalvi_python()
    if python is None:
        log(f"totalvi skipped: {why}")
        return False
    data = load()
    rna, adt = data[a], data[b]
    train = rna.obs["is_train"].to_numpy(dtype=bool)
    for x in (rna, adt):
        if "counts" not in x.layers:
            log("totalvi skipped: no raw counts in layers['counts']")
            return False
    transform, mapping = fit_clr(adt.layers["counts"][train], adt.X[train])
    log(f"totalvi ({why}): target mapping {mapping}")
    res = run_totalvi(
        python,
        work,
        rna.layers["counts"][train],
        adt.layers["counts"][train],
        rna.layers["counts"][~train],
        adt.var_names,
    )
    truth = adt.X[~train]
    out["methods"]["totalvi"] = {
        **scores(transform(res["pred"]), truth, False),
        "seconds": res["seconds"],
    }
    denoised = scores(transform(res["pred_denoised"]), truth, False)
    out["totalvi_info"] = {
        "scvi_version": res["scvi_version"],
        "epochs": res["epochs"],
        "max_epochs": res["max_epochs"],
        "n_samples": N_SAMPLES,
        "mapping": mapping,
        # how far the mapping alone is from the target: applied to the held-out true counts
        "mapping_test_rmse": float(
            np.sqrt(np.mean((transform(adt.layers["counts"][~train]) - _counts(truth)) ** 2))
        ),
        # the documented imputation (background removed): far from a CLR of observed counts
        "denoised_foreground_only": denoised,
    }
    if label_key:
        out["latent_totalvi"] = latent_scores(res["latent"], rna.obs[label_key].to_numpy()[~train])
    log(f"totalvi: {out['methods']['totalvi']}, {out['totalvi_info']}")
    return True
