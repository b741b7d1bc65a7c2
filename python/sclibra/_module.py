"""Plain torch modules of LIBRA (no data handling here; see :mod:`sclibra._model`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OUTPUT_ACTIVATIONS = ("relu", "softplus", "linear", "sigmoid")


def layer_widths(n_layers: int, n_nodes: int) -> list[int]:
    """Widths of the hidden blocks: ``n_nodes``, ``n_nodes/2``, ``n_nodes/4``, ... (at least 1)."""
    return [max(1, int(n_nodes) // (2**i)) for i in range(int(n_layers))]


class SparseRows:
    """A CPU minibatch of sparse rows for the first layer, kept in CSC form (scipy).

    The first layer's forward ``x @ W`` is computed from the CSC block column by column (the
    weight ``W`` is read sequentially, the small output is the scattered-to side; scipy's kernel,
    several times faster than ``torch.sparse.mm`` with a CSR left operand at wide inputs, where
    the gather of weight rows misses the cache). Its weight gradient ``x^T @ grad`` reads the same
    arrays as one bag of minibatch rows per input feature: torch's ``embedding_bag`` sum over the
    rows of ``grad`` (small, cache-resident) weighted by the values, written straight into the
    (in, out) gradient (measured: 1.3-2x faster than scipy's CSR(x^T) product, 25 vs 43 ms at
    4,096 x 100,000 x 64). No dense copy of the minibatch, no transposed copy of the weight, and
    no sort or coalescing per step; all conversions happen here, which
    :class:`sclibra._train.Minibatches` runs ahead of the step that uses them.

    Parameters
    ----------
    block
        A scipy sparse matrix (rows = cells), converted to ``float32`` CSC once.
    """

    __slots__ = ("col_ptr", "csc", "row_index", "shape", "values")

    def __init__(self, block) -> None:
        csc = block.tocsc()
        if csc.dtype != np.float32:
            csc = csc.astype(np.float32)
        self.csc = csc
        self.shape = csc.shape
        # the bags of the weight gradient: int64 offsets and indices (torch's fastest kernel)
        self.col_ptr = torch.from_numpy(csc.indptr.astype(np.int64))
        self.row_index = torch.from_numpy(csc.indices.astype(np.int64))
        self.values = torch.from_numpy(csc.data)


class _SparseLinearFunction(torch.autograd.Function):
    """``x @ W + b`` for a :class:`SparseRows` ``x`` and ``W`` of shape (in, out), on CPU."""

    @staticmethod
    def forward(ctx, weight, bias, rows):  # noqa: D102
        w = weight.detach()
        out = torch.from_numpy(rows.csc @ w.numpy())  # CSC x dense: float32, (batch, out)
        out += bias.detach()
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        rows = ctx.rows
        grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # x^T @ grad: for input feature j, the sum of grad's rows i weighted by x[i, j]
            grad_w = F.embedding_bag(
                rows.row_index,
                grad_out.detach().contiguous(),
                rows.col_ptr,
                mode="sum",
                per_sample_weights=rows.values,
                include_last_offset=True,
            )
        if ctx.needs_input_grad[1]:
            grad_b = grad_out.sum(0)
        return grad_w, grad_b, None


class InputLinear(nn.Linear):
    """The first layer: a linear layer that also takes a sparse minibatch without densifying it.

    Its weight is stored as (in, out) (the transpose of :class:`torch.nn.Linear`'s), so the
    sparse product ``x @ W`` needs no transposed copy of the weight at any step. The state dict
    keeps :class:`torch.nn.Linear`'s layout and key names (``weight`` of shape (out, in),
    ``bias``): files saved by sclibra 0.1.0 load unchanged, and files saved now are read by it.

    Inputs may be dense tensors, torch sparse tensors (CSR or COO, CPU or CUDA; torch's own
    sparse kernels and autograd) or a :class:`SparseRows` block (CPU; scipy kernels for the
    product and the weight gradient).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        # same initial values as nn.Linear (same random draws), stored transposed
        self.weight = nn.Parameter(self.weight.detach().t().contiguous())

    def forward(self, x) -> torch.Tensor:  # noqa: D102
        if isinstance(x, SparseRows):
            bias = self.bias if self.bias is not None else self.weight.new_zeros(self.out_features)
            return _SparseLinearFunction.apply(self.weight, bias, x)
        if x.layout != torch.strided:
            # sparse x dense, on CPU and CUDA alike; torch differentiates w.r.t. the weight
            out = torch.sparse.mm(x, self.weight)
            return out + self.bias if self.bias is not None else out
        if self.bias is None:
            return x @ self.weight
        if x.dim() == 2:
            return torch.addmm(self.bias, x, self.weight)
        return torch.matmul(x, self.weight) + self.bias

    # -- the saved layout is nn.Linear's: (out, in) ------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: D102
        super()._save_to_state_dict(destination, prefix, keep_vars)
        w = destination[prefix + "weight"]
        destination[prefix + "weight"] = w.t() if keep_vars else w.t().contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D102
        key = prefix + "weight"
        if key in state_dict:
            w = state_dict[key]
            if isinstance(w, torch.Tensor) and w.dim() == 2:
                # a transposed view in a copy of the dict: the caller's dict is left as it was
                state_dict = {**state_dict, key: w.t()}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:  # noqa: D102
        return f"{super().extra_repr()}, weight stored (in, out)"


def _keep_mask(shape, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Bernoulli(1 - ``p``) keep-mask from 16 random bits per element (CPU).

    torch's CPU dropout draws one 32-bit number per element and then a float per element; four
    16-bit lanes of each 64-bit draw give the same mask (the drop probability rounded to
    1/65,536) from a quarter of the generator's work. The draws come from ``generator``, else
    torch's global generator (``torch.manual_seed`` makes them reproducible as before).
    """
    n = int(np.prod(shape))
    words = torch.randint(
        -(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, generator=generator
    )
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= round(p * 65536) - 32768


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with a cheaper mask on CPU (:func:`_keep_mask`).

    Same semantics: in training each element is zeroed with probability ``p`` and the others are
    scaled by ``1 / (1 - p)``; in evaluation it is the identity. Off the CPU, or in place, it is
    torch's own. A profile of the default fit of a 10k-cell set had 20 % of the time in torch's
    CPU dropout, drawing random numbers (``benchmarks/results/bench_speed_default.md``).

    ``generator`` (a CPU :class:`torch.Generator`, default ``None``: torch's global one) is where
    the CPU masks come from; the training loop sets one per training run, so ensemble members
    trained side by side in threads each draw from their own (:func:`sclibra._train.train_module`).
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.inplace or self.p >= 1.0 or not x.is_floating_point():
            return super().forward(x)
        keep = _keep_mask(x.shape, self.p, self.generator).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


def _blocks(n_in: int, widths: list[int], alpha: float, dropout: float, first_sparse: bool):
    layers: list[nn.Module] = []
    prev = n_in
    for i, w in enumerate(widths):
        lin = InputLinear(prev, w) if (i == 0 and first_sparse) else nn.Linear(prev, w)
        layers += [lin, nn.LeakyReLU(alpha), Dropout(dropout)]
        prev = w
    return layers, prev


class Encoder(nn.Module):
    """``n_layers`` Dense -> LeakyReLU -> Dropout blocks, then a linear bottleneck."""

    def __init__(self, n_input, n_layers, n_nodes, alpha, dropout, latent_dim):
        super().__init__()
        widths = layer_widths(n_layers, n_nodes)
        layers, prev = _blocks(n_input, widths, alpha, dropout, first_sparse=True)
        if not layers:
            self.net = nn.Sequential(InputLinear(n_input, latent_dim))
        else:
            self.net = nn.Sequential(*layers, nn.Linear(prev, latent_dim))

    def forward(self, x):  # noqa: D102
        return self.net(x)


class FactorOutput(NamedTuple):
    """A rank-limited output layer's input and parameters, not multiplied out.

    The output's pre-activation is ``hidden @ weight.T + bias``; a loss that needs only its
    squares and its values at a sparse target's non-zero entries can be computed from these in
    ``O(batch x rank^2 + nnz x rank)`` instead of ``O(batch x rank x n_output)``
    (:func:`sclibra._train.mse`).
    """

    hidden: torch.Tensor  # (batch, rank)
    weight: torch.Tensor  # (n_output, rank)
    bias: torch.Tensor  # (n_output,)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder` followed by the output layer and its activation.

    With ``output_rank`` (smaller than the last hidden width) the output layer is factorised as
    ``Linear(width, output_rank, bias=False)`` followed by ``Linear(output_rank, n_output)``: a
    rank-limited output layer whose cost per cell is ``output_rank x n_output`` instead of
    ``width x n_output`` (tens of thousands of peaks).
    """

    def __init__(
        self,
        n_output,
        n_layers,
        n_nodes,
        alpha,
        dropout,
        latent_dim,
        output_activation,
        output_rank: int | None = None,
    ):
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")
        widths = list(reversed(layer_widths(n_layers, n_nodes)))
        layers, prev = _blocks(latent_dim, widths, alpha, dropout, first_sparse=False)
        #: whether the output layer is factorised through ``output_rank`` units
        self.factorised = bool(output_rank and output_rank < prev)
        if self.factorised:
            layers.append(nn.Linear(prev, int(output_rank), bias=False))
            prev = int(output_rank)
        self.net = nn.Sequential(*layers, nn.Linear(prev, n_output))
        self.output_activation = output_activation
        #: return the sigmoid's input (logits) instead of probabilities: set only while a BCE
        #: loss is computed from logits (:func:`sclibra._train.logits_for_bce`)
        self.emit_logits = False
        #: return a :class:`FactorOutput` (a factorised layer's input and parameters) instead of
        #: the output: set only while an MSE loss is computed in closed form
        #: (:func:`sclibra._train.factor_outputs`)
        self.emit_factors = False

    def init_output_bias(self, target_mean) -> None:
        """Start the output at the per-feature mean of the target (the mean baseline)."""
        last = self.net[-1]
        mean = torch.as_tensor(target_mean, dtype=last.bias.dtype)
        if self.output_activation == "softplus":
            mean = torch.where(mean > 20, mean, torch.log(torch.expm1(mean.clamp_min(1e-4))))
        elif self.output_activation == "sigmoid":  # start at the logit of the mean (popularity)
            mean = torch.logit(mean.clamp(1e-4, 1 - 1e-4))
        with torch.no_grad():
            last.bias.copy_(mean)

    def predict_mean(self, target_mean) -> None:
        """Predict the per-feature ``target_mean`` for every cell: the output layer's weights
        become zero and its bias the mean (:meth:`init_output_bias`).
        """
        with torch.no_grad():
            self.net[-1].weight.zero_()
        self.init_output_bias(target_mean)

    def forward(self, z):  # noqa: D102
        if self.emit_factors and self.factorised:
            last = len(self.net) - 1
            for i, layer in enumerate(self.net):
                if i == last:
                    return FactorOutput(z, layer.weight, layer.bias)
                z = layer(z)
        y = self.net(z)
        if self.output_activation == "relu":  # in place in prediction: y is this call's own
            return F.relu(y, inplace=not torch.is_grad_enabled())
        if self.output_activation == "softplus":
            return F.softplus(y)
        if self.output_activation == "sigmoid":
            return y if self.emit_logits else torch.sigmoid(y)
        return y


class InputPCA(nn.Module):
    """A frozen first map: modality A -> its top principal components.

    The PCA is fitted once, on the training cells (:meth:`set_pca`); its centring, rotation and
    scale are one linear layer (an :class:`InputLinear`, so sparse input stays sparse) whose
    weights never train. The network behind it reads ``n_pcs`` denoised coordinates instead of
    thousands of noisy features.
    """

    def __init__(self, n_input: int, n_pcs: int) -> None:
        super().__init__()
        self.linear = InputLinear(n_input, n_pcs)
        for p in self.linear.parameters():
            p.requires_grad_(False)

    @property
    def n_pcs(self) -> int:
        """Number of principal components (the encoder's input width)."""
        return self.linear.out_features

    def set_pca(self, components, mean, scale: float) -> None:
        """Set the map to ``(x - mean) @ components.T / scale`` (``components``: pcs x features)."""
        comp = torch.as_tensor(np.ascontiguousarray(components, dtype=np.float32))
        centre = torch.as_tensor(np.ascontiguousarray(mean, dtype=np.float32))
        with torch.no_grad():
            self.linear.weight.copy_(comp.t() / scale)  # stored (in, out)
            self.linear.bias.copy_(-(comp @ centre) / scale)

    def forward(self, x) -> torch.Tensor:  # noqa: D102
        return self.linear(x)


class _Body(nn.Module):
    """Encoder and decoder of a :class:`LIBRANet` without its input PCA (shared parameters):
    what training updates, fed with principal-component scores computed once.
    """

    def __init__(self, net: LIBRANet) -> None:
        super().__init__()
        self.encoder = net.encoder
        self.decoder = net.decoder

    def encode(self, x):  # noqa: D102
        return self.encoder(x)

    def decode(self, z):  # noqa: D102
        return self.decoder(z)

    def forward(self, x):  # noqa: D102
        return self.decoder(self.encoder(x))


class LIBRANet(nn.Module):
    """The unbalanced autoencoder: modality A -> latent -> modality B.

    Parameters
    ----------
    n_input, n_output
        Number of features of modality A (read) and B (reconstructed).
    n_layers, n_nodes, alpha, dropout, latent_dim
        Architecture, as in LIBRA: ``n_layers`` blocks of widths ``n_nodes``, ``n_nodes/2``, ...
        with LeakyReLU(``alpha``) and dropout; a ``latent_dim`` bottleneck; a mirrored decoder.
    output_activation
        ``"relu"`` (published), ``"softplus"`` or ``"linear"`` (for signed targets).
    output_rank
        Factorise the output layer through this many units (``None``: a full output layer).
    input_pcs
        Read modality A through a frozen :class:`InputPCA` of this many components (``None``:
        the features themselves, as published).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_layers: int = 2,
        n_nodes: int = 512,
        alpha: float = 0.3,
        dropout: float = 0.2,
        latent_dim: int = 10,
        output_activation: str = "relu",
        output_rank: int | None = None,
        input_pcs: int | None = None,
    ):
        super().__init__()
        self.projection = InputPCA(n_input, input_pcs) if input_pcs else None
        n_encoder = input_pcs if input_pcs else n_input
        self.encoder = Encoder(n_encoder, n_layers, n_nodes, alpha, dropout, latent_dim)
        self.decoder = Decoder(
            n_output, n_layers, n_nodes, alpha, dropout, latent_dim, output_activation, output_rank
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map modality A to the shared latent space."""
        if self.projection is not None:
            x = self.projection(x)
        return self.encoder(x)

    def body(self) -> nn.Module:
        """The trainable part (encoder and decoder, same parameters) reading PC scores, when the
        network has an input PCA; the network itself otherwise.
        """
        return self if self.projection is None else _Body(self)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent coordinates to modality B."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.decode(self.encode(x))


class LatentNet(nn.Module):
    """The second network of nn_consistency: modality B -> LIBRA latent space."""

    def __init__(self, n_input, n_layers, n_nodes, alpha, dropout, latent_dim):
        super().__init__()
        self.encoder = Encoder(n_input, n_layers, n_nodes, alpha, dropout, latent_dim)

    def forward(self, x):  # noqa: D102
        return self.encoder(x)
