"""Command-line interface: ``sclibra train|predict|embed|...``.

Every sub-command reads the formats of :func:`sclibra.read`, writes h5ad files atomically and
refuses to overwrite existing outputs unless ``--overwrite`` is given. Input errors are printed
as one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import _cli_metrics, _cli_tune, _demo
from ._cli_common import (
    PAIR_OPTIONS,
    add_backed_arg,
    add_common_args,
    add_data_args,
    add_input_args,
    add_recipe_args,
    apply_common,
    check_output,
    options,
    read_input,
    read_pair,
    write_h5ad,
)
from ._recipe import FIT_KEYS, MODEL_KEYS, PRESETS

__all__ = [
    "main",
    "build_parser",
    "add_common_args",
    "add_input_args",
    "apply_common",
    "check_output",
    "read_input",
    "write_h5ad",
]


def _train(args) -> int:
    from ._model import LIBRA
    from ._persist import foreign_entries

    apply_common(args)
    check_output(args.out, args.overwrite, folder=True, owned=foreign_entries, what="model")
    if args.predictions:
        check_output(args.predictions, args.overwrite)
    a, b = read_pair(args)
    model = LIBRA(
        seed=args.seed, device=args.device, preset=args.preset, **options(args, MODEL_KEYS)
    )
    model.fit(
        a,
        b,
        train=args.train_key,
        batch_key=args.batch_key,
        n_top_genes=args.n_top_genes,
        n_top_genes_b=args.n_top_genes_b,
        allow_counts=args.allow_counts,
        **options(args, PAIR_OPTIONS),
        **options(args, FIT_KEYS),
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


def _saved_model_and_input(args):
    """The model of ``--model`` and the cells of ``--input``, after checking ``--out``."""
    from ._model import LIBRA

    apply_common(args)
    check_output(args.out, args.overwrite)
    model = LIBRA.load(args.model, device=args.device)
    return model, read_input(args.input, args.mod, backed=getattr(args, "backed", False))


def _predict(args) -> int:
    model, a = _saved_model_and_input(args)
    pred = model.predict(
        a,
        layer=args.layer,
        obsm=args.obsm,
        fill_missing=args.fill_missing,
        batch_size=args.batch_size,
    )
    write_h5ad(pred, args.out, args.overwrite)
    print(
        f"predicted {model.names_[1]} for {pred.n_obs} cells x {pred.n_vars} features written to {args.out}"
    )
    return 0


def _embed(args) -> int:
    from .tl import libra

    model, a = _saved_model_and_input(args)
    libra(
        a,
        model,
        layer=args.layer,
        obsm=args.obsm,
        key_added=args.key_added,
        fill_missing=args.fill_missing,
        modality="b" if args.from_b else "a",
        batch_size=args.batch_size,
    )
    write_h5ad(a, args.out, args.overwrite)
    source = f" (from {model.names_[1]}, second network)" if args.from_b else ""
    print(
        f"latent space of {a.n_obs} cells{source} in obsm[{args.key_added!r}] written to {args.out}"
    )
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
    p.add_argument(
        "--batch-key",
        default=None,
        help="obs column of each cell's batch or donor: the validation cells are then whole "
        "batches (a new donor, as at prediction), a different one for each model of the "
        "ensemble",
    )
    p.add_argument(
        "--preset",
        default="default",
        choices=sorted(PRESETS),
        help="recipe: default, published (the paper) or 0.1.0",
    )
    add_recipe_args(p)
    add_data_args(p)
    p.add_argument(
        "--n-top-genes-b",
        type=int,
        default=None,
        help="keep this many highly variable features of B",
    )
    add_backed_arg(p)
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
        add_input_args(p, "", "modality A" if name == "predict" else "modality A (or B)")
        p.add_argument("--out", required=True, help="h5ad file to write")
        p.add_argument(
            "--fill-missing",
            action="store_true",
            help="fill model features absent from the input with zeros",
        )
        p.add_argument(
            "--batch-size", type=int, default=None, help="cells per batch (default: the core's)"
        )
        if name == "predict":  # embed writes the input itself back, so it reads it whole
            add_backed_arg(p)
        if name == "embed":
            p.add_argument("--key-added", default="X_libra", help="obsm key (default: X_libra)")
            p.add_argument(
                "--from-b",
                action="store_true",
                help="the input is modality B (cells measured in B only): place it with the "
                "model's second network, which `sclibra metrics --save-model` trains and keeps",
            )
        add_common_args(p)
        p.set_defaults(func=fn)


def build_parser() -> argparse.ArgumentParser:
    """The ``sclibra`` argument parser with every sub-command registered."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sclibra",
        description="LIBRA / aLIBRA for paired single-cell multi-omics: train, predict, embed, evaluate, tune.",
    )
    parser.add_argument("--version", action="version", version=f"sclibra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    for module in (_demo, _cli_tune, _cli_metrics):
        module.register(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``sclibra`` command."""
    from ._errors import SclibraError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SclibraError, OSError) as err:  # input, output and file-system problems
        print(f"sclibra {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sclibra {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
