"""Gated activations (csrc/kernels/glu.c: out = act(gate) * up, the hidden layer of SwiGLU /
GeGLU / ReGLU MLPs) for every activation of the table: fast kernels against a NumPy
reference, the plain C reference and PyTorch; float64 finite differences; the write /
accumulate flags and the forward's cache (C hooks); awkward shapes, layouts and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol
from test_activation import ACTIVATION_CASES

F = tc.functional
NAMES = sorted(tc.options.ACTIVATIONS)
SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 3, 33), (1500,), (40000,)]  # blocks, parallel


def data(shape, dtype, seed):
    r = rng(seed)
    return tuple(np.asarray(r.standard_normal(shape) * 2, dtype) for _ in range(3))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy(name, dtype, shape):
    fwd, deriv, _ = ACTIVATION_CASES[name]
    gate, up, g = data(shape, dtype, 1)
    out = F.glu(name, gate, up)
    dgate, dup = F.glu_backward(name, g, gate, up)
    g64, u64, d64 = (a.astype(np.float64) for a in (gate, up, g))
    assert out.shape == dgate.shape == dup.shape == np.shape(gate) and out.dtype == dtype
    np.testing.assert_allclose(out, fwd(g64) * u64, **tol(dtype))
    np.testing.assert_allclose(dup, d64 * fwd(g64), **tol(dtype))
    np.testing.assert_allclose(dgate, d64 * u64 * deriv(g64), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_finite_differences(name):
    gate, up, _ = data((4, 9), np.float64, 2)
    gate[np.abs(gate) < 1e-3] = 0.5  # away from relu's kink
    check_grads(lambda: F.glu(name, gate, up),
                lambda G: dict(zip(("gate", "up"), F.glu_backward(name, G, gate, up))),
                {"gate": gate, "up": up})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(torch, name, dtype):
    _, _, tfn = ACTIVATION_CASES[name]
    gate, up, g = data((5, 37), dtype, 3)
    tg, tu = to_torch(torch, gate), to_torch(torch, up)
    ty = tfn(torch, tg) * tu
    (ty * to_torch(torch, g, grad=False)).sum().backward()
    np.testing.assert_allclose(F.glu(name, gate, up), ty.detach().numpy(), **tol(dtype))
    dgate, dup = F.glu_backward(name, g, gate, up)
    np.testing.assert_allclose(dgate, tg.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(dup, tu.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_equals_the_reference_and_the_cache(name, dtype):
    act = tc.options.ACTIVATIONS.index(name)
    gate, up, g = data((3001,), dtype, 4)
    out, actg = tc._C.glu_forward(act, gate, up)
    rout, ractg = tc._C.glu_forward_ref(act, gate, up)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(out, rout, rtol=32 * eps, atol=32 * eps)
    np.testing.assert_array_equal(actg, F.activation(name, gate))  # the table's bits
    np.testing.assert_array_equal(out, actg * up)
    dgate, dup = tc._C.glu_backward(act, g, gate, up)
    rdgate, rdup = tc._C.glu_backward_ref(act, g, gate, up)
    scale = np.abs(g * up).max() * 8
    np.testing.assert_allclose(dgate, rdgate, rtol=64 * eps, atol=64 * eps * scale)
    np.testing.assert_allclose(dup, rdup, rtol=32 * eps, atol=32 * eps * np.abs(g).max())
    np.testing.assert_array_equal(dup, g * actg)
    np.testing.assert_array_equal(dgate, F.activation_backward(name, g * up, gate))


def test_thread_count_does_not_change_a_bit():
    gate, up, g = data((70001,), np.float32, 5)
    old = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one = F.glu("silu", gate, up), F.glu_backward("silu", g, gate, up)
        tc.set_num_threads(2)
        two = F.glu("silu", gate, up), F.glu_backward("silu", g, gate, up)
    finally:
        tc.set_num_threads(old)
    np.testing.assert_array_equal(one[0], two[0])
    for a, b in zip(one[1], two[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_any_layout(layout):
    gate, up, g = data((6, 10), np.float64, 6)
    np.testing.assert_array_equal(F.glu("gelu", layout(gate), layout(up)), F.glu("gelu", gate, up))
    for a, b in zip(F.glu_backward("gelu", layout(g), layout(gate), layout(up)),
                    F.glu_backward("gelu", g, gate, up)):
        np.testing.assert_array_equal(a, b)


def test_bad_input_names_the_argument():
    x = np.ones(3)
    with pytest.raises(ValueError, match="activation"):
        F.glu("swish", x, x)
    with pytest.raises(ValueError, match="up"):
        F.glu("silu", x, np.ones(4))
    with pytest.raises(TypeError, match="up"):
        F.glu("silu", x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        F.glu_backward("silu", np.ones(2), x, x)
    with pytest.raises(ValueError, match="act"):
        tc._C.glu_forward(99, x, x)
    with pytest.raises(ValueError, match="up"):
        tc._C.glu_backward_ref(0, x, x, np.ones((3, 1)))
