"""Optimizer updates (SGD, Adam, AdamW), global gradient norm and scaling: several steps
against torch.optim (single-tensor for-loop implementation) and NumPy references, odd sizes,
2-D parameters, memory layouts and bad input. The immutable tree optimizers (optim.SGD,
Adam, AdamW): bitwise the per-leaf kernels on flat, separate and mixed trees, inputs and
the old optimizer unchanged, state round trips, the GPT step + with_parameters.

(Optimizer updates have no backward, so there is no finite-difference check here.)"""
import numpy as np
import pytest

import transformer_c as tc
from conftest import fortran, non_contiguous, rng, tol
from transformer_c import optim
from transformer_c.nn import GPT, GPTConfig
from transformer_c.nn._flat import flat_span, recycled_empty, tree_from_layout

F = tc.functional
STEPS = 6
SHAPES = [(1,), (7,), (33,), (1000,), (5, 7), (3, 1, 11)]


def make_run(shape, dtype, seed=0):
    """Initial param and STEPS gradients."""
    r = rng(seed)
    p0 = r.standard_normal(shape).astype(dtype)
    grads = [r.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    return p0, grads


def torch_run(torch, cls, p0, grads, **kw):
    """Params after every step, and the final optimizer state, from torch.optim."""
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = cls([tp], foreach=False, **kw)
    params = []
    for g in grads:
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        params.append(tp.detach().numpy().copy())
    state = {k: v.detach().numpy().copy() for k, v in opt.state[tp].items()
             if hasattr(v, "numpy") and v.ndim > 0}
    return params, state


# ------------------------------------------------------------------ NumPy references

def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf, out = p.astype(np.float64), None, []
    for g in grads:
        g = g.astype(np.float64) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             decoupled=False):
    p = p.astype(np.float64)
    m, v, out = np.zeros_like(p), np.zeros_like(p), []
    b1, b2 = betas
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(p)
    return out, m, v


# ------------------------------------------------------------------ runners of ours

def our_sgd(p0, grads, grad_layout=lambda g: g, **kw):
    p = p0.copy()
    buf = np.full_like(p, np.nan)  # first_step overwrites it: nan must not leak
    out = []
    for i, g in enumerate(grads):
        assert F.sgd_update_(p, grad_layout(g), buf, first_step=(i == 0), **kw) is None
        out.append(p.copy())
    return out, buf


def our_adam(fn, p0, grads, grad_layout=lambda g: g, **kw):
    p = p0.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    out = []
    for step, g in enumerate(grads, start=1):
        assert fn(p, grad_layout(g), m, v, step=step, **kw) is None
        out.append(p.copy())
    return out, m, v


SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "all": dict(lr=0.03, momentum=0.7, weight_decay=0.05, nesterov=True),
    "momentum_decay_damp": dict(lr=0.03, momentum=0.5, dampening=0.5, weight_decay=0.1),
}
ADAM_CONFIGS = {
    "default": dict(),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
    "betas": dict(lr=0.02, betas=(0.5, 0.9), eps=1e-6),  # lerp weight 0.5: torch's 2nd formula
    "small_beta1": dict(lr=0.02, betas=(0.2, 0.95), weight_decay=0.03),
}
ADAMW_CONFIGS = {
    "default": dict(),
    "strong_decay": dict(lr=0.01, weight_decay=0.2),
    "betas": dict(lr=0.05, betas=(0.3, 0.99), eps=1e-6, weight_decay=0.0),
}


# ------------------------------------------------------------------ SGD

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_torch_and_numpy(torch, dtype, shape, config):
    kw = SGD_CONFIGS[config]
    p0, grads = make_run(shape, dtype, seed=1)
    want, state = torch_run(torch, torch.optim.SGD, p0, grads, **kw)
    got, buf = our_sgd(p0, grads, **kw)
    ref = ref_sgd(p0, grads, **kw)
    for g, w, r in zip(got, want, ref):
        assert g.dtype == dtype and g.shape == shape
        np.testing.assert_allclose(g, w, **tol(dtype))
        np.testing.assert_allclose(g, r, **tol(dtype))
    if kw.get("momentum"):
        np.testing.assert_allclose(buf, state["momentum_buffer"], **tol(dtype))
    else:
        assert np.all(np.isnan(buf))  # without momentum the buffer is not touched


def test_sgd_without_momentum_needs_no_buffer():
    p0, grads = make_run((9,), np.float64, seed=2)
    p = p0.copy()
    F.sgd_update_(p, grads[0], lr=0.5)
    np.testing.assert_allclose(p, p0 - 0.5 * grads[0], rtol=1e-15)


# ------------------------------------------------------------------ Adam / AdamW

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_matches_torch_and_numpy(torch, dtype, shape, config):
    kw = ADAM_CONFIGS[config]
    p0, grads = make_run(shape, dtype, seed=3)
    want, state = torch_run(torch, torch.optim.Adam, p0, grads, **kw)
    got, m, v = our_adam(F.adam_update_, p0, grads, **kw)
    ref, ref_m, ref_v = ref_adam(p0, grads, **kw)
    for g, w, r in zip(got, want, ref):
        assert g.dtype == dtype and g.shape == shape
        np.testing.assert_allclose(g, w, **tol(dtype))
        np.testing.assert_allclose(g, r, **tol(dtype))
    np.testing.assert_allclose(m, state["exp_avg"], **tol(dtype))
    np.testing.assert_allclose(v, state["exp_avg_sq"], **tol(dtype))
    np.testing.assert_allclose(m, ref_m, **tol(dtype))
    np.testing.assert_allclose(v, ref_v, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", list(ADAMW_CONFIGS))
def test_adamw_matches_torch_and_numpy(torch, dtype, shape, config):
    kw = ADAMW_CONFIGS[config]
    p0, grads = make_run(shape, dtype, seed=4)
    want, state = torch_run(torch, torch.optim.AdamW, p0, grads, **kw)
    got, m, v = our_adam(F.adamw_update_, p0, grads, **kw)
    ref, _, _ = ref_adam(p0, grads, decoupled=True,
                         **({"weight_decay": 1e-2} | kw))
    for g, w, r in zip(got, want, ref):
        np.testing.assert_allclose(g, w, **tol(dtype))
        np.testing.assert_allclose(g, r, **tol(dtype))
    np.testing.assert_allclose(m, state["exp_avg"], **tol(dtype))
    np.testing.assert_allclose(v, state["exp_avg_sq"], **tol(dtype))


def test_adam_and_adamw_differ_only_by_weight_decay_style():
    p0, grads = make_run((13,), np.float64, seed=5)
    a, _, _ = our_adam(F.adam_update_, p0, grads, lr=0.01, weight_decay=0.0)
    b, _, _ = our_adam(F.adamw_update_, p0, grads, lr=0.01, weight_decay=0.0)
    np.testing.assert_array_equal(a[-1], b[-1])
    c, _, _ = our_adam(F.adam_update_, p0, grads, lr=0.01, weight_decay=0.1)
    d, _, _ = our_adam(F.adamw_update_, p0, grads, lr=0.01, weight_decay=0.1)
    assert not np.allclose(c[-1], d[-1])


# ------------------------------------------------------------------ layouts, sizes, threads

@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_grad_may_have_any_layout(torch, layout):
    p0, grads = make_run((6, 5), np.float64, seed=6)
    want, _ = torch_run(torch, torch.optim.SGD, p0, grads, lr=0.1, momentum=0.9)
    got, _ = our_sgd(p0, grads, grad_layout=layout, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(got[-1], want[-1], **tol(np.float64))
    want, _ = torch_run(torch, torch.optim.AdamW, p0, grads, lr=0.01)
    got, _, _ = our_adam(F.adamw_update_, p0, grads, grad_layout=layout, lr=0.01)
    np.testing.assert_allclose(got[-1], want[-1], **tol(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_parallel_update_matches_torch_and_is_thread_independent(torch, dtype):
    # 100_000 elements: above the parallel threshold
    p0, grads = make_run((100_000,), dtype, seed=7)
    grads = grads[:3]
    want, _ = torch_run(torch, torch.optim.Adam, p0, grads, lr=0.01, weight_decay=0.01)
    got, _, _ = our_adam(F.adam_update_, p0, grads, lr=0.01, weight_decay=0.01)
    np.testing.assert_allclose(got[-1], want[-1], **tol(dtype))
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one, _ = our_sgd(p0, grads, lr=0.1, momentum=0.9, nesterov=True)
        one_adam, _, _ = our_adam(F.adamw_update_, p0, grads, lr=0.01)
    finally:
        tc.set_num_threads(n)
    two, _ = our_sgd(p0, grads, lr=0.1, momentum=0.9, nesterov=True)
    two_adam, _, _ = our_adam(F.adamw_update_, p0, grads, lr=0.01)
    assert np.array_equal(one[-1], two[-1]) and np.array_equal(one_adam[-1], two_adam[-1])


def test_empty_param_is_a_no_op():
    for dtype in (np.float32, np.float64):
        p = np.zeros((0, 4), dtype)
        F.sgd_update_(p, p.copy(), np.zeros_like(p), lr=0.1, momentum=0.9)
        F.adam_update_(p, p.copy(), np.zeros_like(p), np.zeros_like(p), step=1)
        F.adamw_update_(p, p.copy(), np.zeros_like(p), np.zeros_like(p), step=1)
        F.scale_(p, 2.0)
        assert p.shape == (0, 4) and F.global_grad_norm([p]) == 0.0


# ------------------------------------------------------------------ global_grad_norm, scale_

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_grad_norm_matches_numpy(torch, dtype):
    r = rng(8)
    # 300_000 elements crosses the 64 x 4096 block of partial sums
    arrays = [r.standard_normal(s).astype(dtype) for s in [(1,), (7, 3), (33,), (300_000,),
                                                           (2, 0), (4, 5, 6)]]
    want = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in arrays))
    got = F.global_grad_norm(arrays)
    assert type(got) is float
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(F.global_grad_norm(tuple(arrays)), want, rtol=1e-12)
    np.testing.assert_allclose(F.global_grad_norm(a for a in arrays), want, rtol=1e-12)
    tnorm = torch.nn.utils.get_total_norm([torch.from_numpy(a.astype(np.float64)) for a in arrays])
    np.testing.assert_allclose(got, float(tnorm), rtol=1e-12)
    # any layout; a single array; thread count changes nothing (fixed chunked order)
    np.testing.assert_allclose(F.global_grad_norm([non_contiguous(arrays[1]), fortran(arrays[5])]),
                               np.sqrt(np.sum(arrays[1].astype(np.float64) ** 2)
                                       + np.sum(arrays[5].astype(np.float64) ** 2)), rtol=1e-12)
    np.testing.assert_allclose(F.global_grad_norm(arrays[3]),
                               np.sqrt(np.sum(arrays[3].astype(np.float64) ** 2)), rtol=1e-12)
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one = F.global_grad_norm(arrays)
    finally:
        tc.set_num_threads(n)
    assert one == got


def test_global_grad_norm_edge_values():
    assert F.global_grad_norm([]) == 0.0
    assert F.global_grad_norm([np.array([3.0, 4.0])]) == 5.0
    assert F.global_grad_norm([np.array([1.0, np.inf])]) == np.inf
    assert np.isnan(F.global_grad_norm([np.array([1.0, np.nan])]))
    # float32 squares summed in double: 1e30**2 would overflow float32
    np.testing.assert_allclose(F.global_grad_norm([np.full(4, 1e30, np.float32)]),
                               2 * float(np.float32(1e30)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_matches_numpy_and_clips(dtype):
    r = rng(9)
    grads = [r.standard_normal(s).astype(dtype) for s in [(7,), (3, 11), (50_000,)]]
    want = [g * dtype(0.3) for g in grads]
    for g in grads:
        assert F.scale_(g, 0.3) is None
    for g, w in zip(grads, want):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w)
    # clipping to max_norm 1.0 with the two together
    coef = 1.0 / F.global_grad_norm(grads)
    for g in grads:
        F.scale_(g, coef)
    np.testing.assert_allclose(F.global_grad_norm(grads), 1.0, **tol(dtype))


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    p = np.zeros(5)
    g = np.ones(5)
    m, v = np.zeros(5), np.zeros(5)
    with pytest.raises(TypeError, match="param"):
        F.sgd_update_([0.0, 1.0], [1.0, 1.0], lr=0.1)
    with pytest.raises(ValueError, match="param"):
        F.sgd_update_(np.zeros((4, 3)).T, np.ones((3, 4)), lr=0.1)
    ro = np.zeros(5)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param"):
        F.sgd_update_(ro, g, lr=0.1)
    with pytest.raises(TypeError, match="param"):
        F.sgd_update_(np.zeros(5, np.int64), g, lr=0.1)
    with pytest.raises(TypeError, match="grad"):
        F.sgd_update_(p, g.astype(np.float32), lr=0.1)
    with pytest.raises(ValueError, match="grad"):
        F.sgd_update_(p, np.ones(6), lr=0.1)
    with pytest.raises(ValueError, match="momentum_buffer"):
        F.sgd_update_(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buffer"):
        F.sgd_update_(p, g, np.zeros(4), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="momentum_buffer"):
        F.sgd_update_(p, g, np.zeros(5, np.float32), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr"):
        F.sgd_update_(p, g, lr=-0.1)
    with pytest.raises(TypeError, match="lr"):
        F.sgd_update_(p, g, lr="0.1")
    with pytest.raises(ValueError, match="momentum"):
        F.sgd_update_(p, g, np.zeros(5), lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="weight_decay"):
        F.sgd_update_(p, g, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        F.sgd_update_(p, g, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        F.sgd_update_(p, g, np.zeros(5), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    for fn in (F.adam_update_, F.adamw_update_):
        with pytest.raises(ValueError, match="step"):
            fn(p, g, m, v, step=0)
        with pytest.raises(TypeError, match="step"):
            fn(p, g, m, v, step=1.0)
        with pytest.raises(ValueError, match="lr"):
            fn(p, g, m, v, step=1, lr=-1e-3)
        with pytest.raises(ValueError, match="betas"):
            fn(p, g, m, v, step=1, betas=(1.0, 0.999))
        with pytest.raises(ValueError, match="betas"):
            fn(p, g, m, v, step=1, betas=(0.9, -0.1))
        with pytest.raises(TypeError, match="betas"):
            fn(p, g, m, v, step=1, betas=0.9)
        with pytest.raises(ValueError, match="eps"):
            fn(p, g, m, v, step=1, eps=-1e-8)
        with pytest.raises(ValueError, match="weight_decay"):
            fn(p, g, m, v, step=1, weight_decay=-0.1)
        with pytest.raises(ValueError, match="exp_avg_sq"):
            fn(p, g, m, np.zeros(6), step=1)
        with pytest.raises(ValueError, match="exp_avg"):
            fn(p, g, np.zeros((5, 1)), v, step=1)
        with pytest.raises(TypeError, match="exp_avg"):
            fn(p, g, m.tolist(), v, step=1)
        with pytest.raises(TypeError, match="exp_avg_sq"):
            fn(p, g, m, v.astype(np.float32), step=1)
    with pytest.raises(TypeError, match="arrays"):
        F.global_grad_norm(3.0)
    with pytest.raises(TypeError, match=r"arrays\[1\]"):
        F.global_grad_norm([np.ones(3), np.ones(3, np.float32)])
    with pytest.raises(TypeError, match=r"arrays\[0\]"):
        F.global_grad_norm([np.ones(3, np.int32)])
    with pytest.raises(TypeError, match="array"):
        F.scale_(np.ones(3, np.int32), 2.0)
    with pytest.raises(ValueError, match="array"):
        F.scale_(np.ones((3, 4))[:, ::2], 2.0)
    with pytest.raises(TypeError, match="factor"):
        F.scale_(np.ones(3), "2")


def test_raw_binding_raises_instead_of_crashing():
    C = tc._C
    p, g = np.zeros(3), np.ones(3)
    with pytest.raises(TypeError, match="param"):
        C.sgd_update("x", g, None, 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="momentum_buffer"):
        C.sgd_update(p, g, None, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(TypeError):
        C.sgd_update(p, g)
    with pytest.raises(ValueError, match="step"):
        C.adam_update(p, g, np.zeros(3), np.zeros(3), 0, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(TypeError, match="step"):
        C.adamw_update(p, g, np.zeros(3), np.zeros(3), None, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(TypeError, match="exp_avg"):
        C.adamw_update(p, g, None, np.zeros(3), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(TypeError, match="arrays"):
        C.global_grad_norm(np.ones(3))
    with pytest.raises(TypeError, match="arrays"):
        C.global_grad_norm([None])
    with pytest.raises(TypeError, match="array"):
        C.scale(None, 2.0)
    assert np.array_equal(p, np.zeros(3))  # nothing was touched by the failed calls


# ------------------------------------------------------------------ immutable tree optimizers

TREE_LAYOUT = [(("a", "w"), (3, 5)), (("a", "b"), (5,)), (("h", 0, "w"), (4, 2)),
               (("h", 1, "w"), (7,)), (("z",), (1,))]
TREE_SIZE = sum(int(np.prod(s)) for _, s in TREE_LAYOUT)
TREE_OPTIMIZERS = {
    "sgd": (optim.SGD, dict(learning_rate=0.1)),
    "sgd_momentum": (optim.SGD, dict(learning_rate=0.05, momentum=0.9)),
    "sgd_dampening_decay": (optim.SGD, dict(learning_rate=0.05, momentum=0.8, dampening=0.3,
                                            weight_decay=0.01)),
    "sgd_nesterov": (optim.SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True,
                                     weight_decay=0.02)),
    "adam": (optim.Adam, dict(learning_rate=0.01)),
    "adam_decay": (optim.Adam, dict(learning_rate=0.01, weight_decay=0.1)),
    "adamw": (optim.AdamW, dict(learning_rate=0.01)),
    "adamw_no_decay": (optim.AdamW, dict(learning_rate=0.02, beta1=0.5, weight_decay=0.0)),
}


def flat_tree(dtype, seed):
    """A tree whose leaves are views of one buffer (a FlatModel's layout)."""
    return tree_from_layout(TREE_LAYOUT, rng(seed).standard_normal(TREE_SIZE).astype(dtype))


def separate(tree):
    """The same tree with every leaf its own array."""
    return tc.tree.tree_map(np.copy, tree)


def reference_steps(cls, kw, params, grads_list):
    """A straightforward per-leaf run of the kernels: params after every step."""
    lr = kw["learning_rate"]
    leaves = [p.copy() for p in tc.tree.leaves(params)]
    states = [[np.zeros_like(p), np.zeros_like(p)] for p in leaves]
    out = []
    for step, grads in enumerate(grads_list, start=1):
        for p, g, (m, v) in zip(leaves, tc.tree.leaves(grads), states):
            if cls is optim.SGD:
                F.sgd_update_(p, g, m, lr=lr, momentum=kw.get("momentum", 0.0),
                              dampening=kw.get("dampening", 0.0),
                              weight_decay=kw.get("weight_decay", 0.0),
                              nesterov=kw.get("nesterov", False), first_step=step == 1)
            else:
                fn = F.adamw_update_ if cls is optim.AdamW else F.adam_update_
                fn(p, g, m, v, step=step, lr=lr, betas=(kw.get("beta1", 0.9), 0.999),
                   weight_decay=kw.get("weight_decay", 1e-2 if cls is optim.AdamW else 0.0))
        out.append([p.copy() for p in leaves])
    return out


def bitwise(a, b):
    return tc.tree.are_equal(a, b, np.array_equal)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(TREE_OPTIMIZERS))
@pytest.mark.parametrize("kind", ["flat", "separate", "mixed"])
def test_tree_step_is_bitwise_the_per_leaf_kernels_and_changes_no_input(name, kind, dtype):
    cls, kw = TREE_OPTIMIZERS[name]
    params = flat_tree(dtype, 0)
    grads_list = [flat_tree(dtype, 10 + i) for i in range(3)]
    if kind == "separate":
        params, grads_list = separate(params), [separate(g) for g in grads_list]
    elif kind == "mixed":  # flat parameters, separate gradients
        grads_list = [separate(g) for g in grads_list]
    want = reference_steps(cls, kw, params, grads_list)
    opt = cls(**kw)
    for step, grads in enumerate(grads_list):
        before_p, before_g = separate(params), separate(grads)
        before_state = None if opt.state is None else separate(opt.state)
        new_params, new_opt = opt.step(params, grads)
        assert bitwise(params, before_p) and bitwise(grads, before_g)
        assert opt.step_count == step
        assert (opt.state is None) == (before_state is None)
        if before_state is not None:
            assert bitwise(opt.state, before_state)
        got = tc.tree.leaves(new_params)
        assert all(g.dtype == dtype for g in got)
        assert all(np.array_equal(g, w) for g, w in zip(got, want[step]))
        for leaf in tc.tree.leaves(new_params):
            assert not any(np.shares_memory(leaf, x) for x in tc.tree.leaves(params))
        params, opt = new_params, new_opt
    assert opt.step_count == len(grads_list)


@pytest.mark.parametrize("name", ["sgd_momentum", "adamw"])
def test_flat_state_round_trips_through_separate_arrays(name):
    cls, kw = TREE_OPTIMIZERS[name]
    params, g1, g2 = (flat_tree(np.float64, s) for s in (1, 2, 3))
    params, opt = cls(**kw).step(params, g1)
    assert flat_span(tc.tree.leaves(params)) is not None  # the flat path was taken
    copied = cls(**kw, state=separate(opt.state), step_count=opt.step_count)
    a, opt_a = opt.step(params, g2)
    b, opt_b = copied.step(separate(params), g2)
    c, opt_c = opt.step(separate(params), g2)  # flat state, separate parameters
    assert bitwise(a, b) and bitwise(opt_a.state, opt_b.state)
    assert bitwise(a, c) and bitwise(opt_a.state, opt_c.state)


def test_tree_step_rejects_mismatched_trees():
    params = flat_tree(np.float32, 0)
    with pytest.raises(ValueError, match="tree structures differ"):
        optim.AdamW().step(params, {"a": params["a"]})
    bad = flat_tree(np.float64, 1)  # same structure, other dtype
    with pytest.raises((TypeError, ValueError)):
        optim.AdamW().step(params, bad)


def test_gpt_tree_step_and_with_parameters_match_the_flat_update():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=11, block_size=8)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, 11, (2, 8))
    flat_p, flat_g = model.flat_parameters.copy(), None
    m, v = np.zeros_like(flat_p), np.zeros_like(flat_p)
    opt, before = optim.AdamW(learning_rate=1e-2), model.flat_parameters.copy()
    old = model
    for step in range(1, 4):
        loss, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
        flat_g = model.flat_grads.copy()
        params, opt = opt.step(model.parameters, grads)
        model = model.with_parameters(params)
        F.adamw_update_(flat_p, flat_g, m, v, step=step, lr=1e-2)
        assert np.array_equal(model.flat_parameters, flat_p)
        # adopted, not copied: the optimizer's read-only tree is the new model's buffer
        leaf = tc.tree.leaves(params)[0]
        assert np.shares_memory(model.flat_parameters, leaf) and not leaf.flags.writeable
        assert model.flat_parameters.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            leaf[...] = 0
        again = model.with_parameters(params)  # adopted once: a second model copies
        assert not np.shares_memory(again.flat_parameters, model.flat_parameters)
        assert np.array_equal(again.flat_parameters, flat_p)
    assert np.array_equal(old.flat_parameters, before)
    assert np.array_equal(flat_span(tc.tree.leaves(opt.state["m"])), m)
    assert np.array_equal(flat_span(tc.tree.leaves(opt.state["v"])), v)


def test_with_parameters_copies_any_tree_and_checks_it():
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=7, block_size=4)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0))
    for source in (model.with_parameters(model.parameters), None):
        tree = separate(model.parameters) if source is None else source.parameters
        new = model.with_parameters(tree)
        assert np.array_equal(new.flat_parameters, model.flat_parameters)
        assert not np.shares_memory(new.flat_parameters, tc.tree.leaves(tree)[0])
        tc.tree.leaves(tree)[0][...] = 5.0  # changing the tree afterwards changes no model
        assert not np.any(tc.tree.leaves(new.parameters)[0] == 5.0)
    with pytest.raises(ValueError, match="dtype"):
        model.with_parameters(tc.tree.tree_map(lambda a: a.astype(np.float16),
                                               model.parameters))
    bad = model.with_parameters(model.parameters).parameters
    bad["extra"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="unexpected"):
        model.with_parameters(bad)


def test_recycled_buffers_are_reused_only_when_unreferenced():
    a = recycled_empty(1234, np.float32)
    view = a[3:7]
    b = recycled_empty(1234, np.float32)
    assert b is not a and b.shape == (1234,) and b.dtype == np.float32
    del a
    c = recycled_empty(1234, np.float32)
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)
    address = c.__array_interface__["data"][0]
    del c
    d = recycled_empty(1234, np.float32)  # the free one comes back
    assert d.__array_interface__["data"][0] == address
    assert recycled_empty(1234, np.float64).dtype == np.float64


def test_optim_benchmark_records_every_case():
    from benchmarks import optim as bench

    records = bench.run(["small"], [1], repeats=1, optimizers=sorted(bench.OPTIMIZERS),
                        quiet=True, min_time=0.0)
    assert [r["optimizer"] for r in records] == sorted(bench.OPTIMIZERS)
    for r in records:
        assert r["flat_ms"] > 0 and r["tree_ms"] > 0 and r["separate_ms"] > 0
        assert r["tree_over_flat"] > 0 and r["separate_over_flat"] > 0


def test_flat_span_accepts_only_back_to_back_contiguous_views():
    base = np.arange(30.0)
    a, b, c = base[2:8].reshape(2, 3), base[8:9], base[9:21].reshape(3, 4)
    span = flat_span([a, b, c])
    assert np.shares_memory(span, base) and np.array_equal(span, base[2:21])
    assert flat_span([a, c]) is None                       # a gap
    assert flat_span([b, a]) is None                       # another order
    assert flat_span([a, base[8:20:2]]) is None            # not contiguous
    assert flat_span([base[2:8].reshape(2, 3).T]) is None  # transposed
    assert flat_span([a, base[8:9].copy()]) is None        # another buffer
    assert flat_span([]) is None and flat_span([[1.0]]) is None


def _span_cases():
    """(name, leaves): tilings and near misses for flat_span and its reference."""
    base = np.arange(40.0)
    f32 = np.arange(40, dtype=np.float32)
    grid = np.zeros((4, 6))  # a 2-D base
    a, b, c = base[2:8].reshape(2, 3), base[8:9], base[9:21].reshape(3, 4)
    bytes_ = np.zeros(64, np.uint8)
    odd = bytes_[1:33].view(np.float64)  # starts 1 byte into its base: no element offset
    return [
        ("tiles", [a, b, c]), ("one leaf", [base[5:6]]), ("all", [base[:]]),
        ("empty leaf inside", [a, base[8:8], b]), ("only empty", [base[3:3]]),
        ("scalar view", [base[4:5].reshape(())]), ("gap", [a, c]), ("order", [b, a]),
        ("strided", [a, base[8:20:2]]), ("transposed", [base[2:8].reshape(2, 3).T]),
        ("other buffer", [a, base[8:9].copy()]), ("no leaves", []), ("list leaf", [[1.0]]),
        ("owning array", [base]), ("2-D base", [grid[0], grid[1]]),
        ("float32", [f32[0:5], f32[5:40].reshape(5, 7)]),
        ("other dtype view", [f32[0:4], f32[4:8].view(np.int32)]),
        ("subclass", [a, b.view(_Sub)]),
        ("odd byte start", [odd[:2], odd[2:]]),
        ("tuple", (a, b)), ("reversed strides", [base[8:2:-1]]),
    ]


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("name, leaves", _span_cases(), ids=[n for n, _ in _span_cases()])
def test_flat_span_in_c_is_its_python_reference(name, leaves):
    from transformer_c.nn._flat import _flat_span_ref

    got, want = flat_span(leaves), _flat_span_ref(leaves)
    # numpy points an empty view at its base's first element: inside a tiling it is a gap
    tiles = name in ("tiles", "one leaf", "all", "only empty", "scalar view", "float32",
                     "tuple")
    assert (want is not None) == tiles
    if want is None:
        assert got is None
    else:
        assert got.base is want.base and got.shape == want.shape and got.dtype == want.dtype
        assert got.__array_interface__["data"] == want.__array_interface__["data"]


def test_a_tree_training_loop_recycles_its_buffers_without_the_garbage_collector():
    import gc

    from transformer_c.nn import _flat

    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=7, block_size=4)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0), dtype=np.float64)
    grads = tree_from_layout(GPT._layout(cfg), np.ones(model.num_parameters))
    opt, key = optim.AdamW(), (model.num_parameters, np.dtype(np.float64))
    gc.disable()
    try:
        sizes = []
        for _ in range(6):
            params, opt = opt.step(model.parameters, grads)
            model = model.with_parameters(params)
            sizes.append(len(_flat._POOL[key]))
    finally:
        gc.enable()
    assert sizes[-1] == sizes[2] <= 9, sizes  # in use: model, params, m, v (+ free ones)


def _tree_map_columns(trees):
    """The leaves per tree as tree.tree_map pairs them (the reference of _C.tree_columns)."""
    rows = []
    tc.tree.tree_map(lambda *leaves: rows.append(leaves), *trees)
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in trees]


def test_tree_columns_in_c_pairs_leaves_as_tree_map():
    from collections import OrderedDict

    from transformer_c import _C

    leaf = iter(range(1000))
    def tree():
        return {"b": [next(leaf), (next(leaf), {"z": next(leaf)})], "a": {"y": next(leaf)},
                "c": [], "d": {}}
    t1, t2, t3 = tree(), tree(), tree()
    t2 = {k: t2[k] for k in ("d", "a", "c", "b")}  # another key order: paired by key
    got = _C.tree_columns([t1, t2, t3])
    assert got == _tree_map_columns([t1, t2, t3]) and got[0] == [0, 1, 2, 3]
    assert got[1] == [4, 5, 6, 7]
    assert _C.tree_columns([[t1["b"][1]], [[8, {"z": 9}]]]) == [[1, 2], [8, 9]]  # tuple ~ list
    assert _C.tree_columns([5]) == [[5]] and _C.tree_columns([{}, {}]) == [[], []]
    np_leaf = np.ones(3)
    assert _C.tree_columns([{"w": np_leaf}])[0][0] is np_leaf
    # not one structure, or not for C: None (the caller runs tree_map)
    for trees in ([t1, {**t3, "e": 1}], [t1, {k: v for k, v in t3.items() if k != "a"}],
                  [{"a": 1, "b": 2}, {"a": 1, "c": 2}], [[1, 2], [1, 2, 3]],
                  [{"a": 1}, [1]], [[1], {"a": 1}], [{"a": [1]}, {"a": 1}],
                  [{"a": 1}, {"a": [1]}], [OrderedDict(a=1), OrderedDict(a=2)],
                  [{1: 2}, {1: 3}], [{"a": 1}] * 9, [], [{"a": 1}, _ListSub([1])]):
        assert _C.tree_columns(list(trees)) is None, trees
    with pytest.raises(TypeError):
        _C.tree_columns((t1, t2))  # a list of trees only
    # the optimizers' check: a structure mismatch is still tree_map's ValueError
    model, grads = _tiny_model_and_grads()
    bad = dict(grads, extra=np.zeros(1))
    with pytest.raises(ValueError, match="tree structures differ"):
        optim.AdamW().step(model.parameters, bad)


class _ListSub(list):
    pass


def _tiny_model_and_grads():
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=7, block_size=4)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0), dtype=np.float64)
    model.flat_grads[...] = 1e-3
    return model, model._grads_tree()


def test_the_flat_path_holds_with_reordered_or_subclassed_trees():
    # a grads tree with its keys in another order is paired by key: its leaves, in the
    # params' order, still tile flat_grads (the flat path); OrderedDict trees tile through
    # tree_map's walk (the C walk takes exact dicts only); the same numbers
    from collections import OrderedDict

    model, grads = _tiny_model_and_grads()
    want, _ = optim.AdamW().step(model.parameters, grads)
    assert flat_span(tc.tree.leaves(want)) is not None  # the flat path
    reordered = {k: grads[k] for k in reversed(list(grads))}
    got, _ = optim.AdamW().step(model.parameters, reordered)
    assert flat_span(tc.tree.leaves(got)) is not None
    assert tc.tree.are_equal(got, want, np.array_equal)

    def ordered(tree):
        if isinstance(tree, dict):
            return OrderedDict((k, ordered(v)) for k, v in tree.items())
        return [ordered(v) for v in tree] if isinstance(tree, list) else tree

    got, _ = optim.AdamW().step(ordered(model.parameters), ordered(grads))
    assert flat_span(tc.tree.leaves(got)) is not None
    assert tc.tree.are_equal(got, want, np.array_equal)


def test_tree_views_in_c_is_the_python_build():
    import sys

    from transformer_c import _C

    tree = {"b": [np.zeros((2, 3)), (np.zeros(()), {"z": np.zeros((0, 4))})],
            "a": {"y": np.zeros(5)}, "c": [], "d": {}, "e": (np.zeros((1, 1, 2)),)}
    n = 6 + 1 + 0 + 5 + 2
    for dtype in (np.float32, np.float64):
        owner = np.arange(n + 3, dtype=dtype)
        ro = owner.view()
        ro.flags.writeable = False
        flats = [owner[:n], ro, np.arange(n + 1.0)]  # longer flats are fine
        before = sys.getrefcount(owner)
        got = _C.tree_views(tree, flats)
        want = optim._build_views(tree, flats, [0])
        assert len(got) == len(want) == 3
        for g, w in zip(got, want):
            assert tc.tree.are_equal(g, w, np.array_equal)
            assert type(g["e"]) is tuple and type(g["b"][1]) is tuple and g["c"] == []
            gl, wl = tc.tree.leaves(g), tc.tree.leaves(w)
            for a, b in zip(gl, wl):
                assert type(a) is np.ndarray and a.base is b.base and a.dtype == b.dtype
                assert a.shape == b.shape and a.flags.writeable == b.flags.writeable
                if a.size:  # numpy points an empty slice at its base's start; C at its offset
                    assert a.__array_interface__["data"] == b.__array_interface__["data"]
        assert not got[1]["a"]["y"].flags.writeable and got[0]["a"]["y"].flags.writeable
        del got, want, g, w, gl, wl, a, b
        assert sys.getrefcount(owner) == before  # no view (or reference) leaked
    flat = np.zeros(20)
    for bad_tree, flats in [
            (tree, [np.zeros(n - 1)]),                   # outgrows the flat
            ({1: np.zeros(2)}, [flat]),                  # a non-str key
            ({"a": [1.0]}, [flat]),                      # a leaf that is no array
            (_ListSub([np.zeros(2)]), [flat]),           # a subclass
            ({"a": np.zeros(2)}, [flat] * 9),            # too many flats
            ({"a": np.zeros(2)}, [np.zeros((2, 10))]),   # a 2-D flat
            ({"a": np.zeros(2)}, [np.zeros(40)[::2]]),   # not contiguous
            ({"a": np.zeros(2)}, [[0.0, 1.0]]),          # not an array
            ({"a": np.zeros(2)}, [])]:
        assert _C.tree_views(bad_tree, flats) is None
    with pytest.raises(TypeError):
        _C.tree_views(tree, (flat,))
    # the Python build takes the trees C does not: same views
    od = {"a": [np.zeros(2), np.zeros(3)]}
    assert tc.tree.are_equal(optim._views_like(od, [flat])[0],
                             {"a": [flat[:2], flat[2:5]]}, np.array_equal)
