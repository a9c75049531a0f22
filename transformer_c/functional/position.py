"""Sinusoidal position encodings (C: csrc/position.c)."""
import math
import numbers
import operator

import numpy as np

from .. import _C
from ._util import FLOAT_DTYPES, as_float

__all__ = ["sinusoidal_positions", "add_positions", "add_positions_backward"]


def _int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _base(base):
    if isinstance(base, (bool, np.bool_)) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be a real number, got {type(base).__name__}")
    base = float(base)
    if not (math.isfinite(base) and base > 0):
        raise ValueError(f"base must be a finite number > 0, got {base}")
    return base


def sinusoidal_positions(length, dim, base=10000.0, dtype=np.float64, offset=0):
    """The sinusoidal position-encoding table of "Attention is all you need".

    PE[n, 2k] = sin(pos / base**(2k/dim)), PE[n, 2k+1] = cos(pos / base**(2k/dim)), with
    pos = offset + n for n < length; with an odd ``dim`` the last column is a sin.
    length >= 0, dim >= 1 (integers); base: a finite number > 0; dtype: float32 or float64
    (the angles are computed in float64 either way); offset: an integer, the position of
    the first row (e.g. the number of tokens already decoded).
    Returns an array (length, dim) of ``dtype``.
    """
    length, dim, offset = _int(length, "length"), _int(dim, "dim"), _int(offset, "offset")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    base = _base(base)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return _C.position_sinusoidal(length, dim, base, offset, dt)


def add_positions(x, base=10000.0, offset=0):
    """x + sinusoidal_positions(T, D, base, x.dtype, offset), broadcast over leading dims.

    x: (..., T, D) with any leading dims (T = x.shape[-2], D = x.shape[-1]); an empty
    batch is fine. Returns a new array of x's shape and dtype (x is not modified); the
    table is rounded to x's dtype before the addition.
    """
    x = as_float(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., T, D), got shape {x.shape}")
    base = _base(base)
    offset = _int(offset, "offset")
    T, D = x.shape[-2:]
    B = int(np.prod(x.shape[:-2], dtype=np.int64))
    return _C.position_add_sinusoidal(x.reshape(B, T, D), base, offset).reshape(x.shape)


def add_positions_backward(grad_output):
    """Gradient of add_positions with respect to x: the identity (the table is a constant
    with no parameters), so grad_output passes through unchanged.

    grad_output: (..., T, D) like x. Returns a copy of grad_output (same shape and dtype).
    """
    grad_output = as_float(grad_output, "grad_output")
    if grad_output.ndim < 2:
        raise ValueError(f"grad_output must have at least 2 dimensions (..., T, D), got "
                         f"shape {grad_output.shape}")
    return grad_output.copy()
