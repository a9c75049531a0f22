"""The encoder-decoder's block options (BlockOptions: attention=, ffn= and their fields) on
its module path: block-sparse self-attention in both stacks, a mixture of experts in every
layer with the load-balancing loss in loss_and_grads (finite differences), fast=True falling
back to the module path, and clear errors from the C paths, which run the defaults only."""
import numpy as np
import pytest

from conftest import num_grad
from transformer_c.generate import generate
from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig
from transformer_c.tree import flatten

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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_falls_back_to_the_module_path(dtype):
    m = model(dtype, **MOE, **SPARSE)
    src, tin, tout, lengths = data()
    lf, gf = m.loss_and_grads(src, tin, tout, src_lengths=lengths)
    gf = flatten(gf)
    gf = {k: v.copy() for k, v in gf.items()}
    lm, gm = m.loss_and_grads(src, tin, tout, src_lengths=lengths, fast=False)
    assert lf == lm
    for k, g in flatten(gm).items():
        np.testing.assert_array_equal(gf[k], g, err_msg=k)
    np.testing.assert_array_equal(m.forward(src, tin, src_lengths=lengths),
                                  m.forward(src, tin, src_lengths=lengths, fast=False))
    ins = m.inspect(src, tin, src_lengths=lengths)
    assert len(ins.encoder_attentions) == 2 and len(ins.cross_attentions) == 2
    # the aux term: loss() is the cross-entropy alone
    assert lf > m.loss(src, tin, tout, src_lengths=lengths) + 1e-3


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


@pytest.mark.parametrize("options,field", [(MOE, "ffn"), (SPARSE, "attention")])
def test_c_paths_name_the_unsupported_field(options, field):
    m = model(**options)
    m.eval()
    assert m.config.c_unsupported() == (field,)
    with pytest.raises(ValueError, match=field):
        m.config.c_fields()
    with pytest.raises(ValueError, match=field):
        m.activation_bytes(1, 4, 4)
    with pytest.raises(ValueError, match=field):
        generate(m, [np.array([3, 4, 5])], max_new_tokens=2)
    assert model().config.c_unsupported() == ()


@pytest.mark.parametrize("field,value", [("ffn", "moee"), ("moe_top_k", 3),
                                         ("attention", "sparse"), ("sparse_block", 0)])
def test_bad_block_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EncoderDecoderConfig(**{**BASE, **MOE, field: value})
