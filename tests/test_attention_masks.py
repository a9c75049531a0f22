"""Attention masks and dropout: boolean (True = attend) and float attn_mask broadcast to
(..., T, S), key_padding_mask, causal top-left and bottom-right with T != S, fully masked
rows (zeros, zero gradients), dropout (seeded, forward and backward agree). Checked against
a NumPy reference, finite differences and torch (F.scaled_dot_product_attention, fed the
same dropout mask), for both the tiled kernel and the materialised reference."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, rng, to_torch, tol

F = tc.functional
sdpa = F.scaled_dot_product_attention
sdpa_bwd = F.scaled_dot_product_attention_backward
IMPLS = ["tiled", "reference"]


# ------------------------------------------------------------------ NumPy reference

def visible(lead, T, S, keep=None, kpm=None, causal=0):
    """The boolean (lead..., T, S) 'this key takes part' mask."""
    i, j = np.arange(T)[:, None], np.arange(S)[None, :]
    m = np.ones(lead + (T, S), bool)
    if causal == 1:
        m &= j <= i
    elif causal == 2:
        m &= j <= i + S - T
    if keep is not None:
        m &= keep
    if kpm is not None:
        m &= kpm.reshape((kpm.shape[0],) + (1,) * (len(lead) - 1) + (1, S)) if lead else kpm
    return m


def np_forward(q, k, v, keep=None, bias=None, kpm=None, causal=0, scale=None, Z=None):
    """out, lse, P (before dropout) in float64; fully masked rows: out 0, lse -inf."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    lead, T, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * (q @ np.swapaxes(k, -1, -2))
    if bias is not None:
        s = s + bias
    s = np.where(visible(lead, T, S, keep, kpm, causal), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0.0, m))
    z = e.sum(axis=-1, keepdims=True)
    P = np.where(dead, 0.0, e / np.where(dead, 1.0, z))
    lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1.0, z)))[..., 0]
    Pd = P if Z is None else P * Z
    return Pd @ v, lse, P


def np_backward(G, q, k, v, Z=None, scale=None, **masks):
    """dq, dk, dv from dS = P (dP - rowsum(P dP)), dP = Z * G v^T (no Jacobian needed)."""
    q, k, v, G = (np.asarray(a, np.float64) for a in (q, k, v, G))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    _, _, P = np_forward(q, k, v, scale=scale, **masks)
    Pd = P if Z is None else P * Z
    dP = G @ np.swapaxes(v, -1, -2)
    if Z is not None:
        dP = dP * Z
    dS = P * (dP - (P * dP).sum(-1, keepdims=True))
    return scale * dS @ k, scale * np.swapaxes(dS, -1, -2) @ q, np.swapaxes(Pd, -1, -2) @ G


def qkv(lead, T, S, DK=5, DV=4, dtype=np.float64, seed=0):
    r = rng(seed)
    return tuple(r.standard_normal(lead + (n, d)).astype(dtype)
                 for n, d in ((T, DK), (S, DK), (S, DV)))


def every_row_sees_a_key(lead, T, S, keep=None, kpm=None, causal=0):
    return visible(lead, T, S, keep, kpm, causal).any(axis=-1).all()


# ------------------------------------------------------------------ causal alignments

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("T,S", [(5, 9), (9, 5), (7, 7), (1, 6), (6, 1), (13, 40), (40, 13)])
@pytest.mark.parametrize("causal", ["top_left", "bottom_right", True])
def test_causal_alignments_match_numpy(impl, T, S, causal):
    c = {"top_left": 1, True: 1, "bottom_right": 2}[causal]
    q, k, v = qkv((2, 3), T, S, seed=T * S)
    G = rng(1).standard_normal((2, 3, T, 4))
    out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True, implementation=impl)
    want, want_lse, _ = np_forward(q, k, v, causal=c)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isinf(lse), np.isinf(want_lse))
    np.testing.assert_allclose(lse[np.isfinite(lse)], want_lse[np.isfinite(want_lse)], rtol=1e-12)
    got = sdpa_bwd(G, q, k, v, is_causal=causal, out=out, lse=lse, implementation=impl)
    for g, w in zip(got, np_backward(G, q, k, v, causal=c)):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


def test_bottom_right_with_fewer_keys_than_queries_gives_zero_rows():
    # T = 6 queries, S = 2 keys, bottom-right: rows 0..3 see no key at all
    q, k, v = qkv((1,), 6, 2, seed=3)
    for impl in IMPLS:
        out, lse = sdpa(q, k, v, is_causal="bottom_right", return_lse=True, implementation=impl)
        assert np.all(out[:, :4] == 0.0) and np.all(lse[:, :4] == -np.inf)
        assert np.all(np.isfinite(out)) and np.all(np.abs(out[:, 4:]) > 0)
        dq, dk, dv = sdpa_bwd(np.ones((1, 6, 4)), q, k, v, is_causal="bottom_right",
                              implementation=impl)
        assert np.all(dq[:, :4] == 0.0) and np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))


# ------------------------------------------------------------------ every mask kind

def random_masks(lead, T, S, r, kind):
    """(keep, bias, kpm) of one kind, leaving every row at least one visible key."""
    keep = bias = kpm = None
    if kind == "bool_full":
        keep = r.random(lead + (T, S)) > 0.4
    elif kind == "bool_2d":
        keep = r.random((T, S)) > 0.4
    elif kind == "bool_heads":  # broadcast over the batch, one mask per head
        keep = r.random((1,) + lead[1:] + (T, S)) > 0.4
    elif kind == "bool_rows":  # (..., T, 1): whole rows; and (..., 1, S) columns
        keep = (r.random(lead[:1] + (1,) * (len(lead) - 1) + (1, S)) > 0.3)
    elif kind == "float":
        bias = r.standard_normal(lead + (T, S))
        bias[r.random(bias.shape) < 0.3] = -np.inf
    elif kind == "float_2d":
        bias = r.standard_normal((T, S))
    elif kind == "key_padding":
        kpm = r.random(lead[:1] + (S,)) > 0.4
    elif kind == "all":
        keep = r.random((T, S)) > 0.3
        bias = r.standard_normal((1,) + lead[1:] + (1, S))
        kpm = r.random(lead[:1] + (S,)) > 0.3
    if keep is not None:
        keep = keep | (np.arange(S) == 0)  # key 0 visible to every row
    if bias is not None:
        bias[..., 0] = 0.0
    if kpm is not None:
        kpm[..., 0] = True
    return keep, bias, kpm


def masks_of(keep, bias, kpm):
    """The functional's keyword arguments for (keep, bias, kpm)."""
    return dict(attn_mask=keep if bias is None else (bias if keep is None else None),
                key_padding_mask=kpm)


def combine(keep, bias):
    """keep & bias as one float mask (what torch gets when both are given)."""
    if keep is None:
        return bias
    if bias is None:
        return keep
    return np.where(keep, bias, -np.inf)


KINDS = ["bool_full", "bool_2d", "bool_heads", "bool_rows", "float", "float_2d", "key_padding",
         "all"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [0, 1, 2])
def test_masks_match_numpy(impl, kind, causal):
    lead, T, S = (2, 3), 11, 17
    r = rng(hash(kind) % 1000 + causal)
    keep, bias, kpm = random_masks(lead, T, S, r, kind)
    q, k, v = qkv(lead, T, S, seed=5)
    G = r.standard_normal(lead + (T, 4))
    mask = combine(keep, bias)
    kw = dict(attn_mask=mask, key_padding_mask=kpm, is_causal=[False, True, "bottom_right"][causal],
              implementation=impl)
    out, lse = sdpa(q, k, v, return_lse=True, **kw)
    fb = np.where(np.isinf(mask), -np.inf, mask) if mask is not None and mask.dtype != bool else None
    ref = dict(keep=mask if mask is not None and mask.dtype == bool else None, bias=fb, kpm=kpm,
               causal=causal)
    want, want_lse, _ = np_forward(q, k, v, **ref)
    np.testing.assert_allclose(out, want, rtol=1e-11, atol=1e-12)
    finite = np.isfinite(want_lse)
    np.testing.assert_array_equal(np.isfinite(lse), finite)
    np.testing.assert_allclose(lse[finite], want_lse[finite], rtol=1e-11)
    got = sdpa_bwd(G, q, k, v, out=out, lse=lse, **kw)
    for name, g, w in zip("qkv", got, np_backward(G, q, k, v, **ref)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-11, err_msg=f"d{name}")


def torch_sdpa(torch, q, k, v, G, mask=None, kpm=None, causal=0, scale=None, Z=None):
    """torch's F.scaled_dot_product_attention (or, with a dropout mask Z, the same softmax
    with Z applied by hand) and its autograd gradients."""
    tq, tk, tv = (to_torch(torch, a) for a in (q, k, v))
    T, S = q.shape[-2], k.shape[-2]
    tm = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask))
    extra = []
    if causal == 2 or (causal == 1 and (tm is not None or kpm is not None)):
        extra.append(torch.ones(T, S, dtype=torch.bool).tril(S - T if causal == 2 else 0))
    if kpm is not None:
        extra.append(torch.from_numpy(kpm).reshape(kpm.shape[0], *([1] * (q.ndim - 3)), 1, S))
    for e in extra:
        tm = e if tm is None else (tm & e if tm.dtype == torch.bool
                                   else tm.masked_fill(~e, float("-inf")))
    if Z is None:
        out = torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, attn_mask=tm, is_causal=causal == 1 and tm is None, scale=scale)
    else:
        sc = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        s = tq @ tk.transpose(-1, -2) * sc
        if causal == 1 and tm is None:
            tm = torch.ones(T, S, dtype=torch.bool).tril()
        if tm is not None:
            s = s.masked_fill(~tm, float("-inf")) if tm.dtype == torch.bool else s + tm
        out = (torch.softmax(s, -1) * torch.from_numpy(Z)) @ tv
    (out * torch.from_numpy(np.ascontiguousarray(G))).sum().backward()
    return out.detach().numpy(), (tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [0, 1, 2])
@pytest.mark.parametrize("T,S", [(9, 14), (14, 9)])
def test_masks_match_torch(torch, dtype, kind, causal, T, S):
    lead = (2, 3)
    r = rng(len(kind) * 7 + causal + T)
    keep, bias, kpm = random_masks(lead, T, S, r, kind)
    if causal == 2 and T > S:  # rows with no key are NaN in torch: keep them all visible
        kpm = None if kpm is None else np.ones_like(kpm)
        causal = 1
    mask = combine(keep, bias)
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(dtype)
    if not every_row_sees_a_key(lead, T, S, None if mask is None or mask.dtype != bool else mask,
                                kpm, causal):
        pytest.skip("a row with no visible key is NaN in torch")
    q, k, v = qkv(lead, T, S, dtype=dtype, seed=7)
    G = r.standard_normal(lead + (T, 4)).astype(dtype)
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, mask, kpm, causal)
    kw = dict(attn_mask=mask, key_padding_mask=kpm, is_causal=[False, True, "bottom_right"][causal])
    out, lse = sdpa(q, k, v, return_lse=True, **kw)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, want_out, **tol(dtype))
    for name, g, w in zip("qkv", sdpa_bwd(G, q, k, v, out=out, lse=lse, **kw), want_grads):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **tol(dtype), err_msg=f"d{name}")


@pytest.mark.parametrize("kind", ["bool_full", "float", "key_padding", "all"])
@pytest.mark.parametrize("causal", [0, 2])
def test_masks_finite_differences(kind, causal):
    lead, T, S = (2, 2), 3, 4
    keep, bias, kpm = random_masks(lead, T, S, rng(11), kind)
    mask = combine(keep, bias)
    q, k, v = qkv(lead, T, S, DK=3, DV=2, seed=12)
    kw = dict(attn_mask=mask, key_padding_mask=kpm, is_causal=[False, True, "bottom_right"][causal])

    def grads(G):
        dq, dk, dv = sdpa_bwd(G, q, k, v, **kw)
        return {"q": dq, "k": dk, "v": dv}

    check_grads(lambda: sdpa(q, k, v, **kw), grads, {"q": q, "k": k, "v": v})


# ------------------------------------------------------------------ fully masked rows

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_masked_rows_give_zeros_and_zero_gradients(impl, dtype):
    lead, T, S = (2, 2), 6, 8
    q, k, v = qkv(lead, T, S, dtype=dtype, seed=13)
    keep = np.ones(lead + (T, S), bool)
    keep[0, 1, 2] = False                # one row, by the boolean mask
    bias = np.zeros(lead + (T, S), dtype)
    bias[1, 0, 4] = -np.inf              # one row, by a float mask of -inf
    kpm = np.ones((2, S), bool)
    kpm[1] = False                       # a whole batch: every key is padding
    kpm[0, :3] = False
    G = rng(14).standard_normal(lead + (T, 4)).astype(dtype)
    for kw in (dict(attn_mask=keep), dict(attn_mask=bias), dict(key_padding_mask=kpm),
               dict(attn_mask=keep, key_padding_mask=kpm, is_causal=True)):
        out, lse = sdpa(q, k, v, return_lse=True, implementation=impl, **kw)
        want, want_lse, _ = np_forward(
            q, k, v, keep=kw.get("attn_mask") if kw.get("attn_mask") is keep else None,
            bias=kw.get("attn_mask") if kw.get("attn_mask") is bias else None,
            kpm=kw.get("key_padding_mask"), causal=int(kw.get("is_causal", 0)))
        dead = np.isinf(want_lse)
        assert dead.any()
        assert np.all(np.isfinite(out)) and np.all(out[dead] == 0.0)
        assert np.all(lse[dead] == -np.inf) and np.all(np.isfinite(lse[~dead]))
        np.testing.assert_allclose(out, want, **tol(dtype))
        dq, dk, dv = sdpa_bwd(G, q, k, v, out=out, lse=lse, implementation=impl, **kw)
        assert all(np.all(np.isfinite(g)) for g in (dq, dk, dv))
        assert np.all(dq[dead] == 0.0)
        for g, w in zip((dq, dk, dv), np_backward(G, q, k, v, keep=kw.get("attn_mask") if
                                                  kw.get("attn_mask") is keep else None,
                                                  bias=kw.get("attn_mask") if kw.get("attn_mask")
                                                  is bias else None,
                                                  kpm=kw.get("key_padding_mask"),
                                                  causal=int(kw.get("is_causal", 0)))):
            np.testing.assert_allclose(g, w, **tol(dtype))
    # keys that are padding in every row get exactly zero gradient
    dq, dk, dv = sdpa_bwd(G, q, k, v, key_padding_mask=kpm, implementation=impl)
    assert np.all(dk[1] == 0.0) and np.all(dv[1] == 0.0) and np.all(dk[0, :, :3] == 0.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_masked_keys_are_ignored_exactly(impl):
    q, k, v = qkv((2,), 5, 7, seed=15)
    keep = rng(16).random((5, 7)) > 0.5
    keep[:, 0] = True
    keep[:, 3] = False                    # key 3: masked for every query
    kpm = np.ones((2, 7), bool)
    kpm[:, 5] = False                     # key 5: padding
    out = sdpa(q, k, v, attn_mask=keep, key_padding_mask=kpm, implementation=impl)
    k2, v2 = k.copy(), v.copy()
    k2[:, [3, 5]] = 1e6                   # huge scores there would dominate if not masked
    v2[:, [3, 5]] = 1e30
    np.testing.assert_array_equal(
        sdpa(q, k2, v2, attn_mask=keep, key_padding_mask=kpm, implementation=impl), out)
    dq, dk, dv = sdpa_bwd(np.ones((2, 5, 4)), q, k2, v2, attn_mask=keep, key_padding_mask=kpm,
                          implementation=impl)
    assert np.all(dk[:, [3, 5]] == 0.0) and np.all(dv[:, [3, 5]] == 0.0)
    assert np.all(np.isfinite(dq))


# ------------------------------------------------------------------ dropout

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [0, 1])
def test_dropout_matches_torch_fed_the_same_mask(torch, impl, dtype, causal):
    lead, T, S, p, seed = (2, 3), 13, 21, 0.3, 1234
    q, k, v = qkv(lead, T, S, dtype=dtype, seed=17)
    G = rng(18).standard_normal(lead + (T, 4)).astype(dtype)
    kpm = np.ones((2, S), bool)
    kpm[1, -4:] = False
    Z = F.dropout_mask(lead + (T, S), p, seed=seed, dtype=dtype)  # the dropout family's mask
    assert 0.5 < (Z > 0).mean() < 0.9
    want_out, want_grads = torch_sdpa(torch, q, k, v, G, None, kpm, causal, Z=Z)
    kw = dict(key_padding_mask=kpm, is_causal=bool(causal), dropout_p=p, seed=seed,
              implementation=impl)
    out, lse = sdpa(q, k, v, return_lse=True, **kw)
    np.testing.assert_allclose(out, want_out, **tol(dtype))
    grads = sdpa_bwd(G, q, k, v, out=out, lse=lse, **kw)
    for name, g, w in zip("qkv", grads, want_grads):
        np.testing.assert_allclose(g, w, **tol(dtype), err_msg=f"d{name}")
    # the NumPy reference agrees too, and the backward without out/lse recomputes the same
    want_np = np_forward(q, k, v, kpm=kpm, causal=causal, Z=Z)[0]
    np.testing.assert_allclose(out, want_np, **tol(dtype))
    for g, w in zip(sdpa_bwd(G, q, k, v, **kw), grads):
        np.testing.assert_array_equal(g, w)


def test_dropout_is_seeded_and_reproducible():
    q, k, v = qkv((2, 2), 16, 16, seed=19)
    a = sdpa(q, k, v, dropout_p=0.5, seed=7)
    assert np.array_equal(a, sdpa(q, k, v, dropout_p=0.5, seed=7))
    assert not np.allclose(a, sdpa(q, k, v, dropout_p=0.5, seed=8))
    assert not np.allclose(a, sdpa(q, k, v))
    # same mask for float32 and float64, and for the tiled and reference kernels
    b = sdpa(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), dropout_p=0.5,
             seed=7)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sdpa(q, k, v, dropout_p=0.5, seed=7, implementation="reference"),
                               a, rtol=1e-12, atol=1e-12)
    # p = 0 with a seed is no dropout; p = 1 drops everything
    assert np.array_equal(sdpa(q, k, v, dropout_p=0.0, seed=3), sdpa(q, k, v))
    for impl in IMPLS:
        out = sdpa(q, k, v, dropout_p=1.0, seed=3, implementation=impl)
        assert np.all(out == 0.0)
        assert all(np.all(g == 0.0) for g in sdpa_bwd(np.ones_like(out), q, k, v, dropout_p=1.0,
                                                      seed=3, implementation=impl))


def test_dropout_finite_differences():
    q, k, v = qkv((2,), 4, 5, DK=3, DV=2, seed=20)
    kw = dict(dropout_p=0.4, seed=99, is_causal=True)

    def grads(G):
        dq, dk, dv = sdpa_bwd(G, q, k, v, **kw)
        return {"q": dq, "k": dk, "v": dv}

    check_grads(lambda: sdpa(q, k, v, **kw), grads, {"q": q, "k": k, "v": v})


def test_coursework_masks_from_the_data_module_are_inverted():
    # transformer_c.data builds coursework masks (True = masked); here True = attend
    from transformer_c.data import causal_mask, pad_mask
    q, k, v = qkv((3,), 6, 6, seed=21)
    lengths = np.array([6, 4, 1])
    want = sdpa(q, k, v, is_causal=True, key_padding_mask=np.arange(6) < lengths[:, None])
    got = sdpa(q, k, v, attn_mask=~causal_mask(6), key_padding_mask=~pad_mask(q, lengths))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, np_forward(q, k, v, kpm=np.arange(6) < lengths[:, None],
                                               causal=1)[0], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ bad input

def test_bad_masks_and_options_name_the_argument():
    q, k, v = qkv((2, 3), 4, 5)
    with pytest.raises(ValueError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.ones((3, 2, 3, 4, 5), bool))
    with pytest.raises(TypeError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.ones((4, 5), np.int64))
    with pytest.raises(TypeError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.full((4, 5), np.inf))
    with pytest.raises(ValueError, match="attn_mask"):
        sdpa(q, k, v, attn_mask=np.full((4, 5), np.nan))
    with pytest.raises(ValueError, match="key_padding_mask"):
        sdpa(q, k, v, key_padding_mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        sdpa(q, k, v, key_padding_mask=np.ones((3, 5), bool))
    with pytest.raises(TypeError, match="key_padding_mask"):
        sdpa(q, k, v, key_padding_mask=np.ones((2, 5)))
    with pytest.raises(ValueError, match="is_causal"):
        sdpa(q, k, v, is_causal="diagonal")
    with pytest.raises(ValueError, match="is_causal"):
        sdpa(q, k, v, is_causal=2)
    with pytest.raises(ValueError, match="dropout_p"):
        sdpa(q, k, v, dropout_p=1.5, seed=0)
    with pytest.raises(TypeError, match="dropout_p"):
        sdpa(q, k, v, dropout_p="0.1", seed=0)
    with pytest.raises(ValueError, match="seed"):
        sdpa(q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match="seed"):
        sdpa(q, k, v, dropout_p=0.1, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        sdpa(q, k, v, dropout_p=0.1, seed=1.5)
    with pytest.raises(ValueError, match="implementation"):
        sdpa(q, k, v, implementation="fast")
    with pytest.raises(ValueError, match="seed"):
        sdpa_bwd(np.zeros((2, 3, 4, 4)), q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match="attn_mask"):
        sdpa_bwd(np.zeros((2, 3, 4, 4)), q, k, v, attn_mask=np.ones((5, 4), bool))
