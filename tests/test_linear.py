"""Linear layer and GEMM: NumPy reference, finite differences, PyTorch parity, awkward
shapes and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional


# ------------------------------------------------------------------ GEMM

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 5, 3), (6, 16, 256), (13, 33, 257),
                                   (150, 70, 300), (0, 4, 3), (4, 0, 3), (3, 4, 0)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy_and_reference(dtype, M, N, K, ta, tb):
    r = rng(M * 100 + N + K)
    A = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    got = F.gemm(A, B, trans_a=ta, trans_b=tb)
    ref = F.gemm(A, B, trans_a=ta, trans_b=tb, reference=True)
    assert got.dtype == dtype and got.shape == (M, N)
    scale = np.sqrt(max(K, 1))
    np.testing.assert_allclose(got, want, rtol=tol(dtype)["rtol"] * scale, atol=tol(dtype)["atol"] * scale)
    np.testing.assert_allclose(ref, want, rtol=tol(dtype)["rtol"] * scale, atol=tol(dtype)["atol"] * scale)


def test_gemm_large_spans_every_block():
    # M > MC, N > NC (f64 panel is 1536 columns), K > KC: every blocking loop runs twice
    r = rng(1)
    A = r.standard_normal((200, 600))
    B = r.standard_normal((600, 1600))
    np.testing.assert_allclose(F.gemm(A, B), A @ B, rtol=1e-11, atol=1e-11)


def test_gemm_is_bitwise_reproducible_for_fixed_threads():
    r = rng(2)
    A = r.standard_normal((300, 500)).astype(np.float32)
    B = r.standard_normal((500, 400)).astype(np.float32)
    assert np.array_equal(F.gemm(A, B), F.gemm(A, B))


def test_gemm_thread_count_changes_only_rounding():
    r = rng(3)
    A, B = r.standard_normal((120, 300)), r.standard_normal((300, 90))
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one = F.gemm(A, B)
        tc.set_num_threads(2)
        two = F.gemm(A, B)
    finally:
        tc.set_num_threads(n)
    np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-12)


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError):
        tc.set_num_threads(0)


# ------------------------------------------------------------------ linear

def ref_linear(x, W, b):
    y = x @ W.T
    return y + b if b is not None else y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (1, 4), (4,), (0, 4), (2, 0, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_matches_numpy(dtype, shape, with_bias):
    r = rng(4)
    W = r.standard_normal((3, 4)).astype(dtype)
    b = r.standard_normal(3).astype(dtype) if with_bias else None
    x = r.standard_normal(shape).astype(dtype)
    y = F.linear(x, W, b)
    assert y.dtype == dtype and y.shape == shape[:-1] + (3,)
    np.testing.assert_allclose(y, ref_linear(x, W, b), **tol(dtype))


@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_linear_accepts_any_memory_layout(layout):
    r = rng(5)
    x, W, b = r.standard_normal((6, 5)), r.standard_normal((7, 5)), r.standard_normal(7)
    np.testing.assert_allclose(F.linear(layout(x), layout(W), b), ref_linear(x, W, b), rtol=1e-12)
    dy = r.standard_normal((6, 7))
    got = F.linear_backward(layout(dy), layout(x), layout(W), b)
    want = F.linear_backward(dy, x, W, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_backward_finite_differences(with_bias):
    r = rng(6)
    x, W = r.standard_normal((2, 3, 5)), r.standard_normal((4, 5))
    b = r.standard_normal(4) if with_bias else None
    arrays = {"x": x, "W": W} | ({"b": b} if with_bias else {})

    def grads(G):
        dx, dW, db = F.linear_backward(G, x, W, b)
        assert (db is None) == (not with_bias)
        return {"x": dx, "W": dW, "b": db}

    check_grads(lambda: F.linear(x, W, b), grads, arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 17), (3, 9, 17), (33, 17)])
def test_linear_matches_torch(torch, dtype, shape):
    r = rng(7)
    x = r.standard_normal(shape).astype(dtype)
    W = r.standard_normal((19, 17)).astype(dtype)
    b = r.standard_normal(19).astype(dtype)
    G = r.standard_normal(shape[:-1] + (19,)).astype(dtype)
    tx, tW, tb = (to_torch(torch, a) for a in (x, W, b))
    ty = torch.nn.functional.linear(tx, tW, tb)
    (ty * torch.from_numpy(G)).sum().backward()
    np.testing.assert_allclose(F.linear(x, W, b), ty.detach().numpy(), **tol(dtype))
    dx, dW, db = F.linear_backward(G, x, W, b)
    for got, want in ((dx, tx.grad), (dW, tW.grad), (db, tb.grad)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want.numpy(), **tol(dtype))


def test_matmul_and_backward(torch):
    r = rng(8)
    a, b = r.standard_normal((2, 5, 3)), r.standard_normal((3, 4))
    np.testing.assert_allclose(F.matmul(a, b), a @ b, rtol=1e-12)
    G = r.standard_normal((2, 5, 4))
    ta, tb = to_torch(torch, a), to_torch(torch, b)
    (torch.matmul(ta, tb) * torch.from_numpy(G)).sum().backward()
    da, db = F.matmul_backward(G, a, b)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_linear_bad_input_names_the_argument():
    W, b = np.ones((3, 4)), np.zeros(3)
    with pytest.raises(ValueError, match="x"):
        F.linear(np.ones((2, 5)), W, b)
    with pytest.raises(TypeError, match="weight"):
        F.linear(np.ones((2, 4)), W.astype(np.float32), b)
    with pytest.raises(TypeError, match="x"):
        F.linear(np.ones((2, 4), dtype=np.int64), W, b)
    with pytest.raises(ValueError, match="bias"):
        F.linear(np.ones((2, 4)), W, np.zeros(5))
    with pytest.raises(ValueError, match="weight"):
        F.linear(np.ones((2, 4)), np.ones(4), b)
    with pytest.raises(ValueError, match="grad_output"):
        F.linear_backward(np.ones((2, 2)), np.ones((2, 4)), W, b)
    with pytest.raises(TypeError, match="x"):
        tc._C.linear_forward("not an array", W, b)
    with pytest.raises(TypeError):
        tc._C.linear_forward(np.ones((2, 4)))
