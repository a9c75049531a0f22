"""Attention layers: SelfAttention and CrossAttention against
torch.nn.MultiheadAttention (weights copied in; key_padding_mask and attn_mask, whose
boolean convention in torch is the opposite), finite differences through the module
protocol, batch shapes, dropout, KV-cache decoding; the coursework MultiHeadAttention's
fused path against its per-head form."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import num_grad, rng, tol
from transformer_c import nn
from transformer_c.tree import flatten, unflatten

F = tc.functional


def with_random_biases(m, r):
    """m with random (not zero) biases, so the bias gradients are exercised."""
    p = {k: {kk: (r.standard_normal(vv.shape).astype(vv.dtype) if kk == "bias" else vv)
             for kk, vv in v.items()} for k, v in m.parameters.items()}
    return m.with_parameters(p)


def torch_mha(torch, E, NH, dtype, kdim=None):
    t = torch.nn.MultiheadAttention(E, NH, batch_first=True, kdim=kdim, vdim=kdim,
                                    dtype=torch.float64 if dtype == np.float64 else torch.float32)
    return t


def load_self(torch, t, m):
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.from_numpy(m.c_attn.weight))
        t.in_proj_bias.copy_(torch.from_numpy(m.c_attn.bias))
        t.out_proj.weight.copy_(torch.from_numpy(m.c_proj.weight))
        t.out_proj.bias.copy_(torch.from_numpy(m.c_proj.bias))


def torch_masks(torch, attn_mask, kpm, causal, T, S):
    """Our masks (True = attend) as torch.nn.MultiheadAttention's (True = hide)."""
    am = None
    if attn_mask is not None:
        am = torch.from_numpy(~attn_mask if attn_mask.dtype == bool else attn_mask)
    if causal:
        c = torch.ones(T, S, dtype=torch.bool).triu(1)
        am = c if am is None else (am | c if am.dtype == torch.bool
                                   else am.masked_fill(c, float("-inf")))
    return am, None if kpm is None else torch.from_numpy(~kpm)


MASKS = ["none", "key_padding", "bool", "float", "bool_per_head", "causal", "all"]


def make_masks(kind, B, NH, T, S, r, dtype):
    attn_mask = kpm = None
    causal = kind in ("causal", "all")
    if kind in ("key_padding", "all"):
        kpm = r.random((B, S)) > 0.3
        kpm[:, 0] = True
    if kind in ("bool", "all"):
        attn_mask = r.random((T, S)) > 0.3
        attn_mask[:, 0] = True
    if kind == "bool_per_head":
        attn_mask = r.random((B * NH, T, S)) > 0.3
        attn_mask[..., 0] = True
    if kind == "float":
        attn_mask = r.standard_normal((T, S)).astype(dtype)
    return attn_mask, kpm, causal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", MASKS)
def test_self_attention_matches_torch_multihead(torch, dtype, kind):
    E, NH, B, T = 12, 3, 2, 9
    r = rng(len(kind))
    attn_mask, kpm, causal = make_masks(kind, B, NH, T, T, r, dtype)
    m = with_random_biases(nn.SelfAttention.create(E, NH, r, causal=causal, dtype=dtype), r)
    t = torch_mha(torch, E, NH, dtype)
    load_self(torch, t, m)
    x = r.standard_normal((B, T, E)).astype(dtype)
    G = r.standard_normal((B, T, E)).astype(dtype)
    ours_mask = attn_mask
    if kind == "bool_per_head":  # torch takes (B*NH, T, S); ours broadcasts to (B, NH, T, S)
        ours_mask = attn_mask.reshape(B, NH, T, T)
    tx = torch.from_numpy(x).requires_grad_()
    am, tk = torch_masks(torch, attn_mask, kpm, causal, T, T)
    y, _ = t(tx, tx, tx, attn_mask=am, key_padding_mask=tk, need_weights=False)
    (y * torch.from_numpy(G)).sum().backward()
    inputs = dict(x=x, attn_mask=ours_mask, key_padding_mask=kpm)
    inputs = {k: v for k, v in inputs.items() if v is not None}
    out = m.forward(**inputs)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, y.detach().numpy(), **tol(dtype))
    pg, ig = m.backward(G, **inputs)
    assert set(ig) == set(inputs)
    np.testing.assert_allclose(ig["x"], tx.grad.numpy(), **tol(dtype))
    want = {"c_attn": {"weight": t.in_proj_weight, "bias": t.in_proj_bias},
            "c_proj": {"weight": t.out_proj.weight, "bias": t.out_proj.bias}}
    for key, g in flatten(pg).items():
        assert g.dtype == dtype
        np.testing.assert_allclose(g, flatten(want)[key].grad.numpy(), **tol(dtype), err_msg=key)
    for key in set(ig) - {"x"}:
        assert np.all(ig[key] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kdim", [None, 7])
@pytest.mark.parametrize("kind", ["none", "key_padding", "bool", "float", "all"])
def test_cross_attention_matches_torch_multihead(torch, dtype, kdim, kind):
    E, NH, B, T, S = 8, 2, 3, 5, 11
    r = rng(len(kind) + (kdim or 0))
    attn_mask, kpm, _ = make_masks(kind, B, NH, T, S, r, dtype)
    m = with_random_biases(nn.CrossAttention.create(E, NH, r, memory_dim=kdim,
                                                             dtype=dtype), r)
    t = torch_mha(torch, E, NH, dtype, kdim=kdim)
    with torch.no_grad():
        if kdim is None:
            t.in_proj_weight.copy_(torch.from_numpy(np.concatenate(
                [m.q_attn.weight, m.c_attn.weight])))
        else:
            t.q_proj_weight.copy_(torch.from_numpy(m.q_attn.weight))
            t.k_proj_weight.copy_(torch.from_numpy(m.c_attn.weight[:E]))
            t.v_proj_weight.copy_(torch.from_numpy(m.c_attn.weight[E:]))
        t.in_proj_bias.copy_(torch.from_numpy(np.concatenate([m.q_attn.bias, m.c_attn.bias])))
        t.out_proj.weight.copy_(torch.from_numpy(m.c_proj.weight))
        t.out_proj.bias.copy_(torch.from_numpy(m.c_proj.bias))
    x = r.standard_normal((B, T, E)).astype(dtype)
    mem = r.standard_normal((B, S, kdim or E)).astype(dtype)
    G = r.standard_normal((B, T, E)).astype(dtype)
    tx, tm = (torch.from_numpy(a).requires_grad_() for a in (x, mem))
    am, tk = torch_masks(torch, attn_mask, kpm, False, T, S)
    y, _ = t(tx, tm, tm, attn_mask=am, key_padding_mask=tk, need_weights=False)
    (y * torch.from_numpy(G)).sum().backward()
    inputs = {k: v for k, v in dict(x=x, memory=mem, attn_mask=attn_mask,
                                     key_padding_mask=kpm).items() if v is not None}
    np.testing.assert_allclose(m.forward(**inputs), y.detach().numpy(), **tol(dtype))
    pg, ig = m.backward(G, **inputs)
    assert set(ig) == set(inputs)
    np.testing.assert_allclose(ig["x"], tx.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(ig["memory"], tm.grad.numpy(), **tol(dtype))
    bias_grad = t.in_proj_bias.grad.numpy()
    np.testing.assert_allclose(pg["q_attn"]["bias"], bias_grad[:E], **tol(dtype))
    np.testing.assert_allclose(pg["c_attn"]["bias"], bias_grad[E:], **tol(dtype))
    if kdim is None:
        w = t.in_proj_weight.grad.numpy()
        np.testing.assert_allclose(pg["q_attn"]["weight"], w[:E], **tol(dtype))
        np.testing.assert_allclose(pg["c_attn"]["weight"], w[E:], **tol(dtype))
    else:
        np.testing.assert_allclose(pg["q_attn"]["weight"], t.q_proj_weight.grad.numpy(), **tol(dtype))
        np.testing.assert_allclose(pg["c_attn"]["weight"],
                                   np.concatenate([t.k_proj_weight.grad.numpy(),
                                                   t.v_proj_weight.grad.numpy()]), **tol(dtype))
    np.testing.assert_allclose(pg["c_proj"]["weight"], t.out_proj.weight.grad.numpy(), **tol(dtype))


# ------------------------------------------------------------------ finite differences

def check_module_grads(module, inputs, float_inputs, rtol=1e-6, atol=1e-8):
    out = module.forward(**inputs)
    G = rng(99).standard_normal(out.shape)
    pgrads, igrads = module.backward(G, **inputs)
    assert set(igrads) == set(inputs)
    params = {k: v.copy() for k, v in flatten(module.parameters).items()}
    assert list(flatten(pgrads)) == list(params)

    def loss():
        m = module.with_parameters(unflatten(params, like=module.parameters))
        return float(np.sum(m.forward(**inputs) * G))

    for name, arr in params.items():
        np.testing.assert_allclose(flatten(pgrads)[name], num_grad(loss, arr), rtol=rtol,
                                   atol=atol, err_msg=name)
    for name in float_inputs:
        np.testing.assert_allclose(igrads[name], num_grad(loss, inputs[name]), rtol=rtol,
                                   atol=atol, err_msg=name)


@pytest.mark.parametrize("causal", [False, True, "bottom_right"])
def test_self_attention_finite_differences(causal):
    r = rng(1)
    m = with_random_biases(nn.SelfAttention.create(4, 2, r, causal=causal), r)
    kpm = np.array([[True, True, False], [True, True, True]])
    check_module_grads(m, dict(x=r.standard_normal((2, 3, 4)), key_padding_mask=kpm), ["x"])


def test_cross_attention_finite_differences():
    r = rng(2)
    m = with_random_biases(nn.CrossAttention.create(4, 2, r, memory_dim=3), r)
    keep = r.random((2, 4)) > 0.3
    keep[:, 0] = True
    check_module_grads(m, dict(x=r.standard_normal((2, 4)), memory=r.standard_normal((4, 3)),
                               attn_mask=keep), ["x", "memory"])


# ------------------------------------------------------------------ shapes, dtypes, options

@pytest.mark.parametrize("batch", [(), (3,), (2, 3), (0,)])
def test_batch_shapes(batch):
    r = rng(3)
    m = nn.SelfAttention.create(8, 2, r, causal=True)
    x = r.standard_normal(batch + (5, 8))
    kpm = np.ones(batch + (5,), bool)
    y = m.forward(x=x, key_padding_mask=kpm)
    assert y.shape == x.shape
    pg, ig = m.backward(np.ones_like(y), x=x, key_padding_mask=kpm)
    assert ig["x"].shape == x.shape and ig["key_padding_mask"].shape == kpm.shape
    flat = x.reshape(-1, 5, 8)
    if flat.shape[0]:
        np.testing.assert_allclose(y.reshape(-1, 5, 8)[-1], m.forward(x=flat[-1]), rtol=1e-12)
    c = nn.CrossAttention.create(8, 4, r, memory_dim=6)
    mem = r.standard_normal(batch + (7, 6))
    assert c.forward(x=x, memory=mem).shape == x.shape
    _, ig = c.backward(np.ones_like(y), x=x, memory=mem)
    assert ig["memory"].shape == mem.shape


def test_float32_parameters_and_keys():
    r = rng(4)
    m = nn.SelfAttention.create(6, 3, r, dtype=np.float32, bias=False)
    assert set(flatten(m.parameters)) == {"c_attn/weight", "c_proj/weight"}
    x = r.standard_normal((2, 4, 6)).astype(np.float32)
    y = m.forward(x=x)
    pg, ig = m.backward(np.ones_like(y), x=x)
    assert y.dtype == np.float32 and ig["x"].dtype == np.float32
    assert all(g.dtype == np.float32 for g in flatten(pg).values())
    c = nn.CrossAttention.create(6, 3, r)
    assert set(c.parameters) == {"q_attn", "c_attn", "c_proj"}
    m2 = m.with_parameters(m.parameters)
    assert m2 is not m and np.array_equal(m2.forward(x=x), y)
    with pytest.raises(ValueError):
        nn.SelfAttention.create(6, 4, r)
    with pytest.raises(ValueError):
        nn.CrossAttention.create(6, 4, r)
    with pytest.raises(ValueError):
        m.with_parameters({"c_attn": m.parameters["c_attn"]})
    with pytest.raises(ValueError, match="x"):
        m.forward(x=np.ones((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="key_padding_mask"):
        m.forward(x=x, key_padding_mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="memory"):
        c.forward(x=x.astype(np.float64), memory=np.ones((3, 4, 6)))


def test_module_dropout_uses_its_seed_and_matches_functional():
    r = rng(5)
    m = nn.SelfAttention.create(8, 2, r, causal=True, dropout=0.5, seed=3)
    x = r.standard_normal((2, 6, 8))
    plain = nn.SelfAttention(m.c_attn, m.c_proj, 2, causal=True)
    y = m.forward(x=x)
    assert not np.allclose(y, plain.forward(x=x))
    assert np.array_equal(y, m.forward(x=x))
    # the same computation by hand through the functional API
    qkv = F.linear(x, m.c_attn.weight, m.c_attn.bias).reshape(2, 6, 3, 2, 4).transpose(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(*qkv, is_causal=True, dropout_p=0.5, seed=3)
    want = F.linear(o.transpose(0, 2, 1, 3).reshape(2, 6, 8), m.c_proj.weight, m.c_proj.bias)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    check_module_grads(m, dict(x=x[:, :3]), ["x"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_kv_cache_decoding_equals_causal_forward(dtype):
    r = rng(6)
    m = nn.SelfAttention.create(16, 4, r, causal=True, dtype=dtype)
    x = r.standard_normal((2, 12, 16)).astype(dtype)
    full = m.forward(x=x)
    cache = m.init_cache(16, batch_shape=(2,))
    assert cache.k.shape == (2, 4, 16, 4) and cache.max_len == 16
    outs = [m.decode(x[:, :5], cache)]            # prompt
    for t in range(5, 12):                         # then token by token
        outs.append(m.decode(x[:, t:t + 1], cache))
    assert cache.pos == 12
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, **tol(dtype))
    cache.reset()
    np.testing.assert_allclose(m.decode(x[:, :3], cache), full[:, :3], **tol(dtype))
    with pytest.raises(ValueError, match="pos"):
        m.decode(np.concatenate([x, x], axis=1), cache)  # 3 + 24 > 16 positions


# ------------------------------------------------------------------ coursework MultiHeadAttention

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(5, 8), (2, 5, 8)])
def test_coursework_mha_fused_equals_per_head(causal, shape):
    r = rng(7)
    m = nn.MultiHeadAttention.create(8, 8, 4, r, causal=causal)
    q, k, v = (r.standard_normal(shape) for _ in range(3))
    G = r.standard_normal(shape)
    assert m._fused()
    y = m.forward(q=q, k=k, v=v)
    pg, ig = m.backward(G, q=q, k=k, v=v)
    py, (ppg, pig) = None, m._backward_per_head(G, q, k, v)
    py = np.concatenate([h.forward(q=q, k=k, v=v) for h in m.heads], -1) @ m.W_out
    np.testing.assert_allclose(y, py, rtol=1e-12, atol=1e-12)
    for key, g in flatten(pg).items():
        np.testing.assert_allclose(g, flatten(ppg)[key], rtol=1e-11, atol=1e-12, err_msg=key)
    for key in "qkv":
        np.testing.assert_allclose(ig[key], pig[key], rtol=1e-11, atol=1e-12)


def test_coursework_mha_with_mixed_heads_falls_back_to_per_head():
    r = rng(8)
    a = nn.ScaledSelfAttention.create(6, 3, r, causal=True)
    b = nn.ScaledSelfAttention.create(6, 2, r, causal=False)
    m = nn.MultiHeadAttention([a, b], r.standard_normal((5, 6)))
    assert not m._fused()
    x = r.standard_normal((4, 6))
    want = np.concatenate([a.forward(q=x, k=x, v=x), b.forward(q=x, k=x, v=x)], -1) @ m.W_out
    np.testing.assert_allclose(m.forward(q=x, k=x, v=x), want, rtol=1e-12)
    pg, ig = m.backward(np.ones((4, 6)), q=x, k=x, v=x)
    assert set(pg) == {"head_0", "head_1", "W_out"} and ig["q"].shape == x.shape


# ------------------------------------------------------------------ deprecated names

def test_deprecated_attention_names_warn_and_match_the_new_layers():
    with pytest.warns(DeprecationWarning, match="SelfAttention"):
        MHSA = nn.MultiHeadSelfAttention
    with pytest.warns(DeprecationWarning, match="CrossAttention"):
        from transformer_c.nn.attention import MultiHeadCrossAttention as MHCA
    with pytest.raises(AttributeError):
        nn.NoSuchLayer
    r = rng(7)
    old = MHSA.create(8, 2, r, causal=True, dropout_p=0.5)
    assert set(flatten(old.parameters)) == {"c_attn/weights", "c_attn/bias", "c_proj/weights",
                                            "c_proj/bias"}
    new = nn.SelfAttention(nn.Dense(old.c_attn.weights, old.c_attn.bias),
                           nn.Dense(old.c_proj.weights, old.c_proj.bias), 2, causal=True)
    x = r.standard_normal((2, 5, 8))
    np.testing.assert_array_equal(old.forward(x=x), new.forward(x=x))   # no seed: no dropout
    dropped = nn.SelfAttention(new.c_attn, new.c_proj, 2, causal=True, dropout=0.5, seed=4)
    np.testing.assert_array_equal(old.forward(x=x, seed=4), dropped.forward(x=x))
    pg, ig = old.backward(np.ones_like(x), x=x, seed=4)
    assert set(ig) == {"x", "seed"} and set(pg) == {"c_attn", "c_proj"}
    assert old.with_parameters(old.parameters).dropout_p == 0.5
    c = MHCA.create(8, 2, r, memory_dim=3)
    assert set(c.parameters) == {"q_proj", "kv_proj", "out_proj"}
    mem = r.standard_normal((2, 4, 3))
    core = nn.CrossAttention(*(nn.Dense(p["weights"], p["bias"]) for p in c.parameters.values()), 2)
    np.testing.assert_array_equal(c.forward(x=x, memory=mem), core.forward(x=x, memory=mem))


@pytest.mark.parametrize("bad", ["sideways", 2, None])
def test_causal_option_vocabulary(bad):
    r = rng(8)
    for causal, mode in ((False, "none"), (True, "top_left"), ("bottom_right", "bottom_right"),
                         ("none", "none")):
        assert nn.attention.causal_mode(causal) == mode
    x = r.standard_normal((1, 4, 8))
    a = nn.SelfAttention.create(8, 2, r, causal=True)
    b = nn.SelfAttention(a.c_attn, a.c_proj, 2, causal="top_left")
    np.testing.assert_array_equal(a.forward(x=x), b.forward(x=x))
    with pytest.raises(ValueError, match="causal"):
        nn.SelfAttention(a.c_attn, a.c_proj, 2, causal=bad)
    with pytest.raises(ValueError, match="causal"):
        nn.ScaledSelfAttention.create(8, 4, r, causal=bad)
