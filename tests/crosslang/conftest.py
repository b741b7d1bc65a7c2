"""Cross-language harness: R runs inside this pytest process (rpy2), and the R package's
reticulate binds to this very Python, so both languages share one sclibra, one torch and one
set of objects.

Two things make that work:

* ``SCLIBRA_PYTHON`` / ``RETICULATE_PYTHON`` are set to ``sys.executable`` before R starts, so
  the R package cannot pick another interpreter.
* rpy2 calls R through cffi, which releases the GIL; reticulate 1.28 then calls the Python C
  API without it and Python aborts ("PyThreadState_Get: ... the GIL is released"). R code that
  may reach Python is therefore evaluated through ``R_tryEval`` called with :class:`ctypes.PyDLL`
  (which keeps the GIL held), see :class:`EmbeddedR`. rpy2 is used only for plain R values.

When ``CI=true``, a missing R, rpy2 or R package is a test failure, not a skip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

# Before rpy2 (and so R, and so reticulate) starts: this process's Python is the one to use.
os.environ["SCLIBRA_PYTHON"] = sys.executable
os.environ["RETICULATE_PYTHON"] = sys.executable
os.environ.setdefault("MPLBACKEND", "Agg")

import sclibra  # noqa: E402

sclibra.settings.progress = False
sclibra.settings.verbosity = "warning"

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

#: tiny architecture shared by both languages (Python names; R names in R_ARGS)
ARCH = dict(n_layers=2, n_nodes=32, latent_dim=6, alpha=0.3, dropout=0.1, batch_size=64, seed=11)
FIT = dict(max_epochs=4, validation_split=0.1, early_stopping_patience=20)
R_ARGS = (
    "n.layers = 2, n.nodes = 32, latent.dim = 6, alpha = 0.3, dropout = 0.1, batch.size = 64, "
    "seed = 11, max.epochs = 4, validation.split = 0.1, early.stopping.patience = 20, "
    "verbose = FALSE"
)


def unavailable(reason: str):
    """Skip, or fail under CI=true: CI must run these tests for real."""
    if IN_CI:
        pytest.fail(f"cross-language tests cannot run (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def _r_home() -> str:
    import subprocess

    home = os.environ.get("R_HOME")
    if home:
        return home
    return subprocess.run(["R", "RHOME"], capture_output=True, text=True, check=True).stdout.strip()


def r_library_dirs() -> list[str]:
    """Where the R package is looked for: SCLIBRA_R_LIB, R_LIBS_USER, then <repo>/.Rlib."""
    dirs = [os.environ.get("SCLIBRA_R_LIB", ""), os.environ.get("R_LIBS_USER", "")]
    dirs.append(str(ROOT / ".Rlib"))
    return [d for d in dict.fromkeys(dirs) if d and Path(d).is_dir()]


class RError(Exception):
    """An R error, with the condition's classes and, for core errors, the Python fields."""

    def __init__(self, message, classes, python_type=None, python_message=None):
        super().__init__(message)
        self.message = message
        self.classes = list(classes)
        self.python_type = python_type
        self.python_message = python_message


# Python objects handed between the languages: R reads and writes this module's dict through
# reticulate (xl_get() / xl_put() in R), Python through EmbeddedR.put() / EmbeddedR.get().
HANDOFF = types.ModuleType("sclibra_crosslang_handoff")
HANDOFF.objects = {}
sys.modules[HANDOFF.__name__] = HANDOFF

# Defined once (through R_tryEval, GIL held). .xl_run() evaluates .xl_code and hands the value,
# or the error, back through reticulate: R values reach Python the way the package's own
# results do, and no R code ever runs while the GIL is released.
_R_PRELUDE = r"""
xl_handoff <- function() reticulate::import("sclibra_crosslang_handoff", convert = FALSE)$objects
xl_get <- function(name) reticulate::py_get_item(xl_handoff(), name)
xl_put <- function(name, value) {
  reticulate::py_set_item(xl_handoff(), name, reticulate::r_to_py(value))
  invisible(NULL)
}
.xl_run <- function() {
  out <- tryCatch(
    list(value = withVisible(eval(parse(text = .xl_code, encoding = "UTF-8"), globalenv()))$value),
    error = function(e) list(error = e)
  )
  if (!is.null(out$error)) {
    e <- out$error
    xl_put(".error", list(
      message = conditionMessage(e), class = as.list(class(e)),
      python_type = e$python_type, python_message = e$python_message
    ))
    return(invisible(NULL))
  }
  v <- out$value
  plain <- is.null(v) || is.atomic(v) || inherits(v, "python.builtin.object") ||
    (is.list(v) && !is.object(v))
  xl_put(".value", if (plain) v else NULL)
  invisible(NULL)
}
"""


class EmbeddedR:
    """R in this process. ``r("code")`` evaluates R code (which may call Python) with the GIL
    held and returns its value converted by reticulate (``None`` for objects such as Seurat);
    R errors become :class:`RError`. rpy2 only starts R."""

    def __init__(self, lib_dirs: list[str]):
        import rpy2.rinterface as ri

        ri.initr()
        # rpy2's event callback has nothing to do here, and R may still call it while Python
        # shuts down (after rpy2's module globals are gone): R then skips the call
        from rpy2.rinterface_lib import openrlib

        openrlib.rlib.ptr_R_ProcessEvents = openrlib.ffi.NULL
        lib = ctypes.PyDLL(os.path.join(_r_home(), "lib", "libR.so"))
        vp = ctypes.c_void_p
        for name, restype, argtypes in (
            ("Rf_install", vp, [ctypes.c_char_p]),
            ("Rf_lang1", vp, [vp]),
            ("Rf_protect", vp, [vp]),
            ("Rf_unprotect", None, [ctypes.c_int]),
            ("Rf_mkCharLenCE", vp, [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]),
            ("Rf_ScalarString", vp, [vp]),
            ("Rf_defineVar", None, [vp, vp, vp]),
            ("R_ParseEvalString", vp, [ctypes.c_char_p, vp]),
            ("R_tryEval", vp, [vp, vp, ctypes.POINTER(ctypes.c_int)]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self._lib = lib
        self._globalenv = vp.in_dll(lib, "R_GlobalEnv")
        self._raw("loadNamespace('reticulate')")  # binds to this process's Python (see module doc)
        self._define(".xl_code", _R_PRELUDE)
        self._raw("eval(parse(text = .xl_code), globalenv())")
        self._define(".xl_libs", "\x1f".join(lib_dirs))
        self(
            "suppressPackageStartupMessages(library(sclibra, "
            "lib.loc = c(Filter(nzchar, strsplit(.xl_libs, '\x1f')[[1]]), .libPaths())))"
        )

    def _define(self, name: str, text: str) -> None:
        """Assign a UTF-8 string to a variable of R's global environment."""
        lib = self._lib
        raw = text.encode("utf-8")
        value = lib.Rf_protect(lib.Rf_ScalarString(lib.Rf_mkCharLenCE(raw, len(raw), 1)))
        try:
            lib.Rf_defineVar(lib.Rf_install(name.encode()), value, self._globalenv)
        finally:
            lib.Rf_unprotect(1)

    def _try_eval(self, call) -> bool:
        """Evaluate an R call (protected here) in the global environment; False on an R error
        that escaped (R_tryEval catches it instead of jumping over Python frames)."""
        lib = self._lib
        call = lib.Rf_protect(call)
        failed = ctypes.c_int(0)
        try:
            lib.R_tryEval(call, self._globalenv, ctypes.byref(failed))
        finally:
            lib.Rf_unprotect(1)
        return not failed.value

    def _raw(self, code: str) -> None:
        """Evaluate R code whose errors cannot be reported through reticulate yet."""
        self._define(".xl_raw", code)
        call = self._lib.R_ParseEvalString(
            b"quote(eval(parse(text = .xl_raw), globalenv()))", self._globalenv
        )
        if not self._try_eval(call):
            raise RError(f"R failed to evaluate: {code}", ["abort"])

    def __call__(self, code: str):
        HANDOFF.objects.pop(".value", None)
        HANDOFF.objects.pop(".error", None)
        self._define(".xl_code", code)
        if not self._try_eval(self._lib.Rf_lang1(self._lib.Rf_install(b".xl_run"))):
            raise RError("R evaluation was aborted", ["abort"])
        err = HANDOFF.objects.pop(".error", None)
        if err is not None:
            classes = err["class"]
            raise RError(
                err["message"],
                [classes] if isinstance(classes, str) else classes,
                python_type=err.get("python_type"),
                python_message=err.get("python_message"),
            )
        return HANDOFF.objects.pop(".value", None)

    # --- values (copied: reticulate's arrays may share R's memory) ---------------------------
    def strings(self, code: str) -> list[str]:
        return [str(v) for v in self(f"as.list(as.character({code}))")]

    def numbers(self, code: str) -> np.ndarray:
        return np.array(self(f"array(as.double({code}))"), dtype=np.float64).reshape(-1)

    def scalar(self, code: str):
        return self(code)

    def matrix(self, code: str) -> tuple[np.ndarray, list[str], list[str]]:
        """A dense R matrix (as.matrix) with its row and column names."""
        out = self(
            f"local({{ m <- as.matrix({code}); storage.mode(m) <- 'double'; "
            "list(values = m, rows = as.list(rownames(m)), cols = as.list(colnames(m))) })"
        )
        values = np.array(out["values"], dtype=np.float64)
        return values, [str(v) for v in out["rows"]], [str(v) for v in out["cols"]]

    def dgc(self, code: str) -> tuple[sp.csc_matrix, list[str], list[str]]:
        """An R dgCMatrix as scipy CSC (from its own slots), with its row and column names."""
        out = self(
            f"local({{ s <- {code}; stopifnot(inherits(s, 'dgCMatrix')); "
            "list(x = array(s@x), i = array(s@i), p = array(s@p), dim = as.list(dim(s)), "
            "rows = as.list(rownames(s)), cols = as.list(colnames(s))) })"
        )
        m = sp.csc_matrix(
            (np.array(out["x"], dtype=np.float64), np.array(out["i"]), np.array(out["p"])),
            shape=tuple(int(d) for d in out["dim"]),
        )
        return m, [str(v) for v in out["rows"]], [str(v) for v in out["cols"]]

    def assign_matrix(self, name: str, values, rows=None, cols=None) -> None:
        """Copy a dense numpy array into R as the matrix ``name`` (with dimnames)."""
        HANDOFF.objects[".in"] = np.asarray(values, dtype=np.float64)
        HANDOFF.objects[".rows"] = None if rows is None else [str(v) for v in rows]
        HANDOFF.objects[".cols"] = None if cols is None else [str(v) for v in cols]
        self(
            f"{name} <- reticulate::py_to_r(xl_get('.in')); "
            f"dimnames({name}) <- list(unlist(reticulate::py_to_r(xl_get('.rows'))), "
            "unlist(reticulate::py_to_r(xl_get('.cols')))); NULL"
        )

    def assign_strings(self, name: str, values, names=None) -> None:
        """Copy strings into R as the character vector ``name`` (optionally named)."""
        HANDOFF.objects[".in"] = [str(v) for v in values]
        HANDOFF.objects[".rows"] = None if names is None else [str(v) for v in names]
        self(
            f"{name} <- as.character(unlist(reticulate::py_to_r(xl_get('.in')))); "
            f"names({name}) <- unlist(reticulate::py_to_r(xl_get('.rows'))); NULL"
        )

    # --- Python objects across the boundary ------------------------------------------------
    def put(self, name: str, value) -> None:
        """Make a Python object available to R code as ``xl_get("name")``."""
        HANDOFF.objects[name] = value

    def get(self, name: str):
        """A Python object R stored with ``xl_put("name", value)``."""
        return HANDOFF.objects[name]


def _check_not_stale(session: EmbeddedR) -> None:
    """Fail when the installed R package is older than the R sources of this checkout."""
    built = session.scalar(
        'as.numeric(file.mtime(system.file("Meta", "package.rds", package = "sclibra")))'
    )
    sources = [ROOT / "DESCRIPTION", ROOT / "NAMESPACE", *sorted((ROOT / "R").glob("*.R"))]
    newer = [p.name for p in sources if p.exists() and p.stat().st_mtime > built + 1]
    if newer:
        where = session.scalar('system.file(package = "sclibra")')
        pytest.fail(
            f"the installed R package sclibra ({where}) is older than {', '.join(newer)}; reinstall it (`make test-r` or "
            "`R CMD INSTALL -l .Rlib .`)",
            pytrace=False,
        )


def pytest_configure(config):
    # reticulate 1.28 converts pandas indexes with the deprecated Index.format()
    config.addinivalue_line("filterwarnings", "ignore:Index.format is deprecated:FutureWarning")


@pytest.fixture(scope="session")
def r():
    """The embedded R session with the sclibra R package attached."""
    if shutil.which("R") is None and not os.environ.get("R_HOME"):
        unavailable("R is not installed (no `R` on PATH, no R_HOME)")
    try:
        import rpy2  # noqa: F401
    except ImportError as e:
        unavailable(f"rpy2 is not installed ({e}); pip install 'rpy2>=3.5,<3.6'")
    dirs = r_library_dirs()
    try:
        session = EmbeddedR(dirs)
    except RError as e:
        unavailable(
            f"the R package sclibra cannot be attached ({e.message.strip()}); install it with "
            f"`R CMD INSTALL -l .Rlib .` (looked in {dirs or 'the default R libraries'})"
        )
    missing = session.strings(
        'Filter(function(p) !requireNamespace(p, quietly = TRUE), c("Seurat", "SeuratObject", '
        '"SingleCellExperiment", "SummarizedExperiment", "S4Vectors", "reticulate"))'
    )
    if missing:
        unavailable(f"R packages missing: {', '.join(missing)}")
    if not session.scalar("sclibra_available(verbose = TRUE)"):
        unavailable("the R package cannot use the Python core (see the message above)")
    _check_not_stale(session)
    python = session.scalar("reticulate::py_config()$python")
    assert os.path.realpath(python) == os.path.realpath(sys.executable), (
        f"R's reticulate uses {python}, not this process's Python {sys.executable}"
    )
    yield session
    # free R's references to Python objects while the GIL is held
    session('rm(list = setdiff(ls(), c("xl_handoff", "xl_get", "xl_put"))); invisible(gc())')
    HANDOFF.objects.clear()


@pytest.fixture(autouse=True)
def _clean_handoff(request):
    yield
    if "r" in request.fixturenames:
        HANDOFF.objects.clear()


@pytest.fixture(scope="session")
def cite():
    """(rna, adt) bundled bone-marrow CITE-seq, 600 cells."""
    return sclibra.datasets.bmmc_cite()


@pytest.fixture(scope="session")
def multiome():
    """(rna, atac) bundled bone-marrow Multiome, 500 cells."""
    return sclibra.datasets.bmmc_multiome()


@pytest.fixture(scope="session")
def r_cite(r):
    """The same CITE-seq data in R: a Seurat object ``seu_cite`` (from LIBRAExampleData)."""
    r('seu_cite <- LIBRAExampleData("cite"); NULL')
    return "seu_cite"


@pytest.fixture(scope="session")
def cite_model(cite):
    """A small RNA -> ADT model trained in Python on the training donor."""
    rna, adt = cite
    return sclibra.LIBRA(**ARCH).fit(rna, adt, train="is_train", progress=False, **FIT)
