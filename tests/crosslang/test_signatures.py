"""R restates no default of the core: every formal of an R method that is a core argument
defaults to NULL ("the core's default") or to exactly the core's value, and every core
argument can be given from R (as a formal or through ``...``)."""

from __future__ import annotations

import inspect

import pytest

import sclibra
from sclibra.metrics import nn_consistency

# R method -> the core functions whose arguments it passes on
METHODS = {
    "RunLIBRA.default": [sclibra.LIBRA.__init__, sclibra.LIBRA.fit],
    "RunLIBRA.Seurat": [sclibra.LIBRA.__init__, sclibra.LIBRA.fit],
    "RunLIBRA.SingleCellExperiment": [sclibra.LIBRA.__init__, sclibra.LIBRA.fit],
    "TuneLIBRA.default": [sclibra.tune],
    "TuneLIBRA.Seurat": [sclibra.tune],
    "TuneLIBRA.SingleCellExperiment": [sclibra.tune],
    "LIBRAEvaluate.default": [sclibra.evaluate],
    "LIBRAEvaluate.Seurat": [sclibra.evaluate],
    "LIBRAEvaluate.SingleCellExperiment": [sclibra.evaluate],
    "LIBRAConsistency.default": [nn_consistency],
}

# Formals whose meaning differs from the core argument of the same name, so the core's default
# does not apply: R's `verbose` drives R's messages; `model` and `labels` are R objects.
NOT_CORE = {"verbose", "model", "labels"}
# `max.epochs` of LIBRAEvaluate and LIBRAConsistency is the second network's epoch limit (sent
# in fit_kwargs), not an argument of evaluate() / nn_consistency() themselves.
SECOND_NETWORK = {"max_epochs"}

# R evaluates each formal's default: NULL, a constant, or "<missing>" for a required argument
R_DEFAULTS = """
lapply(formals(sclibra:::{method}), function(x) {{
  if (is.symbol(x) && identical(as.character(x), "")) return("<missing>")
  if (is.null(x)) return("<NULL>")
  v <- eval(x, baseenv())
  if (length(v) > 1L) as.list(v) else v
}})
"""


def _python_defaults(fns) -> dict:
    out = {}
    for fn in fns:
        for p in inspect.signature(fn).parameters.values():
            if p.default is not p.empty:
                out[p.name] = p.default
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_r_defaults_are_null_or_the_core_default(r, method):
    r_defaults = r(R_DEFAULTS.format(method=method))
    core = _python_defaults(METHODS[method])
    checked = 0
    for name, value in r_defaults.items():
        py_name = name.replace(".", "_")
        if py_name not in core or py_name in NOT_CORE:
            continue
        if py_name in SECOND_NETWORK and method.startswith(("LIBRAEvaluate", "LIBRAConsistency")):
            continue
        checked += 1
        if value == "<NULL>":
            continue
        expected = core[py_name]
        if isinstance(expected, tuple):
            expected = list(expected)
        assert value == expected, (
            f"{method}: R default {name} = {value!r} differs from the core's {py_name} = "
            f"{expected!r}; make it NULL (the core's default)"
        )
    assert checked > 0, f"{method}: no formal matched a core argument"


def test_training_formals_are_core_arguments(r):
    """Every R formal declared as a core argument exists in the core (a renamed or removed
    Python argument fails here, not in a user's session)."""
    core = set(inspect.signature(sclibra.LIBRA.__init__).parameters) | set(
        inspect.signature(sclibra.LIBRA.fit).parameters
    )
    for name in r.strings("sclibra:::.train_formals"):
        assert name.replace(".", "_") in core, name
    tune = set(inspect.signature(sclibra.tune).parameters)
    for name in r.strings("sclibra:::.tune_formals"):
        assert name.replace(".", "_") in tune, name


def test_every_core_argument_reaches_the_core_from_r(r):
    """A core argument R has no formal for passes through `...` (R or Python spelling), so a new
    hyperparameter needs no R edit; an unknown one is an error naming it."""
    fit_only = [
        n
        for n in inspect.signature(sclibra.LIBRA.fit).parameters
        if n not in {"self", "a", "b", "mod_a", "mod_b", "layer_a", "layer_b", "obsm_a", "obsm_b"}
        and n not in {"train", "progress", "callback"}
    ]
    assert "lr_patience" in fit_only
    got = r(
        "base::names(sclibra:::.core_args(list(lr.patience = 3, min_lr = 1e-4), c('model', 'fit'), "
        "'RunLIBRA', reserved = sclibra:::.fit_reserved)$fit)"
    )
    assert sorted(got) == ["lr_patience", "min_lr"]
    assert set(r.strings("sclibra:::.core_arguments('fit')")) == set(
        inspect.signature(sclibra.LIBRA.fit).parameters
    ) - {"self"}
