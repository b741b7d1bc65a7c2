# SingleCellExperiment: reading assays of the main and alternative experiments, and storing
# results as a reduced dimension and an alternative experiment.

.need_sce <- function() {
  for (pkg in c("SingleCellExperiment", "SummarizedExperiment", "S4Vectors")) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      .abort("Package {.pkg {pkg}} is needed for SingleCellExperiment input.",
        class = "sclibra_input_error"
      )
    }
  }
}

# The names RunLIBRA() / LIBRAPredict() will write, checked before any work: a reduced
# dimension or an alternative experiment that sclibra did not write (a PCA, the measured ADT)
# is never replaced.
.check_sce_targets <- function(object, reduction.name, new.altexp.name) {
  .check_string(reduction.name)
  .check_string(new.altexp.name)
  store <- S4Vectors::metadata(object)[["sclibra"]]
  if (reduction.name %in% SingleCellExperiment::reducedDimNames(object) &&
    !reduction.name %in% names(store)) {
    .abort(c(
      "The SingleCellExperiment already has a reduced dimension {.val {reduction.name}} that sclibra did not make; it is not replaced.",
      i = "Choose another {.arg reduction.name}, or remove it first: {.code reducedDim(sce, \"{reduction.name}\") <- NULL}."
    ), class = "sclibra_input_error")
  }
  ours <- unlist(lapply(store, function(entry) entry$params$new.altexp.name))
  if (new.altexp.name %in% SingleCellExperiment::altExpNames(object) && !new.altexp.name %in% ours) {
    .abort(c(
      "The SingleCellExperiment already has an alternative experiment {.val {new.altexp.name}} that sclibra did not make; it is not replaced.",
      i = "Choose another {.arg new.altexp.name}, or remove it first: {.code altExp(sce, \"{new.altexp.name}\") <- NULL}."
    ), class = "sclibra_input_error")
  }
  invisible(TRUE)
}

# The assay name of a prediction in an SCE: the one its model's output was read from, with a
# Seurat-trained model's normalised layer ("data") named as Bioconductor does ("logcounts").
.sce_prediction_assay <- function(slot) {
  if (is.null(slot) || slot %in% c("data", "scale.data")) "logcounts" else slot
}

# The assay a model read a modality from (`slot`), when the experiment `altexp` (NULL: the main
# one) has it; else "logcounts". A model trained on a Seurat object recorded a Seurat layer.
.sce_trained_assay <- function(object, altexp, slot) {
  exp <- if (is.null(altexp)) {
    object
  } else if (isTRUE(altexp %in% SingleCellExperiment::altExpNames(object))) {
    SingleCellExperiment::altExp(object, altexp)
  }
  if (!is.null(exp) && isTRUE(slot %in% SummarizedExperiment::assayNames(exp))) slot else "logcounts"
}

# The features x cells matrix of an assay in the main or an alternative experiment.
.sce_matrix <- function(object, assay, altexp, what) {
  .check_string(assay, what)
  exp <- object
  where <- "the main experiment"
  if (!is.null(altexp)) {
    .check_string(altexp, sub("assay", "altexp", what))
    alts <- SingleCellExperiment::altExpNames(object)
    if (!altexp %in% alts) {
      .abort(c(
        "Alternative experiment {.val {altexp}} is not in the SingleCellExperiment.",
        i = if (length(alts)) "Alternative experiments present: {.val {alts}}." else "It has no alternative experiments."
      ), class = "sclibra_missing_assay")
    }
    exp <- SingleCellExperiment::altExp(object, altexp)
    where <- paste0("alternative experiment '", altexp, "'")
  }
  assays <- SummarizedExperiment::assayNames(exp)
  if (!assay %in% assays) {
    .abort(c(
      "Assay {.val {assay}} is not in {where}.",
      i = if (length(assays)) "Assays present: {.val {assays}}." else "It has no assays."
    ), class = "sclibra_missing_slot")
  }
  x <- SummarizedExperiment::assay(exp, assay, withDimnames = TRUE)
  if (is.null(colnames(x))) {
    colnames(x) <- colnames(object)
  }
  x
}

# Cell metadata of a SingleCellExperiment as a data.frame with cell names as row names.
.sce_meta <- function(object) {
  meta <- as.data.frame(SummarizedExperiment::colData(object))
  rownames(meta) <- colnames(object)
  meta
}

# Name of the main experiment (mainExpName(), e.g. "RNA"), or "main".
.main_name <- function(object) {
  name <- SingleCellExperiment::mainExpName(object)
  if (is.null(name) || !nzchar(name)) "main" else name
}

# reducedDim (cells in the object's order) and the predicted altExp.
.sce_store <- function(object, embedding, prediction, assay_name, reduction.name,
                       new.altexp.name) {
  cells <- colnames(object)
  if (!all(cells %in% rownames(embedding))) {
    .abort("The LIBRA results cover {nrow(embedding)} of the {length(cells)} cells; a SingleCellExperiment needs them all.",
      class = "sclibra_input_error"
    )
  }
  emb <- embedding[cells, , drop = FALSE]
  SingleCellExperiment::reducedDim(object, reduction.name) <- emb
  if (is.null(prediction)) { # cells placed from the output modality: nothing predicted
    return(object)
  }
  pred <- prediction[, cells, drop = FALSE]
  assays <- stats::setNames(list(pred), assay_name)
  SingleCellExperiment::altExp(object, new.altexp.name) <-
    SummarizedExperiment::SummarizedExperiment(assays = assays)
  object
}
