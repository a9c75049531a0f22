"""transformer_c sets a short OpenMP spin (GOMP_SPINCOUNT=30000) before the OpenMP runtime
loads, unless the user chose a wait policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def policy_after_import(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", "import os, transformer_c; "
                          "print(os.environ.get('OMP_WAIT_POLICY', '-'), "
                          "os.environ.get('GOMP_SPINCOUNT', '-'))"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("extra, want", [({}, "- 30000"),
                                         ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE -"),
                                         ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE -"),
                                         ({"GOMP_SPINCOUNT": "1000"}, "- 1000")])
def test_wait_policy_default(extra, want):
    assert policy_after_import(extra) == want
