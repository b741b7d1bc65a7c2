# Models saved in R load in Python and the reverse (the core's on-disk format).

# Run a Python script in a separate Python process (the configured interpreter).
run_python <- function(code) {
  python <- as.character(sclibra_python())
  script <- withr::local_tempfile(fileext = ".py")
  writeLines(code, script)
  out <- suppressWarnings(system2(python, script, stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status") %||% 0L
  if (status != 0L) {
    stop("Python failed:\n", paste(out, collapse = "\n"), call. = FALSE)
  }
  invisible(out)
}

`%||%` <- function(x, y) if (is.null(x)) y else x

read_matrix_csv <- function(path) {
  x <- utils::read.csv(path, row.names = 1, check.names = FALSE)
  as.matrix(x)
}

test_that("a model saved in R loads in Python and gives the same latent space", {
  need_core()
  out <- trained_cite()
  dir <- withr::local_tempdir()
  path <- file.path(dir, "cite_model")
  expect_equal(SaveLIBRA(GetLIBRAModel(out), path), path)
  expect_true(all(file.exists(file.path(path, c("config.json", "features.json", "weights.pt")))))
  rna <- sclibra:::.extdata("bmmc_cite", "rna.h5ad")
  csv <- file.path(dir, "latent.csv")
  run_python(c(
    "import anndata as ad, pandas as pd, sclibra",
    sprintf("model = sclibra.LIBRA.load(%s)", encodeString(path, quote = "'")),
    sprintf("rna = ad.read_h5ad(%s)", encodeString(rna, quote = "'")),
    "z = model.get_latent(rna)",
    sprintf("pd.DataFrame(z, index=rna.obs_names).to_csv(%s)", encodeString(csv, quote = "'"))
  ))
  z <- read_matrix_csv(csv)
  emb <- SeuratObject::Embeddings(out, "libra")
  expect_identical(rownames(z), rownames(emb))
  expect_equal(unname(z), unname(emb), tolerance = 1e-5)
})

test_that("a model trained in Python loads in R and predicts the same values", {
  need_core()
  dir <- withr::local_tempdir()
  path <- file.path(dir, "py_model")
  csv <- file.path(dir, "pred.csv")
  extdata <- sclibra:::.extdata("bmmc_multiome")
  run_python(c(
    "import anndata as ad, pandas as pd, sclibra",
    sprintf("atac = ad.read_h5ad(%s + '/atac.h5ad')", encodeString(extdata, quote = "'")),
    sprintf("rna = ad.read_h5ad(%s + '/rna.h5ad')", encodeString(extdata, quote = "'")),
    "model = sclibra.LIBRA(n_nodes=16, latent_dim=4, n_models=1, seed=3).fit(atac, rna, train='is_train', max_epochs=3, progress=False)",
    sprintf("model.save(%s)", encodeString(path, quote = "'")),
    "pred = model.predict(atac)",
    sprintf("pred.to_df().to_csv(%s)", encodeString(csv, quote = "'"))
  ))
  model <- LoadLIBRA(path)
  expect_s3_class(model, "LIBRAModel")
  expect_equal(model$config$latent_dim, 4)
  expect_equal(model$input.assay, "ATAC")
  expect_equal(model$output.assay, "RNA")
  expect_output(print(model), "LIBRA model: ATAC \\(600 features\\) -> RNA \\(600 features\\)")
  expect_identical(model$loss, "mse")
  expect_identical(model$fit$max_epochs, 3L) # the schedule it trained with, read from the file
  expect_identical(model$fit$ema_decay, 0)
  expect_output(print(model), "best validation MSE")
  expect_false(any(grepl("training mean", utils::capture.output(print(model)))))
  expect_identical(model$mean.fallback.note, "")
  # a model its validation sent to the mean, as the core records it: R prints the core's words
  py <- sclibra:::.py_model(model)
  py$members_at_mean_ <- list(0L)
  at_mean <- utils::modifyList(model, sclibra:::.model_info(py))
  py$members_at_mean_ <- list()
  expect_identical(at_mean$members.at.mean, 0L)
  expect_identical(at_mean$mean.fallback.note, "the model predicts each feature's training mean")
  expect_output(print(at_mean), "  the model predicts each feature's training mean \\(mean.fallback\\)")
  seu <- example_data("multiome")
  seu <- LIBRAPredict(seu, model = model, input.assay = "ATAC", verbose = FALSE)
  expect_equal(dim(SeuratObject::Embeddings(seu, "libra")), c(500L, 4L))
  pred <- as.matrix(SeuratObject::GetAssayData(seu, assay = "predicted_RNA"))
  expected <- t(read_matrix_csv(csv))
  expect_identical(dimnames(pred), dimnames(expected))
  expect_equal(pred, expected, tolerance = 1e-5)
})

test_that("saving never overwrites unless asked; bad paths give clear errors", {
  need_core()
  model <- GetLIBRAModel(trained_cite())
  dir <- withr::local_tempdir()
  path <- file.path(dir, "m")
  SaveLIBRA(model, path)
  err <- expect_error(SaveLIBRA(model, path), class = "sclibra_python_error")
  expect_match(conditionMessage(err), "already exists; pass overwrite = TRUE")
  expect_silent(SaveLIBRA(trained_cite(), path, overwrite = TRUE))
  expect_error(LoadLIBRA(file.path(dir, "nope")), "does not exist", class = "sclibra_input_error")
  empty <- file.path(dir, "empty")
  dir.create(empty)
  expect_error(LoadLIBRA(empty), "is not a saved LIBRA model", class = "sclibra_python_error")
  expect_error(SaveLIBRA(list(), path), "No LIBRA model found", class = "sclibra_model_error")
})

test_that("overwrite = TRUE never deletes files sclibra did not write; damaged models are named", {
  need_core()
  model <- GetLIBRAModel(trained_cite())
  dir <- withr::local_tempdir()
  path <- file.path(dir, "thesis")
  dir.create(path)
  writeLines("chapter 1", file.path(path, "thesis.tex"))
  err <- expect_error(SaveLIBRA(model, path, overwrite = TRUE), class = "sclibra_python_error")
  expect_match(conditionMessage(err), "not a sclibra model: it holds 'thesis.tex'")
  expect_identical(list.files(path), "thesis.tex")
  expect_identical(readLines(file.path(path, "thesis.tex")), "chapter 1")
  good <- file.path(dir, "m")
  SaveLIBRA(model, good)
  writeLines("[]", file.path(good, "config.json"))
  err <- expect_error(LoadLIBRA(good), class = "sclibra_python_error")
  expect_match(conditionMessage(err), "ModelFileError: .*config.json")
})

test_that("LoadLIBRA() and GetLIBRAModel() check their arguments' types in R", {
  need_core()
  model <- GetLIBRAModel(trained_cite())
  path <- file.path(withr::local_tempdir(), "m")
  SaveLIBRA(model, path)
  expect_error(LoadLIBRA(path, keep.model = "yes"), "`keep.model` must be TRUE or FALSE")
  expect_error(LoadLIBRA(path, device = NA), "`device` must be a single non-empty string")
  expect_error(GetLIBRAModel(trained_cite(), reduction = c("libra", "pca")),
    "`reduction` must be a single non-empty string"
  )
})
