"""transformer_c.compat.mytorch: the CMU 11-785 HW4 mytorch classes (seed 001, Task 1),
tested the way the handout describes them: NumPy references written from its formulas,
and parity with torch.nn.MultiheadAttention."""
import numpy as np
import pytest

from transformer_c.compat.mytorch import (Linear, MultiHeadAttention,
                                          ScaledDotProductAttention, Softmax)

torch = pytest.importorskip("torch")

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=2e-5, atol=2e-5)}


def np_softmax(z, dim):
    e = np.exp(z - z.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3), (2, 1, 3)])
def test_linear_any_batch_dims(dtype, batch):
    rng = np.random.default_rng(0)
    lin = Linear(4, 3)
    W, b = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(3).astype(dtype)
    lin.init_weights(W, b)
    A = rng.standard_normal(batch + (4,)).astype(dtype)
    Z = lin.forward(A)
    assert Z.shape == batch + (3,) and Z.dtype == dtype and lin.input_shape == A.shape
    np.testing.assert_allclose(Z, A @ W.T + b, **TOL[dtype])
    dZ = rng.standard_normal(Z.shape).astype(dtype)
    dA = lin.backward(dZ)
    A2, dZ2 = A.reshape(-1, 4), dZ.reshape(-1, 3)
    np.testing.assert_allclose(dA, (dZ2 @ W).reshape(A.shape), **TOL[dtype])
    np.testing.assert_allclose(lin.dLdW, dZ2.T @ A2, **TOL[dtype])
    np.testing.assert_allclose(lin.dLdb, dZ2.sum(0), **TOL[dtype])
    assert lin.dLdb.shape == (3,)


def test_linear_column_bias_and_errors():
    lin = Linear(2, 2)
    lin.init_weights(np.eye(2), np.ones((2, 1)))
    np.testing.assert_array_equal(lin.forward(np.zeros((3, 2))), np.ones((3, 2)))
    lin.backward(np.ones((3, 2)))
    assert lin.dLdb.shape == (2, 1) and np.all(lin.dLdb == 3)
    with pytest.raises(ValueError, match="W must have shape"):
        lin.init_weights(np.eye(3), np.ones(3))
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(2, 2).backward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="in_features"):
        lin.forward(np.zeros((3, 5)))


def test_float64_gradient_into_float32_layer_is_cast():
    rng = np.random.default_rng(1)
    lin = Linear(3, 2)
    lin.init_weights(rng.standard_normal((2, 3)).astype(np.float32), np.zeros(2, np.float32))
    A = rng.standard_normal((4, 3)).astype(np.float32)
    lin.forward(A)
    dA = lin.backward(rng.standard_normal((4, 2)))  # float64, as course tests pass it
    assert dA.dtype == np.float32 and lin.dLdW.dtype == np.float32
    # float64 weights promote the layer to float64, as NumPy would
    lin.init_weights(lin.W.astype(np.float64), lin.b)
    assert lin.forward(A).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_softmax_any_dim_forward_and_jacobian_backward(dtype, dim):
    rng = np.random.default_rng(2)
    Z = (3 * rng.standard_normal((2, 3, 4))).astype(dtype)
    sm = Softmax(dim=dim)
    A = sm.forward(Z)
    np.testing.assert_allclose(A, np_softmax(Z, dim), **TOL[dtype])
    dA = rng.standard_normal(Z.shape)
    dZ = sm.backward(dA)
    # the handout's recipe: move dim last, flatten, dLdz = dLda . J per slice
    a2 = np.moveaxis(A.astype(np.float64), dim, -1).reshape(-1, Z.shape[dim])
    g2 = np.moveaxis(dA, dim, -1).reshape(-1, Z.shape[dim])
    want = np.stack([g @ (np.diag(a) - np.outer(a, a)) for a, g in zip(a2, g2)])
    shape = np.moveaxis(A, dim, -1).shape
    np.testing.assert_allclose(dZ, np.moveaxis(want.reshape(shape), -1, dim), **TOL[dtype])


def np_sdpa(Q, K, V, mask, eps=1e10):
    s = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        s = s - eps * mask
    return np_softmax(s, -1) @ V


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sdpa_course_mask_constant_and_gradients(dtype):
    rng = np.random.default_rng(3)
    N, H, L, S, E, Ev = 2, 3, 4, 5, 6, 7
    Q = rng.standard_normal((N, H, L, E)).astype(dtype)
    K = rng.standard_normal((N, H, S, E)).astype(dtype)
    V = rng.standard_normal((N, H, S, Ev)).astype(dtype)
    mask = rng.random((N, H, L, S)) < 0.4
    mask[..., 0] = False  # fully masked rows are ill-conditioned: tested below
    att = ScaledDotProductAttention()
    assert att.eps == 1e10
    out = att.forward(Q, K, V, mask)
    np.testing.assert_allclose(out, np_sdpa(Q, K, V, mask), **TOL[dtype])
    dO = rng.standard_normal(out.shape).astype(dtype)
    dQ, dK, dV = att.backward(dO)
    # the handout's chain rule in float64
    Q64, K64, V64, dO64 = (x.astype(np.float64) for x in (Q, K, V, dO))
    A = np_softmax(Q64 @ np.swapaxes(K64, -1, -2) / np.sqrt(E) - 1e10 * mask, -1)
    dA = dO64 @ np.swapaxes(V64, -1, -2)
    dS = A * (dA - (dA * A).sum(-1, keepdims=True)) / np.sqrt(E)
    np.testing.assert_allclose(dV, np.swapaxes(A, -1, -2) @ dO64, **TOL[dtype])
    np.testing.assert_allclose(dQ, dS @ K64, **TOL[dtype])
    np.testing.assert_allclose(dK, np.swapaxes(dS, -1, -2) @ Q64, **TOL[dtype])


def test_sdpa_fully_masked_row_is_the_course_constant_not_nan():
    rng = np.random.default_rng(6)
    Q, K, V = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    mask = np.zeros((1, 1, 3, 3), bool)
    mask[0, 0, 1] = True
    out = ScaledDotProductAttention().forward(Q, K, V, mask)
    # every score of row 1 is shifted by -1e10: softmax of the shifted row (the rounding of
    # s - 1e10 to float64's spacing there, ~2e-6, bounds the agreement)
    np.testing.assert_allclose(out, np_sdpa(Q, K, V, mask), rtol=1e-4, atol=1e-4)
    assert np.isfinite(out).all()
    out32 = ScaledDotProductAttention().forward(*(x.astype(np.float32) for x in (Q, K, V)), mask)
    np.testing.assert_allclose(out32[0, 0, 1], V[0, 0].mean(0), rtol=1e-5, atol=1e-6)


def test_sdpa_extra_batch_dims_and_broadcast_mask():
    rng = np.random.default_rng(4)
    Q, K, V = (rng.standard_normal((2, 3, 2, 4, 5)) for _ in range(3))
    mask = np.triu(np.ones((4, 4), bool), 1)
    att = ScaledDotProductAttention()
    np.testing.assert_allclose(att.forward(Q, K, V, mask), np_sdpa(Q, K, V, mask), atol=1e-12)
    with pytest.raises(TypeError, match="boolean"):
        att.forward(Q, K, V, mask.astype(float))
    with pytest.raises(ValueError, match="broadcastable"):
        att.forward(Q, K, V, np.ones((3, 3), bool))


def torch_mha(E, H, params, dtype):
    mha = torch.nn.MultiheadAttention(E, H, bias=True, batch_first=True,
                                      dtype={np.float32: torch.float32,
                                             np.float64: torch.float64}[dtype])
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = (torch.from_numpy(p) for p in params)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([Wq, Wk, Wv]))
        mha.in_proj_bias.copy_(torch.cat([bq, bk, bv]))
        mha.out_proj.weight.copy_(Wo)
        mha.out_proj.bias.copy_(bo)
    return mha


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["self_causal_padded", "cross_padded", "no_mask"])
def test_mha_matches_torch(dtype, case):
    rng = np.random.default_rng(5)
    N, L, E, H = 3, 5, 8, 2
    S = L if case != "cross_padded" else 7
    params = [rng.standard_normal(s).astype(dtype) * 0.5
              for s in [(E, E), (E,)] * 4]
    query = rng.standard_normal((N, L, E)).astype(dtype)
    key = query if case == "self_causal_padded" else rng.standard_normal((N, S, E)).astype(dtype)
    value = query if case == "self_causal_padded" else rng.standard_normal((N, S, E)).astype(dtype)
    kpm = attn = None
    if case != "no_mask":
        lengths = np.array([S, S - 2, 1])
        kpm = np.arange(S)[None, :] >= lengths[:, None]          # True = padding
    if case == "self_causal_padded":
        attn = np.triu(np.ones((L, S), bool), 1)                   # True = future
    mine = MultiHeadAttention(E, H)
    mine.init_weights(*params)
    out = mine.forward(query, key, value, key_padding_mask=kpm, attn_mask=attn)

    ref = torch_mha(E, H, params, dtype)
    tq, tk, tv = (torch.from_numpy(x.copy()).requires_grad_(True) for x in (query, key, value))
    tout, _ = ref(tq, tk, tv, key_padding_mask=None if kpm is None else torch.from_numpy(kpm),
                  attn_mask=None if attn is None else torch.from_numpy(attn),
                  need_weights=False)
    np.testing.assert_allclose(out, tout.detach().numpy(), **TOL[dtype])

    d_out = rng.standard_normal(out.shape).astype(dtype)
    dq, dk, dv = mine.backward(d_out)
    tout.backward(torch.from_numpy(d_out))
    for got, t in ((dq, tq), (dk, tk), (dv, tv)):  # three leaves, also for self-attention
        np.testing.assert_allclose(got, t.grad.numpy(), **TOL[dtype])
    wgrad = ref.in_proj_weight.grad.numpy()
    bgrad = ref.in_proj_bias.grad.numpy()
    for i, lin in enumerate((mine.q_proj, mine.k_proj, mine.v_proj)):
        np.testing.assert_allclose(lin.dLdW, wgrad[i * E:(i + 1) * E], **TOL[dtype])
        np.testing.assert_allclose(lin.dLdb, bgrad[i * E:(i + 1) * E], **TOL[dtype])
    np.testing.assert_allclose(mine.out_proj.dLdW, ref.out_proj.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(mine.out_proj.dLdb, ref.out_proj.bias.grad.numpy(), **TOL[dtype])


def test_mha_course_helpers():
    mha = MultiHeadAttention(6, 3)
    x = np.arange(2 * 4 * 6, dtype=float).reshape(2, 4, 6)
    heads = mha._split_heads(x)
    assert heads.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(heads[1, 2, 3], x[1, 3, 4:6])
    np.testing.assert_array_equal(mha._concat_heads(heads), x)
    mha.N, mha.L, mha.S = 2, 3, 4
    kpm = np.array([[False] * 4, [False, False, True, True]])
    attn = np.triu(np.ones((3, 4), bool), 1)
    m = mha._merge_masks(kpm, attn)
    assert m.shape == (2, 3, 3, 4) and m.dtype == bool
    np.testing.assert_array_equal(m[1, 2], attn | kpm[1])
    np.testing.assert_array_equal(m[0, 0], attn)
    assert mha._merge_masks(None, None) is None
    np.testing.assert_array_equal(mha._merge_masks(kpm, None)[1, 0, 0], kpm[1])
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        mha._merge_masks(None, np.zeros((4, 4), bool))
