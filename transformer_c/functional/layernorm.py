"""Layer normalisation over the last axis (C: csrc/kernels/layernorm.c)."""
import math
import numbers

from .. import _C
from ._util import as_float, last_dim, rows, same_dtype

__all__ = ["layer_norm", "layer_norm_backward"]


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def _check_params(x, weight, bias):
    """x as a float array with C >= 1 channels, weight and bias (C,) of x's dtype."""
    x = as_float(x, "x")
    C = last_dim(x, "x")
    if C == 0:
        raise ValueError(f"x must have at least one channel (its last dim), got shape {x.shape}")
    weight = same_dtype(x, "x", weight, "weight")
    if weight.shape != (C,):
        raise ValueError(f"weight must have shape ({C},) (the last dim of x), got {weight.shape}")
    if bias is not None:
        bias = same_dtype(x, "x", bias, "bias")
        if bias.shape != (C,):
            raise ValueError(f"bias must have shape ({C},) (the last dim of x), got {bias.shape}")
    return x, weight, bias


def layer_norm(x, weight, bias=None, eps=1e-5, return_stats=False):
    """Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.

    x: (..., C) any leading dims (an empty batch is fine), C >= 1; weight: (C,);
    bias: (C,) or None; eps >= 0. The variance is the biased one (divides by C), as in
    torch.nn.functional.layer_norm. Returns y (..., C) in x's dtype, or with
    ``return_stats=True`` the tuple (y, mean, rstd) where mean and rstd = 1/sqrt(var + eps)
    have shape x.shape[:-1] (pass them to layer_norm_backward to skip recomputing them).
    """
    x, weight, bias = _check_params(x, weight, bias)
    eps = _check_eps(eps)
    y, mean, rstd = _C.layernorm_forward(rows(x), weight, bias, eps)
    y = y.reshape(x.shape)
    if return_stats:
        return y, mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])
    return y


def layer_norm_backward(grad_output, x, weight, bias=None, eps=1e-5, mean=None, rstd=None):
    """Gradients of layer_norm(x, weight, bias, eps).

    grad_output: (..., C) like x; x: (..., C); weight: (C,); bias: (C,) or None (only
    whether it is given matters); mean, rstd: x.shape[:-1] as returned by
    ``layer_norm(..., return_stats=True)``, or both None to recompute them from x and eps.
    Returns (dx (..., C), dweight (C,), dbias (C,) or None), in x's dtype.
    """
    x, weight, bias = _check_params(x, weight, bias)
    eps = _check_eps(eps)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    if grad_output.shape != x.shape:
        raise ValueError(f"grad_output must have the shape of x {x.shape}, got {grad_output.shape}")
    if (mean is None) != (rstd is None):
        missing = "rstd" if rstd is None else "mean"
        raise ValueError(f"{missing} is missing: give both mean and rstd (from the forward) "
                         "or neither")
    if mean is not None:
        mean = same_dtype(x, "x", mean, "mean")
        rstd = same_dtype(x, "x", rstd, "rstd")
        for name, s in (("mean", mean), ("rstd", rstd)):
            if s.shape != x.shape[:-1]:
                raise ValueError(f"{name} must have shape {x.shape[:-1]} (x.shape[:-1]), "
                                 f"got {s.shape}")
        mean, rstd = mean.reshape(-1), rstd.reshape(-1)
    dx, dw, db = _C.layernorm_backward(rows(grad_output), rows(x), weight, mean, rstd,
                                       bias is not None, eps)
    return dx.reshape(x.shape), dw, db
