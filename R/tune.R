#' Search LIBRA hyperparameters (aLIBRA)
#'
#' Runs the aLIBRA search of the Python core (`sclibra.tune()`): trains LIBRA with many
#' hyperparameter configurations on the search cells and selects the best one for prediction
#' (lowest validation error), integration (highest PPJI of latent-space clusters against
#' `labels`) or both (the compromise point of the Pareto front). ASHA stops unpromising trials
#' early. Every finished trial is written to `out.dir`, so an interrupted search resumes where
#' it stopped when run again on the same folder.
#'
#' Every argument of the search left at `NULL` (the default of `grid`, `objective`,
#' `strategy`, `n.trials`, `max.epochs`, `grace.period`, `eta`, `n.jobs`, `backend`,
#' `out.dir`, `overwrite`, `save.models`, `seed`, `device`) takes the core's default, that of
#' `sclibra.tune()` in Python and of `sclibra tune` on the command line.
#'
#' @inheritParams RunLIBRA
#' @param grid Search space: a preset name (`"default"`, `"prediction"`, `"integration"`) or a
#'   named list of candidate values, e.g. `list(n.nodes = c(64, 128), dropout = c(0.1, 0.3))`
#'   (names in R style with dots or in Python style with underscores). With `strategy =
#'   "random"` or `"asha"` an entry may also be a distribution of the core to sample from,
#'   e.g. `learning.rate = sclibra_python_module()$tune$loguniform(1e-4, 1e-2)` (also
#'   `uniform`, `randint`, `choice`).
#' @param objective `"prediction"`, `"integration"` or `"both"`.
#' @param strategy `"asha"` (successive halving), `"random"` or `"grid"` (every combination).
#' @param n.trials Number of configurations for `"random"` / `"asha"` (`NULL`: all of a
#'   finite grid with ASHA).
#' @param labels Reference labels for the integration objective: a metadata column name (e.g.
#'   `"cell_type"`) or a vector over the cells.
#' @param train.cells The search cells (keep test cells out): cell names, a logical vector or
#'   a logical metadata column such as `"is_train"`. Default: all paired cells.
#' @param max.epochs Epoch budget of each trial.
#' @param grace.period,eta ASHA's first rung (epochs) and reduction factor.
#' @param n.jobs Trials run in parallel (local worker processes).
#' @param backend `"local"` (worker processes on this machine) or `"ray"` (Ray Tune; needs the
#'   Python extra `sclibra[ray]`): the same search, the same result.
#' @param ray.address Address of a running Ray cluster, e.g. `"auto"` after `ray start --head`
#'   in a shell. Required with `backend = "ray"`: a local Ray instance cannot be started from
#'   inside an R session (its processes time out at start-up under reticulate).
#' @param out.dir Folder of the durable trial records (`NULL`: a temporary folder). Rerunning
#'   the same search on it resumes it.
#' @param overwrite Replace a different search already in `out.dir`.
#' @param save.models Keep every trial's model in `out.dir`.
#' @param output For the matrix method: features x cells matrix of the output modality.
#' @param verbose Show messages and progress (trials done, then the training of the selected
#'   model: a line when each starts, every few seconds and at its end), all as R messages, so
#'   that `suppressMessages()` silences them as well as `verbose = FALSE`.
#' @param ... Further arguments of `sclibra.tune()` (e.g. `save.latent = TRUE`,
#'   `cluster.resolution = 0.5`) or of `LIBRA.fit()` for every trial (e.g.
#'   `validation.split = 0.2`, or `batch.key = "donor"`: a metadata column or one label per
#'   cell, as in [RunLIBRA()], so that every trial validates on whole batches), in R or Python
#'   spelling; Seurat spellings `assay`, `layer`, `slot`. Any other name is an error.
#' @return A `LIBRATuneResult`: a list with `trials` (a data.frame, one row per trial with
#'   its status, hyperparameters, `val_loss`, `ppji`, epochs and time), `best.config` (a named
#'   list), `best.trial` (the selected row), `model` (the selected model, trained, a
#'   `LIBRAModel`), `objective` and `out.dir`.
#' @seealso [LIBRAPredict()] to apply the tuned model to a Seurat object.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' tuned <- TuneLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
#'   grid = list(n.nodes = c(32, 64)), strategy = "grid", max.epochs = 5, verbose = FALSE
#' )
#' tuned$trials[, c("trial_id", "n_nodes", "val_loss")]
#' seu <- LIBRAPredict(seu, model = tuned$model, reduction.name = "libra_tuned", verbose = FALSE)
TuneLIBRA <- function(object, ...) UseMethod("TuneLIBRA")

# An R grid as the core's search space: Python-style names, integers for whole numbers, and a
# list for every set of candidates (so one value stays a list of one).
.grid_to_py <- function(grid) {
  if (is.null(grid) || (is.character(grid) && length(grid) == 1L)) {
    return(grid)
  }
  if (!is.list(grid) || is.null(names(grid)) || any(!nzchar(names(grid)))) {
    .abort("{.arg grid} must be a preset name or a named list of candidate values.",
      class = "sclibra_input_error"
    )
  }
  out <- lapply(grid, function(values) {
    if (inherits(values, "python.builtin.object")) {
      return(values)
    }
    if (!length(values)) {
      .abort("Every entry of {.arg grid} needs at least one candidate value.",
        class = "sclibra_input_error"
      )
    }
    lapply(as.list(values), .pyify)
  })
  names(out) <- gsub(".", "_", names(grid), fixed = TRUE)
  out
}

# Formals of the TuneLIBRA() methods that are arguments of sclibra.tune() (NULL: its default).
.tune_formals <- c(
  "grid", "objective", "strategy", "n.trials", "max.epochs", "grace.period", "eta", "n.jobs",
  "backend", "ray.address", "out.dir", "overwrite", "save.models", "seed", "device"
)

# Arguments of sclibra.tune() that R sets itself.
.tune_reserved <- c(
  "a", "b", "mod_a", "mod_b", "layer_a", "layer_b", "obsm_a", "obsm_b", "train", "labels",
  "fit_kwargs", "refit", "progress", "trainer"
)

# The search settings from a method's frame and `...`: `tune` (arguments of sclibra.tune())
# and `fit` (LIBRA.fit() arguments for every trial), holding only what the user gave.
.tune_settings <- function(env, dots, fn) {
  values <- c(mget(.tune_formals, envir = env), dots)
  values$grid <- .grid_to_py(values$grid)
  if (!is.null(values$out.dir)) {
    .check_string(values$out.dir, "out.dir")
    values$out.dir <- path.expand(values$out.dir)
  }
  settings <- .core_args(values, c("tune", "fit"), fn, reserved = c(.tune_reserved, .fit_reserved))
  settings$fit <- settings$fit[setdiff(names(settings$fit), names(settings$tune))]
  if (identical(settings$tune$backend, "ray") && is.null(settings$tune$ray_address)) {
    .abort(c(
      "{.code backend = \"ray\"} needs a running Ray cluster: give its {.arg ray.address}.",
      i = "Start one in a shell with {.code ray start --head} and pass {.code ray.address = \"auto\"}.",
      i = "A local Ray instance cannot be started from inside an R session."
    ), class = "sclibra_input_error")
  }
  settings
}

.tune_libra <- function(pair_args, labels, settings, verbose) {
  .check_flag(verbose)
  pair <- do.call(.prepare_pair, c(pair_args, list(verbose = verbose)))
  # cells outside the search may lack a label (unannotated or held-out cells); search cells not
  labels <- .resolve_labels(labels, pair$cells, pair_args$meta,
    required = unlist(pair$train) %||% pair$cells, what = "search cell"
  )
  objective <- settings$tune$objective %||% .core_defaults("tune")$objective
  if (!identical(objective, "prediction") && is.null(labels)) {
    .msg(verbose, "No {.arg labels}: integration is scored against clusters of each modality alone.")
  }
  args <- c(
    list(
      .core()$tune, pair$ad_a, pair$ad_b,
      train = pair$train,
      labels = if (is.null(labels)) NULL else as.list(unname(labels)),
      fit_kwargs = reticulate::dict(.with_batches(settings$fit, pair, pair_args$meta)), refit = TRUE,
      # the core's trial and epoch bars reach R as messages (.py_call), so verbose alone decides
      progress = isTRUE(verbose)
    ),
    settings$tune,
    list(.what = "The aLIBRA search", .verbose = verbose)
  )
  res <- do.call(.py_call, args)
  model <- .py(res$best_model, "Training the selected model")
  trials <- .frame_from_py(res$trials)
  best <- reticulate::py_to_r(res$best_config)
  best_id <- as.character(reticulate::py_to_r(res$best_trial$get("trial_id")))
  structure(list(
    trials = trials,
    best.config = best,
    best.trial = trials[trials$trial_id == best_id, , drop = FALSE],
    model = .new_model(model, list(input.assay = pair_args$name_a, output.assay = pair_args$name_b)),
    objective = reticulate::py_to_r(res$objective),
    out.dir = reticulate::py_str(res$out_dir)
  ), class = "LIBRATuneResult")
}

#' @export
print.LIBRATuneResult <- function(x, ...) {
  status <- table(x$trials$status)
  cat(sprintf(
    "aLIBRA search (%s): %d trials (%s)\n", x$objective, nrow(x$trials),
    paste(sprintf("%d %s", as.integer(status), names(status)), collapse = ", ")
  ))
  best <- vapply(names(x$best.config), function(k) format(x$best.config[[k]]), "")
  cat("  best: ", paste(names(best), best, sep = " = ", collapse = ", "), "\n", sep = "")
  metrics <- intersect(c("val_loss", "ppji", "ari"), names(x$best.trial))
  if (length(metrics)) {
    vals <- vapply(metrics, function(m) format(signif(x$best.trial[[m]][1], 4)), "")
    cat("  score: ", paste(metrics, vals, sep = " = ", collapse = ", "), "\n", sep = "")
  }
  cat("  trials in: ", x$out.dir, "\n", sep = "")
  invisible(x)
}

#' @rdname TuneLIBRA
#' @export
TuneLIBRA.default <- function(object, output, grid = NULL, objective = NULL, strategy = NULL,
                              n.trials = NULL, labels = NULL, train.cells = NULL,
                              features = NULL, output.features = NULL, max.epochs = NULL,
                              grace.period = NULL, eta = NULL, n.jobs = NULL, backend = NULL,
                              ray.address = NULL, out.dir = NULL, overwrite = NULL,
                              save.models = NULL, seed = NULL, device = NULL, verbose = TRUE,
                              ...) {
  if (missing(output)) {
    .abort("{.arg output} (the features x cells matrix of the modality to reconstruct) is missing.",
      class = "sclibra_input_error"
    )
  }
  settings <- .tune_settings(environment(), list(...), "TuneLIBRA")
  .tune_libra(
    list(
      a = object, b = output, name_a = "input", name_b = "output", features = features,
      output.features = output.features, train.cells = train.cells, meta = NULL
    ),
    labels, settings, verbose
  )
}

#' @rdname TuneLIBRA
#' @export
TuneLIBRA.Seurat <- function(object, input.assay = NULL, output.assay, input.slot = NULL,
                             output.slot = NULL, grid = NULL, objective = NULL, strategy = NULL,
                             n.trials = NULL, labels = NULL, train.cells = NULL, features = NULL,
                             output.features = NULL, max.epochs = NULL, grace.period = NULL,
                             eta = NULL, n.jobs = NULL, backend = NULL, ray.address = NULL,
                             out.dir = NULL, overwrite = NULL, save.models = NULL, seed = NULL,
                             device = NULL, verbose = TRUE, ...) {
  dots <- .seurat_assay_args(environment(), list(...), "TuneLIBRA")
  settings <- .tune_settings(environment(), dots, "TuneLIBRA")
  res <- .tune_libra(.seurat_pair_args(environment()), labels, settings, verbose)
  res$model$input.slot <- input.slot
  res$model$output.slot <- output.slot
  res
}

#' @rdname TuneLIBRA
#' @export
TuneLIBRA.SingleCellExperiment <- function(object, input.assay = "logcounts",
                                           output.assay = "logcounts", input.altexp = NULL,
                                           output.altexp = NULL, grid = NULL, objective = NULL,
                                           strategy = NULL, n.trials = NULL, labels = NULL,
                                           train.cells = NULL, features = NULL,
                                           output.features = NULL, max.epochs = NULL,
                                           grace.period = NULL, eta = NULL, n.jobs = NULL,
                                           backend = NULL, ray.address = NULL, out.dir = NULL,
                                           overwrite = NULL, save.models = NULL, seed = NULL,
                                           device = NULL, verbose = TRUE, ...) {
  .need_sce()
  settings <- .tune_settings(environment(), list(...), "TuneLIBRA")
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  b <- .sce_matrix(object, output.assay, output.altexp, "output.assay")
  res <- .tune_libra(
    list(
      a = a, b = b, name_a = input.altexp %||% .main_name(object),
      name_b = output.altexp %||% .main_name(object), features = features,
      output.features = output.features, train.cells = train.cells, meta = .sce_meta(object)
    ),
    labels, settings, verbose
  )
  res$model$input.slot <- input.assay
  res$model$output.slot <- output.assay
  res
}
