"""The encoder-decoder's block options (BlockOptions) on the module path and the C paths:
block-sparse self-attention in both stacks (the pattern's zeros in the probabilities), a
mixture of experts in every layer of both stacks with the load-balancing loss in
loss_and_grads (finite differences; C == module path at 1e-10 / 1e-5; 1 vs 2 threads),
the modern block options (norm_type="rmsnorm", qk_norm, n_kv_head, gated; C == module path
for the loss, every gradient and the attention read-out, the cross-attention's shapes),
KV-cached generation == uncached."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import num_grad
from test_encdec_generate import ModuleReference, check_steps, sources_of, targets_of
from test_encdec_generate import make_model as random_model
from transformer_c.generate import EncoderDecoderModel, as_model, generate
from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig
from transformer_c.tree import flatten

TOL = {np.float64: 1e-10, np.float32: 1e-5}

BASE = dict(src_vocab_size=11, tgt_vocab_size=9, block_size=8, n_encoder_layer=2,
            n_decoder_layer=2, n_head=2, n_embd=8, n_inner=10, dropout=0.0)
MOE = dict(ffn="moe", moe_experts=3, moe_top_k=2, moe_capacity=0.7, moe_aux_weight=0.3)
SPARSE = dict(attention="block_sparse", sparse_block=2, sparse_window=1)


def data(seed=1):
    r = np.random.default_rng(seed)
    src, tin, tout = r.integers(1, 11, (2, 7)), r.integers(1, 9, (2, 5)), r.integers(1, 9, (2, 5))
    tout[1, 3:] = 0  # padded targets (pad_id 0)
    return src, tin, tout, np.array([7, 4])


def model(dtype=np.float64, **kw):
    return EncoderDecoder.create(EncoderDecoderConfig(**{**BASE, **kw}),
                                 np.random.default_rng(0), dtype=dtype)


@pytest.mark.parametrize("options", [MOE, SPARSE, {**MOE, **SPARSE, "dropout": 0.1},
                                     {**MOE, "moe_top_k": 1, "norm": "post"}])
def test_finite_differences(options):
    """loss_and_grads (cross-entropy + moe_aux_weight x every layer's aux) against central
    differences of the loss, in both stacks."""
    m = model(**options)
    src, tin, tout, lengths = data()
    loss, grads = m.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=3)
    grads = {k: v.copy() for k, v in flatten(grads).items()}
    params = flatten(m.parameters)
    keys = ["decoder/h/0/attn/c_attn/bias", "encoder/h/1/attn/c_attn/weight"]
    if options.get("ffn") == "moe":
        keys += ["encoder/h/0/mlp/router", "decoder/h/1/mlp/router", "decoder/h/0/mlp/w1"]
    for key in keys:
        want = num_grad(lambda: m.loss_and_grads(src, tin, tout, src_lengths=lengths,
                                                 seed=3)[0], params[key])
        np.testing.assert_allclose(grads[key], want, rtol=1e-6, atol=1e-8, err_msg=key)


def test_sparse_pattern_reaches_both_stacks():
    """A pattern that covers every key is dense attention (to rounding); one that does not
    changes the encoder's output and the decoder's logits."""
    src, tin, _, lengths = data()
    dense = model()
    wide = EncoderDecoder(EncoderDecoderConfig(**BASE, attention="block_sparse",
                                               sparse_block=8), dense.parameters)
    np.testing.assert_allclose(wide.forward(src, tin, src_lengths=lengths),
                               dense.forward(src, tin, src_lengths=lengths), atol=1e-12)
    narrow = EncoderDecoder(EncoderDecoderConfig(**BASE, **SPARSE), dense.parameters)
    assert not np.allclose(narrow.forward(src, tin, src_lengths=lengths),
                           dense.forward(src, tin, src_lengths=lengths))
    # blocks of 2, a window of 1: a query sees its own block's keys only, in the encoder's
    # and the decoder's self-attention (the cross-attention stays dense)
    ins = narrow.inspect(src, tin, src_lengths=lengths)
    for att, n in ((ins.encoder_attentions, 7), (ins.attentions, 5)):
        for a in att:
            q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            assert np.all(a[..., q // 2 != k // 2] == 0) and np.any(a[..., q == k] > 0)
    assert np.all(ins.cross_attentions[0][0] > 0)


def test_moe_layout_and_checkpoint(tmp_path):
    m = model(**MOE)
    for stack in ("encoder", "decoder"):
        mlp = m.parameters[stack]["h"][1]["mlp"]
        assert {k: v.shape for k, v in mlp.items()} == {
            "router": (3, 8), "w1": (3, 10, 8), "b1": (3, 10), "w2": (3, 8, 10), "b2": (3, 8)}
        assert mlp["w2"].std() < mlp["w1"].std()  # the residual projection's scaled init
    path = tmp_path / "ed.safetensors"
    m.save(path)
    back = EncoderDecoder.load(path)
    assert back.config == m.config
    src, tin, _, lengths = data()
    np.testing.assert_array_equal(back.forward(src, tin, src_lengths=lengths),
                                  m.forward(src, tin, src_lengths=lengths))
    # a config saved before the block options existed reads back with their defaults
    old = {k: v for k, v in model().config.to_dict().items()
           if k not in ("attention", "ffn") and not k.startswith(("sparse_", "moe_"))}
    assert EncoderDecoderConfig.from_dict(old) == model().config


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def assert_paths_agree(m, tol, seed=3, loose=()):
    """The C fast path == the module path (loss, every gradient, logits) to tol; gradients
    whose name ends with one of loose to 10 tol."""
    src, tin, tout, lengths = data()
    lf, gf = m.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=seed)
    gf = {k: v.copy() for k, v in flatten(gf).items()}
    lm, gm = m.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=seed, fast=False)
    assert abs(lf - lm) <= tol * max(1.0, abs(lm))
    for k, g in flatten(gm).items():
        assert rel_err(gf[k], g) <= (10 * tol if k.endswith(loose) else tol), k
    assert rel_err(m.forward(src, tin, src_lengths=lengths),
                   m.forward(src, tin, src_lengths=lengths, fast=False)) <= tol
    return lf, gf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("extra", [{}, {"norm": "post", "dropout": 0.1},
                                   {"moe_top_k": 1, "bias": False, "moe_capacity": 0.5,
                                    "activation": "gelu", "position": "learned"},
                                   {"share_embeddings": True, "tgt_vocab_size": 11,
                                    "tie_embeddings": False, "n_embd": 10, "n_inner": 7},
                                   {**SPARSE, "dropout": 0.1},
                                   {**SPARSE, "sparse_stride": 2, "sparse_global": 1,
                                    "norm": "post"}])
def test_fast_path_equals_module_path(extra, dtype):
    m = model(dtype, **{**MOE, **extra})
    loss, grads = assert_paths_agree(m, TOL[dtype])
    assert m._ctx is not None  # the C path ran
    assert np.any(grads["encoder/h/0/mlp/router"]) and np.any(grads["decoder/h/1/mlp/w1"])
    dense = {k: v for k, v in extra.items() if not k.startswith("moe_")}
    assert m.activation_bytes(2, 7, 5) > model(dtype, **dense).activation_bytes(2, 7, 5)
    src, tin, _, lengths = data()
    fast, slow = (m.inspect(src, tin, src_lengths=lengths, fast=f) for f in (True, False))
    for a, b in zip(fast.encoder_attentions + fast.attentions + fast.cross_attentions,
                    slow.encoder_attentions + slow.attentions + slow.cross_attentions):
        assert rel_err(a, b) <= TOL[dtype]
    if "attention" in extra:  # the dense MLP with the same pattern, on both paths
        assert_paths_agree(model(dtype, **extra), TOL[dtype])


def test_moe_all_targets_ignored_keeps_the_aux_gradient():
    m = model(**MOE)
    src, tin, tout, lengths = data()
    tout[:] = 0  # every target is the pad id
    lf, gf = m.loss_and_grads(src, tin, tout, src_lengths=lengths)
    gf = {k: v.copy() for k, v in flatten(gf).items()}
    lm, gm = m.loss_and_grads(src, tin, tout, src_lengths=lengths, fast=False)
    assert np.isnan(lf) and np.isnan(lm)
    for k, g in flatten(gm).items():
        assert (rel_err(gf[k], g) <= 1e-10) if np.any(g) else not np.any(gf[k]), k
    assert np.any(gf["encoder/h/0/mlp/router"]) and not np.any(gf["decoder/h/1/mlp/w2"])


def test_moe_thread_count_does_not_change_the_routing():
    m = model(**MOE, dropout=0.1)
    src, tin, tout, lengths = data()
    src, tin, tout = (np.concatenate([a, a[::-1]]) for a in (src, tin, tout))
    lengths = np.concatenate([lengths, lengths[::-1]])
    old, out = tc.get_num_threads(), []
    try:
        for n in (1, 2):
            tc.set_num_threads(n)
            loss, grads = m.loss_and_grads(src, tin, tout, src_lengths=lengths, seed=4)
            out.append((loss, {k: v.copy() for k, v in flatten(grads).items()}))
    finally:
        tc.set_num_threads(old)
    assert abs(out[0][0] - out[1][0]) <= 1e-10
    for k, g in out[0][1].items():
        assert rel_err(out[1][1][k], g) <= 1e-10, k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [dict(norm="pre", **MOE, ), dict(norm="post", **SPARSE),
                                     dict(norm="pre", **MOE, **SPARSE, sparse_stride=3)])
def test_generate_with_cache_equals_without(options, dtype):
    """MoE with a capacity that drops nothing (decoding routes every target token alone),
    block-sparse self-attention: the decoder's logits step by step against the module
    path's forward of each row alone, and greedy / beam generation against the uncached
    module reference."""
    m = random_model(dtype, **{**options, "moe_capacity": 1.5})
    assert isinstance(as_model(m), EncoderDecoderModel)
    sources = sources_of([5, 1, 8], seed=30)
    check_steps(m, sources, targets_of(3, 6), 2, 3)
    for kw in (dict(), dict(num_beams=3)):
        a = generate(m, sources, max_new_tokens=8, **kw)
        b = generate(ModuleReference(m), sources, max_new_tokens=8, **kw)
        for x, y in zip(a.tokens, b.tokens):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("field,value", [("ffn", "moee"), ("moe_top_k", 3),
                                         ("attention", "sparse"), ("sparse_block", 0)])
def test_bad_block_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderDecoderConfig(**{**BASE, **MOE, field: value})


# ------------------------------------------------------------------ the modern block options

MODERN = [dict(norm_type="rmsnorm"), dict(qk_norm=True), dict(n_kv_head=1),
          dict(gated=True, activation="silu"),
          dict(norm_type="rmsnorm", gated=True, activation="silu", n_kv_head=1),
          dict(norm_type="rmsnorm", gated=True, activation="silu", n_kv_head=1, qk_norm=True),
          dict(norm_type="rmsnorm", gated=True, activation="silu", qk_norm=True),
          dict(n_head=4, n_kv_head=2, gated=True, activation="gelu", norm="post",
               dropout=0.1, bias=False),
          dict(norm_type="rmsnorm", qk_norm=True, norm="post", activation="relu2",
               position="learned", dropout=0.1, **SPARSE)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", MODERN)
def test_modern_options_fast_path_equals_module_path(options, dtype):
    """Loss, every gradient, the logits and every attention read-out of the C fast path
    against the module path (the layout: gradients are compared by name)."""
    m = model(dtype, **options)
    m.flat_parameters[...] += np.random.default_rng(9).normal(
        0, 0.1, m.num_parameters).astype(dtype)  # norm gains, biases away from 1, 0
    # float32: the QK-norm gains' gradients are sums over every token and head with heavy
    # cancellation (~1e-4 of terms ~1e-2): both paths land 1e-5 .. 3e-5 from the float64
    # truth, in different summation orders (token-major rows here, head-major there)
    loose = ("q_norm/weight", "k_norm/weight") if dtype == np.float32 else ()
    _, grads = assert_paths_agree(m, TOL[dtype], loose=loose)
    assert m._ctx is not None  # the C path ran
    for key in ("encoder/h/0/attn/c_attn/weight", "decoder/h/1/ln_cross_attn/weight"):
        assert np.any(grads[key])
    src, tin, _, lengths = data()
    fast, slow = (m.inspect(src, tin, src_lengths=lengths, fast=f) for f in (True, False))
    for a, b in zip(fast.encoder_attentions + fast.attentions + fast.cross_attentions,
                    slow.encoder_attentions + slow.attentions + slow.cross_attentions):
        assert rel_err(a, b) <= TOL[dtype]


@pytest.mark.parametrize("B,S,T", [(1, 1, 1), (3, 1, 4), (2, 5, 1)])
def test_modern_options_awkward_shapes(B, S, T):
    """Odd widths (C 15, three heads of 5, one kv head, MLP width 7), S or T = 1 (with S =
    1 the cross-attention's probabilities are exactly 1: its q side's gradients are
    rounding noise around 0, hence the absolute floor)."""
    m = model(np.float64, n_embd=15, n_head=3, n_kv_head=1, n_inner=7, norm_type="rmsnorm",
              gated=True, activation="silu")
    r = np.random.default_rng(B * 100 + S * 10 + T)
    src, tin, tout = r.integers(0, 11, (B, S)), r.integers(0, 9, (B, T)), r.integers(1, 9, (B, T))
    lf, gf = m.loss_and_grads(src, tin, tout)
    gf = {k: v.copy() for k, v in flatten(gf).items()}
    lm, gm = m.loss_and_grads(src, tin, tout, fast=False)
    assert abs(lf - lm) <= 1e-10 * max(1.0, abs(lm))
    for k, g in flatten(gm).items():
        np.testing.assert_allclose(gf[k], g, rtol=1e-10, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("options", [dict(norm_type="rmsnorm", qk_norm=True, gated=True,
                                          activation="silu", n_kv_head=1),
                                     dict(n_kv_head=1, gated=True, activation="silu",
                                          norm_type="rmsnorm", norm="post")])
def test_modern_options_finite_differences(options):
    m = model(**options)
    src, tin, tout, lengths = data()
    _, grads = m.loss_and_grads(src, tin, tout, src_lengths=lengths)
    grads = {k: v.copy() for k, v in flatten(grads).items()}
    params = flatten(m.parameters)
    keys = ["decoder/h/1/attn/c_attn/weight", "encoder/h/0/mlp/c_gate/weight",
            "decoder/h/0/ln_cross_attn/weight", "encoder/ln_f/weight"]
    if options.get("qk_norm"):
        keys += ["encoder/h/1/attn/q_norm/weight", "decoder/h/0/attn/k_norm/weight"]
    for key in keys:
        if key not in params:
            continue
        want = num_grad(lambda: m.loss(src, tin, tout, src_lengths=lengths), params[key])
        np.testing.assert_allclose(grads[key], want, rtol=1e-6, atol=1e-8, err_msg=key)


def test_modern_options_layout():
    """Grouped kv heads shrink the self-attentions' c_attn only (the cross-attention keeps
    n_head kv heads and no QK-norm); qk_norm adds attn.q_norm, k_norm after attn.c_proj;
    gated adds mlp.c_gate after c_fc."""
    m = model(n_kv_head=1, gated=True)
    d = m.parameters["decoder"]["h"][0]
    assert d["attn"]["c_attn"]["weight"].shape == (8 + 2 * 4, 8)
    assert list(d["mlp"]) == ["c_fc", "c_gate", "c_proj"]
    x = d["crossattention"]
    assert x["q_attn"]["weight"].shape == (8, 8) and x["c_attn"]["weight"].shape == (16, 8)
    q = model(qk_norm=True).parameters["encoder"]["h"][1]["attn"]
    assert list(q) == ["c_attn", "c_proj", "q_norm", "k_norm"]
    assert q["q_norm"]["weight"].shape == (4,)
    with pytest.raises(ValueError, match="n_kv_head"):
        EncoderDecoderConfig(**BASE, n_kv_head=3)  # not a divisor of n_head


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", MODERN[:7] + [
    dict(n_head=4, n_kv_head=2, gated=True, activation="gelu", norm="post"),
    dict(norm_type="rmsnorm", qk_norm=True, norm="post", activation="relu2", **SPARSE)])
def test_modern_options_generate_with_cache_equals_without(options, dtype):
    """The decoder's logits step by step against the module path's forward of each row
    alone, and greedy / beam generation against the uncached module reference."""
    m = random_model(dtype, **options)
    sources = sources_of([5, 1, 8], seed=31)
    check_steps(m, sources, targets_of(3, 6), 2, 3)
    check_steps(m, sources[1:], targets_of(2, 4), 1, 2, fast=True)
    for kw in (dict(), dict(num_beams=3)):
        a = generate(m, sources, max_new_tokens=8, **kw)
        b = generate(ModuleReference(m), sources, max_new_tokens=8, **kw)
        for x, y in zip(a.tokens, b.tokens):
            np.testing.assert_array_equal(x, y)
