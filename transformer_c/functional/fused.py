"""Fused kernels that save passes over memory (C: csrc/kernels/fused.c).

linear_activation: act(x @ weight.T + bias) for an activation with a fused pair in the C
activation table (gelu_tanh, gelu, relu, relu2: the pair the models' MLPs run), with its
derivative cached for linear_activation_backward.

linear_gelu: gelu(x @ weight.T + bias) with the bias and the GELU applied inside the matrix
product, block by block while the block is in cache. layer_norm_residual: s = x + residual
and layer_norm(s) in one pass over each row, s written out (it is the residual stream).
"""
import numpy as np

from .. import _C
from ..options import option_index
from ._util import (approximate_flag, as_float, as_real, check_linear, check_norm, check_shape,
                    check_stats, rows, same_dtype)

__all__ = ["linear_gelu", "linear_gelu_backward", "linear_activation",
           "linear_activation_backward", "layer_norm_residual",
           "layer_norm_residual_backward"]

def linear_gelu(x, weight, bias=None, approximate="none", return_pre=False, return_dact=False):
    """y = gelu(x @ weight.T + bias), fused: one pass writes the output.

    x: (..., C) any leading dims; weight: (OC, C); bias: (OC,) or None; approximate:
    'none' (exact erf GELU) or 'tanh' (GPT-2's form), as torch.nn.functional.gelu.
    Returns y (..., OC) in x's dtype, or with ``return_pre=True`` the tuple (y, pre) where
    pre = x @ weight.T + bias (..., OC) is the cache linear_gelu_backward can reuse, or with
    ``return_dact=True`` the tuple (y, dact), dact = gelu'(pre) (..., OC): the cache that
    spares the backward its GELU evaluation (computed with y at little extra cost).
    """
    x, weight, bias = check_linear(x, weight, bias)
    flag = approximate_flag(approximate)
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
    x, weight, bias = check_linear(x, weight, bias)
    flag = approximate_flag(approximate)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    shape = x.shape[:-1] + (weight.shape[0],)
    check_shape(grad_output, "grad_output", shape)
    if pre is not None and dact is not None:
        raise ValueError("pass one cache: pre or dact, not both")
    cache, name = (pre, "pre") if dact is None else (dact, "dact")
    if cache is not None:
        cache = same_dtype(x, "x", cache, name)
        check_shape(cache, name, shape, "the forward's cache")
        cache = rows(cache)
    dx, dw, db = _C.linear_gelu_backward(rows(grad_output), rows(x), weight, bias, cache, flag,
                                         bias is not None, dact is not None)
    return dx.reshape(x.shape), dw, db


def linear_activation(x, weight, bias=None, activation="relu2", return_dact=False):
    """y = act(x @ weight.T + bias), fused: the activation table's fused pair.

    x: (..., C) any leading dims; weight: (OC, C); bias: (OC,) or None; activation: a name
    of transformer_c.options.ACTIVATIONS with a fused pair (gelu_tanh, gelu, relu, relu2;
    ValueError otherwise). Returns y (..., OC) in x's dtype, or with ``return_dact=True``
    (y, dact), dact = act'(pre) (..., OC), pre = x @ weight.T + bias (relu' and relu2' are
    0 where pre <= 0, as relu_backward / relu2_backward): the cache of
    linear_activation_backward.
    """
    act = option_index("activation", activation)
    x, weight, bias = check_linear(x, weight, bias)
    y, dact = _C.linear_activation_forward(act, rows(x), weight, bias, bool(return_dact))
    shape = x.shape[:-1] + (weight.shape[0],)
    if return_dact:
        return y.reshape(shape), dact.reshape(shape)
    return y.reshape(shape)


def linear_activation_backward(grad_output, x, weight, dact, bias=None):
    """Gradients of linear_activation(x, weight, bias, activation) from its cache.

    grad_output: (..., OC); x: (..., C); weight: (OC, C); dact: the (..., OC) cache from
    ``linear_activation(..., return_dact=True)`` (any activation: dpre = grad_output * dact);
    bias: (OC,) or None (whether a bias gradient is wanted).
    Returns (dx (..., C), dweight (OC, C), dbias (OC,) or None), in x's dtype.
    """
    x, weight, bias = check_linear(x, weight, bias)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    shape = x.shape[:-1] + (weight.shape[0],)
    check_shape(grad_output, "grad_output", shape)
    dact = same_dtype(x, "x", dact, "dact")
    check_shape(dact, "dact", shape, "the forward's cache")
    dx, dw, db = _C.linear_gelu_backward(rows(grad_output), rows(x), weight, bias, rows(dact),
                                         0, bias is not None, True)
    return dx.reshape(x.shape), dw, db


def layer_norm_residual(x, residual, weight, bias=None, eps=1e-5, return_stats=False):
    """Residual add + layer normalisation, fused: s = x + residual, y = layer_norm(s).

    x, residual: (..., C) of one shape (any leading dims; an empty batch is fine), C >= 1;
    weight: (C,); bias: (C,) or None; eps >= 0. Returns (y, s), both (..., C) in x's dtype
    (s is the new residual stream), or with ``return_stats=True`` (y, s, mean, rstd) with
    mean, rstd of shape x.shape[:-1] for layer_norm_residual_backward.
    """
    x = as_float(x, "x")
    residual = same_dtype(x, "x", residual, "residual")
    weight, bias = check_norm(x, "x", weight, bias)
    check_shape(residual, "residual", x.shape, "x's")
    eps = as_real(eps, "eps", "non_negative")
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
    weight, bias = check_norm(s, "s", weight, bias)
    eps = as_real(eps, "eps", "non_negative")
    grad_output = same_dtype(s, "s", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", s.shape, "s's")
    if grad_s is not None:
        grad_s = same_dtype(s, "s", grad_s, "grad_s")
        check_shape(grad_s, "grad_s", s.shape, "s's")
        grad_s = rows(grad_s)
    mean, rstd = check_stats(s, "s", mean, rstd)
    if mean is None:
        _, mean, rstd = _C.layernorm_forward(rows(s), weight, None, eps)
    else:
        mean, rstd = np.reshape(mean, -1), np.reshape(rstd, -1)
    dx, dr, dw, db = _C.layernorm_residual_backward(rows(grad_output), grad_s, rows(s), weight,
                                                    mean, rstd, bias is not None)
    return dx.reshape(s.shape), dr.reshape(s.shape), dw, db
