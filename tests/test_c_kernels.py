"""The C kernels without Python: tests/c/test_kernels.c built and run by
tools/c_kernel_test.sh, natively (x86-64: AVX2+FMA against portable) and, when the AArch64
cross compiler and qemu-user exist, for AArch64 under qemu-aarch64 (NEON against portable).

The program checks each platform on its own (GEMM bitwise against scalar models of both
summation orders, the row kernels and attention within ulp tolerances); here, in addition,
the two platforms' outputs are compared through their digests: the portable kernels must
give the same bits on both (every operation is IEEE, no contraction, no libm in them), and
the NEON variants the same bits as the AVX2+FMA ones where both platforms ran one (the same
fused operations in the same order), when both compilers are the same GCC release.
"""
import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "c_kernel_test.sh"
CROSS = os.environ.get("CC_AARCH64", "aarch64-linux-gnu-gcc")
QEMU = os.environ.get("QEMU_AARCH64", "qemu-aarch64")
GROUP = re.compile(r"^(ok  |FAIL) (f32|f64)\s+(\S+)\s+(\d+) cases \(\s*(\d+) on (\S+)\)")
_runs = {}


def run(target, *args):
    """Output and exit status of tools/c_kernel_test.sh target args (one build at a time:
    a lock file, as xdist workers share build/ctest)."""
    key = (target,) + args
    if key not in _runs:
        lock = ROOT / "build" / "ctest.lock"
        lock.parent.mkdir(exist_ok=True)
        with open(lock, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            proc = subprocess.run([str(SCRIPT), target, *args], cwd=ROOT, capture_output=True,
                                  text=True, timeout=1500)
        _runs[key] = (proc.stdout, proc.stderr, proc.returncode)
    return _runs[key]


def groups(out):
    """{(dtype, group): (status, cases, fast cases, fast name)} of the program's output."""
    res = {}
    for line in out.splitlines():
        m = GROUP.match(line)
        if m:
            res[(m[2], m[3])] = (m[1].strip(), int(m[4]), int(m[5]), m[6])
    return res


def digests(out, kind):
    """{'f32.gemm': hex, ...} of the `kind` ('digest' or 'fast_digest') lines."""
    return dict(line.split()[1:3] for line in out.splitlines() if line.startswith(kind + " "))


def need_aarch64():
    """Skip, saying why, without the cross compiler, qemu or the AArch64 C library; fail
    instead with TC_REQUIRE_AARCH64=1 (the CI step, tools/ci_aarch64.sh)."""
    give_up = pytest.fail if os.environ.get("TC_REQUIRE_AARCH64") == "1" else pytest.skip
    missing = [t for t in (CROSS, QEMU) if shutil.which(t) is None]
    if missing:
        give_up(f"{' and '.join(missing)} not installed (apt-get install "
                "gcc-aarch64-linux-gnu qemu-user): the AArch64 run needs both")
    if not Path("/usr/aarch64-linux-gnu/lib").is_dir() and "QEMU_LD_PREFIX" not in os.environ:
        give_up("no AArch64 C library at /usr/aarch64-linux-gnu (libc6-dev-arm64-cross)")


FAST_FAMILIES = ["gemm", "gemm_fast_model", "vec_exp", "softmax", "activation", "cross_entropy"]


def check_run(out, err, rc, fast_name):
    assert rc == 0 and out.rstrip().endswith("all passed"), out[-3000:] + err[-3000:]
    g = groups(out)
    assert {grp for _, grp in g} >= set(FAST_FAMILIES) | {"gemm_portable_model", "layernorm",
                                                          "attention", "gemm_threads"}
    for (dt, grp), (status, cases, fast_cases, name) in g.items():
        assert status == "ok" and cases > 0, (dt, grp)
        assert name == fast_name
        if grp in FAST_FAMILIES and fast_name != "generic":
            assert fast_cases > 0, (dt, grp)  # the fast variant really ran


def test_native():
    out, err, rc = run("native")
    m = re.match(r"platform: (\S+), fast variant: (\S+)", out)
    assert m, out[:500] + err[-2000:]
    from transformer_c import _C
    if m[1] == "x86-64":
        assert m[2] == ("avx2+fma" if _C.cpu_has_avx2() else "generic")
    check_run(out, err, rc, m[2])


def test_native_checks_catch_a_wrong_bit():
    """-inject flips one bit of a fast GEMM entry and one exponent bit of a fast exp per
    case: the bitwise and tolerance checks must report them (the checks can fail)."""
    out, err, rc = run("native", "-inject")
    if "fast variant: generic" in out:
        pytest.skip("this CPU has no fast variant to corrupt")
    g = groups(out)
    assert rc == 1 and out.rstrip().endswith("FAILED")
    for dt in ("f32", "f64"):
        assert g[(dt, "gemm_fast_model")][0] == "FAIL"
        assert g[(dt, "vec_exp")][0] == "FAIL"
        assert g[(dt, "gemm_portable_model")][0] == "ok"


def test_aarch64_under_qemu():
    need_aarch64()
    out, err, rc = run("aarch64")
    assert out.startswith("platform: aarch64, fast variant: neon"), out[:500] + err[-2000:]
    check_run(out, err, rc, "neon")
    g = groups(out)
    # attention and layernorm have no NEON variant: they run (and are compared) portable
    assert g[("f32", "attention")][2] == 0 and g[("f64", "layernorm")][2] == 0


def test_aarch64_checks_catch_a_wrong_bit():
    need_aarch64()
    out, err, rc = run("aarch64", "-inject")
    g = groups(out)
    assert rc == 1 and g[("f32", "gemm_fast_model")][0] == "FAIL"
    assert g[("f64", "vec_exp")][0] == "FAIL"


def gcc_release(cc):
    return subprocess.run([cc, "-dumpversion"], capture_output=True, text=True).stdout.strip()


def test_platforms_agree_bitwise():
    """x86-64 and AArch64 (qemu): the portable kernels' outputs are the same bits; the fast
    ones too where both platforms ran a fast variant (same GCC release on both)."""
    need_aarch64()
    nat, _, rc_n = run("native")
    arm, _, rc_a = run("aarch64")
    assert rc_n == 0 and rc_a == 0
    if not nat.startswith("platform: x86-64"):
        pytest.skip("the native platform is not x86-64")
    dn, da = digests(nat, "digest"), digests(arm, "digest")
    assert dn and dn == da
    if "fast variant: avx2+fma" not in nat:
        pytest.skip("no AVX2+FMA here: the fast outputs are not comparable")
    if gcc_release(os.environ.get("CC", "gcc")).split(".")[0] != gcc_release(CROSS).split(".")[0]:
        pytest.skip("native and cross GCC releases differ: their contractions may differ")
    fn, fa = digests(nat, "fast_digest"), digests(arm, "fast_digest")
    gn, ga = groups(nat), groups(arm)
    key = {k: tuple(k.split(".")) for k in fn}
    both = [k for k in fn if ga[key[k]][2] > 0 and ga[key[k]][2] == gn[key[k]][2]]
    assert {"f32.gemm", "f64.gemm", "f32.softmax", "f64.activation"} <= set(both)
    assert {k: fn[k] for k in both} == {k: fa[k] for k in both}
