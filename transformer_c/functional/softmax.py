"""Softmax and log-softmax along any axis (C: csrc/kernels/softmax.c).

The C kernels see the array as (outer, C, inner) around the chosen axis, so no axis is ever
moved or copied. The forward subtracts the maximum, so large inputs do not overflow. Special
values behave as in torch: a slice (the values along ``axis`` for one position of the other
axes) that is all -inf, or contains +inf or NaN, comes out as NaN; a -inf among finite values
gets probability 0 (log-probability -inf).

Backward functions take the forward OUTPUT ``y`` (not the input): that is all they need.
"""
from .. import _C
from ._util import as_float, as_int, check_shape, same_dtype

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward"]


def _axis(axis, ndim):
    """axis as a Python int within [-ndim, ndim) (a 0-d array counts as 1-d, as in torch)."""
    axis = as_int(axis, "axis")
    span = max(ndim, 1)
    if not -span <= axis < span:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions "
                         f"(valid: {-span} to {span - 1})")
    return axis


def _grad_and_y(grad_output, y, axis):
    y = as_float(y, "y")
    grad_output = same_dtype(y, "y", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", y.shape, "y's")
    return grad_output, y, _axis(axis, y.ndim)


def softmax(x, axis=-1):
    """y = exp(x - max) / sum(exp(x - max)) along ``axis``.

    x: any shape, float32 or float64; axis: int, negative counts from the end.
    Returns y: x's shape and dtype, summing to 1 along ``axis``.
    """
    x = as_float(x, "x")
    return _C.softmax_forward(x, _axis(axis, x.ndim))


def softmax_backward(grad_output, y, axis=-1):
    """Gradient of softmax: dx = y * (grad_output - sum(grad_output * y, axis)).

    grad_output: y's shape; y: the OUTPUT of softmax(x, axis) (any shape); axis as in the
    forward. Returns dx: y's shape and dtype.
    """
    grad_output, y, axis = _grad_and_y(grad_output, y, axis)
    return _C.softmax_backward(grad_output, y, axis)


def log_softmax(x, axis=-1):
    """y = (x - max) - log(sum(exp(x - max))) along ``axis``.

    x: any shape, float32 or float64; axis: int, negative counts from the end.
    Returns y: x's shape and dtype.
    """
    x = as_float(x, "x")
    return _C.log_softmax_forward(x, _axis(axis, x.ndim))


def log_softmax_backward(grad_output, y, axis=-1):
    """Gradient of log_softmax: dx = grad_output - exp(y) * sum(grad_output, axis).

    grad_output: y's shape; y: the OUTPUT of log_softmax(x, axis) (any shape); axis as in
    the forward. Returns dx: y's shape and dtype.
    """
    grad_output, y, axis = _grad_and_y(grad_output, y, axis)
    return _C.log_softmax_backward(grad_output, y, axis)
