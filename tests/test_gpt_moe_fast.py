"""The mixture-of-experts GPT (ffn="moe") on the whole-model C paths: the training fast path
(gpt_train: loss + moe_aux_weight * aux and every gradient) and its routing read-out against
the module path (nn.MoE over the same kernels) and finite differences, independence from the
thread count (routing over the whole batch), and KV-cached decoding (every token routed
alone) against decoding without a cache. The PyTorch twin of tests/test_moe_models.py
checks the fast path too (its fast=True)."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import num_grad
from test_gpt import batch, make_model
from transformer_c.generate import FunctionModel, GPTModel, as_model, generate
from transformer_c.nn import GPT, GPTConfig
from transformer_c.tree import flatten

MOE = dict(vocab_size=13, block_size=9, n_layer=2, n_head=2, n_embd=8, n_inner=12,
           ffn="moe", moe_experts=4)
# odd sizes: width 10 (head size 5), expert width 7, 3 experts, vocabulary 11
ODD = dict(vocab_size=11, block_size=7, n_layer=3, n_head=2, n_embd=10, n_inner=7,
           ffn="moe", moe_experts=3)
TOL = {np.float64: 1e-10, np.float32: 1e-5}

VARIANTS = [
    dict(MOE, moe_top_k=1),
    dict(MOE, moe_top_k=2, moe_capacity=0.6),                       # drops
    dict(MOE, moe_top_k=1, moe_capacity=0.5, norm="post", position="rope"),
    dict(MOE, moe_top_k=2, bias=False, activation="relu", dropout=0.2, moe_aux_weight=0.5),
    dict(MOE, moe_top_k=1, dropout=0.1, position="sinusoidal", tie_embeddings=False,
         attention="block_sparse", sparse_block=2, sparse_window=2),
    dict(ODD, moe_top_k=2, moe_capacity=0.7, activation="silu"),
    dict(ODD, moe_top_k=1, moe_aux_weight=0.0, activation="gelu"),
]


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def assert_paths_agree(model, idx, tgt, tol, seed=5):
    """loss_and_grads, forward and routing_stats: fast path == module path (relative)."""
    lf, gf = model.loss_and_grads(idx, tgt, seed=seed, fast=True)
    gf = {k: v.copy() for k, v in flatten(gf).items()}
    lm, gm = model.loss_and_grads(idx, tgt, seed=seed, fast=False)
    gm = flatten(gm)
    assert list(gf) == list(gm)
    assert abs(lf - lm) <= tol * max(1.0, abs(lm)), (lf, lm)
    for k in gm:
        assert rel_err(gf[k], gm[k]) <= tol, k
    for fast_stats, mod_stats in zip(model.routing_stats(idx), model.routing_stats(idx, fast=False)):
        np.testing.assert_array_equal(fast_stats["tokens_per_expert"],
                                      mod_stats["tokens_per_expert"])
        np.testing.assert_array_equal(fast_stats["dropped_per_expert"],
                                      mod_stats["dropped_per_expert"])
        assert fast_stats["capacity"] == mod_stats["capacity"]
        assert abs(fast_stats["aux"] - mod_stats["aux"]) <= tol
    assert rel_err(model.forward(idx), model.forward(idx, fast=False)) <= tol
    return lf, gf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_path_equals_module_path(variant, dtype):
    cfg = GPTConfig(**variant)
    model = make_model(cfg, dtype, seed=3)
    model.seed = 5  # routing_stats and loss draw the dropout masks of loss_and_grads'
    idx, tgt = batch(cfg, 3, cfg.block_size - 1)
    loss, grads = assert_paths_agree(model, idx, tgt, TOL[dtype])
    # the aux term is in the loss: the cross-entropy alone is loss()
    aux = sum(s["aux"] for s in model.routing_stats(idx))
    assert abs(loss - cfg.moe_aux_weight * aux - model.loss(idx, tgt, seed=5)) <= \
        TOL[dtype] * 10 * max(1.0, loss)
    if cfg.moe_capacity < 1:
        assert sum(s["dropped"] for s in model.routing_stats(idx)) > 0
    assert all(np.any(g != 0) for k, g in grads.items() if k.endswith(("router", "w1", "w2")))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,T", [(1, 1), (2, 1), (1, 5), (4, 3)])
def test_awkward_shapes(B, T, dtype):
    for variant in (dict(ODD, moe_top_k=2, moe_capacity=0.5), dict(ODD, moe_top_k=1)):
        cfg = GPTConfig(**variant)
        model = make_model(cfg, dtype, seed=B + T)
        idx, tgt = batch(cfg, B, T, ignore=False)
        assert_paths_agree(model, idx, tgt, TOL[dtype])
    # unbatched (T,) input
    np.testing.assert_array_equal(model.forward(idx[0]), model.forward(idx[:1])[0])


def test_non_contiguous_and_int32_ids():
    cfg = GPTConfig(**MOE, moe_top_k=2, moe_capacity=0.75)
    model = make_model(cfg, np.float64, seed=1)
    big = np.random.default_rng(0).integers(0, 13, (6, 16))
    idx, tgt = big[::2, ::2], big[1::2, 1::2]  # (3, 8), non-contiguous
    assert not idx.flags.c_contiguous
    loss, _ = model.loss_and_grads(idx, tgt)
    assert loss == model.loss_and_grads(np.ascontiguousarray(idx).astype(np.int32),
                                        np.ascontiguousarray(tgt))[0]
    assert_paths_agree(model, idx, tgt, TOL[np.float64])


def test_ignored_targets_keep_the_aux_gradient():
    """Every target ignored: the loss is NaN (no counted target) and the gradient is that of
    moe_aux_weight * aux alone, on both paths (zero with moe_aux_weight = 0)."""
    for w in (0.3, 0.0):
        cfg = GPTConfig(**MOE, moe_top_k=2, moe_aux_weight=w)
        model = make_model(cfg, np.float64, seed=2)
        idx, _ = batch(cfg, 2, 5)
        tgt = np.full_like(idx, -100)
        lf, gf = model.loss_and_grads(idx, tgt)
        gf = {k: v.copy() for k, v in flatten(gf).items()}
        lm, gm = model.loss_and_grads(idx, tgt, fast=False)
        assert np.isnan(lf) and np.isnan(lm)
        for k, g in flatten(gm).items():
            assert rel_err(gf[k], g) <= 1e-10 if np.any(g) else not np.any(gf[k]), k
        router = gf["h/0/mlp/router"]
        assert np.any(router != 0) if w else not np.any(router)
        # the last layer's experts and ln_f only reach the cross-entropy
        assert not np.any(gf["h/1/mlp/w2"]) and not np.any(gf["ln_f/weight"])


def test_finite_differences_with_dropout():
    """The fast path's loss (cross-entropy + aux, dropout on at a fixed seed) against central
    differences of itself: router, experts, the attention and the embeddings."""
    cfg = GPTConfig(**MOE, moe_top_k=2, moe_aux_weight=0.3, dropout=0.1, moe_capacity=0.8)
    model = make_model(cfg, np.float64, seed=4)
    idx, tgt = batch(cfg, 2, 5, seed=2)
    _, grads = model.loss_and_grads(idx, tgt, seed=9)
    grads = {k: v.copy() for k, v in flatten(grads).items()}
    params = flatten(model.parameters)
    for key in ("h/0/mlp/router", "h/1/mlp/w1", "h/1/mlp/b1", "h/0/mlp/b2",
                "h/0/attn/c_attn/bias", "wpe/weight"):
        want = num_grad(lambda: model.loss_and_grads(idx, tgt, seed=9)[0], params[key])
        np.testing.assert_allclose(grads[key], want, rtol=1e-6, atol=1e-8, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_does_not_change_the_routing(dtype):
    """A batch of B >= threads rows: the dense fast path would split it over the threads;
    a mixture of experts routes the whole batch (capacity, drops, aux) whatever the count."""
    cfg = GPTConfig(**MOE, moe_top_k=2, moe_capacity=0.6, dropout=0.1)
    model = make_model(cfg, dtype, seed=7)
    idx, tgt = batch(cfg, 4, 8)
    old = tc.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            tc.set_num_threads(n)
            loss, grads = model.loss_and_grads(idx, tgt, seed=3)
            out[n] = (loss, {k: v.copy() for k, v in flatten(grads).items()},
                      model.routing_stats(idx), model.forward(idx))
    finally:
        tc.set_num_threads(old)
    (l1, g1, s1, f1), (l2, g2, s2, f2) = out[1], out[2]
    assert abs(l1 - l2) <= TOL[dtype]
    for k in g1:
        assert rel_err(g2[k], g1[k]) <= TOL[dtype], k
    assert rel_err(f2, f1) <= TOL[dtype]
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a["tokens_per_expert"], b["tokens_per_expert"])
        np.testing.assert_array_equal(a["dropped_per_expert"], b["dropped_per_expert"])
    assert sum(s["dropped"] for s in s1) > 0


def test_head_mask_and_inspect():
    cfg = GPTConfig(**MOE, moe_top_k=2, moe_capacity=0.7)
    model = make_model(cfg, np.float64, seed=8)
    idx, tgt = batch(cfg, 2, 6)
    hm = np.array([[1.0, 0.0], [0.5, 1.0]])
    lf, gf = model.loss_and_grads(idx, tgt, head_mask=hm)
    gf = {k: v.copy() for k, v in flatten(gf).items()}
    lm, gm = model.loss_and_grads(idx, tgt, head_mask=hm, fast=False)
    assert abs(lf - lm) <= 1e-10
    for k, g in flatten(gm).items():
        assert rel_err(gf[k], g) <= 1e-10, k
    fast, slow = model.inspect(idx), model.inspect(idx, fast=False)
    np.testing.assert_array_equal(fast.logits, model.forward(idx))
    for a, b in zip(fast.attentions + fast.hidden_states, slow.attentions + slow.hidden_states):
        assert rel_err(a, b) <= 1e-10


def test_routing_read_out_errors():
    dense = GPT.create(GPTConfig(**{**MOE, "ffn": "mlp"}), np.random.default_rng(0))
    dense.forward(np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="moe"):
        tc._C.gpt_moe_routing(dense._context())
    moe = GPT.create(GPTConfig(**MOE), np.random.default_rng(0))
    with pytest.raises(ValueError, match="forward"):
        tc._C.gpt_moe_routing(moe._context())
    with pytest.raises(TypeError):
        tc._C.gpt_moe_routing(None)


@pytest.mark.parametrize("field,value,exc", [
    ("ffn", 2, ValueError), ("ffn", "moe", TypeError), ("moe_top_k", 3, ValueError),
    ("moe_top_k", 0, ValueError), ("moe_experts", 1, ValueError),
    ("moe_capacity", 0.0, ValueError), ("moe_capacity", float("inf"), ValueError),
    ("moe_aux_weight", -1.0, ValueError), ("moe_aux_weight", float("nan"), ValueError),
    ("moe_experts", 2.5, TypeError)])
def test_bad_c_config_is_an_error(field, value, exc):
    """The C config check (gpt_config_ok): a raw binding given a bad MoE field raises,
    naming it (or the fields of an invalid config)."""
    cfg = GPTConfig(**MOE, moe_top_k=2)
    fields = {**cfg.c_fields(), field: value}
    n = GPT.create(cfg, np.random.default_rng(0)).flat_parameters.size
    p, g = np.zeros(n, np.float32), np.zeros(n, np.float32)
    with pytest.raises(exc, match=field if exc is TypeError or field == "ffn" else "moe"):
        tc._C.gpt_create(p, g, fields)
    with pytest.raises(exc):
        tc._C.gpt_kv_create(p, fields, 1, 4)


# ---------------------------------------------------------------------- KV-cached decoding

def no_cache(model):
    """Decoding without a cache: the module path's full forward each step."""
    return FunctionModel(lambda ids: model.forward(ids, fast=False))


@pytest.mark.parametrize("variant", [
    dict(MOE, moe_top_k=1, moe_capacity=4.0),
    dict(MOE, moe_top_k=2, moe_capacity=2.0, norm="post", position="rope"),
    dict(ODD, moe_top_k=2, moe_capacity=1.5, bias=False, activation="relu",
         position="sinusoidal"),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_generate_with_cache_equals_without(variant, dtype):
    """Greedy tokens with the KV cache == without it (left-padded prompts of different
    lengths in one batch), with a capacity that drops nothing (where a full forward and
    token-at-a-time routing agree)."""
    cfg = GPTConfig(**variant)
    model = make_model(cfg, dtype, seed=11, noise=0.3)
    model.eval()
    assert isinstance(as_model(model), GPTModel)
    prompts = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 0, 2, 1])]
    n = cfg.block_size - 5
    cached = generate(model, prompts, max_new_tokens=n)
    plain = generate(no_cache(model), prompts, max_new_tokens=n)
    assert len(cached.tokens) == 3
    for a, b in zip(cached.tokens, plain.tokens):
        np.testing.assert_array_equal(a, b)
    # the logits of every step, not only the argmax
    state, logits = GPTModel(model).start([prompts[0]], max_new_tokens=n + 1)
    seq = list(prompts[0])
    for _ in range(n):
        want = model.forward(np.array(seq), fast=False)[-1]
        assert rel_err(logits[0], want) <= TOL[dtype] * 10
        seq.append(int(np.argmax(logits[0])))
        state, logits = GPTModel(model).step(state, np.array([seq[-1]]))


@pytest.mark.parametrize("top_k", [1, 2])
def test_decoding_routes_every_token_alone(top_k):
    """With a capacity that drops in training, a decoding step still drops nothing: its
    token gets what the module path gives that token run alone; the prefill of a T-token
    prompt equals the module path with a capacity that drops nothing (routing per token)."""
    cfg = GPTConfig(**MOE, moe_top_k=top_k, moe_capacity=0.3)
    model = make_model(cfg, np.float64, seed=12, noise=0.3)
    model.eval()
    prompt = np.array([3, 1, 4, 1, 5, 9])
    assert sum(s["dropped"] for s in model.routing_stats(prompt)) > 0
    wide = GPT(GPTConfig(**{**MOE, "moe_top_k": top_k, "moe_capacity": 4.0}),
               model.parameters, training=False)
    # a one-token prompt: the module path on that token alone drops nothing
    assert sum(s["dropped"] for s in model.routing_stats(prompt[:1], fast=False)) == 0
    _, logits = GPTModel(model).start([prompt[:1]], max_new_tokens=1)
    assert rel_err(logits[0], model.forward(prompt[:1], fast=False)[-1]) <= 1e-10
    # a long prompt: per-token routing == the no-drop module path
    state, logits = GPTModel(model).start([prompt], max_new_tokens=2)
    assert rel_err(logits[0], wide.forward(prompt, fast=False)[-1]) <= 1e-10
    assert rel_err(logits[0], model.forward(prompt, fast=False)[-1]) > 1e-6  # drops differ
    state, logits = GPTModel(model).step(state, np.array([2]))
    want = wide.forward(np.append(prompt, 2), fast=False)[-1]
    assert rel_err(logits[0], want) <= 1e-10
