"""Grouped-query / multi-query attention in the models (n_kv_head, a block option): GPT
against its PyTorch twin (tests/test_gpt.py's, k and v repeat_interleaved), finite
differences, the C training driver against the module path, the KV caches (module and C
decoder) holding n_kv_head heads, generation, an encoder, checkpoints without the field,
the parameter layout and bad values."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, rng
from test_gpt import TOL, batch, close, make_model, torch_reference
from transformer_c import nn
from transformer_c.nn import GPTConfig

CFG = dict(vocab_size=11, block_size=9, n_layer=2, n_head=4, n_embd=16)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(n_kv_head=2), dict(n_kv_head=1, position="rope"),
                                dict(n_kv_head=2, activation="relu2", bias=False,
                                     tie_embeddings=False, dropout=0.1)])
def test_gpt_matches_the_torch_twin(torch, dtype, kw):
    cfg = GPTConfig(**CFG, **kw)
    model = make_model(cfg, dtype, seed=3)
    model.seed = 5
    idx, tgt = batch(cfg, 2, 9)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt, seed=5,
                                                         training=True)
    tol = TOL[dtype]
    close(model.forward(idx), want_logits, tol, "logits")
    loss, grads = model.loss_and_grads(idx, tgt)
    close(loss, want_loss, tol, "loss")
    got, want = tc.tree.flatten(grads), tc.tree.flatten(want_grads)
    assert list(got) == list(want)
    for name in want:
        close(got[name], want[name], tol, name)


def test_parameter_layout_and_count():
    cfg = GPTConfig(**CFG, n_kv_head=2)
    model = make_model(cfg)
    HS, KC = 4, 2 * 4
    assert model.parameters["h"][0]["attn"]["c_attn"]["weight"].shape == (16 + 2 * KC, 16)
    assert model.parameters["h"][1]["attn"]["c_attn"]["bias"].shape == (16 + 2 * KC,)
    dense = make_model(GPTConfig(**CFG))
    saved = 2 * 2 * (16 - KC) * (16 + 1)  # 2 layers x (k, v) x rows (weight + bias) dropped
    assert dense.num_parameters - model.num_parameters == saved
    assert cfg.kv_heads == 2 and GPTConfig(**CFG).kv_heads == 4
    del HS


def test_finite_differences():
    cfg = GPTConfig(**dict(CFG, n_layer=1, n_embd=8), n_kv_head=1)
    model = make_model(cfg, seed=4)
    idx, tgt = batch(cfg, 2, 5)
    # the grouped c_attn weight (its k and v rows shared by the query heads), perturbed in
    # place in the model's own parameter buffer
    W = model.parameters["h"][0]["attn"]["c_attn"]["weight"]
    check_grads(lambda: np.array(model.loss_and_grads(idx, tgt)[0]),
                lambda G: {"W": G * model.loss_and_grads(idx, tgt)[1]["h"][0]["attn"]
                           ["c_attn"]["weight"]}, {"W": W})


def test_kv_cache_holds_n_kv_head_heads_and_generation_matches_the_forward():
    cfg = GPTConfig(**CFG, n_kv_head=1, position="rope")
    model = make_model(cfg, seed=6)
    att = nn.SelfAttention(nn.Dense(**model.parameters["h"][0]["attn"]["c_attn"]),
                           nn.Dense(**model.parameters["h"][0]["attn"]["c_proj"]), 4,
                           n_kv_head=1)
    cache = att.init_cache(9, (2,))
    assert cache.k.shape == (2, 1, 9, 4)  # 1 kv head, not 4: a quarter of the memory per token
    x = rng(7).standard_normal((2, 9, 16))
    full = att.forward(x)
    steps = [att.decode(x[:, t:t + 1], cache) for t in range(9)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)
    out = tc.generate.generate(model, np.array([[1, 2, 3]]), max_new_tokens=4)
    ids = np.array([[1, 2, 3]])
    for _ in range(4):  # greedy by hand through the full forward
        ids = np.concatenate([ids, model.forward(ids)[:, -1:].argmax(-1)], axis=1)
    np.testing.assert_array_equal(np.asarray(out.tokens[0])[-4:], ids[0, -4:])


def test_encoder_takes_n_kv_head(torch):
    ecfg = nn.EncoderConfig(vocab_size=11, block_size=9, n_layer=1, n_head=4, n_embd=8,
                            n_kv_head=2)
    enc = nn.Encoder.create(ecfg, rng(8))
    assert enc.parameters["h"][0]["attn"]["c_attn"]["weight"].shape == (8 + 2 * 4, 8)
    ids = rng(9).integers(0, 11, (2, 6))
    y = enc.forward(ids)
    assert y.shape == (2, 6, 8) and np.isfinite(y).all()


def test_old_checkpoints_load_with_the_default(tmp_path):
    cfg = GPTConfig(**CFG)
    d = cfg.to_dict()
    del d["n_kv_head"]  # a config saved before the field existed
    assert GPTConfig.from_dict(d) == cfg and GPTConfig.from_dict(d).n_kv_head is None
    model = make_model(GPTConfig(**CFG, n_kv_head=2))
    model.save(tmp_path / "m.npz")
    back = nn.GPT.load(tmp_path / "m.npz")
    assert back.config.n_kv_head == 2
    ids = batch(model.config, 1, 5)[0]
    np.testing.assert_array_equal(back.forward(ids), model.forward(ids))


@pytest.mark.parametrize("bad", [0, 3, -1, 2.0, True, "2"])
def test_bad_n_kv_head_names_it(bad):
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(**CFG, n_kv_head=bad)
    with pytest.raises(ValueError, match="n_kv_head"):
        nn.SelfAttention.create(16, 4, rng(0), n_kv_head=bad)


def test_c_fields_carry_the_kv_heads_and_the_c_config_checks_them():
    assert GPTConfig(**CFG).c_fields()["NKV"] == 0
    fields = GPTConfig(**CFG, n_kv_head=2).c_fields()
    assert fields["NKV"] == 2
    with pytest.raises(ValueError, match="NKV"):
        tc._C.gpt_arena_bytes(True, dict(fields, NKV=3), 1, 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(n_kv_head=2), dict(n_kv_head=1, position="rope"),
                                dict(n_kv_head=2, norm="post", dropout=0.2, bias=False)])
def test_fast_path_equals_the_module_path(dtype, kw):
    """The C training driver (grouped c_attn in the arena, the kernels' grouped layout)
    against the module path (nn.SelfAttention over the functional kernels)."""
    model = make_model(GPTConfig(**CFG, **kw), dtype, seed=9)
    idx, tgt = batch(model.config, 3, 9)
    tol = TOL[dtype]
    close(model.forward(idx, fast=True), model.forward(idx, fast=False), tol)
    loss, grads = model.loss_and_grads(idx, tgt, fast=True)
    grads = tc.tree.tree_map(np.copy, grads)
    want_loss, want = model.loss_and_grads(idx, tgt, fast=False)
    close(loss, want_loss, tol)
    for name, g in tc.tree.flatten(grads).items():
        close(g, tc.tree.flatten(want)[name], tol, name)


def test_c_kv_cache_memory_shrinks_by_the_group_size():
    """The C decoder's cache: L x Bmax x Smax x (k, v) x NKV x HS elements."""
    sizes = {}
    for nkv in (None, 2, 1):
        model = make_model(GPTConfig(**CFG, n_kv_head=nkv))
        d = tc._C.gpt_kv_create(model.flat_parameters, model.config.c_fields(), 3, 9)
        sizes[nkv] = tc._C.gpt_kv_state(d)[4]
    assert sizes[None] == 2 * 3 * 9 * 2 * 16 * 8  # L, Bmax, Smax, (k, v), C, float64 bytes
    assert sizes[2] * 2 == sizes[None] and sizes[1] * 4 == sizes[None]


@pytest.mark.parametrize("kw", [dict(n_kv_head=2), dict(n_kv_head=1, gated=True,
                                                         activation="silu")])
def test_inspect_reads_the_grouped_attention_out_of_the_c_forward(kw):
    model = make_model(GPTConfig(**CFG, **kw), seed=10)
    idx = batch(model.config, 2, 7)[0]
    fast = model.inspect(idx, fast=True)
    slow = model.inspect(idx, fast=False)
    for a, b in zip(fast.attentions, slow.attentions):
        assert a.shape == (2, 4, 7, 7)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(fast.hidden_states, slow.hidden_states):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
