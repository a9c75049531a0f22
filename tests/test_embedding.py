"""Token embedding: NumPy reference, finite differences, PyTorch parity, every integer id
dtype, awkward shapes, determinism of the scatter-add and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional

ID_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


def ref_embedding_backward(G, ids, V):
    """Scatter-add in the order of the positions, in float64."""
    D = G.shape[-1]
    dw = np.zeros((V, D))
    for i, row in zip(np.ravel(ids), G.reshape(-1, D).astype(np.float64)):
        dw[i] += row
    return dw


# ------------------------------------------------------------------ against NumPy

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("id_dtype", ID_DTYPES)
def test_forward_matches_numpy_for_every_id_dtype(dtype, id_dtype):
    r = rng(0)
    V, D = 11, 7
    w = r.standard_normal((V, D)).astype(dtype)
    ids = r.integers(0, V, size=(3, 5)).astype(id_dtype)
    out = F.embedding(ids, w)
    assert out.dtype == dtype and out.shape == (3, 5, D)
    np.testing.assert_array_equal(out, w[ids.astype(np.int64)])
    G = r.standard_normal(out.shape).astype(dtype)
    dw = F.embedding_backward(G, ids, V)
    assert dw.dtype == dtype and dw.shape == (V, D)
    np.testing.assert_allclose(dw, ref_embedding_backward(G, ids, V), **tol(dtype))


@pytest.mark.parametrize("ids_shape", [(), (1,), (6,), (2, 3), (2, 3, 4), (0,), (2, 0), (0, 3)])
@pytest.mark.parametrize("D", [1, 7, 13, 33])
def test_any_ids_shape(ids_shape, D):
    r = rng(1)
    V = 5
    w = r.standard_normal((V, D))
    ids = r.integers(0, V, size=ids_shape)
    out = F.embedding(ids, w)
    assert out.shape == ids_shape + (D,)
    np.testing.assert_array_equal(out, w[ids])
    G = r.standard_normal(out.shape)
    np.testing.assert_allclose(F.embedding_backward(G, ids, V), ref_embedding_backward(G, ids, V),
                               rtol=1e-12, atol=1e-12)


def test_python_int_ids_and_lists():
    w = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(F.embedding(2, w), w[2])
    np.testing.assert_array_equal(F.embedding([3, 0, 3], w), w[[3, 0, 3]])
    np.testing.assert_array_equal(F.embedding_backward(np.ones((2, 3)), [1, 1], 4),
                                  [[0, 0, 0], [2, 2, 2], [0, 0, 0], [0, 0, 0]])


def test_empty_vocabulary_with_no_ids():
    w = np.zeros((0, 4), np.float32)
    out = F.embedding(np.zeros((2, 0), np.int64), w)
    assert out.shape == (2, 0, 4) and out.dtype == np.float32
    dw = F.embedding_backward(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.int64), 0)
    assert dw.shape == (0, 4) and dw.dtype == np.float32


def test_repeated_ids_accumulate_and_unused_rows_stay_zero():
    G = np.arange(15.0).reshape(5, 3)
    ids = np.array([2, 0, 2, 2, 0])
    dw = F.embedding_backward(G, ids, 4)
    np.testing.assert_array_equal(dw[0], G[1] + G[4])
    np.testing.assert_array_equal(dw[2], G[0] + G[2] + G[3])
    np.testing.assert_array_equal(dw[[1, 3]], 0)


def test_scatter_add_runs_in_position_order():
    # float32 sums depend on order: the kernel must add rows in the order of the
    # positions, exactly like a sequential loop (np.add.at)
    r = rng(2)
    V, D, N = 7, 50, 3000
    ids = r.integers(0, V, N)
    G = (r.standard_normal((N, D)) * 10.0 ** r.integers(-3, 4, (N, 1))).astype(np.float32)
    want = np.zeros((V, D), np.float32)
    np.add.at(want, ids, G)
    np.testing.assert_array_equal(F.embedding_backward(G, ids, V), want)


# ------------------------------------------------------------------ finite differences

def test_backward_finite_differences():
    r = rng(3)
    w = r.standard_normal((6, 5))
    ids = np.array([[1, 4, 1], [0, 1, 5]])
    check_grads(lambda: F.embedding(ids, w),
                lambda G: {"w": F.embedding_backward(G, ids, 6)}, {"w": w})


# ------------------------------------------------------------------ PyTorch

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("V,D,ids_shape", [(1, 1, (4,)), (13, 7, (3, 9)), (50, 33, (2, 64)),
                                           (100, 256, (4, 64))])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_matches_torch(torch, dtype, V, D, ids_shape, id_dtype):
    r = rng(4)
    w = r.standard_normal((V, D)).astype(dtype)
    # few distinct ids: many repeats to accumulate
    ids = r.integers(0, min(V, 5), size=ids_shape).astype(id_dtype)
    G = r.standard_normal(ids_shape + (D,)).astype(dtype)
    tw = to_torch(torch, w)
    ty = torch.nn.functional.embedding(torch.from_numpy(ids.astype(np.int64)), tw)
    (ty * torch.from_numpy(G)).sum().backward()
    np.testing.assert_array_equal(F.embedding(ids, w), ty.detach().numpy())
    dw = F.embedding_backward(G, ids, V)
    assert dw.dtype == dtype
    scale = np.sqrt(ids.size) if dtype == np.float32 else 1
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=tol(dtype)["rtol"] * scale,
                               atol=tol(dtype)["atol"] * scale)


# ------------------------------------------------------------------ layouts, values, threads

@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_any_memory_layout(layout):
    r = rng(5)
    w = r.standard_normal((9, 6))
    ids = r.integers(0, 9, size=(4, 5)).astype(np.int32)
    G = r.standard_normal((4, 5, 6))
    np.testing.assert_array_equal(F.embedding(layout(ids), layout(w)), w[ids])
    np.testing.assert_array_equal(F.embedding_backward(layout(G), layout(ids), 9),
                                  F.embedding_backward(G, ids, 9))


def test_large_and_special_values_are_copied_exactly():
    w = np.array([[3e38, -3e38, np.inf], [np.nan, -0.0, 1e-45]], np.float32)
    out = F.embedding([1, 0], w)
    np.testing.assert_array_equal(out, w[[1, 0]])
    assert np.signbit(out[0, 1])


def test_backward_bitwise_reproducible_and_thread_independent():
    r = rng(6)
    V, D, N = 30, 200, 2000
    ids = r.integers(0, V, N)
    G = r.standard_normal((N, D)).astype(np.float32)
    n = tc.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 2):
            tc.set_num_threads(threads)
            results.append(F.embedding_backward(G, ids, V))
    finally:
        tc.set_num_threads(n)
    assert all(np.array_equal(results[0], x) for x in results[1:])


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    w = np.ones((4, 3))
    with pytest.raises(TypeError, match="ids"):
        F.embedding(np.array([0.0, 1.0]), w)
    with pytest.raises(TypeError, match="ids"):
        F.embedding(np.array([True, False]), w)
    with pytest.raises(TypeError, match="ids"):
        F.embedding(["a"], w)
    with pytest.raises(IndexError, match=r"ids.* 4\b"):
        F.embedding(np.array([0, 4]), w)
    with pytest.raises(IndexError, match="ids.*-1"):
        F.embedding(np.array([[0, 1], [-1, 2]], np.int8), w)
    with pytest.raises(IndexError, match="ids.*18446744073709551615"):
        F.embedding(np.array([1, 2**64 - 1], np.uint64), w)
    with pytest.raises(IndexError, match="ids"):
        F.embedding(np.array([0]), np.ones((0, 3)))
    with pytest.raises(ValueError, match="weight"):
        F.embedding([0], np.ones(4))
    with pytest.raises(TypeError, match="weight"):
        F.embedding([0], np.ones((4, 3), np.int64))
    G = np.ones((2, 3))
    with pytest.raises(ValueError, match="grad_output"):
        F.embedding_backward(np.ones((3, 3)), [0, 1], 4)
    with pytest.raises(ValueError, match="grad_output"):
        F.embedding_backward(np.ones(2), [0, 1], 4)
    with pytest.raises(TypeError, match="grad_output"):
        F.embedding_backward(G.astype(np.int32), [0, 1], 4)
    with pytest.raises(TypeError, match="ids"):
        F.embedding_backward(G, [0.0, 1.0], 4)
    with pytest.raises(IndexError, match="ids.*7"):
        F.embedding_backward(G, [0, 7], 4)
    with pytest.raises(IndexError, match="ids.*-3"):
        F.embedding_backward(G, [-3, 0], 4)
    with pytest.raises(ValueError, match="num_embeddings"):
        F.embedding_backward(G, [0, 1], -1)
    for bad in (4.0, "4", None, True):
        with pytest.raises(TypeError, match="num_embeddings"):
            F.embedding_backward(G, [0, 1], bad)


def test_raw_C_functions_raise_instead_of_crashing():
    w = np.ones((4, 3))
    with pytest.raises(IndexError, match="ids"):
        tc._C.embedding_forward(np.array([5]), w)
    with pytest.raises(ValueError, match="ids"):
        tc._C.embedding_forward(np.array([[0]]), w)
    with pytest.raises(TypeError, match="ids"):
        tc._C.embedding_forward(np.array([0.5]), w)
    with pytest.raises(TypeError, match="weight"):
        tc._C.embedding_forward(np.array([0]), "weight")
    with pytest.raises(ValueError, match="weight"):
        tc._C.embedding_forward(np.array([0]), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="ids"):
        tc._C.embedding_backward(np.ones((2, 3)), np.array([0]), 4)
    with pytest.raises(IndexError, match="ids"):
        tc._C.embedding_backward(np.ones((1, 3)), np.array([4]), 4)
    with pytest.raises(ValueError, match="num_embeddings"):
        tc._C.embedding_backward(np.ones((1, 3)), np.array([0]), -4)
    with pytest.raises(TypeError, match="num_embeddings"):
        tc._C.embedding_backward(np.ones((1, 3)), np.array([0]), 4.0)
    with pytest.raises(TypeError):
        tc._C.embedding_backward(np.ones((1, 3)), np.array([0]))
