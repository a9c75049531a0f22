"""Activation functions: ReLU and GELU (C: csrc/kernels/activation.c).

Element-wise, so inputs of any shape (0-d and empty included) are accepted and the result
has the input's shape and dtype.
"""
from .. import _C
from ._util import approximate_flag, as_float, check_shape, same_dtype

__all__ = ["relu", "relu_backward", "gelu", "gelu_backward"]

def _grad_and_x(grad_output, x):
    x = as_float(x, "x")
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", x.shape, "x's")
    return grad_output, x


def relu(x):
    """y = max(x, 0), element-wise.

    x: any shape, float32 or float64. Returns y: x's shape and dtype. NaN propagates.
    """
    return _C.relu_forward(as_float(x, "x"))


def relu_backward(grad_output, x):
    """Gradient of relu: dx = grad_output where x > 0, else 0 (0 at x == 0, as PyTorch).

    grad_output, x: the same shape (any) and dtype. Returns dx: x's shape and dtype.
    """
    grad_output, x = _grad_and_x(grad_output, x)
    return _C.relu_backward(grad_output, x)


def gelu(x, approximate="none"):
    """Gaussian error linear unit, element-wise.

    approximate="none": y = 0.5 x (1 + erf(x / sqrt(2))) (exact);
    approximate="tanh": y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2; torch's
    approximate='tanh'). x: any shape, float32 or float64. Returns y: x's shape and dtype.
    """
    flag = approximate_flag(approximate)
    return _C.gelu_forward(as_float(x, "x"), flag)


def gelu_backward(grad_output, x, approximate="none"):
    """Gradient of gelu(x, approximate): dx = grad_output * gelu'(x).

    grad_output, x: the same shape (any) and dtype. Returns dx: x's shape and dtype.
    """
    flag = approximate_flag(approximate)
    grad_output, x = _grad_and_x(grad_output, x)
    return _C.gelu_backward(grad_output, x, flag)
