"""Grouped-query / multi-query attention in the models (n_kv_head, a block option): GPT
against its PyTorch twin (tests/test_gpt.py's, k and v repeat_interleaved), finite
differences, the C training driver against the module path, the KV caches (module and C
decoder) holding n_kv_head heads, generation, an encoder, checkpoints without the field,
the parameter layout and bad values."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, num_grad, rng
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


# ---------------------------------------------- QK-norm with grouped kv heads (issue 17)
# q_norm over the n_head query heads, k_norm over the n_kv_head key heads (before they are
# shared: the twin normalises k, then repeat_interleaves it), gains of head_size entries.

QK_TOL = {np.float64: 1e-10, np.float32: 1e-5}
QK_VARIANTS = {  # n_head 4: multi-query (1) and n_head / 2 (2), odd head sizes (n_embd 12)
    "mqa": dict(n_kv_head=1),
    "half_rope": dict(n_kv_head=2, position="rope"),
    "half_odd_hs": dict(n_kv_head=2, n_embd=12),
    "mqa_odd_hs_post_rmsnorm_nobias_dropout": dict(n_kv_head=1, n_embd=12, norm="post",
                                                   norm_type="rmsnorm", bias=False,
                                                   dropout=0.2),
    "half_rope_interleaved_softcap_untied": dict(n_kv_head=2, position="rope",
                                                 rope_interleaved=True, logit_softcap=2.0,
                                                 tie_embeddings=False),
}


def qk_config(variant, **kw):
    return GPTConfig(**{**CFG, "qk_norm": True, **QK_VARIANTS[variant], **kw})


@pytest.mark.parametrize("T", [9, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", sorted(QK_VARIANTS))
def test_qk_norm_matches_the_torch_twin(torch, variant, dtype, T):
    """Logits, loss and every gradient (q_norm and k_norm gains included) of the fast path
    and the module path against the PyTorch twin."""
    cfg = qk_config(variant)
    model = make_model(cfg, dtype, seed=3, noise=0.3)
    model.seed = 5
    idx, tgt = batch(cfg, 2, T, ignore=T > 1)
    want_logits, want_loss, want_grads = torch_reference(torch, model, idx, tgt, seed=5,
                                                         training=True)
    want = tc.tree.flatten(want_grads)
    assert want["h/0/attn/k_norm/weight"].shape == (cfg.head_size,)
    tol = QK_TOL[dtype]
    for fast in (True, False):
        close(model.forward(idx, fast=fast), want_logits, tol, f"logits fast={fast}")
        loss, grads = model.loss_and_grads(idx, tgt, fast=fast)
        close(loss, want_loss, tol, f"loss fast={fast}")
        got = tc.tree.flatten(grads)
        assert list(got) == list(want)
        for name in want:
            close(got[name], want[name], tol, f"d{name} fast={fast}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", sorted(QK_VARIANTS))
def test_qk_norm_fast_path_equals_the_module_path(dtype, variant):
    """The C training driver (normalised q | k kept as (B,T,C + KC), k's rstd over the kv
    heads) against the module path: logits, loss and every gradient."""
    model = make_model(qk_config(variant), dtype, seed=9, noise=0.3)
    idx, tgt = batch(model.config, 3, 9)
    tol = QK_TOL[dtype]
    close(model.forward(idx, fast=True), model.forward(idx, fast=False), tol)
    loss, grads = model.loss_and_grads(idx, tgt, fast=True)
    grads = tc.tree.flatten(tc.tree.tree_map(np.copy, grads))
    want_loss, want = model.loss_and_grads(idx, tgt, fast=False)
    want = tc.tree.flatten(want)
    close(loss, want_loss, tol)
    assert list(grads) == list(want)
    for name, g in grads.items():
        close(g, want[name], tol, name)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("variant", ["mqa", "half_rope", "half_odd_hs"])
def test_qk_norm_finite_differences(variant, fast):
    """Every parameter's gradient (both paths) against central differences of the loss."""
    cfg = qk_config(variant, vocab_size=5, block_size=4, n_layer=1,
                    n_embd=12 if "odd" in variant else 8, n_inner=6)
    model = make_model(cfg, seed=4, noise=0.3)
    idx, tgt = batch(cfg, 2, 4, seed=6)
    model.loss_and_grads(idx, tgt, fast=fast)
    got = model.flat_grads.copy()
    loss = (lambda: model.loss(idx, tgt)) if fast else (
        lambda: tc.functional.cross_entropy(model.forward(idx, fast=False), tgt))
    want = num_grad(loss, model.flat_parameters)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", ["mqa", "half_rope", "mqa_odd_hs_post_rmsnorm_nobias_dropout"])
def test_qk_norm_kv_cached_generation_is_the_forwards_argmax(dtype, variant):
    """Greedy tokens of the C KV-cached decoder (the cache holds the normalised, rotated
    n_kv_head key heads) == the argmax of the uncached forward on the growing prefix, from
    prompts of one token (T = 1) and of several, batched with left padding."""
    model = make_model(qk_config(variant), dtype, seed=6, noise=0.5)
    model.eval()  # no dropout in the forward either
    prompts = [np.array([3]), np.array([1, 2, 3, 4, 5]), np.array([7, 7])]
    out = tc.generate.generate(model, prompts, max_new_tokens=4)
    for prompt, tokens in zip(prompts, out.tokens):
        ids = prompt
        for _ in range(4):  # greedy by hand through the full forward
            ids = np.concatenate([ids, [int(model.forward(ids)[-1].argmax())]])
        np.testing.assert_array_equal(np.asarray(tokens)[-4:], ids[-4:])
    # the logits of every step against the forward, to rounding (tests/test_decode.py's)
    from test_decode import check_steps
    seqs = [rng(11 + i).integers(0, 11, 9) for i in range(3)]
    check_steps(model, seqs, [1, 4, 2], 5)


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_qk_norm_module_kv_cache_holds_the_normalised_keys(n_kv_head):
    """nn.SelfAttention.decode with q_norm, k_norm and n_kv_head: token-by-token outputs are
    the causal forward's rows, and the cache holds k_norm(k) of the n_kv_head heads."""
    E, NH, HS = 12, 4, 3  # an odd head size
    r = rng(12)
    att = nn.SelfAttention.create(E, NH, r, n_kv_head=n_kv_head)
    gains = [nn.Norm(r.normal(1, 0.3, HS), eps=1e-5, kind="rmsnorm") for _ in range(2)]
    att = nn.SelfAttention(att.c_attn, att.c_proj, NH, n_kv_head=n_kv_head, q_norm=gains[0],
                           k_norm=gains[1])
    x = r.standard_normal((2, 6, E))
    full = att.forward(x)
    cache = att.init_cache(6, (2,))
    assert cache.k.shape == (2, n_kv_head, 6, HS)
    steps = [att.decode(x[:, t:t + 1], cache) for t in range(6)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)
    k = att.c_attn.forward(x)[..., E:E + n_kv_head * HS]
    k = k.reshape(2, 6, n_kv_head, HS).transpose(0, 2, 1, 3)
    want = k / np.sqrt((k ** 2).mean(-1, keepdims=True) + 1e-5) * gains[1].weight_matrix
    np.testing.assert_allclose(cache.k, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["mqa", "half_odd_hs"])
def test_qk_norm_inspect_and_checkpoints(tmp_path, variant):
    """The fast path's attention read-out (from the kept normalised q, k) against the module
    path's; a checkpoint saved and loaded gives the same logits."""
    model = make_model(qk_config(variant), seed=10, noise=0.3)
    idx = batch(model.config, 2, 7)[0]
    fast, slow = model.inspect(idx, fast=True), model.inspect(idx, fast=False)
    for a, b in zip(fast.attentions + fast.hidden_states, slow.attentions + slow.hidden_states):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    model.save(tmp_path / "m.safetensors")
    back = nn.GPT.load(tmp_path / "m.safetensors")
    assert (back.config.qk_norm, back.config.n_kv_head) == (True, model.config.n_kv_head)
    np.testing.assert_array_equal(back.forward(idx), model.forward(idx))


@pytest.mark.parametrize("cls", [GPTConfig, nn.EncoderConfig, nn.BertConfig,
                                 nn.EncoderDecoderConfig])
def test_qk_norm_takes_grouped_kv_heads_and_bad_ones_are_named(cls):
    for nkv in (1, 2, 4):
        assert cls(n_head=4, n_embd=16, qk_norm=True, n_kv_head=nkv).kv_heads == nkv
    for bad in (3, 0, 8):  # not a divisor of n_head: still a ValueError naming the field
        with pytest.raises(ValueError, match="n_kv_head"):
            cls(n_head=4, n_embd=16, qk_norm=True, n_kv_head=bad)


def test_qk_norm_c_config_takes_grouped_kv_heads():
    fields = qk_config("mqa").c_fields()
    assert (fields["qk_norm"], fields["NKV"]) == (1, 1)
    plain = GPTConfig(**CFG, n_kv_head=1).c_fields()
    # q | k normalised (C + KC per token) and their rstd (NH + NKV) on top of the plain arena
    # (both 64-byte multiples here: no alignment padding), not 2C and 2NH
    extra = tc._C.gpt_arena_bytes(True, fields, 2, 8) - tc._C.gpt_arena_bytes(True, plain, 2, 8)
    assert extra == 2 * 2 * 8 * ((16 + 4) + (4 + 1)) * 8  # L x B x T x elements x 8 bytes
    with pytest.raises(ValueError, match="NKV"):
        tc._C.gpt_arena_bytes(False, dict(fields, NKV=3), 1, 4)
