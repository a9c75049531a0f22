"""Bert with the efficient blocks of the encoder stack: attention="block_sparse" (the
module path against a dense Bert whose attention layers get the equivalent boolean
attn_mask, forward and every gradient; padding still masked; checkpoint round trip; bad
fields named) and, once nn.MoE is on the branch, ffn="moe" (trains)."""
import json

import numpy as np
import pytest

import transformer_c as tc

from test_attention_sparse import np_pattern
from test_bert import batch, close, make
from transformer_c.nn import Bert, BertConfig, stack
from transformer_c.nn.attention import SelfAttention
from transformer_c.tree import flatten

PATTERN = dict(sparse_block=3, sparse_window=2, sparse_stride=3, sparse_global=1)
SPARSE = dict(attention="block_sparse", **PATTERN)


class _MaskedSelfAttention(SelfAttention):
    """A dense SelfAttention that always adds the boolean attn_mask ``keep`` (T, T)."""
    keep = None

    def forward_cached(self, x, key_padding_mask=None, attn_mask=None):
        assert attn_mask is None and self.sparse is None
        T = np.shape(x)[-2]
        return super().forward_cached(x, key_padding_mask, self.keep[:T, :T])


def _dense_with_mask(monkeypatch, keep):
    """Make the stack's dense self-attention layers _MaskedSelfAttention(keep)."""
    orig = stack._self_attention

    def patched(cfg, h, causal, p_attn, seed, head_mask=None):
        a = orig(cfg, h, causal, p_attn, seed, head_mask)
        m = _MaskedSelfAttention(a.c_attn, a.c_proj, a.n_head, causal=causal, dropout=p_attn,
                                 seed=seed, head_mask=head_mask)
        m.keep = keep
        return m
    monkeypatch.setattr(stack, "_self_attention", patched)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_block_sparse_equals_dense_with_the_mask(monkeypatch, dtype, pooling):
    L = 17                                                       # blocks of 3: odd, ragged
    sp = make(dtype, block_size=L, pooling=pooling, **SPARSE)
    dense = Bert(BertConfig(**{**sp.config.to_dict(), "attention": "dense"}), sp.parameters)
    src, types, lengths, labels = batch(sp.config, B=3, L=L)
    got_loss, g = sp.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)
    got = {k: v.copy() for k, v in flatten(g).items()}
    got_logits = sp.forward(src, types, lengths)
    got_h = sp.encode(src, types, lengths)
    # the dense Bert without the mask differs (the pattern does mask something here)
    assert np.abs(dense.encode(src, types, lengths) - got_h)[0].max() > 1e-3
    _dense_with_mask(monkeypatch, np_pattern(L, L, 3, 2, 3, 1))
    tol = 1e-10 if dtype == np.float64 else 2e-5
    close(got_h, dense.encode(src, types, lengths), tol, "hidden")
    close(got_logits, dense.forward(src, types, lengths), tol, "logits")
    want_loss, wg = dense.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)
    close(got_loss, want_loss, tol, "loss")
    for k, v in flatten(wg).items():
        close(got[k], v, tol, k)


def test_np_pattern_masks_something_at_this_size():
    keep = np_pattern(17, 17, 3, 2, 3, 1)
    assert 0 < keep.sum() < keep.size


def test_block_sparse_padding_does_not_leak_and_mlm_runs():
    m = make(np.float64, block_size=20, **SPARSE)
    src, types, lengths, _ = batch(m.config, B=2, L=20, lengths=[20, 11])
    h = m.encode(src, types, lengths)
    alone = m.encode(src[1:, :11], types[1:, :11])
    np.testing.assert_allclose(h[1, :11], alone[0], atol=1e-12)
    targets = np.where(np.arange(20)[None] % 4 == 1, src, -100)
    loss, _ = m.mlm_loss_and_grads(src, targets, token_types=types, src_lengths=lengths)
    assert np.isfinite(loss)


def test_wide_window_is_dense():
    m = make(np.float64, block_size=12, attention="block_sparse", sparse_block=2,
             sparse_window=6)
    dense = Bert(BertConfig(**{**m.config.to_dict(), "attention": "dense"}), m.parameters)
    src, types, lengths, _ = batch(m.config, B=3, L=12)
    np.testing.assert_allclose(m.forward(src, types, lengths),
                               dense.forward(src, types, lengths), atol=1e-12)


def test_checkpoint_round_trip_and_old_configs(tmp_path):
    m = make(np.float32, block_size=12, **SPARSE)
    m.save(tmp_path / "b.safetensors")
    back = Bert.load(tmp_path / "b.safetensors")
    assert back.config == m.config and back.config.attention == "block_sparse"
    d = m.config.to_dict()
    for k in SPARSE:
        d.pop(k)
    assert BertConfig.from_dict(json.loads(json.dumps(d))).attention == "dense"


@pytest.mark.parametrize("field,value", [
    ("attention", "sparse"), ("attention", None), ("sparse_block", 0), ("sparse_window", 0),
    ("sparse_stride", -1), ("sparse_global", -2), ("sparse_block", 2.5),
])
def test_bad_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BertConfig(vocab_size=9, block_size=8, n_layer=1, n_head=2, n_embd=8,
                   **{**SPARSE, field: value})


# ------------------------------------------------------------------ mixture of experts

def _has_moe():
    import dataclasses
    return "ffn" in {f.name for f in dataclasses.fields(BertConfig)}


MOE = dict(ffn="moe", moe_experts=3, moe_top_k=2, moe_capacity=4.0)
needs_moe = pytest.mark.skipif(not _has_moe(), reason="this build has no ffn='moe'")


@needs_moe
@pytest.mark.parametrize("aux_weight", [0.0, 0.05])
def test_moe_bert_gradients_match_finite_differences(aux_weight):
    """The gradient of loss_and_grads' loss (cross-entropy + aux_weight * load balancing)."""
    m = make(np.float64, block_size=7, **{**MOE, "moe_aux_weight": aux_weight})
    src, types, lengths, labels = batch(m.config, B=3, L=7)
    loss, _ = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)
    got = m.flat_grads.copy()
    ce = m.loss(src, labels, token_types=types, src_lengths=lengths)
    assert (loss > ce) == (aux_weight > 0) and loss == pytest.approx(ce, abs=aux_weight * 10)
    flat = m.flat_parameters
    r = np.random.default_rng(5)
    idx = r.choice(flat.size, 40, replace=False)
    base = flat.__array_interface__["data"][0]
    for key, arr in flatten(m.parameters).items():     # 5 entries of every router and expert
        if key.split("/")[-1] in ("router", "w1", "w2"):
            start = (arr.__array_interface__["data"][0] - base) // flat.itemsize
            idx = np.concatenate([idx, start + r.choice(arr.size, 5, replace=False)])
    assert idx.size > 40

    def f():
        return m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)[0]
    for i in idx:
        old = flat[i]
        flat[i] = old + 1e-6
        up = f()
        flat[i] = old - 1e-6
        down = f()
        flat[i] = old
        assert got[i] == pytest.approx((up - down) / 2e-6, abs=1e-6, rel=1e-5), i


@needs_moe
def test_moe_bert_trains_and_counts_its_parameters():
    dense = make(np.float32, block_size=9)
    m = make(np.float32, block_size=9, **MOE)
    assert m.config.ffn == "moe"
    C, H = m.config.n_embd, 4 * m.config.n_embd
    per_expert = 2 * H * C + H + C
    assert m.num_parameters == dense.num_parameters + m.config.n_layer * (
        (3 - 1) * per_expert + 3 * C)            # two more experts and a router per layer
    src, types, lengths, labels = batch(m.config, B=4, L=9, lengths=[9, 6, 2, 9])
    opt = tc.optim.AdamW(learning_rate=3e-3, weight_decay=0.0)
    first = m.loss(src, labels, token_types=types, src_lengths=lengths)
    for step in range(60):
        m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)
        new, opt = opt.step(m.flat_parameters, m.flat_grads)
        m.flat_parameters[...] = new
    last = m.loss(src, labels, token_types=types, src_lengths=lengths)
    assert np.isfinite(last) and last < 0.5 * first
    back = Bert(BertConfig.from_dict(m.config.to_dict()), m.parameters)
    np.testing.assert_array_equal(back.forward(src, types, lengths),
                                  m.forward(src, types, lengths))


@needs_moe
@pytest.mark.parametrize("field,value", [("ffn", "experts"), ("moe_top_k", 3),
                                         ("moe_experts", 0), ("moe_capacity", 0.0)])
def test_moe_bad_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BertConfig(vocab_size=9, block_size=8, n_layer=1, n_head=2, n_embd=8,
                   **{**MOE, field: value})
