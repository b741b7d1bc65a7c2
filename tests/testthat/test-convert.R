# Checks made in R before data crosses to Python, and the conversions themselves.

test_that("NA, NaN and Inf values are reported with the features that hold them", {
  x <- toy_matrix()
  x[3, 2] <- NA
  x[7, 5] <- Inf
  y <- toy_matrix(prefix = "p", seed = 2)
  err <- expect_error(RunLIBRA(x, y, verbose = FALSE), class = "sclibra_na_error")
  expect_match(conditionMessage(err), "2 features have NA, NaN or infinite values in input")
  expect_match(conditionMessage(err), "'f3', 'f7'")

  dense <- as.matrix(toy_matrix())
  dense[2, 1] <- NaN
  expect_error(RunLIBRA(toy_matrix(), dense, verbose = FALSE),
    "1 feature has NA, NaN or infinite values in output", class = "sclibra_na_error"
  )
})

test_that("cells that do not overlap between modalities are an error", {
  x <- toy_matrix()
  y <- toy_matrix(prefix = "p")
  colnames(y) <- paste0("other", seq_len(ncol(y)))
  err <- expect_error(RunLIBRA(x, y, verbose = FALSE), class = "sclibra_no_shared_cells")
  expect_match(conditionMessage(err), "Cells in input and output do not overlap")
  expect_match(conditionMessage(err), "'other1'")
})

test_that("missing and duplicated names, and empty input, are errors", {
  x <- toy_matrix()
  y <- toy_matrix(prefix = "p")
  nocells <- x
  colnames(nocells) <- NULL
  expect_error(RunLIBRA(nocells, y, verbose = FALSE), "no cell names", class = "sclibra_input_error")
  nofeat <- x
  rownames(nofeat) <- NULL
  expect_error(RunLIBRA(nofeat, y, verbose = FALSE), "no feature names", class = "sclibra_input_error")
  dup <- x
  rownames(dup)[2] <- "f1"
  expect_error(RunLIBRA(dup, y, verbose = FALSE), "1 duplicated feature name: 'f1'",
    class = "sclibra_input_error"
  )
  expect_error(RunLIBRA(x[0, ], y, verbose = FALSE), "has no features", class = "sclibra_empty_error")
  expect_error(RunLIBRA(x, y[, 0], verbose = FALSE), "has no cells", class = "sclibra_empty_error")
  expect_error(RunLIBRA(x, verbose = FALSE), "output", class = "sclibra_input_error")
  expect_error(RunLIBRA(x, data.frame(a = 1), verbose = FALSE), "numeric matrix",
    class = "sclibra_input_error"
  )
})

test_that("empty features: kept by default (as in Python), an error when requested", {
  x <- toy_matrix()
  x[c(4, 9), ] <- 0
  x <- Matrix::drop0(x)
  cells <- colnames(x)
  kept <- sclibra:::.select_features(x, NULL, "RNA", cells, verbose = FALSE)
  expect_equal(rownames(kept), rownames(x))
  err <- expect_error(
    sclibra:::.select_features(x, c("f1", "f4", "f9"), "RNA", cells, verbose = FALSE),
    class = "sclibra_empty_error"
  )
  expect_match(conditionMessage(err), "2 requested features are empty \\(zero in every training cell\\) in RNA")
  expect_equal(err$empty, c("f4", "f9"))
  expect_error(sclibra:::.select_features(x, c("f1", "nope"), "RNA", cells, FALSE),
    "1 requested feature is not in RNA: 'nope'", class = "sclibra_missing_features"
  )
  expect_error(sclibra:::.select_features(x * 0, NULL, "RNA", cells, FALSE),
    "Every feature of RNA is zero", class = "sclibra_empty_error"
  )
  # zero only in the training cells counts as empty for training
  x[5, 1:10] <- 0
  x[5, 11:30] <- 1
  expect_error(sclibra:::.select_features(x, "f5", "RNA", cells[1:10], FALSE),
    "1 requested feature is empty", class = "sclibra_empty_error"
  )
})

test_that("train.cells accepts names, logical vectors and logical metadata columns", {
  cells <- paste0("c", 1:6)
  meta <- data.frame(is_train = c(TRUE, TRUE, FALSE, TRUE, FALSE, TRUE), type = "a", row.names = cells)
  expect_null(sclibra:::.resolve_train_cells(NULL, cells, meta))
  expect_equal(sclibra:::.resolve_train_cells("is_train", cells, meta), c("c1", "c2", "c4", "c6"))
  expect_equal(sclibra:::.resolve_train_cells(c(TRUE, FALSE, TRUE, FALSE, FALSE, FALSE), cells), c("c1", "c3"))
  expect_equal(sclibra:::.resolve_train_cells(c("c5", "c2"), cells), c("c5", "c2"))
  expect_error(sclibra:::.resolve_train_cells("type", cells, meta), "must be logical")
  expect_error(sclibra:::.resolve_train_cells(c("c1", "zz"), cells), "1 cell is not among the paired cells")
  expect_error(sclibra:::.resolve_train_cells(c(TRUE, FALSE), cells), "one TRUE/FALSE per cell")
  expect_error(sclibra:::.resolve_train_cells("c1", cells), "at least 2")
})

test_that("model features are matched by name, also after Seurat's '_' to '-' renaming", {
  x <- toy_matrix(5, 4)
  rownames(x) <- c("HLA-DRA", "CD3E", "MT-CO1", "A", "B")
  out <- sclibra:::.align_features(x, c("B", "HLA_DRA", "CD3E"), "RNA")
  expect_equal(rownames(out), c("HLA_DRA", "CD3E", "MT-CO1", "A", "B"))
  expect_identical(out@x, x@x)
  err <- expect_error(
    sclibra:::.align_features(x, c("B", "GENE1", "GENE2"), "RNA"),
    class = "sclibra_missing_features"
  )
  expect_match(conditionMessage(err), "trained on 3 input features; 2 are missing from RNA: 'GENE1', 'GENE2'")
  expect_equal(err$missing, c("GENE1", "GENE2"))
  expect_silent(sclibra:::.align_features(x, c("B", "GENE1"), "RNA", allow.missing = TRUE))
  expect_error(sclibra:::.align_features(x, c("G1", "G2"), "RNA", allow.missing = TRUE), "None of the model")
})

test_that("feature names made Seurat-safe stay unique", {
  expect_equal(sclibra:::.seurat_features(c("a_b", "a-b", "c|d", "e")), c("a-b", "a-b.1", "c-d", "e"))
  expect_equal(sclibra:::.assay_key("predicted_ADT"), "predictedadt_")
  # keys valid in SeuratObject 4 and 5: ASCII, starting with a letter
  expect_equal(sclibra:::.assay_key("2pred"), "libra2pred_")
  expect_equal(sclibra:::.assay_key("pr\u00e9dit ADT"), "prditadt_")
  expect_equal(sclibra:::.assay_key("__"), "libra_")
})

test_that("a dgCMatrix reaches Python sparse, transposed without a copy, names intact", {
  need_core()
  x <- toy_matrix(6, 5)
  rownames(x) <- c("gene_1", "HLA-DRA", "a b", "x.y", "CD3E", "é")
  colnames(x) <- c("AAAC-1_s1", "cell 2", "c3", "c/4", "5")
  px <- reticulate::r_to_py(x)
  bridge <- sclibra:::.bridge()
  ad <- bridge$anndata_from_r(px, as.list(colnames(x)), as.list(rownames(x)), "RNA")
  info <- reticulate::py_eval("lambda a: (a.X.format, a.n_obs, a.n_vars, bool(a.X.data.flags.writeable))")(ad)
  expect_equal(info[[1]], "csr")
  expect_equal(c(info[[2]], info[[3]]), c(5, 6))
  expect_false(info[[4]]) # NumPy borrows R's memory (read-only), it did not copy it
  expect_true(reticulate::py_to_r(bridge$shares_memory(ad, px)))
  expect_equal(reticulate::py_to_r(ad$obs_names$tolist()), colnames(x))
  expect_equal(reticulate::py_to_r(ad$var_names$tolist()), rownames(x))
  # values: the Python cells x features matrix is the transpose of the R one
  back <- reticulate::py_to_r(bridge$dense_to_r(ad$X))
  expect_equal(unname(back), unname(as.matrix(x)))
})

test_that("a dense R matrix is transposed into a C-ordered view without a copy", {
  need_core()
  x <- as.matrix(toy_matrix(4, 3))
  px <- reticulate::r_to_py(x)
  ad <- sclibra:::.bridge()$anndata_from_r(px, as.list(colnames(x)), as.list(rownames(x)), "ADT")
  expect_true(reticulate::py_to_r(sclibra:::.bridge()$shares_memory(ad, px)))
  flags <- reticulate::py_eval("lambda a: bool(a.X.flags.c_contiguous)")(ad)
  expect_true(flags)
})

test_that("other matrix classes are converted once to dgCMatrix", {
  x <- toy_matrix()
  expect_s4_class(sclibra:::.as_bridge_matrix(methods::as(x, "TsparseMatrix"), "x"), "dgCMatrix")
  expect_s4_class(sclibra:::.as_bridge_matrix(methods::as(x, "RsparseMatrix"), "x"), "dgCMatrix")
  expect_s4_class(sclibra:::.as_bridge_matrix(x > 0.5, "x"), "dgCMatrix")
  int <- matrix(1:6, 2, dimnames = list(c("a", "b"), c("x", "y", "z")))
  expect_type(sclibra:::.as_bridge_matrix(int, "x"), "double")
  expect_identical(sclibra:::.as_bridge_matrix(x, "x"), x)
})

test_that("Python exceptions become R errors with the core's message, not a traceback", {
  need_core()
  x <- toy_matrix()
  y <- toy_matrix(prefix = "p", seed = 3)
  y@x <- -y@x # a signed target cannot be produced by a ReLU output
  err <- expect_error(
    RunLIBRA(x, y, output.activation = "relu", n.nodes = 8, max.epochs = 2, verbose = FALSE),
    class = "sclibra_python_error"
  )
  expect_match(conditionMessage(err), "SclibraError: output has negative values")
  expect_false(grepl("Traceback|File \"", conditionMessage(err)))
  expect_equal(err$python_type, "SclibraError")
  expect_error(RunLIBRA(x, y, n.layers = -1, verbose = FALSE), "n.layers", class = "sclibra_error")
  expect_error(RunLIBRA(x, y, foo = 1, n.nodes = 8, max.epochs = 2, verbose = FALSE),
    "has no argument `foo`", class = "sclibra_unknown_argument"
  )
})

test_that("triplet, row-compressed and DelayedArray inputs are checked and converted, not an obscure error", {
  x <- toy_matrix()
  for (cls in c("TsparseMatrix", "RsparseMatrix")) {
    y <- methods::as(x, cls)
    expect_identical(sclibra:::.validate_matrix(y, "RNA"), x)
    y[3, 2] <- NA
    expect_error(sclibra:::.validate_matrix(y, "RNA"), "1 feature has NA, NaN or infinite values in RNA: 'f3'",
      class = "sclibra_na_error"
    )
  }
  chr <- as.matrix(x)
  storage.mode(chr) <- "character"
  expect_error(sclibra:::.validate_matrix(chr, "RNA"), "RNA must be a numeric matrix",
    class = "sclibra_input_error"
  )
  skip_if_not_installed("DelayedArray")
  expect_s4_class(sclibra:::.validate_matrix(DelayedArray::DelayedArray(x), "RNA"), "dgCMatrix")
})

test_that("RunLIBRA and LIBRAPredict take a dgTMatrix or a DelayedArray", {
  need_core()
  x <- toy_matrix(12, 40)
  y <- toy_matrix(5, 40, prefix = "p", seed = 2)
  ref <- RunLIBRA(x, y, n.nodes = 8, max.epochs = 2, n.models = 1, seed = 1, verbose = FALSE)
  res <- RunLIBRA(methods::as(x, "TsparseMatrix"), methods::as(y, "RsparseMatrix"),
    n.nodes = 8, max.epochs = 2, n.models = 1, seed = 1, verbose = FALSE
  )
  expect_equal(res$embedding, ref$embedding, tolerance = 1e-6)
  pred <- LIBRAPredict(methods::as(x, "TsparseMatrix"), model = ref$model, verbose = FALSE)
  expect_equal(dim(pred$prediction), c(5L, 40L))
  skip_if_not_installed("DelayedArray")
  pred <- LIBRAPredict(DelayedArray::DelayedArray(x), model = ref$model, verbose = FALSE)
  expect_equal(pred$embedding, ref$embedding, tolerance = 1e-5)
})
