"""Attention weights out of every attention path: functional.scaled_dot_product_attention
(return_weights=True) and attention_weights (C: tc_attention_probs) against a NumPy
softmax, the materialised reference kernel and torch, with every mask kind, T = 1, odd
sizes, both dtypes, dropout (pre-dropout probabilities, output bitwise unchanged); the
nn layers (SelfAttention, CrossAttention, the coursework MultiHeadAttention /
ScaledSelfAttention) against torch.nn.MultiheadAttention(need_weights=True,
average_attn_weights=False) with the weights copied in; bad input names the argument."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from test_attention_masks import random_masks, masks_of, visible
from test_attention_nn import load_self, torch_masks, make_masks, MASKS, with_random_biases
from transformer_c import nn

F = tc.functional
TOL = {np.float32: 2e-6, np.float64: 1e-13}
KINDS = ["none", "bool_full", "bool_2d", "bool_heads", "bool_rows", "float", "float_2d",
         "key_padding", "all"]


def np_probs(q, k, keep=None, bias=None, kpm=None, causal=0, scale=None):
    """softmax(scale q k^T + masks) in float64 NumPy; fully masked rows all 0."""
    q, k = q.astype(np.float64), k.astype(np.float64)
    lead, T, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ np.swapaxes(k, -1, -2)
    if bias is not None:
        s = s + bias
    vis = visible(lead, T, S, keep, kpm, causal) & (s > -np.inf)
    s = np.where(vis, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True, initial=-np.inf)
    e = np.where(vis, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
    z = e.sum(-1, keepdims=True)
    return np.where(z > 0, e / np.where(z > 0, z, 1), 0)


def qkv(lead, T, S, DK, DV, dtype, seed=0):
    r = rng(seed)
    return tuple(r.standard_normal(lead + (n, d)).astype(dtype)
                 for n, d in ((T, DK), (S, DK), (S, DV)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [0, 1, 2])
@pytest.mark.parametrize("impl", ["tiled", "reference"])
def test_weights_match_numpy_and_output(dtype, kind, causal, impl):
    lead, T, S = (2, 3), 7, 11
    q, k, v = qkv(lead, T, S, 5, 3, dtype, seed=len(kind) + causal)
    keep, bias, kpm = random_masks(lead, T, S, rng(causal), kind)
    if bias is not None:
        bias = bias.astype(dtype)
    mk = masks_of(keep, bias, kpm)
    if kind == "all":  # keep and bias together: as one float mask
        bias = np.where(keep, bias, -np.inf).astype(dtype)
        keep, mk = None, dict(attn_mask=bias, key_padding_mask=kpm)
    cm = [False, True, "bottom_right"][causal]
    out0 = F.scaled_dot_product_attention(q, k, v, is_causal=cm, implementation=impl, **mk)
    out, w = F.scaled_dot_product_attention(q, k, v, is_causal=cm, return_weights=True,
                                            implementation=impl, **mk)
    assert w.shape == lead + (T, S) and w.dtype == dtype
    assert np.array_equal(out, out0)  # the output is bitwise the same
    want = np_probs(q, k, keep, bias, kpm, causal)
    np.testing.assert_allclose(w, want, atol=TOL[dtype] * 10, rtol=0)
    assert np.all(w[want == 0] == 0)  # masked keys: exactly 0
    np.testing.assert_allclose(w @ v.astype(np.float64), out, atol=TOL[dtype] * 50, rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_weights_equal_reference_kernel(dtype):
    """The weights of the tiled forward against the materialised reference's."""
    q, k, v = qkv((3, 2), 13, 9, 7, 5, dtype, seed=4)
    kpm = rng(1).random((3, 9)) > 0.3
    a = F.scaled_dot_product_attention(q, k, v, key_padding_mask=kpm, is_causal=True,
                                       return_weights=True)
    b = F.scaled_dot_product_attention(q, k, v, key_padding_mask=kpm, is_causal=True,
                                       return_weights=True, implementation="reference")
    np.testing.assert_allclose(a[1], b[1], atol=TOL[dtype] * 10, rtol=0)
    np.testing.assert_allclose(a[0], b[0], atol=TOL[dtype] * 50, rtol=0)


@pytest.mark.parametrize("shape", [((), 1, 1), ((1,), 1, 5), ((2,), 5, 1), ((3, 1), 1, 3),
                                   ((2, 2), 0, 3), ((2,), 3, 0)])
def test_odd_sizes_and_t1(shape):
    lead, T, S = shape
    q, k, v = qkv(lead, T, S, 3, 2, np.float64)
    out, lse, w = F.scaled_dot_product_attention(q, k, v, return_lse=True, return_weights=True)
    assert w.shape == lead + (T, S)
    np.testing.assert_allclose(w, np_probs(q, k), atol=1e-14)
    np.testing.assert_allclose(F.attention_weights(q, k, lse), w, atol=0)


def test_fully_masked_rows_are_zero():
    q, k, v = qkv((2,), 4, 3, 3, 2, np.float64)
    out, w = F.scaled_dot_product_attention(q, k, v, is_causal="bottom_right",
                                            return_weights=True)  # rows 0 see no key
    assert np.all(w[:, 0] == 0) and np.allclose(w[:, 1:].sum(-1), 1)


def test_dropout_gives_pre_dropout_probabilities_and_same_output():
    q, k, v = qkv((2, 3), 6, 6, 4, 4, np.float64)
    out0 = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.3, seed=7)
    out, w = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.3, seed=7,
                                            return_weights=True)
    assert np.array_equal(out, out0)
    _, w_nodrop = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                 return_weights=True)
    np.testing.assert_allclose(w, w_nodrop, atol=1e-15)
    Z = F.dropout_mask((2, 3, 6, 6), 0.3, seed=7)
    np.testing.assert_allclose((w * Z) @ v, out, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_weights_match_torch(torch, dtype):
    q, k, v = qkv((2, 3), 5, 8, 4, 4, dtype)
    kpm = rng(2).random((2, 8)) > 0.3
    kpm[:, 0] = True
    _, w = F.scaled_dot_product_attention(q, k, v, key_padding_mask=kpm, is_causal=True,
                                          return_weights=True)
    tq, tk = torch.from_numpy(q), torch.from_numpy(k)
    s = tq @ tk.transpose(-1, -2) / np.sqrt(4)
    hide = ~torch.ones(5, 8, dtype=torch.bool).tril() | ~torch.from_numpy(kpm)[:, None, None]
    want = torch.softmax(s.masked_fill(hide, float("-inf")), -1).numpy()
    np.testing.assert_allclose(w, want, atol=TOL[dtype] * 10)


def test_bad_input_names_the_argument():
    q, k, v = qkv((2,), 3, 4, 5, 2, np.float64)
    _, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match="lse"):
        F.attention_weights(q, k, lse[:, :2])
    with pytest.raises(TypeError, match="lse"):
        F.attention_weights(q, k, lse.astype(np.float32))
    with pytest.raises(ValueError, match="k"):
        F.attention_weights(q, k[..., :3], lse)
    with pytest.raises(ValueError, match="key_padding_mask"):
        F.attention_weights(q, k, lse, key_padding_mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 5), bool),
                                       return_weights=True)
    with pytest.raises(ValueError, match="causal"):
        tc._C.attention_probs(q[:, None], k[:, None], lse[:, None], None, None, None, 1.0, 7)
    with pytest.raises(ValueError, match="scale"):
        tc._C.attention_probs(q[:, None], k[:, None], lse[:, None], None, None, None,
                              float("nan"), 0)


# ------------------------------------------------------------------ the nn layers

def torch_weights(torch, t, x, mem, attn_mask, kpm, causal, T, S):
    am, kp = torch_masks(torch, attn_mask, kpm, causal, T, S)
    y, w = t(torch.from_numpy(x), torch.from_numpy(mem), torch.from_numpy(mem), attn_mask=am,
             key_padding_mask=kp, need_weights=True, average_attn_weights=False)
    return y.detach().numpy(), w.detach().numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", MASKS)
def test_self_attention_weights_match_torch(torch, dtype, kind):
    E, NH, B, T = 12, 3, 2, 9
    r = rng(len(kind))
    attn_mask, kpm, causal = make_masks(kind, B, NH, T, T, r, dtype)
    m = with_random_biases(nn.SelfAttention.create(E, NH, r, causal=causal, dtype=dtype), r)
    t = torch.nn.MultiheadAttention(E, NH, batch_first=True,
                                    dtype=torch.float64 if dtype == np.float64 else torch.float32)
    load_self(torch, t, m)
    x = r.standard_normal((B, T, E)).astype(dtype)
    am = attn_mask.reshape(B, NH, T, T) if kind == "bool_per_head" else attn_mask
    y, w = m.forward(x, key_padding_mask=kpm, attn_mask=am, return_weights=True)
    assert np.array_equal(y, m.forward(x, key_padding_mask=kpm, attn_mask=am))
    ty, tw = torch_weights(torch, t, x, x, attn_mask, kpm, causal, T, T)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, tw, atol=tol)
    np.testing.assert_allclose(y, ty, atol=tol * 10)
    avg = m.forward(x, key_padding_mask=kpm, attn_mask=am, return_weights=True,
                    average_weights=True)[1]
    np.testing.assert_allclose(avg, tw.mean(1), atol=tol)
    np.testing.assert_array_equal(m.attention_maps(x, kpm, am), w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_attention_weights_match_torch(torch, dtype):
    E, NH, B, T, S = 8, 2, 3, 4, 6
    r = rng(5)
    m = with_random_biases(nn.CrossAttention.create(E, NH, r, dtype=dtype), r)
    t = torch.nn.MultiheadAttention(E, NH, batch_first=True,
                                    dtype=torch.float64 if dtype == np.float64 else torch.float32)
    p = m.parameters
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.from_numpy(np.concatenate([p["q_attn"]["weight"],
                                                                p["c_attn"]["weight"]])))
        t.in_proj_bias.copy_(torch.from_numpy(np.concatenate([p["q_attn"]["bias"],
                                                              p["c_attn"]["bias"]])))
        t.out_proj.weight.copy_(torch.from_numpy(p["c_proj"]["weight"]))
        t.out_proj.bias.copy_(torch.from_numpy(p["c_proj"]["bias"]))
    x = r.standard_normal((B, T, E)).astype(dtype)
    mem = r.standard_normal((B, S, E)).astype(dtype)
    kpm = r.random((B, S)) > 0.3
    kpm[:, 0] = True
    y, w = m.forward(x, mem, key_padding_mask=kpm, return_weights=True)
    ty, tw = torch_weights(torch, t, x, mem, None, kpm, False, T, S)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert w.shape == (B, NH, T, S)
    np.testing.assert_allclose(w, tw, atol=tol)
    np.testing.assert_allclose(y, ty, atol=tol * 10)


@pytest.mark.parametrize("causal", [False, True])
def test_coursework_multihead_weights(torch, causal):
    d_in, E, H, B, T = 6, 8, 2, 2, 5
    r = rng(3)
    mha = nn.MultiHeadAttention.create(d_in, E, H, r, causal=causal)
    x = r.standard_normal((B, T, d_in))
    y, w = mha.forward(x, x, x, return_weights=True)
    assert np.array_equal(y, mha.forward(x, x, x)) and w.shape == (B, H, T, T)
    for i, h in enumerate(mha.heads):  # each head: softmax(x W_q (x W_k)^T / sqrt(d_k))
        s = (x @ h.W_q) @ np.swapaxes(x @ h.W_k, -1, -2) / np.sqrt(h.W_k.shape[1])
        if causal:
            s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        want = np.exp(s - s.max(-1, keepdims=True))
        np.testing.assert_allclose(w[:, i], want / want.sum(-1, keepdims=True), atol=1e-13)
        _, wh = h.forward(x, x, x, return_weights=True)
        np.testing.assert_allclose(wh, w[:, i], atol=1e-15)
    avg = mha.forward(x, x, x, return_weights=True, average_weights=True)[1]
    np.testing.assert_allclose(avg, w.mean(1), atol=1e-15)
    # heads of different widths: one call per head, the same maps
    odd = nn.MultiHeadAttention([mha.heads[0], nn.ScaledSelfAttention.create(
        d_in, 3, r, causal=causal)], None)
    w2 = odd.attention_maps(x, x, x)
    assert w2.shape == (B, 2, T, T)
    np.testing.assert_allclose(w2[:, 0], w[:, 0], atol=1e-15)


# ------------------------------------------------------------------ whole models

def gpt(position="learned", norm="pre", dtype=np.float64, dropout=0.0, training=False):
    cfg = nn.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8,
                       position=position, norm=norm, dropout=dropout)
    return nn.GPT.create(cfg, rng(0), dtype=dtype, training=training, seed=3)


def assert_same_lists(a, b, tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(x, y, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("position", tc.options.POSITIONS)
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_gpt_inspect_fast_matches_module_path(dtype, position, norm):
    m = gpt(position, norm, dtype)
    idx = rng(1).integers(0, 11, (3, 7))
    a, b = m.inspect(idx), m.inspect(idx, fast=False)
    assert np.array_equal(a.logits, m.forward(idx))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_same_lists(a.attentions, b.attentions, tol)
    assert_same_lists(a.hidden_states, b.hidden_states, tol)
    assert len(a.attentions) == 2 and a.attentions[0].shape == (3, 2, 7, 7)
    assert len(a.hidden_states) == 3 and a.hidden_states[0].shape == (3, 7, 8)
    for w in a.attentions:
        assert np.all(w[..., np.triu_indices(7, 1)[0], np.triu_indices(7, 1)[1]] == 0)
        np.testing.assert_allclose(w.sum(-1), 1, atol=tol * 10)
    # layer 0's map is the SelfAttention layer's on ln_1(the embeddings)
    p = m.parameters["h"][0]
    if position != "rope" and norm == "pre":
        attn = nn.SelfAttention(nn.Dense(**p["attn"]["c_attn"]), nn.Dense(**p["attn"]["c_proj"]),
                                2, causal=True)
        x = nn.Norm(**p["ln_1"], eps=m.config.layer_norm_epsilon).forward(a.hidden_states[0])
        np.testing.assert_allclose(attn.attention_maps(x), a.attentions[0], atol=tol)


def test_gpt_inspect_options_unbatched_t1_dropout():
    m = gpt()
    one = m.inspect(np.array([4]))
    assert one.logits.shape == (1, 11) and one.attentions[0].shape == (2, 1, 1)
    assert np.all(one.attentions[0] == 1)
    r = m.inspect(np.array([[1, 2, 3]]), attentions=False)
    assert r.attentions is None and len(r.hidden_states) == 3
    r = m.inspect(np.array([[1, 2, 3]]), hidden_states=False)
    assert r.hidden_states is None and r.cross_attentions is None
    d = gpt(dropout=0.3, training=True)
    idx = rng(2).integers(0, 11, (2, 6))
    a, b = d.inspect(idx), d.inspect(idx, fast=False)
    assert np.array_equal(a.logits, d.forward(idx))  # the same dropout masks as forward
    assert_same_lists(a.attentions, b.attentions, 1e-12)  # pre-dropout probabilities
    np.testing.assert_allclose(a.attentions[1].sum(-1), 1, atol=1e-12)


def test_gpt_inspect_keeps_the_arena_and_training_unchanged():
    m = gpt()
    idx = rng(3).integers(0, 11, (4, 8))
    loss0, g0 = m.loss_and_grads(idx, idx)
    size = tc._C.gpt_arena_size(m._context())
    want = m.activation_bytes(4, 8)
    m.inspect(idx)
    assert tc._C.gpt_arena_size(m._context()) == size and m.activation_bytes(4, 8) == want
    loss1, g1 = m.loss_and_grads(idx, idx)
    assert loss0 == loss1
    with pytest.raises(IndexError, match="idx"):
        m.inspect(np.array([[1, 99]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_encoder_decoder_inspect_fast_matches_module_path(dtype, norm):
    cfg = nn.EncoderDecoderConfig(src_vocab_size=13, tgt_vocab_size=11, block_size=9,
                                  n_encoder_layer=2, n_decoder_layer=3, n_head=2, n_embd=8,
                                  norm=norm)
    m = nn.EncoderDecoder.create(cfg, rng(0), dtype=dtype, training=False)
    r = rng(1)
    src, tgt, lens = r.integers(0, 13, (3, 7)), r.integers(0, 11, (3, 5)), np.array([7, 4, 1])
    a, b = m.inspect(src, tgt, src_lengths=lens), m.inspect(src, tgt, src_lengths=lens,
                                                            fast=False)
    assert np.array_equal(a.logits, m.forward(src, tgt, src_lengths=lens))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, n, shape in (("attentions", 3, (3, 2, 5, 5)), ("cross_attentions", 3, (3, 2, 5, 7)),
                           ("encoder_attentions", 2, (3, 2, 7, 7)),
                           ("hidden_states", 4, (3, 5, 8)),
                           ("encoder_hidden_states", 3, (3, 7, 8))):
        assert len(getattr(a, name)) == n and getattr(a, name)[0].shape == shape
        assert_same_lists(getattr(a, name), getattr(b, name), tol)
    for w in a.cross_attentions + a.encoder_attentions:  # padded source keys: exactly 0
        assert np.all(w[1, ..., 4:] == 0) and np.all(w[2, ..., 1:] == 0)
    one = m.inspect(src[0], tgt[0, :1], attentions=False)
    assert one.logits.shape == (1, 11) and one.attentions is None
    assert one.hidden_states[0].shape == (1, 8)


def test_encoder_inspect():
    cfg = nn.EncoderConfig(vocab_size=13, block_size=9, n_layer=2, n_head=2, n_embd=8,
                           norm="post")
    e = nn.Encoder.create(cfg, rng(0), dtype=np.float64)
    src, lens = rng(1).integers(0, 13, (3, 7)), np.array([7, 4, 2])
    i = e.inspect(src, src_lengths=lens)
    assert i.logits is None and len(i.attentions) == 2 and i.attentions[0].shape == (3, 2, 7, 7)
    np.testing.assert_array_equal(i.hidden_states[-1], e.forward(src, src_lengths=lens))
    assert np.all(i.attentions[0][1, ..., 4:] == 0)
    np.testing.assert_allclose(i.attentions[1].sum(-1), 1, atol=1e-12)


def test_inspect_with_the_batch_split_across_threads():
    """Data-parallel workers (each over its own arena) read out their own rows."""
    old, threads = tc.get_data_parallel(), tc.get_num_threads()
    tc.set_num_threads(2)
    tc.set_data_parallel(True)
    try:
        m = gpt(dropout=0.2, training=True)
        idx = rng(5).integers(0, 11, (4, 6))
        a, b = m.inspect(idx), m.inspect(idx, fast=False)
        assert np.array_equal(a.logits, m.forward(idx))
        assert_same_lists(a.attentions, b.attentions, 1e-12)
        assert_same_lists(a.hidden_states, b.hidden_states, 1e-12)
        cfg = nn.EncoderDecoderConfig(src_vocab_size=13, tgt_vocab_size=11, block_size=9,
                                      n_encoder_layer=1, n_decoder_layer=2, n_head=2, n_embd=8)
        e = nn.EncoderDecoder.create(cfg, rng(0), dtype=np.float64, training=False)
        src, tgt = rng(6).integers(0, 13, (4, 5)), rng(7).integers(0, 11, (4, 3))
        a, b = e.inspect(src, tgt), e.inspect(src, tgt, fast=False)
        assert_same_lists(a.cross_attentions, b.cross_attentions, 1e-12)
        assert_same_lists(a.encoder_hidden_states, b.encoder_hidden_states, 1e-12)
    finally:
        tc.set_data_parallel(old)
        tc.set_num_threads(threads)


@pytest.mark.parametrize("lead,T,S", [((1,), 200, 190), ((8, 4), 40, 33)])
def test_weights_parallel_paths_and_portable_kernels(lead, T, S):
    """The row-parallel (one big head) and head-parallel paths, 1 and 2 threads, and the
    portable (TC_PORTABLE) kernels all give the same probabilities."""
    q, k, v = qkv(lead, T, S, 8, 8, np.float64, seed=9)
    kpm = rng(4).random(lead[:1] + (S,)) > 0.2
    kpm[:, 0] = True
    want = np_probs(q, k, kpm=kpm, causal=2)
    threads = tc.get_num_threads()
    try:
        for n in (1, 2):
            tc.set_num_threads(n)
            for portable in (False, True):
                tc._C.cpu_set_portable(portable)
                _, w = F.scaled_dot_product_attention(q, k, v, key_padding_mask=kpm,
                                                      is_causal="bottom_right",
                                                      return_weights=True)
                np.testing.assert_allclose(w, want, atol=1e-13, rtol=0)
    finally:
        tc._C.cpu_set_portable(False)
        tc.set_num_threads(threads)
