# R-specific checks, made before anything crosses to Python ----------------------------------
#
# Only what R knows better than the core lives here: dimnames of R containers, coercion of R
# matrix classes, cell selection by metadata column, and the types of R-only arguments. The
# defaults and bounds of the core's own arguments (hyperparameters, training schedule) are
# checked by the core alone (see .core_args() in bridge.R).

# Coerce an R matrix-like object to something reticulate passes without copying.
.as_bridge_matrix <- function(x, what) {
  if (inherits(x, "dgCMatrix") || (is.matrix(x) && is.double(x))) {
    return(x)
  }
  if (is.matrix(x) && (is.numeric(x) || is.logical(x))) {
    storage.mode(x) <- "double"
    return(x)
  }
  if (inherits(x, "Matrix") || inherits(x, "DelayedArray")) {
    out <- tryCatch(methods::as(x, "CsparseMatrix"), error = function(e) NULL)
    if (!is.null(out) && !inherits(out, "dgCMatrix")) {
      out <- tryCatch(methods::as(out, "dMatrix"), error = function(e) NULL)
    }
    if (inherits(out, "dgCMatrix")) {
      return(out)
    }
  }
  .abort(c(
    "{what} must be a numeric matrix or a sparse {.cls dgCMatrix} (features x cells).",
    x = "It is {.obj_type_friendly {x}}."
  ), class = "sclibra_input_error")
}

# Checks every input matrix passes before it goes to Python: numeric, names present and unique,
# no NA / NaN / Inf, something left to train on. Returns the matrix as it goes to Python (other
# sparse classes and DelayedArrays converted once to a dgCMatrix, see .as_bridge_matrix()).
.validate_matrix <- function(x, what, features_used = NULL) {
  if (!(is.matrix(x) || inherits(x, "Matrix") || inherits(x, "DelayedArray"))) {
    .abort(c(
      "{what} must be a numeric matrix or a sparse {.cls dgCMatrix} (features x cells).",
      x = "It is {.obj_type_friendly {x}}."
    ), class = "sclibra_input_error")
  }
  x <- .as_bridge_matrix(x, what)
  if (nrow(x) == 0L) {
    .abort("{what} has no features.", class = "sclibra_empty_error")
  }
  if (ncol(x) == 0L) {
    .abort("{what} has no cells.", class = "sclibra_empty_error")
  }
  cells <- colnames(x)
  features <- rownames(x)
  if (is.null(cells)) {
    .abort(c("{what} has no cell names (column names).",
      i = "Cells are paired between modalities by name; set {.code colnames()}."
    ), class = "sclibra_input_error")
  }
  if (is.null(features)) {
    .abort("{what} has no feature names (row names).", class = "sclibra_input_error")
  }
  if (any(!nzchar(features) | is.na(features))) {
    n <- sum(!nzchar(features) | is.na(features))
    .abort("{what} has {n} feature{?s} with an empty name.", class = "sclibra_input_error")
  }
  if (any(!nzchar(cells) | is.na(cells))) {
    n <- sum(!nzchar(cells) | is.na(cells))
    .abort("{what} has {n} cell{?s} with an empty name.", class = "sclibra_input_error")
  }
  dup <- unique(cells[duplicated(cells)])
  if (length(dup)) {
    .abort("{what} has {length(dup)} duplicated cell name{?s}: {(.some(dup))}.",
      class = "sclibra_input_error"
    )
  }
  dup <- unique(features[duplicated(features)])
  if (length(dup)) {
    .abort("{what} has {length(dup)} duplicated feature name{?s}: {(.some(dup))}.",
      class = "sclibra_input_error"
    )
  }
  bad <- .nonfinite_features(x)
  if (!is.null(features_used)) {
    bad <- intersect(bad, features_used)
  }
  if (length(bad)) {
    .abort(c(
      "{length(bad)} feature{?s} {?has/have} NA, NaN or infinite values in {what}: {(.some(bad))}.",
      i = "Remove or impute them before training."
    ), class = "sclibra_na_error")
  }
  x
}

# Names of features (rows) with a non-finite value, without densifying a sparse matrix.
.nonfinite_features <- function(x) {
  if (inherits(x, "dgCMatrix")) {
    bad <- !is.finite(x@x)
    if (!any(bad)) {
      return(character())
    }
    return(rownames(x)[sort(unique(x@i[bad] + 1L))])
  }
  bad <- !is.finite(x)
  if (!any(bad)) {
    return(character())
  }
  rownames(x)[rowSums(bad) > 0]
}

# Features (rows) that are zero in every cell given.
.empty_features <- function(x, cells = NULL) {
  if (!is.null(cells) && !identical(cells, colnames(x))) {
    x <- x[, cells, drop = FALSE]
  }
  if (inherits(x, "dgCMatrix")) {
    nz <- x@x != 0
    has <- logical(nrow(x))
    has[unique(x@i[nz] + 1L)] <- TRUE
    return(rownames(x)[!has])
  }
  rownames(x)[rowSums(x != 0) == 0]
}

# Select features by name (a user request is checked). The default keeps every feature, as the
# core does: features that are constant over the training cells are the core's to report (one
# rule, written once, in Python), and R and Python train the same model on the same data.
.select_features <- function(x, features, what, cells, verbose) {
  if (is.null(features)) {
    if (!length(.empty_features(x, cells)) < nrow(x)) {
      .abort("Every feature of {what} is zero in the training cells.", class = "sclibra_empty_error")
    }
    return(x)
  }
  if (!is.character(features) || !length(features)) {
    .abort("{.arg features} for {what} must be a non-empty character vector of feature names.",
      class = "sclibra_empty_error"
    )
  }
  features <- unique(features)
  missing <- setdiff(features, rownames(x))
  if (length(missing)) {
    .abort(c(
      "{length(missing)} requested feature{?s} {?is/are} not in {what}: {(.some(missing))}.",
      i = "{what} has {nrow(x)} features, e.g. {(.some(rownames(x), 3))}."
    ), class = "sclibra_missing_features", missing = missing)
  }
  if (!identical(features, rownames(x))) {
    x <- x[features, , drop = FALSE]
  }
  empty <- .empty_features(x, cells)
  if (length(empty)) {
    .abort(c(
      "{length(empty)} requested feature{?s} {?is/are} empty (zero in every training cell) in {what}: {(.some(empty))}.",
      i = "Drop empty features from {.arg features}: they carry no signal."
    ), class = "sclibra_empty_error", empty = empty)
  }
  x
}

# Cells shared by the two modalities, with a clear error when there are none.
.shared_cells <- function(a, b, name_a, name_b, verbose = FALSE) {
  shared <- intersect(colnames(a), colnames(b))
  if (!length(shared)) {
    .abort(c(
      "Cells in {name_a} and {name_b} do not overlap (no shared cell names).",
      i = "{name_a}: {ncol(a)} cells, e.g. {(.some(colnames(a), 2))}.",
      i = "{name_b}: {ncol(b)} cells, e.g. {(.some(colnames(b), 2))}."
    ), class = "sclibra_no_shared_cells")
  }
  if (length(shared) < max(ncol(a), ncol(b))) {
    .msg(verbose, "{length(shared)} cells are measured in both {name_a} ({ncol(a)}) and {name_b} ({ncol(b)}); training uses those.")
  }
  shared
}

# train.cells: NULL, cell names, a logical vector over `cells`, or the name of a logical
# metadata column (`meta` is a data.frame with cells as rows). One string that is neither a
# column nor a cell is reported as a missing column (the usual cause: a misspelt name).
.resolve_train_cells <- function(train.cells, cells, meta = NULL, arg = "train.cells") {
  if (is.null(train.cells)) {
    return(NULL)
  }
  if (is.character(train.cells) && length(train.cells) == 1L && !is.null(meta) &&
    !train.cells %in% colnames(meta) && !train.cells %in% cells) {
    .abort(c(
      "{.arg {arg}} = {.val {train.cells}} is not a metadata column (nor a cell name).",
      i = "Logical metadata columns: {.val {(.logical_columns(meta))}}."
    ), class = c("sclibra_missing_column", "sclibra_input_error"))
  }
  if (is.character(train.cells) && length(train.cells) == 1L && !is.null(meta) &&
    train.cells %in% colnames(meta)) {
    column <- train.cells
    flag <- meta[cells, column]
    if (!is.logical(flag)) {
      .abort("Metadata column {.val {column}} used as {.arg {arg}} must be logical (TRUE = selected).",
        class = "sclibra_input_error"
      )
    }
    if (anyNA(flag)) {
      .abort("Metadata column {.val {column}} has {sum(is.na(flag))} NA value{?s}.",
        class = "sclibra_na_error"
      )
    }
    train.cells <- cells[flag]
  } else if (is.logical(train.cells)) {
    if (length(train.cells) != length(cells) || anyNA(train.cells)) {
      .abort("A logical {.arg {arg}} must have one TRUE/FALSE per cell ({length(cells)}), without NA.",
        class = "sclibra_input_error"
      )
    }
    train.cells <- cells[train.cells]
  } else if (is.character(train.cells)) {
    unknown <- setdiff(train.cells, cells)
    if (length(unknown)) {
      .abort("{length(unknown)} cell{?s} {?is/are} not among the paired cells ({.arg {arg}}): {(.some(unknown))}.",
        class = "sclibra_input_error"
      )
    }
  } else {
    .abort("{.arg {arg}} must be cell names, a logical vector or a metadata column name.",
      class = "sclibra_input_error"
    )
  }
  if (length(train.cells) < 2L) {
    .abort("{.arg {arg}} selects {length(train.cells)} cell{?s}; at least 2 are needed.",
      class = "sclibra_empty_error"
    )
  }
  unique(train.cells)
}

.logical_columns <- function(meta) {
  names(meta)[vapply(meta, is.logical, TRUE)]
}

# Labels over `cells`: a metadata column name or a vector (named by cell, or in cell order).
# Labels may be NA only outside `required` (the cells that need one: all by default), which
# the error calls `what`s.
.resolve_labels <- function(labels, cells, meta = NULL, arg = "labels", required = cells,
                            what = "cell") {
  if (is.null(labels)) {
    return(NULL)
  }
  if (is.character(labels) && length(labels) == 1L && !is.null(meta)) {
    if (!labels %in% colnames(meta)) {
      .abort(c(
        "Metadata column {.val {labels}} ({.arg {arg}}) does not exist.",
        i = "Columns: {.val {colnames(meta)}}."
      ), class = c("sclibra_missing_column", "sclibra_input_error"))
    }
    labels <- stats::setNames(meta[cells, labels], cells)
  }
  if (!is.null(names(labels)) && all(cells %in% names(labels))) {
    labels <- labels[cells]
  } else if (length(labels) != length(cells)) {
    .abort("{.arg {arg}} must name a metadata column or give one label per cell ({length(cells)}), not {length(labels)}.",
      class = "sclibra_input_error"
    )
  }
  labels <- stats::setNames(as.character(labels), cells)
  unlabelled <- intersect(required, cells[is.na(labels)])
  if (length(unlabelled)) {
    .abort("{.arg {arg}}: {length(unlabelled)} {what}{?s} {?has/have} no label (NA): {(.some(unlabelled))}.",
      class = "sclibra_na_error"
    )
  }
  labels
}

# Each paired cell's batch for `batch.key` (a metadata column name, or one label per cell,
# named or in cell order), as characters named by `cells`. NA is allowed only outside the
# training cells `train` (NULL: every cell trains), which the validation split draws from.
.resolve_batches <- function(batch.key, cells, train = NULL, meta = NULL, arg = "batch.key") {
  if (is.character(batch.key) && length(batch.key) == 1L && is.null(meta)) {
    .abort(c(
      "{.arg {arg}} = {.val {batch.key}} names a metadata column, but a matrix has none.",
      i = "Give one batch label per cell (named by cell, or in column order)."
    ), class = "sclibra_input_error")
  }
  if (!is.atomic(batch.key)) {
    .abort("{.arg {arg}} must be a metadata column name or a vector of batch labels, not {.cls {class(batch.key)[1]}}.",
      class = "sclibra_input_error"
    )
  }
  .resolve_labels(batch.key, cells, meta, arg, required = train %||% cells, what = "training cell")
}

# The core's fit arguments `fit` with `batch_key` (as the user gave it) replaced by the paired
# cells' labels, in the order of the cells sent to Python (`pair$cells`).
.with_batches <- function(fit, pair, meta) {
  if (!is.null(fit$batch_key)) {
    labels <- .resolve_batches(fit$batch_key, pair$cells, unlist(pair$train), meta)
    fit$batch_key <- as.list(unname(labels))
  }
  fit
}

# Match the rows of `x` to a model's features by name. Seurat turns '_' and '|' in feature
# names into '-', so a model trained on the original names still finds its features; those
# rows are renamed back (names only, no copy of the data). Missing features are an error
# listing them, unless `allow.missing` (then the core fills them with zeros).
.align_features <- function(x, features, what, allow.missing = FALSE) {
  have <- rownames(x)
  missing <- setdiff(features, have)
  if (length(missing)) {
    dashed <- gsub("[_|]", "-", missing)
    found <- dashed %in% have & !missing %in% have
    if (any(found)) {
      rename <- stats::setNames(missing[found], dashed[found])
      hit <- have %in% names(rename)
      have[hit] <- rename[have[hit]]
      rownames(x) <- have
      missing <- missing[!found]
    }
  }
  if (length(missing) && !allow.missing) {
    .abort(c(
      "The model was trained on {length(features)} input features; {length(missing)} {?is/are} missing from {what}: {(.some(missing, 10))}.",
      i = "Use data with the model's input features, or {.code allow.missing = TRUE} to fill them with zeros."
    ), class = "sclibra_missing_features", missing = missing)
  }
  if (length(missing) == length(features)) {
    .abort("None of the model's {length(features)} input features are in {what}.",
      class = "sclibra_missing_features", missing = missing
    )
  }
  x
}

.check_model <- function(model, arg = "model") {
  if (!inherits(model, "LIBRAModel")) {
    .abort("{.arg {arg}} must be a {.cls LIBRAModel} (from RunLIBRA(), TuneLIBRA() or LoadLIBRA()), not {.obj_type_friendly {model}}.",
      class = "sclibra_input_error"
    )
  }
  invisible(model)
}

.check_flag <- function(x, arg = deparse(substitute(x))) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    .abort("{.arg {arg}} must be TRUE or FALSE, not {.obj_type_friendly {x}}.")
  }
  invisible(x)
}

.check_string <- function(x, arg = deparse(substitute(x)), null_ok = FALSE) {
  if (is.null(x) && null_ok) {
    return(invisible(x))
  }
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    .abort("{.arg {arg}} must be a single non-empty string, not {.obj_type_friendly {x}}.")
  }
  invisible(x)
}

.check_count <- function(x, arg = deparse(substitute(x)), min = 1, null_ok = FALSE) {
  if (is.null(x) && null_ok) {
    return(invisible(x))
  }
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x != round(x) || x < min) {
    .abort("{.arg {arg}} must be a whole number >= {min}, not {.obj_type_friendly {x}}.")
  }
  invisible(as.integer(x))
}

# A key of the latent dimensions' names, valid in Seurat 4 and 5: a letter, then letters and
# digits, then "_" (Seurat would otherwise rename it, with a warning, after training).
.check_key <- function(key, arg = "reduction.key") {
  .check_string(key, arg)
  if (!grepl("^[A-Za-z][A-Za-z0-9]*_$", key)) {
    .abort(c(
      "{.arg {arg}} must be a letter followed by letters or digits and end with {.val _}, not {.val {key}}.",
      i = "For example {.val LIBRA_} or {.val LIBRARNA_}."
    ), class = "sclibra_input_error")
  }
  invisible(key)
}

# Arguments passed on to the core (`values`, a named list without NULLs) that are a lone NA:
# reticulate would send NA as True or as the smallest integer, and the core would report that
# value instead of the NA the user gave.
.check_no_na <- function(values, fn) {
  na <- names(values)[vapply(values, function(v) is.atomic(v) && length(v) == 1L && is.na(v), TRUE)]
  if (length(na)) {
    na <- gsub("_", ".", na, fixed = TRUE)
    .abort(c(
      "{.fn {fn}}: {.arg {na}} {?is/are} NA.",
      i = "Give a value, or leave it as {.code NULL} for the core's default."
    ), class = "sclibra_input_error")
  }
  invisible(values)
}

.check_number <- function(x, arg = deparse(substitute(x)), min = -Inf, max = Inf,
                          null_ok = FALSE) {
  if (is.null(x) && null_ok) {
    return(invisible(x))
  }
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x < min || x > max) {
    .abort("{.arg {arg}} must be a number in [{min}, {max}], not {.obj_type_friendly {x}}.")
  }
  invisible(x)
}

# Named arguments in `...`: each must be one of `known` (R names, with dots, or the same names
# in Python style); anything else is an error naming it before any work starts.
.check_dots <- function(dots, known, fn) {
  if (!length(dots)) {
    return(invisible(dots))
  }
  nms <- names(dots) %||% rep("", length(dots))
  if (any(!nzchar(nms))) {
    .abort("Arguments in {.code ...} of {.fn {fn}} must be named.", class = "sclibra_input_error")
  }
  canon <- gsub("_", ".", nms, fixed = TRUE)
  unknown <- nms[!canon %in% gsub("_", ".", known, fixed = TRUE)]
  if (length(unknown)) {
    valid <- sort(unique(gsub("_", ".", known, fixed = TRUE)))
    hint <- NULL
    if (length(valid)) {
      # the closest valid name of each unknown one (a typo), then every valid name, untruncated
      near <- unique(unlist(lapply(gsub("_", ".", unknown, fixed = TRUE), function(u) {
        d <- utils::adist(u, valid)[1, ]
        valid[d == min(d) & d <= max(2, nchar(u) %/% 4)]
      })))
      all_valid <- cli::cli_vec(valid, list("vec-trunc" = length(valid)))
      hint <- c(
        if (length(near)) c(i = "Did you mean {.arg {near}}?"),
        i = "Arguments passed on to the core: {.arg {all_valid}}."
      )
    }
    .abort(c("{.fn {fn}} has no argument{?s} {.arg {unknown}}.", hint),
      class = c("sclibra_unknown_argument", "sclibra_input_error"), unknown = unknown
    )
  }
  invisible(dots)
}
