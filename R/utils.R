# Small internal helpers: errors, Python calls, argument checks -----------------------------

`%||%` <- function(x, y) if (is.null(x)) y else x

# A classed, cli-formatted error. `...` are cli bullets; `.envir` is where {} is evaluated.
.abort <- function(message, ..., class = NULL, .envir = parent.frame(), call = NULL) {
  cli::cli_abort(message, ...,
    class = c(class, "sclibra_error"), .envir = .envir,
    call = call
  )
}

# Run Python code and turn a Python exception into an R error that carries the core's message
# (e.g. "SclibraError: cells in A and B do not overlap"), not a traceback. The Python exception
# type is kept as the condition field `python_type`; core input errors get class
# "sclibra_python_error".
.py <- function(expr, what = NULL) {
  tryCatch(expr, error = function(e) .rethrow_python(e, what))
}

# Call a Python function; its Python warnings become R warnings, its exceptions R errors.
.py_call <- function(fn, ..., .what = NULL) {
  out <- .py(.bridge()$call_capturing_warnings(fn, ...), .what)
  for (w in reticulate::py_to_r(out$get("warnings"))) {
    warning(w, call. = FALSE)
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
  header <- if (is.null(what)) "{type}: {value}" else "{what} failed. {type}: {value}"
  rlang::abort(
    cli::format_inline(header),
    class = c(if (user_error) "sclibra_python_error", "sclibra_error"),
    python_type = type,
    python_message = value,
    call = NULL
  )
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

# First few names for a message: 'a', 'b', 'c', ... (+12 more)
.some <- function(x, n = 5) {
  x <- as.character(x)
  shown <- paste(encodeString(utils::head(x, n), quote = "'"), collapse = ", ")
  if (length(x) > n) shown <- paste0(shown, ", ... (+", length(x) - n, " more)")
  shown
}

.msg <- function(verbose, ..., .envir = parent.frame()) {
  if (isTRUE(verbose)) cli::cli_inform(..., .envir = .envir)
}
