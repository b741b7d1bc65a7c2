#!/usr/bin/env bash
# Build, install and check the R package (the repository root is the package source).
#
#   bash tools/r_check.sh
#
# 1. roxygen output (NAMESPACE, man/) must be up to date with R/ (regenerated in a copy);
# 2. R CMD build (vignettes included), R CMD INSTALL into $RLIB (default .Rlib/);
# 3. R CMD check --no-manual, which runs the testthat suite against the Python core given by
#    SCLIBRA_PYTHON (default .venv/bin/python). With CI=true the tests fail rather than skip
#    when the core is missing.
# Fails on any ERROR or WARNING of R CMD check (NOTEs are printed). Offline: suggested
# packages that are not installed are not required (_R_CHECK_FORCE_SUGGESTS_=false).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
RLIB="${RLIB:-$ROOT/.Rlib}"
mkdir -p "$RLIB"
export R_LIBS_USER="$RLIB"
export SCLIBRA_PYTHON="${SCLIBRA_PYTHON:-$ROOT/.venv/bin/python}"
export _R_CHECK_FORCE_SUGGESTS_=false
export _R_CHECK_CRAN_INCOMING_=false
export _R_CHECK_CRAN_INCOMING_REMOTE_=false
export MPLBACKEND="${MPLBACKEND:-Agg}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sclibra-rcheck.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== roxygen: NAMESPACE and man/ up to date"
mkdir -p "$WORK/src"
tar --exclude=.git --exclude=.venv --exclude=.Rlib --exclude=.make -cf - DESCRIPTION NAMESPACE R man \
  | tar -xf - -C "$WORK/src"
(cd "$WORK/src" && Rscript -e 'suppressMessages(roxygen2::roxygenise(roclets = c("rd", "namespace")))' >/dev/null)
if ! diff -r -q NAMESPACE "$WORK/src/NAMESPACE" >/dev/null || ! diff -r -q man "$WORK/src/man" >/dev/null; then
  diff -r NAMESPACE "$WORK/src/NAMESPACE" || true
  diff -r man "$WORK/src/man" | head -40 || true
  echo "NAMESPACE or man/ is stale: run tools/r_document.sh and commit the result" >&2
  exit 1
fi

echo "== R CMD build"
(cd "$WORK" && R CMD build --no-manual "$ROOT")
TARBALL="$(ls "$WORK"/sclibra_*.tar.gz)"

echo "== R CMD INSTALL into $RLIB"
R CMD INSTALL --no-multiarch --library="$RLIB" "$TARBALL"

echo "== R CMD check"
set +e
# vignettes: knitted once by R CMD build above; check does not run them a second time
(cd "$WORK" && R CMD check --no-manual --ignore-vignettes --output="$WORK" "$TARBALL")
STATUS=$?
set -e
LOG="$WORK/sclibra.Rcheck/00check.log"
if [ -f "$WORK/sclibra.Rcheck/tests/testthat.Rout" ]; then
  echo "== testthat summary"
  grep -E "^\[ FAIL|^══|^── |FAIL [0-9]" "$WORK/sclibra.Rcheck/tests/testthat.Rout" || true
fi
if [ -f "$WORK/sclibra.Rcheck/tests/testthat.Rout.fail" ]; then
  echo "== testthat output (failed)"
  tail -n 120 "$WORK/sclibra.Rcheck/tests/testthat.Rout.fail"
fi
if [ ! -f "$LOG" ]; then
  echo "R CMD check produced no log" >&2
  exit 1
fi
grep -E "^\* checking .*(NOTE|WARNING|ERROR)$" -A6 "$LOG" || true
STATUS_LINE="$(grep -E "^Status:" "$LOG" || true)"
echo "== $STATUS_LINE"
if [ "$STATUS" -ne 0 ] || grep -qE "^Status:.*(ERROR|WARNING)" "$LOG"; then
  echo "R CMD check failed (errors or warnings)" >&2
  exit 1
fi
echo "R CMD check passed: 0 errors, 0 warnings"
