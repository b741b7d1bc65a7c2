# R style and lint check of the package code (R/), run by `make lint-r` (part of `make test`).
# lintr comes from Debian (r-cran-lintr); the rules are in .lintr at the repository root:
# lintr's defaults (tidyverse style) except the names (R arguments are dotted, as in Seurat),
# a line length of 150 (cli messages stay on one line, so that they can be searched for), and
# object_usage_linter (R CMD check reports undefined globals with the package loaded).
if (!requireNamespace("lintr", quietly = TRUE)) {
  stop("lintr is not installed: apt-get install r-cran-lintr (make r-deps)", call. = FALSE)
}
lints <- lintr::lint_package(".")
if (length(lints)) {
  print(lints)
  cat(sprintf("\n%d lint(s) in R/; see .lintr for the rules\n", length(lints)))
  quit(status = 1)
}
cat("R lint: no lints in R/\n")
