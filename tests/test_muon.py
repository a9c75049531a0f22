"""The Muon optimizer: functional.muon_update_ (C, on tc_gemm) and the plain reference
against a NumPy implementation of the published algorithm written here (Keller Jordan's:
momentum lerp, Nesterov lerp, Frobenius normalisation, 5 quintic Newton-Schulz steps with
(3.4445, -4.7750, 2.0315), transposed when rows > cols, scale sqrt(max(1, rows / cols)),
decoupled weight decay), float32 and float64, awkward shapes; elements outside the
matrices untouched; bad tables and arguments raise naming them; the tree optimizer
(optim.Muon) on flat and separate trees, its choice of matrices on a GPT, and a run that
learns. (An optimizer update has no backward: no finite differences here.)"""
import numpy as np
import pytest

import transformer_c as tc
from conftest import non_contiguous, rng
from transformer_c import _C, optim
from transformer_c.nn import GPT, GPTConfig

F = tc.functional
SHAPES = [(1, 1), (1, 5), (5, 1), (3, 7), (7, 3), (4, 4), (33, 17), (16, 48)]


def numpy_muon(W, buf, G, lr, momentum, weight_decay, nesterov=True, steps=5):
    """The published algorithm on one matrix, in float64: (new W, new buffer)."""
    buf = buf + (1 - momentum) * (G - buf)                  # momentum.lerp_(grad, 1 - beta)
    u = G + momentum * (buf - G) if nesterov else buf       # grad.lerp_(momentum, beta)
    tall = u.shape[0] > u.shape[1]
    X = u.T if tall else u
    X = X / (np.linalg.norm(X) + 1e-7)
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    X = (X.T if tall else X) * max(1.0, u.shape[0] / u.shape[1]) ** 0.5
    return W * (1 - lr * weight_decay) - lr * X, buf


def packed(shapes, dtype, seed, gap=3):
    """Flat param, buffer, grad with the matrices of ``shapes`` at gaps of ``gap``, and
    the (count, 3) table."""
    table, off = [], gap
    for r, c in shapes:
        table.append((off, r, c))
        off += r * c + gap
    g = rng(seed)
    p, buf, grad = (g.standard_normal(off).astype(dtype) for _ in range(3))
    return p, buf, grad, np.array(table, np.int64)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("kernel", ["fast", "ref"])
def test_muon_matches_the_published_algorithm(kernel, nesterov, dtype, tol):
    p, buf, grad, table = packed(SHAPES, dtype, 0)
    want_p, want_b = p.astype(np.float64), buf.astype(np.float64)
    for off, r, c in table:
        s = slice(off, off + r * c)
        w, b = numpy_muon(want_p[s].reshape(r, c), want_b[s].reshape(r, c),
                          grad[s].astype(np.float64).reshape(r, c), 0.05, 0.9, 0.1, nesterov)
        want_p[s], want_b[s] = w.ravel(), b.ravel()
    got_p, got_b = p.copy(), buf.copy()
    if kernel == "fast":
        F.muon_update_(got_p, grad, got_b, table, lr=0.05, momentum=0.9, weight_decay=0.1,
                       nesterov=nesterov)
    else:
        _C.muon_update_ref(got_p, got_b, grad, table, 0.05, 0.9, 0.1, nesterov, 5)
    assert got_p.dtype == dtype and got_b.dtype == dtype
    np.testing.assert_allclose(got_p, want_p, rtol=0, atol=tol)
    np.testing.assert_allclose(got_b, want_b, rtol=0, atol=tol)
    outside = np.ones(p.size, bool)
    for off, r, c in table:
        outside[off:off + r * c] = False
    assert np.array_equal(got_p[outside], p[outside])  # bitwise untouched
    assert np.array_equal(got_b[outside], buf[outside])


def test_large_matrices_on_the_gemm_match_the_reference_and_threads():
    p, buf, grad, table = packed([(96, 300), (300, 96)], np.float64, 1)
    a = [p.copy(), buf.copy()]
    F.muon_update_(a[0], grad, a[1], table, lr=0.02)
    b = [p.copy(), buf.copy()]
    _C.muon_update_ref(b[0], b[1], grad, table, 0.02, 0.95, 0.0, True, 5)
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-12)
    old = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        c = [p.copy(), buf.copy()]
        F.muon_update_(c[0], grad, c[1], table, lr=0.02)
    finally:
        tc.set_num_threads(old)
    np.testing.assert_allclose(a[0], c[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("shapes", [
    [(130, 250), (250, 130)],                           # equal costs: spread over threads
    [(200, 200), (1, 300), (300, 1), (97, 193), (2, 3)],  # one dominates: threaded products
])
def test_triangle_products_and_schedules_match_numpy_at_any_thread_count(shapes, dtype, tol):
    """Sides past the 96-row blocks of the lower-triangle products (A = X X^T, A A), not
    multiples of them or of the tiles; 1 x N and N x 1; the matrices spread over the threads
    (equal costs) or one at a time (one dominates): the published algorithm, and bitwise the
    same at 1 and 2 threads."""
    p, buf, grad, table = packed(shapes, dtype, 11)
    want = p.astype(np.float64)
    for off, r, c in table:
        s = slice(off, off + r * c)
        w, _ = numpy_muon(want[s].reshape(r, c), buf[s].astype(np.float64).reshape(r, c),
                          grad[s].astype(np.float64).reshape(r, c), 0.05, 0.9, 0.1)
        want[s] = w.ravel()
    old, got = tc.get_num_threads(), []
    try:
        for n in (1, 2):
            tc.set_num_threads(n)
            q, b = p.copy(), buf.copy()
            F.muon_update_(q, grad, b, table, lr=0.05, momentum=0.9, weight_decay=0.1)
            got.append((q, b))
    finally:
        tc.set_num_threads(old)
    np.testing.assert_allclose(got[0][0], want, rtol=0, atol=tol)
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])


def test_orthogonalised_update_has_singular_values_near_one():
    r, c = 24, 40
    p, buf, grad, table = packed([(r, c)], np.float64, 2, gap=0)
    new = p.copy()
    F.muon_update_(new, grad, np.zeros_like(buf), table, lr=1.0, momentum=0.0, nesterov=False)
    s = np.linalg.svd((p - new).reshape(r, c), compute_uv=False)
    assert 0.5 < s.min() and s.max() < 1.3  # the quintic's band, not exactly 1 (published)


def test_zero_gradient_and_no_steps_and_empty_table():
    p, buf, grad, table = packed([(3, 4)], np.float32, 3)
    zero = np.zeros_like(grad)
    q, b = p.copy(), np.zeros_like(buf)
    F.muon_update_(q, zero, b, table)  # X = 0 / 1e-7 stays 0: no NaN
    assert np.array_equal(q, p) and not np.isnan(q).any()
    q = p.copy()
    F.muon_update_(q, grad, buf.copy(), np.zeros((0, 3), np.int64))
    assert np.array_equal(q, p)
    q = p.copy()  # ns_steps=0: the normalised momentum itself
    F.muon_update_(q, grad, np.zeros_like(buf), table, lr=1.0, momentum=0.0, nesterov=False,
                   ns_steps=0)
    s = slice(3, 15)
    np.testing.assert_allclose(p[s] - q[s], grad[s] / np.linalg.norm(grad[s]) * 1.0,
                               rtol=1e-5, atol=1e-6)


def test_grad_may_have_any_layout():
    p, buf, grad, table = packed([(5, 6)], np.float64, 4)
    a, b = p.copy(), buf.copy()
    F.muon_update_(a, non_contiguous(grad), b, table)
    c, d = p.copy(), buf.copy()
    F.muon_update_(c, grad, d, table)
    assert np.array_equal(a, c) and np.array_equal(b, d)


def test_bad_input_names_the_argument():
    p, buf, grad, table = packed([(3, 4)], np.float64, 5)
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [(0, 10, 10)])                 # past the end
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [(3, 2, 2), (4, 2, 2)])        # overlapping
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [(3, 0, 2)])                   # empty matrix
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [(-1, 2, 2)])
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [(1 << 62, 1 << 31, 1 << 31)])  # overflow-safe
    with pytest.raises(ValueError, match="matrices"):
        F.muon_update_(p, grad, buf, [[0, 1]])
    with pytest.raises(TypeError, match="matrices"):
        F.muon_update_(p, grad, buf, [(0.0, 1.0, 1.0)])
    with pytest.raises(TypeError, match="momentum_buffer"):
        F.muon_update_(p, grad, buf.astype(np.float32), table)
    with pytest.raises(ValueError, match="momentum"):
        F.muon_update_(p, grad, buf, table, momentum=1.0)
    with pytest.raises(ValueError, match="ns_steps"):
        F.muon_update_(p, grad, buf, table, ns_steps=-1)
    with pytest.raises(ValueError, match="grad"):
        F.muon_update_(p, grad[:-1], buf, table)
    with pytest.raises(ValueError, match="lr"):
        F.muon_update_(p, grad, buf, table, lr=-1.0)


def test_gpt_muon_matrices_are_the_block_projections():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=7, block_size=4,
                    tie_embeddings=False)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0))
    table = model.muon_matrices()
    names = {k: v for k, v in model.state_dict().items()}
    base = model.flat_parameters.__array_interface__["data"][0]
    chosen = set()
    for name, arr in names.items():
        off = (arr.__array_interface__["data"][0] - base) // arr.itemsize
        if any(off == o and arr.shape == (r, c) for o, r, c in table.tolist()):
            chosen.add(name.split(".", 2)[-1])
    assert chosen == {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                      "mlp.c_proj.weight"}
    assert len(table) == 8  # 4 per block, not wte / wpe / lm_head


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tree_muon_is_bitwise_on_flat_and_separate_trees_and_changes_no_input(dtype):
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=11, block_size=8)
    model = GPT.create(cfg, random_generator=np.random.default_rng(0), dtype=dtype)
    idx = np.random.default_rng(1).integers(0, 11, (2, 8))
    sep = tc.tree.tree_map(np.copy, model.parameters)
    flat_opt, sep_opt = optim.Muon(adamw_learning_rate=1e-2), optim.Muon(adamw_learning_rate=1e-2)
    # the same steps by hand: muon_update_ on the matrices, adamw_update_ on the rest
    p, table = model.flat_parameters.copy(), model.muon_matrices()
    mom, m, v = (np.zeros_like(p) for _ in range(3))
    inside = np.zeros(p.size, bool)
    for off, r, c in table:
        inside[off:off + r * c] = True
    for step in range(1, 4):
        _, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
        g = model.flat_grads.copy()
        before = model.flat_parameters.copy()
        state_before = None if flat_opt.state is None else tc.tree.tree_map(np.copy,
                                                                            flat_opt.state)
        new, flat_opt2 = flat_opt.step(model.parameters, grads)
        new_sep, sep_opt = sep_opt.step(sep, tc.tree.tree_map(np.copy, grads))
        assert np.array_equal(model.flat_parameters, before)  # no input changed
        if state_before is not None:
            assert tc.tree.are_equal(flat_opt.state, state_before, np.array_equal)
        assert tc.tree.are_equal(new, new_sep, np.array_equal)
        assert tc.tree.are_equal(flat_opt2.state, sep_opt.state, np.array_equal)
        F.muon_update_(p, g, mom, table)
        q, mm, vv = p[~inside].copy(), m[~inside].copy(), v[~inside].copy()
        F.adamw_update_(q, g[~inside], mm, vv, step=step, lr=1e-2, betas=(0.9, 0.95),
                        eps=1e-10, weight_decay=0.0)
        p[~inside], m[~inside], v[~inside] = q, mm, vv
        model = model.with_parameters(new)
        assert np.array_equal(model.flat_parameters, p)
        assert np.shares_memory(model.flat_parameters, tc.tree.leaves(new)[0])  # adopted
        flat_opt, sep = flat_opt2, new_sep
    assert flat_opt.step_count == 3
    # the state round-trips through separate arrays (a checkpoint of the tree API)
    copied = optim.Muon(adamw_learning_rate=1e-2,
                        state=tc.tree.tree_map(np.copy, flat_opt.state), step_count=3)
    _, grads = model.loss_and_grads(idx[:, :-1], idx[:, 1:])
    a, _ = flat_opt.step(model.parameters, grads)
    b, _ = copied.step(tc.tree.tree_map(np.copy, model.parameters), grads)
    assert tc.tree.are_equal(a, b, np.array_equal)


def test_tree_muon_with_a_custom_matrix_rule_on_coursework_trees():
    r = rng(6)
    params = {"layer1": {"weights": r.standard_normal((6, 4)), "bias": r.standard_normal(6)},
              "layer2": {"weights": r.standard_normal((3, 6)), "bias": r.standard_normal(3)}}
    grads = tc.tree.tree_map(lambda a: r.standard_normal(a.shape), params)
    rule = lambda path, shape: path[-1] == "weights"  # noqa: E731
    new, opt = optim.Muon(is_matrix=rule, learning_rate=0.1).step(params, grads)
    for k in ("layer1", "layer2"):
        w, _ = numpy_muon(params[k]["weights"], np.zeros_like(params[k]["weights"]),
                          grads[k]["weights"], 0.1, 0.95, 0.0)
        np.testing.assert_allclose(new[k]["weights"], w, rtol=0, atol=1e-12)
    assert not np.array_equal(new["layer1"]["bias"], params["layer1"]["bias"])  # AdamW
    assert np.all(opt.state["momentum"]["layer1"]["bias"] == 0)
    assert np.all(opt.state["m"]["layer1"]["weights"] == 0)
    with pytest.raises(ValueError, match="2-D"):
        optim.Muon(is_matrix=lambda path, shape: True).step(params, grads)
    with pytest.raises(ValueError, match="tree structures differ"):
        optim.Muon().step(params, {"layer1": grads["layer1"]})


def test_torch_muon_parity_to_its_bfloat16_iteration(torch):
    """torch.optim.Muon (2.13) runs the Newton-Schulz steps in bfloat16 (and normalises by
    max(norm, eps) rather than norm + eps), so agreement is to bfloat16's ~3 digits."""
    r = rng(7)
    for shape in [(24, 40), (40, 24), (16, 16)]:
        W, G = r.standard_normal(shape).astype(np.float32), r.standard_normal(shape).astype(
            np.float32)
        tp = torch.nn.Parameter(torch.from_numpy(W.copy()))
        opt = torch.optim.Muon([tp], lr=0.02, weight_decay=0.1, momentum=0.95)
        mine, buf = W.ravel().copy(), np.zeros(W.size, np.float32)
        table = np.array([(0, *shape)], np.int64)
        for _ in range(3):
            tp.grad = torch.from_numpy(G.copy())
            opt.step()
            F.muon_update_(mine, G.ravel(), buf, table, lr=0.02, momentum=0.95,
                           weight_decay=0.1)
        got, want = mine.reshape(shape) - W, tp.detach().numpy() - W
        assert np.linalg.norm(got - want) < 2e-2 * np.linalg.norm(want)
        np.testing.assert_allclose(buf.reshape(shape),
                                   opt.state[tp]["momentum_buffer"].numpy(), rtol=1e-6,
                                   atol=1e-7)
