# PPJI, nn_consistency and the evaluation table from R.

test_that("PPJI is 1 for identical partitions, whatever the label names", {
  need_core()
  ref <- stats::setNames(rep(c("T", "B", "NK"), each = 10), paste0("c", 1:30))
  expect_equal(PPJI(ref, reference = ref), 1)
  renamed <- stats::setNames(rep(c("3", "1", "2"), each = 10), names(ref))
  expect_equal(PPJI(renamed, reference = ref), 1)
  mixed <- renamed
  mixed[1:5] <- "2"
  value <- PPJI(mixed, reference = ref)
  expect_gt(value, 0)
  expect_lt(value, 1)
  det <- PPJI(mixed, reference = ref, details = TRUE)
  expect_equal(det$ppji, value)
  expect_equal(dim(det$jaccard), c(3L, 3L))
  expect_equal(det$jaccard["T", "3"], 5 / 10)
})

test_that("PPJI of the LIBRA latent space of a Seurat object, and of existing clusters", {
  need_core()
  out <- trained_cite()
  value <- PPJI(out, reference = "cell_type", reduction = "libra")
  expect_gt(value, 0)
  expect_lte(value, 1)
  expect_equal(PPJI(out, reference = "cell_type", reduction = "libra"), value) # seeded
  det <- PPJI(out, reference = "cell_type", details = TRUE)
  expect_equal(names(det$clusters), colnames(out))
  expect_equal(nrow(det$jaccard), length(unique(out$cell_type)))
  held_out <- colnames(out)[!out$is_train]
  sub <- PPJI(out, reference = "cell_type", cells = held_out, details = TRUE)
  expect_equal(length(sub$clusters), length(held_out))
  expect_equal(PPJI(out, reference = "cell_type", clusters = "cell_type"), 1)
  expect_error(PPJI(out, reference = "celltype"), "does not exist", class = "sclibra_input_error")
  expect_error(PPJI(out, reduction = "umap"), "no reduction", class = "sclibra_input_error")
})

test_that("PPJI on a SingleCellExperiment reducedDim", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- run_fast(example_data("multiome", "SingleCellExperiment"), input.altexp = "ATAC", output.assay = "logcounts")
  value <- PPJI(sce, reference = "cell_type")
  expect_gt(value, 0)
  expect_lte(value, 1)
})

test_that("LIBRAConsistency adds per-cell distances and keeps the second network", {
  need_core()
  out <- LIBRAConsistency(trained_cite(), max.epochs = 5, verbose = FALSE)
  d <- out$libra_consistency
  expect_equal(length(d), 600L)
  expect_true(all(is.finite(d) & d >= 0))
  expect_true(all(out$libra_consistency_mode %in% c("low", "high", "all")))
  model <- GetLIBRAModel(out)
  expect_true(model$has.b.encoder)
  cons <- SeuratObject::Misc(out[["libra"]])$consistency
  expect_true(is.logical(cons$is.bimodal))
  expect_s3_class(cons$modes, "data.frame")
  # the second network survives a save / load round trip
  path <- file.path(withr::local_tempdir(), "m")
  SaveLIBRA(model, path)
  expect_true(LoadLIBRA(path)$has.b.encoder)
})

test_that("max.epochs of the second network: a model that has one says it is kept; refit retrains", {
  need_core()
  out <- LIBRAConsistency(trained_cite(), max.epochs = 2, refit = TRUE, verbose = FALSE)
  model <- GetLIBRAModel(out)
  epochs <- function() nrow(reticulate::py_to_r(sclibra:::.py_model(model)$b_encoder_history))
  expect_equal(epochs(), 2L)
  expect_message(
    LIBRAEvaluate(out, model = model, baselines = character(), max.epochs = 4, verbose = TRUE),
    "already has its second network \\(2 epochs\\).*refit"
  )
  expect_equal(epochs(), 2L)
  LIBRAEvaluate(out, model = model, baselines = character(), max.epochs = 4, refit = TRUE, verbose = FALSE)
  expect_equal(epochs(), 4L)
  expect_error(LIBRAEvaluate(out, model = model, refit = NA, verbose = FALSE), "refit")
})

test_that("the second network's schedule reaches its training from LIBRAConsistency and LIBRAEvaluate", {
  need_core()
  out <- trained_cite()
  model <- GetLIBRAModel(out)
  history <- function() reticulate::py_to_r(sclibra:::.py_model(model)$b_encoder_history)
  run <- function(...) LIBRAConsistency(out, max.epochs = 3, refit = TRUE, verbose = FALSE, ...)
  run()
  default_split <- history()
  run(validation.split = 0.5)
  half <- history()
  expect_equal(nrow(half), 3L)
  # another validation split: other cells monitor training, so other losses from epoch 1
  expect_false(isTRUE(all.equal(half$val_loss, default_split$val_loss)))
  run(validation_split = 0.5) # Python spelling: the same training
  expect_equal(history()$val_loss, half$val_loss, tolerance = 1e-6)
  LIBRAEvaluate(out,
    baselines = character(), max.epochs = 3, refit = TRUE, validation.split = 0.5,
    verbose = FALSE
  )
  expect_equal(history()$val_loss, half$val_loss, tolerance = 1e-6)
  expect_error(run(validation.splt = 0.5), "validation.splt")
  expect_error(run(batch.key = "batch"), "batch.key")
})

test_that("LIBRAEvaluate returns the tidy table of prediction and integration scores", {
  need_core()
  tab <- LIBRAEvaluate(trained_cite(),
    labels = "cell_type", consistency = FALSE, baselines = "mean",
    verbose = FALSE
  )
  expect_s3_class(tab, "data.frame")
  expect_true(all(c("metric", "value", "split", "method") %in% names(tab)))
  mse <- tab[tab$metric == "mse" & tab$split == "held_out", ]
  expect_setequal(mse$method, c("libra", "baseline_mean"))
  expect_lt(mse$value[mse$method == "libra"], mse$value[mse$method == "baseline_mean"])
  expect_equal(mse$n_cells[mse$method == "libra"], sum(!trained_cite()$is_train))
  expect_true("ppji" %in% tab$metric)
})
