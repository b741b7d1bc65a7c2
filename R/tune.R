#' Search LIBRA hyperparameters (aLIBRA)
#'
#' Runs the aLIBRA search of the Python core (`sclibra.tune()`): trains LIBRA with many
#' hyperparameter configurations on the search cells and selects the best one for prediction
#' (lowest validation error), integration (highest PPJI of latent-space clusters against
#' `labels`) or both (the compromise point of the Pareto front). ASHA stops unpromising trials
#' early. Every finished trial is written to `out.dir`, so an interrupted search resumes where
#' it stopped when run again on the same folder.
#'
#' @inheritParams RunLIBRA
#' @param grid Search space: a preset name (`"default"`, `"prediction"`, `"integration"`) or a
#'   named list of candidate values, e.g. `list(n.nodes = c(64, 128), dropout = c(0.1, 0.3))`
#'   (names in R style with dots or in Python style with underscores).
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
#' @param ... Further arguments of `LIBRA.fit()` for every trial, with Python names (e.g.
#'   `validation_split = 0.2`).
#' @return A `LIBRATuneResult`: a list with `trials` (a data.frame, one row per trial with
#'   its status, hyperparameters, `val_loss`, `ppji`, epochs and time), `best.config` (a named
#'   list), `best.trial` (the selected row), `model` (the selected model, trained, a
#'   `LIBRAModel`), `objective` and `out.dir`.
#' @seealso [LIBRAPredict()] to apply the tuned model to a Seurat object.
#' @export
#' @examples
#' \dontrun{
#' tuned <- TuneLIBRA(seu, input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
#'   grid = list(n.nodes = c(64, 256), latent.dim = c(10, 20)), max.epochs = 30)
#' tuned$trials
#' seu <- LIBRAPredict(seu, model = tuned$model, reduction.name = "libra_tuned")
#' }
TuneLIBRA <- function(object, ...) UseMethod("TuneLIBRA")

# An R grid as the core's search space: Python-style names, integers for whole numbers, and a
# list for every set of candidates (so one value stays a list of one).
.grid_to_py <- function(grid) {
  if (is.character(grid) && length(grid) == 1L) {
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

# Labels over `cells`: a metadata column name or a vector (named by cell, or in cell order).
.resolve_labels <- function(labels, cells, meta = NULL, arg = "labels") {
  if (is.null(labels)) {
    return(NULL)
  }
  if (is.character(labels) && length(labels) == 1L && !is.null(meta)) {
    if (!labels %in% colnames(meta)) {
      .abort(c(
        "Metadata column {.val {labels}} ({.arg {arg}}) does not exist.",
        i = "Columns: {.val {colnames(meta)}}."
      ), class = "sclibra_input_error")
    }
    labels <- stats::setNames(meta[cells, labels], cells)
  }
  if (!is.null(names(labels)) && all(cells %in% names(labels))) {
    labels <- labels[cells]
  } else if (length(labels) != length(cells)) {
    .abort("{.arg {arg}} must name a metadata column or give one label per cell ({length(cells)}), not {length(labels)}.",
      class = "sclibra_input_error"
    )
  }
  labels <- as.character(labels)
  if (anyNA(labels)) {
    .abort("{.arg {arg}} has {sum(is.na(labels))} missing (NA) label{?s}.", class = "sclibra_na_error")
  }
  stats::setNames(labels, cells)
}

.tune_libra <- function(a, b, name_a, name_b, features, output.features, train.cells, meta,
                        labels, grid, objective, strategy, n.trials, max.epochs, grace.period,
                        eta, n.jobs, backend, ray.address, out.dir, overwrite, save.models,
                        seed, device, verbose, dots) {
  objective <- match.arg(objective, c("prediction", "integration", "both"))
  strategy <- match.arg(strategy, c("asha", "random", "grid"))
  backend <- match.arg(backend, c("local", "ray"))
  .check_string(ray.address, "ray.address", null_ok = TRUE)
  if (backend == "ray" && is.null(ray.address)) {
    .abort(c(
      "{.code backend = \"ray\"} needs a running Ray cluster: give its {.arg ray.address}.",
      i = "Start one in a shell with {.code ray start --head} and pass {.code ray.address = \"auto\"}.",
      i = "A local Ray instance cannot be started from inside an R session."
    ), class = "sclibra_input_error")
  }
  .check_count(n.trials, "n.trials", null_ok = TRUE)
  .check_count(max.epochs, "max.epochs")
  .check_count(grace.period, "grace.period")
  .check_number(eta, "eta", min = 1.01)
  .check_count(n.jobs, "n.jobs")
  .check_string(out.dir, "out.dir", null_ok = TRUE)
  .check_flag(overwrite)
  .check_flag(save.models)
  .check_flag(verbose)
  .validate_matrix(a, name_a)
  .validate_matrix(b, name_b)
  shared <- .shared_cells(a, b, name_a, name_b, verbose)
  train <- .resolve_train_cells(train.cells, shared, meta)
  fit_cells <- train %||% shared
  labels <- .resolve_labels(labels, colnames(a), meta)
  if (objective != "prediction" && is.null(labels)) {
    .msg(verbose, "No {.arg labels}: integration is scored against clusters of each modality alone.")
  }
  a <- .select_features(a, features, name_a, fit_cells, verbose)
  b <- .select_features(b, output.features, name_b, fit_cells, verbose)
  ad_a <- .to_anndata(a, name_a)
  ad_b <- .to_anndata(b, name_b)
  fit_kwargs <- reticulate::dict(.dots_to_py(dots))
  args <- list(
    ad_a, ad_b,
    train = if (is.null(train)) NULL else as.list(train),
    grid = .grid_to_py(grid), objective = objective, strategy = strategy,
    n_trials = if (is.null(n.trials)) NULL else as.integer(n.trials),
    labels = if (is.null(labels)) NULL else as.list(unname(labels)),
    max_epochs = as.integer(max.epochs), grace_period = as.integer(grace.period), eta = eta,
    fit_kwargs = fit_kwargs, n_jobs = as.integer(n.jobs), device = device,
    backend = backend, ray_address = ray.address,
    out_dir = if (is.null(out.dir)) NULL else path.expand(out.dir), overwrite = overwrite,
    save_models = save.models, refit = TRUE,
    seed = if (is.null(seed)) NULL else .check_count(seed, "seed", min = 0),
    progress = verbose
  )
  .msg(verbose, "aLIBRA search ({objective}, {strategy}) of {name_a} -> {name_b} on {length(fit_cells)} cells.")
  res <- .with_verbosity(verbose, do.call(.py_call, c(list(.core()$tune), args,
    list(.what = "The aLIBRA search")
  )))
  model <- .py(res$best_model, "Training the selected model")
  trials <- .frame_from_py(res$trials)
  best <- reticulate::py_to_r(res$best_config)
  best_id <- as.character(reticulate::py_to_r(res$best_trial$get("trial_id")))
  structure(list(
    trials = trials,
    best.config = best,
    best.trial = trials[trials$trial_id == best_id, , drop = FALSE],
    model = .new_model(model, list(input.assay = name_a, output.assay = name_b)),
    objective = objective,
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
TuneLIBRA.default <- function(object, output, grid = "prediction", objective = "prediction",
                              strategy = "asha", n.trials = NULL, labels = NULL,
                              train.cells = NULL, features = NULL, output.features = NULL,
                              max.epochs = 1500, grace.period = 10, eta = 3, n.jobs = 1,
                              backend = "local", ray.address = NULL, out.dir = NULL,
                              overwrite = FALSE, save.models = FALSE,
                              seed = NULL, device = NULL, verbose = TRUE, ...) {
  if (missing(output)) {
    .abort("{.arg output} (the features x cells matrix of the modality to reconstruct) is missing.",
      class = "sclibra_input_error"
    )
  }
  .tune_libra(
    object, output, "input", "output", features, output.features, train.cells, NULL,
    labels, grid, objective, strategy, n.trials, max.epochs, grace.period, eta, n.jobs,
    backend, ray.address, out.dir, overwrite, save.models, seed, device, verbose, list(...)
  )
}

#' @rdname TuneLIBRA
#' @export
TuneLIBRA.Seurat <- function(object, input.assay = NULL, output.assay, input.slot = "data",
                             output.slot = "data", grid = "prediction",
                             objective = "prediction", strategy = "asha", n.trials = NULL,
                             labels = NULL, train.cells = NULL, features = NULL,
                             output.features = NULL, max.epochs = 1500, grace.period = 10,
                             eta = 3, n.jobs = 1, backend = "local", ray.address = NULL,
                             out.dir = NULL, overwrite = FALSE,
                             save.models = FALSE, seed = NULL, device = NULL, verbose = TRUE,
                             ...) {
  input.assay <- input.assay %||% SeuratObject::DefaultAssay(object)
  if (missing(output.assay)) {
    .abort("{.arg output.assay} is missing: which assay should LIBRA reconstruct?",
      class = "sclibra_missing_assay"
    )
  }
  a <- .seurat_matrix(object, input.assay, input.slot, "input.assay")
  b <- .seurat_matrix(object, output.assay, output.slot, "output.assay")
  features <- features %||% .variable_features(object, input.assay, a, verbose)
  res <- .tune_libra(
    a, b, input.assay, output.assay, features, output.features, train.cells, object[[]],
    labels, grid, objective, strategy, n.trials, max.epochs, grace.period, eta, n.jobs,
    backend, ray.address, out.dir, overwrite, save.models, seed, device, verbose, list(...)
  )
  res$model$output.slot <- output.slot
  res
}

#' @rdname TuneLIBRA
#' @export
TuneLIBRA.SingleCellExperiment <- function(object, input.assay = "logcounts",
                                           output.assay = "logcounts", input.altexp = NULL,
                                           output.altexp = NULL, grid = "prediction",
                                           objective = "prediction", strategy = "asha",
                                           n.trials = NULL, labels = NULL, train.cells = NULL,
                                           features = NULL, output.features = NULL,
                                           max.epochs = 1500, grace.period = 10, eta = 3,
                                           n.jobs = 1, backend = "local", ray.address = NULL,
                                           out.dir = NULL, overwrite = FALSE,
                                           save.models = FALSE, seed = NULL, device = NULL,
                                           verbose = TRUE, ...) {
  .need_sce()
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  b <- .sce_matrix(object, output.assay, output.altexp, "output.assay")
  meta <- .sce_meta(object)
  res <- .tune_libra(
    a, b, input.altexp %||% .main_name(object), output.altexp %||% .main_name(object),
    features, output.features, train.cells, meta, labels, grid, objective, strategy,
    n.trials, max.epochs, grace.period, eta, n.jobs, backend, ray.address, out.dir, overwrite,
    save.models, seed, device, verbose, list(...)
  )
  res$model$output.slot <- output.assay
  res
}
