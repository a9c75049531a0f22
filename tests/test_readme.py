"""Docs that run: every ```python block of README.md runs as pasted (self-contained), each
in a fresh interpreter in an empty directory; and every shell command a newcomer would paste
either runs in the tests or says how long it takes."""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang):
    """(line, code) of every ```lang block of README.md (indented blocks dedented)."""
    out = []
    for m in re.finditer(r"^( *)```" + lang + r"\n(.*?)^\1```", README, re.S | re.M):
        line = README[:m.start()].count("\n") + 1
        out.append((line, textwrap.dedent(m.group(2))))
    return out


PYTHON = blocks("python")


def test_readme_has_python_blocks():
    assert len(PYTHON) >= 8


@pytest.mark.parametrize("line, code", PYTHON, ids=[f"line{n}" for n, _ in PYTHON])
def test_readme_python_block_runs_as_pasted(line, code, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README.md line {line}:\n{code}\n{r.stderr[-3000:]}"
