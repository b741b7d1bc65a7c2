"""The training loop shared by LIBRA and its consistency network.

Minibatches are read from a :class:`~sclibra._data.Matrix` one at a time, so sparse and on-disk
inputs are never densified as a whole. Training is monitored on a validation split: the
learning rate drops on plateau, training stops early, and the best weights are restored.

Speed (``benchmarks/bench_speed.py``): in-memory dense data up to :data:`DENSE_CACHE_BYTES` is
turned into one float32 tensor once and minibatches are gathered from it; a sparse minibatch
goes to the first layer as a :class:`~sclibra._module.SparseRows` block on CPU (scipy kernels for
the product and the weight gradient) or as a torch CSR tensor on CUDA; Adam is the fused kernel
where torch has one, called through :mod:`sclibra._optim` (``torch.optim`` would import the
compiler, seconds per process); the thread count is decided per run
(:func:`sclibra._settings.training_threads`) and the caller's is restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ._data import Matrix
from ._module import Decoder, Dropout, FactorOutput, SparseRows
from ._optim import PlateauSchedule, make_optimizer
from ._recipe import LR_THRESHOLD, MIN_PATIENCE, MIN_PATIENCE_STEPS, loss_function
from ._settings import cores_within_quota, cpu_quota, logger, training_threads, usable_cores

#: below this density, sparse minibatches go through the sparse first layer instead of being densified
SPARSE_DENSITY_THRESHOLD = 0.1
#: in-memory matrices whose dense float32 copy is at most this big are converted to one tensor
#: once per training run; larger (or on-disk) ones are read one minibatch at a time
DENSE_CACHE_BYTES = 256 * 2**20


def _csr_tensor(block: sp.spmatrix, device) -> torch.Tensor:
    """A scipy block as a torch CSR tensor on ``device`` (for torch's own sparse kernels)."""
    block = sp.csr_matrix(block, dtype=np.float32)
    block.sum_duplicates()  # canonical CSR (sorted, unique columns); no-op when already so
    with warnings.catch_warnings():
        # torch warns (once) that CSR support is "beta"; the ops used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        t = torch.sparse_csr_tensor(
            torch.from_numpy(block.indptr.astype(np.int64)),
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.data),
            size=block.shape,
            dtype=torch.float32,
            check_invariants=False,  # canonical by construction (sum_duplicates above)
        )
    return t.to(device, non_blocking=True) if device.type != "cpu" else t


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    if device.type == "cpu":
        return t
    if torch.cuda.is_available():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def to_tensor(m: Matrix, idx: np.ndarray, device, sparse: bool):
    """One minibatch of ``m`` for the first layer, on ``device``.

    Sparse: a :class:`~sclibra._module.SparseRows` block on CPU, a torch CSR tensor elsewhere;
    the minibatch is never densified. Dense: a float32 tensor.
    """
    if sparse:
        block = m.sparse_rows(idx)
        if device.type == "cpu":
            return SparseRows(block)
        return _csr_tensor(block, device)
    return _to_device(torch.from_numpy(m.dense_rows(idx)), device)


def use_sparse_path(m: Matrix, device) -> bool:
    """Whether minibatches of ``m`` should stay sparse on the way into the first layer."""
    return m.is_sparse and m.density() < SPARSE_DENSITY_THRESHOLD


class SparseTarget:
    """A minibatch of a sparse target, kept sparse (for the closed-form :func:`mse`).

    ``csr`` is the scipy block (CPU kernels); on other devices ``rows``, ``cols`` and ``values``
    hold its non-zero entries as tensors. ``col_sums`` (per output feature) and ``sq_sum`` are
    what the loss needs of the target besides its products. ``numel()`` is that of the dense
    minibatch (losses are means over every entry).
    """

    __slots__ = ("col_sums", "cols", "csr", "device", "rows", "shape", "sq_sum", "values")

    def __init__(self, block: sp.spmatrix, device, dtype=torch.float32) -> None:
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        csr = sp.csr_matrix(block, dtype=np_dtype)
        if not csr.has_canonical_format:
            csr.sum_duplicates()
        self.csr, self.shape, self.device = csr, csr.shape, device
        data = csr.data.astype(np.float64)
        self.sq_sum = float(np.square(data).sum())  # not np.dot: BLAS threads would spin per step
        col_sums = np.asarray(csr.sum(axis=0), dtype=np_dtype).ravel()
        self.col_sums = _to_device(torch.from_numpy(col_sums), device)
        self.rows = self.cols = self.values = None
        if device is not None and device.type != "cpu":
            rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
            self.rows = _to_device(torch.from_numpy(rows), device)
            self.cols = _to_device(torch.from_numpy(csr.indices.astype(np.int64)), device)
            self.values = _to_device(torch.from_numpy(csr.data), device)

    def numel(self) -> int:  # noqa: D102
        return int(self.shape[0]) * int(self.shape[1])

    def dense(self) -> torch.Tensor:
        """The minibatch as a dense tensor."""
        out = torch.from_numpy(self.csr.toarray())
        return _to_device(out, self.device) if self.device is not None else out


class _ClosedFormMSE(torch.autograd.Function):
    """The summed squared error of ``pred = h W^T + b`` against a CPU scipy CSR ``Y``, and its
    gradients, without ``pred``: see :func:`mse`.

    Forward needs ``G = W^T W`` and ``Y W``; backward ``W (h^T h)``, ``Y^T h`` and small
    vectors: two ``n_output x rank^2`` products and two sparse ones per step, no gather or
    scatter of weight rows and no ``n_output``-wide intermediate per cell.
    """

    @staticmethod
    def forward(ctx, h, w, b, target):  # noqa: D102
        h, w, b = h.detach(), w.detach(), b.detach()
        y = target.csr
        gram, wtb = w.t() @ w, w.t() @ b
        yw = torch.from_numpy(y @ w.numpy())  # (batch, rank)
        col, hh = h.sum(0), h.t() @ h
        n_cells = h.shape[0]
        total = (
            (gram * hh).sum()
            + 2.0 * (col @ wtb)
            + n_cells * (b @ b)
            - 2.0 * ((h * yw).sum() + target.col_sums @ b)
            + target.sq_sum
        )
        ctx.save_for_backward(h, w, b, gram, wtb, yw, col, hh)
        ctx.target = target
        return total

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        h, w, b, gram, wtb, yw, col, hh = ctx.saved_tensors
        target = ctx.target
        k = 2.0 * grad
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.addmm(wtb - yw, h, gram).mul_(k)
        if ctx.needs_input_grad[1]:
            # k (W h^T h - Y^T h + b col^T), built in the (n_output, rank) array scipy returns:
            # one pass for the rank-one term, the product added in place by the BLAS call
            grad_w = torch.from_numpy(target.csr.T @ h.contiguous().numpy())  # Y^T h
            grad_w.addr_(b, col, alpha=-1.0).addmm_(w, hh, beta=-k, alpha=k)
        if ctx.needs_input_grad[2]:
            grad_b = torch.addmv(b * h.shape[0] - target.col_sums, w, col).mul_(k)
        return grad_h, grad_w, grad_b, None


def use_sparse_target(m) -> bool:
    """Whether minibatches of the target ``m`` can stay sparse for a closed-form MSE (the rule
    of :func:`use_sparse_path`, for a :class:`Matrix` target).
    """
    return isinstance(m, Matrix) and use_sparse_path(m, None)


def mse(out, target) -> torch.Tensor:
    """Mean squared error of ``out`` (a tensor or a :class:`~sclibra._module.FactorOutput`)
    against ``target`` (a tensor or a :class:`SparseTarget`).

    A factorised output against a sparse target is computed without multiplying the output out:
    with ``pred = h W^T + b`` (``W`` of shape (n_output, rank)),
    ``sum (pred - y)^2 = sum(h G * h) + 2 sum(h W^T b) + n_cells |b|^2
    - 2 (sum(h * (Y W)) + b . colsums(Y)) + sum y^2`` with ``G = W^T W`` (rank x rank):
    ``O(n_output x rank^2 + nnz x rank)`` per step instead of ``O(batch x rank x n_output)``
    for the product, the loss and their gradients. The value and the gradients are those of
    ``F.mse_loss`` on the pre-activation, to rounding.
    """
    if isinstance(out, FactorOutput):
        h, w, b = out
        if isinstance(target, SparseTarget):
            n_cells, n_out = target.shape
            if target.rows is None:  # CPU: scipy's sparse products, gradients in closed form
                return _ClosedFormMSE.apply(h, w, b, target) / (n_cells * n_out)
            gram = w.t() @ w
            pred_sq = ((h @ gram) * h).sum() + 2.0 * (h @ (w.t() @ b)).sum() + n_cells * (b @ b)
            pairs = h.index_select(0, target.rows) * w.index_select(0, target.cols)
            cross = (target.values * pairs.sum(1)).sum() + target.col_sums @ b
            return (pred_sq - 2.0 * cross + target.sq_sum) / (n_cells * n_out)
        out = torch.addmm(b, h, w.t())
    if isinstance(target, SparseTarget):
        target = target.dense()
    return F.mse_loss(out, target)


def _decoders(module: nn.Module) -> list[Decoder]:
    return [m for m in module.modules() if isinstance(m, Decoder)]


@contextlib.contextmanager
def _set_on_modules(module: nn.Module, kind: type, attr: str, value, enabled: bool = True):
    """Within the block (when ``enabled``), set ``attr`` to ``value`` on every submodule of
    ``module`` of class ``kind``; each is restored after.
    """
    targets = [m for m in module.modules() if isinstance(m, kind)] if enabled else []
    before = [getattr(m, attr) for m in targets]
    for m in targets:
        setattr(m, attr, value)
    try:
        yield
    finally:
        for m, b in zip(targets, before):
            setattr(m, attr, b)


def _dropout_generator(module: nn.Module, generator: torch.Generator | None):
    """Within the block, the :class:`~sclibra._module.Dropout` layers of ``module`` draw their
    CPU masks from ``generator`` (nothing changes when it is ``None``); restored after.
    """
    return _set_on_modules(module, Dropout, "generator", generator, generator is not None)


def factor_outputs(module: nn.Module, enabled: bool):
    """Within the block (when ``enabled``), the factorised decoders of ``module`` return a
    :class:`~sclibra._module.FactorOutput` for :func:`mse`; restored after.
    """
    return _set_on_modules(module, Decoder, "emit_factors", True, enabled)


def closed_form_mse(module: nn.Module, y, loss) -> bool:
    """Whether ``module`` trains on ``y`` with the closed-form MSE of :func:`mse`: an MSE loss,
    a sparse target and a factorised output layer whose activation is linear or ReLU.

    With ReLU the loss is that of the output's pre-activation (a linear output trained with MSE,
    clipped at zero in prediction), see ``benchmarks/results/bench_peers_ablation_wide.md``.
    """
    if loss != "mse" or not use_sparse_target(y):
        return False
    decoders = _decoders(module)
    return bool(decoders) and all(
        d.factorised and d.output_activation in ("linear", "relu") for d in decoders
    )


class RowSource:
    """Minibatches of rows of a :class:`Matrix` (or an array), prepared once per training run.

    An in-memory matrix whose dense float32 copy fits in :data:`DENSE_CACHE_BYTES` becomes one
    tensor on ``device`` (one conversion instead of one per minibatch and epoch); sparse input
    for the first layer and large or on-disk matrices are read one minibatch at a time.
    """

    def __init__(self, m, device, *, sparse: bool = False, sparse_target: bool = False) -> None:
        self.m, self.device, self.sparse = m, device, sparse
        self.sparse_target = sparse_target
        self.cached: torch.Tensor | None = None
        if sparse_target:
            return
        if isinstance(m, Matrix):
            n, p = m.shape
            if not sparse and not m.is_backed and 4 * n * p <= DENSE_CACHE_BYTES:
                self.cached = _to_device(torch.from_numpy(m.dense_rows(np.arange(n))), device)
        else:
            self.cached = _to_device(
                torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)), device
            )

    @property
    def per_batch_work(self) -> bool:
        """Whether each minibatch is read and converted anew (not gathered from a cached tensor)."""
        return self.cached is None

    def __call__(self, idx: np.ndarray):
        if self.sparse_target:
            return SparseTarget(self.m.sparse_rows(idx), self.device)
        if self.cached is not None:
            rows = torch.from_numpy(np.asarray(idx, dtype=np.int64))
            return self.cached.index_select(0, rows.to(self.cached.device, non_blocking=True))
        return to_tensor(self.m, idx, self.device, self.sparse)


class Minibatches:
    """The minibatches of one epoch, in order; the next one prepared in a background thread.

    With ``ahead`` true, while the caller trains on minibatch ``i``, one worker thread reads and
    converts minibatch ``i + 1`` (row slicing, CSC conversion of a sparse input, the sums of a
    sparse target). Those are scipy/numpy kernels that release the GIL, so on a machine with a
    spare core they cost no wall time (measured: the CSC conversion was 43 of the 150 ms of a
    step at 4,096 x 100,000 in ``benchmarks/bench_scaling.py``). The minibatches and their order
    are the same either way; only one is prepared ahead, so memory grows by one minibatch. An
    error raised while preparing one is raised here, in the caller's thread.
    """

    def __init__(
        self, xs: RowSource, ys: RowSource, order: np.ndarray, batch_size: int, ahead: bool
    ) -> None:
        self.xs, self.ys = xs, ys
        self.batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        self.ahead = ahead and len(self.batches) > 1

    def _load(self, b):
        return b, self.xs(b), self.ys(b)

    def __iter__(self):
        if not self.ahead:
            for b in self.batches:
                yield self._load(b)
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sclibra-minibatch")
        try:
            pending = pool.submit(self._load, self.batches[0])
            for nxt in self.batches[1:]:
                ready = pending.result()
                pending = pool.submit(self._load, nxt)
                yield ready
            yield pending.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def prefetch_minibatches(xs: RowSource, ys: RowSource, n_threads: int) -> bool:
    """Whether to prepare minibatches ahead (:class:`Minibatches`): only when they cost work
    per step and the process may use a core beyond the ``n_threads`` torch trains with.
    """
    if not (xs.per_batch_work or ys.per_batch_work):
        return False
    return cores_within_quota(usable_cores(), cpu_quota()) > n_threads


def lr_threshold(min_delta: float) -> float:
    """The learning-rate schedule's threshold: a relative decrease of the monitored loss that
    counts as progress. ``min_delta`` when larger than :data:`~sclibra._recipe.LR_THRESHOLD`
    (torch's and the published model's 1e-4), so the schedule and early stopping agree on what
    an improvement is; else 1e-4.
    """
    return max(LR_THRESHOLD, float(min_delta))


def member_workers(n_models: int, device, flops_per_step: float) -> tuple[int, int]:
    """``(workers, threads)``: how many ensemble members train side by side, and the torch
    threads of each.

    Members are independent trainings of a small network, so on CPU they are spread over the
    threads the run may use (:func:`sclibra._settings.training_threads`: the cores this
    process may use, the cgroup quota, the load, ``settings.num_threads``) one member per
    thread, which scales far better than splitting each small matrix product over threads.
    One worker (members in turn, as before) on other devices, for a single model, and when the
    thread decision gives one thread.

    More members than threads, but fewer than twice as many and not a multiple (3 members on 2
    threads), all run at once, one thread each, sharing the threads: in rounds the last one
    would train alone while the other threads idle. On 2 cores the default 3-model fit was
    1.06-1.13x faster that way, with the same models
    (``benchmarks/results/bench_speed_members.md``).
    """
    if n_models < 2 or device.type != "cpu":
        return 1, 0
    n_threads = training_threads(flops_per_step)
    n_models = int(n_models)
    if n_threads < 2:
        return 1, 0
    if n_models <= n_threads:
        return n_models, n_threads // n_models
    if n_models % n_threads and n_models < 2 * n_threads:
        return n_models, 1
    return n_threads, 1


def train_side_by_side(
    train_one: Callable[[int, Callable], TrainResult],
    n: int,
    workers: int,
    *,
    threads: int,
    check: Callable[[TrainResult], None],
    progress: bool,
    desc: str,
    on_epoch: Callable[[int, int, float, float], bool] | None = None,
) -> list[TrainResult | None]:
    """Run ``train_one(k, on_epoch)`` for ``k = 0 .. n - 1`` in ``workers`` threads.

    Each run draws its random numbers from its own generator (see :func:`_train`), so the
    results are those of running them in turn. This thread keeps everything that may not leave
    it (progress bars and callbacks, which R runs on its own thread only, and ``check``, called
    on each result as it arrives): it shows one bar over the runs, with the epochs each has
    trained, and calls ``on_epoch(k, epoch, train_loss, val_loss)`` for every finished epoch of
    every run, in the order they finish. When it returns ``True`` every run stops at the end of
    its current epoch and runs not yet started are skipped (``None`` in the list returned: always
    the last ones). An error in a run, or in ``check``, stops the others the same way and is
    raised here; so does an interrupt.
    """
    import queue
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tqdm.auto import tqdm

    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    epochs = ["-"] * n

    def run(k):
        if stop.is_set():  # stopped before this run started
            return None

        def relay(epoch, train_loss, val_loss):
            if on_epoch is None:  # progress only: carry on
                events.put((k, epoch, train_loss, val_loss, None))
                return stop.is_set()
            # a callback may stop the run: wait for its answer before the next epoch
            answer: queue.SimpleQueue = queue.SimpleQueue()
            events.put((k, epoch, train_loss, val_loss, answer))
            while True:
                try:
                    return answer.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return True

        return train_one(k, relay)

    results: list[TrainResult | None] = [None] * n
    bar = tqdm(total=n, desc=desc, disable=not progress, leave=False, unit="model")
    with torch_threads(threads), ThreadPoolExecutor(workers, "sclibra-member") as pool:
        futures = {pool.submit(run, k): k for k in range(n)}
        pending = set(futures)
        try:
            while pending:
                arrived = []
                if on_epoch is None:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                else:  # answer each epoch as soon as it ends
                    with contextlib.suppress(queue.Empty):
                        arrived.append(events.get(timeout=0.05))
                    done = {f for f in pending if f.done()}
                    pending -= done
                while not events.empty():
                    arrived.append(events.get())
                for k, epoch, train_loss, val_loss, answer in arrived:
                    epochs[k] = str(epoch)
                    if answer is not None:
                        if not stop.is_set() and on_epoch(k, epoch, train_loss, val_loss):
                            stop.set()
                        answer.put(stop.is_set())
                for f in sorted(done, key=futures.get):
                    k = futures[f]
                    results[k] = f.result()
                    if results[k] is not None:
                        check(results[k])
                        bar.update(1)
                bar.set_postfix_str("epochs " + " ".join(epochs), refresh=True)
        except BaseException:
            stop.set()
            for f in pending:
                f.cancel()
            raise
        finally:
            bar.close()
    return list(results)


def training_step_flops(module: nn.Module, x: Matrix, batch_size: int, device) -> float:
    """:func:`step_flops` of training ``module`` on rows of ``x``: the first layer's work scaled
    by ``x``'s density when its minibatches stay sparse (:func:`use_sparse_path`).
    """
    return step_flops(module, batch_size, x.density() if use_sparse_path(x, device) else 1.0)


def step_flops(module: nn.Module, batch_size: int, first_density: float = 1.0) -> float:
    """Rough floating-point operations of one training step (forward + backward)."""
    total = 0.0
    first = True
    for mod in module.modules():
        if isinstance(mod, nn.Linear):
            w = mod.in_features * mod.out_features
            total += w * (first_density if first else 1.0)
            first = False
    return 6.0 * batch_size * total


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads; restore the caller's count afterwards."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@dataclass(frozen=True)
class Schedule:
    """The training options of one run, in one structure.

    :meth:`sclibra.LIBRA.fit` and :meth:`~sclibra.LIBRA.fit_b_encoder` resolve them (the user's
    arguments, else the model's preset) and check their bounds once; :func:`train_module` only
    reads them.

    Attributes
    ----------
    batch_size, learning_rate
        Minibatch size and the optimizer's starting learning rate.
    max_epochs, early_stopping_patience, lr_patience, lr_factor, min_lr
        Stop after ``max_epochs``, or after ``early_stopping_patience`` epochs without
        improvement; multiply the learning rate by ``lr_factor`` (down to ``min_lr``) after
        ``lr_patience`` such epochs.
    min_delta
        Relative decrease of the monitored loss that resets the early-stopping patience (the
        best weights follow any decrease).
    adaptive_patience
        A model whose last improvement came within its first few epochs waits only those
        epochs for the next (:func:`patience_after`), not ``early_stopping_patience``.
    latent_warmup
        Optimizer steps that train a module with a ``warmup_loss(x, rows)`` (the latent
        regulariser) on that loss alone before the training proper (:func:`warm_up`).
    stop_at_min_lr
        Stop (as early stopping) at the plateau that brings the learning rate down to
        ``min_lr``, instead of training on at ``min_lr``.
    ema_decay
        Decay of an exponential moving average of the trainable weights, updated after every
        optimizer step; validation and the kept weights read the average (0: off).
    weight_decay
        Decoupled weight decay (AdamW) when > 0, else Adam.
    loss
        ``"mse"``, ``"bce"`` or ``fn(prediction, target)`` returning a minibatch's mean loss.
    """

    batch_size: int
    learning_rate: float
    max_epochs: int
    early_stopping_patience: int
    lr_patience: int
    lr_factor: float
    min_lr: float
    weight_decay: float = 0.0
    loss: object = "mse"
    min_delta: float = 0.0
    adaptive_patience: bool = False
    latent_warmup: int = 0
    stop_at_min_lr: bool = False
    ema_decay: float = 0.0


class WeightAverage:
    """An exponential moving average of a module's trainable weights (``ema_decay``).

    :meth:`update` after each optimizer step; :meth:`swap` exchanges the module's weights and
    the average in place (call it twice to get the training weights back), so evaluating and
    keeping the best weights need no copy of the network.

    The ``t``-th update uses the decay ``min(ema_decay, 1 - 1 / t)``: the average is the plain
    mean of the weights after every step so far until it holds ``1 / (1 - ema_decay)`` steps,
    then the moving average. It never holds on to the random start, so a short training (a few
    epochs of a few steps) keeps what it learned.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]
        self.decay = float(decay)
        self.n_updates = 0
        self._buffer: list[torch.Tensor] | None = None

    def decay_now(self) -> float:
        """The decay of the next update."""
        t = self.n_updates + 1
        return min(self.decay, 1.0 - 1.0 / t)

    @torch.no_grad()
    def update(self) -> None:
        """``average += (1 - decay) * (weights - average)``."""
        weight = 1.0 - self.decay_now()
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], weight)
        self.n_updates += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the module's weights and the average (through one buffer, allocated once)."""
        if self._buffer is None:
            self._buffer = [torch.empty_like(p) for p in self.params]
        for p, a, tmp in zip(self.params, self.average, self._buffer):
            tmp.copy_(p)
            p.copy_(a)
            a.copy_(tmp)


def warm_up(module, xs: RowSource, train_idx, schedule: Schedule, rng, device) -> None:
    """``schedule.latent_warmup`` optimizer steps on ``module.warmup_loss`` alone.

    Minibatches of ``schedule.batch_size`` training cells in random order (epoch after epoch,
    from ``rng``), training mode (dropout on), an optimizer of its own that the training proper
    does not inherit. Only what the warm-up loss reaches (the encoder and the regulariser's
    head) changes; modality B is not read. Nothing happens for a module without
    ``warmup_loss`` or with no steps asked.
    """
    warmup_loss = getattr(module, "warmup_loss", None)
    steps = schedule.latent_warmup
    if warmup_loss is None or steps <= 0 or len(train_idx) == 0:
        return
    optimizer = make_optimizer(
        module.parameters(), learning_rate=schedule.learning_rate, device=device
    )
    module.train()
    done = 0
    while done < steps:
        order = rng.permutation(train_idx)
        for start in range(0, len(order), schedule.batch_size):
            b = order[start : start + schedule.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = warmup_loss(xs(b), b)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    last = float(loss.detach())
    logger.debug("latent warm-up: %d steps, regulariser loss %.4g at the last", steps, last)
    if not math.isfinite(last):
        raise FloatingPointError(
            f"the latent regulariser's warm-up loss became {last}; try a lower "
            "learning_rate or latent_warmup=0"
        )
    optimizer.zero_grad(set_to_none=True)


def patience_after(epoch: int, patience: int, adaptive: bool, steps_per_epoch: int) -> int:
    """The epochs to wait for an improvement after one at ``epoch`` (1-based).

    ``patience``, except under ``adaptive`` for an improvement within the first ``w`` epochs,
    where ``w`` is :data:`~sclibra._recipe.MIN_PATIENCE` epochs and at least
    :data:`~sclibra._recipe.MIN_PATIENCE_STEPS` optimizer steps: then ``w`` (at most
    ``patience``). A model that has learned for longer than ``w`` epochs keeps the full
    patience, so a plateau that the learning-rate drop would end is waited out.
    """
    shortest = max(MIN_PATIENCE, -(-MIN_PATIENCE_STEPS // max(steps_per_epoch, 1)))
    if adaptive and epoch <= shortest:
        return min(patience, shortest)
    return patience


@dataclass
class TrainResult:
    """What a training run produced."""

    history: pd.DataFrame
    best_epoch: int
    best_loss: float
    n_epochs: int
    stopped_by: str
    monitor: str


def _loss_fn(loss):
    if callable(loss):
        return loss
    return mse if loss == "mse" else loss_function(loss)


def logits_for_bce(module: nn.Module, loss):
    """Within the block, a module trained with the ``"bce"`` loss returns logits (its decoders
    skip the final sigmoid), which that loss takes; the previous behaviour is restored after.
    """
    return _set_on_modules(module, Decoder, "emit_logits", True, loss == "bce")


@torch.no_grad()
def evaluate_loss(module, x, y, idx, *, batch_size, device=None, sparse=None, loss="mse") -> float:
    """Mean training loss over ``idx`` in eval mode (dropout off).

    ``loss`` is a loss name (``"mse"``, ``"bce"``) or ``fn(prediction, target)`` returning the
    mean loss of a minibatch.

    ``x`` and ``y`` are :class:`RowSource` objects (or a Matrix / target array, wrapped here).
    """
    loss_fn = _loss_fn(loss)
    if not isinstance(x, RowSource):
        x = RowSource(x, device, sparse=bool(sparse))
    if not isinstance(y, RowSource):
        y = RowSource(y, device)
    module.eval()
    total, count = 0.0, 0
    with logits_for_bce(module, loss):
        for start in range(0, len(idx), batch_size):
            b = idx[start : start + batch_size]
            tgt = y(b)
            total += float(loss_fn(module(x(b)), tgt)) * tgt.numel()
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
    schedule: Schedule,
    *,
    seed: int | None,
    device,
    progress: bool,
    desc: str = "training",
    on_epoch: Callable[[int, float, float], bool] | None = None,
    threads: int | None = None,
    prefetch: bool | None = None,
) -> TrainResult:
    """Train ``module`` to map rows of ``x`` to rows of ``y`` as ``schedule`` says.

    ``threads``: torch threads for this run (default: :func:`sclibra._settings.training_threads`);
    ``prefetch``: whether a worker thread prepares the next minibatch (default:
    :func:`prefetch_minibatches`). A caller running several trainings side by side sets both.

    A module with an ``auxiliary_loss(rows)`` method (e.g. the latent PCA regulariser) adds it
    to each step's loss; one with a ``warmup_loss(x, rows)`` method is first trained on that
    alone for ``schedule.latent_warmup`` steps (:func:`warm_up`).

    ``y`` is a :class:`Matrix` (modality B) or an array of targets (latent coordinates).
    Validation loss is monitored when ``val_idx`` is not empty; otherwise training loss is
    monitored (the published behaviour). The module ends with its best weights.
    """
    sparse = use_sparse_path(x, device)
    module.to(device)
    closed_form = closed_form_mse(module, y, schedule.loss)
    n_threads = threads or training_threads(
        training_step_flops(module, x, schedule.batch_size, device)
    )
    logger.debug("%s: %d torch threads", desc, n_threads)
    xs = RowSource(x, device, sparse=sparse)
    ys = RowSource(y, device, sparse_target=closed_form)
    ahead = prefetch_minibatches(xs, ys, n_threads) if prefetch is None else bool(prefetch)
    logger.debug("%s: minibatches prepared ahead: %s", desc, ahead)
    with torch_threads(n_threads), factor_outputs(module, closed_form):
        return _train(
            module,
            xs,
            ys,
            train_idx,
            val_idx,
            schedule,
            seed=seed,
            device=device,
            progress=progress,
            desc=desc,
            on_epoch=on_epoch,
            ahead=ahead,
        )


def _train(
    module,
    xs: RowSource,
    ys: RowSource,
    train_idx,
    val_idx,
    schedule: Schedule,
    *,
    seed,
    device,
    progress,
    desc,
    on_epoch,
    ahead=False,
) -> TrainResult:
    from tqdm.auto import tqdm

    batch_size, max_epochs = schedule.batch_size, schedule.max_epochs
    early_stopping_patience = schedule.early_stopping_patience
    loss_name, loss_fn = schedule.loss, _loss_fn(schedule.loss)
    auxiliary = getattr(module, "auxiliary_loss", None)
    optimizer = make_optimizer(
        module.parameters(),
        learning_rate=schedule.learning_rate,
        device=device,
        weight_decay=schedule.weight_decay,
    )
    scheduler = PlateauSchedule(
        optimizer,
        factor=schedule.lr_factor,
        patience=schedule.lr_patience,
        min_lr=schedule.min_lr,
        threshold=lr_threshold(schedule.min_delta),
    )
    rng = np.random.default_rng(seed)
    monitor = "val_loss" if len(val_idx) else "train_loss"
    best_loss, best_epoch = math.inf, 0
    anchor = math.inf  # the loss of the last epoch that reset the patience
    patience = early_stopping_patience  # the wait after that epoch
    steps = -(-len(train_idx) // batch_size)  # optimizer steps per epoch
    # the best weights so far: copied into buffers allocated once (no deepcopy per improvement)
    state = dict(module.named_parameters())
    state.update(dict(module.named_buffers()))
    best_state: dict[str, torch.Tensor] | None = None
    rows, stopped_by, since_best = [], "max_epochs", 0

    # the random draws of training (dropout masks): on CPU from a generator of this run's own,
    # set on the module's dropout layers, so runs in parallel threads do not share one and the
    # caller's global generator is left alone; elsewhere from torch's (forked) global generators
    on_cpu = device.type == "cpu"
    fork_devices = [device] if device.type == "cuda" else []
    fork = torch.random.fork_rng(devices=fork_devices, enabled=seed is not None and not on_cpu)
    generator = torch.Generator().manual_seed(int(seed)) if on_cpu and seed is not None else None
    with fork, logits_for_bce(module, loss_name), _dropout_generator(module, generator):
        if seed is not None and not on_cpu:
            torch.manual_seed(seed)
        warm_up(module, xs, train_idx, schedule, rng, device)
        # the moving average starts from the weights the training proper starts from
        average = WeightAverage(module, schedule.ema_decay) if schedule.ema_decay > 0 else None
        bar = tqdm(
            range(1, max_epochs + 1), desc=desc, disable=not progress, leave=False, unit="epoch"
        )
        for epoch in bar:
            t0 = time.perf_counter()
            module.train()
            order = rng.permutation(train_idx)
            total = torch.zeros((), dtype=torch.float64, device=device)
            count = 0
            for b, xb, yb in Minibatches(xs, ys, order, batch_size, ahead):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(module(xb), yb)
                if auxiliary is not None:
                    loss = loss + auxiliary(b)
                loss.backward()
                optimizer.step()
                if average is not None:
                    average.update()
                total += loss.detach() * yb.numel()  # no host sync per step (CUDA)
                count += yb.numel()
            train_loss = float(total) / max(count, 1)
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"the training loss became {train_loss} at epoch {epoch}; try a lower "
                    "learning_rate or check the input scale (e.g. log-normalise counts)"
                )
            if average is not None:
                average.swap()  # validation and the best weights read the average
            val_loss = (
                evaluate_loss(
                    module, xs, ys, val_idx, batch_size=max(batch_size, 1024), loss=loss_name
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
                # patience restarts only at a decrease of at least min_delta (relative) below
                # the loss of the last such epoch; the best weights follow any decrease
                if current < anchor * (1.0 - schedule.min_delta):  # anchor starts at inf
                    anchor, since_best = current, 0
                    patience = patience_after(
                        epoch, early_stopping_patience, schedule.adaptive_patience, steps
                    )
                else:
                    since_best += 1
                best_loss, best_epoch = current, epoch
                with torch.no_grad():
                    if best_state is None:
                        best_state = {k: v.detach().clone() for k, v in state.items()}
                    else:
                        for k, v in state.items():
                            best_state[k].copy_(v.detach())
            else:
                since_best += 1
            if average is not None:
                average.swap()  # training goes on from its own weights
            scheduler.step(current)
            # the schedule's last drop (to min_lr) ends training when asked: nothing left to try
            new_lr = optimizer.param_groups[0]["lr"]
            exhausted = (
                schedule.stop_at_min_lr and new_lr < lr and new_lr <= schedule.min_lr * (1 + 1e-9)
            )
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", lr=f"{lr:.0e}")
            if on_epoch is not None and on_epoch(epoch, train_loss, val_loss):
                stopped_by = "callback"
                break
            if since_best >= patience or exhausted:
                stopped_by = "early_stopping"
                break
        bar.close()
    if best_state is not None:
        with torch.no_grad():
            for k, v in state.items():
                v.copy_(best_state[k])
    module.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "lr", "seconds"])
    logger.debug(
        "%s: %d epochs, best %s %.5g at epoch %d", desc, len(rows), monitor, best_loss, best_epoch
    )
    return TrainResult(history, best_epoch, float(best_loss), len(rows), stopped_by, monitor)
