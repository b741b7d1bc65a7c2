# Raw counts and a diverged training run are errors, not models.

counts_only_seurat <- function() {
  seu <- example_data("cite")
  counts <- SeuratObject::GetAssayData(seu, assay = "RNA", slot = "counts")
  adt <- SeuratObject::GetAssayData(seu, assay = "ADT", slot = "counts")
  # what a user gets from counts alone: SeuratObject copies counts into `data`
  obj <- SeuratObject::CreateSeuratObject(counts = counts, assay = "RNA", meta.data = seu[[]])
  obj[["ADT"]] <- SeuratObject::CreateAssayObject(counts = adt)
  obj
}

test_that("a Seurat object built from counts only gets the error naming NormalizeData(), not a model", {
  need_core()
  obj <- counts_only_seurat()
  err <- expect_error(
    run_fast(obj, input.assay = "RNA", output.assay = "ADT", train.cells = "is_train"),
    class = "sclibra_python_error"
  )
  msg <- conditionMessage(err)
  expect_match(msg, "raw counts")
  expect_match(msg, "NormalizeData()", fixed = TRUE)
  expect_match(msg, "allow.counts = TRUE", fixed = TRUE)
  expect_null(obj@reductions$libra)
})

test_that("allow.counts = TRUE trains on counts anyway", {
  need_core()
  seu <- example_data("cite")
  # normalised RNA in, ADT counts out: only the output is counts
  out <- run_fast(seu,
    input.assay = "RNA", output.assay = "ADT", output.slot = "counts",
    train.cells = "is_train", max.epochs = 2, allow.counts = TRUE
  )
  expect_true("predicted_ADT" %in% SeuratObject::Assays(out))
  expect_error(
    run_fast(seu,
      input.assay = "RNA", output.assay = "ADT", output.slot = "counts",
      train.cells = "is_train", max.epochs = 2
    ),
    "ADT: the output matrix looks like raw counts"
  )
})

test_that("a diverged training run is an error, not a model", {
  need_core()
  seu <- example_data("cite")
  err <- expect_error(
    run_fast(seu,
      input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
      learning.rate = 10, max.epochs = 3
    ),
    class = "sclibra_error"
  )
  expect_match(conditionMessage(err), "diverged|training loss became")
})
