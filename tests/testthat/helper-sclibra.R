# Shared helpers for the sclibra tests.

# Tests that need the Python core call this first. Locally a missing core skips them; in CI
# (CI=true) it is an error, so that the R suite can never pass by silently skipping.
need_core <- function() {
  if (sclibra_available()) {
    return(invisible(TRUE))
  }
  msg <- paste(
    "the sclibra Python core is not usable from R; set SCLIBRA_PYTHON to a Python with the",
    "core (see install_sclibra())"
  )
  if (identical(tolower(Sys.getenv("CI")), "true")) {
    stop("CI=true and ", msg, call. = FALSE)
  }
  testthat::skip(msg)
}

# Tiny, fast training settings shared by the tests: one network (the default is an ensemble,
# whose latent space concatenates its members'; tests of ensembles ask for one explicitly).
fast <- list(n.nodes = 32, max.epochs = 4, verbose = FALSE, seed = 1, n.models = 1)

# The width of a one-network model's latent space when latent.dim is left to the core.
default_latent <- function() as.integer(sclibra:::.core_defaults("model")$latent_dim)

run_fast <- function(object, ...) {
  args <- utils::modifyList(fast, list(...))
  do.call(RunLIBRA, c(list(object), args))
}

# The bundled data sets, read once per test run.
.data_cache <- new.env()
example_data <- function(dataset = "cite", format = "Seurat") {
  key <- paste(dataset, format)
  if (is.null(.data_cache[[key]])) {
    .data_cache[[key]] <- LIBRAExampleData(dataset, format)
  }
  .data_cache[[key]]
}

# A trained CITE-seq Seurat object (RNA -> ADT, trained on the s1d1 donor), built once.
trained_cite <- function() {
  if (is.null(.data_cache$trained)) {
    .data_cache$trained <- run_fast(example_data("cite"),
      input.assay = "RNA", output.assay = "ADT",
      train.cells = "is_train", max.epochs = 30
    )
  }
  .data_cache$trained
}

# A small features x cells sparse matrix with names.
toy_matrix <- function(n_features = 20, n_cells = 30, prefix = "f", seed = 1, density = 0.5) {
  set.seed(seed)
  x <- Matrix::rsparsematrix(n_features, n_cells, density = density, rand.x = function(n) abs(stats::rnorm(n)) + 0.1)
  dimnames(x) <- list(paste0(prefix, seq_len(n_features)), paste0("cell", seq_len(n_cells)))
  methods::as(x, "CsparseMatrix")
}

# A stand-in "python" executable that prints a given probe result (for the trap checks).
fake_python <- function(probe_json = NULL, status = 0, source = "PATH") {
  path <- tempfile("python")
  body <- if (is.null(probe_json)) "echo 'something went wrong' >&2" else paste0("echo 'SCLIBRA_PROBE", probe_json, "'")
  writeLines(c("#!/bin/sh", body, paste("exit", status)), path)
  Sys.chmod(path, "755")
  structure(path, source = source)
}

# The message a user would see for the problems .diagnose() finds ("" when there are none).
diagnose_text <- function(python, loaded = character()) {
  problems <- sclibra:::.diagnose(python, loaded = loaded)
  if (!length(problems)) {
    return("")
  }
  err <- tryCatch(sclibra:::.abort_python(problems), error = identity)
  cli::ansi_strip(conditionMessage(err))
}
