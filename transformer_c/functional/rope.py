"""Rotary position embedding, RoPE (C: csrc/kernels/rope.c).

For head size HS (even) and frequencies theta_i = base**(-2i/HS), i < HS/2, the channel
pairs (a, b) of the row at position pos are rotated by the angle pos * theta_i:

    a' = a cos(pos theta_i) - b sin(pos theta_i),   b' = a sin(pos theta_i) + b cos(pos theta_i)

The pairs are (i, i + HS/2) by default ("rotate half", as GPT-NeoX and Hugging Face Llama)
or (2i, 2i + 1) with ``interleaved=True`` (the RoFormer paper, GPT-J). Applied to the
queries and keys of attention, q_m . k_n then depends on the positions only through m - n.
The rotation is orthogonal: the backward is the rotation by the opposite angle. Angles are
computed in float64 for both dtypes.
"""
import math

import numpy as np

from .. import _C
from ._util import as_float, as_int, float_dtype, positive_real

__all__ = ["rope_table", "rope", "rope_backward"]


def rope_table(length, head_size, base=10000.0, dtype=np.float64, offset=0):
    """The cos and sin tables of RoPE for positions offset .. offset + length - 1.

    length >= 0; head_size: even, >= 0; base: finite > 0; dtype: float32 or float64;
    offset: an integer (the position of the first row, e.g. the tokens already decoded).
    Returns (cos, sin), each (length, head_size // 2) of ``dtype``, with
    cos[n, i] = cos((offset + n) * base**(-2i/head_size)) (angles in float64).
    """
    length, head_size = as_int(length, "length", 0), as_int(head_size, "head_size")
    offset = as_int(offset, "offset")
    if head_size < 0 or head_size % 2:
        raise ValueError(f"head_size must be even and >= 0, got {head_size}")
    return _C.rope_table(length, head_size, positive_real(base, "base"), offset, float_dtype(dtype))


def _view4(x, name, seq_axis):
    """x viewed as (N, L, NH, HS) with the positions along seq_axis."""
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., T, head_size), "
                         f"got shape {x.shape}")
    ax = as_int(seq_axis, "seq_axis")
    if not -x.ndim <= ax < x.ndim or ax % x.ndim == x.ndim - 1:
        raise ValueError(f"seq_axis must name an axis before the last (head_size) one of "
                         f"{name} with shape {x.shape}, got {seq_axis}")
    ax %= x.ndim
    HS = x.shape[-1]
    if HS % 2:
        raise ValueError(f"{name} must have an even head size (last dimension), "
                         f"got shape {x.shape}")
    N = math.prod(x.shape[:ax])
    L = x.shape[ax]
    NH = math.prod(x.shape[ax + 1:-1])
    return x.reshape(N, L, NH, HS), L, HS


def _apply(fn, x, name, base, offset, interleaved, seq_axis):
    x = as_float(x, name)
    x4, L, HS = _view4(x, name, seq_axis)
    cos, sin = rope_table(L, HS, base=base, dtype=x.dtype, offset=offset)
    return fn(x4, cos, sin, bool(interleaved)).reshape(x.shape)


def rope(x, *, base=10000.0, offset=0, interleaved=False, seq_axis=-2):
    """Rotary position embedding of x.

    x: (..., T, HS) with any leading dims (e.g. (B, NH, T, HS) queries or keys), or any
    layout with the positions along ``seq_axis`` (e.g. (B, T, NH, HS) with seq_axis=-3);
    HS (the last dim) must be even. The row at index n along seq_axis has position
    offset + n. base: the frequency base (10000 in the paper). interleaved: pairs
    (2i, 2i+1) instead of (i, i + HS/2).
    Returns the rotated array: x's shape and dtype.
    """
    return _apply(_C.rope_forward, x, "x", base, offset, interleaved, seq_axis)


def rope_backward(grad_output, *, base=10000.0, offset=0, interleaved=False, seq_axis=-2):
    """Gradient of rope(x, base=, offset=, interleaved=, seq_axis=) with respect to x: the
    rotation of grad_output by the opposite angles (RoPE is linear, so x is not needed).

    grad_output: x's shape, float32 or float64. Returns dx: grad_output's shape and dtype.
    """
    return _apply(_C.rope_backward, grad_output, "grad_output", base, offset, interleaved,
                  seq_axis)
