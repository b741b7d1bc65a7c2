"""``sclibra metrics``: evaluate a saved LIBRA model on paired data (scores table and plots)."""

from __future__ import annotations


def _headline(table) -> list[str]:
    """A few lines summarising the table for the terminal."""
    lines = []
    rm = table[(table["metric"] == "rmse")]
    for split in ("held_out", "train"):
        sub = rm[rm["split"] == split]
        if len(sub):
            vals = ", ".join(f"{r.method} {r.value:.4f}" for r in sub.itertuples())
            lines.append(f"RMSE ({split}, {int(sub['n_cells'].iloc[0])} cells): {vals}")
    pp = table[(table["metric"] == "ppji")]
    for r in pp.itertuples():
        lines.append(f"PPJI vs {r.reference} ({r.split}): {r.value:.4f}")
    cons = table[table["metric"].str.startswith("consistency_")].set_index("metric")["value"]
    if "consistency_is_bimodal" in cons:
        if cons["consistency_is_bimodal"] == 1:
            lines.append(
                "nn_consistency: bimodal, split at {:.4g}; low peak {:.4g}, high peak {:.4g}; "
                "{:.1%} of held-out cells in the high mode".format(
                    cons["consistency_threshold"],
                    cons.get("consistency_low_peak", float("nan")),
                    cons.get("consistency_high_peak", float("nan")),
                    cons["consistency_share_held_out_high"],
                )
            )
        else:
            lines.append(
                "nn_consistency: unimodal (peak {:.4g}, median distance {:.4g})".format(
                    cons.get("consistency_all_peak", float("nan")),
                    cons.get("consistency_distance_median", float("nan")),
                )
            )
    return lines


#: scoring options passed to evaluate() under their own names, when given
_SCORE_OPTIONS = ("n_neighbors", "resolution", "n_pcs")


def _comma_list(text):
    """``"a,b"`` -> ``["a", "b"]`` (``None`` stays ``None``)."""
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _baselines(text) -> tuple[str, ...]:
    """The baselines of ``--baselines`` (all by default), checked by the core's rule."""
    from ._errors import SclibraError
    from .metrics._baselines import BASELINE_METHODS, check_methods

    if text is None:
        return BASELINE_METHODS
    try:
        return check_methods(_comma_list(text))
    except SclibraError as err:
        raise SclibraError(
            f"--baselines {text!r}: {err} (comma-separated), or --no-baselines"
        ) from err


def _metrics(args) -> int:
    """Evaluate a saved LIBRA model on paired data: prediction error (held-out and training
    cells) beside mean/kNN/ridge baselines, PPJI/ARI/NMI/silhouette of the latent space, and
    nn_consistency. Writes scores.csv, per-feature and per-cell tables and PNG plots to
    --out-dir.
    """
    from ._cli_common import PAIR_OPTIONS, apply_common, check_output, options, read_pair
    from ._model import LIBRA
    from ._persist import foreign_entries
    from ._report import evaluate

    apply_common(args)
    baselines = () if args.no_baselines else _baselines(args.baselines)
    check_output(args.out_dir, args.overwrite, folder=True)
    if args.save_model:
        check_output(
            args.save_model, args.overwrite, folder=True, owned=foreign_entries, what="model"
        )
    model = LIBRA.load(args.model, device=args.device)
    a, b = read_pair(args)
    fit_kwargs = {}
    if args.consistency_epochs is not None:
        fit_kwargs["max_epochs"] = args.consistency_epochs
    result = evaluate(
        model,
        a,
        b,
        labels=args.labels,
        held_out=args.held_out_key,
        **options(args, PAIR_OPTIONS),
        baselines=baselines,
        consistency=not args.no_consistency,
        consistency_kwargs={"fit_kwargs": fit_kwargs, "refit": args.refit_consistency},
        # only the options given: evaluate() holds their defaults
        **{k: v for k, v in options(args, _SCORE_OPTIONS).items() if v is not None},
        plot_features=_comma_list(args.plot_features),
        seed=args.seed,
        out_dir=args.out_dir,
        overwrite=args.overwrite,
        plots=not args.no_plots,
        details=True,
    )
    for line in _headline(result.table):
        print(line)
    print(f"{len(result.files)} files written to {args.out_dir}")
    if args.save_model:
        model.save(args.save_model, overwrite=args.overwrite)
        print(f"model (with its second network for B-only cells) saved to {args.save_model}")
    return 0


def register(sub) -> None:
    """Register ``sclibra metrics``."""
    from ._cli_common import add_command, add_common_args, add_input_args

    help = "evaluate a saved model: PPJI, nn_mse, nn_consistency, scores, baselines, plots"
    p = add_command(sub, "metrics", _metrics, help)
    p.add_argument("--model", required=True, help="folder of a saved model")
    add_input_args(p, "a", "modality A (model input)")
    add_input_args(p, "b", "modality B (measured)")
    p.add_argument("--out-dir", required=True, help="folder for the scores and plots")
    p.add_argument("--labels", default=None, help="obs column of cell labels (e.g. cell_type)")
    p.add_argument(
        "--held-out-key",
        default=None,
        help="boolean obs column marking held-out cells (default: cells the model was not trained on)",
    )
    p.add_argument(
        "--n-neighbors",
        type=int,
        default=None,
        help="k-NN graph size for Leiden (default: sclibra.evaluate's)",
    )
    p.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="Leiden resolution (default: sclibra.evaluate's)",
    )
    p.add_argument(
        "--consistency-epochs",
        type=int,
        default=None,
        help="max epochs of the second network (default: as fit_b_encoder)",
    )
    p.add_argument(
        "--refit-consistency",
        action="store_true",
        help="train the second network again even if the model has one (with "
        "--consistency-epochs, say)",
    )
    p.add_argument("--no-consistency", action="store_true", help="skip nn_consistency")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    p.add_argument(
        "--baselines",
        default=None,
        help="comma-separated baselines to run (default: all of mean, knn, ridge)",
    )
    p.add_argument(
        "--n-pcs",
        type=int,
        default=None,
        help="PCA size for the kNN / ridge baselines and the single-modality clusters "
        "(default: sclibra.evaluate's)",
    )
    p.add_argument(
        "--plot-features",
        default=None,
        help="comma-separated features of B for the predicted-vs-measured plot "
        "(default: the 4 most variable)",
    )
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument(
        "--save-model",
        default=None,
        help="save the model, with the trained second network, to this folder",
    )
    add_common_args(p)
