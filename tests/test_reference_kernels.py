"""Every optimised kernel family against its plain reference (csrc/kernels/<family>_ref.h,
exposed as _C.<name>_ref test hooks), and every reference against an independent NumPy
formula, so the reference is checked too.

Tolerances. Where the kernel and its reference do the same operations in the same order
(relu, dropout, embedding, the sinusoidal table, float64 SGD) the test asserts bitwise
equality. Elsewhere the two algorithms differ on purpose: the references evaluate in double
with libm and sum in order, the kernels use vector exp / erfc polynomials, float sums,
blocked GEMMs and chunked reductions. There the test bounds the largest difference by
`ulps` units in the last place of the dtype, relative to the largest magnitude of the
result (or of the terms summed, where sums cancel): the kernels' documented accuracy is a
few ulps per operation, and a reduction over K terms can add about K ulps of its terms.
"""
import math

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import _C

DTYPES = [np.float32, np.float64]
GELU_TANH, GELU, RELU = 0, 1, 2  # tc_activation


def rng(seed=0):
    return np.random.default_rng(seed)


def bitwise(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), np.abs(a - b).max()


def close(fast, ref, dtype, ulps, scale=None):
    """|fast - ref| <= ulps * eps(dtype) * scale elementwise; scale a number or an array of
    ref's shape (default: the largest |ref|, at least tiny)."""
    fast, ref = np.asarray(fast, np.float64), np.asarray(ref, np.float64)
    assert fast.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    ok = ~np.isnan(ref)
    if not ok.any():
        return
    if scale is None:
        scale = max(np.abs(ref[ok]).max(), np.finfo(dtype).tiny)
    scale = np.broadcast_to(np.asarray(scale, np.float64), ref.shape)[ok]
    err = np.abs(fast[ok] - ref[ok])
    bad = err > ulps * np.finfo(dtype).eps * scale
    assert not bad.any(), (err[bad].max(), scale[bad].min())


def awkward(n, dtype, seed=0, scale=3.0):
    """n values: normal * scale, with large and special magnitudes mixed in."""
    x = rng(seed).standard_normal(n) * scale
    special = [0.0, -0.0, 1e4, -1e4, 30.0, -30.0, 1e-30, 1e30 if dtype == np.float32 else 1e300]
    x[: min(n, len(special))] = special[: min(n, len(special))]
    return x.astype(dtype)


# ---------------------------------------------------------------- activations

def np_gelu(x, act):
    x = x.astype(np.float64)
    if act == GELU:
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1 + np.tanh(u))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 33, 1000])
def test_activations_match_their_reference(dtype, n):
    x = awkward(n, dtype)
    g = rng(1).standard_normal(n).astype(dtype)
    # relu: one comparison per element either way
    bitwise(_C.relu_forward(x), _C.activation_forward_ref(RELU, x))
    bitwise(_C.relu_backward(g, x), _C.activation_backward_ref(RELU, g, x))
    for act, approx in ((GELU, 0), (GELU_TANH, 1)):
        ref = _C.activation_forward_ref(act, x)
        # vector erfc / exp vs libm in double: a few ulps; values near 0 relative to 1e-3
        close(_C.gelu_forward(x, approx), ref, dtype, 16, np.maximum(np.abs(ref), 1e-3))
        dref = _C.activation_backward_ref(act, g, x)
        # gelu' = Phi + x phi cancels near x = -0.75: relative to |g| (gelu' is O(1))
        close(_C.gelu_backward(g, x, approx), dref, dtype, 16, np.abs(g).max())


@pytest.mark.parametrize("act", [GELU, GELU_TANH, RELU])
def test_activation_reference_matches_numpy(act):
    x = np.linspace(-8, 8, 161)
    y = _C.activation_forward_ref(act, x)
    want = np.maximum(x, 0) if act == RELU else np_gelu(x, act)
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-15)
    # the derivative against a central difference of the NumPy formula
    h = 1e-6
    f = (lambda v: np.maximum(v, 0)) if act == RELU else (lambda v: np_gelu(v, act))
    xs = x[np.abs(x) > 1e-3]
    d = _C.activation_backward_ref(act, np.ones_like(xs), xs)
    np.testing.assert_allclose(d, (f(xs + h) - f(xs - h)) / (2 * h), atol=1e-8)
    with pytest.raises(ValueError):
        _C.activation_forward_ref(len(tc.options.ACTIVATIONS), x)


# ---------------------------------------------------------------- softmax

def np_softmax(x, axis, is_log):
    x = x.astype(np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z - lse if is_log else np.exp(z - lse)


SM_SHAPES = [((1,), 0), ((1, 1), 1), ((3, 17), 1), ((2, 33, 5), 1), ((7, 1, 3), 0), ((4, 9), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SM_SHAPES)
@pytest.mark.parametrize("is_log", [0, 1])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_softmax_matches_its_reference(dtype, shape, axis, is_log, offset):
    x = (rng(2).standard_normal(shape) * 4 + offset).astype(dtype)
    g = rng(3).standard_normal(shape).astype(dtype)
    fwd = _C.log_softmax_forward if is_log else _C.softmax_forward
    bwd = _C.log_softmax_backward if is_log else _C.softmax_backward
    fwd_ref = _C.log_softmax_forward_ref if is_log else _C.softmax_forward_ref
    bwd_ref = _C.log_softmax_backward_ref if is_log else _C.softmax_backward_ref
    y, yr = fwd(x, axis), fwd_ref(x, axis)
    # vector exp and float sums vs double: a few ulps of the largest output (log-softmax
    # values are O(log C + spread), their largest magnitude sets the scale)
    close(y, yr, dtype, 8)
    dx, dxr = bwd(g, yr, axis), bwd_ref(g, yr, axis)
    # sum_c g y is a cancelling sum: relative to sum_c |g| (times max |y| or 1)
    close(dx, dxr, dtype, 16, np.abs(g).sum(axis=axis).max() + np.abs(g).max())
    # the reference against NumPy (in float64)
    np.testing.assert_allclose(yr, np_softmax(x, axis, is_log), rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps)


def test_softmax_reference_backward_matches_numpy():
    x = rng(4).standard_normal((3, 6, 2))
    g = rng(5).standard_normal((3, 6, 2))
    y = np_softmax(x, 1, 0)
    want = y * (g - (g * y).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(_C.softmax_backward_ref(g, y, 1), want, rtol=1e-13, atol=1e-15)
    ly = np_softmax(x, 1, 1)
    want = g - np.exp(ly) * g.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_C.log_softmax_backward_ref(g, ly, 1), want, rtol=1e-13, atol=1e-15)
    assert np.isnan(_C.softmax_forward_ref(np.array([1.0, np.inf]), 0)).all()


# ---------------------------------------------------------------- layer norm

LN_SHAPES = [(1, 1), (1, 7), (5, 33), (67, 20)]


def np_layernorm(x, w, b, eps):
    x = x.astype(np.float64)
    m = x.mean(axis=1, keepdims=True)
    var = ((x - m) ** 2).mean(axis=1, keepdims=True)
    return (x - m) / np.sqrt(var + eps) * w + (0 if b is None else b), m[:, 0], 1 / np.sqrt(var[:, 0] + eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_layernorm_matches_its_reference(dtype, shape, offset):
    N, C = shape
    x = (rng(6).standard_normal(shape) + offset).astype(dtype)
    w = rng(7).standard_normal(C).astype(dtype)
    b = rng(8).standard_normal(C).astype(dtype)
    g = rng(9).standard_normal(shape).astype(dtype)
    out, mean, rstd = _C.layernorm_forward(x, w, b, 1e-5)
    ro, rm, rr = _C.layernorm_forward_ref(x, w, b, 1e-5)
    # variance in real_t (kernel) vs double (reference): ~C ulps of the normalised values;
    # a rounding of the mean (eps |x|) moves them by eps |x| rstd |w|
    big = np.abs(x).max() * rr.max() * np.abs(w).max() + np.abs(ro).max()
    close(out, ro, dtype, 4 * C + 8, big)
    close(mean, rm, dtype, 2, np.abs(x).max())
    close(rstd, rr, dtype, 4 * C + 8)
    dx, dw, db = _C.layernorm_backward(g, x, w, rm, rr, True, 1e-5)
    rdx, rdw, rdb = _C.layernorm_backward_ref(g, x, w, rm, rr)
    # reductions over C (dx) and N (dweight, dbias): ~K ulps of the terms summed
    xhat = (x.astype(np.float64) - rm[:, None]) * rr[:, None]
    close(dx, rdx, dtype, 8 * C + 8, (np.abs(g * w).sum(axis=1) * rr).max() * (1 + big))
    close(dw, rdw, dtype, 4 * N + 8, np.abs(g * xhat).sum(axis=0).max() * (1 + big))
    close(db, rdb, dtype, 4 * N + 8, np.abs(g).sum(axis=0).max())
    # the reference against NumPy
    wo, wm, wr = np_layernorm(x, w, b, 1e-5)
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(ro, wo, rtol=tol, atol=tol * big)
    np.testing.assert_allclose(rm, wm, rtol=tol, atol=tol * np.abs(x).max())
    np.testing.assert_allclose(rr, wr, rtol=tol)


def test_layernorm_reference_backward_matches_numpy():
    N, C = 4, 6
    x, g = rng(10).standard_normal((N, C)), rng(11).standard_normal((N, C))
    w = rng(12).standard_normal(C)
    _, m, r = _C.layernorm_forward_ref(x, w, None, 1e-5)
    xhat = (x - m[:, None]) * r[:, None]
    gx = g * w
    want = r[:, None] * (gx - gx.mean(1, keepdims=True) - xhat * (gx * xhat).mean(1, keepdims=True))
    dx, dw, db = _C.layernorm_backward_ref(g, x, w, m, r)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dw, (g * xhat).sum(0), rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(0), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layernorm_residual_matches_its_reference(dtype, shape):
    N, C = shape
    x, r = (rng(13).standard_normal(shape).astype(dtype) for _ in range(2))
    r = rng(14).standard_normal(shape).astype(dtype)
    w, b = rng(15).standard_normal(C).astype(dtype), rng(16).standard_normal(C).astype(dtype)
    g, gs = rng(17).standard_normal(shape).astype(dtype), rng(18).standard_normal(shape).astype(dtype)
    out, s, mean, rstd = _C.layernorm_residual_forward(x, r, w, b, 1e-5)
    ro, rs, rm, rr = _C.layernorm_residual_forward_ref(x, r, w, b, 1e-5)
    bitwise(s, rs)  # one addition per element either way
    close(out, ro, dtype, 4 * C + 8)
    close(rstd, rr, dtype, 4 * C + 8)
    dx, dr, dw, db = _C.layernorm_residual_backward(g, gs, rs, w, rm, rr, True)
    rdx, rdr, rdw, rdb = _C.layernorm_residual_backward_ref(g, gs, rs, w, rm, rr)
    close(dx, rdx, dtype, 8 * C + 8, (np.abs(g * w).sum(axis=1) * rr).max() + np.abs(gs).max())
    bitwise(rdx, rdr)
    close(dr, rdr, dtype, 8 * C + 8, (np.abs(g * w).sum(axis=1) * rr).max() + np.abs(gs).max())
    close(db, rdb, dtype, 4 * N + 8, np.abs(g).sum(axis=0).max())
    # the reference is the layernorm reference of x + r, plus dsum
    lo, _, _ = _C.layernorm_forward_ref(rs, w, b, 1e-5)
    bitwise(ro, lo)
    ldx, _, _ = _C.layernorm_backward_ref(g, rs, w, rm, rr)
    bitwise(rdx, ldx + gs)


# ---------------------------------------------------------------- cross-entropy

CE_SHAPES = [(1, 1), (1, 5), (7, 13), (33, 300)]


def np_cross_entropy(x, q):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return -(q * (x - lse)).sum(axis=1), lse[:, 0]


def ce_targets(kind, N, V, dtype):
    if kind == "ids":
        t = rng(19).integers(0, V, N)
        t[N // 2] = -100  # ignored
        return t
    p = rng(20).random((N, V))
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("kind", ["ids", "probs"])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_cross_entropy_matches_its_reference(dtype, shape, kind, ls, offset):
    N, V = shape
    x = (rng(21).standard_normal(shape) * 3 + offset).astype(dtype)
    t = ce_targets(kind, N, V, dtype)
    dl = rng(22).standard_normal(N).astype(dtype)
    losses, lse, total, _ = _C.cross_entropy_forward(x, t, -100, ls)
    rl, rlse = _C.cross_entropy_forward_ref(x, t, -100, ls)
    # vector exp / float sums vs double: ulps of the loss (O(log V)) and of |lse|
    close(losses, rl, dtype, 4 * V + 8, max(np.abs(rl).max(), np.abs(x).max(), 1.0))
    close(lse, rlse, dtype, 8)
    assert total == pytest.approx(float(losses.astype(np.float64).sum()), rel=1e-12, abs=1e-12)
    dx = _C.cross_entropy_backward(x, t, None, dl, "none", -100, ls)
    rdx = _C.cross_entropy_backward_ref(x, t, dl, -100, ls, 1.0)
    close(dx, rdx, dtype, 4 * V + 8, np.abs(dl).max())
    # the reference against NumPy
    if kind == "ids":
        q = np.zeros((N, V))
        keep = t != -100
        q[np.arange(N)[keep], t[keep]] = 1
        q = np.where(keep[:, None], (1 - ls) * q + ls / V, 0)
    else:
        q = (1 - ls) * t.astype(np.float64) + ls / V
    wl, wlse = np_cross_entropy(x, q)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(rl, wl, rtol=8 * eps, atol=8 * V * eps * max(1, abs(offset)))
    np.testing.assert_allclose(rlse, wlse, rtol=4 * eps)
    sm = np.exp(x - wlse[:, None])
    want = dl[:, None] * (sm * q.sum(1, keepdims=True) - q)
    np.testing.assert_allclose(rdx, want, rtol=64 * eps, atol=64 * eps * np.abs(dl).max() * max(1, abs(offset)))


# ---------------------------------------------------------------- fused linear + GELU

LG_SHAPES = [(1, 1, 1), (1, 7, 5), (9, 17, 33), (20, 64, 40)]


def lg_inputs(dtype, shape, seed):
    """x (N,C), W (OC,C), b (OC,), g (N,OC) of a fused linear + activation test."""
    N, C, OC = shape
    x = rng(seed).standard_normal((N, C)).astype(dtype)
    W = (rng(seed + 1).standard_normal((OC, C)) / math.sqrt(C)).astype(dtype)
    b = rng(seed + 2).standard_normal(OC).astype(dtype)
    g = rng(seed + 3).standard_normal((N, OC)).astype(dtype)
    return x, W, b, g


def close_linear_grads(got, ref, x, W, dtype, gmag):
    """The fused backward's (dx, dw, db) against the reference's, within the ulps a
    blocked float GEMM over OC (dx) or N (dw, db) may differ from double dot products;
    gmag bounds |dout * act'(pre)|."""
    N, OC = x.shape[0], W.shape[0]
    close(got[0], ref[0], dtype, 2 * OC + 16, gmag * np.abs(W).sum(0).max())
    close(got[1], ref[1], dtype, 2 * N + 16, gmag * np.abs(x).sum(0).max())
    close(got[2], ref[2], dtype, 2 * N + 16, gmag * N)


def check_linear_reference(ref_pre, ref_grads, x, W, b, g, act_prime, dtype, mag):
    """The reference linear + activation pair against NumPy: its pre = x W^T + b, and its
    (dx, dw, db) = the products of dpre = g * act_prime(pre) (act_prime evaluated by the
    caller, in float64)."""
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    np.testing.assert_allclose(ref_pre, x64 @ W64.T + b, rtol=0,
                               atol=4 * np.finfo(dtype).eps * mag)
    dpre = g.astype(np.float64) * act_prime
    t = 1e-6 if dtype == np.float32 else 1e-12
    for got, want in zip(ref_grads, (dpre @ W64, dpre.T @ x64, dpre.sum(0))):
        np.testing.assert_allclose(got, want, rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LG_SHAPES)
@pytest.mark.parametrize("approx", [0, 1])
def test_linear_gelu_matches_its_reference(dtype, shape, approx):
    N, C, OC = shape
    x, W, b, g = lg_inputs(dtype, shape, 23)
    out, pre = _C.linear_gelu_forward(x, W, b, approx, 1)
    ro, rpre = _C.linear_gelu_forward_ref(x, W, b, approx)
    # blocked float GEMM vs double dot products: ~C ulps of sum |x||w|
    mag = (np.abs(x) @ np.abs(W).T + np.abs(b)).max()
    close(pre, rpre, dtype, 2 * C + 8, mag)
    close(out, ro, dtype, 2 * C + 16, mag)
    act = GELU_TANH if approx else GELU
    # the dact cache is gelu'(pre)
    _, dact = _C.linear_gelu_forward(x, W, b, approx, 2)
    close(dact, _C.activation_backward_ref(act, np.ones_like(rpre), pre), dtype, 16, 1.0)
    ref = _C.linear_gelu_backward_ref(g, rpre, x, W, approx)
    gmag = np.abs(g).max() * 1.2  # |gelu'| <= 1.13
    for cache, is_dact in ((rpre, False), (dact, True)):
        got = _C.linear_gelu_backward(g, x, W, b, cache, approx, True, is_dact)
        close_linear_grads(got, ref, x, W, dtype, gmag)
    prime = _C.activation_backward_ref(act, np.ones_like(rpre), rpre).astype(np.float64)
    check_linear_reference(rpre, ref, x, W, b, g, prime, dtype, mag)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LG_SHAPES)
@pytest.mark.parametrize("act", ["relu", "relu2"])
def test_linear_relu_fused_matches_its_reference(dtype, shape, act):
    # the fused relu / relu2 pairs (the table's fused column) against the generic
    # linear + activation reference, and the reference against NumPy
    N, C, OC = shape
    a = tc.options.ACTIVATIONS.index(act)
    x, W, b, g = lg_inputs(dtype, shape, 33)
    out, dact = _C.linear_activation_forward(a, x, W, b, True)
    ro, rpre = _C.linear_activation_forward_ref(a, x, W, b)
    mag = (np.abs(x) @ np.abs(W).T + np.abs(b)).max()
    close(out, ro, dtype, 2 * C + 16, mag * (1 + mag))
    # dact = act'(pre), 0 where pre <= 0 (the references' pre agrees with the fused one to
    # rounding, so compare where both are clear of 0)
    clear = np.abs(rpre) > 64 * np.finfo(dtype).eps * mag
    rd = _C.activation_backward_ref(a, np.ones_like(rpre), rpre)
    close(dact[clear], rd[clear], dtype, 2 * C + 16, 2 * mag)
    ref = _C.linear_activation_backward_ref(a, g, rpre, x, W)
    got = tc.functional.linear_activation_backward(g, x, W, dact, b)
    close_linear_grads(got, ref, x, W, dtype, np.abs(g).max() * (2 * mag + 1))
    r = np.maximum(rpre.astype(np.float64), 0)
    np.testing.assert_allclose(ro, r if act == "relu" else r * r, rtol=2 * np.finfo(dtype).eps,
                               atol=0)
    prime = (rpre > 0) * (1 if act == "relu" else 2 * r)
    check_linear_reference(rpre, ref, x, W, b, g, prime, dtype, mag)
    with pytest.raises(ValueError, match="activation"):
        _C.linear_activation_forward_ref(len(tc.options.ACTIVATIONS), x, W, b)
    with pytest.raises(ValueError, match="activation"):
        _C.linear_activation_backward_ref(-1, g, rpre, x, W)


# ---------------------------------------------------------------- rope

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 5, 3, 6), (1, 17, 2, 34)])
@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("offset", [0, 1000])
def test_rope_matches_its_reference(dtype, shape, interleaved, offset):
    N, L, NH, HS = shape
    x = rng(27).standard_normal(shape).astype(dtype)
    c, s = _C.rope_table(L, HS, 10000.0, offset, dtype)
    y, yr = _C.rope_forward(x, c, s, interleaved), _C.rope_ref(x, 10000.0, offset, interleaved, 0)
    # the kernel rotates by the table rounded to real_t, the reference by cos/sin in double
    close(y, yr, dtype, 8, np.abs(x).max())
    dx, dxr = _C.rope_backward(x, c, s, interleaved), _C.rope_ref(x, 10000.0, offset, interleaved, 1)
    close(dx, dxr, dtype, 8, np.abs(x).max())
    # the reference against NumPy: rotate pairs by pos * base^(-2i/HS)
    half = HS // 2
    ang = (offset + np.arange(L))[:, None] * 10000.0 ** (-2 * np.arange(half) / HS)
    cos, sin = np.cos(ang)[None, :, None, :], np.sin(ang)[None, :, None, :]
    x64 = x.astype(np.float64)
    a, b = (x64[..., 0::2], x64[..., 1::2]) if interleaved else (x64[..., :half], x64[..., half:])
    want = np.empty_like(x64)
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if interleaved:
        want[..., 0::2], want[..., 1::2] = ra, rb
    else:
        want[..., :half], want[..., half:] = ra, rb
    np.testing.assert_allclose(yr, want, rtol=0,
                               atol=4 * np.finfo(dtype).eps * np.abs(x).max() * (1 + ang.max()))
    # backward is the inverse rotation
    np.testing.assert_allclose(_C.rope_ref(yr.astype(np.float64), 10000.0, offset, interleaved, 1),
                               x64, atol=1e-6 if dtype == np.float32 else 1e-12)


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,V,D", [(1, 1, 1), (7, 3, 5), (40, 9, 33)])
def test_embedding_matches_its_reference(dtype, N, V, D):
    ids = rng(28).integers(0, V, N)
    w = rng(29).standard_normal((V, D)).astype(dtype)
    g = rng(30).standard_normal((N, D)).astype(dtype)
    # a row copy, and rows added in order n into a zeroed dweight, in both: bitwise
    bitwise(_C.embedding_forward(ids, w), _C.embedding_forward_ref(ids, w))
    bitwise(_C.embedding_backward(g, ids, V), _C.embedding_backward_ref(g, ids, V))
    bitwise(_C.embedding_forward_ref(ids, w), w[ids])
    want = np.zeros((V, D))
    np.add.at(want, ids, g.astype(np.float64))
    np.testing.assert_allclose(_C.embedding_backward_ref(g, ids, V), want,
                               rtol=4 * N * np.finfo(dtype).eps, atol=4 * N * np.finfo(dtype).eps)
    with pytest.raises(IndexError):
        _C.embedding_forward_ref(np.array([V]), w)


# ---------------------------------------------------------------- dropout

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 1023, 1025, 5000])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_dropout_matches_its_reference(dtype, n, p):
    x = awkward(n, dtype)
    # the same keep decision and the same product per element: bitwise
    bitwise(_C.dropout_forward(x, p, 1234), _C.dropout_forward_ref(x, p, 1234))
    bitwise(_C.dropout_backward(x, p, 99), _C.dropout_backward_ref(x, p, 99))
    # the reference against the definition: kept elements scaled by 1/(1-p), others 0
    y = _C.dropout_forward_ref(x, p, 1234)
    kept = y != 0
    if p < 1:
        np.testing.assert_array_equal(y[kept], x[kept] * dtype(1 / (1 - p)))
    else:
        assert not kept.any()
    if n >= 1000 and 0 < p < 1:
        assert abs((~kept & (x != 0)).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------- sinusoidal positions

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,D", [(1, 1), (1, 7), (9, 16), (33, 5)])
@pytest.mark.parametrize("offset", [0, 100000])
def test_sinusoidal_table_matches_its_reference(dtype, T, D, offset):
    ref = np.empty((T, D), dtype)
    _C.position_sinusoidal_ref(ref, 10000.0, offset)
    # the same angle, sin and cos in double in both: bitwise
    bitwise(_C.position_sinusoidal(T, D, 10000.0, offset, dtype), ref)
    pos = offset + np.arange(T)[:, None]
    ang = pos / 10000.0 ** ((np.arange(D) // 2 * 2) / D)
    want = np.where(np.arange(D) % 2, np.cos(ang), np.sin(ang))
    np.testing.assert_allclose(ref, want, rtol=0, atol=np.finfo(dtype).eps * (1 + 4 * ang.max()))


# ---------------------------------------------------------------- optimizers

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("momentum,nesterov,first", [(0.0, 0, 0), (0.9, 0, 1), (0.9, 1, 0)])
def test_sgd_matches_its_reference(dtype, n, momentum, nesterov, first):
    p0 = awkward(n, dtype, 31, 1.0)
    p0[np.abs(p0) > 1e20] = 1.0
    g = rng(32).standard_normal(n).astype(dtype)
    b0 = rng(33).standard_normal(n).astype(dtype)
    p, pr, b, br = p0.copy(), p0.copy(), b0.copy(), b0.copy()
    args = (0.1, momentum, 0.1, 0.01, nesterov, first)
    _C.sgd_update(p, g, b if momentum else None, *args)
    _C.sgd_update_ref(pr, g, br if momentum else None, *args)
    if dtype == np.float64:  # the same operations in the same order
        bitwise(p, pr)
        bitwise(b, br)
    else:  # float vs double intermediates: one or two roundings each
        close(p, pr, dtype, 4, np.abs(p0).max() + np.abs(g).max())
        close(b, br, dtype, 4, np.abs(b0).max() + np.abs(g).max())
    # the reference against NumPy
    gg = g.astype(np.float64) + 0.01 * p0
    if momentum:
        bb = gg if first else 0.9 * b0 + 0.9 * gg
        gg = gg + 0.9 * bb if nesterov else bb
    np.testing.assert_allclose(pr, p0 - 0.1 * gg, rtol=2 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps * np.abs(p0).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("decoupled", [0, 1])
@pytest.mark.parametrize("step", [1, 3, 100])
def test_adam_matches_its_reference(dtype, n, decoupled, step):
    r = rng(34)
    p0 = r.standard_normal(n).astype(dtype)
    g = (r.standard_normal(n) * 10 ** r.uniform(-3, 3, n)).astype(dtype)
    m0 = r.standard_normal(n).astype(dtype) * 0.1
    v0 = r.random(n).astype(dtype) * 0.01
    state = [a.copy() for a in (p0, m0, v0)]
    rstate = [a.copy() for a in (p0, m0, v0)]
    hp = (step, 1e-3, 0.9, 0.999, 1e-8, 0.01)
    (_C.adamw_update if decoupled else _C.adam_update)(state[0], g, state[1], state[2], *hp)
    _C.adam_update_ref(rstate[0], g, rstate[1], rstate[2], *hp, decoupled)
    # torch's operation order in real_t vs the textbook formula in double: a few roundings
    # of each quantity (the step lr * m_hat / denom is at most ~lr * 10)
    close(state[1], rstate[1], dtype, 4, np.abs(rstate[1]).max())
    close(state[2], rstate[2], dtype, 4, np.abs(rstate[2]).max())
    close(state[0], rstate[0], dtype, 8, np.abs(p0).max())
    # the reference against NumPy
    p, gg = p0.astype(np.float64), g.astype(np.float64)
    if decoupled:
        p = p * (1 - 1e-3 * 0.01)
    else:
        gg = gg + 0.01 * p
    m = 0.9 * m0 + 0.1 * gg
    v = 0.999 * v0 + 0.001 * gg * gg
    want = p - 1e-3 * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    np.testing.assert_allclose(rstate[0], want, rtol=2 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps * np.abs(p0).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[1], [7, 0, 3], [5000, 17, 70000]])
def test_global_norm_matches_its_reference(dtype, sizes):
    arrays = [awkward(s, dtype, s, 1.0) if s else np.zeros(0, dtype) for s in sizes]
    for a in arrays:
        a[np.abs(a) > 1e20] = 2.0
    flat = np.concatenate(arrays)
    ref = _C.global_norm_ref(flat)
    # both sum squares in double, in different orders: n ulps of double at most
    assert _C.global_grad_norm(arrays) == pytest.approx(ref, rel=flat.size * 2e-16)
    assert ref == pytest.approx(math.sqrt(math.fsum(float(v) ** 2 for v in flat)), rel=flat.size * 2e-16)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call,exc", [
    (lambda: _C.activation_forward_ref(0, np.ones(3, np.int64)), TypeError),
    (lambda: _C.activation_backward_ref(1, np.ones(3), np.ones(4)), ValueError),
    (lambda: _C.softmax_forward_ref(np.ones((2, 3)), 2), ValueError),
    (lambda: _C.layernorm_forward_ref(np.ones((2, 3)), np.ones(4), None, 1e-5), ValueError),
    (lambda: _C.layernorm_backward_ref(np.ones((2, 3)), np.ones((2, 3)), np.ones(3), np.ones(3),
                                       np.ones(2)), ValueError),
    (lambda: _C.layernorm_residual_forward_ref(np.ones((2, 3)), np.ones((2, 4)), np.ones(3), None,
                                               1e-5), ValueError),
    (lambda: _C.layernorm_residual_backward_ref(np.ones((2, 3)), None, np.ones((2, 3)),
                                                np.ones(3), np.ones(2), np.ones(3)), ValueError),
    (lambda: _C.linear_gelu_forward_ref(np.ones((2, 3)), np.ones((4, 2)), None, 0), ValueError),
    (lambda: _C.linear_gelu_forward_ref(np.ones((2, 3)), np.ones((4, 3)), None, 2), ValueError),
    (lambda: _C.linear_gelu_backward_ref(np.ones((2, 4)), np.ones((2, 4)), np.ones((2, 3)),
                                         np.ones((4, 2)), 0), ValueError),
    (lambda: _C.cross_entropy_forward_ref(np.ones((2, 3)), np.array([0, 3]), -100, 0.0), IndexError),
    (lambda: _C.cross_entropy_backward_ref(np.ones((2, 3)), np.array([0, 1]), np.ones(3), -100,
                                           0.0, 1.0), ValueError),
    (lambda: _C.rope_ref(np.ones((1, 2, 1, 3)), 10000.0, 0, 0, 0), ValueError),
    (lambda: _C.rope_ref(np.ones((2, 1, 3)), 10000.0, 0, 0, 0), ValueError),
    (lambda: _C.embedding_backward_ref(np.ones((2, 3)), np.array([0, 5]), 4), IndexError),
    (lambda: _C.dropout_forward_ref(np.ones(3), 1.5, 0), ValueError),
    (lambda: _C.position_sinusoidal_ref(np.ones((2, 3)), -1.0, 0), ValueError),
    (lambda: _C.position_sinusoidal_ref(np.ones(3), 10000.0, 0), ValueError),
    (lambda: _C.sgd_update_ref(np.ones(3), np.ones(4), None, 0.1, 0.0, 0.0, 0.0, 0, 0), ValueError),
    (lambda: _C.sgd_update_ref(np.ones(3), np.ones(3), None, 0.1, 0.9, 0.0, 0.0, 0, 0), ValueError),
    (lambda: _C.adam_update_ref(np.ones(3), np.ones(3), np.ones(3), np.ones(2), 1, 1e-3, 0.9,
                                0.999, 1e-8, 0.0, 0), ValueError),
    (lambda: _C.adam_update_ref(np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0, 1e-3, 0.9,
                                0.999, 1e-8, 0.0, 0), ValueError),
    (lambda: _C.global_norm_ref("x"), TypeError),
])
def test_reference_hooks_raise_on_bad_input(call, exc):
    with pytest.raises(exc):
        call()
