"""Linear layer and matrix products (C: csrc/kernels/linear.c, csrc/kernels/gemm.c)."""
import numpy as np

from .. import _C
from ._util import as_float, last_dim, rows, same_dtype

__all__ = ["linear", "linear_backward", "matmul", "matmul_backward", "gemm"]


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias.

    x: (..., C) any leading dims; weight: (OC, C); bias: (OC,) or None.
    Returns y: (..., OC) in x's dtype.
    """
    x = as_float(x, "x")
    weight = same_dtype(x, "x", weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    last_dim(x, "x", weight.shape[1], "in_features (weight.shape[1])")
    if bias is not None:
        bias = same_dtype(x, "x", bias, "bias")
    y = _C.linear_forward(rows(x), weight, bias)
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def linear_backward(grad_output, x, weight, bias=None):
    """Gradients of linear(x, weight, bias).

    grad_output: (..., OC); x: (..., C); weight: (OC, C); bias: (OC,) or None (only
    whether it is given matters). Returns (dx (..., C), dweight (OC, C), dbias (OC,) or None).
    """
    x = as_float(x, "x")
    weight = same_dtype(x, "x", weight, "weight")
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    last_dim(x, "x", weight.shape[1], "in_features (weight.shape[1])")
    if grad_output.shape != x.shape[:-1] + (weight.shape[0],):
        raise ValueError(f"grad_output must have shape {x.shape[:-1] + (weight.shape[0],)}, "
                         f"got {grad_output.shape}")
    dx, dw, db = _C.linear_backward(rows(grad_output), rows(x), weight,
                                    bias is not None)
    return dx.reshape(x.shape), dw, db


def gemm(a, b, *, trans_a=False, trans_b=False, reference=False):
    """op(a) @ op(b) for 2-D a and b, where op transposes when asked (no copy is made).

    a: (M, K), or (K, M) with trans_a; b: (K, N), or (N, K) with trans_b. Returns (M, N).
    ``reference=True`` runs the plain triple-loop kernel the fast one is tested against.
    """
    a = as_float(a, "a")
    b = same_dtype(a, "a", b, "b")
    fn = _C.gemm_ref if reference else _C.gemm
    return fn(a, b, bool(trans_a), bool(trans_b))


def matmul(a, b):
    """a @ b where a: (..., K) with any leading dims and b: (K, N). Returns (..., N)."""
    a = as_float(a, "a")
    b = same_dtype(a, "a", b, "b")
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (K, N), got shape {b.shape}")
    last_dim(a, "a", b.shape[0], "K (b.shape[0])")
    return _C.gemm(rows(a), b, False, False).reshape(a.shape[:-1] + (b.shape[1],))


def matmul_backward(grad_output, a, b):
    """Gradients of matmul(a, b): returns (da (..., K), db (K, N))."""
    a = as_float(a, "a")
    b = same_dtype(a, "a", b, "b")
    grad_output = same_dtype(a, "a", grad_output, "grad_output")
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (K, N), got shape {b.shape}")
    last_dim(a, "a", b.shape[0], "K (b.shape[0])")
    if grad_output.shape != a.shape[:-1] + (b.shape[1],):
        raise ValueError(f"grad_output must have shape {a.shape[:-1] + (b.shape[1],)}, "
                         f"got {grad_output.shape}")
    g2 = rows(grad_output)
    da = _C.gemm(g2, b, False, True).reshape(a.shape)
    db = _C.gemm(rows(a), g2, True, False)
    return da, db
