# From a Seurat object to a LIBRA embedding, a predicted ADT assay, PPJI and a tuned model,
# in R alone, on the bundled bone-marrow CITE-seq data (600 cells, 1000 genes, 134 proteins).
#   Rscript inst/scripts/seurat_session.R      (SCLIBRA_PYTHON points at a Python with the core)
library(sclibra)
library(Seurat)

seu <- LIBRAExampleData("cite") # Seurat: RNA + ADT assays, meta.data cell_type / is_train
seu

seu <- RunLIBRA(seu,
  input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
  n.nodes = 128, latent.dim = 10, max.epochs = 100, verbose = FALSE
)
seu
GetLIBRAModel(seu)
Embeddings(seu, reduction = "libra")[1:3, 1:4]
seu[["predicted_ADT"]]

held_out <- colnames(seu)[!seu$is_train]
measured <- as.matrix(GetAssayData(seu, assay = "ADT"))[, held_out]
predicted <- as.matrix(GetAssayData(seu, assay = "predicted_ADT"))[, held_out]
cat(sprintf(
  "held-out donor: MSE %.3f (per-protein training mean: %.3f), median per-protein r = %.2f\n",
  mean((predicted - measured)^2),
  mean((rowMeans(as.matrix(GetAssayData(seu, assay = "ADT"))[, seu$is_train]) - measured)^2),
  stats::median(vapply(seq_len(nrow(measured)), function(i) suppressWarnings(cor(predicted[i, ], measured[i, ])), 0), na.rm = TRUE)
))

seu <- FindNeighbors(seu, reduction = "libra", dims = 1:10, verbose = FALSE)
seu <- FindClusters(seu, verbose = FALSE)
c(
  ppji_leiden = PPJI(seu, reference = "cell_type", reduction = "libra"),
  ppji_seurat_clusters = PPJI(seu, reference = "cell_type", clusters = "seurat_clusters")
)

tuned <- TuneLIBRA(seu,
  input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
  grid = list(n.nodes = c(64, 256), latent.dim = c(10, 20), dropout = c(0.1, 0.3)),
  strategy = "asha", max.epochs = 60, grace.period = 10, verbose = FALSE
)
tuned
tuned$trials[, c("trial_id", "status", "n_nodes", "latent_dim", "dropout", "val_loss", "n_epochs")]
seu <- LIBRAPredict(seu, model = tuned$model, reduction.name = "libra_tuned", verbose = FALSE)
seu
