"""The training loop shared by LIBRA and its consistency network.

Minibatches are read from a :class:`~sclibra._data.Matrix` one at a time, so sparse and on-disk
inputs are never densified as a whole. Training is monitored on a validation split: the
learning rate drops on plateau, training stops early, and the best weights are restored.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._data import Matrix
from ._settings import logger, settings

#: below this density, sparse minibatches go through torch.sparse.mm instead of being densified
SPARSE_DENSITY_THRESHOLD = 0.1


def to_tensor(m: Matrix, idx: np.ndarray, device, sparse: bool) -> torch.Tensor:
    """One minibatch of ``m`` as a tensor on ``device`` (sparse CSR or dense float32).

    A sparse minibatch is handed to torch as CSR, straight from the scipy block's arrays: no
    COO conversion and no coalescing sort, and ``F.linear`` / ``torch.sparse.mm`` with a CSR
    left operand is several times faster on CPU than with COO (benchmarks/bench_scaling.py).
    """
    if sparse:
        block = m.sparse_rows(idx)
        block.sum_duplicates()  # canonical CSR (sorted, unique columns); no-op when already so
        with warnings.catch_warnings():
            # torch warns (once) that CSR support is "beta"; the ops used here are stable
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            t = torch.sparse_csr_tensor(
                torch.from_numpy(block.indptr.astype(np.int64)),
                torch.from_numpy(block.indices.astype(np.int64)),
                torch.from_numpy(block.data.astype(np.float32, copy=False)),
                size=block.shape,
                dtype=torch.float32,
                check_invariants=False,  # canonical by construction (sum_duplicates above)
            )
        return t.to(device)
    return torch.from_numpy(m.dense_rows(idx)).to(device)


def use_sparse_path(m: Matrix, device) -> bool:
    """Whether minibatches of ``m`` should stay sparse on the way into the first layer."""
    return m.is_sparse and m.density() < SPARSE_DENSITY_THRESHOLD


@dataclass
class TrainResult:
    """What a training run produced."""

    history: pd.DataFrame
    best_epoch: int
    best_loss: float
    n_epochs: int
    stopped_by: str
    monitor: str


def _targets(y, idx, device):
    if isinstance(y, Matrix):
        return torch.from_numpy(y.dense_rows(idx)).to(device)
    return torch.from_numpy(np.ascontiguousarray(y[idx], dtype=np.float32)).to(device)


@torch.no_grad()
def evaluate_loss(module, x: Matrix, y, idx, *, batch_size, device, sparse, loss="mse") -> float:
    """Mean training loss (``loss``, default squared error) over ``idx`` in eval mode."""
    from ._recipe import loss_function

    loss_fn = loss_function(loss)
    module.eval()
    total, count = 0.0, 0
    for start in range(0, len(idx), batch_size):
        b = idx[start : start + batch_size]
        out = module(to_tensor(x, b, device, sparse))
        tgt = _targets(y, b, device)
        total += float(loss_fn(out, tgt)) * tgt.numel()
        count += tgt.numel()
    return total / max(count, 1)


@torch.no_grad()
def apply_module(fn: Callable, x: Matrix, *, batch_size: int, device, sparse: bool) -> np.ndarray:
    """Run ``fn`` (eval mode) over all rows of ``x`` in minibatches and stack the outputs."""
    outs = []
    for start in range(0, x.n_obs, batch_size):
        idx = np.arange(start, min(start + batch_size, x.n_obs))
        outs.append(fn(to_tensor(x, idx, device, sparse)).cpu().numpy())
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outs, axis=0)


def train_module(
    module: nn.Module,
    x: Matrix,
    y,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    batch_size: int,
    learning_rate: float,
    max_epochs: int,
    early_stopping_patience: int,
    lr_patience: int,
    lr_factor: float,
    min_lr: float,
    seed: int | None,
    device,
    progress: bool,
    desc: str = "training",
    on_epoch: Callable[[int, float, float], bool] | None = None,
    loss: str = "mse",
    weight_decay: float = 0.0,
) -> TrainResult:
    """Train ``module`` to map rows of ``x`` to rows of ``y`` with ``loss`` (``"mse"``/``"bce"``).

    ``weight_decay > 0`` uses AdamW (decoupled weight decay) instead of Adam.

    ``y`` is a :class:`Matrix` (modality B) or an array of targets (latent coordinates).
    Validation loss is monitored when ``val_idx`` is not empty; otherwise training loss is
    monitored (the published behaviour). The module ends with its best weights.
    """
    from tqdm.auto import tqdm

    sparse = use_sparse_path(x, device)
    module.to(device)
    from ._recipe import loss_function

    loss_name, loss_fn = loss, loss_function(loss)
    if weight_decay > 0:
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
    else:
        optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=lr_factor, patience=lr_patience, min_lr=min_lr
    )
    rng = np.random.default_rng(seed)
    monitor = "val_loss" if len(val_idx) else "train_loss"
    best_loss, best_epoch, best_state = math.inf, 0, None
    rows, stopped_by, since_best = [], "max_epochs", 0
    if settings.num_threads:
        torch.set_num_threads(int(settings.num_threads))

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        bar = tqdm(
            range(1, max_epochs + 1), desc=desc, disable=not progress, leave=False, unit="epoch"
        )
        for epoch in bar:
            t0 = time.perf_counter()
            module.train()
            order = rng.permutation(train_idx)
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                b = order[start : start + batch_size]
                xb = to_tensor(x, b, device, sparse)
                yb = _targets(y, b, device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(module(xb), yb)
                if hasattr(module, "auxiliary_loss"):  # e.g. the latent PCA regulariser
                    loss = loss + module.auxiliary_loss(b)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the training loss became {float(loss)} at epoch {epoch}; try a lower "
                        "learning_rate or check the input scale (e.g. log-normalise counts)"
                    )
                loss.backward()
                optimizer.step()
                total += loss.item() * yb.numel()
                count += yb.numel()
            train_loss = total / max(count, 1)
            val_loss = (
                evaluate_loss(
                    module,
                    x,
                    y,
                    val_idx,
                    batch_size=max(batch_size, 1024),
                    device=device,
                    sparse=sparse,
                    loss=loss_name,
                )
                if len(val_idx)
                else float("nan")
            )
            current = val_loss if len(val_idx) else train_loss
            lr = optimizer.param_groups[0]["lr"]
            rows.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if current < best_loss:
                best_loss, best_epoch, since_best = current, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                since_best += 1
            scheduler.step(current)
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", lr=f"{lr:.0e}")
            if on_epoch is not None and on_epoch(epoch, train_loss, val_loss):
                stopped_by = "callback"
                break
            if since_best >= early_stopping_patience:
                stopped_by = "early_stopping"
                break
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "lr", "seconds"])
    logger.debug(
        "%s: %d epochs, best %s %.5g at epoch %d", desc, len(rows), monitor, best_loss, best_epoch
    )
    return TrainResult(history, best_epoch, float(best_loss), len(rows), stopped_by, monitor)
