"""Scaled dot-product attention (the tiled kernel by default, the materialised reference
where parametrised): NumPy reference (incl. the coursework's "-1e9 above the diagonal"
form), finite differences, PyTorch parity, awkward shapes, exact zeros under causal
masking, bad input. Masks, dropout, tile boundaries, decoding and the modules have their
own test_attention_*.py files."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional
sdpa = F.scaled_dot_product_attention
sdpa_bwd = F.scaled_dot_product_attention_backward


# ------------------------------------------------------------------ NumPy references

def ref_forward(q, k, v, causal=False, scale=None):
    """out, lse with -inf masking (top-left: query i sees keys j <= i), in float64."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * (q @ np.swapaxes(k, -1, -2))
    if causal:
        s = np.where(np.arange(S)[None, :] <= np.arange(T)[:, None], s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    z = e.sum(axis=-1, keepdims=True)
    return (e / z) @ v, (m + np.log(z))[..., 0]


def ref_forward_coursework(q, k, v, causal):
    """The coursework form: scores + np.triu(full(-1e9), 1) before a plain softmax."""
    s = q @ k.T / np.sqrt(q.shape[-1])
    if causal:
        s = s + np.triu(np.full(s.shape, -1e9), 1)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def ref_backward(G, q, k, v, causal=False, scale=None):
    """2-D only: dq, dk, dv through the explicit softmax Jacobian of every row."""
    T, S = q.shape[0], k.shape[0]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ k.T
    if causal:
        s = np.where(np.arange(S)[None, :] <= np.arange(T)[:, None], s, -np.inf)
    P = np.exp(s - s.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dv = P.T @ G
    dP = G @ v.T
    dS = np.empty_like(P)
    for i in range(T):
        J = np.diag(P[i]) - np.outer(P[i], P[i])
        dS[i] = J @ dP[i]
    return scale * dS @ k, scale * dS.T @ q, dv


def qkv(T, S, DK, DV, lead=(), dtype=np.float64, seed=0, mult=1.0):
    r = rng(seed)
    q = (mult * r.standard_normal(lead + (T, DK))).astype(dtype)
    k = (mult * r.standard_normal(lead + (S, DK))).astype(dtype)
    v = r.standard_normal(lead + (S, DV)).astype(dtype)
    return q, k, v


SHAPES = [(5, 5, 4, 4), (7, 13, 5, 3), (13, 7, 3, 6), (1, 1, 4, 4), (1, 9, 4, 2),
          (9, 1, 2, 4), (33, 33, 8, 8), (33, 7, 13, 5)]


# ------------------------------------------------------------------ NumPy reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,S,DK,DV", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_numpy(dtype, T, S, DK, DV, causal):
    q, k, v = qkv(T, S, DK, DV, dtype=dtype, seed=T * 31 + S)
    out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True)
    want_out, want_lse = ref_forward(q, k, v, causal)
    assert out.dtype == dtype and lse.dtype == dtype
    assert out.shape == (T, DV) and lse.shape == (T,)
    np.testing.assert_allclose(out, want_out, **tol(dtype))
    np.testing.assert_allclose(lse, want_lse, **tol(dtype))


@pytest.mark.parametrize("T,S", [(6, 6), (1, 1), (13, 13), (7, 13), (13, 7)])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_coursework_minus_1e9_form(T, S, causal):
    q, k, v = qkv(T, S, 5, 3, seed=2)
    np.testing.assert_allclose(sdpa(q, k, v, is_causal=causal),
                               ref_forward_coursework(q, k, v, causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T,S,DK,DV", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_backward_matches_numpy_jacobian(T, S, DK, DV, causal):
    q, k, v = qkv(T, S, DK, DV, seed=T + 7 * S)
    G = rng(9).standard_normal((T, DV))
    got = sdpa_bwd(G, q, k, v, is_causal=causal)
    for name, g, w in zip("qkv", got, ref_backward(G, q, k, v, causal)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=f"d{name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_explicit_scale(dtype):
    q, k, v = qkv(6, 8, 4, 5, dtype=dtype, seed=3)
    G = rng(4).standard_normal((6, 5)).astype(dtype)
    for scale in (0.3, -1.5, 0.0, 2):
        out = sdpa(q, k, v, scale=scale, is_causal=True)
        np.testing.assert_allclose(out, ref_forward(q, k, v, True, scale)[0], **tol(dtype))
        got = sdpa_bwd(G, q, k, v, scale=scale, is_causal=True)
        want = ref_backward(G.astype(np.float64), q.astype(np.float64), k.astype(np.float64),
                            v.astype(np.float64), True, scale)
        for g, w in zip(got, want):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, w, **tol(dtype))


def test_backward_with_cached_out_and_lse_equals_recomputation():
    q, k, v = qkv(9, 11, 4, 6, lead=(2, 3), seed=5)
    G = rng(6).standard_normal((2, 3, 9, 6))
    out, lse = sdpa(q, k, v, is_causal=True, return_lse=True)
    a = sdpa_bwd(G, q, k, v, is_causal=True, out=out, lse=lse)
    b = sdpa_bwd(G, q, k, v, is_causal=True)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("T,S,DK,DV", [(4, 4, 3, 3), (3, 5, 4, 2), (5, 3, 2, 4), (1, 1, 2, 3),
                                       (1, 4, 3, 2), (4, 1, 2, 2)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["tiled", "reference"])
def test_backward_finite_differences(T, S, DK, DV, causal, impl):
    q, k, v = qkv(T, S, DK, DV, lead=(2,), seed=T * S)

    def grads(G):
        dq, dk, dv = sdpa_bwd(G, q, k, v, is_causal=causal, implementation=impl)
        return {"q": dq, "k": dk, "v": dv}

    check_grads(lambda: sdpa(q, k, v, is_causal=causal, implementation=impl), grads,
                {"q": q, "k": k, "v": v})


def test_finite_differences_with_scale():
    q, k, v = qkv(3, 4, 2, 3, seed=8)

    def grads(G):
        return dict(zip("qkv", sdpa_bwd(G, q, k, v, scale=0.7, is_causal=True)))

    check_grads(lambda: sdpa(q, k, v, scale=0.7, is_causal=True), grads,
                {"q": q, "k": k, "v": v})


# ------------------------------------------------------------------ PyTorch parity

def torch_sdpa(torch, q, k, v, G, causal, scale=None):
    tq, tk, tv = (to_torch(torch, a) for a in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal,
                                                           scale=scale)
    (out * torch.from_numpy(np.ascontiguousarray(G))).sum().backward()
    return out.detach().numpy(), (tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,S,DK,DV", SHAPES)
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["tiled", "reference"])
def test_matches_torch(torch, dtype, T, S, DK, DV, lead, causal, impl):
    q, k, v = qkv(T, S, DK, DV, lead=lead, dtype=dtype, seed=T + S + len(lead))
    G = rng(10).standard_normal(lead + (T, DV)).astype(dtype)
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, causal)
    out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True, implementation=impl)
    assert out.shape == lead + (T, DV) and lse.shape == lead + (T,)
    np.testing.assert_allclose(out, want_out, **tol(dtype))
    grads = sdpa_bwd(G, q, k, v, is_causal=causal, out=out, lse=lse, implementation=impl)
    for name, a, g, w in zip("qkv", (q, k, v), grads, want_grads):
        assert g.dtype == dtype and g.shape == a.shape
        np.testing.assert_allclose(g, w, **tol(dtype), err_msg=f"d{name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("BH,T,S,D", [(1, 256, 256, 16), (1, 200, 300, 8), (6, 64, 48, 16)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["tiled", "reference"])
def test_matches_torch_parallel_paths(torch, dtype, BH, T, S, D, causal, impl):
    # reference: BH = 1 with a large T*S runs rows and GEMMs in parallel, BH > 1 heads;
    # tiled: BH = 1 splits the key tiles of the head between threads, BH = 6 gives whole
    # heads to threads in the backward
    q, k, v = qkv(T, S, D, D, lead=(BH,), dtype=dtype, seed=11)
    G = rng(12).standard_normal((BH, T, D)).astype(dtype)
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, causal)
    np.testing.assert_allclose(sdpa(q, k, v, is_causal=causal, implementation=impl), want_out,
                               **tol(dtype))
    for g, w in zip(sdpa_bwd(G, q, k, v, is_causal=causal, implementation=impl), want_grads):
        np.testing.assert_allclose(g, w, **tol(dtype))


@pytest.mark.parametrize("causal", [False, True])
def test_explicit_scale_matches_torch(torch, causal):
    q, k, v = qkv(7, 9, 5, 3, lead=(2,), seed=13)
    G = rng(14).standard_normal((2, 7, 3))
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, causal, scale=0.37)
    np.testing.assert_allclose(sdpa(q, k, v, is_causal=causal, scale=0.37), want_out,
                               rtol=1e-10, atol=1e-10)
    for g, w in zip(sdpa_bwd(G, q, k, v, is_causal=causal, scale=0.37), want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_large_scores_stay_finite_and_match_torch(torch, causal):
    q, k, v = qkv(13, 13, 8, 8, lead=(2,), seed=15, mult=100.0)  # scores ~ 1e4
    G = rng(16).standard_normal((2, 13, 8))
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, causal)
    out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    assert np.abs(lse).max() > 1e3
    np.testing.assert_allclose(out, want_out, rtol=1e-10, atol=1e-10)
    for g, w in zip(sdpa_bwd(G, q, k, v, is_causal=causal, out=out, lse=lse), want_grads):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    # float32 too: finite, and close to the float64 result
    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    out32 = sdpa(q32, k32, v32, is_causal=causal)
    grads32 = sdpa_bwd(G.astype(np.float32), q32, k32, v32, is_causal=causal)
    assert np.all(np.isfinite(out32)) and all(np.all(np.isfinite(g)) for g in grads32)


# ------------------------------------------------------------------ causal masking

@pytest.mark.parametrize("T,S", [(8, 8), (5, 9), (9, 5)])
def test_causal_gradient_from_row_i_is_exactly_zero_beyond_i(T, S):
    q, k, v = qkv(T, S, 4, 3, seed=17)
    for i in range(T):
        G = np.zeros((T, 3))
        G[i] = rng(i).standard_normal(3)
        dq, dk, dv = sdpa_bwd(G, q, k, v, is_causal=True)
        assert np.all(dk[i + 1:] == 0.0) and np.all(dv[i + 1:] == 0.0)
        assert np.all(dq[np.arange(T) != i] == 0.0)
        assert np.all(np.any(dv[:min(i + 1, S)] != 0.0, axis=1))
        if i > 0:  # (row 0 sees key 0 only: P = 1 there and its score gradient is 0)
            assert np.any(dk[:i + 1] != 0.0)


def test_causal_output_row_ignores_future_keys_exactly():
    q, k, v = qkv(6, 6, 4, 4, seed=18)
    out = sdpa(q, k, v, is_causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[3:] = 1e6
    v2[3:] = -1e6
    out2 = sdpa(q, k2, v2, is_causal=True)
    assert np.array_equal(out[:3], out2[:3])
    assert np.array_equal(out[0], v[0])  # row 0 sees key 0 only


def test_no_keys_gives_zero_output_and_minus_inf_lse():
    # Top-left causal masking always leaves key 0 visible, so a row with no visible key
    # exists only when S == 0.
    q, k, v = np.ones((2, 3, 4)), np.ones((2, 0, 4)), np.ones((2, 0, 5))
    for causal in (False, True):
        out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True)
        assert out.shape == (2, 3, 5) and np.all(out == 0.0)
        assert lse.shape == (2, 3) and np.all(lse == -np.inf)
        dq, dk, dv = sdpa_bwd(np.ones((2, 3, 5)), q, k, v, is_causal=causal)
        assert np.all(dq == 0.0) and dk.shape == (2, 0, 4) and dv.shape == (2, 0, 5)


# ------------------------------------------------------------------ awkward shapes

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead", [(0,), (2, 0), (0, 3)])
def test_empty_batch(dtype, lead):
    q, k, v = qkv(4, 5, 3, 2, lead=lead, dtype=dtype)
    out, lse = sdpa(q, k, v, is_causal=True, return_lse=True)
    assert out.shape == lead + (4, 2) and lse.shape == lead + (4,) and out.dtype == dtype
    dq, dk, dv = sdpa_bwd(np.zeros(lead + (4, 2), dtype), q, k, v, is_causal=True)
    assert (dq.shape, dk.shape, dv.shape) == (q.shape, k.shape, v.shape)
    assert dq.dtype == dtype


def test_zero_queries_and_zero_value_width():
    q, k, v = qkv(0, 5, 3, 2, lead=(2,))
    assert sdpa(q, k, v).shape == (2, 0, 2)
    q, k, v = qkv(4, 5, 3, 0, lead=(2,))
    out = sdpa(q, k, v)
    assert out.shape == (2, 4, 0)
    dq, dk, dv = sdpa_bwd(np.zeros((2, 4, 0)), q, k, v)
    assert np.all(dq == 0) and np.all(dk == 0) and dv.shape == (2, 5, 0)


@pytest.mark.parametrize("layout", [non_contiguous, fortran, lambda a: a[..., ::-1, :]])
@pytest.mark.parametrize("causal", [False, True])
def test_any_memory_layout(layout, causal):
    q, k, v = qkv(7, 9, 5, 6, lead=(2, 3), seed=19)
    G = rng(20).standard_normal((2, 3, 7, 6))
    # reference on plain C arrays holding the same values the layout presents
    vals = [np.ascontiguousarray(layout(a)) for a in (q, k, v, G)]
    want_out = sdpa(*vals[:3], is_causal=causal)
    want = sdpa_bwd(vals[3], *vals[:3], is_causal=causal)
    np.testing.assert_allclose(want_out, np.stack([[ref_forward(*[a[b, h] for a in vals[:3]],
                                                                causal)[0]
                                                    for h in range(3)] for b in range(2)]),
                               rtol=1e-12, atol=1e-12)
    out, lse = sdpa(layout(q), layout(k), layout(v), is_causal=causal, return_lse=True)
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-12)
    got = sdpa_bwd(layout(G), layout(q), layout(k), layout(v), is_causal=causal,
                   out=layout(out) if layout is fortran else out, lse=lse)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_array_likes_are_accepted():
    q, k, v = qkv(3, 4, 2, 2, seed=21)
    np.testing.assert_allclose(sdpa(q.tolist(), k.tolist(), v.tolist()),
                               ref_forward(q, k, v)[0], rtol=1e-12)


# ------------------------------------------------------------------ determinism / threads

def test_bitwise_reproducible_and_thread_count_changes_only_rounding():
    q, k, v = qkv(96, 80, 16, 16, lead=(5,), dtype=np.float32, seed=22)
    G = rng(23).standard_normal((5, 96, 16)).astype(np.float32)
    a = sdpa(q, k, v, is_causal=True)
    assert np.array_equal(a, sdpa(q, k, v, is_causal=True))
    ga, gb = sdpa_bwd(G, q, k, v, is_causal=True), sdpa_bwd(G, q, k, v, is_causal=True)
    assert all(np.array_equal(x, y) for x, y in zip(ga, gb))
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one = sdpa(q, k, v, is_causal=True)
        gone = sdpa_bwd(G, q, k, v, is_causal=True)
    finally:
        tc.set_num_threads(n)
    np.testing.assert_allclose(one, a, rtol=1e-5, atol=1e-6)
    for x, y in zip(gone, ga):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    q, k, v = qkv(4, 5, 3, 2, lead=(2,))
    G = np.zeros((2, 4, 2))
    with pytest.raises(ValueError, match="k"):
        sdpa(q, np.ones((2, 5, 4)), v)                     # DK differs
    with pytest.raises(ValueError, match="v"):
        sdpa(q, k, np.ones((2, 6, 2)))                     # S differs
    with pytest.raises(ValueError, match="k"):
        sdpa(q, np.ones((3, 5, 3)), v)                     # leading dims differ
    with pytest.raises(ValueError, match="v"):
        sdpa(q, k, np.ones((1, 2, 5, 2)))
    with pytest.raises(ValueError, match="q"):
        sdpa(np.ones(3), k, v)                             # ndim < 2
    with pytest.raises(ValueError, match="k"):
        sdpa(np.ones((4, 3)), np.ones(3), np.ones((5, 2)))
    with pytest.raises(TypeError, match="k"):
        sdpa(q, k.astype(np.float32), v)                   # dtype mixing
    with pytest.raises(TypeError, match="v"):
        sdpa(q.astype(np.float32), k.astype(np.float32), v)
    with pytest.raises(TypeError, match="q"):
        sdpa(q.astype(np.int64), k, v)
    for bad in (np.inf, -np.inf, np.nan):
        with pytest.raises(ValueError, match="scale"):
            sdpa(q, k, v, scale=bad)
        with pytest.raises(ValueError, match="scale"):
            sdpa_bwd(G, q, k, v, scale=bad)
    with pytest.raises(TypeError, match="scale"):
        sdpa(q, k, v, scale="0.5")
    with pytest.raises(ValueError, match="grad_output"):
        sdpa_bwd(np.zeros((2, 4, 3)), q, k, v)
    with pytest.raises(TypeError, match="grad_output"):
        sdpa_bwd(G.astype(np.float32), q, k, v)
    out, lse = sdpa(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match="out"):
        sdpa_bwd(G, q, k, v, out=out[:, :3], lse=lse)
    with pytest.raises(ValueError, match="lse"):
        sdpa_bwd(G, q, k, v, out=out, lse=lse[:, :3])
    with pytest.raises(TypeError, match="lse"):
        sdpa_bwd(G, q, k, v, out=out, lse=lse.astype(np.float32))


@pytest.mark.parametrize("suffix", ["", "_ref"])
def test_raw_binding_raises_instead_of_crashing(suffix):
    q, k, v = qkv(4, 5, 3, 2, lead=(2, 1))
    C = tc._C
    fwd, bwd = getattr(C, "attention_forward" + suffix), getattr(C, "attention_backward" + suffix)
    opts = (0.5, 1, 0.0, 0)

    def f(*a):
        return fwd(*a[:3], None, None, None, *a[3:])

    with pytest.raises(ValueError, match="k"):
        f(q, k[:1], v, *opts)
    with pytest.raises(ValueError, match="v"):
        f(q, k, v[:, :, :4], *opts)
    with pytest.raises(ValueError, match="q"):
        f(q[0], k, v, *opts)
    with pytest.raises(ValueError, match="scale"):
        f(q, k, v, float("nan"), 1, 0.0, 0)
    with pytest.raises(ValueError, match="causal"):
        f(q, k, v, 0.5, 3, 0.0, 0)
    with pytest.raises(ValueError, match="dropout_p"):
        f(q, k, v, 0.5, 1, 1.5, 0)
    with pytest.raises(ValueError, match="seed"):
        f(q, k, v, 0.5, 1, 0.0, -1)
    with pytest.raises(TypeError, match="seed"):
        f(q, k, v, 0.5, 1, 0.0, "1")
    with pytest.raises(TypeError, match="k"):
        f(q, k.astype(np.float32), v, *opts)
    with pytest.raises(TypeError, match="q"):
        f("not an array", k, v, *opts)
    with pytest.raises(TypeError):
        fwd(q, k, v)
    with pytest.raises(TypeError, match="attn_mask"):
        fwd(q, k, v, np.ones((1, 1, 4, 5)), None, None, *opts)       # keep must be bool
    with pytest.raises(ValueError, match="attn_mask"):
        fwd(q, k, v, np.ones((1, 1, 4, 4), bool), None, None, *opts)
    with pytest.raises(ValueError, match="attn_mask"):
        fwd(q, k, v, np.ones((4, 5), bool), None, None, *opts)
    with pytest.raises(TypeError, match="attn_mask"):
        fwd(q, k, v, None, np.ones((1, 1, 4, 5), np.float32), None, *opts)
    with pytest.raises(ValueError, match="attn_mask"):
        fwd(q, k, v, None, np.full((1, 1, 4, 5), np.nan), None, *opts)
    with pytest.raises(ValueError, match="key_padding_mask"):
        fwd(q, k, v, None, None, np.ones((2, 4), bool), *opts)
    with pytest.raises(TypeError, match="key_padding_mask"):
        fwd(q, k, v, None, None, np.ones((2, 5), np.int8), *opts)
    out, lse = f(q, k, v, *opts)
    G = np.zeros((2, 1, 4, 2))

    def b(*a):
        return bwd(*a[:6], None, None, None, *opts)

    with pytest.raises(ValueError, match="lse"):
        b(G, q, k, v, out, lse[:, :, :2])
    with pytest.raises(ValueError, match="out"):
        b(G, q, k, v, out[:, :, :, :1], lse)
    with pytest.raises(ValueError, match="grad_output"):
        b(G[:1], q, k, v, out, lse)
    with pytest.raises(TypeError, match="out"):
        b(G, q, k, v, None, lse)
