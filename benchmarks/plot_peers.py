"""Figures of ``bench_peers``: held-out RMSE of every method, and how the latent spaces cluster.

What it draws
-------------
From ``benchmarks/results/bench_peers.json`` (written by ``bench_peers.py``, which calls this at
the end of a run), nothing is recomputed:

``bench_peers.png``
    one panel per direction: the held-out RMSE of every peer (one point each) and of sclibra
    (one small point per seed, a large one for their mean, a bar for ± one sd), best at the top;
    in the CITE directions a dashed line marks the error 2 % below the best peer (issue 11's
    target) and, for ATAC targets, the panel title gives the per-cell AUROC of sclibra and of
    the mean baseline (peak popularity). Each panel has its own scale.
``bench_peers_latent.png``
    Leiden ARI and NMI against the labels (best over the resolution grid) of the held-out
    cells' latent space: sclibra (mean ± sd over seeds) beside a 50-PC PCA of the input,
    Seurat's projected PCA and, where it ran, totalVI's latent space; directions without labels
    are left out.

Run ``python benchmarks/plot_peers.py`` (``--results FILE`` to read another ``bench_peers`` JSON;
figures are written beside it).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from _common import TARGET_GAIN

RESULTS = Path(__file__).resolve().parent / "results" / "bench_peers.json"
#: peer -> (label, colour); sclibra is drawn in SCLIBRA_COLOUR
PEERS = {
    "mean": ("mean", "#9e9e9e"),
    "knn": ("kNN (k=15, PCA50)", "#1f77b4"),
    "ridge": ("ridge (PCA50)", "#2ca02c"),
    "seurat": ("Seurat v4 TransferData", "#9467bd"),
    "totalvi": ("totalVI", "#8c564b"),
}
SCLIBRA_COLOUR = "#d62728"
#: reference latent spaces in the JSON -> label
LATENTS = {
    "latent_input_pca50": "PCA50 of the input",
    "latent_seurat_pcaproject": "Seurat pcaproject",
    "latent_totalvi": "totalVI latent",
}


def _is_cite(key: str) -> bool:
    return "ADT" in key


def plot_rmse(results: dict, path: Path) -> Path:
    """One panel per direction: every method's held-out RMSE, sclibra's seeds and mean ± sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    ncol = min(4, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.1 * nrow), squeeze=False)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    for ax, key in zip(axes.ravel(), keys):
        r = results[key]
        methods = r["peers"]["methods"]
        seeds = np.array([x["rmse"] for x in r["sclibra"]], dtype=float)
        rows = [(PEERS[p][0], v["rmse"], PEERS[p][1]) for p, v in methods.items() if p in PEERS]
        rows.append(("sclibra", float(seeds.mean()), SCLIBRA_COLOUR))
        rows.sort(key=lambda t: t[1])
        ys = np.arange(len(rows))[::-1]
        for y, (name, value, colour) in zip(ys, rows):
            if name == "sclibra":
                ax.scatter(seeds, np.full(len(seeds), y), s=14, color=colour, alpha=0.5, zorder=3)
                if len(seeds) > 1:
                    sd = float(seeds.std(ddof=1))
                    ax.errorbar(value, y, xerr=sd, color=colour, capsize=3, zorder=3)
                ax.scatter([value], [y], s=60, color=colour, zorder=4)
            else:
                ax.scatter([value], [y], s=45, color=colour, zorder=4)
        ax.set_yticks(ys)
        ax.set_yticklabels([t[0] for t in rows], fontsize=8)
        for label, (name, _, _) in zip(ax.get_yticklabels(), rows):
            if name == "sclibra":
                label.set_fontweight("bold")
                label.set_color(SCLIBRA_COLOUR)
        best_peer = min(v["rmse"] for p, v in methods.items() if p in PEERS)
        if _is_cite(key):
            ax.axvline(
                best_peer * (1 - TARGET_GAIN),
                color="black",
                linestyle="--",
                linewidth=0.8,
                label=f"{100 * TARGET_GAIN:g} % below the best peer",
            )
            ax.legend(loc="lower right", fontsize=7, frameon=False)
        title = key.replace("_", " ")
        if "auroc_cell" in methods.get("mean", {}):
            auroc = np.mean([x["auroc_cell"] for x in r["sclibra"]])
            title += f"\nper-cell AUROC {auroc:.4f} (mean {methods['mean']['auroc_cell']:.4f})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("held-out RMSE (lower is better)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", linewidth=0.3, alpha=0.6)
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
        ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.suptitle(
        f"sclibra (red: mean ± sd over {len(seeds)} seeds, small points: each seed) "
        "vs peers, held-out cells",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_latent(results: dict, path: Path) -> Path | None:
    """ARI and NMI of the held-out cells' latent space against the labels, per direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, r in results.items() if all("latent" in x for x in r["sclibra"])]
    if not keys:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(keys) + 1.8), sharey=True)
    ys = np.arange(len(keys))[::-1]
    offsets = {"sclibra": 0.2, **{k: 0.07 - 0.13 * i for i, k in enumerate(LATENTS)}}
    colours = {"sclibra": SCLIBRA_COLOUR, **dict(zip(LATENTS, ("#1f77b4", "#9467bd", "#8c564b")))}
    for ax, score in zip(axes, ("ari", "nmi")):
        for y, key in zip(ys, keys):
            r = results[key]
            vals = np.array([x["latent"][score] for x in r["sclibra"]], dtype=float)
            sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            ax.errorbar(
                vals.mean(),
                y + offsets["sclibra"],
                xerr=sd,
                fmt="o",
                color=colours["sclibra"],
                capsize=3,
                label="sclibra (mean ± sd)" if y == ys[0] else None,
            )
            for ref, label in LATENTS.items():
                if ref in r["peers"]:
                    ax.scatter(
                        [r["peers"][ref][score]],
                        [y + offsets[ref]],
                        color=colours[ref],
                        marker="s",
                        s=28,
                        label=label if y == ys[0] else None,
                    )
        ax.set_title(f"latent space of held-out cells: Leiden {score.upper()}", fontsize=9)
        ax.set_xlabel(f"{score.upper()} vs labels (higher is better)", fontsize=8)
        ax.grid(axis="x", linewidth=0.3, alpha=0.6)
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels([k.replace("_", " ") for k in keys], fontsize=8)
    # one legend for both panels, with every reference that appears anywhere
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[x] for x in labels], labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_results(results: dict, folder: Path, stem: str = "bench_peers") -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>_latent.png`` into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [plot_rmse(results, folder / f"{stem}.png")]
    latent = plot_latent(results, folder / f"{stem}_latent.png")
    if latent is not None:
        out.append(latent)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args()
    if not args.results.is_file():
        raise SystemExit(f"{args.results}: no such file; run benchmarks/bench_peers.py first")
    data = json.loads(args.results.read_text())
    stem = args.results.stem
    for path in plot_results(data["results"], args.results.parent, stem):
        print(os.path.relpath(path))


if __name__ == "__main__":
    main()
