"""The C activation table (tc_activation_forward / _backward, one row per TC_ACT_* value,
exposed as _C.activation_forward / activation_backward): every entry is its family's kernel
bitwise, and an unknown activation is an error (never "else GELU")."""
import numpy as np
import pytest

from transformer_c import _C
from transformer_c.options import ACTIVATIONS

FAMILY = {
    "gelu_tanh": (lambda x: _C.gelu_forward(x, 1), lambda g, x: _C.gelu_backward(g, x, 1)),
    "gelu": (lambda x: _C.gelu_forward(x, 0), lambda g, x: _C.gelu_backward(g, x, 0)),
    "relu": (_C.relu_forward, _C.relu_backward),
}


def test_table_covers_every_activation():
    # the activations with kernels of their own outside the table (relu, gelu) are the
    # table's entries bitwise; the others (silu, ...) live only in the table and are
    # tested in test_activation.py (ACTIVATION_CASES covers every name)
    assert set(FAMILY) <= set(ACTIVATIONS)
    assert {"gelu_tanh", "gelu", "relu"} <= set(FAMILY)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_entry_is_the_family_kernel_bitwise(name, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((7, 301)) * 4).astype(dtype)
    x[0, :4] = [0.0, -0.0, 1e-30, -50.0]
    g = rng.standard_normal(x.shape).astype(dtype)
    act = ACTIVATIONS.index(name)
    fwd, bwd = FAMILY[name]
    y = _C.activation_forward(act, x)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.tobytes() == fwd(x).tobytes()
    assert _C.activation_backward(act, g, x).tobytes() == bwd(g, x).tobytes()


@pytest.mark.parametrize("act", [-1, len(ACTIVATIONS), 99])
def test_unknown_activation_is_an_error(act):
    x = np.ones(5)
    with pytest.raises(ValueError, match="act must be an activation index"):
        _C.activation_forward(act, x)
    with pytest.raises(ValueError, match="act must be an activation index"):
        _C.activation_backward(act, x, x)
    with pytest.raises(ValueError, match="act must be an activation index"):
        _C.activation_forward(act, np.ones(0, np.float32))


def test_bad_arrays_name_the_argument():
    with pytest.raises(TypeError, match="x has dtype float64"):
        _C.activation_backward(0, np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        _C.activation_backward(0, np.ones(3), np.ones(4))
