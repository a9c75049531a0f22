"""ReLU and GELU: NumPy reference, finite differences, PyTorch parity, awkward shapes and
bad input."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional

SHAPES = [(1,), (7,), (3, 13), (2, 1, 33), (4, 5, 6)]
APPROX = ["none", "tanh"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


# ------------------------------------------------------------------ NumPy references (float64)

def ref_relu(x):
    return np.where(x > 0, x, 0.0)


def ref_relu_backward(g, x):
    return np.where(x > 0, g, 0.0)


def ref_gelu(x, approximate):
    x = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def ref_gelu_backward(g, x, approximate):
    x = x.astype(np.float64)
    if approximate == "tanh":
        k = np.sqrt(2 / np.pi)
        t = np.tanh(k * (x + 0.044715 * x ** 3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * k * (1 + 3 * 0.044715 * x ** 2)
    else:
        d = 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi)
    return g * d


def data(shape, dtype, seed=0, scale=2.0):
    r = rng(seed)
    return (scale * r.standard_normal(shape)).astype(dtype), r.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ 1. NumPy reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_matches_numpy(dtype, shape):
    x, g = data(shape, dtype, 1)
    x.flat[0] = 0.0  # the kink: gradient 0 there
    y, dx = F.relu(x), F.relu_backward(g, x)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape and dx.shape == shape
    np.testing.assert_array_equal(y, ref_relu(x.astype(np.float64)))
    np.testing.assert_array_equal(dx, ref_relu_backward(g.astype(np.float64), x))
    assert dx.flat[0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_matches_numpy(dtype, shape, approximate):
    x, g = data(shape, dtype, 2)
    y = F.gelu(x, approximate=approximate)
    dx = F.gelu_backward(g, x, approximate=approximate)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape and dx.shape == shape
    np.testing.assert_allclose(y, ref_gelu(x, approximate), **tol(dtype))
    np.testing.assert_allclose(dx, ref_gelu_backward(g.astype(np.float64), x, approximate),
                               **tol(dtype))


def test_gelu_default_is_exact_and_forms_differ():
    x = np.linspace(-4, 4, 41)
    np.testing.assert_array_equal(F.gelu(x), F.gelu(x, approximate="none"))
    np.testing.assert_array_equal(F.gelu_backward(np.ones(41), x),
                                  F.gelu_backward(np.ones(41), x, approximate="none"))
    # the tanh form is an approximation: close to, but not equal to, the exact one
    diff = np.abs(F.gelu(x, approximate="tanh") - F.gelu(x))
    assert 1e-5 < diff.max() < 1e-3


def test_gelu_known_values():
    # gelu(1) = Phi(1) = 0.8413447460685429...; gelu(0) = 0; gelu'(0) = 0.5
    np.testing.assert_allclose(F.gelu(np.array([1.0])), [0.8413447460685429], rtol=1e-15)
    assert F.gelu(np.array([0.0]))[0] == 0.0
    for a in APPROX:
        assert F.gelu_backward(np.array([1.0]), np.array([0.0]), approximate=a)[0] == 0.5


# ------------------------------------------------------------------ 2. finite differences

def test_relu_finite_differences():
    r = rng(3)
    x = r.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink
    check_grads(lambda: F.relu(x), lambda G: {"x": F.relu_backward(G, x)}, {"x": x})


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_finite_differences(approximate):
    x = 2 * rng(4).standard_normal((2, 3, 5))
    check_grads(lambda: F.gelu(x, approximate=approximate),
                lambda G: {"x": F.gelu_backward(G, x, approximate=approximate)}, {"x": x})


# ------------------------------------------------------------------ 3. PyTorch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_matches_torch(torch, dtype, shape):
    x, g = data(shape, dtype, 5)
    x.flat[-1] = 0.0
    tx = to_torch(torch, x)
    ty = torch.relu(tx)
    (ty * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(F.relu(x), ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(F.relu_backward(g, x), tx.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_matches_torch(torch, dtype, shape, approximate):
    x, g = data(shape, dtype, 6, scale=3.0)
    tx = to_torch(torch, x)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    (ty * torch.from_numpy(g)).sum().backward()
    y = F.gelu(x, approximate=approximate)
    dx = F.gelu_backward(g, x, approximate=approximate)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol(dtype))


# ------------------------------------------------------------------ 4. awkward shapes and values

@pytest.mark.parametrize("layout", [non_contiguous, fortran])
@pytest.mark.parametrize("approximate", APPROX)
def test_any_memory_layout(layout, approximate):
    x, g = data((5, 6, 7), np.float64, 7)
    np.testing.assert_array_equal(F.relu(layout(x)), F.relu(x))
    np.testing.assert_array_equal(F.relu_backward(layout(g), layout(x)), F.relu_backward(g, x))
    np.testing.assert_array_equal(F.gelu(layout(x), approximate=approximate),
                                  F.gelu(x, approximate=approximate))
    np.testing.assert_array_equal(F.gelu_backward(layout(g), layout(x), approximate=approximate),
                                  F.gelu_backward(g, x, approximate=approximate))
    # the copy keeps C-order meaning: still matches the reference element by element
    np.testing.assert_allclose(F.gelu(fortran(x), approximate=approximate),
                               ref_gelu(x, approximate), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 2)])
def test_empty(dtype, shape):
    x = np.zeros(shape, dtype)
    for out in (F.relu(x), F.relu_backward(x, x), F.gelu(x), F.gelu_backward(x, x),
                F.gelu(x, approximate="tanh"), F.gelu_backward(x, x, approximate="tanh")):
        assert out.shape == shape and out.dtype == dtype


def test_zero_dimensional_and_lists():
    x = np.array(-1.5)
    assert F.relu(x).shape == () and F.relu(x) == 0.0
    assert F.relu_backward(np.array(2.0), np.array(3.0)) == 2.0
    np.testing.assert_allclose(F.gelu(np.array(1.0)), 0.8413447460685429, rtol=1e-15)
    np.testing.assert_array_equal(F.relu([-1.0, 2.0]), [0.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", APPROX)
def test_large_values_do_not_overflow_to_nan(dtype, approximate):
    big = 1e30 if dtype == np.float32 else 1e200  # x**3 overflows in this dtype
    x = np.array([-big, -1e4, -50.0, 50.0, 1e4, big], dtype)
    y = F.gelu(x, approximate=approximate)
    dx = F.gelu_backward(np.ones_like(x), x, approximate=approximate)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0.0).astype(dtype))
    np.testing.assert_array_equal(dx, (x > 0).astype(dtype))


def _ref_tanh_gelu_ld(x):
    """tanh-form gelu and gelu' in long double, as x sigmoid(2u) (no 1 + tanh u cancellation),
    and u"""
    x = x.astype(np.longdouble)
    k = np.sqrt(np.longdouble(2) / np.longdouble(np.pi))
    u = k * (x + np.longdouble(0.044715) * x ** 3)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-2 * u))
    return x * s, s + 2 * k * x * s * (1 - s) * (1 + 3 * np.longdouble(0.044715) * x ** 2), u


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_tanh_gelu_relative_accuracy_in_both_tails(dtype, fused):
    # dense sweep down to where gelu underflows: relative error of a few ulp times the
    # conditioning of e^{-2u} in its argument (1 + 2|u|), both tails (the negative one is
    # tiny, not 0), forward and backward, the element-wise and the fused kernels
    lim = 14 if dtype == np.float32 else 37
    x = np.linspace(-lim, lim, 400001).astype(dtype)
    if fused:
        I = np.eye(1, dtype=dtype)
        y = F.linear_gelu(x[:, None], I, approximate="tanh")[:, 0]
        d = F.linear_gelu_backward(np.ones_like(x)[:, None], x[:, None], I,
                                   approximate="tanh")[0][:, 0]
    else:
        y = F.gelu(x, approximate="tanh")
        d = F.gelu_backward(np.ones_like(x), x, approximate="tanh")
    want, dwant, u = _ref_tanh_gelu_ld(x)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    cond = 1 + 2 * np.abs(u)
    m = np.abs(want) > tiny
    assert np.any(m & (np.abs(want) < 1e6 * tiny))  # the far negative tail is in the test
    err = np.abs(y.astype(np.longdouble) - want)
    assert np.all(err[m] <= 4 * eps * cond[m] * np.abs(want[m]))
    assert np.all(err[~m] <= tiny)
    # the derivative crosses 0 (x = -0.75): its error is measured against the size of its
    # terms, s and |2 sqrt(2/pi) x s (1 - s) (1 + 3 k x^2)| <= s (1 - s)(1 + |x|^3) scale
    s_neg = 1 / (1 + np.exp(np.minimum(2 * np.abs(u), 11000)))
    scale = np.abs(dwant) + s_neg * (1 + np.abs(x.astype(np.longdouble)) ** 3)
    assert np.all(np.abs(d.astype(np.longdouble) - dwant) <= 4 * eps * cond * scale + tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_exact_gelu_relative_accuracy_in_both_tails(dtype, fused):
    # the vectorised erf form against libm's erfc (math.erfc, float64): Phi(x) = 0.5 erfc(-x /
    # sqrt 2) has no 1 + erf cancellation, so the left tail is accurate relatively too.
    # Bound: a few ulp times the conditioning of e^{-x^2/2} in x (1 + x^2), down to where
    # the results leave the normal range
    lim = 14 if dtype == np.float32 else 38
    x = np.linspace(-lim, lim, 400001).astype(dtype)
    x = np.concatenate([x, np.array([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5], dtype)])
    if fused:
        I = np.eye(1, dtype=dtype)
        y = F.linear_gelu(x[:, None], I)[:, 0]
        d = F.linear_gelu_backward(np.ones_like(x)[:, None], x[:, None], I)[0][:, 0]
    else:
        y, d = F.gelu(x), F.gelu_backward(np.ones_like(x), x)
    x64 = x.astype(np.float64)
    phi = 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in x64])
    pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    want, dwant = x64 * phi, phi + x64 * pdf
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    cond = 1 + x64 ** 2
    m = np.abs(want) > 1e6 * tiny
    assert np.any(m & (x < -5))  # the far left tail is in the test
    assert np.all(np.abs(y - want)[m] <= 4 * eps * cond[m] * np.abs(want[m]))
    # gelu' crosses 0 (x = -0.75): its error against the size of its terms
    scale = phi + np.abs(x64) * pdf
    md = scale > 1e6 * tiny
    assert np.all(np.abs(d - dwant)[md] <= 4 * eps * cond[md] * scale[md])
    assert np.all(np.abs(d - dwant) <= 4 * eps * cond * scale + 1e6 * tiny)
    # exactly 0.5 at 0 (both signs), and the saturated tails exactly x / -0 and 1 / 0
    assert np.all(d[-6:-4] == 0.5) and np.all(y[-6:-4] == 0)
    big = np.array([-1e30, -50, 50, 1e30], dtype)
    np.testing.assert_array_equal(F.gelu(big), np.array([0, 0, 50, 1e30], dtype))
    np.testing.assert_array_equal(F.gelu_backward(np.ones(4, dtype), big), [0, 0, 1, 1])


def test_exact_gelu_erfc_coefficients_are_the_documented_fit():
    # csrc/kernels/gelu_math.h: R(t) = (erfc(z) e^{z^2} / t - 1) / (t - 1), t = 2 / (2 + z),
    # interpolated at n Chebyshev points of y = 2t - 1 (12 for float, 28 for double, the
    # first 27 terms kept), expanded in powers of y; re-derived here at 50 digits and
    # compared with the constants in the header
    mp = pytest.importorskip("mpmath")
    import pathlib
    import re

    src = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "kernels" / "gelu_math.h"
    assert src.exists(), f"{src} not found (the tests run from the source checkout)"
    text = src.read_text()
    mp.mp.dps = 50

    def R(t):
        z = 2 / t - 2
        return (mp.erfc(z) * mp.exp(z * z) / t - 1) / (t - 1)

    def cheb(n):
        nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
        f = [R((y + 1) / 2) for y in nodes]
        return [(2 if j else 1) * mp.fsum(f[k] * mp.cos(mp.pi * j * (k + mp.mpf(1) / 2) / n)
                                          for k in range(n)) / n for j in range(n)]

    def powers(c):
        # sum_k c_k T_k(y) as sum_i a_i y^i (T_0 = 1, T_1 = y, T_k+1 = 2y T_k - T_k-1)
        n = len(c)
        a, t0, t1 = [mp.mpf(0)] * n, [mp.mpf(1)] + [mp.mpf(0)] * (n - 1), None
        t1 = [mp.mpf(0), mp.mpf(1)] + [mp.mpf(0)] * (n - 2)
        for k in range(n):
            t = t0 if k == 0 else t1
            if k >= 2:
                t = [2 * (t1[i - 1] if i else 0) - t0[i] for i in range(n)]
                t0, t1 = t1, t
            a = [a[i] + c[k] * t[i] for i in range(n)]
        return a

    for name, n, keep, ftype in (("f32", 12, 12, np.float32), ("f64", 28, 27, np.float64)):
        body = re.search(r"tc_erfc_poly_%s\[[^]]*\] = \{([^}]*)\}" % name, text).group(1)
        got = np.array([float(v.strip().rstrip("f")) for v in body.split(",")], ftype)
        want = np.array([float(v) for v in powers(cheb(n)[:keep])], ftype)
        assert got.size == keep
        np.testing.assert_array_equal(got, want)


def test_relu_special_values_follow_torch():
    x = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf])
    y = F.relu(x)
    assert np.isnan(y[0]) and y[1] == 0.0 and np.signbit(y[1]) and not np.signbit(y[2])
    np.testing.assert_array_equal(y[3:], [0.0, np.inf])
    np.testing.assert_array_equal(F.relu_backward(np.ones(5), x)[1:], [0, 0, 0, 1])


@pytest.mark.parametrize("approximate", APPROX)
def test_parallel_path_and_thread_count(approximate):
    # above the parallel threshold; element-wise, so 1 and 2 threads agree bitwise
    x, g = data((300, 401), np.float32, 8)
    n = tc.get_num_threads()
    outs = []
    try:
        for k in (1, 2):
            tc.set_num_threads(k)
            outs.append((F.relu(x), F.relu_backward(g, x), F.gelu(x, approximate=approximate),
                         F.gelu_backward(g, x, approximate=approximate)))
    finally:
        tc.set_num_threads(n)
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(outs[0][2], ref_gelu(x, approximate), **tol(np.float32))
    np.testing.assert_allclose(outs[0][3], ref_gelu_backward(g.astype(np.float64), x, approximate),
                               **tol(np.float32))


def _c_backward(name, dtype):
    """the C kernel tc_<name>_f32/_f64 of the built extension, through ctypes"""
    import ctypes

    f = getattr(ctypes.CDLL(tc._C.__file__), f"tc_{name}_{'f32' if dtype == np.float32 else 'f64'}")
    f.restype = ctypes.c_int
    return f


def _ptr(a):
    import ctypes
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["relu", "none", "tanh"])
@pytest.mark.parametrize("n", [13, 300 * 401])  # serial, and above the parallel threshold
def test_backward_write_flag_at_the_C_level(dtype, kind, n):
    # write = TC_WRITE(0) = 1 overwrites dinp without reading it (a NaN-filled buffer gives the
    # plain gradient, with the bits of accumulating into zeros); 0 adds to what dinp holds;
    # bits past the one output are ignored (TC_WRITE_ALL = -1 writes, 2 accumulates)
    import ctypes

    x, g = data((n,), dtype, 12)
    if kind == "relu":
        want = ref_relu_backward(g.astype(np.float64), x)
        f = _c_backward("relu_backward", dtype)

        def call(d, write):
            return f(_ptr(d), _ptr(g), _ptr(x), ctypes.c_int64(n), ctypes.c_int(write))
    else:
        want = ref_gelu_backward(g.astype(np.float64), x, kind)
        f = _c_backward("gelu_backward", dtype)

        def call(d, write):
            return f(_ptr(d), _ptr(g), _ptr(x), ctypes.c_int64(n), ctypes.c_int(kind == "tanh"),
                     ctypes.c_int(write))
    t = tol(dtype)
    zero = np.zeros(n, dtype)
    assert call(zero, 0) == 0
    for write in (1, -1):
        d = np.full(n, np.nan, dtype)
        assert call(d, write) == 0
        np.testing.assert_allclose(d, want, **t)
        assert np.array_equal(d.view(np.uint8), zero.view(np.uint8))  # signed zeros too
    np.testing.assert_array_equal(d, F.relu_backward(g, x) if kind == "relu"
                                  else F.gelu_backward(g, x, approximate=kind))
    base = np.linspace(-3, 3, n).astype(dtype)
    for write in (0, 2):
        d = base.copy()
        assert call(d, write) == 0
        np.testing.assert_allclose(d, base + want, **t)


# ------------------------------------------------------------------ 5. bad input

def test_bad_input_names_the_argument():
    x = np.ones((2, 3))
    for bad in ("exact", "Tanh", None, 1):
        with pytest.raises(ValueError, match="approximate"):
            F.gelu(x, approximate=bad)
        with pytest.raises(ValueError, match="approximate"):
            F.gelu_backward(x, x, approximate=bad)
    for fn in (F.relu, F.gelu):
        with pytest.raises(TypeError, match="x"):
            fn(np.ones(3, dtype=np.int64))
        with pytest.raises(TypeError, match="x"):
            fn(np.ones(3, dtype=np.float16))
    for fn in (F.relu_backward, F.gelu_backward):
        with pytest.raises(TypeError, match="grad_output"):
            fn(np.ones((2, 3), np.float32), x)
        with pytest.raises(ValueError, match="grad_output"):
            fn(np.ones((3, 2)), x)
        with pytest.raises(TypeError, match="x"):
            fn(np.ones(3), np.array(["a", "b", "c"]))


def test_raw_C_functions_raise_instead_of_crashing():
    x = np.ones(4)
    with pytest.raises(TypeError, match="x"):
        tc._C.relu_forward("not an array")
    with pytest.raises(TypeError, match="x"):
        tc._C.relu_forward(None)
    with pytest.raises(ValueError, match="approximate"):
        tc._C.gelu_forward(x, 2)
    with pytest.raises(ValueError, match="approximate"):
        tc._C.gelu_backward(x, x, -1)
    with pytest.raises(ValueError, match="grad_output"):
        tc._C.gelu_backward(np.ones(3), x, 0)
    with pytest.raises(TypeError, match="x"):
        tc._C.relu_backward(x, x.astype(np.float32))
    with pytest.raises(TypeError):
        tc._C.gelu_forward(x)


# ------------------------------------------------------------------ every activation of the table
# One row per name of transformer_c.options.ACTIVATIONS (tc.h's TC_ACTIVATIONS list): the
# NumPy forward and derivative (float64) and the torch function. Adding an activation to C
# without a row here fails test_every_activation_has_a_test_case.

def _sigmoid(x):
    e = np.exp(-np.abs(x))  # in (0, 1]: no overflow, no cancellation in either tail
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


ACTIVATION_CASES = {
    "relu": (ref_relu, lambda x: (x > 0).astype(np.float64), lambda t, x: t.relu(x)),
    "gelu": (lambda x: ref_gelu(x, "none"), lambda x: ref_gelu_backward(np.ones_like(x), x, "none"),
             lambda t, x: t.nn.functional.gelu(x)),
    "gelu_tanh": (lambda x: ref_gelu(x, "tanh"),
                  lambda x: ref_gelu_backward(np.ones_like(x), x, "tanh"),
                  lambda t, x: t.nn.functional.gelu(x, approximate="tanh")),
    "silu": (lambda x: x * _sigmoid(x),
             lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
             lambda t, x: t.nn.functional.silu(x)),
    "relu2": (lambda x: np.maximum(x, 0) ** 2, lambda x: 2 * np.maximum(x, 0),
              lambda t, x: t.relu(x) ** 2),
}
NAMES = sorted(tc.options.ACTIVATIONS)


def test_every_activation_has_a_test_case():
    assert sorted(ACTIVATION_CASES) == NAMES
    assert sorted(tc._C.ACTIVATION_FORMULAS) == NAMES
    for name in NAMES:  # the generated public pair exists for names without a hand-written one
        if name not in ("gelu_tanh",):
            assert callable(getattr(F, name)) and callable(getattr(F, f"{name}_backward"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + [(), (0,), (2, 0, 3)])
def test_activation_table_matches_numpy(name, dtype, shape):
    fwd, deriv, _ = ACTIVATION_CASES[name]
    x, g = data(shape, dtype, seed=3)
    y = F.activation(name, x)
    dx = F.activation_backward(name, g, x)
    assert y.shape == dx.shape == x.shape and y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, fwd(x.astype(np.float64)), **tol(dtype))
    np.testing.assert_allclose(dx, g * deriv(x.astype(np.float64)), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_activation_table_finite_differences(name):
    x, _ = data((3, 11), np.float64, seed=4)
    x[np.abs(x) < 1e-3] = 0.5  # away from relu's kink
    check_grads(lambda: F.activation(name, x),
                lambda g: {"x": F.activation_backward(name, g, x)}, {"x": x})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_table_matches_torch(torch, name, dtype):
    _, _, tfn = ACTIVATION_CASES[name]
    x, g = data((4, 37), dtype, seed=5)
    tx = to_torch(torch, x)
    ty = tfn(torch, tx)
    (ty * to_torch(torch, g, grad=False)).sum().backward()
    np.testing.assert_allclose(F.activation(name, x), ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(F.activation_backward(name, g, x), tx.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_activation_table_any_layout(name, layout):
    x, g = data((6, 10), np.float64, seed=6)
    np.testing.assert_array_equal(F.activation(name, layout(x)), F.activation(name, x))
    np.testing.assert_array_equal(F.activation_backward(name, layout(g), layout(x)),
                                  F.activation_backward(name, g, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_special_values_and_tails(torch, dtype):
    x = np.array([-np.inf, -1e30, -800, -100, -30, -1e-30, -0.0, 0.0, 1e-30, 30, 100, 1e30,
                  np.inf, np.nan], dtype)
    y, d = F.silu(x), F.silu_backward(np.ones_like(x), x)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.nn.functional.silu(tx)
    ty.sum().backward()
    np.testing.assert_array_equal(np.signbit(y[6:8]), [True, False])  # silu(-0) = -0
    finite = np.isfinite(x)
    # torch flushes the subnormal results of the far left tail (silu(-100) in float32 is
    # -3.8e-42) to -0: compared to torch up to subnormals, to float64 NumPy exactly there
    sub = 1e4 * np.finfo(dtype).tiny
    np.testing.assert_allclose(y[finite], ty.detach().numpy()[finite], rtol=4e-7, atol=sub)
    np.testing.assert_allclose(d[finite], tx.grad.numpy()[finite], rtol=4e-7, atol=sub)
    x64 = x[finite].astype(np.float64)
    # (subnormal results carry fewer bits: absolute error there, up to 64 subnormal steps)
    np.testing.assert_allclose(y[finite], (x64 * _sigmoid(x64)).astype(dtype), rtol=4e-7,
                               atol=64 * np.finfo(dtype).smallest_subnormal)
    assert np.isnan(y[-1]) and np.isnan(d[-1])
    assert y[-2] == np.inf and d[-2] == 1 and d[0] == 0  # the derivative's limits at +-inf
    assert np.isnan(y[0])  # -inf * sigmoid(-inf) = -inf * 0, as the formula (and torch)
    # the left tail keeps its relative accuracy (no 1 - s cancellation): silu(-30) = -30 e^-30
    want = -30 * math.exp(-30) / (1 + math.exp(-30))
    assert abs(y[4] / want - 1) < 4 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu2_special_values(torch, dtype):
    x = np.array([-np.inf, -1e30, -2.5, -0.0, 0.0, 1e-30, 3.0, 1e30, np.inf, np.nan], dtype)
    g = np.full_like(x, 2.0)
    y, d = F.relu2(x), F.relu2_backward(g, x)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    (torch.relu(tx) ** 2 * torch.from_numpy(g)).sum().backward()
    finite = np.isfinite(x)
    np.testing.assert_array_equal(y[finite], (torch.relu(torch.from_numpy(x)) ** 2).numpy()[finite])
    np.testing.assert_array_equal(d[finite], tx.grad.numpy()[finite])
    assert not np.signbit(y[3])  # relu2(-0) = (-0)^2 = +0
    assert y[0] == 0 and y[-2] == np.inf and d[0] == 0 and d[-2] == np.inf
    if dtype == np.float32:
        assert y[7] == np.inf  # (1e30)^2 overflows float32, as the formula
    assert np.isnan(y[-1]) and d[-1] == 0  # NaN propagates forward; the gradient selects 0
    # the C table and the reference agree on every special value, bitwise
    act = tc.options.ACTIVATIONS.index("relu2")
    np.testing.assert_array_equal(tc._C.activation_forward_ref(act, x), y)
    np.testing.assert_array_equal(tc._C.activation_backward_ref(act, g, x), d)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_table_against_the_reference_and_portable_kernels(name, dtype):
    act = tc.options.ACTIVATIONS.index(name)
    x = np.concatenate([np.linspace(-12, 12, 1001), [0.0, -0.0, 1e-20, -1e-20]]).astype(dtype)
    g = rng(7).standard_normal(x.size).astype(dtype)
    ref, dref = tc._C.activation_forward_ref(act, x), tc._C.activation_backward_ref(act, g, x)
    fast = F.activation(name, x), F.activation_backward(name, g, x)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(fast[0], ref, rtol=16 * eps, atol=16 * eps)
    np.testing.assert_allclose(fast[1], dref, rtol=16 * eps, atol=16 * eps * np.abs(g).max())
    tc._C.cpu_set_portable(True)
    try:
        portable = F.activation(name, x), F.activation_backward(name, g, x)
    finally:
        tc._C.cpu_set_portable(False)
    # the baseline variant (the AVX2 one's source, compiled for the x86-64 baseline, where the
    # compiler contracts no FMAs): the same accuracy against the reference
    np.testing.assert_allclose(portable[0], ref, rtol=16 * eps, atol=16 * eps)
    np.testing.assert_allclose(portable[1], dref, rtol=16 * eps, atol=16 * eps * np.abs(g).max())
    if name in ("relu", "relu2"):  # one comparison (and product) per element: bitwise
        np.testing.assert_array_equal(portable[0], fast[0])
        np.testing.assert_array_equal(fast[0], ref)


def test_activation_table_bad_input():
    x = np.ones(3)
    for bad in ("swish", "SiLU", None, 3):
        with pytest.raises(ValueError, match="activation"):
            F.activation(bad, x)
        with pytest.raises(ValueError, match="activation"):
            F.activation_backward(bad, x, x)
    with pytest.raises(TypeError, match="x"):
        F.silu(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="grad_output"):
        F.silu_backward(np.ones(4), x)
    with pytest.raises(ValueError, match="act"):
        tc._C.activation_forward(len(tc.options.ACTIVATIONS), x)
    with pytest.raises(ValueError, match="act"):
        tc._C.activation_backward(-1, x, x)
