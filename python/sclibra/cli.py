"""Command-line interface: ``sclibra train|predict|embed|...``.

Every sub-command reads the formats of :func:`sclibra.read`, writes h5ad files atomically and
refuses to overwrite existing outputs unless ``--overwrite`` is given. Input errors are printed
as one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

#: modules that contribute sub-commands through a ``register(subparsers)`` function
_SUBCOMMANDS = ["sclibra.cli", "sclibra._demo", "sclibra._cli_tune", "sclibra._cli_metrics"]


# ----------------------------------------------------------------------------------------------
# shared helpers for sub-commands
# ----------------------------------------------------------------------------------------------
def check_output(path, overwrite: bool) -> Path:
    """Refuse to clobber an existing output unless asked."""
    from ._errors import SclibraError

    path = Path(path)
    if path.exists() and not overwrite:
        raise SclibraError(f"{path} already exists; use --overwrite to replace it")
    return path


def write_h5ad(adata, path, overwrite: bool = False) -> Path:
    """Write ``adata`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".h5ad", dir=path.parent)
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_input(path, mod=None, backed=False):
    """Read one modality from a file (a MuData modality with ``mod``)."""
    from ._errors import SclibraError
    from .io import read

    data = read(path, backed=backed)
    if mod is not None:
        if not hasattr(data, "mod"):
            raise SclibraError(f"--mod {mod!r} given but {path} is not a MuData (.h5mu)")
        if mod not in data.mod:
            raise SclibraError(f"{path}: no modality {mod!r}; available: {', '.join(data.mod)}")
        return data.mod[mod]
    if hasattr(data, "mod"):
        raise SclibraError(f"{path} is a MuData: name the modality with --mod-a/--mod-b/--mod")
    return data


def add_input_args(p, suffix: str, label: str, required: bool = True) -> None:
    flag = f"-{suffix}" if suffix else ""
    p.add_argument(
        f"--input{flag}", required=required, help=f"{label} (h5ad, h5mu, 10x h5/mtx, csv, mtx)"
    )
    p.add_argument(f"--mod{flag}", default=None, help=f"modality of {label} in a .h5mu file")
    p.add_argument(f"--layer{flag}", default=None, help=f"layer of {label} to read instead of X")
    p.add_argument(f"--obsm{flag}", default=None, help=f"obsm key of {label} to read instead of X")


def add_common_args(p) -> None:
    p.add_argument("--device", default=None, help="'auto', 'cpu', 'cuda', 'cuda:N' (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def apply_common(args) -> None:
    from ._settings import settings

    settings.seed = args.seed
    if args.device:
        settings.device = args.device
    if args.quiet:
        settings.progress = False
        settings.verbosity = "warning"


# ----------------------------------------------------------------------------------------------
# train / predict / embed
# ----------------------------------------------------------------------------------------------
def _train(args) -> int:
    from ._model import LIBRA

    apply_common(args)
    check_output(args.out, args.overwrite)
    if args.predictions:
        check_output(args.predictions, args.overwrite)
    a = read_input(args.input_a, args.mod_a)
    b = read_input(args.input_b, args.mod_b)
    model = LIBRA(
        n_layers=args.n_layers,
        n_nodes=args.n_nodes,
        alpha=args.alpha,
        dropout=args.dropout,
        latent_dim=args.latent_dim,
        output_activation=args.output_activation,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        device=args.device,
        preset=args.preset,
        n_models=args.n_models,
        loss=args.loss,
    )
    model.fit(
        a,
        b,
        layer_a=args.layer_a,
        layer_b=args.layer_b,
        obsm_a=args.obsm_a,
        obsm_b=args.obsm_b,
        train=args.train_key,
        validation_split=args.validation_split,
        max_epochs=args.max_epochs,
        n_top_genes=args.n_top_genes,
    )
    model.save(args.out, overwrite=args.overwrite)
    print(f"model saved to {args.out}")
    if args.predictions:
        pred = model.predict(a, layer=args.layer_a, obsm=args.obsm_a)
        write_h5ad(pred, args.predictions, args.overwrite)
        print(
            f"predictions ({pred.n_obs} cells x {pred.n_vars} features, latent in obsm['X_libra']) written to {args.predictions}"
        )
    return 0


def _predict(args) -> int:
    from ._model import LIBRA

    apply_common(args)
    check_output(args.out, args.overwrite)
    model = LIBRA.load(args.model, device=args.device)
    a = read_input(args.input, args.mod)
    pred = model.predict(a, layer=args.layer, obsm=args.obsm, fill_missing=args.fill_missing)
    write_h5ad(pred, args.out, args.overwrite)
    print(
        f"predicted {model.names_[1]} for {pred.n_obs} cells x {pred.n_vars} features written to {args.out}"
    )
    return 0


def _embed(args) -> int:
    from ._model import LIBRA
    from .tl import libra

    apply_common(args)
    check_output(args.out, args.overwrite)
    model = LIBRA.load(args.model, device=args.device)
    a = read_input(args.input, args.mod)
    if getattr(a, "isbacked", False):
        a = a.to_memory()
    libra(
        a,
        model,
        layer=args.layer,
        obsm=args.obsm,
        key_added=args.key_added,
        fill_missing=args.fill_missing,
    )
    write_h5ad(a, args.out, args.overwrite)
    print(f"latent space of {a.n_obs} cells in obsm[{args.key_added!r}] written to {args.out}")
    return 0


def register(sub) -> None:
    """Register train, predict and embed."""
    p = sub.add_parser(
        "train",
        help="train a LIBRA model on paired data",
        description="Train LIBRA: read modality A, reconstruct modality B.",
    )
    add_input_args(p, "a", "modality A (input)")
    add_input_args(p, "b", "modality B (output)")
    p.add_argument("--out", required=True, help="folder to save the model to")
    p.add_argument(
        "--predictions", default=None, help="also write predictions for all cells of A to this h5ad"
    )
    p.add_argument(
        "--train-key",
        default=None,
        help="boolean obs column selecting training cells (e.g. is_train)",
    )
    # recipe defaults come from the preset (sclibra._recipe.PRESETS), never from here
    p.add_argument(
        "--preset", default="default", help="recipe: default, published (the paper) or 0.1.0"
    )
    p.add_argument("--n-layers", type=int, default=None)
    p.add_argument("--n-nodes", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None, help="LeakyReLU slope")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--latent-dim", type=int, default=None)
    p.add_argument(
        "--output-activation",
        default=None,
        choices=["auto", "relu", "softplus", "linear", "sigmoid"],
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--n-models", type=int, default=None, help="ensemble size")
    p.add_argument("--loss", default=None, choices=["auto", "mse", "bce"])
    p.add_argument("--validation-split", type=float, default=None)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument(
        "--n-top-genes", type=int, default=None, help="keep this many highly variable features of A"
    )
    add_common_args(p)
    p.set_defaults(func=_train)

    for name, helptext, fn in (
        ("predict", "predict modality B with a saved model", _predict),
        ("embed", "write the latent space of a saved model into obsm", _embed),
    ):
        p = sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        p.add_argument("--model", required=True, help="folder of a saved model")
        add_input_args(p, "", "modality A")
        p.add_argument("--out", required=True, help="h5ad file to write")
        p.add_argument(
            "--fill-missing",
            action="store_true",
            help="fill model features absent from the input with zeros",
        )
        if name == "embed":
            p.add_argument("--key-added", default="X_libra", help="obsm key (default: X_libra)")
        add_common_args(p)
        p.set_defaults(func=fn)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sclibra",
        description="LIBRA / aLIBRA for paired single-cell multi-omics: train, predict, embed, evaluate, tune.",
    )
    parser.add_argument("--version", action="version", version=f"sclibra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for modname in _SUBCOMMANDS:
        importlib.import_module(modname).register(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``sclibra`` command."""
    from ._errors import SclibraError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SclibraError, FileExistsError, FileNotFoundError) as err:
        print(f"sclibra {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sclibra {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
