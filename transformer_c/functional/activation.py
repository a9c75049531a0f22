"""Activation functions: ReLU and GELU (C: csrc/kernels/activation.c), and the one
name-to-kernel table every layer uses (``activation(name, x)``, ``activation_backward``),
keyed by the names of transformer_c.options.ACTIVATIONS (which come from C).

Element-wise, so inputs of any shape (0-d and empty included) are accepted and the result
has the input's shape and dtype.
"""
from .. import _C
from ..options import ACTIVATIONS, check_option
from ._util import approximate_flag, as_float, check_shape, same_dtype

__all__ = ["relu", "relu_backward", "gelu", "gelu_backward", "activation",
           "activation_backward"]

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


# name (options.ACTIVATIONS) -> (forward(x), backward(grad_output, x))
_TABLE = {
    "gelu_tanh": (lambda x: gelu(x, approximate="tanh"),
                  lambda g, x: gelu_backward(g, x, approximate="tanh")),
    "gelu": (gelu, gelu_backward),
    "relu": (relu, relu_backward),
}
if set(_TABLE) != set(ACTIVATIONS):
    raise ImportError(f"functional.activation's table covers {sorted(_TABLE)} but the C "
                      f"options name {sorted(ACTIVATIONS)}: add the missing kernels")


def activation(name, x):
    """The activation ``name`` (one of transformer_c.options.ACTIVATIONS: "gelu_tanh",
    "gelu", "relu") applied element-wise to x.

    x: any shape, float32 or float64. Returns y: x's shape and dtype. ValueError naming
    ``activation`` for an unknown name.
    """
    return _TABLE[check_option("activation", name)][0](x)


def activation_backward(name, grad_output, x):
    """Gradient of activation(name, x): dx = grad_output * act'(x).

    grad_output, x: the same shape (any) and dtype. Returns dx: x's shape and dtype.
    ValueError naming ``activation`` for an unknown name.
    """
    return _TABLE[check_option("activation", name)][1](grad_output, x)
