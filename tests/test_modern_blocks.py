"""The modern block options of issue 17 at the model level (their kernels:
tests/test_rmsnorm.py; the PyTorch twins of GPT and Bert run them in test_gpt.py's and
test_bert.py's VARIANTS): RMSNorm (norm_type), QK-norm (qk_norm) and logit soft-capping
(logit_softcap) in KV-cached decoding against the forward, with threads, checkpoints
written before these options existed, and config validation naming the field."""
import json

import numpy as np
import pytest

from test_decode import check_steps
from test_gpt import make_model
from transformer_c import _C
from transformer_c.nn import GPT, Bert, BertConfig, Encoder, EncoderConfig, GPTConfig

TINY = dict(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=12)
NEW = ("norm_type", "qk_norm", "logit_softcap")
OPTIONS = [
    dict(norm_type="rmsnorm"),
    dict(qk_norm=True),
    dict(logit_softcap=2.0),
    dict(norm_type="rmsnorm", qk_norm=True, logit_softcap=5.0, position="rope", bias=False),
    dict(qk_norm=True, norm="post", position="rope", rope_interleaved=True, n_head=3),
    dict(norm_type="rmsnorm", norm="post", position="sinusoidal", logit_softcap=1.0),
    dict(qk_norm=True, n_kv_head=1, position="rope", norm_type="rmsnorm", bias=False),
    dict(qk_norm=True, n_kv_head=2, n_head=4, logit_softcap=3.0),  # head size 3
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", OPTIONS)
def test_kv_decoding_equals_forward(kw, dtype):
    """Prefill of left-padded rows, then steps: every step's logits are the forward's (C
    fast path) of each row's prefix alone."""
    model = make_model(GPTConfig(**{**TINY, **kw}), dtype, seed=2, noise=0.3)
    seqs = [np.random.default_rng(5 + i).integers(0, 13, 20) for i in range(3)]
    check_steps(model, seqs, [1, 4, 9], 6)


def test_kv_decoding_equals_module_path():
    model = make_model(GPTConfig(**{**TINY, **OPTIONS[3]}), np.float64, seed=3, noise=0.3)
    seqs = [np.random.default_rng(8).integers(0, 13, 16), np.random.default_rng(9).integers(0, 13, 16)]
    check_steps(model, seqs, [3, 7], 5, fast=False)


def test_soft_capped_logits_are_bounded_and_sampling_matches_the_forward():
    from transformer_c.generate import FunctionModel, generate

    model = make_model(GPTConfig(**{**TINY, "logit_softcap": 0.5}), np.float32, seed=4,
                       noise=2.0)
    logits = model.forward(np.arange(10) % 13)
    assert np.abs(logits).max() <= 0.5 and np.abs(logits).max() > 0.4  # saturated: tanh = 1
    prompts = [np.array([1, 2, 3]), np.array([4])]
    got = generate(model, prompts, max_new_tokens=6, temperature=0.8, seed=3)
    ref = generate(FunctionModel(lambda ids: model.forward(ids)), prompts, max_new_tokens=6,
                   temperature=0.8, seed=3)
    for a, b in zip(got.tokens, ref.tokens):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-4)


@pytest.mark.openmp
@pytest.mark.parametrize("kw", OPTIONS[:4])
def test_two_threads_agree_with_one(threads, kw):
    """The data-parallel fast path (2 threads, B >= 2) agrees with one thread to rounding."""
    model = make_model(GPTConfig(**{**TINY, **kw}), np.float64, seed=6)
    idx = np.random.default_rng(1).integers(0, 13, (4, 9))
    tgt = np.random.default_rng(2).integers(0, 13, (4, 9))
    threads(1)
    l1, g1 = model.loss_and_grads(idx, tgt)
    g1 = model.flat_grads.copy()
    threads(2)
    l2, _ = model.loss_and_grads(idx, tgt)
    np.testing.assert_allclose(l2, l1, rtol=1e-12)
    np.testing.assert_allclose(model.flat_grads, g1, rtol=1e-10, atol=1e-12)


def test_defaults_reproduce_the_models_before_the_options(tmp_path):
    """A config dict or checkpoint written before these fields existed loads with the
    defaults (layer norm, no QK-norm, no cap): the same parameters, the same numbers."""
    model = make_model(GPTConfig(**TINY), np.float32, seed=7)
    path = tmp_path / "old.safetensors"
    model.save(path)
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["gpt_config"])
    assert all(k in cfg for k in NEW)
    meta["gpt_config"] = json.dumps({k: v for k, v in cfg.items() if k not in NEW})
    save_file(load_file(str(path)), str(path), metadata=meta)
    old = GPT.load(path)
    assert (old.config.norm_type, old.config.qk_norm, old.config.logit_softcap) == \
        ("layernorm", False, 0.0)
    assert old.config == model.config
    idx = np.arange(12) % 13
    np.testing.assert_array_equal(old.forward(idx), model.forward(idx))
    assert GPTConfig.from_dict({k: v for k, v in cfg.items() if k not in NEW}) == model.config


def test_qk_norm_parameters_layout_and_init():
    cfg = GPTConfig(**{**TINY, "qk_norm": True, "norm_type": "rmsnorm"})
    m = GPT.create(cfg, np.random.default_rng(0))
    a = m.parameters["h"][1]["attn"]
    assert list(a) == ["c_attn", "c_proj", "q_norm", "k_norm"]
    assert a["q_norm"]["weight"].shape == a["k_norm"]["weight"].shape == (6,)
    assert (a["q_norm"]["weight"] == 1).all() and (a["k_norm"]["weight"] == 1).all()
    assert m.num_parameters == GPT.create(GPTConfig(**TINY), np.random.default_rng(0)) \
        .num_parameters + 2 * 2 * 6
    assert _C.gpt_arena_bytes(False, cfg.c_fields(), 2, 8) > \
        _C.gpt_arena_bytes(False, GPTConfig(**TINY).c_fields(), 2, 8)


@pytest.mark.parametrize("make", [
    lambda **kw: EncoderConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, **kw),
    lambda **kw: BertConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, **kw),
])
def test_encoder_and_bert_run_the_norm_options(make):
    cfg = make(norm_type="rmsnorm", qk_norm=True)
    cls = Encoder if isinstance(cfg, EncoderConfig) else Bert
    m = cls.create(cfg, np.random.default_rng(0))
    assert "q_norm" in m.parameters["h"][0]["attn"]
    with pytest.raises(ValueError, match="logit_softcap"):
        make(logit_softcap=2.0)


@pytest.mark.parametrize("field,value", [
    ("norm_type", "batchnorm"), ("norm_type", 1), ("qk_norm", 1), ("qk_norm", "yes"),
    ("logit_softcap", -1.0), ("logit_softcap", float("nan")), ("logit_softcap", float("inf")),
    ("logit_softcap", True),
])
def test_bad_option_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{**TINY, field: value})


def test_the_c_config_refuses_bad_values_naming_them():
    c = GPTConfig(**TINY).c_fields()
    for v in (-1, 2):
        with pytest.raises(ValueError, match="'norm_type' must be a"):
            _C.gpt_arena_bytes(False, {**c, "norm_type": v}, 1, 4)
    with pytest.raises(ValueError, match="'qk_norm' must be a bool"):
        _C.gpt_arena_bytes(False, {**c, "qk_norm": 2}, 1, 4)
    for v in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="logit_softcap"):
            _C.gpt_kv_create(np.zeros(10, np.float32), {**c, "logit_softcap": v}, 1, 4)


@pytest.mark.parametrize("kw", OPTIONS[:4])
def test_inspect_fast_equals_module_path(kw):
    """The fast path's read-out (attention probabilities from the kept q, k: the normalised
    ones with qk_norm) against the module path's."""
    model = make_model(GPTConfig(**{**TINY, **kw}), np.float64, seed=9)
    idx = np.random.default_rng(3).integers(0, 13, (2, 10))
    fast, slow = model.inspect(idx), model.inspect(idx, fast=False)
    np.testing.assert_allclose(fast.logits, slow.logits, rtol=1e-10, atol=1e-10)
    for a, b in zip(fast.attentions + fast.hidden_states, slow.attentions + slow.hidden_states):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_qk_norm_with_grouped_kv_heads_is_taken_and_a_bad_count_named():
    # QK-norm with grouped kv heads (the k-norm over the n_kv_head key heads) is a valid
    # config on every model and in C; a count that does not divide n_head still is not
    # (tests/test_gqa_models.py runs the combination against PyTorch, C and the KV cache)
    for cls in (GPTConfig, EncoderConfig, BertConfig):
        assert cls(n_head=4, n_embd=16, qk_norm=True, n_kv_head=2).kv_heads == 2
        with pytest.raises(ValueError, match="n_kv_head"):
            cls(n_head=4, n_embd=16, qk_norm=True, n_kv_head=3)
    fields = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, n_embd=16,
                       qk_norm=True).c_fields()
    assert _C.gpt_arena_bytes(False, dict(fields, NKV=2), 1, 4) > 0
    with pytest.raises(ValueError, match="NKV"):
        _C.gpt_arena_bytes(False, dict(fields, NKV=3), 1, 4)
