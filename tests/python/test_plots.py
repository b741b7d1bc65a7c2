"""Tests of sclibra.pl: every plot renders to a file without a display."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sclibra import SclibraError, pl
from sclibra import metrics as M


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return len(data)


@pytest.fixture
def history():
    epochs = np.arange(1, 31)
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": 1 / epochs,
            "val_loss": 1 / epochs + 0.02 * (epochs > 20) * (epochs - 20),
        }
    )


def test_loss_plot_marks_best_epoch(history, tmp_path):
    fig = pl.loss(history, save=tmp_path / "loss.png")
    assert isinstance(fig, Figure)
    assert _png(tmp_path / "loss.png") > 1000
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["training", "validation"]
    best = int(history["epoch"][history["val_loss"].idxmin()])
    assert any(f"epoch {best}" in t.get_text() for t in ax.get_legend().get_texts())
    with pytest.raises(SclibraError, match="no 'val_loss' column"):
        pl.loss(history.drop(columns="val_loss"))


def test_loss_plot_of_untrained_model_is_an_error():
    import sclibra

    with pytest.raises(SclibraError, match="no training history"):
        pl.loss(sclibra.LIBRA())


def test_jaccard_heatmap(tmp_path):
    ref = pd.Series(list("AAABBC"), index=[f"c{i}" for i in range(6)])
    qry = pd.Series(list("001122"), index=ref.index)
    fig = pl.jaccard(ref, qry, save=tmp_path / "jac.pdf")
    assert (tmp_path / "jac.pdf").read_bytes()[:4] == b"%PDF"
    assert f"{M.ppji(ref, qry):.3f}" in fig.axes[0].get_title()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    # values are annotated in the cells of a small matrix
    assert any(t.get_text() == "0.67" for t in ax.texts)


def test_consistency_plot_bimodal_and_unimodal(tmp_path):
    rng = np.random.default_rng(0)
    za = rng.normal(size=(300, 4))
    shift = np.where(np.arange(300) < 220, 0.2, 2.5)[:, None] * rng.normal(size=(300, 4)) / 2
    res = M.consistency_from_latents(za, za + shift, held_out=[str(i) for i in range(200, 300)])
    assert res.is_bimodal
    fig = pl.consistency(res, save=tmp_path / "cons.png")
    _png(tmp_path / "cons.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lab.startswith("low peak") for lab in labels)
    assert any(lab.startswith("high peak") for lab in labels)
    assert any(lab.startswith("split") for lab in labels)
    uni = M.consistency_from_latents(za, za + 0.3 * rng.normal(size=za.shape))
    fig = pl.consistency(uni)
    assert "unimodal" in fig.axes[0].get_title()
    with pytest.raises(SclibraError, match="nn_consistency"):
        pl.consistency(np.zeros(3))


def test_latent_umap_panels(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 6]).astype(np.float32)
    adata = ad.AnnData(np.zeros((80, 1), dtype=np.float32))
    adata.obs_names = [f"c{i}" for i in range(80)]
    adata.obsm["X_libra"] = x
    adata.obs["group"] = np.repeat(["g1", "g2"], 40)
    clusters = pd.Series(np.repeat(["0", "1"], 40), index=adata.obs_names)
    fig = pl.latent_umap(adata, ["group", clusters], save=tmp_path / "umap.png")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "group"
    _png(tmp_path / "umap.png")
    # precomputed coordinates skip the UMAP; arrays are matched by position
    fig = pl.latent_umap(x, np.repeat(["a", "b"], 40), coordinates=x[:, :2])
    assert len(fig.axes[0].collections) == 2
    with pytest.raises(SclibraError, match="79 values for 80 cells"):
        pl.latent_umap(x, np.zeros(79), coordinates=x[:, :2])
    with pytest.raises(SclibraError, match="not an obs column"):
        pl.latent_umap(adata, "nope", coordinates=x[:, :2])


def test_predicted_vs_measured(tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    truth = rng.poisson(2.0, size=(50, 6)).astype(np.float32)
    pred = truth + rng.normal(scale=0.5, size=truth.shape).astype(np.float32)
    names = [f"c{i}" for i in range(50)]
    genes = [f"g{j}" for j in range(6)]
    p = ad.AnnData(pred, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=genes))
    t = ad.AnnData(
        sp.csr_matrix(truth[::-1]),
        obs=pd.DataFrame(index=names[::-1]),
        var=pd.DataFrame(index=genes),
    )
    fig = pl.predicted_vs_measured(p, t, ["g2", "g5"], save=tmp_path / "pvm.png")
    _png(tmp_path / "pvm.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    r = np.corrcoef(pred[:, 2], truth[:, 2])[0, 1]
    assert titles[0] == f"g2  (r = {r:.2f})"  # cells were matched by name despite the order
    default = pl.predicted_vs_measured(pred, truth, n_features=3)
    assert sum(ax.axison for ax in default.axes) == 3
    with pytest.raises(SclibraError, match="'g9' is not among"):
        pl.predicted_vs_measured(p, t, ["g9"])


def test_predicted_vs_measured_refuses_cells_and_features_it_cannot_plot():
    import anndata as ad

    rng = np.random.default_rng(0)
    truth = rng.random((50, 3)).astype(np.float32)
    names = [f"c{i}" for i in range(50)]
    genes = ["g0", "g1", "g2"]
    t = ad.AnnData(truth, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=genes))
    p = t[:30].copy()  # predicted for the first 30 cells only
    # before: cells missing from the prediction were silently drawn from its last row
    with pytest.raises(SclibraError, match="5 cells are not in the prediction: 'c30'"):
        pl.predicted_vs_measured(p, t, cells=names[25:35])
    with pytest.raises(SclibraError, match="cells= needs cell names"):
        pl.predicted_vs_measured(p.X, truth[:30], cells=names[:5])  # before: ignored
    with pytest.raises(SclibraError, match="feature position 7 is out of range.*3 features"):
        pl.predicted_vs_measured(p, t, features=[7])  # before: IndexError
    with pytest.raises(SclibraError, match="n_features must be >= 1"):
        pl.predicted_vs_measured(p, t, n_features=0)  # before: ZeroDivisionError
    with pytest.raises(SclibraError, match="no feature to plot"):
        pl.predicted_vs_measured(p, t, features=[])


def test_save_figure_is_atomic_and_respects_overwrite(history, tmp_path):
    path = tmp_path / "sub" / "loss.png"
    fig = pl.loss(history)
    pl.save_figure(fig, path)
    with pytest.raises(SclibraError, match="already exists"):
        pl.save_figure(fig, path)
    with pytest.raises(SclibraError, match="already exists"):
        pl.loss(history, save=path)
    pl.loss(history, save=path, overwrite=True)
    assert [p.name for p in path.parent.iterdir()] == ["loss.png"]  # no temporary files left
    assert oct(path.stat().st_mode & 0o777) != "0o600"


def test_plots_render_without_a_display(tmp_path):
    code = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd
        from sclibra import pl
        h = pd.DataFrame({{"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0]}})
        pl.loss(h, save={str(tmp_path / "headless.png")!r})
        import matplotlib
        print(matplotlib.get_backend())
        """
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"
    _png(tmp_path / "headless.png")
