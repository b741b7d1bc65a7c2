# Finding and loading the Python core ------------------------------------------------------

# Package-level state: the delay-loaded module proxies and the result of the first load.
.state <- new.env(parent = emptyenv())

#: name of the virtualenv created by install_sclibra()
.default_envname <- "r-sclibra"

#: first reticulate release that can load NumPy 2
.reticulate_numpy2 <- "1.36"

#: PyTorch version the package is built and tested against (CPU wheel)
.torch_version <- "2.13.0"

.onLoad <- function(libname, pkgname) {
  explicit <- Sys.getenv("SCLIBRA_PYTHON", "")
  if (nzchar(explicit) && !reticulate::py_available(initialize = FALSE)) {
    # a hint for reticulate's own discovery; .load_core() insists on it (required = TRUE)
    reticulate::use_python(.python_in(explicit), required = FALSE)
  }
  # Nothing is started here: reticulate imports the module on first use (delay_load). The
  # proxies are kept for users who want the raw Python objects (sclibra_python_module()).
  # With Python already running (another package, or R embedded in Python through rpy2)
  # reticulate imports at once instead: a failure must not stop the package from loading.
  .state$core <- tryCatch(
    reticulate::import(
      "sclibra",
      delay_load = list(
        priority = 5,
        environment = .default_envname,
        on_error = function(e) .abort_python(.diagnose(), parent = e)
      ),
      convert = FALSE
    ),
    error = function(e) NULL
  )
  .state$loaded <- FALSE
  invisible()
}

#' The Python interpreter sclibra will use
#'
#' Resolution order: the `SCLIBRA_PYTHON` environment variable (a Python executable or a
#' virtualenv directory), then `RETICULATE_PYTHON`, then the virtualenv made by
#' [install_sclibra()] (`r-sclibra`), then a Python that reticulate has already started.
#'
#' @return The path of a Python executable, or `NULL` when none is known; the attribute
#'   `"source"` says where it came from.
#' @export
#' @examples
#' sclibra_python()
sclibra_python <- function() {
  # path.expand, not normalizePath: a virtualenv's bin/python is a symlink that must not be
  # resolved, or Python would start outside the environment.
  found <- function(path, source) structure(path.expand(path), source = source)
  explicit <- Sys.getenv("SCLIBRA_PYTHON", "")
  if (nzchar(explicit)) {
    return(found(.python_in(explicit), "SCLIBRA_PYTHON"))
  }
  if (reticulate::py_available(initialize = FALSE)) {
    return(found(reticulate::py_config()$python, "already initialised"))
  }
  retic <- Sys.getenv("RETICULATE_PYTHON", "")
  if (nzchar(retic)) {
    return(found(.python_in(retic), "RETICULATE_PYTHON"))
  }
  env <- tryCatch(reticulate::virtualenv_python(.default_envname), error = function(e) NULL)
  if (!is.null(env) && file.exists(env)) {
    return(found(env, paste0("virtualenv '", .default_envname, "'")))
  }
  candidates <- Sys.which(c("python3", "python"))
  candidates <- candidates[nzchar(candidates)]
  if (length(candidates)) {
    return(found(candidates[[1]], "PATH"))
  }
  NULL
}

# A Python executable inside a virtualenv / conda directory, or the path itself.
.python_in <- function(path) {
  if (dir.exists(path)) {
    for (rel in c("bin/python", "bin/python3", "Scripts/python.exe", "python.exe")) {
      candidate <- file.path(path, rel)
      if (file.exists(candidate)) {
        return(candidate)
      }
    }
  }
  path
}

# Inspect a Python interpreter *in a subprocess*, so that a broken setup (NumPy 2, missing
# packages) is explained before it is loaded into this R session, where some failures crash R.
.probe_python <- function(python) {
  code <- paste(
    "import json, sys, importlib",
    "out = {'python_version': sys.version.split()[0]}",
    "for m in ('numpy', 'torch', 'anndata', 'scipy', 'pandas', 'sclibra'):",
    "    try:",
    "        out[m] = str(getattr(importlib.import_module(m), '__version__', 'unknown'))",
    "    except Exception as e:",
    "        out[m] = None",
    "        out[m + '_error'] = type(e).__name__ + ': ' + str(e).splitlines()[0] if str(e) else type(e).__name__",
    "print('SCLIBRA_PROBE' + json.dumps(out))",
    sep = "\n"
  )
  script <- tempfile(fileext = ".py")
  on.exit(unlink(script), add = TRUE)
  writeLines(code, script)
  res <- suppressWarnings(tryCatch(
    system2(python, script, stdout = TRUE, stderr = TRUE),
    error = function(e) structure(conditionMessage(e), status = 127L)
  ))
  line <- grep("^SCLIBRA_PROBE", res, value = TRUE)
  if (!length(line)) {
    return(list(ok = FALSE, output = paste(res, collapse = "\n")))
  }
  info <- .from_json(sub("^SCLIBRA_PROBE", "", line[[length(line)]]))
  info$ok <- TRUE
  info
}

.from_json <- function(text) jsonlite::fromJSON(text, simplifyVector = TRUE)

# Traps that crash or corrupt an R session when Python is loaded: check them first. Returns a
# character vector of problems (named cli bullets, interpolated in .abort_python() within this
# function's frame, kept as attribute "envir") or an empty vector.
.diagnose <- function(python = sclibra_python(), probe = TRUE, loaded = loadedNamespaces()) {
  problems <- character()
  frame <- environment()
  if ("torch" %in% loaded) {
    problems <- c(problems, c(
      x = "The R package {.pkg torch} is loaded in this session.",
      i = "It ships its own libtorch, which clashes with PyTorch's and can crash R.",
      i = "Restart R and use sclibra in a session that does not load {.pkg torch}."
    ))
  }
  if (is.null(python)) {
    return(.problems(c(problems, c(
      x = "No Python was found.",
      i = "Run {.run sclibra::install_sclibra()} to create a virtualenv with the core,",
      i = "or point {.envvar SCLIBRA_PYTHON} at a Python that has the {.pkg sclibra} module."
    )), frame))
  }
  if (!file.exists(python)) {
    return(.problems(c(problems, c(
      x = "Python {.file {python}} does not exist ({attr(python, 'source')}).",
      i = "Fix {.envvar SCLIBRA_PYTHON} or run {.run sclibra::install_sclibra()}."
    )), frame))
  }
  if (reticulate::py_available(initialize = FALSE)) {
    active <- path.expand(reticulate::py_config()$python)
    if (!identical(active, as.character(python)) &&
      identical(attr(python, "source"), "SCLIBRA_PYTHON")) {
      problems <- c(problems, c(
        x = "This R session already runs Python {.file {active}}.",
        i = "{.envvar SCLIBRA_PYTHON} asks for {.file {python}}; R can start only one Python.",
        i = "Restart R so that sclibra can start the Python you asked for."
      ))
    }
  }
  if (!probe) {
    return(.problems(problems, frame))
  }
  info <- .probe_python(python)
  if (!isTRUE(info$ok)) {
    return(.problems(c(problems, c(
      x = "Python {.file {python}} could not be run.",
      i = "Its output was: {info$output}"
    )), frame))
  }
  old_reticulate <- utils::packageVersion("reticulate") < .reticulate_numpy2
  if (!is.null(info$numpy) && old_reticulate &&
    package_version(info$numpy) >= "2.0") {
    problems <- c(problems, c(
      x = "Python {.file {python}} has NumPy {info$numpy}, which reticulate {utils::packageVersion('reticulate')} cannot load.",
      i = "Install NumPy 1.x there ({.code pip install \"numpy<2\"}) or run {.run sclibra::install_sclibra()},",
      i = "or upgrade reticulate to {.val {(.reticulate_numpy2)}} or later."
    ))
  }
  missing <- c("numpy", "torch", "anndata", "sclibra")
  missing <- missing[vapply(missing, function(m) is.null(info[[m]]), logical(1))]
  if (length(missing)) {
    reasons <- vapply(missing, function(m) {
      err <- info[[paste0(m, "_error")]]
      if (is.null(err)) m else paste0(m, " (", err, ")")
    }, character(1))
    problems <- c(problems, c(
      x = "Python {.file {python}} lacks {length(missing)} module{?s} sclibra needs: {reasons}.",
      i = "Run {.run sclibra::install_sclibra()} (a virtualenv with the core and pinned dependencies),",
      i = "or set {.envvar SCLIBRA_PYTHON} to a Python that has them."
    ))
  }
  .problems(problems, frame)
}

.problems <- function(x, envir) structure(x, envir = envir)

.abort_python <- function(problems, parent = NULL) {
  envir <- attr(problems, "envir") %||% environment()
  if (!length(problems)) {
    msg <- if (is.null(parent)) "unknown error" else conditionMessage(parent)
    problems <- c(x = "The Python core could not be loaded: {msg}")
  }
  cli::cli_abort(
    c("sclibra needs its Python core, which is not usable here.", problems),
    class = c("sclibra_python_unavailable", "sclibra_error"),
    call = NULL,
    .envir = envir
  )
}

# The Python `sclibra` module (convert = FALSE), loading it on first use after the checks.
.core <- function() {
  if (!isTRUE(.state$loaded)) {
    .load_core()
  }
  .state$core_module
}

# The R-only bridge module.
.bridge <- function() {
  if (!isTRUE(.state$loaded)) {
    .load_core()
  }
  .state$bridge
}

.load_core <- function() {
  python <- sclibra_python()
  problems <- .diagnose(python, probe = !reticulate::py_available(initialize = FALSE))
  if (length(problems)) {
    .abort_python(problems)
  }
  if (!reticulate::py_available(initialize = FALSE)) {
    reticulate::use_python(python, required = TRUE)
  }
  core <- tryCatch(
    withCallingHandlers(
      reticulate::import("sclibra", convert = FALSE),
      # reticulate < 1.29 mistakes any pyproject.toml in the working directory for a Poetry
      # project and warns; the Python is forced above, so the warning is noise
      warning = function(w) {
        if (grepl("Poetry|pyproject.toml", conditionMessage(w))) invokeRestart("muffleWarning")
      }
    ),
    error = function(e) .abort_python(.diagnose(python, probe = TRUE), parent = e)
  )
  .state$bridge <- reticulate::import("sclibra._r_bridge", convert = FALSE)
  # torch must bind to its own BLAS, not R's (30x slower training otherwise; see
  # sclibra._r_bridge.import_torch and benchmarks/bench_r_path.py)
  how <- .py(reticulate::py_to_r(.state$bridge$import_torch()), "Loading PyTorch")
  if (identical(how, "already-imported") && identical(Sys.info()[["sysname"]], "Linux")) {
    cli::cli_inform(c(
      "!" = "PyTorch was loaded before sclibra, so it may use R's BLAS and train many times slower.",
      i = "Load sclibra before anything that imports {.pkg torch} through reticulate."
    ))
  }
  .state$core_module <- core
  .state$loaded <- TRUE
  invisible(core)
}

#' Is the Python core usable?
#'
#' Checks, without raising an error, that a Python with the `sclibra` module and its
#' dependencies can be used from this R session. It loads Python when it is usable.
#'
#' @param verbose Print the reasons when the core is not usable.
#' @return `TRUE` or `FALSE`.
#' @export
#' @examples
#' sclibra_available()
sclibra_available <- function(verbose = FALSE) {
  ok <- tryCatch(
    {
      .core()
      TRUE
    },
    sclibra_python_unavailable = function(e) {
      if (verbose) message(conditionMessage(e))
      FALSE
    }
  )
  isTRUE(ok)
}

#' Versions of the Python core and its dependencies
#'
#' @return A named list: Python executable and version, and the versions of `sclibra`,
#'   NumPy, SciPy, pandas, anndata and PyTorch used from R.
#' @export
#' @examples
#' if (sclibra_available()) sclibra_config()
sclibra_config <- function() {
  report <- reticulate::py_to_r(.bridge()$environment_report())
  report$reticulate <- as.character(utils::packageVersion("reticulate"))
  structure(report, class = "sclibra_config")
}

#' @export
print.sclibra_config <- function(x, ...) {
  cat("sclibra Python configuration\n")
  for (name in names(x)) cat(sprintf("  %-15s %s\n", name, x[[name]]))
  invisible(x)
}

#' The raw Python module
#'
#' For advanced use: the Python `sclibra` module as a reticulate object (without automatic
#' conversion), e.g. to change `settings`.
#'
#' @return A reticulate module object.
#' @export
#' @examples
#' if (sclibra_available()) sclibra_python_module()$settings
sclibra_python_module <- function() .core()

#' Install the Python core
#'
#' Creates (or updates) a Python virtualenv with the `sclibra` Python package and its pinned
#' dependencies: CPU PyTorch `r .torch_version`, and NumPy 1.x when reticulate is older than
#' 1.36 (which cannot load NumPy 2). Restart R afterwards; sclibra then finds the environment
#' by itself (or set `SCLIBRA_PYTHON` to the printed path).
#'
#' @param envname Name or path of the virtualenv.
#' @param core What pip installs for the core: a requirement (`"sclibra"`, `"sclibra==0.1.0"`),
#'   a path to a source checkout (the directory holding `pyproject.toml`) or a wheel. Defaults
#'   to the `SCLIBRA_CORE` environment variable, else `"sclibra"`.
#' @param python Python used to create the virtualenv (default: found by reticulate).
#' @param torch_index Extra package index for PyTorch, e.g.
#'   `"https://download.pytorch.org/whl/cpu"` for the CPU-only build on Linux.
#' @param extra_packages More requirements to install.
#' @param new_env Remove an existing environment of that name first.
#' @param dry_run Only return the requirements that would be installed.
#' @return The path of the environment's Python (invisibly), or with `dry_run = TRUE` the
#'   character vector of pip requirements.
#' @export
#' @examples
#' install_sclibra(dry_run = TRUE)
install_sclibra <- function(envname = .default_envname,
                            core = Sys.getenv("SCLIBRA_CORE", "sclibra"),
                            python = NULL,
                            torch_index = NULL,
                            extra_packages = NULL,
                            new_env = FALSE,
                            dry_run = FALSE) {
  requirements <- .install_requirements(core, extra_packages)
  if (dry_run) {
    return(requirements)
  }
  if (reticulate::py_available(initialize = FALSE)) {
    cli::cli_inform(c(
      "!" = "Python is already running in this session; restart R after the installation."
    ))
  }
  if (new_env && reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_remove(envname, confirm = FALSE)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    args <- list(envname = envname)
    if (!is.null(python)) args$python <- python
    do.call(reticulate::virtualenv_create, args)
  }
  pip_options <- character()
  if (!is.null(torch_index)) {
    pip_options <- c(pip_options, paste0("--extra-index-url=", torch_index))
  }
  reticulate::virtualenv_install(
    envname,
    packages = requirements,
    ignore_installed = FALSE,
    pip_options = pip_options
  )
  py <- reticulate::virtualenv_python(envname)
  cli::cli_inform(c(
    v = "Installed the sclibra core into {.file {py}}.",
    i = "Restart R; sclibra will use it (or set {.envvar SCLIBRA_PYTHON} to that path)."
  ))
  invisible(py)
}

.install_requirements <- function(core, extra_packages = NULL) {
  if (!is.character(core) || length(core) != 1L || !nzchar(core)) {
    cli::cli_abort("{.arg core} must be one requirement or path, not {.obj_type_friendly {core}}.",
      class = "sclibra_error"
    )
  }
  if (file.exists(core)) {
    core <- normalizePath(core, mustWork = TRUE)
  }
  req <- c(paste0("torch==", .torch_version))
  if (utils::packageVersion("reticulate") < .reticulate_numpy2) {
    req <- c(req, "numpy<2")
  }
  c(req, core, extra_packages)
}
