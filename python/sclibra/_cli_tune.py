"""``sclibra tune``: the aLIBRA hyperparameter search from the command line."""

from __future__ import annotations

import json
from pathlib import Path

_DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


def load_grid(spec: str):
    """A preset name, or a JSON file: ``{name: [values]}`` or ``{name: {"uniform": [lo, hi]}}``."""
    from ._errors import SclibraError
    from ._tune import SEARCH_SPACES, choice, loguniform, randint, uniform

    if spec in SEARCH_SPACES:
        return spec
    path = Path(spec)
    if not path.exists():
        raise SclibraError(
            f"--grid {spec!r} is neither a preset ({', '.join(SEARCH_SPACES)}) nor a JSON file"
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SclibraError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise SclibraError(f"{path}: the search space must be a JSON object {{name: values}}")
    makers = {"uniform": uniform, "loguniform": loguniform, "randint": randint, "choice": choice}
    space = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in _DISTRIBUTIONS:
                raise SclibraError(
                    f"{path}: {key!r} must be a list or one of "
                    + ", ".join(f'{{"{d}": [...]}}' for d in _DISTRIBUTIONS)
                )
            ((kind, args),) = value.items()
            space[key] = makers[kind](args) if kind == "choice" else makers[kind](*args)
        else:
            space[key] = value
    return space


#: fit() options of the recipe that every trial gets (the flags declared here are left out)
_DECLARED_FIT = ("validation_split", "max_epochs", "early_stopping_patience")


def _fixed_fit() -> tuple[str, ...]:
    from ._recipe import FIT_KEYS

    return tuple(k for k in FIT_KEYS if k not in _DECLARED_FIT)


#: options passed to tune() under their own names
_TUNE_OPTIONS = (
    "objective strategy n_trials labels max_epochs grace_period eta n_jobs backend ray_address "
    "device out_dir overwrite save_models save_latent retry_failed seed"
).split()


def _tune(args) -> int:
    """Train many LIBRA models and select the configuration that optimises prediction
    (validation MSE), integration (PPJI) or both (Pareto front). Every finished trial is
    written to --out-dir; running the same command again resumes the search.
    """
    from ._cli_common import PAIR_OPTIONS, apply_common, check_output, options, read_pair
    from ._errors import SclibraError
    from ._tune import tune

    apply_common(args)
    check_output(args.out_dir, args.overwrite, folder=True)
    grid = load_grid(args.grid)
    a, b = read_pair(args)
    fit_kwargs = {"validation_split": args.validation_split}
    if args.early_stopping_patience is not None:
        fit_kwargs["early_stopping_patience"] = args.early_stopping_patience
    for name in (*_fixed_fit(), "n_top_genes", "batch_key"):
        if getattr(args, name) is not None:
            fit_kwargs[name] = getattr(args, name)
    if args.allow_counts:
        fit_kwargs["allow_counts"] = True
    result = tune(
        a,
        b,
        train=args.train_key,
        grid=grid,
        fit_kwargs=fit_kwargs,
        refit=not args.no_refit,
        **options(args, PAIR_OPTIONS),
        **options(args, _TUNE_OPTIONS),
    )
    out = Path(args.out_dir)
    if not args.no_plots and len(result.completed):
        import matplotlib
        import matplotlib.pyplot as plt

        from ._fs import atomic_file

        matplotlib.use("Agg")
        fig = result.plot_hyperparameters()
        with atomic_file(out / "hyperparameters.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        if args.objective == "both":
            ax = result.plot_pareto()
            with atomic_file(out / "pareto.png") as tmp:
                ax.figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
            plt.close(ax.figure)
    print(result.summary())
    print(f"trials table: {out / 'trials.csv'}")
    if not len(result.completed):
        failed = result.trials[result.trials["status"] == "failed"]
        first = f"; the first error: {failed['error'].iloc[0]}" if len(failed) else ""
        raise SclibraError(f"no trial completed ({len(result.trials)} run){first}")
    if not args.no_refit and len(result.completed):
        best = result.best_trial["trial_id"]
        print(f"best model: {out / 'best_model' / best}")
    return 0


def register(sub) -> None:
    """Register ``sclibra tune``."""
    from ._cli_common import (
        add_command,
        add_common_args,
        add_data_args,
        add_input_args,
        add_recipe_args,
    )

    help = "aLIBRA: search LIBRA hyperparameters for prediction, integration or both"
    p = add_command(sub, "tune", _tune, help)
    add_input_args(p, "a", "modality A (input)")
    add_input_args(p, "b", "modality B (output)")
    p.add_argument("--out-dir", required=True, help="folder of the trial records (resumable)")
    p.add_argument(
        "--grid",
        default="prediction",
        help="preset (default, prediction, integration) or a JSON file {name: [values]} "
        'or {name: {"uniform": [lo, hi]}} (default: prediction)',
    )
    p.add_argument(
        "--objective", default="prediction", choices=["prediction", "integration", "both"]
    )
    p.add_argument("--strategy", default="asha", choices=["grid", "random", "asha"])
    p.add_argument("--n-trials", type=int, default=None, help="configurations for random/asha")
    p.add_argument(
        "--train-key",
        default=None,
        help="boolean obs column selecting the search cells (keep test cells out)",
    )
    p.add_argument(
        "--batch-key",
        default=None,
        help="obs column of each cell's batch or donor: every trial validates on whole batches",
    )
    p.add_argument("--labels", default=None, help="obs column of reference labels for integration")
    p.add_argument("--max-epochs", type=int, default=1500)
    p.add_argument("--grace-period", type=int, default=10, help="ASHA's first rung (epochs)")
    p.add_argument("--eta", type=float, default=3, help="ASHA's reduction factor")
    p.add_argument("--validation-split", type=float, default=0.1)
    p.add_argument("--early-stopping-patience", type=int, default=None)
    p.add_argument("--n-jobs", type=int, default=1, help="trials at once (-1: one per CPU)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster")
    p.add_argument("--save-models", action="store_true", help="keep every trial's model")
    p.add_argument("--save-latent", action="store_true", help="keep every trial's latent space")
    p.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    p.add_argument("--no-refit", action="store_true", help="do not train the selected model")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    add_recipe_args(p, stage="fit", skip=_DECLARED_FIT)
    add_data_args(p)
    add_common_args(p)
