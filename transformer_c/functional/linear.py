"""Linear layer and matrix products (C: csrc/kernels/linear.c, csrc/kernels/gemm.c)."""
from .. import _C
from ._util import as_float, check_linear, check_shape, last_dim, rows, same_dtype

__all__ = ["linear", "linear_backward", "matmul", "matmul_backward", "gemm"]


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias.

    x: (..., C) any leading dims; weight: (OC, C); bias: (OC,) or None.
    Returns y: (..., OC) in x's dtype.
    """
    x, weight, bias = check_linear(x, weight, bias, check_bias=False)
    y = _C.linear_forward(rows(x), weight, bias)
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def linear_backward(grad_output, x, weight, bias=None):
    """Gradients of linear(x, weight, bias).

    grad_output: (..., OC); x: (..., C); weight: (OC, C); bias: (OC,) or None (only
    whether it is given matters). Returns (dx (..., C), dweight (OC, C), dbias (OC,) or None).
    """
    x, weight, _ = check_linear(x, weight)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", x.shape[:-1] + (weight.shape[0],))
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


def _matmul_args(a, b):
    a = as_float(a, "a")
    b = same_dtype(a, "a", b, "b")
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (K, N), got shape {b.shape}")
    last_dim(a, "a", b.shape[0], "K (b.shape[0])")
    return a, b


def matmul(a, b):
    """a @ b where a: (..., K) with any leading dims and b: (K, N). Returns (..., N)."""
    a, b = _matmul_args(a, b)
    return _C.gemm(rows(a), b, False, False).reshape(a.shape[:-1] + (b.shape[1],))


def matmul_backward(grad_output, a, b):
    """Gradients of matmul(a, b): returns (da (..., K), db (K, N))."""
    a, b = _matmul_args(a, b)
    grad_output = same_dtype(a, "a", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", a.shape[:-1] + (b.shape[1],))
    g2 = rows(grad_output)
    da = _C.gemm(g2, b, False, True).reshape(a.shape)
    db = _C.gemm(rows(a), g2, True, False)
    return da, db
