# Finding Python, explaining known traps before they crash, and the install helper.

test_that("SCLIBRA_PYTHON selects the interpreter, also given as an environment directory", {
  withr::local_envvar(SCLIBRA_PYTHON = "/opt/some/python3")
  py <- sclibra_python()
  expect_equal(as.character(py), "/opt/some/python3")
  expect_equal(attr(py, "source"), "SCLIBRA_PYTHON")

  env <- withr::local_tempdir()
  dir.create(file.path(env, "bin"))
  file.create(file.path(env, "bin", "python"))
  withr::local_envvar(SCLIBRA_PYTHON = env)
  expect_equal(as.character(sclibra_python()), file.path(env, "bin", "python"))
})

test_that("a virtualenv's python symlink is not resolved (Python must start inside the env)", {
  dir <- withr::local_tempdir()
  target <- file.path(dir, "real-python")
  file.create(target)
  link <- file.path(dir, "venv-python")
  file.symlink(target, link)
  withr::local_envvar(SCLIBRA_PYTHON = link)
  expect_equal(as.character(sclibra_python()), link)
})

test_that("no Python, a missing interpreter and a broken one are explained", {
  text <- diagnose_text(NULL)
  expect_match(text, "No Python was found")
  expect_match(text, "install_sclibra()", fixed = TRUE)
  expect_match(text, "SCLIBRA_PYTHON")

  missing <- structure("/nonexistent/python", source = "SCLIBRA_PYTHON")
  expect_match(diagnose_text(missing), "/nonexistent/python.*does not exist")

  broken <- fake_python(NULL, status = 1)
  problems <- sclibra:::.diagnose(broken, loaded = character())
  err <- expect_error(sclibra:::.abort_python(problems), class = "sclibra_python_unavailable")
  expect_match(conditionMessage(err), "could not be run")
  expect_match(conditionMessage(err), "something went wrong")
})

test_that("NumPy 2 with reticulate < 1.36 is detected before Python is loaded", {
  py <- fake_python('{"python_version": "3.11.0", "numpy": "2.1.0", "torch": "2.13.0", "anndata": "0.10.0", "scipy": "1.13.0", "pandas": "2.2.0", "sclibra": "0.1.0"}')
  text <- diagnose_text(py)
  if (utils::packageVersion("reticulate") < "1.36") {
    expect_match(text, "NumPy 2.1.0")
    expect_match(text, "numpy<2", fixed = TRUE)
  } else {
    expect_false(grepl("NumPy", text))
  }
})

test_that("missing Python modules are listed with their import errors", {
  py <- fake_python('{"python_version": "3.11.0", "numpy": "1.26.4", "torch": null, "torch_error": "ModuleNotFoundError: No module named torch", "anndata": "0.10.0", "scipy": "1.13.0", "pandas": "2.2.0", "sclibra": null}')
  text <- diagnose_text(py)
  expect_match(text, "lacks 2 modules")
  expect_match(text, "No module named torch")
  expect_match(text, "sclibra")
})

test_that("the R torch package in the session is flagged (two libtorch builds clash)", {
  own <- as.character(utils::packageVersion("sclibra"))
  py <- fake_python(sprintf('{"python_version": "3.11.0", "numpy": "1.26.4", "torch": "2.13.0", "anndata": "0.10.0", "scipy": "1.13.0", "pandas": "2.2.0", "sclibra": "%s"}', own))
  expect_equal(diagnose_text(py, loaded = c("stats", "utils")), "")
  text <- diagnose_text(py, loaded = c("stats", "torch"))
  expect_match(text, "torch")
  expect_match(text, "Restart R")
})

test_that("asking for another Python than the one already running is explained", {
  need_core() # starts the configured Python in this session
  other <- fake_python('{"numpy": "1.26.4"}', source = "SCLIBRA_PYTHON")
  text <- diagnose_text(other)
  expect_match(text, "already runs Python")
  expect_match(text, "Restart R")
  # the same request from another source is not a conflict
  own <- as.character(utils::packageVersion("sclibra"))
  same <- fake_python(sprintf('{"numpy": "1.26.4", "torch": "2.13.0", "anndata": "0.10", "sclibra": "%s"}', own))
  expect_false(grepl("already runs", diagnose_text(same), fixed = TRUE))
})

test_that("install_sclibra() installs the bundled core by default, with torch and NumPy pinned", {
  req <- install_sclibra(dry_run = TRUE)
  expect_equal(req[[1]], "torch==2.13.0")
  expect_equal("numpy<2" %in% req, utils::packageVersion("reticulate") < "1.36")
  bundled <- system.file("core", package = "sclibra")
  expect_true(bundled %in% req)
  expect_true(file.exists(file.path(bundled, "pyproject.toml")))
  expect_true(file.exists(file.path(bundled, "python", "sclibra", "__init__.py")))
  expect_false(any(grepl("^sclibra", req)))

  # the published name only when asked, at this package's version
  version <- as.character(utils::packageVersion("sclibra"))
  expect_true(paste0("sclibra==", version) %in% install_sclibra(core = "pypi", dry_run = TRUE))

  src <- withr::local_tempdir()
  writeLines("[project]", file.path(src, "pyproject.toml"))
  req <- install_sclibra(core = src, extra_packages = "mudata", dry_run = TRUE)
  expect_true(normalizePath(src) %in% req)
  expect_true("mudata" %in% req)
  expect_error(install_sclibra(core = "", dry_run = TRUE), class = "sclibra_error")
  # a folder without pyproject.toml is not a source checkout
  expect_error(install_sclibra(core = withr::local_tempdir(), dry_run = TRUE), "pyproject.toml")

  withr::local_envvar(SCLIBRA_CORE = "pypi")
  expect_true(paste0("sclibra==", version) %in% install_sclibra(dry_run = TRUE))
})

test_that("core = 'sclibra' is never resolved against the working directory", {
  wd <- withr::local_tempdir()
  dir.create(file.path(wd, "sclibra"))
  writeLines("[project]", file.path(wd, "sclibra", "pyproject.toml"))
  withr::local_dir(wd)
  err <- expect_error(install_sclibra(core = "sclibra", dry_run = TRUE), class = "sclibra_error")
  expect_match(cli::ansi_strip(conditionMessage(err)), "not looked up in the working directory")
  # written as a path it is the user's explicit choice
  expect_true(normalizePath("sclibra") %in% install_sclibra(core = "./sclibra", dry_run = TRUE))
})

test_that("a half-made or broken environment is detected (and rebuilt, with a message)", {
  env <- withr::local_tempdir()
  dir.create(file.path(env, "bin"))
  # no Python in it: broken
  expect_match(sclibra:::.env_problem(env), "broken")
  # a Python that runs but no completion marker: half-made
  skip_if(!nzchar(Sys.which("python3")), "no python3 on PATH")
  file.symlink(Sys.which("python3"), file.path(env, "bin", "python"))
  problem <- sclibra:::.env_problem(env)
  expect_true(grepl("half-made", problem) || grepl("pip does not run", problem))
  if (grepl("half-made", problem)) {
    writeLines("{}", sclibra:::.env_marker(file.path(env, "bin", "python")))
    expect_null(sclibra:::.env_problem(env))
  }
})

test_that("a core of another version than the R package is refused with the fix", {
  py <- fake_python('{"python_version": "3.11.0", "numpy": "1.26.4", "torch": "2.13.0", "anndata": "0.10.0", "scipy": "1.13.0", "pandas": "2.2.0", "sclibra": "0.0.9"}')
  text <- diagnose_text(py)
  expect_match(text, "sclibra core 0.0.9")
  expect_match(text, as.character(utils::packageVersion("sclibra")), fixed = TRUE)
  expect_match(text, "install_sclibra()", fixed = TRUE)
})

test_that("torch is loaded with its own BLAS inside R (not R's reference BLAS)", {
  need_core()
  cfg <- sclibra_config()
  if (identical(Sys.info()[["sysname"]], "Linux")) {
    expect_equal(cfg$torch_import, "deepbind")
  }
  # a 280 x 1000 by 1000 x 512 product takes a few ms with MKL, ~30x longer on reference BLAS
  torch <- reticulate::import("torch")
  a <- torch$randn(280L, 1000L)
  w <- torch$randn(512L, 1000L)
  f <- torch$nn$functional$linear
  invisible(f(a, w))
  t0 <- Sys.time()
  for (i in 1:10) invisible(f(a, w))
  per_call <- as.numeric(Sys.time() - t0, units = "secs") / 10
  expect_lt(per_call, 0.1)
})

test_that("the configured Python core is found and reports its versions", {
  need_core()
  expect_true(sclibra_available())
  cfg <- sclibra_config()
  expect_s3_class(cfg, "sclibra_config")
  expect_match(cfg$torch, "^2\\.")
  expect_true(package_version(cfg$numpy) < "2.0" || utils::packageVersion("reticulate") >= "1.36")
  expect_output(print(cfg), "sclibra Python configuration")
})

test_that("in a fresh session without a usable Python, users get the explanation, not a crash", {
  installed <- find.package("sclibra", lib.loc = .libPaths(), quiet = TRUE)
  skip_if(!length(installed), "sclibra is not installed in a library (development load)")
  rscript <- file.path(R.home("bin"), "Rscript")
  code <- paste(
    "library(sclibra)",
    "cat('available:', sclibra_available(), '\\n')",
    "x <- Matrix::rsparsematrix(5, 4, 0.5, dimnames = list(letters[1:5], LETTERS[1:4]))",
    "res <- tryCatch(RunLIBRA(x, x, verbose = FALSE), sclibra_python_unavailable = function(e) conditionMessage(e))",
    "cat(res, sep = '\\n')",
    sep = "; "
  )
  env <- "SCLIBRA_PYTHON=/nonexistent/bin/python"
  out <- suppressWarnings(system2(rscript, c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE, env = env))
  text <- paste(out, collapse = "\n")
  expect_match(text, "available: FALSE")
  expect_match(text, "sclibra needs its Python core")
  expect_match(text, "/nonexistent/bin/python")
  expect_match(text, "does not exist")
  expect_false(grepl("Traceback", text))
})

test_that("R's seed default is the core's (NULL: sclibra.settings.seed), not a number of its own", {
  for (method in c("RunLIBRA.default", "RunLIBRA.Seurat", "RunLIBRA.SingleCellExperiment",
                   "TuneLIBRA.default", "TuneLIBRA.Seurat", "TuneLIBRA.SingleCellExperiment")) {
    fn <- utils::getFromNamespace(method, "sclibra")
    expect_true("seed" %in% names(formals(fn)), info = method)
    expect_null(formals(fn)$seed, info = method)
  }
  need_core()
  core_seed <- reticulate::py_to_r(sclibra_python_module()$settings$seed)
  x <- toy_matrix(20, 40)
  y <- toy_matrix(6, 40, prefix = "p", seed = 2)
  args <- list(x, y, n.nodes = 16, max.epochs = 2, verbose = FALSE)
  by_default <- do.call(RunLIBRA, args)
  explicit <- do.call(RunLIBRA, c(args, list(seed = core_seed)))
  expect_equal(by_default$embedding, explicit$embedding)
})

test_that("install_sclibra() falls back to pip's default index when PyTorch's CPU index does not answer", {
  url <- "https://download.pytorch.org/whl/cpu"
  asked <- character()
  up <- function(url, python) {
    asked <<- c(asked, url)
    TRUE
  }
  down <- function(url, python) FALSE
  # reachable: the CPU index is used, silently
  expect_silent(expect_identical(sclibra:::.torch_index_to_use(url, "python", reachable = up), url))
  expect_identical(asked, url)
  # unreachable default: one message, and pip's default index (NULL) for the pinned torch
  msg <- expect_message(
    res <- sclibra:::.torch_index_to_use(url, "python", reachable = down),
    "not reachable",
    class = "sclibra_torch_index_unreachable"
  )
  expect_null(res)
  expect_match(conditionMessage(msg), paste0("torch==", sclibra:::.torch_version), fixed = TRUE)
  # an index the user gave is used as given; no index: nothing to check
  expect_silent(expect_identical(
    sclibra:::.torch_index_to_use(url, "python", default = FALSE, reachable = down), url
  ))
  expect_null(sclibra:::.torch_index_to_use(NULL, "python", reachable = function(...) stop("not called")))
  # the pinned torch is what is installed either way
  expect_equal(install_sclibra(dry_run = TRUE)[[1]], paste0("torch==", sclibra:::.torch_version))
})

test_that("the index check gives up quickly on an address that does not answer", {
  python <- Sys.getenv("SCLIBRA_PYTHON", Sys.which("python3"))
  skip_if_not(nzchar(python) && file.exists(python), "no Python to run the check")
  elapsed <- system.time(
    ok <- sclibra:::.index_reachable("http://127.0.0.1:9/whl/cpu", python, timeout = 2)
  )[["elapsed"]]
  expect_false(ok)
  expect_lt(elapsed, 15)
})

test_that("a failed pip names a Python without ssl as the cause", {
  no_ssl <- fake_python(status = 1)
  hint <- sclibra:::.no_ssl_hint(no_ssl)
  expect_match(hint[["x"]], "no {.pkg ssl} module", fixed = TRUE)
  with_ssl <- fake_python(probe_json = "{}", status = 0)
  expect_identical(sclibra:::.no_ssl_hint(with_ssl), character())
})
