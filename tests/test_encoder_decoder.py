"""Encoder and EncoderDecoder: a PyTorch twin written here (same weights, torch.nn.functional
ops) for logits, loss and every gradient with padding in source and target, pre- and
post-LN; torch.nn.Transformer's own layers with the weights copied in; finite differences;
source padding never influencing the output; the C fast path against the module path;
init, checkpoints, dropout, gradient flow, learning to copy, and bad input."""
import copy
import json
import math
import pickle

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, num_grad
from test_attention_sparse import np_pattern
from transformer_c.nn import (CrossAttention, DecoderBlock, Dense, Encoder, EncoderConfig,
                              EncoderDecoder, EncoderDecoderConfig, Norm, SelfAttention)
from transformer_c.nn.blocks import MLP, Block, site_seed
from transformer_c.tree import flatten

F = tc.functional

TINY = dict(src_vocab_size=11, tgt_vocab_size=13, block_size=9, n_encoder_layer=2,
            n_decoder_layer=2, n_head=2, n_embd=8, dropout=0.0, position="learned")
VARIANTS = {
    "pre": {},
    "post": dict(norm="post"),
    "sinusoidal_gelu_tanh": dict(position="sinusoidal", activation="gelu_tanh"),
    "shared_untied_nobias": dict(share_embeddings=True, tie_embeddings=False, bias=False,
                                 tgt_vocab_size=11),
    "post_shared_tied_relu": dict(norm="post", share_embeddings=True, tgt_vocab_size=11,
                                  n_decoder_layer=3, n_inner=12),
    "gelu_dropout": dict(activation="gelu", dropout=0.3),
    "silu_post": dict(activation="silu", norm="post"),
    "relu2_post": dict(activation="relu2", norm="post"),
    "post_sinusoidal_dropout_untied": dict(norm="post", position="sinusoidal", dropout=0.2,
                                           tie_embeddings=False, n_encoder_layer=1),
    "rmsnorm_qknorm_post": dict(norm_type="rmsnorm", qk_norm=True, norm="post"),
    "rmsnorm_swiglu_mqa": dict(norm_type="rmsnorm", gated=True, activation="silu",
                               n_kv_head=1, bias=False),
    "geglu_gqa_post": dict(gated=True, activation="gelu", n_head=4, n_kv_head=2, norm="post",
                           dropout=0.2),
    "qknorm_mqa_dropout": dict(qk_norm=True, n_kv_head=1, dropout=0.2),
}
TOL = {np.float64: 1e-9, np.float32: 1e-4}
PAD = 0


def close(got, want, tol, what=""):
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * scale,
                               err_msg=what)


def config(variant="pre", **kw):
    return EncoderDecoderConfig(**{**TINY, **VARIANTS[variant], **kw})


def make_model(cfg, dtype=np.float64, seed=0, noise=0.1, **kw):
    """A model whose every parameter (LayerNorms and biases too) is random."""
    r = np.random.default_rng(seed)
    m = (EncoderDecoder if isinstance(cfg, EncoderDecoderConfig) else Encoder).create(
        cfg, r, dtype=dtype, **kw)
    m.flat_parameters[...] += r.normal(0, noise, m.num_parameters).astype(dtype)
    return m


def batch(cfg, B=3, S=7, T=6, seed=1, lengths=None, tgt_lengths=None):
    """Source ids with padding (lengths), decoder input and targets padded with PAD."""
    r = np.random.default_rng(seed)
    lengths = np.array([S, max(1, S - 3), 1][:B] + [S] * max(0, B - 3)) if lengths is None \
        else np.asarray(lengths)
    tgt_lengths = np.array([T, 2, max(1, T - 1)][:B] + [T] * max(0, B - 3)) \
        if tgt_lengths is None else np.asarray(tgt_lengths)
    src = r.integers(1, cfg.src_vocab_size, (B, S))
    src[np.arange(S)[None] >= lengths[:, None]] = PAD
    tin = r.integers(1, cfg.tgt_vocab_size, (B, T))
    tout = r.integers(1, cfg.tgt_vocab_size, (B, T))
    pad = np.arange(T)[None] >= tgt_lengths[:, None]
    tin[pad], tout[pad] = PAD, PAD
    return src, lengths, tin, tout


# ------------------------------------------------------------------ the PyTorch twin

def torch_twin(torch, cfg, P, src, mask, tgt, *, seed=0, training=False, encoder_only=False,
               token_types=None):
    """Logits (or, encoder_only, the encoder's output) of the model defined by cfg with
    parameters P (a tree of torch tensors), from torch primitives; token_types (B, S): add
    P["wtt"]["weight"] rows to the encoder's embeddings (BERT's segments, nn.Bert). mask: bool (B, S), True =
    real token, or None. Dropout masks come from the seeded dropout kernel (tested on its
    own) at the model's sites: encoder embeddings 0, encoder layer l 3l+1 (attention
    probabilities), 3l+2, 3l+3 (branches); decoder embeddings D0 = 1 + 3 Le, decoder layer l
    s = D0 + 5l: s+1 (self probabilities), s+2, s+3 (cross probabilities), s+4, s+5."""
    TF = torch.nn.functional
    C, NH = cfg.n_embd, cfg.n_head
    HS = C // NH
    eps = cfg.layer_norm_epsilon
    first = P["wte"] if "wte" in P else P.get("encoder", P).get("wte", P.get("wte"))
    dt = first["weight"].dtype
    kpm = None if mask is None else torch.from_numpy(np.asarray(mask))
    enc = P if encoder_only else P["encoder"]
    n_enc = cfg.n_layer if encoder_only else cfg.n_encoder_layer

    def drop(x, site):
        if not training or cfg.dropout == 0:
            return x
        m = F.dropout_mask(tuple(x.shape), cfg.dropout, seed=site_seed(seed, site),
                           dtype=np.float32 if dt == torch.float32 else np.float64)
        return x * torch.from_numpy(m)

    def ln(x, p, width=C):
        if getattr(cfg, "norm_type", "layernorm") == "rmsnorm" or width != C:  # HS: QK-norm
            y = TF.rms_norm(x, (width,), p["weight"], eps)
            return y + p["bias"] if "bias" in p else y
        return TF.layer_norm(x, (C,), p["weight"], p.get("bias"), eps)

    def lin(x, p):
        return TF.linear(x, p["weight"], p.get("bias"))

    def heads(t):  # (B, L, n HS) -> (B, n, L, HS): NH query heads, or NKV kv heads
        B, L, W = t.shape
        return t.view(B, L, W // HS, HS).transpose(1, 2)

    def attend(q, k, v, *, causal, keys, site, sparse=False):
        s = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        T, S = s.shape[-2:]
        if sparse and getattr(cfg, "attention", "dense") == "block_sparse":
            keep = np_pattern(T, S, cfg.sparse_block, cfg.sparse_window, cfg.sparse_stride,
                              cfg.sparse_global)  # the documented rule, rebuilt in NumPy
            s = s.masked_fill(torch.from_numpy(~keep), float("-inf"))
        if causal:
            s = s.masked_fill(torch.triu(torch.ones(T, S, dtype=torch.bool), 1), float("-inf"))
        if keys is not None:
            s = s.masked_fill(~keys[:, None, None, :], float("-inf"))
        y = drop(torch.softmax(s, -1), site) @ v
        B = y.shape[0]
        return y.transpose(1, 2).reshape(B, T, C)

    def self_attn(x, p, *, causal, keys, site):
        KC = cfg.kv_heads * HS  # grouped-query attention: k, v repeated to the query heads
        q, k, v = (heads(t) for t in lin(x, p["c_attn"]).split([C, KC, KC], dim=-1))
        if getattr(cfg, "qk_norm", False):  # the k-norm on the kv heads, before sharing
            q, k = ln(q, p["q_norm"], HS), ln(k, p["k_norm"], HS)
        k, v = (t.repeat_interleave(NH * HS // KC, 1) for t in (k, v))
        return lin(attend(q, k, v, causal=causal, keys=keys, site=site, sparse=True),
                   p["c_proj"])

    def cross_attn(x, memory, p, site):
        q = heads(lin(x, p["q_attn"]))
        k, v = (heads(t) for t in lin(memory, p["c_attn"]).split(C, dim=-1))
        return lin(attend(q, k, v, causal=False, keys=kpm, site=site), p["c_proj"])

    def mlp(x, p):
        act = {"relu": torch.relu, "silu": TF.silu, "gelu": TF.gelu,
               "relu2": lambda t: torch.relu(t) ** 2,
               "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh")}[cfg.activation]
        if getattr(cfg, "gated", False):  # the gated MLP: act(c_gate x) * c_fc x
            return lin(act(lin(x, p["c_gate"])) * lin(x, p["c_fc"]), p["c_proj"])
        return lin(act(lin(x, p["c_fc"])), p["c_proj"])

    def embed(ids, wte, stack, site, types=None):
        ids = torch.from_numpy(np.asarray(ids, np.int64))
        L = ids.shape[1]
        x = wte[ids]
        if cfg.position == "learned":
            x = x + stack["wpe"]["weight"][:L]
        else:
            pos = torch.arange(L, dtype=torch.float64)[:, None]
            k2 = torch.arange(C, dtype=torch.float64) // 2 * 2
            ang = pos / cfg.position_base ** (k2 / C)
            x = x + torch.where(torch.arange(C) % 2 == 0, torch.sin(ang), torch.cos(ang)).to(dt)
        if types is not None:
            x = x + stack["wtt"]["weight"][torch.from_numpy(np.asarray(types, np.int64))]
        return drop(x, site)

    def residual(x, norm, f, site):
        if cfg.norm == "pre":
            return x + drop(f(ln(x, norm)), site)
        return ln(x + drop(f(x), site), norm)

    shared = "wte" in P and not encoder_only
    x = embed(src, (P if shared else enc)["wte"]["weight"], enc, 0, token_types)
    for layer, h in enumerate(enc["h"]):
        s = 3 * layer
        x = residual(x, h["ln_1"], lambda z: self_attn(z, h["attn"], causal=False, keys=kpm,
                                                       site=s + 1), s + 2)
        x = residual(x, h["ln_2"], lambda z: mlp(z, h["mlp"]), s + 3)
    if cfg.norm == "pre":
        x = ln(x, enc["ln_f"])
    if encoder_only:
        return x
    memory, dec = x, P["decoder"]
    d0 = 1 + 3 * n_enc
    wte_t = (P if shared else dec)["wte"]["weight"]
    y = embed(tgt, wte_t, dec, d0)
    for layer, h in enumerate(dec["h"]):
        s = d0 + 5 * layer
        y = residual(y, h["ln_1"], lambda z: self_attn(z, h["attn"], causal=True, keys=None,
                                                       site=s + 1), s + 2)
        y = residual(y, h["ln_cross_attn"],
                     lambda z: cross_attn(z, memory, h["crossattention"], s + 3), s + 4)
        y = residual(y, h["ln_2"], lambda z: mlp(z, h["mlp"]), s + 5)
    if cfg.norm == "pre":
        y = ln(y, dec["ln_f"])
    W = wte_t if cfg.tie_embeddings else P["lm_head"]["weight"]
    return y @ W.T


def torch_params(torch, model):
    return tc.tree.tree_map(lambda a: torch.from_numpy(a.copy()).requires_grad_(True),
                            model.parameters)


def torch_reference(torch, model, src, mask, tin, tout, *, seed=0, training=False):
    P = torch_params(torch, model)
    logits = torch_twin(torch, model.config, P, src, mask, tin, seed=seed, training=training)
    V = model.config.tgt_vocab_size
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                             torch.from_numpy(np.asarray(tout).reshape(-1)),
                                             ignore_index=PAD)
    loss.backward()
    return logits.detach().numpy(), loss.item(), tc.tree.tree_map(lambda t: t.grad.numpy(), P)


def lengths_mask(lengths, S):
    return np.arange(S)[None] < np.asarray(lengths)[:, None]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_twin_parity(torch, variant, dtype):
    cfg = config(variant)
    model = make_model(cfg, dtype, seed=3)
    model.seed = 11
    src, lengths, tin, tout = batch(cfg, 3, 7, 6)
    want_logits, want_loss, want_grads = torch_reference(
        torch, model, src, lengths_mask(lengths, 7), tin, tout, seed=11, training=True)
    tol = TOL[dtype]
    for fast in (True, False):
        logits = model.forward(src, tin, src_lengths=lengths, fast=fast)
        assert logits.dtype == dtype and logits.shape == (3, 6, cfg.tgt_vocab_size)
        close(logits, want_logits, tol, f"logits fast={fast}")
        loss, grads = model.loss_and_grads(src, tin, tout, src_lengths=lengths, fast=fast)
        close(loss, want_loss, tol, f"loss fast={fast}")
        got, want = flatten(grads), flatten(want_grads)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == dtype
            close(got[name], want[name], tol, f"d{name} fast={fast}")


@pytest.mark.parametrize("B,S,T", [(1, 1, 1), (2, 1, 5), (1, 9, 1), (4, 5, 9)])
def test_torch_twin_parity_awkward_shapes(torch, B, S, T):
    """Three heads of 4, widths not multiples of the SIMD width, S or T = 1, different S and
    T, a key-padding mask given as a boolean array."""
    cfg = EncoderDecoderConfig(src_vocab_size=7, tgt_vocab_size=5, block_size=9,
                               n_encoder_layer=1, n_decoder_layer=2, n_head=3, n_embd=12,
                               n_inner=20, dropout=0.0, position="learned")
    model = make_model(cfg, seed=8)
    r = np.random.default_rng(B * 100 + S * 10 + T)
    lengths = r.integers(1, S + 1, B)
    src, _, tin, tout = batch(cfg, B, S, T, lengths=lengths, tgt_lengths=np.full(B, T))
    mask = lengths_mask(lengths, S)
    want_logits, want_loss, want_grads = torch_reference(torch, model, src, mask, tin, tout)
    loss, grads = model.loss_and_grads(src, tin, tout, src_key_padding_mask=mask)
    close(model.forward(src, tin, src_key_padding_mask=mask), want_logits, 1e-9)
    close(loss, want_loss, 1e-9)
    for name, g in flatten(want_grads).items():
        close(flatten(grads)[name], g, 1e-9, name)


def test_torch_twin_parity_larger_float32(torch):
    cfg = EncoderDecoderConfig(src_vocab_size=40, tgt_vocab_size=50, block_size=32,
                               n_encoder_layer=3, n_decoder_layer=2, n_head=4, n_embd=32,
                               dropout=0.0, position="sinusoidal")
    model = make_model(cfg, np.float32, seed=4, noise=0.02)
    src, lengths, tin, tout = batch(cfg, 4, 29, 32, lengths=[29, 20, 3, 11],
                                    tgt_lengths=[32, 7, 30, 1])
    want_logits, want_loss, want_grads = torch_reference(torch, model, src,
                                                         lengths_mask(lengths, 29), tin, tout)
    loss, grads = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    close(model.forward(src, tin, src_lengths=lengths), want_logits, 1e-4)
    close(loss, want_loss, 1e-4)
    for name, g in flatten(want_grads).items():
        close(flatten(grads)[name], g, 1e-4, name)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_torch_nn_transformer_layers_parity(torch, norm):
    """torch.nn.TransformerEncoderLayer / TransformerDecoderLayer with our weights copied
    in (no dropout): an independent statement of the semantics (masks, norm placement)."""
    nn = torch.nn
    cfg = config("pre", norm=norm, activation="gelu")
    model = make_model(cfg, seed=12)
    src, lengths, tin, tout = batch(cfg, 3, 7, 6)
    P = tc.tree.tree_map(lambda a: nn.Parameter(torch.from_numpy(a.copy())), model.parameters)
    C, H = cfg.n_embd, cfg.hidden_size
    fused = []  # (in_proj Parameter of a cross-attention, its q_attn and c_attn leaves)

    def copy_ln(mod, p):
        mod.weight, mod.bias = p["weight"], p["bias"]

    copy_lin = copy_ln

    def layer(h, decoder):
        cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
        mod = cls(C, cfg.n_head, H, dropout=0.0, activation="gelu", batch_first=True,
                  norm_first=norm == "pre", dtype=torch.float64)
        mod.self_attn.in_proj_weight = h["attn"]["c_attn"]["weight"]
        mod.self_attn.in_proj_bias = h["attn"]["c_attn"]["bias"]
        copy_lin(mod.self_attn.out_proj, h["attn"]["c_proj"])
        copy_lin(mod.linear1, h["mlp"]["c_fc"])
        copy_lin(mod.linear2, h["mlp"]["c_proj"])
        copy_ln(mod.norm1, h["ln_1"])
        if decoder:
            x = h["crossattention"]
            for key in ("weight", "bias"):
                joint = nn.Parameter(torch.cat([x["q_attn"][key], x["c_attn"][key]]).detach())
                setattr(mod.multihead_attn, f"in_proj_{key}", joint)
                fused.append((joint, x["q_attn"], x["c_attn"], key))
            copy_lin(mod.multihead_attn.out_proj, x["c_proj"])
            copy_ln(mod.norm2, h["ln_cross_attn"])
            copy_ln(mod.norm3, h["ln_2"])
        else:
            copy_ln(mod.norm2, h["ln_2"])
        return mod

    pad = torch.from_numpy(~lengths_mask(lengths, 7))  # torch: True = padding
    e, d = P["encoder"], P["decoder"]
    x = e["wte"]["weight"][torch.from_numpy(src)] + e["wpe"]["weight"][:7]
    for h in e["h"]:
        x = layer(h, False)(x, src_key_padding_mask=pad)
    if norm == "pre":
        x = torch.nn.functional.layer_norm(x, (C,), e["ln_f"]["weight"], e["ln_f"]["bias"])
    y = d["wte"]["weight"][torch.from_numpy(tin)] + d["wpe"]["weight"][:6]
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    for h in d["h"]:
        y = layer(h, True)(y, x, tgt_mask=causal, tgt_is_causal=True,
                           memory_key_padding_mask=pad)
    if norm == "pre":
        y = torch.nn.functional.layer_norm(y, (C,), d["ln_f"]["weight"], d["ln_f"]["bias"])
    logits = y @ d["wte"]["weight"].T
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.tgt_vocab_size),
                                             torch.from_numpy(tout.reshape(-1)),
                                             ignore_index=PAD)
    loss.backward()
    for joint, q, kv, key in fused:
        q[key].grad, kv[key].grad = joint.grad[:C], joint.grad[C:]
    got_loss, grads = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    close(model.forward(src, tin, src_lengths=lengths), logits.detach().numpy(), 1e-9)
    close(got_loss, loss.item(), 1e-9)
    for name, g in flatten(tc.tree.tree_map(lambda t: t.grad.numpy(), P)).items():
        close(flatten(grads)[name], g, 1e-9, name)


# ------------------------------------------------------------------ Encoder alone

@pytest.mark.parametrize("sparse", [{}, dict(attention="block_sparse", sparse_block=2,
                                              sparse_window=1, sparse_stride=3,
                                              sparse_global=1)])  # global: no empty row
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_encoder_torch_twin_parity(torch, norm, dtype, sparse):
    cfg = EncoderConfig(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=8,
                        norm=norm, dropout=0.25, position="learned", activation="gelu_tanh",
                        **sparse)
    enc = make_model(cfg, dtype, seed=5)
    enc.seed = 3
    lengths = np.array([7, 2, 5])
    src = np.random.default_rng(2).integers(0, 11, (3, 7))
    mask = lengths_mask(lengths, 7)
    P = torch_params(torch, enc)
    want = torch_twin(torch, cfg, P, src, mask, None, seed=3, training=True, encoder_only=True)
    G = np.random.default_rng(4).standard_normal(want.shape).astype(dtype)
    (want * torch.from_numpy(G)).sum().backward()
    tol = TOL[dtype]
    for kw in (dict(src_lengths=lengths), dict(src_key_padding_mask=mask)):
        out = enc.forward(src, **kw)
        assert out.dtype == dtype and out.shape == (3, 7, 8)
        close(out, want.detach().numpy(), tol, "hidden")
        grads, inputs = enc.backward(G, src=src, **kw)
        assert set(inputs) == {"src", *kw} and not inputs["src"].any()
        for name, g in flatten(tc.tree.tree_map(lambda t: t.grad.numpy(), P)).items():
            close(flatten(grads)[name], g, tol, name)


def test_encoder_is_the_encoder_decoders_encoder():
    cfg = config("pre")
    model = make_model(cfg)
    enc = Encoder(cfg.encoder_config(), model.parameters["encoder"])
    src, lengths, _, _ = batch(cfg)
    np.testing.assert_array_equal(enc.forward(src, src_lengths=lengths),
                                  model.encode(src, src_lengths=lengths))
    assert enc.num_parameters == sum(a.size for a in flatten(model.parameters["encoder"]).values())


def test_encoder_finite_differences():
    cfg = EncoderConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4, n_inner=6,
                        dropout=0.0, position="learned", norm="post")
    enc = make_model(cfg, seed=2, noise=0.3)
    src = np.array([[1, 2, 0, 4], [3, 3, 1, 0]])
    mask = lengths_mask([4, 2], 4)
    G = np.random.default_rng(0).standard_normal((2, 4, 4))
    grads, _ = enc.backward(G, src=src, src_key_padding_mask=mask)
    got = np.concatenate([g.ravel() for g in flatten(grads).values()])
    want = num_grad(lambda: float(np.sum(enc.forward(src, src_key_padding_mask=mask) * G)),
                    enc.flat_parameters)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ blocks

def _dense(r, o, i):
    return Dense(r.standard_normal((o, i)) * 0.3, r.standard_normal(o) * 0.1)


def _norm(r, C):
    return Norm(1 + 0.1 * r.standard_normal(C), 0.1 * r.standard_normal(C))


def test_cross_attention_and_decoder_block_gradients():
    r = np.random.default_rng(0)
    C, NH = 6, 3
    x, mem = r.standard_normal((2, 4, C)), r.standard_normal((2, 5, C))
    kpm = lengths_mask([5, 2], 5)
    cross = CrossAttention(_dense(r, C, C), _dense(r, 2 * C, C), _dense(r, C, C), NH)
    _, gi = cross.backward(np.ones((2, 4, C)), x=x, memory=mem, key_padding_mask=kpm)
    assert set(gi) == {"x", "memory", "key_padding_mask"}
    assert not gi["memory"][1, 2:].any()          # padded memory rows get exactly 0
    check_grads(lambda: cross.forward(x=x, memory=mem, key_padding_mask=kpm),
                lambda G: {**cross.backward(G, x=x, memory=mem, key_padding_mask=kpm)[1]},
                {"x": x, "memory": mem})
    for norm in ("pre", "post"):
        attn = SelfAttention(_dense(r, 3 * C, C), _dense(r, C, C), NH, causal=True)
        mlp = MLP(_dense(r, 2 * C, C), _dense(r, C, 2 * C), "gelu")
        block = DecoderBlock(_norm(r, C), attn, _norm(r, C), cross, _norm(r, C), mlp, norm=norm)
        assert list(block.parameters) == ["ln_1", "attn", "ln_cross_attn", "crossattention",
                                          "ln_2", "mlp"]
        check_grads(lambda: block.forward(x=x, memory=mem, memory_key_padding_mask=kpm),
                    lambda G: block.backward(G, x=x, memory=mem,
                                             memory_key_padding_mask=kpm)[1],
                    {"x": x, "memory": mem})
        leaf = block.parameters["crossattention"]["q_attn"]["weight"]
        G = r.standard_normal((2, 4, C))
        pg, _ = block.backward(G, x=x, memory=mem, memory_key_padding_mask=kpm)
        want = num_grad(lambda: float(np.sum(block.forward(x=x, memory=mem,
                                                           memory_key_padding_mask=kpm) * G)),
                        leaf)
        np.testing.assert_allclose(pg["crossattention"]["q_attn"]["weight"], want, rtol=1e-6,
                                   atol=1e-8)
        again = block.with_parameters(tc.tree.tree_map(np.copy, block.parameters))
        np.testing.assert_array_equal(again.forward(x=x, memory=mem), block.forward(x=x, memory=mem))


def test_block_with_key_padding_is_an_encoder_layer():
    r = np.random.default_rng(1)
    C = 4
    x = r.standard_normal((2, 5, C))
    kpm = lengths_mask([5, 3], 5)
    attn = SelfAttention(_dense(r, 3 * C, C), _dense(r, C, C), 2, causal=False)
    block = Block(_norm(r, C), attn, _norm(r, C), MLP(_dense(r, 8, C), _dense(r, C, 8), "relu"))
    check_grads(lambda: block.forward(x=x, key_padding_mask=kpm),
                lambda G: block.backward(G, x=x, key_padding_mask=kpm)[1], {"x": x})
    # a padded row changes nothing at the real rows
    y = block.forward(x=x, key_padding_mask=kpm)
    x2 = x.copy()
    x2[1, 3:] += 5.0
    np.testing.assert_array_equal(block.forward(x=x2, key_padding_mask=kpm)[1, :3], y[1, :3])


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("variant", ["pre", "post", "shared_untied_nobias",
                                     "post_sinusoidal_dropout_untied", "gelu_dropout",
                                     "rmsnorm_qknorm_post", "rmsnorm_swiglu_mqa",
                                     "qknorm_mqa_dropout"])
def test_finite_differences(variant):
    cfg = EncoderDecoderConfig(**{**TINY, **VARIANTS[variant], "block_size": 4,
                                  "n_encoder_layer": 1, "n_decoder_layer": 1, "n_embd": 4,
                                  "n_inner": 6, "src_vocab_size": 5,
                                  "tgt_vocab_size": 5 if "shared" in variant else 6})
    model = make_model(cfg, seed=5, noise=0.3)
    model.seed = 2
    src, lengths, tin, tout = batch(cfg, 2, 4, 3, seed=6, lengths=[4, 2], tgt_lengths=[3, 2])
    model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    got = model.flat_grads.copy()
    want = num_grad(lambda: model.loss(src, tin, tout, src_lengths=lengths),
                    model.flat_parameters, eps=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ padding

@pytest.mark.parametrize("variant", ["pre", "post_sinusoidal_dropout_untied"])
def test_source_padding_never_influences_the_output(variant):
    cfg = config(variant)
    model = make_model(cfg, seed=9)
    model.seed = 4
    src, lengths, tin, tout = batch(cfg, 3, 7, 6, lengths=[5, 2, 4])
    pad = ~lengths_mask(lengths, 7)
    src[src == 10] = 9
    src[pad] = 10              # id 10 occurs only in padding
    assert not (src[~pad] == 10).any()
    other = src.copy()
    other[pad] = np.random.default_rng(0).integers(1, 10, pad.sum())
    for fast in (True, False):
        outs = []
        for s in (src, other):
            logits = model.forward(s, tin, src_lengths=lengths, fast=fast)
            loss, _ = model.loss_and_grads(s, tin, tout, src_lengths=lengths, fast=fast)
            outs.append((logits, loss, model.flat_grads.copy()))
        (l1, s1, g1), (l2, s2, g2) = outs
        np.testing.assert_array_equal(l1, l2)
        assert s1 == s2
        np.testing.assert_array_equal(g1, g2)
        grads = model._grads_tree()
        # the padded positions' embeddings get exactly zero gradient
        assert not grads["encoder"]["wte"]["weight"][10].any()
        if "wpe" in grads["encoder"]:  # positions 5, 6 are padding in every row
            assert not grads["encoder"]["wpe"]["weight"][5:].any()
            assert grads["encoder"]["wpe"]["weight"][4].any()
    # the mask decides: the same source unpadded gives other logits
    assert not np.allclose(model.forward(src, tin), model.forward(src, tin, src_lengths=lengths))


def test_fully_padded_source_and_target():
    """A source of length 0: the cross-attention sees nothing (zeros, not NaN); a target of
    only padding contributes nothing; all of it ignored gives NaN and zero gradients."""
    cfg = config("pre")
    model = make_model(cfg)
    src, _, tin, tout = batch(cfg, 2, 4, 3, lengths=[0, 3], tgt_lengths=[3, 0])
    loss, _ = model.loss_and_grads(src, tin, tout, src_lengths=[0, 3])
    g = model.flat_grads.copy()
    assert np.isfinite(loss) and np.isfinite(g).all()
    slow, _ = model.loss_and_grads(src, tin, tout, src_lengths=[0, 3], fast=False)
    close(loss, slow, 1e-12)
    close(g, model.flat_grads, 1e-12)
    # row 1's target is all padding: the loss is row 0's alone
    l0 = model.loss(src[:1], tin[:1], tout[:1], src_lengths=[0])
    close(loss, l0, 1e-12)
    nan, _ = model.loss_and_grads(src, tin, np.zeros_like(tout), src_lengths=[0, 3])
    assert math.isnan(nan) and not model.flat_grads.any()


def test_pad_id_and_ignore_index():
    cfg = config("pre", pad_id=3)
    model = make_model(cfg)
    src, lengths, tin, tout = batch(cfg)
    tout[0, :2] = 3
    logits = model.forward(src, tin, src_lengths=lengths)
    keep = tout != 3
    want = F.cross_entropy(logits[keep], tout[keep])
    close(model.loss_and_grads(src, tin, tout, src_lengths=lengths)[0], want, 1e-12)
    close(model.loss(src, tin, tout, src_lengths=lengths), want, 1e-12)
    t2 = np.where(keep, tout, -100)
    close(model.loss_and_grads(src, tin, t2, src_lengths=lengths, ignore_index=-100)[0], want,
          1e-12)


# ------------------------------------------------------------------ fast path vs module path

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_and_grads_equals_forward_backward(variant):
    cfg = config(variant)
    model = make_model(cfg, seed=7)
    model.seed = 5
    src, lengths, tin, tout = batch(cfg, 3, 8, 7)
    loss, grads = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    grads = {k: v.copy() for k, v in flatten(grads).items()}
    # the tree protocol: forward, the loss gradient, backward
    logits = model.forward(src=src, tgt=tin, src_lengths=lengths, fast=False)
    dlogits = F.cross_entropy_backward(logits, tout, ignore_index=PAD)
    pgrads, igrads = model.backward(dlogits, src=src, tgt=tin, src_lengths=lengths)
    assert set(igrads) == {"src", "tgt", "src_lengths"}
    assert not any(v.any() for v in igrads.values())
    close(loss, F.cross_entropy(logits, tout, ignore_index=PAD), 1e-12)
    assert list(flatten(pgrads)) == list(grads)
    for name, g in flatten(pgrads).items():
        close(grads[name], g, 1e-12, name)
    # float32: the same kernels in the same order
    m32 = EncoderDecoder(cfg, tc.tree.tree_map(lambda a: a.astype(np.float32), model.parameters),
                         seed=5)
    l32, g32 = m32.loss_and_grads(src, tin, tout, src_lengths=lengths)
    g32 = {k: v.copy() for k, v in flatten(g32).items()}
    l32m, g32m = m32.loss_and_grads(src, tin, tout, src_lengths=lengths, fast=False)
    close(l32, l32m, 1e-6)
    for name, g in flatten(g32m).items():
        close(g32[name], g, 1e-5, name)


def test_fast_path_is_deterministic_and_arena_is_reused(threads):
    threads(1)  # one pass: the model's own arena (the split's: test_data_parallel.py)
    cfg = config("pre")
    model = make_model(cfg, np.float32)
    src, lengths, tin, tout = batch(cfg, 3, 8, 7)
    l1, _ = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    g1 = model.flat_grads.copy()
    size = tc._C.encdec_arena_size(model._context())
    assert size == model.activation_bytes(3, 8, 7) > 0
    l2, _ = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    assert l1 == l2 and np.array_equal(g1, model.flat_grads)
    model.loss_and_grads(src[:2, :5], tin[:2, :4], tout[:2, :4], src_lengths=[5, 3])
    assert tc._C.encdec_arena_size(model._context()) == size       # smaller: the same arena
    model.loss_and_grads(np.tile(src, (2, 1)), np.tile(tin, (2, 1)), np.tile(tout, (2, 1)))
    assert tc._C.encdec_arena_size(model._context()) == model.activation_bytes(6, 8, 7)
    assert model.activation_bytes(2, 9, 3) != model.activation_bytes(2, 3, 9)


def test_unbatched_input_and_empty_batch():
    cfg = config("pre")
    model = make_model(cfg)
    src, lengths, tin, tout = batch(cfg, 1, 6, 5, lengths=[4])
    logits = model.forward(src[0], tin[0], src_lengths=4)
    assert logits.shape == (5, cfg.tgt_vocab_size)
    np.testing.assert_array_equal(logits, model.forward(src, tin, src_lengths=lengths)[0])
    l1, _ = model.loss_and_grads(src[0], tin[0], tout[0], src_lengths=4)
    g1 = model.flat_grads.copy()
    l2, _ = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    assert l1 == l2 and np.array_equal(g1, model.flat_grads)
    assert model.encode(src[0], src_lengths=4).shape == (6, cfg.n_embd)
    empty = np.zeros((0, 4), np.int64)
    assert model.forward(empty, empty[:, :3]).shape == (0, 3, cfg.tgt_vocab_size)
    loss, _ = model.loss_and_grads(empty, empty, empty)
    assert math.isnan(loss) and not model.flat_grads.any()


# ------------------------------------------------------------------ init and tree interface

def test_init_statistics_and_seeding():
    cfg = EncoderDecoderConfig(src_vocab_size=300, tgt_vocab_size=400, block_size=64,
                               n_encoder_layer=2, n_decoder_layer=8, n_head=4, n_embd=64)
    model = EncoderDecoder.create(cfg, np.random.default_rng(0))
    p = model.parameters
    assert model.dtype == np.float32
    assert abs(p["encoder"]["wte"]["weight"].std() - 0.02) < 0.001
    assert abs(p["decoder"]["h"][0]["crossattention"]["c_attn"]["weight"].std() - 0.02) < 0.001
    assert abs(p["encoder"]["h"][1]["mlp"]["c_proj"]["weight"].std() - 0.02 / 2) < 0.0005
    for key in ("attn", "crossattention", "mlp"):
        w = p["decoder"]["h"][5][key]["c_proj"]["weight"]
        assert abs(w.std() - 0.02 / 4) < 0.0003, key
    assert not p["decoder"]["h"][1]["crossattention"]["q_attn"]["bias"].any()
    assert (p["decoder"]["h"][3]["ln_cross_attn"]["weight"] == 1).all()
    assert not p["encoder"]["ln_f"]["bias"].any()
    same = EncoderDecoder.create(cfg, np.random.default_rng(0))
    other = EncoderDecoder.create(cfg, np.random.default_rng(1))
    assert np.array_equal(model.flat_parameters, same.flat_parameters)
    assert not np.array_equal(model.flat_parameters, other.flat_parameters)
    enc = Encoder.create(cfg.encoder_config(), np.random.default_rng(0), dtype=np.float64)
    assert enc.dtype == np.float64 and (enc.parameters["h"][0]["ln_1"]["weight"] == 1).all()


def test_parameter_tree_layout():
    model = EncoderDecoder.create(config("pre"), np.random.default_rng(0))
    p = model.parameters
    assert list(p) == ["encoder", "decoder"]
    assert list(p["encoder"]) == ["wte", "wpe", "h", "ln_f"] and len(p["encoder"]["h"]) == 2
    assert list(p["decoder"]["h"][1]) == ["ln_1", "attn", "ln_cross_attn", "crossattention",
                                          "ln_2", "mlp"]
    x = p["decoder"]["h"][0]["crossattention"]
    assert x["q_attn"]["weight"].shape == (8, 8) and x["c_attn"]["weight"].shape == (16, 8)
    assert p["decoder"]["wte"]["weight"].shape == (13, 8)
    names = list(model.state_dict())
    assert names[:3] == ["encoder.wte.weight", "encoder.wpe.weight", "encoder.h.0.ln_1.weight"]
    assert "decoder.h.1.crossattention.q_attn.bias" in names and names[-1] == "decoder.ln_f.bias"
    n = sum(a.size for a in flatten(p).values())
    assert model.num_parameters == n == model.flat_parameters.size
    model.flat_parameters[:] = 0.5  # the tree is views of the flat buffer
    assert (p["decoder"]["h"][1]["ln_2"]["bias"] == 0.5).all()
    other = EncoderDecoder.create(config("shared_untied_nobias", norm="post",
                                         position="sinusoidal"), np.random.default_rng(0))
    assert list(other.parameters) == ["wte", "encoder", "decoder", "lm_head"]
    assert list(other.parameters["encoder"]) == ["h"]
    assert list(other.parameters["decoder"]["h"][0]["crossattention"]["c_proj"]) == ["weight"]


def test_with_parameters_copies_and_checks():
    a = make_model(config("pre"))
    tree = tc.tree.tree_map(lambda x: x * 2, a.parameters)
    b = a.with_parameters(tree)
    assert np.array_equal(b.flat_parameters, a.flat_parameters * 2)
    tree["decoder"]["wte"]["weight"][0, 0] = 123.0
    assert b.parameters["decoder"]["wte"]["weight"][0, 0] != 123.0
    with pytest.raises(ValueError, match="missing"):
        a.with_parameters({"encoder": a.parameters["encoder"]})
    bad = tc.tree.tree_map(lambda x: x, a.parameters)
    bad["decoder"]["h"][1]["ln_cross_attn"]["weight"] = np.ones(3)
    with pytest.raises(ValueError, match="decoder.h.1.ln_cross_attn.weight"):
        a.with_parameters(bad)
    bad["decoder"]["h"][1]["ln_cross_attn"]["weight"] = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        a.with_parameters(bad)


def test_copy_and_pickle_keep_views_and_rebuild_the_context():
    cfg = config("pre")
    model = make_model(cfg, np.float32)
    src, lengths, tin, tout = batch(cfg)
    loss = model.loss_and_grads(src, tin, tout, src_lengths=lengths)[0]
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other.flat_parameters is not model.flat_parameters
        other.flat_parameters[0] = 7.0
        assert other.parameters["encoder"]["wte"]["weight"][0, 0] == 7.0
        other.flat_parameters[0] = model.flat_parameters[0]
        assert other.loss_and_grads(src, tin, tout, src_lengths=lengths)[0] == loss
        assert model.parameters["encoder"]["wte"]["weight"][0, 0] != 7.0


def test_one_adamw_call_updates_the_whole_model():
    cfg = config("pre")
    model = make_model(cfg, np.float32)
    src, lengths, tin, tout = batch(cfg, 3, 8, 7)
    before = tc.tree.tree_map(np.copy, model.parameters)
    m, v = np.zeros_like(model.flat_parameters), np.zeros_like(model.flat_parameters)
    loss0, _ = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    F.adamw_update_(model.flat_parameters, model.flat_grads, m, v, step=1, lr=1e-2)
    for name, old in flatten(before).items():
        assert not np.array_equal(flatten(model.parameters)[name], old), name
    assert model.loss_and_grads(src, tin, tout, src_lengths=lengths)[0] < loss0


# ------------------------------------------------------------------ dropout

def test_dropout_modes_and_seeds():
    cfg = config("pre", dropout=0.5)
    model = make_model(cfg)
    src, lengths, tin, tout = batch(cfg)
    a = model.forward(src, tin, src_lengths=lengths)
    assert np.array_equal(a, model.forward(src, tin, src_lengths=lengths))
    model.seed = 1
    assert not np.allclose(a, model.forward(src, tin, src_lengths=lengths))
    la = model.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=0)[0]
    assert la == model.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=0)[0]
    assert la != model.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=9)[0]
    e = model.eval().forward(src, tin, src_lengths=lengths)
    no_drop = EncoderDecoder(config("pre"), model.parameters)
    np.testing.assert_array_equal(e, no_drop.forward(src, tin, src_lengths=lengths))
    assert model.train().training
    with pytest.raises(ValueError, match="seed"):
        model.loss_and_grads(src, tin, tout, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        model.loss_and_grads(src, tin, tout, seed=1.5)


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("variant", ["pre", "post_shared_tied_relu", "shared_untied_nobias"])
def test_save_load_roundtrip(tmp_path, variant):
    cfg = config(variant)
    model = make_model(cfg, np.float32)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = EncoderDecoder.load(path)
    assert loaded.config == cfg and loaded.dtype == np.float32
    assert np.array_equal(loaded.flat_parameters, model.flat_parameters)
    src, lengths, tin, _ = batch(cfg)
    np.testing.assert_array_equal(loaded.forward(src, tin, src_lengths=lengths),
                                  model.forward(src, tin, src_lengths=lengths))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert json.loads(f.metadata()["encoder_decoder_config"]) == cfg.to_dict()
    assert EncoderDecoder.load(path, dtype=np.float64).dtype == np.float64
    enc = make_model(cfg.encoder_config(), np.float32)
    enc.save(tmp_path / "e.safetensors")
    assert np.array_equal(Encoder.load(tmp_path / "e.safetensors").flat_parameters,
                          enc.flat_parameters)


def test_load_rejects_foreign_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="encoder_decoder_config"):
        EncoderDecoder.load(tmp_path / "a.safetensors")
    cfg = config("pre")
    save_file({"encoder.wte.weight": np.zeros((11, 8), np.float32)},
              str(tmp_path / "b.safetensors"),
              metadata={"encoder_decoder_config": json.dumps(cfg.to_dict())})
    with pytest.raises(ValueError, match="n_encoder_layer is 2 but the file holds 0 such layers"):
        EncoderDecoder.load(tmp_path / "b.safetensors")
    make_model(cfg.encoder_config()).save(tmp_path / "e.safetensors")
    with pytest.raises(ValueError, match="encoder_decoder_config"):
        EncoderDecoder.load(tmp_path / "e.safetensors")


# ------------------------------------------------------------------ gradient flow, training

@pytest.mark.parametrize("variant", ["pre", "post_shared_tied_relu", "shared_untied_nobias"])
def test_every_parameter_gets_a_gradient(variant):
    cfg = config(variant)
    model = EncoderDecoder.create(cfg, np.random.default_rng(0))
    src, lengths, tin, tout = batch(cfg, 4, cfg.block_size, cfg.block_size,
                                    lengths=[9, 9, 4, 1], tgt_lengths=[9, 9, 3, 6])
    _, grads = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
    for name, g in flatten(grads).items():
        assert np.isfinite(g).all(), name
        assert np.abs(g).max() > 0, f"{variant}: {name} gets no gradient"
        if name.endswith("wpe/weight"):
            assert (np.abs(g).max(axis=1) > 0).all(), name


def test_learns_to_copy_sequences():
    """A tiny model learns CopyTask (8 symbols, lengths 5..10, vocabulary 13 with the
    specials) from fresh random batches: the loss on a new batch drops below 0.1."""
    from transformer_c.data import CopyTask, collate

    task = CopyTask(min_len=5, max_len=10, symbols="abcdefgh", seed=0)
    tok = task.tokenizer()
    pad, sos, eos = tok.pad_id, tok.sos_id, tok.eos_id
    V = tok.vocab_size

    def draw(n, rng):
        examples = task.sample(n, rng)
        items = [(np.concatenate([[sos], a]), np.concatenate([a, [eos]]))
                 for a in (tok.encode(e.answer) for e in examples)]
        tin, tout, lengths = collate(items, pad)
        src = np.full((n, lengths.max() - 1), pad, np.int64)
        for i, e in enumerate(examples):
            src[i, :lengths[i] - 1] = tok.encode(e.prompt[:-1])
        return src, lengths - 1, tin, tout

    cfg = EncoderDecoderConfig(src_vocab_size=V, block_size=16, n_encoder_layer=1,
                               n_decoder_layer=1, n_head=4, n_embd=32, dropout=0.0,
                               position="learned", share_embeddings=True, pad_id=pad)
    assert V <= 13
    model = EncoderDecoder.create(cfg, np.random.default_rng(0))
    m, v = np.zeros_like(model.flat_parameters), np.zeros_like(model.flat_parameters)
    rng = np.random.default_rng(1)
    losses = []
    threads = tc.get_num_threads()
    tc.set_num_threads(1)  # a model this small runs fastest on one thread (about 2 s here)
    try:
        for step in range(1, 801):
            src, lengths, tin, tout = draw(32, rng)
            loss, _ = model.loss_and_grads(src, tin, tout, src_lengths=lengths)
            losses.append(loss)
            if step > 20 and max(losses[-3:]) < 0.05:
                break
            F.adamw_update_(model.flat_parameters, model.flat_grads, m, v, step=step, lr=3e-3,
                            weight_decay=0.0)
    finally:
        tc.set_num_threads(threads)
    src, lengths, tin, tout = draw(64, np.random.default_rng(2))
    assert losses[0] > 2.0
    assert model.loss(src, tin, tout, src_lengths=lengths) < 0.1, losses[-5:]
    # teacher-forced predictions reproduce the source exactly
    pred = model.forward(src, tin, src_lengths=lengths).argmax(-1)
    real = tout != pad
    assert (pred[real] == tout[real]).mean() > 0.98


# ------------------------------------------------------------------ bad input

def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        config("pre", n_head=3)
    with pytest.raises(ValueError, match="position"):
        config("pre", position="rope")
    with pytest.raises(ValueError, match="position"):
        config("pre", position="none")      # GPT only
    with pytest.raises(ValueError, match="norm"):
        config("pre", norm="sandwich")
    with pytest.raises(ValueError, match="activation"):
        config("pre", activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        config("pre", dropout=1.0)
    with pytest.raises(ValueError, match="n_decoder_layer"):
        config("pre", n_decoder_layer=0)
    with pytest.raises(ValueError, match="share_embeddings"):
        config("pre", share_embeddings=True)
    with pytest.raises(ValueError, match="pad_id"):
        config("pre", pad_id=None)
    with pytest.raises(ValueError, match="unknown"):
        EncoderDecoderConfig.from_dict({**config().to_dict(), "flash": True})
    assert EncoderDecoderConfig.from_dict(config().to_dict()) == config()
    assert EncoderDecoderConfig(src_vocab_size=9).tgt_vocab_size == 9
    with pytest.raises(ValueError, match="vocab_size"):
        EncoderConfig(vocab_size=0)
    with pytest.raises(TypeError, match="EncoderDecoderConfig"):
        EncoderDecoder.create(dict(TINY), np.random.default_rng(0))
    with pytest.raises(TypeError, match="EncoderConfig"):
        Encoder.create(config(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="dtype"):
        EncoderDecoder.create(config(), np.random.default_rng(0), dtype=np.int32)
    with pytest.raises(TypeError, match="random_generator"):
        EncoderDecoder.create(config(), 0)


def test_bad_input():
    cfg = config("pre")
    model = make_model(cfg, np.float32)
    src, lengths, tin, tout = batch(cfg)
    with pytest.raises(IndexError, match="src"):
        model.forward(np.full_like(src, 11), tin)
    with pytest.raises(IndexError, match="tgt"):
        model.forward(src, np.full_like(tin, 13))
    with pytest.raises(IndexError, match="tgt_in"):
        model.loss_and_grads(src, np.full_like(tin, -1), tout)
    with pytest.raises(IndexError, match="tgt_out"):
        model.loss_and_grads(src, tin, np.full_like(tout, 13))
    with pytest.raises(ValueError, match="block_size"):
        model.forward(np.zeros((1, 10), np.int64), tin[:1])
    with pytest.raises(ValueError, match="block_size"):
        model.forward(src, np.zeros((3, 10), np.int64))
    with pytest.raises(TypeError, match="src"):
        model.forward(src.astype(np.float32), tin)
    with pytest.raises(ValueError, match="batch size"):
        model.forward(src, tin[:2])
    with pytest.raises(ValueError, match="tgt"):
        model.forward(src, tin[0])
    with pytest.raises(ValueError, match="tgt_out"):
        model.loss_and_grads(src, tin, tout[:, :3])
    with pytest.raises(ValueError, match="src_lengths"):
        model.forward(src, tin, src_lengths=[1, 2])
    with pytest.raises(ValueError, match="src_lengths"):
        model.forward(src, tin, src_lengths=[1, 2, 8])
    with pytest.raises(TypeError, match="src_lengths"):
        model.forward(src, tin, src_lengths=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="src_key_padding_mask"):
        model.forward(src, tin, src_key_padding_mask=np.ones(src.shape, np.int64))
    with pytest.raises(ValueError, match="src_key_padding_mask"):
        model.forward(src, tin, src_key_padding_mask=np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="not both"):
        model.forward(src, tin, src_lengths=lengths,
                      src_key_padding_mask=lengths_mask(lengths, 7))
    with pytest.raises(ValueError, match="gradient_outputs"):
        model.backward(np.zeros((3, 6, 12), np.float32), src=src, tgt=tin)
    with pytest.raises(TypeError, match="gradient_outputs"):
        model.backward(np.zeros((3, 6, 13)), src=src, tgt=tin)
    with pytest.raises(TypeError, match="ignore_index"):
        model.loss_and_grads(src, tin, tout, ignore_index=1.5)
    enc = make_model(cfg.encoder_config())
    with pytest.raises(ValueError, match="gradient_outputs"):
        enc.backward(np.zeros((3, 7, 9)), src=src)


def test_raw_bindings_raise():
    cfg = config("pre")
    model = make_model(cfg, np.float32)
    ctx = model._context()
    args = model.config.c_fields()
    ids = np.ones((2, 4), np.int64)
    mask = np.ones((2, 4), bool)
    with pytest.raises(TypeError, match="encoder-decoder context"):
        tc._C.encdec_loss_and_grads(object(), ids, None, ids, ids, 0, 0, False)
    with pytest.raises(IndexError, match="tgt_out"):
        tc._C.encdec_loss_and_grads(ctx, ids, None, ids, ids + 99, 0, 0, False)
    with pytest.raises(IndexError, match="src"):
        tc._C.encdec_loss_and_grads(ctx, ids + 10, None, ids, ids, 0, 0, False)
    with pytest.raises(ValueError, match="tgt_out"):
        tc._C.encdec_loss_and_grads(ctx, ids, None, ids, ids[:, :2], 0, 0, False)
    with pytest.raises(ValueError, match="tgt_in"):
        tc._C.encdec_loss_and_grads(ctx, ids, None, ids[:1], ids[:1], 0, 0, False)
    with pytest.raises(ValueError, match="src_mask"):
        tc._C.encdec_forward(ctx, ids, mask[:, :3], ids, 0, False)
    with pytest.raises(TypeError, match="src_mask"):
        tc._C.encdec_forward(ctx, ids, mask.astype(np.uint8), ids, 0, False)
    with pytest.raises(ValueError, match="block_size"):
        tc._C.encdec_forward(ctx, np.zeros((1, 10), np.int64), None, ids[:1], 0, False)
    with pytest.raises(ValueError, match="seed"):
        tc._C.encdec_forward(ctx, ids, None, ids, -5, False)
    flat = model.flat_parameters
    with pytest.raises(ValueError, match="params must be 1-D"):
        tc._C.encdec_create(flat[:-1].copy(), flat[:-1].copy(), args)
    with pytest.raises(TypeError, match="grads"):
        tc._C.encdec_create(flat, np.zeros(flat.size), args)
    with pytest.raises(ValueError, match="share memory"):
        tc._C.encdec_create(flat, flat, args)
    with pytest.raises(ValueError, match="invalid encoder-decoder config"):
        tc._C.encdec_create(flat, flat.copy(), {**args, "position": 2})  # RoPE
    with pytest.raises(ValueError, match="invalid encoder-decoder config"):
        tc._C.encdec_create(flat, flat.copy(), {**args, "share": True})
    with pytest.raises(ValueError, match="src_len"):
        tc._C.encdec_arena_bytes(False, args, 2, 10, 3)
    with pytest.raises(ValueError, match="encdec_arena_bytes"):
        model.activation_bytes(2 ** 62, 4, 4)
