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
#' and binarised ATAC. Cell metadata include `cell_type` (the fine annotation of the
#' benchmark: 41 types in `"cite"`, 21 in `"multiome"`), `cell_type_coarse` (8 lineages:
#' CD4+ T, CD8+ T, other T, NK/ILC, B, Progenitor, Monocyte/DC, Erythroid; readable in a
#' figure legend), `batch` and `is_train` (the donor split: `s1d1` for training, `s1d2` held
#' out). Seurat objects are built in the assay class of the installed SeuratObject (`Assay5`
#' with SeuratObject 5). See the `SOURCE.md` files in
#' `system.file("core/python/sclibra/_extdata", package = "sclibra")` for provenance and licence. The h5ad files are
#' read through the Python core's AnnData.
#'
#' @param dataset `"cite"` or `"multiome"`.
#' @param format `"Seurat"` (both modalities as assays, identities = `cell_type_coarse`) or
#'   `"SingleCellExperiment"` (RNA in the main experiment, ADT / ATAC as an alternative
#'   experiment).
#' @return A Seurat or SingleCellExperiment object.
#' @export
#' @examplesIf sclibra_available()
#' seu <- LIBRAExampleData("cite")
#' seu
#' table(seu$cell_type_coarse)
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
  meta$cell_type_coarse <- .coarse_cell_type(meta$cell_type)
  if (format == "Seurat") {
    return(.example_seurat(parts, second, meta))
  }
  .example_sce(parts, second, meta)
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
  object[["RNA"]] <- .set_layer(object[["RNA"]], "data", parts$RNA$X)
  assay <- .new_assay(object, "RNA", counts = parts[[second]]$counts, data = parts[[second]]$X)
  SeuratObject::Key(assay) <- .assay_key(second)
  object[[second]] <- assay
  SeuratObject::Idents(object) <- "cell_type_coarse"
  object
}

# The benchmark's fine cell types grouped into 8 lineages (first matching rule wins).
.coarse_cell_type <- function(fine) {
  rules <- c(
    "CD4+ T" = "^CD4\\+ T|^T reg",
    "CD8+ T" = "^CD8\\+ T",
    "other T" = "^MAIT|^gdT",
    "NK/ILC" = "^NK|^ILC",
    "B" = " B|B1 B|^Plasma",
    "Progenitor" = "prog|^HSC",
    "Monocyte/DC" = "Mono|DC|myeloid",
    "Erythroid" = "Reticulocyte|blast$|Normoblast"
  )
  fine <- as.character(fine)
  out <- rep(NA_character_, length(fine))
  for (group in names(rules)) {
    hit <- is.na(out) & grepl(rules[[group]], fine)
    out[hit] <- group
  }
  out[is.na(out)] <- fine[is.na(out)]
  factor(out, levels = unique(c(names(rules), out)))
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

# The bundled data: package data of the Python core that configure bundles into the package.
.extdata <- function(...) {
  system.file("core", "python", "sclibra", "_extdata", ..., package = "sclibra")
}
