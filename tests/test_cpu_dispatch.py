"""The one CPU-dispatch point (csrc/core/cpu.c, tc.h "cpu"): one probe, one override.

With the portable override on (_C.cpu_set_portable(True), or TC_PORTABLE=1 in the
environment) every family runs its portable kernel: _C.cpu_kernel(family) reports the
variant each family last ran, and the results still match NumPy. With it off the AVX2+FMA
variants run again (on a CPU that has them). gemm_set_kernel is the same switch by name."""
import os
import subprocess
import sys

import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from transformer_c import _C

F = tc.functional
FAMILIES = ["gemm", "attention", "softmax", "activation", "layernorm", "loss", "fused",
            "decode", "bench"]
TOL = dict(rtol=1e-4, atol=1e-4)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def run_family(family):
    """Runs one kernel of family (float32) and checks it against a NumPy reference."""
    r = rng(FAMILIES.index(family))
    x = r.standard_normal((9, 37)).astype(np.float32)
    w = (r.standard_normal((21, 37)) / 6).astype(np.float32)
    b = r.standard_normal(21).astype(np.float32)
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    if family == "gemm":
        np.testing.assert_allclose(F.linear(x, w, b), xd @ wd.T + b, **TOL)
    elif family == "attention":
        q, k, v = (r.standard_normal((2, 3, 19, 8)).astype(np.float32) for _ in range(3))
        s = q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2) / np.sqrt(8)
        want = _softmax(s) @ v.astype(np.float64)
        np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v), want, **TOL)
    elif family == "softmax":
        np.testing.assert_allclose(F.softmax(x), _softmax(xd), **TOL)
    elif family == "activation":
        np.testing.assert_allclose(F.gelu(x, approximate="tanh"), _gelu_tanh(xd), **TOL)
    elif family == "layernorm":
        g, beta = np.ones(37, np.float32), np.zeros(37, np.float32)
        want = (xd - xd.mean(-1, keepdims=True)) / np.sqrt(xd.var(-1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(F.layer_norm(x, g, beta), want, **TOL)
    elif family == "loss":
        t = r.integers(0, 37, 9)
        want = -np.log(_softmax(xd)[np.arange(9), t]).mean()
        np.testing.assert_allclose(F.cross_entropy(x, t), want, **TOL)
    elif family == "fused":
        want = _gelu_tanh(xd @ wd.T + b)
        np.testing.assert_allclose(F.linear_gelu(x, w, b, approximate="tanh"), want, **TOL)
    elif family == "decode":
        from transformer_c.generate import generate
        from transformer_c.nn import GPT, GPTConfig
        cfg = GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=16)
        model = GPT.create(cfg, rng(0), dtype=np.float32, training=False)
        prompt = np.array([1, 2, 3], np.int64)
        got = generate(model, [prompt], max_new_tokens=3)
        # greedy with the cache = greedy rerunning the whole forward each step
        ids = list(prompt)
        for _ in range(3):
            ids.append(int(np.argmax(model.forward(np.array([ids]))[0, -1])))
        assert list(got.tokens[0]) == ids[-3:]
    elif family == "bench":
        assert _C.peak_flops(1000, 12) > 0
    else:
        raise AssertionError(family)


def best(family):
    """The variant family runs with the override off: the GEMM's AVX-512F kernel (and the
    peak bench's 16-wide loop) where the CPU has it (unless TC_GEMM_KERNEL=avx2+fma caps it),
    else AVX2+FMA where present."""
    if (family in ("gemm", "bench") and _C.cpu_has_avx512()
            and os.environ.get("TC_GEMM_KERNEL") != "avx2+fma"):
        return "avx512"
    return "avx2+fma" if _C.cpu_has_avx2() else "generic"


@pytest.fixture
def restore():
    yield
    _C.cpu_set_portable(None)


@pytest.mark.parametrize("family", FAMILIES)
def test_override_forces_the_portable_kernel_in_every_family(family, restore):
    _C.cpu_set_portable(True)
    assert _C.cpu_portable() and _C.gemm_kernel_name() == "generic"
    assert _C.attention_kernel_name() == "generic"
    run_family(family)
    assert _C.cpu_kernel(family) == "generic"
    # and back: the CPU's best runs again
    _C.cpu_set_portable(False)
    run_family(family)
    assert _C.cpu_kernel(family) == best(family)


def test_gemm_set_kernel_is_the_same_switch(restore):
    _C.gemm_set_kernel("generic")
    assert _C.cpu_portable()
    run_family("attention")  # attention too (it used to ignore the GEMM's switch)
    assert _C.cpu_kernel("attention") == "generic"
    _C.gemm_set_kernel("auto")
    assert _C.cpu_portable() == bool(os.environ.get("TC_PORTABLE", "0") not in ("", "0"))
    if _C.cpu_has_avx2():
        _C.gemm_set_kernel("avx2+fma")
        assert not _C.cpu_portable()
        run_family("softmax")
        assert _C.cpu_kernel("softmax") == "avx2+fma"


def test_bad_arguments():
    with pytest.raises(ValueError, match="family"):
        _C.cpu_kernel("conv")
    with pytest.raises(ValueError, match="on"):
        _C.cpu_set_portable(2)
    with pytest.raises(TypeError, match="on"):
        _C.cpu_set_portable("yes")
    with pytest.raises(ValueError, match="name"):
        _C.gemm_set_kernel("avx1024")
    if not _C.cpu_has_avx512():
        with pytest.raises(ValueError, match="name"):
            _C.gemm_set_kernel("avx512")


@pytest.mark.skipif(not _C.cpu_has_avx512(), reason="no AVX-512 kernel: a CPU without avx512f or a portable build")
def test_gemm_avx512_level_is_picked_capped_and_restored(restore):
    # "avx2+fma" caps the GEMM below AVX-512 (the other families run AVX2+FMA either way),
    # "avx512" lifts the cap, "auto" returns to the environment's choice
    try:
        _C.gemm_set_kernel("avx2+fma")
        assert _C.gemm_kernel_name() == "avx2+fma" and not _C.cpu_portable()
        run_family("gemm")
        assert _C.cpu_kernel("gemm") == "avx2+fma"
        run_family("softmax")
        assert _C.cpu_kernel("softmax") == "avx2+fma"
        _C.gemm_set_kernel("avx512")
        assert _C.gemm_kernel_name() == "avx512"
        run_family("gemm")
        assert _C.cpu_kernel("gemm") == "avx512"
        # the portable override wins over the AVX-512 level
        _C.cpu_set_portable(True)
        assert _C.gemm_kernel_name() == "generic"
        run_family("gemm")
        assert _C.cpu_kernel("gemm") == "generic"
    finally:
        _C.gemm_set_kernel("auto")
    assert _C.gemm_kernel_name() == (best("gemm") if not _C.cpu_portable() else "generic")


@pytest.mark.skipif(not _C.cpu_has_avx512(), reason="no AVX-512 kernel: a CPU without avx512f or a portable build")
@pytest.mark.parametrize("env,want", [("avx2+fma", "avx2+fma"), ("avx512", "avx512"),
                                      ("generic", "generic")])
def test_gemm_kernel_environment_variable_in_a_fresh_process(env, want):
    code = ("import sys; sys.path.insert(0, 'tests'); import test_cpu_dispatch as t; "
            "from transformer_c import _C; print(_C.gemm_kernel_name()); t.run_family('gemm'); "
            "print(_C.cpu_kernel('gemm'))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    e = dict(os.environ, TC_GEMM_KERNEL=env)
    e.pop("TC_PORTABLE", None)
    e["PYTHONPATH"] = root + os.pathsep + e.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=e, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [want, want]


def test_environment_variable_forces_portable_in_a_fresh_process():
    code = ("import sys; sys.path.insert(0, 'tests'); import test_cpu_dispatch as t; "
            "from transformer_c import _C; assert _C.cpu_portable(); "
            "[t.run_family(f) for f in t.FAMILIES]; "
            "print(' '.join(_C.cpu_kernel(f) for f in t.FAMILIES))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TC_PORTABLE="1")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["generic"] * len(FAMILIES)
