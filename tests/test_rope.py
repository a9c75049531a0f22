"""Rotary position embedding: NumPy reference, finite differences, a torch implementation
(torch has no RoPE op, so the test writes one from torch primitives and checks it with
autograd), the relative-position property, layouts, awkward shapes and bad input."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional


def ref_rope(x, base=10000.0, offset=0, interleaved=False, seq_axis=-2, sign=1.0):
    """Element-by-element rotation in float64 (positions along seq_axis)."""
    x = np.asarray(x, dtype=np.float64)
    ax = seq_axis % x.ndim
    HS = x.shape[-1]
    half = HS // 2
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        pos = offset + idx[ax]
        row = x[idx]
        for i in range(half):
            angle = sign * pos * base ** (-2.0 * i / HS)
            c, s = math.cos(angle), math.sin(angle)
            ia, ib = (2 * i, 2 * i + 1) if interleaved else (i, i + half)
            out[idx + (ia,)] = row[ia] * c - row[ib] * s
            out[idx + (ib,)] = row[ia] * s + row[ib] * c
    return out


def torch_rope(torch, x, base=10000.0, offset=0, interleaved=False):
    """RoPE from torch primitives on (..., T, HS) (angles in float64, as the kernel)."""
    T, HS = x.shape[-2:]
    inv = base ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    ang = (torch.arange(T, dtype=torch.float64) + offset)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    a, b = x[..., :HS // 2], x[..., HS // 2:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


# ------------------------------------------------------------------ table

@pytest.mark.parametrize("length,hs,base,offset", [(1, 2, 10000.0, 0), (7, 14, 10000.0, 3),
                                                   (33, 8, 500.0, 0), (0, 4, 10000.0, 0),
                                                   (5, 0, 10000.0, 0)])
def test_table_matches_formula(length, hs, base, offset):
    cos, sin = F.rope_table(length, hs, base=base, offset=offset)
    assert cos.shape == sin.shape == (length, hs // 2) and cos.dtype == np.float64
    for n in range(length):
        for i in range(hs // 2):
            a = (offset + n) * base ** (-2.0 * i / hs)
            assert cos[n, i] == pytest.approx(math.cos(a), rel=1e-13, abs=1e-14)
            assert sin[n, i] == pytest.approx(math.sin(a), rel=1e-13, abs=1e-14)


def test_table_float32_is_rounded_float64():
    c64, s64 = F.rope_table(50, 16, offset=1000)
    c32, s32 = F.rope_table(50, 16, dtype=np.float32, offset=1000)
    assert c32.dtype == np.float32
    np.testing.assert_array_equal(c32, c64.astype(np.float32))
    np.testing.assert_array_equal(s32, s64.astype(np.float32))


# ------------------------------------------------------------------ forward / backward vs NumPy

@pytest.mark.parametrize("shape", [(1, 2), (3, 4), (2, 3, 7, 14), (2, 1, 33, 8), (4, 1, 2)])
@pytest.mark.parametrize("interleaved", [False, True])
def test_forward_matches_reference(shape, interleaved):
    x = rng(1).standard_normal(shape)
    got = F.rope(x, interleaved=interleaved, offset=2, base=100.0)
    np.testing.assert_allclose(got, ref_rope(x, 100.0, 2, interleaved), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("interleaved", [False, True])
def test_backward_matches_reference(interleaved):
    g = rng(2).standard_normal((2, 3, 9, 6))
    got = F.rope_backward(g, interleaved=interleaved, offset=5)
    np.testing.assert_allclose(got, ref_rope(g, offset=5, interleaved=interleaved, sign=-1.0),
                               rtol=1e-12, atol=1e-13)


def test_position_zero_is_identity_and_norms_kept():
    x = rng(3).standard_normal((5, 8))
    y = F.rope(x)
    np.testing.assert_array_equal(y[0], x[0])
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(F.rope_backward(y), x, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("interleaved", [False, True])
def test_scores_depend_on_relative_position_only(interleaved):
    r = rng(4)
    q, k = r.standard_normal(16), r.standard_normal(16)
    Q = F.rope(np.tile(q, (40, 1)), interleaved=interleaved)
    K = F.rope(np.tile(k, (40, 1)), interleaved=interleaved)
    s = Q @ K.T
    for d in (-3, 0, 5):
        diag = np.diagonal(s, offset=d)
        np.testing.assert_allclose(diag, diag[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("interleaved", [False, True])
def test_offset_shifts_positions(interleaved):
    x = rng(5).standard_normal((2, 20, 6))
    full = F.rope(x, interleaved=interleaved)
    np.testing.assert_array_equal(F.rope(x[:, 12:], offset=12, interleaved=interleaved),
                                  full[:, 12:])


def test_seq_axis_token_major_layout():
    x = rng(6).standard_normal((2, 3, 7, 10))          # (B, NH, T, HS)
    tm = np.ascontiguousarray(x.transpose(0, 2, 1, 3))  # (B, T, NH, HS)
    got = F.rope(tm, seq_axis=-3, offset=1)
    np.testing.assert_array_equal(got, F.rope(x, offset=1).transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(F.rope_backward(tm, seq_axis=1),
                                  F.rope_backward(x).transpose(0, 2, 1, 3))
    np.testing.assert_allclose(F.rope(x, seq_axis=0), ref_rope(x, seq_axis=0), rtol=1e-12,
                               atol=1e-13)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("interleaved", [False, True])
def test_finite_differences(interleaved):
    x = rng(7).standard_normal((2, 5, 6))
    check_grads(lambda: F.rope(x, interleaved=interleaved, offset=3),
                lambda G: {"x": F.rope_backward(G, interleaved=interleaved, offset=3)},
                {"x": x})


# ------------------------------------------------------------------ torch parity

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("shape,offset", [((2, 3, 13, 8), 0), ((1, 1, 1, 2), 0),
                                          ((3, 33, 34), 7), ((2, 2, 64, 16), 1000)])
def test_torch_parity(torch, dtype, interleaved, shape, offset):
    r = rng(8)
    x = r.standard_normal(shape).astype(dtype)
    G = r.standard_normal(shape).astype(dtype)
    xt = to_torch(torch, x)
    yt = torch_rope(torch, xt, offset=offset, interleaved=interleaved)
    (yt * to_torch(torch, G, False)).sum().backward()
    y = F.rope(x, offset=offset, interleaved=interleaved)
    dx = F.rope_backward(G, offset=offset, interleaved=interleaved)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol(dtype))


# ------------------------------------------------------------------ awkward shapes and layouts

@pytest.mark.parametrize("make", [non_contiguous, fortran])
def test_non_contiguous_and_fortran(make):
    x = rng(9).standard_normal((3, 7, 6))
    np.testing.assert_array_equal(F.rope(make(x)), F.rope(x))
    np.testing.assert_array_equal(F.rope_backward(make(x)), F.rope_backward(x))


@pytest.mark.parametrize("shape", [(0, 5, 4), (2, 0, 4), (3, 5, 0)])
def test_empty(shape):
    for fn in (F.rope, F.rope_backward):
        y = fn(np.zeros(shape, np.float32))
        assert y.shape == shape and y.dtype == np.float32


def test_large_values_and_positions():
    x = np.full((2, 4, 8), 1e30)
    y = F.rope(x, offset=10**6)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref_rope(x, offset=10**6), rtol=1e-9)


def test_parallel_path_matches_serial():
    x = rng(10).standard_normal((8, 4, 128, 64)).astype(np.float32)
    y = F.rope(x)
    tc.set_num_threads(1)
    try:
        y1 = F.rope(x)
    finally:
        tc.set_num_threads(2)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_allclose(y[:1, :1], ref_rope(x[:1, :1]), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ bad input

def test_bad_input():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="even head size"):
        F.rope(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="x must have at least 2"):
        F.rope(np.zeros(4))
    with pytest.raises(TypeError, match="x must be a float32 or float64"):
        F.rope(np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match="grad_output must be a float32 or float64"):
        F.rope_backward(np.zeros((2, 4), np.float16))
    with pytest.raises(ValueError, match="base"):
        F.rope(x, base=0.0)
    with pytest.raises(ValueError, match="base"):
        F.rope(x, base=float("inf"))
    with pytest.raises(TypeError, match="base"):
        F.rope(x, base="big")
    with pytest.raises(TypeError, match="offset"):
        F.rope(x, offset=1.5)
    with pytest.raises(ValueError, match="seq_axis"):
        F.rope(x, seq_axis=-1)
    with pytest.raises(ValueError, match="seq_axis"):
        F.rope(x, seq_axis=-4)
    with pytest.raises(TypeError, match="seq_axis"):
        F.rope(x, seq_axis=True)
    with pytest.raises(ValueError, match="head_size"):
        F.rope_table(3, 5)
    with pytest.raises(ValueError, match="length"):
        F.rope_table(-1, 4)
    with pytest.raises(TypeError, match="dtype"):
        F.rope_table(3, 4, dtype=np.int32)


def test_raw_bad_arguments_raise():
    x = np.zeros((1, 3, 1, 4))
    c, s = F.rope_table(3, 4)
    with pytest.raises(ValueError, match="cos"):
        tc._C.rope_forward(x, c[:2], s, False)
    with pytest.raises(ValueError, match="sin"):
        tc._C.rope_forward(x, c, s[:, :1], False)
    with pytest.raises(TypeError, match="cos"):
        tc._C.rope_forward(x, c.astype(np.float32), s, False)
    with pytest.raises(ValueError, match="grad_output must be 4-dimensional"):
        tc._C.rope_backward(x[0], c, s, False)
    with pytest.raises(ValueError, match="even head size"):
        tc._C.rope_forward(np.zeros((1, 3, 1, 5)), c, s, False)
    with pytest.raises(ValueError, match="head_size"):
        tc._C.rope_table(3, -2, 10000.0, 0, np.float64)
    with pytest.raises(TypeError):
        tc._C.rope_forward(x, c, s)
