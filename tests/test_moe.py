"""Mixture-of-experts feed-forward (functional.moe / moe_backward, nn.MoE): a NumPy
reference of the routing (softmax, top-k with ties to the lower index, capacity in priority
order, dropped choices) and of the experts, float64 finite differences of every gradient
(router weights through the gates and the aux loss included), a PyTorch twin (forward and
backward), fast == reference kernel, awkward shapes and bad input."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import fortran, non_contiguous, num_grad, rng, to_torch, tol

F = tc.functional
DTYPES = [np.float32, np.float64]


# ------------------------------------------------------------------ NumPy reference

def ref_act(name, x):
    if name == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2)))
    if name == "relu":
        return np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "relu2":
        return np.maximum(x, 0) ** 2
    raise AssertionError(name)


def ref_moe(x, R, w1, b1, w2, b2, k, cf, act):
    """(y (N,C), aux, expert (N,k), gates (N,k), kept (E,), dropped (E,), probs) in float64"""
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    N, C = x.shape
    E = R.shape[0]
    logits = x @ R.T.astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expert = np.zeros((N, k), np.int64)
    gates = np.zeros((N, k))
    for n in range(N):
        order = sorted(range(E), key=lambda e: (-p[n, e], e))  # ties: lower index first
        expert[n] = order[:k]
        g = p[n, order[:k]]
        gates[n] = g if k == 1 else g / g.sum()
    cap = min(N, math.ceil(cf * N * k / E))
    kept = np.zeros(E, np.int64)
    dropped = np.zeros(E, np.int64)
    y = np.zeros((N, C))
    for j in range(k):
        for n in range(N):
            e = expert[n, j]
            if kept[e] < cap:
                kept[e] += 1
                h = ref_act(act, x[n] @ w1[e].T.astype(np.float64) + (0 if b1 is None else b1[e]))
                y[n] += gates[n, j] * (h @ w2[e].T + (0 if b2 is None else b2[e]))
            else:
                dropped[e] += 1
    f = np.bincount(expert.ravel(), minlength=E) / (N * k)
    aux = E * float(np.sum(f * p.mean(axis=0))) if N else 0.0
    return y, aux, expert, gates, kept, dropped, p


def make(N=12, C=6, H=10, E=4, dtype=np.float64, seed=0, bias=True, scale=1.0):
    r = rng(seed)
    x = r.standard_normal((N, C)).astype(dtype)
    R = (scale * r.standard_normal((E, C))).astype(dtype)
    w1 = (0.4 * r.standard_normal((E, H, C))).astype(dtype)
    w2 = (0.4 * r.standard_normal((E, C, H))).astype(dtype)
    b1 = (0.1 * r.standard_normal((E, H))).astype(dtype) if bias else None
    b2 = (0.1 * r.standard_normal((E, C))).astype(dtype) if bias else None
    return x, R, w1, b1, w2, b2


# ------------------------------------------------------------------ forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("cf", [0.5, 1.0, 1.25, 4.0])
@pytest.mark.parametrize("reference", [False, True])
def test_forward_matches_numpy(dtype, k, cf, reference):
    x, R, w1, b1, w2, b2 = make(N=17, dtype=dtype)
    y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf, reference=reference)
    wy, waux, wex, wg, kept, dropped, p = ref_moe(x, R, w1, b1, w2, b2, k, cf, "gelu_tanh")
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, wy, **tol(dtype))
    np.testing.assert_allclose(aux, waux, **tol(dtype))
    np.testing.assert_array_equal(rt.expert, wex)
    np.testing.assert_allclose(rt.gates, wg, **tol(dtype))
    np.testing.assert_allclose(rt.probs, p, **tol(dtype))
    np.testing.assert_array_equal(rt.tokens_per_expert, kept)
    np.testing.assert_array_equal(rt.dropped_per_expert, dropped)
    assert rt.dropped == dropped.sum() and rt.capacity == min(17, math.ceil(cf * 17 * k / 4))
    assert kept.sum() + dropped.sum() == 17 * k
    if cf == 0.5:
        assert rt.dropped > 0  # the accounting is exercised


@pytest.mark.parametrize("act", tc.options.ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
def test_activations_and_bias(act, bias):
    x, R, w1, b1, w2, b2 = make(C=5, H=7, E=3, bias=bias, seed=3)
    for k in (1, 2):
        y, aux, _ = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=1.0, activation=act)
        wy, waux, *_ = ref_moe(x, R, w1, b1, w2, b2, k, 1.0, act)
        np.testing.assert_allclose(y, wy, rtol=1e-10, atol=1e-10)
        assert aux == pytest.approx(waux, rel=1e-12)


def test_capacity_overflow_accounting():
    """Every row prefers expert 0 (then expert 1): the first cap rows get it, the rest are
    dropped (output exactly 0 with k = 1); with k = 2 the second choices fill expert 1."""
    N, C, E = 10, 4, 4
    r = rng(1)
    x = np.abs(r.standard_normal((N, C))) + 0.5
    R = np.zeros((E, C))
    R[0] = 3.0
    R[1] = 2.0
    _, _, w1, b1, w2, b2 = make(N, C, 6, E, seed=2)
    y, _, rt = F.moe(x, R, w1, b1, w2, b2, top_k=1, capacity_factor=1.0)
    cap = math.ceil(N / E)
    assert rt.capacity == cap == 3
    np.testing.assert_array_equal(rt.tokens_per_expert, [3, 0, 0, 0])
    np.testing.assert_array_equal(rt.dropped_per_expert, [7, 0, 0, 0])
    assert rt.dropped == 7
    assert np.all(y[cap:] == 0) and np.all(np.abs(y[:cap]).sum(axis=1) > 0)
    y2, aux2, rt2 = F.moe(x, R, w1, b1, w2, b2, top_k=2, capacity_factor=1.0)
    assert rt2.capacity == 5
    np.testing.assert_array_equal(rt2.expert[:, 0], 0)
    np.testing.assert_array_equal(rt2.expert[:, 1], 1)
    np.testing.assert_array_equal(rt2.tokens_per_expert, [5, 5, 0, 0])
    np.testing.assert_array_equal(rt2.dropped_per_expert, [5, 5, 0, 0])
    assert np.all(y2[5:] == 0)
    # all choices on two experts: aux = E * (f0 P0 + f1 P1) with f = 1/2
    p = rt2.probs
    assert aux2 == pytest.approx(4 * 0.5 * (p[:, 0].mean() + p[:, 1].mean()), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_ties_go_to_the_lower_expert(k):
    x, R, w1, b1, w2, b2 = make(N=5, E=4)
    R[:] = R[0]  # identical router rows: all probabilities equal
    _, _, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=10.0)
    np.testing.assert_array_equal(rt.expert, np.tile(np.arange(k), (5, 1)))
    np.testing.assert_allclose(rt.gates, 1 / 4 if k == 1 else 0.5, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_awkward_shapes(dtype):
    # T = 1, odd sizes, leading dims, non-contiguous and Fortran inputs, empty
    for N, C, H, E in [(1, 1, 1, 1), (1, 7, 13, 3), (9, 3, 5, 5), (33, 17, 19, 6)]:
        x, R, w1, b1, w2, b2 = make(N, C, H, E, dtype, seed=N)
        for k in (1, 2)[:E]:
            y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k)
            wy, waux, *_ = ref_moe(x, R, w1, b1, w2, b2, k, 1.25, "gelu_tanh")
            np.testing.assert_allclose(y, wy, **tol(dtype))
    x, R, w1, b1, w2, b2 = make(12, 6, 10, 4, dtype)
    y, aux, _ = F.moe(x, R, w1, b1, w2, b2, top_k=2)
    y3, aux3, _ = F.moe(x.reshape(3, 4, 6), R, w1, b1, w2, b2, top_k=2)
    np.testing.assert_array_equal(y3.reshape(12, 6), y)
    yn, _, _ = F.moe(non_contiguous(x), non_contiguous(R), fortran(w1), b1, non_contiguous(w2),
                     b2, top_k=2)
    np.testing.assert_array_equal(yn, y)
    dy = rng(5).standard_normal(x.shape).astype(dtype)
    g = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=2, aux_grad=0.5)
    gn = F.moe_backward(non_contiguous(dy), non_contiguous(x), R, fortran(w1), b1, w2, b2,
                        top_k=2, aux_grad=0.5)
    for a, b in zip(g, gn):
        np.testing.assert_array_equal(a, b)
    ye, auxe, rte = F.moe(np.zeros((0, 6), dtype), R, w1, b1, w2, b2, top_k=2)
    assert ye.shape == (0, 6) and auxe == 0.0 and rte.dropped == 0
    ge = F.moe_backward(np.zeros((0, 6), dtype), np.zeros((0, 6), dtype), R, w1, b1, w2, b2,
                        top_k=2, aux_grad=1.0)
    assert ge[0].shape == (0, 6)
    for a in ge[1:]:
        assert np.all(a == 0)


# ------------------------------------------------------------------ gradients

def moe_loss(arrs, G, k, cf, act, aux_grad):
    y, aux, _ = F.moe(arrs["x"], arrs["router"], arrs["w1"], arrs["b1"], arrs["w2"],
                      arrs["b2"], top_k=k, capacity_factor=cf, activation=act)
    return float(np.sum(y * G)) + aux_grad * aux


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("cf", [0.6, 2.0])
@pytest.mark.parametrize("act", ["gelu_tanh", "silu"])
def test_finite_differences(k, cf, act):
    """Every gradient (x, the router through the gates and the aux loss, both expert layers)
    against central differences, away from top-k ties (random routing), with drops."""
    x, R, w1, b1, w2, b2 = make(N=9, C=4, H=5, E=3, seed=7, scale=2.0)
    arrs = dict(x=x, router=R, w1=w1, b1=b1, w2=w2, b2=b2)
    G = rng(8).standard_normal(x.shape)
    aux_grad = 0.7
    _, _, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf, activation=act)
    if cf == 0.6:
        assert rt.dropped > 0
    # away from ties: the chosen probabilities are separated from the rest
    ps = np.sort(rt.probs, axis=1)[:, ::-1]
    assert np.min(ps[:, k - 1] - ps[:, k]) > 1e-4
    got = dict(zip(["x", "router", "w1", "b1", "w2", "b2"],
                   F.moe_backward(G, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf,
                                  activation=act, aux_grad=aux_grad)))
    for name, a in arrs.items():
        want = num_grad(lambda: moe_loss(arrs, G, k, cf, act, aux_grad), a)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-8, err_msg=name)
    # the router gradient is not just the aux term: the gates carry the output's gradient
    g0 = F.moe_backward(G, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf,
                        activation=act, aux_grad=0.0)[1]
    assert np.abs(g0).max() > 1e-3


def test_aux_gradient_alone():
    x, R, w1, b1, w2, b2 = make(N=8, C=3, H=4, E=4, seed=11)
    arrs = dict(x=x, router=R, w1=w1, b1=b1, w2=w2, b2=b2)
    zero = np.zeros_like(x)
    got = F.moe_backward(zero, x, R, w1, b1, w2, b2, top_k=2, aux_grad=1.0)
    want = num_grad(lambda: moe_loss(arrs, zero, 2, 1.25, "gelu_tanh", 1.0), R)
    np.testing.assert_allclose(got[1], want, rtol=1e-6, atol=1e-9)
    assert np.all(got[2] == 0) and np.all(got[4] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2])
def test_fast_matches_reference_kernel(dtype, k, kernel):
    x, R, w1, b1, w2, b2 = make(N=40, C=9, H=11, E=5, dtype=dtype, seed=4)
    dy = rng(6).standard_normal(x.shape).astype(dtype)
    y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.9)
    yr, auxr, rtr = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.9, reference=True)
    np.testing.assert_allclose(y, yr, **tol(dtype))
    np.testing.assert_array_equal(rt.expert, rtr.expert)
    np.testing.assert_array_equal(rt.tokens_per_expert, rtr.tokens_per_expert)
    g = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.9, routing=rt,
                       aux_grad=0.3)
    gr = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.9, routing=rtr,
                        aux_grad=0.3)
    t = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else tol(dtype)
    for a, b in zip(g, gr):
        np.testing.assert_allclose(a, b, **t)


def test_thread_counts_agree(threads):
    x, R, w1, b1, w2, b2 = make(N=300, C=32, H=64, E=4, seed=9)
    dy = rng(2).standard_normal(x.shape)
    out = []
    for n in (1, 2, 2):
        threads(n)
        y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=2)
        out.append((y, F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=2, routing=rt,
                                      aux_grad=0.1)))
    for a, b in zip([out[1][0], *out[1][1]], [out[2][0], *out[2][1]]):
        np.testing.assert_array_equal(a, b)  # bitwise for a fixed thread count
    for a, b in zip([out[0][0], *out[0][1]], [out[1][0], *out[1][1]]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,E,k,cf,act,bias", [
    (1500, 4, 2, 0.5, "gelu_tanh", True),  # every expert at capacity: the backward spreads
    (1203, 3, 2, 1.0, "silu", True),       # silu (no fused pair), odd row counts
    (997, 1, 1, 1.0, "relu", False),       # one expert: rows split, backward not spread
    (1100, 2, 1, 4.0, "gelu_tanh", True),  # router scale 3, no drops
])
def test_threaded_experts_match_serial_bitwise(threads, dtype, N, E, k, cf, act, bias):
    """Past the size for threads, the forward runs the experts as one region of (expert,
    row range) tasks and the backward hands whole experts to the threads when their rows
    balance: each result is computed as on one thread (bitwise); float64 matches the
    references."""
    x, R, w1, b1, w2, b2 = make(N=N, C=40, H=136, E=E, dtype=dtype, seed=N, bias=bias,
                                scale=3.0 if cf == 4.0 else 1.0)
    dy = rng(3).standard_normal(x.shape).astype(dtype)
    out = []
    for n in (1, 2):
        threads(n)
        y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf, activation=act)
        g = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf,
                           activation=act, routing=rt, aux_grad=0.2)
        out.append([y, *[a for a in g if a is not None]])
    for a, b in zip(out[0], out[1]):
        np.testing.assert_array_equal(a, b)
    if dtype != np.float64:  # (float32 rounding may flip a near-tie of the float64 routing)
        return
    wy = ref_moe(x, R, w1, b1, w2, b2, k, cf, act)[0]
    np.testing.assert_allclose(out[1][0], wy, rtol=1e-9, atol=1e-9)
    gr = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=cf, activation=act,
                        aux_grad=0.2, reference=True)
    for a, b in zip(out[1][1:], [a for a in gr if a is not None]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)

# ------------------------------------------------------------------ PyTorch twin

def torch_moe(torch, x, R, w1, b1, w2, b2, k, cf, act):
    """The same MoE in torch autograd (routing decisions from torch's own probabilities)."""
    N, C = x.shape
    E = R.shape[0]
    p = torch.softmax(x @ R.T, dim=1)
    top = torch.topk(p, k, dim=1)
    g = top.values if k == 1 else top.values / top.values.sum(dim=1, keepdim=True)
    cap = min(N, math.ceil(cf * N * k / E))
    fn = {"gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
          "gelu": torch.nn.functional.gelu, "relu": torch.relu,
          "silu": torch.nn.functional.silu, "relu2": lambda t: torch.relu(t) ** 2}[act]
    count = [0] * E
    rows = [[] for _ in range(N)]
    for j in range(k):
        for n in range(N):
            e = int(top.indices[n, j])
            if count[e] < cap:
                count[e] += 1
                h = fn(x[n] @ w1[e].T + (0 if b1 is None else b1[e]))
                rows[n].append(g[n, j] * (h @ w2[e].T + (0 if b2 is None else b2[e])))
    y = torch.stack([sum(r) if r else torch.zeros(C, dtype=x.dtype) for r in rows])
    f = torch.bincount(top.indices.reshape(-1), minlength=E).to(x.dtype) / (N * k)
    aux = E * torch.sum(f * p.mean(dim=0))
    return y, aux, top.indices


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("act", ["gelu_tanh", "relu"])
def test_torch_parity(torch, dtype, k, act):
    x, R, w1, b1, w2, b2 = make(N=16, C=8, H=12, E=4, dtype=dtype, seed=21)
    dy = rng(22).standard_normal(x.shape).astype(dtype)
    aux_grad = 0.25
    ts = [to_torch(torch, a) for a in (x, R, w1, b1, w2, b2)]
    ty, taux, tidx = torch_moe(torch, *ts, k, 0.75, act)
    ((ty * torch.from_numpy(dy)).sum() + aux_grad * taux).backward()
    y, aux, rt = F.moe(x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.75, activation=act)
    assert rt.dropped > 0
    np.testing.assert_array_equal(rt.expert, tidx.numpy())
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    assert aux == pytest.approx(float(taux.detach()), rel=1e-5 if dtype == np.float32 else 1e-10)
    grads = F.moe_backward(dy, x, R, w1, b1, w2, b2, top_k=k, capacity_factor=0.75,
                           activation=act, aux_grad=aux_grad, routing=rt)
    for name, got, t in zip(["x", "router", "w1", "b1", "w2", "b2"], grads, ts):
        np.testing.assert_allclose(got, t.grad.numpy(), **tol(dtype), err_msg=name)


# ------------------------------------------------------------------ nn.MoE

def test_module(torch):
    m = tc.nn.MoE.create(6, 10, 4, rng(0), top_k=2, capacity_factor=1.0, aux_weight=0.05)
    assert set(m.parameters) == {"router", "w1", "b1", "w2", "b2"}
    assert m.parameters["w1"].shape == (4, 10, 6) and m.num_experts == 4
    x = rng(1).standard_normal((2, 7, 6))
    y, cache = m.forward_cached(x)
    stats = m.routing_stats(cache)
    assert stats["tokens_per_expert"].sum() + stats["dropped"] == 2 * 7 * 2
    g = rng(2).standard_normal(y.shape)
    grads, dx = m.backward_cached(g, cache)
    want = F.moe_backward(g, x, m.router, m.w1, m.b1, m.w2, m.b2, top_k=2,
                          capacity_factor=1.0, aux_grad=0.05)
    for got, w in zip([dx, grads["router"], grads["w1"], grads["b1"], grads["w2"],
                       grads["b2"]], want):
        np.testing.assert_array_equal(got, w)
    pg, ig = m.backward(g, x=x)
    np.testing.assert_array_equal(ig["x"], dx)
    m2 = m.with_parameters(tc.tree.tree_map(lambda a: 2 * a, m.parameters))
    np.testing.assert_array_equal(m2.w2, 2 * m.w2)
    assert m2.top_k == 2 and m2.aux_weight == 0.05
    nb = tc.nn.MoE.create(6, 10, 4, rng(0), bias=False, dtype=np.float32)
    assert set(nb.parameters) == {"router", "w1", "w2"} and nb.w1.dtype == np.float32
    assert set(nb.backward(np.ones((3, 6), np.float32), x=np.ones((3, 6), np.float32))[0]) \
        == {"router", "w1", "w2"}


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    x, R, w1, b1, w2, b2 = make(N=5, C=4, H=6, E=3)
    cases = [
        (dict(top_k=3), ValueError, "top_k"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(top_k=1.0), TypeError, "top_k"),
        (dict(capacity_factor=0.0), ValueError, "capacity_factor"),
        (dict(capacity_factor=float("nan")), ValueError, "capacity_factor"),
        (dict(capacity_factor=float("inf")), ValueError, "capacity_factor"),
        (dict(activation="tanh"), ValueError, "activation"),
    ]
    for kw, exc, name in cases:
        with pytest.raises(exc, match=name):
            F.moe(x, R, w1, b1, w2, b2, **kw)
    bad_args = [
        ((x.astype(np.int64), R, w1, b1, w2, b2), TypeError, "x"),
        ((x, R.astype(np.float32), w1, b1, w2, b2), TypeError, "router"),
        ((x, R[:, :3], w1, b1, w2, b2), ValueError, "router"),
        ((x, R[:0], w1[:0], b1[:0], w2[:0], b2[:0]), ValueError, "router"),
        ((x, R, w1[:2], b1, w2, b2), ValueError, "w1"),
        ((x, R, w1[:, :, :3], b1, w2, b2), ValueError, "w1"),
        ((x, R, w1, b1[:, :5], w2, b2), ValueError, "b1"),
        ((x, R, w1, b1, w2[:, :, :5], b2), ValueError, "w2"),
        ((x, R, w1, b1, w2, b2[:, :3]), ValueError, "b2"),
        ((x, R, w1[0], b1, w2, b2), ValueError, "w1"),
        ((np.float64(1.0), R, w1, b1, w2, b2), ValueError, "x"),
    ]
    for args, exc, name in bad_args:
        with pytest.raises(exc, match=name):
            F.moe(*args)
    with pytest.raises(ValueError, match="top_k"):
        F.moe(x, R[:1], w1[:1], b1[:1], w2[:1], b2[:1], top_k=2)
    _, _, rt = F.moe(x, R, w1, b1, w2, b2)
    with pytest.raises(ValueError, match="grad_output"):
        F.moe_backward(np.ones((4, 4)), x, R, w1, b1, w2, b2)
    with pytest.raises(TypeError, match="routing"):
        F.moe_backward(np.ones_like(x), x, R, w1, b1, w2, b2, routing=(1, 2))
    with pytest.raises(ValueError, match="routing"):
        F.moe_backward(np.ones_like(x), x, R, w1, b1, w2, b2, routing=rt, top_k=2)
    with pytest.raises(ValueError, match="aux_grad"):
        F.moe_backward(np.ones_like(x), x, R, w1, b1, w2, b2, aux_grad=float("nan"))
    with pytest.raises(ValueError, match="cache"):  # the routing of other sizes
        F.moe_backward(np.ones((6, 4)), np.ones((6, 4)), R, w1, b1, w2, b2, routing=rt)
    # a tampered cache is refused by the kernel (never read out of bounds)
    cache = list(rt._cache)
    slot = cache[3].copy()
    slot[0, 0] = 10 ** 9
    cache[3] = slot
    rt._cache = tuple(cache)
    with pytest.raises(ValueError, match="cache"):
        F.moe_backward(np.ones_like(x), x, R, w1, b1, w2, b2, routing=rt)
    with pytest.raises(ValueError, match="top_k"):
        tc.nn.MoE.create(4, 6, 3, rng(0), top_k=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        tc.nn.MoE.create(4, 6, 3, rng(0), capacity_factor=-1)
    with pytest.raises(ValueError, match="activation"):
        tc.nn.MoE.create(4, 6, 3, rng(0), activation="swish")


def test_capacity_function():
    assert F.moe_capacity(10, 4, top_k=1, capacity_factor=1.0) == 3
    assert F.moe_capacity(10, 4, top_k=2, capacity_factor=1.25) == 7
    assert F.moe_capacity(3, 2, top_k=2, capacity_factor=8.0) == 3  # at most N
    assert F.moe_capacity(0, 2) == 0
    with pytest.raises(ValueError, match="top_k"):
        F.moe_capacity(5, 1, top_k=2)
