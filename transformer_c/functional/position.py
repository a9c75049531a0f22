"""Sinusoidal position encodings (C: csrc/kernels/position.c)."""
import numpy as np

from .. import _C
from ._util import as_float, as_int, float_dtype, positive_real

__all__ = ["sinusoidal_positions", "add_positions", "add_positions_backward"]


def sinusoidal_positions(length, dim, base=10000.0, dtype=np.float64, offset=0):
    """The sinusoidal position-encoding table of "Attention is all you need".

    PE[n, 2k] = sin(pos / base**(2k/dim)), PE[n, 2k+1] = cos(pos / base**(2k/dim)), with
    pos = offset + n for n < length; with an odd ``dim`` the last column is a sin.
    length >= 0, dim >= 1 (integers); base: a finite number > 0; dtype: float32 or float64
    (the angles are computed in float64 either way); offset: an integer, the position of
    the first row (e.g. the number of tokens already decoded).
    Returns an array (length, dim) of ``dtype``.
    """
    length, dim = as_int(length, "length", 0), as_int(dim, "dim", 1)
    offset = as_int(offset, "offset")
    base = positive_real(base, "base")
    dt = float_dtype(dtype)
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
    base = positive_real(base, "base")
    offset = as_int(offset, "offset")
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
