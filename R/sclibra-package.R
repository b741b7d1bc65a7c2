#' sclibra: LIBRA and aLIBRA for paired single-cell multi-omics
#'
#' R interface to the `sclibra` Python core (through reticulate). Train a LIBRA model on cells
#' measured in two modalities with [RunLIBRA()], apply it to new cells with [LIBRAPredict()],
#' search hyperparameters with [TuneLIBRA()], and score models with [PPJI()],
#' [LIBRAConsistency()] and [LIBRAEvaluate()]. Models are saved in the core's format with
#' [SaveLIBRA()] and read with [LoadLIBRA()], in either language.
#'
#' @section Python: The core is loaded on first use. sclibra uses, in this order, the Python
#'   given by the environment variable `SCLIBRA_PYTHON`, one reticulate has already started in
#'   the session, `RETICULATE_PYTHON`, the virtualenv made by [install_sclibra()], or one found
#'   on the `PATH` (see [sclibra_python()]). Before Python is started in the
#'   R session, known traps are checked and explained: NumPy 2 with reticulate < 1.36, the R
#'   `torch` package loaded in the session (two libtorch builds clash), Python or modules
#'   missing. See [sclibra_available()] and [sclibra_config()].
#'
#' @section Data across the bridge: Seurat and Bioconductor store features x cells; the core
#'   works on cells x features. A sparse `dgCMatrix` reaches Python as a `scipy.sparse`
#'   CSC matrix: reticulate copies its `x`, `i` and `p` vectors once (its `np_array()` adds a
#'   `dim` attribute) and NumPy borrows that copy; the transpose into the CSR matrix the core
#'   reads is free (same arrays). A dense matrix is borrowed as a Fortran-ordered array without
#'   any copy and transposed into a C-ordered view. Nothing is densified. Selecting a subset
#'   of features (e.g. variable features) copies the matrix once in R instead. Cell and feature names travel unchanged; a Seurat assay
#'   created from predictions gets Seurat-safe feature names (`_` and `|` become `-`), with
#'   the original names in its feature metadata column `libra.feature`. Results (embedding, prediction) come back once,
#'   as dense matrices. Errors from Python arrive as R errors carrying the core's message.
#'
#' @keywords internal
"_PACKAGE"

#' @importFrom methods as is
#' @importFrom Matrix sparseMatrix
NULL
