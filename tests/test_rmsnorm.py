"""RMS normalisation (csrc/kernels/rmsnorm.c) and logit soft-capping (softcap.c): NumPy
references, the plain C references, finite differences, PyTorch parity, the strided
QK-norm kernel, awkward shapes, non-contiguous input, thread and CPU-variant independence,
and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, non_contiguous, rng, to_torch, tol
from transformer_c import _C

F = tc.functional
DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (4, 1), (5,), (1, 7), (3, 13), (2, 3, 8), (2, 5, 33), (6, 100), (300, 257)]


# ------------------------------------------------------------------ NumPy references

def ref_rms_norm(x, w, b, eps=1e-5):
    x = x.astype(np.float64)
    rstd = 1.0 / np.sqrt((x * x).mean(-1) + eps)
    y = x * rstd[..., None] * w
    return (y + b if b is not None else y), rstd


def ref_rms_norm_backward(G, x, w, eps=1e-5):
    x, G = x.astype(np.float64), G.astype(np.float64)
    rstd = 1.0 / np.sqrt((x * x).mean(-1) + eps)
    xhat = x * rstd[..., None]
    g = G * w
    dx = rstd[..., None] * (g - xhat * (g * xhat).mean(-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx, (G * xhat).sum(axis=lead), G.sum(axis=lead)


def make(shape, dtype, seed=0, with_bias=True):
    r = rng(seed)
    C = shape[-1]
    x = r.standard_normal(shape).astype(dtype)
    w = (1 + 0.5 * r.standard_normal(C)).astype(dtype)
    b = r.standard_normal(C).astype(dtype) if with_bias else None
    return x, w, b, r.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ RMS norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_rms_norm_matches_numpy(dtype, shape, with_bias):
    x, w, b, G = make(shape, dtype, with_bias=with_bias)
    y, rstd = F.rms_norm(x, w, b, return_stats=True)
    assert y.dtype == rstd.dtype == dtype and y.shape == shape and rstd.shape == shape[:-1]
    want, want_r = ref_rms_norm(x, w, b)
    np.testing.assert_allclose(y, want, **tol(dtype))
    np.testing.assert_allclose(rstd, want_r, **tol(dtype))
    dx, dw, db = F.rms_norm_backward(G, x, w, b, rstd=rstd)
    wdx, wdw, wdb = ref_rms_norm_backward(G, x, w)
    scale = dict(rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * max(1, shape[0]))
    np.testing.assert_allclose(dx, wdx, **tol(dtype))
    np.testing.assert_allclose(dw, wdw, **scale)
    assert (db is None) == (b is None)
    if b is not None:
        np.testing.assert_allclose(db, wdb, **scale)
    # rstd recomputed when not given: the same gradients
    dx2, dw2, _ = F.rms_norm_backward(G, x, w, b)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 13), (40, 33), (300, 257)])
def test_rms_norm_fast_equals_plain_reference(dtype, shape):
    x, w, b, G = make(shape, dtype, seed=4)
    y, r = _C.rmsnorm_forward(x, w, b, 1e-5)
    y0, r0 = _C.rmsnorm_forward_ref(x, w, b, 1e-5)
    t = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y, y0, **t)
    np.testing.assert_allclose(r, r0, **t)
    got = _C.rmsnorm_backward(G, x, w, r, True, 1e-5)
    want = _C.rmsnorm_backward_ref(G, x, w, r0, True, 1e-5)
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=t["rtol"], atol=t["atol"] * shape[0])


def test_rms_norm_finite_differences():
    x, w, b, _ = make((3, 7), np.float64, seed=2)

    def fwd():
        return F.rms_norm(x, w, b, eps=1e-3)

    def bwd(G):
        dx, dw, db = F.rms_norm_backward(G, x, w, b, eps=1e-3)
        return {"x": dx, "w": dw, "b": db}

    check_grads(fwd, bwd, {"x": x, "w": w, "b": b})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 5, 33), (7, 64)])
def test_rms_norm_matches_torch(torch, dtype, shape):
    x, w, _, G = make(shape, dtype, seed=5)
    y, rstd = F.rms_norm(x, w, None, eps=1e-6, return_stats=True)
    tx, tw = to_torch(torch, x), to_torch(torch, w)
    ty = torch.nn.functional.rms_norm(tx, (shape[-1],), tw, 1e-6)
    (ty * to_torch(torch, G, grad=False)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    dx, dw, _ = F.rms_norm_backward(G, x, w, None, eps=1e-6, rstd=rstd)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * 10)


def test_rms_norm_awkward_inputs():
    x, w, b, G = make((4, 9), np.float64, seed=6)
    want = F.rms_norm(x, w, b)
    np.testing.assert_array_equal(F.rms_norm(non_contiguous(x), w, b), want)
    np.testing.assert_array_equal(F.rms_norm(np.asfortranarray(x), w, b), want)
    np.testing.assert_array_equal(F.rms_norm(x, non_contiguous(w), non_contiguous(b)), want)
    # an empty batch
    y = F.rms_norm(np.zeros((0, 9)), w, b)
    assert y.shape == (0, 9)
    dx, dw, db = F.rms_norm_backward(np.zeros((0, 9)), np.zeros((0, 9)), w, b)
    assert dx.shape == (0, 9) and not dw.any() and not db.any()
    # a zero row: rstd = 1/sqrt(eps), output = bias, finite gradients
    z = np.zeros((2, 9))
    y, r = F.rms_norm(z, w, b, return_stats=True)
    np.testing.assert_allclose(r, 1 / np.sqrt(1e-5))
    np.testing.assert_array_equal(y, np.broadcast_to(b, (2, 9)))
    assert np.isfinite(F.rms_norm_backward(G[:2], z, w, b)[0]).all()
    # large float32 values: the sum of squares in double does not overflow
    big = (x * 1e20).astype(np.float32)
    yb = F.rms_norm(big, w.astype(np.float32))
    np.testing.assert_allclose(yb, ref_rms_norm(big, w, None)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.openmp
def test_rms_norm_independent_of_threads_and_cpu_variant(threads):
    x, w, b, G = make((300, 257), np.float32, seed=7)
    threads(1)
    one = (*F.rms_norm(x, w, b, return_stats=True), *F.rms_norm_backward(G, x, w, b))
    threads(2)
    two = (*F.rms_norm(x, w, b, return_stats=True), *F.rms_norm_backward(G, x, w, b))
    _C.cpu_set_portable(True)
    try:
        port = (*F.rms_norm(x, w, b, return_stats=True), *F.rms_norm_backward(G, x, w, b))
    finally:
        _C.cpu_set_portable(None)
    for a, c, d in zip(one, two, port):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)


def test_rms_norm_bad_input():
    x, w, b, G = make((3, 5), np.float64)
    with pytest.raises(ValueError, match="weight"):
        F.rms_norm(x, w[:4])
    with pytest.raises(ValueError, match="bias"):
        F.rms_norm(x, w, b[:3])
    with pytest.raises(TypeError, match="weight"):
        F.rms_norm(x, w.astype(np.float32))
    with pytest.raises(TypeError, match="x"):
        F.rms_norm(x.astype(np.int64), w)
    with pytest.raises(ValueError, match="eps"):
        F.rms_norm(x, w, eps=-1.0)
    with pytest.raises(ValueError, match="channel"):
        F.rms_norm(np.zeros((3, 0)), np.zeros(0))
    with pytest.raises(ValueError, match="grad_output"):
        F.rms_norm_backward(G[:2], x, w)
    with pytest.raises(ValueError, match="rstd"):
        F.rms_norm_backward(G, x, w, rstd=np.ones(2))
    with pytest.raises(ValueError, match="weight"):
        _C.rmsnorm_forward(x, w[:2], None, 1e-5)


# ------------------------------------------------------------------ QK-norm over heads

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,W,G,C", [(1, 3, 1, 3), (5, 36, 3, 4), (7, 50, 2, 17), (300, 96, 4, 8)])
def test_heads_kernel_matches_numpy_in_place(dtype, N, W, G, C):
    """The strided kernel the GPT fast path runs on the token-major c_attn output: rows of
    W elements, of which the first G*C are G heads of C."""
    r = rng(8)
    x = r.standard_normal((N, W)).astype(dtype)
    w = (1 + 0.3 * r.standard_normal(C)).astype(dtype)
    dy = r.standard_normal((N, W)).astype(dtype)
    out, rstd = _C.rmsnorm_heads(x, w, G, 1e-5)
    heads = x[:, :G * C].reshape(N, G, C)
    want, want_r = ref_rms_norm(heads, w, None)
    np.testing.assert_allclose(out, want.reshape(N, G * C), **tol(dtype))
    np.testing.assert_allclose(rstd, want_r, **tol(dtype))
    dx, dw = _C.rmsnorm_heads_backward(dy, x, w, rstd, G)
    wdx, wdw, _ = ref_rms_norm_backward(dy[:, :G * C].reshape(N, G, C), heads, w)
    np.testing.assert_allclose(dx[:, :G * C], wdx.reshape(N, G * C), **tol(dtype))
    np.testing.assert_array_equal(dx[:, G * C:], dy[:, G * C:])  # the rest untouched
    np.testing.assert_allclose(dw, wdw, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * N)


def test_heads_kernel_bad_input():
    x = np.zeros((3, 10))
    with pytest.raises(ValueError, match="heads"):
        _C.rmsnorm_heads(x, np.ones(4), 3, 1e-5)  # 3 * 4 > 10
    with pytest.raises(ValueError, match="heads"):
        _C.rmsnorm_heads(x, np.ones(4), 0, 1e-5)
    with pytest.raises(ValueError, match="rstd"):
        _C.rmsnorm_heads_backward(x, x, np.ones(4), np.ones((3, 1)), 2)


# ------------------------------------------------------------------ logit soft-capping

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 65), (40000,)])
def test_softcap_matches_numpy_and_reference(dtype, shape):
    r = rng(9)
    x = (r.standard_normal(shape) * 10).astype(dtype)
    g = r.standard_normal(shape).astype(dtype)
    cap = 3.0
    y = F.softcap(x, cap)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, cap * np.tanh(x.astype(np.float64) / cap), **tol(dtype))
    dx = F.softcap_backward(g, y, cap)
    want = g * (1 - np.tanh(x.astype(np.float64) / cap) ** 2)
    np.testing.assert_allclose(dx, want, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)
    flat = np.ascontiguousarray(x).reshape(-1)
    np.testing.assert_allclose(_C.softcap_forward(flat, cap), _C.softcap_forward_ref(flat, cap),
                               **tol(dtype))
    np.testing.assert_allclose(_C.softcap_backward(g.reshape(-1), y.reshape(-1), cap),
                               _C.softcap_backward_ref(g.reshape(-1), flat, cap),
                               rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * 10)


def test_softcap_finite_differences_and_limits():
    x = rng(10).standard_normal((4, 5)) * 3

    def fwd():
        return F.softcap(x, 2.5)

    check_grads(fwd, lambda G: {"x": F.softcap_backward(G, fwd(), 2.5)}, {"x": x})
    y = F.softcap(np.array([np.inf, -np.inf, np.nan, 1e30, 0.0, -0.0]), 2.0)
    np.testing.assert_array_equal(y[:2], [2.0, -2.0])
    assert np.isnan(y[2]) and y[3] == 2.0
    assert y[4] == 0 and np.signbit(y[5])
    np.testing.assert_array_equal(F.softcap(non_contiguous(x), 2.5), F.softcap(x, 2.5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_matches_torch(torch, dtype):
    x = (rng(11).standard_normal((5, 9)) * 4).astype(dtype)
    g = rng(12).standard_normal((5, 9)).astype(dtype)
    tx = to_torch(torch, x)
    ty = 2.0 * torch.tanh(tx / 2.0)
    (ty * to_torch(torch, g, grad=False)).sum().backward()
    y = F.softcap(x, 2.0)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(F.softcap_backward(g, y, 2.0), tx.grad.numpy(), **tol(dtype))


def test_softcap_bad_input():
    x = np.ones(3)
    for cap in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="cap"):
            F.softcap(x, cap)
    with pytest.raises(TypeError, match="cap"):
        F.softcap(x, "2")
    with pytest.raises(TypeError, match="x"):
        F.softcap(np.ones(3, np.int32), 2.0)
    with pytest.raises(ValueError, match="grad_output"):
        F.softcap_backward(np.ones(2), x, 2.0)
    with pytest.raises(TypeError, match="grad_output"):
        F.softcap_backward(np.ones(3, np.float32), x, 2.0)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_softcap_vector_tanh_accuracy_over_the_range(dtype, rtol):
    """The vectorised tanh (Cephes' two branches, split at |x / cap| = 0.625) against
    NumPy's tanh in float64: relative error over both branches, the split, tiny and huge
    values; every element the same formula whatever its place (odd lengths, offsets)."""
    cap = 2.0
    u = np.concatenate([np.linspace(-4, 4, 20001), 0.625 * (1 + np.linspace(-1e-6, 1e-6, 101)),
                        -0.625 * (1 + np.linspace(-1e-6, 1e-6, 101)),
                        np.geomspace(1e-30, 1e-2, 300), -np.geomspace(1e-30, 1e-2, 300),
                        [40.0, -40.0, 400.0, 1e30]])
    x = (u * cap).astype(dtype)
    y = F.softcap(x, cap)
    want = cap * np.tanh(x.astype(np.float64) / cap)
    np.testing.assert_allclose(y, want, rtol=rtol, atol=0)
    for off in (1, 3, 7):  # the same bits at any place in the array
        np.testing.assert_array_equal(F.softcap(x[off:], cap), y[off:])


@pytest.mark.openmp
def test_softcap_independent_of_threads_and_cpu_variant(threads):
    x = (rng(13).standard_normal(100003) * 5).astype(np.float32)
    threads(1)
    one = F.softcap(x, 3.0)
    threads(2)
    two = F.softcap(x, 3.0)
    _C.cpu_set_portable(True)
    try:
        port = F.softcap(x, 3.0)
    finally:
        _C.cpu_set_portable(None)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, port)
