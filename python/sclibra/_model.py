"""The user-facing LIBRA model (training, prediction, latent space, persistence)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import _persist
from ._data import (
    CellInputs,
    Matrix,
    PairInputs,
    as_matrix,
    check_not_diverged,
    check_unique,
    match_features,
    mean_baseline_loss,
    mean_fallback_note,
    mean_of_other_rows,
    pair_cells,
    report_gain_over_mean,
    resolve_pair_labels,
    select_pair_cells,
    takes_fields,
    validate,
)
from ._errors import ModelFileError, NotTrainedError, SclibraError, format_names
from ._module import OUTPUT_ACTIVATIONS, LatentNet, LIBRANet
from ._recipe import (
    FIT_KEYS,
    MODEL_KEYS,
    PRESETS,
    SMOOTHING_PCS,
    WIDE_OUTPUT,
    WIDE_OUTPUT_BEFORE_FORMAT_4,
    EnsembleNet,
    LatentPCARegularised,
    check_int,
    check_recipe_value,
    choose_loss,
    input_pc_scores,
    input_pca_scores,
    input_pcs_for,
    latent_pcs_for,
    output_rank_for,
    recipe_docstring,
    resolve_preset,
    smoothed_targets,
    smoothing_neighbours,
    smoothing_skipped,
    split_by_batch,
    standardising_scale,
    takes_recipe,
    whitened_pc_scores,
)
from ._settings import logger, resolve_device, settings, warn_once
from ._train import (
    Schedule,
    apply_module,
    member_workers,
    train_module,
    train_side_by_side,
    training_step_flops,
    use_sparse_path,
)

FORMAT_VERSION = _persist.FORMAT_VERSION


#: whole-batch validation this many times ``validation_split`` (or more) is worth a warning
LARGE_BATCH_VALIDATION = 2.0


def _warn_large_batch_validation(fractions: list[float], validation_split: float, key: str):
    """Warn when whole batches make a member's validation far larger than ``validation_split``.

    With few batches (two donors: one of them), holding out whole batches leaves each member
    much less to train on than a random split would; the user should know the price. ``key``:
    how the warning names ``batch_key``.
    """
    if not fractions or validation_split <= 0:
        return
    largest = max(fractions)
    if largest < LARGE_BATCH_VALIDATION * validation_split:
        return
    members = "each member's" if len(fractions) > 1 else "the"
    shares = ", ".join(f"{100 * f:.0f} %" for f in fractions)
    warn_once(
        "%s: %s validation cells are whole batches, %s of the training cells where "
        "validation_split asks for %.0f %%: each model trains on the rest. With this few "
        "batches, batch_key=None (a random split) trains on more cells; early stopping on a "
        "whole batch measures prediction on a new donor",
        key,
        members,
        shares,
        100 * validation_split,
    )


class LIBRA:
    """LIBRA: an unbalanced autoencoder that reads modality A and reconstructs modality B.

    The encoder maps A (e.g. ATAC peaks, RNA) into a small shared latent space (integration);
    the decoder maps that space to B (e.g. RNA, ADT) (cross-modal prediction).

    Every argument left at ``None`` takes the value of ``preset``; explicit arguments win.

    Parameters
    ----------
    <recipe arguments>
    seed
        Random seed for initialisation, the validation split, shuffling and dropout. ``None``
        uses ``sclibra.settings.seed``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ... ``None`` uses ``sclibra.settings.device``. An
        unknown name, or ``"cuda"`` where CUDA is not available, is an error here.
    preset
        The recipe the other arguments default to (:data:`sclibra._recipe.PRESETS`):
        ``"default"`` (the current recipe, see the README's table), ``"published"`` (the paper's
        model and schedule exactly: batch 7000, ReLU output, MSE, Adam 1e-3, no validation
        split) or ``"0.1.0"`` (sclibra 0.1.0's defaults).

    Examples
    --------
    >>> import sclibra
    >>> rna, adt = sclibra.datasets.bmmc_cite()
    >>> model = sclibra.LIBRA(n_nodes=128).fit(rna, adt, train="is_train", max_epochs=50)
    >>> pred = model.predict(rna[~rna.obs["is_train"]])      # AnnData of predicted ADT
    >>> sclibra.tl.libra(rna, model)                          # rna.obsm["X_libra"]
    """

    @takes_recipe("model")
    def __init__(self, seed: int | None = None, device=None, *, preset: str = "default", **recipe):
        values = resolve_preset(preset)
        values.update({k: v for k, v in recipe.items() if v is not None})
        self.preset = preset
        #: fit() schedule defaults of the preset (explicit fit() arguments win)
        self.fit_defaults = {k: values[k] for k in FIT_KEYS}
        for key in MODEL_KEYS:  # each checked against its declaration in the recipe
            setattr(self, key, check_recipe_value(key, values[key]))
        if seed is not None:
            seed = check_int("seed", seed, 0)
        self.seed = seed
        if device is not None:  # an unknown name, or CUDA where there is none: refused now
            resolve_device(device)
        self.device = device
        self.module: LIBRANet | None = None
        self.b_encoder: LatentNet | None = None
        self.features_a: pd.Index | None = None
        self.features_b: pd.Index | None = None
        self.history: pd.DataFrame | None = None
        self.b_encoder_history: pd.DataFrame | None = None
        self.train_cells_: pd.Index | None = None
        self.val_cells_: pd.Index | None = None
        self.best_val_loss_: float | None = None
        self.n_epochs_: int = 0
        self.stopped_by_: str | None = None
        self.output_activation_: str | None = None
        self.loss_: str | None = None
        #: principal components of A the network reads (0: A's features)
        self.input_pcs_: int = 0
        #: rank of the factorised output layer (0: a full layer), from ``output_rank`` and B's width
        self.output_rank_used_: int = 0
        #: ensemble members that predict the training mean (``mean_fallback``), from 0
        self.members_at_mean_: list[int] = []
        #: input PCs the latent regulariser predicted in training (0: none), from ``latent_pcs``,
        #: the loss and the training cells
        self.latent_pcs_used_: int = 0
        #: the schedule ``fit`` trained with (the recipe's fit arguments, given or the preset's);
        #: ``None`` for a model loaded from a file that did not record it (format < 6)
        self.fit_params_: dict | None = None
        self.names_: tuple[str, str] = ("A", "B")
        #: during a ``fit`` callback: the ensemble member whose epoch it reports (0, 1, ...)
        self.training_member_: int | None = None
        self._seed_used: int | None = None

    # ------------------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        """Whether the model has been fitted or loaded."""
        return self.module is not None

    @property
    def latent_width_(self) -> int:
        """Columns of the latent space: ``latent_dim`` per ensemble member (concatenated)."""
        members = getattr(self.module, "members", None)
        return self.latent_dim * (len(members) if members is not None else 1)

    @property
    def config(self) -> dict:
        """Hyperparameters (JSON-serialisable)."""
        return {
            **{k: getattr(self, k) for k in MODEL_KEYS},
            "seed": self.seed,
            "preset": self.preset,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        if not self.is_trained:
            return f"LIBRA({args}) [not trained]"
        return (
            f"LIBRA({args})\n  trained: {self.names_[0]} ({len(self.features_a)} features) -> "
            f"{self.names_[1]} ({len(self.features_b)} features), {len(self.train_cells_)} training "
            f"+ {len(self.val_cells_)} validation cells, {self.n_epochs_} epochs, best validation "
            f"{(self.loss_ or 'mse').upper()} {self.best_val_loss_:.4g}, output {self.output_activation_}"
            + (f", {self.n_models} models" if self.n_models > 1 else "")
            + (", B encoder fitted" if self.b_encoder is not None else "")
            + self._at_mean_note()
        )

    def _at_mean_note(self) -> str:
        """``"; ... predict(s) each feature's training mean (mean_fallback)"`` or ``""``."""
        note = self.mean_fallback_note_
        return f"; {note} (mean_fallback)" if note else ""

    @property
    def mean_fallback_note_(self) -> str:
        """Which members predict each feature's training mean (``mean_fallback``), in words.

        ``""`` when none does (or the model is not trained). The wording of the fit's warning.
        """
        n = len(getattr(self.module, "members", [None]))
        return mean_fallback_note(len(self.members_at_mean_), n)

    def _device(self):
        return resolve_device(self.device)

    def _check_trained(self):
        if not self.is_trained:
            raise NotTrainedError(
                "this LIBRA model is not trained yet: call fit() or LIBRA.load() first"
            )

    # ------------------------------------------------------------------------------------------
    @takes_recipe("fit", after="train")
    @takes_fields("inputs", PairInputs)
    def fit(
        self,
        a,
        b=None,
        *,
        inputs: PairInputs,  # the arguments mod_a, mod_b, layer_a, layer_b, obsm_a, obsm_b
        train=None,
        batch_key: str | None = None,
        n_top_genes: int | None = None,
        n_top_genes_b: int | None = None,
        progress: bool | None = None,
        callback=None,
        allow_counts: bool = False,
        **schedule,
    ) -> LIBRA:
        """Train the model to predict modality B from modality A.

        Every schedule argument left at ``None`` takes the value of the model's ``preset``.

        Parameters
        ----------
        a, b
            Modality A (read) and B (reconstructed): AnnData (in memory or backed), numpy arrays,
            scipy sparse matrices or DataFrames, cells x features. Or a MuData as ``a`` with
            ``mod_a``/``mod_b`` naming the modalities. Cells are paired by name.
        mod_a, mod_b, layer_a, layer_b, obsm_a, obsm_b
            Where to read each modality: MuData modality, ``layers`` key or ``obsm`` key.
        train
            Cells to train on (the rest are held out): a boolean ``obs`` column name (e.g.
            ``"is_train"``), a boolean mask or a list of cell names. ``None``: all paired cells.
        <recipe arguments>
        batch_key
            Each cell's batch or donor: the name of an ``obs`` column of A or B, a Series indexed
            by cell name, or an array over the training cells or over all of A's cells. The
            validation cells are then whole batches (about ``validation_split`` of the cells,
            but at least one batch: with two donors, one of them, which the fit warns of), so
            early stopping measures what prediction on a new donor needs; each ensemble member
            holds out its own. With a single training batch the split is random (with a
            warning). Every training cell needs a batch; held-out cells need none.
        n_top_genes, n_top_genes_b
            Keep only this many highly variable features of A (resp. B), chosen by scanpy on the
            training cells (the paper used 2000 genes for RNA).
        progress
            Show a progress bar (default: ``sclibra.settings.progress``).
        callback
            ``callback(model, epoch, train_loss, val_loss)`` after each epoch; return ``True`` to
            stop training (used by aLIBRA to prune trials). Always called in the calling thread.
            Ensemble members trained in turn: the rest are skipped after a stop. Trained side by
            side (CPU, several threads): it sees each member's epochs as they finish, and a
            stop ends the running members after their current epoch and skips the others.
            Either way ``model.module`` is the member whose epoch it reports and
            ``model.training_member_`` its index (0 for a single model).
        allow_counts
            Train on raw counts (whole numbers with large per-cell totals) instead of refusing
            them; LIBRA expects normalised data (e.g. log-normalised RNA).

        Returns
        -------
        The fitted model (``self``).
        """
        fit_params, schedule = self._schedule(**schedule)
        validation_split = fit_params["validation_split"]
        ma, mb = inputs.read(a, b)
        for m in (ma, mb):
            check_unique(m.features, "feature", m.name)
        ma, mb = pair_cells(ma, mb)
        cells = select_pair_cells(train, ma, mb, what="train")
        if len(cells) == 0:
            raise SclibraError(f"train={train!r} selects no cells")
        batches = None
        if batch_key is not None:  # each training cell's batch, checked before any work
            batches = resolve_pair_labels(
                batch_key, cells, ma, mb, name="batch_key", what="training cells"
            ).to_numpy()
        ma, mb = ma.subset_cells(cells), mb.subset_cells(cells)
        if n_top_genes is not None:
            ma = _select_hvg(ma, n_top_genes)
        if n_top_genes_b is not None:
            mb = _select_hvg(mb, n_top_genes_b)
        stats_a = validate(ma, role="input", allow_counts=allow_counts)
        stats_b = validate(mb, role="output", allow_counts=allow_counts)
        loss = choose_loss(self.loss, stats_b.binary, mb.name)  # from validate's one pass
        if loss == "bce":
            out_act = "sigmoid"
        else:
            out_act = self._resolve_output_activation(stats_b.min, mb.name)

        seed = self.seed if self.seed is not None else settings.seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        self._seed_used = int(seed)
        n = ma.n_obs
        key_name = f"batch_key={batch_key!r}" if isinstance(batch_key, str) else "batch_key"
        if batches is not None and len(np.unique(batches)) < 2 and validation_split > 0:
            warn_once(
                "%s: the training cells hold a single batch; the validation "
                "cells are a random %.0f %% of them instead of whole batches",
                key_name,
                100 * validation_split,
            )

        def member_split(k):
            # each ensemble member holds out its own validation cells: the next block of one
            # seeded permutation (disjoint while n_models * validation_split <= 1), or other
            # whole batches with batch_key, so together the members learn from every cell
            if batches is not None:
                split = split_by_batch(batches, validation_split, seed, member=k)
                if split is not None:
                    return split
            if k == 0:
                return _split_validation(n, validation_split, seed)
            n_val = len(_split_validation(n, validation_split, seed)[1])
            perm = np.random.default_rng(seed).permutation(n)
            start = (k * n_val) % max(n - n_val + 1, 1)
            is_val = np.zeros(n, dtype=bool)
            is_val[perm[start : start + n_val]] = True
            return np.flatnonzero(~is_val), np.flatnonzero(is_val)

        # the input PCA: fitted once; training reads the scores, never A's features again
        x_train, pca = ma, None
        n_pcs = input_pcs_for(self.input_pca, ma.n_vars)
        feature_scale = standardising_scale(stats_a)  # binary A: a PCA of standardised features
        if n_pcs:
            est, scores, scale = input_pca_scores(ma, n_pcs, seed, feature_scale)
            n_pcs = int(est.n_components_)  # fewer when there are fewer cells
            components, centre = est.components_, est.mean_
            if feature_scale is not None:  # the same map, applied to the unscaled features
                components, centre = components / feature_scale, centre * feature_scale
            pca = (components, centre, scale)
            x_train = Matrix(
                scores, ma.cells, pd.Index([f"PC{i + 1}" for i in range(n_pcs)]), name=ma.name
            )
        self.input_pcs_ = n_pcs
        self.output_rank_used_ = output_rank_for(self.output_rank, mb.n_vars, WIDE_OUTPUT)
        splits = [member_split(k) for k in range(self.n_models)]
        train_idx, val_idx = splits[0]
        n_val = len(val_idx)
        if batches is not None:
            _warn_large_batch_validation(
                [len(v) / n for _, v in splits], validation_split, key_name
            )
        batch_size = min(self.batch_size, len(train_idx))
        schedule = dataclasses.replace(schedule, batch_size=batch_size, loss=loss)
        device = self._device()
        logger.info(
            "training LIBRA %s (%d features) -> %s (%d features) on %d cells (%d for validation)"
            ", %s loss%s%s",
            ma.name,
            ma.n_vars,
            mb.name,
            mb.n_vars,
            n - n_val,
            n_val,
            loss.upper(),
            f", {self.n_models} models" if self.n_models > 1 else "",
            f", input read as its top {n_pcs} principal components"
            + (" (of its standardised binary features)" if feature_scale is not None else "")
            if n_pcs
            else (" [sparse input]" if use_sparse_path(ma, device) else ""),
        )
        on_epoch = None
        if callback is not None:

            def on_epoch(epoch, tl, vl):
                return bool(callback(self, epoch, tl, vl))

        pc_scores = None
        self.latent_pcs_used_ = 0
        if self.latent_pca > 0:
            latent_pcs = latent_pcs_for(self.latent_pcs, loss)
            if n_pcs >= latent_pcs:  # the same PCA's top components
                pc_scores = np.ascontiguousarray(scores[:, :latent_pcs])
            else:
                pc_scores = input_pc_scores(ma, latent_pcs, seed, feature_scale)
            if self.latent_pcs_whiten:
                pc_scores = whitened_pc_scores(pc_scores)
            self.latent_pcs_used_ = int(pc_scores.shape[1])
        targets = self._smoothed_targets(mb, stats_b, splits, seed)
        # every member is built first, in this thread: the global generator seeds its weights
        jobs = []
        for k in range(self.n_models):
            member_seed = seed + 1000 * k  # member 0 is the single model of the same seed
            train_idx, val_idx = splits[k]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(member_seed)
                module = self._build_module(ma.n_vars, mb.n_vars, out_act)
                module.decoder.init_output_bias(stats_b.mean)
                if self.start_at_mean:  # the untrained network predicts the training mean
                    torch.nn.init.zeros_(module.decoder.net[-1].weight)
                if pca is not None:
                    module.projection.set_pca(*pca)
                trained_net = module.body()
                if pc_scores is not None:
                    trained_net = LatentPCARegularised(trained_net, pc_scores, self.latent_pca)
            jobs.append((module, trained_net, member_seed, train_idx, val_idx))

        def train_member(k, on_member_epoch, **how):
            _, trained_net, member_seed, train_idx, val_idx = jobs[k]
            return train_module(
                trained_net,
                x_train,
                targets[k],
                train_idx,
                val_idx,
                schedule,
                seed=member_seed,
                device=device,
                desc="LIBRA" if self.n_models == 1 else f"LIBRA {k + 1}/{self.n_models}",
                on_epoch=on_member_epoch,
                **how,
            )

        def check_member(result):
            # a loss far above the mean baseline's is an error, not a model: checked per
            # member, so a diverged member stops the fit before the next one trains
            at_best = result.history.loc[result.history["epoch"] == result.best_epoch, "train_loss"]
            check_not_diverged(
                result.best_loss,
                stats_b,
                mb.name,
                result.monitor,
                loss,
                train_loss=float(at_best.iloc[0]) if len(at_best) else None,
                # the latent regulariser's error at the start: PC scores of variance <= 1
                auxiliary_baseline=self.latent_pca,
            )

        def member_epoch(k, epoch, tl, vl):
            # side by side: the callback runs in this thread, seeing the member as the model
            self.module, self.training_member_ = jobs[k][0], k
            return on_epoch(epoch, tl, vl)

        show = settings.progress if progress is None else progress
        workers, member_threads = member_workers(
            self.n_models,
            device,
            training_step_flops(jobs[0][1], x_train, batch_size, device),
        )
        results = []
        try:
            if workers > 1:
                logger.debug("training %d members, %d at a time", self.n_models, workers)
                results = train_side_by_side(
                    lambda k, hook: train_member(
                        k, hook, progress=False, threads=member_threads, prefetch=False
                    ),
                    self.n_models,
                    workers,
                    threads=member_threads,
                    check=check_member,
                    progress=show,
                    desc=f"LIBRA ({self.n_models} models, {workers} at a time)",
                    on_epoch=None if on_epoch is None else member_epoch,
                )
                results = [r for r in results if r is not None]  # skipped after a stop
            else:
                for k in range(self.n_models):
                    self.module, self.training_member_ = jobs[k][0], k
                    result = train_member(k, on_epoch, progress=show)
                    check_member(result)
                    results.append(result)
                    if result.stopped_by == "callback":
                        break
        except Exception:
            self.module = None
            raise
        finally:
            self.training_member_ = None
        members = [jobs[k][0] for k in range(len(results))]
        # each monitored member against the mean baseline of its own training cells, on its
        # validation cells; with mean_fallback, one that trained to its own stop (not cut
        # short by max_epochs or a callback) and does not beat it by min_delta (the decrease
        # that counts as an improvement in early stopping) predicts the mean
        monitored = [k for k, r in enumerate(results) if r.monitor == "val_loss"]
        baselines = [
            mean_baseline_loss(
                mb, jobs[k][4], mean_of_other_rows(mb, jobs[k][4], stats_b.mean), loss
            )
            for k in monitored
        ]
        self.members_at_mean_ = []
        if self.mean_fallback:
            for k, base in zip(monitored, baselines):
                beats = results[k].best_loss < base * (1.0 - schedule.min_delta)
                if results[k].stopped_by == "early_stopping" and not beats:
                    members[k].decoder.predict_mean(stats_b.mean)
                    self.members_at_mean_.append(k)
        trained = np.zeros(n, dtype=bool)
        for k in range(len(results)):
            trained[jobs[k][3]] = True
        self.module = members[0] if len(members) == 1 else EnsembleNet(members)
        if len(results) == 1:
            result = results[0]
            history = result.history
        else:
            history = pd.concat(
                [r.history.assign(member=i) for i, r in enumerate(results)], ignore_index=True
            )
        self.loss_ = loss
        self.output_activation_ = out_act
        self.features_a, self.features_b = pd.Index(ma.features), pd.Index(mb.features)
        self.names_ = (ma.name, mb.name)
        self.history = history
        self.n_epochs_ = int(max(r.n_epochs for r in results))  # epochs of the longest member
        self.best_val_loss_ = float(np.mean([r.best_loss for r in results]))
        if monitored:
            report_gain_over_mean(
                [results[k].best_loss for k in monitored],
                baselines,
                mb.name,
                converged=all(results[k].stopped_by == "early_stopping" for k in monitored),
                peaks=bool(stats_b.binary),
                at_mean=len(self.members_at_mean_),
            )
        self.stopped_by_ = results[-1].stopped_by
        self.fit_params_ = fit_params
        # training cells: those any member trained on; validation: those none trained on
        self.train_cells_ = pd.Index(ma.cells[trained])
        self.val_cells_ = pd.Index(ma.cells[~trained])
        self.b_encoder = None
        self.b_encoder_history = None
        return self

    def _smoothed_targets(self, mb, stats_b, splits, seed: int) -> list:
        """Each member's training target: B itself, or with ``target_smoothing`` (where it
        applies: :func:`~sclibra._recipe.smoothing_skipped`) B with that member's training
        rows smoothed over their neighbours in B's principal-component space.
        """
        weight = float(self.target_smoothing)
        skipped = smoothing_skipped(stats_b, weight, mb.n_obs)
        if not weight or skipped:
            if skipped:
                logger.info("target_smoothing: %s trains on its own values: %s", mb.name, skipped)
            return [mb] * len(splits)
        values = np.ascontiguousarray(mb.dense_rows(np.arange(mb.n_obs)), dtype=np.float32)
        n_pcs = min(SMOOTHING_PCS, mb.n_obs - 1)
        if mb.n_vars <= n_pcs:  # a narrow target: its own values, no PCA needed
            scores = values
            space = "its values" if mb.n_vars == 1 else f"its {mb.n_vars} features"
        else:
            scores = input_pc_scores(mb, n_pcs, seed)
            space = f"{scores.shape[1]} principal components of {mb.name}"
        k = int(self.target_neighbors)
        logger.info(
            "target_smoothing: %s's training cells learn %.0f %% of the mean of their %d "
            "nearest training cells (in %s)",
            mb.name,
            100 * weight,
            k,
            space,
        )
        neighbours = smoothing_neighbours(scores, [tr for tr, _ in splits], k)
        # B is read once; each member gets its own smoothed copy
        return [smoothed_targets(values, tr, nb, weight) for (tr, _), nb in zip(splits, neighbours)]

    def _build_module(self, n_input: int, n_output: int, output_activation: str, members=None):
        """The network of this model's hyperparameters: one :class:`LIBRANet`, or an ensemble.

        Used by :meth:`fit` (one member at a time: ``members=None``) and by :meth:`load` (all
        members, to receive the saved weights), so both build the same architecture.
        """

        def one():
            return LIBRANet(
                n_input,
                n_output,
                self.n_layers,
                self.n_nodes,
                self.alpha,
                self.dropout,
                self.latent_dim,
                output_activation,
                self.output_rank_used_ or None,
                self.input_pcs_ or None,
            )

        if members is None or members == 1:
            return one()
        return EnsembleNet([one() for _ in range(members)])

    def _build_b_encoder(self, n_input: int) -> LatentNet:
        """The second network of nn_consistency: modality B -> this model's latent space."""
        return LatentNet(
            n_input, self.n_layers, self.n_nodes, self.alpha, self.dropout, self.latent_width_
        )

    def _schedule(self, **given) -> tuple[dict, Schedule]:
        """The fit arguments of a run (given values, else the preset's, checked) and its
        training schedule.

        Bounds are checked here, once, before any data is read. Every recipe value whose name
        is a field of :class:`Schedule` (the model's and the run's) reaches the training loop.
        """
        run = {k: given.get(k) for k in FIT_KEYS}
        run = {
            k: check_recipe_value(k, self.fit_defaults[k] if v is None else v)
            for k, v in run.items()
        }
        values = {**{k: getattr(self, k) for k in MODEL_KEYS}, **run}
        fields = {f.name for f in dataclasses.fields(Schedule)}
        schedule = Schedule(**{k: v for k, v in values.items() if k in fields})
        return run, schedule

    def _resolve_output_activation(self, target_min: float, name: str) -> str:
        if self.output_activation == "auto":
            return "relu" if target_min >= 0 else "linear"
        if self.output_activation in ("relu", "softplus") and target_min < 0:
            raise SclibraError(
                f"{name} has negative values (min {target_min:.3g}) but output_activation="
                f"{self.output_activation!r} cannot produce them; use 'linear' or 'auto'"
            )
        return self.output_activation

    # ------------------------------------------------------------------------------------------
    def _input_matrix(self, a, inputs: CellInputs, features=None, name=None) -> Matrix:
        features = self.features_a if features is None else features
        m = as_matrix(
            a, layer=inputs.layer, obsm=inputs.obsm, mod=inputs.mod, name=name or self.names_[0]
        )
        check_unique(m.cells, "cell", m.name)
        return match_features(m, features, fill_missing=bool(inputs.fill_missing))

    @takes_fields("inputs", CellInputs)
    def get_latent(
        self,
        a,
        *,
        inputs: CellInputs,  # the arguments layer, obsm, mod, fill_missing, batch_size
    ) -> np.ndarray:
        """Coordinates of cells in the shared latent space (cells x ``latent_width_``:
        ``latent_dim`` per ensemble member, the members side by side).

        Parameters
        ----------
        a
            Modality A of the cells (any input accepted by :meth:`fit`). Features are matched by
            name to the training features.
        layer, obsm, mod
            Where to read modality A.
        fill_missing
            Fill features missing from ``a`` with zeros (with a warning) instead of raising.
        batch_size
            Cells per minibatch (default: 1024).
        """
        self._check_trained()
        m = self._input_matrix(a, inputs)
        return self._apply(self.module.encode, m, inputs.batch_size, self.latent_width_)

    def _apply(self, fn, m: Matrix, batch_size, width) -> np.ndarray:
        device = self._device()
        module = fn.__self__  # the network the bound method belongs to
        module.to(device).eval()
        out = apply_module(
            fn, m, batch_size=batch_size or 1024, device=device, sparse=use_sparse_path(m, device)
        )
        _check_finite_output(out, m, module)
        return out.reshape(m.n_obs, width)

    @takes_fields("inputs", CellInputs)
    def predict(
        self,
        a,
        *,
        inputs: CellInputs,  # the arguments layer, obsm, mod, fill_missing, batch_size
    ):
        """Predict modality B from modality A.

        Returns
        -------
        AnnData
            Cells of ``a`` x the training features of B (``var_names`` as in training); ``obs`` is
            copied from ``a`` when it is an AnnData; ``obsm['X_libra']`` holds the latent space.
        """
        import anndata as ad

        self._check_trained()
        m = self._input_matrix(a, inputs)
        device = self._device()
        self.module.to(device).eval()
        sparse = use_sparse_path(m, device)
        bs = inputs.batch_size or 1024
        from ._train import to_tensor

        # written in place, minibatch by minibatch (no list of blocks to concatenate: for a
        # wide target that would be a second copy of the whole prediction); a prediction that
        # is one minibatch is the decoder's own array, not a copy of it
        X = Z = None
        with torch.no_grad():
            for start in range(0, m.n_obs, bs):
                stop = min(start + bs, m.n_obs)
                z = self.module.encode(to_tensor(m, np.arange(start, stop), device, sparse))
                x = self.module.decode(z).cpu().numpy()
                if stop - start == m.n_obs and x.dtype == np.float32 and x.flags.c_contiguous:
                    X, Z = x, z.cpu().numpy()
                    break
                if X is None:
                    X = np.empty((m.n_obs, x.shape[1]), dtype=np.float32)
                    Z = np.empty((m.n_obs, z.shape[1]), dtype=np.float32)
                Z[start:stop] = z.cpu().numpy()
                X[start:stop] = x
        if X is None:  # no cells
            X = np.empty((0, len(self.features_b)), dtype=np.float32)
            Z = np.empty((0, self.latent_width_), dtype=np.float32)
        _check_finite_output(X, m, self.module)
        obs = pd.DataFrame(index=pd.Index(m.cells, name=None))
        if m.obs is not None:
            obs = m.obs.reindex(m.cells).copy()
            obs.index = obs.index.astype(str)
        out = ad.AnnData(
            X=X.astype(np.float32, copy=False),
            obs=obs,
            var=pd.DataFrame(index=self.features_b.copy()),
        )
        out.obsm["X_libra"] = Z.astype(np.float32, copy=False)
        out.uns["sclibra"] = {
            "predicted_from": self.names_[0],
            "predicted_modality": self.names_[1],
            "params": {k: v for k, v in self.config.items() if v is not None},
        }
        return out

    # ------------------------------------------------------------------------------------------
    @takes_recipe("fit", after="train")
    @takes_fields("inputs", PairInputs)  # the arguments mod_a, mod_b, layer_a, ... obsm_b
    def fit_b_encoder(
        self, a, b=None, *, inputs: PairInputs, train=None, progress: bool | None = None, **schedule
    ) -> LIBRA:
        """Train the second network of nn_consistency: modality B -> this model's latent space.

        It has the same hyperparameters as the model's encoder and learns, on paired cells, to
        place each cell's B profile where the model places its A profile. Afterwards
        :meth:`get_latent_from_b` embeds cells measured in B only.

        The schedule is that of :meth:`fit` (``None``: the model's preset), except that the
        validation split is never 0: the network is always monitored on held-out cells.

        Parameters
        ----------
        a, b, mod_a, mod_b, layer_a, layer_b, obsm_a, obsm_b
            The paired data, as in :meth:`fit`.
        train
            Cells to train on; default: the cells the model itself was trained on (training
            and validation cells) that are present, so held-out cells stay held out.
        <recipe arguments>
        progress
            Show a progress bar (default: ``sclibra.settings.progress``).
        """
        self._check_trained()
        run, schedule = self._schedule(**schedule)
        validation_split = run["validation_split"]
        if validation_split == 0:
            validation_split = 0.1  # as in 0.1.0, whose B encoder always held out 10 %
        ma, mb = inputs.read(a, b)
        ma = match_features(ma, self.features_a)
        mb = match_features(mb, self.features_b, what="model (B features)")
        ma, mb = pair_cells(ma, mb)
        if train is None:
            seen = self.train_cells_.append(self.val_cells_)
            cells = ma.cells[ma.cells.isin(seen)]
            if len(cells) == 0:
                logger.warning(
                    "none of the model's training cells are in the input: using all %d paired cells",
                    ma.n_obs,
                )
                cells = ma.cells
        else:
            cells = select_pair_cells(train, ma, mb, what="train")
        ma, mb = ma.subset_cells(cells), mb.subset_cells(cells)
        validate(mb, role="input")
        target = self._apply(self.module.encode, ma, None, self.latent_width_)
        seed = self._seed_used if self._seed_used is not None else (settings.seed or 0)
        train_idx, val_idx = _split_validation(mb.n_obs, validation_split, seed + 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            net = self._build_b_encoder(mb.n_vars)
        schedule = dataclasses.replace(
            schedule, batch_size=min(self.batch_size, len(train_idx)), loss="mse"
        )
        result = train_module(
            net,
            mb,
            target,
            train_idx,
            val_idx,
            schedule,
            seed=seed + 1,
            device=self._device(),
            progress=settings.progress if progress is None else progress,
            desc="B encoder",
        )
        self.b_encoder = net
        self.b_encoder_history = result.history
        return self

    @takes_fields("inputs", CellInputs)
    def get_latent_from_b(
        self,
        b,
        *,
        inputs: CellInputs,  # the arguments layer, obsm, mod, fill_missing, batch_size
    ) -> np.ndarray:
        """Place cells measured in modality B only into the shared latent space.

        Needs :meth:`fit_b_encoder` first.
        """
        self._check_trained()
        if self.b_encoder is None:
            raise NotTrainedError(
                "no B encoder: call fit_b_encoder(a, b) first (it is also trained by nn_consistency)"
            )
        m = self._input_matrix(b, inputs, features=self.features_b, name=self.names_[1])
        return self._apply(self.b_encoder.forward, m, inputs.batch_size, self.latent_width_)

    # ------------------------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Save the trained model to a directory.

        Writes ``config.json`` (hyperparameters, versions, training summary), ``features.json``
        (feature names of both modalities), ``weights.pt`` (tensors only), ``history.csv``,
        ``cells.json``, the optional B encoder (``b_encoder.pt``) and ``manifest.json`` (the
        sha256 of each file, checked by :meth:`load`).

        The folder is written beside its destination, flushed to disk and moved into place, so a
        crash never leaves a half-written model; a crash while replacing an existing model is
        finished by the next save or load of the path. ``overwrite=True`` replaces only a folder
        that holds nothing but a sclibra model (or nothing): any other file in it is named and
        the save refused, never deleted.

        Parameters
        ----------
        path
            The model folder.
        overwrite
            Replace an existing model at ``path``.

        Returns
        -------
        The path of the saved model.
        """
        self._check_trained()
        return _persist.save(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, adata=None, *, device=None) -> LIBRA:
        """Load a model saved with :meth:`save`.

        Only tensors are read from the weight files (``torch.load(weights_only=True)``): loading
        never executes code from the files. Every file is checked (structure, values, the
        checksums of ``manifest.json``); a problem raises :class:`~sclibra.ModelFileError`
        naming the file. An unreadable optional file (``history.csv``, ``cells.json``) only
        warns. Models saved by sclibra 0.1.0 (format 1, no manifest) load too.

        Parameters
        ----------
        path
            The model directory.
        adata
            Optionally, data of modality A to check against: its features must include every
            feature the model was trained on.
        device
            Where to put the model (default: the settings' device).
        """
        import inspect

        known = set(inspect.signature(cls.__init__).parameters) - {"self", "device"}
        folder = _persist.read(path, known)
        path, meta = folder.path, folder.meta
        # a model saved before presets existed has the 0.1.0 recipe, and a recipe argument
        # missing from an older file is a feature it did not have: its 0.1.0 value
        old = {k: v for k, v in PRESETS["0.1.0"].items() if k in MODEL_KEYS}
        try:
            model = cls(**{"preset": "0.1.0", **old, **meta["config"], "device": device})
        except SclibraError as err:
            raise ModelFileError(f"{path / 'config.json'}: {err}") from None
        out_act = meta.get("output_activation_") or "relu"
        if out_act not in OUTPUT_ACTIVATIONS:
            raise ModelFileError(
                f"{path / 'config.json'}: output_activation_ must be one of "
                f"{', '.join(OUTPUT_ACTIVATIONS)}; got {out_act!r}"
            )
        fa, fb = folder.features_a, folder.features_b
        model.input_pcs_ = int(meta.get("input_pcs", 0))
        if model.input_pcs_ < 0 or model.input_pcs_ >= max(len(fa), 1):
            raise ModelFileError(
                f"{path / 'config.json'}: input_pcs must be in [0, {len(fa) - 1}] (the model "
                f"reads {len(fa)} features), got {model.input_pcs_}"
            )
        # the output layer's rank: recorded since format 4; before, the rule of the time
        rank = meta.get("output_rank_used")
        if rank is None:
            rank = output_rank_for(model.output_rank, len(fb), WIDE_OUTPUT_BEFORE_FORMAT_4)
        if rank < 0:
            raise ModelFileError(
                f"{path / 'config.json'}: output_rank_used must be >= 0, got {rank}"
            )
        model.output_rank_used_ = int(rank)
        # recorded since 0.2.0's latent_pcs = 0 (from the loss); before, latent_pcs itself
        used = meta.get("latent_pcs_used")
        if used is None:
            used = model.latent_pcs if model.latent_pca > 0 else 0
        if used < 0:
            raise ModelFileError(
                f"{path / 'config.json'}: latent_pcs_used must be >= 0, got {used}"
            )
        model.latent_pcs_used_ = int(used)
        at_mean = meta.get("members_at_mean", [])
        n_members = int(meta.get("n_members", 1))
        if not all(
            isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n_members for k in at_mean
        ):
            raise ModelFileError(
                f"{path / 'config.json'}: members_at_mean must list member numbers in "
                f"[0, {n_members - 1}], got {at_mean!r}"
            )
        model.members_at_mean_ = list(at_mean)
        fit_params = meta.get("fit_params")  # recorded since format 6
        if fit_params is not None:
            unknown = [k for k in fit_params if k not in FIT_KEYS]
            if unknown:
                raise ModelFileError(
                    f"{path / 'config.json'}: fit_params has unknown keys {format_names(unknown)}"
                )
            model.fit_params_ = dict(fit_params)
        module = model._build_module(len(fa), len(fb), out_act, n_members)
        model.module = _persist.load_state(module, folder.weights, path / "weights.pt")
        model.loss_ = meta.get("loss_", "mse")
        if folder.b_encoder is not None:
            net = model._build_b_encoder(len(fb))
            model.b_encoder = _persist.load_state(net, folder.b_encoder, path / "b_encoder.pt")
            model.b_encoder_history = folder.b_encoder_history
        model.features_a, model.features_b = fa, fb
        model.output_activation_ = out_act
        model.names_ = tuple(meta.get("modality_names", ["A", "B"]))
        model.n_epochs_ = int(meta.get("n_epochs", 0))
        model.best_val_loss_ = meta.get("best_val_loss")
        model.stopped_by_ = meta.get("stopped_by")
        model._seed_used = meta.get("seed_used")
        model.history = folder.history
        model.train_cells_ = pd.Index(folder.cells["train"], dtype=object)
        model.val_cells_ = pd.Index(folder.cells["validation"], dtype=object)
        if adata is not None:
            model._input_matrix(adata, CellInputs())
        return model


LIBRA.__doc__ = recipe_docstring(LIBRA.__doc__, "model")


def _split_validation(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (training, validation) row positions; at least one cell on each side when asked."""
    if validation_split > 0 and n < 2:
        raise SclibraError(
            f"{n} training cell: too few cells to hold out validation cells "
            f"(validation_split={validation_split}); give at least 2 cells, or "
            "validation_split=0 to monitor the training loss"
        )
    n_val = 0
    if validation_split > 0 and n > 1:
        n_val = min(max(int(round(n * validation_split)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _check_finite_output(out: np.ndarray, m: Matrix, module=None) -> None:
    # a row sum is finite when every value is (one pass, no cells x features mask); only rows
    # whose sum is not (a non-finite value, or an overflow) are looked at value by value
    if out.ndim == 2:
        suspect = ~np.isfinite(out.sum(axis=1, dtype=np.float64))
        bad = suspect.copy()
        if suspect.any():
            bad[suspect] = ~np.isfinite(out[suspect]).all(axis=1)
    else:
        bad = ~np.isfinite(out)
    if bad.any() and module is not None:
        broken = [k for k, v in module.state_dict().items() if not torch.isfinite(v).all()]
        if broken:
            raise SclibraError(
                f"the model's weights contain NaN or infinite values (in {format_names(broken)}), "
                "so every prediction is non-finite; the model is broken (did training diverge?): "
                "train it again"
            )
    if bad.any():
        raise SclibraError(
            f"{m.name}: {int(bad.sum())} cells give non-finite output because their input contains "
            f"NaN or infinite values ({format_names(m.cells[bad])})"
        )


def _select_hvg(m: Matrix, n_top: int) -> Matrix:
    """Keep the ``n_top`` most variable features (scanpy 'seurat' flavour) of ``m``."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    n_top = check_int("n_top_genes", n_top)
    if n_top >= m.n_vars:
        logger.info("%s: n_top_genes=%d >= %d features; keeping all", m.name, n_top, m.n_vars)
        return m
    if m.is_backed:
        raise SclibraError(
            f"{m.name}: highly-variable feature selection needs in-memory data (load it without backed=)"
        )
    blocks = list(m.iter_blocks())
    X = sp.vstack(blocks).tocsr() if sp.issparse(blocks[0]) else np.vstack(blocks)
    tmp = ad.AnnData(X=X)
    tmp.var_names = m.features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat", subset=False)
    keep = np.flatnonzero(tmp.var["highly_variable"].to_numpy())
    logger.info("%s: kept %d highly variable of %d features", m.name, len(keep), m.n_vars)
    return m.with_columns(keep)


__all__ = ["LIBRA", "format_names"]
