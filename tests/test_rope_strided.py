"""RoPE rotated in place at an array's own strides (_C.rope_inplace_strided, C:
tc_rope_inplace_strided): the q and k slices of a token-major (B, T, 3C) buffer, as the GPT
fast path uses it, checked BITWISE against rope_forward / rope_backward on contiguous copies
(which test_rope.py checks against a NumPy reference, finite differences and PyTorch)."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng

C_ = tc._C


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("B,L,NH,HS", [(2, 17, 3, 8), (1, 1, 1, 2), (3, 40, 2, 14), (2, 300, 6, 64)])
def test_token_major_slices_match_contiguous(dtype, interleaved, B, L, NH, HS):
    C = NH * HS
    buf = rng(B + L).standard_normal((B, L, 3 * C)).astype(dtype)
    cos, sin = C_.rope_table(L, HS, 10000.0, 0, dtype)
    views = [buf[:, :, s * C:(s + 1) * C].reshape(B, L, NH, HS) for s in range(3)]
    before = [v.copy() for v in views]
    for inverse in (0, 1):
        work = buf.copy()
        wv = [work[:, :, s * C:(s + 1) * C].reshape(B, L, NH, HS) for s in range(3)]
        for s in (0, 1):
            C_.rope_inplace_strided(wv[s], cos, sin, interleaved, inverse)
            if inverse:
                want = C_.rope_backward(before[s], cos, sin, interleaved)
            else:
                want = C_.rope_forward(before[s], cos, sin, interleaved)
            assert np.array_equal(wv[s], want)
        assert np.array_equal(wv[2], before[2])  # v untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_head_major_view_and_round_trip(dtype):
    # a (B, NH, L, HS) head-major array seen as (B, L, NH, HS) (transposed view)
    B, NH, L, HS = 2, 3, 11, 6
    x = rng(3).standard_normal((B, NH, L, HS)).astype(dtype)
    cos, sin = C_.rope_table(L, HS, 500.0, 0, dtype)
    want = C_.rope_forward(np.ascontiguousarray(x.transpose(0, 2, 1, 3)), cos, sin, False)
    y = x.copy()
    C_.rope_inplace_strided(y.transpose(0, 2, 1, 3), cos, sin, False, False)
    assert np.array_equal(y.transpose(0, 2, 1, 3), want)
    C_.rope_inplace_strided(y.transpose(0, 2, 1, 3), cos, sin, False, True)
    np.testing.assert_allclose(y, x, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_parallel_rows_match_one_thread():
    B, L, NH, HS = 4, 256, 6, 64
    C = NH * HS
    buf = rng(9).standard_normal((B, L, 3 * C)).astype(np.float32)
    cos, sin = C_.rope_table(L, HS, 10000.0, 0, np.float32)
    n = tc.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            tc.set_num_threads(threads)
            w = buf.copy()
            C_.rope_inplace_strided(w[:, :, :C].reshape(B, L, NH, HS), cos, sin, False, False)
            outs.append(w)
    finally:
        tc.set_num_threads(n)
    assert np.array_equal(outs[0], outs[1])


def test_empty_and_bad_arguments():
    cos, sin = C_.rope_table(4, 8, 10000.0, 0, np.float32)
    C_.rope_inplace_strided(np.zeros((0, 4, 2, 8), np.float32), cos, sin, False, False)
    x = np.zeros((1, 4, 2, 8), np.float32)
    with pytest.raises(TypeError, match="x"):
        C_.rope_inplace_strided([[[[0.0]]]], cos, sin, False, False)
    with pytest.raises(TypeError, match="cos"):
        C_.rope_inplace_strided(x, cos.astype(np.float64), sin, False, False)
    with pytest.raises(ValueError, match="x"):
        C_.rope_inplace_strided(np.zeros((1, 4, 2, 7), np.float32), cos, sin, False, False)
    with pytest.raises(ValueError, match="x"):
        C_.rope_inplace_strided(np.zeros((4, 2, 8), np.float32), cos, sin, False, False)
    with pytest.raises(ValueError, match="x"):
        C_.rope_inplace_strided(np.zeros((1, 4, 2, 16), np.float32)[..., ::2], cos, sin, False,
                                False)
    ro = np.zeros((1, 4, 2, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="x"):
        C_.rope_inplace_strided(ro, cos, sin, False, False)
    with pytest.raises(ValueError, match="cos"):
        C_.rope_inplace_strided(np.zeros((1, 5, 2, 8), np.float32), cos, sin, False, False)
    with pytest.raises(TypeError):
        C_.rope_inplace_strided(x, cos, sin)
