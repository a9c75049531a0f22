"""attention="block_sparse" in the models (GPTConfig / EncoderConfig fields attention,
sparse_block, sparse_window, sparse_stride, sparse_global): the C fast path against the module
path, the sparse model against the dense one under the equivalent mask (layer by layer),
KV-cached decoding (single rows and left-padded batches) against the forward on each prefix,
generation with the cache against generation without it, checkpoints (round trip; files
without the new fields load as dense), the option table, and bad configs naming the field.
The PyTorch twins of tests/test_gpt.py and tests/test_encoder_decoder.py cover
block_sparse variants too."""
import json

import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from test_attention_sparse import np_pattern
from transformer_c import _C
from transformer_c.generate import FunctionModel, generate
from transformer_c.nn import GPT, Encoder, EncoderConfig, GPTConfig
from transformer_c.tree import flatten

F = tc.functional
SPARSE = dict(attention="block_sparse", sparse_block=4, sparse_window=2, sparse_stride=3,
              sparse_global=1)
TOL = {np.float64: 1e-10, np.float32: 2e-4}


def gpt(dtype=np.float64, seed=0, **kw):
    base = dict(vocab_size=17, block_size=64, n_layer=2, n_head=2, n_embd=12, **SPARSE)
    base.update(kw)
    m = GPT.create(GPTConfig(**base), rng(seed), dtype=dtype, training=False)
    flat = m.flat_parameters
    flat += rng(seed + 1).normal(0, 0.3, flat.shape).astype(dtype)
    return m


def test_option_table():
    assert tc.options.ATTENTIONS == ("dense", "block_sparse")
    assert tc.options.option_index("attention", "block_sparse") == 1
    with pytest.raises(ValueError, match="attention"):
        tc.options.check_option("attention", "sparse")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [{}, dict(position="rope", norm="post"),
                                dict(sparse_block=1, sparse_window=5, sparse_stride=4,
                                     sparse_global=0, dropout=0.1)])
def test_fast_path_equals_module_path(dtype, kw):
    m = gpt(dtype, **kw)
    m.training = m.config.dropout > 0
    m.seed = 5
    idx = rng(3).integers(0, 17, (3, 61))
    tgt = rng(4).integers(0, 17, (3, 61))
    t = TOL[dtype]
    np.testing.assert_allclose(m.forward(idx, fast=True), m.forward(idx, fast=False),
                               rtol=t, atol=t)
    la, ga = m.loss_and_grads(idx, tgt, fast=True)
    lb, gb = m.loss_and_grads(idx, tgt, fast=False)
    assert abs(la - lb) < t
    for name, g in flatten(ga).items():
        np.testing.assert_allclose(g, flatten(gb)[name], rtol=t, atol=t, err_msg=name)
    # the attention maps of inspect show the pattern: hidden keys exactly 0
    maps = m.inspect(idx[:1], hidden_states=False).attentions
    c = m.config
    keep = np_pattern(61, 61, c.sparse_block, c.sparse_window, c.sparse_stride,
                      c.sparse_global) & np.tri(61, dtype=bool)
    for a in maps:
        assert np.all(a[..., ~keep] == 0) and np.all(a[..., keep] > 0)


def test_sparse_differs_from_dense_and_covers_it_when_wide():
    m = gpt()
    idx = rng(3).integers(0, 17, (2, 60))
    dense = GPT(GPTConfig(**{**m.config.to_dict(), "attention": "dense"}), m.parameters,
                training=False)
    assert np.abs(m.forward(idx) - dense.forward(idx)).max() > 1e-3
    wide = GPT(GPTConfig(**{**m.config.to_dict(), "sparse_window": 16}), m.parameters,
               training=False)  # every block in the window: dense attention
    np.testing.assert_allclose(wide.forward(idx), dense.forward(idx), atol=1e-12)


def test_layer_equals_dense_layer_with_the_mask():
    """The module path's attention layer with sparse= equals the dense layer given the
    equivalent boolean attn_mask."""
    r = rng(7)
    att = tc.nn.SelfAttention.create(12, 3, r, causal=True)
    L = F.sparse_layout(4, 2, 3, 1)
    sp = tc.nn.SelfAttention(att.c_attn, att.c_proj, 3, causal=True, sparse=L)
    x = r.standard_normal((2, 45, 12))
    keep = np_pattern(45, 45, 4, 2, 3, 1)
    np.testing.assert_allclose(sp.forward(x), att.forward(x, attn_mask=keep), atol=1e-12)
    G = r.standard_normal(x.shape)
    g1, d1 = sp.backward(G, x=x)
    g2, d2 = att.backward(G, x=x, attn_mask=keep)
    np.testing.assert_allclose(d1["x"], d2["x"], atol=1e-11)
    for k, v in flatten(g1).items():
        np.testing.assert_allclose(v, flatten(g2)[k], atol=1e-11)
    assert sp.with_parameters(sp.parameters).sparse == L


def test_layer_decode_equals_forward():
    r = rng(8)
    L = F.sparse_layout(3, 1, 2, 0)
    sp = tc.nn.SelfAttention.create(12, 2, r, causal=True, sparse=L)
    x = r.standard_normal((2, 30, 12))
    cache = sp.init_cache(32, (2,))
    outs = [sp.decode(x[:, :7], cache)] + [sp.decode(x[:, t:t + 1], cache)
                                           for t in range(7, 30)]
    np.testing.assert_allclose(np.concatenate(outs, axis=1), sp.forward(x), atol=1e-12)


# ------------------------------------------------------------------ KV-cached decoding

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_kv_decode_equals_forward_left_padded(dtype, position):
    """Rows of prompt lengths 1, 6, 11 prefilled together (left padding), then stepped:
    every step's logits equal the forward of that row's prefix alone (so the pattern reads
    positions, not cache slots)."""
    m = gpt(dtype, position=position)
    seqs = [rng(20 + i).integers(0, 17, 40) for i in range(3)]
    lens, steps = [1, 6, 11], 25
    T = max(lens)
    idx = np.zeros((3, T), np.int64)
    pad = np.array([T - n for n in lens], np.int64)
    for b, (s, n) in enumerate(zip(seqs, lens)):
        idx[b, pad[b]:] = s[:n]
    dec = _C.gpt_kv_create(m.flat_parameters, m.config.c_fields(), 3, T + steps)
    logits = _C.gpt_kv_prefill(dec, idx, pad)
    t_ = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    for t in range(steps + 1):
        for b, (s, n) in enumerate(zip(seqs, lens)):
            np.testing.assert_allclose(logits[b], m.forward(s[:n + t])[-1], **t_)
        if t < steps:
            logits = _C.gpt_kv_step(dec, np.array([s[n + t] for s, n in zip(seqs, lens)]))


def test_generate_cached_equals_uncached():
    m = gpt(np.float64, seed=3)
    prompts = [rng(30).integers(0, 17, 5), rng(31).integers(0, 17, 1),
               rng(32).integers(0, 17, 14)]
    ref = FunctionModel(lambda ids: m.forward(ids))
    for kw in (dict(), dict(num_beams=3), dict(temperature=0.8, top_k=5, seed=2)):
        a = generate(m, prompts, max_new_tokens=30, **kw)
        b = generate(ref, prompts, max_new_tokens=30, **kw)
        for x, y in zip(a.tokens, b.tokens):
            assert np.array_equal(x, y)


# ------------------------------------------------------------------ configs and checkpoints

def test_checkpoint_round_trip_and_old_files(tmp_path):
    m = gpt(np.float32)
    m.save(tmp_path / "m.safetensors")
    back = GPT.load(tmp_path / "m.safetensors", training=False)
    assert back.config == m.config and back.config.attention == "block_sparse"
    idx = rng(1).integers(0, 17, (1, 50))
    np.testing.assert_array_equal(back.forward(idx), m.forward(idx))
    # a config written before these fields existed loads as dense attention
    d = m.config.to_dict()
    for k in SPARSE:
        d.pop(k)
    old = GPTConfig.from_dict(json.loads(json.dumps(d)))
    assert old.attention == "dense" and old.c_fields()["attention"] == 0
    e = EncoderConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=8, **SPARSE)
    assert EncoderConfig.from_dict(e.to_dict()) == e


@pytest.mark.parametrize("field,value,exc", [
    ("attention", "sparse", ValueError), ("attention", None, ValueError),
    ("sparse_block", 0, ValueError), ("sparse_window", 0, ValueError),
    ("sparse_stride", -1, ValueError), ("sparse_global", -3, ValueError),
    ("sparse_block", 2.5, ValueError), ("sparse_window", True, ValueError),
])
def test_bad_config_names_the_field(field, value, exc):
    for cls in (GPTConfig, EncoderConfig):
        with pytest.raises(exc, match=field):
            cls(**{**dict(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=8),
                   **SPARSE, field: value})


def test_c_config_checks_the_fields():
    cfg = GPTConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=8, **SPARSE)
    P = np.zeros(_C.gpt_num_params(cfg.c_fields()) if hasattr(_C, "gpt_num_params") else
                 GPT.create(cfg, rng(0)).flat_parameters.size, np.float64)
    for field, value in (("attention", 2), ("sparse_block", 0), ("sparse_window", 0),
                         ("sparse_stride", -1)):
        with pytest.raises(ValueError, match=field if field == "attention" else "sparse"):
            _C.gpt_create(P, np.zeros_like(P), {**cfg.c_fields(), field: value})
    with pytest.raises(TypeError, match="sparse_global"):
        _C.gpt_create(P, np.zeros_like(P), {**cfg.c_fields(), "sparse_global": 1.0})


def test_encoder_block_sparse_module_path():
    cfg = EncoderConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, n_embd=8,
                        dropout=0.0, **SPARSE)
    enc = Encoder.create(cfg, rng(2), dtype=np.float64)
    dense = Encoder(EncoderConfig(**{**cfg.to_dict(), "attention": "dense"}), enc.parameters)
    src = rng(3).integers(0, 11, (2, 37))
    lengths = np.array([37, 20])
    a = enc.forward(src, src_lengths=lengths)
    assert np.abs(a - dense.forward(src, src_lengths=lengths)).max() > 1e-4
    # the padding cannot leak in: the real rows of row 1 equal row 1 alone
    alone = enc.forward(src[1:, :20])
    np.testing.assert_allclose(a[1, :20], alone[0], atol=1e-12)


def test_two_threads_batch_split_equals_one_thread(threads):
    """The data-parallel split of the fast path (2 threads, B >= 2) runs the same pattern."""
    m = gpt(np.float64, seed=4)
    idx = rng(5).integers(0, 17, (4, 50))
    tgt = rng(6).integers(0, 17, (4, 50))
    threads(1)
    l1, g1 = m.loss_and_grads(idx, tgt)
    threads(2)
    l2, g2 = m.loss_and_grads(idx, tgt)
    lm, _ = m.loss_and_grads(idx, tgt, fast=False)
    assert abs(l1 - l2) < 1e-12 and abs(l1 - lm) < 1e-12
    for name, g in flatten(g1).items():
        np.testing.assert_allclose(flatten(g2)[name], g, atol=1e-12, err_msg=name)
