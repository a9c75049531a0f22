"""Out-of-place optimizer updates (``out=`` of functional.sgd_update_ / adam_update_ /
adamw_update_, C tc_optim_*_update_out) and the buffer hand-off between the immutable tree
optimizers and FlatModel.with_parameters.

The out-of-place numbers must be bitwise those of the in-place kernels (which
tests/test_optim.py holds to torch.optim, NumPy and the plain references), with the inputs
unchanged; sizes below and above the non-temporal-store threshold (2^18 elements), odd
sizes, read-only and non-contiguous inputs; overlapping outputs are a ValueError naming the
arrays. Then: the tree step + with_parameters adopts the step's buffer exactly once, never
a recycled one, and equals the flat in-place update bitwise."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import non_contiguous, rng
from transformer_c import optim
from transformer_c.nn import GPT, GPTConfig
from transformer_c.nn._flat import flat_span

F = tc.functional
SIZES = [1, 7, 33, 1000, (1 << 18) + 5]  # the last takes the non-temporal stores


def arrays(n, dtype, count, seed=0):
    r = rng(seed)
    return [np.abs(r.standard_normal(n)).astype(dtype) if i == 3 else
            r.standard_normal(n).astype(dtype) for i in range(count)]


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fn, kw", [
    (F.adamw_update_, dict(lr=1e-2, weight_decay=0.1)),
    (F.adam_update_, dict(lr=1e-2, weight_decay=0.1, betas=(0.3, 0.9))),
    (F.adam_update_, dict(lr=1e-3)),
])
def test_adam_out_is_bitwise_in_place_and_reads_only(fn, kw, n, dtype):
    p, g, m, v = arrays(n, dtype, 4)
    before = [read_only(a) for a in (p, g, m, v)]  # read-only inputs are accepted with out=
    out = [np.full(n, np.nan, dtype) for _ in range(3)]
    fn(*before, step=3, out=out, **kw)
    fn(p, g, m, v, step=3, **kw)  # in place
    for got, want in zip(out, (p, m, v)):
        assert got.dtype == dtype and np.array_equal(got, want)
    assert not np.array_equal(before[0], p)  # the update did change the parameters


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kw", [dict(momentum=0.9, nesterov=True, weight_decay=0.01),
                                dict(momentum=0.5, dampening=0.2), dict(momentum=0.0)])
def test_sgd_out_is_bitwise_in_place(kw, n, dtype):
    p, g, b = arrays(n, dtype, 3, seed=1)
    mu = kw["momentum"] != 0
    src = [read_only(a) for a in (p, g, b)]
    out = (np.empty(n, dtype), np.empty(n, dtype) if mu else None)
    F.sgd_update_(src[0], src[1], src[2] if mu else None, lr=0.1, out=out, **kw)
    F.sgd_update_(p, g, b if mu else None, lr=0.1, **kw)
    assert np.array_equal(out[0], p)
    if mu:
        assert np.array_equal(out[1], b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets", [(0, 0, 0), (3, 3, 3), (1, 5, 12), (7, 0, 2)])
def test_streamed_out_at_any_offset_within_a_cache_line(offsets, dtype):
    # the non-temporal stores stream whole 64-byte lines only, the blocks following the
    # lines of out[0]: destinations at other offsets within a line (in elements from a
    # 64-byte boundary) store their partial lines plainly; the numbers are the same, and
    # nothing outside the destinations is written
    n = (1 << 18) + 37
    p, g, m, v = arrays(n, dtype, 4, seed=4)
    want = [a.copy() for a in (p, m, v)]
    F.adamw_update_(want[0], g, want[1], want[2], step=2, lr=1e-2, weight_decay=0.1)
    raws, out = [], []
    for off in offsets:
        raw = np.full(n + 64, np.nan, dtype)
        start = (-raw.__array_interface__["data"][0] % 64) // raw.itemsize + off
        raws.append((raw, start))
        out.append(raw[start:start + n])
        assert out[-1].__array_interface__["data"][0] % 64 == off * raw.itemsize % 64
    F.adamw_update_(p, g, m, v, step=2, lr=1e-2, weight_decay=0.1, out=out)
    for got, w in zip(out, want):
        assert np.array_equal(got, w)
    for raw, start in raws:
        assert np.isnan(raw[:start]).all() and np.isnan(raw[start + n:]).all()
    k = n - 9  # SGD with momentum: other offsets again
    sgd_out = [raws[1][0][:k], raws[2][0][5:5 + k]]
    F.sgd_update_(p[:k], g[:k], m[:k], lr=0.1, momentum=0.9, nesterov=True, out=sgd_out)
    q, b = p[:k].copy(), m[:k].copy()
    F.sgd_update_(q, g[:k], b, lr=0.1, momentum=0.9, nesterov=True)
    assert np.array_equal(sgd_out[0], q) and np.array_equal(sgd_out[1], b)


def test_out_may_be_its_own_input_and_grad_any_layout():
    p, g, m, v = arrays(40, np.float64, 4, seed=2)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    new_p = np.empty_like(p)
    g_nc = non_contiguous(g)
    F.adamw_update_(p, g_nc, m, v, step=2, out=(new_p, m, v))  # the moments in place
    F.adamw_update_(p2, g, m2, v2, step=2)
    assert np.array_equal(new_p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)


def test_overlapping_or_bad_out_names_the_arrays():
    p, g, m, v = arrays(64, np.float32, 4, seed=3)
    big = np.empty(200, np.float32)
    with pytest.raises(ValueError, match=r"out\[0\].*overlap param"):
        F.adamw_update_(big[1:65], g, m, v, step=1, out=(big[:64], np.empty_like(p),
                                                        np.empty_like(p)))
    with pytest.raises(ValueError, match=r"out\[1\].*overlap out\[0\]"):
        F.adamw_update_(p, g, m, v, step=1, out=(big[:64], big[10:74], np.empty_like(p)))
    with pytest.raises(ValueError, match=r"out\[1\].*overlap out\[0\]"):
        F.adamw_update_(p, g, m, v, step=1, out=(big[:64], big[:64], np.empty_like(p)))
    with pytest.raises(ValueError, match=r"out\[0\].*shape"):
        F.adamw_update_(p, g, m, v, step=1, out=(big[:63], np.empty_like(p), np.empty_like(p)))
    with pytest.raises(TypeError, match="out"):
        F.adamw_update_(p, g, m, v, step=1, out=(np.empty_like(p),))
    with pytest.raises(TypeError, match="out"):
        F.adamw_update_(p, g, m, v, step=1, out=(np.empty_like(p), None, np.empty_like(p)))
    with pytest.raises(TypeError, match="dtype"):
        F.adamw_update_(p, g, m, v, step=1, out=(np.empty(64), np.empty_like(p),
                                                 np.empty_like(p)))
    with pytest.raises(ValueError, match="writeable|read-only"):
        F.adamw_update_(p, g, m, v, step=1, out=(read_only(p), np.empty_like(p),
                                                 np.empty_like(p)))
    with pytest.raises(ValueError, match=r"out\[1\].*required"):
        F.sgd_update_(p, g, m, lr=0.1, momentum=0.9, out=(np.empty_like(p), None))
    with pytest.raises(ValueError, match=r"out\[0\].*overlap grad"):
        F.sgd_update_(p, big[:64], lr=0.1, out=(big[1:65], None))


def tiny_gpt(dtype=np.float32):
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=7, block_size=4)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0), dtype=dtype)
    model.flat_grads[...] = rng(5).standard_normal(model.num_parameters).astype(dtype)
    return model, model._grads_tree()


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tree_step_with_parameters_equals_the_flat_update_bitwise(name, dtype):
    model, grads = tiny_gpt(dtype)
    make = {"adamw": lambda: optim.AdamW(learning_rate=1e-2),
            "adam": lambda: optim.Adam(learning_rate=1e-2, weight_decay=0.1),
            "sgd": lambda: optim.SGD(learning_rate=1e-2, momentum=0.9, nesterov=True)}[name]
    flat, g = model.flat_parameters.copy(), model.flat_grads.copy()
    states = [np.zeros_like(flat), np.zeros_like(flat)]
    opt = make()
    for k in range(1, 4):
        params, opt = opt.step(model.parameters, grads)
        model = model.with_parameters(params)
        if name == "sgd":
            F.sgd_update_(flat, g, states[0], lr=1e-2, momentum=0.9, nesterov=True,
                          first_step=k == 1)
        else:
            fn = F.adamw_update_ if name == "adamw" else F.adam_update_
            fn(flat, g, *states, step=k, lr=1e-2,
               weight_decay=1e-2 if name == "adamw" else 0.1)
        assert np.array_equal(model.flat_parameters, flat)
        assert np.shares_memory(model.flat_parameters, tc.tree.leaves(params)[0])


def test_a_recycled_handoff_buffer_is_never_adopted():
    model, grads = tiny_gpt()
    params, _ = optim.AdamW().step(model.parameters, grads)
    address = tc.tree.leaves(params)[0].__array_interface__["data"][0]
    del params  # the handed-off buffer goes back to the pool unadopted
    copies = [model.with_parameters(model.parameters) for _ in range(4)]  # recycled buffers
    assert any(c.flat_parameters.__array_interface__["data"][0] == address for c in copies)
    for c in copies:  # a copy's buffer is no hand-off: building from its tree copies again
        again = model.with_parameters(c.parameters)
        assert not np.shares_memory(again.flat_parameters, c.flat_parameters)


def test_the_step_result_is_read_only_and_separate_trees_stay_writeable():
    model, grads = tiny_gpt()
    params, opt = optim.AdamW().step(model.parameters, grads)
    assert not any(a.flags.writeable for a in tc.tree.leaves(params))
    assert all(a.flags.writeable for a in tc.tree.leaves(opt.state["m"]))
    separate = tc.tree.tree_map(np.copy, model.parameters)
    new, _ = optim.AdamW().step(separate, tc.tree.tree_map(np.copy, grads))
    assert all(a.flags.writeable for a in tc.tree.leaves(new))
    assert tc.tree.are_equal(new, params, np.array_equal)
    # a model built from the read-only tree is an ordinary writeable model
    adopted = model.with_parameters(params)
    F.scale_(adopted.flat_parameters, 0.5)
    assert np.array_equal(tc.tree.leaves(params)[0], tc.tree.leaves(adopted.parameters)[0])


STREAMED = 1 << 18  # the non-temporal-store threshold (OPTIM_STREAM_MIN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("extra", [0, 1, 15, 16, 17, 63, 64, 65, 127, 300, 1000])
def test_streamed_blocks_and_prefetch_cover_every_tail(extra, dtype):
    # out of place on streamed sizes the kernel runs 64-element blocks after a head up to
    # out[0]'s first line boundary and prefetches its inputs 1 KiB ahead until the end of
    # the arrays: every tail length (mod the block, mod a line), at a line boundary and 3
    # elements past one, must give the in-place numbers (256-element blocks, no streaming
    # or prefetch; test_optim.py holds them to torch) and write nothing else
    n = STREAMED + extra
    p, g, m, v = arrays(n, dtype, 4, seed=extra)
    want = [a.copy() for a in (p, m, v)]
    F.adamw_update_(*want[:1], g, *want[1:], step=4, lr=1e-2, weight_decay=0.1)
    for off in (0, 3):
        raws = [np.full(n + 64, np.nan, dtype) for _ in range(3)]
        starts = [(-r.__array_interface__["data"][0] % 64) // r.itemsize + off for r in raws]
        out = [r[s:s + n] for r, s in zip(raws, starts)]
        F.adamw_update_(p, g, m, v, step=4, lr=1e-2, weight_decay=0.1, out=out)
        for got, w in zip(out, want):
            assert np.array_equal(got, w)
        for r, s in zip(raws, starts):
            assert np.isnan(r[:s]).all() and np.isnan(r[s + n:]).all()
    b = m.copy()  # SGD: the momentum buffer is read only after the first step
    for first in (True, False):
        q, bq = p.copy(), b.copy()
        F.sgd_update_(q, g, bq, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True,
                      first_step=first)
        out = (np.full(n, np.nan, dtype), np.full(n, np.nan, dtype))
        F.sgd_update_(p, g, b, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True,
                      first_step=first, out=out)
        assert np.array_equal(out[0], q) and np.array_equal(out[1], bq)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_streamed_tree_steps_never_touch_a_held_tree(name):
    # a training loop that keeps every step's parameters and optimizer (the pool recycles
    # only unreferenced buffers): no held tree changes afterwards, no two live trees share
    # memory, and every step is bitwise the flat in-place update (streamed sizes: the
    # tiny models above stay under the non-temporal threshold)
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=64, vocab_size=4500, block_size=8)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0))
    assert model.num_parameters > STREAMED
    model.flat_grads[...] = rng(6).standard_normal(model.num_parameters).astype(np.float32)
    grads = model._grads_tree()
    flat, g = model.flat_parameters.copy(), model.flat_grads.copy()
    states = [np.zeros_like(flat), np.zeros_like(flat)]
    opt = (optim.AdamW(learning_rate=1e-2) if name == "adamw" else
           optim.SGD(learning_rate=1e-2, momentum=0.9, nesterov=True))
    held = []  # (model, optimizer, copies of their flat buffers)
    for k in range(1, 5):
        params, opt = opt.step(model.parameters, grads)
        model = model.with_parameters(params)
        if name == "adamw":
            F.adamw_update_(flat, g, *states, step=k, lr=1e-2)
        else:
            F.sgd_update_(flat, g, states[0], lr=1e-2, momentum=0.9, nesterov=True,
                          first_step=k == 1)
        assert np.array_equal(model.flat_parameters, flat)
        state = list(opt.state.values()) if name == "adamw" else [opt.state]
        bufs = [model.flat_parameters] + [flat_span(tc.tree.leaves(s)) for s in state]
        assert all(b is not None for b in bufs)
        held.append((model, opt, bufs, [b.copy() for b in bufs]))
    live = [b for _, _, bufs, _ in held for b in bufs]
    for i, a in enumerate(live):
        assert not any(np.shares_memory(a, b) for b in live[i + 1:])
    for _, _, bufs, copies in held:
        for b, c in zip(bufs, copies):
            assert np.array_equal(b, c)
