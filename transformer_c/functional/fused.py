"""Fused kernels that save passes over memory (C: csrc/kernels/fused.c).

linear_gelu: gelu(x @ weight.T + bias) with the bias and the GELU applied inside the matrix
product, block by block while the block is in cache. layer_norm_residual: s = x + residual
and layer_norm(s) in one pass over each row, s written out (it is the residual stream).
"""
import math
import numbers

import numpy as np

from .. import _C
from ._util import as_float, last_dim, rows, same_dtype

__all__ = ["linear_gelu", "linear_gelu_backward", "layer_norm_residual",
           "layer_norm_residual_backward"]

_GELU_APPROXIMATE = {"none": 0, "tanh": 1}


def _approximate_flag(approximate):
    if not isinstance(approximate, str) or approximate not in _GELU_APPROXIMATE:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU_APPROXIMATE[approximate]


def _check_linear(x, weight, bias):
    x = as_float(x, "x")
    weight = same_dtype(x, "x", weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    last_dim(x, "x", weight.shape[1], "in_features (weight.shape[1])")
    if bias is not None:
        bias = same_dtype(x, "x", bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},) (weight.shape[0]), "
                             f"got {bias.shape}")
    return x, weight, bias


def linear_gelu(x, weight, bias=None, approximate="none", return_pre=False, return_dact=False):
    """y = gelu(x @ weight.T + bias), fused: one pass writes the output.

    x: (..., C) any leading dims; weight: (OC, C); bias: (OC,) or None; approximate:
    'none' (exact erf GELU) or 'tanh' (GPT-2's form), as torch.nn.functional.gelu.
    Returns y (..., OC) in x's dtype, or with ``return_pre=True`` the tuple (y, pre) where
    pre = x @ weight.T + bias (..., OC) is the cache linear_gelu_backward can reuse, or with
    ``return_dact=True`` the tuple (y, dact), dact = gelu'(pre) (..., OC): the cache that
    spares the backward its GELU evaluation (computed with y at little extra cost).
    """
    x, weight, bias = _check_linear(x, weight, bias)
    flag = _approximate_flag(approximate)
    if return_pre and return_dact:
        raise ValueError("return_pre and return_dact are exclusive: ask for one cache")
    want = 2 if return_dact else 1 if return_pre else 0
    y, cache = _C.linear_gelu_forward(rows(x), weight, bias, flag, want)
    shape = x.shape[:-1] + (weight.shape[0],)
    if want:
        return y.reshape(shape), cache.reshape(shape)
    return y.reshape(shape)


def linear_gelu_backward(grad_output, x, weight, bias=None, approximate="none", pre=None,
                         dact=None):
    """Gradients of linear_gelu(x, weight, bias, approximate).

    grad_output: (..., OC); x: (..., C); weight: (OC, C); bias: (OC,) or None; pre: the
    (..., OC) cache from ``linear_gelu(..., return_pre=True)``, or None to recompute it;
    or instead dact: the (..., OC) cache from ``linear_gelu(..., return_dact=True)`` (the
    same gradients, bitwise, without evaluating the GELU again).
    Returns (dx (..., C), dweight (OC, C), dbias (OC,) or None), in x's dtype.
    """
    x, weight, bias = _check_linear(x, weight, bias)
    flag = _approximate_flag(approximate)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    shape = x.shape[:-1] + (weight.shape[0],)
    if grad_output.shape != shape:
        raise ValueError(f"grad_output must have shape {shape}, got {grad_output.shape}")
    if pre is not None and dact is not None:
        raise ValueError("pass one cache: pre or dact, not both")
    cache, name = (pre, "pre") if dact is None else (dact, "dact")
    if cache is not None:
        cache = same_dtype(x, "x", cache, name)
        if cache.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (the forward's cache), "
                             f"got {cache.shape}")
        cache = rows(cache)
    dx, dw, db = _C.linear_gelu_backward(rows(grad_output), rows(x), weight, bias, cache, flag,
                                         bias is not None, dact is not None)
    return dx.reshape(x.shape), dw, db


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def _check_norm(x, name, weight, bias):
    C = last_dim(x, name)
    if C == 0:
        raise ValueError(f"{name} must have at least one channel (its last dim), got shape {x.shape}")
    weight = same_dtype(x, name, weight, "weight")
    if weight.shape != (C,):
        raise ValueError(f"weight must have shape ({C},) (the last dim of {name}), got {weight.shape}")
    if bias is not None:
        bias = same_dtype(x, name, bias, "bias")
        if bias.shape != (C,):
            raise ValueError(f"bias must have shape ({C},) (the last dim of {name}), got {bias.shape}")
    return weight, bias


def layer_norm_residual(x, residual, weight, bias=None, eps=1e-5, return_stats=False):
    """Residual add + layer normalisation, fused: s = x + residual, y = layer_norm(s).

    x, residual: (..., C) of one shape (any leading dims; an empty batch is fine), C >= 1;
    weight: (C,); bias: (C,) or None; eps >= 0. Returns (y, s), both (..., C) in x's dtype
    (s is the new residual stream), or with ``return_stats=True`` (y, s, mean, rstd) with
    mean, rstd of shape x.shape[:-1] for layer_norm_residual_backward.
    """
    x = as_float(x, "x")
    residual = same_dtype(x, "x", residual, "residual")
    weight, bias = _check_norm(x, "x", weight, bias)
    if residual.shape != x.shape:
        raise ValueError(f"residual must have the shape of x {x.shape}, got {residual.shape}")
    eps = _check_eps(eps)
    y, s, mean, rstd = _C.layernorm_residual_forward(rows(x), rows(residual), weight, bias, eps)
    y, s = y.reshape(x.shape), s.reshape(x.shape)
    if return_stats:
        return y, s, mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])
    return y, s


def layer_norm_residual_backward(grad_output, s, weight, bias=None, eps=1e-5, mean=None,
                                 rstd=None, grad_s=None):
    """Gradients of layer_norm_residual(x, residual, weight, bias, eps).

    grad_output: (..., C), the gradient of y; s: the forward's s = x + residual (..., C);
    grad_s: (..., C) the gradient reaching s directly (the residual stream), or None for
    none; weight: (C,); bias: (C,) or None (only whether it is given matters); mean, rstd:
    s.shape[:-1] from ``return_stats=True``, or both None to recompute them with eps.
    Returns (dx, dresidual, dweight (C,), dbias (C,) or None); dx and dresidual (..., C)
    are equal (s = x + residual) but separate arrays.
    """
    s = as_float(s, "s")
    weight, bias = _check_norm(s, "s", weight, bias)
    eps = _check_eps(eps)
    grad_output = same_dtype(s, "s", grad_output, "grad_output")
    if grad_output.shape != s.shape:
        raise ValueError(f"grad_output must have the shape of s {s.shape}, got {grad_output.shape}")
    if grad_s is not None:
        grad_s = same_dtype(s, "s", grad_s, "grad_s")
        if grad_s.shape != s.shape:
            raise ValueError(f"grad_s must have the shape of s {s.shape}, got {grad_s.shape}")
        grad_s = rows(grad_s)
    if (mean is None) != (rstd is None):
        missing = "rstd" if rstd is None else "mean"
        raise ValueError(f"{missing} is missing: give both mean and rstd (from the forward) "
                         "or neither")
    if mean is None:
        _, mean, rstd = _C.layernorm_forward(rows(s), weight, None, eps)
    else:
        mean = same_dtype(s, "s", mean, "mean")
        rstd = same_dtype(s, "s", rstd, "rstd")
        for name, v in (("mean", mean), ("rstd", rstd)):
            if v.shape != s.shape[:-1]:
                raise ValueError(f"{name} must have shape {s.shape[:-1]} (s.shape[:-1]), "
                                 f"got {v.shape}")
        mean, rstd = np.reshape(mean, -1), np.reshape(rstd, -1)
    dx, dr, dw, db = _C.layernorm_residual_backward(rows(grad_output), grad_s, rows(s), weight,
                                                    mean, rstd, bias is not None)
    return dx.reshape(s.shape), dr.reshape(s.shape), dw, db
