"""Subnormals flushed to zero inside the whole-model C paths (core/fpenv.c), and only there:
a gradient built to be subnormal is 0 with the switch on and subnormal with it off; after
the call the calling thread and the OpenMP threads keep gradual underflow (NumPy and a
two-thread product outside the model make subnormals again); the environment switch."""
import os
import subprocess
import sys

import numpy as np
import pytest

import transformer_c as tc
from transformer_c.nn import GPT, GPTConfig

TINY32 = np.finfo(np.float32).tiny


@pytest.fixture
def restore_switch():
    was = tc.get_flush_subnormals()
    yield
    tc.set_flush_subnormals(was)


def subnormal_gradient_model():
    """A 1-layer GPT whose wte row 1 gets the gradient p_1 h with p_1 ~ e^-89.5 (subnormal
    in float32): ln_f keeps one dimension, wte rows 0 and 1 point along it with logits
    +-44.75, the input token is 2 (so row 1 has no embedding gradient)."""
    cfg = GPTConfig(vocab_size=3, block_size=4, n_layer=1, n_head=1, n_embd=8, bias=False)
    m = GPT.create(cfg, np.random.default_rng(0))
    sd = m.state_dict()
    x, y = np.array([[2]]), np.array([[0]])
    sd["ln_f.weight"][:] = 0
    sd["ln_f.weight"][0] = 1
    sd["wte.weight"][:2] = 0
    sd["wte.weight"][0, 0] = 1
    z0 = float(m.forward(x)[0, 0, 0])  # the one kept dimension of the final hidden state
    assert abs(z0) > 0.1
    a = 89.5 / (2 * z0)
    sd["wte.weight"][0, 0], sd["wte.weight"][1, 0] = a, -a
    return m, x, y


def test_on_by_default_and_the_environment_turns_it_off():
    code = "import transformer_c as tc; print(tc.get_flush_subnormals())"
    for env, want in ((None, "True"), ("0", "False"), ("1", "True")):
        e = dict(os.environ)
        e.pop("TC_FLUSH_SUBNORMALS", None)
        if env is not None:
            e["TC_FLUSH_SUBNORMALS"] = env
        out = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == want, (env, out)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_subnormal_gradient_is_zero_only_with_the_switch_on(restore_switch, threads):
    tc.set_num_threads(threads)
    try:
        m, x, y = subnormal_gradient_model()
        tc.set_flush_subnormals(True)
        loss_on, g_on = m.loss_and_grads(x, y)
        row_on = g_on["wte"]["weight"][1].copy()
        tc.set_flush_subnormals(False)
        loss_off, g_off = m.loss_and_grads(x, y)
        row_off = g_off["wte"]["weight"][1]
    finally:
        tc.set_num_threads(1)
    assert np.all(row_on == 0)
    sub = row_off[row_off != 0]
    assert sub.size >= 1 and np.all(np.abs(sub) < TINY32)  # gradual underflow without it
    assert loss_on == loss_off
    # everything that is not subnormal is the same, bit for bit
    for name in ("wpe", "ln_f"):
        on, off = g_on[name]["weight"], g_off[name]["weight"]
        np.testing.assert_array_equal(on, off)


def test_the_threads_keep_gradual_underflow_after_a_call(restore_switch):
    tc.set_flush_subnormals(True)
    m, x, y = subnormal_gradient_model()
    tc.set_num_threads(2)
    try:
        m.loss_and_grads(x, y)
        m.forward(x)
        # NumPy on this thread
        assert np.float32(1e-38) * np.float32(0.5) != 0
        # a product split over the two threads, outside the model: every entry subnormal
        a = np.full((256, 256), 1e-21, np.float32)
        c = tc.functional.matmul(a, a)
    finally:
        tc.set_num_threads(1)
    want = 256 * np.float64(np.float32(1e-21)) ** 2  # 2.6e-40
    assert np.all(c > 0) and np.all(c < TINY32)
    np.testing.assert_allclose(c, want, rtol=1e-3)
