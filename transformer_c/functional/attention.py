"""Scaled dot-product attention (C: csrc/attention.c).

The kernels here are the plain, materialised ones (the T x S scores of each batch-head
are built in full). Causal masking is top-left aligned, as torch's ``is_causal``: query i
sees keys j <= i, also when T != S. Masked scores are -inf before the softmax, i.e. they
get probability exactly 0 (what the coursework's "add -1e9 above the diagonal" computes)
and exactly zero gradient.
"""
import math
import numbers

import numpy as np

from .. import _C
from ._util import as_float, same_dtype

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


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
    if k.shape[:-2] != lead:
        raise ValueError(f"k must have the leading dimensions of q {lead}, got shape {k.shape}")
    if v.shape[:-2] != lead:
        raise ValueError(f"v must have the leading dimensions of q {lead}, got shape {v.shape}")
    T, DK = q.shape[-2:]
    S = k.shape[-2]
    if k.shape[-1] != DK:
        raise ValueError(f"k must have last dimension DK = {DK} (the last dim of q), "
                         f"got shape {k.shape}")
    if v.shape[-2] != S:
        raise ValueError(f"v must have S = {S} keys (k.shape[-2]) along axis -2, "
                         f"got shape {v.shape}")
    return q, k, v, (lead, T, S, DK, v.shape[-1])


def _scale(scale, DK):
    """The softmax scale: 1/sqrt(DK) by default (1 when DK == 0, where every score is 0);
    any finite real number otherwise."""
    if scale is None:
        return 1.0 / math.sqrt(DK) if DK > 0 else 1.0
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale}")
    return scale


def _bh(lead):
    return int(np.prod(lead, dtype=np.int64))


def scaled_dot_product_attention(q, k, v, *, is_causal=False, scale=None, return_lse=False):
    """softmax(scale * q @ k^T [causal mask]) @ v, computed in C.

    q: (..., T, DK), k: (..., S, DK), v: (..., S, DV), float32 or float64 (all one dtype),
    with identical leading dims (any number, including none: (T, DK) inputs); DK may differ
    from DV and T from S. is_causal: query i sees keys j <= i (top-left, as torch).
    scale: defaults to 1/sqrt(DK).
    Returns out: (..., T, DV), and with return_lse also lse: (..., T), the per-row
    logsumexp of the scaled, masked scores (what the backward needs).
    """
    q, k, v, (lead, T, S, DK, DV) = _check_qkv(q, k, v)
    scale = _scale(scale, DK)
    BH = _bh(lead)
    out, lse = _C.attention_forward_ref(q.reshape(BH, T, DK), k.reshape(BH, S, DK),
                                        v.reshape(BH, S, DV), scale, bool(is_causal))
    out = out.reshape(lead + (T, DV))
    return (out, lse.reshape(lead + (T,))) if return_lse else out


def scaled_dot_product_attention_backward(grad_output, q, k, v, *, is_causal=False, scale=None,
                                          out=None, lse=None):
    """Gradients of scaled_dot_product_attention(q, k, v, is_causal=, scale=).

    grad_output: (..., T, DV); q: (..., T, DK), k: (..., S, DK), v: (..., S, DV) as in the
    forward. out: (..., T, DV) and lse: (..., T) are the forward's results (from
    ``return_lse=True``); when either is missing the forward runs first (in C).
    Returns (dq (..., T, DK), dk (..., S, DK), dv (..., S, DV)) in q's dtype.
    """
    q, k, v, (lead, T, S, DK, DV) = _check_qkv(q, k, v)
    scale = _scale(scale, DK)
    grad_output = same_dtype(q, "q", grad_output, "grad_output")
    if grad_output.shape != lead + (T, DV):
        raise ValueError(f"grad_output must have shape {lead + (T, DV)} (the output's), "
                         f"got {grad_output.shape}")
    BH = _bh(lead)
    q3, k3, v3 = q.reshape(BH, T, DK), k.reshape(BH, S, DK), v.reshape(BH, S, DV)
    if out is None or lse is None:
        out3, lse2 = _C.attention_forward_ref(q3, k3, v3, scale, bool(is_causal))
    else:
        out = same_dtype(q, "q", out, "out")
        lse = same_dtype(q, "q", lse, "lse")
        if out.shape != lead + (T, DV):
            raise ValueError(f"out must have shape {lead + (T, DV)} (the forward's output), "
                             f"got {out.shape}")
        if lse.shape != lead + (T,):
            raise ValueError(f"lse must have shape {lead + (T,)} (the forward's logsumexp), "
                             f"got {lse.shape}")
        out3, lse2 = out.reshape(BH, T, DV), lse.reshape(BH, T)
    dq, dk, dv = _C.attention_backward_ref(grad_output.reshape(BH, T, DV), q3, k3, v3, out3,
                                           lse2, scale, bool(is_causal))
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
