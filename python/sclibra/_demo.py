"""``sclibra demo``: the main job on the bundled bone-marrow data.

Two directions, each trained on the training donor (``is_train``) and evaluated on the held-out
donor: ATAC -> RNA on the 10x Multiome set and RNA -> ADT on the CITE-seq set. For each, the
output folder gets the saved model, the latent space of all cells, the predictions for held-out
cells, a metrics table with the mean / kNN / ridge baselines beside LIBRA, and plots.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ._settings import logger

DIRECTIONS = {
    # name: (loader, input modality, output modality)
    "multiome_atac_to_rna": ("bmmc_multiome", "atac", "rna"),
    "cite_rna_to_adt": ("bmmc_cite", "rna", "adt"),
}


def _load(loader: str):
    from . import datasets

    first, second = getattr(datasets, loader)()
    names = {"bmmc_multiome": ("rna", "atac"), "bmmc_cite": ("rna", "adt")}[loader]
    return dict(zip(names, (first, second)))


def run_direction(name: str, out: Path, *, max_epochs: int, seed: int) -> pd.DataFrame:
    """Train, predict, embed and evaluate one direction; write everything into ``out``."""
    import anndata as ad

    from ._model import LIBRA
    from ._report import evaluate

    loader, mod_a, mod_b = DIRECTIONS[name]
    data = _load(loader)
    a, b = data[mod_a], data[mod_b]
    held_out = a.obs_names[~a.obs["is_train"].astype(bool).to_numpy()]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = LIBRA(seed=seed).fit(a, b, train="is_train", max_epochs=max_epochs)
    seconds = time.perf_counter() - t0
    model.save(out / "model")
    model.history.to_csv(out / "history.csv", index=False)

    latent = ad.AnnData(obs=a.obs.copy())
    latent.obsm["X_libra"] = model.get_latent(a)
    latent.uns["sclibra"] = {"direction": name, "params": model.config}
    latent.write_h5ad(out / "latent.h5ad")
    pred = model.predict(a[held_out])
    pred.write_h5ad(out / f"predicted_{mod_b}_heldout.h5ad")

    table = evaluate(
        model,
        a,
        b,
        labels="cell_type",
        held_out=held_out,
        out_dir=out / "evaluation",
        overwrite=True,
    )
    table.insert(0, "direction", name)
    table.to_csv(out / "metrics.csv", index=False)
    logger.info("%s: %d epochs in %.1f s; results in %s", name, model.n_epochs_, seconds, out)
    return table


def _foreign(out: Path) -> list[str]:
    """What in an existing output folder the demo did not write (it is never replaced)."""
    from ._fs import foreign_entries

    return foreign_entries(out, (*DIRECTIONS, "metrics.csv"))


def run_demo(
    out, *, overwrite: bool = False, max_epochs: int = 1500, seed: int = 0, directions=None
) -> Path:
    """Run the demo into ``out`` (built in a temporary folder, moved into place at the end).

    ``overwrite=True`` replaces an earlier demo output only: a folder holding anything else is
    refused, naming what it holds.
    """
    from ._fs import replace_dir

    def write(tmp: Path) -> None:
        tables = [
            run_direction(d, tmp / d, max_epochs=max_epochs, seed=seed)
            for d in (directions or DIRECTIONS)
        ]
        pd.concat(tables, ignore_index=True).to_csv(tmp / "metrics.csv", index=False)

    return replace_dir(
        out,
        write,
        overwrite=overwrite,
        owned=_foreign,
        what="demo output",
    )


def _print_summary(out: Path) -> None:
    table = pd.read_csv(out / "metrics.csv")
    rmse = table[(table["metric"] == "rmse") & (table["split"] == "held_out")]
    if len(rmse):
        wide = rmse.pivot_table(
            index="direction", columns="method", values="value", aggfunc="first"
        )
        with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
            print("\nheld-out RMSE (lower is better):")
            print(wide.to_string())
    print(f"\nresults written to {out}:")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(out)}")


def _cmd(args) -> int:
    """Train LIBRA ATAC->RNA (10x Multiome) and RNA->ADT (CITE-seq) on the training donor,
    evaluate on the held-out donor against mean/kNN/ridge baselines, and write models, latent
    spaces, predictions, metrics and plots to one folder.
    """
    from ._cli_common import apply_common, check_output

    apply_common(args)
    check_output(args.out, args.overwrite, folder=True, owned=_foreign, what="demo output")
    out = run_demo(args.out, overwrite=args.overwrite, max_epochs=args.max_epochs, seed=args.seed)
    _print_summary(out)
    return 0


def register(sub) -> None:
    """Register ``sclibra demo``."""
    from ._cli_common import add_command, add_common_args

    p = add_command(sub, "demo", _cmd, "train and evaluate on the bundled bone-marrow data")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--max-epochs", type=int, default=1500)
    add_common_args(p)


__all__ = ["run_demo"]
