"""One implementation per layer and one option vocabulary: the activation table, the
coursework classes as adapters of the core layers (same numbers, renamed keys), norm /
causal / activation values checked by name, the deprecated spellings (with their
warnings) and the two mask polarities of transformer_c.data."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from transformer_c import nn
from transformer_c.data import causal_attn_mask, causal_mask, key_padding_mask, pad_mask
from transformer_c.options import ACTIVATIONS

F = tc.functional


# ------------------------------------------------------------------ the activation table

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_table_covers_the_c_names_and_calls_the_kernels(dtype):
    x = rng(0).standard_normal((3, 5)).astype(dtype)
    g = rng(1).standard_normal((3, 5)).astype(dtype)
    assert set(F.activation.__globals__["_INDEX"]) == set(ACTIVATIONS)
    with pytest.warns(DeprecationWarning, match="options.ACTIVATIONS"):
        from transformer_c.nn.blocks import ACTIVATIONS as old
    assert old == ACTIVATIONS
    want = {"relu": (F.relu(x), F.relu_backward(g, x)),
            "gelu": (F.gelu(x), F.gelu_backward(g, x)),
            "gelu_tanh": (F.gelu(x, approximate="tanh"),
                          F.gelu_backward(g, x, approximate="tanh")),
            "silu": (F.silu(x), F.silu_backward(g, x)),
            "relu2": (F.relu2(x), F.relu2_backward(g, x))}
    for name in ACTIVATIONS:
        np.testing.assert_array_equal(F.activation(name, x), want[name][0])
        np.testing.assert_array_equal(F.activation_backward(name, g, x), want[name][1])


@pytest.mark.parametrize("bad", ["swish", "GELU", None, 1])
def test_unknown_activation_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="activation"):
        F.activation(bad, np.ones(2))
    with pytest.raises(ValueError, match="activation"):
        F.activation_backward(bad, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="activation"):
        nn.FeedForward(nn.Linear.create(4, 8, rng(2)), nn.Linear.create(8, 4, rng(2)), bad)
    with pytest.raises(ValueError, match="activation"):
        nn.Activation(bad)


# ------------------------------------------------------------------ adapters of one core

def test_coursework_classes_are_adapters_without_their_own_compute():
    for adapter, core in ((nn.Linear, nn.Dense), (nn.LayerNorm, nn.Norm),
                          (nn.FeedForward, nn.MLP), (nn.ReLU, nn.Activation),
                          (nn.GELU, nn.Activation)):
        assert issubclass(adapter, core)
        assert adapter.forward_cached is core.forward_cached
        assert adapter.backward_cached is core.backward_cached
    assert nn.DecoderLayer._run is nn.Block._run
    assert nn.DecoderLayer._run_backward is nn.DecoderBlock._run_backward
    assert nn.MultiHeadAttention._attend is nn.SelfAttention._attend
    assert nn.ScaledSelfAttention._attend is nn.CrossAttention._attend


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_is_mlp_with_other_keys(activation):
    r = rng(3)
    ff = nn.FeedForward.create(6, 12, 6, r, activation=activation)
    mlp = nn.MLP(nn.Dense(ff.layer1.weights, ff.layer1.bias),
                 nn.Dense(ff.layer2.weights, ff.layer2.bias), activation)
    x, g = r.standard_normal((2, 3, 6)), r.standard_normal((2, 3, 6))
    np.testing.assert_array_equal(ff.forward(x=x), mlp.forward(x=x))
    (gf, xf), (gm, xm) = ff.backward(g, x=x), mlp.backward(g, x=x)
    np.testing.assert_array_equal(xf["x"], xm["x"])
    assert set(gf) == {"layer1", "layer2"} and set(gf["layer1"]) == {"weights", "bias"}
    np.testing.assert_array_equal(gf["layer2"]["weights"], gm["c_proj"]["weight"])
    assert type(ff.with_parameters(ff.parameters)) is nn.FeedForward


def test_decoder_layer_is_a_block_with_coursework_keys():
    r = rng(4)
    dl = nn.DecoderLayer.create(8, 2, 16, r, causal=True, norm="pre")
    assert list(dl.parameters) == ["MHA", "Norm1", "FFN", "Norm2"]
    assert dl.norm == "pre" and dl.pre_norm and nn.DecoderLayer.create(8, 2, 16, r).norm == "post"
    x = r.standard_normal((5, 8))
    y = dl.forward(x=x)
    # by hand: x + MHA(Norm1(x)), then + FFN(Norm2(.))
    x1 = x + dl.mha.forward(q=dl.norm1.forward(x=x), k=dl.norm1.forward(x=x),
                            v=dl.norm1.forward(x=x))
    np.testing.assert_array_equal(y, x1 + dl.ffn.forward(x=dl.norm2.forward(x=x1)))


# ------------------------------------------------------------------ option spellings

@pytest.mark.parametrize("bad", ["middle", True, 1])
def test_norm_placement_is_checked_by_name(bad):
    r = rng(5)
    dl = nn.DecoderLayer.create(8, 2, 16, r)
    with pytest.raises(ValueError, match="norm"):
        nn.DecoderLayer(dl.mha, dl.norm1, dl.ffn, dl.norm2, norm=bad)
    blk = nn.Block(nn.Norm.create(8), nn.SelfAttention.create(8, 2, r), nn.Norm.create(8),
                   nn.MLP.create(8, 16, 8, r))
    with pytest.raises(ValueError, match="norm"):
        nn.Block(blk.ln_1, blk.attn, blk.ln_2, blk.mlp, norm=bad)


@pytest.mark.parametrize("pre", [False, True])
def test_pre_norm_is_a_deprecated_alias_of_norm(pre):
    r = rng(6)
    new = nn.DecoderLayer.create(8, 2, 16, r, norm="pre" if pre else "post")
    with pytest.warns(DeprecationWarning, match="pre_norm"):
        old = nn.DecoderLayer(new.mha, new.norm1, new.ffn, new.norm2, pre_norm=pre)
    assert old.norm == new.norm
    x = r.standard_normal((4, 8))
    np.testing.assert_array_equal(old.forward(x=x), new.forward(x=x))
    with pytest.warns(DeprecationWarning, match="pre_norm"):
        dec = nn.Decoder.create(11, 16, 8, rng(7), 2, seq_len=8, pre_norm=pre)
    assert all(layer.norm == new.norm for layer in dec.layers)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
        nn.DecoderLayer(new.mha, new.norm1, new.ffn, new.norm2, norm="pre", pre_norm=pre)


def test_causal_bool_and_names_agree_in_every_attention_layer():
    r = rng(8)
    x = r.standard_normal((2, 5, 8))
    for make in (lambda c: nn.SelfAttention.create(8, 2, rng(9), causal=c),
                 lambda c: nn.MultiHeadAttention.create(8, 8, 2, rng(9), causal=c)):
        for flag, name in ((True, "top_left"), (False, "none")):
            a, b = make(flag), make(name)
            kw = dict(x=x) if isinstance(a, nn.SelfAttention) else dict(q=x, k=x, v=x)
            np.testing.assert_array_equal(a.forward(**kw), b.forward(**kw))
    with pytest.raises(ValueError, match="causal"):
        nn.CrossAttention.create(8, 2, r, causal="diagonal")


# ------------------------------------------------------------------ mask polarities

def test_mask_helpers_say_their_polarity():
    x = np.zeros((2, 4))
    np.testing.assert_array_equal(key_padding_mask(x, [2, 4]),
                                  [[True, True, False, False], [True] * 4])
    np.testing.assert_array_equal(pad_mask(x, [2, 4]), ~key_padding_mask(x, [2, 4]))
    np.testing.assert_array_equal(causal_attn_mask(3), ~causal_mask(3))
    assert causal_attn_mask(3)[2, 0] and not causal_attn_mask(3)[0, 2]
    with pytest.raises(ValueError, match="lengths"):
        key_padding_mask(x, [5, 1])
    # the library's polarity goes straight into the attention
    r = rng(10)
    q = r.standard_normal((2, 1, 4, 3))
    a = F.scaled_dot_product_attention(q, q, q, attn_mask=causal_attn_mask(4),
                                       key_padding_mask=key_padding_mask(x, [2, 4]))
    b = F.scaled_dot_product_attention(q, q, q, is_causal=True,
                                       key_padding_mask=key_padding_mask(x, [2, 4]))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
