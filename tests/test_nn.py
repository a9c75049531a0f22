"""Coursework modules (transformer_c.nn): NumPy references, finite differences through the
tree interface, PyTorch twins for the composite modules, dtypes and shapes."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import num_grad, rng, to_torch
from transformer_c import nn
from transformer_c.tree import flatten, tree_map, unflatten


# ------------------------------------------------------------------ references (NumPy)

def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_layernorm(x, g, b, eps=1e-5):
    return g * (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) + b


def np_attention(q, k, v, p, causal):
    Q, K, V = q @ p["W_q"], k @ p["W_k"], v @ p["W_v"]
    s = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -1e9), 1)
    return np_softmax(s) @ V


# ------------------------------------------------------------------ gradient check via the protocol

def check_module_grads(module, inputs, int_inputs=(), rtol=1e-6, atol=1e-8, max_entries=40):
    """backward() vs central differences of sum(forward * G) for every parameter leaf and
    float input (an evenly spaced sample of at most max_entries entries per array)."""
    out = module.forward(**inputs)
    G = rng(99).standard_normal(out.shape)
    pgrads, igrads = module.backward(G, **inputs)
    assert set(igrads) == set(inputs)
    params = {k: v.copy() for k, v in flatten(module.parameters).items()}
    flat_grads = flatten(pgrads)
    assert list(flat_grads) == list(params), "param grads must mirror the parameter tree"

    def sampled_num_grad(arr, f):
        want = np.full(arr.shape, np.nan)
        for j in np.linspace(0, arr.size - 1, min(arr.size, max_entries)).astype(int):
            i = np.unravel_index(j, arr.shape)
            old = arr[i]
            arr[i] = old + 1e-6
            fp = f()
            arr[i] = old - 1e-6
            fm = f()
            arr[i] = old
            want[i] = (fp - fm) / 2e-6
        return want

    def loss():
        return float(np.sum(module.with_parameters(unflatten(params, like=module.parameters)).forward(**inputs) * G))

    for name, arr in list(params.items()) + [(k, v) for k, v in inputs.items() if k not in int_inputs]:
        got = flat_grads[name] if name in params else igrads[name]
        want = sampled_num_grad(arr, loss)
        m = ~np.isnan(want)
        np.testing.assert_allclose(np.asarray(got)[m], want[m], rtol=rtol, atol=atol, err_msg=name)
    for name in int_inputs:
        np.testing.assert_array_equal(igrads[name], np.zeros_like(inputs[name]))


# ------------------------------------------------------------------ layers

def test_linear_no_bias_extension():
    W = rng(0).standard_normal((3, 5))
    m = nn.Linear(W, None)
    assert set(m.parameters) == {"weights"}
    x = rng(1).standard_normal((4, 5))
    np.testing.assert_allclose(m.forward(x=x), x @ W.T, rtol=1e-12)
    check_module_grads(m, {"x": x})


def test_create_is_reproducible_and_dtype_aware():
    a = nn.Decoder.create(input_size=7, hidden_size=8, output_size=4, random_generator=rng(5), num_heads=2)
    b = nn.Decoder.create(input_size=7, hidden_size=8, output_size=4, random_generator=rng(5), num_heads=2)
    assert tc.tree.are_equal(a.parameters, b.parameters)
    f = nn.Linear.create(4, 3, rng(0), dtype=np.float32)
    assert f.weights.dtype == np.float32 and f.forward(x=np.ones((2, 4), np.float32)).dtype == np.float32


def test_with_parameters_leaves_the_original_alone():
    m = nn.FeedForward.create(3, 5, 3, rng(1))
    before = tree_map(np.copy, m.parameters)
    m2 = m.with_parameters(tree_map(lambda a: a * 0, m.parameters))
    assert tc.tree.are_equal(m.parameters, before)
    np.testing.assert_array_equal(m2.forward(x=np.ones((2, 3))), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="layer1"):
        m.with_parameters({"layer2": m.parameters["layer2"]})


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_feedforward_activations(activation):
    m = nn.FeedForward.create(4, 7, 3, rng(2), activation=activation)
    x = rng(3).standard_normal((2, 5, 4))
    check_module_grads(m, {"x": x})


def test_gelu_and_softmax_modules(torch):
    x = rng(4).standard_normal((3, 6))
    for approx in ("none", "tanh"):
        want = torch.nn.functional.gelu(torch.from_numpy(x), approximate=approx).numpy()
        np.testing.assert_allclose(nn.GELU(approx).forward(x=x), want, rtol=1e-12, atol=1e-14)
        check_module_grads(nn.GELU(approx), {"x": x})
    s = nn.Softmax(axis=0)
    np.testing.assert_allclose(s.forward(x=x), np_softmax(x.T).T, rtol=1e-12)
    check_module_grads(s, {"x": x})


def test_embedding_module_any_int_dtype():
    W = rng(5).standard_normal((6, 3))
    m = nn.Embedding(W)
    for dt in (np.int8, np.uint16, np.int32, np.int64):
        ids = np.array([[0, 5], [5, 2]], dtype=dt)
        np.testing.assert_array_equal(m.forward(x=ids), W[ids.astype(np.int64)])
        pg, ig = m.backward(np.ones((2, 2, 3)), x=ids)
        assert ig["x"].dtype == dt
        np.testing.assert_array_equal(pg["weight"][5], [2.0, 2.0, 2.0])
    with pytest.raises(IndexError):
        m.forward(x=np.array([-1]))
    with pytest.raises(TypeError):
        m.forward(x=np.array([1.0]))


def test_positional_encoding_batched_and_too_long():
    m = nn.PositionalEncoding(seq_len=8, d_model=6)
    x = rng(6).standard_normal((2, 5, 6))
    n = np.arange(5)[:, None]
    div = 10000.0 ** (np.arange(0, 6, 2) / 6)
    pe = np.zeros((5, 6))
    pe[:, 0::2], pe[:, 1::2] = np.sin(n / div), np.cos(n / div)
    np.testing.assert_allclose(m.forward(x=x), x + pe, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="seq_len"):
        m.forward(x=np.zeros((9, 6)))
    with pytest.raises(ValueError, match="d_model"):
        m.forward(x=np.zeros((3, 5)))


# ------------------------------------------------------------------ attention

@pytest.mark.parametrize("causal", [False, True])
def test_attention_cross_lengths_and_batches(causal):
    r = rng(7)
    m = nn.ScaledSelfAttention(r.standard_normal((5, 3)), r.standard_normal((5, 3)),
                               r.standard_normal((5, 4)), causal=causal)
    q, k, v = r.standard_normal((2, 3, 5)), r.standard_normal((2, 6, 5)), r.standard_normal((2, 6, 5))
    np.testing.assert_allclose(m.forward(q=q, k=k, v=v), np_attention(q, k, v, m.parameters, causal),
                               rtol=1e-10, atol=1e-12)
    check_module_grads(m, {"q": q, "k": k, "v": v})


def test_attention_single_token():
    m = nn.ScaledSelfAttention.create(4, 3, rng(8), causal=True)
    x = rng(9).standard_normal((1, 4))
    np.testing.assert_allclose(m.forward(q=x, k=x, v=x), x @ m.W_v, rtol=1e-12)
    check_module_grads(m, {"q": x, "k": x.copy(), "v": x.copy()})


def test_attention_float32_keeps_dtype():
    m = nn.MultiHeadAttention.create(6, 6, 3, rng(10), causal=True, dtype=np.float32)
    x = rng(11).standard_normal((4, 6)).astype(np.float32)
    y = m.forward(q=x, k=x, v=x)
    assert y.dtype == np.float32
    p64 = tree_map(lambda a: a.astype(np.float64), m.parameters)
    y64 = m.with_parameters(p64).forward(q=x.astype(np.float64), k=x.astype(np.float64), v=x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-5)
    pg, ig = m.backward(np.ones_like(y), q=x, k=x, v=x)
    assert all(a.dtype == np.float32 for a in flatten(pg).values())
    assert all(a.dtype == np.float32 for a in ig.values())


# ------------------------------------------------------------------ decoder vs a PyTorch twin

def torch_decoder(torch, p, ids, causal=True, pre_norm=False, num_heads=2):
    F = torch.nn.functional
    t = {k: to_torch(torch, v) for k, v in flatten(p).items()}
    D = t["token/weight"].shape[1]
    T = ids.shape[-1]
    n = torch.arange(T, dtype=torch.float64)[:, None]
    k2 = torch.arange(0, D, 2, dtype=torch.float64)
    pe = torch.zeros(T, D, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(n / 10000.0 ** (k2 / D))
    pe[:, 1::2] = torch.cos(n / 10000.0 ** (k2 / D))[:, : D // 2]
    h = t["token/weight"][torch.from_numpy(ids)] + pe.to(t["token/weight"].dtype)

    def mha(x, pre):
        heads = []
        for i in range(num_heads):
            Q, K, V = (x @ t[f"{pre}/MHA/head_{i}/W_{c}"] for c in "qkv")
            heads.append(F.scaled_dot_product_attention(Q, K, V, is_causal=causal))
        return torch.cat(heads, -1) @ t[f"{pre}/MHA/W_out"]

    def ln(x, pre):
        return F.layer_norm(x, (D,), t[f"{pre}/weights"], t[f"{pre}/bias"], eps=1e-5)

    def ffn(x, pre):
        a = F.relu(F.linear(x, t[f"{pre}/FFN/layer1/weights"], t[f"{pre}/FFN/layer1/bias"]))
        return F.linear(a, t[f"{pre}/FFN/layer2/weights"], t[f"{pre}/FFN/layer2/bias"])

    i = 0
    while f"layer_{i}/Norm1/weights" in t:
        pre = f"layer_{i}"
        if pre_norm:
            h = h + mha(ln(h, pre + "/Norm1"), pre)
            h = h + ffn(ln(h, pre + "/Norm2"), pre)
        else:
            h = ln(h + mha(h, pre), pre + "/Norm1")
            h = ln(h + ffn(h, pre), pre + "/Norm2")
        i += 1
    return F.linear(h, t["lm_head/weights"], t["lm_head/bias"]), t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (1,)])
def test_decoder_matches_torch_twin(torch, dtype, pre_norm, shape):
    V, D = 13, 8
    m = nn.Decoder.create(input_size=V, hidden_size=12, output_size=D, random_generator=rng(12),
                          num_heads=2, seq_len=16, norm="pre" if pre_norm else "post", dtype=dtype)
    ids = rng(13).integers(0, V, size=shape)
    logits, t = torch_decoder(torch, m.parameters, ids, pre_norm=pre_norm)
    G = rng(14).standard_normal(logits.shape).astype(dtype)
    (logits * torch.from_numpy(G)).sum().backward()
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    out = m.forward(x=ids)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, logits.detach().numpy(), **tol)
    pg, ig = m.backward(G, x=ids)
    for name, g in flatten(pg).items():
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t[name].grad.numpy(), err_msg=name, **tol)
    np.testing.assert_array_equal(ig["x"], np.zeros_like(ids))


def test_decoder_finite_differences_pre_norm():
    m = nn.Decoder.create(input_size=9, hidden_size=8, output_size=4, random_generator=rng(15),
                          num_heads=2, seq_len=8, norm="pre")
    check_module_grads(m, {"x": np.array([[1, 2, 3], [4, 0, 8]])}, int_inputs=("x",),
                       rtol=1e-5, atol=1e-7, max_entries=8)


def test_decoder_rejects_bad_ids():
    m = nn.Decoder.create(input_size=5, hidden_size=8, output_size=4, random_generator=rng(16), num_heads=2)
    with pytest.raises(IndexError):
        m.forward(x=np.array([0, 5]))
    with pytest.raises(TypeError):
        m.forward(x=np.array([0.0, 1.0]))


# ------------------------------------------------------------------ losses and optimizers

def test_cross_entropy_loss_module(torch):
    r = rng(17)
    logits = r.standard_normal((6, 5))
    t = np.array([0, 4, 2, -100, 1, 3])
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    tl = to_torch(torch, logits)
    loss = torch.nn.functional.cross_entropy(tl, torch.from_numpy(t), label_smoothing=0.1)
    loss.backward()
    assert abs(ce.forward(logits, t) - loss.item()) < 1e-12
    np.testing.assert_allclose(ce.backward(logits, t), tl.grad.numpy(), rtol=1e-10, atol=1e-14)
    f32 = logits.astype(np.float32)
    assert abs(ce.forward(f32, np.eye(5)[[0, 4, 2, 2, 1, 3]]) - ce.forward(f32, np.array([0, 4, 2, 2, 1, 3]))) < 1e-6


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizers_match_torch_on_a_tree(torch, name):
    r = rng(18)
    params = {"a": r.standard_normal((3, 4)), "b": {"c": r.standard_normal(5)}}
    grads_seq = [tree_map(lambda p: r.standard_normal(p.shape), params) for _ in range(4)]
    kw = {"SGD": dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
          "Adam": dict(learning_rate=0.01, weight_decay=0.1), "AdamW": dict(learning_rate=0.01, weight_decay=0.1)}[name]
    opt = getattr(tc.optim, name)(**kw)
    tparams = [to_torch(torch, p) for p in flatten(params).values()]
    tkw = {"SGD": dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
           "Adam": dict(lr=0.01, weight_decay=0.1), "AdamW": dict(lr=0.01, weight_decay=0.1)}[name]
    topt = getattr(torch.optim, name)(tparams, **tkw)
    p = params
    for grads in grads_seq:
        before = tree_map(np.copy, p)
        p_new, opt = opt.step(p, grads)
        assert tc.tree.are_equal(p, before), "step must not modify its inputs"
        p = p_new
        for tp, g in zip(tparams, flatten(grads).values()):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    for got, tp in zip(flatten(p).values(), tparams):
        np.testing.assert_allclose(got, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_training_reduces_loss():
    from transformer_c.demo import run
    history = run(steps=60, length=3, vocab=6, width=16, batch=16, lr=1e-2, out=lambda *_: None)
    first = np.mean([loss for _, loss in history[:5]])
    last = np.mean([loss for _, loss in history[-5:]])
    assert last < 0.7 * first, (first, last)
