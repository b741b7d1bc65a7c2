# Worker of benchmarks/bench_r_path.py: time RunLIBRA() on the bundled CITE-seq data.
#
#   Rscript benchmarks/bench_r_path.R OUT.json THREADS [MAX_EPOCHS]
#
# Trains RNA -> ADT on the is_train cells with seed 0 and the default settings (MAX_EPOCHS caps
# the epochs when given), twice in one R session (the first call pays one-time imports), and
# writes the wall-clock seconds of each call and the per-epoch seconds the core recorded.
args <- commandArgs(TRUE)
out <- args[[1]]
threads <- as.integer(args[[2]])
max_epochs <- if (length(args) >= 3) as.integer(args[[3]]) else NULL
suppressPackageStartupMessages(library(sclibra))
t0 <- Sys.time()
seu <- suppressWarnings(LIBRAExampleData("cite"))
load_s <- as.numeric(Sys.time() - t0, units = "secs")
core <- sclibra_python_module()
if (threads > 0) core$settings$num_threads <- threads
runs <- list()
for (i in 1:2) {
  # a plain call, not do.call(): Seurat's command log deparses the call, and do.call() would
  # put the whole object into it
  t0 <- Sys.time()
  res <- if (is.null(max_epochs)) {
    RunLIBRA(seu,
      input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", seed = 0,
      verbose = FALSE
    )
  } else {
    RunLIBRA(seu,
      input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", seed = 0,
      verbose = FALSE, max.epochs = max_epochs
    )
  }
  call_s <- as.numeric(Sys.time() - t0, units = "secs")
  model <- GetLIBRAModel(res)
  runs[[i]] <- list(
    call_s = call_s, epochs = model$n.epochs, epoch_s = model$history$seconds,
    best_val_loss = model$best.val.loss
  )
}
cfg <- sclibra_config()
jsonlite::write_json(list(
  load_s = load_s, runs = runs, torch_import = cfg$torch_import,
  torch_threads = cfg$torch_threads
), out, auto_unbox = TRUE, digits = NA)
