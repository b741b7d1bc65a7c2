# Crossing to the Python core: calls, errors, matrices, and the arguments the core owns -----
#
# R containers hold features x cells; the core wants cells x features. A dgCMatrix goes to
# Python as a scipy CSC matrix: reticulate's np_array() copies the x / i / p vectors once (it
# sets a dim attribute) and NumPy borrows that copy; sclibra._r_bridge.anndata_from_r() then
# transposes it into a CSR matrix without a copy. A dense double matrix is borrowed as is
# (Fortran-ordered view, transposed into a C-ordered view). Other sparse classes are converted
# to a dgCMatrix first (.as_bridge_matrix()): that is the one copy. Results come back once.
#
# The core owns the defaults and bounds of its arguments. R methods declare the common ones as
# formals defaulting to NULL ("the core's default") and accept any other core argument in
# `...`; .core_args() passes on only what the user gave, under its Python name, after checking
# the names against the core's signatures (sclibra._r_bridge.core_arguments()).

# Run Python code and turn a Python exception into an R error that carries the core's message
# (e.g. "SclibraError: cells in A and B do not overlap"), not a traceback. The Python exception
# type is kept as the condition field `python_type`; core input errors get class
# "sclibra_python_error".
.py <- function(expr, what = NULL) {
  tryCatch(expr, error = function(e) .rethrow_python(e, what))
}

# Call a core function: its log records reach R as messages (all of them when `.verbose`,
# warnings otherwise), its Python warnings become R warnings, its exceptions R errors. The
# core's own progress bars are off by default; a bar the call asks for (TuneLIBRA's trials)
# reaches R as messages (.bar_receiver()), never stderr. `.threads`: the core's training
# threads for this call (`settings.num_threads`; NULL leaves the core's own decision).
.py_call <- function(fn, ..., .what = NULL, .verbose = FALSE, .threads = NULL) {
  settings <- .core()$settings
  old_level <- reticulate::py_to_r(settings$verbosity)
  old_progress <- reticulate::py_to_r(settings$progress)
  old_threads <- settings$num_threads
  settings$verbosity <- if (isTRUE(.verbose)) "info" else "warning"
  settings$progress <- FALSE
  if (!is.null(.threads)) settings$num_threads <- as.integer(.threads)
  on.exit(
    {
      settings$verbosity <- old_level
      settings$progress <- old_progress
      settings$num_threads <- old_threads
    },
    add = TRUE
  )
  out <- .py(.bridge()$call_capturing_warnings(fn, ...,
    `_r_log` = .log_receiver(.verbose), `_r_bars` = .bar_receiver(.verbose)
  ), .what)
  for (w in reticulate::py_to_r(out$get("warnings"))) {
    warning(.r_syntax(w), call. = FALSE)
  }
  out$get("result")
}

.rethrow_python <- function(e, what = NULL) {
  if (inherits(e, "sclibra_error")) {
    stop(e)
  }
  info <- tryCatch(reticulate::py_last_error(), error = function(err) NULL)
  msg <- conditionMessage(e)
  is_python <- !is.null(info) && !is.null(info$value) &&
    grepl(info$type %||% "", msg, fixed = TRUE)
  if (!is_python) {
    stop(e)
  }
  type <- info$type
  value <- trimws(info$value)
  user_error <- type %in% c(
    "SclibraError", "NotTrainedError", "FeatureMismatchError", "ModelFileError",
    "OutputError", "LockedError", "ValueError", "FileExistsError", "FileNotFoundError",
    "KeyError", "TypeError"
  )
  # advice such as `overwrite=True` reads `overwrite = TRUE` in R; the field keeps the original
  shown <- .r_syntax(value)
  header <- if (is.null(what)) "{type}: {shown}" else "{what} failed. {type}: {shown}"
  rlang::abort(
    cli::format_inline(header),
    class = c(if (user_error) "sclibra_python_error", "sclibra_error"),
    python_type = type,
    python_message = value,
    call = NULL
  )
}

# An R features x cells matrix as a Python AnnData (cells x features), sharing memory.
.to_anndata <- function(x, what) {
  x <- .as_bridge_matrix(x, what)
  bridge <- .bridge() # first: checks and starts the right Python before reticulate converts
  px <- reticulate::r_to_py(x)
  .py(bridge$anndata_from_r(px, as.list(colnames(x)), as.list(rownames(x)), what))
}

# A Python cells x latent array as an R matrix: cell names as rows, `key`1.. as columns.
.latent_from_py <- function(z, cells, key) {
  z <- reticulate::py_to_r(.bridge()$latent_to_r(z))
  dimnames(z) <- list(cells, paste0(key, seq_len(ncol(z))))
  z
}

# A Python prediction (AnnData, cells x features) as an R features x cells dense matrix.
.prediction_from_py <- function(pred) {
  x <- reticulate::py_to_r(.bridge()$dense_to_r(pred$X))
  dimnames(x) <- list(
    as.character(reticulate::py_to_r(pred$var_names$tolist())),
    as.character(reticulate::py_to_r(pred$obs_names$tolist()))
  )
  x
}

# A dgCMatrix from the slots sent by sclibra._r_bridge.sparse_to_r().
.dgc_from_slots <- function(slots, dimnames) {
  methods::new("dgCMatrix",
    x = as.double(slots$x), i = as.integer(slots$i), p = as.integer(slots$p),
    Dim = as.integer(slots$dim), Dimnames = dimnames
  )
}

# A pandas DataFrame as an R data.frame (through sclibra._r_bridge.frame_to_r()).
.frame_from_py <- function(frame) {
  .frame_from_parts(reticulate::py_to_r(.bridge()$frame_to_r(frame)))
}

.frame_from_parts <- function(parts) {
  columns <- as.character(unlist(parts$columns))
  out <- lapply(columns, function(col) {
    v <- parts$data[[col]]
    if (is.list(v)) {
      v <- vapply(v, function(e) if (is.null(e)) NA_character_ else as.character(e), "")
    }
    as.vector(v)
  })
  names(out) <- columns
  df <- as.data.frame(out, stringsAsFactors = FALSE, optional = TRUE)
  if (length(parts$index)) {
    rownames(df) <- as.character(unlist(parts$index))
  }
  df
}

# Whole numbers go to Python as int (the core checks types strictly).
.pyify <- function(x) {
  if (is.double(x) && length(x) == 1L && !is.na(x) && x == round(x) && abs(x) < .Machine$integer.max) {
    return(as.integer(x))
  }
  x
}

# The core's public arguments ("model", "fit", "tune", "evaluate", "consistency") as a named
# list of their defaults (NULL where none), read once per session from the core.
.core_defaults <- function(which) {
  if (is.null(.state$core_arguments)) {
    .state$core_arguments <- reticulate::py_to_r(
      .py(.bridge()$core_arguments(), "Reading the core's arguments")
    )
  }
  .state$core_arguments[[which]]
}

.core_arguments <- function(which) names(.core_defaults(which))

# Arguments of the core functions `which` (model, fit, ...) that the user gave, from `values`
# (R names: formals and `...`): NULL means "the core's default" and is left out; names become
# Python names (dots to underscores); whole numbers become integers. Returns one list per
# function. Arguments set by R itself (`reserved`) cannot be given in `...`.
.core_args <- function(values, which, fn, reserved = character()) {
  values <- values[!vapply(values, is.null, TRUE)]
  py_names <- gsub(".", "_", names(values), fixed = TRUE)
  known <- lapply(stats::setNames(which, which), .core_arguments)
  all_known <- setdiff(unique(unlist(known)), reserved)
  .check_dots(values, all_known, fn)
  .check_no_na(values, fn)
  dup <- unique(py_names[duplicated(py_names)])
  if (length(dup)) {
    .abort("{.fn {fn}}: {.arg {gsub('_', '.', dup, fixed = TRUE)}} given twice (R and Python spelling).",
      class = "sclibra_input_error"
    )
  }
  names(values) <- py_names
  values <- lapply(values, .pyify)
  lapply(known, function(k) values[intersect(names(values), setdiff(k, reserved))])
}

# The shared first half of training and tuning: check both modalities, pair the cells, resolve
# the training cells, select the features, and send both matrices to Python.
.prepare_pair <- function(a, b, name_a, name_b, features, output.features, train.cells, meta,
                          verbose) {
  a <- .validate_matrix(a, name_a)
  b <- .validate_matrix(b, name_b)
  shared <- .shared_cells(a, b, name_a, name_b)
  train <- .resolve_train_cells(train.cells, shared, meta)
  fit_cells <- train %||% shared
  a <- .select_features(a, features, name_a, fit_cells, verbose)
  b <- .select_features(b, output.features, name_b, fit_cells, verbose)
  list(
    a = a, b = b, ad_a = .to_anndata(a, name_a), ad_b = .to_anndata(b, name_b),
    train = if (is.null(train)) NULL else as.list(train), cells = colnames(a),
    n.fit = length(fit_cells)
  )
}
