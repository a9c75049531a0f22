"""transformer_c.testing: gradcheck, compare_modules and the default tolerances."""
import numpy as np
import pytest

import transformer_c.functional as F
from transformer_c import nn
from transformer_c.compat import mytorch
from transformer_c.testing import (ErrorStats, GradcheckError, compare_modules,
                                   default_tolerances, gradcheck)


def test_default_tolerances_depend_on_dtype():
    assert default_tolerances(np.float64) == {"rtol": 1e-7, "atol": 1e-9}
    assert default_tolerances(np.float32) == {"rtol": 1e-4, "atol": 1e-5}
    assert default_tolerances("float32") is not default_tolerances("float32")  # copies


def test_gradcheck_tree_module_in_float64_even_from_float32():
    rng = np.random.default_rng(0)
    lin = nn.Linear.create(3, 2, rng, dtype=np.float32)
    assert gradcheck(lin, {"x": rng.standard_normal((4, 3)).astype(np.float32)})
    norm = nn.LayerNorm(rng.standard_normal(5), rng.standard_normal(5))
    assert gradcheck(norm, {"x": rng.standard_normal((2, 5))})


def test_gradcheck_function_with_backward():
    x = np.random.default_rng(1).standard_normal((3, 4))
    assert gradcheck(lambda x: F.softmax(x, axis=0), {"x": x},
                     backward=lambda g, x: {"x": F.softmax_backward(g, F.softmax(x, 0), 0)})
    with pytest.raises(GradcheckError, match=r"inputs/x\[0, 0\]: analytic .* vs numeric"):
        gradcheck(lambda x: F.softmax(x, axis=0), {"x": x},  # backward along the wrong axis
                  backward=lambda g, x: (F.softmax_backward(g, F.softmax(x, 1), 1),))


class HalfBiasLinear(nn.Linear):
    """A buggy backward: the bias gradient is halved."""

    def with_parameters(self, parameters):
        return HalfBiasLinear(parameters["weights"], parameters["bias"])

    def backward(self, gradient_outputs, **inputs):
        grads, dx = super().backward(gradient_outputs, **inputs)
        return {**grads, "bias": grads["bias"] / 2}, dx


def test_gradcheck_names_parameter_path_index_and_values():
    rng = np.random.default_rng(2)
    lin = nn.Linear.create(3, 2, rng)
    bad = HalfBiasLinear(lin.weights, lin.bias)
    with pytest.raises(GradcheckError) as e:
        gradcheck(bad, {"x": rng.standard_normal((4, 3))})
    msg = str(e.value)
    assert msg.startswith("parameters/bias[0]: analytic ") and "numeric" in msg


def test_gradcheck_stateful_mytorch_module_and_max_checks():
    rng = np.random.default_rng(3)
    mha = mytorch.MultiHeadAttention(4, 2)
    mha.init_weights(*[rng.standard_normal(s) for s in [(4, 4), (4,)] * 4])
    q = rng.standard_normal((2, 3, 4))
    kv = rng.standard_normal((2, 5, 4))

    class WithMasks:  # forward(query, key, value) with fixed masks, the course's way
        def __init__(self, m):
            self.m = m

        def forward(self, query, key, value):
            return self.m.forward(query, key, value, key_padding_mask=np.array(
                [[False] * 5, [False] * 3 + [True] * 2]), attn_mask=np.triu(
                np.ones((3, 5), bool), 1))

        def backward(self, g):
            return self.m.backward(g)

    assert gradcheck(WithMasks(mha), {"query": q, "key": kv, "value": kv.copy()},
                     max_checks=6)
    mha.out_proj.b = mha.out_proj.b.astype(np.float32)  # cast back to float64 by gradcheck
    assert gradcheck(mha, {"query": q, "key": kv, "value": kv.copy()}, max_checks=3)
    assert mha.out_proj.b.dtype == np.float64


def test_gradcheck_rejects_non_modules():
    with pytest.raises(TypeError, match="backward="):
        gradcheck(lambda x: x, {"x": np.zeros(2)})


def test_compare_modules_tree_protocol():
    rng = np.random.default_rng(4)
    lin = nn.Linear.create(3, 2, rng)
    x = {"x": rng.standard_normal((5, 3))}
    report = compare_modules(nn.Linear(lin.weights, lin.bias), lin, x)
    assert list(report) == ["output", "parameters/weights", "parameters/bias", "inputs/x"]
    assert all(s.ok for s in report.values()) and report["output"].max_abs == 0.0
    bad = compare_modules(HalfBiasLinear(lin.weights, lin.bias), lin, x)
    assert bad["output"].ok and bad["parameters/weights"].ok
    b = bad["parameters/bias"]
    assert not b.ok and b.worst_index is not None and b.max_rel == pytest.approx(0.5)
    assert "parameters/bias: MISMATCH" in b.message and "worst at index" in b.message


def test_compare_modules_stateful_and_missing_gradients():
    rng = np.random.default_rng(5)
    W, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
    ref, student = mytorch.Linear(3, 2), mytorch.Linear(3, 2)
    ref.init_weights(W, b)
    student.init_weights(W, b)
    A = {"A": rng.standard_normal((2, 4, 3))}
    report = compare_modules(student, ref, A)
    assert set(report) == {"output", "parameters/dLdW", "parameters/dLdb", "inputs/A"}
    assert all(s.ok for s in report.values())

    class NoBiasGrad(mytorch.Linear):
        def backward(self, dLdZ):
            dA = super().backward(dLdZ)
            del self.dLdb
            return dA

    s2 = NoBiasGrad(3, 2)
    s2.init_weights(W, b)
    r2 = compare_modules(s2, ref, A)
    assert not r2["parameters/dLdb"].ok and "MISSING" in r2["parameters/dLdb"].message


def test_error_stats_shapes_nonfinite_and_tolerance():
    r = np.array([1.0, 2.0, 3.0])
    assert ErrorStats("y", r + 1e-10, r, rtol=1e-7, atol=1e-9).ok
    s = ErrorStats("y", np.array([1.0, np.inf, 3.5]), r, rtol=1e-7, atol=1e-9)
    assert not s.ok and s.nonfinite == 1 and s.worst_index == (1,)
    assert "1 NaN/inf" in s.message
    m = ErrorStats("y", np.zeros((3, 1)), r, rtol=0, atol=0)
    assert not m.ok and "shape (3, 1), expected (3,)" in m.message
    assert ErrorStats("y", np.array([np.nan]), np.array([np.nan]), rtol=0, atol=0).ok
