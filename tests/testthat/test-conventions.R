# Seurat conventions and R conventions: argument spellings, unknown arguments, messages as R
# conditions, the command log, R syntax in errors, evaluation files.

test_that("the core's arguments default to NULL in every R method (the core owns defaults)", {
  fns <- list(
    sclibra:::RunLIBRA.default, sclibra:::RunLIBRA.Seurat,
    sclibra:::RunLIBRA.SingleCellExperiment
  )
  for (fn in fns) {
    f <- formals(fn)
    for (arg in sclibra:::.train_formals) {
      expect_null(f[[arg]], label = arg)
    }
  }
  for (fn in list(sclibra:::TuneLIBRA.default, sclibra:::TuneLIBRA.Seurat)) {
    f <- formals(fn)
    for (arg in sclibra:::.tune_formals) expect_null(f[[arg]], label = arg)
  }
})

test_that("unknown arguments are errors naming them, before any work", {
  need_core()
  seu <- example_data("cite")
  err <- expect_error(
    RunLIBRA(seu, output.assay = "ADT", n.nodez = 32, max.epochs = 2, verbose = FALSE),
    class = "sclibra_unknown_argument"
  )
  expect_equal(err$unknown, "n.nodez")
  expect_match(conditionMessage(err), "has no argument `n.nodez`")
  msg <- cli::ansi_strip(conditionMessage(err))
  expect_match(msg, "Did you mean `n.nodes`?", fixed = TRUE) # the closest valid name
  expect_match(msg, "`weight.decay`", fixed = TRUE) # and every valid name, none cut off
  expect_match(msg, "`n.layers`", fixed = TRUE)
  expect_false(grepl("...", msg, fixed = TRUE))
  model <- GetLIBRAModel(trained_cite())
  expect_error(LIBRAPredict(seu, model = model, foo = 1), "no argument `foo`",
    class = "sclibra_unknown_argument"
  )
  expect_error(PPJI(trained_cite(), reference = "cell_type", k = 5), "no argument `k`",
    class = "sclibra_unknown_argument"
  )
  expect_error(
    LIBRAEvaluate(trained_cite(), consistency = FALSE, bogus = TRUE, verbose = FALSE),
    "no argument `bogus`",
    class = "sclibra_unknown_argument"
  )
  # R and Python spellings of one argument at once
  expect_error(run_fast(seu, output.assay = "ADT", n_nodes = 16), "given twice",
    class = "sclibra_input_error"
  )
})

test_that("core arguments in `...` are passed on in R or Python spelling", {
  need_core()
  seu <- example_data("cite")
  out <- run_fast(seu, output.assay = "ADT", lr.patience = 3, min_lr = 1e-4, max.epochs = 2)
  expect_equal(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$lr_patience, 3L)
  expect_equal(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$min_lr, 1e-4)
  out <- run_fast(seu, output.assay = "ADT", adaptive.patience = FALSE, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$adaptive_patience, FALSE)
  expect_error(run_fast(seu, output.assay = "ADT", adaptive.patience = "no", max.epochs = 2),
    "adaptive_patience must be True or False"
  )
  out <- run_fast(seu, output.assay = "ADT", latent.warmup = 0, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$latent_warmup, 0L)
  expect_error(run_fast(seu, output.assay = "ADT", latent.warmup = -1, max.epochs = 2),
    "latent_warmup must be an integer >= 0"
  )
  out <- run_fast(seu, output.assay = "ADT", stop.at.min.lr = FALSE, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$stop_at_min_lr, FALSE)
  out <- run_fast(seu, output.assay = "ADT", ema.decay = 0.9, max.epochs = 2)
  expect_equal(SeuratObject::Tool(out, "RunLIBRA")$libra$fit$ema_decay, 0.9)
  expect_error(run_fast(seu, output.assay = "ADT", ema.decay = 1, max.epochs = 2),
    "ema_decay must be in"
  )
  out <- run_fast(seu, output.assay = "ADT", latent.pca = 2, latent.pcs = 4, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$latent_pcs, 4L)
  expect_equal(SeuratObject::Tool(out, "RunLIBRA")$libra$config$latent_pca, 2)
  expect_error(run_fast(seu, output.assay = "ADT", latent.pcs = -1, max.epochs = 2),
    "latent_pcs must be an integer >= 0"
  )
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$latent_pcs_whiten, FALSE)
  out <- run_fast(seu, output.assay = "ADT", latent.pcs.whiten = TRUE, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$latent_pcs_whiten, TRUE)
  expect_error(run_fast(seu, output.assay = "ADT", latent.pcs.whiten = "yes", max.epochs = 2),
    "latent_pcs_whiten must be True or False"
  )
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$mean_fallback, TRUE)
  out <- run_fast(seu, output.assay = "ADT", mean.fallback = FALSE, max.epochs = 2)
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$mean_fallback, FALSE)
  expect_error(run_fast(seu, output.assay = "ADT", mean.fallback = "no", max.epochs = 2),
    "mean_fallback must be True or False"
  )
  # RNA (mostly zeros) as the target: smoothed under the default recipe, as in Python
  expect_equal(SeuratObject::Tool(out, "RunLIBRA")$libra$config$target_smoothing, 0.5)
  SeuratObject::DefaultAssay(seu) <- "ADT"
  smooth <- run_fast(seu, assay = "ADT", output.assay = "RNA", max.epochs = 2)
  plain <- run_fast(seu, assay = "ADT", output.assay = "RNA", target.smoothing = 0,
    max.epochs = 2)
  expect_equal(SeuratObject::Tool(plain, "RunLIBRA")$libra$config$target_smoothing, 0)
  expect_false(isTRUE(all.equal(
    as.matrix(SeuratObject::GetAssayData(smooth[["predicted_RNA"]], slot = "data")),
    as.matrix(SeuratObject::GetAssayData(plain[["predicted_RNA"]], slot = "data"))
  )))
  expect_error(run_fast(seu, assay = "ADT", output.assay = "RNA", target.smoothing = 2,
    max.epochs = 2), "target_smoothing must be in")
})

test_that("Seurat spellings assay / layer / slot work as a Seurat user expects", {
  need_core()
  seu <- example_data("cite")
  SeuratObject::DefaultAssay(seu) <- "ADT"
  out <- run_fast(seu, assay = "RNA", output.assay = "ADT", layer = "data", max.epochs = 2)
  params <- SeuratObject::Tool(out, "RunLIBRA")$libra
  expect_equal(params$input.assay, "RNA")
  expect_equal(params$input.slot, "data")
  expect_equal(GetLIBRAModel(out)$input.assay, "RNA")
  out2 <- run_fast(seu, assay = "RNA", output.assay = "ADT", slot = "counts", max.epochs = 2,
    allow.counts = TRUE
  )
  expect_equal(SeuratObject::Tool(out2, "RunLIBRA")$libra$input.slot, "counts")
  expect_error(
    run_fast(seu, assay = "RNA", input.assay = "ADT", output.assay = "ADT"),
    "same argument and disagree",
    class = "sclibra_input_error"
  )
  pred <- LIBRAPredict(out, assay = "RNA", layer = "data", verbose = FALSE)
  expect_true("predicted_ADT" %in% SeuratObject::Assays(pred))
})

test_that("the core's log lines and progress are R messages: suppressMessages() silences them", {
  need_core()
  seu <- example_data("cite")
  withr::local_options(sclibra.progress.interval = 0)
  msgs <- character()
  withCallingHandlers(
    run_fast(seu, output.assay = "ADT", max.epochs = 3, verbose = TRUE),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  msgs <- cli::ansi_strip(msgs)
  # one start-up line (the core's), then progress lines with the early-stopping rule
  expect_equal(sum(grepl("training LIBRA", msgs, ignore.case = TRUE)), 1L)
  expect_true(any(grepl("LIBRA: epoch 1/3, validation loss", msgs)))
  expect_true(any(grepl("stops at epoch \\d+ at the latest", msgs)))
  expect_silent(suppressMessages(run_fast(seu, output.assay = "ADT", max.epochs = 2, verbose = TRUE)))
  # an ensemble: each line names its member, whose own best epoch it reports
  msgs <- character()
  withCallingHandlers(
    run_fast(seu, output.assay = "ADT", max.epochs = 3, n.models = 2, threads = 1, verbose = TRUE),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  msgs <- cli::ansi_strip(msgs)
  lines <- regmatches(msgs, regexpr("LIBRA member \\d/2: epoch \\d/3, [^)]*\\)", msgs))
  expect_length(lines, 6L)
  expect_equal(sub(":.*", "", lines), rep(c("LIBRA member 1/2", "LIBRA member 2/2"), each = 3))
  # member 2's first epoch is its own best, whatever member 1 reached
  expect_match(lines[4], "epoch 1/3, validation loss ([0-9.e-]+) \\(best \\1 at epoch 1, ")
  expect_silent(run_fast(seu, output.assay = "ADT", max.epochs = 2, verbose = FALSE))
})

test_that("a fit that predicts its target no better than the mean says so, even when quiet", {
  need_core()
  set.seed(3)
  cells <- paste0("c", 1:300)
  a <- matrix(rnorm(20 * 300), 20, dimnames = list(paste0("g", 1:20), cells))
  b <- matrix(rnorm(3 * 300), 3, dimnames = list(paste0("p", 1:3), cells))
  # noise: nothing in `a` predicts it; trained until it stops by itself
  expect_message(
    out <- RunLIBRA(a, b, n.nodes = 16, n.models = 1, seed = 0, verbose = FALSE),
    "better than each feature's training mean"
  )
  expect_lt(out$model$n.epochs, 1500L) # stopped early, not at the epoch limit
})

test_that("nothing reaches stderr behind R's back when messages are suppressed", {
  need_core()
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "suppressPackageStartupMessages(library(sclibra))",
    "seu <- LIBRAExampleData('cite')",
    "options(sclibra.progress.interval = 0)",
    "x <- suppressMessages(RunLIBRA(seu, output.assay = 'ADT', n.nodes = 16, max.epochs = 3))",
    "cat('done\\n')"
  ), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = TRUE))
  expect_equal(out, "done")
})

test_that("the command log records a summary of long arguments, not every cell name", {
  need_core()
  seu <- example_data("cite")
  cells <- colnames(seu)[seu$is_train]
  out <- run_fast(seu, output.assay = "ADT", train.cells = cells, max.epochs = 2)
  command <- out@commands[["RunLIBRA.RNA.libra"]]
  expect_s4_class(command, "SeuratCommand")
  logged <- command@params$train.cells
  expect_length(logged, 1L)
  expect_match(logged, sprintf("^<%d character values: ", length(cells)))
  expect_equal(command@params$output.assay, "ADT")
})

test_that("a misspelt metadata column in train.cells is reported as a missing column", {
  need_core()
  seu <- example_data("cite")
  err <- expect_error(
    run_fast(seu, output.assay = "ADT", train.cells = "is_trian"),
    class = "sclibra_missing_column"
  )
  msg <- cli::ansi_strip(conditionMessage(err))
  expect_match(msg, "\"is_trian\" is not a metadata column")
  expect_match(msg, "Logical metadata columns: \"is_train\"")
  expect_error(PPJI(trained_cite(), reference = "cell_typ"), "does not exist",
    class = "sclibra_missing_column"
  )
})

test_that("errors from the core give advice in R syntax", {
  expect_equal(
    sclibra:::.r_syntax("exists; pass overwrite=True to replace it, or fill_missing=False / seed=None"),
    "exists; pass overwrite = TRUE to replace it, or fill.missing = FALSE / seed = NULL"
  )
  need_core()
  path <- tempfile("model")
  model <- GetLIBRAModel(trained_cite())
  SaveLIBRA(model, path)
  err <- expect_error(SaveLIBRA(model, path), class = "sclibra_python_error")
  expect_match(conditionMessage(err), "overwrite = TRUE", fixed = TRUE)
  expect_false(grepl("overwrite=True", conditionMessage(err), fixed = TRUE))
})

test_that("LIBRAEvaluate(out.dir =) writes the tables and figures and returns their paths", {
  need_core()
  out <- tempfile("eval")
  scores <- LIBRAEvaluate(trained_cite(),
    labels = "cell_type_coarse", consistency = FALSE,
    baselines = "mean", out.dir = out, verbose = FALSE
  )
  files <- attr(scores, "files")
  expect_true(all(file.exists(files)))
  expect_true(all(c("scores.csv", "loss.png", "umap.png", "predicted_vs_measured.png") %in% names(files)))
  expect_equal(normalizePath(dirname(files[["scores.csv"]])), normalizePath(out))
  expect_true(all(file.size(files[grepl("png$", files)]) > 1000))
  expect_true(nrow(scores) > 0)
  expect_error(
    LIBRAEvaluate(trained_cite(), consistency = FALSE, plots = TRUE, verbose = FALSE),
    "give `out.dir`",
    class = "sclibra_input_error"
  )
  # sclibra writes into a folder with its files only with overwrite = TRUE
  expect_error(
    LIBRAEvaluate(trained_cite(), consistency = FALSE, baselines = "mean", out.dir = out, verbose = FALSE),
    "overwrite = TRUE"
  )
})

test_that("the example data carry a coarse cell type column", {
  need_core()
  seu <- example_data("cite")
  expect_true(is.factor(seu$cell_type_coarse))
  expect_false(anyNA(seu$cell_type_coarse))
  expect_lte(nlevels(droplevels(seu$cell_type_coarse)), 8L)
  expect_equal(length(unique(seu$cell_type)), 41L)
  tab <- table(seu$cell_type, seu$cell_type_coarse) > 0
  expect_true(all(rowSums(tab) == 1L)) # a fine type maps to one coarse type
  expect_equal(as.character(SeuratObject::Idents(seu)), as.character(seu$cell_type_coarse))
  multi <- example_data("multiome")
  expect_false(anyNA(multi$cell_type_coarse))
  expect_lte(nlevels(droplevels(multi$cell_type_coarse)), 8L)
})

test_that("NA for an argument of the core is refused in R, naming it (not sent as True or -2^31)", {
  need_core()
  x <- toy_matrix()
  y <- toy_matrix(prefix = "p", seed = 2)
  expect_error(RunLIBRA(x, y, seed = NA, verbose = FALSE), "`seed` is NA", class = "sclibra_input_error")
  expect_error(RunLIBRA(x, y, n.nodes = NA_integer_, verbose = FALSE), "`n.nodes` is NA",
    class = "sclibra_input_error"
  )
  expect_error(RunLIBRA(x, y, lr_patience = NA_real_, verbose = FALSE), "`lr.patience` is NA",
    class = "sclibra_input_error"
  )
  expect_error(TuneLIBRA(x, y, max.epochs = NA, verbose = FALSE), "`max.epochs` is NA",
    class = "sclibra_input_error"
  )
})
