"""Softmax and log-softmax along any axis: NumPy reference, finite differences, PyTorch
parity, awkward shapes and values, bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional

# (shape, axis): last axis (contiguous rows), middle and first axes (strided), inner > 64
# (several column tiles), size-1 softmax axis, sizes that are not multiples of 8
CASES = [((7,), -1), ((1, 13), -1), ((4, 33), 1), ((4, 33), 0), ((2, 3, 5), 1),
         ((2, 3, 5), -3), ((2, 9, 130), 1), ((3, 1, 4), 1), ((1, 1), 0), ((5, 2, 3, 7), 2)]
KINDS = ["softmax", "log_softmax"]


# ------------------------------------------------------------------ NumPy references (float64)

def ref_forward(kind, x, axis):
    x = x.astype(np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return np.exp(z - lse) if kind == "softmax" else z - lse


def ref_backward(kind, g, y, axis):
    g, y = g.astype(np.float64), y.astype(np.float64)
    if kind == "softmax":
        return y * (g - (g * y).sum(axis=axis, keepdims=True))
    return g - np.exp(y) * g.sum(axis=axis, keepdims=True)


def fwd(kind):
    return getattr(F, kind)


def bwd(kind):
    return getattr(F, kind + "_backward")


def data(shape, dtype, seed, scale=3.0):
    r = rng(seed)
    return (scale * r.standard_normal(shape)).astype(dtype), r.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ 1. NumPy reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_numpy(dtype, shape, axis, kind):
    x, g = data(shape, dtype, 1)
    y = fwd(kind)(x, axis=axis)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, ref_forward(kind, x, axis), **tol(dtype))
    dx = bwd(kind)(g, y, axis=axis)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, ref_backward(kind, g, y, axis), **tol(dtype))


def test_softmax_sums_to_one_and_default_axis_is_last():
    x, _ = data((3, 4, 5), np.float64, 2)
    for axis in range(-3, 3):
        np.testing.assert_allclose(F.softmax(x, axis=axis).sum(axis=axis), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(F.softmax(x), F.softmax(x, axis=2))
    np.testing.assert_array_equal(F.log_softmax(x), F.log_softmax(x, axis=-1))
    # a softmax axis other than the last really is different
    assert not np.allclose(F.softmax(x, axis=0), F.softmax(x))


def test_known_values():
    y = F.softmax(np.array([0.0, np.log(3.0)]))
    np.testing.assert_allclose(y, [0.25, 0.75], rtol=1e-15)
    np.testing.assert_allclose(F.log_softmax(np.array([0.0, 0.0, 0.0, 0.0])),
                               np.full(4, -np.log(4.0)), rtol=1e-15)


# ------------------------------------------------------------------ 2. finite differences

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((3, 5), 0), ((2, 4, 3), 1)])
def test_finite_differences(kind, shape, axis):
    x = rng(3).standard_normal(shape)

    def grads(G):
        return {"x": bwd(kind)(G, fwd(kind)(x, axis=axis), axis=axis)}

    check_grads(lambda: fwd(kind)(x, axis=axis), grads, {"x": x})


# ------------------------------------------------------------------ 3. PyTorch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(torch, dtype, shape, axis, kind):
    x, g = data(shape, dtype, 4)
    tx = to_torch(torch, x)
    ty = getattr(torch, kind)(tx, dim=axis)
    (ty * torch.from_numpy(g)).sum().backward()
    y = fwd(kind)(x, axis=axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(bwd(kind)(g, y, axis=axis), tx.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1])
def test_masked_minus_inf_matches_torch(torch, kind, axis):
    # -inf among finite values (an attention mask): probability 0, gradient 0 there
    x, g = data((6, 5), np.float64, 5)
    x[np.triu_indices(5, 1)] = -np.inf
    tx = to_torch(torch, x)
    ty = getattr(torch, kind)(tx, dim=axis)
    (ty * torch.from_numpy(g)).sum().backward()
    y = fwd(kind)(x, axis=axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(np.float64))
    np.testing.assert_allclose(bwd(kind)(g, y, axis=axis), tx.grad.numpy(), **tol(np.float64))
    if kind == "softmax":
        assert np.all(y[np.triu_indices(5, 1)] == 0)
    else:
        assert np.all(y[np.triu_indices(5, 1)] == -np.inf)


# ------------------------------------------------------------------ 4. awkward shapes and values

@pytest.mark.parametrize("layout", [non_contiguous, fortran])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_any_memory_layout(layout, kind, axis):
    x, g = data((5, 6, 7), np.float64, 6)
    y = fwd(kind)(x, axis=axis)
    np.testing.assert_array_equal(fwd(kind)(layout(x), axis=axis), y)
    np.testing.assert_array_equal(bwd(kind)(layout(g), layout(y), axis=axis),
                                  bwd(kind)(g, y, axis=axis))
    np.testing.assert_allclose(fwd(kind)(layout(x), axis=axis), ref_forward(kind, x, axis),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", [((0,), 0), ((0, 5), -1), ((0, 5), 0), ((3, 0), -1),
                                        ((3, 0), 0), ((2, 0, 4), 2)])
def test_empty(dtype, kind, shape, axis):
    x = np.zeros(shape, dtype)
    y = fwd(kind)(x, axis=axis)
    dx = bwd(kind)(x, y, axis=axis)
    assert y.shape == shape and dx.shape == shape and y.dtype == dtype and dx.dtype == dtype


def test_zero_dimensional_is_a_one_element_softmax_like_torch(torch):
    for axis in (0, -1):
        assert F.softmax(np.array(3.0), axis=axis) == 1.0
        assert F.log_softmax(np.array(3.0), axis=axis) == 0.0
        assert F.softmax_backward(np.array(2.0), np.array(1.0), axis=axis) == 0.0
    assert torch.softmax(torch.tensor(3.0), dim=-1).item() == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_large_values_do_not_overflow(dtype, kind, axis):
    x = np.array([[1000.0, 999.0, 998.0], [1e30, 0.0, -1e30], [-1000.0, -1001.0, -1e30]],
                 dtype)
    y = fwd(kind)(x, axis=axis)
    assert np.all(np.isfinite(y) | (y == -np.inf))
    want = ref_forward(kind, x.astype(np.float64), axis)
    np.testing.assert_allclose(y, want, **tol(dtype))
    # shifting a slice by a constant changes nothing
    np.testing.assert_allclose(fwd(kind)(x[:1] - 1000, axis=-1), fwd(kind)(x[:1], axis=-1),
                               **tol(dtype))


@pytest.mark.parametrize("kind", KINDS)
def test_special_slices_give_nan_like_torch(torch, kind):
    # all -inf, a +inf, a NaN: no distribution, NaN across that slice (as torch); the other
    # rows are unaffected
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, np.inf, 1.0], [0.0, np.nan, 1.0],
                  [0.0, 1.0, 2.0]])
    y = fwd(kind)(x)
    want = getattr(torch, kind)(torch.from_numpy(x), dim=-1).numpy()
    assert np.all(np.isnan(y[:3])) and np.all(np.isnan(want[:3]))
    np.testing.assert_allclose(y[3], want[3], rtol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", [((300, 257), -1), ((40, 50, 70), 1)])
def test_thread_count_gives_bitwise_identical_results(kind, shape, axis):
    # every sum is taken by one task in a fixed order, so the thread count does not matter
    x, g = data(shape, np.float32, 7)
    n = tc.get_num_threads()
    outs = []
    try:
        for k in (1, 2):
            tc.set_num_threads(k)
            y = fwd(kind)(x, axis=axis)
            outs.append((y, bwd(kind)(g, y, axis=axis)))
    finally:
        tc.set_num_threads(n)
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])
    np.testing.assert_allclose(outs[0][0], ref_forward(kind, x, axis), **tol(np.float32))


# ------------------------------------------------------------------ 5. bad input

@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_names_the_argument(kind):
    x = np.ones((2, 3))
    for axis in (2, -3, 100):
        with pytest.raises(ValueError, match="axis"):
            fwd(kind)(x, axis=axis)
        with pytest.raises(ValueError, match="axis"):
            bwd(kind)(x, x, axis=axis)
    for axis in (1.0, "0", None):
        with pytest.raises(TypeError, match="axis"):
            fwd(kind)(x, axis=axis)
    with pytest.raises(TypeError, match="x"):
        fwd(kind)(np.ones(3, dtype=np.int32))
    with pytest.raises(TypeError, match="grad_output"):
        bwd(kind)(x.astype(np.float32), x)
    with pytest.raises(TypeError, match="y"):
        bwd(kind)(x, np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="grad_output"):
        bwd(kind)(np.ones((3, 2)), x)
    assert fwd(kind)(x, axis=np.int64(0)).shape == (2, 3)  # numpy integers are fine


def test_raw_C_functions_raise_instead_of_crashing():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="axis"):
        tc._C.softmax_forward(x, 2)
    with pytest.raises(ValueError, match="axis"):
        tc._C.log_softmax_backward(x, x, -3)
    with pytest.raises(TypeError, match="axis"):
        tc._C.softmax_forward(x, "last")
    with pytest.raises(ValueError, match="axis"):
        tc._C.softmax_forward(x, 2 ** 70)
    with pytest.raises(TypeError, match="x"):
        tc._C.log_softmax_forward([["a"]], 0)
    with pytest.raises(TypeError, match="y"):
        tc._C.softmax_backward(x, x.astype(np.float32), 0)
    with pytest.raises(ValueError, match="grad_output"):
        tc._C.softmax_backward(np.ones(6), x, 0)
    with pytest.raises(TypeError):
        tc._C.softmax_forward(x)
