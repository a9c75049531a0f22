"""GPT: a PyTorch twin written here (same weights) for logits, loss and every gradient in
every configuration; finite differences; the C fast path against the module path; Hugging
Face GPT-2 checkpoints; init, checkpoints, dropout, the flat buffers, gradient flow,
overfitting a batch of Tiny Shakespeare, and bad input."""
import json
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import DATA_DIR, num_grad
from test_attention_sparse import np_pattern
from transformer_c.nn import GPT, GPTConfig
from transformer_c.nn.blocks import site_seed
from transformer_c.tree import flatten

F = tc.functional

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
VARIANTS = {
    "gpt2": {},
    "post": dict(norm="post"),
    "sinusoidal": dict(position="sinusoidal"),
    "rope": dict(position="rope"),
    "rope_interleaved_post": dict(position="rope", rope_interleaved=True, norm="post"),
    "nobias_untied_relu": dict(bias=False, tie_embeddings=False, activation="relu"),
    "gelu_dropout": dict(activation="gelu", dropout=0.3),
    "silu_rope_post": dict(activation="silu", position="rope", norm="post"),
    "relu2_rope": dict(activation="relu2", position="rope"),
    "mqa_rope": dict(n_kv_head=1, position="rope"),  # multi-query (TINY has 2 heads)
    "mqa_post_dropout": dict(n_kv_head=1, norm="post", dropout=0.2),
    "swiglu_ninner": dict(gated=True, activation="silu", n_inner=12),
    "geglu_post_dropout_nobias_mqa": dict(gated=True, activation="gelu", norm="post",
                                          dropout=0.2, bias=False, n_kv_head=1),
    "sinusoidal_post_dropout_ninner": dict(position="sinusoidal", norm="post", dropout=0.2,
                                           n_inner=12),
    "block_sparse": dict(attention="block_sparse", sparse_block=2, sparse_window=1,
                         sparse_stride=2, sparse_global=0),
    "block_sparse_rope_dropout_global": dict(attention="block_sparse", sparse_block=1,
                                             sparse_window=2, sparse_stride=3, sparse_global=1,
                                             position="rope", dropout=0.2),
    "nopos": dict(position="none"),
    "nopos_post_relu_dropout": dict(position="none", norm="post", activation="relu",
                                    dropout=0.2),
    # modern blocks (issue 17): RMSNorm, QK-norm, logit soft-capping
    "rmsnorm": dict(norm_type="rmsnorm"),
    "rmsnorm_post_nobias_qknorm_rope": dict(norm_type="rmsnorm", norm="post", bias=False,
                                            qk_norm=True, position="rope"),
    "qknorm_softcap_dropout_untied": dict(qk_norm=True, logit_softcap=1.5, dropout=0.2,
                                          tie_embeddings=False),
    "rmsnorm_qknorm_softcap_rope_sparse": dict(norm_type="rmsnorm", qk_norm=True,
                                               logit_softcap=3.0, position="rope",
                                               attention="block_sparse", sparse_block=2,
                                               sparse_window=1),
    "qknorm_mqa_rope_dropout": dict(qk_norm=True, n_kv_head=1, position="rope", dropout=0.2),
}
TOL = {np.float64: 1e-9, np.float32: 1e-4}


def close(got, want, tol, what=""):
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * scale,
                               err_msg=what)


# ------------------------------------------------------------------ the PyTorch twin

def torch_gpt(torch, cfg, P, idx, *, seed=0, training=False, head_mask=None, auxes=None):
    """Logits of the GPT defined by cfg with parameters P (a tree of torch tensors), written
    from torch primitives; dropout masks come from the seeded dropout kernel (tested on its
    own) at the same sites and seeds as the model: embeddings (site 0), attention
    probabilities (1 + 3l, a (B, NH, T, T) mask), attention and MLP branches (2 + 3l, 3 + 3l).
    head_mask: None or (n_layer, n_head): each head's output (B, T, HS) times its entry.

    With cfg.ffn == "moe" the MLPs are tests/test_moe.py's MoE twin, whose load-balancing
    losses are appended to ``auxes`` (a list) when given."""
    TF = torch.nn.functional
    B, T = idx.shape
    C, NH = cfg.n_embd, cfg.n_head
    HS = C // NH
    dt = P["wte"]["weight"].dtype
    ids = torch.from_numpy(np.asarray(idx, np.int64))

    def drop(x, site):
        if not training or cfg.dropout == 0:
            return x
        m = F.dropout_mask(tuple(x.shape), cfg.dropout, seed=site_seed(seed, site),
                           dtype=np.float32 if dt == torch.float32 else np.float64)
        return x * torch.from_numpy(m)

    def ln(x, p, width=C):
        if cfg.norm_type == "rmsnorm" or width != C:  # width HS: QK-norm, always RMS
            y = TF.rms_norm(x, (width,), p["weight"], cfg.layer_norm_epsilon)
            return y + p["bias"] if "bias" in p else y
        return TF.layer_norm(x, (C,), p["weight"], p.get("bias"), cfg.layer_norm_epsilon)

    def lin(x, p):
        return TF.linear(x, p["weight"], p.get("bias"))

    def rope(x):
        inv = cfg.position_base ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
        c, s = torch.cos(ang).to(dt), torch.sin(ang).to(dt)
        if cfg.rope_interleaved:
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack((a * c - b * s, a * s + b * c), -1).flatten(-2)
        a, b = x[..., :HS // 2], x[..., HS // 2:]
        return torch.cat((a * c - b * s, a * s + b * c), -1)

    def attn(x, p):
        NKV = cfg.kv_heads  # grouped-query attention: k, v repeated to the query heads
        q, k, v = lin(x, p["c_attn"]).split([C, NKV * HS, NKV * HS], dim=-1)
        q = q.view(B, T, NH, HS).transpose(1, 2)
        k, v = (t.view(B, T, NKV, HS).transpose(1, 2) for t in (k, v))
        if cfg.qk_norm:
            q, k = ln(q, p["q_norm"], HS), ln(k, p["k_norm"], HS)
        k, v = (t.repeat_interleave(NH // NKV, 1) for t in (k, v))
        if cfg.position == "rope":
            q, k = rope(q), rope(k)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        if cfg.attention == "block_sparse":  # the documented rule, rebuilt in NumPy
            keep = np_pattern(T, T, cfg.sparse_block, cfg.sparse_window, cfg.sparse_stride,
                              cfg.sparse_global)
            s = s.masked_fill(torch.from_numpy(~keep), float("-inf"))
        y = drop(torch.softmax(s, -1), p["site"]) @ v
        if head_mask is not None:
            y = y * torch.tensor(np.asarray(head_mask[p["layer"]], np.float64),
                                 dtype=dt)[None, :, None, None]
        return lin(y.transpose(1, 2).reshape(B, T, C), p["c_proj"])

    def mlp(x, p):
        if cfg.ffn == "moe":
            from test_moe import torch_moe

            y, aux, _ = torch_moe(torch, x.reshape(-1, C), p["router"], p["w1"], p.get("b1"),
                                  p["w2"], p.get("b2"), cfg.moe_top_k, cfg.moe_capacity,
                                  cfg.activation)
            if auxes is not None:
                auxes.append(aux)
            return y.reshape(x.shape)
        act = {"relu": torch.relu, "silu": TF.silu, "gelu": TF.gelu,
               "relu2": lambda t: torch.relu(t) ** 2,
               "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh")}[cfg.activation]
        if cfg.gated:  # SwiGLU / GeGLU: c_proj(act(c_gate x) * c_fc x)
            return lin(act(lin(x, p["c_gate"])) * lin(x, p["c_fc"]), p["c_proj"])
        return lin(act(lin(x, p["c_fc"])), p["c_proj"])

    x = P["wte"]["weight"][ids]
    if cfg.position == "learned":
        x = x + P["wpe"]["weight"][:T]
    elif cfg.position == "sinusoidal":
        pos = torch.arange(T, dtype=torch.float64)[:, None]
        k2 = torch.arange(C, dtype=torch.float64) // 2 * 2
        ang = pos / cfg.position_base ** (k2 / C)
        x = x + torch.where(torch.arange(C) % 2 == 0, torch.sin(ang), torch.cos(ang)).to(dt)
    x = drop(x, 0)
    for layer, h in enumerate(P["h"]):
        if cfg.norm == "pre":
            x = x + drop(attn(ln(x, h["ln_1"]), {**h["attn"], "site": 1 + 3 * layer,
                                                 "layer": layer}),
                         2 + 3 * layer)
            x = x + drop(mlp(ln(x, h["ln_2"]), h["mlp"]), 3 + 3 * layer)
        else:
            x = ln(x + drop(attn(x, {**h["attn"], "site": 1 + 3 * layer, "layer": layer}),
                            2 + 3 * layer),
                   h["ln_1"])
            x = ln(x + drop(mlp(x, h["mlp"]), 3 + 3 * layer), h["ln_2"])
    if cfg.norm == "pre":
        x = ln(x, P["ln_f"])
    W = P["wte"]["weight"] if cfg.tie_embeddings else P["lm_head"]["weight"]
    if cfg.logit_softcap:
        return cfg.logit_softcap * torch.tanh((x @ W.T) / cfg.logit_softcap)
    return x @ W.T


def make_model(cfg, dtype=np.float64, seed=0, noise=0.1, **kw):
    """A GPT whose every parameter (LayerNorms and biases too) is random."""
    r = np.random.default_rng(seed)
    m = GPT.create(cfg, r, dtype=dtype, **kw)
    flat = m.flat_parameters
    flat += r.normal(0, noise, flat.shape).astype(dtype)
    return m


def batch(cfg, B, T, seed=1, ignore=True):
    r = np.random.default_rng(seed)
    idx = r.integers(0, cfg.vocab_size, (B, T))
    tgt = r.integers(0, cfg.vocab_size, (B, T))
    if ignore:
        tgt[0, min(1, T - 1)] = -100
    return idx, tgt


def torch_reference(torch, model, idx, tgt, *, seed=0, training=False, head_mask=None):
    P = tc.tree.tree_map(lambda a: torch.from_numpy(a.copy()).requires_grad_(True), model.parameters)
    logits = torch_gpt(torch, model.config, P, idx, seed=seed, training=training,
                       head_mask=head_mask)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, model.config.vocab_size),
                                             torch.from_numpy(np.asarray(tgt, np.int64).reshape(-1)))
    loss.backward()
    return logits.detach().numpy(), loss.item(), tc.tree.tree_map(lambda t: t.grad.numpy(), P)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_twin_parity(torch, variant, dtype):
    cfg = GPTConfig(**TINY, **VARIANTS[variant])
    model = make_model(cfg, dtype, seed=3)
    model.seed = 11
    idx, tgt = batch(cfg, 3, 7)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt, seed=11,
                                                         training=True)
    tol = TOL[dtype]
    for fast in (True, False):
        logits = model.forward(idx, fast=fast)
        assert logits.dtype == dtype and logits.shape == (3, 7, cfg.vocab_size)
        close(logits, want_logits, tol, f"logits fast={fast}")
        loss, grads = model.loss_and_grads(idx, tgt, fast=fast)
        close(loss, want_loss, tol, f"loss fast={fast}")
        got, want = flatten(grads), flatten(want_grads)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == dtype
            close(got[name], want[name], tol, f"d{name} fast={fast}")


@pytest.mark.parametrize("B,T", [(1, 1), (3, 1), (1, 5), (2, 3)])
@pytest.mark.parametrize("position", ["learned", "rope", "none"])
def test_torch_twin_parity_awkward_shapes(torch, B, T, position):
    """Widths that are not multiples of the SIMD width, three heads, T = 1, B = 1."""
    cfg = GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=3, n_embd=12, n_inner=20,
                    position=position)
    model = make_model(cfg, np.float64, seed=8)
    idx, tgt = batch(cfg, B, T, ignore=False)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt)
    loss, grads = model.loss_and_grads(idx, tgt)
    close(model.forward(idx), want_logits, 1e-9)
    close(loss, want_loss, 1e-9)
    for name, g in flatten(want_grads).items():
        close(flatten(grads)[name], g, 1e-9, name)


def test_torch_twin_parity_default_size(torch):
    """A less tiny model (more heads, T = block_size, several batches) in float32."""
    cfg = GPTConfig(vocab_size=65, block_size=32, n_layer=3, n_head=4, n_embd=32)
    model = make_model(cfg, np.float32, seed=4, noise=0.02)
    idx, tgt = batch(cfg, 4, 32)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt)
    loss, grads = model.loss_and_grads(idx, tgt)
    close(model.forward(idx), want_logits, 1e-4)
    close(loss, want_loss, 1e-4)
    for name, g in flatten(want_grads).items():
        close(flatten(grads)[name], g, 1e-4, name)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("variant", ["gpt2", "post", "rope", "sinusoidal_post_dropout_ninner",
                                     "nobias_untied_relu", "nopos", "relu2_rope",
                                     "qknorm_mqa_rope_dropout"])
def test_finite_differences(variant):
    cfg = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4,
                    **{**VARIANTS[variant], **({"n_inner": 6} if "n_inner" in
                                                VARIANTS[variant] else {})})
    model = make_model(cfg, np.float64, seed=5, noise=0.3)
    model.seed = 2
    idx, tgt = batch(cfg, 2, 3, seed=6)
    _, grads = model.loss_and_grads(idx, tgt)
    got = model.flat_grads.copy()
    flat = model.flat_parameters
    want = num_grad(lambda: model.loss(idx, tgt), flat, eps=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ fast path vs module path

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_and_grads_equals_forward_backward(variant):
    cfg = GPTConfig(**TINY, **VARIANTS[variant])
    model = make_model(cfg, np.float64, seed=7)
    model.seed = 5
    idx, tgt = batch(cfg, 2, 8)
    loss, grads = model.loss_and_grads(idx, tgt)
    grads = {k: v.copy() for k, v in flatten(grads).items()}
    # the tree protocol: forward, the loss gradient, backward
    logits = model.forward(idx, fast=False)
    dlogits = F.cross_entropy_backward(logits, tgt)
    pgrads, igrads = model.backward(dlogits, idx=idx)
    assert set(igrads) == {"idx"} and np.array_equal(igrads["idx"], np.zeros_like(idx))
    close(loss, F.cross_entropy(logits, tgt), 1e-12)
    for name, g in flatten(pgrads).items():
        close(grads[name], g, 1e-12, name)
    # float32: the same kernels in the same order, so rounding-level agreement
    m32 = GPT(cfg, tc.tree.tree_map(lambda a: a.astype(np.float32), model.parameters), seed=5)
    l32, g32 = m32.loss_and_grads(idx, tgt)
    g32 = {k: v.copy() for k, v in flatten(g32).items()}
    l32m, g32m = m32.loss_and_grads(idx, tgt, fast=False)
    close(l32, l32m, 1e-6)
    for name, g in flatten(g32m).items():
        close(g32[name], g, 1e-5, name)


def test_fast_path_is_deterministic_and_arena_is_reused(threads):
    threads(1)  # one pass: the model's own arena (the split's: test_data_parallel.py)
    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    idx, tgt = batch(cfg, 4, 8)
    l1, _ = model.loss_and_grads(idx, tgt)
    g1 = model.flat_grads.copy()
    size = tc._C.gpt_arena_size(model._context())
    assert size == model.activation_bytes(4, 8)
    l2, _ = model.loss_and_grads(idx, tgt)
    assert l1 == l2 and np.array_equal(g1, model.flat_grads)
    model.loss_and_grads(idx[:2, :5], tgt[:2, :5])      # smaller: the same arena
    assert tc._C.gpt_arena_size(model._context()) == size
    model.loss_and_grads(np.tile(idx, (2, 1)), np.tile(tgt, (2, 1)))  # larger: grows once
    assert tc._C.gpt_arena_size(model._context()) == model.activation_bytes(8, 8)


def test_unbatched_input_and_ignore_index():
    cfg = GPTConfig(**TINY)
    model = make_model(cfg)
    idx, tgt = batch(cfg, 1, 6, ignore=False)
    logits = model.forward(idx[0])
    assert logits.shape == (6, cfg.vocab_size)
    np.testing.assert_array_equal(logits, model.forward(idx)[0])
    l1, g1 = model.loss_and_grads(idx[0], tgt[0])
    g1 = model.flat_grads.copy()
    l2, _ = model.loss_and_grads(idx, tgt)
    assert l1 == l2 and np.array_equal(g1, model.flat_grads)
    # a custom ignore_index, and every row ignored -> nan loss, zero gradients
    t = tgt.copy()
    t[0, :3] = 7
    la, _ = model.loss_and_grads(idx, t, ignore_index=7)
    logits = model.forward(idx)
    close(la, F.cross_entropy(logits[0, 3:], t[0, 3:]), 1e-12)
    ln, _ = model.loss_and_grads(idx, np.full_like(tgt, -100))
    assert math.isnan(ln) and not model.flat_grads.any()


# ------------------------------------------------------------------ Hugging Face GPT-2

def test_from_huggingface_gpt2(torch, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                     n_positions=32)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():  # biases and LayerNorms are 0 / 1 at init: make them random too
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    model = GPT.from_huggingface(tmp_path)
    assert model.dtype == np.float32 and not model.training
    assert model.config.n_layer == 2 and model.config.block_size == 32
    idx = np.random.default_rng(0).integers(0, 100, (3, 20))
    ids = torch.from_numpy(idx)
    out = hf(ids, labels=ids)
    out.loss.backward()
    np.testing.assert_allclose(model.forward(idx), out.logits.detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    # HF shifts the labels inside: position t predicts idx[t + 1]
    tgt = np.concatenate([idx[:, 1:], np.full((3, 1), -100)], axis=1)
    loss, grads = model.loss_and_grads(idx, tgt)
    assert abs(loss - out.loss.item()) < 1e-5
    hf_grads = {n[len("transformer."):] if n.startswith("transformer.") else n: p.grad.numpy()
                for n, p in hf.named_parameters()}
    for name, g in model.state_dict().items():
        del g
        want = hf_grads[name]
        if name.split(".")[-2] in ("c_attn", "c_proj", "c_fc") and want.ndim == 2:
            want = want.T
        close(flatten(grads)[name.replace(".", "/")], want, 1e-4, name)


def test_from_huggingface_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        GPT.from_huggingface(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type"):
        GPT.from_huggingface(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "vocab_size": 10, "n_layer": 1, "n_head": 1, "n_embd": 4,
         "n_positions": 4, "scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        GPT.from_huggingface(tmp_path)


# ------------------------------------------------------------------ init and tree interface

def test_gpt2_init_statistics_and_seeding():
    cfg = GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=64)
    model = GPT.create(cfg, np.random.default_rng(0))
    p = model.parameters
    assert model.dtype == np.float32
    assert abs(p["wte"]["weight"].std() - 0.02) < 0.001
    assert abs(p["h"][0]["attn"]["c_attn"]["weight"].std() - 0.02) < 0.001
    for key in ("attn", "mlp"):
        w = p["h"][2][key]["c_proj"]["weight"]
        assert abs(w.std() - 0.02 / math.sqrt(8)) < 0.0005
    assert not p["h"][1]["mlp"]["c_fc"]["bias"].any()
    assert (p["h"][3]["ln_2"]["weight"] == 1).all() and not p["ln_f"]["bias"].any()
    same = GPT.create(cfg, np.random.default_rng(0))
    other = GPT.create(cfg, np.random.default_rng(1))
    assert np.array_equal(model.flat_parameters, same.flat_parameters)
    assert not np.array_equal(model.flat_parameters, other.flat_parameters)


def test_parameter_tree_layout():
    cfg = GPTConfig(**TINY)
    model = GPT.create(cfg, np.random.default_rng(0))
    p = model.parameters
    assert list(p) == ["wte", "wpe", "h", "ln_f"] and len(p["h"]) == 2
    assert list(p["h"][0]) == ["ln_1", "attn", "ln_2", "mlp"]
    assert p["h"][1]["attn"]["c_attn"]["weight"].shape == (24, 8)
    assert p["h"][1]["mlp"]["c_proj"]["weight"].shape == (8, 32)
    assert list(model.state_dict())[:4] == ["wte.weight", "wpe.weight", "h.0.ln_1.weight",
                                            "h.0.ln_1.bias"]
    n = sum(a.size for a in flatten(p).values())
    assert model.num_parameters == n == model.flat_parameters.size
    # the tree is views of the flat buffer
    model.flat_parameters[:] = 0.5
    assert (p["h"][1]["ln_2"]["bias"] == 0.5).all()
    post = GPT.create(GPTConfig(**TINY, norm="post", position="rope", bias=False,
                                tie_embeddings=False), np.random.default_rng(0))
    assert list(post.parameters) == ["wte", "h", "lm_head"]
    assert list(post.parameters["h"][0]["attn"]["c_proj"]) == ["weight"]


def test_with_parameters_copies_and_keeps_self():
    cfg = GPTConfig(**TINY)
    a = make_model(cfg)
    tree = tc.tree.tree_map(lambda x: x * 2, a.parameters)
    b = a.with_parameters(tree)
    assert np.array_equal(b.flat_parameters, a.flat_parameters * 2)
    tree["wte"]["weight"][0, 0] = 123.0
    assert b.parameters["wte"]["weight"][0, 0] != 123.0
    with pytest.raises(ValueError, match="missing"):
        a.with_parameters({"wte": a.parameters["wte"]})
    bad = tc.tree.tree_map(lambda x: x, a.parameters)
    bad["h"][0]["ln_1"]["weight"] = np.ones(3)
    with pytest.raises(ValueError, match="h.0.ln_1.weight"):
        a.with_parameters(bad)
    bad["h"][0]["ln_1"]["weight"] = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        a.with_parameters(bad)


def test_copy_and_pickle_keep_views_and_rebuild_the_context():
    import copy
    import pickle

    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    idx, tgt = batch(cfg, 2, 6)
    loss = model.loss_and_grads(idx, tgt)[0]
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other.flat_parameters is not model.flat_parameters
        other.flat_parameters[:] *= 1  # still views: the tree follows the flat buffer
        other.flat_parameters[0] = 7.0
        assert other.parameters["wte"]["weight"][0, 0] == 7.0
        other.flat_parameters[0] = model.flat_parameters[0]
        assert other.loss_and_grads(idx, tgt)[0] == loss
        assert model.parameters["wte"]["weight"][0, 0] != 7.0


def test_one_adamw_call_updates_the_whole_model():
    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    idx, tgt = batch(cfg, 2, 8)
    before = tc.tree.tree_map(np.copy, model.parameters)
    m, v = np.zeros_like(model.flat_parameters), np.zeros_like(model.flat_parameters)
    loss0, grads = model.loss_and_grads(idx, tgt)
    F.adamw_update_(model.flat_parameters, model.flat_grads, m, v, step=1, lr=1e-2)
    for name, old in flatten(before).items():
        assert not np.array_equal(flatten(model.parameters)[name], old), name
    assert model.loss_and_grads(idx, tgt)[0] < loss0


# ------------------------------------------------------------------ dropout

def test_dropout_modes_and_seeds():
    cfg = GPTConfig(**TINY, dropout=0.5)
    model = make_model(cfg)
    idx, tgt = batch(cfg, 2, 8)
    a = model.forward(idx)
    assert np.array_equal(a, model.forward(idx))               # same seed, same masks
    model.seed = 1
    b = model.forward(idx)
    assert not np.allclose(a, b)
    la = model.loss_and_grads(idx, tgt, seed=0)[0]
    assert la == model.loss_and_grads(idx, tgt, seed=0)[0] != model.loss_and_grads(idx, tgt)[0]
    model.eval()
    e = model.forward(idx)
    model.train()
    model.seed = 2
    assert not np.allclose(e, model.forward(idx))
    no_drop = GPT(GPTConfig(**TINY), model.parameters)
    assert np.array_equal(e, no_drop.forward(idx))
    with pytest.raises(ValueError, match="seed"):
        model.loss_and_grads(idx, tgt, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        model.loss_and_grads(idx, tgt, seed=1.5)


@pytest.mark.parametrize("variant", ["gelu_dropout", "sinusoidal_post_dropout_ninner"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_offset_halves_sum_to_the_whole_batch(threads, variant, dtype):
    """Rows [0, 2) with row_offset 0 and rows [2, 4) with row_offset 2, weighted by their
    counted targets and summed, are one call over the 4 rows (dropout on), to rounding; with
    the halves' masks drawn at row 0 instead, they are not."""
    threads(1)
    cfg = GPTConfig(**TINY, **VARIANTS[variant])
    model = make_model(cfg, dtype, seed=0)
    idx, tgt = batch(cfg, 4, 8)  # one ignored target in row 0: the halves count 15 and 16
    whole = model.loss_and_grads(idx, tgt, seed=7)[0]
    g_whole = model.flat_grads.copy()
    n = [(tgt[:2] != -100).sum(), (tgt[2:] != -100).sum()]
    parts, grads = [], []
    for h, off in ((slice(0, 2), 0), (slice(2, 4), 2)):
        parts.append(model.loss_and_grads(idx[h], tgt[h], seed=7, row_offset=off)[0])
        grads.append(model.flat_grads.copy())
    w = np.array(n, dtype=np.float64) / sum(n)
    tol = TOL[dtype]
    assert w @ parts == pytest.approx(whole, rel=tol, abs=tol)
    g = (w[0] * grads[0] + w[1] * grads[1]).astype(dtype)
    close(g, g_whole, tol * 10, "weighted halves' gradients")
    # the second half at row 0 draws the first half's masks: another batch
    wrong = model.loss_and_grads(idx[2:], tgt[2:], seed=7)[0]
    assert abs(w @ [parts[0], wrong] - whole) > 50 * tol
    # the forward and loss take the offset too
    assert model.loss(idx[2:], tgt[2:], seed=7, row_offset=2) == parts[1]
    model.seed = 7
    np.testing.assert_allclose(model.forward(idx[2:], row_offset=2), model.forward(idx)[2:],
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_offset_draws_the_whole_batch_masks_bitwise(threads, dtype):
    """With 2 threads a 4-row call runs rows [0, 2) and [2, 4) as two passes of 2 rows, each
    on one thread, at their place in the batch; one thread over each half with its
    row_offset draws the same masks: the training-mode logits and the loss of each half are
    the bits of those passes."""
    cfg = GPTConfig(**TINY, dropout=0.5)
    model = make_model(cfg, dtype)
    model.seed = 3
    idx, tgt = batch(cfg, 4, 8, ignore=False)
    threads(2)
    whole = model.forward(idx)
    whole_loss = model.loss_and_grads(idx, tgt)[0]
    threads(1)
    lo, hi = model.forward(idx[:2]), model.forward(idx[2:], row_offset=2)
    assert np.array_equal(lo, whole[:2]) and np.array_equal(hi, whole[2:])
    assert not np.array_equal(model.forward(idx[2:]), hi)  # row 0's masks differ
    per_row = [model.loss_and_grads(idx[h], tgt[h], row_offset=h.start)[0]
               for h in (slice(0, 2), slice(2, 4))]
    # the 2-thread call sums its workers' token losses: the same halves, added in order
    assert (per_row[0] + per_row[1]) / 2 == pytest.approx(whole_loss, rel=1e-12 if
                                                           dtype == np.float64 else 1e-6)


def test_row_offset_validation():
    cfg = GPTConfig(**TINY, dropout=0.2)
    model = make_model(cfg)
    idx, tgt = batch(cfg, 2, 8)
    with pytest.raises(ValueError, match="row_offset"):
        model.loss_and_grads(idx, tgt, row_offset=-1)
    with pytest.raises(TypeError, match="row_offset"):
        model.forward(idx, row_offset=1.0)
    with pytest.raises(ValueError, match="row_offset"):
        model.loss_and_grads(idx, tgt, row_offset=2, fast=False)
    with pytest.raises(ValueError, match="row_offset"):
        tc._C.gpt_forward(model._context(), idx, 0, True, -3)
    assert model.loss_and_grads(idx, tgt, row_offset=0, fast=False)[0] == pytest.approx(
        model.loss_and_grads(idx, tgt)[0], rel=1e-9)
    model.eval()  # no dropout: the offset changes nothing, on either path
    a = model.loss_and_grads(idx, tgt, row_offset=5)[0]
    assert a == model.loss_and_grads(idx, tgt)[0]
    assert model.loss_and_grads(idx, tgt, row_offset=5, fast=False)[0] == pytest.approx(a)


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("variant", ["gpt2", "rope_interleaved_post", "nobias_untied_relu"])
def test_save_load_roundtrip(tmp_path, variant):
    cfg = GPTConfig(**TINY, **VARIANTS[variant])
    model = make_model(cfg, np.float32)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = GPT.load(path)
    assert loaded.config == cfg and loaded.dtype == np.float32
    assert np.array_equal(loaded.flat_parameters, model.flat_parameters)
    idx, _ = batch(cfg, 2, 5)
    assert np.array_equal(loaded.forward(idx), model.forward(idx))
    from safetensors.numpy import load_file

    stored = load_file(str(path))
    assert set(stored) == set(model.state_dict())
    assert GPT.load(path, dtype=np.float64).dtype == np.float64


def test_load_rejects_foreign_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="gpt_config"):
        GPT.load(tmp_path / "a.safetensors")
    cfg = GPTConfig(**TINY)
    save_file({"wte.weight": np.zeros((13, 8), np.float32)}, str(tmp_path / "b.safetensors"),
              metadata={"gpt_config": json.dumps(cfg.to_dict())})
    with pytest.raises(ValueError, match="n_layer is 2 but the file holds 0 such layers"):
        GPT.load(tmp_path / "b.safetensors")
    full = GPT.create(cfg, np.random.default_rng(0)).state_dict()
    del full["ln_f.bias"]
    full["ln_f.beta"] = np.zeros(8, np.float32)
    save_file(full, str(tmp_path / "c.safetensors"), metadata={"gpt_config": json.dumps(cfg.to_dict())})
    with pytest.raises(ValueError, match=r"missing \['ln_f.bias'\]"):
        GPT.load(tmp_path / "c.safetensors")


# ------------------------------------------------------------------ position="none"

@pytest.mark.parametrize("fast", [True, False])
def test_no_positions_sees_a_set_of_tokens(fast):
    """position="none": no wpe, and one causal attention layer without positions makes the
    output at position t a function of the multiset of tokens 0..t (a prefix permuted before
    t gives the same logits at t), which the learned table does not (the control). (With
    more layers the hidden states of the permuted prefix differ, so only one layer.)"""
    cfg = GPTConfig(**{**TINY, "n_layer": 1}, position="none")
    assert "wpe/weight" not in flatten(GPT.create(cfg, np.random.default_rng(0)).parameters)
    learned = GPTConfig(**{**TINY, "n_layer": 1})
    assert GPT.create(learned, np.random.default_rng(0)).num_parameters - \
        GPT.create(cfg, np.random.default_rng(0)).num_parameters == TINY["block_size"] * TINY["n_embd"]
    idx = np.array([[3, 7, 1, 9, 4, 2]])
    perm = np.array([[1, 3, 7, 9, 4, 2]])       # the first three permuted
    for c, same in ((cfg, True), (learned, False)):
        model = make_model(c, np.float64, seed=3)
        a = model.forward(idx) if fast else model.forward(idx, fast=False)
        b = model.forward(perm) if fast else model.forward(perm, fast=False)
        assert np.allclose(a[0, 3:], b[0, 3:], rtol=1e-12, atol=1e-12) == same
        assert not np.allclose(a[0, :3], b[0, :3])


# ------------------------------------------------------------------ gradient flow, training

def test_every_parameter_gets_a_gradient():
    for variant in ("gpt2", "rope_interleaved_post", "nobias_untied_relu", "nopos"):
        cfg = GPTConfig(**TINY, **VARIANTS[variant])
        model = GPT.create(cfg, np.random.default_rng(0))
        idx, tgt = batch(cfg, 4, cfg.block_size, ignore=False)
        _, grads = model.loss_and_grads(idx, tgt)
        for name, g in flatten(grads).items():
            assert np.isfinite(g).all(), name
            assert np.abs(g).max() > 0, f"{variant}: {name} gets no gradient"
            if name == "wpe/weight":
                assert (np.abs(g).max(axis=1) > 0).all()


def test_overfits_one_batch_of_tiny_shakespeare():
    path = DATA_DIR / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    text = path.read_text()[:20000]
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    cfg = GPTConfig(vocab_size=len(chars), block_size=32, n_layer=2, n_head=4, n_embd=64)
    model = GPT.create(cfg, np.random.default_rng(0))
    starts = np.random.default_rng(1).integers(0, len(ids) - 33, 4)
    x = np.stack([ids[s:s + 32] for s in starts])
    y = np.stack([ids[s + 1:s + 33] for s in starts])
    m, v = np.zeros_like(model.flat_parameters), np.zeros_like(model.flat_parameters)
    losses = []
    for step in range(1, 301):
        loss, _ = model.loss_and_grads(x, y)
        losses.append(loss)
        if loss < 0.08:
            break
        F.adamw_update_(model.flat_parameters, model.flat_grads, m, v, step=step, lr=3e-3,
                        weight_decay=0.0)
    assert losses[0] > 3.0
    assert model.loss(x, y) < 0.1, losses[-5:]


# ------------------------------------------------------------------ bad input

def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(**{**TINY, "n_head": 3})
    with pytest.raises(ValueError, match="position"):
        GPTConfig(**TINY, position="alibi")
    with pytest.raises(ValueError, match="norm"):
        GPTConfig(**TINY, norm="sandwich")
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(**TINY, activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(**TINY, dropout=1.0)
    with pytest.raises(ValueError, match="vocab_size"):
        GPTConfig(**{**TINY, "vocab_size": 0})
    with pytest.raises(ValueError, match="even head size"):
        GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=6, position="rope")
    with pytest.raises(ValueError, match="unknown"):
        GPTConfig.from_dict({**TINY, "flash": True})
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT.create(dict(TINY), np.random.default_rng(0))
    with pytest.raises(ValueError, match="dtype"):
        GPT.create(GPTConfig(**TINY), np.random.default_rng(0), dtype=np.int32)


def test_bad_input():
    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    idx, tgt = batch(cfg, 2, 5)
    with pytest.raises(IndexError, match="idx"):
        model.forward(np.array([[1, 13]]))
    with pytest.raises(IndexError, match="idx"):
        model.loss_and_grads(np.array([[-1, 2]]), np.array([[1, 2]]))
    with pytest.raises(IndexError, match="targets"):
        model.loss_and_grads(idx, np.full_like(idx, 13))
    with pytest.raises(ValueError, match="block_size"):
        model.forward(np.zeros((1, 9), np.int64))
    with pytest.raises(TypeError, match="idx"):
        model.forward(idx.astype(np.float32))
    with pytest.raises(ValueError, match="idx"):
        model.forward(np.zeros((1, 2, 3), np.int64))
    with pytest.raises(ValueError, match="targets"):
        model.loss_and_grads(idx, tgt[:, :3])
    with pytest.raises(ValueError, match="gradient_outputs"):
        model.backward(np.zeros((2, 5, 12), np.float32), idx=idx)
    with pytest.raises(TypeError, match="gradient_outputs"):
        model.backward(np.zeros((2, 5, 13)), idx=idx)


def test_raw_bindings_raise():
    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    ctx = model._context()
    args = model.config.c_fields()
    idx = np.zeros((1, 4), np.int64)
    with pytest.raises(TypeError, match="GPT context"):
        tc._C.gpt_loss_and_grads(object(), idx, idx, -100, 0, False)
    with pytest.raises(IndexError, match="targets"):
        tc._C.gpt_loss_and_grads(ctx, idx, idx + 99, -100, 0, False)
    with pytest.raises(ValueError, match="targets"):
        tc._C.gpt_loss_and_grads(ctx, idx, idx[:, :2], -100, 0, False)
    with pytest.raises(ValueError, match="block_size"):
        tc._C.gpt_forward(ctx, np.zeros((1, 9), np.int64), 0, False)
    with pytest.raises(ValueError, match="seed"):
        tc._C.gpt_forward(ctx, idx, -5, False)
    flat = model.flat_parameters
    with pytest.raises(ValueError, match="params must be 1-D"):
        tc._C.gpt_create(flat[:-1].copy(), flat[:-1].copy(), args)
    with pytest.raises(TypeError, match="grads"):
        tc._C.gpt_create(flat, np.zeros(flat.size), args)
    with pytest.raises(ValueError, match="share memory"):
        tc._C.gpt_create(flat, flat, args)
    with pytest.raises(ValueError, match="invalid GPT config"):
        tc._C.gpt_create(flat, flat.copy(), {**args, "NH": 3})
    with pytest.raises(ValueError, match="seq_len"):
        tc._C.gpt_arena_bytes(False, args, 2, 9)


# ------------------------------------------------------------------ head masks (ablation)

def _head_mask(cfg, seed=0, binary=False):
    r = np.random.default_rng(seed)
    if binary:
        m = np.ones((cfg.n_layer, cfg.n_head))
        m[r.integers(cfg.n_layer), r.integers(cfg.n_head)] = 0.0
        return m
    return r.uniform(-0.5, 1.5, (cfg.n_layer, cfg.n_head))


@pytest.mark.parametrize("variant", ["gpt2", "rope_interleaved_post", "gelu_dropout",
                                     "nobias_untied_relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_head_mask_torch_twin_parity(torch, variant, dtype):
    cfg = GPTConfig(**{**TINY, "n_head": 4}, **VARIANTS[variant])
    model = make_model(cfg, dtype, seed=4)
    model.seed = 5
    idx, tgt = batch(cfg, 3, 7)
    hm = _head_mask(cfg, 1)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt, seed=5,
                                                         training=True, head_mask=hm)
    tol = TOL[dtype]
    for fast in (True, False):
        close(model.forward(idx, fast=fast, head_mask=hm), want_logits, tol, f"fast={fast}")
        loss, grads = model.loss_and_grads(idx, tgt, fast=fast, head_mask=hm)
        close(loss, want_loss, tol, f"loss fast={fast}")
        close(model.loss(idx, tgt, head_mask=hm), want_loss, tol, "loss()")
        got, want = flatten(grads), flatten(want_grads)
        for name, g in want.items():
            close(got[name], g, 10 * tol, f"{name} fast={fast}")


def test_head_mask_finite_differences():
    cfg = GPTConfig(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=4)
    model = make_model(cfg, np.float64, seed=7, noise=0.3)
    idx, tgt = batch(cfg, 2, 3, seed=8)
    hm = _head_mask(cfg, 2)
    for fast in (True, False):
        model.loss_and_grads(idx, tgt, head_mask=hm, fast=fast)
        got = model.flat_grads.copy()
        want = num_grad(lambda: model.loss(idx, tgt, head_mask=hm), model.flat_parameters)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=f"fast={fast}")


def _zero_head_by_hand(model, layer, head):
    """The model's parameter tree with attn.c_proj's columns of (layer, head) set to 0."""
    tree = tc.tree.tree_map(np.copy, model.parameters)
    hs = model.config.n_embd // model.config.n_head
    tree["h"][layer]["attn"]["c_proj"]["weight"][:, head * hs:(head + 1) * hs] = 0.0
    return tree


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ablating_a_head_equals_zeroing_its_slice_by_hand(dtype):
    cfg = GPTConfig(**{**TINY, "n_head": 4, "n_layer": 3})
    model = make_model(cfg, dtype, seed=9)
    idx, _ = batch(cfg, 2, 8)
    base = model.forward(idx)
    for layer, head in [(0, 0), (1, 3), (2, 1)]:
        hm = np.ones((cfg.n_layer, cfg.n_head))
        hm[layer, head] = 0
        by_hand = model.with_parameters(_zero_head_by_hand(model, layer, head))
        for fast in (True, False):
            want = by_hand.forward(idx, fast=fast)
            np.testing.assert_array_equal(model.forward(idx, fast=fast, head_mask=hm), want)
            np.testing.assert_array_equal(model.with_head_mask(hm).forward(idx, fast=fast),
                                          want)
        assert np.abs(want - base).max() > 1e-4        # the head mattered
    ones = np.ones((cfg.n_layer, cfg.n_head), bool)
    for fast in (True, False):
        np.testing.assert_array_equal(model.forward(idx, fast=fast, head_mask=ones),
                                      model.forward(idx, fast=fast))
    np.testing.assert_array_equal(model.flat_parameters, make_model(cfg, dtype, seed=9)
                                  .flat_parameters)    # the model itself is untouched


def test_self_attention_head_mask_zeroes_the_heads_channels():
    """SelfAttention's head_mask against NumPy by hand: the attention output before c_proj
    with head h's HS channels multiplied by its entry; backward through the same factor."""
    r = np.random.default_rng(3)
    C, NH, T = 12, 3, 5
    HS = C // NH
    att = tc.nn.SelfAttention.create(C, NH, r, causal=True)
    hm = np.array([1.0, 0.0, 0.5])
    masked = att.with_parameters(att.parameters)
    masked = tc.nn.SelfAttention(masked.c_attn, masked.c_proj, NH, head_mask=hm)
    x = r.normal(size=(2, T, C))
    Wa, ba = att.c_attn.weight_matrix, att.parameters["c_attn"]["bias"]
    Wp, bp = att.c_proj.weight_matrix, att.parameters["c_proj"]["bias"]
    qkv = x @ Wa.T + ba
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(2, T, NH, HS).transpose(0, 2, 1, 3)
               for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = (p @ v) * hm[None, :, None, None]
    y = y.transpose(0, 2, 1, 3).reshape(2, T, C)
    np.testing.assert_allclose(masked.forward(x), y @ Wp.T + bp, rtol=1e-12, atol=1e-12)
    # backward: finite differences of the masked layer (x and c_proj's weight)
    g = r.normal(size=(2, T, C))
    grads, dx = masked.backward_cached(g, masked.forward_cached(x)[1])
    np.testing.assert_allclose(dx, num_grad(lambda: float((masked.forward(x) * g).sum()), x),
                               rtol=1e-6, atol=1e-8)
    w = masked.c_proj.weight_matrix
    want = num_grad(lambda: float((masked.forward(x) * g).sum()), w)
    np.testing.assert_allclose(tc.tree.flatten(grads)["c_proj/weight"], want,
                               rtol=1e-6, atol=1e-8)
    assert masked.with_parameters(masked.parameters).head_mask is not None


@pytest.mark.parametrize("B,T", [(1, 1), (2, 1), (1, 5)])
def test_head_mask_awkward_shapes_and_inputs(B, T):
    cfg = GPTConfig(**{**TINY, "n_head": 4})
    model = make_model(cfg, np.float64, seed=2)
    idx, tgt = batch(cfg, B, T, ignore=False)
    big = np.ones((cfg.n_layer, 2 * cfg.n_head))
    big[1, 2] = 0.0
    hm = big[:, ::2]                                    # non-contiguous
    assert not hm.flags.c_contiguous
    want = model.forward(idx, fast=False, head_mask=np.ascontiguousarray(hm))
    close(model.forward(idx, head_mask=hm), want, 1e-12)
    close(model.forward(idx[0], head_mask=hm.astype(bool)), want[0], 1e-12)
    ins = model.inspect(idx, head_mask=hm)
    close(ins.logits, want, 1e-12)
    ref = model.inspect(idx, head_mask=hm, fast=False)
    for a, b in zip(ins.attentions, ref.attentions):
        close(a, b, 1e-12)
    close(ins.attentions[0], model.inspect(idx).attentions[0], 1e-12)  # layer 0 unchanged


def test_head_mask_bad_input():
    cfg = GPTConfig(**TINY)
    model = make_model(cfg, np.float32)
    idx, tgt = batch(cfg, 2, 5)
    for call in (lambda m: model.forward(idx, head_mask=m),
                 lambda m: model.forward(idx, fast=False, head_mask=m),
                 lambda m: model.loss(idx, tgt, head_mask=m),
                 lambda m: model.loss_and_grads(idx, tgt, head_mask=m),
                 lambda m: model.inspect(idx, head_mask=m),
                 model.with_head_mask):
        with pytest.raises(ValueError, match=r"head_mask must have shape \(2, 2\)"):
            call(np.ones((2, 3)))
        with pytest.raises(ValueError, match="head_mask must have shape"):
            call(np.ones(2))
        with pytest.raises(ValueError, match="head_mask must be finite"):
            call(np.full((2, 2), np.nan))
        with pytest.raises(TypeError, match="head_mask"):
            call(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="head_mask"):
        model.with_head_mask(None)
    with pytest.raises(ValueError, match=r"head_mask must have shape \(3,\)"):
        tc.nn.SelfAttention.create(6, 3, np.random.default_rng(0), head_mask=np.ones(2))
