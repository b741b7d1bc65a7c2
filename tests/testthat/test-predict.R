# Applying a trained model to cells it has not seen.

test_that("RNA-only cells get a LIBRA embedding and a predicted ADT assay", {
  need_core()
  seu <- example_data("cite")
  train <- seu[, seu$is_train]
  test <- seu[, !seu$is_train]
  test[["ADT"]] <- NULL # cells measured in RNA only
  expect_false("ADT" %in% SeuratObject::Assays(test))
  train <- run_fast(train, input.assay = "RNA", output.assay = "ADT")
  model <- GetLIBRAModel(train)
  test <- LIBRAPredict(test, model = model, verbose = FALSE)
  emb <- SeuratObject::Embeddings(test, "libra")
  expect_equal(dim(emb), c(289L, default_latent()))
  expect_identical(rownames(emb), colnames(test))
  expect_equal(SeuratObject::DefaultAssay(test[["libra"]]), "RNA")
  pred <- SeuratObject::GetAssayData(test, assay = "predicted_ADT")
  expect_equal(dim(pred), c(134L, 289L))
  expect_identical(rownames(pred), model$features.output)
  expect_true("LIBRAPredict.RNA.libra" %in% names(test@commands))

  # the same cells predicted through the trained object's model give the same numbers
  direct <- LIBRAPredict(SeuratObject::GetAssayData(seu, assay = "RNA")[, colnames(test)],
    model = model, verbose = FALSE
  )
  expect_equal(direct$embedding, emb, tolerance = 1e-6)
  expect_equal(direct$prediction, as.matrix(pred), tolerance = 1e-6, ignore_attr = TRUE)
})

test_that("features are matched by name, in any order; missing ones are listed", {
  need_core()
  out <- trained_cite()
  model <- GetLIBRAModel(out)
  rna <- SeuratObject::GetAssayData(out, assay = "RNA")
  ref <- LIBRAPredict(rna[, 1:20], model = model, verbose = FALSE)
  shuffled <- rna[rev(rownames(rna)), 1:20]
  res <- LIBRAPredict(shuffled, model = model, verbose = FALSE)
  expect_equal(res$embedding, ref$embedding, tolerance = 1e-6)

  dropped <- rna[-(1:3), 1:20]
  missing <- intersect(rownames(rna)[1:3], model$features.input)
  err <- expect_error(LIBRAPredict(dropped, model = model, verbose = FALSE),
    class = "sclibra_missing_features"
  )
  expect_match(conditionMessage(err), paste0(length(missing), " (is|are) missing from input"))
  expect_equal(err$missing, missing)
  expect_warning(
    res <- LIBRAPredict(dropped, model = model, allow.missing = TRUE, verbose = FALSE),
    "3 of \\d+ model features are missing and were filled with zeros"
  )
  expect_equal(dim(res$prediction), c(134L, 20L))
})

test_that("a model trained on names with underscores finds Seurat's dashed features", {
  need_core()
  x <- toy_matrix(12, 40)
  rownames(x)[1:3] <- c("HLA_DRA", "MT_CO1", "KIR2DL1|KIR2DL3")
  y <- toy_matrix(5, 40, prefix = "ADT_")
  res <- RunLIBRA(x, y, n.nodes = 8, max.epochs = 2, verbose = FALSE)
  seurat_names <- x
  rownames(seurat_names) <- sclibra:::.seurat_features(rownames(x))
  again <- LIBRAPredict(seurat_names, model = res$model, verbose = FALSE)
  expect_equal(again$embedding, res$embedding, tolerance = 1e-6)

  seu <- SeuratObject::CreateSeuratObject(
    counts = seurat_names, assay = "RNA"
  )
  # the counts layer: SeuratObject 5 makes no "data" layer from counts (4 copies them)
  seu <- LIBRAPredict(seu, model = res$model, layer = "counts", verbose = FALSE)
  pred <- seu[["predicted_output"]]
  expect_equal(rownames(pred), sclibra:::.seurat_features(rownames(y)))
  expect_equal(pred[[]]$libra.feature, rownames(y))
})

test_that("LIBRAPredict needs a model", {
  expect_error(LIBRAPredict(toy_matrix()), "model", class = "sclibra_input_error")
  expect_error(LIBRAPredict(toy_matrix(), model = list()), "LIBRAModel", class = "sclibra_input_error")
})

test_that("threads = sets the core's training threads for the call only; members side by side give the same model", {
  need_core()
  x <- toy_matrix(30, 60, seed = 3)
  y <- toy_matrix(5, 60, prefix = "p", seed = 4)
  settings <- sclibra:::.core()$settings
  before <- reticulate::py_to_r(settings$num_threads)
  args <- list(x, y, n.nodes = 16, max.epochs = 5, verbose = FALSE, seed = 2, n.models = 3)
  one <- do.call(RunLIBRA, c(args, list(threads = 1)))
  two <- do.call(RunLIBRA, c(args, list(threads = 2)))
  # on two threads the three members train side by side, each with its own random stream
  expect_identical(one$prediction, two$prediction)
  expect_identical(one$embedding, two$embedding)
  expect_identical(reticulate::py_to_r(settings$num_threads), before)
  expect_error(do.call(RunLIBRA, c(args, list(threads = 0))), "threads.*whole number >= 1")
  expect_error(do.call(RunLIBRA, c(args, list(threads = "two"))), "threads.*whole number")
})

test_that("a model that is not a LIBRAModel is named as such by every LIBRAPredict method", {
  need_core()
  seu <- example_data("cite")
  expect_error(LIBRAPredict(seu, model = "libra", verbose = FALSE), "must be a <LIBRAModel>",
    class = "sclibra_input_error"
  )
  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  expect_error(LIBRAPredict(sce, model = list(a = 1), verbose = FALSE), "must be a <LIBRAModel>",
    class = "sclibra_input_error"
  )
})

test_that("prediction and evaluation read the layer the model was trained on, unless told", {
  need_core()
  seu <- example_data("cite")
  out <- run_fast(seu,
    input.assay = "RNA", output.assay = "ADT", input.slot = "counts", allow.counts = TRUE,
    train.cells = "is_train", max.epochs = 2
  )
  model <- GetLIBRAModel(out)
  expect_identical(model$input.slot, "counts")
  expect_identical(model$output.slot, "data")
  trained <- SeuratObject::Embeddings(out, "libra")
  again <- LIBRAPredict(out, model = model, reduction.name = "libra_again", verbose = FALSE)
  expect_equal(SeuratObject::Embeddings(again, "libra_again"), trained, ignore_attr = TRUE, tolerance = 1e-5)
  # an explicit layer still wins: the log-normalised data give another embedding
  other <- LIBRAPredict(out, model = model, slot = "data", reduction.name = "libra_data", verbose = FALSE)
  expect_gt(max(abs(SeuratObject::Embeddings(other, "libra_data") - trained)), 0.1)
  # evaluation reads the same layer as training too: its scores are those of the trained
  # embedding's prediction, not of one from the log-normalised data
  ev <- LIBRAEvaluate(out, baselines = character(), consistency = FALSE, verbose = FALSE)
  ev_data <- LIBRAEvaluate(out, baselines = character(), consistency = FALSE, input.slot = "data", verbose = FALSE)
  rmse <- function(table) table$value[table$metric == "rmse" & table$split == "held_out" & table$method == "libra"]
  truth <- as.matrix(SeuratObject::GetAssayData(seu, assay = "ADT", slot = "data"))[, !seu$is_train]
  pred <- as.matrix(SeuratObject::GetAssayData(out, assay = "predicted_ADT", slot = "data"))[, !seu$is_train]
  expect_equal(rmse(ev), sqrt(mean((pred - truth)^2)), tolerance = 1e-4)
  expect_gt(abs(rmse(ev_data) - rmse(ev)), 1e-5) # another prediction, from another layer

  skip_if_not_installed("SingleCellExperiment")
  sce <- example_data("cite", "SingleCellExperiment")
  out <- run_fast(sce, input.assay = "counts", output.altexp = "ADT", allow.counts = TRUE, max.epochs = 2)
  model <- GetLIBRAModel(out)
  expect_identical(model$input.slot, "counts")
  again <- LIBRAPredict(out, model = model, reduction.name = "LIBRA_again", verbose = FALSE)
  expect_equal(SingleCellExperiment::reducedDim(again, "LIBRA_again"),
    SingleCellExperiment::reducedDim(out, "LIBRA"),
    ignore_attr = TRUE, tolerance = 1e-5
  )
})

test_that("modality = 'output' places cells measured in the output modality only", {
  need_core()
  seu <- example_data("cite")
  out <- run_fast(seu, input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", max.epochs = 2)
  model <- GetLIBRAModel(out)
  adt_only <- subset(seu, features = rownames(seu[["ADT"]]))
  SeuratObject::DefaultAssay(adt_only) <- "ADT"
  adt_only[["RNA"]] <- NULL
  # the second network does not exist yet: an R error saying how to get it, before any work
  expect_error(LIBRAPredict(adt_only, model = model, modality = "output", verbose = FALSE),
    "LIBRAConsistency", class = "sclibra_input_error"
  )
  out <- LIBRAConsistency(out, max.epochs = 2, verbose = FALSE)
  model <- GetLIBRAModel(out)
  placed <- LIBRAPredict(adt_only, model = model, modality = "output", batch.size = 17, verbose = FALSE)
  emb <- SeuratObject::Embeddings(placed, "libra")
  expect_equal(dim(emb), c(600L, ncol(SeuratObject::Embeddings(out, "libra"))))
  expect_identical(rownames(emb), colnames(seu))
  expect_false("predicted_ADT" %in% SeuratObject::Assays(placed)) # nothing is predicted
  expect_identical(SeuratObject::DefaultAssay(placed[["libra"]]), "ADT")
  # the same as the core's get_latent_from_b on the same cells
  adt <- SeuratObject::GetAssayData(seu, assay = "ADT", slot = "data")
  res <- LIBRAPredict(adt, model = model, modality = "output", verbose = FALSE)
  expect_null(res$prediction)
  expect_output(print(res), "no prediction")
  expect_equal(unname(res$embedding), unname(emb), tolerance = 1e-5)
  py <- sclibra:::.py_model(model)
  ad <- sclibra:::.to_anndata(sclibra:::.align_features(adt, model$features.output, "ADT"), "ADT")
  direct <- reticulate::py_to_r(py$get_latent_from_b(ad))
  expect_equal(unname(res$embedding), unname(direct), tolerance = 1e-5)
  # in-silico: cells placed from ADT lie near the same cells embedded from RNA (nn_consistency)
  from_rna <- SeuratObject::Embeddings(out, "libra")
  set.seed(1)
  expect_lt(mean(rowSums((emb - from_rna)^2)), mean(rowSums((emb - from_rna[sample(600), ])^2)))
  expect_error(LIBRAPredict(adt, model = model, modality = "ADT"), "modality", class = "sclibra_input_error")
  expect_error(LIBRAPredict(adt, model = model, batch.size = 0), "batch.size")
})

test_that("a model trained on one kind of object applies to the other with the defaults", {
  need_core()
  skip_if_not_installed("SingleCellExperiment")
  seu <- example_data("cite")
  sce <- example_data("cite", "SingleCellExperiment")
  from_seurat <- GetLIBRAModel(
    run_fast(seu, input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", max.epochs = 1)
  )
  expect_identical(from_seurat$input.slot, "data") # a Seurat layer: no such SCE assay
  on_sce <- LIBRAPredict(sce, model = from_seurat, verbose = FALSE) # reads "logcounts"
  predicted <- SingleCellExperiment::altExp(on_sce, "predicted_ADT")
  expect_identical(SummarizedExperiment::assayNames(predicted), "logcounts") # not Seurat's "data"
  expect_equal(unname(SingleCellExperiment::reducedDim(on_sce, "LIBRA")),
    unname(LIBRAPredict(seu, model = from_seurat, reduction.name = "again", verbose = FALSE)[["again"]]@cell.embeddings),
    tolerance = 1e-5
  )
  from_sce <- GetLIBRAModel(run_fast(sce, output.altexp = "ADT", max.epochs = 1))
  expect_identical(from_sce$input.slot, "logcounts") # an SCE assay: no such Seurat layer
  on_seurat <- LIBRAPredict(seu, model = from_sce, input.assay = "RNA", verbose = FALSE) # reads "data"
  expect_equal(dim(SeuratObject::Embeddings(on_seurat, "libra")), c(600L, default_latent()))
  ev <- LIBRAEvaluate(sce, model = from_seurat, output.altexp = "ADT", baselines = character(),
    consistency = FALSE, verbose = FALSE
  )
  expect_true(any(ev$metric == "rmse"))
})
