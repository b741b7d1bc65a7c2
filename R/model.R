# The LIBRAModel R object: a trained Python model plus what R needs to know about it ---------
#
# A Python object does not survive saveRDS() / a new R session (its pointer becomes NULL).
# A LIBRAModel therefore also keeps the model's weights, serialised in the core's on-disk
# format (a zipped save() directory, a raw vector), and rebuilds the Python object from them
# when needed. Seurat and SingleCellExperiment objects that hold a model can thus be saved
# with saveRDS() and reused later.

# Wrap a trained Python model. `extra` holds R-side information (assay names, ...).
.new_model <- function(py, extra = list(), keep = TRUE) {
  handle <- new.env(parent = emptyenv())
  handle$py <- py
  info <- .model_info(py)
  model <- c(info, list(
    input.assay = extra$input.assay %||% info$names[[1]],
    output.assay = extra$output.assay %||% info$names[[2]],
    # the layer (Seurat) or assay (SingleCellExperiment) each modality was read from:
    # prediction and evaluation read the same ones unless told otherwise
    input.slot = extra$input.slot,
    output.slot = extra$output.slot,
    serialized = if (keep) .serialize_model(py) else NULL,
    handle = handle
  ))
  class(model) <- "LIBRAModel"
  model
}

# What R keeps of a trained Python model (plain R values).
.model_info <- function(py) {
  as_chr <- function(index) as.character(reticulate::py_to_r(index$tolist()))
  history <- reticulate::py_to_r(py$history)
  if (is.data.frame(history)) {
    attr(history, "pandas.index") <- NULL
    rownames(history) <- NULL
  }
  best <- reticulate::py_to_r(py$best_val_loss_)
  list(
    config = reticulate::py_to_r(py$config),
    features.input = as_chr(py$features_a),
    features.output = as_chr(py$features_b),
    names = as.character(reticulate::py_to_r(py$names_)),
    train.cells = as_chr(py$train_cells_),
    validation.cells = as_chr(py$val_cells_),
    n.epochs = as.integer(reticulate::py_to_r(py$n_epochs_)),
    best.val.loss = if (is.null(best)) NA_real_ else as.numeric(best),
    output.activation = as.character(reticulate::py_to_r(py$output_activation_)),
    loss = as.character(reticulate::py_to_r(py$loss_) %||% "mse"),
    # ensemble members that predict the training mean (the core's mean_fallback), from 0
    members.at.mean = as.integer(unlist(reticulate::py_to_r(py$members_at_mean_))),
    # the same, in the core's words ("" when none does)
    mean.fallback.note = as.character(reticulate::py_to_r(py$mean_fallback_note_)),
    # the core's fit arguments the model trained with (NULL for files before model format 6)
    fit = reticulate::py_to_r(py$fit_params_),
    has.b.encoder = !is.null(reticulate::py_to_r(py$b_encoder)),
    history = history
  )
}

.serialize_model <- function(py) {
  bytes <- .py(reticulate::py_to_r(.bridge()$model_to_bytes(py)), "Serialising the model")
  as.raw(bytes)
}

# The Python model behind a LIBRAModel, rebuilt from its serialised weights when the session
# changed (or the object went through saveRDS()).
.py_model <- function(model) {
  .check_model(model)
  py <- model$handle$py
  if (is.null(py) || reticulate::py_is_null_xptr(py)) {
    if (is.null(model$serialized)) {
      .abort(c(
        "This LIBRA model is no longer attached to Python and has no stored weights.",
        i = "It was created with {.code keep.model = FALSE}; save models with {.fn SaveLIBRA}."
      ), class = "sclibra_model_error")
    }
    # a raw vector reaches Python as a bytearray
    py <- .py(.bridge()$model_from_bytes(model$serialized), "Restoring the model")
    model$handle$py <- py
  }
  py
}

#' Save and load LIBRA models
#'
#' `SaveLIBRA()` writes a trained model in the on-disk format of the Python core (a directory
#' with `config.json`, `features.json`, `weights.pt`, ...), so a model trained in R loads in
#' Python with `sclibra.LIBRA.load(path)` and a model trained in Python loads in R with
#' `LoadLIBRA(path)`. The directory is written atomically; an existing one is replaced only
#' with `overwrite = TRUE`.
#'
#' @param model A `LIBRAModel`, or a Seurat / SingleCellExperiment object holding one (see
#'   [GetLIBRAModel()]).
#' @param path Directory to write or read.
#' @param overwrite Replace an existing directory.
#' @param reduction For a Seurat or SingleCellExperiment object: the reduction whose model to
#'   save.
#' @param device Torch device for the loaded model (`"cpu"`, `"cuda"`, ...; default: the
#'   core's setting).
#' @param keep.model Keep the weights inside the R object too, so that it survives
#'   [saveRDS()].
#' @return `SaveLIBRA()`: the path, invisibly. `LoadLIBRA()`: a `LIBRAModel`.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", n.nodes = 64, max.epochs = 10,
#'   verbose = FALSE
#' )
#' path <- file.path(tempdir(), "cite_model")
#' SaveLIBRA(GetLIBRAModel(seu), path, overwrite = TRUE)
#' model <- LoadLIBRA(path)
#' model
SaveLIBRA <- function(model, path, overwrite = FALSE, reduction = NULL) {
  .check_string(path)
  .check_flag(overwrite)
  if (!inherits(model, "LIBRAModel")) {
    model <- GetLIBRAModel(model, reduction = reduction)
  }
  py <- .py_model(model)
  path <- path.expand(path)
  .py(py$save(path, overwrite = overwrite), "Saving the model")
  invisible(path)
}

#' @rdname SaveLIBRA
#' @export
LoadLIBRA <- function(path, device = NULL, keep.model = TRUE) {
  .check_string(path)
  .check_string(device, null_ok = TRUE)
  .check_flag(keep.model)
  path <- path.expand(path)
  if (!dir.exists(path)) {
    .abort("No saved LIBRA model at {.file {path}}: the directory does not exist.",
      class = "sclibra_input_error"
    )
  }
  py <- .py(.core()$LIBRA$load(path, device = device), "Loading the model")
  .new_model(py, keep = keep.model)
}

#' Get the trained LIBRA model stored in an object
#'
#' [RunLIBRA()] keeps the trained model with its results: in the `misc` slot of the Seurat
#' dimensional reduction, or in `metadata(sce)$sclibra` for a SingleCellExperiment.
#'
#' @param object A Seurat or SingleCellExperiment object, or the list returned by the matrix
#'   method of [RunLIBRA()].
#' @param reduction Name of the LIBRA reduction (default: `"libra"` for Seurat, `"LIBRA"` for
#'   SingleCellExperiment).
#' @param ... Unused.
#' @return A `LIBRAModel`.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", n.nodes = 64, max.epochs = 10,
#'   verbose = FALSE
#' )
#' GetLIBRAModel(seu, reduction = "libra")
GetLIBRAModel <- function(object, ...) UseMethod("GetLIBRAModel")

#' @rdname GetLIBRAModel
#' @export
GetLIBRAModel.default <- function(object, ...) {
  if (inherits(object, "LIBRAModel")) {
    return(object)
  }
  if (is.list(object) && inherits(object$model, "LIBRAModel")) {
    return(object$model)
  }
  .abort("No LIBRA model found in {.obj_type_friendly {object}}.", class = "sclibra_model_error")
}

#' @rdname GetLIBRAModel
#' @export
GetLIBRAModel.Seurat <- function(object, reduction = "libra", ...) {
  reduction <- reduction %||% "libra"
  .check_string(reduction)
  if (!reduction %in% SeuratObject::Reductions(object)) {
    .abort(c(
      "The Seurat object has no reduction {.val {reduction}}.",
      i = "Reductions: {.val {SeuratObject::Reductions(object)}}. Run {.fn RunLIBRA} first."
    ), class = "sclibra_model_error")
  }
  model <- object[[reduction]]@misc[["model"]]
  if (!inherits(model, "LIBRAModel")) {
    .abort("Reduction {.val {reduction}} holds no LIBRA model (was it made by {.fn RunLIBRA} with {.code keep.model = TRUE}?).",
      class = "sclibra_model_error"
    )
  }
  model
}

#' @rdname GetLIBRAModel
#' @export
GetLIBRAModel.SingleCellExperiment <- function(object, reduction = "LIBRA", ...) {
  reduction <- reduction %||% "LIBRA"
  .check_string(reduction)
  store <- S4Vectors::metadata(object)[["sclibra"]]
  model <- store[[reduction]]$model
  if (!inherits(model, "LIBRAModel")) {
    .abort(c(
      "No LIBRA model stored for reduced dimension {.val {reduction}}.",
      i = "Run {.fn RunLIBRA} first (with {.code keep.model = TRUE})."
    ), class = "sclibra_model_error")
  }
  model
}

#' @export
print.LIBRAModel <- function(x, ...) {
  cfg <- x$config
  cat("LIBRA model: ", x$input.assay, " (", length(x$features.input), " features) -> ",
    x$output.assay, " (", length(x$features.output), " features)\n",
    sep = ""
  )
  cat(sprintf(
    "  architecture: %d layers, %d nodes, latent %d, alpha %g, dropout %g, output %s\n",
    as.integer(cfg$n_layers), as.integer(cfg$n_nodes), as.integer(cfg$latent_dim),
    cfg$alpha, cfg$dropout, x$output.activation
  ))
  cat(sprintf(
    "  training: %d + %d validation cells, %d epochs, best validation %s %s\n",
    length(x$train.cells), length(x$validation.cells), x$n.epochs,
    toupper(x$loss %||% "mse"), format(signif(x$best.val.loss, 4))
  ))
  if (nzchar(x$mean.fallback.note %||% "")) {
    cat("  ", x$mean.fallback.note, " (mean.fallback)\n", sep = "")
  }
  cat(sprintf(
    "  batch size %d, learning rate %g%s\n", as.integer(cfg$batch_size), cfg$learning_rate,
    if (isTRUE(x$has.b.encoder)) ", B encoder fitted" else ""
  ))
  attached <- !is.null(x$handle$py) && !reticulate::py_is_null_xptr(x$handle$py)
  cat("  Python object: ", if (attached) "attached" else if (!is.null(x$serialized)) "stored (restored on use)" else "none", "\n", sep = "")
  invisible(x)
}
