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
#' @param input.slot,output.slot Seurat layer ("slot" in Seurat 4) to read: `"data"`
#'   (normalised; `NULL` means `"data"`), `"counts"` or `"scale.data"`. Seurat spellings work
#'   too: `assay =` for `input.assay`, `layer =` or `slot =` for `input.slot`, `input.layer =`
#'   / `output.layer =`. In SeuratObject 5, a layer split by [split()] is read across all its
#'   parts, in the object's cell order.
#' @param input.altexp,output.altexp SingleCellExperiment: the alternative experiment holding
#'   each modality, or `NULL` for the main experiment.
#' @param features Input features to use. Seurat default: the variable features of the input
#'   assay when set, else all features; other defaults: all features. Features that are zero in
#'   every training cell are kept, as in Python (the core reports constant features), and are
#'   an error when requested by name.
#' @param output.features Output features to reconstruct (default: all).
#' @param train.cells Cells to train on (the rest are only embedded and predicted): cell
#'   names, a logical vector, or the name of a logical metadata column such as `"is_train"`.
#'   Default: all paired cells.
#' @param batch.key Each cell's batch or donor: the name of a metadata column (Seurat
#'   `meta.data`, SingleCellExperiment `colData`) or one label per cell (named by cell, or in
#'   the object's cell order; the only form for a matrix). Each ensemble member then holds out
#'   whole batches (about `validation.split` of the training cells, but at least one batch:
#'   with two donors, one of them, which the fit says) to decide when to stop, so early stopping
#'   measures what prediction on a new donor needs. Every training cell needs a batch; held-out
#'   cells may be `NA`. With a single training batch the split is random (with a message).
#'   `NULL` (default): a random split.
#' @param n.layers,n.nodes,alpha,dropout,latent.dim Architecture: blocks in the encoder
#'   (mirrored in the decoder), width of the first block (halved in each further block),
#'   LeakyReLU negative slope, dropout rate and size of the shared latent space per network
#'   (an ensemble, `n.models` in `...`, puts its networks' side by side: the reduction has
#'   `n.models * latent.dim` columns, 3 x 32 by default). `NULL` (the
#'   default for every hyperparameter) means the core's default: see `sclibra.LIBRA` in the
#'   Python documentation; the core checks every value.
#' @param batch.size,learning.rate,max.epochs,validation.split,early.stopping.patience
#'   Training: minibatch size, Adam learning rate, epoch limit, share of training cells held
#'   out to monitor training, and epochs without improvement before stopping (`NULL`: the
#'   core's defaults, those of `LIBRA.fit()`). Under the default recipe's
#'   `adaptive.patience = TRUE` (in `...`), a model that stopped improving within its first
#'   few epochs waits only those epochs (see `adaptive_patience` in `LIBRA.fit()`); `FALSE`
#'   always waits `early.stopping.patience` epochs, as published. Under `stop.at.min.lr = TRUE`
#'   (in `...`, the default recipe's), training ends at the plateau that brings the learning
#'   rate down to its floor (`min.lr`) instead of going on at that rate; `FALSE` goes on, as
#'   published. `latent.warmup` (in `...`; the core's default) is the number of steps that
#'   train the encoder on the latent regulariser alone before the fit (see `latent_warmup` in
#'   `LIBRA.fit()`); `0` skips it, as published. `latent.pca` and `latent.pcs` (in `...`) are the weight of that regulariser
#'   and the number of the input's principal components it asks the latent space to predict
#'   (see `sclibra.LIBRA`): more components keep more of the input's finer structure in the
#'   latent space, at some cost in prediction. The default `latent.pcs = 0` chooses from the
#'   loss: 30 for a binary target trained with BCE (peaks), 10 otherwise.
#'   `latent.pcs.whiten = TRUE` (in `...`) weighs every one of those components the same
#'   instead of by its variance: a latent space whose labels live in a minor component (a time
#'   course) clusters better, one whose labels live in the leading ones worse. Under the default
#'   recipe's `mean.fallback = TRUE` (in `...`), an ensemble member that trained to its own
#'   stop (not cut short by `max.epochs`) and whose validation cells find it no better than
#'   each feature's mean (not below it by `min.delta`) predicts that mean instead (with a
#'   message; its latent space is kept); `FALSE` keeps the trained network, as published.
#'   Under the default recipe's `target.smoothing = 0.5` (in `...`), a sparse target such as
#'   normalised RNA (fewer than half its entries non-zero, at most 1,000 features) is
#'   denoised before training: each
#'   training cell learns half its own values and half the mean of its `target.neighbors`
#'   (15) nearest training cells in the target's principal-component space; validation cells
#'   keep their own values. Protein (CLR) and binary (peak) targets are not smoothed; `0`
#'   turns it off, as published.
#' @param output.activation `"auto"` (ReLU for a non-negative output, linear otherwise),
#'   `"relu"`, `"softplus"` or `"linear"` (`NULL`: the core's default, `"auto"`).
#' @param reduction.name Name of the stored latent space. A reduction (reduced dimension) of
#'   that name is replaced only when sclibra made it; any other is an error, before training.
#' @param reduction.key Prefix of the latent dimensions' names: a letter, then letters or
#'   digits, ending in `"_"`.
#' @param new.assay.name Seurat: name of the predicted assay (default
#'   `"predicted_<output.assay>"`). An assay of that name that sclibra did not make (e.g. the
#'   measured one) is never replaced: an error, before training.
#' @param new.altexp.name SingleCellExperiment: name of the predicted alternative experiment
#'   (default `"predicted_<output>"`); as for `new.assay.name`, one that sclibra did not make
#'   is never replaced.
#' @param keep.model Keep the trained weights in the returned object, so that the model can be
#'   retrieved with [GetLIBRAModel()] even after [saveRDS()].
#' @param seed Random seed (initialisation, validation split, shuffling, dropout); `NULL` uses
#'   the core's global seed (`sclibra.settings.seed`), as Python and the command line do.
#' @param device Torch device (`"cpu"`, `"cuda"`, ...); `NULL` uses the core's setting
#'   (`"auto"`).
#' @param verbose Show messages and progress (a progress line in interactive sessions, a
#'   message every 10 seconds otherwise: `options(sclibra.progress.interval = )`). Every
#'   message, including the core's, is an R message: [suppressMessages()] silences it too.
#' @param ... Further arguments of the core's `LIBRA()` and `LIBRA.fit()`, in R or Python
#'   spelling (e.g. `lr.patience = 10`, `n.top.genes = 2000`); Seurat spellings of the assay
#'   and layer arguments (see `input.slot`); `threads = n`, the CPU threads training may use
#'   (the core's `settings.num_threads`; default: decided for each fit from the cores this
#'   session may use, their load and the model's size; an ensemble's members then train side
#'   by side, one per thread, giving the same model as one thread). Any other name is an error.
#' @return The object with the results added (see Details), or for a matrix a list with
#'   `model` (a `LIBRAModel`), `embedding` and `prediction`.
#' @seealso [LIBRAPredict()] for new cells, [GetLIBRAModel()], [SaveLIBRA()], [TuneLIBRA()].
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu <- RunLIBRA(seu,
#'   input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
#'   n.nodes = 64, max.epochs = 20, verbose = FALSE
#' )
#' seu[["predicted_ADT"]]
#' head(SeuratObject::Embeddings(seu, "libra"))
RunLIBRA <- function(object, ...) UseMethod("RunLIBRA")

# Formals of the RunLIBRA() methods that are the core's arguments (NULL: the core's default).
.train_formals <- c(
  "batch.key", "n.layers", "n.nodes", "alpha", "dropout", "latent.dim", "output.activation",
  "batch.size", "learning.rate", "seed", "device", "max.epochs", "validation.split", "early.stopping.patience"
)

# Arguments of LIBRA.fit() that R sets itself.
.fit_reserved <- c(
  "a", "b", "mod_a", "mod_b", "layer_a", "layer_b", "obsm_a", "obsm_b", "train", "progress",
  "callback"
)

# The core's training settings from a method's frame (`env`) and `...`: a list with `model`
# (arguments of LIBRA()) and `fit` (of LIBRA.fit()), holding only what the user gave.
.training_settings <- function(env, dots, fn) {
  threads <- dots[["threads"]]
  dots[["threads"]] <- NULL
  .check_count(threads, "threads", null_ok = TRUE)
  values <- c(mget(.train_formals, envir = env), dots)
  c(.core_args(values, c("model", "fit"), fn, reserved = .fit_reserved), list(threads = threads))
}

# The shared path of every RunLIBRA() method: model, pair, train, bring back.
.train_libra <- function(pair_args, settings, key, keep.model, verbose, input.slot = NULL,
                         output.slot = NULL) {
  .check_flag(verbose)
  .check_flag(keep.model)
  .check_key(key)
  py <- .py(do.call(.core()$LIBRA, settings$model), "Creating the LIBRA model")
  pair <- do.call(.prepare_pair, c(pair_args, list(verbose = verbose)))
  fit_defaults <- reticulate::py_to_r(py$fit_defaults) # the model's preset's schedule
  progress <- .progress(verbose, "LIBRA",
    max.epochs = settings$fit$max_epochs %||% fit_defaults$max_epochs,
    patience = settings$fit$early_stopping_patience %||% fit_defaults$early_stopping_patience
  )
  on.exit(progress$done(), add = TRUE)
  fit <- .with_batches(settings$fit, pair, pair_args$meta)
  do.call(.py_call, c(
    list(py$fit, pair$ad_a, pair$ad_b, train = pair$train, progress = FALSE, callback = progress$update),
    fit,
    list(.what = "Training LIBRA", .verbose = verbose, .threads = settings$threads)
  ))
  progress$done()
  pred <- .py_call(py$predict, pair$ad_a, .what = "Predicting", .verbose = verbose)
  name_a <- pair_args$name_a
  name_b <- pair_args$name_b
  list(
    model = .new_model(py, list(
      input.assay = name_a, output.assay = name_b, input.slot = input.slot,
      output.slot = output.slot
    ), keep = keep.model),
    embedding = .latent_from_py(pred$obsm$get("X_libra"), pair$cells, key),
    prediction = .prediction_from_py(pred)
  )
}

#' @rdname RunLIBRA
#' @export
RunLIBRA.default <- function(object, output, features = NULL, output.features = NULL,
                             train.cells = NULL, batch.key = NULL, n.layers = NULL,
                             n.nodes = NULL, alpha = NULL,
                             dropout = NULL, latent.dim = NULL, batch.size = NULL,
                             learning.rate = NULL, max.epochs = NULL, validation.split = NULL,
                             early.stopping.patience = NULL, output.activation = NULL,
                             reduction.key = "LIBRA_", keep.model = TRUE, seed = NULL,
                             device = NULL, verbose = TRUE, ...) {
  if (missing(output)) {
    .abort("{.arg output} (the features x cells matrix of the modality to reconstruct) is missing.",
      class = "sclibra_input_error"
    )
  }
  settings <- .training_settings(environment(), list(...), "RunLIBRA")
  res <- .train_libra(
    list(
      a = object, b = output, name_a = "input", name_b = "output", features = features,
      output.features = output.features, train.cells = train.cells, meta = NULL
    ),
    settings, reduction.key, keep.model, verbose
  )
  structure(res, class = "LIBRAResult")
}

#' @export
print.LIBRAResult <- function(x, ...) {
  predicted <- if (is.null(x$prediction)) {
    "no prediction (cells placed from the output modality)"
  } else {
    sprintf("prediction %d features x %d cells", nrow(x$prediction), ncol(x$prediction))
  }
  cat(sprintf(
    "LIBRA result: embedding %d cells x %d, %s\n", nrow(x$embedding), ncol(x$embedding), predicted
  ))
  print(x$model)
  invisible(x)
}

#' @rdname RunLIBRA
#' @export
RunLIBRA.Seurat <- function(object, input.assay = NULL, output.assay, input.slot = NULL,
                            output.slot = NULL, features = NULL, output.features = NULL,
                            train.cells = NULL, batch.key = NULL, n.layers = NULL,
                            n.nodes = NULL, alpha = NULL,
                            dropout = NULL, latent.dim = NULL, batch.size = NULL,
                            learning.rate = NULL, max.epochs = NULL, validation.split = NULL,
                            early.stopping.patience = NULL, output.activation = NULL,
                            reduction.name = "libra", reduction.key = "LIBRA_",
                            new.assay.name = NULL, keep.model = TRUE, seed = NULL,
                            device = NULL, verbose = TRUE, ...) {
  dots <- .seurat_assay_args(environment(), list(...), "RunLIBRA")
  .check_assay(object, input.assay, "input.assay")
  .check_assay(object, output.assay, "output.assay")
  if (identical(input.assay, output.assay) && identical(input.slot, output.slot)) {
    .abort("{.arg input.assay} and {.arg output.assay} are the same ({.val {input.assay}}); LIBRA needs two modalities.",
      class = "sclibra_input_error"
    )
  }
  new.assay.name <- new.assay.name %||% paste0("predicted_", output.assay)
  .check_seurat_targets(object, reduction.name, new.assay.name)
  settings <- .training_settings(environment(), dots, "RunLIBRA")
  res <- .train_libra(.seurat_pair_args(environment()), settings, reduction.key, keep.model,
    verbose,
    input.slot = input.slot, output.slot = output.slot
  )
  params <- list(
    input.assay = input.assay, output.assay = output.assay, input.slot = input.slot,
    output.slot = output.slot, reduction.name = reduction.name,
    new.assay.name = new.assay.name, features = res$model$features.input,
    output.features = res$model$features.output, model = settings$model, fit = settings$fit,
    config = res$model$config, train.cells = res$model$train.cells,
    validation.cells = res$model$validation.cells, n.epochs = res$model$n.epochs,
    best.val.loss = res$model$best.val.loss
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

#' @rdname RunLIBRA
#' @export
RunLIBRA.SingleCellExperiment <- function(object, input.assay = "logcounts",
                                          output.assay = "logcounts", input.altexp = NULL,
                                          output.altexp = NULL, features = NULL,
                                          output.features = NULL, train.cells = NULL,
                                          batch.key = NULL, n.layers = NULL, n.nodes = NULL,
                                          alpha = NULL,
                                          dropout = NULL, latent.dim = NULL, batch.size = NULL,
                                          learning.rate = NULL, max.epochs = NULL,
                                          validation.split = NULL,
                                          early.stopping.patience = NULL,
                                          output.activation = NULL,
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
  input_name <- input.altexp %||% .main_name(object)
  output_name <- output.altexp %||% .main_name(object)
  if (identical(input_name, output_name)) {
    input_name <- input.assay
    output_name <- output.assay
  }
  new.altexp.name <- new.altexp.name %||% paste0("predicted_", output_name)
  .check_sce_targets(object, reduction.name, new.altexp.name)
  settings <- .training_settings(environment(), list(...), "RunLIBRA")
  a <- .sce_matrix(object, input.assay, input.altexp, "input.assay")
  b <- .sce_matrix(object, output.assay, output.altexp, "output.assay")
  res <- .train_libra(
    list(
      a = a, b = b, name_a = input_name, name_b = output_name, features = features,
      output.features = output.features, train.cells = train.cells, meta = .sce_meta(object)
    ),
    settings, reduction.key, keep.model, verbose,
    input.slot = input.assay, output.slot = output.assay
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
      model = settings$model, fit = settings$fit, config = res$model$config,
      train.cells = res$model$train.cells, validation.cells = res$model$validation.cells,
      n.epochs = res$model$n.epochs, best.val.loss = res$model$best.val.loss
    )
  )
  S4Vectors::metadata(object)[["sclibra"]] <- store
  object
}
