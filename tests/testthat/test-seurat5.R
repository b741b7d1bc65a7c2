# SeuratObject 5 (layers, Assay5). Debian ships SeuratObject 4, so in CI these tests skip,
# saying why: they are the only tests allowed to skip. Run them with SeuratObject >= 5 on the
# library path (see the closing note of the SeuratObject 5 work for a by-hand run).

need_seurat5 <- function() {
  version <- utils::packageVersion("SeuratObject")
  if (version < "5.0.0") {
    testthat::skip(paste0(
      "SeuratObject ", version, " is installed; these tests need SeuratObject >= 5 (layers, Assay5)"
    ))
  }
  need_core()
}

test_that("LIBRAExampleData() builds Assay5 objects without deprecated calls or warnings", {
  need_seurat5()
  expect_no_warning(seu <- LIBRAExampleData("cite"))
  expect_s4_class(seu[["RNA"]], "Assay5")
  expect_s4_class(seu[["ADT"]], "Assay5")
  expect_setequal(SeuratObject::Layers(seu[["ADT"]]), c("counts", "data"))
  expect_equal(dim(SeuratObject::LayerData(seu, assay = "ADT", layer = "data")), c(134L, 600L))
})

test_that("on a v5 object results are stored as Assay5, with no warning, and survive saveRDS()", {
  need_seurat5()
  seu <- LIBRAExampleData("cite")
  expect_no_warning(out <- run_fast(seu, output.assay = "ADT", train.cells = "is_train"))
  expect_s4_class(out[["predicted_ADT"]], "Assay5")
  expect_equal(dim(SeuratObject::LayerData(out, assay = "predicted_ADT", layer = "data")), c(134L, 600L))
  expect_no_warning(pred <- LIBRAPredict(out, verbose = FALSE))
  expect_no_warning(value <- PPJI(out, reference = "cell_type_coarse"))
  expect_true(value > 0 && value <= 1)
  expect_no_warning(scores <- LIBRAEvaluate(out, consistency = FALSE, baselines = "mean", verbose = FALSE))
  expect_true(nrow(scores) > 0)
  path <- tempfile(fileext = ".rds")
  saveRDS(out, path)
  back <- readRDS(path)
  again <- LIBRAPredict(back, verbose = FALSE, new.assay.name = "again")
  expect_equal(
    as.matrix(SeuratObject::LayerData(again, assay = "again", layer = "data")),
    as.matrix(SeuratObject::LayerData(out, assay = "predicted_ADT", layer = "data")),
    tolerance = 1e-5
  )
})

test_that("split layers are read across all layers, in the object's cell order", {
  need_seurat5()
  seu <- LIBRAExampleData("cite")
  joined <- sclibra:::.seurat_matrix(seu, "RNA", "data", "input.assay")
  split_obj <- seu
  split_obj[["RNA"]] <- split(split_obj[["RNA"]], f = split_obj$batch)
  expect_gt(length(SeuratObject::Layers(split_obj[["RNA"]], search = "data")), 1L)
  x <- sclibra:::.seurat_matrix(split_obj, "RNA", "data", "input.assay")
  expect_equal(colnames(x), colnames(seu))
  expect_equal(as.matrix(x[rownames(joined), ]), as.matrix(joined))
  expect_no_warning(out <- run_fast(split_obj, output.assay = "ADT", max.epochs = 2))
  model <- GetLIBRAModel(out)
  expect_equal(length(model$train.cells) + length(model$validation.cells), ncol(seu))
  pred <- LIBRAPredict(out, verbose = FALSE)
  expect_equal(ncol(SeuratObject::LayerData(pred, assay = "predicted_ADT", layer = "data")), ncol(seu))
})

test_that("split layers with different features are refused, naming JoinLayers()", {
  need_seurat5()
  seu <- LIBRAExampleData("cite")
  seu[["RNA"]] <- split(seu[["RNA"]], f = seu$batch)
  layers <- SeuratObject::Layers(seu[["RNA"]], search = "data")
  part <- SeuratObject::LayerData(seu[["RNA"]], layer = layers[[2]])
  # SeuratObject warns that the features differ: that is the point of this test
  suppressWarnings(SeuratObject::LayerData(seu[["RNA"]], layer = layers[[2]]) <- part[-(1:5), ])
  expect_error(sclibra:::.seurat_matrix(seu, "RNA", "data", "input.assay"), "JoinLayers",
    class = "sclibra_missing_slot"
  )
})
