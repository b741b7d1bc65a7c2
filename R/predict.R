#' Apply a trained LIBRA model to new cells
#'
#' Embeds cells into a trained model's latent space and predicts its output modality from
#' the input modality alone: for instance RNA-only cells get a predicted ADT assay. Features
#' are matched by name to those the model was trained on (in any order; extra features are
#' ignored); missing features are an error that lists them, unless `allow.missing = TRUE`.
#'
#' @param object A Seurat object, a SingleCellExperiment, or a features x cells matrix of the
#'   model's input modality.
#' @param model A `LIBRAModel` (from [RunLIBRA()], [TuneLIBRA()] or [LoadLIBRA()]). Seurat /
#'   SingleCellExperiment: by default the model stored under `reduction.name`.
#' @param input.assay Assay holding the input modality. Seurat: defaults to the model's input
#'   assay name when the object has it, else the default assay. SingleCellExperiment: an
#'   assay of the main experiment or of `input.altexp` (`NULL`: the assay the model was
#'   trained on, `"logcounts"` for a model that does not record it).
#' @param slot Seurat layer ("slot" in Seurat 4) to read (`NULL`: the layer the model was
#'   trained on, `"data"` for a model that does not record it); `layer =` and `assay =` work
#'   too, as in Seurat.
#' @param input.altexp SingleCellExperiment: alternative experiment holding the input
#'   modality (`NULL`: the main experiment).
#' @param reduction.name,reduction.key Name and key of the stored latent space.
#' @param new.assay.name Seurat: name of the predicted assay (default
#'   `"predicted_<model output assay>"`).
#' @param new.altexp.name SingleCellExperiment: name of the predicted alternative experiment.
#' @param allow.missing Fill features missing from the input with zeros (with a warning from
#'   the core) instead of failing.
#' @param modality `"input"` (default): the cells are measured in the model's input modality;
#'   they are embedded and their output modality predicted. `"output"`: the cells are measured
#'   in the model's *output* modality only (e.g. ADT without RNA); the model's second network
#'   places them in the same latent space (trained and kept by [LIBRAConsistency()]), and
#'   nothing is predicted: only the reduction is stored. The assay and layer read default to
#'   those the model was trained on for that modality.
#' @param batch.size Cells per batch (`NULL`: the core's default).
#' @param verbose Show messages.
#' @param ... Seurat spellings (`assay`, `layer`); any other argument is an error.
#' @return The object with the latent space and the predicted assay added (as in
#'   [RunLIBRA()]); for a matrix, a list with `embedding` (cells x latent) and `prediction`
#'   (features x cells).
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' train <- subset(seu, subset = is_train)
#' test <- subset(seu, subset = is_train, invert = TRUE)
#' train <- RunLIBRA(train,
#'   input.assay = "RNA", output.assay = "ADT", n.nodes = 64, max.epochs = 20,
#'   verbose = FALSE
#' )
#' test <- LIBRAPredict(test, model = GetLIBRAModel(train), input.assay = "RNA")
#' test[["predicted_ADT"]]
LIBRAPredict <- function(object, ...) UseMethod("LIBRAPredict")

# Shared by every method: check the input, match features, predict, bring results back.
# `modality = "output"`: cells measured in the model's output modality only, placed in the
# latent space by its second network; there is no prediction (NULL).
.predict_libra <- function(model, a, what, key, allow.missing, verbose, modality = "input",
                           batch.size = NULL) {
  .check_flag(allow.missing)
  .check_flag(verbose)
  .check_key(key)
  modality <- .check_modality(modality)
  batch.size <- .check_count(batch.size, "batch.size", null_ok = TRUE)
  py <- .py_model(model)
  if (modality == "output" && is.null(reticulate::py_to_r(py$b_encoder))) {
    .abort(c(
      "The model has no second network, so it cannot place cells measured in {model$output.assay} only.",
      i = "Train it first: {.code LIBRAConsistency()} does, and keeps it in the model."
    ), class = "sclibra_input_error")
  }
  features <- if (modality == "input") model$features.input else model$features.output
  a <- .validate_matrix(a, what, features_used = features)
  a <- .align_features(a, features, what, allow.missing)
  ad <- .to_anndata(a, what)
  if (modality == "output") {
    .msg(verbose, "Placing {ncol(a)} cells measured in {model$output.assay} in the latent space.")
    z <- .py_call(py$get_latent_from_b, ad,
      fill_missing = allow.missing, batch_size = batch.size,
      .what = "Embedding with the LIBRA model's second network", .verbose = verbose
    )
    return(list(embedding = .latent_from_py(z, colnames(a), key), prediction = NULL))
  }
  .msg(verbose, "Predicting {model$output.assay} for {ncol(a)} cells from {what}.")
  pred <- .py_call(py$predict, ad,
    fill_missing = allow.missing, batch_size = batch.size,
    .what = "Predicting with the LIBRA model", .verbose = verbose
  )
  list(
    embedding = .latent_from_py(pred$obsm$get("X_libra"), colnames(a), key),
    prediction = .prediction_from_py(pred)
  )
}

.check_modality <- function(modality) {
  if (!is.character(modality) || length(modality) != 1L || !modality %in% c("input", "output")) {
    .abort("{.arg modality} must be {.val input} or {.val output}, not {.obj_type_friendly {modality}}.",
      class = "sclibra_input_error"
    )
  }
  modality
}

#' @rdname LIBRAPredict
#' @export
LIBRAPredict.default <- function(object, model, modality = "input", reduction.key = "LIBRA_",
                                 allow.missing = FALSE, batch.size = NULL, verbose = TRUE, ...) {
  .check_dots(list(...), character(), "LIBRAPredict")
  if (missing(model)) {
    .abort("{.arg model} is missing: pass a trained {.cls LIBRAModel}.", class = "sclibra_input_error")
  }
  what <- .check_modality(modality) # the matrix's name in messages: "input" or "output"
  res <- .predict_libra(model, object, what, reduction.key, allow.missing, verbose,
    modality = modality, batch.size = batch.size
  )
  res$model <- model
  structure(res[c("model", "embedding", "prediction")], class = "LIBRAResult")
}

#' @rdname LIBRAPredict
#' @export
LIBRAPredict.Seurat <- function(object, model = NULL, input.assay = NULL, slot = NULL,
                                modality = "input", reduction.name = "libra",
                                reduction.key = "LIBRA_", new.assay.name = NULL,
                                allow.missing = FALSE, batch.size = NULL, verbose = TRUE, ...) {
  al <- .seurat_aliases(list(...), list(input.assay = input.assay, input.slot = slot), "LIBRAPredict")
  .check_dots(al$dots, character(), "LIBRAPredict")
  input.assay <- al$values$input.assay
  model <- .check_model(model %||% GetLIBRAModel(object, reduction = reduction.name))
  output <- .check_modality(modality) == "output"
  # the modality's own assay and layer by default: those the model was trained on
  trained <- if (output) model[c("output.assay", "output.slot")] else model[c("input.assay", "input.slot")]
  slot <- al$values$input.slot %||% .seurat_trained_layer(trained[[2]])
  if (is.null(input.assay)) {
    input.assay <- if (isTRUE(trained[[1]] %in% SeuratObject::Assays(object))) {
      trained[[1]]
    } else {
      SeuratObject::DefaultAssay(object)
    }
  }
  new.assay.name <- new.assay.name %||% paste0("predicted_", model$output.assay)
  .check_seurat_targets(object, reduction.name, new.assay.name)
  a <- .seurat_matrix(object, input.assay, slot, "input.assay")
  res <- .predict_libra(model, a, input.assay, reduction.key, allow.missing, verbose,
    modality = modality, batch.size = batch.size
  )
  misc <- list(
    input.assay = input.assay, output.assay = model$output.assay, predicted = TRUE,
    modality = modality
  )
  object <- .seurat_store(
    object, res$embedding, res$prediction, model, input.assay, reduction.name,
    reduction.key, new.assay.name, misc, verbose
  )
  command <- SeuratObject::LogSeuratCommand(object = object, return.command = TRUE)
  .log_command(object, command, assay = input.assay, reduction = reduction.name)
}

#' @rdname LIBRAPredict
#' @export
LIBRAPredict.SingleCellExperiment <- function(object, model = NULL, input.assay = NULL,
                                              input.altexp = NULL, modality = "input",
                                              reduction.name = "LIBRA",
                                              reduction.key = "LIBRA_", new.altexp.name = NULL,
                                              allow.missing = FALSE, batch.size = NULL,
                                              verbose = TRUE, ...) {
  .check_dots(list(...), character(), "LIBRAPredict")
  .need_sce()
  model <- .check_model(model %||% GetLIBRAModel(object, reduction = reduction.name))
  output <- .check_modality(modality) == "output"
  input.assay <- input.assay %||%
    .sce_trained_assay(object, input.altexp, if (output) model$output.slot else model$input.slot)
  new.altexp.name <- new.altexp.name %||% paste0("predicted_", model$output.assay)
  .check_sce_targets(object, reduction.name, new.altexp.name)
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  what <- input.altexp %||% .main_name(object)
  res <- .predict_libra(model, a, what, reduction.key, allow.missing, verbose,
    modality = modality, batch.size = batch.size
  )
  object <- .sce_store(
    object, res$embedding, res$prediction, .sce_prediction_assay(model$output.slot), reduction.name,
    new.altexp.name
  )
  store <- S4Vectors::metadata(object)[["sclibra"]] %||% list()
  store[[reduction.name]] <- list(
    model = model,
    params = list(
      input.assay = input.assay, input.altexp = input.altexp,
      new.altexp.name = if (!output) new.altexp.name, predicted = TRUE, modality = modality
    )
  )
  S4Vectors::metadata(object)[["sclibra"]] <- store
  object
}
