# Metrics: PPJI, nn_consistency, full evaluation -------------------------------------------

#' Preserved pairwise Jaccard index (PPJI)
#'
#' PPJI (Martinez-de-Morentin et al. 2023) measures how well a partition of the cells (e.g.
#' Leiden clusters of the LIBRA latent space) preserves a reference partition (cell types, or
#' clusters of one modality alone): for every reference cluster the Jaccard indices with the
#' query clusters it overlaps are summed, then averaged over reference clusters. 1 means
#' identical partitions.
#'
#' By default the latent space (`reduction`) is clustered with a k-nearest-neighbour graph
#' and Leiden (through the Python core, as in the original LIBRA); alternatively give
#' existing clusters with `clusters` (e.g. `"seurat_clusters"` after
#' `FindNeighbors(reduction = "libra")` and `FindClusters()`).
#'
#' @param object A Seurat object or SingleCellExperiment with a LIBRA reduction; or an
#'   embedding matrix (cells x dimensions, row names = cells) or a vector of query labels.
#' @param reference Reference labels: a metadata column name (e.g. `"cell_type"`) or a vector
#'   over the cells (named by cell, or in cell order).
#' @param reduction Name of the latent space to cluster.
#' @param clusters Query labels instead of clustering the reduction: a metadata column name
#'   or a vector over the cells.
#' @param dims Dimensions of the reduction to use (default: all).
#' @param cells Restrict the comparison to these cells (e.g. held-out cells).
#' @param n.neighbors,resolution,seed k-NN graph size, Leiden resolution and random seed.
#' @param details Return the clusters and the Jaccard matrix too.
#' @param ... Unused: any argument here is an error.
#' @return The PPJI (a number in (0, 1]); with `details = TRUE` a list with `ppji`, `clusters`
#'   (a factor named by cell) and `jaccard` (reference x query clusters matrix).
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", n.nodes = 64, max.epochs = 20,
#'   verbose = FALSE
#' )
#' PPJI(seu, reference = "cell_type_coarse", reduction = "libra")
PPJI <- function(object, ...) UseMethod("PPJI")

.ppji <- function(reference, cells, query = NULL, embedding = NULL, subset = NULL,
                  n.neighbors = 10, resolution = 1, seed = 0, details = FALSE) {
  .check_count(n.neighbors, "n.neighbors", min = 2)
  .check_number(resolution, "resolution", min = 1e-9)
  .check_count(seed, "seed", min = 0)
  .check_flag(details)
  if (!is.null(subset)) {
    unknown <- setdiff(subset, cells)
    if (length(unknown)) {
      .abort("{length(unknown)} cell{?s} in {.arg cells} {?is/are} unknown: {(.some(unknown))}.",
        class = "sclibra_input_error"
      )
    }
  }
  if (!is.null(embedding) && anyNA(embedding)) {
    .abort("The embedding has {sum(!stats::complete.cases(embedding))} cell{?s} with NA values.",
      class = "sclibra_na_error"
    )
  }
  res <- .py(.bridge()$ppji_for_r(
    as.list(unname(reference)), as.list(cells),
    query = if (is.null(query)) NULL else as.list(unname(query)),
    embedding = embedding,
    subset = if (is.null(subset)) NULL else as.list(subset),
    n_neighbors = as.integer(n.neighbors), resolution = resolution, seed = as.integer(seed)
  ), "PPJI")
  res <- reticulate::py_to_r(res)
  if (!details) {
    return(res$ppji)
  }
  clusters <- factor(unlist(res$clusters))
  names(clusters) <- unlist(res$cluster_cells)
  jaccard <- res$jaccard
  dimnames(jaccard) <- list(unlist(res$jaccard_rows), unlist(res$jaccard_cols))
  list(ppji = res$ppji, clusters = clusters, jaccard = jaccard)
}

#' @rdname PPJI
#' @export
PPJI.default <- function(object, reference, cells = NULL, n.neighbors = 10, resolution = 1,
                         seed = 0, details = FALSE, ...) {
  .check_dots(list(...), character(), "PPJI")
  if (is.matrix(object)) {
    ids <- rownames(object)
    if (is.null(ids)) {
      .abort("The embedding needs cell names as row names.", class = "sclibra_input_error")
    }
    reference <- .resolve_labels(reference, ids, arg = "reference")
    return(.ppji(reference, ids,
      embedding = object, subset = cells, n.neighbors = n.neighbors,
      resolution = resolution, seed = seed, details = details
    ))
  }
  ids <- names(object) %||% as.character(seq_along(object))
  reference <- .resolve_labels(reference, ids, arg = "reference")
  query <- .resolve_labels(object, ids, arg = "object")
  .ppji(reference, ids,
    query = query, subset = cells, n.neighbors = n.neighbors,
    resolution = resolution, seed = seed, details = details
  )
}

#' @rdname PPJI
#' @export
PPJI.Seurat <- function(object, reference = "cell_type", reduction = "libra", clusters = NULL,
                        dims = NULL, cells = NULL, n.neighbors = 10, resolution = 1, seed = 0,
                        details = FALSE, ...) {
  .check_dots(list(...), character(), "PPJI")
  ids <- colnames(object)
  meta <- .seurat_meta(object)
  reference <- .resolve_labels(reference, ids, meta, arg = "reference")
  if (!is.null(clusters)) {
    query <- .resolve_labels(clusters, ids, meta, arg = "clusters")
    return(.ppji(reference, ids,
      query = query, subset = cells, seed = seed,
      details = details
    ))
  }
  if (!reduction %in% SeuratObject::Reductions(object)) {
    .abort(c(
      "The Seurat object has no reduction {.val {reduction}}.",
      i = "Run {.fn RunLIBRA} first, or pass {.arg clusters}."
    ), class = "sclibra_input_error")
  }
  emb <- SeuratObject::Embeddings(object, reduction = reduction)
  if (!is.null(dims)) emb <- emb[, dims, drop = FALSE]
  reference <- reference[rownames(emb)]
  .ppji(reference, rownames(emb),
    embedding = emb, subset = cells, n.neighbors = n.neighbors,
    resolution = resolution, seed = seed, details = details
  )
}

#' @rdname PPJI
#' @export
PPJI.SingleCellExperiment <- function(object, reference = "cell_type", reduction = "LIBRA",
                                      clusters = NULL, dims = NULL, cells = NULL,
                                      n.neighbors = 10, resolution = 1, seed = 0,
                                      details = FALSE, ...) {
  .check_dots(list(...), character(), "PPJI")
  .need_sce()
  ids <- colnames(object)
  meta <- .sce_meta(object)
  reference <- .resolve_labels(reference, ids, meta, arg = "reference")
  if (!is.null(clusters)) {
    query <- .resolve_labels(clusters, ids, meta, arg = "clusters")
    return(.ppji(reference, ids, query = query, subset = cells, seed = seed, details = details))
  }
  if (!reduction %in% SingleCellExperiment::reducedDimNames(object)) {
    .abort("The SingleCellExperiment has no reduced dimension {.val {reduction}}; run {.fn RunLIBRA} first.",
      class = "sclibra_input_error"
    )
  }
  emb <- SingleCellExperiment::reducedDim(object, reduction)
  if (!is.null(dims)) emb <- emb[, dims, drop = FALSE]
  rownames(emb) <- ids
  .ppji(reference, ids,
    embedding = emb, subset = cells, n.neighbors = n.neighbors,
    resolution = resolution, seed = seed, details = details
  )
}

# Paired input and output matrices of an object for a model: Seurat / SCE / matrices.
.model_matrices <- function(object, model, input.assay, output.assay, input.slot, output.slot,
                            input.altexp = NULL, output.altexp = NULL) {
  if (inherits(object, "Seurat")) {
    input.assay <- input.assay %||% model$input.assay
    output.assay <- output.assay %||% model$output.assay
    input.slot <- input.slot %||% .seurat_trained_layer(model$input.slot)
    output.slot <- output.slot %||% .seurat_trained_layer(model$output.slot)
    a <- .seurat_matrix(object, input.assay, input.slot, "input.assay")
    b <- .seurat_matrix(object, output.assay, output.slot, "output.assay")
    meta <- .seurat_meta(object)
  } else {
    .need_sce()
    input.assay <- input.assay %||% .sce_trained_assay(object, input.altexp, model$input.slot)
    output.assay <- output.assay %||% .sce_trained_assay(object, output.altexp, model$output.slot)
    a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
    b <- .sce_matrix(object, output.assay, output.altexp, "output.assay")
    input.assay <- input.altexp %||% .main_name(object)
    output.assay <- output.altexp %||% .main_name(object)
    meta <- .sce_meta(object)
  }
  list(a = a, b = b, name_a = input.assay, name_b = output.assay, meta = meta)
}

# Both modalities checked, aligned to the model's features and sent to Python.
.model_inputs <- function(model, a, b, name_a, name_b) {
  a <- .validate_matrix(a, name_a, features_used = model$features.input)
  b <- .validate_matrix(b, name_b, features_used = model$features.output)
  .shared_cells(a, b, name_a, name_b)
  a <- .align_features(a, model$features.input, name_a)
  b <- .align_features(b, model$features.output, paste(name_b, "(the model's output features)"))
  list(a = .to_anndata(a, name_a), b = .to_anndata(b, name_b), cells = intersect(colnames(a), colnames(b)))
}

# held.out as cell names (NULL = the core's default: cells the model neither trained nor
# validated on). A logical metadata column means TRUE = held out.
.resolve_held_out <- function(held.out, cells, meta) {
  if (is.null(held.out)) {
    return(NULL)
  }
  as.list(.resolve_train_cells(held.out, cells, meta, arg = "held.out"))
}

#' nn_consistency of a LIBRA model
#'
#' LIBRA's second-network test: a second network is trained to map the *output* modality into
#' the model's latent space (on the model's own training cells); for every cell the distance
#' between its two placements (from the input and from the output modality) is measured. The
#' distances usually have two modes; cells in the high mode are placed inconsistently. The
#' second network stays in the model afterwards.
#'
#' @inheritParams RunLIBRA
#' @param object A Seurat object or SingleCellExperiment with both modalities, or the input
#'   matrix (features x cells).
#' @param output For the matrix method: the output modality (features x cells).
#' @param model A `LIBRAModel`; Seurat / SingleCellExperiment: default the model stored with
#'   `reduction`.
#' @param reduction The LIBRA reduction whose model to use (and update).
#' @param input.assay,output.assay Assays of the two modalities. Seurat: default the model's.
#'   SingleCellExperiment: assays of the main or alternative experiments (`NULL`: those the
#'   model was trained on, `"logcounts"` for a model that does not record them).
#' @param input.slot,output.slot Seurat layers ("slots" in Seurat 4) to read (`NULL`: those
#'   the model was trained on, `"data"` for a model that does not record them).
#' @param held.out Held-out cells: names, a logical vector or a logical metadata column
#'   (TRUE = held out). Default: cells the model neither trained nor validated on.
#' @param max.epochs Epoch limit for the second network.
#' @param refit Retrain the second network even if the model has one.
#' @param col.name Seurat / SingleCellExperiment: metadata column for the per-cell distance
#'   (`<col.name>_mode` gets `"low"` / `"high"`).
#' @param ... The second network's schedule, as in `LIBRA.fit()` (R or Python spelling, e.g.
#'   `validation.split = 0.2`, `early.stopping.patience = 10`, `min.delta = 0`; `NULL` or
#'   absent: the model's preset), used when it trains; Seurat spellings (`assay`, `layer`,
#'   `slot`, `input.layer`, `output.layer`). Any other argument is an error.
#' @return Seurat / SingleCellExperiment: the object with the distances and modes in its
#'   cell metadata, the summary in `Misc()` of the reduction / `metadata()$sclibra`, and the
#'   updated model. Matrix: a list with `distances` (named by cell), `mode`, `threshold`,
#'   `is.bimodal`, `share.high`, `share.held.out.high`, `modes` (a data.frame), `summary` and
#'   `model`.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", n.nodes = 64,
#'   max.epochs = 20, verbose = FALSE
#' )
#' seu <- LIBRAConsistency(seu, max.epochs = 20, verbose = FALSE)
#' table(seu$libra_consistency_mode)
LIBRAConsistency <- function(object, ...) UseMethod("LIBRAConsistency")

# The second network's schedule (LIBRA.fit_b_encoder(): the recipe's fit stage): `schedule`
# (the core's arguments the user gave, from .core_args(..., "schedule")) with `max.epochs`.
.b_encoder_schedule <- function(max.epochs, schedule) {
  if (!is.null(max.epochs)) {
    schedule$max_epochs <- .check_count(max.epochs, "max.epochs")
  }
  schedule
}

.consistency <- function(model, a, b, name_a, name_b, held.out, meta, max.epochs, refit,
                         verbose, dots = list()) {
  .check_flag(refit)
  .check_flag(verbose)
  fit_kwargs <- .b_encoder_schedule(
    max.epochs, .core_args(dots, "schedule", "LIBRAConsistency", reserved = "max_epochs")$schedule
  )
  py <- .py_model(model)
  inputs <- .model_inputs(model, a, b, name_a, name_b)
  res <- .py_call(.core()$metrics$nn_consistency, py, inputs$a, inputs$b,
    held_out = .resolve_held_out(held.out, inputs$cells, meta), refit = refit,
    fit_kwargs = reticulate::dict(fit_kwargs), progress = FALSE, .what = "nn_consistency",
    .verbose = verbose
  )
  out <- reticulate::py_to_r(.bridge()$consistency_to_r(res))
  cells <- unlist(out$cells)
  modes <- .frame_from_parts(out$modes)
  list(
    distances = stats::setNames(as.vector(out$distances), cells),
    mode = stats::setNames(unlist(out$mode), cells),
    threshold = out$threshold,
    is.bimodal = out$is_bimodal,
    share.high = out$share_high,
    share.held.out.high = out$share_held_out_high,
    held.out = unlist(out$held_out),
    modes = modes,
    summary = unlist(out$summary),
    model = .new_model(py, model[c("input.assay", "output.assay", "input.slot", "output.slot")],
      keep = !is.null(model$serialized)
    )
  )
}

#' @rdname LIBRAConsistency
#' @export
LIBRAConsistency.default <- function(object, output, model, held.out = NULL, max.epochs = NULL,
                                     refit = FALSE, verbose = TRUE, ...) {
  .consistency(model, object, output, "input", "output", held.out, NULL, max.epochs, refit,
    verbose,
    dots = list(...)
  )
}

#' @rdname LIBRAConsistency
#' @export
LIBRAConsistency.Seurat <- function(object, model = NULL, reduction = "libra", input.assay = NULL,
                                    output.assay = NULL, input.slot = NULL,
                                    output.slot = NULL, held.out = NULL, max.epochs = NULL,
                                    refit = FALSE, col.name = "libra_consistency",
                                    verbose = TRUE, ...) {
  al <- .seurat_aliases(list(...), list(
    input.assay = input.assay, input.slot = input.slot, output.slot = output.slot
  ), "LIBRAConsistency")
  stored <- is.null(model)
  model <- model %||% GetLIBRAModel(object, reduction = reduction)
  m <- .model_matrices(
    object, model, al$values$input.assay, output.assay, al$values$input.slot,
    al$values$output.slot
  )
  res <- .consistency(model, m$a, m$b, m$name_a, m$name_b, held.out, m$meta, max.epochs, refit,
    verbose,
    dots = al$dots
  )
  object[[col.name]] <- res$distances[colnames(object)]
  object[[paste0(col.name, "_mode")]] <- res$mode[colnames(object)]
  if (stored) {
    reduc <- object[[reduction]]
    reduc@misc[["model"]] <- res$model
    reduc@misc[["consistency"]] <- res[c("threshold", "is.bimodal", "share.high", "share.held.out.high", "modes", "summary")]
    object[[reduction]] <- reduc
  }
  object
}

#' @rdname LIBRAConsistency
#' @param input.altexp,output.altexp SingleCellExperiment: alternative experiments holding the
#'   modalities (`NULL`: main experiment).
#' @export
LIBRAConsistency.SingleCellExperiment <- function(object, model = NULL, reduction = "LIBRA",
                                                  input.assay = NULL,
                                                  output.assay = NULL,
                                                  input.altexp = NULL, output.altexp = NULL,
                                                  held.out = NULL, max.epochs = NULL,
                                                  refit = FALSE, col.name = "libra_consistency",
                                                  verbose = TRUE, ...) {
  stored <- is.null(model)
  model <- model %||% GetLIBRAModel(object, reduction = reduction)
  m <- .model_matrices(object, model, input.assay, output.assay, NULL, NULL, input.altexp, output.altexp)
  res <- .consistency(model, m$a, m$b, m$name_a, m$name_b, held.out, m$meta, max.epochs, refit,
    verbose,
    dots = list(...)
  )
  SummarizedExperiment::colData(object)[[col.name]] <- unname(res$distances[colnames(object)])
  SummarizedExperiment::colData(object)[[paste0(col.name, "_mode")]] <- unname(res$mode[colnames(object)])
  if (stored) {
    store <- S4Vectors::metadata(object)[["sclibra"]]
    store[[reduction]]$model <- res$model
    store[[reduction]]$consistency <- res[c("threshold", "is.bimodal", "share.high", "share.held.out.high", "modes", "summary")]
    S4Vectors::metadata(object)[["sclibra"]] <- store
  }
  object
}

#' Evaluate a LIBRA model: prediction, integration and consistency
#'
#' Runs the core's `sclibra.evaluate()` on paired data: prediction error of the output
#' modality (MSE, RMSE, per-feature and per-cell Pearson and Spearman correlation) for the
#' model and for simple baselines (mean, kNN, ridge), on held-out cells and, labelled as such,
#' on training and validation cells; integration (PPJI, ARI, NMI of latent-space clusters
#' against `labels` and against clusters of each modality alone; silhouette); and
#' nn_consistency.
#'
#' @inheritParams LIBRAConsistency
#' @param labels Cell labels (a metadata column name such as `"cell_type"`, or a vector over
#'   the cells); without labels, label-based scores are skipped.
#' @param baselines Baseline methods (`character()` for none; `NULL`: the core's, mean, kNN
#'   and ridge).
#' @param consistency Also compute nn_consistency (trains the second network: the slow part;
#'   `NULL`: the core's default, yes).
#' @param seed Random seed of clustering and baselines (`NULL`: the core's).
#' @param out.dir A folder to write the results to: `scores.csv`, `per_feature_mse.csv`,
#'   `per_cell.csv` and, with `plots`, the figures (`loss.png`, `jaccard.png`,
#'   `consistency.png`, `umap.png`, `predicted_vs_measured.png`).
#' @param plots Draw the figures into `out.dir` (default: yes when `out.dir` is given).
#' @param overwrite Replace existing result files of the same names in `out.dir` (other
#'   files there are never touched).
#' @param ... Further arguments of the core's `sclibra.evaluate()` in R or Python spelling
#'   (e.g. `n.pcs = 30`, `resolution = 0.5`); the second network's schedule, as in
#'   [LIBRAConsistency()] (e.g. `validation.split = 0.2`); Seurat spellings (`assay`,
#'   `layer`, `slot`). Any other argument is an error.
#' @return A data.frame with one row per metric, split and method (columns as in the core's
#'   table: `metric`, `value`, `split`, `method`, `reference`, `n_cells`). With `out.dir`, its
#'   attribute `"files"` holds the paths of the files written, named by file name.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", n.nodes = 64,
#'   max.epochs = 20, verbose = FALSE
#' )
#' scores <- LIBRAEvaluate(seu,
#'   labels = "cell_type_coarse", consistency = FALSE, out.dir = tempfile("eval"),
#'   verbose = FALSE
#' )
#' head(scores)
#' basename(attr(scores, "files"))
LIBRAEvaluate <- function(object, ...) UseMethod("LIBRAEvaluate")

# Arguments of sclibra.evaluate() that R sets itself.
.evaluate_reserved <- c(
  "model", "adata_a", "adata_b", "labels", "held_out", "layer_a", "layer_b", "obsm_a",
  "obsm_b", "consistency_kwargs", "progress", "details", "out_dir", "plots"
)

.evaluate <- function(model, a, b, name_a, name_b, labels, held.out, meta, max.epochs,
                      refit, out.dir, plots, verbose, values) {
  .check_flag(verbose)
  .check_flag(refit)
  settings <- .core_args(values, c("evaluate", "schedule"), "LIBRAEvaluate",
    reserved = c(.evaluate_reserved, "max_epochs")
  )
  .check_string(out.dir, "out.dir", null_ok = TRUE)
  plots <- plots %||% !is.null(out.dir)
  .check_flag(plots)
  if (plots && is.null(out.dir)) {
    .abort(c(
      "{.code plots = TRUE} writes the figures to a folder: give {.arg out.dir}.",
      i = "For example {.code out.dir = \"evaluation\"}."
    ), class = "sclibra_input_error")
  }
  py <- .py_model(model)
  inputs <- .model_inputs(model, a, b, name_a, name_b)
  # a metadata column keeps its name, so the table's rows read "labels:<column>" as in Python
  label_name <- if (is.character(labels) && length(labels) == 1L) labels else "labels"
  labels <- .resolve_labels(labels, colnames(a), meta)
  if (!is.null(labels)) {
    pd <- reticulate::import("pandas", convert = FALSE)
    labels <- pd$Series(as.list(unname(labels)), index = as.list(names(labels)), name = label_name)
  }
  ckw <- list(refit = refit)
  schedule <- .b_encoder_schedule(max.epochs, settings$schedule)
  if (length(schedule)) {
    ckw$fit_kwargs <- schedule
  }
  if (!is.null(settings$evaluate$baselines)) {
    settings$evaluate$baselines <- as.list(settings$evaluate$baselines)
  }
  written <- !is.null(out.dir)
  res <- do.call(.py_call, c(
    list(.core()$evaluate, py, inputs$a, inputs$b,
      labels = labels,
      held_out = .resolve_held_out(held.out, inputs$cells, meta),
      consistency_kwargs = reticulate::dict(ckw),
      out_dir = if (written) path.expand(out.dir), plots = plots, progress = FALSE,
      details = written
    ),
    settings$evaluate,
    list(.what = "LIBRA evaluation", .verbose = verbose)
  ))
  if (!written) {
    return(.frame_from_py(res))
  }
  builtins <- reticulate::import_builtins(convert = FALSE)
  files <- as.character(unlist(reticulate::py_to_r(builtins$list(builtins$map(builtins$str, res$files)))))
  plt <- reticulate::import("matplotlib.pyplot", convert = FALSE)
  for (figure in reticulate::py_to_r(builtins$list(res$figures$values()))) {
    if (inherits(figure, "python.builtin.object")) plt$close(figure)
  }
  table <- .frame_from_py(res$table)
  attr(table, "files") <- stats::setNames(files, basename(files))
  table
}

#' @rdname LIBRAEvaluate
#' @export
LIBRAEvaluate.default <- function(object, output, model, labels = NULL, held.out = NULL,
                                  baselines = NULL, consistency = NULL, max.epochs = NULL,
                                  refit = FALSE, seed = NULL, out.dir = NULL, plots = NULL, overwrite = NULL,
                                  verbose = TRUE, ...) {
  values <- c(list(baselines = baselines, consistency = consistency, seed = seed, overwrite = overwrite), list(...))
  .evaluate(model, object, output, "input", "output", labels, held.out, NULL, max.epochs,
    refit, out.dir, plots, verbose, values)
}

#' @rdname LIBRAEvaluate
#' @export
LIBRAEvaluate.Seurat <- function(object, model = NULL, reduction = "libra", labels = NULL,
                                 input.assay = NULL, output.assay = NULL, input.slot = NULL,
                                 output.slot = NULL, held.out = NULL, baselines = NULL,
                                 consistency = NULL, max.epochs = NULL, refit = FALSE,
                                 seed = NULL, out.dir = NULL, plots = NULL, overwrite = NULL,
                                 verbose = TRUE, ...) {
  al <- .seurat_aliases(list(...), list(
    input.assay = input.assay, input.slot = input.slot, output.slot = output.slot
  ), "LIBRAEvaluate")
  model <- model %||% GetLIBRAModel(object, reduction = reduction)
  m <- .model_matrices(
    object, model, al$values$input.assay, output.assay, al$values$input.slot,
    al$values$output.slot
  )
  values <- c(list(baselines = baselines, consistency = consistency, seed = seed, overwrite = overwrite), al$dots)
  .evaluate(model, m$a, m$b, m$name_a, m$name_b, labels, held.out, m$meta, max.epochs,
    refit, out.dir, plots, verbose, values)
}

#' @rdname LIBRAEvaluate
#' @export
LIBRAEvaluate.SingleCellExperiment <- function(object, model = NULL, reduction = "LIBRA",
                                               labels = NULL, input.assay = NULL,
                                               output.assay = NULL, input.altexp = NULL,
                                               output.altexp = NULL, held.out = NULL,
                                               baselines = NULL, consistency = NULL,
                                               max.epochs = NULL, refit = FALSE, seed = NULL,
                                               out.dir = NULL,
                                               plots = NULL, overwrite = NULL, verbose = TRUE,
                                               ...) {
  model <- model %||% GetLIBRAModel(object, reduction = reduction)
  m <- .model_matrices(object, model, input.assay, output.assay, NULL, NULL, input.altexp, output.altexp)
  values <- c(list(baselines = baselines, consistency = consistency, seed = seed, overwrite = overwrite), list(...))
  .evaluate(model, m$a, m$b, m$name_a, m$name_b, labels, held.out, m$meta, max.epochs,
    refit, out.dir, plots, verbose, values)
}
