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


# ------------------------------------------------------------------ shell commands

TESTS = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
DURATION = re.compile(r"\b\d+(\.\d+)?\s*(s|min|minutes|h|hours)\b")


def commands():
    """(line, command) of every command in the ```bash blocks, continuation lines joined
    (heredoc bodies skipped)."""
    out = []
    for line, code in blocks("bash"):
        lines, i, heredoc = code.splitlines(), 0, None
        while i < len(lines):
            start, cmd = i, lines[i]
            if heredoc:
                heredoc = None if cmd.strip() == heredoc else heredoc
                i += 1
                continue
            while cmd.split("#")[0].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd.split("#")[0].rstrip()[:-1] + " " + lines[i].strip()
            m = re.search(r"<<'?(\w+)'?", cmd)
            heredoc = m.group(1) if m else None
            if cmd.strip():
                out.append((line + 1 + start, cmd))
            i += 1
    return out


COMMANDS = commands()


def test_readme_has_shell_commands():
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("line, cmd", COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_every_readme_command_is_tested_or_timed(line, cmd):
    # a command a newcomer pastes either runs in the tests at a small size ("tested:
    # test_name", a test that exists), says how long it takes (a measured duration), runs
    # in CI ("ci:"), or says why it cannot run here ("untestable:" and a reason)
    comment = cmd.split("#", 1)[1] if "#" in cmd else ""
    if cmd.startswith("cat >"):
        return  # writes the heredoc below it
    m = re.search(r"tested: (test_\w+)", comment)
    if m:
        assert f"def {m.group(1)}(" in TESTS, f"README.md line {line}: no test {m.group(1)}"
        return
    assert DURATION.search(comment) or "ci:" in comment or \
        re.search(r"untestable: \w+", comment), \
        f"README.md line {line}: {cmd!r} is neither tested nor timed"
