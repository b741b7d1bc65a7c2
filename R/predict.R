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
.predict_libra <- function(model, a, what, key, allow.missing, verbose) {
  .check_flag(allow.missing)
  .check_flag(verbose)
  .check_key(key)
  py <- .py_model(model)
  a <- .validate_matrix(a, what, features_used = model$features.input)
  a <- .align_features(a, model$features.input, what, allow.missing)
  ad <- .to_anndata(a, what)
  .msg(verbose, "Predicting {model$output.assay} for {ncol(a)} cells from {what}.")
  pred <- .py_call(py$predict, ad,
    fill_missing = allow.missing, .what = "Predicting with the LIBRA model", .verbose = verbose
  )
  list(
    embedding = .latent_from_py(pred$obsm$get("X_libra"), colnames(a), key),
    prediction = .prediction_from_py(pred)
  )
}

#' @rdname LIBRAPredict
#' @export
LIBRAPredict.default <- function(object, model, reduction.key = "LIBRA_", allow.missing = FALSE,
                                 verbose = TRUE, ...) {
  .check_dots(list(...), character(), "LIBRAPredict")
  if (missing(model)) {
    .abort("{.arg model} is missing: pass a trained {.cls LIBRAModel}.", class = "sclibra_input_error")
  }
  res <- .predict_libra(model, object, "input", reduction.key, allow.missing, verbose)
  res$model <- model
  structure(res[c("model", "embedding", "prediction")], class = "LIBRAResult")
}

#' @rdname LIBRAPredict
#' @export
LIBRAPredict.Seurat <- function(object, model = NULL, input.assay = NULL, slot = NULL,
                                reduction.name = "libra", reduction.key = "LIBRA_",
                                new.assay.name = NULL, allow.missing = FALSE, verbose = TRUE,
                                ...) {
  al <- .seurat_aliases(list(...), list(input.assay = input.assay, input.slot = slot), "LIBRAPredict")
  .check_dots(al$dots, character(), "LIBRAPredict")
  input.assay <- al$values$input.assay
  model <- .check_model(model %||% GetLIBRAModel(object, reduction = reduction.name))
  slot <- al$values$input.slot %||% model$input.slot %||% "data"
  if (is.null(input.assay)) {
    input.assay <- if (isTRUE(model$input.assay %in% SeuratObject::Assays(object))) {
      model$input.assay
    } else {
      SeuratObject::DefaultAssay(object)
    }
  }
  new.assay.name <- new.assay.name %||% paste0("predicted_", model$output.assay)
  .check_seurat_targets(object, reduction.name, new.assay.name)
  a <- .seurat_matrix(object, input.assay, slot, "input.assay")
  res <- .predict_libra(model, a, input.assay, reduction.key, allow.missing, verbose)
  misc <- list(input.assay = input.assay, output.assay = model$output.assay, predicted = TRUE)
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
                                              input.altexp = NULL, reduction.name = "LIBRA",
                                              reduction.key = "LIBRA_", new.altexp.name = NULL,
                                              allow.missing = FALSE, verbose = TRUE, ...) {
  .check_dots(list(...), character(), "LIBRAPredict")
  .need_sce()
  model <- .check_model(model %||% GetLIBRAModel(object, reduction = reduction.name))
  input.assay <- input.assay %||% model$input.slot %||% "logcounts"
  new.altexp.name <- new.altexp.name %||% paste0("predicted_", model$output.assay)
  .check_sce_targets(object, reduction.name, new.altexp.name)
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  what <- input.altexp %||% .main_name(object)
  res <- .predict_libra(model, a, what, reduction.key, allow.missing, verbose)
  object <- .sce_store(
    object, res$embedding, res$prediction, model$output.slot %||% "logcounts", reduction.name,
    new.altexp.name
  )
  store <- S4Vectors::metadata(object)[["sclibra"]] %||% list()
  store[[reduction.name]] <- list(
    model = model,
    params = list(
      input.assay = input.assay, input.altexp = input.altexp, new.altexp.name = new.altexp.name,
      predicted = TRUE
    )
  )
  S4Vectors::metadata(object)[["sclibra"]] <- store
  object
}
