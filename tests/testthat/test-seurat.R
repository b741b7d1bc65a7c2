# RunLIBRA on Seurat objects built from the bundled real data.

test_that("CITE-seq RNA -> ADT adds the LIBRA reduction and the predicted ADT assay", {
  need_core()
  seu <- example_data("cite")
  out <- trained_cite()
  expect_s4_class(out, "Seurat")
  expect_true("libra" %in% SeuratObject::Reductions(out))
  emb <- SeuratObject::Embeddings(out, reduction = "libra")
  expect_equal(dim(emb), c(600L, default_latent()))
  expect_identical(rownames(emb), colnames(seu))
  expect_identical(colnames(emb), paste0("LIBRA_", seq_len(default_latent())))
  expect_true(all(is.finite(emb)))
  expect_equal(SeuratObject::Key(out[["libra"]]), "LIBRA_")
  expect_equal(SeuratObject::DefaultAssay(out[["libra"]]), "RNA")

  expect_true("predicted_ADT" %in% SeuratObject::Assays(out))
  pred <- SeuratObject::GetAssayData(out, assay = "predicted_ADT", slot = "data")
  expect_equal(dim(pred), c(134L, 600L))
  expect_identical(rownames(pred), rownames(seu[["ADT"]]))
  expect_identical(colnames(pred), colnames(seu))
  expect_true(all(is.finite(as.matrix(pred))))
  expect_equal(SeuratObject::Key(out[["predicted_ADT"]]), "predictedadt_")

  # the prediction is informative: on the held-out donor it is closer to the measured ADT
  # than the per-protein mean of the training donor
  test <- !seu$is_train
  truth <- as.matrix(SeuratObject::GetAssayData(seu, assay = "ADT", slot = "data"))
  baseline <- rowMeans(truth[, !test])
  mse_model <- mean((as.matrix(pred)[, test] - truth[, test])^2)
  mse_mean <- mean((baseline - truth[, test])^2)
  expect_lt(mse_model, 0.95 * mse_mean)
})

test_that("the model and parameters are stored: misc, Tool() and the command log", {
  need_core()
  out <- trained_cite()
  model <- GetLIBRAModel(out)
  expect_s3_class(model, "LIBRAModel")
  expect_equal(model$input.assay, "RNA")
  expect_equal(model$output.assay, "ADT")
  expect_equal(model$config$n_nodes, 32)
  expect_equal(length(model$features.output), 134L)
  seu <- example_data("cite")
  expect_setequal(c(model$train.cells, model$validation.cells), colnames(seu)[seu$is_train])
  expect_output(print(model), "LIBRA model: RNA \\(\\d+ features\\) -> ADT \\(134 features\\)")

  misc <- SeuratObject::Misc(out[["libra"]])
  expect_equal(misc$input.assay, "RNA")
  expect_equal(misc$config$latent_dim, sclibra:::.core_defaults("model")$latent_dim)
  tool <- SeuratObject::Tool(out, slot = "RunLIBRA")
  expect_equal(tool$libra$output.assay, "ADT")
  expect_equal(tool$libra$model$n_nodes, 32L)
  expect_equal(tool$libra$train.cells, model$train.cells)
  expect_true("RunLIBRA.RNA.libra" %in% names(out@commands))
  cmd <- out[["RunLIBRA.RNA.libra"]]
  expect_equal(cmd@assay.used, "RNA")
  expect_equal(cmd@params$output.assay, "ADT")
})

test_that("Seurat's own tools work on the result: Embeddings, DimPlot, FindNeighbors", {
  need_core()
  skip_if_not_installed("Seurat")
  out <- trained_cite()
  p <- Seurat::DimPlot(out, reduction = "libra")
  expect_s3_class(p, "ggplot")
  out <- Seurat::FindNeighbors(out, reduction = "libra", dims = 1:10, verbose = FALSE)
  expect_true(all(c("RNA_nn", "RNA_snn") %in% names(out@graphs)))
  expect_equal(dim(out[["RNA_snn"]]), c(600L, 600L))
  out <- Seurat::FindClusters(out, verbose = FALSE)
  expect_gt(length(unique(out$seurat_clusters)), 1)
})

test_that("a binary target trains with BCE, and the model says so", {
  need_core()
  seu <- example_data("multiome")
  out <- run_fast(seu, input.assay = "RNA", output.assay = "ATAC", max.epochs = 2)
  model <- GetLIBRAModel(out)
  expect_identical(model$loss, "bce")
  expect_output(print(model), "best validation BCE")
  expect_identical(SeuratObject::Tool(out, "RunLIBRA")$libra$config$latent_pcs, 0L)
})

test_that("Multiome ATAC -> RNA adds a reduction and the predicted RNA assay", {
  need_core()
  seu <- example_data("multiome")
  expect_setequal(SeuratObject::Assays(seu), c("RNA", "ATAC"))
  out <- run_fast(seu,
    input.assay = "ATAC", output.assay = "RNA", latent.dim = 8,
    reduction.name = "libra_atac", reduction.key = "LIBRAATAC_"
  )
  emb <- SeuratObject::Embeddings(out, reduction = "libra_atac")
  expect_equal(dim(emb), c(500L, 8L))
  expect_identical(rownames(emb), colnames(seu))
  expect_identical(colnames(emb), paste0("LIBRAATAC_", 1:8))
  expect_equal(SeuratObject::DefaultAssay(out[["libra_atac"]]), "ATAC")
  pred <- SeuratObject::GetAssayData(out, assay = "predicted_RNA")
  expect_equal(ncol(pred), 500L)
  rna <- SeuratObject::GetAssayData(seu, assay = "RNA")
  # all-zero genes are dropped from the default output features; the rest keep their names
  expect_true(all(rownames(pred) %in% rownames(rna)))
  expect_gt(nrow(pred), 500L)
  expect_equal(GetLIBRAModel(out, reduction = "libra_atac")$input.assay, "ATAC")
})

test_that("variable features are the default input features; features= selects", {
  need_core()
  seu <- example_data("cite")
  genes <- rownames(seu)[1:50]
  SeuratObject::VariableFeatures(seu) <- genes
  out <- run_fast(seu, input.assay = "RNA", output.assay = "ADT", max.epochs = 2)
  expect_setequal(GetLIBRAModel(out)$features.input, genes)
  out <- run_fast(seu,
    input.assay = "RNA", output.assay = "ADT", max.epochs = 2,
    features = rownames(seu)[101:140], output.features = c("CD3", "CD4", "CD8")[c("CD3", "CD4", "CD8") %in% rownames(seu[["ADT"]])]
  )
  expect_equal(GetLIBRAModel(out)$features.input, rownames(seu)[101:140])
})

test_that("same seed, same embedding", {
  need_core()
  seu <- example_data("multiome")
  a <- run_fast(seu, input.assay = "ATAC", output.assay = "RNA", seed = 7, max.epochs = 2)
  b <- run_fast(seu, input.assay = "ATAC", output.assay = "RNA", seed = 7, max.epochs = 2)
  expect_equal(
    SeuratObject::Embeddings(a, "libra"), SeuratObject::Embeddings(b, "libra"),
    tolerance = 1e-6
  )
})

test_that("missing assays and slots are clear errors, before Python is called", {
  seu <- if (sclibra_available()) example_data("cite") else skip("needs the bundled data")
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "PROT"),
    "Assay \"PROT\" .* is not in the Seurat object",
    class = "sclibra_missing_assay"
  )
  expect_error(RunLIBRA(seu, input.assay = "RNA"), "output.assay", class = "sclibra_missing_assay")
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", input.slot = "scale.data"),
    "Layer \"scale.data\" of assay \"RNA\" is empty",
    class = "sclibra_missing_slot"
  )
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", output.slot = "normalised"),
    "does not exist",
    class = "sclibra_missing_slot"
  )
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "RNA"), "same", class = "sclibra_input_error")
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", train.cells = "batch"),
    "must be logical",
    class = "sclibra_input_error"
  )
})

test_that("NA values in an assay are reported by feature", {
  need_core()
  seu <- example_data("cite")
  adt <- SeuratObject::GetAssayData(seu, assay = "ADT", slot = "data")
  adt[c("CD86", "CD274"), 3] <- NA
  seu <- SeuratObject::SetAssayData(seu, assay = "ADT", slot = "data", new.data = adt)
  expect_error(RunLIBRA(seu, input.assay = "RNA", output.assay = "ADT", verbose = FALSE),
    "2 features have NA, NaN or infinite values in ADT: 'CD86', 'CD274'",
    class = "sclibra_na_error"
  )
})

test_that("the model survives saveRDS() and is restored from the stored weights", {
  need_core()
  out <- trained_cite()
  file <- withr::local_tempfile(fileext = ".rds")
  saveRDS(out, file)
  back <- readRDS(file)
  model <- GetLIBRAModel(back)
  model$handle$py <- NULL # as in a new R session
  expect_output(print(model), "stored \\(restored on use\\)")
  res <- LIBRAPredict(SeuratObject::GetAssayData(back, assay = "RNA"), model = model, verbose = FALSE)
  expect_equal(
    res$embedding, SeuratObject::Embeddings(out, "libra"),
    tolerance = 1e-5
  )
  nomodel <- run_fast(example_data("cite"), input.assay = "RNA", output.assay = "ADT", max.epochs = 1, keep.model = FALSE)
  expect_error(GetLIBRAModel(nomodel), "holds no LIBRA model", class = "sclibra_model_error")
})

test_that("reductions and assays sclibra did not make are never replaced; clashing names are refused first", {
  need_core()
  seu <- example_data("cite")
  pcs <- matrix(stats::rnorm(ncol(seu) * 3), ncol(seu), 3,
    dimnames = list(colnames(seu), paste0("PC_", 1:3))
  )
  seu[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = pcs, key = "PC_", assay = "RNA")
  # the user's PCA and the measured modalities are not overwritten; a name another kind of
  # object holds is refused before training
  refused <- list(
    list(list(reduction.name = "pca"), "already has a reduction \"pca\" that sclibra did not make"),
    list(list(new.assay.name = "ADT"), "already has an assay \"ADT\" that sclibra did not make"),
    list(list(new.assay.name = "RNA"), "assay \"RNA\" that sclibra did not make"),
    list(list(reduction.name = "RNA"), "`reduction.name` = \"RNA\" is already the name of another kind of object"),
    list(list(new.assay.name = "pca"), "`new.assay.name` = \"pca\" is already the name of another kind of object")
  )
  for (case in refused) {
    args <- c(list(seu, input.assay = "RNA", output.assay = "ADT"), case[[1]])
    expect_error(do.call(run_fast, args), case[[2]], class = "sclibra_input_error")
  }
  model <- GetLIBRAModel(trained_cite())
  expect_error(LIBRAPredict(seu, model = model, new.assay.name = "ADT", verbose = FALSE),
    "assay \"ADT\" that sclibra did not make",
    class = "sclibra_input_error"
  )
  expect_error(LIBRAPredict(seu, model = model, reduction.name = "pca", verbose = FALSE),
    "reduction \"pca\" that sclibra did not make",
    class = "sclibra_input_error"
  )
  # what sclibra wrote itself is replaced by a new run under the same names
  again <- run_fast(trained_cite(), input.assay = "RNA", output.assay = "ADT", max.epochs = 1)
  expect_equal(GetLIBRAModel(again)$n.epochs, 1L)
  expect_equal(dim(SeuratObject::GetAssayData(again, assay = "ADT")), c(134L, 600L))
  expect_identical(
    SeuratObject::GetAssayData(again, assay = "ADT"), SeuratObject::GetAssayData(seu, assay = "ADT")
  )
})

test_that("reduction.key is checked before training; a key derived after a clash is unique", {
  need_core()
  seu <- example_data("cite")
  expect_error(run_fast(seu, input.assay = "RNA", output.assay = "ADT", reduction.key = "LIBRA"),
    "`reduction.key` must be a letter followed by letters or digits and end with \"_\"",
    class = "sclibra_input_error"
  )
  expect_error(run_fast(seu, input.assay = "RNA", output.assay = "ADT", reduction.key = "my key_"),
    "reduction.key", class = "sclibra_input_error"
  )
  # default key each time: "LIBRA_", then keys derived from the names, never a random one
  out <- run_fast(seu, input.assay = "RNA", output.assay = "ADT", max.epochs = 1, reduction.name = "libra_x")
  expect_no_warning(out <- run_fast(out, input.assay = "RNA", output.assay = "ADT", max.epochs = 1))
  expect_no_warning(out <- run_fast(out,
    input.assay = "RNA", output.assay = "ADT", max.epochs = 1, reduction.name = "Libra"
  ))
  keys <- vapply(c("libra_x", "libra", "Libra"), function(r) SeuratObject::Key(out[[r]]), "")
  expect_equal(unname(keys), c("LIBRA_", "LIBRA2_", "LIBRA3_"))
  expect_equal(colnames(SeuratObject::Embeddings(out, "Libra"))[1], "LIBRA3_1")
})

test_that("batch.key: whole batches validate, from a metadata column or one label per cell", {
  need_core()
  seu <- example_data("cite")
  donors <- stats::setNames(rep(c("d1", "d2", "d3", "d4"), length.out = ncol(seu)), colnames(seu))
  seu$donor <- unname(donors)
  run <- function(batch.key, ...) {
    run_fast(seu, input.assay = "RNA", output.assay = "ADT", batch.key = batch.key, max.epochs = 1, ...)
  }
  # one whole donor is 25 % of the cells where validation.split asks for 10 %: the fit says so,
  # in R's syntax
  expect_message(
    out <- run("donor"),
    "validation cells are whole batches, 25 % of the training cells.*batch.key = NULL",
    class = "sclibra_message"
  )
  model <- GetLIBRAModel(out)
  held_out <- unique(donors[model$validation.cells])
  expect_length(held_out, 1L) # 10 % of 600 cells: one donor of 150
  expect_length(model$validation.cells, 150L)
  expect_false(any(donors[model$train.cells] %in% held_out))
  expect_identical(SeuratObject::Tool(out, slot = "RunLIBRA")$libra$fit$batch_key, "donor")
  # the same labels: named in another order, or a factor in cell order; the same split
  expect_identical(GetLIBRAModel(run(rev(donors)))$validation.cells, model$validation.cells)
  expect_identical(GetLIBRAModel(run(factor(unname(donors))))$validation.cells, model$validation.cells)
  # held-out cells need no batch; a training cell does, and is named
  partial <- donors
  partial[!seu$is_train] <- NA
  out <- run(partial, train.cells = "is_train")
  expect_false(any(GetLIBRAModel(out)$train.cells %in% colnames(seu)[!seu$is_train]))
  first <- colnames(seu)[seu$is_train][1]
  partial[first] <- NA
  expect_error(run(partial, train.cells = "is_train"), first, class = "sclibra_na_error")
  expect_error(run("nope"), "nope", class = "sclibra_missing_column")
  expect_error(run(unname(donors)[1:10]), "one label per cell", class = "sclibra_input_error")
  expect_error(run(list("a")), "batch labels", class = "sclibra_input_error")
  # a matrix has no metadata: a column name is refused, labels work
  rna <- SeuratObject::GetAssayData(seu, assay = "RNA", slot = "data")
  adt <- SeuratObject::GetAssayData(seu, assay = "ADT", slot = "data")
  expect_error(
    do.call(RunLIBRA, c(list(rna, adt, batch.key = "donor"), utils::modifyList(fast, list(max.epochs = 1)))),
    "names a metadata column", class = "sclibra_input_error"
  )
  res <- do.call(RunLIBRA, c(list(rna, adt, batch.key = donors), utils::modifyList(fast, list(max.epochs = 1))))
  expect_identical(res$model$validation.cells, model$validation.cells)
})
