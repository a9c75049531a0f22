"""Activation functions (C: csrc/kernels/activation.c): ``relu``, ``gelu`` (exact and tanh),
one ``<name>`` / ``<name>_backward`` pair for every other activation of tc.h's
TC_ACTIVATIONS list (``silu``, ...; made from the list, documented by its formula), and the
one name-to-kernel table every layer uses (``activation(name, x)``,
``activation_backward``), keyed by the names of transformer_c.options.ACTIVATIONS (which
come from C).

Element-wise, so inputs of any shape (0-d and empty included) are accepted and the result
has the input's shape and dtype.
"""
from .. import _C
from ..options import ACTIVATIONS, check_option
from ._util import approximate_flag, as_float, check_shape, same_dtype

__all__ = ["relu", "relu_backward", "gelu", "gelu_backward", "activation",
           "activation_backward", "glu", "glu_backward"]

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


# The one table: every activation of options.ACTIVATIONS (tc.h's TC_ACTIVATIONS list) by its
# index, through the C activation table (the same kernels as relu / gelu above, bitwise).
_INDEX = {name: i for i, name in enumerate(ACTIVATIONS)}


def activation(name, x):
    """The activation ``name`` (one of transformer_c.options.ACTIVATIONS: "gelu_tanh",
    "gelu", "relu", "silu", ...) applied element-wise to x, in C.

    x: any shape, float32 or float64. Returns y: x's shape and dtype. ValueError naming
    ``activation`` for an unknown name.
    """
    act = _INDEX[check_option("activation", name)]
    return _C.activation_forward(act, as_float(x, "x"))


def activation_backward(name, grad_output, x):
    """Gradient of activation(name, x): dx = grad_output * act'(x), in C.

    grad_output, x: the same shape (any) and dtype. Returns dx: x's shape and dtype.
    ValueError naming ``activation`` for an unknown name.
    """
    act = _INDEX[check_option("activation", name)]
    grad_output, x = _grad_and_x(grad_output, x)
    return _C.activation_backward(act, grad_output, x)


def _gate_and_up(gate, up):
    gate = as_float(gate, "gate")
    up = same_dtype(gate, "gate", up, "up")
    check_shape(up, "up", gate.shape, "gate's")
    return gate, up


def glu(name, gate, up):
    """The gated activation act(gate) * up, element-wise, in C (``tc_glu_forward``): the
    hidden layer of a gated MLP, act = ``name`` (transformer_c.options.ACTIVATIONS): "silu"
    gives SwiGLU, "gelu" GeGLU, "relu" ReGLU.

    gate, up: the same shape (any) and dtype (float32 or float64). Returns act(gate) * up of
    that shape and dtype. ValueError naming ``activation`` for an unknown name.
    """
    act = _INDEX[check_option("activation", name)]
    gate, up = _gate_and_up(gate, up)
    return _C.glu_forward(act, gate, up)[0]


def glu_backward(name, grad_output, gate, up):
    """Gradients of glu(name, gate, up): (dgate = grad_output * up * act'(gate),
    dup = grad_output * act(gate)), in C.

    grad_output, gate, up: the same shape (any) and dtype. Returns (dgate, dup).
    """
    act = _INDEX[check_option("activation", name)]
    gate, up = _gate_and_up(gate, up)
    grad_output = same_dtype(gate, "gate", grad_output, "grad_output")
    check_shape(grad_output, "grad_output", gate.shape, "gate's")
    return _C.glu_backward(act, grad_output, gate, up)


def _define(name):
    """Public ``name(x)`` and ``name_backward(grad_output, x)`` of an activation that has no
    hand-written function here, documented by its formula from C."""
    formula = _C.ACTIVATION_FORMULAS[name]

    def forward(x):
        return activation(name, x)

    def backward(grad_output, x):
        return activation_backward(name, grad_output, x)

    forward.__doc__ = (f"{formula}, element-wise (C: the activation table).\n\n    x: any "
                       "shape, float32 or float64. Returns y: x's shape and dtype.\n    ")
    backward.__doc__ = (f"Gradient of {name}: dx = grad_output * {name}'(x).\n\n    "
                        "grad_output, x: the same shape (any) and dtype. Returns dx: x's "
                        "shape and dtype.\n    ")
    for fn, fn_name in ((forward, name), (backward, f"{name}_backward")):
        fn.__name__ = fn.__qualname__ = fn_name
        fn.__module__ = __name__
        globals()[fn_name] = fn
        __all__.append(fn_name)


for _name in ACTIVATIONS:
    if _name not in ("gelu_tanh", "gelu", "relu"):  # those have the functions above
        _define(_name)
del _name
