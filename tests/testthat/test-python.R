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
  py <- fake_python('{"python_version": "3.11.0", "numpy": "1.26.4", "torch": "2.13.0", "anndata": "0.10.0", "scipy": "1.13.0", "pandas": "2.2.0", "sclibra": "0.1.0"}')
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
  expect_false(grepl("already runs", diagnose_text(fake_python('{"numpy": "1.26.4", "torch": "2.13.0", "anndata": "0.10", "sclibra": "0.1.0"}')), fixed = TRUE))
})

test_that("install_sclibra() pins CPU torch and NumPy 1.x for old reticulate", {
  req <- install_sclibra(core = "sclibra==0.1.0", dry_run = TRUE)
  expect_equal(req[[1]], "torch==2.13.0")
  expect_true("sclibra==0.1.0" %in% req)
  expect_equal("numpy<2" %in% req, utils::packageVersion("reticulate") < "1.36")

  src <- withr::local_tempdir()
  req <- install_sclibra(core = src, extra_packages = "mudata", dry_run = TRUE)
  expect_true(normalizePath(src) %in% req)
  expect_true("mudata" %in% req)
  expect_error(install_sclibra(core = "", dry_run = TRUE), class = "sclibra_error")

  withr::local_envvar(SCLIBRA_CORE = "sclibra @ file:///tmp/core")
  expect_true("sclibra @ file:///tmp/core" %in% install_sclibra(dry_run = TRUE))
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
