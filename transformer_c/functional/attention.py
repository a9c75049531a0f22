"""Scaled dot-product attention (C: csrc/kernels/attention.c).

MASK CONVENTION: every boolean mask here means True = ATTEND (take part in the softmax),
False = masked out, exactly as ``torch.nn.functional.scaled_dot_product_attention``. This is
the OPPOSITE of the CMU-style (and torch.nn.MultiheadAttention) convention where True marks
the positions to hide: pass ``~mask`` when porting such code. ``key_padding_mask`` follows
the same rule: True = a real key, False = padding. transformer_c.data.causal_mask and
pad_mask build coursework-convention masks (True = masked): pass ``~causal_mask(T)`` and
``~pad_mask(x, lengths)`` here.

Two kernels compute the same thing:
- the tiled ("flash") kernel, the default: online softmax over key tiles, only the
  per-row logsumexp is kept for the backward, so the extra memory is O(T) per batch-head
  instead of O(T * S); tiles hidden by causal masking are skipped (a causal pass does
  about half the work of a full one);
- the materialised reference (``implementation="reference"``), which builds the (T, S)
  scores of each batch-head in full: what the tiled kernel is tested against.

Causal masking: ``is_causal=True`` (or ``"top_left"``) is torch's ``is_causal``: query i sees
keys j <= i, also when T != S. ``is_causal="bottom_right"`` aligns the last query with the
last key (query i sees keys j <= i + S - T): what decoding against a KV cache needs.

A query row whose keys are all masked gets an output of zeros (not NaN, as torch gives) and
zero gradients; its logsumexp is -inf.

Block-sparse attention (``sparse=sparse_layout(block, window, stride, global_blocks)``): a
structural mask, like causal masking, that the tiled kernel turns into skipped work. Query
position p (row i; i + S - T with ``is_causal="bottom_right"``) in block qb = p // block sees
key j in block kb = j // block iff |qb - kb| < window, or stride > 0 and kb % stride ==
stride - 1, or kb < global_blocks, or qb < global_blocks. The forward visits only the runs
of visible key blocks of each block of query rows, the backward only the query blocks that
see a key tile; the result equals dense attention under ``attn_mask=sparse_mask(layout, T,
S)`` (combined with the call's other masks).
"""
import math
from collections import namedtuple

import numpy as np

from .. import _C
from ._util import (as_bool_mask, as_float, as_int, as_real, as_seed, check_inout, check_shape,
                    native, same_dtype)

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward",
           "attention_weights", "attention_decode", "SparseLayout", "sparse_layout",
           "sparse_mask", "block_sparse_attention"]

_CAUSAL = {False: 0, True: 1, "none": 0, "top_left": 1, "bottom_right": 2}


class SparseLayout(namedtuple("SparseLayout", "block window stride global_blocks")):
    """A block-sparse attention pattern (C: tc_attention_sparse): positions cut into blocks
    of ``block`` tokens; query block qb sees key block kb iff |qb - kb| < window (local),
    or stride > 0 and kb % stride == stride - 1 (strided), or kb < global_blocks or
    qb < global_blocks (global). Build it with :func:`sparse_layout`."""
    __slots__ = ()

    def blocks(self, T, S=None):
        """The block layout: (ceil(T/block), ceil(S/block)) bool, [qb, kb] = True iff key
        block kb is visible to query block qb (computed in C; S defaults to T)."""
        S = T if S is None else S
        T, S = as_int(T, "T"), as_int(S, "S")
        b = self.block
        return _C.attention_sparse_blocks(tuple(self), -(-T // b), -(-S // b))

    def keys_per_query(self, T):
        """The mean number of keys a query of a causal length-T sequence sees (a float):
        the work the kernel does relative to dense causal attention is this over (T+1)/2."""
        m = sparse_mask(self, T, T) & np.tri(T, dtype=bool)
        return float(m.sum()) / T if T else 0.0


def sparse_layout(block, window, stride=0, global_blocks=0):
    """A block-sparse pattern (:class:`SparseLayout`), checked: block >= 1 tokens per block,
    window >= 1 (a query sees its own block and window - 1 blocks on each side), stride >= 0
    (0: no strided blocks; else every key block kb with kb % stride == stride - 1 is seen
    by every query), global_blocks >= 0 (the first global_blocks blocks see, and are seen
    by, every position). The seed's "every 4th token beyond a window" is
    ``sparse_layout(block=1, window=w, stride=4)``; window and stride ~ sqrt(T) / block
    make the work O(T sqrt(T)) (README, "Block-sparse attention")."""
    vals = []
    for name, v, lo in (("block", block, 1), ("window", window, 1), ("stride", stride, 0),
                        ("global_blocks", global_blocks, 0)):
        v = as_int(v, name)
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
        vals.append(v)
    return SparseLayout(*vals)


def _sparse(sparse):
    """None, or the (block, window, stride, global) tuple the C kernels take."""
    if sparse is None:
        return None
    if not isinstance(sparse, SparseLayout):
        raise TypeError(f"sparse must be None or a SparseLayout (functional.sparse_layout), "
                        f"got {type(sparse).__name__}")
    return tuple(sparse)


def sparse_mask(layout, T, S=None, is_causal=False):
    """The boolean mask (T, S) equivalent to ``layout`` (True = attend), computed in C by the
    kernels' own rule: attention with ``sparse=layout`` equals dense attention with
    ``attn_mask=sparse_mask(layout, T, S, is_causal)`` and the same is_causal. is_causal
    only places the queries: with "bottom_right" query i is at position i + S - T
    (causality itself is not part of the mask). S defaults to T."""
    sp = _sparse(layout)
    if sp is None:
        raise TypeError("layout must be a SparseLayout (functional.sparse_layout), got None")
    S = T if S is None else S
    return _C.attention_sparse_mask(sp, as_int(T, "T"), as_int(S, "S"), _causal(is_causal))


def _check_qkv(q, k, v):
    """q, k, v as arrays of one float dtype with consistent shapes; returns them and
    (lead, T, S, DK, DV)."""
    q = as_float(q, "q")
    k = same_dtype(q, "q", k, "k")
    v = same_dtype(q, "q", v, "v")
    for a, name, dims in ((q, "q", "(..., T, DK)"), (k, "k", "(..., S, DK)"),
                          (v, "v", "(..., S, DV)")):
        if a.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions {dims}, got shape {a.shape}")
    lead = q.shape[:-2]
    if k.shape[:-2] != lead and not _grouped(lead, k.shape[:-2]):
        raise ValueError(f"k must have the leading dimensions of q {lead} (or, grouped-query "
                         f"attention, a divisor of its heads {lead[-1:]} as dim -3), got "
                         f"shape {k.shape}")
    if v.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"v must have the leading dimensions of k {k.shape[:-2]}, got shape "
                         f"{v.shape}")
    T, DK = q.shape[-2:]
    S = k.shape[-2]
    if k.shape[-1] != DK:
        raise ValueError(f"k must have last dimension DK = {DK} (the last dim of q), "
                         f"got shape {k.shape}")
    if v.shape[-2] != S:
        raise ValueError(f"v must have S = {S} keys (k.shape[-2]) along axis -2, "
                         f"got shape {v.shape}")
    return q, k, v, (lead, T, S, DK, v.shape[-1])


def _grouped(lead, kv_lead):
    """Whether k's leading dims kv_lead group q's lead: the same but the heads (dim -3),
    NKV of them, a divisor of q's NH (grouped-query attention; NKV = 1: multi-query)."""
    return (len(lead) >= 2 and len(kv_lead) == len(lead) and kv_lead[:-1] == lead[:-1] and
            kv_lead[-1] >= 1 and lead[-1] % kv_lead[-1] == 0)


def _kv_heads(k):
    """The flattened kv heads of k (..., S, D) as the C kernels see them (_bnh)."""
    return _bnh(k.shape[:-2])[1]


def _scale(scale, DK):
    """The softmax scale: 1/sqrt(DK) by default (1 when DK == 0, where every score is 0);
    any finite real number otherwise."""
    if scale is None:
        return 1.0 / math.sqrt(DK) if DK > 0 else 1.0
    return as_real(scale, "scale")


def _causal(is_causal):
    """0 (none), 1 (top-left) or 2 (bottom-right) for the C kernel."""
    key = is_causal.replace("-", "_") if isinstance(is_causal, str) else is_causal
    if isinstance(key, (bool, np.bool_, str)) and key in _CAUSAL:
        return _CAUSAL[bool(key) if isinstance(key, np.bool_) else key]
    raise ValueError(f"is_causal must be False, True, 'top_left' or 'bottom_right', "
                     f"got {is_causal!r}")


def _dropout(dropout_p, seed):
    """(dropout_p, seed) checked: p in [0, 1]; seed an int in [0, 2**64), required when
    p > 0 (the same seed makes the forward and the backward draw the same mask)."""
    p = as_real(dropout_p, "dropout_p", "probability")
    if seed is None:
        if p > 0.0:
            raise ValueError("seed is required when dropout_p > 0: the dropout mask is a pure "
                             "function of (seed, position), and the backward must be given "
                             "the forward's seed")
        return p, 0
    return p, as_seed(seed)


def _options(q, lead, T, S, DK, attn_mask, key_padding_mask, is_causal, dropout_p, scale,
             seed):
    """The C kernels' trailing arguments (keep, bias, key_padding, scale, causal, dropout_p,
    seed), checked, for q (lead + (T, DK)) against S keys."""
    keep, bias = _attn_mask(attn_mask, q, lead, T, S)
    kpm = _key_padding(key_padding_mask, lead, S)
    causal = _causal(is_causal)
    p, seed = _dropout(dropout_p, seed)
    return keep, bias, kpm, _scale(scale, DK), causal, p, seed


def _bnh(lead):
    """(B, NH) the C kernel sees for leading dims ``lead``: the first is the batch (the
    axis key_padding_mask indexes), the rest flattened into heads."""
    if len(lead) == 0:
        return 1, 1
    return lead[0], int(np.prod(lead[1:], dtype=np.int64))


def _attn_mask(attn_mask, q, lead, T, S):
    """attn_mask (bool, or float of q's dtype) broadcastable to lead + (T, S), as the
    (keep, bias) pair of 4-D arrays (mB, mH, mT, mS) the binding takes (1 = broadcast)."""
    if attn_mask is None:
        return None, None
    m = native(np.asarray(attn_mask))
    if m.dtype == np.bool_:
        pass
    elif m.dtype in (np.float32, np.float64):
        if m.dtype != q.dtype:
            raise TypeError(f"attn_mask (a float mask) has dtype {m.dtype} but q has {q.dtype}: "
                            "transformer_c never mixes dtypes in one call")
    else:
        raise TypeError(f"attn_mask must be a boolean (True = attend) or float (added to the "
                        f"scores) array, got dtype {m.dtype}")
    full = lead + (T, S)
    if m.ndim > len(full):
        raise ValueError(f"attn_mask must be broadcastable to {full} (lead + (T, S)), "
                         f"got shape {m.shape}")
    m = m.reshape((1,) * (len(full) - m.ndim) + m.shape)
    if any(d != 1 and d != f for d, f in zip(m.shape, full)):
        raise ValueError(f"attn_mask must be broadcastable to {full} (lead + (T, S)), "
                         f"got shape {m.shape}")
    if m.dtype != np.bool_ and (np.isnan(m).any() or np.isposinf(m).any()):
        raise ValueError("attn_mask (a float mask) must hold finite values or -inf, "
                         "got nan or +inf")
    ml = m.shape[:len(lead)]
    if len(lead) == 0:
        m4 = m.reshape((1, 1) + m.shape)
    elif len(lead) == 1:
        m4 = m.reshape((ml[0], 1) + m.shape[1:])
    else:
        rest = ml[1:]
        if any(d != 1 for d in rest) and rest != lead[1:]:
            m = np.broadcast_to(m, (ml[0],) + lead[1:] + m.shape[-2:])
            rest = lead[1:]
        mh = int(np.prod(rest, dtype=np.int64)) if any(d != 1 for d in rest) else 1
        m4 = m.reshape((ml[0], mh) + m.shape[-2:])
    return (m4, None) if m4.dtype == np.bool_ else (None, m4)


def _key_padding(key_padding_mask, lead, S):
    """key_padding_mask (True = real key) of shape (B, S), B = lead[0] ((S,) when q has no
    leading dims), as the (B, S) bool array the binding takes."""
    if key_padding_mask is None:
        return None
    m = as_bool_mask(key_padding_mask, "key_padding_mask", "True = real key, False = padding")
    want = (lead[0], S) if lead else (S,)
    if m.shape != want:
        raise ValueError(f"key_padding_mask must have shape {want} (the batch of q, then S), "
                         f"got {m.shape}")
    return m.reshape(_bnh(lead)[0], S)


def _impl(implementation, name):
    if implementation == "tiled":
        return getattr(_C, name)
    if implementation == "reference":
        return getattr(_C, name + "_ref")
    raise ValueError(f"implementation must be 'tiled' or 'reference', got {implementation!r}")


def scaled_dot_product_attention(q, k, v, attn_mask=None, key_padding_mask=None,
                                 is_causal=False, dropout_p=0.0, scale=None, seed=None, *,
                                 return_lse=False, return_weights=False,
                                 implementation="tiled", sparse=None):
    """softmax(scale * q @ k^T + masks) @ v, computed in C; torch's
    ``F.scaled_dot_product_attention`` semantics.

    q: (..., T, DK), k: (..., S, DK), v: (..., S, DV), float32 or float64 (all one dtype),
    with identical leading dims (any number, including none); DK may differ from DV and T
    from S (cross-attention). Grouped-query attention: q (..., NH, T, DK) with k, v of
    (..., NKV, S, D), NKV a divisor of NH (1: multi-query), query head h reading kv head
    h // (NH // NKV) (torch's ``enable_gqa=True``, = repeat_interleave of k and v); the
    backward sums the gradients of the query heads that share a kv head.

    attn_mask: None, or an array broadcastable to (..., T, S):
      - boolean: **True = ATTEND, False = masked out** (torch SDPA's convention; the
        CMU-style and torch.nn.MultiheadAttention masks are the opposite: pass ``~mask``);
      - float (q's dtype): added to the scaled scores (finite values or -inf).
    key_padding_mask: None, or boolean (B, S) with B = q.shape[0] ((S,) for 2-D q),
      broadcast over the other leading dims: **True = real key, False = padding**.
    is_causal: False; True or "top_left" (torch's is_causal: query i sees keys j <= i);
      "bottom_right" (query i sees keys j <= i + S - T, as when decoding with a KV cache).
      May be combined with the masks.
    dropout_p: probability of dropping an attention probability (kept ones scaled by
      1/(1-p)); seed: int in [0, 2**64), required when dropout_p > 0. The mask is that of
      ``dropout_mask((B, NH, T, S), dropout_p, seed=seed)``, (B, NH) being the leading dims
      as (q.shape[0], the product of the rest); the backward with the same seed reuses it.
    scale: defaults to 1/sqrt(DK).
    A query whose keys are all masked gets a zero output row (torch gives NaN) and lse -inf.

    Returns out: (..., T, DV); with return_lse also lse: (..., T), the per-row logsumexp of
    the scaled, masked scores (before dropout), which the backward can reuse.
    With return_weights also weights: (..., T, S), the attention probabilities
    softmax(scale * q k^T + masks) with every mask applied (masked keys exactly 0, a row
    with every key masked all 0), recomputed in C (``_C.attention_probs``) from q, k and
    the forward's logsumexp through the kernels' own mask function. With dropout they are
    the PRE-dropout probabilities (the dropout mask is not applied). The result comes last:
    (out, weights) or (out, lse, weights). Only this returned array is O(T * S); out is
    bitwise the same with or without it.
    implementation: "tiled" (default, O(T) memory) or "reference" (materialised).
    sparse: None (dense) or a :class:`SparseLayout` (``sparse_layout(...)``): block-sparse
      attention, the tiled kernel skipping the blocks the pattern hides; equal to dense
      attention with ``attn_mask=sparse_mask(sparse, T, S, is_causal)`` added.
    """
    q, k, v, (lead, T, S, DK, DV) = _check_qkv(q, k, v)
    opts = _options(q, lead, T, S, DK, attn_mask, key_padding_mask, is_causal, dropout_p,
                    scale, seed) + (_sparse(sparse),)
    fn = _impl(implementation, "attention_forward")
    B, NH = _bnh(lead)
    NKV = _kv_heads(k)
    out, lse = fn(q.reshape(B, NH, T, DK), k.reshape(B, NKV, S, DK), v.reshape(B, NKV, S, DV),
                  *opts)
    res = (out.reshape(lead + (T, DV)),)
    if return_lse:
        res += (lse.reshape(lead + (T,)),)
    if return_weights:
        keep, bias, kpm, scl, causal = opts[:5]
        w = _C.attention_probs(np.ascontiguousarray(q.reshape(B, NH, T, DK)),
                               np.ascontiguousarray(k.reshape(B, NKV, S, DK)), lse, keep, bias,
                               kpm, scl, causal, opts[-1])
        res += (w.reshape(lead + (T, S)),)
    return res if len(res) > 1 else res[0]


def attention_weights(q, k, lse, attn_mask=None, key_padding_mask=None, is_causal=False,
                      scale=None, *, sparse=None):
    """The attention probabilities of a finished forward, in C (``_C.attention_probs``):
    softmax(scale * q k^T + masks), recomputed from q, k and the forward's logsumexp through
    the kernels' mask function (masked keys exactly 0, a fully masked row all 0; before
    any dropout).

    q: (..., T, DK), k: (..., S, DK), lse: (..., T) from
    ``scaled_dot_product_attention(..., return_lse=True)`` called with the same attn_mask,
    key_padding_mask, is_causal, scale and sparse (conventions as there). Returns
    (..., T, S).
    """
    q = as_float(q, "q")
    k = same_dtype(q, "q", k, "k")
    q, k, _, (lead, T, S, DK, _) = _check_qkv(q, k, k[..., :0])
    lse = same_dtype(q, "q", lse, "lse")
    check_shape(lse, "lse", lead + (T,), "the forward's logsumexp")
    keep, bias, kpm, scl, causal, _, _ = _options(q, lead, T, S, DK, attn_mask,
                                                  key_padding_mask, is_causal, 0.0, scale,
                                                  None)
    B, NH = _bnh(lead)
    w = _C.attention_probs(np.ascontiguousarray(q.reshape(B, NH, T, DK)),
                           np.ascontiguousarray(k.reshape(B, _kv_heads(k), S, DK)),
                           lse.reshape(B, NH, T), keep, bias, kpm, scl, causal,
                           _sparse(sparse))
    return w.reshape(lead + (T, S))


def scaled_dot_product_attention_backward(grad_output, q, k, v, attn_mask=None,
                                          key_padding_mask=None, is_causal=False,
                                          dropout_p=0.0, scale=None, seed=None, *, out=None,
                                          lse=None, implementation="tiled", sparse=None):
    """Gradients of scaled_dot_product_attention(q, k, v, attn_mask, key_padding_mask,
    is_causal, dropout_p, scale, seed, sparse=sparse): pass the forward's arguments (the
    same seed regenerates the same dropout mask). Masks are constants: no gradient.

    grad_output: (..., T, DV); q: (..., T, DK), k: (..., S, DK), v: (..., S, DV).
    out: (..., T, DV) and lse: (..., T) are the forward's results (``return_lse=True``);
    when either is missing the forward runs first (in C).
    Returns (dq (..., T, DK), dk (..., S, DK), dv (..., S, DV)) in q's dtype.
    """
    q, k, v, (lead, T, S, DK, DV) = _check_qkv(q, k, v)
    grad_output = same_dtype(q, "q", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", lead + (T, DV), "the output's")
    opts = _options(q, lead, T, S, DK, attn_mask, key_padding_mask, is_causal, dropout_p,
                    scale, seed) + (_sparse(sparse),)
    fwd = _impl(implementation, "attention_forward")
    bwd = _impl(implementation, "attention_backward")
    B, NH = _bnh(lead)
    NKV = _kv_heads(k)
    q4, k4, v4 = q.reshape(B, NH, T, DK), k.reshape(B, NKV, S, DK), v.reshape(B, NKV, S, DV)
    if out is None or lse is None:
        out4, lse3 = fwd(q4, k4, v4, *opts)
    else:
        out = same_dtype(q, "q", out, "out")
        lse = same_dtype(q, "q", lse, "lse")
        check_shape(out, "out", lead + (T, DV), "the forward's output")
        check_shape(lse, "lse", lead + (T,), "the forward's logsumexp")
        out4, lse3 = out.reshape(B, NH, T, DV), lse.reshape(B, NH, T)
    dq, dk, dv = bwd(grad_output.reshape(B, NH, T, DV), q4, k4, v4, out4, lse3, *opts)
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)


def attention_decode(q, k, v, k_cache, v_cache, pos, *, key_padding_mask=None, scale=None,
                     sparse=None):
    """One decoding step against a KV cache, in C: the TN new positions' keys k and values
    v are written into k_cache / v_cache at positions [pos, pos + TN) (IN PLACE), then the
    new queries attend to every cached position [0, pos + TN), causally (query t is at
    position pos + t). Nothing of the past is recomputed: the result equals rows
    [pos, pos + TN) of the full causal attention over the whole sequence.

    q, k: (..., TN, DK), v: (..., TN, DV); k_cache: (..., Smax, DK), v_cache: (..., Smax, DV)
    with the leading dims of k (k, v, and the caches may hold NKV heads for q's NH, as in
    scaled_dot_product_attention: grouped-query attention, the cache NH / NKV times smaller), writeable C-contiguous arrays of q's dtype (e.g. from
    np.zeros), holding ``pos`` valid positions; 0 <= pos <= Smax - TN.
    key_padding_mask: None or boolean (B, pos + TN) or (B, Smax) (True = real position,
    False = padding, e.g. the left padding of a batch of prompts), B = q.shape[0].
    scale: defaults to 1/sqrt(DK). Returns out: (..., TN, DV). The caller advances pos by TN.
    sparse: None or a :class:`SparseLayout`: query t (at position pos + t) sees the keys the
    pattern gives that position, as in the training forward; only those blocks' scores
    are computed.
    """
    q, k, v, (lead, TN, TK, DK, DV) = _check_qkv(q, k, v)
    if TK != TN:
        raise ValueError(f"k must have TN = {TN} new positions (q.shape[-2]), got shape {k.shape}")
    kv_lead = k.shape[:-2]
    for name, c, D in (("k_cache", k_cache, DK), ("v_cache", v_cache, DV)):
        check_inout(c, name)
        if c.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {c.dtype} but q has {q.dtype}: transformer_c "
                            "never mixes dtypes in one call")
        if c.shape[:-2] != kv_lead or c.ndim < 2 or c.shape[-1] != D:
            raise ValueError(f"{name} must have shape {kv_lead + ('Smax', D)}, got {c.shape}")
        if not (c.flags.c_contiguous and c.flags.writeable):
            raise ValueError(f"{name} is updated in place, so it must be a writeable "
                             "C-contiguous array")
    Smax = k_cache.shape[-2]
    if v_cache.shape[-2] != Smax:
        raise ValueError(f"v_cache must have Smax = {Smax} positions (k_cache.shape[-2]), "
                         f"got shape {v_cache.shape}")
    pos = as_int(pos, "pos")
    if not 0 <= pos <= Smax - TN:
        raise ValueError(f"pos must be in [0, Smax - TN] = [0, {Smax - TN}], got {pos}")
    B, NH = _bnh(lead)
    kpm = None
    if key_padding_mask is not None:
        m = as_bool_mask(key_padding_mask, "key_padding_mask", "True = real position")
        want = [(lead[0], n) if lead else (n,) for n in (pos + TN, Smax)]
        if m.shape not in want:
            raise ValueError(f"key_padding_mask must have shape {want[0]} or {want[1]}, "
                             f"got {m.shape}")
        kpm = np.ascontiguousarray(m.reshape(B, -1)[:, :pos + TN])
    scale = _scale(scale, DK)
    NKV = _kv_heads(k)
    out = _C.attention_decode(q.reshape(B, NH, TN, DK), k.reshape(B, NKV, TN, DK),
                              v.reshape(B, NKV, TN, DV), k_cache.reshape(B, NKV, Smax, DK),
                              v_cache.reshape(B, NKV, Smax, DV), pos, kpm, scale,
                              _sparse(sparse))
    return out.reshape(lead + (TN, DV))


def block_sparse_attention(q, k, v, layout, key_padding_mask=None, is_causal=False,
                           dropout_p=0.0, scale=None, seed=None, **kw):
    """Block-sparse attention: ``scaled_dot_product_attention(q, k, v, ...,
    sparse=layout)`` (one kernel, not a second implementation). q: (..., T, DK), k:
    (..., S, DK), v: (..., S, DV); layout: a :class:`SparseLayout`. Returns out (..., T, DV)
    (plus lse / weights on request, keywords as there)."""
    if not isinstance(layout, SparseLayout):
        raise TypeError(f"layout must be a SparseLayout (functional.sparse_layout), "
                        f"got {type(layout).__name__}")
    return scaled_dot_product_attention(q, k, v, key_padding_mask=key_padding_mask,
                                        is_causal=is_causal, dropout_p=dropout_p, scale=scale,
                                        seed=seed, sparse=layout, **kw)
