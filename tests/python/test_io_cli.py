"""Tests of sclibra.read (all supported formats) and the command-line interface."""

from __future__ import annotations

import gzip
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

import sclibra
from sclibra import SclibraError
from sclibra.cli import main


@pytest.fixture(scope="module")
def small(cite):
    """First 80 cells of the CITE-seq set, in memory."""
    rna, adt = cite
    return rna[:80].copy(), adt[:80].copy()


# ------------------------------------------------------------------------------------------------
# read
# ------------------------------------------------------------------------------------------------
def test_read_h5ad_and_backed(tmp_path, small):
    rna, _ = small
    rna.write_h5ad(tmp_path / "rna.h5ad")
    back = sclibra.read(tmp_path / "rna.h5ad")
    assert back.shape == rna.shape
    assert list(back.obs_names) == list(rna.obs_names)
    backed = sclibra.read(tmp_path / "rna.h5ad", backed=True)
    assert backed.isbacked
    backed.file.close()


def test_read_h5mu(tmp_path, small):
    md = pytest.importorskip("mudata")
    rna, adt = small
    md.MuData({"rna": rna, "adt": adt}).write_h5mu(tmp_path / "x.h5mu")
    m = sclibra.read(tmp_path / "x.h5mu")
    assert set(m.mod) == {"rna", "adt"}
    assert m.mod["adt"].shape == adt.shape


def test_read_csv_and_transpose(tmp_path, small):
    _, adt = small
    df = pd.DataFrame(adt.X.toarray(), index=adt.obs_names, columns=adt.var_names)
    df.to_csv(tmp_path / "adt.csv")
    a = sclibra.read(tmp_path / "adt.csv")
    assert list(a.obs_names) == list(adt.obs_names)
    assert list(a.var_names) == list(adt.var_names)
    np.testing.assert_allclose(a.X, df.to_numpy(), rtol=1e-6)
    df.T.to_csv(tmp_path / "adt_t.csv")
    assert sclibra.read(tmp_path / "adt_t.csv", transpose=True).shape == adt.shape


def test_read_mtx_with_names_and_10x_folder(tmp_path, small):
    rna, _ = small
    folder = tmp_path / "tenx"  # the Cell Ranger v3 layout: gzipped matrix, barcodes, features
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.csr_matrix(rna.layers["counts"]).T.tocoo())
    barcodes = pd.DataFrame({0: rna.obs_names})
    features = pd.DataFrame({0: rna.var["gene_ids"], 1: rna.var_names, 2: "Gene Expression"})
    for name, df in (("barcodes", barcodes), ("features", features)):
        df.to_csv(folder / f"{name}.tsv.gz", sep="\t", header=False, index=False)
    with open(folder / "matrix.mtx", "rb") as src, gzip.open(folder / "matrix.mtx.gz", "wb") as dst:
        dst.write(src.read())
    (folder / "matrix.mtx").rename(tmp_path / "matrix.mtx")
    for name, df in (("barcodes", barcodes), ("features", features)):
        df.to_csv(tmp_path / f"{name}.tsv", sep="\t", header=False, index=False)
    tenx = sclibra.read(folder)
    assert tenx.shape == rna.shape
    assert list(tenx.obs_names) == list(rna.obs_names)
    np.testing.assert_allclose(tenx.X.toarray(), rna.layers["counts"].toarray())
    plain = sclibra.read(tmp_path / "matrix.mtx", transpose=True)
    assert plain.shape == rna.shape
    assert list(plain.obs_names) == list(rna.obs_names)


def test_read_10x_h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    X = sp.random(5, 4, density=0.5, format="csc", random_state=0) * 10  # genes x cells
    X.data = np.round(X.data) + 1
    with h5py.File(tmp_path / "f.h5", "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array([b"c1", b"c2", b"c3", b"c4"])
        g["data"] = X.data.astype(np.int32)
        g["indices"] = X.indices
        g["indptr"] = X.indptr
        g["shape"] = np.array(X.shape)
        feat = g.create_group("features")
        feat["id"] = np.array([f"ENSG{i}".encode() for i in range(5)])
        feat["name"] = np.array([f"G{i}".encode() for i in range(5)])
        feat["feature_type"] = np.array([b"Gene Expression"] * 5)
        feat["genome"] = np.array([b"GRCh38"] * 5)
    a = sclibra.read(tmp_path / "f.h5")
    assert a.shape == (4, 5)
    assert list(a.obs_names) == ["c1", "c2", "c3", "c4"]


def test_read_errors(tmp_path):
    with pytest.raises(SclibraError, match="no such file"):
        sclibra.read(tmp_path / "absent.h5ad")
    (tmp_path / "x.xyz").write_text("1")
    with pytest.raises(SclibraError, match="unknown file type"):
        sclibra.read(tmp_path / "x.xyz")
    with pytest.raises(SclibraError, match="without matrix.mtx"):
        sclibra.read(tmp_path)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "sclibra.cli", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("train", "predict", "embed", "demo"):
        assert cmd in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "sclibra.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--input-a" in out.stdout
    assert "--n-layers" in out.stdout


def test_cli_train_predict_embed_end_to_end(tmp_path, small, capsys):
    rna, adt = small
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt.write_h5ad(tmp_path / "adt.h5ad")
    common = ["--quiet", "--seed", "1"]
    rc = main(
        ["train", "--input-a", str(tmp_path / "rna.h5ad"), "--input-b", str(tmp_path / "adt.h5ad"),
         "--out", str(tmp_path / "model"), "--n-nodes", "32", "--latent-dim", "4", "--max-epochs", "3",
         "--n-models", "1",
         "--train-key", "is_train", "--predictions", str(tmp_path / "train_pred.h5ad"), *common]
    )  # fmt: skip
    assert rc == 0
    model = sclibra.LIBRA.load(tmp_path / "model")
    assert model.latent_dim == 4
    assert model.n_epochs_ == 3
    assert main(["predict", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "rna.h5ad"),
                 "--out", str(tmp_path / "pred.h5ad"), *common]) == 0  # fmt: skip
    pred = ad.read_h5ad(tmp_path / "pred.h5ad")
    assert pred.shape == (80, 134)
    assert list(pred.var_names) == list(adt.var_names)
    np.testing.assert_allclose(pred.X, model.predict(rna).X, rtol=1e-5, atol=1e-6)
    assert main(["embed", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "rna.h5ad"),
                 "--out", str(tmp_path / "emb.h5ad"), "--key-added", "X_lib", *common]) == 0  # fmt: skip
    emb = ad.read_h5ad(tmp_path / "emb.h5ad")
    assert emb.obsm["X_lib"].shape == (80, 4)
    assert emb.n_vars == rna.n_vars  # the input is kept, latent added
    # refuses to overwrite, exit status 2 with a one-line message
    rc = main(["predict", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "rna.h5ad"),
               "--out", str(tmp_path / "pred.h5ad"), *common])  # fmt: skip
    assert rc == 2
    assert "already exists; use --overwrite" in capsys.readouterr().err


def test_cli_train_batch_key_validates_on_whole_batches(tmp_path, small, capsys):
    rna, adt = small
    rna.obs["donor"] = np.repeat(["d1", "d2", "d3", "d4"], 20)
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt.write_h5ad(tmp_path / "adt.h5ad")
    args = ["train", "--input-a", str(tmp_path / "rna.h5ad"), "--input-b", str(tmp_path / "adt.h5ad"),
            "--n-nodes", "32", "--latent-dim", "4", "--max-epochs", "2", "--n-models", "1",
            "--quiet", "--seed", "1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "model"), "--batch-key", "donor"]) == 0
    model = sclibra.LIBRA.load(tmp_path / "model")
    donors = rna.obs["donor"]
    assert len(set(donors[model.val_cells_])) == 1  # one whole donor
    assert not set(donors[model.val_cells_]) & set(donors[model.train_cells_])
    same = sclibra.LIBRA(n_nodes=32, latent_dim=4, n_models=1, seed=1)
    same.fit(rna, adt, batch_key="donor", max_epochs=2, progress=False)
    assert same.val_cells_.equals(model.val_cells_)
    assert main([*args, "--out", str(tmp_path / "bad"), "--batch-key", "nope"]) == 2
    err = capsys.readouterr().err
    assert "batch_key='nope': no such obs column" in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_cli_reports_input_errors(tmp_path, small, capsys):
    rna, adt = small
    other = adt.copy()
    other.obs_names = [f"x{i}" for i in range(other.n_obs)]
    rna.write_h5ad(tmp_path / "rna.h5ad")
    other.write_h5ad(tmp_path / "adt.h5ad")
    rc = main(["train", "--input-a", str(tmp_path / "rna.h5ad"), "--input-b", str(tmp_path / "adt.h5ad"),
               "--out", str(tmp_path / "model"), "--quiet"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "do not overlap" in err
    assert "Traceback" not in err
    assert not (tmp_path / "model").exists()


def test_cli_backed_batch_size_top_genes_b_and_embedding_b_only_cells(tmp_path, small, capsys):
    rna, adt = small
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt.write_h5ad(tmp_path / "adt.h5ad")
    common = ["--quiet", "--seed", "1"]
    model_dir = tmp_path / "model"
    train = ["train", "--input-a", str(tmp_path / "rna.h5ad"), "--input-b", str(tmp_path / "adt.h5ad"),
             "--n-nodes", "32", "--latent-dim", "4", "--max-epochs", "2", "--n-models", "1",
             *common]  # fmt: skip
    # files opened on disk train the model that the same files in memory train
    assert main([*train, "--out", str(tmp_path / "backed"), "--backed"]) == 0
    assert main([*train, "--out", str(tmp_path / "in_memory")]) == 0
    backed, in_memory = (sclibra.LIBRA.load(tmp_path / d) for d in ("backed", "in_memory"))
    np.testing.assert_allclose(
        backed.predict(rna).X, in_memory.predict(rna).X, rtol=1e-5, atol=1e-6
    )
    # feature selection needs the data in memory: a clear error, not a traceback
    assert main([*train, "--out", str(tmp_path / "no"), "--backed", "--n-top-genes-b", "40"]) == 2
    assert "needs in-memory data" in capsys.readouterr().err
    assert main([*train, "--out", str(model_dir), "--n-top-genes-b", "40"]) == 0
    model = sclibra.LIBRA.load(model_dir)
    assert len(model.features_b) == 40  # the 40 most variable proteins
    same = sclibra.LIBRA(n_nodes=32, latent_dim=4, n_models=1, seed=1)
    same.fit(rna, adt, n_top_genes_b=40, max_epochs=2, progress=False)
    assert list(same.features_b) == list(model.features_b)
    np.testing.assert_allclose(model.predict(rna).X, same.predict(rna).X, rtol=1e-5, atol=1e-6)
    # predict from a backed file, in batches of 7 cells: the same as in memory
    pred_path = tmp_path / "pred.h5ad"
    assert main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "rna.h5ad"),
                 "--out", str(pred_path), "--backed", "--batch-size", "7", *common]) == 0  # fmt: skip
    np.testing.assert_allclose(
        ad.read_h5ad(pred_path).X, model.predict(rna).X, rtol=1e-5, atol=1e-6
    )
    # cells measured in B only need the second network: refused without it, placed with it
    emb_args = ["embed", "--model", str(model_dir), "--input", str(tmp_path / "adt.h5ad"),
                "--from-b", *common]  # fmt: skip
    assert main([*emb_args, "--out", str(tmp_path / "b0.h5ad")]) == 2
    assert "no B encoder" in capsys.readouterr().err
    assert not (tmp_path / "b0.h5ad").exists()
    model.fit_b_encoder(rna, adt, max_epochs=2, progress=False)
    with_b = tmp_path / "with_b"
    model.save(with_b)
    emb_args[2] = str(with_b)
    assert main([*emb_args, "--out", str(tmp_path / "b.h5ad"), "--key-added", "X_b"]) == 0
    assert "(from ADT, second network)" in capsys.readouterr().out
    emb = ad.read_h5ad(tmp_path / "b.h5ad")
    np.testing.assert_allclose(emb.obsm["X_b"], model.get_latent_from_b(adt), rtol=1e-5, atol=1e-6)
    assert emb.uns["sclibra"]["X_b"]["modality"] == "b"
    # the same through sclibra.tl.libra; a bad modality is refused
    b_only = adt.copy()
    sclibra.tl.libra(b_only, model, modality="b", batch_size=11)
    np.testing.assert_allclose(b_only.obsm["X_libra"], emb.obsm["X_b"], rtol=1e-5, atol=1e-6)
    with pytest.raises(sclibra.SclibraError, match="modality must be 'a' or 'b'"):
        sclibra.tl.libra(adt.copy(), model, modality="B")
