# aLIBRA from R: the trial table, the selected model, resuming a search.

test_that("TuneLIBRA on a Seurat object returns the trial table and a trained best model", {
  need_core()
  seu <- example_data("cite")
  dir <- withr::local_tempdir()
  tuned <- TuneLIBRA(seu,
    input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
    grid = list(n.nodes = c(16, 32), latent.dim = 6), strategy = "grid", max.epochs = 3,
    out.dir = file.path(dir, "search"), verbose = FALSE
  )
  expect_s3_class(tuned, "LIBRATuneResult")
  trials <- tuned$trials
  expect_equal(nrow(trials), 2L)
  expect_true(all(c("trial_id", "status", "n_nodes", "latent_dim", "val_loss") %in% names(trials)))
  expect_setequal(trials$n_nodes, c(16, 32))
  expect_true(all(trials$status == "ok"))
  best <- trials[which.min(trials$val_loss), ]
  expect_equal(tuned$best.config$n_nodes, best$n_nodes)
  expect_equal(tuned$best.trial$trial_id, best$trial_id)
  model <- tuned$model
  expect_s3_class(model, "LIBRAModel")
  expect_equal(model$config$n_nodes, best$n_nodes)
  expect_equal(model$config$latent_dim, 6)
  expect_equal(model$input.assay, "RNA")
  expect_setequal(c(model$train.cells, model$validation.cells), colnames(seu)[seu$is_train])
  expect_output(print(tuned), "aLIBRA search \\(prediction\\): 2 trials \\(2 ok\\)")

  # the tuned model applies to the object like any other
  seu <- run_fast(seu, input.assay = "RNA", output.assay = "ADT", max.epochs = 1)
  seu <- LIBRAPredict(seu, model = model, reduction.name = "libra_tuned", verbose = FALSE)
  tuned_emb <- SeuratObject::Embeddings(seu, "libra_tuned")
  expect_equal(dim(tuned_emb), c(600L, 6L))
  # "LIBRA_" is taken by the first reduction: the second gets a key from its name
  expect_equal(colnames(tuned_emb), paste0("LIBRATUNED_", 1:6))
  expect_equal(SeuratObject::Key(seu[["libra"]]), "LIBRA_")

  # running the same search on the same folder resumes it: nothing is trained again
  again <- TuneLIBRA(seu,
    input.assay = "RNA", output.assay = "ADT", train.cells = "is_train",
    grid = list(n.nodes = c(16, 32), latent.dim = 6), strategy = "grid", max.epochs = 3,
    out.dir = file.path(dir, "search"), verbose = FALSE
  )
  expect_equal(again$trials$val_loss, trials$val_loss)
  expect_equal(again$trials$seconds, trials$seconds)
})

test_that("TuneLIBRA's batch.key: every trial validates on whole batches of the search cells", {
  need_core()
  seu <- example_data("cite")
  seu$donor <- rep(c("d1", "d2", "d3", "d4"), length.out = ncol(seu))
  dir <- withr::local_tempdir()
  tuned <- TuneLIBRA(seu,
    input.assay = "RNA", output.assay = "ADT", batch.key = "donor",
    grid = list(n.nodes = 16, latent.dim = 4), strategy = "grid", max.epochs = 2,
    out.dir = file.path(dir, "search"), verbose = FALSE
  )
  expect_true(all(tuned$trials$status == "ok"))
  model <- tuned$model
  donors <- stats::setNames(seu$donor, colnames(seu))
  # the selected model, trained as in its trial (one network): one whole donor validates
  expect_equal(model$config$n_models, 1L)
  val <- unique(donors[model$validation.cells])
  expect_length(val, 1L)
  expect_length(model$validation.cells, 150L)
  expect_error(
    TuneLIBRA(seu,
      input.assay = "RNA", output.assay = "ADT", batch.key = "nope", grid = list(n.nodes = 16),
      strategy = "grid", max.epochs = 1, out.dir = file.path(dir, "bad"), verbose = FALSE
    ),
    "nope",
    class = "sclibra_missing_column"
  )
  expect_false(dir.exists(file.path(dir, "bad", "trials")))
})

test_that("TuneLIBRA's labels may be NA outside the search cells, not inside", {
  need_core()
  seu <- example_data("cite")
  seu$ref <- ifelse(seu$is_train, as.character(seu$cell_type_coarse), NA)
  dir <- withr::local_tempdir()
  tune <- function(...) {
    TuneLIBRA(seu,
      input.assay = "RNA", output.assay = "ADT", train.cells = "is_train", labels = "ref",
      objective = "integration", grid = list(n.nodes = 16, latent.dim = 4), strategy = "grid",
      max.epochs = 1, verbose = FALSE, ...
    )
  }
  tuned <- tune(out.dir = file.path(dir, "ok"))
  expect_true(all(tuned$trials$status == "ok"))
  expect_true(all(tuned$trials$ppji >= 0 & tuned$trials$ppji <= 1))
  first <- colnames(seu)[seu$is_train][2]
  seu$ref[match(first, colnames(seu))] <- NA
  expect_error(tune(out.dir = file.path(dir, "bad")), first, class = "sclibra_na_error")
})

test_that("grids are translated for the core and bad input is refused", {
  expect_equal(
    sclibra:::.grid_to_py(list(n.nodes = c(64, 128), dropout = 0.1)),
    list(n_nodes = list(64L, 128L), dropout = list(0.1))
  )
  expect_equal(sclibra:::.grid_to_py("prediction"), "prediction")
  expect_error(sclibra:::.grid_to_py(list(1, 2)), "named list", class = "sclibra_input_error")
  expect_error(sclibra:::.grid_to_py(list(n.nodes = numeric())), "at least one", class = "sclibra_input_error")
  need_core()
  # the core checks its own arguments (R restates no list of valid values)
  expect_error(TuneLIBRA(toy_matrix(), toy_matrix(prefix = "p"), objective = "speed", verbose = FALSE),
    "unknown objective 'speed'",
    class = "sclibra_python_error"
  )
  err <- expect_error(
    TuneLIBRA(toy_matrix(), toy_matrix(prefix = "p"), grid = list(n.wings = 2), verbose = FALSE),
    class = "sclibra_python_error"
  )
  expect_match(conditionMessage(err), "n_wings")
  expect_error(TuneLIBRA(toy_matrix(), toy_matrix(prefix = "p"), backend = "spark", verbose = FALSE),
    "unknown backend 'spark'",
    class = "sclibra_python_error"
  )
  expect_error(TuneLIBRA(toy_matrix(), toy_matrix(prefix = "p"), n.trails = 3, verbose = FALSE),
    "no argument `n.trails`",
    class = "sclibra_unknown_argument"
  )
  expect_error(TuneLIBRA(toy_matrix(), toy_matrix(prefix = "p"), backend = "ray", verbose = FALSE),
    "ray start --head", class = "sclibra_input_error"
  )
  # a distribution of the core is sampled from, as documented
  lr <- sclibra_python_module()$tune$loguniform(1e-4, 1e-2)
  expect_identical(sclibra:::.grid_to_py(list(learning.rate = lr))$learning_rate, lr)
  tuned <- TuneLIBRA(toy_matrix(n_cells = 60), toy_matrix(n_cells = 60, prefix = "p"),
    grid = list(learning.rate = lr, n.nodes = 8), strategy = "random", n.trials = 3,
    max.epochs = 1, out.dir = file.path(withr::local_tempdir(), "s"), verbose = FALSE
  )
  rates <- tuned$trials$learning_rate
  expect_length(unique(rates), 3L)
  expect_true(all(rates >= 1e-4 & rates <= 1e-2))
})

test_that("TuneLIBRA's progress and logs go through R's conditions: suppressMessages() silences them", {
  need_core()
  a <- toy_matrix(n_cells = 40)
  b <- toy_matrix(n_features = 5, n_cells = 40, prefix = "p", seed = 2)
  tiny <- function(...) {
    TuneLIBRA(a, b,
      grid = list(n.nodes = 8, latent.dim = 2), strategy = "grid", max.epochs = 2, ...
    )
  }
  # anything the core writes to Python's own streams (a tqdm bar, a print) is caught here
  sys <- reticulate::import("sys", convert = FALSE)
  io <- reticulate::import("io", convert = FALSE)
  streams <- list(out = sys$stdout, err = sys$stderr)
  py_out <- io$StringIO()
  py_err <- io$StringIO()
  sys$stdout <- py_out
  sys$stderr <- py_err
  on.exit({
    sys$stdout <- streams$out
    sys$stderr <- streams$err
  }, add = TRUE)

  # verbose: the trial bar and the retraining's epoch bar (progress = TRUE) become messages
  classes <- character()
  withCallingHandlers(
    tiny(verbose = TRUE),
    message = function(m) {
      classes <<- c(classes, class(m))
      invokeRestart("muffleMessage")
    }
  )
  expect_true("sclibra_progress" %in% classes)
  expect_true("sclibra_message" %in% classes)

  for (quiet in list(
    function() suppressMessages(tiny(verbose = TRUE)),
    function() tiny(verbose = FALSE)
  )) {
    messages <- utils::capture.output(
      output <- utils::capture.output(res <- quiet(), type = "output"),
      type = "message"
    )
    expect_identical(output, character())
    expect_identical(messages, character())
    expect_s3_class(res, "LIBRATuneResult")
  }
  expect_identical(reticulate::py_to_r(py_out$getvalue()), "")
  expect_identical(reticulate::py_to_r(py_err$getvalue()), "")
})
