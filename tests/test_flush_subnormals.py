"""Subnormals flushed to zero inside the whole-model C paths (core/fpenv.c), and only there:
a gradient built to be subnormal is 0 with the switch on and subnormal with it off; after
the call the calling thread and the OpenMP threads keep gradual underflow (NumPy and a
two-thread product outside the model make subnormals again); the environment switch; the
OpenMP team's bits are set only by a call whose parallel regions would use the team (a small
call, or one on a busy machine, never wakes the other threads), and each worker of the
data-parallel batch split flushes on its own thread."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import _C
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


def assert_threads_keep_gradual_underflow():
    """NumPy on this thread, and a product split over the two threads outside the model:
    every entry subnormal (a thread left with FTZ or DAZ would make zeros)."""
    assert np.float32(1e-38) * np.float32(0.5) != 0
    a = np.full((256, 256), 1e-21, np.float32)
    c = tc.functional.matmul(a, a)
    assert np.all(c > 0) and np.all(c < TINY32)


def medium_model():
    """A GPT whose forward on (1, 64) is ~10 MFLOP: past the team's threshold (2 MFLOP)."""
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=64)
    m = GPT.create(cfg, np.random.default_rng(0))
    r = np.random.default_rng(1)
    x, y = (r.integers(0, 65, (1, 64)) for _ in range(2))
    assert 2 * 64 * m.num_parameters > 4 * 2097152
    return m, x, y


@pytest.mark.openmp
def test_a_small_call_at_two_threads_leaves_the_team_alone(restore_switch, threads):
    tc.set_flush_subnormals(True)
    m, x, y = subnormal_gradient_model()  # 2 * 1 token * ~1000 parameters: 2 kFLOP
    threads(2)
    before = _C.fp_team_entries()
    _, g = m.loss_and_grads(x, y)
    m.forward(x)
    assert _C.fp_team_entries() == before  # no region opened for the bits
    assert np.all(g["wte"]["weight"][1] == 0)  # and this thread flushed all the same
    assert_threads_keep_gradual_underflow()


@pytest.mark.openmp
def test_a_large_call_sets_the_team_and_puts_it_back(restore_switch, threads):
    tc.set_flush_subnormals(True)
    m, x, y = medium_model()
    was = tc.get_data_parallel()
    tc.set_data_parallel(False)  # one pass, the kernels parallel inside
    try:
        threads(2)
        before = _C.fp_team_entries()
        m.forward(x)
        m.loss_and_grads(x, y)
        assert _C.fp_team_entries() == before + 2
        assert_threads_keep_gradual_underflow()
        threads(1)  # one thread: no team to set
        m.forward(x)
        assert _C.fp_team_entries() == before + 2
        threads(2)
        tc.set_flush_subnormals(False)  # switch off: nothing set anywhere
        m.forward(x)
        assert _C.fp_team_entries() == before + 2
    finally:
        tc.set_data_parallel(was)


@pytest.fixture
def busy_machine():
    """One spinning process per core, and the contention guard on: no free core."""
    n = os.cpu_count() or 2
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    was = tc.get_thread_guard()
    tc.set_thread_guard(True)
    time.sleep(0.3)
    yield
    tc.set_thread_guard(was)
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


@pytest.mark.openmp
def test_a_large_call_on_a_busy_machine_leaves_the_team_alone(restore_switch, threads,
                                                              busy_machine):
    tc.set_flush_subnormals(True)
    m, x, _ = medium_model()
    was = tc.get_data_parallel()
    tc.set_data_parallel(False)
    try:
        threads(2)
        for _ in range(3):  # two readings of the run queue, 10 ms apart, settle the guard
            _C.parallel_worth(1e12, 1.0)
            time.sleep(0.012)
        assert _C.parallel_worth(1e12, 1.0) is False  # the guard: no free core
        before = _C.fp_team_entries()
        want = m.forward(x)
        assert _C.fp_team_entries() == before
    finally:
        tc.set_data_parallel(was)
        tc.set_thread_guard(False)
    np.testing.assert_array_equal(m.forward(x), want)  # the same numbers with the team


@pytest.mark.openmp
def test_each_worker_of_the_batch_split_flushes_its_rows(restore_switch, threads):
    """Two rows at 2 threads: the split gives row 1 to the second thread, whose subnormal
    gradient is 0 with the switch on (and subnormal with it off); no team region."""
    m, x, y = subnormal_gradient_model()
    x2, y2 = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)
    assert tc.get_data_parallel()
    threads(2)
    tc.set_flush_subnormals(True)
    before = _C.fp_team_entries()
    _, g_on = m.loss_and_grads(x2, y2)
    assert _C.fp_team_entries() == before
    assert np.all(g_on["wte"]["weight"][1] == 0)
    tc.set_flush_subnormals(False)
    _, g_off = m.loss_and_grads(x2, y2)
    row = g_off["wte"]["weight"][1]
    sub = row[row != 0]
    assert sub.size >= 1 and np.all(np.abs(sub) < TINY32)
    assert_threads_keep_gradual_underflow()
