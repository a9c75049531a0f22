"""Fused kernels: linear + GELU and residual add + layernorm. NumPy references, finite
differences, PyTorch parity, awkward shapes and bad input."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional
DTYPES = [np.float32, np.float64]
APPROX = ["none", "tanh"]


# ------------------------------------------------------------------ references (NumPy)

def np_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def ref_gelu(x, approximate):
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + np_erf(x / math.sqrt(2)))


def ref_gelu_grad(x, approximate):
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
    return 0.5 * (1 + np_erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def ref_linear_gelu(x, W, b, approximate):
    pre = x.astype(np.float64) @ W.T.astype(np.float64) + (0 if b is None else b)
    return ref_gelu(pre, approximate), pre


def ref_linear_gelu_backward(g, x, W, b, approximate):
    _, pre = ref_linear_gelu(x, W, b, approximate)
    dpre = (g.astype(np.float64) * ref_gelu_grad(pre, approximate)).reshape(-1, W.shape[0])
    x2 = x.reshape(-1, W.shape[1]).astype(np.float64)
    return (dpre @ W).reshape(x.shape), dpre.T @ x2, dpre.sum(0)


def ref_ln_residual(x, r, w, b, eps=1e-5):
    s = x.astype(np.float64) + r
    m = s.mean(-1, keepdims=True)
    v = ((s - m) ** 2).mean(-1, keepdims=True)
    y = (s - m) / np.sqrt(v + eps) * w + (0 if b is None else b)
    return y, s


def ref_ln_residual_backward(dy, ds, s, w, eps=1e-5):
    s = s.astype(np.float64)
    m = s.mean(-1, keepdims=True)
    rs = 1 / np.sqrt(((s - m) ** 2).mean(-1, keepdims=True) + eps)
    xh = (s - m) * rs
    g = dy * w
    dsum = rs * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))
    if ds is not None:
        dsum = dsum + ds
    C = s.shape[-1]
    return dsum, (dy * xh).reshape(-1, C).sum(0), dy.reshape(-1, C).sum(0)


def close(got, want, dtype, scale=1.0):
    t = tol(dtype)
    np.testing.assert_allclose(got, want, rtol=t["rtol"] * scale, atol=t["atol"] * scale)


# ------------------------------------------------------------------ linear + GELU

LG_SHAPES = [((5, 4), 3), ((2, 3, 7), 13), ((1, 33), 17), ((4,), 2), ((0, 4), 3),
             ((2, 0, 4), 3), ((150, 600), 100), ((40, 9), 70)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,OC", LG_SHAPES)
@pytest.mark.parametrize("approximate", APPROX)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gelu_matches_numpy(dtype, shape, OC, approximate, with_bias):
    r = rng(len(shape) * 100 + OC)
    C = shape[-1]
    x = r.standard_normal(shape).astype(dtype)
    W = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype) if with_bias else None
    y, pre = F.linear_gelu(x, W, b, approximate=approximate, return_pre=True)
    want, want_pre = ref_linear_gelu(x, W, b, approximate)
    assert y.dtype == dtype and y.shape == shape[:-1] + (OC,) and pre.shape == y.shape
    scale = np.sqrt(C) * 4
    close(y, want, dtype, scale)
    close(pre, want_pre, dtype, scale)
    np.testing.assert_array_equal(F.linear_gelu(x, W, b, approximate=approximate), y)
    g = r.standard_normal(y.shape).astype(dtype)
    dx, dW, db = F.linear_gelu_backward(g, x, W, b, approximate=approximate, pre=pre)
    wdx, wdW, wdb = ref_linear_gelu_backward(g, x, W, b, approximate)
    rows = max(int(np.prod(shape[:-1])), 1)
    close(dx, wdx, dtype, np.sqrt(OC) * 4)
    close(dW, wdW, dtype, np.sqrt(rows) * 4)
    assert (db is None) == (b is None)
    if b is not None:
        close(db, wdb, dtype, np.sqrt(rows) * 4)
    # pre recomputed when not given: the same gradients
    dx2, dW2, db2 = F.linear_gelu_backward(g, x, W, b, approximate=approximate)
    close(dx2, dx, dtype)
    close(dW2, dW, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,OC", LG_SHAPES)
@pytest.mark.parametrize("approximate", APPROX)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gelu_dact_cache(dtype, shape, OC, approximate, with_bias):
    # return_dact caches gelu'(pre) from the same evaluation as y: y is the same bits, dact
    # matches the reference derivative, and the backward from it gives the same bits as the
    # backward from pre (only the GELU evaluation is skipped)
    r = rng(len(shape) * 10 + OC + 7)
    C = shape[-1]
    x = r.standard_normal(shape).astype(dtype)
    W = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype) if with_bias else None
    y, pre = F.linear_gelu(x, W, b, approximate=approximate, return_pre=True)
    y2, dact = F.linear_gelu(x, W, b, approximate=approximate, return_dact=True)
    np.testing.assert_array_equal(y2, y)
    assert dact.shape == y.shape and dact.dtype == dtype
    close(dact, ref_gelu_grad(pre, approximate), dtype, 4)
    g = r.standard_normal(y.shape).astype(dtype)
    want = F.linear_gelu_backward(g, x, W, b, approximate=approximate, pre=pre)
    got = F.linear_gelu_backward(g, x, W, b, approximate=approximate, dact=dact)
    for a, w in zip(got, want):
        assert (a is None) == (w is None)
        if a is not None:
            np.testing.assert_array_equal(a, w)


def test_linear_gelu_dact_bad_input():
    x, W = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match="exclusive"):
        F.linear_gelu(x, W, return_pre=True, return_dact=True)
    y, dact = F.linear_gelu(x, W, return_dact=True)
    with pytest.raises(ValueError, match="one cache"):
        F.linear_gelu_backward(y, x, W, pre=dact, dact=dact)
    with pytest.raises(ValueError, match="dact must have shape"):
        F.linear_gelu_backward(y, x, W, dact=dact[:2])
    with pytest.raises(TypeError, match="dact"):
        F.linear_gelu_backward(y, x, W, dact=dact.astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,C,OC", [(3, 530, 77), (1000, 40, 33), (301, 600, 260)])
def test_linear_gelu_epilogue_covers_every_block_once(threads, dtype, rows, C, OC):
    # the GEMM's epilogue runs per finished column block of a row block; over row and column
    # splits (few rows: columns per thread), several k-blocks (C > 512) and partial panels,
    # every element gets its bias and GELU exactly once, whatever the thread count
    r = rng(rows + C + OC)
    x = r.standard_normal((rows, C)).astype(dtype)
    W = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype)
    got = []
    for n in (1, 2):
        threads(n)
        got.append(F.linear_gelu(x, W, b, approximate="tanh", return_pre=True))
    want, want_pre = ref_linear_gelu(x, W, b, "tanh")
    close(got[0][0], want, dtype, np.sqrt(C) * 4)
    close(got[0][1], want_pre, dtype, np.sqrt(C) * 4)
    for a, b_ in zip(got[0], got[1]):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("approximate", APPROX)
def test_linear_gelu_finite_differences(approximate):
    r = rng(5)
    x, W, b = r.standard_normal((3, 4)), r.standard_normal((5, 4)), r.standard_normal(5)
    arrays = {"x": x, "W": W, "b": b}

    def grads(G):
        dx, dW, db = F.linear_gelu_backward(G, x, W, b, approximate=approximate)
        return {"x": dx, "W": dW, "b": db}

    check_grads(lambda: F.linear_gelu(x, W, b, approximate=approximate), grads, arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", APPROX)
def test_linear_gelu_matches_torch(torch, dtype, approximate):
    r = rng(6)
    x = r.standard_normal((2, 9, 24)).astype(dtype) * 2
    W = (r.standard_normal((40, 24)) / 5).astype(dtype)
    b = r.standard_normal(40).astype(dtype)
    G = r.standard_normal((2, 9, 40)).astype(dtype)
    tx, tW, tb = (to_torch(torch, a) for a in (x, W, b))
    out = torch.nn.functional.gelu(torch.nn.functional.linear(tx, tW, tb), approximate=approximate)
    (out * to_torch(torch, G, grad=False)).sum().backward()
    y, pre = F.linear_gelu(x, W, b, approximate=approximate, return_pre=True)
    dx, dW, db = F.linear_gelu_backward(G, x, W, b, approximate=approximate, pre=pre)
    t = tol(dtype)
    np.testing.assert_allclose(y, out.detach().numpy(), **t)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **t)
    np.testing.assert_allclose(dW, tW.grad.numpy(), rtol=t["rtol"], atol=t["atol"] * 10)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=t["rtol"], atol=t["atol"] * 10)


def test_fast_float32_tanh_gelu_is_accurate_everywhere():
    # the vectorised float32 tanh form (x sigmoid(2u), gelu_math.h): dense sweep,
    # saturation, huge values (x^3 overflows), NaN
    x = np.concatenate([np.linspace(-12, 12, 200001), [0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0,
                                                        1e20, -1e20, 3e38, -3e38]])
    x = x.astype(np.float32)
    I = np.eye(1, dtype=np.float32)
    y = F.linear_gelu(x[:, None], I, approximate="tanh")[:, 0]
    want = ref_gelu(x.astype(np.float64), "tanh")
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.where(np.abs(x) > 1e19, np.where(x > 0, x.astype(np.float64), -0.0), want)
    # a few ulp of the result, plus the float32 rounding of 1 + tanh(u) (ulp(1) * |x| / 2)
    # that any float32 evaluation of this formula has where tanh(u) is near -1
    bound = 4e-6 * np.abs(want) + 6e-8 * np.abs(x.astype(np.float64)) + 1e-37
    finite = np.abs(x) < 1e19
    assert np.all(np.abs(y - want)[finite] <= bound[finite])
    assert np.all(y[~finite] == want[~finite])
    dx = F.linear_gelu_backward(np.ones_like(y)[:, None], x[:, None], I, approximate="tanh")[0][:, 0]
    assert np.all(np.isfinite(dx))
    wd = ref_gelu_grad(np.clip(x, -20, 20).astype(np.float64), "tanh")
    np.testing.assert_allclose(dx, wd, rtol=1e-5, atol=2e-6)
    nan = F.linear_gelu(np.array([[np.nan]], np.float32), I, approximate="tanh")
    assert np.isnan(nan).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_gelu_non_contiguous_and_fortran(dtype):
    r = rng(7)
    x = r.standard_normal((6, 10)).astype(dtype)
    W = r.standard_normal((7, 10)).astype(dtype)
    b = r.standard_normal(7).astype(dtype)
    g = r.standard_normal((6, 7)).astype(dtype)
    want = F.linear_gelu(x, W, b)
    wgrads = F.linear_gelu_backward(g, x, W, b)
    for tf in (non_contiguous, fortran):
        np.testing.assert_array_equal(F.linear_gelu(tf(x), tf(W), tf(b)), want)
        for got, w in zip(F.linear_gelu_backward(tf(g), tf(x), tf(W), tf(b)), wgrads):
            np.testing.assert_array_equal(got, w)


def test_linear_gelu_zero_inner_dim_is_gelu_of_bias():
    b = np.array([-1.0, 0.5, 2.0])
    y = F.linear_gelu(np.zeros((4, 0)), np.zeros((3, 0)), b, approximate="tanh")
    np.testing.assert_allclose(y, np.tile(ref_gelu(b, "tanh"), (4, 1)), rtol=1e-12)


def test_linear_gelu_bad_input():
    x, W, b = np.zeros((3, 4)), np.zeros((5, 4)), np.zeros(5)
    with pytest.raises(ValueError, match="weight"):
        F.linear_gelu(x, np.zeros((5, 3)), b)
    with pytest.raises(ValueError, match="weight"):
        F.linear_gelu(x, np.zeros(4), b)
    with pytest.raises(ValueError, match="bias"):
        F.linear_gelu(x, W, np.zeros(4))
    with pytest.raises(TypeError, match="weight"):
        F.linear_gelu(x, W.astype(np.float32), b)
    with pytest.raises(TypeError, match="x"):
        F.linear_gelu(x.astype(np.int64), W, b)
    with pytest.raises(ValueError, match="approximate"):
        F.linear_gelu(x, W, b, approximate="erf")
    with pytest.raises(ValueError, match="grad_output"):
        F.linear_gelu_backward(np.zeros((3, 4)), x, W, b)
    with pytest.raises(ValueError, match="pre"):
        F.linear_gelu_backward(np.zeros((3, 5)), x, W, b, pre=np.zeros((3, 4)))
    with pytest.raises(TypeError, match="pre"):
        F.linear_gelu_backward(np.zeros((3, 5)), x, W, b, pre=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="approximate_tanh"):
        tc._C.linear_gelu_forward(x, W, b, 2, False)
    with pytest.raises(ValueError, match="weight"):
        tc._C.linear_gelu_forward(x, np.zeros((5, 2)), None, 0, True)
    with pytest.raises(TypeError):
        tc._C.linear_gelu_backward(x, W)


# ------------------------------------------------------------------ linear + ReLU / ReLU^2

RELUS = {"relu": (lambda p: np.maximum(p, 0), lambda p: (p > 0).astype(p.dtype)),
         "relu2": (lambda p: np.maximum(p, 0) ** 2, lambda p: np.where(p > 0, 2 * p, 0))}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,OC", LG_SHAPES)
@pytest.mark.parametrize("act", sorted(RELUS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_relu_fused_matches_unfused_and_numpy(dtype, shape, OC, act, with_bias):
    # the fused pair (the GEMM's epilogue) against the unfused kernels the models ran before
    # (linear, then relu / relu2 and their backward): the same bits, forward and backward;
    # and against NumPy. Some pre are exactly 0 (zero rows of x, zero bias): relu' and relu2'
    # are 0 there, as the unfused backward's select.
    r = rng(len(shape) * 100 + OC + 3)
    C = shape[-1]
    x = r.standard_normal(shape).astype(dtype)
    x.reshape(-1, C)[:1] = 0
    W = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype) if with_bias else None
    if b is not None:
        b[: OC // 2] = 0
    y, dact = F.linear_activation(x, W, b, act, return_dact=True)
    assert y.dtype == dtype and y.shape == shape[:-1] + (OC,) and dact.shape == y.shape
    # pre as the epilogue forms it (the GEMM's sum, then + bias: linear_gelu's cache);
    # linear's (bias as the GEMM's initial C) agrees to rounding (the k-blocks' sums)
    pre = F.linear_gelu(x, W, b, return_pre=True)[1]
    close(F.linear(x, W, b), pre, dtype, np.sqrt(C))
    np.testing.assert_array_equal(y, F.activation(act, pre))
    np.testing.assert_array_equal(F.linear_activation(x, W, b, act), y)  # inference: no cache
    fwd, der = RELUS[act]
    np.testing.assert_array_equal(dact, der(pre))
    if x.size and OC:
        assert (pre == 0).any() and not dact[pre == 0].any()
    pre64 = x.astype(np.float64) @ W.T.astype(np.float64) + (0 if b is None else b)
    close(y, fwd(pre64), dtype, np.sqrt(C) * 4 * (1 + np.abs(pre64).max(initial=0)))
    g = r.standard_normal(y.shape).astype(dtype)
    got = F.linear_activation_backward(g, x, W, dact, b)
    want = F.linear_backward(F.activation_backward(act, g, pre), x, W, b)
    # dx, dweight: the same products of the same dpre; dbias summed in chunks of rows
    # (linear_gelu's order) rather than linear_backward's: to rounding
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (got[2] is None) == (b is None)
    rows = max(int(np.prod(shape[:-1])), 1)
    if b is not None:
        close(got[2], want[2], dtype, np.sqrt(rows))
        close(got[2], (g.astype(np.float64) * der(pre64)).reshape(-1, OC).sum(0), dtype,
              np.sqrt(rows) * 8)
    dpre = g.astype(np.float64) * der(pre64)
    close(got[0], (dpre @ W.astype(np.float64)), dtype, np.sqrt(OC) * 8)
    close(got[1], dpre.reshape(-1, OC).T @ x.reshape(-1, C).astype(np.float64), dtype,
          np.sqrt(rows) * 8)


@pytest.mark.parametrize("act", sorted(RELUS))
def test_linear_relu_fused_special_values(act):
    # NaN propagates, relu keeps -0 (relu2 gives +0), derivative 0 at NaN and at 0: the
    # element-wise kernels' conventions (the bias carries the special values; x is zero, so
    # pre = the GEMM's +0 + bias: a -0 bias gives +0, and no pre is -0)
    b = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, 3.0, -2.0, 1e-300])
    for dt in DTYPES:
        x, W, bb = np.zeros((3, 2), dt), np.zeros((b.size, 2), dt), b.astype(dt)
        y, d = F.linear_activation(x, W, bb, act, return_dact=True)
        pre = F.linear_gelu(x, W, bb, return_pre=True)[1]
        want = F.activation(act, pre)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(want))
        assert np.isnan(y[:, 0]).all() and (y[:, 3] == 0).all() and (y[:, 4] == np.inf).all()
        g = np.ones_like(y)
        np.testing.assert_array_equal(g * d, F.activation_backward(act, g, pre))
        assert not d[:, [0, 1, 2]].any()  # 0 at NaN and at +-0


@pytest.mark.parametrize("act", sorted(RELUS))
def test_linear_relu_fused_finite_differences(act):
    # float64 central differences of the fused pair (pre kept away from relu's kink)
    r = rng(8)
    x, W, b = r.standard_normal((3, 4)), r.standard_normal((5, 4)), r.standard_normal(5)
    assert np.abs(x @ W.T + b).min() > 1e-3
    arrays = {"x": x, "W": W, "b": b}
    _, dact = F.linear_activation(x, W, b, act, return_dact=True)

    def grads(G):
        dx, dW, db = F.linear_activation_backward(G, x, W, dact, b)
        return {"x": dx, "W": dW, "b": db}

    check_grads(lambda: F.linear_activation(x, W, b, act), grads, arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,C,OC", [(1, 530, 77), (301, 600, 260)])
def test_linear_relu_fused_threads_and_layouts(threads, dtype, rows, C, OC):
    # every epilogue block once whatever the thread count, non-contiguous / Fortran inputs
    r = rng(rows + OC)
    x = r.standard_normal((rows, C)).astype(dtype)
    W = (r.standard_normal((OC, C)) / np.sqrt(C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype)
    for act in RELUS:
        got = []
        for n in (1, 2):
            threads(n)
            got.append(F.linear_activation(x, W, b, act, return_dact=True))
        for a, b_ in zip(got[0], got[1]):
            np.testing.assert_array_equal(a, b_)
        pre = F.linear_gelu(x, W, b, return_pre=True)[1]  # the epilogue's pre
        np.testing.assert_array_equal(got[0][0], F.activation(act, pre))
        for tf in (non_contiguous, fortran):
            for a, w in zip(F.linear_activation(tf(x), tf(W), tf(b), act, return_dact=True),
                            got[1]):
                np.testing.assert_array_equal(a, w)


def test_linear_activation_fused_column_and_gelu():
    # the table's fused column: the GELUs through linear_activation are linear_gelu's bits;
    # silu has no fused pair
    r = rng(9)
    x, W, b = r.standard_normal((4, 6)), r.standard_normal((5, 6)), r.standard_normal(5)
    for act, approx in (("gelu", "none"), ("gelu_tanh", "tanh")):
        for a, w in zip(F.linear_activation(x, W, b, act, return_dact=True),
                        F.linear_gelu(x, W, b, approximate=approx, return_dact=True)):
            np.testing.assert_array_equal(a, w)


def test_linear_activation_bad_input():
    x, W, b = np.zeros((3, 4)), np.zeros((5, 4)), np.zeros(5)
    with pytest.raises(ValueError, match="activation"):
        F.linear_activation(x, W, b, "silu")
    with pytest.raises(ValueError, match="activation"):
        F.linear_activation(x, W, b, "relu3")
    with pytest.raises(ValueError, match="weight"):
        F.linear_activation(x, np.zeros((5, 3)), b, "relu")
    with pytest.raises(TypeError, match="x"):
        F.linear_activation(x.astype(np.int64), W, b, "relu2")
    _, dact = F.linear_activation(x, W, b, "relu2", return_dact=True)
    with pytest.raises(ValueError, match="dact"):
        F.linear_activation_backward(np.zeros((3, 5)), x, W, dact[:2], b)
    with pytest.raises(TypeError, match="dact"):
        F.linear_activation_backward(np.zeros((3, 5)), x, W, dact.astype(np.float32), b)
    with pytest.raises(ValueError, match="grad_output"):
        F.linear_activation_backward(np.zeros((3, 4)), x, W, dact, b)
    with pytest.raises(ValueError, match="activation"):
        tc._C.linear_activation_forward(99, x, W, b, True)


# ------------------------------------------------------------------ residual + layernorm

LN_SHAPES = [(4, 7), (2, 3, 13), (1, 1, 33), (5, 1), (0, 5), (2, 0, 8), (3, 100)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_ds", [True, False])
def test_layer_norm_residual_matches_numpy(dtype, shape, with_bias, with_ds):
    r = rng(sum(shape) + 3)
    C = shape[-1]
    x, res = (r.standard_normal(shape).astype(dtype) for _ in range(2))
    w = r.standard_normal(C).astype(dtype)
    b = r.standard_normal(C).astype(dtype) if with_bias else None
    y, s, mean, rstd = F.layer_norm_residual(x, res, w, b, return_stats=True)
    wy, ws = ref_ln_residual(x, res, w, b)
    assert y.dtype == dtype and y.shape == shape and s.shape == shape
    assert mean.shape == shape[:-1] and rstd.shape == shape[:-1]
    close(y, wy, dtype, 10)
    close(s, ws, dtype)
    dy = r.standard_normal(shape).astype(dtype)
    ds = r.standard_normal(shape).astype(dtype) if with_ds else None
    dx, dr, dw, db = F.layer_norm_residual_backward(dy, s, w, b, mean=mean, rstd=rstd, grad_s=ds)
    wdx, wdw, wdb = ref_ln_residual_backward(dy, ds, s, w)
    close(dx, wdx, dtype, 10)
    close(dr, wdx, dtype, 10)
    close(dw, wdw, dtype, 10)
    assert (db is None) == (b is None)
    if b is not None:
        close(db, wdb, dtype, 10)
    # statistics recomputed when not given
    for got, want in zip(F.layer_norm_residual_backward(dy, s, w, b, grad_s=ds), (dx, dr, dw)):
        close(got, want, dtype)


def test_layer_norm_residual_finite_differences():
    r = rng(8)
    x, res = r.standard_normal((3, 6)), r.standard_normal((3, 6))
    w, b = r.standard_normal(6), r.standard_normal(6)
    H = r.standard_normal((3, 6))
    arrays = {"x": x, "r": res, "w": w, "b": b}

    def forward():
        y, s = F.layer_norm_residual(x, res, w, b)
        return np.concatenate([y, s * H])  # L = sum(y G1) + sum(s H G2)

    def grads(G):
        G1, G2 = G[:3], G[3:]
        _, s = F.layer_norm_residual(x, res, w, b)
        dx, dr, dw, db = F.layer_norm_residual_backward(G1, s, w, b, grad_s=H * G2)
        return {"x": dx, "r": dr, "w": dw, "b": db}

    check_grads(forward, grads, arrays)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_residual_matches_torch(torch, dtype):
    r = rng(9)
    x, res = r.standard_normal((2, 5, 48)).astype(dtype), r.standard_normal((2, 5, 48)).astype(dtype)
    w, b = r.standard_normal(48).astype(dtype), r.standard_normal(48).astype(dtype)
    G, H = r.standard_normal((2, 5, 48)).astype(dtype), r.standard_normal((2, 5, 48)).astype(dtype)
    tx, tr, tw, tb = (to_torch(torch, a) for a in (x, res, w, b))
    ts = tx + tr
    ty = torch.nn.functional.layer_norm(ts, (48,), tw, tb, 1e-5)
    ((ty * to_torch(torch, G, False)).sum() + (ts * to_torch(torch, H, False)).sum()).backward()
    y, s, mean, rstd = F.layer_norm_residual(x, res, w, b, return_stats=True)
    dx, dr, dw, db = F.layer_norm_residual_backward(G, s, w, b, mean=mean, rstd=rstd, grad_s=H)
    t = tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), **t)
    np.testing.assert_allclose(s, ts.detach().numpy(), **t)
    for got, want in ((dx, tx.grad), (dr, tr.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=t["rtol"], atol=t["atol"] * 10)


def test_layer_norm_residual_layouts_and_large_offsets():
    r = rng(10)
    x = r.standard_normal((6, 9)).astype(np.float32)
    res = r.standard_normal((6, 9)).astype(np.float32)
    w, b = r.standard_normal(9).astype(np.float32), r.standard_normal(9).astype(np.float32)
    want = F.layer_norm_residual(x, res, w, b)
    for tf in (non_contiguous, fortran):
        for got, exp in zip(F.layer_norm_residual(tf(x), tf(res), tf(w), tf(b)), want):
            np.testing.assert_array_equal(got, exp)
    # a large common offset (1e4) in float32: statistics in double keep the precision
    big = (1e4 + r.standard_normal((4, 64))).astype(np.float32)
    zero = np.zeros_like(big)
    y, _ = F.layer_norm_residual(big, zero, np.ones(64, np.float32))
    wy, _ = ref_ln_residual(big, zero, np.ones(64), None)
    np.testing.assert_allclose(y, wy, rtol=1e-3, atol=1e-3)


def test_layer_norm_residual_bad_input():
    x, w = np.zeros((3, 4)), np.ones(4)
    with pytest.raises(ValueError, match="residual"):
        F.layer_norm_residual(x, np.zeros((3, 5)), w)
    with pytest.raises(TypeError, match="residual"):
        F.layer_norm_residual(x, np.zeros((3, 4), np.float32), w)
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm_residual(x, x, np.ones(3))
    with pytest.raises(ValueError, match="bias"):
        F.layer_norm_residual(x, x, w, np.ones(5))
    with pytest.raises(ValueError, match="eps"):
        F.layer_norm_residual(x, x, w, eps=-1.0)
    with pytest.raises(ValueError, match="x"):
        F.layer_norm_residual(np.zeros((3, 0)), np.zeros((3, 0)), np.ones(0))
    _, s, mean, rstd = F.layer_norm_residual(x + np.arange(4), x, w, return_stats=True)
    with pytest.raises(ValueError, match="grad_output"):
        F.layer_norm_residual_backward(np.zeros((3, 5)), s, w)
    with pytest.raises(ValueError, match="grad_s"):
        F.layer_norm_residual_backward(np.zeros((3, 4)), s, w, grad_s=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="rstd"):
        F.layer_norm_residual_backward(np.zeros((3, 4)), s, w, mean=mean)
    with pytest.raises(ValueError, match="mean"):
        F.layer_norm_residual_backward(np.zeros((3, 4)), s, w, mean=mean[:2], rstd=rstd)
    with pytest.raises(ValueError, match="mean"):
        tc._C.layernorm_residual_backward(np.zeros((3, 4)), None, s, w, mean[:2], rstd, True)
    with pytest.raises(ValueError, match="eps"):
        tc._C.layernorm_residual_forward(x, x, w, None, float("nan"))
    with pytest.raises(TypeError):
        tc._C.layernorm_residual_forward(x, x)


def test_avx2_and_baseline_row_routines_agree_bitwise():
    # the AVX2 variants use no FMA: they must round exactly like the baseline ones. x and W
    # hold small multiples of 1/8 so the products themselves are exact under either GEMM
    # kernel (the AVX2 one contracts to FMA); only dx and dweight would then differ.
    if not tc._C.cpu_has_avx2() or tc._C.cpu_portable():
        pytest.skip("this CPU has no AVX2 (or TC_PORTABLE=1 forces the portable kernels)")
    r = rng(11)
    x = (r.integers(-12, 13, (37, 50)) / 8).astype(np.float32)
    W = (r.integers(-4, 5, (70, 50)) / 8).astype(np.float32)
    b = r.standard_normal(70).astype(np.float32)
    g = r.standard_normal((37, 70)).astype(np.float32)
    res = r.standard_normal((37, 50)).astype(np.float32)
    w, lb = r.standard_normal(50).astype(np.float32), r.standard_normal(50).astype(np.float32)

    def run():
        out = [F.linear_gelu(x, W, b, approximate=a, return_pre=True) for a in APPROX]
        out += [F.linear_gelu(x, W, b, approximate=a, return_dact=True) for a in APPROX]
        out += [F.linear_gelu_backward(g, x, W, b, approximate=a)[2] for a in APPROX]
        out += [F.linear_activation(x, W, b, a, return_dact=True) for a in ("relu", "relu2")]
        y, s, m, rs = F.layer_norm_residual(x, res, w, lb, return_stats=True)
        out += [y, s, F.layer_norm_residual_backward(x, s, w, lb, mean=m, rstd=rs, grad_s=res)]
        return out

    fast = run()
    tc._C.gemm_set_kernel("generic")
    try:
        base = run()
    finally:
        tc._C.gemm_set_kernel("auto")

    def flat(t):
        if isinstance(t, (tuple, list)):
            return [a for item in t for a in flat(item)]
        return [t]

    for a, b_ in zip(flat(fast), flat(base)):
        if a is not None:
            np.testing.assert_array_equal(a, b_)
