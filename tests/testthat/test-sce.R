# RunLIBRA and friends on SingleCellExperiment objects (main assay vs altExp).

test_that("CITE-seq with RNA in the main experiment and ADT in an altExp", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  expect_equal(SingleCellExperiment::altExpNames(sce), "ADT")
  out <- run_fast(sce, output.altexp = "ADT", train.cells = "is_train")
  expect_s4_class(out, "SingleCellExperiment")
  emb <- SingleCellExperiment::reducedDim(out, "LIBRA")
  expect_equal(dim(emb), c(600L, default_latent()))
  expect_identical(rownames(emb), colnames(sce))
  expect_identical(colnames(emb), paste0("LIBRA_", seq_len(default_latent())))
  expect_true("predicted_ADT" %in% SingleCellExperiment::altExpNames(out))
  pred <- SummarizedExperiment::assay(SingleCellExperiment::altExp(out, "predicted_ADT"), "logcounts")
  expect_equal(dim(pred), c(134L, 600L))
  expect_identical(rownames(pred), rownames(SingleCellExperiment::altExp(sce, "ADT")))
  expect_identical(colnames(pred), colnames(sce))
  model <- GetLIBRAModel(out)
  expect_equal(model$input.assay, "RNA")
  expect_equal(model$output.assay, "ADT")
  params <- S4Vectors::metadata(out)$sclibra$LIBRA$params
  expect_equal(params$output.altexp, "ADT")
  expect_equal(params$train.cells, model$train.cells)
})

test_that("Multiome with ATAC in an altExp predicting the main RNA", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("multiome", "SingleCellExperiment")
  out <- run_fast(sce, input.altexp = "ATAC", output.assay = "logcounts", reduction.name = "LIBRA_ATAC")
  expect_equal(dim(SingleCellExperiment::reducedDim(out, "LIBRA_ATAC")), c(500L, default_latent()))
  expect_true("predicted_RNA" %in% SingleCellExperiment::altExpNames(out))
  expect_equal(GetLIBRAModel(out, reduction = "LIBRA_ATAC")$input.assay, "ATAC")
})

test_that("SCE inputs are validated: missing altExp, missing assay, same input and output", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  expect_error(RunLIBRA(sce, output.altexp = "PROT"), "Alternative experiment \"PROT\" is not",
    class = "sclibra_missing_assay"
  )
  expect_error(RunLIBRA(sce, input.assay = "normcounts", output.altexp = "ADT"),
    "Assay \"normcounts\" is not in the main experiment",
    class = "sclibra_missing_slot"
  )
  expect_error(RunLIBRA(sce), "Input and output are the same", class = "sclibra_input_error")
  expect_error(GetLIBRAModel(sce), "No LIBRA model stored", class = "sclibra_model_error")
})

test_that("LIBRAPredict on an SCE of new cells", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  train <- sce[, sce$is_train]
  test <- sce[, !sce$is_train]
  SingleCellExperiment::altExp(test, "ADT") <- NULL # RNA-only cells
  train <- run_fast(train, output.altexp = "ADT")
  test <- LIBRAPredict(test, model = GetLIBRAModel(train), verbose = FALSE)
  expect_equal(dim(SingleCellExperiment::reducedDim(test, "LIBRA")), c(ncol(test), default_latent()))
  pred <- SingleCellExperiment::altExp(test, "predicted_ADT")
  expect_equal(dim(pred), c(134L, ncol(test)))
  expect_equal(SummarizedExperiment::assayNames(pred), "logcounts")
})

test_that("reduced dimensions and altExps sclibra did not make are never replaced", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  # the measured ADT is not overwritten by its prediction
  expect_error(run_fast(sce, output.altexp = "ADT", new.altexp.name = "ADT"),
    "alternative experiment \"ADT\" that sclibra did not make",
    class = "sclibra_input_error"
  )
  SingleCellExperiment::reducedDim(sce, "PCA") <- matrix(0, ncol(sce), 3)
  expect_error(run_fast(sce, output.altexp = "ADT", reduction.name = "PCA"),
    "reduced dimension \"PCA\" that sclibra did not make",
    class = "sclibra_input_error"
  )
  expect_error(run_fast(sce, output.altexp = "ADT", reduction.key = "LIBRA"),
    "reduction.key", class = "sclibra_input_error"
  )
  # sclibra's own results are replaced by a new run (RunLIBRA or LIBRAPredict) of the same names
  out <- run_fast(sce, output.altexp = "ADT", max.epochs = 1)
  out <- run_fast(out, output.altexp = "ADT", max.epochs = 1)
  out <- LIBRAPredict(out, verbose = FALSE)
  out <- LIBRAPredict(out, verbose = FALSE)
  expect_identical(SingleCellExperiment::reducedDim(out, "PCA"), SingleCellExperiment::reducedDim(sce, "PCA"))
  expect_identical(SingleCellExperiment::altExp(out, "ADT"), SingleCellExperiment::altExp(sce, "ADT"))
  expect_equal(dim(SingleCellExperiment::altExp(out, "predicted_ADT")), c(134L, 600L))
  expect_error(LIBRAPredict(out, new.altexp.name = "ADT", verbose = FALSE),
    "alternative experiment \"ADT\" that sclibra did not make",
    class = "sclibra_input_error"
  )
})

test_that("batch.key reads a colData column: whole batches validate", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  donors <- stats::setNames(rep(c("d1", "d2", "d3", "d4"), length.out = ncol(sce)), colnames(sce))
  sce$donor <- unname(donors)
  out <- run_fast(sce, output.altexp = "ADT", batch.key = "donor", max.epochs = 1)
  model <- GetLIBRAModel(out)
  expect_length(unique(donors[model$validation.cells]), 1L)
  expect_false(any(donors[model$train.cells] %in% donors[model$validation.cells]))
  expect_identical(S4Vectors::metadata(out)$sclibra$LIBRA$params$fit$batch_key, "donor")
  expect_error(run_fast(sce, output.altexp = "ADT", batch.key = "nope"), "nope",
    class = "sclibra_missing_column"
  )
})
