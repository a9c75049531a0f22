"""The model configs cross into C as dicts of named fields (GPTConfig.c_fields(),
EncoderDecoderConfig.c_fields(): tc_gpt_config / tc_encdec_config's field names): a missing
or unknown field, a value of the wrong type and an option value out of range are errors
naming the field."""
import numpy as np
import pytest

from transformer_c import _C
from transformer_c.nn import GPT, GPTConfig, EncoderDecoder, EncoderDecoderConfig
from transformer_c.options import ACTIVATIONS, NORMS, POSITIONS

GPT_FIELDS = ("V", "maxT", "C", "L", "NH", "H", "bias", "position", "norm", "activation", "tie",
              "eps", "pos_base", "rope_interleaved", "dropout", "attention", "sparse_block",
              "sparse_window", "sparse_stride", "sparse_global", "ffn", "moe_experts",
              "moe_top_k", "moe_capacity", "moe_aux_weight", "norm_type", "qk_norm",
              "logit_softcap", "NKV", "gated")
ED_FIELDS = ("Vs", "Vt", "maxT", "C", "Le", "Ld", "NH", "H", "bias", "position", "norm",
             "activation", "share", "tie", "eps", "pos_base", "dropout", "attention",
             "sparse_block", "sparse_window", "sparse_stride", "sparse_global", "ffn",
             "moe_experts", "moe_top_k", "moe_capacity", "moe_aux_weight", "norm_type",
             "qk_norm", "NKV", "gated")


def gpt():
    return GPT.create(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8,
                                norm="post", activation="relu", position="rope"),
                      np.random.default_rng(0))


def encdec():
    return EncoderDecoder.create(EncoderDecoderConfig(src_vocab_size=11, tgt_vocab_size=13,
                                                      block_size=9, n_encoder_layer=1,
                                                      n_decoder_layer=1, n_head=2, n_embd=8,
                                                      activation="gelu"),
                                 np.random.default_rng(0))


def creators(model):
    """(fields, [call(config)]) over every binding that takes the model's config."""
    flat = model.flat_parameters
    if isinstance(model, GPT):
        return GPT_FIELDS, [lambda c: _C.gpt_create(flat, np.zeros_like(flat), c),
                            lambda c: _C.gpt_arena_bytes(False, c, 1, 4),
                            lambda c: _C.gpt_kv_create(flat, c, 1, 4)]
    return ED_FIELDS, [lambda c: _C.encdec_create(flat, np.zeros_like(flat), c),
                       lambda c: _C.encdec_arena_bytes(False, c, 1, 4, 4),
                       lambda c: _C.encdec_kv_create(flat, c, 1, 4, 4)]


@pytest.mark.parametrize("make", [gpt, encdec])
def test_c_fields_are_the_struct_fields(make):
    model = make()
    fields, calls = creators(model)
    c = model.config.c_fields()
    assert tuple(c) == fields
    assert c["activation"] == ACTIVATIONS.index(model.config.activation)
    assert c["norm"] == NORMS.index(model.config.norm)
    assert c["position"] == POSITIONS.index(model.config.position)
    for call in calls:
        call(c)


@pytest.mark.parametrize("make", [gpt, encdec])
def test_missing_unknown_and_mistyped_fields_name_the_field(make):
    model = make()
    fields, calls = creators(model)
    good = model.config.c_fields()
    for call in calls:
        for name in fields:
            bad = dict(good)
            del bad[name]
            with pytest.raises(TypeError, match=f"missing field '{name}'"):
                call(bad)
        with pytest.raises(TypeError, match="unknown field 'post_norm'"):
            call({**good, "post_norm": 0})
        with pytest.raises(TypeError, match="dict"):
            call(tuple(good.values()))
        with pytest.raises(TypeError, match="'C' must be an int"):
            call({**good, "C": 8.0})
        with pytest.raises(TypeError, match="'C' must be an int"):
            call({**good, "C": True})
        with pytest.raises(TypeError, match="'eps' must be a float"):
            call({**good, "eps": "1e-5"})
        with pytest.raises(ValueError, match="'bias' must be a bool"):
            call({**good, "bias": 2})
        for opt, count in (("activation", len(ACTIVATIONS)), ("norm", len(NORMS)),
                           ("position", len(POSITIONS))):
            for v in (-1, count):
                with pytest.raises(ValueError, match=f"'{opt}' must be a"):
                    call({**good, opt: v})
        with pytest.raises(ValueError, match="invalid"):
            call({**good, "NH": 3})


def test_flags_take_bools_or_0_1():
    model = gpt()
    flat = model.flat_parameters
    c = model.config.c_fields()
    for v in (0, 1, False, True):
        _C.gpt_arena_bytes(False, {**c, "tie": v}, 1, 4)


BLOCK_OPTIONS = ["attention", "sparse_block", "sparse_window", "sparse_stride",
                 "sparse_global", "ffn", "moe_experts", "moe_top_k", "moe_capacity",
                 "moe_aux_weight", "norm_type", "qk_norm", "logit_softcap", "n_kv_head",
                 "gated"]


@pytest.mark.parametrize("cls_name", ["GPTConfig", "EncoderConfig", "BertConfig"])
def test_block_options_follow_each_configs_own_fields(cls_name):
    import dataclasses
    import transformer_c.nn as nn
    names = [f.name for f in dataclasses.fields(getattr(nn, cls_name))]
    assert names[-len(BLOCK_OPTIONS):] == BLOCK_OPTIONS
    assert names[:2] == ["vocab_size", "block_size"]
    cfg = getattr(nn, cls_name)(attention="block_sparse", ffn="moe", moe_top_k=2)
    assert (cfg.attention, cfg.ffn, cfg.moe_top_k, cfg.sparse_block) == \
        ("block_sparse", "moe", 2, 64)


def test_a_config_may_not_redeclare_a_block_option():
    from transformer_c.nn._config import with_block_options

    with pytest.raises(TypeError, match="'ffn'"):
        @with_block_options
        class Bad:
            ffn: str = "mlp"
