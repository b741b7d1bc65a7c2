"""Package structure: no import cycles, every module importable alone, a light top-level import."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sclibra

PKG = Path(sclibra.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = ["sclibra", *f.relative_to(PKG).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imports(name: str, file: Path, known: set[str]) -> set[str]:
    """sclibra modules that ``name`` imports, at module level or inside its functions.

    Imports inside functions count too: a lazy import only hides a cycle, it does not remove it.
    """
    tree = ast.parse(file.read_text())
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # importing a.b.c imports a and a.b too
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                cand = ".".join(parts[:i])
                if cand in known and cand != name:
                    found.add(cand)
    return found


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, f, set(mods)) for m, f in mods.items()}
    # a package's __init__ is imported before its submodules: a submodule importing its own
    # parent package is not a cycle of its own making, so only edges between modules count
    # where the target is not an ancestor package of the source
    edges = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300
    )
    return module, proc.returncode, proc.stderr[-2000:]


def test_every_module_imports_alone():
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_import_alone, sorted(_modules())))
    failed = [f"{m}:\n{err}" for m, rc, err in results if rc != 0]
    assert not failed, "\n".join(failed)


def test_top_level_import_is_light():
    code = (
        "import sys, sclibra; "
        "heavy = [m for m in ('torch', 'scanpy', 'matplotlib', 'anndata') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"import sclibra loaded {proc.stdout.strip()}"
