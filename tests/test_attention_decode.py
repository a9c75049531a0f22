"""KV-cache decoding: appending keys/values into a preallocated cache and attending the new
queries to everything cached equals the full causal forward, token by token or in chunks;
the cache is written in place; bad input raises."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng, tol

F = tc.functional


def seq(lead, T, DK, DV, dtype, seed=0):
    r = rng(seed)
    return tuple(r.standard_normal(lead + (T, d)).astype(dtype) for d in (DK, DK, DV))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
@pytest.mark.parametrize("T,DK,DV", [(1, 4, 4), (13, 8, 5), (130, 64, 64)])
def test_token_by_token_equals_full_causal_forward(dtype, lead, T, DK, DV):
    q, k, v = seq(lead, T, DK, DV, dtype, seed=T)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    Smax = T + 3
    kc, vc = np.zeros(lead + (Smax, DK), dtype), np.zeros(lead + (Smax, DV), dtype)
    rows = []
    for t in range(T):
        sl = (Ellipsis, slice(t, t + 1), slice(None))
        out = F.attention_decode(q[sl], k[sl], v[sl], kc, vc, t)
        assert out.shape == lead + (1, DV) and out.dtype == dtype
        rows.append(out)
    np.testing.assert_allclose(np.concatenate(rows, axis=-2), full, **tol(dtype))
    # the cache now holds the sequence (in place), the tail untouched
    np.testing.assert_array_equal(kc[..., :T, :], k)
    np.testing.assert_array_equal(vc[..., :T, :], v)
    assert np.all(kc[..., T:, :] == 0) and np.all(vc[..., T:, :] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prefill_then_chunks(dtype):
    lead, T, D = (2, 3), 100, 16
    q, k, v = seq(lead, T, D, D, dtype, seed=1)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    kc, vc = np.zeros(lead + (128, D), dtype), np.zeros(lead + (128, D), dtype)
    got, pos = [], 0
    for n in (37, 1, 1, 20, 41):  # a prompt of 37 positions, then single tokens and chunks
        sl = (Ellipsis, slice(pos, pos + n), slice(None))
        got.append(F.attention_decode(q[sl], k[sl], v[sl], kc, vc, pos))
        pos += n
    np.testing.assert_allclose(np.concatenate(got, axis=-2), full, **tol(dtype))
    # a chunk's rows are bottom-right causal attention over the cache
    sl = (Ellipsis, slice(80, 100), slice(None))
    want = F.scaled_dot_product_attention(q[sl], kc[..., :100, :], vc[..., :100, :],
                                          is_causal="bottom_right")
    np.testing.assert_allclose(got[-1][..., -20:, :], want, **tol(dtype))


def test_decode_does_not_read_the_past_queries_or_recompute():
    # positions already in the cache are used as they are: garbage in the cache's past
    # changes the result (nothing is recomputed), garbage beyond pos + TN does not
    q, k, v = seq((2,), 10, 4, 4, np.float64, seed=2)
    kc, vc = np.zeros((2, 16, 4)), np.zeros((2, 16, 4))
    F.attention_decode(q[:, :9], k[:, :9], v[:, :9], kc, vc, 0)
    a = F.attention_decode(q[:, 9:], k[:, 9:], v[:, 9:], kc.copy(), vc.copy(), 9)
    kc2, vc2 = kc.copy(), vc.copy()
    kc2[:, 10:], vc2[:, 10:] = 1e9, np.nan
    np.testing.assert_array_equal(F.attention_decode(q[:, 9:], k[:, 9:], v[:, 9:], kc2, vc2, 9), a)
    vc3 = vc.copy()
    vc3[:, 3] += 1.0
    assert not np.allclose(F.attention_decode(q[:, 9:], k[:, 9:], v[:, 9:], kc.copy(), vc3, 9), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_left_padded_prompts_with_key_padding(dtype):
    # batch of 2 prompts, the second left-padded by 3: padding positions are never attended
    lead, D, P = (2, 2), 8, 6
    q, k, v = seq(lead, P + 4, D, D, dtype, seed=3)
    kpm = np.ones((2, 16), bool)
    kpm[1, :3] = False
    kc, vc = np.zeros(lead + (16, D), dtype), np.zeros(lead + (16, D), dtype)
    outs = [F.attention_decode(q[..., :P, :], k[..., :P, :], v[..., :P, :], kc, vc, 0,
                               key_padding_mask=kpm)]
    for t in range(P, P + 4):
        sl = (Ellipsis, slice(t, t + 1), slice(None))
        outs.append(F.attention_decode(q[sl], k[sl], v[sl], kc, vc, t,
                                       key_padding_mask=kpm[:, :t + 1]))
    got = np.concatenate(outs, axis=-2)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, key_padding_mask=kpm[:, :P + 4])
    np.testing.assert_allclose(got, want, **tol(dtype))
    assert np.all(got[1, :, :3] == 0.0)  # padding queries see only padding: zeros


def test_decode_matches_torch(torch):
    q, k, v = seq((2, 3), 24, 8, 8, np.float64, seed=4)
    kc, vc = np.zeros((2, 3, 32, 8)), np.zeros((2, 3, 32, 8))
    F.attention_decode(q[..., :20, :], k[..., :20, :], v[..., :20, :], kc, vc, 0)
    out = F.attention_decode(q[..., 20:, :], k[..., 20:, :], v[..., 20:, :], kc, vc, 20)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    np.testing.assert_allclose(out, want.numpy()[..., 20:, :], rtol=1e-10, atol=1e-10)


def test_empty_batch_and_empty_step():
    kc, vc = np.zeros((0, 2, 8, 4)), np.zeros((0, 2, 8, 4))
    q = np.zeros((0, 2, 1, 4))
    assert F.attention_decode(q, q, q, kc, vc, 0).shape == (0, 2, 1, 4)
    kc, vc = np.zeros((2, 8, 4)), np.zeros((2, 8, 4))
    e = np.zeros((2, 0, 4))
    assert F.attention_decode(e, e, e, kc, vc, 8).shape == (2, 0, 4)


def test_bad_input_names_the_argument():
    q, k, v = seq((2,), 1, 4, 3, np.float64)
    kc, vc = np.zeros((2, 8, 4)), np.zeros((2, 8, 3))
    with pytest.raises(ValueError, match="pos"):
        F.attention_decode(q, k, v, kc, vc, 8)
    with pytest.raises(ValueError, match="pos"):
        F.attention_decode(q, k, v, kc, vc, -1)
    with pytest.raises(TypeError, match="pos"):
        F.attention_decode(q, k, v, kc, vc, 1.0)
    with pytest.raises(TypeError, match="k_cache"):
        F.attention_decode(q, k, v, kc.astype(np.float32), vc, 0)
    with pytest.raises(TypeError, match="k_cache"):
        F.attention_decode(q, k, v, kc.tolist(), vc, 0)
    with pytest.raises(ValueError, match="k_cache"):
        F.attention_decode(q, k, v, np.zeros((2, 8, 5)), vc, 0)
    with pytest.raises(ValueError, match="v_cache"):
        F.attention_decode(q, k, v, kc, np.zeros((2, 7, 3)), 0)
    with pytest.raises(ValueError, match="k_cache"):
        F.attention_decode(q, k, v, np.zeros((2, 4, 8)).transpose(0, 2, 1), vc, 0)
    ro = np.zeros((2, 8, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="k_cache"):
        F.attention_decode(q, k, v, ro, vc, 0)
    with pytest.raises(ValueError, match="k"):
        F.attention_decode(q, np.zeros((2, 2, 4)), v, kc, vc, 0)
    with pytest.raises(ValueError, match="key_padding_mask"):
        F.attention_decode(q, k, v, kc, vc, 2, key_padding_mask=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match="key_padding_mask"):
        F.attention_decode(q, k, v, kc, vc, 2, key_padding_mask=np.ones((2, 3)))
    # the raw binding raises too
    C = tc._C
    q4, kc4, vc4 = q[:, None], kc[:, None], vc[:, None]
    with pytest.raises(ValueError, match="pos"):
        C.attention_decode(q4, q4, v[:, None], kc4, vc4, 99, None, 0.5)
    with pytest.raises(ValueError, match="k_cache"):
        C.attention_decode(q4, q4, v[:, None], np.ascontiguousarray(kc4[:, :, :, :3]), vc4, 0,
                           None, 0.5)
    with pytest.raises(TypeError, match="k_cache"):
        C.attention_decode(q4, q4, v[:, None], None, vc4, 0, None, 0.5)
    with pytest.raises(ValueError, match="key_padding_mask"):
        C.attention_decode(q4, q4, v[:, None], kc4, vc4, 0, np.ones((2, 9), bool), 0.5)
