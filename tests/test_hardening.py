"""Regression tests of issue 22's defects 1, 2, 3, 7 (C half), 9 and 10: input that used to
crash, hang, or silently give wrong numbers, and the checks that keep it so."""
import inspect
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import transformer_c as tc
import transformer_c.functional as F
from transformer_c import _C
from transformer_c.generate import MAX_NEW_TOKENS, SequenceGenerator, beam_search, generate
from transformer_c.nn import GPT, EncoderDecoderConfig, GPTConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- 1: sequences read once


class _Mutator:
    """An array-like whose conversion mutates the list holding it."""

    def __init__(self, owner, how):
        self.owner, self.how = owner, how

    def __array__(self, dtype=None, copy=None):
        getattr(self.owner, self.how)()
        return np.full(4, 2.0)


def test_global_grad_norm_reads_a_snapshot_when_an_item_pops_the_list():
    arrays = [np.ones(3), None, np.full(5, 3.0)]
    arrays[1] = _Mutator(arrays, "pop")
    want = np.sqrt(3 * 1.0 + 4 * 4.0 + 5 * 9.0)  # the list as it was passed
    assert F.global_grad_norm(arrays) == pytest.approx(want, rel=1e-15)
    assert _C.global_grad_norm(list(arrays) + [np.ones(1)]) > 0  # still usable


def test_global_grad_norm_survives_an_item_that_clears_the_list():
    # was a use after free (segfault): run it in a child so a crash fails this test only
    code = textwrap.dedent("""
        import numpy as np
        from transformer_c import _C, functional as F
        class M:
            def __init__(self, owner): self.owner = owner
            def __array__(self, dtype=None, copy=None):
                self.owner.clear()
                return np.full(4, 2.0)
        for fn in (F.global_grad_norm, _C.global_grad_norm):
            arrays = [np.ones(3), None] + [np.full(1000, 3.0) for _ in range(50)]
            arrays[1] = M(arrays)
            print(repr(fn(arrays)))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    want = np.sqrt(3 + 16 + 50 * 1000 * 9.0)
    for line in r.stdout.split():
        assert float(line) == pytest.approx(want, rel=1e-15)


def test_model_config_dict_is_read_as_a_snapshot():
    # a value's conversion (an int subclass's __float__) clears the caller's dict: the
    # binding still sees every field (it reads a copy), instead of "missing field"
    cfg = GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, n_embd=4).c_fields()

    class Eps(int):
        def __float__(self):
            cfg.clear()
            return 1e-5

    cfg["eps"] = Eps(0)
    nbytes = _C.gpt_arena_bytes(True, cfg, 1, 4)
    assert cfg == {} and nbytes > 0


# ---------------------------------------------------------------- 2, 3: the thread count


@pytest.mark.openmp
def test_set_num_threads_refuses_absurd_counts(threads):
    top = _C.max_num_threads()
    assert top >= max(1024, 4 * (os.cpu_count() or 1))  # the documented bound
    before = tc.get_num_threads()
    for bad in (0, -1, top + 1, 2 ** 31 - 1, 2 ** 31, 10 ** 30):
        for fn in (tc.set_num_threads, _C.set_num_threads):
            with pytest.raises(ValueError, match=r"n must be in \[1, "):
                fn(bad)
    assert tc.get_num_threads() == before  # nothing changed
    with pytest.raises(TypeError):
        _C.set_num_threads(2.0)
    threads(top)  # the bound itself is accepted
    assert tc.get_num_threads() == top
    threads(2)
    x = np.random.default_rng(0).normal(size=(64, 64))
    assert np.isfinite(F.softmax(x)).all()


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _gpt_grads(model, idx, tgt):
    loss, _ = model.loss_and_grads(idx, tgt)
    return loss, model.flat_grads.copy()


@pytest.mark.openmp
def test_set_num_threads_is_process_wide(threads):
    # OpenMP's setting is per thread: the count set here must also hold in other threads
    n = 3 if (os.cpu_count() or 1) != 3 and os.environ.get("OMP_NUM_THREADS") != "3" else 4
    threads(n)
    assert _in_thread(tc.get_num_threads) == n
    assert _in_thread(_C.get_num_threads) == n
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = GPT.create(cfg, np.random.default_rng(0), dtype=np.float32)
    r = np.random.default_rng(1)
    idx, tgt = r.integers(0, 13, (6, 8)), r.integers(0, 13, (6, 8))
    here = _gpt_grads(model, idx, tgt)
    there = _in_thread(lambda: _gpt_grads(model, idx, tgt))
    assert here[0] == there[0] and np.array_equal(here[1], there[1])
    threads(2)  # a change made in a worker thread holds in this one
    _in_thread(lambda: tc.set_num_threads(1))
    assert tc.get_num_threads() == 1


def test_every_binding_applies_the_thread_count():
    # the process-wide count reaches a kernel through TC_PY_BEGIN_ALLOW_THREADS (bind.h)
    raw = []
    for path in sorted((ROOT / "csrc" / "py").glob("*.[ch]")):
        for k, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("/*")[0].split("//")[0]
            if code.strip().startswith("*"):
                continue  # a comment's continuation line
            if "Py_BEGIN_ALLOW_THREADS" in code.replace("TC_PY_BEGIN_ALLOW_THREADS", ""):
                raw.append(f"{path.name}:{k}")
    assert len(raw) == 1 and raw[0].startswith("bind.h:"), raw  # the macro's definition


# ---------------------------------------------------------------- 7: absurd model sizes


def _gpt_cfg(**kw):
    c = GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, n_embd=4).c_fields()
    c.update(kw)
    return c


def _ed_cfg(**kw):
    c = EncoderDecoderConfig(src_vocab_size=11, block_size=4, n_encoder_layer=1,
                             n_decoder_layer=1, n_head=1, n_embd=4, dropout=0.0).c_fields()
    c.update(kw)
    return c


@pytest.mark.parametrize("layers", [65537, 10 ** 9, 2 ** 62])
def test_raw_model_calls_refuse_huge_layer_counts_at_once(layers):
    p = np.zeros(8)
    calls = [
        ("L", lambda: _C.gpt_create(p, p.copy(), _gpt_cfg(L=layers))),
        ("L", lambda: _C.gpt_kv_create(p, _gpt_cfg(L=layers), 1, 4)),
        ("L", lambda: _C.gpt_arena_bytes(True, _gpt_cfg(L=layers), 1, 4)),
        ("Le", lambda: _C.encdec_create(p, p.copy(), _ed_cfg(Le=layers))),
        ("Ld", lambda: _C.encdec_kv_create(p, _ed_cfg(Ld=layers), 1, 4, 4)),
        ("Ld", lambda: _C.encdec_arena_bytes(True, _ed_cfg(Ld=layers), 1, 4, 4)),
    ]
    for field, call in calls:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=rf"field '{field}' \(a layer count\) must be <= 65536"):
            call()
        assert time.perf_counter() - t0 < 0.5


def test_the_layer_bound_itself_is_a_valid_size():
    assert _C.gpt_arena_bytes(True, _gpt_cfg(L=65536), 1, 4) > 0
    assert _C.encdec_arena_bytes(True, _ed_cfg(Le=65536, Ld=65536), 1, 4, 4) > 0


# ---------------------------------------------------------------- 9: generation length


class _CountingFn:
    """A logits function that fails after a few calls (so an unbounded run ends)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, ids):
        self.calls += 1
        if self.calls > 3:
            raise RuntimeError("the generation ran instead of being refused")
        return np.zeros(ids.shape + (5,))


@pytest.mark.parametrize("n", [MAX_NEW_TOKENS + 1, 10 ** 29])
@pytest.mark.parametrize("how", ["greedy", "sample", "beam"])
def test_generate_bounds_max_new_tokens(n, how):
    fn = _CountingFn()
    kw = {"greedy": {}, "sample": dict(temperature=1.0, seed=0), "beam": dict(num_beams=2)}
    with pytest.raises(ValueError, match="max_new_tokens must be <= 1048576"):
        generate(fn, [np.array([1, 2])], max_new_tokens=n, **kw[how])
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(fn, [np.array([1, 2])], max_new_tokens=n)
    with pytest.raises(ValueError, match="max_length must be <= 1048576"):
        SequenceGenerator(fn, max_length=n, eos_id=0)
    assert fn.calls == 0
    assert MAX_NEW_TOKENS == 2 ** 20


def test_generate_below_the_bound_still_runs():
    out = generate(lambda ids: np.zeros(ids.shape + (5,)), [np.array([1, 2])],
                   max_new_tokens=3)
    assert len(out.tokens[0]) == 3


# ---------------------------------------------------------------- 10: big-endian arrays


def _swap(a):
    """a in the other byte order (big-endian on the usual little-endian machine)."""
    return a.astype(a.dtype.newbyteorder("S"))


def _specs(dt, r):
    """name -> (args, kwargs, in-place positional indices) for every public functional."""
    def n(*shape):
        return r.normal(size=shape).astype(dt)

    x, w, b, w8, b8 = n(2, 3, 8), n(5, 8), n(5), n(8), n(8)
    dy5, ids = n(2, 3, 5), r.integers(0, 10, (2, 3))
    q, kv = n(1, 2, 3, 4), n(1, 2, 5, 4)
    a, bm = n(3, 4), n(4, 6)
    y = F.softmax(x)
    _, mean, rstd = F.layer_norm(x, w8, b8, return_stats=True)
    rms_rstd = F.rms_norm(x, w8, b8, return_stats=True)[1]
    logits, probs = n(6, 5), F.softmax(n(6, 5))
    dtype = np.dtype(dt)
    one = n(1, 2, 1, 4)
    cache = lambda: np.zeros((1, 2, 6, 4), dt)  # noqa: E731
    moe_w = (n(4, 8), n(4, 6, 8), n(4, 6), n(4, 8, 6), n(4, 8))  # router, w1, b1, w2, b2
    # every activation of the C table (tc.options.ACTIVATIONS) with a functional pair
    acts = {}
    for act in tc.options.ACTIVATIONS:
        if hasattr(F, act):
            acts[act] = ((x,), {}, ())
        if hasattr(F, act + "_backward"):
            acts[act + "_backward"] = ((x, x), {}, ())
    return {**acts,
        "activation": (("gelu", x), {}, ()),
        "activation_backward": (("gelu", x, x), {}, ()),
        "glu": (("silu", x, x), {}, ()),
        "glu_backward": (("silu", x, x, x), {}, ()),
        "relu": ((x,), {}, ()),
        "relu_backward": ((x, x), {}, ()),
        "gelu": ((x,), {"approximate": "tanh"}, ()),
        "gelu_backward": ((x, x), {}, ()),
        "add_positions": ((x,), {"offset": 2}, ()),
        "add_positions_backward": ((x,), {}, ()),
        "attention_decode": ((one, one, one, cache(), cache(), 2), {}, (3, 4)),
        "cross_entropy": ((logits, probs), {"label_smoothing": 0.1}, ()),
        "cross_entropy_backward": ((logits, ids.reshape(-1) % 5), {"reduction": "none",
                                   "grad_output": n(6)}, ()),
        "dropout": ((x, 0.3), {"seed": 7}, ()),
        "dropout_backward": ((x, 0.3), {"seed": 7}, ()),
        "dropout_mask": (((2, 3), 0.3), {"seed": 7, "dtype": dtype}, ()),
        "embedding": ((ids, n(10, 8)), {}, ()),
        "embedding_backward": ((x, ids, 10), {}, ()),
        "gemm": ((a, bm), {}, ()),
        "global_grad_norm": (([x, w, b],), {}, ()),
        "layer_norm": ((x, w8, b8), {"return_stats": True}, ()),
        "layer_norm_backward": ((x, x, w8, b8), {"mean": mean, "rstd": rstd}, ()),
        "layer_norm_residual": ((x, x, w8, b8), {}, ()),
        "layer_norm_residual_backward": ((x, x, w8, b8), {"grad_s": x}, ()),
        "rms_norm": ((x, w8, b8), {"return_stats": True}, ()),
        "rms_norm_backward": ((x, x, w8, b8), {"rstd": rms_rstd}, ()),
        "softcap": ((x, 2.0), {}, ()),
        "softcap_backward": ((x, F.softcap(x, 2.0), 2.0), {}, ()),
        "linear": ((x, w, b), {}, ()),
        "linear_backward": ((dy5, x, w, b), {}, ()),
        "linear_gelu": ((x, w, b), {"return_pre": True}, ()),
        "linear_gelu_backward": ((dy5, x, w, b), {}, ()),
        "linear_activation": ((x, w, b, "relu2"), {"return_dact": True}, ()),
        "linear_activation_backward": ((dy5, x, w, F.linear_activation(x, w, b, "relu2",
                                        return_dact=True)[1], b), {}, ()),
        "log_softmax": ((x,), {}, ()),
        "log_softmax_backward": ((x, y), {}, ()),
        "matmul": ((a, bm), {}, ()),
        "matmul_backward": ((n(3, 6), a, bm), {}, ()),
        "rope": ((q,), {"offset": 1}, ()),
        "rope_backward": ((q,), {}, ()),
        "rope_table": ((4, 8), {"dtype": dtype}, ()),
        "sinusoidal_positions": ((4, 8), {"dtype": dtype}, ()),
        "softmax": ((x,), {}, ()),
        "softmax_backward": ((x, y), {}, ()),
        "scaled_dot_product_attention": ((q, kv, kv), {"attn_mask": n(3, 5),
                                         "return_lse": True}, ()),
        "scaled_dot_product_attention_backward": ((q, q, kv, kv), {"is_causal": True}, ()),
        "attention_weights": ((q, kv, F.scaled_dot_product_attention(
            q, kv, kv, is_causal=True, return_lse=True)[1]), {"is_causal": True}, ()),
        "sparse_layout": ((2, 1, 2, 0), {}, ()),
        "sparse_mask": ((F.sparse_layout(2, 1, 2, 0), 3, 5), {}, ()),
        "block_sparse_attention": ((q, kv, kv, F.sparse_layout(2, 1, 2, 0)),
                                   {"key_padding_mask": np.ones((1, 5), bool)}, ()),
        "scale_": ((n(7), 0.5), {}, (0,)),
        "sgd_update_": ((n(7), n(7), n(7)), {"lr": 0.1, "momentum": 0.9}, (0, 2)),
        "adam_update_": ((n(7), n(7), n(7), np.abs(n(7))), {"step": 2}, (0, 2, 3)),
        "adamw_update_": ((n(7), n(7), n(7), np.abs(n(7))), {"step": 2}, (0, 2, 3)),
        "muon_update_": ((n(12), n(12), n(12), np.array([(1, 2, 5)])), {}, (0, 2)),
        "moe": ((x, *moe_w), {"top_k": 2, "capacity_factor": 0.5}, ()),
        "moe_backward": ((x, x, *moe_w), {"top_k": 2, "aux_grad": 0.5}, ()),
        "moe_capacity": ((10, 4), {"top_k": 2}, ()),
    }


def _public_functions():
    return {name for name, f in vars(F).items()
            if not name.startswith("_") and inspect.isfunction(f)
            and f.__module__.startswith("transformer_c.functional")}


def _swapped(v, keep=False):
    if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not keep:
        return _swap(v)
    if isinstance(v, np.dtype) and v.kind == "f":
        return v.newbyteorder("S")
    if isinstance(v, list):
        return [_swapped(e) for e in v]
    return v


def _flat(out):
    if isinstance(out, F.MoERouting):  # moe's routing (its expert buffers' unused rows
        return _flat([out.probs, out.gates, out.expert, out.tokens_per_expert,  # are unset)
                      out.dropped_per_expert, out.aux])
    if isinstance(out, (tuple, list)):
        return [e for o in out for e in _flat(o)]
    return [np.asarray(out)]


def _same(got, want):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype.isnative and g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


def test_the_big_endian_table_covers_every_public_function():
    assert set(_specs(np.float64, np.random.default_rng(0))) == _public_functions()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_big_endian_inputs_give_the_native_numbers(dt):
    names = sorted(_public_functions())
    for name in names:
        fn = getattr(F, name)
        args, kw, inout = _specs(dt, np.random.default_rng(0))[name]
        want = fn(*args, **kw)
        want_inout = [args[i].copy() for i in inout]
        args, kw, _ = _specs(dt, np.random.default_rng(0))[name]
        be_args = [_swapped(v, keep=i in inout) for i, v in enumerate(args)]
        be_kw = {k: _swapped(v) for k, v in kw.items()}
        if all(a is b for a, b in zip(be_args + list(be_kw.values()),
                                      list(args) + list(kw.values()))):
            # scale_: its one array is updated in place (refused below); the sparse
            # pattern builders and moe_capacity take no float array
            assert name in ("scale_", "sparse_layout", "sparse_mask", "moe_capacity")
            continue
        got = fn(*be_args, **be_kw)
        try:
            _same(got, want)
            _same([be_args[i] for i in inout], want_inout)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


@pytest.mark.parametrize("name", ["scale_", "sgd_update_", "adam_update_", "adamw_update_",
                                  "muon_update_", "attention_decode"])
def test_big_endian_in_place_arrays_are_refused_by_byte_order(name):
    args, kw, inout = _specs(np.float64, np.random.default_rng(0))[name]
    for i in inout:
        bad = list(args)
        bad[i] = _swap(args[i])
        with pytest.raises(ValueError, match="native byte order"):
            getattr(F, name)(*bad, **kw)
