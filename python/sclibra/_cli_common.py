"""Helpers shared by the sub-commands of :mod:`sclibra.cli` (inputs, outputs, common flags)."""

from __future__ import annotations

import argparse
import inspect
import warnings
from pathlib import Path


# ----------------------------------------------------------------------------------------------
def check_output(
    path, overwrite: bool, *, folder: bool = False, owned=None, what: str = "output"
) -> Path:
    """Check an output location before any work: writable, and no clobbering unless asked.

    A file output that exists is refused without ``--overwrite``. A folder output (``folder``)
    is replaced only when ``owned(path)`` names nothing in it that sclibra did not write.
    """
    from ._fs import check_output_location, check_replaceable

    path = Path(path).expanduser()
    check_output_location(path, overwrite=overwrite, folder=folder)
    if folder and owned is not None:
        check_replaceable(path, overwrite=overwrite, owned=owned, what=what, flag="--overwrite")
    return path


def write_h5ad(adata, path, overwrite: bool = False) -> Path:
    """Write ``adata`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    from ._fs import atomic_file

    path = check_output(path, overwrite)
    with atomic_file(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp)
    return path


def read_input(path, mod=None, backed=False):
    """Read one modality from a file (a MuData modality with ``mod``).

    Unreadable files (truncated, damaged, non-numeric values) raise one
    :class:`~sclibra.SclibraError` naming the file.
    """
    from ._errors import SclibraError
    from .io import read

    try:
        with warnings.catch_warnings():  # the readers' deprecation notes are not for users
            warnings.simplefilter("ignore", FutureWarning)
            data = read(path, backed=backed)
    except SclibraError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, OSError) and ("truncated" in msg or "signature" in msg):
            why = "the file is truncated or damaged"
        elif isinstance(err, ValueError) and "convert" in msg:
            why = "it holds values that are not numbers"
        else:
            why = "it is not in a format sclibra reads"
        raise SclibraError(f"cannot read {path}: {why} ({msg})") from None
    if mod is not None:
        if not hasattr(data, "mod"):
            raise SclibraError(f"--mod {mod!r} given but {path} is not a MuData (.h5mu)")
        if mod not in data.mod:
            raise SclibraError(f"{path}: no modality {mod!r}; available: {', '.join(data.mod)}")
        return data.mod[mod]
    if hasattr(data, "mod"):
        raise SclibraError(f"{path} is a MuData: name the modality with --mod-a/--mod-b/--mod")
    return data


def add_command(sub, name: str, func, help: str):
    """Register the sub-command ``name``, run by ``func``; its ``--help`` describes it with
    ``func``'s docstring. Returns the sub-command's parser.
    """
    p = sub.add_parser(name, help=help, description=inspect.cleandoc(func.__doc__))
    p.set_defaults(func=func)
    return p


def options(args, names) -> dict:
    """The parsed values of the options ``names``, by name (as keyword arguments)."""
    return {name: getattr(args, name) for name in names}


#: where to read modalities A and B inside their files (``--mod-a`` picks the file's modality)
PAIR_OPTIONS = ("layer_a", "layer_b", "obsm_a", "obsm_b")


def read_pair(args):
    """Modalities A and B of ``--input-a``/``--input-b`` (``--mod-a``/``--mod-b``)."""
    backed = getattr(args, "backed", False)
    return (
        read_input(args.input_a, args.mod_a, backed=backed),
        read_input(args.input_b, args.mod_b, backed=backed),
    )


def add_backed_arg(p) -> None:
    """``--backed``: read ``.h5ad`` inputs from disk, a minibatch at a time."""
    p.add_argument(
        "--backed",
        action="store_true",
        help="open .h5ad inputs on disk (backed) instead of loading them: for data larger "
        "than memory",
    )


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


def _boolean(text: str) -> bool:
    low = text.strip().lower()
    if low not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return low in ("true", "1", "yes")


def add_recipe_args(p, stage: str | None = None, skip=()) -> None:
    """One flag per recipe argument of ``LIBRA()`` and ``fit()``, written from the recipe.

    Names, types, choices and help come from :mod:`sclibra._recipe`; every default is ``None``
    (the preset's value), so the command line restates no default. ``stage``: only the
    arguments of that stage (``"model"`` or ``"fit"``); ``skip``: names the caller declares.
    """
    from ._recipe import PRESETS, RECIPE

    shown = PRESETS["default"]
    for arg in RECIPE:
        if (stage is not None and arg.stage != stage) or arg.name in skip:
            continue
        p.add_argument(
            "--" + arg.name.replace("_", "-"),
            dest=arg.name,
            type=_boolean if arg.kind is bool else arg.kind,
            default=None,
            choices=arg.choices,
            help=f"{arg.help} (default: the preset's; {shown[arg.name]!r} in 'default')",
        )


def add_data_args(p) -> None:
    """``--n-top-genes`` and ``--allow-counts``: what ``fit()`` reads of modality A."""
    p.add_argument(
        "--n-top-genes", type=int, default=None, help="keep this many highly variable features of A"
    )
    p.add_argument(
        "--allow-counts",
        action="store_true",
        help="train on raw counts instead of refusing them (LIBRA expects normalised data)",
    )
