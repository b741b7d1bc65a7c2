"""The training recipe of LIBRA: its arguments, presets, loss choice, ensembles and batch-aware
validation.

One source of truth for every recipe argument: :data:`RECIPE` declares each once (where it goes,
its type, bounds or choices, help and documentation) and :data:`PRESETS` holds its values.
``LIBRA()`` and ``LIBRA.fit()`` take the arguments of :data:`RECIPE` (their signatures and
docstrings are written from it, see :func:`takes_recipe`) and read their defaults from the preset
named by ``LIBRA(preset=...)``; explicit arguments win. The command line, the R package and the
aLIBRA tuner read the same declarations, so adding a hyperparameter edits this file and the one
that implements it. The evidence for each default is ``benchmarks/results/bench_peers_ablation.md``.
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ._errors import SclibraError, UnknownArgumentError, check_int
from ._module import OUTPUT_ACTIVATIONS


def check_float(name, value, lo, hi, *, lo_open=False, hi_open=False):
    """``value`` as a float in ``[lo, hi]`` (ends open as asked), or an error naming the bound."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SclibraError(f"{name} must be a number, got {value!r}") from None
    bad = (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi) or math.isnan(v)
    if bad:
        lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise SclibraError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {value!r}")
    return v


@dataclass(frozen=True)
class RecipeArg:
    """One recipe argument, declared once.

    Attributes
    ----------
    name
        The argument's name in ``LIBRA()`` / ``LIBRA.fit()`` (``--name-with-dashes`` on the
        command line, ``name.with.dots`` or the same name in R).
    stage
        ``"model"``: an argument of ``LIBRA()`` (an attribute of the model, saved with it);
        ``"fit"``: a schedule argument of ``LIBRA.fit()`` and ``LIBRA.fit_b_encoder()``.
    kind
        ``int``, ``float``, ``bool`` or ``str``.
    help
        One line (the command line's help).
    doc
        The docstrings' text.
    low, high, low_open, high_open
        Bounds of a number (``high=None``: none); an open end excludes the bound.
    choices
        Allowed values of a ``str`` argument.
    positional
        ``LIBRA()`` also takes it by position (in declaration order, as in sclibra 0.1.0).
    searchable
        aLIBRA (:func:`sclibra.tune`) may search it.
    """

    name: str
    stage: str
    kind: type
    help: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    positional: bool = False
    searchable: bool = False

    def check(self, value, what: str | None = None):
        """``value`` checked (and converted to ``kind``), or a :class:`SclibraError` naming the
        argument (or ``what``), its bound and the value.
        """
        name = what or self.name
        if self.choices is not None:
            if value not in self.choices:
                raise SclibraError(
                    f"{name} must be one of {', '.join(map(repr, self.choices))}; got {value!r}"
                )
            return value
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise SclibraError(f"{name} must be True or False, got {value!r}")
            return bool(value)
        if self.kind is int:
            value = check_int(name, value, int(self.low if self.low is not None else 0))
            if self.high is not None and value > self.high:
                raise SclibraError(f"{name} must be an integer <= {self.high}, got {value!r}")
            return value
        return check_float(
            name,
            value,
            -math.inf if self.low is None else self.low,
            math.inf if self.high is None else self.high,
            lo_open=self.low_open,
            hi_open=self.high_open,
        )


#: ``latent_pcs = 0``: input PCs the latent regulariser predicts, by loss. A binary target (BCE)
#: shapes the latent space little, so more of the input's structure is kept at no cost in
#: prediction; with MSE, 30 components cost held-out RMSE (bmmc CITE), so 10
#: (``benchmarks/results/bench_peers_ablation_latent_pcs_auto.md``)
LATENT_PCS_AUTO = {"bce": 30, "mse": 10}


#: ``target_smoothing`` applies to continuous targets with fewer non-zero entries than this
#: fraction (normalised RNA counts: 9-34 % in the bundled and benchmark sets); denser ones (CLR
#: protein, 90-100 %) and binary ones (peaks) train on their own values: smoothing raised the
#: held-out RMSE of bmmc CITE RNA->ADT and lowered the per-cell AUROC of Multiome RNA->ATAC
#: (``benchmarks/results/bench_peers_ablation_smoothing.md``)
SMOOTHING_MAX_NONZERO = 0.5
#: principal components of modality B in whose space ``target_smoothing`` finds neighbours
SMOOTHING_PCS = 50
#: ``target_smoothing`` is skipped (and the fit says so) above this many cells x target
#: features: each ensemble member's smoothed target is a dense float32 copy (256 MiB here, the
#: most of a target that training already keeps dense, :data:`sclibra._train.DENSE_CACHE_BYTES`),
#: and a larger target is read sparse, one minibatch at a time
SMOOTHING_MAX_ENTRIES = 2**26
#: nor above this many cells: its exact neighbour search grows with the square of the cells
#: (4 s for 40,000 cells x 50 PCs on 2 cores, so about 25 s here)
SMOOTHING_MAX_CELLS = 100_000


#: modality B wider than this (features) goes through the rank-``output_rank`` output layer
#: (``benchmarks/results/bench_peers_ablation_wide.md``); nor is such a target smoothed
#: (``target_smoothing``): it gained nothing there (pbmc5k ADT->RNA, 3,000 genes: RMSE 0.6371
#: -> 0.6369; sci-CAR ATAC->RNA, 1,185 genes: 0.7744 both), and its dense copy replaces the
#: sparse target's closed-form loss (sci-CAR RNA->ATAC's 52,761 normalised peaks: 35 s per fit
#: instead of 5)
WIDE_OUTPUT = 1000
#: the same threshold for models saved before format 4, which did not record the rank they used
WIDE_OUTPUT_BEFORE_FORMAT_4 = 10000
#: relative decrease of the monitored loss that the learning-rate schedule counts as progress
#: (torch's ReduceLROnPlateau default, passed explicitly) unless ``min_delta`` is larger
LR_THRESHOLD = 1e-4
#: the shortest wait of ``adaptive_patience``: this many epochs, and at least this many optimizer
#: steps, so a small set's epochs of a few steps each still get the full patience
#: (``benchmarks/results/bench_peers_ablation_patience.md``)
MIN_PATIENCE = 5
MIN_PATIENCE_STEPS = 100

#: every recipe argument: those of ``LIBRA()`` (positional ones first, in their order), then
#: the schedule of ``LIBRA.fit()``
RECIPE: tuple[RecipeArg, ...] = (
    RecipeArg(
        "n_layers", "model", int, low=0, positional=True, searchable=True,
        help="Dense -> LeakyReLU -> Dropout blocks in the encoder (mirrored in the decoder)",
        doc="Number of Dense -> LeakyReLU -> Dropout blocks in the encoder (mirrored in the "
        "decoder).",
    ),
    RecipeArg(
        "n_nodes", "model", int, low=1, positional=True, searchable=True,
        help="width of the first block; each further block halves it",
        doc="Width of the first block; each further block halves it (the paper's design).",
    ),
    RecipeArg(
        "alpha", "model", float, low=0.0, high=1.0, positional=True, searchable=True,
        help="LeakyReLU slope",
        doc="Negative slope of the LeakyReLU activations.",
    ),
    RecipeArg(
        "dropout", "model", float, low=0.0, high=1.0, high_open=True, positional=True,
        searchable=True,
        help="dropout rate after each block",
        doc="Dropout rate after each block.",
    ),
    RecipeArg(
        "latent_dim", "model", int, low=1, positional=True, searchable=True,
        help="size of the bottleneck (per ensemble member)",
        doc="Size of the bottleneck, the shared latent space (per ensemble member).",
    ),
    RecipeArg(
        "output_activation", "model", str, choices=("auto", *OUTPUT_ACTIVATIONS),
        positional=True, searchable=True,
        help="output activation (auto: from the target)",
        doc="``'auto'`` (ReLU when the training target is non-negative, linear when it is "
        "signed), ``'relu'`` (published), ``'softplus'``, ``'linear'`` or ``'sigmoid'``. A "
        "rectified output is refused for a target with negative values rather than silently "
        "clipping it. With the BCE loss the output is always a sigmoid.",
    ),
    RecipeArg(
        "batch_size", "model", int, low=1, positional=True, searchable=True,
        help="minibatch size",
        doc="Minibatch size. The published 7000 means one step per epoch on most data; 128 "
        "trains better per second (see ``benchmarks/bench_batch_size.py``).",
    ),
    RecipeArg(
        "learning_rate", "model", float, low=0.0, high=10.0, low_open=True, positional=True,
        searchable=True,
        help="Adam learning rate",
        doc="Adam learning rate.",
    ),
    RecipeArg(
        "n_models", "model", int, low=1,
        help="ensemble size",
        doc="Ensemble size: ``n_models`` networks trained from different seeds, each holding out "
        "its own validation cells; predictions are their average and the latent space is their "
        "latent spaces side by side (``n_models * latent_dim`` columns).",
    ),
    RecipeArg(
        "loss", "model", str, choices=("auto", "mse", "bce"),
        help="loss (auto: BCE for binary targets, else MSE)",
        doc="``'auto'`` (binary cross-entropy with a sigmoid output for a 0/1 target such as "
        "binarised peaks, mean squared error otherwise), ``'mse'`` or ``'bce'``.",
    ),
    RecipeArg(
        "weight_decay", "model", float, low=0.0, high=10.0,
        help="decoupled weight decay (AdamW) when > 0",
        doc="Decoupled weight decay (AdamW) when > 0.",
    ),
    RecipeArg(
        "latent_pca", "model", float, low=0.0, high=100.0, searchable=True,
        help="weight of the latent regulariser (latent predicts the input's top PCs)",
        doc="Weight of a latent regulariser: during training a linear map of the latent space "
        "must also predict the top ``latent_pcs`` principal components of the input, so the "
        "latent space keeps the input's main structure (clusters) and not only what predicts "
        "the target. 0: off.",
    ),
    RecipeArg(
        "latent_pcs", "model", int, low=0, searchable=True,
        help="principal components of the input the latent regulariser predicts "
        f"(0: from the loss, {LATENT_PCS_AUTO['bce']} with BCE, {LATENT_PCS_AUTO['mse']} with MSE)",
        doc="Principal components of the input that the latent regulariser "
        "(``latent_pca > 0``) predicts from the latent space, scaled by the first one's "
        "standard deviation (so the leading components weigh most). More keep more of the "
        "input's finer structure in the latent space, at some cost in prediction "
        "(``benchmarks/results/bench_peers_ablation_latent_pcs.md``). ``0`` (the default): "
        f"chosen from the loss (:data:`LATENT_PCS_AUTO`), {LATENT_PCS_AUTO['bce']} for a binary "
        "target trained with BCE (peaks), whose latent space the target shapes little, and "
        f"{LATENT_PCS_AUTO['mse']} for MSE, where more components cost prediction "
        "(``benchmarks/results/bench_peers_ablation_latent_pcs_auto.md``). Capped at what the training cells allow; no effect with ``latent_pca = 0``.",
    ),
    RecipeArg(
        "latent_pcs_whiten", "model", bool, searchable=True,
        help="the latent regulariser weighs every input PC it predicts the same",
        doc="Scale each principal component the latent regulariser predicts to the same "
        "variance (the mean of their variances, so the loss keeps its size) instead of "
        "keeping their own, where the leading components weigh most. Helps a latent space "
        "whose labels live in a minor component (sci-CAR's time course: in the second and "
        "seventh PCs, none in the first) and hurts one whose labels live in the leading ones "
        "(bone-marrow cell types): ``benchmarks/results/bench_peers_ablation_latent_targets.md``. "
        "Check the result against labelled held-out cells: aLIBRA's integration score, "
        "measured on the small validation split of the search cells, did not tell the two "
        "apart reliably on those sets. ``False``: the components as they are. No effect with "
        "``latent_pca = 0``.",
    ),
    RecipeArg(
        "input_pca", "model", int, low=0, searchable=True,
        help="read modality A as its top principal components (0: its features)",
        doc="Read modality A through its top ``input_pca`` principal components: a PCA fitted "
        "once on the training cells (sparse input is never densified) becomes a frozen first "
        "layer, so the network learns from denoised coordinates and each training step costs "
        "the same whatever A's width. A binary A (peaks read as 0/1) is standardised first "
        "(each feature divided by its standard deviation, folded into the frozen layer), so "
        "every peak counts and not only those open in about half the cells; the latent "
        "regulariser's PCs are then those of the standardised features too "
        "(:func:`~sclibra._recipe.standardising_scale`, "
        "``benchmarks/results/bench_peers_ablation_binary_input.md``). Off (0) when A has at "
        "most ``input_pca`` features (e.g. a small protein panel); 0: A's features themselves, "
        "as published.",
    ),
    RecipeArg(
        "start_at_mean", "model", bool,
        help="start the output layer at the mean baseline",
        doc="Start training from the mean baseline: the output layer's weights start at zero "
        "and its bias at the per-feature training mean (peak popularity for ATAC), so the "
        "network only moves away from the mean where that lowers the validation loss.",
    ),
    RecipeArg(
        "mean_fallback", "model", bool,
        help="a member its validation finds no better than the mean predicts the mean",
        doc="After training, an ensemble member that trained until it stopped by itself "
        "(early stopping or the learning-rate floor; not one cut short by ``max_epochs`` or a "
        "callback) and whose best validation loss is not below that of the mean baseline (each "
        "feature's mean over the member's own training cells, on the same validation cells) "
        "by at least ``min_delta`` (relative; the decrease that counts as an improvement in "
        "early stopping) "
        "predicts each feature's mean over all the training cells instead (its output layer's "
        "weights are set to zero and its bias to that mean); its latent space is kept, and the "
        "fit says so. A trained model then never predicts worse, on its own validation cells, "
        "than the mean does. Needs a validation split (``validation_split > 0``).",
    ),
    RecipeArg(
        "target_smoothing", "model", float, low=0.0, high=1.0, searchable=True,
        help="weight of its neighbours' mean in a training cell's target (sparse continuous "
        "targets such as normalised RNA; 0: off)",
        doc="Denoise a sparse target before training: each training cell learns "
        "``(1 - target_smoothing) x`` its own values ``+ target_smoothing x`` the mean of its "
        "``target_neighbors`` nearest training cells (itself included) in the space of B's top "
        f"{SMOOTHING_PCS} principal components (of B's own values when it has no more "
        "features than that). Validation cells keep their own values, so "
        "early stopping and ``mean_fallback`` judge the model on the measured target. Applies "
        "to continuous targets with fewer than "
        f"{SMOOTHING_MAX_NONZERO:.0%} non-zero entries (normalised counts, where sampling noise "
        f"is most of a cell's value) of at most {WIDE_OUTPUT:,} features (:data:`WIDE_OUTPUT`; "
        "wider ones lose their sparse closed-form loss to the dense copy and gained nothing in "
        "the benchmark); binary targets "
        "(peaks), dense ones (CLR protein) and wider ones train on their own values, as do "
        f"targets of more than {SMOOTHING_MAX_CELLS:,} cells (the neighbour search is exact) or "
        "too large for a dense copy per member (:data:`SMOOTHING_MAX_ENTRIES`); the fit says so "
        "(``benchmarks/results/bench_peers_ablation_smoothing.md``). 0: off, as published.",
    ),
    RecipeArg(
        "target_neighbors", "model", int, low=1, searchable=True,
        help="training cells whose mean target_smoothing mixes in (itself included)",
        doc="Number of nearest training cells (in B's principal-component space, the cell "
        "itself included) whose mean ``target_smoothing`` mixes into each training cell's "
        "target. Capped at the member's training cells. No effect with "
        "``target_smoothing = 0``.",
    ),
    RecipeArg(
        "output_rank", "model", int, low=0,
        help=f"rank of the output layer when B has more than {WIDE_OUTPUT:,} features (0: full)",
        doc="Rank of the output layer for wide targets: when modality B has more than "
        f":data:`WIDE_OUTPUT` features ({WIDE_OUTPUT:,}; peaks), the last hidden layer reaches the "
        "outputs through ``output_rank`` linear units, so each cell costs ``output_rank x "
        "n_features`` instead of ``n_nodes x n_features`` (``benchmarks/bench_speed.py``). "
        "0: a full output layer, as published.",
    ),
    RecipeArg(
        "validation_split", "fit", float, low=0.0, high=1.0, high_open=True,
        help="share of training cells held out to monitor training",
        doc="Share of the training cells held out to monitor training (early stopping, "
        "learning-rate schedule, best weights). ``0`` monitors the training loss, as published.",
    ),
    RecipeArg(
        "max_epochs", "fit", int, low=1, searchable=True,
        help="epoch limit",
        doc="Epoch limit.",
    ),
    RecipeArg(
        "early_stopping_patience", "fit", int, low=0, searchable=True,
        help="epochs without improvement before stopping",
        doc="Stop after this many epochs without improvement.",
    ),
    RecipeArg(
        "adaptive_patience", "fit", bool,
        help="a model that stopped improving in its first few epochs waits only those epochs",
        doc="A model whose last improvement came within its first ``w`` epochs stops after "
        "``w`` epochs without another instead of ``early_stopping_patience``, where ``w`` is "
        f"the larger of {MIN_PATIENCE} epochs and the epochs that make {MIN_PATIENCE_STEPS} "
        "optimizer steps (:data:`MIN_PATIENCE`, :data:`MIN_PATIENCE_STEPS`): one whose "
        "validation loss stopped falling after epoch 1 (a target it cannot predict better "
        "than its start, such as sparse peaks) stops early; one that learned for longer keeps "
        "the full patience, so a plateau that the learning-rate drop would end is waited out. "
        "``False``: always ``early_stopping_patience``, as published.",
    ),
    RecipeArg(
        "stop_at_min_lr", "fit", bool,
        help="stop when the learning-rate schedule reaches min_lr",
        doc="Stop (as early stopping, keeping the best weights) at the plateau that brings the "
        "learning rate down to ``min_lr``: the schedule has nothing left to try, and the "
        "epochs at ``min_lr`` that ``early_stopping_patience`` would wait out rarely improve "
        "the model (``benchmarks/results/bench_peers_ablation_min_lr.md``). ``False``: train "
        "on at ``min_lr`` until the patience runs out, as published.",
    ),
    RecipeArg(
        "ema_decay", "fit", float, low=0.0, high=1.0, high_open=True, searchable=True,
        help="decay of a moving average of the weights that the model keeps (0: off)",
        doc="Keep an exponential moving average of the network's weights, updated after every "
        "optimizer step (``average = ema_decay * average + (1 - ema_decay) * weights``): the "
        "validation loss, early stopping, the learning-rate schedule and the best weights all "
        "read the average, and the trained model is the average at its best epoch. Averaging "
        "the last few hundred steps smooths the noise of minibatch training. Until it holds "
        "``1 / (1 - ema_decay)`` steps the average is the plain mean of the weights after every "
        "step so far (the decay at step ``t`` is ``min(ema_decay, 1 - 1 / t)``), so it does not "
        "hold on to the random start of a short training. Not the default: 0.99 lowered one "
        "direction's error by 2 % for 1.5-2x the epochs on small sets "
        "(``benchmarks/results/bench_peers_ablation_ema.md``). 0: off (the last weights), as "
        "published.",
    ),
    RecipeArg(
        "latent_warmup", "fit", int, low=0,
        help="steps that train the encoder on the latent regulariser alone before the fit",
        doc="Optimizer steps (minibatches of training cells) that train the encoder on the "
        "latent regulariser alone before the joint training starts (with ``latent_pca > 0``): "
        "the latent space starts from the input's main structure instead of from random, which "
        "a model that stops after a few epochs (``adaptive_patience``) would not reach. The "
        "warm-up reads only modality A and has an optimizer of its own; the joint training "
        "then starts as without it. 0: none, as published.",
    ),
    RecipeArg(
        "min_delta", "fit", float, low=0.0, high=1.0, high_open=True,
        help="relative decrease of the monitored loss that counts as an improvement",
        doc="An epoch improves on the best so far when the monitored loss falls below "
        "``best x (1 - min_delta)``; only such an epoch resets the early-stopping patience "
        "(the best weights are kept at any decrease). The learning-rate schedule counts the "
        f"same decrease as progress (at least ``{LR_THRESHOLD:g}``, torch's default), so "
        "training stops once the schedule has nothing left to gain instead of running on for "
        "decreases of a millionth; ``0``: any decrease, as published.",
    ),
    RecipeArg(
        "lr_patience", "fit", int, low=0, searchable=True,
        help="epochs without improvement before the learning rate drops",
        doc="Multiply the learning rate by ``lr_factor`` after this many epochs without "
        "improvement.",
    ),
    RecipeArg(
        "lr_factor", "fit", float, low=0.0, high=1.0, low_open=True, high_open=True,
        searchable=True,
        help="factor of each learning-rate drop",
        doc="Factor of each learning-rate drop.",
    ),
    RecipeArg(
        "min_lr", "fit", float, low=0.0, high=10.0, searchable=True,
        help="lowest learning rate",
        doc="Lowest learning rate.",
    ),
)  # fmt: skip
#: the recipe's arguments by name
RECIPE_ARGS: dict[str, RecipeArg] = {a.name: a for a in RECIPE}
#: arguments of ``LIBRA()`` (in the order of its signature)
MODEL_KEYS = tuple(a.name for a in RECIPE if a.stage == "model")
#: schedule arguments of ``LIBRA.fit()``
FIT_KEYS = tuple(a.name for a in RECIPE if a.stage == "fit")
#: one line of help per recipe argument (the command line shows it; docstrings say more)
RECIPE_HELP = {a.name: a.help for a in RECIPE}
#: allowed values of the recipe arguments that take names
RECIPE_CHOICES = {a.name: a.choices for a in RECIPE if a.choices is not None}


def check_recipe_value(name: str, value):
    """``value`` of the recipe argument ``name``, checked against its declaration."""
    if name not in RECIPE_ARGS:
        raise SclibraError(
            f"unknown recipe argument {name!r}; the recipe has {', '.join(RECIPE_ARGS)}"
        )
    return RECIPE_ARGS[name].check(value)


#: the line of a docstring that :func:`recipe_docstring` replaces by the recipe's entries
RECIPE_DOC_MARKER = "<recipe arguments>"


def recipe_docstring(doc: str, stage: str) -> str:
    """``doc`` with its line :data:`RECIPE_DOC_MARKER` replaced by the numpy "Parameters"
    entries of the recipe arguments of ``stage`` (at that line's indentation).
    """
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == RECIPE_DOC_MARKER:
            indent = line[: len(line) - len(line.lstrip())]
            entries = []
            for a in RECIPE:
                if a.stage == stage:
                    entries.append(indent + a.name)
                    entries += textwrap.wrap(
                        a.doc,
                        96,
                        initial_indent=indent + "    ",
                        subsequent_indent=indent + "    ",
                        break_on_hyphens=False,
                    )
            lines[i : i + 1] = entries
            break
    return "\n".join(lines)


#: where each stage's recipe arguments are given
STAGE_CALLS = {"model": "LIBRA(...)", "fit": "LIBRA.fit(...)"}


def _where_it_belongs(key: str, stage: str, names: list[str], label: str) -> str:
    """The hint of ``label()``'s unknown-argument error: the call that takes ``key`` when it is
    a recipe argument of another stage, else the closest of ``names`` (a typo), else nothing.
    """
    import difflib

    other = next((a.stage for a in RECIPE if a.name == key and a.stage != stage), None)
    if other is not None:
        return f" ({key} is an argument of {STAGE_CALLS[other]}, not of {label}())"
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    return f" (did you mean {near[0]!r}?)" if near else ""


def takes_recipe(stage: str, *, after: str | None = None):
    """Decorator: ``fn(self, ..., **recipe)`` takes the recipe arguments of ``stage`` by name.

    The wrapper's signature (so ``help()``, ``inspect.signature``, the R package's argument
    check and the command line) lists each argument of :data:`RECIPE` of that stage with the
    default ``None`` (the preset's value): the ``positional`` ones right after ``self``, the
    others keyword-only, after the keyword-only parameter ``after`` (default: last). Its
    docstring documents them at :data:`RECIPE_DOC_MARKER`. An unknown keyword is refused with
    an error naming it and the valid names; ``fn`` receives the given recipe arguments in
    ``**recipe`` (those not given are absent).
    """
    P = inspect.Parameter

    def as_parameter(a: RecipeArg):
        kind = P.POSITIONAL_OR_KEYWORD if a.positional else P.KEYWORD_ONLY
        return P(a.name, kind, default=None, annotation=f"{a.kind.__name__} | None")

    def decorate(fn):
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
        head, rest = own[:1], own[1:]
        positional = [p for p in rest if p.kind is not P.KEYWORD_ONLY]
        keyword = [p for p in rest if p.kind is P.KEYWORD_ONLY]
        at = len(keyword) if after is None else [p.name for p in keyword].index(after) + 1
        mine = [as_parameter(a) for a in RECIPE if a.stage == stage]
        signature = inspect.signature(fn).replace(
            parameters=[
                *head,
                *[p for p in mine if p.kind is not P.KEYWORD_ONLY],
                *positional,
                *keyword[:at],
                *[p for p in mine if p.kind is P.KEYWORD_ONLY],
                *keyword[at:],
            ]
        )
        names = list(signature.parameters)[1:]
        label = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for key in kwargs:
                if key not in signature.parameters:
                    raise UnknownArgumentError(
                        f"{label}() got an unexpected keyword argument {key!r}"
                        + _where_it_belongs(key, stage, names, label)
                        + "; it takes "
                        + ", ".join(names)
                    )
            return fn(**signature.bind(*args, **kwargs).arguments)

        wrapper.__signature__ = signature
        if fn.__doc__:
            wrapper.__doc__ = recipe_docstring(fn.__doc__, stage)
        return wrapper

    return decorate


_PUBLISHED = {
    # the paper's Keras model (LIBRA, Martinez-de-Morentin et al.): 2 Dense blocks of 512 and 256
    # units with LeakyReLU(0.3) and Dropout(0.2), a 10-unit bottleneck, a mirrored decoder and a
    # ReLU output; MSE loss, Adam(1e-3), batch size 7000, ReduceLROnPlateau(factor 0.1,
    # patience 15, min_lr 1e-5) and EarlyStopping(patience 20) on the training loss (no
    # validation split), up to 1500 epochs; one model.
    "n_layers": 2,
    "n_nodes": 512,
    "alpha": 0.3,
    "dropout": 0.2,
    "latent_dim": 10,
    "output_activation": "relu",
    "batch_size": 7000,
    "learning_rate": 1e-3,
    "n_models": 1,
    "loss": "mse",
    "weight_decay": 0.0,
    "latent_pca": 0.0,
    "latent_pcs": 10,
    "latent_pcs_whiten": False,
    "input_pca": 0,
    "start_at_mean": False,
    "mean_fallback": False,
    "target_smoothing": 0.0,
    "target_neighbors": 15,
    "output_rank": 0,
    "validation_split": 0.0,
    "max_epochs": 1500,
    "early_stopping_patience": 20,
    "adaptive_patience": False,
    "stop_at_min_lr": False,
    "ema_decay": 0.0,
    "latent_warmup": 0,
    "min_delta": 0.0,
    "lr_patience": 15,
    "lr_factor": 0.1,
    "min_lr": 1e-5,
}

PRESETS: dict[str, dict] = {
    "published": _PUBLISHED,
    # sclibra 0.1.0's defaults: the published network with minibatches of 128, a 10 % validation
    # split and an output activation chosen from the target's sign
    "0.1.0": {
        **_PUBLISHED,
        "output_activation": "auto",
        "batch_size": 128,
        "validation_split": 0.1,
    },
}
# the new recipe (see the ablation in benchmarks/results/bench_peers_ablation.md)
PRESETS["default"] = {
    **PRESETS["0.1.0"],
    "loss": "auto",  # BCE + sigmoid for binary (peak) targets, MSE otherwise
    "latent_dim": 32,  # lower held-out RMSE and a latent space that clusters better
    "n_models": 3,  # an ensemble: lower RMSE in every bundled direction
    "output_rank": 32,  # wide (peak) outputs: same accuracy, a fraction of the time
    "latent_pca": 5.0,  # a latent space that keeps the input's clusters; lower RMSE ADT->RNA
    "latent_pcs": 0,  # from the loss (LATENT_PCS_AUTO): 30 input PCs for peaks, 10 otherwise
    "input_pca": 100,  # denoised input: lower RMSE on thousands of cells, fast wide inputs
    "min_delta": 1e-3,  # a plateau is a plateau: same models, fewer epochs on large data
    "adaptive_patience": True,  # no 20-epoch wait on a model that stopped improving at epoch 1
    "latent_warmup": 100,  # a latent space that keeps the input's clusters from the first epoch
    "stop_at_min_lr": True,  # no epochs at the floor learning rate that rarely help
    "mean_fallback": True,  # never a member its validation finds worse than the mean baseline
    "target_smoothing": 0.5,  # sparse (RNA) targets denoised: lower held-out RMSE ADT->RNA
    "target_neighbors": 15,
}

for _name, _values in PRESETS.items():  # every preset gives every declared argument
    if set(_values) != set(RECIPE_ARGS):
        raise RuntimeError(f"preset {_name!r} does not match the recipe's arguments")

LOSSES = RECIPE_CHOICES["loss"]


def resolve_preset(name: str) -> dict:
    """The values of a preset (a copy); a clear error for an unknown name."""
    if name not in PRESETS:
        raise SclibraError(f"unknown preset {name!r}; choose from {', '.join(map(repr, PRESETS))}")
    return dict(PRESETS[name])


def choose_loss(loss: str, binary: bool, name: str) -> str:
    """``"bce"`` for a binary target under ``"auto"``, ``"mse"`` otherwise; checks BCE's domain."""
    if loss not in LOSSES:
        raise SclibraError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got {loss!r}")
    if loss == "auto":
        return "bce" if binary else "mse"
    if loss == "bce" and not binary:
        raise SclibraError(
            f"loss='bce' needs a binary target (0/1 values, e.g. binarised peaks) but {name} has "
            "other values; use loss='mse' or 'auto'"
        )
    return loss


def loss_function(name: str):
    """``fn(output, target) -> scalar`` of a loss name: the module's output for MSE, its logits
    for BCE (:func:`sclibra._train.logits_for_bce` makes the module return them).
    """
    if name == "mse":
        return F.mse_loss  # one fused kernel: fewer passes over wide outputs than (a - b) ** 2
    if name == "bce":
        # from the logits (the sigmoid's input; see sclibra._train.logits_for_bce): one fused,
        # numerically stable kernel instead of sigmoid, clamp and log passes over every output
        # (2.5x less per step at 52,761 peaks)
        return F.binary_cross_entropy_with_logits
    raise SclibraError(f"unknown loss {name!r}")


class EnsembleNet(nn.Module):
    """``n`` independently trained LIBRA networks used as one.

    ``encode`` concatenates the members' latent coordinates (each member's latent space has its
    own arbitrary rotation, so averaging them would mix unrelated axes); ``decode`` splits that
    concatenation and averages the members' predictions, so ``decode(encode(x))`` is exactly the
    mean of the members' predictions.

    The members of one fit read A through the same input PCA (one fit, the same weights): they
    share one :class:`~sclibra._module.InputPCA` module, so ``encode`` projects a minibatch once,
    not once per member (the sparse product with A is the costly part on wide inputs). The
    state dict keeps one entry per member, as before.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        projection = getattr(members[0], "projection", None)
        if projection is not None:
            for m in members[1:]:
                m.projection = projection
        self.members = nn.ModuleList(members)
        self.latent_dim = members[0].encoder.net[-1].out_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        projection = getattr(self.members[0], "projection", None)
        if projection is None:
            return torch.cat([m.encode(x) for m in self.members], dim=1)
        x = projection(x)
        return torch.cat([m.encoder(x) for m in self.members], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d = self.latent_dim
        # summed as they come (in place when no gradient is recorded): one output-sized array
        # at a time beside the total, not a stack of every member's (wide targets: 52,761 peaks)
        in_place = not torch.is_grad_enabled()
        total = None
        for i, m in enumerate(self.members):
            out = m.decode(z[:, i * d : (i + 1) * d])
            if total is None:
                total = out.clone() if in_place and out._base is not None else out
            else:
                total = total.add_(out) if in_place else total + out
        return total.div_(len(self.members)) if in_place else total / len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.decode(self.encode(x))


def split_by_batch(batches: np.ndarray, validation_split: float, seed: int, member: int = 0):
    """(training, validation) row positions holding out whole batches (donors).

    Batches are shuffled with ``seed`` and, in that order, added to validation until it holds
    about ``validation_split`` of the cells; training always keeps at least one batch. Ensemble
    member ``member`` takes the batches the members before it have not held out first (and
    starts again from the whole order once every batch has been held out), so with two donors
    the members hold out each in turn and together learn from every batch. Returns ``None``
    when there are fewer than two batches (the caller falls back to a random split).
    """
    levels, counts = np.unique(batches, return_counts=True)
    if len(levels) < 2 or validation_split <= 0:
        return None
    order = list(np.random.default_rng(seed).permutation(levels))
    target = validation_split * len(batches)
    sizes = dict(zip(levels, counts.tolist()))

    def take(candidates) -> list:
        chosen, size = [], 0
        for lev in candidates:
            if len(chosen) == len(levels) - 1:  # training keeps at least one batch
                break
            k = sizes[lev]
            if chosen and abs(size + k - target) > abs(size - target):
                continue
            chosen.append(lev)
            size += k
            if size >= target:
                break
        return chosen

    val_levels = take(order[:-1])
    held = list(val_levels)  # held out by the members so far, in turn
    for _ in range(member):
        fresh = [lev for lev in order if lev not in held]
        if not fresh:  # every batch has had its turn: round again
            held, fresh = [], list(order)
        val_levels = take(fresh + held)  # batches not held out yet come first
        held += [lev for lev in val_levels if lev not in held]
    is_val = np.isin(batches, val_levels)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


#: cells used to fit the input PCA of the latent regulariser (a subsample on large data)
PCA_MAX_CELLS = 20000


def input_pca_scores(m, n_pcs: int, seed: int, feature_scale: np.ndarray | None = None):
    """A PCA of the rows of ``m``: ``(estimator, scores, scale)``.

    The PCA (a randomized range finder, :class:`~sclibra.metrics._utils.RandomizedPCA`,
    implicitly centred for sparse input, never densified) is fitted on at most
    :data:`PCA_MAX_CELLS` rows and applied block by block. ``scores`` (float32, rows of ``m``,
    ``estimator.n_components_`` columns) are divided by ``scale``, the standard deviation of the
    first component, so what reads them does not depend on the data's scale.

    ``feature_scale`` (one positive number per feature): the PCA is of ``m``'s columns divided
    by it (e.g. their standard deviations: a PCA of the standardised features), sparse kept
    sparse; the estimator then applies to rows divided the same way.
    """
    import scipy.sparse as sp

    from .metrics._utils import pca_scores, pca_transform

    # the column scaling as a sparse diagonal, built once for every block of rows
    unscale = None if feature_scale is None else sp.diags(1.0 / feature_scale)

    def rows(idx):
        x = m.sparse_rows(idx) if m.is_sparse else m.dense_rows(idx)
        if feature_scale is None:
            return x
        if sp.issparse(x):
            return sp.csr_matrix(x @ unscale)
        return np.asarray(x, dtype=np.float64) / feature_scale

    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.permutation(m.n_obs)[:PCA_MAX_CELLS])
    sample = rows(fit_rows)
    est, sample_scores = pca_scores(sample, n_pcs, seed=seed, randomized=True)
    if len(fit_rows) == m.n_obs:  # fitted on every row, in order: its scores are the scores
        scores = sample_scores.astype(np.float32)
    else:  # the other rows too, block by block
        blocks = []
        for start in range(0, m.n_obs, 4096):
            x = rows(np.arange(start, min(start + 4096, m.n_obs)))
            blocks.append(pca_transform(est, x if sp.issparse(x) else np.asarray(x)))
        scores = np.concatenate(blocks).astype(np.float32)
    scale = max(float(scores[:, 0].std()), 1e-8)
    return est, scores / scale, scale


def input_pc_scores(
    m, n_pcs: int, seed: int, feature_scale: np.ndarray | None = None
) -> np.ndarray:
    """Top ``n_pcs`` principal-component scores of every row of ``m`` (see
    :func:`input_pca_scores`), divided by the standard deviation of the first.
    """
    return input_pca_scores(m, n_pcs, seed, feature_scale)[1]


def smoothing_skipped(stats, weight: float, n_cells: int) -> str | None:
    """Why ``target_smoothing`` does not apply to a target of ``stats`` trained on ``n_cells``
    cells (a phrase for the log), or None when it does. Off (0) is not a reason: None as well.
    """
    if not weight:
        return None
    if stats.binary:
        return "the target is binary"
    if stats.nonzero >= SMOOTHING_MAX_NONZERO:
        return (
            f"{stats.nonzero:.0%} of the target's entries are non-zero (it smooths targets "
            f"with fewer than {SMOOTHING_MAX_NONZERO:.0%})"
        )
    if len(stats.mean) > WIDE_OUTPUT:
        return f"it has more than {WIDE_OUTPUT:,} features (it smooths narrower targets)"
    if n_cells > SMOOTHING_MAX_CELLS:
        return (
            f"{n_cells:,} cells are more than the {SMOOTHING_MAX_CELLS:,} of its exact "
            "neighbour search"
        )
    if n_cells * len(stats.mean) > SMOOTHING_MAX_ENTRIES:
        return (
            f"{n_cells:,} cells x {len(stats.mean):,} features exceed the "
            f"{SMOOTHING_MAX_ENTRIES:,} entries of a smoothed copy"
        )
    return None


def smoothing_neighbours(scores: np.ndarray, train_sets, neighbors: int) -> list[np.ndarray]:
    """For each set of training rows in ``train_sets``: the ``neighbors`` nearest rows of that
    set (in ``scores``, the row itself included) of each of its rows, as an array of row
    numbers (its rows x ``neighbors``, fewer when the set is smaller).

    One neighbour search over every row serves all the sets (an ensemble's members differ only
    in the validation rows they leave out): the search returns ``2 x neighbors + 10`` candidates
    and each set keeps the nearest that belong to it; a row left with too few is searched again
    among the set's rows alone, so the result is that of a search within each set.
    """
    from sklearn.neighbors import NearestNeighbors

    scores = np.asarray(scores, dtype=np.float32)
    n = scores.shape[0]
    wide = int(min(n, 2 * neighbors + 10))
    candidates = (
        NearestNeighbors(n_neighbors=wide).fit(scores).kneighbors(scores, return_distance=False)
    )
    out = []
    for train_idx in train_sets:
        train_idx = np.asarray(train_idx)
        k = int(min(neighbors, len(train_idx)))
        member = np.zeros(n, dtype=bool)
        member[train_idx] = True
        cand = candidates[train_idx]
        keep = member[cand]
        # the first k candidates in the set, in order of distance (stable: ties keep their order)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(cand, order, axis=1)
        short = np.flatnonzero(keep.sum(axis=1) < k)
        if len(short):
            local = NearestNeighbors(n_neighbors=k).fit(scores[train_idx])
            found = local.kneighbors(scores[train_idx[short]], return_distance=False)
            chosen[short] = train_idx[found]
        out.append(chosen)
    return out


def smoothed_targets(
    y: np.ndarray, train_idx: np.ndarray, neighbours: np.ndarray, weight: float
) -> np.ndarray:
    """A copy of ``y`` (cells x features, dense float32) whose ``train_idx`` rows are
    ``(1 - weight) x`` their own ``+ weight x`` the mean of the rows ``neighbours`` lists for
    them (:func:`smoothing_neighbours`); the other rows as they are.
    """
    train_idx = np.asarray(train_idx)
    out = np.array(y, dtype=np.float32, order="C")  # a copy: each member gets its own
    n, k = neighbours.shape
    if k <= 1 or weight == 0:
        return out
    average = sp.csr_matrix(
        (np.full(n * k, 1.0 / k, dtype=np.float32), neighbours.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, out.shape[0]),
    )
    mixed = np.asarray(average @ out, dtype=np.float32)  # reads the measured rows only
    out[train_idx] = (1.0 - weight) * out[train_idx] + weight * mixed
    return out


def output_rank_for(output_rank: int, n_features: int, wide: int = WIDE_OUTPUT) -> int:
    """Rank of the output layer for ``output_rank`` and B's width (0: a full layer)."""
    return int(output_rank) if output_rank and n_features > wide else 0


def latent_pcs_for(latent_pcs: int, loss: str) -> int:
    """Input PCs the latent regulariser predicts for ``latent_pcs`` and the fit's loss."""
    return int(latent_pcs) if latent_pcs else LATENT_PCS_AUTO[loss]


def standardising_scale(stats) -> np.ndarray | None:
    """How the input PCA divides A's features: their standard deviations (1 where constant)
    when A is binary, so the PCA is of the standardised features; None (raw values) otherwise.

    A PCA of raw 0/1 values weighs each peak by its variance, the frequency term p(1 - p),
    so the peaks open in about half the cells dominate it; standardised, every peak counts.
    Multiome ATAC->RNA: lower held-out RMSE and a latent space that clusters better; for
    continuous inputs (log-normalised RNA, CLR ADT) standardising raised the RMSE
    (``benchmarks/results/bench_peers_ablation_binary_input.md``).
    """
    if not stats.binary:
        return None
    sd = np.sqrt(np.asarray(stats.var, dtype=np.float64))
    return np.where(sd > 0, sd, 1.0)


def whitened_pc_scores(scores: np.ndarray) -> np.ndarray:
    """``scores`` (cells x components) with every column scaled to the same variance, the mean
    of their variances (``latent_pcs_whiten``); a constant column is left as it is.
    """
    sd = scores.std(axis=0, dtype=np.float64)
    level = np.sqrt(np.mean(sd**2))
    factor = np.where(sd > 0, level / np.where(sd > 0, sd, 1.0), 1.0)
    return np.ascontiguousarray(scores * factor, dtype=np.float32)


def input_pcs_for(input_pca: int, n_features: int) -> int:
    """Principal components the network reads for ``input_pca`` and A's width (0: none)."""
    return int(input_pca) if 0 < input_pca < n_features else 0


class LatentPCARegularised(nn.Module):
    """Training wrapper: a LIBRA network whose latent space must also predict the input's PCs.

    ``auxiliary_loss(rows)`` is ``weight`` x the MSE of a linear map of the latent coordinates of
    the last training minibatch to the precomputed PC scores of those rows. The wrapper exists
    only during training; the fitted network (``.net``) is what the model keeps.
    """

    def __init__(self, net: nn.Module, scores: np.ndarray, weight: float):
        super().__init__()
        self.net = net
        self.head = nn.Linear(net.encoder.net[-1].out_features, scores.shape[1])
        self.register_buffer("scores", torch.from_numpy(scores), persistent=False)
        self.weight = float(weight)
        self._z = None

    def encode(self, x):  # noqa: D102
        return self.net.encode(x)

    def decode(self, z):  # noqa: D102
        return self.net.decode(z)

    def forward(self, x):  # noqa: D102
        z = self.net.encode(x)
        self._z = z if self.training else None
        return self.net.decode(z)

    def _pc_error(self, z, rows) -> torch.Tensor:
        """MSE of the linear prediction of the rows' PC scores from their latent ``z``."""
        idx = torch.as_tensor(np.asarray(rows), device=self.scores.device)
        return torch.mean((self.head(z) - self.scores[idx]) ** 2)

    def warmup_loss(self, x, rows) -> torch.Tensor:
        """Unweighted :meth:`_pc_error` of the latent coordinates of ``x`` (the rows' modality
        A): the warm-up's loss, which trains only the encoder and the head.
        """
        return self._pc_error(self.net.encode(x), rows)

    def auxiliary_loss(self, rows) -> torch.Tensor:
        """Weighted :meth:`_pc_error` of the last training minibatch's latent coordinates."""
        return self.weight * self._pc_error(self._z, rows)
