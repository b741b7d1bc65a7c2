# What the user sees: errors, messages, the core's log lines and training progress -----------
#
# Everything goes through R's condition system: messages are cli messages (so
# suppressMessages() silences them), errors are classed cli errors. The core's log records are
# forwarded here from Python (sclibra._r_bridge._logs_to) instead of being written to stderr,
# and training progress is drawn by R from a per-epoch callback (the core's own bar is off).

`%||%` <- function(x, y) if (is.null(x)) y else x

# A classed, cli-formatted error. `...` are cli bullets; `.envir` is where {} is evaluated.
.abort <- function(message, ..., class = NULL, .envir = parent.frame(), call = NULL) {
  cli::cli_abort(message, ...,
    class = c(class, "sclibra_error"), .envir = .envir,
    call = call
  )
}

.msg <- function(verbose, ..., .envir = parent.frame()) {
  if (isTRUE(verbose)) cli::cli_inform(..., .envir = .envir)
}

# First few names for a message: 'a', 'b', 'c', ... (+12 more)
.some <- function(x, n = 5) {
  x <- as.character(x)
  shown <- paste(encodeString(utils::head(x, n), quote = "'"), collapse = ", ")
  if (length(x) > n) shown <- paste0(shown, ", ... (+", length(x) - n, " more)")
  shown
}

# Python-style argument advice in a core message, in R syntax: `overwrite=True` becomes
# `overwrite = TRUE`, `fill_missing=False` becomes `fill.missing = FALSE`.
.r_syntax <- function(text) {
  swap <- function(pattern, value) {
    m <- gregexpr(pattern, text, perl = TRUE)
    regmatches(text, m) <- lapply(regmatches(text, m), function(hit) {
      arg <- gsub("_", ".", sub("=.*$", "", hit), fixed = TRUE)
      paste0(arg, " = ", value)
    })
    text
  }
  text <- swap("\\b[a-z][a-z0-9_]*=True\\b", "TRUE")
  text <- swap("\\b[a-z][a-z0-9_]*=False\\b", "FALSE")
  swap("\\b[a-z][a-z0-9_]*=None\\b", "NULL")
}

.from_py <- function(x) {
  if (inherits(x, "python.builtin.object")) reticulate::py_to_r(x) else x
}

# The R function that receives the core's log records (level, text) while a call runs:
# INFO lines become messages only when verbose; WARNING and above always (as messages, so
# that suppressMessages() still silences them: they describe, they do not warn about R code).
# Argument advice in them is put in R syntax, as in the core's warnings and errors.
.log_receiver <- function(verbose) {
  function(level, text) {
    level <- .from_py(level)
    text <- .r_syntax(.from_py(text))
    if (level >= 30L || isTRUE(verbose)) {
      cli::cli_inform(c(i = "{text}"), class = "sclibra_message")
    }
    NULL
  }
}

# The core's tqdm bars (the aLIBRA trial bar, the epoch bar of the model it retrains), which
# sclibra._r_bridge._bars_to hands to this R function instead of writing them to stderr: one
# message when a bar starts, then one every `getOption("sclibra.progress.interval", 10)`
# seconds, and one when it ends; nothing unless verbose. Messages, so that suppressMessages()
# silences them.
.bar_receiver <- function(verbose) {
  state <- new.env(parent = emptyenv())
  state$last <- list()
  state$finished <- list()
  interval <- getOption("sclibra.progress.interval", 10)
  function(desc, n, total, postfix, done) {
    if (!isTRUE(verbose)) {
      return(NULL)
    }
    what <- as.character(.from_py(desc))
    what <- if (length(what) && nzchar(what)) what else "Progress"
    n <- as.integer(.from_py(n))
    total <- .from_py(total)
    postfix <- as.character(.from_py(postfix))
    done <- isTRUE(.from_py(done))
    last <- state$last[[what]]
    now <- Sys.time()
    if (done) {
      if (identical(state$finished[[what]], n)) {
        return(NULL)
      }
      state$finished[[what]] <- n
    } else if (!is.null(last) && as.numeric(difftime(now, last, units = "secs")) < interval) {
      return(NULL)
    } else {
      state$finished[[what]] <- NULL
    }
    state$last[[what]] <- now
    text <- paste0(
      what, ": ", n, if (!is.null(total)) paste0("/", as.integer(total)),
      if (length(postfix) && nzchar(postfix)) paste0(" (", postfix, ")")
    )
    cli::cli_inform(c(i = "{text}"), class = "sclibra_progress")
    NULL
  }
}

# Training progress, drawn in R from the core's per-epoch callback. Interactive sessions get a
# cli progress line (member, epoch, losses, best epoch, elapsed time); logs get one message every
# `getOption("sclibra.progress.interval", 10)` seconds, and one at the end. The epoch limit
# is shown with the early-stopping rule, not as an ETA that assumes every epoch will run. The
# best loss and its epoch are tracked per ensemble member (the core says whose epoch each call
# reports: members may train side by side, their epochs interleaving).
.progress <- function(verbose, what, max.epochs = NULL, patience = NULL) {
  state <- new.env(parent = baseenv()) # cli evaluates the bar's format in it
  state$start <- Sys.time()
  state$last <- state$start
  state$n.members <- NULL # set, with one best per member, by the first update
  state$bar <- NULL
  interval <- getOption("sclibra.progress.interval", 10)
  dynamic <- interactive() && cli::is_dynamic_tty()
  line <- function(member, n.members, epoch, tl, vl) {
    loss <- if (is.null(vl) || is.na(vl)) tl else vl
    limit <- if (is.null(max.epochs)) "" else paste0("/", max.epochs)
    who <- if (n.members > 1L) sprintf("%s member %d/%d", what, member, n.members) else what
    stop_rule <- ""
    if (!is.null(patience)) {
      stop_rule <- sprintf(
        ", stops at epoch %d at the latest without improvement", state$best.epoch[member] + patience
      )
    }
    sprintf(
      "%s: epoch %d%s, %s loss %.4g (best %.4g at epoch %d%s), %s",
      who, epoch, limit, if (is.null(vl) || is.na(vl)) "training" else "validation", loss,
      state$best[member], state$best.epoch[member], stop_rule,
      format(round(difftime(Sys.time(), state$start, units = "secs"), 1))
    )
  }
  update <- function(model, epoch, tl, vl) {
    if (!isTRUE(verbose)) {
      return(FALSE)
    }
    # the core's objects reach R unconverted (the module is imported with convert = FALSE)
    epoch <- as.integer(.from_py(epoch))
    tl <- .from_py(tl)
    vl <- .from_py(vl)
    if (is.null(state$n.members)) { # the ensemble's size, read once per fit
      state$n.members <- as.integer(.from_py(model$n_models))
      state$best <- rep(Inf, state$n.members)
      state$best.epoch <- integer(state$n.members)
    }
    member <- .from_py(model$training_member_)
    member <- if (is.null(member)) 1L else as.integer(member) + 1L
    loss <- if (is.null(vl) || is.na(vl)) tl else vl
    if (is.finite(loss) && loss < state$best[member]) {
      state$best[member] <- loss
      state$best.epoch[member] <- epoch
    }
    text <- line(member, state$n.members, epoch, tl, vl)
    if (dynamic) {
      if (is.null(state$bar)) {
        state$bar <- cli::cli_progress_bar(
          format = "{cli::pb_spin} {text}", total = NA, .envir = state, clear = TRUE
        )
      }
      state$text <- text
      cli::cli_progress_update(id = state$bar, .envir = state)
    } else if (as.numeric(difftime(Sys.time(), state$last, units = "secs")) >= interval) {
      state$last <- Sys.time()
      cli::cli_inform(text, class = "sclibra_progress")
    }
    FALSE
  }
  done <- function() {
    if (!is.null(state$bar)) cli::cli_progress_done(id = state$bar, .envir = state)
    invisible()
  }
  list(update = update, done = done)
}
