"""The fuzz harness (tools/fuzz): its short CI run finds no crash, hang or unexplained
exception; it really counts a crash and a hang; the known defects it skips still crash
(so each skip-list entry is deleted by its fix)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fuzz(*args, env=None, timeout=900):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tools.fuzz", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


# Under tools/sanitize.sh (ASan preloaded) every call is several times slower: fewer calls,
# a longer time before a case counts as a hang.
SANITIZED = "asan" in os.environ.get("LD_PRELOAD", "")
CALLS = 10000 if SANITIZED else 80000


def test_short_run_finds_no_crash_hang_or_other_exception(tmp_path):
    out = tmp_path / "fuzz.json"
    extra = ["--calls", str(CALLS), "--timeout", "180"] if SANITIZED else []
    p = fuzz("--short", "--workers", "2", "--json", str(out), *extra, timeout=3600)
    print(p.stdout[-6000:])
    report = json.loads(out.read_text())
    total = report["total"]
    assert (total.get("crash", 0), total.get("hang", 0), total.get("other", 0)) == (0, 0, 0), p.stdout[-6000:]
    assert total["calls"] == CALLS and total.get("ok", 0) > 1000
    if not SANITIZED:
        assert report["missed"] == [], "public functions or raw bindings never called"
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def test_a_crash_and_a_hang_are_counted_and_the_run_goes_on():
    p = fuzz("--calls", "12", "--seed", "3", "--timeout", "5", "--workers", "1",
             env={"TC_FUZZ_INJECT": "crash:4,hang:7"}, timeout=300)
    assert p.returncode == 1
    table = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines() if line.startswith("total")}
    calls, ok, clean, expected, other, crash, hang, known = map(int, table["total"])
    assert (calls, crash, hang) == (12, 1, 1)
    assert "CRASH case 4 " in p.stdout and "HANG case 7 " in p.stdout
    assert "python -m tools.fuzz --seed 3 --case 4" in p.stdout


def test_known_defects_still_crash():
    """When a known defect is fixed this fails: delete its entry in tools/fuzz/known.py."""
    p = fuzz("--known", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr


def test_reproducer_runs_one_case():
    p = fuzz("--seed", "0", "--case", "1", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("case 1: ")
