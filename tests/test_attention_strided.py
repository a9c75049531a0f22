"""The tiled attention kernel on strided operands (_C.attention_forward_strided /
attention_backward_strided, C: tc_attention_*_strided): q, k, v, out, grad_output, dq, dk,
dv read and written in place at their own strides (e.g. the q, k, v slices of a token-major
(B, T, 3C) qkv buffer), checked BITWISE against the contiguous (B, NH, T, D) entry points on
copies of the same values (the arithmetic is the same; only the addressing differs), and
the contiguous kernel itself is checked against the materialised reference in
test_attention_tiled.py."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng

C_ = tc._C
CAUSAL = (0, 1, 2)


def token_major(buf, B, L, NH, HS, slot):
    """The (B, NH, L, HS) view of C-wide slot `slot` of a (B, L, n*C) token-major buffer."""
    C = NH * HS
    return buf[:, :, slot * C:(slot + 1) * C].reshape(B, L, NH, HS).transpose(0, 2, 1, 3)


def contiguous_fwd(q, k, v, keep=None, bias=None, kp=None, scale=0.3, causal=0, p=0.0,
                   seed=0):
    c = np.ascontiguousarray
    return C_.attention_forward(c(q), c(k), c(v), keep, bias, kp, scale, causal, p, seed)


def contiguous_bwd(g, q, k, v, out, lse, keep=None, bias=None, kp=None, scale=0.3, causal=0,
                   p=0.0, seed=0):
    c = np.ascontiguousarray
    return C_.attention_backward(c(g), c(q), c(k), c(v), c(out), lse, keep, bias, kp, scale,
                                 causal, p, seed)


def self_case(dtype, B, NH, L, HS, causal, masks=(None, None, None), p=0.0, seed=3):
    """Self-attention with q, k, v slices of one (B, L, 3C) buffer, out and grad_output in
    (B, L, C) buffers, dq/dk/dv into a (B, L, 3C) buffer: forward and backward (write and
    accumulate) against the contiguous kernel."""
    r = rng(seed)
    C = NH * HS
    qkv = r.standard_normal((B, L, 3 * C)).astype(dtype)
    q, k, v = (token_major(qkv, B, L, NH, HS, s) for s in range(3))
    scale = 1.0 / np.sqrt(HS)
    keep, bias, kp = masks
    ref_out, ref_lse = contiguous_fwd(q, k, v, keep, bias, kp, scale, causal, p, 11)
    att = np.full((B, L, C), np.nan, dtype)  # every element must be written
    out = token_major(att, B, L, NH, HS, 0)
    lse = C_.attention_forward_strided(q, k, v, out, keep, bias, kp, scale, causal, p, 11)
    assert np.array_equal(out, ref_out) and np.array_equal(lse, ref_lse)

    gbuf = r.standard_normal((B, L, C)).astype(dtype)
    g = token_major(gbuf, B, L, NH, HS, 0)
    rdq, rdk, rdv = contiguous_bwd(g, q, k, v, ref_out, ref_lse, keep, bias, kp, scale, causal,
                                   p, 11)
    dqkv = np.full((B, L, 3 * C), np.nan, dtype)
    dq, dk, dv = (token_major(dqkv, B, L, NH, HS, s) for s in range(3))
    C_.attention_backward_strided(dq, dk, dv, g, q, k, v, out, lse, keep, bias, kp, scale,
                                  causal, p, 11, 7)
    for got, want in ((dq, rdq), (dk, rdk), (dv, rdv)):
        assert np.array_equal(got, want)
    # write = 0 adds to what is there
    base = r.standard_normal(dqkv.shape).astype(dtype)
    dqkv[...] = base
    C_.attention_backward_strided(dq, dk, dv, g, q, k, v, out, lse, keep, bias, kp, scale,
                                  causal, p, 11, 0)
    for s, want in enumerate((rdq, rdk, rdv)):
        b = token_major(base, B, L, NH, HS, s)
        assert np.array_equal(token_major(dqkv, B, L, NH, HS, s), b + want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", CAUSAL)
@pytest.mark.parametrize("B,NH,L,HS", [(2, 3, 17, 8), (1, 1, 1, 4), (2, 2, 1, 7), (1, 1, 13, 13),
                                       (2, 2, 150, 16), (1, 3, 200, 33)])
def test_self_attention_token_major(dtype, causal, B, NH, L, HS):
    self_case(dtype, B, NH, L, HS, causal)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", CAUSAL)
def test_masks_and_dropout(dtype, causal):
    B, NH, L, HS = 2, 3, 110, 12
    r = rng(5)
    keep = r.random((B, 1, L, L)) > 0.2
    bias = r.standard_normal((1, NH, L, L)).astype(dtype)
    bias[0, 0, :, 3] = -np.inf
    kp = r.random((B, L)) > 0.3
    kp[1, :100] = False  # whole padding key tiles
    for masks in ((keep, None, None), (None, bias, None), (None, None, kp), (keep, bias, kp)):
        self_case(dtype, B, NH, L, HS, causal, masks)
    self_case(dtype, B, NH, L, HS, causal, p=0.2)
    self_case(dtype, B, NH, L, HS, causal, (None, None, kp), p=0.3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,S", [(5, 37), (1, 130), (120, 9), (97, 203)])
def test_cross_attention(dtype, T, S):
    # q from a (B, T, C) buffer, k and v from a (B, S, 2C) buffer; DK != DV through heads
    # of a second buffer
    B, NH, HS = 2, 3, 10
    C = NH * HS
    r = rng(T + S)
    qb = r.standard_normal((B, T, C)).astype(dtype)
    kv = r.standard_normal((B, S, 2 * C)).astype(dtype)
    q, k, v = token_major(qb, B, T, NH, HS, 0), token_major(kv, B, S, NH, HS, 0), \
        token_major(kv, B, S, NH, HS, 1)
    kp = r.random((B, S)) > 0.25
    for causal in CAUSAL:
        for mask in (None, kp):
            ref_out, ref_lse = contiguous_fwd(q, k, v, kp=mask, causal=causal)
            att = np.full((B, T, C), np.nan, dtype)
            out = token_major(att, B, T, NH, HS, 0)
            lse = C_.attention_forward_strided(q, k, v, out, None, None, mask, 0.3, causal,
                                               0.0, 0)
            assert np.array_equal(out, ref_out) and np.array_equal(lse, ref_lse)
            g = r.standard_normal((B, NH, T, HS)).astype(dtype)  # contiguous dout
            want = contiguous_bwd(g, q, k, v, out, lse, kp=mask, causal=causal)
            dqb = np.full((B, T, C), np.nan, dtype)
            dkv = np.full((B, S, 2 * C), np.nan, dtype)
            dq, dk, dv = token_major(dqb, B, T, NH, HS, 0), token_major(dkv, B, S, NH, HS, 0), \
                token_major(dkv, B, S, NH, HS, 1)
            C_.attention_backward_strided(dq, dk, dv, g, q, k, v, out, lse, None, None, mask,
                                          0.3, causal, 0.0, 0, 7)
            for got, w in zip((dq, dk, dv), want):
                assert np.array_equal(got, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dk_differs_from_dv_and_odd_views(dtype):
    # DK != DV, heads in reverse order (negative head stride), batch-major views of
    # a larger buffer
    r = rng(21)
    B, NH, T, S, DK, DV = 2, 3, 40, 50, 9, 5
    big = r.standard_normal((B, NH + 2, T, DK + 3)).astype(dtype)
    q = big[:, 1:NH + 1, :, 2:DK + 2][:, ::-1]
    k = r.standard_normal((B, S, NH, DK)).astype(dtype).transpose(0, 2, 1, 3)
    v = r.standard_normal((NH, B, S, DV)).astype(dtype).transpose(1, 0, 2, 3)
    for causal in CAUSAL:
        ref_out, ref_lse = contiguous_fwd(q, k, v, causal=causal)
        ob = np.full((T, B, NH, DV), np.nan, dtype)
        out = ob.transpose(1, 2, 0, 3)
        lse = C_.attention_forward_strided(q, k, v, out, None, None, None, 0.3, causal, 0.0, 0)
        assert np.array_equal(out, ref_out) and np.array_equal(lse, ref_lse)
        g = r.standard_normal((B, T, NH, DV)).astype(dtype).transpose(0, 2, 1, 3)
        want = contiguous_bwd(g, q, k, v, out, lse, causal=causal)
        dq = np.full((B, T, NH, DK), np.nan, dtype).transpose(0, 2, 1, 3)
        dk = np.full((B, NH, S, DK), np.nan, dtype)[:, ::-1]
        dv = np.full((B, S, NH, DV), np.nan, dtype).transpose(0, 2, 1, 3)
        C_.attention_backward_strided(dq, dk, dv, g, q, k, v, out, lse, None, None, None, 0.3,
                                      causal, 0.0, 0, 7)
        for got, w in zip((dq, dk, dv), want):
            assert np.array_equal(got, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,NH", [(1, 1), (1, 3), (3, 4)])
def test_backward_parallel_modes(dtype, B, NH):
    # 2 threads: 1 or 3 batch-heads split each head's key tiles between the threads (dq
    # partials summed in thread order), 12 give whole heads to threads; both write dq
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(2)
        for causal in CAUSAL:
            self_case(dtype, B, NH, 200, 16, causal, seed=7)
    finally:
        tc.set_num_threads(n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_calls_write_zeros(dtype):
    r = rng(2)
    B, NH, HS = 2, 2, 4
    for T, S in ((0, 5), (5, 0), (0, 0)):
        q = r.standard_normal((B, NH, T, HS)).astype(dtype)
        k = r.standard_normal((B, NH, S, HS)).astype(dtype)
        v = r.standard_normal((B, NH, S, HS)).astype(dtype)
        out = np.full((B, NH, T, HS), np.nan, dtype)
        lse = C_.attention_forward_strided(q, k, v, out, None, None, None, 0.5, 0, 0.0, 0)
        assert np.array_equal(out, np.zeros_like(out))
        assert np.all(lse == -np.inf)
        g = r.standard_normal((B, NH, T, HS)).astype(dtype)
        grads = [np.full(a.shape, np.nan, dtype) for a in (q, k, v)]
        C_.attention_backward_strided(*grads, g, q, k, v, out, lse, None, None, None, 0.5, 0,
                                      0.0, 0, 7)
        for a in grads:
            assert np.array_equal(a, np.zeros_like(a))
        grads = [np.ones(a.shape, dtype) for a in (q, k, v)]
        C_.attention_backward_strided(*grads, g, q, k, v, out, lse, None, None, None, 0.5, 0,
                                      0.0, 0, 0)
        for a in grads:
            assert np.array_equal(a, np.ones_like(a))


def test_reproducible_per_thread_count():
    B, NH, L, HS = 2, 3, 160, 16
    C = NH * HS
    qkv = rng(4).standard_normal((B, L, 3 * C)).astype(np.float32)
    q, k, v = (token_major(qkv, B, L, NH, HS, s) for s in range(3))
    g = rng(5).standard_normal((B, NH, L, HS)).astype(np.float32)
    n = tc.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            tc.set_num_threads(threads)
            out = np.empty((B, L, C), np.float32)
            o = token_major(out, B, L, NH, HS, 0)
            lse = C_.attention_forward_strided(q, k, v, o, None, None, None, 0.25, 1, 0.1, 9)
            d = np.empty((B, L, 3 * C), np.float32)
            C_.attention_backward_strided(*(token_major(d, B, L, NH, HS, s) for s in range(3)),
                                          g, q, k, v, o, lse, None, None, None, 0.25, 1, 0.1, 9,
                                          7)
            runs.append((out, lse, d))
    finally:
        tc.set_num_threads(n)
    for x, y in zip(runs[1], runs[2]):
        assert np.array_equal(x, y)
    for x, y in zip(runs[0], runs[1]):  # 6 batch-heads: whole heads per thread
        assert np.array_equal(x, y)


def test_bad_arguments_raise():
    f32 = np.zeros((1, 1, 4, 8), np.float32)
    out = np.zeros((1, 1, 4, 8), np.float32)
    fwd = C_.attention_forward_strided
    with pytest.raises(TypeError, match="k"):
        fwd(f32, f32.astype(np.float64), f32, out, None, None, None, 1.0, 0, 0.0, 0)
    with pytest.raises(TypeError, match="out"):
        fwd(f32, f32, f32, [[[[0.0]]]], None, None, None, 1.0, 0, 0.0, 0)
    with pytest.raises(ValueError, match="out"):
        fwd(f32, f32, f32, np.zeros((1, 1, 5, 8), np.float32), None, None, None, 1.0, 0, 0.0,
            0)
    with pytest.raises(ValueError, match="q"):
        fwd(np.zeros((1, 1, 4, 16), np.float32)[..., ::2], f32, f32, out, None, None, None, 1.0,
            0, 0.0, 0)
    with pytest.raises(ValueError, match="v"):
        fwd(f32, f32, np.zeros((1, 4, 8), np.float32), out, None, None, None, 1.0, 0, 0.0, 0)
    ro = np.zeros((1, 1, 4, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fwd(f32, f32, f32, ro, None, None, None, 1.0, 0, 0.0, 0)
    with pytest.raises(ValueError, match="causal"):
        fwd(f32, f32, f32, out, None, None, None, 1.0, 5, 0.0, 0)
    lse = fwd(f32, f32, f32, out, None, None, None, 1.0, 0, 0.0, 0)
    bwd = C_.attention_backward_strided
    d = [np.zeros_like(f32) for _ in range(3)]
    with pytest.raises(ValueError, match="write"):
        bwd(*d, f32, f32, f32, f32, out, lse, None, None, None, 1.0, 0, 0.0, 0, 8)
    with pytest.raises(ValueError, match="dk"):
        bwd(d[0], np.zeros((1, 1, 3, 8), np.float32), d[2], f32, f32, f32, f32, out, lse, None,
            None, None, 1.0, 0, 0.0, 0, 0)
    with pytest.raises(ValueError, match="lse"):
        bwd(*d, f32, f32, f32, f32, out, lse[:, :, :2], None, None, None, 1.0, 0, 0.0, 0, 0)
    with pytest.raises(TypeError):
        bwd(*d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("write", range(8))
def test_backward_write_bits_per_output(dtype, write):
    # bit k of write: the k-th gradient (dq, dk, dv) written (over NaN, the bits of += into
    # zeros), bit clear: added to what is there
    r = rng(40 + write)
    B, NH, T, HS = 2, 2, 37, 8
    q, k, v = (r.standard_normal((B, NH, T, HS)).astype(dtype) for _ in range(3))
    out = np.empty((B, NH, T, HS), dtype)
    lse = C_.attention_forward_strided(q, k, v, out, None, None, None, 0.35, 1, 0.0, 0)
    g = r.standard_normal(out.shape).astype(dtype)
    zero = [np.zeros_like(q) for _ in range(3)]
    C_.attention_backward_strided(*zero, g, q, k, v, out, lse, None, None, None, 0.35, 1, 0.0,
                                  0, 0)
    base = [r.standard_normal(q.shape).astype(dtype) for _ in range(3)]
    got = [np.full_like(q, np.nan) if write >> i & 1 else base[i].copy() for i in range(3)]
    C_.attention_backward_strided(*got, g, q, k, v, out, lse, None, None, None, 0.35, 1, 0.0,
                                  0, write)
    for i in range(3):
        if write >> i & 1:
            assert np.array_equal(got[i].view(np.uint8), zero[i].view(np.uint8))
        else:
            assert np.array_equal(got[i], base[i] + zero[i])
