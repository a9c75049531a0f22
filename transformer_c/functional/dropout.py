"""Inverted dropout with a counter-based RNG (C: csrc/kernels/dropout.c, csrc/core/rng.h).

Element i (the flat C-order index of the array, whatever its memory layout) is kept iff
U_i >= p, where U_i = w_i / 2**32 and w_i is word i of the Philox4x32-10 stream of ``seed``
(key = seed, counter = i // 4, word i % 4; see csrc/core/rng.h). Kept elements are scaled by
1 / (1 - p), so the expectation is unchanged. The mask is a pure function of
(seed, p, i): the same seed gives the same mask for float32 and float64, on any thread
count, and the backward pass regenerates it instead of storing it.

As in torch, the output is ``x * mask``: p == 1 gives ``x * 0`` (zeros for finite x), and a
NaN in a dropped position stays NaN.
"""
import math
import operator

import numpy as np

from .. import _C
from ._util import as_float, as_real, as_seed, float_dtype

__all__ = ["dropout", "dropout_backward", "dropout_mask"]


def _check_p(p):
    return as_real(p, "p", "probability")


def dropout(x, p=0.5, *, seed, training=True):
    """Inverted dropout: y = x * mask, mask = 1/(1-p) where kept (probability 1-p), else 0.

    x: any shape, float32 or float64; p: drop probability in [0, 1]; seed: int in
    [0, 2**64) (required: the mask is a pure function of seed and position). With
    ``training=False`` or ``p == 0`` returns a copy of x. Returns y: x's shape and dtype.
    """
    x = as_float(x, "x")
    p, seed = _check_p(p), as_seed(seed)
    if not training or p == 0.0:
        return x.copy()
    return _C.dropout_forward(x, p, seed)


def dropout_backward(grad_output, p=0.5, *, seed, training=True):
    """Gradient of dropout(x, p, seed=seed, training=training): dx = grad_output * mask.

    The mask is regenerated from (seed, p), so pass the forward's values. grad_output: any
    shape (x's), float32 or float64. Returns dx: grad_output's shape and dtype (a copy of
    grad_output when ``training=False`` or ``p == 0``).
    """
    grad_output = as_float(grad_output, "grad_output")
    p, seed = _check_p(p), as_seed(seed)
    if not training or p == 0.0:
        return grad_output.copy()
    return _C.dropout_backward(grad_output, p, seed)


def dropout_mask(shape, p=0.5, *, seed, dtype=np.float64):
    """The scaled mask dropout(x, p, seed=seed) multiplies by, for an x of ``shape``.

    shape: int or tuple of ints >= 0; dtype: float32 or float64. Returns an array of
    ``shape`` and ``dtype`` holding 1/(1-p) where the element is kept and 0 where dropped
    (all 0 for p == 1, all 1 for p == 0), so dropout(x, ...) == x * mask exactly.
    """
    dt = float_dtype(dtype)
    try:
        shape = (operator.index(shape),) if not isinstance(shape, (tuple, list)) \
            else tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must not have negative sizes, got {shape}")
    p, seed = _check_p(p), as_seed(seed)
    n = math.prod(shape)
    return _C.dropout_mask(n, p, seed, dt == np.float64).reshape(shape)
