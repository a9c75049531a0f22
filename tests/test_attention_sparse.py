"""Block-sparse attention (functional.sparse_layout / sparse_mask, the ``sparse=`` option of
scaled_dot_product_attention and its backward, attention_weights and attention_decode).

The pattern's mask is rebuilt here in NumPy from the documented rule (not from the code under
test); the sparse kernel must equal dense attention under that boolean mask (the tiled and the
materialised reference kernels, float64 at 1e-10, float32 at 1e-5, forward and backward, with
causal and key-padding masks), central differences in float64, and torch's SDPA with the same
mask. Awkward shapes: T = 1, T not a multiple of the block or the tiles, odd head sizes,
non-contiguous inputs; bad patterns are errors naming the argument."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, non_contiguous, rng, to_torch

F = tc.functional
sdpa = F.scaled_dot_product_attention
sdpa_bwd = F.scaled_dot_product_attention_backward
TOLS = {np.float64: 1e-10, np.float32: 1e-5}


def np_pattern(T, S, block, window, stride, glob, offset=0):
    """(T, S) bool from the documented rule: query position p = i + offset in block
    qb = p // block sees key j in kb = j // block iff |qb - kb| < window, or stride > 0 and
    kb % stride == stride - 1, or kb < glob or qb < glob (positions < 0 see nothing)."""
    m = np.zeros((T, S), bool)
    for i in range(T):
        p = i + offset
        if p < 0:
            continue
        qb = p // block
        for j in range(S):
            kb = j // block
            m[i, j] = (abs(qb - kb) < window or (stride > 0 and kb % stride == stride - 1)
                       or kb < glob or qb < glob)
    return m


PATTERNS = [  # (block, window, stride, global)
    (1, 3, 4, 0),    # the seed's example: every 4th token beyond a window
    (4, 2, 3, 1),
    (16, 1, 2, 0),
    (7, 2, 0, 0),    # a block that divides nothing
    (32, 2, 3, 1),   # blocks that straddle the kernel's tiles
    (5, 1, 0, 2),
]


def qkv(dtype, lead, T, S, DK, DV, seed=0):
    r = rng(seed)
    return (r.standard_normal(lead + (T, DK)).astype(dtype),
            r.standard_normal(lead + (S, DK)).astype(dtype),
            r.standard_normal(lead + (S, DV)).astype(dtype))


# ------------------------------------------------------------------ the layout and the mask

@pytest.mark.parametrize("pat", PATTERNS)
@pytest.mark.parametrize("T,S,causal,off", [(37, 37, False, 0), (50, 50, True, 0),
                                            (20, 45, "bottom_right", 25),
                                            (45, 20, "bottom_right", -25), (9, 30, True, 0)])
def test_sparse_mask_is_the_documented_rule(pat, T, S, causal, off):
    L = F.sparse_layout(*pat)
    want = np_pattern(T, S, *pat, offset=off)
    np.testing.assert_array_equal(F.sparse_mask(L, T, S, is_causal=causal), want)


@pytest.mark.parametrize("pat", PATTERNS)
def test_block_layout(pat):
    L = F.sparse_layout(*pat)
    b = pat[0]
    nb = 11
    blocks = L.blocks(nb * b - (b > 1))  # a partial last block counts
    assert blocks.shape == (nb, nb) and blocks.dtype == np.bool_
    np.testing.assert_array_equal(blocks, np_pattern(nb, nb, 1, *pat[1:]))
    # the element mask is the block layout expanded
    m = F.sparse_mask(L, nb * b, nb * b)
    np.testing.assert_array_equal(m, np.kron(blocks, np.ones((b, b), bool)).astype(bool))


def test_keys_per_query_grows_as_sqrt_with_the_right_pattern():
    """window and stride ~ sqrt(T)/block: a query sees O(sqrt(T)) keys (the n sqrt(n)
    argument of the README); with a fixed stride it sees O(T)."""
    ratios = []
    for T in (256, 1024, 4096):
        r = int(math.isqrt(T))
        L = F.sparse_layout(block=1, window=r, stride=r)
        ratios.append(L.keys_per_query(T) / math.sqrt(T))
    assert max(ratios) / min(ratios) < 1.3, ratios
    fixed = [F.sparse_layout(block=1, window=16, stride=4).keys_per_query(T) / T
             for T in (256, 1024)]
    assert abs(fixed[0] - fixed[1]) < 0.05 and fixed[1] > 0.1, fixed


# ------------------------------------------------------------------ parity with the dense mask

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pat", PATTERNS)
@pytest.mark.parametrize("T,causal,padded", [(1, True, False), (29, True, False),
                                             (150, True, True), (150, False, False),
                                             (203, False, True)])
def test_forward_backward_equal_dense_with_the_mask(dtype, pat, T, causal, padded):
    B, NH, DK, DV = 2, 3, 13, 11
    q, k, v = qkv(dtype, (B, NH), T, T, DK, DV, seed=T)
    L = F.sparse_layout(*pat)
    kpm = None
    if padded:
        kpm = np.ones((B, T), bool)
        kpm[0, T // 3:] = False
        kpm[1, :T // 5] = False
    keep = np_pattern(T, T, *pat)
    G = rng(1).standard_normal((B, NH, T, DV)).astype(dtype)
    want = sdpa(q, k, v, attn_mask=keep, key_padding_mask=kpm, is_causal=causal,
                implementation="reference", return_lse=True)
    gwant = sdpa_bwd(G, q, k, v, attn_mask=keep, key_padding_mask=kpm, is_causal=causal,
                     implementation="reference")
    for impl in ("tiled", "reference"):
        got = sdpa(q, k, v, key_padding_mask=kpm, is_causal=causal, sparse=L,
                   implementation=impl, return_lse=True)
        assert got[0].dtype == dtype
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=TOLS[dtype])
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=TOLS[dtype] * 10)
        ggot = sdpa_bwd(G, q, k, v, key_padding_mask=kpm, is_causal=causal, sparse=L,
                        implementation=impl)
        for a, b in zip(ggot, gwant):
            np.testing.assert_allclose(a, b, rtol=0, atol=TOLS[dtype] * 10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_attention_bottom_right_and_T_ne_S(dtype):
    T, S = 40, 130
    q, k, v = qkv(dtype, (2,), T, S, 8, 8)
    L = F.sparse_layout(8, 2, 3, 1)
    for causal, off in ((False, 0), ("bottom_right", S - T), (True, 0)):
        keep = np_pattern(T, S, 8, 2, 3, 1, offset=off)
        got = sdpa(q, k, v, is_causal=causal, sparse=L)
        want = sdpa(q, k, v, attn_mask=keep, is_causal=causal, implementation="reference")
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLS[dtype])


def test_masked_keys_get_exactly_zero_gradient_and_weights_match():
    T = 64
    q, k, v = qkv(np.float64, (1, 2), T, T, 6, 6)
    L = F.sparse_layout(8, 1, 0, 0)  # block-diagonal: each block sees itself only
    out, lse, w = sdpa(q, k, v, sparse=L, return_lse=True, return_weights=True)
    keep = np_pattern(T, T, 8, 1, 0, 0)
    assert np.all(w[..., ~keep] == 0)
    np.testing.assert_allclose(w.sum(-1), 1, atol=1e-12)
    np.testing.assert_allclose(F.attention_weights(q, k, lse, sparse=L), w, atol=0)
    # a key in block 0 has no gradient through queries of other blocks
    G = np.zeros((1, 2, T, 6))
    G[..., 8:, :] = 1.0
    dq, dk, dv = sdpa_bwd(G, q, k, v, sparse=L)
    assert np.all(dk[..., :8, :] == 0) and np.all(dv[..., :8, :] == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pat", [(6, 2, 4, 0), (16, 1, 3, 0)])
def test_dropout_matches_dense_with_the_mask(dtype, pat):
    # (the tiles start mid-way through rows a strip sees: the dropout stream is indexed from
    # the first key a strip computes, in the forward and the backward)
    T = 150
    q, k, v = qkv(dtype, (2, 2), T, T, 8, 8)
    L = F.sparse_layout(*pat)
    keep = np_pattern(T, T, *pat)
    kw = dict(is_causal=True, dropout_p=0.3, seed=7)
    tol = TOLS[dtype]
    np.testing.assert_allclose(sdpa(q, k, v, sparse=L, **kw),
                               sdpa(q, k, v, attn_mask=keep, **kw), atol=tol)
    G = rng(2).standard_normal((2, 2, T, 8)).astype(dtype)
    for a, b in zip(sdpa_bwd(G, q, k, v, sparse=L, **kw),
                    sdpa_bwd(G, q, k, v, attn_mask=keep, **kw)):
        np.testing.assert_allclose(a, b, atol=tol * 10)


def test_finite_differences_float64():
    T, D = 11, 5
    q, k, v = qkv(np.float64, (2,), T, T, D, D, seed=3)
    L = F.sparse_layout(3, 1, 2, 0)
    kpm = np.ones((2, T), bool)
    kpm[1, -2:] = False
    arrays = {"q": q, "k": k, "v": v}
    kw = dict(key_padding_mask=kpm, is_causal=True, sparse=L)

    def backward(G):
        dq, dk, dv = sdpa_bwd(G, q, k, v, **kw)
        return {"q": dq, "k": dk, "v": dv}

    check_grads(lambda: sdpa(q, k, v, **kw), backward, arrays)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_parity_with_the_boolean_mask(torch, dtype):
    T, D = 77, 12
    q, k, v = qkv(dtype, (2, 2), T, T, D, D, seed=5)
    L = F.sparse_layout(8, 2, 3, 1)
    keep = np_pattern(T, T, 8, 2, 3, 1) & np.tri(T, dtype=bool)
    out = sdpa(q, k, v, is_causal=True, sparse=L)
    G = rng(4).standard_normal(out.shape).astype(dtype)
    dq, dk, dv = sdpa_bwd(G, q, k, v, is_causal=True, sparse=L)
    tq, tk, tv = (to_torch(torch, a) for a in (q, k, v))
    ty = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                          attn_mask=torch.from_numpy(keep))
    (ty * torch.from_numpy(G)).sum().backward()
    t = TOLS[dtype]
    np.testing.assert_allclose(out, ty.detach().numpy(), atol=t)
    for a, b in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(a, b.grad.numpy(), atol=t * 10)


def test_non_contiguous_inputs():
    T = 60
    q, k, v = qkv(np.float32, (2, 2), T, T, 10, 10)
    L = F.sparse_layout(4, 2, 5, 0)
    want = sdpa(q, k, v, is_causal=True, sparse=L)
    got = sdpa(non_contiguous(q), non_contiguous(k), non_contiguous(v), is_causal=True,
               sparse=L)
    np.testing.assert_array_equal(got, want)
    got_f = sdpa(np.asfortranarray(q), k, v, is_causal=True, sparse=L)
    np.testing.assert_array_equal(got_f, want)


def test_strided_bindings_take_the_pattern():
    """The model drivers' entry (_C.attention_forward_strided / _backward_strided)."""
    T, NH, HS = 50, 2, 8
    C = NH * HS
    r = rng(9)
    qkv_ = r.standard_normal((2, T, 3 * C))
    view = lambda a, o: a[:, :, o:o + C].reshape(2, T, NH, HS).transpose(0, 2, 1, 3)
    q, k, v = view(qkv_, 0), view(qkv_, C), view(qkv_, 2 * C)
    sp = F.sparse_layout(4, 2, 3, 0)
    out = np.zeros((2, NH, T, HS))
    lse = tc._C.attention_forward_strided(q, k, v, out, None, None, None, HS ** -0.5, 1, 0.0,
                                          0, tuple(sp))
    want = sdpa(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v),
                is_causal=True, attn_mask=np_pattern(T, T, 4, 2, 3, 0),
                implementation="reference")
    np.testing.assert_allclose(out, want, atol=1e-12)
    G = r.standard_normal(out.shape)
    dq, dk, dv = (np.zeros((2, NH, T, HS)) for _ in range(3))
    tc._C.attention_backward_strided(dq, dk, dv, G, q, k, v, out, lse, None, None, None,
                                     HS ** -0.5, 1, 0.0, 0, 7, tuple(sp))
    gw = sdpa_bwd(G, *(np.ascontiguousarray(a) for a in (q, k, v)), is_causal=True,
                  attn_mask=np_pattern(T, T, 4, 2, 3, 0))
    for a, b in zip((dq, dk, dv), gw):
        np.testing.assert_allclose(a, b, atol=1e-11)


# ------------------------------------------------------------------ decoding

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_decode_attends_to_the_training_key_set(dtype):
    T, D, Smax = 70, 8, 80
    q, k, v = qkv(dtype, (2, 2), T, T, D, D, seed=11)
    L = F.sparse_layout(4, 2, 3, 1)
    full = sdpa(q, k, v, is_causal=True, sparse=L)
    kc = np.zeros((2, 2, Smax, D), dtype)
    vc = np.zeros((2, 2, Smax, D), dtype)
    outs, pos = [], 0
    for n in (5, 1, 1, 13, 1, 49):  # a prompt, single tokens, chunks
        sl = slice(pos, pos + n)
        outs.append(F.attention_decode(q[..., sl, :], k[..., sl, :], v[..., sl, :], kc, vc, pos,
                                       sparse=L))
        pos += n
    np.testing.assert_allclose(np.concatenate(outs, axis=-2), full, rtol=0,
                               atol=TOLS[dtype] * 10)
    # and the dense decode differs (the pattern is really applied)
    kc2, vc2 = np.zeros_like(kc), np.zeros_like(vc)
    dense = F.attention_decode(q, k, v, kc2, vc2, 0)
    assert np.abs(dense - full).max() > 1e-3


# ------------------------------------------------------------------ bad input

def test_bad_patterns_name_the_argument():
    with pytest.raises(ValueError, match="block"):
        F.sparse_layout(0, 1)
    with pytest.raises(ValueError, match="window"):
        F.sparse_layout(4, 0)
    with pytest.raises(ValueError, match="stride"):
        F.sparse_layout(4, 1, -1)
    with pytest.raises(ValueError, match="global_blocks"):
        F.sparse_layout(4, 1, 0, -2)
    with pytest.raises(TypeError, match="window"):
        F.sparse_layout(4, 1.5)
    q, k, v = qkv(np.float64, (1,), 8, 8, 4, 4)
    with pytest.raises(TypeError, match="sparse"):
        sdpa(q, k, v, sparse=(4, 1, 0, 0))
    with pytest.raises(TypeError, match="layout"):
        F.sparse_mask(None, 4)
    with pytest.raises(TypeError, match="layout"):
        F.block_sparse_attention(q, k, v, "dense")
    # the C entry points check the tuple themselves, naming the field
    for bad, name in (((0, 1, 0, 0), "sparse_block"), ((2, 0, 0, 0), "sparse_window"),
                      ((2, 1, -1, 0), "sparse_stride"), ((2, 1, 0, -1), "sparse_global")):
        with pytest.raises(ValueError, match=name):
            tc._C.attention_forward(q[None], k[None], v[None], None, None, None, 0.5, 0, 0.0,
                                    0, bad)
    with pytest.raises(TypeError, match="sparse"):
        tc._C.attention_forward(q[None], k[None], v[None], None, None, None, 0.5, 0, 0.0, 0,
                                [2, 1, 0, 0])


def test_block_sparse_attention_is_the_sparse_option():
    q, k, v = qkv(np.float32, (2,), 33, 33, 6, 6)
    L = F.sparse_layout(4, 2, 2, 0)
    np.testing.assert_array_equal(F.block_sparse_attention(q, k, v, L, is_causal=True),
                                  sdpa(q, k, v, is_causal=True, sparse=L))
