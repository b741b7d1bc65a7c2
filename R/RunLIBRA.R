#' Train LIBRA on paired single-cell data
#'
#' Trains a LIBRA model (an unbalanced autoencoder) that reads one modality (e.g. RNA, ATAC)
#' and reconstructs another (e.g. ADT, RNA) in the same cells, then stores the shared latent
#' space and the cross-modal prediction where Seurat and Bioconductor users look for them.
#'
#' * **Seurat**: the latent space becomes the dimensional reduction `reduction.name`
#'   (`"libra"`, keys `LIBRA_1`, ...; `assay.used` is the input assay; the model is in its
#'   `misc`), the prediction the assay `new.assay.name` (`"predicted_<output.assay>"`), and
#'   the parameters go to [SeuratObject::Tool()] and the command log.
#' * **SingleCellExperiment**: `reducedDim(sce, "LIBRA")` and
#'   `altExp(sce, "predicted_<output>")`; the model and parameters go to
#'   `metadata(sce)$sclibra`. CITE-seq usually keeps RNA in the main experiment and ADT in an
#'   alternative experiment: use `input.altexp` / `output.altexp`.
#' * **matrix** (features x cells, sparse `dgCMatrix` or dense): a list with `model`,
#'   `embedding` (cells x latent) and `prediction` (features x cells).
#'
#' Cells are paired by name. Sparse matrices stay sparse: they reach Python without being
#' densified or copied (see the package documentation, [sclibra-package]).
#'
#' @param object A Seurat object, a SingleCellExperiment, or a features x cells matrix of the
#'   input modality.
#' @param output For the matrix method: features x cells matrix of the output modality.
#' @param input.assay,output.assay Assays read and reconstructed. Seurat: assay names
#'   (`input.assay` defaults to the default assay). SingleCellExperiment: assay names in the
#'   main experiment or in the alternative experiments given by `input.altexp` /
#'   `output.altexp` (default `"logcounts"`).
#' @param input.slot,output.slot Seurat slot (layer in Seurat 5) to read: `"data"`
#'   (normalised, default), `"counts"` or `"scale.data"`.
#' @param input.altexp,output.altexp SingleCellExperiment: the alternative experiment holding
#'   each modality, or `NULL` for the main experiment.
#' @param features Input features to use. Seurat default: the variable features of the input
#'   assay when set, else all features; other defaults: all features. Features that are zero in
#'   every training cell are dropped from the defaults (and are an error when requested).
#' @param output.features Output features to reconstruct (default: all non-empty ones).
#' @param train.cells Cells to train on (the rest are only embedded and predicted): cell
#'   names, a logical vector, or the name of a logical metadata column such as `"is_train"`.
#'   Default: all paired cells.
#' @param n.layers,n.nodes,alpha,dropout,latent.dim Architecture: blocks in the encoder
#'   (mirrored in the decoder), width of the first block (halved in each further block),
#'   LeakyReLU negative slope, dropout rate and size of the shared latent space.
#' @param batch.size,learning.rate,max.epochs,validation.split,early.stopping.patience
#'   Training: minibatch size, Adam learning rate, epoch limit, share of training cells held
#'   out to monitor training, and epochs without improvement before stopping.
#' @param output.activation `"auto"` (ReLU for a non-negative output, linear otherwise),
#'   `"relu"`, `"softplus"` or `"linear"`.
#' @param reduction.name Name of the stored latent space.
#' @param reduction.key Prefix of the latent dimensions' names.
#' @param new.assay.name Seurat: name of the predicted assay (default
#'   `"predicted_<output.assay>"`).
#' @param new.altexp.name SingleCellExperiment: name of the predicted alternative experiment
#'   (default `"predicted_<output>"`).
#' @param keep.model Keep the trained weights in the returned object, so that the model can be
#'   retrieved with [GetLIBRAModel()] even after [saveRDS()].
#' @param seed Random seed (initialisation, validation split, shuffling, dropout). `NULL` (the
#'   default) uses the core's default, `sclibra.settings.seed` (0), so the same call gives the
#'   same model in R, Python and the command line.
#' @param device Torch device (`"cpu"`, `"cuda"`, ...); `NULL` uses the core's setting
#'   (`"auto"`).
#' @param verbose Show messages and a progress bar.
#' @param ... Further arguments passed to the Python `LIBRA.fit()` with their Python names
#'   (e.g. `lr_patience = 10`, `n_top_genes = 2000`).
#' @return The object with the results added (see Details), or for a matrix a list with
#'   `model` (a `LIBRAModel`), `embedding` and `prediction`.
#' @seealso [LIBRAPredict()] for new cells, [GetLIBRAModel()], [SaveLIBRA()], [TuneLIBRA()].
#' @export
#' @examples
#' \dontrun{
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", max.epochs = 50)
#' Seurat::DimPlot(seu, reduction = "libra")
#' seu[["predicted_ADT"]]
#' }
RunLIBRA <- function(object, ...) UseMethod("RunLIBRA")

# The hyperparameters of sclibra.LIBRA(), checked in R and typed for Python.
.model_args <- function(n.layers, n.nodes, alpha, dropout, latent.dim, batch.size,
                        learning.rate, output.activation, seed, device) {
  output.activation <- match.arg(output.activation, c("auto", "relu", "softplus", "linear"))
  list(
    n_layers = .check_count(n.layers, "n.layers", min = 0),
    n_nodes = .check_count(n.nodes, "n.nodes"),
    alpha = .check_number(alpha, "alpha", 0, 1),
    dropout = .check_number(dropout, "dropout", 0, 0.999),
    latent_dim = .check_count(latent.dim, "latent.dim"),
    output_activation = output.activation,
    batch_size = .check_count(batch.size, "batch.size"),
    learning_rate = .check_number(learning.rate, "learning.rate", 1e-12, 10),
    seed = if (is.null(seed)) NULL else .check_count(seed, "seed", min = 0),
    device = device
  )
}

# Training-schedule arguments of LIBRA.fit(), plus any extra Python arguments from `...`.
.fit_args <- function(max.epochs, validation.split, early.stopping.patience, dots) {
  args <- list(
    max_epochs = .check_count(max.epochs, "max.epochs"),
    validation_split = .check_number(validation.split, "validation.split", 0, 0.99),
    early_stopping_patience = .check_count(early.stopping.patience, "early.stopping.patience",
      min = 0
    )
  )
  dots <- .dots_to_py(dots)
  args[names(dots)] <- dots
  args
}

# Extra arguments for the Python core (from `...`): named, whole numbers as integers.
.dots_to_py <- function(dots) {
  if (!length(dots)) {
    return(list())
  }
  if (is.null(names(dots)) || any(!nzchar(names(dots)))) {
    .abort("Extra arguments passed on to the Python core must be named.",
      class = "sclibra_input_error"
    )
  }
  # R spelling of the core's names (allow.counts -> allow_counts)
  names(dots) <- chartr(".", "_", names(dots))
  lapply(dots, .pyify)
}

# Whole numbers go to Python as int (the core checks types strictly).
.pyify <- function(x) {
  if (is.double(x) && length(x) == 1L && !is.na(x) && x == round(x) && abs(x) < .Machine$integer.max) {
    return(as.integer(x))
  }
  x
}

# Run a Python call with the core's messages shown or silenced.
.with_verbosity <- function(verbose, expr) {
  settings <- .core()$settings
  old <- reticulate::py_to_r(settings$verbosity)
  settings$verbosity <- if (isTRUE(verbose)) "info" else "warning"
  on.exit(settings$verbosity <- old, add = TRUE)
  expr
}

# The shared path of every RunLIBRA() method: check, cross the bridge, train, bring back.
.train_libra <- function(a, b, name_a, name_b, features, output.features, train.cells, meta,
                         model_args, fit_args, key, keep.model, verbose, output.slot = NULL) {
  .check_flag(verbose)
  .check_flag(keep.model)
  .check_string(key, "reduction.key")
  .validate_matrix(a, name_a)
  .validate_matrix(b, name_b)
  shared <- .shared_cells(a, b, name_a, name_b, verbose)
  train <- .resolve_train_cells(train.cells, shared, meta)
  fit_cells <- train %||% shared
  a <- .select_features(a, features, name_a, fit_cells, verbose)
  b <- .select_features(b, output.features, name_b, fit_cells, verbose)
  ad_a <- .to_anndata(a, name_a)
  ad_b <- .to_anndata(b, name_b)
  py <- .py(do.call(.core()$LIBRA, model_args), "Creating the LIBRA model")
  train_arg <- if (is.null(train)) NULL else as.list(train)
  .msg(verbose, "Training LIBRA {name_a} ({nrow(a)} features) -> {name_b} ({nrow(b)} features) on {length(fit_cells)} cells.")
  .with_verbosity(verbose, do.call(.py_call, c(
    list(py$fit, ad_a, ad_b, train = train_arg, progress = verbose), fit_args,
    list(.what = "Training LIBRA")
  )))
  pred <- .py_call(py$predict, ad_a, .what = "Predicting")
  list(
    model = .new_model(py, list(input.assay = name_a, output.assay = name_b, output.slot = output.slot),
      keep = keep.model
    ),
    embedding = .latent_from_py(pred$obsm$get("X_libra"), colnames(a), key),
    prediction = .prediction_from_py(pred)
  )
}

#' @rdname RunLIBRA
#' @export
RunLIBRA.default <- function(object, output, features = NULL, output.features = NULL,
                             train.cells = NULL, n.layers = 2, n.nodes = 512, alpha = 0.3,
                             dropout = 0.2, latent.dim = 10, batch.size = 128,
                             learning.rate = 1e-3, max.epochs = 1500, validation.split = 0.1,
                             early.stopping.patience = 20, output.activation = "auto",
                             reduction.key = "LIBRA_", keep.model = TRUE, seed = NULL,
                             device = NULL, verbose = TRUE, ...) {
  if (missing(output)) {
    .abort("{.arg output} (the features x cells matrix of the modality to reconstruct) is missing.",
      class = "sclibra_input_error"
    )
  }
  model_args <- .model_args(
    n.layers, n.nodes, alpha, dropout, latent.dim, batch.size, learning.rate,
    output.activation, seed, device
  )
  fit_args <- .fit_args(max.epochs, validation.split, early.stopping.patience, list(...))
  res <- .train_libra(
    object, output, "input", "output", features, output.features, train.cells,
    meta = NULL, model_args, fit_args, reduction.key, keep.model, verbose
  )
  structure(res, class = "LIBRAResult")
}

#' @export
print.LIBRAResult <- function(x, ...) {
  cat(sprintf(
    "LIBRA result: embedding %d cells x %d, prediction %d features x %d cells\n",
    nrow(x$embedding), ncol(x$embedding), nrow(x$prediction), ncol(x$prediction)
  ))
  print(x$model)
  invisible(x)
}

# Seurat helpers ------------------------------------------------------------------------------

.seurat_v5 <- function() utils::packageVersion("SeuratObject") >= "4.9.0"

.check_assay <- function(object, assay, what) {
  .check_string(assay, what)
  assays <- SeuratObject::Assays(object)
  if (!assay %in% assays) {
    .abort(c(
      "Assay {.val {assay}} ({.arg {what}}) is not in the Seurat object.",
      i = "Assays present: {.val {assays}}."
    ), class = "sclibra_missing_assay")
  }
  invisible(assay)
}

# The features x cells matrix of an assay slot (layer in Seurat 5), checked for presence.
.seurat_matrix <- function(object, assay, slot, what) {
  .check_assay(object, assay, what)
  .check_string(slot, paste0(sub("assay", "slot", what)))
  valid <- c("counts", "data", "scale.data")
  if (!.seurat_v5() && !slot %in% valid) {
    .abort("Slot {.val {slot}} does not exist; use one of {.val {valid}}.",
      class = "sclibra_missing_slot"
    )
  }
  x <- if (.seurat_v5()) {
    layer_data <- utils::getFromNamespace("LayerData", "SeuratObject")
    tryCatch(layer_data(object, assay = assay, layer = slot), error = function(e) NULL)
  } else {
    SeuratObject::GetAssayData(object, assay = assay, slot = slot)
  }
  if (is.null(x) || nrow(x) == 0L || ncol(x) == 0L) {
    hint <- switch(slot,
      scale.data = "run {.fn Seurat::ScaleData} or use {.val data}",
      data = "run {.fn Seurat::NormalizeData} first",
      "fill it or choose another slot"
    )
    .abort(c(
      "Slot {.val {slot}} of assay {.val {assay}} is empty.",
      i = paste0("To use it, ", hint, ".")
    ), class = "sclibra_missing_slot")
  }
  x
}

# Feature names Seurat accepts ('_' and '|' become '-', as CreateAssayObject would do).
.seurat_features <- function(features) {
  make.unique(gsub("[_|]", "-", features))
}

# Seurat keys must be unique across reductions and assays: a key already used by another
# reduction (e.g. the default "LIBRA_" of a first run) becomes one derived from its name.
.unique_key <- function(object, key, name, verbose) {
  others <- setdiff(c(SeuratObject::Reductions(object), SeuratObject::Assays(object)), name)
  used <- vapply(others, function(o) SeuratObject::Key(object[[o]]), "")
  if (!key %in% used) {
    return(key)
  }
  new <- paste0(toupper(gsub("[^[:alnum:]]", "", name)), "_")
  .msg(verbose, "Key {.val {key}} is used by another reduction; {.val {name}} gets key {.val {new}}.")
  new
}

# Variable features of an assay present in its matrix `x`, or NULL when none are set.
.variable_features <- function(object, assay, x, verbose = FALSE) {
  variable <- intersect(SeuratObject::VariableFeatures(object[[assay]]), rownames(x))
  if (!length(variable)) {
    return(NULL)
  }
  .msg(verbose, "Using the {length(variable)} variable features of assay {assay}.")
  variable
}

.assay_key <- function(name) paste0(gsub("[^[:alnum:]]", "", tolower(name)), "_")

# Store an embedding (cells x k) as a DimReduc and a prediction (features x cells) as an Assay.
.seurat_store <- function(object, embedding, prediction, model, input.assay,
                          reduction.name, reduction.key, new.assay.name, misc, verbose) {
  emb <- matrix(NA_real_, ncol(object), ncol(embedding),
    dimnames = list(colnames(object), colnames(embedding))
  )
  emb[rownames(embedding), ] <- embedding
  if (anyNA(emb)) {
    emb <- embedding
  }
  misc$model <- model
  reduction.key <- .unique_key(object, reduction.key, reduction.name, verbose)
  colnames(emb) <- paste0(reduction.key, seq_len(ncol(emb)))
  object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
    embeddings = emb, assay = input.assay, key = reduction.key, misc = misc
  )
  original <- rownames(prediction)
  safe <- .seurat_features(original)
  if (!identical(safe, original)) {
    .msg(verbose, "Feature names of {new.assay.name} changed for Seurat ('_' or '|' to '-'); originals are in the assay's meta.features column {.field libra.feature}.")
    rownames(prediction) <- safe
  }
  assay <- SeuratObject::CreateAssayObject(data = prediction)
  SeuratObject::Key(assay) <- .assay_key(new.assay.name)
  assay <- SeuratObject::AddMetaData(assay, metadata = original, col.name = "libra.feature")
  assay@misc[["sclibra"]] <- list(reduction = reduction.name, input.assay = input.assay)
  object[[new.assay.name]] <- assay
  object
}

#' @rdname RunLIBRA
#' @export
RunLIBRA.Seurat <- function(object, input.assay = NULL, output.assay, input.slot = "data",
                            output.slot = "data", features = NULL, output.features = NULL,
                            train.cells = NULL, n.layers = 2, n.nodes = 512, alpha = 0.3,
                            dropout = 0.2, latent.dim = 10, batch.size = 128,
                            learning.rate = 1e-3, max.epochs = 1500, validation.split = 0.1,
                            early.stopping.patience = 20, output.activation = "auto",
                            reduction.name = "libra", reduction.key = "LIBRA_",
                            new.assay.name = NULL, keep.model = TRUE, seed = NULL,
                            device = NULL, verbose = TRUE, ...) {
  input.assay <- input.assay %||% SeuratObject::DefaultAssay(object)
  if (missing(output.assay)) {
    .abort(c("{.arg output.assay} is missing: which assay should LIBRA reconstruct?",
      i = "Assays present: {.val {SeuratObject::Assays(object)}}."
    ), class = "sclibra_missing_assay")
  }
  .check_assay(object, input.assay, "input.assay")
  .check_assay(object, output.assay, "output.assay")
  if (identical(input.assay, output.assay) && identical(input.slot, output.slot)) {
    .abort("{.arg input.assay} and {.arg output.assay} are the same ({.val {input.assay}}); LIBRA needs two modalities.",
      class = "sclibra_input_error"
    )
  }
  .check_string(reduction.name)
  new.assay.name <- new.assay.name %||% paste0("predicted_", output.assay)
  .check_string(new.assay.name)
  model_args <- .model_args(
    n.layers, n.nodes, alpha, dropout, latent.dim, batch.size, learning.rate,
    output.activation, seed, device
  )
  fit_args <- .fit_args(max.epochs, validation.split, early.stopping.patience, list(...))
  a <- .seurat_matrix(object, input.assay, input.slot, "input.assay")
  b <- .seurat_matrix(object, output.assay, output.slot, "output.assay")
  features <- features %||% .variable_features(object, input.assay, a, verbose)
  res <- .train_libra(
    a, b, input.assay, output.assay, features, output.features, train.cells,
    meta = object[[]], model_args, fit_args, reduction.key, keep.model, verbose,
    output.slot = output.slot
  )
  params <- list(
    input.assay = input.assay, output.assay = output.assay, input.slot = input.slot,
    output.slot = output.slot, reduction.name = reduction.name,
    new.assay.name = new.assay.name, features = res$model$features.input,
    output.features = res$model$features.output, model = model_args, fit = fit_args,
    train.cells = res$model$train.cells, validation.cells = res$model$validation.cells,
    n.epochs = res$model$n.epochs, best.val.loss = res$model$best.val.loss
  )
  misc <- params[c("input.assay", "output.assay", "n.epochs", "best.val.loss")]
  misc$config <- res$model$config
  object <- .seurat_store(
    object, res$embedding, res$prediction, if (keep.model) res$model,
    input.assay, reduction.name, reduction.key, new.assay.name, misc, verbose
  )
  tool <- SeuratObject::Tool(object, slot = "RunLIBRA") %||% list()
  tool[[reduction.name]] <- params
  SeuratObject::Tool(object) <- tool
  command <- SeuratObject::LogSeuratCommand(object = object, return.command = TRUE)
  .log_command(object, command, assay = input.assay, reduction = reduction.name)
}

# Record a SeuratCommand (from LogSeuratCommand(return.command = TRUE), which must be called in
# the method itself) under "<Function>.<assay>.<reduction>", with the assay it used.
.log_command <- function(object, command, assay, reduction) {
  name <- paste(sub("\\..*$", "", command@name), assay, reduction, sep = ".")
  command@name <- name
  command@assay.used <- assay
  object[[name]] <- command
  object
}

# SingleCellExperiment helpers ---------------------------------------------------------------

.need_sce <- function() {
  for (pkg in c("SingleCellExperiment", "SummarizedExperiment", "S4Vectors")) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      .abort("Package {.pkg {pkg}} is needed for SingleCellExperiment input.",
        class = "sclibra_input_error"
      )
    }
  }
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

#' @rdname RunLIBRA
#' @export
RunLIBRA.SingleCellExperiment <- function(object, input.assay = "logcounts",
                                          output.assay = "logcounts", input.altexp = NULL,
                                          output.altexp = NULL, features = NULL,
                                          output.features = NULL, train.cells = NULL,
                                          n.layers = 2, n.nodes = 512, alpha = 0.3,
                                          dropout = 0.2, latent.dim = 10, batch.size = 128,
                                          learning.rate = 1e-3, max.epochs = 1500,
                                          validation.split = 0.1,
                                          early.stopping.patience = 20,
                                          output.activation = "auto",
                                          reduction.name = "LIBRA", reduction.key = "LIBRA_",
                                          new.altexp.name = NULL, keep.model = TRUE,
                                          seed = NULL, device = NULL, verbose = TRUE, ...) {
  .need_sce()
  if (identical(input.altexp, output.altexp) && identical(input.assay, output.assay)) {
    .abort(c(
      "Input and output are the same assay ({.val {input.assay}} of the same experiment).",
      i = "Name the alternative experiment of the other modality, e.g. {.code output.altexp = \"ADT\"}."
    ), class = "sclibra_input_error")
  }
  .check_string(reduction.name)
  input_name <- input.altexp %||% .main_name(object)
  output_name <- output.altexp %||% .main_name(object)
  if (identical(input_name, output_name)) {
    input_name <- input.assay
    output_name <- output.assay
  }
  new.altexp.name <- new.altexp.name %||% paste0("predicted_", output_name)
  .check_string(new.altexp.name)
  model_args <- .model_args(
    n.layers, n.nodes, alpha, dropout, latent.dim, batch.size, learning.rate,
    output.activation, seed, device
  )
  fit_args <- .fit_args(max.epochs, validation.split, early.stopping.patience, list(...))
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  b <- .sce_matrix(object, output.assay, output.altexp, "output.assay")
  meta <- .sce_meta(object)
  res <- .train_libra(
    a, b, input_name, output_name, features, output.features, train.cells,
    meta = meta, model_args, fit_args, reduction.key, keep.model, verbose,
    output.slot = output.assay
  )
  object <- .sce_store(
    object, res$embedding, res$prediction, output.assay, reduction.name, new.altexp.name
  )
  store <- S4Vectors::metadata(object)[["sclibra"]] %||% list()
  store[[reduction.name]] <- list(
    model = if (keep.model) res$model,
    params = list(
      input.assay = input.assay, output.assay = output.assay, input.altexp = input.altexp,
      output.altexp = output.altexp, new.altexp.name = new.altexp.name,
      features = res$model$features.input, output.features = res$model$features.output,
      model = model_args, fit = fit_args, train.cells = res$model$train.cells,
      validation.cells = res$model$validation.cells, n.epochs = res$model$n.epochs,
      best.val.loss = res$model$best.val.loss
    )
  )
  S4Vectors::metadata(object)[["sclibra"]] <- store
  object
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
  pred <- prediction[, cells, drop = FALSE]
  assays <- stats::setNames(list(pred), assay_name)
  SingleCellExperiment::altExp(object, new.altexp.name) <-
    SummarizedExperiment::SummarizedExperiment(assays = assays)
  object
}
