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
#' virtualenv directory), then a Python that reticulate has already started in this session
#' (there can be only one), then `RETICULATE_PYTHON`, then the virtualenv made by
#' [install_sclibra()] (`r-sclibra`), then `python3` or `python` on the `PATH`.
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
  code <- c(
    "import json, sys, importlib",
    "out = {'python_version': sys.version.split()[0]}",
    "for m in ('numpy', 'torch', 'anndata', 'scipy', 'pandas', 'sclibra'):",
    "    try:",
    "        out[m] = str(getattr(importlib.import_module(m), '__version__', 'unknown'))",
    "    except Exception as e:",
    "        out[m] = None",
    "        out[m + '_error'] = type(e).__name__ + ': ' + str(e).splitlines()[0] if str(e) else type(e).__name__",
    "print('SCLIBRA_PROBE' + json.dumps(out))"
  )
  res <- .run_python_script(python, code,
    on_error = function(e) structure(conditionMessage(e), status = 127L),
    stdout = TRUE, stderr = TRUE
  )
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
  own <- as.character(utils::packageVersion("sclibra"))
  if (!is.null(info$sclibra) && !identical(as.character(info$sclibra), own)) {
    problems <- c(problems, .version_problem(python, info$sclibra, own))
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

# The core must be the one this R package was built with (the bridge between them is private).
.version_problem <- function(python, core, own) {
  c(
    x = paste0("Python {.file {python}} has the sclibra core ", core, ", but this R package is ", own, "."),
    i = "Run {.run sclibra::install_sclibra()} to install the core that ships with this R package."
  )
}

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
  core_version <- as.character(reticulate::py_to_r(reticulate::py_get_attr(core, "__version__")))
  own <- as.character(utils::packageVersion("sclibra"))
  if (!identical(core_version, own)) {
    .abort_python(.problems(.version_problem(python, core_version, own), environment()))
  }
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
#' Creates (or repairs) a Python virtualenv with the `sclibra` Python core and its pinned
#' dependencies: CPU PyTorch `r .torch_version`, and NumPy 1.x when reticulate is older than
#' 1.36 (which cannot load NumPy 2). Restart R afterwards; sclibra then finds the environment
#' by itself (or set `SCLIBRA_PYTHON` to the printed path).
#'
#' By default the core installed is the copy that ships inside this R package
#' (`system.file("core", package = "sclibra")`, made from the same source when the package was
#' built), so the R package and its core always have the same version and nothing is fetched
#' under the `sclibra` name from a public index. An environment left broken or half-made by an
#' earlier attempt is detected and rebuilt, with a message saying so.
#'
#' @param envname Name or path of the virtualenv.
#' @param core What to install as the core: `"bundled"` (default: the copy inside this R
#'   package), `"pypi"` (the published `sclibra` of this package's version, only when asked),
#'   or the path of a wheel or a source checkout (the folder holding `pyproject.toml`; never
#'   looked up in the working directory: give an absolute path or one starting with `./` or
#'   `~`). Defaults to the `SCLIBRA_CORE` environment variable, else `"bundled"`.
#' @param python Base Python interpreter used to create the virtualenv (default: found by
#'   reticulate).
#' @param torch_index Extra package index for PyTorch. The default on Linux is PyTorch's
#'   CPU-only index (the CPU build, not the GBs of the CUDA one), used when it answers within a
#'   few seconds (option `sclibra.index.timeout`, default 5); when it does not (offline, a
#'   firewall, a local mirror) a message says so and the pinned torch comes from pip's default
#'   index (its configuration). `NULL` uses only the default index (e.g. for a CUDA build); an
#'   index given here is used as given.
#' @param extra_packages More requirements to install.
#' @param new_env Remove an existing environment of that name first.
#' @param dry_run Only return the requirements that would be installed.
#' @return The path of the environment's Python (invisibly), or with `dry_run = TRUE` the
#'   character vector of pip requirements.
#' @export
#' @examples
#' install_sclibra(dry_run = TRUE)
install_sclibra <- function(envname = .default_envname,
                            core = Sys.getenv("SCLIBRA_CORE", "bundled"),
                            python = NULL,
                            torch_index = .default_torch_index(),
                            extra_packages = NULL,
                            new_env = FALSE,
                            dry_run = FALSE) {
  .check_flag(new_env)
  .check_flag(dry_run)
  source <- .core_source(core)
  requirements <- .install_requirements(source, extra_packages)
  if (dry_run) {
    return(requirements)
  }
  if (reticulate::py_available(initialize = FALSE)) {
    cli::cli_inform(c(
      "!" = "Python is already running in this session; restart R after the installation."
    ))
  }
  if (!is.null(python)) {
    .check_string(python)
    python <- .python_in(path.expand(python))
    if (!file.exists(python)) {
      .abort("The base Python {.file {python}} ({.arg python}) does not exist.")
    }
  }
  exists <- reticulate::virtualenv_exists(envname)
  if (exists && !new_env) {
    problem <- .env_problem(envname)
    if (!is.null(problem)) {
      cli::cli_inform(c(
        "!" = "The environment {.val {envname}} is {problem}: rebuilding it from scratch."
      ))
      new_env <- TRUE
    }
  }
  if (exists && new_env) {
    reticulate::virtualenv_remove(envname, confirm = FALSE)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    # no packages here (reticulate would add an unpinned numpy): everything comes pinned below
    args <- list(envname = envname, packages = NULL)
    if (!is.null(python)) args$python <- python
    tryCatch(do.call(reticulate::virtualenv_create, args), error = function(e) {
      .abort(c(
        "Creating the virtualenv {.val {envname}} failed: {conditionMessage(e)}",
        i = "The environment is incomplete; the next {.fn install_sclibra} rebuilds it."
      ))
    })
  }
  py <- reticulate::virtualenv_python(envname)
  unlink(.env_marker(py))
  # a read-only R library cannot host pip's build files: build from a private copy
  if (identical(source$kind, "bundled") || identical(source$kind, "dir")) {
    tmp <- tempfile("sclibra-core-")
    dir.create(tmp)
    on.exit(unlink(tmp, recursive = TRUE), add = TRUE)
    file.copy(source$path, tmp, recursive = TRUE)
    requirements[requirements == source$requirement] <- file.path(tmp, basename(source$path))
  }
  pip <- c("-m", "pip", "install", "--upgrade", "--upgrade-strategy", "only-if-needed")
  torch_index <- .torch_index_to_use(torch_index, py, default = missing(torch_index))
  if (!is.null(torch_index)) {
    pip <- c(pip, paste0("--extra-index-url=", torch_index))
  }
  cli::cli_inform(c(i = "Installing {.file {source$label}} and pinned dependencies into {.file {py}}."))
  status <- system2(py, c(pip, shQuote(requirements)))
  if (!identical(as.integer(status), 0L)) {
    .abort(c(
      "pip could not install the sclibra core into {.file {py}} (exit status {status}).",
      .no_ssl_hint(py),
      i = "The environment is marked incomplete; the next {.fn install_sclibra} rebuilds it."
    ))
  }
  info <- .probe_python(py)
  version <- as.character(utils::packageVersion("sclibra"))
  if (!isTRUE(info$ok) || is.null(info$sclibra) || is.null(info$torch)) {
    .abort(c(
      "The sclibra core was installed into {.file {py}} but cannot be imported.",
      i = "{info$sclibra_error %||% info$torch_error %||% info$output %||% ''}"
    ))
  }
  jsonlite::write_json(list(
    sclibra = info$sclibra, torch = info$torch, numpy = info$numpy, core = source$label,
    r_package = version, date = format(Sys.time(), tz = "UTC")
  ), .env_marker(py), auto_unbox = TRUE)
  cli::cli_inform(c(
    v = "Installed the sclibra core {info$sclibra} (torch {info$torch}, NumPy {info$numpy}) into {.file {py}}.",
    i = "Restart R; sclibra will use it (or set {.envvar SCLIBRA_PYTHON} to that path)."
  ))
  invisible(py)
}

.default_torch_index <- function() {
  if (identical(Sys.info()[["sysname"]], "Linux")) "https://download.pytorch.org/whl/cpu" else NULL
}

# The index to give pip for PyTorch. The default (PyTorch's CPU index) is used only when it
# answers within a few seconds: offline, behind a firewall or with a local mirror it does not,
# and pip would fail on it; torch (still pinned) then comes from pip's default index (its
# configuration: a mirror, or PyPI). An index the user gave is used as given. `reachable` is
# the check, function(url, python) -> TRUE / FALSE (an argument so that tests can set it).
.torch_index_to_use <- function(torch_index, python, default = TRUE, reachable = .index_reachable) {
  if (is.null(torch_index) || !default || isTRUE(reachable(torch_index, python))) {
    return(torch_index)
  }
  cli::cli_inform(c(
    "!" = "PyTorch's CPU index {.url {torch_index}} is not reachable: installing {.code torch=={(.torch_version)}} from pip's default index instead."
  ), class = "sclibra_torch_index_unreachable")
  NULL
}

# Does `url` answer (any HTTP status) within `timeout` seconds? Asked through `python`, the
# interpreter whose pip will download, so that its proxy settings apply.
.index_reachable <- function(url, python, timeout = getOption("sclibra.index.timeout", 5)) {
  code <- c(
    "import sys, urllib.request, urllib.error",
    "try:",
    "    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='HEAD'), timeout=float(sys.argv[2]))",
    "except urllib.error.HTTPError:",
    "    pass",
    "except Exception:",
    "    sys.exit(1)"
  )
  status <- .run_python_script(python, code, c(shQuote(url), timeout),
    on_error = function(e) 1L, stdout = FALSE, stderr = FALSE
  )
  identical(as.integer(status), 0L)
}

# Run the Python `code` (lines) with the interpreter `python` in a subprocess, with the
# arguments `args` (already quoted); `...` goes to system2(). Returns what system2() returns,
# or on_error(condition) when the interpreter cannot be started.
.run_python_script <- function(python, code, args = character(), on_error, ...) {
  script <- tempfile(fileext = ".py")
  on.exit(unlink(script), add = TRUE)
  writeLines(code, script)
  suppressWarnings(tryCatch(
    system2(python, c(shQuote(script), args), ...),
    error = on_error
  ))
}

# A Python built without its ssl module (some pyenv builds) cannot reach an HTTPS index, and
# pip then reports every package as missing: say so when pip failed.
.no_ssl_hint <- function(python) {
  ok <- suppressWarnings(tryCatch(
    system2(python, c("-c", shQuote("import ssl")), stdout = FALSE, stderr = FALSE),
    error = function(e) 1L
  ))
  if (identical(as.integer(ok), 0L)) {
    return(character())
  }
  c(
    x = "This Python has no {.pkg ssl} module, so pip cannot download from HTTPS indexes.",
    i = "Give {.fn install_sclibra} a Python built with ssl ({.arg python}), then {.code new_env = TRUE}."
  )
}

# Written into the environment after a complete installation; its absence marks a half-made one.
.env_marker <- function(python) {
  file.path(dirname(dirname(python)), "sclibra-install.json")
}

# Why an existing environment cannot be reused (NULL when it can).
.env_problem <- function(envname) {
  py <- tryCatch(reticulate::virtualenv_python(envname), error = function(e) "")
  if (!nzchar(py) || !file.exists(py)) {
    return("broken (its Python is missing)")
  }
  ok <- suppressWarnings(tryCatch(
    system2(py, c("-c", shQuote("import pip, sys")), stdout = FALSE, stderr = FALSE),
    error = function(e) 1L
  ))
  if (!identical(as.integer(ok), 0L)) {
    return("broken (its Python or pip does not run)")
  }
  if (!file.exists(.env_marker(py))) {
    return("half-made (an earlier installation did not finish)")
  }
  NULL
}

# Where the core comes from: the bundled copy, the published package, or an explicit path.
.core_source <- function(core) {
  if (!is.character(core) || length(core) != 1L || is.na(core) || !nzchar(core)) {
    .abort("{.arg core} must be {.val bundled}, {.val pypi} or a path, not {.obj_type_friendly {core}}.")
  }
  version <- as.character(utils::packageVersion("sclibra"))
  if (identical(core, "bundled")) {
    path <- system.file("core", package = "sclibra")
    if (!nzchar(path) || !file.exists(file.path(path, "pyproject.toml"))) {
      .abort(c(
        "This installation of the R package carries no copy of the Python core.",
        i = "Reinstall sclibra from its source (the build step copies {.file python/sclibra}), or use {.code core = \"pypi\"} or a path."
      ))
    }
    return(list(kind = "bundled", path = path, requirement = path, label = "the bundled core"))
  }
  if (identical(core, "pypi")) {
    req <- paste0("sclibra==", version)
    return(list(kind = "pypi", requirement = req, label = req))
  }
  # a path, never resolved against the working directory unless written as one
  if (!grepl("^(/|~|\\./|\\.\\./|[A-Za-z]:[/\\\\])", core)) {
    .abort(c(
      "{.arg core} must be {.val bundled}, {.val pypi}, or a path to a wheel or source checkout.",
      x = "{.val {core}} is none of these (paths must be absolute or start with {.code ./}, {.code ~}).",
      i = "A bare name is not looked up in the working directory, nor on a public index."
    ))
  }
  path <- path.expand(core)
  if (!file.exists(path)) {
    .abort("{.arg core}: {.file {path}} does not exist.")
  }
  path <- normalizePath(path, mustWork = TRUE)
  if (dir.exists(path)) {
    if (!file.exists(file.path(path, "pyproject.toml"))) {
      .abort("{.arg core}: {.file {path}} has no {.file pyproject.toml}; give a source checkout or a wheel.")
    }
    return(list(kind = "dir", path = path, requirement = path, label = path))
  }
  list(kind = "file", path = path, requirement = path, label = path)
}

.install_requirements <- function(source, extra_packages = NULL) {
  req <- c(paste0("torch==", .torch_version))
  if (utils::packageVersion("reticulate") < .reticulate_numpy2) {
    req <- c(req, "numpy<2")
  }
  c(req, source$requirement, extra_packages)
}
