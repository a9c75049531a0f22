"""Layer normalisation over the last axis: NumPy reference, finite differences, PyTorch
parity, awkward shapes, numerical stability, determinism and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional


# ------------------------------------------------------------------ NumPy references

def ref_stats(x, eps):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1)
    var = ((x - mean[..., None]) ** 2).mean(axis=-1)
    return mean, 1.0 / np.sqrt(var + eps)


def ref_layer_norm(x, w, b, eps=1e-5):
    mean, rstd = ref_stats(x, eps)
    y = (x.astype(np.float64) - mean[..., None]) * rstd[..., None] * w
    return y + b if b is not None else y


def ref_layer_norm_backward(G, x, w, eps=1e-5):
    x, G = x.astype(np.float64), G.astype(np.float64)
    mean, rstd = ref_stats(x, eps)
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = G * w
    dx = rstd[..., None] * (g - g.mean(-1, keepdims=True)
                            - xhat * (g * xhat).mean(-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx, (G * xhat).sum(axis=lead), G.sum(axis=lead)


def make(shape, dtype, seed=0, with_bias=True):
    r = rng(seed)
    C = shape[-1]
    x = r.standard_normal(shape).astype(dtype)
    w = (1 + 0.5 * r.standard_normal(C)).astype(dtype)
    b = r.standard_normal(C).astype(dtype) if with_bias else None
    G = r.standard_normal(shape).astype(dtype)
    return x, w, b, G


SHAPES = [(1, 1), (4, 1), (5,), (1, 7), (3, 13), (2, 3, 8), (2, 5, 33), (6, 100), (256, 200)]


# ------------------------------------------------------------------ against NumPy

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_numpy(dtype, shape, with_bias):
    x, w, b, _ = make(shape, dtype, with_bias=with_bias)
    y, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    assert y.dtype == mean.dtype == rstd.dtype == dtype
    assert y.shape == shape and mean.shape == rstd.shape == shape[:-1]
    want_mean, want_rstd = ref_stats(x, 1e-5)
    np.testing.assert_allclose(y, ref_layer_norm(x, w, b), **tol(dtype))
    np.testing.assert_allclose(mean, want_mean, **tol(dtype))
    np.testing.assert_allclose(rstd, want_rstd, **tol(dtype))
    assert np.array_equal(F.layer_norm(x, w, b), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_numpy(dtype, shape):
    x, w, b, G = make(shape, dtype, seed=1)
    dx, dw, db = F.layer_norm_backward(G, x, w, b)
    want_dx, want_dw, want_db = ref_layer_norm_backward(G, x, w)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == shape and dw.shape == db.shape == (shape[-1],)
    scale = np.sqrt(max(int(np.prod(shape[:-1])), 1))  # dw, db sum over rows
    np.testing.assert_allclose(dx, want_dx, **tol(dtype))
    np.testing.assert_allclose(dw, want_dw, rtol=tol(dtype)["rtol"] * scale,
                               atol=tol(dtype)["atol"] * scale)
    np.testing.assert_allclose(db, want_db, rtol=tol(dtype)["rtol"] * scale,
                               atol=tol(dtype)["atol"] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_channel_normalises_to_zero(dtype):
    # C = 1: x - mean is exactly 0, so y = bias and dx = dweight = 0
    x, w, b, G = make((6, 1), dtype)
    np.testing.assert_array_equal(F.layer_norm(x, w, b), np.broadcast_to(b, (6, 1)))
    dx, dw, db = F.layer_norm_backward(G, x, w, b)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_allclose(db, G.astype(np.float64).sum(0), **tol(dtype))


@pytest.mark.parametrize("eps", [0.0, 1e-12, 0.1, 3])
def test_eps(eps):
    x, w, b, G = make((3, 9), np.float64, seed=2)
    np.testing.assert_allclose(F.layer_norm(x, w, b, eps=eps), ref_layer_norm(x, w, b, eps),
                               rtol=1e-12, atol=1e-12)
    dx, _, _ = F.layer_norm_backward(G, x, w, b, eps=eps)
    np.testing.assert_allclose(dx, ref_layer_norm_backward(G, x, w, eps)[0], rtol=1e-10,
                               atol=1e-12)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 2, 7)])
def test_backward_finite_differences(with_bias, shape):
    x, w, b, _ = make(shape, np.float64, seed=3, with_bias=with_bias)
    arrays = {"x": x, "w": w} | ({"b": b} if with_bias else {})

    def grads(G):
        dx, dw, db = F.layer_norm_backward(G, x, w, b, eps=1e-3)
        assert (db is None) == (not with_bias)
        return {"x": dx, "w": dw, "b": db}

    check_grads(lambda: F.layer_norm(x, w, b, eps=1e-3), grads, arrays)


def test_backward_with_forward_stats_finite_differences():
    x, w, b, _ = make((4, 6), np.float64, seed=4)

    def grads(G):
        _, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
        dx, dw, db = F.layer_norm_backward(G, x, w, b, mean=mean, rstd=rstd)
        return {"x": dx, "w": dw, "b": db}

    check_grads(lambda: F.layer_norm(x, w, b), grads, {"x": x, "w": w, "b": b})


def test_backward_given_stats_equals_recomputed():
    for dtype in (np.float32, np.float64):
        x, w, b, G = make((5, 3, 21), dtype, seed=5)
        _, mean, rstd = F.layer_norm(x, w, b, eps=1e-3, return_stats=True)
        given = F.layer_norm_backward(G, x, w, b, eps=1e-3, mean=mean, rstd=rstd)
        recomputed = F.layer_norm_backward(G, x, w, b, eps=1e-3)
        for g, r in zip(given, recomputed):
            assert np.array_equal(g, r)


# ------------------------------------------------------------------ PyTorch

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (1, 13), (3, 9, 17), (33, 64), (5, 130),
                                   (256, 200)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_torch(torch, dtype, shape, with_bias):
    x, w, b, G = make(shape, dtype, seed=6, with_bias=with_bias)
    tx, tw = to_torch(torch, x), to_torch(torch, w)
    tb = to_torch(torch, b) if with_bias else None
    ty = torch.nn.functional.layer_norm(tx, (shape[-1],), tw, tb, 1e-5)
    (ty * torch.from_numpy(G)).sum().backward()
    y = F.layer_norm(x, w, b)
    dx, dw, db = F.layer_norm_backward(G, x, w, b)
    got, want = [y, dx, dw], [ty.detach(), tx.grad, tw.grad]
    if with_bias:
        got.append(db)
        want.append(tb.grad)
    rows = max(int(np.prod(shape[:-1])), 1)
    for i, (g, t) in enumerate(zip(got, want)):
        assert g.dtype == dtype
        # dweight and dbias sum over the rows: float32 rounding grows like sqrt(rows)
        scale = np.sqrt(rows) if dtype == np.float32 and i >= 2 else 1
        if shape[-1] == 1 and dtype == np.float32:
            # C = 1: x - mean is exactly 0 (y = bias, dx = dweight = 0), but torch's float32
            # mean of one value can be an ulp off, amplified by rstd = 1/sqrt(eps) ~ 316
            scale = 10
        np.testing.assert_allclose(g, t.numpy(), rtol=tol(dtype)["rtol"] * scale,
                                   atol=tol(dtype)["atol"] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stats_match_torch_native_layer_norm(torch, dtype):
    x, w, b, _ = make((4, 3, 19), dtype, seed=7)
    _, tmean, trstd = torch.ops.aten.native_layer_norm(
        torch.from_numpy(x), [19], torch.from_numpy(w), torch.from_numpy(b), 1e-5)
    _, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    np.testing.assert_allclose(mean, tmean.numpy()[..., 0], **tol(dtype))
    np.testing.assert_allclose(rstd, trstd.numpy()[..., 0], **tol(dtype))


# ------------------------------------------------------------------ numerical stability

@pytest.mark.parametrize("noise", [1.0, 0.01])
def test_large_offset_row_is_stable(torch, noise):
    # rows of 1e4 + small noise in float32: E[x^2] - E[x]^2 in float32 is pure cancellation
    # (garbage or NaN); the statistics must be computed stably. Compare against torch in
    # float64 on the same float32 values. (torch's own float32 kernel is off by ~1e-3 on
    # such rows, so it is not the reference here.)
    C = 77
    x = (1e4 + noise * rng(8).standard_normal((4, C))).astype(np.float32)
    w = np.full(C, 1.5, np.float32)
    b = np.full(C, 0.25, np.float32)
    G = rng(9).standard_normal((4, C)).astype(np.float32)
    x64 = x.astype(np.float64)
    tx = to_torch(torch, x64)
    ty = torch.nn.functional.layer_norm(tx, (C,), to_torch(torch, w.astype(np.float64)),
                                        to_torch(torch, b.astype(np.float64)), 1e-5)
    (ty * torch.from_numpy(G.astype(np.float64))).sum().backward()
    y = F.layer_norm(x, w, b)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    # the normalised rows have zero mean and variance var / (var + eps), as they must
    xhat = (y.astype(np.float64) - 0.25) / 1.5
    var = x64.var(-1)
    np.testing.assert_allclose(xhat.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(xhat.var(-1), var / (var + 1e-5), rtol=1e-5)
    if noise == 1.0:
        # backward uses float32 mean/rstd caches: (x - mean) loses ~ulp(1e4)/noise
        dx, _, _ = F.layer_norm_backward(G, x, w, b)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-3, atol=1e-3)


def test_large_offset_float64():
    x = 1e8 + rng(10).standard_normal((3, 50))
    w, b = np.ones(50), np.zeros(50)
    y = F.layer_norm(x, w, b)
    np.testing.assert_allclose(y, ref_layer_norm(x, w, b), rtol=1e-7, atol=1e-7)
    var = x.var(-1)
    np.testing.assert_allclose(y.var(-1), var / (var + 1e-5), rtol=1e-7)


def test_huge_values_do_not_overflow_float32():
    # (x - mean)^2 ~ 1e40 overflows float32 but not the double accumulator
    x = (1e20 * rng(11).standard_normal((3, 10))).astype(np.float32)
    w, b = np.ones(10, np.float32), np.zeros(10, np.float32)
    y, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    assert np.all(np.isfinite(y)) and np.all(rstd > 0)
    np.testing.assert_allclose(y, ref_layer_norm(x, w, b), rtol=1e-5, atol=1e-5)
    G = rng(12).standard_normal((3, 10)).astype(np.float32)
    dx, dw, db = F.layer_norm_backward(G, x, w, b)
    want = ref_layer_norm_backward(G, x, w)
    np.testing.assert_allclose(dx, want[0], rtol=1e-4, atol=1e-24)
    np.testing.assert_allclose(dw, want[1], rtol=1e-5, atol=1e-5)


def test_constant_row_with_eps():
    x = np.full((2, 5), 3.0)
    y, mean, rstd = F.layer_norm(x, np.ones(5), np.full(5, 0.5), return_stats=True)
    np.testing.assert_array_equal(y, 0.5)
    np.testing.assert_array_equal(mean, 3.0)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-15)


# ------------------------------------------------------------------ layouts, empty batch

@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_any_memory_layout(layout):
    x, w, b, G = make((6, 3, 11), np.float64, seed=13)
    np.testing.assert_array_equal(F.layer_norm(layout(x), layout(w), layout(b)),
                                  F.layer_norm(x, w, b))
    got = F.layer_norm_backward(layout(G), layout(x), layout(w), b)
    want = F.layer_norm_backward(G, x, w, b)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)
    _, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    got = F.layer_norm_backward(G, x, w, b, mean=layout(mean), rstd=layout(rstd))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 5), (2, 0, 5), (0, 1)])
def test_empty_batch(dtype, shape):
    x, w, b, G = make(shape, dtype)
    y, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    assert y.shape == shape and mean.shape == rstd.shape == shape[:-1]
    assert y.dtype == mean.dtype == dtype
    dx, dw, db = F.layer_norm_backward(G, x, w, b, mean=mean, rstd=rstd)
    assert dx.shape == shape and dx.dtype == dtype
    np.testing.assert_array_equal(dw, np.zeros(shape[-1], dtype))
    np.testing.assert_array_equal(db, np.zeros(shape[-1], dtype))


def test_accepts_lists():
    y = F.layer_norm([[1.0, 2.0, 3.0]], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(y, ref_layer_norm(np.array([[1.0, 2.0, 3.0]]), 1.0, 0.0),
                               rtol=1e-12)


# ------------------------------------------------------------------ determinism

def test_bitwise_reproducible_and_thread_independent():
    x, w, b, G = make((512, 300), np.float32, seed=14)
    n = tc.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 2):
            tc.set_num_threads(threads)
            results.append((F.layer_norm(x, w, b),) + F.layer_norm_backward(G, x, w, b))
    finally:
        tc.set_num_threads(n)
    # every output element is computed by one thread in a fixed order, whatever the count
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert np.array_equal(a, c)


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    x, w, b = np.ones((2, 4)), np.ones(4), np.zeros(4)
    G = np.ones((2, 4))
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm(x, np.ones(5), b)
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm(x, np.ones((1, 4)), b)
    with pytest.raises(ValueError, match="bias"):
        F.layer_norm(x, w, np.zeros(3))
    with pytest.raises(TypeError, match="weight"):
        F.layer_norm(x, w.astype(np.float32), b)
    with pytest.raises(TypeError, match="bias"):
        F.layer_norm(x.astype(np.float32), w.astype(np.float32), b)
    with pytest.raises(TypeError, match="x"):
        F.layer_norm(np.ones((2, 4), dtype=np.int64), w, b)
    with pytest.raises(TypeError, match="x"):
        F.layer_norm(np.ones((2, 4), dtype=np.float16), w, b)
    with pytest.raises(ValueError, match="x"):
        F.layer_norm(np.float64(1.0), w, b)
    with pytest.raises(ValueError, match="x"):
        F.layer_norm(np.ones((3, 0)), np.ones(0), None)
    for eps in (-1e-5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            F.layer_norm(x, w, b, eps=eps)
    with pytest.raises(TypeError, match="eps"):
        F.layer_norm(x, w, b, eps="small")
    with pytest.raises(ValueError, match="grad_output"):
        F.layer_norm_backward(np.ones((2, 5)), x, w, b)
    with pytest.raises(TypeError, match="grad_output"):
        F.layer_norm_backward(G.astype(np.float32), x, w, b)
    with pytest.raises(ValueError, match="rstd"):
        F.layer_norm_backward(G, x, w, b, mean=np.zeros(2))
    with pytest.raises(ValueError, match="mean"):
        F.layer_norm_backward(G, x, w, b, rstd=np.ones(2))
    with pytest.raises(ValueError, match="mean"):
        F.layer_norm_backward(G, x, w, b, mean=np.zeros(3), rstd=np.ones(2))
    with pytest.raises(TypeError, match="rstd"):
        F.layer_norm_backward(G, x, w, b, mean=np.zeros(2), rstd=np.ones(2, np.float32))


def test_raw_C_functions_raise_instead_of_crashing():
    x, w = np.ones((2, 4)), np.ones(4)
    with pytest.raises(TypeError, match="x"):
        tc._C.layernorm_forward("not an array", w, None, 1e-5)
    with pytest.raises(ValueError, match="x"):
        tc._C.layernorm_forward(np.ones((2, 3, 4)), w, None, 1e-5)
    with pytest.raises(ValueError, match="weight"):
        tc._C.layernorm_forward(x, np.ones(3), None, 1e-5)
    with pytest.raises(ValueError, match="x"):
        tc._C.layernorm_forward(np.ones((2, 0)), np.ones(0), None, 1e-5)
    with pytest.raises(ValueError, match="eps"):
        tc._C.layernorm_forward(x, w, None, -1.0)
    with pytest.raises(TypeError, match="weight"):
        tc._C.layernorm_forward(x, None, None, 1e-5)
    with pytest.raises(TypeError):
        tc._C.layernorm_forward(x, w)
    with pytest.raises(ValueError, match="mean"):
        tc._C.layernorm_backward(x, x, w, np.zeros(3), np.ones(2), True, 1e-5)
    with pytest.raises(ValueError, match="rstd"):
        tc._C.layernorm_backward(x, x, w, np.zeros(2), None, True, 1e-5)
    with pytest.raises(ValueError, match="grad_output"):
        tc._C.layernorm_backward(np.ones((3, 4)), x, w, None, None, True, 1e-5)
    with pytest.raises(TypeError, match="x"):
        tc._C.layernorm_backward(x, x.astype(np.float32), w, None, None, True, 1e-5)
