"""The shared vector exp (csrc/core/vec_math.h) and the vectorised row / element paths built on
it: accuracy against libm over dense sweeps and at the special values, both instruction-set
variants (the portable one and AVX2+FMA, switched with gemm_set_kernel), and row lengths
that are not a multiple of the vector width (every tail length, rows shorter than a vector)
against float64 NumPy references."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import GEMM_KERNELS, kernel_fixture, rng

F = tc.functional
_C = tc._C
# the row kernels have no AVX-512 variant: "avx512" would run the AVX2+FMA ones again
KERNELS = [k for k in GEMM_KERNELS if k != "avx512"]


kernel = kernel_fixture(KERNELS, "Runs the test once per row-kernel variant (this module's "
                                 "override of conftest's).")



def _libm_expf():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if not name:
        return None
    f = ctypes.CDLL(name).expf
    f.argtypes, f.restype = [ctypes.c_float], ctypes.c_float
    return f


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the last place of exact rounded to dtype (subnormal
    spacing below the normal range). exact: float64 (or better) values."""
    ref = exact.astype(dtype)
    spacing = np.spacing(np.abs(ref)).astype(np.float64)
    spacing = np.maximum(spacing, float(np.finfo(dtype).smallest_subnormal))
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_vec_exp_float32_dense_sweep_max_ulp(kernel):
    # every float32 result range: overflow, normal, subnormal and underflow to 0
    x = np.linspace(-110, 92, 2_000_001, dtype=np.float64).astype(np.float32)
    x = np.concatenate([x, rng(1).uniform(-1, 1, 200_000).astype(np.float32),
                        np.float32([88.72283, 88.72284, -87.33654, -87.33655, -103.2789,
                                    -103.97208, -103.9721, 1e-30, -1e-30])])
    y = _C.vec_exp(x)
    assert y.dtype == np.float32
    exact = np.exp(x.astype(np.float64))  # float64 exp: far more precise than float32
    flt_max = float(np.finfo(np.float32).max)
    finite = exact < flt_max * (1 - 2 ** -25)  # rounds to a finite float32
    err = ulp_error(y[finite], exact[finite], np.float32)
    assert err.max() <= 1.5, (err.max(), x[finite][err.argmax()])
    over = exact > flt_max * (1 + 2 ** -24)
    assert np.all(np.isposinf(y[over]))
    # and within 1 ulp of the C library's expf (called through ctypes) on a subset
    expf = _libm_expf()
    if expf is not None:
        sub = np.flatnonzero(finite)[::97]
        lib = np.array([expf(float(v)) for v in x[sub]], np.float32)
        assert ulp_error(y[sub], lib.astype(np.float64), np.float32).max() <= 1.0 + 1e-9


def test_vec_exp_float64_dense_sweep_max_ulp(kernel):
    x = np.concatenate([np.linspace(-750, 712, 2_000_001),
                        rng(2).uniform(-1, 1, 200_000), rng(3).uniform(-745, 709, 200_000),
                        [709.782712893384, 709.7827128933841, -708.3964185322641,
                         -745.1332191019411, -745.1332191019412, 1e-300, -1e-300]])
    y = _C.vec_exp(x)
    with np.errstate(over="ignore"):
        lib = np.exp(x)  # glibc exp: < 1 ulp
    finite = np.isfinite(lib)
    err = ulp_error(y[finite], lib[finite], np.float64)
    assert err.max() <= 2.0, (err.max(), x[finite][err.argmax()])
    assert np.all(np.isposinf(y[~finite]))
    np.testing.assert_array_equal(y[lib == 0], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vec_exp_special_values(kernel, dtype):
    x = np.array([-np.inf, np.inf, np.nan, -np.nan, 0.0, -0.0, 1e30, -1e30, 1.0,
                  -1e4, 1e4], dtype)
    y = _C.vec_exp(x)
    assert y[0] == 0.0 and not np.signbit(y[0])
    assert np.isposinf(y[1]) and np.isnan(y[2]) and np.isnan(y[3])
    assert y[4] == 1.0 and y[5] == 1.0
    assert np.isposinf(y[6]) and y[7] == 0.0 and y[9] == 0.0 and np.isposinf(y[10])
    assert abs(float(y[8]) - np.e) <= np.spacing(dtype(np.e)) * 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vec_exp_every_length_and_position(kernel, dtype):
    # lengths 0..40 (vector bodies, tails of every size); each element's result is the same
    # wherever it lies in the array
    base = rng(4).uniform(-20, 20, 64).astype(dtype)
    full = _C.vec_exp(base)
    for n in range(41):
        np.testing.assert_array_equal(_C.vec_exp(base[:n]), full[:n])
        np.testing.assert_array_equal(_C.vec_exp(base[64 - n:]), full[64 - n:])


def test_vec_exp_rejects_bad_input():
    with pytest.raises(TypeError, match="x"):
        _C.vec_exp(np.zeros(3, np.int32))
    with pytest.raises(TypeError):
        _C.vec_exp()


# ------------------------------------------------------------------ row tails, both variants

def _softmax64(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_every_row_length(kernel, dtype):
    t = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    r = rng(5)
    for C in list(range(1, 34)) + [63, 64, 65, 127]:
        x = (3 * r.standard_normal((3, C))).astype(dtype)
        g = r.standard_normal((3, C)).astype(dtype)
        y = F.softmax(x)
        want = _softmax64(x, -1)
        np.testing.assert_allclose(y, want, **t)
        np.testing.assert_allclose(F.log_softmax(x), np.log(want), rtol=t["rtol"],
                                   atol=t["rtol"] * 10)
        dx = F.softmax_backward(g, y)
        yw = want
        dwant = yw * (g - (g * yw).sum(-1, keepdims=True))
        np.testing.assert_allclose(dx, dwant, rtol=t["rtol"] * 10, atol=t["atol"] * 10)
        ly = F.log_softmax(x)
        dl = F.log_softmax_backward(g, ly)
        dlw = g - yw * g.sum(-1, keepdims=True)
        np.testing.assert_allclose(dl, dlw, rtol=t["rtol"] * 10, atol=t["atol"] * 100)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_strided_axis_every_width(kernel, dtype):
    # inner > 1: tiles of columns whose width is not a multiple of the vector width
    t = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    r = rng(6)
    for inner in (1, 2, 3, 5, 7, 9, 13, 17, 63, 65, 70):
        x = (3 * r.standard_normal((2, 5, inner))).astype(dtype)
        np.testing.assert_allclose(F.softmax(x, axis=1), _softmax64(x, 1), **t)
        np.testing.assert_allclose(F.log_softmax(x, axis=1), np.log(_softmax64(x, 1)),
                                   rtol=t["rtol"], atol=t["rtol"] * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_every_class_count(kernel, dtype):
    t = dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    r = rng(7)
    for V in list(range(1, 26)) + [63, 65, 100]:
        x = (2 * r.standard_normal((5, V))).astype(dtype)
        ids = r.integers(0, V, size=5)
        x64 = x.astype(np.float64)
        lse = np.log(np.exp(x64 - x64.max(-1, keepdims=True)).sum(-1)) + x64.max(-1)
        losses = lse - x64[np.arange(5), ids]
        np.testing.assert_allclose(F.cross_entropy(x, ids, reduction="none"), losses, **t)
        p = _softmax64(x, -1)
        onehot = np.eye(V)[ids]
        for eps in (0.0, 0.1):
            q = (1 - eps) * onehot + eps / V
            got = F.cross_entropy_backward(x, ids, reduction="sum", label_smoothing=eps)
            np.testing.assert_allclose(got, p - q, **t)
            probs = r.dirichlet(np.ones(V), size=5).astype(dtype)
            qp = (1 - eps) * probs.astype(np.float64) + eps / V
            got = F.cross_entropy_backward(x, probs, reduction="sum", label_smoothing=eps)
            np.testing.assert_allclose(got, p * qp.sum(-1, keepdims=True) - qp, **t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_every_row_length(kernel, dtype):
    t = dict(rtol=1e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    r = rng(8)
    for C in list(range(1, 20)) + [31, 33, 64, 65, 100]:
        x = (r.standard_normal((37, C)) + 0.5).astype(dtype)
        g = r.standard_normal((37, C)).astype(dtype)
        w, b = (r.standard_normal(C) + 1).astype(dtype), r.standard_normal(C).astype(dtype)
        x64 = x.astype(np.float64)
        mu, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
        xhat = (x64 - mu) / np.sqrt(var + 1e-5)
        np.testing.assert_allclose(F.layer_norm(x, w, b), xhat * w + b, **t)
        dx, dw, db = F.layer_norm_backward(g, x, w, b)
        gw = g.astype(np.float64) * w
        s = 1 / np.sqrt(var + 1e-5)
        want = s * (gw - gw.mean(-1, keepdims=True) - xhat * (gw * xhat).mean(-1, keepdims=True))
        np.testing.assert_allclose(dx, want, rtol=t["rtol"] * 10, atol=t["atol"] * 10)
        np.testing.assert_allclose(dw, (g * xhat).sum(0), rtol=t["rtol"] * 10, atol=t["atol"] * 10)
        np.testing.assert_allclose(db, g.astype(np.float64).sum(0), rtol=t["rtol"] * 10,
                                   atol=t["atol"] * 10)


def test_layer_norm_backward_same_for_any_thread_count():
    # the weight / bias gradients are summed per chunk of rows and the chunks added in
    # order, so the result does not depend on the thread count
    r = rng(9)
    x = r.standard_normal((300, 96)).astype(np.float32)
    g = r.standard_normal((300, 96)).astype(np.float32)
    w, b = r.standard_normal(96).astype(np.float32), r.standard_normal(96).astype(np.float32)
    old = tc.get_num_threads()
    try:
        out = []
        for n in (1, 2, 3):
            tc.set_num_threads(n)
            out.append(F.layer_norm_backward(g, x, w, b) + F.layer_norm(x, w, b, return_stats=True))
    finally:
        tc.set_num_threads(old)
    for other in out[1:]:
        for a, b_ in zip(out[0], other):
            np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_every_length(kernel, dtype):
    r = rng(10)
    # float32: gelu' cancels for negative x (0.5 (1 + tanh u) is small), hence the atol
    t = dict(rtol=1e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    from math import erf, sqrt, pi
    for n in list(range(0, 20)) + [31, 33, 257, 1000]:
        x = (3 * r.standard_normal(n)).astype(dtype)
        g = r.standard_normal(n).astype(dtype)
        np.testing.assert_array_equal(F.relu_backward(g, x), np.where(x > 0, g, 0).astype(dtype))
        x64 = x.astype(np.float64)
        cdf = 0.5 * (1 + np.array([erf(v / sqrt(2)) for v in x64]))
        pdf = np.exp(-0.5 * x64 ** 2) / sqrt(2 * pi)
        np.testing.assert_allclose(F.gelu_backward(g, x), g * (cdf + x64 * pdf), **t)
        u = sqrt(2 / pi) * (x64 + 0.044715 * x64 ** 3)
        th = np.tanh(u)
        d = 0.5 * (1 + th) + 0.5 * x64 * (1 - th ** 2) * sqrt(2 / pi) * (1 + 3 * 0.044715 * x64 ** 2)
        np.testing.assert_allclose(F.gelu_backward(g, x, approximate="tanh"), g * d, **t)
