#!/usr/bin/env bash
# The wheel built from a clean tree is complete: install it in a fresh venv and run the demo.
#
#   bash tools/check_wheel.sh
#
# 1. export the tracked files (what a clean clone holds, with their working-tree contents) to a
#    temporary folder and build the wheel there with `pip wheel --no-deps`;
# 2. check it carries the bundled data (package data: sclibra/_extdata);
# 3. create a fresh venv, install the wheel (no index: nothing is downloaded; the pinned
#    dependencies come from the project's .venv, which the fresh venv sees read-only through a
#    .pth line, after its own site-packages, so the sclibra imported is the wheel's);
# 4. from an empty folder, run `sclibra demo` (epochs capped for speed) and check its outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PY:-$ROOT/.venv/bin/python}"
EPOCHS="${SCLIBRA_WHEEL_DEMO_EPOCHS:-3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sclibra-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== clean export of the tracked files"
mkdir -p "$WORK/src"
git ls-files -z | tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$WORK/src"

echo "== pip wheel"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/sclibra-*.whl)"
echo "built $(basename "$WHEEL")"
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = [f"sclibra/_extdata/{d}/{f}" for d, fs in
        {"bmmc_cite": ["rna.h5ad", "adt.h5ad", "SOURCE.md"],
         "bmmc_multiome": ["rna.h5ad", "atac.h5ad", "SOURCE.md"]}.items() for f in fs]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"the wheel lacks its bundled data: {missing}")
print(f"the wheel carries the bundled data ({len(need)} files)")
PYEOF

echo "== fresh venv"
"$PY" -m venv --without-pip "$WORK/venv"
FRESH="$WORK/venv/bin/python"
site_fresh="$("$FRESH" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site_deps="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site_deps" > "$site_fresh/_sclibra_deps.pth"
"$PY" -m pip --python "$FRESH" install -q --no-deps --no-index "$WHEEL"
"$FRESH" -c "import torch, numpy; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert numpy.__version__ < '2'"

echo "== sclibra demo from the wheel (max ${EPOCHS} epochs)"
mkdir -p "$WORK/run"
cd "$WORK/run"
"$FRESH" - "$site_fresh" <<'PYEOF'
import sys, sclibra
where = sclibra.__file__
if not where.startswith(sys.argv[1]):
    sys.exit(f"sclibra was imported from {where}, not from the wheel in the fresh venv")
print("sclibra", sclibra.__version__, "from", where)
PYEOF
"$WORK/venv/bin/sclibra" demo --out "$WORK/run/demo" --max-epochs "$EPOCHS"
test -n "$(ls -A "$WORK/run/demo")"
echo "wheel check passed: $(basename "$WHEEL") installs into a fresh venv and runs the demo"
