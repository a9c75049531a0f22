"""Grouped-query and multi-query attention in the C kernels: k and v with NKV heads for q's
NH (NKV divides NH), query head h reading kv head h // (NH // NKV); the backward sums the
gradients of the query heads sharing a kv head. Tiled and reference kernels against a NumPy
reference (repeat the kv heads, then plain attention), float64 finite differences, a torch
twin (repeat_interleave of k and v), awkward shapes, masks and dropout, the strided
(token-major) entry points, the KV-cache decode step, bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, non_contiguous, rng, to_torch, tol

F = tc.functional
IMPLS = ["tiled", "reference"]


def qkv(B, NH, NKV, T, S, DK, DV, dtype=np.float64, seed=0):
    r = rng(seed)
    q = r.standard_normal((B, NH, T, DK)).astype(dtype)
    k = r.standard_normal((B, NKV, S, DK)).astype(dtype)
    v = r.standard_normal((B, NKV, S, DV)).astype(dtype)
    return q, k, v


def ref_attention(q, k, v, causal):
    """NumPy, float64: every query head against its group's kv head (repeat), then
    softmax(q k^T / sqrt(DK)) v with top-left causal masking."""
    G = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, G, axis=1).astype(np.float64), np.repeat(v, G, axis=1).astype(np.float64)
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        T, S = s.shape[-2:]
        s = np.where(np.arange(S)[None, :] <= np.arange(T)[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


SHAPES = [  # B, NH, NKV, T, S, DK, DV
    (2, 4, 2, 7, 7, 5, 5),
    (1, 6, 1, 130, 130, 16, 16),  # multi-query, several key tiles, few (kv) heads
    (2, 8, 2, 100, 100, 8, 8),
    (1, 2, 1, 1, 1, 3, 3),        # T = 1
    (3, 4, 4, 9, 9, 4, 4),        # NKV = NH: plain multi-head attention
    (1, 4, 2, 200, 200, 16, 16),
    (2, 6, 3, 11, 17, 7, 3),      # cross-attention shapes, DK != DV, odd sizes
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy(impl, dtype, shape):
    q, k, v = qkv(*shape, dtype=dtype)
    causal = shape[3] == shape[4]
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, implementation=impl)
    assert out.shape == q.shape[:3] + (v.shape[-1],) and out.dtype == dtype
    np.testing.assert_allclose(out, ref_attention(q, k, v, causal), **tol(dtype))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("NKV", [1, 2])
def test_backward_finite_differences(impl, causal, NKV):
    q, k, v = qkv(2, 4, NKV, 5, 5, 3, 2, seed=1)
    check_grads(
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, implementation=impl),
        lambda G: dict(zip("qkv", F.scaled_dot_product_attention_backward(
            G, q, k, v, is_causal=causal, implementation=impl))),
        {"q": q, "k": k, "v": v})


def torch_twin(torch, q, k, v, G, causal, dtype):
    tq, tk, tv = (to_torch(torch, a) for a in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        tq, tk.repeat_interleave(rep, 1), tv.repeat_interleave(rep, 1), is_causal=causal)
    (out * to_torch(torch, G, grad=False)).sum().backward()
    return out.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_repeat_interleave(torch, threads, impl, dtype, shape):
    q, k, v = qkv(*shape, dtype=dtype, seed=2)
    causal = shape[3] == shape[4]
    G = rng(3).standard_normal(q.shape[:3] + (v.shape[-1],)).astype(dtype)
    old = tc.get_num_threads()
    tc.set_num_threads(threads)
    try:
        out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=causal, return_lse=True,
                                                  implementation=impl)
        grads = F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=causal, out=out,
                                                        lse=lse, implementation=impl)
    finally:
        tc.set_num_threads(old)
    want = torch_twin(torch, q, k, v, G, causal, dtype)
    for got, w in zip((out,) + grads, want):
        assert got.shape == w.shape and got.dtype == dtype
        np.testing.assert_allclose(got, w, **tol(dtype))


def test_tiled_equals_reference_and_is_bitwise_reproducible():
    q, k, v = qkv(2, 6, 2, 150, 150, 8, 8, seed=4)
    G = rng(5).standard_normal(q.shape)
    a = F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=True)
    b = F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=True,
                                                implementation="reference")
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10)
    again = F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=True)
    for x, y in zip(a, again):
        np.testing.assert_array_equal(x, y)


def test_grouped_equals_multi_head_with_repeated_kv_and_summed_grads():
    """GQA is MHA over repeated k, v; its dk, dv are the repeated call's summed per group."""
    q, k, v = qkv(2, 6, 3, 20, 20, 4, 4, seed=6)
    G = rng(7).standard_normal(q.shape)
    kr, vr = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, kr, vr, is_causal=True),
                               rtol=1e-13, atol=1e-13)
    dq, dk, dv = F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=True)
    rq, rk, rv = F.scaled_dot_product_attention_backward(G, q, kr, vr, is_causal=True)
    np.testing.assert_allclose(dq, rq, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dk, rk.reshape(2, 3, 2, 20, 4).sum(2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dv, rv.reshape(2, 3, 2, 20, 4).sum(2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_masks_and_dropout(impl):
    """key padding, a boolean mask per query head and dropout: as over repeated k, v."""
    q, k, v = qkv(2, 4, 2, 6, 6, 3, 3, seed=8)
    kp = np.ones((2, 6), bool)
    kp[1, :2] = False
    keep = rng(9).random((2, 4, 6, 6)) > 0.3
    kw = dict(attn_mask=keep, key_padding_mask=kp, dropout_p=0.25, seed=11,
              implementation=impl)
    kr, vr = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v, **kw),
                               F.scaled_dot_product_attention(q, kr, vr, **kw),
                               rtol=1e-13, atol=1e-13)
    G = rng(10).standard_normal(q.shape)
    check_grads(lambda: F.scaled_dot_product_attention(q, k, v, **kw),
                lambda g: dict(zip("qkv", F.scaled_dot_product_attention_backward(
                    g, q, k, v, **kw))), {"q": q, "k": k, "v": v})
    del G


def test_strided_entry_points_write_and_accumulate():
    """The token-major in-place calls the model drivers use: (B, L, C + 2 NKV HS) buffer."""
    B, L, NH, NKV, HS = 2, 9, 4, 2, 3
    C, KC = NH * HS, NKV * HS
    buf = rng(12).standard_normal((B, L, C + 2 * KC))
    q = buf[:, :, :C].reshape(B, L, NH, HS).transpose(0, 2, 1, 3)
    k = buf[:, :, C:C + KC].reshape(B, L, NKV, HS).transpose(0, 2, 1, 3)
    v = buf[:, :, C + KC:].reshape(B, L, NKV, HS).transpose(0, 2, 1, 3)
    out = np.zeros((B, NH, L, HS))
    lse = tc._C.attention_forward_strided(q, k, v, out, None, None, None, HS ** -0.5, 1, 0.0, 0)
    want, wlse = F.scaled_dot_product_attention(np.ascontiguousarray(q), np.ascontiguousarray(k),
                                                np.ascontiguousarray(v), is_causal=True,
                                                return_lse=True, scale=HS ** -0.5)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(lse, wlse)
    G = rng(13).standard_normal(out.shape)
    dbuf = np.full((B, L, C + 2 * KC), 7.0)
    dq = dbuf[:, :, :C].reshape(B, L, NH, HS).transpose(0, 2, 1, 3)
    dk = dbuf[:, :, C:C + KC].reshape(B, L, NKV, HS).transpose(0, 2, 1, 3)
    dv = dbuf[:, :, C + KC:].reshape(B, L, NKV, HS).transpose(0, 2, 1, 3)
    tc._C.attention_backward_strided(dq, dk, dv, G, q, k, v, out, lse, None, None, None,
                                     HS ** -0.5, 1, 0.0, 0, 0b111)
    wq, wk, wv = F.scaled_dot_product_attention_backward(
        G, np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v),
        is_causal=True, scale=HS ** -0.5)
    np.testing.assert_array_equal(dq, wq)
    np.testing.assert_array_equal(dk, wk)
    np.testing.assert_array_equal(dv, wv)
    tc._C.attention_backward_strided(dq, dk, dv, G, q, k, v, out, lse, None, None, None,
                                     HS ** -0.5, 1, 0.0, 0, 0)  # accumulate: twice
    np.testing.assert_allclose(dk, 2 * wk, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(dv, 2 * wv, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_with_a_grouped_cache_equals_the_full_forward(dtype):
    B, NH, NKV, T, D = 2, 6, 2, 11, 5
    q, k, v = qkv(B, NH, NKV, T, T, D, D, dtype=dtype, seed=14)
    kc = np.zeros((B, NKV, T, D), dtype)  # the cache holds NKV heads, not NH
    vc = np.zeros((B, NKV, T, D), dtype)
    pos, outs = 0, []
    for tn in (3, 1, 4, 1, 2):
        sl = slice(pos, pos + tn)
        outs.append(F.attention_decode(q[:, :, sl], k[:, :, sl], v[:, :, sl], kc, vc, pos))
        pos += tn
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(np.concatenate(outs, axis=2), full, **tol(dtype))
    np.testing.assert_array_equal(kc, k)
    np.testing.assert_array_equal(vc, v)


def test_any_memory_layout():
    q, k, v = qkv(2, 4, 2, 8, 8, 4, 4, seed=15)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = F.scaled_dot_product_attention(non_contiguous(q), non_contiguous(k),
                                         non_contiguous(v), is_causal=True)
    np.testing.assert_array_equal(got, want)


def test_bad_kv_heads_name_the_argument():
    q = np.zeros((1, 4, 3, 2))
    with pytest.raises(ValueError, match="k must have the leading dimensions"):
        F.scaled_dot_product_attention(q, np.zeros((1, 3, 3, 2)), np.zeros((1, 3, 3, 2)))
    with pytest.raises(ValueError, match="v must have the leading dimensions of k"):
        F.scaled_dot_product_attention(q, np.zeros((1, 2, 3, 2)), np.zeros((1, 4, 3, 2)))
    with pytest.raises(ValueError, match="k must have NH = 4"):
        tc._C.attention_forward(q, np.zeros((1, 3, 3, 2)), np.zeros((1, 3, 3, 2)), None, None,
                                None, 1.0, 0, 0.0, None)
    with pytest.raises(ValueError, match="k must have NH = 4"):
        tc._C.attention_forward_ref(q, np.zeros((1, 0, 3, 2)), np.zeros((1, 0, 3, 2)), None,
                                    None, None, 1.0, 0, 0.0, 0)
    with pytest.raises(ValueError, match="k_cache"):
        F.attention_decode(q[:, :, :1], np.zeros((1, 2, 1, 2)), np.zeros((1, 2, 1, 2)),
                           np.zeros((1, 4, 5, 2)), np.zeros((1, 4, 5, 2)), 0)
