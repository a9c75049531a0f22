"""RMS normalisation over the last axis (C: csrc/kernels/rmsnorm.c) and logit soft-capping
(csrc/kernels/softcap.c)."""
import numpy as np

from .. import _C
from ._util import as_float, as_real, check_norm, check_shape, rows, same_dtype

__all__ = ["rms_norm", "rms_norm_backward", "softcap", "softcap_backward"]


def _check_params(x, weight, bias):
    """x as a float array with C >= 1 channels, weight and bias (C,) of x's dtype."""
    x = as_float(x, "x")
    return (x,) + check_norm(x, "x", weight, bias)


def rms_norm(x, weight, bias=None, eps=1e-5, return_stats=False):
    """RMS normalisation over the last axis: x / sqrt(mean(x^2) + eps) * weight + bias.

    x: (..., C) any leading dims (an empty batch is fine), C >= 1; weight: (C,); bias: (C,)
    or None (torch.nn.functional.rms_norm(x, (C,), weight, eps) has none); eps >= 0.
    Returns y (..., C) in x's dtype, or with ``return_stats=True`` (y, rstd) where rstd =
    1/sqrt(mean(x^2) + eps) has shape x.shape[:-1] (pass it to rms_norm_backward).
    """
    x, weight, bias = _check_params(x, weight, bias)
    eps = as_real(eps, "eps", "non_negative")
    y, rstd = _C.rmsnorm_forward(rows(x), weight, bias, eps)
    y = y.reshape(x.shape)
    return (y, rstd.reshape(x.shape[:-1])) if return_stats else y


def rms_norm_backward(grad_output, x, weight, bias=None, eps=1e-5, rstd=None):
    """Gradients of rms_norm(x, weight, bias, eps).

    grad_output: (..., C) like x; weight: (C,); bias: (C,) or None (only whether it is given
    matters); rstd: x.shape[:-1] from ``rms_norm(..., return_stats=True)``, or None to
    recompute it. Returns (dx (..., C), dweight (C,), dbias (C,) or None), in x's dtype.
    """
    x, weight, bias = _check_params(x, weight, bias)
    eps = as_real(eps, "eps", "non_negative")
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", x.shape, "x's")
    if rstd is not None:
        rstd = same_dtype(x, "x", rstd, "rstd")
        check_shape(rstd, "rstd", x.shape[:-1], "x.shape[:-1]")
        rstd = rstd.reshape(-1)
    dx, dw, db = _C.rmsnorm_backward(rows(grad_output), rows(x), weight, rstd,
                                     bias is not None, eps)
    return dx.reshape(x.shape), dw, db


def softcap(x, cap):
    """Logit soft-capping (Gemma 2): cap * tanh(x / cap), element-wise; x any shape (float32
    or float64), cap a finite number > 0. Smooth, odd, |y| < cap, y ~ x for |x| << cap."""
    x = as_float(x, "x")
    cap = as_real(cap, "cap", "positive")
    return _C.softcap_forward(x.reshape(-1), cap).reshape(x.shape)


def softcap_backward(grad_output, y, cap):
    """Gradient of softcap from its OUTPUT y: grad_output * (1 - (y / cap)^2); grad_output
    and y of one shape and dtype."""
    y = as_float(y, "y")
    cap = as_real(cap, "cap", "positive")
    g = same_dtype(y, "y", grad_output, "grad_output")
    check_shape(g, "grad_output", y.shape, "y's")
    return _C.softcap_backward(np.reshape(g, -1), y.reshape(-1), cap).reshape(y.shape)
