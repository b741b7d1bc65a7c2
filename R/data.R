#' Bundled example data as Seurat or SingleCellExperiment objects
#'
#' Two small real data sets ship with the package (as h5ad files, package data of the Python
#' core it carries), from the NeurIPS 2021 bone-marrow benchmark (Luecken et al.):
#'
#' * `"cite"`: CITE-seq, 600 cells, 1000 genes (assay `RNA`) and 134 surface proteins (assay
#'   `ADT`);
#' * `"multiome"`: 10x Multiome, 500 cells, 600 genes (`RNA`) and 600 peaks (`ATAC`).
#'
#' Raw counts are in `counts`; `data` / `logcounts` hold log-normalised RNA, CLR-normalised ADT
#' and binarised ATAC. Cell metadata include `cell_type`, `batch` and `is_train` (the donor
#' split: `s1d1` for training, `s1d2` held out). See the `SOURCE.md` files in
#' `system.file("core/python/sclibra/_extdata", package = "sclibra")` for provenance and licence. The h5ad files are
#' read through the Python core's AnnData.
#'
#' @param dataset `"cite"` or `"multiome"`.
#' @param format `"Seurat"` (both modalities as assays, identities = `cell_type`) or
#'   `"SingleCellExperiment"` (RNA in the main experiment, ADT / ATAC as an alternative
#'   experiment).
#' @return A Seurat or SingleCellExperiment object.
#' @export
#' @examples
#' if (sclibra_available()) {
#'   seu <- LIBRAExampleData("cite")
#'   seu
#' }
LIBRAExampleData <- function(dataset = c("cite", "multiome"),
                             format = c("Seurat", "SingleCellExperiment")) {
  dataset <- match.arg(dataset)
  format <- match.arg(format)
  folder <- c(cite = "bmmc_cite", multiome = "bmmc_multiome")[[dataset]]
  second <- c(cite = "ADT", multiome = "ATAC")[[dataset]]
  dir <- .extdata(folder)
  if (!nzchar(dir)) {
    .abort("The bundled data folder {.file {folder}} is missing from the installed package.")
  }
  files <- c(file.path(dir, "rna.h5ad"), file.path(dir, paste0(tolower(second), ".h5ad")))
  names(files) <- c("RNA", second)
  parts <- lapply(files, .read_h5ad)
  meta <- parts$RNA$obs
  extra <- setdiff(colnames(parts[[second]]$obs), colnames(meta))
  meta[extra] <- parts[[second]]$obs[rownames(meta), extra, drop = FALSE]
  if (format == "Seurat") {
    return(.example_seurat(parts, second, meta))
  }
  .example_sce(parts, second, meta)
}

# The bundled data: package data of the Python core that configure bundles into the package.
.extdata <- function(...) {
  system.file("core", "python", "sclibra", "_extdata", ..., package = "sclibra")
}

.read_h5ad <- function(path) {
  res <- .py(.bridge()$read_h5ad_for_r(path), "Reading the bundled data")
  names <- function(key) as.character(reticulate::py_to_r(res$get(key)))
  cells <- names("obs_names")
  features <- names("var_names")
  mat <- function(key) {
    slots <- reticulate::py_to_r(res$get(key))
    if (is.null(slots)) {
      return(NULL)
    }
    .dgc_from_slots(slots, list(features, cells))
  }
  obs <- reticulate::py_to_r(res$get("obs"))
  attr(obs, "pandas.index") <- NULL
  rownames(obs) <- cells
  list(X = mat("X"), counts = mat("counts"), obs = obs)
}

.example_seurat <- function(parts, second, meta) {
  object <- SeuratObject::CreateSeuratObject(
    counts = parts$RNA$counts, assay = "RNA", meta.data = meta, project = "bmmc"
  )
  object <- SeuratObject::SetAssayData(object, slot = "data", new.data = parts$RNA$X, assay = "RNA")
  assay <- SeuratObject::CreateAssayObject(counts = parts[[second]]$counts)
  assay <- SeuratObject::SetAssayData(assay, slot = "data", new.data = parts[[second]]$X)
  SeuratObject::Key(assay) <- .assay_key(second)
  object[[second]] <- assay
  SeuratObject::Idents(object) <- "cell_type"
  object
}

.example_sce <- function(parts, second, meta) {
  .need_sce()
  alt <- SummarizedExperiment::SummarizedExperiment(
    assays = list(counts = parts[[second]]$counts, logcounts = parts[[second]]$X)
  )
  SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = parts$RNA$counts, logcounts = parts$RNA$X),
    colData = S4Vectors::DataFrame(meta, check.names = FALSE),
    altExps = stats::setNames(list(alt), second),
    mainExpName = "RNA"
  )
}
