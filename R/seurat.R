# Seurat: reading and writing assays (SeuratObject 4 and 5), reductions, Tool() and the
# command log. Every Seurat method of the package goes through these functions.

# SeuratObject 5 (layers) is installed.
.seurat_v5 <- function() utils::packageVersion("SeuratObject") >= "4.9.0"

# A SeuratObject 5 function, looked up at run time (absent from SeuratObject 4).
.so5 <- function(name) utils::getFromNamespace(name, "SeuratObject")

.check_assay <- function(object, assay, what) {
  .check_string(assay, what)
  assays <- SeuratObject::Assays(object)
  if (!assay %in% assays) {
    .abort(c(
      "Assay {.val {assay}} ({.arg {what}}) is not in the Seurat object.",
      i = "Assays present: {.val {assays}}."
    ), class = "sclibra_missing_assay")
  }
  invisible(assay)
}

# The names RunLIBRA() / LIBRAPredict() will write, checked before any work. A reduction or an
# assay that sclibra did not write (a PCA, the measured ADT) is never replaced: the user names
# another target or removes it first. A name Seurat holds for another kind of object (an assay
# as a reduction name, a graph) is refused here, not by Seurat after training.
.check_seurat_targets <- function(object, reduction.name, new.assay.name) {
  .check_string(reduction.name)
  .check_string(new.assay.name)
  if (identical(reduction.name, new.assay.name)) {
    .abort("{.arg reduction.name} and {.arg new.assay.name} are the same ({.val {reduction.name}}); a Seurat object needs two names.",
      class = "sclibra_input_error"
    )
  }
  reductions <- SeuratObject::Reductions(object)
  assays <- SeuratObject::Assays(object)
  targets <- list(
    list(name = reduction.name, arg = "reduction.name", kind = "a reduction", same = reductions),
    list(name = new.assay.name, arg = "new.assay.name", kind = "an assay", same = assays)
  )
  for (t in targets) {
    if (t$name %in% setdiff(names(object), t$same)) {
      .abort(c(
        "{.arg {t$arg}} = {.val {t$name}} is already the name of another kind of object in the Seurat object (not {t$kind}).",
        i = "Choose another {.arg {t$arg}}."
      ), class = "sclibra_input_error")
    }
    if (t$name %in% t$same && !.made_by_sclibra(object[[t$name]])) {
      .abort(c(
        "The Seurat object already has {t$kind} {.val {t$name}} that sclibra did not make; it is not replaced.",
        i = "Choose another {.arg {t$arg}}, or remove it first: {.code object[[\"{t$name}\"]] <- NULL}."
      ), class = "sclibra_input_error")
    }
  }
  invisible(TRUE)
}

# Was this DimReduc or assay written by RunLIBRA() / LIBRAPredict()? (Their reductions record
# the input and output assays in `misc`, their assays a "sclibra" entry.)
.made_by_sclibra <- function(x) {
  misc <- methods::slot(x, "misc")
  if (inherits(x, "DimReduc")) {
    return(all(c("input.assay", "output.assay") %in% names(misc)))
  }
  !is.null(misc[["sclibra"]])
}

# Seurat spellings of the assay and layer arguments. A Seurat user types `assay =`,
# `layer =` (Seurat 5) or `slot =` (Seurat 4); they mean the input assay and layer.
# `input.layer` / `output.layer` are the Seurat 5 spellings of `input.slot` / `output.slot`.
# Returns `values` (the method's own arguments) updated, and `dots` without the aliases.
.seurat_aliases <- function(dots, values, fn) {
  aliases <- c(
    assay = "input.assay", layer = "input.slot", slot = "input.slot",
    input.layer = "input.slot", output.layer = "output.slot"
  )
  aliases <- aliases[aliases %in% names(values)]
  for (alias in intersect(names(dots), names(aliases))) {
    target <- aliases[[alias]]
    given <- dots[[alias]]
    if (!is.null(values[[target]]) && !identical(values[[target]], given)) {
      .abort(
        "{.fn {fn}}: {.arg {alias}} and {.arg {target}} are the same argument and disagree ({.val {given}} vs {.val {values[[target]]}}).",
        class = "sclibra_input_error"
      )
    }
    values[[target]] <- given
    dots[[alias]] <- NULL
  }
  list(values = values, dots = dots)
}

# The assay arguments of a Seurat method (RunLIBRA, TuneLIBRA), resolved in its frame `env`:
# the Seurat spellings in `dots` (see .seurat_aliases()), the defaults (the object's default
# assay, layer "data") and a missing `output.assay`, refused. Sets `input.assay`, `input.slot`
# and `output.slot` in `env`; returns `dots` without the aliases.
.seurat_assay_args <- function(env, dots, fn) {
  al <- .seurat_aliases(dots, mget(c("input.assay", "input.slot", "output.slot"), envir = env), fn)
  env$input.assay <- al$values$input.assay %||% SeuratObject::DefaultAssay(env$object)
  env$input.slot <- al$values$input.slot %||% "data"
  env$output.slot <- al$values$output.slot %||% "data"
  if (eval(quote(missing(output.assay)), env)) {
    .abort(c("{.arg output.assay} is missing: which assay should LIBRA reconstruct?",
      i = "Assays present: {.val {SeuratObject::Assays(env$object)}}."
    ), class = "sclibra_missing_assay")
  }
  al$dots
}

# The paired data of a Seurat method for .train_libra() / .tune_libra(), read from the
# arguments in its frame `env` (object, input.assay, input.slot, output.assay, output.slot,
# features, output.features, train.cells, verbose); `features` defaults to the variable ones.
.seurat_pair_args <- function(env) {
  object <- env$object
  a <- .seurat_matrix(object, env$input.assay, env$input.slot, "input.assay")
  list(
    a = a, b = .seurat_matrix(object, env$output.assay, env$output.slot, "output.assay"),
    name_a = env$input.assay, name_b = env$output.assay,
    features = env$features %||% .variable_features(object, env$input.assay, a, env$verbose),
    output.features = env$output.features, train.cells = env$train.cells,
    meta = .seurat_meta(object)
  )
}

# The layer a model read a modality from (`slot`), when it is a Seurat layer; else "data". A
# model trained on a SingleCellExperiment recorded an assay name such as "logcounts".
.seurat_trained_layer <- function(slot) {
  if (isTRUE(slot %in% .seurat_slots)) slot else "data"
}

# The slots of a Seurat 4 assay (SeuratObject 5 layers may have other names).
.seurat_slots <- c("counts", "data", "scale.data")

# The features x cells matrix of an assay layer ("slot" in Seurat 4), checked for presence.
# SeuratObject 5: a layer split by `split()` (e.g. "data.batch1", "data.batch2") is read
# across all its parts and returned in the object's cell order; parts with different
# features are refused with a pointer to JoinLayers().
.seurat_matrix <- function(object, assay, slot, what) {
  .check_assay(object, assay, what)
  slot <- slot %||% "data"
  .check_string(slot, sub("assay", "layer", what))
  x <- if (.seurat_v5()) {
    .seurat_layer_v5(object, assay, slot, what)
  } else {
    if (!slot %in% .seurat_slots) {
      .abort("Slot {.val {slot}} does not exist; use one of {.val {(.seurat_slots)}}.",
        class = "sclibra_missing_slot"
      )
    }
    SeuratObject::GetAssayData(object, assay = assay, slot = slot)
  }
  if (is.null(x) || nrow(x) == 0L || ncol(x) == 0L) {
    hint <- switch(slot,
      scale.data = "run {.fn Seurat::ScaleData} or use {.val data}",
      data = "run {.fn Seurat::NormalizeData} first",
      "fill it or choose another layer"
    )
    .abort(c(
      "Layer {.val {slot}} of assay {.val {assay}} is empty or absent.",
      i = paste0("To use it, ", hint, ".")
    ), class = "sclibra_missing_slot")
  }
  x
}

.seurat_layer_v5 <- function(object, assay, slot, what) {
  obj <- object[[assay]]
  if (!inherits(obj, "Assay5")) {
    return(tryCatch(
      .so5("LayerData")(obj, layer = slot),
      error = function(e) NULL
    ))
  }
  layers <- .so5("Layers")(obj)
  parts <- if (slot %in% layers) slot else grep(paste0("^", gsub(".", "\\.", slot, fixed = TRUE), "\\."), layers, value = TRUE)
  if (!length(parts)) {
    return(NULL)
  }
  mats <- lapply(parts, function(l) .so5("LayerData")(obj, layer = l))
  if (length(mats) == 1L) {
    return(mats[[1]])
  }
  features <- rownames(mats[[1]])
  if (!all(vapply(mats, function(m) identical(rownames(m), features), TRUE))) {
    .abort(c(
      "Layer {.val {slot}} of assay {.val {assay}} is split into {length(parts)} layers with different features.",
      i = "Join them first: {.code obj[[\"{assay}\"]] <- JoinLayers(obj[[\"{assay}\"]])}."
    ), class = "sclibra_missing_slot")
  }
  x <- do.call(cbind, mats)
  cells <- intersect(colnames(object), colnames(x))
  x[, cells, drop = FALSE]
}

# Cell metadata of a Seurat object (cells as row names).
.seurat_meta <- function(object) object[[]]

# Feature names Seurat accepts ('_' and '|' become '-', as CreateAssayObject would do).
.seurat_features <- function(features) {
  make.unique(gsub("[_|]", "-", features))
}

# Seurat keys must be unique across reductions and assays: a key already used by another
# reduction (e.g. the default "LIBRA_" of a first run) becomes one derived from its name
# ("libra_atac": "LIBRAATAC_"), numbered when that one is taken too ("LIBRA2_").
.unique_key <- function(object, key, name, verbose) {
  others <- setdiff(c(SeuratObject::Reductions(object), SeuratObject::Assays(object)), name)
  used <- vapply(others, function(o) SeuratObject::Key(object[[o]]), "")
  if (!key %in% used) {
    return(key)
  }
  base <- toupper(.key_stem(name))
  new <- paste0(base, "_")
  i <- 1L
  while (new %in% used) {
    i <- i + 1L
    new <- paste0(base, i, "_")
  }
  .msg(verbose, "Key {.val {key}} is used by another reduction; {.val {name}} gets key {.val {new}}.")
  new
}

# Variable features of an assay present in its matrix `x`, or NULL when none are set.
.variable_features <- function(object, assay, x, verbose = FALSE) {
  variable <- intersect(SeuratObject::VariableFeatures(object[[assay]]), rownames(x))
  if (!length(variable)) {
    return(NULL)
  }
  .msg(verbose, "Using the {length(variable)} variable features of assay {assay}.")
  variable
}

# The stem of a Seurat key made from an object's name: its ASCII letters and digits, starting
# with a letter (SeuratObject 5 refuses a key that starts with a digit: "2pred" gets
# "libra2pred"). Reduction keys are its upper case, assay keys its lower case.
.key_stem <- function(name) {
  stem <- gsub("[^A-Za-z0-9]", "", name, perl = TRUE)
  if (!grepl("^[A-Za-z]", stem, perl = TRUE)) {
    stem <- paste0("libra", stem)
  }
  stem
}

.assay_key <- function(name) paste0(tolower(.key_stem(name)), "_")

# A new assay holding `data` (features x cells) in the object's assay class: an Assay5 in a
# SeuratObject 5 object whose input assay is an Assay5, a v3 Assay otherwise.
.new_assay <- function(object, like, data = NULL, counts = NULL) {
  if (.seurat_v5() && inherits(object[[like]], "Assay5")) {
    # an Assay5 stores sparse layers (it would coerce a dense one itself, with a warning)
    sparse <- function(x) if (is.null(x)) NULL else methods::as(x, "CsparseMatrix")
    args <- list(counts = sparse(counts), data = sparse(data))
    return(do.call(.so5("CreateAssay5Object"), args[!vapply(args, is.null, TRUE)]))
  }
  if (is.null(counts)) {
    return(SeuratObject::CreateAssayObject(data = data))
  }
  assay <- SeuratObject::CreateAssayObject(counts = counts)
  .set_layer(assay, "data", data)
}

# Set a layer of an assay (`layer =` in SeuratObject 5, `slot =` in 4).
.set_layer <- function(assay, layer, value) {
  if (.seurat_v5()) {
    .so5("LayerData<-")(assay, layer = layer, value = value)
  } else {
    SeuratObject::SetAssayData(assay, slot = layer, new.data = value)
  }
}

# Store an embedding (cells x k) as a DimReduc and a prediction (features x cells) as an assay.
.seurat_store <- function(object, embedding, prediction, model, input.assay,
                          reduction.name, reduction.key, new.assay.name, misc, verbose) {
  emb <- matrix(NA_real_, ncol(object), ncol(embedding),
    dimnames = list(colnames(object), colnames(embedding))
  )
  emb[rownames(embedding), ] <- embedding
  if (anyNA(emb)) {
    emb <- embedding
  }
  misc$model <- model
  reduction.key <- .unique_key(object, reduction.key, reduction.name, verbose)
  colnames(emb) <- paste0(reduction.key, seq_len(ncol(emb)))
  object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
    embeddings = emb, assay = input.assay, key = reduction.key, misc = misc
  )
  if (is.null(prediction)) { # cells placed from the output modality: nothing predicted
    return(object)
  }
  original <- rownames(prediction)
  safe <- .seurat_features(original)
  if (!identical(safe, original)) {
    .msg(verbose, c(
      "Feature names of {new.assay.name} changed for Seurat ('_' or '|' to '-').",
      i = "The originals are in the assay's feature metadata column {.field libra.feature}."
    ))
    rownames(prediction) <- safe
  }
  assay <- .new_assay(object, input.assay, data = prediction)
  SeuratObject::Key(assay) <- .assay_key(new.assay.name)
  # named by feature: an Assay5 matches feature metadata to its features by name
  assay[["libra.feature"]] <- stats::setNames(original, rownames(prediction))
  assay@misc[["sclibra"]] <- list(reduction = reduction.name, input.assay = input.assay)
  # SeuratObject 5 computes nCount_<assay> from a "counts" layer, which a prediction does not
  # have, and warns that it found none: that warning is about its bookkeeping, not the data.
  withCallingHandlers(
    object[[new.assay.name]] <- assay,
    warning = function(w) {
      if (grepl("No layers found matching|Layer counts isn't present", conditionMessage(w))) {
        invokeRestart("muffleWarning")
      }
    }
  )
  object
}

# Record a SeuratCommand (from LogSeuratCommand(return.command = TRUE), which must be called in
# the method itself) under "<Function>.<assay>.<reduction>", with the assay it used. Long
# vectors among the parameters (cell names given as `train.cells`, a `features` list) are
# recorded as a short summary, not in full.
.log_command <- function(object, command, assay, reduction) {
  name <- paste(sub("\\..*$", "", command@name), assay, reduction, sep = ".")
  command@name <- name
  command@assay.used <- assay
  command@params <- lapply(command@params, function(p) {
    if (is.atomic(p) && length(p) > 10L) {
      sprintf("<%d %s values: %s>", length(p), typeof(p), .some(p, 3))
    } else {
      p
    }
  })
  object[[name]] <- command
  object
}
