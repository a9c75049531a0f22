"""Sinusoidal position encodings: NumPy reference of the formula, float32 vs float64,
the addition and its pass-through gradient, awkward shapes and bad input.

PyTorch has no op for sinusoidal position encodings, so there is no torch parity test of
a torch kernel; instead the table is also rebuilt from torch primitives (an independent
implementation of the same formula) and the addition's gradient is checked with torch
autograd and with finite differences."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch

F = tc.functional


def ref_table(length, dim, base=10000.0, offset=0):
    """The formula, element by element, in float64."""
    pe = np.zeros((length, dim))
    for n in range(length):
        pos = offset + n
        for i in range(dim):
            k2 = i - i % 2  # 2k for both columns of a pair
            angle = pos / base ** (k2 / dim)
            pe[n, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return pe


# ------------------------------------------------------------------ the table

@pytest.mark.parametrize("length,dim", [(1, 1), (1, 4), (5, 1), (7, 6), (13, 7), (50, 33),
                                        (3, 2), (0, 4)])
@pytest.mark.parametrize("base,offset", [(10000.0, 0), (10000.0, 5), (100.0, 0), (2.5, 17)])
def test_table_matches_formula(length, dim, base, offset):
    pe = F.sinusoidal_positions(length, dim, base=base, offset=offset)
    assert pe.dtype == np.float64 and pe.shape == (length, dim)
    np.testing.assert_allclose(pe, ref_table(length, dim, base, offset), rtol=1e-12, atol=1e-13)


def test_known_values():
    pe = F.sinusoidal_positions(3, 5)
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0])      # pos 0: sin 0, cos 0
    np.testing.assert_allclose(pe[2, :2], [math.sin(2), math.cos(2)], rtol=1e-15)
    # odd dim: the last column is a sin with frequency base**(-4/5)
    np.testing.assert_allclose(pe[1, 4], math.sin(10000.0 ** -0.8), rtol=1e-15)


def test_offset_shifts_rows():
    full = F.sinusoidal_positions(40, 9)
    np.testing.assert_array_equal(F.sinusoidal_positions(10, 9, offset=30), full[30:])
    np.testing.assert_array_equal(F.sinusoidal_positions(1, 9, offset=7), full[7:8])


def test_large_offset_and_long_table():
    # angles near 1e6: still accurate in float64 and bounded by 1
    pe = F.sinusoidal_positions(4, 8, offset=10**6)
    np.testing.assert_allclose(pe, ref_table(4, 8, offset=10**6), rtol=0, atol=1e-9)
    big = F.sinusoidal_positions(4096, 64)  # parallel path
    assert np.all(np.abs(big) <= 1)
    idx = [0, 1, 777, 4095]
    np.testing.assert_allclose(big[idx], ref_table(4096, 64)[idx], rtol=0, atol=1e-11)


def test_float32_table_is_the_rounded_float64_table():
    pe64 = F.sinusoidal_positions(300, 31, offset=11)
    pe32 = F.sinusoidal_positions(300, 31, dtype=np.float32, offset=11)
    assert pe32.dtype == np.float32 and pe64.dtype == np.float64
    np.testing.assert_allclose(pe32, pe64, rtol=0, atol=1e-6)
    # angles are computed in double: float32 output is float64 output rounded once
    np.testing.assert_array_equal(pe32, pe64.astype(np.float32))
    assert F.sinusoidal_positions(2, 2, dtype="float32").dtype == np.float32


def test_table_matches_torch_primitives(torch):
    # no torch op exists: rebuild the formula from torch primitives in float64
    L, D, base = 37, 13, 10000.0
    pos = torch.arange(L, dtype=torch.float64)[:, None]
    k2 = torch.arange(0, D, 2, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(base, dtype=torch.float64), k2 / D)
    pe = torch.zeros(L, D, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : D // 2])
    np.testing.assert_allclose(F.sinusoidal_positions(L, D), pe.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ add_positions

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 4), (2, 13, 7), (2, 3, 9, 33),
                                   (0, 5, 4), (3, 0, 4), (2, 3, 0)])
def test_add_matches_numpy(dtype, shape):
    x = rng(0).standard_normal(shape).astype(dtype)
    y = F.add_positions(x, offset=3)
    assert y.dtype == dtype and y.shape == shape
    T, D = shape[-2:]
    want = x + ref_table(T, D, offset=3).astype(dtype)  # table rounded to x's dtype first
    np.testing.assert_allclose(y, want, **({"rtol": 1e-14, "atol": 1e-15} if dtype == np.float64
                                          else {"rtol": 1e-6, "atol": 1e-7}))
    assert not np.shares_memory(y, x)


def test_add_large_batch_and_base():
    x = rng(1).standard_normal((64, 50, 24))  # parallel path
    np.testing.assert_allclose(F.add_positions(x, base=500.0), x + ref_table(50, 24, 500.0),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_add_any_memory_layout(layout):
    x = rng(2).standard_normal((3, 6, 5))
    np.testing.assert_array_equal(F.add_positions(layout(x)), F.add_positions(x))
    G = rng(3).standard_normal((3, 6, 5))
    np.testing.assert_array_equal(F.add_positions_backward(layout(G)), G)


def test_add_backward_is_a_pass_through_copy():
    G = rng(4).standard_normal((2, 4, 3)).astype(np.float32)
    g = F.add_positions_backward(G)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, G)
    assert not np.shares_memory(g, G)


def test_add_backward_finite_differences():
    x = rng(5).standard_normal((2, 5, 7))
    check_grads(lambda: F.add_positions(x, offset=2),
                lambda G: {"x": F.add_positions_backward(G)}, {"x": x})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_gradient_matches_torch_autograd(torch, dtype):
    x = rng(6).standard_normal((2, 9, 13)).astype(dtype)
    G = rng(7).standard_normal(x.shape).astype(dtype)
    tx = to_torch(torch, x)
    ty = tx + torch.from_numpy(ref_table(9, 13).astype(dtype))
    (ty * torch.from_numpy(G)).sum().backward()
    np.testing.assert_allclose(F.add_positions(x), ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(F.add_positions_backward(G), tx.grad.numpy())


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="length"):
        F.sinusoidal_positions(-1, 4)
    with pytest.raises(ValueError, match="dim"):
        F.sinusoidal_positions(3, 0)
    for base in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="base"):
            F.sinusoidal_positions(3, 4, base=base)
    with pytest.raises(TypeError, match="base"):
        F.sinusoidal_positions(3, 4, base="10000")
    for dt in (np.int32, np.float16, np.complex128, "garbage"):
        with pytest.raises(TypeError, match="dtype"):
            F.sinusoidal_positions(3, 4, dtype=dt)
    with pytest.raises(TypeError, match="length"):
        F.sinusoidal_positions(3.0, 4)
    with pytest.raises(TypeError, match="dim"):
        F.sinusoidal_positions(3, True)
    with pytest.raises(TypeError, match="offset"):
        F.sinusoidal_positions(3, 4, offset=1.5)
    with pytest.raises(ValueError, match="x"):
        F.add_positions(np.ones(4))
    with pytest.raises(TypeError, match="x"):
        F.add_positions(np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="base"):
        F.add_positions(np.ones((2, 4)), base=-1)
    with pytest.raises(TypeError, match="offset"):
        F.add_positions(np.ones((2, 4)), offset="1")
    with pytest.raises(TypeError, match="grad_output"):
        F.add_positions_backward(np.ones((2, 4), np.int32))
    with pytest.raises(ValueError, match="grad_output"):
        F.add_positions_backward(np.ones(4))


def test_raw_C_functions_raise_instead_of_crashing():
    with pytest.raises(ValueError, match="length"):
        tc._C.position_sinusoidal(-1, 4, 10000.0, 0, np.float64)
    with pytest.raises(ValueError, match="dim"):
        tc._C.position_sinusoidal(2, -4, 10000.0, 0, np.float64)
    with pytest.raises(ValueError, match="base"):
        tc._C.position_sinusoidal(2, 4, 0.0, 0, np.float64)
    with pytest.raises(TypeError, match="dtype"):
        tc._C.position_sinusoidal(2, 4, 10000.0, 0, np.int8)
    with pytest.raises(TypeError, match="offset"):
        tc._C.position_sinusoidal(2, 4, 10000.0, "0", np.float32)
    with pytest.raises(ValueError, match="offset"):
        tc._C.position_sinusoidal(2, 4, 10000.0, 2**70, np.float32)
    with pytest.raises(ValueError, match="x"):
        tc._C.position_add_sinusoidal(np.ones((2, 4)), 10000.0, 0)
    with pytest.raises(TypeError, match="x"):
        tc._C.position_add_sinusoidal(None, 10000.0, 0)
    with pytest.raises(ValueError, match="base"):
        tc._C.position_add_sinusoidal(np.ones((1, 2, 4)), float("nan"), 0)
    with pytest.raises(TypeError):
        tc._C.position_add_sinusoidal(np.ones((1, 2, 4)))
