# Seurat v4 reference mapping as a cross-modal predictor (driven by benchmarks/bench_peers.py).
#
# Usage: Rscript seurat_transfer.R DIR
#
# DIR holds what bench_peers.py exported (features x cells, Matrix Market):
#   ref_a.mtx, query_a.mtx   modality A (already normalised: log-normalised RNA, CLR ADT, ATAC values)
#   ref_b.mtx                modality B of the reference (training) cells
#   features_a.txt, features_b.txt, ref_cells.txt, query_cells.txt
#   n_var.txt                how many variable features of A to use (all when A has fewer)
# and gets back:
#   pred_b.mtx               predicted B of the query cells (features x cells)
#   query_pca.csv            the query cells' coordinates in the reference PCA ("pcaproject")
#   seconds.txt              wall seconds of PCA + FindTransferAnchors + TransferData
#
# The recipe is the one of Seurat's reference-mapping vignette: the values given are used as the
# normalised "data" slot, variable features (vst) when A is wider than n_var, ScaleData, a 50-PC
# PCA of the reference, FindTransferAnchors(reference.reduction = "pca", dims = 1:30) and
# TransferData(refdata = B, weight.reduction = "pcaproject", dims = 1:30).
suppressPackageStartupMessages({
  library(Matrix)
  library(Seurat)
})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[[1]]
rd <- function(f) readLines(file.path(dir, f))
mtx <- function(f, rows, cols) {
  m <- as(readMM(file.path(dir, f)), "CsparseMatrix")
  dimnames(m) <- list(rows, cols)
  m
}
fa <- make.unique(gsub("_", "-", rd("features_a.txt")))
fb <- rd("features_b.txt")
ref_cells <- rd("ref_cells.txt")
query_cells <- rd("query_cells.txt")
n_var <- as.integer(rd("n_var.txt"))
ref_a <- mtx("ref_a.mtx", fa, ref_cells)
query_a <- mtx("query_a.mtx", fa, query_cells)
ref_b <- mtx("ref_b.mtx", fb, ref_cells)

t0 <- proc.time()[["elapsed"]]
make <- function(m) {
  # the values are already normalised: they go in both slots, so no further normalisation happens
  obj <- suppressWarnings(CreateSeuratObject(counts = m, assay = "A"))
  SetAssayData(obj, slot = "data", new.data = m)
}
ref <- make(ref_a)
query <- make(query_a)
if (nrow(ref_a) > n_var) {
  ref <- FindVariableFeatures(ref, selection.method = "vst", nfeatures = n_var, verbose = FALSE)
} else {
  VariableFeatures(ref) <- rownames(ref)
}
feats <- VariableFeatures(ref)
npcs <- min(50L, length(feats) - 1L, ncol(ref) - 1L)
dims <- seq_len(min(30L, npcs))
ref <- ScaleData(ref, features = feats, verbose = FALSE)
ref <- RunPCA(ref, features = feats, npcs = npcs, verbose = FALSE)
anchors <- FindTransferAnchors(
  reference = ref, query = query, reference.reduction = "pca", features = feats,
  dims = dims, k.filter = NA, verbose = FALSE
)
pred <- TransferData(
  anchorset = anchors, refdata = ref_b, weight.reduction = "pcaproject", dims = dims,
  verbose = FALSE
)
seconds <- proc.time()[["elapsed"]] - t0
out <- as(GetAssayData(pred, slot = "data"), "CsparseMatrix")
out <- out[, query_cells, drop = FALSE]
writeMM(out, file.path(dir, "pred_b.mtx"))
writeLines(rownames(out), file.path(dir, "pred_features.txt"))
# the query's projected PCA, as computed by FindTransferAnchors (query cells carry "_query")
proj <- Embeddings(anchors@object.list[[1]][["pcaproject"]])
qrows <- paste0(query_cells, "_query")
emb <- if (all(qrows %in% rownames(proj))) proj[qrows, , drop = FALSE] else proj[query_cells, , drop = FALSE]
write.csv(emb, file.path(dir, "query_pca.csv"))
writeLines(format(seconds, digits = 8), file.path(dir, "seconds.txt"))
