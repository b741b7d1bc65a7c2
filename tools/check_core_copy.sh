#!/usr/bin/env bash
# The Python core bundled with the installed R package is the source, and one version is used.
#
#   bash tools/check_core_copy.sh [RLIB]
#
# 1. the version is written once, in pyproject.toml: DESCRIPTION's Version and the core's
#    sclibra.__version__ must equal it;
# 2. the CPU torch that installs pin (Makefile's TORCH_PIN, R's install_sclibra(), the README's
#    pip line, the wheel check, every optional extra of pyproject.toml) is one version;
# 3. the copy that configure bundled into the installed R package (RLIB/sclibra/core, made from
#    python/sclibra and pyproject.toml at R CMD INSTALL time) is identical to the source.
set -euo pipefail
cd "$(dirname "$0")/.."
RLIB="${1:-${RLIB:-$PWD/.Rlib}}"
PY="${PY:-python3}"

py_version="$(sed -n '/^\[project\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n1)"
r_version="$(sed -n 's/^Version: *//p' DESCRIPTION)"
core_version="$(PYTHONPATH="$PWD/python" "$PY" -c 'import sclibra; print(sclibra.__version__)')"
echo "== version: pyproject.toml $py_version, DESCRIPTION $r_version, sclibra.__version__ $core_version"
if [ -z "$py_version" ] || [ "$py_version" != "$r_version" ] || [ "$py_version" != "$core_version" ]; then
  echo "version mismatch: pyproject.toml is the source; set DESCRIPTION's Version: to $py_version" >&2
  exit 1
fi

mk_torch="$(sed -n 's/^TORCH_PIN *:= *torch==//p' Makefile)"
r_torch="$(sed -n 's/^\.torch_version <- "\(.*\)"$/\1/p' R/python.R)"
readme_torch="$(sed -n 's/^pip install "torch==\([0-9.]*\)".*/\1/p' README.md | head -n1)"
wheel_torch="$(sed -n "s/.*torch.__version__.startswith('\([0-9.]*\)').*/\1/p" tools/check_wheel.sh)"
# every optional extra that installs torch (e.g. bench-totalvi) pins the same one
extra_torch="$(sed -n 's/^[a-z-]* *= *\[.*"torch==\([0-9.]*\)".*/\1/p' pyproject.toml | sort -u)"
echo "== torch pin: Makefile $mk_torch, R/python.R $r_torch, README $readme_torch, check_wheel $wheel_torch, extras ${extra_torch:-none}"
for t in $extra_torch; do
  if [ "$t" != "$mk_torch" ]; then
    echo "torch pin mismatch: an extra of pyproject.toml pins torch==$t, the Makefile $mk_torch" >&2
    exit 1
  fi
done
if [ -z "$mk_torch" ] || [ "$mk_torch" != "$r_torch" ] || [ "$mk_torch" != "$readme_torch" ] \
  || [ "$mk_torch" != "$wheel_torch" ]; then
  echo "torch pin mismatch: Makefile's TORCH_PIN is the reference; make the others $mk_torch" >&2
  exit 1
fi

installed="$RLIB/sclibra/core"
echo "== bundled core: $installed vs python/sclibra"
if [ ! -f "$installed/python/sclibra/__init__.py" ]; then
  echo "the installed R package in $RLIB has no bundled core (did configure run?)" >&2
  exit 1
fi
if ! diff -r -q -x __pycache__ -x '*.pyc' python/sclibra "$installed/python/sclibra" \
  || ! diff -q pyproject.toml "$installed/pyproject.toml"; then
  echo "the core bundled with the installed R package differs from python/sclibra:" >&2
  echo "reinstall the R package (R CMD INSTALL runs configure, which copies it)" >&2
  exit 1
fi
echo "bundled core matches python/sclibra and pyproject.toml"
