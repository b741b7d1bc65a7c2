# sclibra: one Makefile for the Python core, the R package, tests, vignettes and benchmarks.
#
#   make demo   install what is missing, train on the bundled bone-marrow sets, write results
#   make test   install what is missing (Python env, R from Debian) and run every test suite
#
# Everything is installed on demand: a fresh Debian machine with Python 3 needs nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := $(CURDIR)/.venv
PY     := $(VENV)/bin/python
RLIB   := $(CURDIR)/.Rlib
OUT    ?= $(CURDIR)/demo_output
STAMPS := $(CURDIR)/.make

# The CPU wheel of torch is pinned (an unpinned torch pulls GBs of CUDA wheels); numpy < 2 because
# reticulate 1.28 (Debian) cannot load NumPy 2; rpy2 < 3.6 because 3.6 needs R >= 4.5.
TORCH_PIN := torch==2.13.0
NUMPY_PIN := numpy<2
RPY2_PIN  := rpy2>=3.5,<3.6
RAY_PIN   := ray[tune]==2.60.0
# pyarrow (a Ray Tune dependency) >= 20 needs NumPy 2
PYARROW_PIN := pyarrow<20

R_DEBS := r-base-core r-base-dev r-cran-seurat r-cran-reticulate r-cran-testthat r-cran-knitr \
          r-cran-rmarkdown r-bioc-biocstyle r-cran-roxygen2 pandoc r-bioc-singlecellexperiment \
          r-cran-cli r-cran-rlang r-cran-jsonlite r-cran-withr r-cran-matrix r-cran-lintr
R_PKGS := Seurat SeuratObject reticulate testthat knitr rmarkdown BiocStyle roxygen2 SingleCellExperiment \
          cli rlang jsonlite withr Matrix lintr

# R and rpy2 find the project's Python through these
export SCLIBRA_PYTHON    := $(PY)
export RETICULATE_PYTHON := $(PY)
export R_LIBS_USER       := $(RLIB)
export MPLBACKEND        := Agg
export PYTHONDONTWRITEBYTECODE := 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help demo test env r-deps env-r r-install lint lint-r test-python test-r test-crosslang vignettes tutorial \
        benchmarks clean test-core-copy test-wheel readme

help:
	@echo "make demo    - train on the bundled data, write results to $(OUT)"
	@echo "make test    - run every test suite (Python, R, cross-language, vignettes, tutorial)"
	@echo "make benchmarks - run the benchmarks in benchmarks/ (results in benchmarks/results/)"

# ---------------------------------------------------------------------------------------------
# environments
# ---------------------------------------------------------------------------------------------
$(STAMPS):
	mkdir -p $@

# Python virtualenv with the core (editable) and its test tools
$(STAMPS)/env: pyproject.toml | $(STAMPS)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)" "$(NUMPY_PIN)"
	$(PY) -m pip install -q "$(TORCH_PIN)" "$(NUMPY_PIN)" -e ".[test,mudata,umap]"
	$(PY) -c "import sclibra, torch, numpy; assert numpy.__version__ < '2'; print('python env ready:', torch.__version__, numpy.__version__)"
	touch $@

env: $(STAMPS)/env

# R from Debian (CRAN is not reachable here); skipped when every package is already there
$(STAMPS)/r-deps: | $(STAMPS)
	if ! Rscript -e 'p <- c($(foreach p,$(R_PKGS),"$(p)",) NULL); q(status = !all(vapply(p, requireNamespace, TRUE, quietly = TRUE)))' >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(R_DEBS) >/dev/null; \
	fi
	Rscript -e 'cat("R ready:", R.version.string, "\n")'
	touch $@

r-deps: $(STAMPS)/r-deps

# Python extras needed only with R: rpy2 (builds against R) and Ray for the aLIBRA backend test
$(STAMPS)/env-r: $(STAMPS)/env $(STAMPS)/r-deps
	$(PY) -m pip install -q "$(TORCH_PIN)" "$(NUMPY_PIN)" "$(RPY2_PIN)" "$(RAY_PIN)" "$(PYARROW_PIN)"
	touch $@

env-r: $(STAMPS)/env-r

# ---------------------------------------------------------------------------------------------
# main job
# ---------------------------------------------------------------------------------------------
demo: $(STAMPS)/env
	$(PY) -m sclibra.cli demo --out "$(OUT)" --overwrite

# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
lint: $(STAMPS)/env
	$(VENV)/bin/ruff format --check python tests benchmarks tools
	$(VENV)/bin/ruff check python tests benchmarks tools

# R style and lint (lintr from Debian; rules in .lintr)
lint-r: $(STAMPS)/r-deps
	Rscript tools/r_lint.R

test-python: $(STAMPS)/env-r
	$(PY) -m pytest tests/python -q -p no:cacheprovider

test-r: $(STAMPS)/env-r
	bash tools/r_check.sh

# the cross-language tests load the R package from $(RLIB)
r-install: $(STAMPS)/env-r
	mkdir -p $(RLIB)
	R CMD INSTALL --no-multiarch --no-test-load --library=$(RLIB) . >/dev/null

test-crosslang: r-install
	$(PY) -m pytest tests/crosslang -q -p no:cacheprovider

tutorial: $(STAMPS)/env
	$(PY) tools/run_tutorial.py

# the README's Python and R quick starts, verbatim, each in a fresh folder
readme: r-install
	$(PY) tools/run_readme.py

# the Python core bundled with the installed R package (made by ./configure) is python/sclibra;
# the version is written once (pyproject.toml) and DESCRIPTION agrees
test-core-copy: r-install
	PY=$(PY) bash tools/check_core_copy.sh $(RLIB)

# the wheel built from a clean tree carries its data and runs `sclibra demo` in a fresh venv
test-wheel: $(STAMPS)/env
	PY=$(PY) bash tools/check_wheel.sh

test: lint lint-r test-python test-r test-crosslang tutorial readme test-core-copy test-wheel
	@echo "all test suites passed"

benchmarks: $(STAMPS)/env r-install
	$(PY) benchmarks/bench_accuracy.py
	$(PY) benchmarks/bench_batch_size.py
	$(PY) benchmarks/bench_scaling.py --before
	$(PY) benchmarks/bench_r_path.py
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_keras.py
	$(PY) benchmarks/bench_peers.py
	$(PY) benchmarks/bench_atac_ceiling.py
	$(PY) benchmarks/bench_cite_ceiling.py
	$(PY) benchmarks/bench_latent_reference.py

clean:
	rm -rf $(STAMPS) $(RLIB) *.Rcheck sclibra_*.tar.gz demo_output inst/core
