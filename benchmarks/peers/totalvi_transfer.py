"""totalVI (scvi-tools) as an RNA -> ADT predictor, driven by ``benchmarks/bench_peers.py``.

Usage: ``$SCLIBRA_TOTALVI_PYTHON totalvi_transfer.py DIR`` (the interpreter of a virtual
environment with scvi-tools; this script imports nothing from sclibra or the benchmarks).

DIR holds what ``benchmarks/_totalvi.py`` exported (cells x features, ``scipy.sparse.save_npz``):
``ref_rna.npz``, ``ref_adt.npz`` (raw counts of the reference, i.e. training, cells),
``query_rna.npz`` (raw RNA counts of the held-out cells) and ``params.json`` (``proteins``,
``max_epochs``, ``n_samples``, optional ``seed``, default 0), and gets back ``pred.npy`` (query x
proteins: the expected observed protein counts for the reference batch, background included),
``pred_denoised.npy`` (the denoised, foreground-only protein expression), ``latent.npy`` (the
query cells' totalVI latent mean) and ``result.json`` (seconds, epochs, versions).

The recipe is scvi-tools' for proteins missing in some batches: the reference and the query are
two batches of one AnnData, the query's proteins all zero (``TOTALVI`` treats a batch whose
proteins are all zero as not measured); ``TOTALVI`` with its defaults, ``train()`` with the
defaults (``max_epochs=None`` is scvi-tools' heuristic, 400 epochs below 20,000 cells; early
stopping on the validation ELBO), then ``get_normalized_expression(transform_batch="reference",
n_samples=..., return_mean=True)`` on the query cells, with ``include_protein_background=True``
for ``pred.npy`` (the benchmark's target is a CLR of observed counts, background and all) and
without for ``pred_denoised.npy``. CPU, one torch thread, seed 0 unless ``params.json`` says
otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(folder: str) -> None:
    """Fit totalVI on the exported cells and write its predictions to ``folder``."""
    import torch

    torch.set_num_threads(1)
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    import scvi

    tmp = Path(folder)
    params = json.loads((tmp / "params.json").read_text())
    scvi.settings.seed = int(params.get("seed", 0))
    scvi.settings.dl_num_workers = 0
    ref_rna = sp.load_npz(tmp / "ref_rna.npz").tocsr()
    ref_adt = sp.load_npz(tmp / "ref_adt.npz").toarray()
    query_rna = sp.load_npz(tmp / "query_rna.npz").tocsr()
    n_ref, n_query = ref_rna.shape[0], query_rna.shape[0]
    proteins = params["proteins"]

    t0 = time.perf_counter()
    cells = [f"ref{i}" for i in range(n_ref)] + [f"query{i}" for i in range(n_query)]
    adata = ad.AnnData(
        sp.vstack([ref_rna, query_rna]).tocsr().astype(np.float32),
        obs=pd.DataFrame(
            {"batch": pd.Categorical(["reference"] * n_ref + ["query"] * n_query)}, index=cells
        ),
    )
    adata.var_names = [f"gene{j}" for j in range(adata.n_vars)]
    adata.obsm["protein_expression"] = pd.DataFrame(
        np.vstack([ref_adt, np.zeros((n_query, ref_adt.shape[1]))]).astype(np.float32),
        index=cells,
        columns=proteins,
    )
    scvi.model.TOTALVI.setup_anndata(
        adata, batch_key="batch", protein_expression_obsm_key="protein_expression"
    )
    model = scvi.model.TOTALVI(adata)
    model.train(
        max_epochs=params["max_epochs"],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
    )
    query = np.arange(n_ref, n_ref + n_query)
    kw = {
        "indices": query,
        "transform_batch": "reference",
        "n_samples": int(params["n_samples"]),
        "return_mean": True,
        "return_numpy": True,
    }
    _, pred = model.get_normalized_expression(include_protein_background=True, **kw)
    latent = model.get_latent_representation(indices=query)
    seconds = time.perf_counter() - t0
    _, denoised = model.get_normalized_expression(**kw)

    np.save(tmp / "pred.npy", np.asarray(pred, dtype=np.float32))
    np.save(tmp / "pred_denoised.npy", np.asarray(denoised, dtype=np.float32))
    np.save(tmp / "latent.npy", np.asarray(latent, dtype=np.float32))
    history = model.history.get("elbo_train")
    result = {
        "seconds": seconds,
        "epochs": int(len(history)) if history is not None else None,
        "max_epochs": model.trainer.max_epochs if hasattr(model, "trainer") else None,
        "scvi_version": scvi.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    (tmp / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
