#!/usr/bin/env python
"""Run the README's quick starts verbatim, so that what a new user types first cannot rot.

The fenced block under "## Quick start: Python" runs with this Python; the one under
"## Quick start: R" with ``Rscript`` (the installed R package, the core given by
``SCLIBRA_PYTHON``). Each runs in a fresh temporary folder, as a user would run it in theirs;
the files the blocks say they write must be there afterwards. Any failure stops with the
block's output and a non-zero exit status.

    python tools/run_readme.py [--only python|r]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: language -> (heading, fence language, command, files the block writes)
QUICK_STARTS = {
    "python": ("## Quick start: Python", "python", [sys.executable], ["cite_model", "evaluation"]),
    "r": ("## Quick start: R", "r", ["Rscript"], ["cite_model", "cite_eval"]),
}


def quick_start(text: str, heading: str, fence: str) -> str:
    """The first ``fence`` code block after ``heading``, exactly as written."""
    start = text.index(heading)
    m = re.compile(rf"^```{fence}[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S).search(text, start)
    if m is None:
        raise SystemExit(f"README.md: no ```{fence} block after {heading!r}")
    return m.group(1)


def run(lang: str, text: str) -> float:
    heading, fence, command, outputs = QUICK_STARTS[lang]
    code = quick_start(text, heading, fence)
    with tempfile.TemporaryDirectory(prefix=f"sclibra-readme-{lang}-") as tmp:
        script = Path(tmp) / f"quickstart.{'py' if lang == 'python' else 'R'}"
        script.write_text(code)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*command, script.name], cwd=tmp, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-6000:])
            raise SystemExit(f"README.md {heading!r}: the block failed (exit {proc.returncode})")
        missing = [o for o in outputs if not (Path(tmp) / o).exists()]
        if missing:
            raise SystemExit(f"README.md {heading!r}: the block did not write {', '.join(missing)}")
    print(f"README {heading[3:]}: ran verbatim in {seconds:.0f} s, wrote {', '.join(outputs)}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(QUICK_STARTS))
    args = parser.parse_args()
    text = (ROOT / "README.md").read_text()
    for lang in [args.only] if args.only else list(QUICK_STARTS):
        run(lang, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
