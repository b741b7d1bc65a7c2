"""An error raised in the core surfaces in R with the same message (as a classed R condition,
not a Python traceback)."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import ARCH, R_ARGS, RError

import sclibra


def _r_error(r, code: str) -> RError:
    with pytest.raises(RError) as info:
        r(code)
    err = info.value
    assert "sclibra_error" in err.classes
    assert "Traceback" not in err.message
    assert 'File "' not in err.message
    return err


def _in_r_syntax(message: str) -> str:
    """The core's advice as R shows it: `overwrite=True` reads `overwrite = TRUE`."""
    values = {"True": "TRUE", "False": "FALSE", "None": "NULL"}
    return re.sub(
        r"\b([a-z][a-z0-9_]*)=(True|False|None)\b",
        lambda m: f"{m.group(1).replace('_', '.')} = {values[m.group(2)]}",
        message,
    )


def _assert_surfaces(err: RError, exc: Exception) -> None:
    """The R condition carries the core's exception: same type, same message (its advice in
    R syntax in the text, verbatim in the python_message field)."""
    assert "sclibra_python_error" in err.classes
    assert err.python_type == type(exc).__name__
    assert err.python_message == str(exc)
    assert _in_r_syntax(str(exc)) in err.message


def _first_clause(message: str) -> str:
    """'Cells in A and B do not overlap (no ...' -> 'cells in a and b do not overlap'."""
    return re.split(r"[(.;:]", message, maxsplit=1)[0].strip().lower()


def test_no_shared_cells_same_message(r):
    """The modalities share no cell: R and Python say the same thing."""
    x = sp.csr_matrix(np.eye(4, 3, dtype=np.float64) + 0.5)

    def adata(cells, kind):
        var = pd.DataFrame({"feature_types": kind}, index=[f"{kind}{i}" for i in range(3)])
        return ad.AnnData(X=x, obs=pd.DataFrame(index=cells), var=var)

    with pytest.raises(sclibra.SclibraError) as info:
        sclibra.LIBRA(**ARCH).fit(
            adata(["a", "b", "c", "d"], "input"), adata(["w", "x", "y", "z"], "output")
        )
    r.assign_matrix("x_in", x.toarray().T, rows=["input0", "input1", "input2"], cols="abcd")
    r.assign_matrix("x_out", x.toarray().T, rows=["output0", "output1", "output2"], cols="wxyz")
    err = _r_error(r, f"RunLIBRA(x_in, x_out, {R_ARGS})")
    assert "sclibra_no_shared_cells" in err.classes
    py_msg = str(info.value)
    assert _first_clause(py_msg) == "cells in input and output do not overlap"
    assert _first_clause(err.message) == _first_clause(py_msg)
    assert "no shared cell names" in err.message
    assert "no shared cell names" in py_msg


def test_training_error_from_the_core_surfaces(r, cite, r_cite):
    """An argument only the core checks (passed through ... with its Python name)."""
    rna, adt = cite
    with pytest.raises(sclibra.SclibraError) as info:
        sclibra.LIBRA(**ARCH).fit(rna, adt, lr_patience=-1, progress=False)
    err = _r_error(
        r,
        f'RunLIBRA({r_cite}, input.assay = "RNA", output.assay = "ADT", lr_patience = -1, '
        f"{R_ARGS})",
    )
    _assert_surfaces(err, info.value)
    assert "lr_patience" in err.message


def test_save_refuses_to_overwrite_same_message(r, cite_model, tmp_path):
    path = tmp_path / "taken"
    path.mkdir()
    (path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError) as info:
        cite_model.save(path)
    cite_model.save(tmp_path / "source")
    err = _r_error(r, f'SaveLIBRA(LoadLIBRA("{tmp_path / "source"}"), "{path}")')
    _assert_surfaces(err, info.value)
    assert "overwrite = TRUE" in err.message
    assert "overwrite=True" not in err.message
    assert (path / "keep.txt").read_text() == "user data"  # nothing was lost


def test_load_of_a_non_model_same_message(r, tmp_path):
    path = tmp_path / "not_a_model"
    path.mkdir()
    (path / "config.json").write_text("{}")
    with pytest.raises(sclibra.SclibraError) as info:
        sclibra.LIBRA.load(path)
    err = _r_error(r, f'LoadLIBRA("{path}")')
    _assert_surfaces(err, info.value)
    assert "not a saved LIBRA model" in err.message
