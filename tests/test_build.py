"""The build's features (transformer_c.build_info(), setup.py's switches) against evidence
the build cannot fake: the OpenMP runtime loaded into the process, the CPU's own flags in
/proc/cpuinfo, and the variant CI asked for (TC_EXPECT_BUILD, tools/ci_variants.sh)."""
import os
import pathlib
import platform
import subprocess
import sys
import warnings

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import _C

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYS = {"openmp": bool, "openmp_version": int, "portable_only": bool, "compiler": str}


def test_build_info_fields_and_copy():
    info = tc.build_info()
    assert {k: type(v) for k, v in info.items()} == KEYS
    assert info["openmp"] == (info["openmp_version"] > 0)
    if info["openmp"]:
        assert 200000 <= info["openmp_version"] < 210000  # _OPENMP is a yyyymm date
    assert info["compiler"]
    info["openmp"] = "changed"
    assert tc.build_info() == _C.BUILD and tc.build_info() is not _C.BUILD


def test_build_info_is_the_variant_asked_for():
    # TC_EXPECT_BUILD="openmp=0,portable_only=1" is set by the CI jobs that build a variant
    # (tools/ci_variants.sh): the variant really built is the one they test
    want = os.environ.get("TC_EXPECT_BUILD", "")
    info = tc.build_info()
    for item in filter(None, want.split(",")):
        key, value = item.split("=")
        assert info[key] == bool(int(value)), f"TC_EXPECT_BUILD={want}: {info}"
    if not want:  # the default build of this machine: x86-64 GCC with OpenMP
        assert not info["portable_only"] or platform.machine() not in ("x86_64", "AMD64")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)")
def test_openmp_flag_matches_the_runtime_loaded():
    # in a fresh interpreter that imports only transformer_c (and NumPy), an OpenMP runtime
    # (libgomp, libomp, libiomp; auditwheel renames it libgomp-<hash>) is mapped iff the
    # build reports OpenMP
    code = ("import transformer_c as tc, re\n"
            "maps = open('/proc/self/maps').read()\n"
            "print(tc.build_info()['openmp'], bool(re.search(r'lib(g|i)?omp[-.]', maps)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out[0] == out[1], f"build_info openmp={out[0]}, OpenMP runtime loaded={out[1]}"


def cpu_flags():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads /proc/cpuinfo (Linux)")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="the x86-64 dispatch (AArch64's NEON one: tests/c, tools/c_kernel_test.sh)")
def test_dispatch_picks_the_best_kernels_this_cpu_has(monkeypatch):
    # the runtime dispatch runs AVX2+FMA exactly when the CPU has both (per /proc/cpuinfo)
    # and the build compiled them, the GEMM's AVX-512F kernel on top of them when the CPU
    # has avx512f too; the portable kernels otherwise, on any x86-64
    flags = cpu_flags()
    best = "avx2+fma" if {"avx2", "fma"} <= flags and not tc.build_info()["portable_only"] \
        else "generic"
    assert _C.cpu_has_avx2() == (best == "avx2+fma")
    has512 = best == "avx2+fma" and "avx512f" in flags
    assert _C.cpu_has_avx512() == has512
    if has512 and os.environ.get("TC_GEMM_KERNEL") != "avx2+fma":  # (the env's cap)
        best = "avx512"
    before = _C.cpu_portable()
    try:
        _C.cpu_set_portable(False)
        assert _C.gemm_kernel_name() == best
        a = np.ones((5, 7), np.float32)
        tc.functional.linear(a, np.ones((3, 7), np.float32))
        assert _C.cpu_kernel("gemm") == best
        _C.cpu_set_portable(True)
        tc.functional.linear(a, np.ones((3, 7), np.float32))
        assert _C.cpu_kernel("gemm") == "generic"
    finally:
        _C.cpu_set_portable(before)


def test_set_num_threads_says_when_the_build_is_serial(threads):
    a = np.random.default_rng(0).standard_normal((64, 48))
    w = np.random.default_rng(1).standard_normal((32, 48))
    threads(1)
    one = tc.functional.linear(a, w)
    if tc.build_info()["openmp"]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            threads(2)
        assert tc.get_num_threads() == 2
    else:
        with pytest.warns(RuntimeWarning, match=r"set_num_threads\(2\).*no OpenMP"):
            threads(2)
        assert tc.get_num_threads() == 1
        np.testing.assert_array_equal(tc.functional.linear(a, w), one)  # same single thread
    threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads(1)  # one thread never warns
    assert tc.get_num_threads() == 1


@pytest.mark.parametrize("switch", ["TC_NO_OPENMP", "TC_PORTABLE_ONLY", "TC_SANITIZE"])
def test_setup_rejects_an_unknown_switch_value(switch):
    # setup.py's build switches take 0 or 1; anything else stops the build naming the switch
    if not (ROOT / "setup.py").exists():
        pytest.skip(f"no setup.py beside the tests ({ROOT}): not a source tree")
    pytest.importorskip("setuptools", reason="setup.py needs setuptools (not in this env)")
    r = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                       text=True, env=dict(os.environ, **{switch: "yes"}))
    assert r.returncode != 0 and f"{switch} must be 0 or 1, got 'yes'" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                       text=True, env=dict(os.environ, **{switch: "0"}))
    assert r.returncode == 0 and r.stdout.split()[-1] == tc.__version__, r.stderr


def test_setup_rejects_a_bad_build_jobs_value(tmp_path):
    # TC_BUILD_JOBS (compiler processes at once) must be a positive integer: the build stops
    # naming it before compiling anything (the output would go to tmp_path)
    if not (ROOT / "setup.py").exists():
        pytest.skip(f"no setup.py beside the tests ({ROOT}): not a source tree")
    pytest.importorskip("setuptools", reason="setup.py needs setuptools (not in this env)")
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path),
                        "-t", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, TC_BUILD_JOBS="0"))
    assert r.returncode != 0 and "TC_BUILD_JOBS must be a positive integer, got '0'" in \
        r.stderr, r.stderr
    assert not list(tmp_path.rglob("*.o"))
