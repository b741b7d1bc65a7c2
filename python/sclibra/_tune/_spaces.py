"""Search spaces for aLIBRA: published presets, custom grids and sampled distributions."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sclibra._errors import SclibraError
from sclibra._recipe import RECIPE, RECIPE_ARGS

#: Hyperparameters passed to :class:`sclibra.LIBRA` (the architecture and its optimiser) that
#: may be searched: those the recipe declares ``searchable`` (:data:`sclibra._recipe.RECIPE`).
MODEL_PARAMS = tuple(a.name for a in RECIPE if a.searchable and a.stage == "model")
#: Training options passed to :meth:`sclibra.LIBRA.fit` that may also be searched.
FIT_PARAMS = tuple(a.name for a in RECIPE if a.searchable and a.stage == "fit")
SEARCHABLE = MODEL_PARAMS + FIT_PARAMS

#: The published aLIBRA grids (Martinez-de-Morentin et al., Quant. Biol. 2023).
SEARCH_SPACES: dict[str, dict[str, list]] = {
    "default": {
        "n_layers": [2],
        "n_nodes": [512],
        "alpha": [0.3],
        "dropout": [0.2],
        "batch_size": [7000],
        "latent_dim": [10],
    },
    "prediction": {
        "n_layers": [1, 2],
        "n_nodes": [64, 128, 256, 512],
        "alpha": [0.1, 0.3, 0.5],
        "dropout": [0.1, 0.2],
        "batch_size": [32, 64, 128, 7000],
        "latent_dim": [10, 30, 50, 70, 100],
    },
    "integration": {
        "n_layers": [1, 2, 3, 4, 5, 6],
        "n_nodes": [256, 512, 1024, 2048],
        "alpha": [0.1, 0.3, 0.5],
        "dropout": [0.1, 0.2, 0.3, 0.4],
        "batch_size": [7000],
        "latent_dim": [10, 30, 50, 70],
    },
}


class Distribution:
    """Base class of sampled search dimensions (see :func:`uniform`, :func:`loguniform`, ...)."""

    def sample(self, rng: np.random.Generator) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        d = self.describe()
        args = ", ".join(f"{k}={v!r}" for k, v in d.items() if k != "type")
        return f"{d['type']}({args})"


class _Uniform(Distribution):
    def __init__(self, low: float, high: float, log: bool = False, integer: bool = False):
        low, high = float(low), float(high)
        if not high > low:
            raise SclibraError(f"a search range needs low < high, got low={low}, high={high}")
        if log and low <= 0:
            raise SclibraError(f"a log-uniform range needs low > 0, got low={low}")
        self.low, self.high, self.log, self.integer = low, high, log, integer

    def sample(self, rng):
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        if self.integer:
            return int(min(max(round(v), math.ceil(self.low)), math.floor(self.high)))
        return float(v)

    def describe(self):
        name = ("log" if self.log else "") + ("randint" if self.integer else "uniform")
        return {"type": name, "low": self.low, "high": self.high}


class _Choice(Distribution):
    def __init__(self, values: Sequence):
        values = list(values)
        if not values:
            raise SclibraError("choice() needs at least one value")
        self.values = values

    def sample(self, rng):
        return _plain(self.values[int(rng.integers(len(self.values)))])

    def describe(self):
        return {"type": "choice", "values": [_plain(v) for v in self.values]}


def uniform(low: float, high: float) -> Distribution:
    """Sample a float uniformly in ``[low, high]``."""
    return _Uniform(low, high)


def loguniform(low: float, high: float) -> Distribution:
    """Sample a float log-uniformly in ``[low, high]`` (e.g. a learning rate)."""
    return _Uniform(low, high, log=True)


def randint(low: int, high: int, log: bool = False) -> Distribution:
    """Sample an integer in ``[low, high]`` (both included), optionally on a log scale."""
    return _Uniform(low, high, log=log, integer=True)


def choice(values: Sequence) -> Distribution:
    """Sample one of ``values`` with equal probability (a categorical dimension for random search)."""
    return _Choice(values)


def _plain(v: Any) -> Any:
    """Convert numpy scalars to plain Python values (JSON-serialisable)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _check_dimension(key: str, dim) -> None:
    """Every value a search dimension can take is within the recipe's bounds for ``key``.

    Checked when the space is built, so a bad value fails before any trial runs. A scipy
    distribution is not checked (its support is its own).
    """
    arg = RECIPE_ARGS[key]
    what = f"search space: {key}"
    if isinstance(dim, list):
        values = dim
    elif isinstance(dim, _Choice):
        values = dim.values
    elif isinstance(dim, _Uniform):
        if arg.kind is int and not dim.integer:
            raise SclibraError(f"{what} takes integers: use randint() or choice(), not {dim!r}")
        if arg.kind not in (int, float):
            raise SclibraError(f"{what} takes {arg.kind.__name__} values: use choice() or a list")
        values = (
            [math.ceil(dim.low), math.floor(dim.high)] if arg.kind is int else [dim.low, dim.high]
        )
    else:
        return
    for v in values:
        arg.check(v, what)


class SearchSpace:
    """A validated search space: each hyperparameter maps to a list of values or a distribution.

    Parameters
    ----------
    space
        Name of a preset in :data:`SEARCH_SPACES` or a mapping ``{name: values}``. Values are a list
        (or tuple, :class:`range`, numpy array) of candidates, a single scalar (fixed), or a
        distribution from :func:`uniform`, :func:`loguniform`, :func:`randint`, :func:`choice`.
        A two-element tuple of numbers ``(low, high)`` is *not* treated as a range: use
        :func:`uniform` to be explicit.
    """

    def __init__(self, space: str | Mapping[str, Any]):
        if isinstance(space, SearchSpace):
            self.name, self.dims = space.name, dict(space.dims)
            return
        if isinstance(space, str):
            if space not in SEARCH_SPACES:
                raise SclibraError(
                    f"unknown search space {space!r}; presets are {sorted(SEARCH_SPACES)} "
                    "or pass a dict of lists/distributions"
                )
            self.name = space
            space = SEARCH_SPACES[space]
        elif isinstance(space, Mapping):
            self.name = "custom"
        else:
            raise SclibraError(f"grid must be a preset name or a dict, got {type(space).__name__}")
        if not space:
            raise SclibraError("the search space is empty")
        dims: dict[str, list | Distribution] = {}
        for key, values in space.items():
            if key not in SEARCHABLE:
                raise SclibraError(
                    f"unknown hyperparameter {key!r} in the search space; searchable are "
                    f"{', '.join(SEARCHABLE)}"
                )
            if isinstance(values, Distribution):
                dims[key] = values
            elif hasattr(values, "rvs"):  # scipy.stats frozen distribution
                dims[key] = _Scipy(values)
            elif isinstance(values, (str, bytes)) or np.isscalar(values):
                dims[key] = [_plain(values)]
            else:
                try:
                    vals = [_plain(v) for v in values]
                except TypeError as err:
                    raise SclibraError(
                        f"search values for {key!r} must be a list or a distribution, got "
                        f"{type(values).__name__}"
                    ) from err
                if not vals:
                    raise SclibraError(f"no values given for hyperparameter {key!r}")
                dims[key] = vals
            _check_dimension(key, dims[key])
        self.dims = dims

    @property
    def is_finite(self) -> bool:
        """True when every dimension is a list (the space can be enumerated as a grid)."""
        return all(isinstance(v, list) for v in self.dims.values())

    @property
    def size(self) -> float:
        """Number of grid combinations (``inf`` when any dimension is a distribution)."""
        if not self.is_finite:
            return math.inf
        return math.prod(len(v) for v in self.dims.values())

    def __len__(self) -> int:
        if not self.is_finite:
            raise TypeError("a search space with distributions has no finite length")
        return int(self.size)

    def grid(self) -> list[dict]:
        """All combinations in a deterministic order (first key varies slowest)."""
        if not self.is_finite:
            sampled = [k for k, v in self.dims.items() if not isinstance(v, list)]
            raise SclibraError(
                f"an exhaustive grid needs lists of values; {', '.join(sampled)} are "
                "distributions: use strategy='random' or 'asha' with n_trials"
            )
        keys = list(self.dims)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.dims.values())]

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw one configuration."""
        out = {}
        for k, v in self.dims.items():
            if isinstance(v, list):
                out[k] = v[int(rng.integers(len(v)))]
            else:
                out[k] = v.sample(rng)
        return out

    def describe(self) -> dict:
        """JSON-serialisable description (part of the search fingerprint)."""
        return {k: (v if isinstance(v, list) else v.describe()) for k, v in self.dims.items()}

    def __repr__(self) -> str:
        size = "continuous" if not self.is_finite else f"{len(self)} combinations"
        return f"SearchSpace({self.name!r}, {size}: {', '.join(self.dims)})"


class _Scipy(Distribution):
    def __init__(self, dist):
        self.dist = dist

    def sample(self, rng):
        return _plain(self.dist.rvs(random_state=rng))

    def describe(self):
        name = getattr(getattr(self.dist, "dist", None), "name", "scipy")
        return {
            "type": f"scipy.{name}",
            "args": list(map(_plain, self.dist.args)),
            "kwds": {k: _plain(v) for k, v in self.dist.kwds.items()},
        }
