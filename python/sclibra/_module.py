"""Plain torch modules of LIBRA (no data handling here; see :mod:`sclibra._model`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

OUTPUT_ACTIVATIONS = ("relu", "softplus", "linear", "sigmoid")


def layer_widths(n_layers: int, n_nodes: int) -> list[int]:
    """Widths of the hidden blocks: ``n_nodes``, ``n_nodes/2``, ``n_nodes/4``, ... (at least 1)."""
    return [max(1, int(n_nodes) // (2**i)) for i in range(int(n_layers))]


class InputLinear(nn.Linear):
    """A linear layer that also accepts a sparse (CSR or COO) minibatch without densifying it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.layout != torch.strided:
            # sparse x dense product, on CPU and CUDA alike; the gradient w.r.t. the weight is
            # x^T @ grad, computed by torch from the sparse minibatch
            return torch.addmm(self.bias, x, self.weight.t())
        return F.linear(x, self.weight, self.bias)


def _blocks(n_in: int, widths: list[int], alpha: float, dropout: float, first_sparse: bool):
    layers: list[nn.Module] = []
    prev = n_in
    for i, w in enumerate(widths):
        lin = InputLinear(prev, w) if (i == 0 and first_sparse) else nn.Linear(prev, w)
        layers += [lin, nn.LeakyReLU(alpha), nn.Dropout(dropout)]
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


class Decoder(nn.Module):
    """Mirror of :class:`Encoder` followed by the output layer and its activation."""

    def __init__(self, n_output, n_layers, n_nodes, alpha, dropout, latent_dim, output_activation):
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")
        widths = list(reversed(layer_widths(n_layers, n_nodes)))
        layers, prev = _blocks(latent_dim, widths, alpha, dropout, first_sparse=False)
        self.net = nn.Sequential(*layers, nn.Linear(prev, n_output))
        self.output_activation = output_activation

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

    def forward(self, z):  # noqa: D102
        y = self.net(z)
        if self.output_activation == "relu":
            return F.relu(y)
        if self.output_activation == "softplus":
            return F.softplus(y)
        if self.output_activation == "sigmoid":
            return torch.sigmoid(y)
        return y


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
    ):
        super().__init__()
        self.encoder = Encoder(n_input, n_layers, n_nodes, alpha, dropout, latent_dim)
        self.decoder = Decoder(
            n_output, n_layers, n_nodes, alpha, dropout, latent_dim, output_activation
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map modality A to the shared latent space."""
        return self.encoder(x)

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
