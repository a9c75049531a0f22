"""Layer normalisation over the last axis (C: csrc/kernels/layernorm.c)."""
from .. import _C
from ._util import as_float, as_real, check_norm, check_shape, check_stats, rows, same_dtype

__all__ = ["layer_norm", "layer_norm_backward"]


def _check_params(x, weight, bias):
    """x as a float array with C >= 1 channels, weight and bias (C,) of x's dtype."""
    x = as_float(x, "x")
    return (x,) + check_norm(x, "x", weight, bias)


def layer_norm(x, weight, bias=None, eps=1e-5, return_stats=False):
    """Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.

    x: (..., C) any leading dims (an empty batch is fine), C >= 1; weight: (C,);
    bias: (C,) or None; eps >= 0. The variance is the biased one (divides by C), as in
    torch.nn.functional.layer_norm. Returns y (..., C) in x's dtype, or with
    ``return_stats=True`` the tuple (y, mean, rstd) where mean and rstd = 1/sqrt(var + eps)
    have shape x.shape[:-1] (pass them to layer_norm_backward to skip recomputing them).
    """
    x, weight, bias = _check_params(x, weight, bias)
    eps = as_real(eps, "eps", "non_negative")
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
    eps = as_real(eps, "eps", "non_negative")
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", x.shape, "x's")
    mean, rstd = check_stats(x, "x", mean, rstd)
    if mean is not None:
        mean, rstd = mean.reshape(-1), rstd.reshape(-1)
    dx, dw, db = _C.layernorm_backward(rows(grad_output), rows(x), weight, mean, rstd,
                                       bias is not None, eps)
    return dx.reshape(x.shape), dw, db
