"""PPJI and the evaluation table agree between R (PPJI(), LIBRAEvaluate()) and Python
(sclibra.metrics.ppji / cluster_latent, sclibra.evaluate) on the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sclibra
from sclibra import metrics


@pytest.fixture(scope="module")
def latent(cite, cite_model):
    rna, _ = cite
    return cite_model.get_latent(rna)


def test_ppji_of_labels_agrees(r, cite, latent):
    """Given the same two partitions, R and Python compute the same PPJI."""
    rna, _ = cite
    cells = list(rna.obs_names)
    reference = rna.obs["cell_type"].astype(str)
    query = metrics.cluster_latent(latent, cells=cells, seed=0)
    expected = metrics.ppji(reference, query)
    r.assign_strings("ref", reference, names=cells)
    r.assign_strings("query", query.astype(str), names=cells)
    got = r.scalar("PPJI(query, reference = ref)")
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1
    # a partition against itself is perfectly preserved, in both languages
    assert r.scalar("PPJI(ref, reference = ref)") == pytest.approx(1.0)
    assert metrics.ppji(reference, reference) == pytest.approx(1.0)
    # on a subset of cells (the held-out donor)
    held = list(rna.obs_names[~rna.obs["is_train"].to_numpy()])
    r.assign_strings("held", held)
    got = r.scalar("PPJI(query, reference = ref, cells = held)")
    assert got == pytest.approx(metrics.ppji(reference, query, cells=held), abs=1e-12)


def test_ppji_of_an_embedding_agrees(r, cite, latent):
    """R clusters an embedding exactly as Python does: same clusters, Jaccard matrix, PPJI."""
    rna, _ = cite
    cells = list(rna.obs_names)
    reference = rna.obs["cell_type"].astype(str)
    clusters = metrics.cluster_latent(latent, cells=cells, n_neighbors=10, resolution=1.0, seed=0)
    value, jac = metrics.ppji(reference, clusters, return_matrix=True)

    r.assign_matrix(
        "emb", latent, rows=cells, cols=[f"LIBRA_{i + 1}" for i in range(latent.shape[1])]
    )
    r.assign_strings("ref", reference, names=cells)
    r(
        "res <- PPJI(emb, reference = ref, n.neighbors = 10, resolution = 1, seed = 0, details = TRUE); NULL"
    )
    assert r.scalar("res$ppji") == pytest.approx(value, abs=1e-12)
    assert r.strings("names(res$clusters)") == cells
    assert r.strings("res$clusters") == list(clusters.astype(str))
    r_jac, rows, cols = r.matrix("res$jaccard")
    assert rows == [str(v) for v in jac.index]
    assert cols == [str(v) for v in jac.columns]
    np.testing.assert_allclose(r_jac, jac.to_numpy(dtype=float), atol=1e-12)
    # R's defaults are the core's defaults (k = 10, resolution 1, seed 0)
    assert r.scalar("PPJI(emb, reference = ref)") == pytest.approx(value, abs=1e-12)


@pytest.fixture(scope="module")
def eval_tables(r, cite, r_cite, cite_model, tmp_path_factory):
    """The evaluation table of one model on the same data: (Python's, R's)."""
    rna, adt = cite
    expected = sclibra.evaluate(
        cite_model,
        rna,
        adt,
        labels="cell_type",
        consistency=False,
        seed=0,
        plots=False,
        progress=False,
    )
    path = tmp_path_factory.mktemp("eval") / "model"
    cite_model.save(path)
    r(
        f'tab <- LIBRAEvaluate({r_cite}, model = LoadLIBRA("{path}"), labels = "cell_type", '
        "consistency = FALSE, seed = 0, verbose = FALSE); NULL"
    )
    assert set(expected.columns) <= set(r.strings("colnames(tab)"))
    got = pd.DataFrame(
        {
            "metric": r.strings("tab$metric"),
            "split": r.strings("tab$split"),
            "method": r.strings("tab$method"),
            "reference": r.strings("ifelse(is.na(tab$reference), '', tab$reference)"),
            "value": r.numbers("tab$value"),
            "n_cells": r.numbers("tab$n_cells"),
        }
    )
    return expected.assign(reference=expected["reference"].fillna("").astype(str)), got


KEY = ["metric", "split", "method", "reference"]


def _merge(want: pd.DataFrame, got: pd.DataFrame) -> pd.DataFrame:
    assert len(got) == len(want)
    merged = want.merge(got, on=KEY, how="outer", suffixes=("_py", "_r"), indicator=True)
    unmatched = merged.loc[merged["_merge"] != "both", [*KEY, "_merge"]]
    assert unmatched.empty, unmatched.to_string()
    return merged


def test_evaluation_table_values_agree(eval_tables):
    """LIBRAEvaluate() on a Seurat object returns the values sclibra.evaluate() returns, row
    for row (the label column's name is compared in the next test)."""

    def unnamed(df):  # 'labels:cell_type' -> 'labels'
        return df.assign(
            reference=df["reference"].str.replace(r"^labels:.*$", "labels", regex=True)
        )

    want, got = eval_tables
    merged = _merge(unnamed(want), unnamed(got))
    np.testing.assert_allclose(
        merged["value_r"].to_numpy(float), merged["value_py"].to_numpy(float), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(
        merged["n_cells_r"].to_numpy(float), merged["n_cells_py"].to_numpy(float)
    )
    # the table holds what the vignettes report: held-out RMSE of LIBRA and the baselines
    rmse = merged.query("metric == 'rmse' and split == 'held_out'")
    assert {"libra", "baseline_mean", "baseline_knn", "baseline_ridge"} <= set(rmse["method"])
    assert (merged.query("metric == 'ppji'")["value_r"].between(0, 1)).all()


def test_evaluation_table_names_the_labels_like_python(eval_tables):
    want, got = eval_tables
    _merge(want, got)
