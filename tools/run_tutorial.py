#!/usr/bin/env python
"""Execute the Python tutorial (docs/tutorial.md) so that it cannot rot.

Every fenced ```python block runs, in order, in one namespace, with the output folder as
the working directory (figures land in <out>/figures/). A copy of the page with each block's
printed output goes to <out>/tutorial.md. Any exception stops the run with the block's line
number and a non-zero exit status.

    python tools/run_tutorial.py [--page docs/tutorial.md] [--out docs/_build/tutorial]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(text: str) -> list[tuple[int, int, int, str]]:
    """(start offset, end offset, first code line number, code) of every ```python block."""
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start(1)) + 1
        out.append((m.start(), m.end(), line, m.group(1)))
    return out


class _Tee(io.TextIOBase):
    """Write to the console and keep a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, s):
        self.stream.write(s)
        self.copy.write(s)
        return len(s)

    def flush(self):
        self.stream.flush()


def run(page: Path, out: Path) -> int:
    text = page.read_text(encoding="utf-8")
    code_blocks = blocks(text)
    if not code_blocks:
        print(f"{page}: no ```python blocks found", file=sys.stderr)
        return 1
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    namespace = {"__name__": "__tutorial__"}
    rendered, last = [], 0
    start = time.perf_counter()
    cwd = Path.cwd()
    os.chdir(out)
    try:
        for i, (_start, b_end, line, code) in enumerate(code_blocks, 1):
            print(f"--- block {i}/{len(code_blocks)} ({page.name}:{line})", flush=True)
            tee = _Tee(sys.stdout)
            t0 = time.perf_counter()
            try:
                with contextlib.redirect_stdout(tee):
                    exec(compile(code, f"{page}:{line}", "exec"), namespace)
            except Exception:  # noqa: BLE001 - any failure of a block is reported with its place
                print(
                    f"\nThe tutorial failed in block {i}, {page}:{line}:",
                    file=sys.stderr,
                    flush=True,
                )
                traceback.print_exc()
                return 1
            finally:
                import matplotlib.pyplot as plt

                plt.close("all")
            rendered.append(text[last:b_end])
            output = tee.copy.getvalue().rstrip()
            if output:
                rendered.append("\n\n```text\n" + output + "\n```")
            last = b_end
            print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
        rendered.append(text[last:])
        figures = sorted(Path("figures").glob("*.png")) if Path("figures").is_dir() else []
        if figures:
            rendered.append("\n## Figures\n\n" + "\n".join(f"![{f.stem}]({f})" for f in figures))
        Path("tutorial.md").write_text("".join(rendered) + "\n", encoding="utf-8")
    finally:
        os.chdir(cwd)
    if not figures:
        print("The tutorial wrote no figure to figures/", file=sys.stderr)
        return 1
    print(
        f"tutorial ran in {time.perf_counter() - start:.0f} s: {len(code_blocks)} blocks, "
        f"{len(figures)} figures in {out / 'figures'}; output page {out / 'tutorial.md'}"
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "tutorial.md")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_build" / "tutorial")
    args = parser.parse_args(argv)
    return run(args.page.resolve(), args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())
