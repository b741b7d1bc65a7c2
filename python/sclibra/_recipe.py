"""The training recipe of LIBRA: presets, loss choice, ensembles and batch-aware validation.

One source of truth for every recipe default: :data:`PRESETS`. ``LIBRA()`` and ``LIBRA.fit()``
read their defaults from the preset named by ``LIBRA(preset=...)``; explicit arguments win.
The evidence for each default is ``benchmarks/results/bench_peers_ablation.md``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._errors import SclibraError
from ._module import OUTPUT_ACTIVATIONS

#: architecture / optimiser arguments of ``LIBRA()`` (in the order of its signature)
MODEL_KEYS = (
    "n_layers",
    "n_nodes",
    "alpha",
    "dropout",
    "latent_dim",
    "output_activation",
    "batch_size",
    "learning_rate",
    "n_models",
    "loss",
    "weight_decay",
    "latent_pca",
    "start_at_mean",
)
#: schedule arguments of ``LIBRA.fit()``
FIT_KEYS = (
    "validation_split",
    "max_epochs",
    "early_stopping_patience",
    "lr_patience",
    "lr_factor",
    "min_lr",
)

#: one line of help per recipe argument (the command line shows it; docstrings say more)
RECIPE_HELP = {
    "n_layers": "Dense -> LeakyReLU -> Dropout blocks in the encoder (mirrored in the decoder)",
    "n_nodes": "width of the first block; each further block halves it",
    "alpha": "LeakyReLU slope",
    "dropout": "dropout rate after each block",
    "latent_dim": "size of the bottleneck (per ensemble member)",
    "output_activation": "output activation (auto: from the target)",
    "batch_size": "minibatch size",
    "learning_rate": "Adam learning rate",
    "n_models": "ensemble size",
    "loss": "loss (auto: BCE for binary targets, else MSE)",
    "weight_decay": "decoupled weight decay (AdamW) when > 0",
    "latent_pca": "weight of the latent regulariser (latent predicts the input's top PCs)",
    "start_at_mean": "start the output layer at the mean baseline",
    "validation_split": "share of training cells held out to monitor training",
    "max_epochs": "epoch limit",
    "early_stopping_patience": "epochs without improvement before stopping",
    "lr_patience": "epochs without improvement before the learning rate drops",
    "lr_factor": "factor of each learning-rate drop",
    "min_lr": "lowest learning rate",
}
#: allowed values of the recipe arguments that take names
RECIPE_CHOICES = {
    "output_activation": ("auto", *OUTPUT_ACTIVATIONS),
    "loss": ("auto", "mse", "bce"),
}

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
    "start_at_mean": False,
    "validation_split": 0.0,
    "max_epochs": 1500,
    "early_stopping_patience": 20,
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
}

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
    """``fn(prediction, target) -> scalar`` of a loss name (the prediction is the module output)."""
    if name == "mse":
        return lambda out, tgt: torch.mean((out - tgt) ** 2)
    if name == "bce":
        # the module ends in a sigmoid; clamping keeps the log finite for saturated outputs
        return lambda out, tgt: F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), tgt)
    raise SclibraError(f"unknown loss {name!r}")


class EnsembleNet(nn.Module):
    """``n`` independently trained LIBRA networks used as one.

    ``encode`` concatenates the members' latent coordinates (each member's latent space has its
    own arbitrary rotation, so averaging them would mix unrelated axes); ``decode`` splits that
    concatenation and averages the members' predictions, so ``decode(encode(x))`` is exactly the
    mean of the members' predictions.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.latent_dim = members[0].encoder.net[-1].out_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.cat([m.encode(x) for m in self.members], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d = self.latent_dim
        outs = [m.decode(z[:, i * d : (i + 1) * d]) for i, m in enumerate(self.members)]
        return torch.stack(outs).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.decode(self.encode(x))


def split_by_batch(batches: np.ndarray, validation_split: float, seed: int):
    """(training, validation) row positions holding out whole batches (donors).

    Batches are shuffled with ``seed`` and added to validation until it holds about
    ``validation_split`` of the cells; training always keeps at least one batch. Returns ``None``
    when there are fewer than two batches (the caller falls back to a random split).
    """
    levels = np.unique(batches)
    if len(levels) < 2 or validation_split <= 0:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(levels)
    target = validation_split * len(batches)
    val_levels, size = [], 0
    for lev in order[:-1]:
        k = int((batches == lev).sum())
        if val_levels and abs(size + k - target) > abs(size - target):
            continue
        val_levels.append(lev)
        size += k
        if size >= target:
            break
    is_val = np.isin(batches, val_levels)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


#: principal components of the input the latent space must predict (``latent_pca > 0``)
LATENT_PCA_COMPONENTS = 50
#: cells used to fit the input PCA of the latent regulariser (a subsample on large data)
PCA_MAX_CELLS = 20000


def input_pc_scores(m, n_pcs: int, seed: int) -> np.ndarray:
    """Top ``n_pcs`` principal-component scores of every row of ``m`` (float32, rows of ``m``).

    The PCA (implicitly centred for sparse input, never densified) is fitted on at most
    :data:`PCA_MAX_CELLS` rows and applied block by block. Scores are divided by the standard
    deviation of the first component, so the regulariser's scale does not depend on the data's.
    """
    import scipy.sparse as sp

    from .metrics._utils import pca_scores, pca_transform

    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.permutation(m.n_obs)[:PCA_MAX_CELLS])
    sample = m.sparse_rows(fit_rows) if m.is_sparse else m.dense_rows(fit_rows)
    est, _ = pca_scores(sample, n_pcs, seed=seed)
    blocks = []
    for start in range(0, m.n_obs, 4096):
        idx = np.arange(start, min(start + 4096, m.n_obs))
        x = m.sparse_rows(idx) if m.is_sparse else m.dense_rows(idx)
        blocks.append(pca_transform(est, x if sp.issparse(x) else np.asarray(x)))
    scores = np.concatenate(blocks).astype(np.float32)
    return scores / max(float(scores[:, 0].std()), 1e-8)


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

    def auxiliary_loss(self, rows) -> torch.Tensor:
        """Weighted MSE of the latent's linear prediction of the rows' PC scores."""
        idx = torch.as_tensor(np.asarray(rows), device=self.scores.device)
        return self.weight * torch.mean((self.head(self._z) - self.scores[idx]) ** 2)
