"""The write flag (tc.h: TC_WRITE(k) bits) of the linear, linear+GELU and layernorm backward
kernels, which
the models' backward and the functional bindings use instead of zeroing a buffer and then
accumulating into it: written outputs have exactly the bits accumulating into zeros gives
(signed zeros included), whatever the buffer held before; unflagged outputs still
accumulate; and the bindings' results (no zeroed allocation any more) match NumPy, also for
empty shapes."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng, tol

F = tc.functional
_C = tc._C

KINDS = ["linear", "linear_gelu", "linear_gelu_dact", "layernorm"]
SHAPES = [(1, 1, 1), (7, 13, 33), (33, 16, 8), (130, 40, 70), (0, 5, 3), (4, 5, 0)]


def operands(kind, dtype, N, C, OC, seed=0):
    r = rng(seed + N * 31 + C * 7 + OC)
    if kind == "layernorm":
        OC = C
    dout = r.standard_normal((N, OC)).astype(dtype)
    dout[:, ::3] = 0.0  # zero columns and rows of the gradient: results that come out as
    dout[::4] = 0.0  # -0 when written directly (accumulating into +0 gives +0)
    x = r.standard_normal((N, C)).astype(dtype)
    w = r.standard_normal((OC, C) if kind != "layernorm" else (C,)).astype(dtype)
    # linear_gelu_dact: the cache holds gelu'(pre), any values will do
    pre = r.standard_normal((N, OC)).astype(dtype) if kind.startswith("linear_gelu") else None
    return dout, x, w, pre, OC


def buffers(dtype, N, C, OC, kind, fill):
    wshape = (OC, C) if kind != "layernorm" else (C,)
    return [np.full(s, fill, dtype) for s in ((N, C), wshape, (OC,))]


def run(kind, bufs, dout, x, w, pre, set_flags):
    _C.backward_into(kind, *bufs, dout, x, w, pre, set_flags)
    return bufs


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,OC", SHAPES)
def test_set_equals_accumulate_into_zeros_bitwise(kind, dtype, N, C, OC):
    if kind == "layernorm" and C == 0:
        pytest.skip("layernorm needs C >= 1")
    dout, x, w, pre, OC = operands(kind, dtype, N, C, OC)
    zero = run(kind, buffers(dtype, N, C, OC, kind, 0.0), dout, x, w, pre, 0)
    # written over garbage (NaN): every entry of each flagged output must be rewritten
    for flags in range(1, 8):
        got = run(kind, buffers(dtype, N, C, OC, kind, np.nan), dout, x, w, pre, flags)
        for bit, g, z in zip((1, 2, 4), got, zero):
            if flags & bit:
                assert np.array_equal(bits(g), bits(z)), (flags, bit)
            else:
                assert np.isnan(g).all()  # accumulated: NaN + anything stays NaN


@pytest.mark.parametrize("kind", KINDS)
def test_accumulate_mode_adds_to_what_is_there(kind):
    dtype = np.float64
    N, C, OC = 9, 6, 11
    dout, x, w, pre, OC = operands(kind, dtype, N, C, OC, seed=3)
    grad = run(kind, buffers(dtype, N, C, OC, kind, 0.0), dout, x, w, pre, 0)
    start = [rng(i).standard_normal(g.shape) for i, g in enumerate(grad)]
    acc = run(kind, [s.copy() for s in start], dout, x, w, pre, 0)
    for a, s, g in zip(acc, start, grad):
        np.testing.assert_allclose(a, s + g, rtol=1e-12, atol=1e-12)
    # write mode ignores what was there; bit 2 alone: dinp, dweight add, dbias written
    got = run(kind, [s.copy() for s in start], dout, x, w, pre, 7)
    for g, want in zip(got, grad):
        np.testing.assert_array_equal(g, want)
    got = run(kind, [s.copy() for s in start], dout, x, w, pre, 4)
    np.testing.assert_allclose(got[0], start[0] + grad[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], start[1] + grad[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[2], grad[2])


def test_set_mode_gradients_match_numpy():
    # linear: dx = dout W, dW = dout^T x, db = sum dout (independent NumPy reference)
    N, C, OC = 37, 19, 23
    dout, x, w, _, _ = operands("linear", np.float64, N, C, OC, seed=5)
    dx, dw, db = run("linear", buffers(np.float64, N, C, OC, "linear", np.nan), dout, x, w,
                     None, 7)
    np.testing.assert_allclose(dx, dout @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dout.T @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dout.sum(0), rtol=1e-12, atol=1e-12)


def _dirty_heap(shape, dtype):
    # free NaN-filled arrays of the result sizes first, so an uninitialised allocation that
    # the kernel failed to write would show garbage rather than fresh zero pages
    for _ in range(4):
        a = np.full(shape, np.nan, dtype)
        del a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,OC", [(0, 5, 3), (4, 5, 0), (3, 0, 4), (13, 7, 9)])
def test_bindings_write_every_entry(dtype, N, C, OC):
    r = rng(N + C + OC)
    x = r.standard_normal((N, C)).astype(dtype)
    w = r.standard_normal((OC, C)).astype(dtype)
    b = r.standard_normal(OC).astype(dtype)
    g = r.standard_normal((N, OC)).astype(dtype)
    t = tol(dtype)
    _dirty_heap((OC, C), dtype)
    dx, dw, db = _C.linear_backward(g, x, w, True)
    np.testing.assert_allclose(dx, g.astype(np.float64) @ w, **t)
    np.testing.assert_allclose(dw, g.T.astype(np.float64) @ x, **t)
    np.testing.assert_allclose(db, g.astype(np.float64).sum(0), **t)
    # linear + GELU (tanh form): dpre = g * gelu'(pre), then as linear
    pre = x.astype(np.float64) @ w.T.astype(np.float64) + b
    k = np.sqrt(2 / np.pi)
    u = k * (pre + 0.044715 * pre ** 3)
    th = np.tanh(u)
    dgelu = 0.5 * (1 + th) + 0.5 * pre * (1 - th ** 2) * k * (1 + 3 * 0.044715 * pre ** 2)
    dpre = g * dgelu
    _dirty_heap((OC, C), dtype)
    dx, dw, db = _C.linear_gelu_backward(g, x, w, b, None, 1, True)
    scale = dict(rtol=t["rtol"] * 10, atol=t["atol"] * 10)
    np.testing.assert_allclose(dx, dpre @ w, **scale)
    np.testing.assert_allclose(dw, dpre.T @ x, **scale)
    np.testing.assert_allclose(db, dpre.sum(0), **scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [0, 1, 17])
def test_layernorm_binding_writes_dx(dtype, N):
    C = 12
    r = rng(N)
    x = r.standard_normal((N, C)).astype(dtype)
    w = r.standard_normal(C).astype(dtype)
    g = r.standard_normal((N, C)).astype(dtype)
    _dirty_heap((N, C), dtype)
    dx, dw, db = _C.layernorm_backward(g, x, w, None, None, True, 1e-5)
    xd = x.astype(np.float64)
    mu = xd.mean(-1, keepdims=True)
    rs = 1 / np.sqrt(xd.var(-1, keepdims=True) + 1e-5)
    xh = (xd - mu) * rs
    gw = g * w
    want = rs * (gw - gw.mean(-1, keepdims=True) - xh * (gw * xh).mean(-1, keepdims=True))
    t = tol(dtype)
    np.testing.assert_allclose(dx, want, rtol=t["rtol"] * 10, atol=t["atol"] * 10)
    np.testing.assert_allclose(dw, (g * xh).sum(0), rtol=t["rtol"] * 10, atol=t["atol"] * 10)
    np.testing.assert_allclose(db, g.sum(0), rtol=t["rtol"] * 10, atol=t["atol"] * 10)


def test_backward_into_rejects_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    w = np.zeros((5, 3), np.float32)
    dy = np.zeros((4, 5), np.float32)
    dx, dw, db = np.zeros((4, 3), np.float32), np.zeros((5, 3), np.float32), np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="kind"):
        _C.backward_into("conv", dx, dw, db, dy, x, w, None, 0)
    with pytest.raises(ValueError, match="dinp"):
        _C.backward_into("linear", np.zeros((4, 4), np.float32), dw, db, dy, x, w, None, 0)
    with pytest.raises(ValueError, match="dbias"):
        _C.backward_into("linear", dx, dw, np.zeros(4, np.float32), dy, x, w, None, 0)
    with pytest.raises(TypeError, match="dweight"):
        _C.backward_into("linear", dx, dw.astype(np.float64), db, dy, x, w, None, 0)
    with pytest.raises(ValueError, match="write"):
        _C.backward_into("linear", dx, dw, db, dy, x, w, None, 8)  # past the 3 outputs
    with pytest.raises(ValueError, match="write"):
        _C.backward_into("linear", dx, dw, db, dy, x, w, None, -1)
    with pytest.raises(TypeError, match="pre"):
        _C.backward_into("linear_gelu", dx, dw, db, dy, x, w, None, 0)


# ---- the GPT step writes (rather than zeroes and accumulates) most gradients: nothing from
# an earlier step may leak into the next one

GPT_VARIANTS = {
    "gpt2": {},
    "post_sinusoidal": dict(norm="post", position="sinusoidal"),
    "rope_gelu": dict(position="rope", activation="gelu"),
    "nobias_untied_relu": dict(bias=False, tie_embeddings=False, activation="relu"),
    "qknorm_mqa_rope": dict(qk_norm=True, n_kv_head=1, position="rope"),
}


@pytest.mark.parametrize("variant", sorted(GPT_VARIANTS))
@pytest.mark.parametrize("threads", [1, 2])
def test_gpt_step_gradients_do_not_depend_on_earlier_steps(variant, threads):
    from transformer_c.nn import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8,
                    **GPT_VARIANTS[variant])
    r = np.random.default_rng(0)

    def model():
        m = GPT.create(cfg, np.random.default_rng(0), dtype=np.float64)
        m.flat_parameters[:] += np.random.default_rng(1).normal(0, 0.1, m.flat_parameters.shape)
        return m

    x, y = r.integers(0, 13, (4, 8)), r.integers(0, 13, (4, 8))
    x0, y0 = r.integers(0, 13, (5, 7)), r.integers(0, 13, (5, 7))
    old = tc.get_num_threads()
    tc.set_num_threads(threads)
    try:
        fresh = model()
        want = fresh.loss_and_grads(x, y)[0], fresh.flat_grads.copy()
        used = model()
        used.loss_and_grads(x0, y0)  # another batch and length first
        used.loss_and_grads(x0[:1], y0[:1])
        got = used.loss_and_grads(x, y)[0], used.flat_grads.copy()
        assert got[0] == want[0]
        assert np.array_equal(got[1], want[1])
        # every target ignored: no backward, all gradients zero (after a real step)
        used.loss_and_grads(x, np.full_like(y, -100))
        assert not used.flat_grads.any()
        # and a real step after that one
        used.loss_and_grads(x, y)
        assert np.array_equal(used.flat_grads, want[1])
    finally:
        tc.set_num_threads(old)


# ---- softmax / log-softmax backward: rows (inner == 1) and strided tiles (inner > 1)

@pytest.mark.parametrize("is_log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 13, 1), (2, 33, 1), (2, 7, 5), (3, 9, 70),
                                   (0, 4, 3), (2, 0, 3)])
def test_softmax_set_equals_accumulate_into_zeros_bitwise(is_log, dtype, shape):
    r = rng(sum(shape) + is_log)
    x = r.standard_normal(shape).astype(dtype)
    e = np.exp(x - x.max(axis=1, keepdims=True)) if shape[1] else x
    y = (np.log(e / e.sum(axis=1, keepdims=True)) if is_log else e / e.sum(axis=1, keepdims=True)) \
        if shape[1] else x
    y = np.ascontiguousarray(y.astype(dtype))
    g = r.standard_normal(shape).astype(dtype)
    if shape[0]:
        g[0] = 0.0  # a zero gradient slab: results that would be -0 if written directly
    zero = np.zeros(shape, dtype)
    _C.softmax_backward_into(zero, g, y, is_log, 0)
    got = np.full(shape, np.nan, dtype)
    _C.softmax_backward_into(got, g, y, is_log, 1)
    assert np.array_equal(bits(got), bits(zero))
    start = rng(9).standard_normal(shape).astype(dtype)
    acc = start.copy()
    _C.softmax_backward_into(acc, g, y, is_log, 0)
    t = tol(dtype)
    np.testing.assert_allclose(acc, start + zero, **t)
    # the binding (set mode into an uninitialised array) against NumPy
    _dirty_heap(shape, dtype)
    fn = _C.log_softmax_backward if is_log else _C.softmax_backward
    dx = fn(g, y, 1)
    gd, yd = g.astype(np.float64), y.astype(np.float64)
    want = gd - np.exp(yd) * gd.sum(1, keepdims=True) if is_log else \
        yd * (gd - (gd * yd).sum(1, keepdims=True))
    np.testing.assert_allclose(dx, want, rtol=t["rtol"] * 10, atol=t["atol"] * 10)


def test_softmax_backward_into_rejects_bad_arguments():
    y = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="dinp"):
        _C.softmax_backward_into(np.zeros((2, 3, 5), np.float32), y, y, False, True)
    with pytest.raises(TypeError, match="dout"):
        _C.softmax_backward_into(y.copy(), y.astype(np.float64), y, False, True)
    with pytest.raises(ValueError, match="write"):
        _C.softmax_backward_into(y.copy(), y, y, False, 2)  # one output: bit 0 only


# ---- the kernels that zero a written output inside (embedding, cross-entropy, RoPE,
# residual + layernorm), through ctypes: written = accumulated into zeros, bitwise

def _lib_fn(name, dtype):
    import ctypes
    f = getattr(ctypes.CDLL(_C.__file__), f"{name}_{'f32' if dtype == np.float32 else 'f64'}")
    f.restype = ctypes.c_int
    return f


def _p(a):
    import ctypes
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["embedding", "cross_entropy", "rope", "layernorm_residual"])
def test_zeroing_kernels_write_flag(kind, dtype):
    import ctypes
    i64, real = ctypes.c_int64, (ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    r = rng(77)
    if kind == "embedding":
        V, D, N = 7, 5, 11
        ids = r.integers(0, V - 2, N).astype(np.int64)  # rows V-2, V-1 get no gradient
        dout = r.standard_normal((N, D)).astype(dtype)
        shapes = [(V, D)]
        f = _lib_fn("tc_embedding_backward", dtype)

        def call(outs, w):
            return f(_p(outs[0]), _p(dout), _p(ids), i64(N), i64(V), i64(D), ctypes.c_int(w))
    elif kind == "cross_entropy":
        N, V = 6, 9
        logits = r.standard_normal((N, V)).astype(dtype)
        t = r.integers(0, V, N).astype(np.int64)
        t[2] = -100  # ignored: its row stays 0 when written
        shapes = [(N, V)]
        f = _lib_fn("tc_loss_cross_entropy_backward", dtype)

        def call(outs, w):
            return f(_p(outs[0]), None, _p(logits), _p(t), None, i64(N), i64(V), i64(-100),
                     real(0.1), real(0.5), ctypes.c_int(w))
    elif kind == "rope":
        N, L, NH, HS = 2, 5, 3, 8
        cos, sin = _C.rope_table(L, HS, 10000.0, 0, dtype)
        dout = r.standard_normal((N, L, NH, HS)).astype(dtype)
        shapes = [(N, L, NH, HS)]
        f = _lib_fn("tc_rope_backward", dtype)

        def call(outs, w):
            return f(_p(outs[0]), _p(dout), _p(cos), _p(sin), i64(N), i64(L), i64(NH), i64(HS),
                     ctypes.c_int(0), ctypes.c_int(w))
    else:
        N, C = 9, 12
        x, res = (r.standard_normal((N, C)).astype(dtype) for _ in range(2))
        w_, b_ = r.standard_normal(C).astype(dtype), r.standard_normal(C).astype(dtype)
        _, s, mean, rstd = _C.layernorm_residual_forward(x, res, w_, b_, 1e-5)
        dout = r.standard_normal((N, C)).astype(dtype)
        shapes = [(N, C), (N, C), (C,), (C,)]
        f = _lib_fn("tc_layernorm_residual_backward", dtype)

        def call(outs, w):
            return f(*(_p(o) for o in outs), _p(dout), None, _p(s), _p(w_), _p(mean), _p(rstd),
                     i64(N), i64(C), ctypes.c_int(w))
    zero = [np.zeros(sh, dtype) for sh in shapes]
    assert call(zero, 0) == 0
    for write in range(1, 1 << len(shapes)):
        base = [r.standard_normal(sh).astype(dtype) for sh in shapes]
        outs = [np.full(sh, np.nan, dtype) if write >> k & 1 else base[k].copy()
                for k, sh in enumerate(shapes)]
        assert call(outs, write) == 0
        for k, (o, z) in enumerate(zip(outs, zero)):
            if write >> k & 1:
                assert np.array_equal(bits(o), bits(z)), (kind, write, k)
            else:
                np.testing.assert_allclose(o, base[k] + z, rtol=1e-5, atol=1e-5)
