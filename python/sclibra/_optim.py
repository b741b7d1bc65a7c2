"""The optimizer and learning-rate schedule of training, without ``torch.optim``.

``torch.optim``'s optimizers import ``torch._dynamo`` the first time one is built (their
``add_param_group`` is wrapped to disable the compiler): 1.1-1.7 s on this project's 2-core
machine (``benchmarks/results/bench_first_fit.md``), paid once per process before the first
epoch, i.e. by every R session's first ``RunLIBRA()`` and every CLI call, on fits that take a
few seconds. :class:`FusedAdam` calls the
same fused kernel as ``torch.optim.Adam(fused=True)`` with the same state, so its updates are
identical (tested bit for bit); :class:`PlateauSchedule` is ``ReduceLROnPlateau``'s rule for the
one mode training uses (tested step for step). Where this torch lacks the kernel, or the device
or parameters do not support it, :func:`make_optimizer` falls back to ``torch.optim.Adam``.
"""

from __future__ import annotations

import math

import torch

from ._settings import logger

#: the fused kernel's devices (torch's own ``fused=True`` list for Adam)
FUSED_DEVICES = ("cpu", "cuda")


class FusedAdam:
    """Adam (AdamW, decoupled decay, when ``weight_decay > 0``) on torch's fused kernel.

    The kernel does the whole update in one pass over each parameter (measured: the step 5.9x
    faster on CPU than torch's default implementation). State as ``torch.optim.Adam(fused=True)``
    keeps it: both moments zeroed and a float32 step count per parameter, created at the
    parameter's first gradient; parameters without a gradient are skipped. Only what training
    uses: ``param_groups[0]["lr"]`` (read and set by :class:`PlateauSchedule`), :meth:`zero_grad`
    and :meth:`step`.

    Parameters
    ----------
    params
        The parameters to train (those with ``requires_grad``).
    lr
        The learning rate.
    weight_decay
        Decoupled weight decay (AdamW's); 0 for Adam.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params, *, lr: float, weight_decay: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": float(lr)}]
        self.weight_decay = float(weight_decay)
        self._state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def supports(params, device: torch.device) -> bool:
        """Whether this torch has the kernel, for ``params`` (floating point, on ``device``)."""
        return (
            hasattr(torch, "_fused_adam_")
            and hasattr(torch, "_fused_adamw_")
            and device.type in FUSED_DEVICES
            and all(p.is_floating_point() and p.device.type == device.type for p in params)
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``set_to_none``), or zero them in place."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        groups: dict[tuple, tuple[list, ...]] = {}
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Adam does not support sparse gradients")
            state = self._state.get(i)
            if state is None:
                state = self._state[i] = (
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros((), dtype=torch.float32, device=p.device),
                )
            lists = groups.setdefault((p.device, p.dtype), ([], [], [], [], []))
            for group, t in zip(lists, (p, p.grad, *state)):
                group.append(t)
        kernel = torch._fused_adamw_ if self.weight_decay > 0 else torch._fused_adam_
        for params, grads, exp_avgs, exp_avg_sqs, steps in groups.values():
            torch._foreach_add_(steps, 1)
            kernel(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],  # no AMSGrad maxima
                steps,
                amsgrad=False,
                lr=self.param_groups[0]["lr"],
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=self.weight_decay,
                eps=self.eps,
                maximize=False,
            )


class PlateauSchedule:
    """Lower the learning rate when the monitored loss stops falling.

    ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s rule in mode ``"min"`` with a relative
    threshold and no cooldown, on any optimizer with ``param_groups``: an epoch whose loss is
    below ``best x (1 - threshold)`` is progress; after more than ``patience`` epochs without,
    every group's learning rate is multiplied by ``factor`` (not below ``min_lr``; a change
    under 1e-8 is skipped) and the count restarts.
    """

    eps = 1e-8

    def __init__(self, optimizer, *, factor: float, patience: int, min_lr: float, threshold: float):
        self.optimizer = optimizer
        self.factor, self.patience = float(factor), int(patience)
        self.min_lr, self.threshold = float(min_lr), float(threshold)
        self.best = math.inf
        self.num_bad_epochs = 0

    def step(self, loss: float) -> None:
        """Record one epoch's monitored ``loss``; lower the learning rate on a plateau."""
        loss = float(loss)
        if loss < self.best * (1.0 - self.threshold):
            self.best, self.num_bad_epochs = loss, 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            for group in self.optimizer.param_groups:
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.num_bad_epochs = 0


def make_optimizer(params, *, learning_rate: float, device, weight_decay: float = 0.0):
    """:class:`FusedAdam` where this torch has its kernel for ``params`` on ``device``; else
    ``torch.optim.Adam`` (``AdamW`` when ``weight_decay > 0``), which computes the same update.
    """
    params = list(params)
    if FusedAdam.supports(params, device):
        return FusedAdam(params, lr=learning_rate, weight_decay=weight_decay)
    logger.debug("the fused Adam kernel is unavailable on %s; using torch.optim's", device)
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=learning_rate)
