"""nn.Bert (encoder-only classifier + masked-LM head) and its data (transformer_c.data.pairs):
a PyTorch twin (float64 1e-9, float32 1e-4) for the classifier (cls and mean pooling, pre-
and post-LN, dropout) and the MLM head (tied and untied), float64 finite differences,
padding invariance, awkward shapes, masking statistics, errors naming the argument."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import num_grad
from test_encoder_decoder import lengths_mask, torch_params, torch_twin
from transformer_c.data import (BERT_SPECIALS, BPETokenizer, CharTokenizer, MaskedLMDataset,
                                PairDataset, encode_pair, mlm_mask, pad_pairs)
from transformer_c.nn import Bert, BertConfig
from transformer_c.nn.blocks import site_seed
from transformer_c.tree import flatten

F = tc.functional
TINY = dict(vocab_size=13, block_size=9, n_layer=2, n_head=2, n_embd=8, dropout=0.0,
            num_labels=3)
TOL = {np.float64: 1e-9, np.float32: 1e-4}


def close(got, want, tol, what=""):
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * scale,
                               err_msg=what)


def make(dtype=np.float64, seed=0, noise=0.1, **kw):
    """A Bert whose every parameter (LayerNorms and biases too) is random."""
    cfg = BertConfig(**{**TINY, **kw})
    r = np.random.default_rng(seed)
    m = Bert.create(cfg, r, dtype=dtype)
    m.flat_parameters[...] += r.normal(0, noise, m.num_parameters).astype(dtype)
    return m


def batch(cfg, B=3, L=7, seed=1, lengths=None):
    r = np.random.default_rng(seed)
    lengths = np.array([L, max(1, L - 3), 2][:B] + [L] * max(0, B - 3)) if lengths is None \
        else np.asarray(lengths)
    src = r.integers(1, cfg.vocab_size, (B, L))
    types = (np.arange(L)[None] >= (lengths // 2)[:, None]).astype(np.int64)
    pad = np.arange(L)[None] >= lengths[:, None]
    src[pad], types[pad] = 0, 0
    labels = r.integers(0, cfg.num_labels, B)
    return src, types, lengths, labels


# ------------------------------------------------------------------ the PyTorch twin

def twin_hidden(torch, m, P, src, types, lengths, *, seed, training):
    mask = lengths_mask(lengths, src.shape[1])
    h = torch_twin(torch, m.config, P, src, mask, None, seed=seed, training=training,
                   encoder_only=True, token_types=types)
    return h, torch.from_numpy(mask)


def twin_logits(torch, m, P, src, types, lengths, *, seed=0, training=False):
    cfg = m.config
    h, mask = twin_hidden(torch, m, P, src, types, lengths, seed=seed, training=training)
    if cfg.pooling == "cls":
        pooled = h[:, 0]
    else:
        w = mask.to(h.dtype)
        pooled = (h * w[:, :, None]).sum(1) / w.sum(1, keepdim=True)
    if training and cfg.dropout > 0:
        dm = F.dropout_mask(tuple(pooled.shape), cfg.dropout,
                            seed=site_seed(seed, 1 + 3 * cfg.n_layer),
                            dtype=np.float32 if h.dtype == torch.float32 else np.float64)
        pooled = pooled * torch.from_numpy(dm)
    c = P["classifier"]
    return torch.nn.functional.linear(pooled, c["weight"], c.get("bias"))


def twin_mlm_logits(torch, m, P, src, types, lengths):
    cfg = m.config
    TF = torch.nn.functional
    h, _ = twin_hidden(torch, m, P, src, types, lengths, seed=0, training=False)
    p = P["mlm"]
    x = TF.linear(h, p["c_fc"]["weight"], p["c_fc"].get("bias"))
    x = {"gelu": TF.gelu, "relu": torch.relu,
         "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh")}[cfg.activation](x)
    if cfg.norm_type == "rmsnorm":
        x = TF.rms_norm(x, (cfg.n_embd,), p["ln_1"]["weight"], cfg.layer_norm_epsilon)
        x = x + p["ln_1"]["bias"] if "bias" in p["ln_1"] else x
    else:
        x = TF.layer_norm(x, (cfg.n_embd,), p["ln_1"]["weight"], p["ln_1"].get("bias"),
                          cfg.layer_norm_epsilon)
    W = P["wte"]["weight"] if cfg.tie_mlm else p["decoder"]["weight"]
    return TF.linear(x, W, p.get("bias"))


VARIANTS = {
    "cls_pre": dict(pooling="cls"),
    "mean_pre": dict(pooling="mean"),
    "mean_post_dropout": dict(pooling="mean", norm="post", dropout=0.3, activation="relu"),
    "cls_sinusoidal_dropout_nobias": dict(pooling="cls", position="sinusoidal", dropout=0.2,
                                          bias=False, type_vocab_size=3, n_inner=12),
    "mean_rmsnorm_qknorm": dict(pooling="mean", norm_type="rmsnorm", qk_norm=True),
    "cls_post_rmsnorm_qknorm_nobias": dict(norm="post", norm_type="rmsnorm", qk_norm=True,
                                           bias=False, dropout=0.2),
    "cls_qknorm_mqa_dropout": dict(qk_norm=True, n_kv_head=1, dropout=0.2),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classifier_torch_twin(torch, variant, dtype):
    m = make(dtype, seed=3, **VARIANTS[variant])
    m.seed = 11
    src, types, lengths, labels = batch(m.config)
    P = torch_params(torch, m)
    logits = twin_logits(torch, m, P, src, types, lengths, seed=11, training=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    loss.backward()
    tol = TOL[dtype]
    got_loss, grads = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths)
    close(got_loss, loss.item(), tol, "loss")
    close(m.forward(src, types, lengths), logits.detach().numpy(), tol, "logits")
    want = flatten(tc.tree.tree_map(lambda t: t.grad.numpy() if t.grad is not None
                                    else np.zeros(t.shape), P))
    got = flatten(grads)
    assert set(got) == set(want)
    for name, g in want.items():
        assert got[name].dtype == dtype
        close(got[name], g, tol, name)
    # the MLM head gets exactly zero from the classification loss
    assert not any(got[n].any() for n in got if n.startswith("mlm/"))


@pytest.mark.parametrize("norm_type", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlm_torch_twin(torch, tie, dtype, norm_type):
    m = make(dtype, seed=4, tie_mlm=tie, activation="gelu_tanh", norm_type=norm_type,
             qk_norm=norm_type == "rmsnorm")
    src, types, lengths, _ = batch(m.config, B=4, L=8, lengths=[8, 5, 1, 3])
    targets = np.full(src.shape, -100)
    r = np.random.default_rng(0)
    pick = (r.random(src.shape) < 0.4) & (np.arange(8)[None] < lengths[:, None])
    targets[pick] = r.integers(0, m.config.vocab_size, pick.sum())
    P = torch_params(torch, m)
    logits = twin_mlm_logits(torch, m, P, src, types, lengths)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, m.config.vocab_size),
                                             torch.from_numpy(targets.reshape(-1)),
                                             ignore_index=-100)
    loss.backward()
    tol = TOL[dtype]
    got_loss, grads = m.mlm_loss_and_grads(src, targets, token_types=types,
                                           src_lengths=lengths)
    close(got_loss, loss.item(), tol, "loss")
    close(m.mlm_loss(src, targets, token_types=types, src_lengths=lengths), loss.item(), tol)
    real = lengths_mask(lengths, 8)
    close(m.mlm_logits(src, types, lengths)[real], logits.detach().numpy()[real], tol, "logits")
    want = flatten(tc.tree.tree_map(lambda t: t.grad.numpy() if t.grad is not None
                                    else np.zeros(t.shape), P))
    got = flatten(grads)
    assert set(got) == set(want) and ("mlm/decoder/weight" in got) == (not tie)
    for name, g in want.items():
        close(got[name], g, tol, name)
    assert not got["classifier/weight"].any()


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("kw", [dict(pooling="cls", norm="post"),
                                dict(pooling="mean", dropout=0.3, tie_mlm=False),
                                dict(pooling="mean", qk_norm=True, n_kv_head=1)])
def test_finite_differences(kw):
    m = make(np.float64, seed=2, noise=0.3, vocab_size=7, block_size=5, n_layer=1, n_embd=4,
             n_inner=6, num_labels=2, **kw)
    src = np.array([[4, 2, 5, 6, 0], [4, 3, 3, 0, 0]])
    types = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
    lengths = np.array([4, 3])
    labels = np.array([1, 0])
    targets = np.array([[-100, 2, -100, 6, -100], [-100, 3, 1, -100, -100]])
    flat = m.flat_parameters
    # classification loss, its gradient, and the module protocol's backward
    _, grads = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths, seed=5)
    got = np.concatenate([g.ravel() for g in flatten(grads).values()])
    want = num_grad(lambda: m.loss(src, labels, token_types=types, src_lengths=lengths,
                                   seed=5), flat)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    m.seed = 5
    G = np.random.default_rng(0).standard_normal((2, 2))
    g2, inputs = m.backward(G, src=src, token_types=types, src_lengths=lengths)
    assert set(inputs) == {"src", "token_types", "src_lengths"}
    got = np.concatenate([g.ravel() for g in flatten(g2).values()])
    want = num_grad(lambda: float(np.sum(m.forward(src, types, lengths) * G)), flat)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # masked-LM loss
    _, grads = m.mlm_loss_and_grads(src, targets, token_types=types, src_lengths=lengths,
                                    seed=7)
    got = np.concatenate([g.ravel() for g in flatten(grads).values()])
    want = num_grad(lambda: m.mlm_loss(src, targets, token_types=types, src_lengths=lengths,
                                       seed=7), flat)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ padding, shapes

@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_padded_batch_equals_unpadded_rows(pooling, dtype):
    m = make(dtype, seed=6, pooling=pooling)
    src, types, lengths, labels = batch(m.config, B=3, L=8, lengths=[8, 3, 1])
    garbage = src.copy()
    pad = np.arange(8)[None] >= lengths[:, None]
    garbage[pad] = 9  # padded positions hold anything: they must not matter
    out = m.forward(garbage, types, lengths)
    out_mask = m.forward(garbage, types, src_key_padding_mask=~pad)
    np.testing.assert_array_equal(out, out_mask)
    pooled = m.pool(garbage, types, lengths)
    tol = TOL[dtype]
    total = 0.0
    for b in range(3):
        n = lengths[b]
        close(out[b], m.forward(src[b, :n], types[b, :n]), tol, f"row {b}")
        close(pooled[b], m.pool(src[b:b + 1, :n], types[b:b + 1, :n])[0], tol, f"pool {b}")
        total += m.loss_and_grads(src[b:b + 1, :n], labels[b:b + 1],
                                  token_types=types[b:b + 1, :n])[0]
        if b == 0:
            acc = m.flat_grads.copy()
        else:
            acc += m.flat_grads
    loss, _ = m.loss_and_grads(garbage, labels, token_types=types, src_lengths=lengths)
    close(loss, total / 3, tol, "loss")
    close(m.flat_grads, acc / 3, tol, "grads")


def test_awkward_shapes_and_inputs():
    m = make(np.float64, seed=1, pooling="mean")
    # L = 1 (only [CLS]), unbatched input, an odd batch, non-contiguous and int32 ids
    one = m.forward(np.array([[4], [7]]))
    assert one.shape == (2, 3)
    np.testing.assert_allclose(m.forward(np.array([4])), one[0], rtol=1e-12)
    src, types, lengths, labels = batch(m.config, B=5, L=7, lengths=[7, 1, 3, 6, 2])
    big = np.zeros((5, 14), dtype=np.int32)
    big[:, ::2] = src
    view = big[:, ::2]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(m.forward(view, types[:, ::1], lengths),
                                  m.forward(src, types, lengths))
    np.testing.assert_array_equal(m.forward(np.asfortranarray(src), np.asfortranarray(types),
                                            lengths), m.forward(src, types, lengths))
    assert m.predict(src, types, lengths).shape == (5,)
    assert m.encode(src, types, lengths).shape == (5, 7, 8)
    assert m.mlm_logits(src, types, lengths).shape == (5, 7, 13)
    # token_types None is all-zero segments
    np.testing.assert_array_equal(m.forward(src, None, lengths),
                                  m.forward(src, np.zeros_like(src), lengths))
    # no target kept: nan loss, zero gradient
    loss, _ = m.mlm_loss_and_grads(src, np.full(src.shape, -100), src_lengths=lengths)
    assert math.isnan(loss) and not m.flat_grads.any()


def test_eval_mode_is_deterministic_and_dropout_depends_on_seed():
    m = make(np.float64, dropout=0.3)
    src, types, lengths, labels = batch(m.config)
    a = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths, seed=1)[0]
    b = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths, seed=1)[0]
    c = m.loss_and_grads(src, labels, token_types=types, src_lengths=lengths, seed=2)[0]
    assert a == b and a != c
    m.eval()
    assert m.loss(src, labels, token_types=types, src_lengths=lengths, seed=1) == \
        m.loss(src, labels, token_types=types, src_lengths=lengths, seed=2)


def test_parameter_layout_save_load(tmp_path):
    m = make(np.float32, tie_mlm=False, type_vocab_size=3)
    names = list(m.state_dict())
    assert names[0] == "wte.weight" and "wtt.weight" in names
    assert {"mlm.c_fc.weight", "mlm.ln_1.weight", "mlm.bias", "mlm.decoder.weight",
            "classifier.weight", "classifier.bias"} <= set(names)
    assert m.parameters["wtt"]["weight"].shape == (3, 8)
    assert "mlm.decoder.weight" not in make(np.float32).state_dict()
    fresh = Bert.create(BertConfig(**TINY), np.random.default_rng(0))
    assert (fresh.parameters["mlm"]["ln_1"]["weight"] == 1).all()
    assert not fresh.parameters["classifier"]["bias"].any()
    m.save(tmp_path / "b.safetensors")
    back = Bert.load(tmp_path / "b.safetensors")
    assert back.config == m.config
    np.testing.assert_array_equal(back.flat_parameters, m.flat_parameters)
    with pytest.raises(ValueError, match="gpt_config"):
        tc.nn.GPT.load(tmp_path / "b.safetensors")


# ------------------------------------------------------------------ bad input

def test_bad_inputs_name_the_argument():
    m = make(np.float64)
    src, types, lengths, labels = batch(m.config)
    with pytest.raises(IndexError, match="src"):
        m.forward(src + 20)
    with pytest.raises(ValueError, match="token_types"):
        m.forward(src, types[:, :3])
    with pytest.raises(IndexError, match="token_types"):
        m.forward(src, types + 2)
    with pytest.raises(ValueError, match="src_lengths"):
        m.forward(src, types, [1, 2])
    with pytest.raises(ValueError, match="length >= 1"):
        m.forward(src, types, [3, 0, 2])
    with pytest.raises(IndexError, match="labels"):
        m.loss_and_grads(src, [0, 1, 3], token_types=types, src_lengths=lengths)
    with pytest.raises(ValueError, match="labels"):
        m.loss_and_grads(src, [0, 1], token_types=types, src_lengths=lengths)
    with pytest.raises(TypeError, match="labels"):
        m.loss_and_grads(src, [0.5, 1, 2], token_types=types, src_lengths=lengths)
    with pytest.raises(ValueError, match="targets"):
        m.mlm_loss_and_grads(src, labels)
    with pytest.raises(IndexError, match="targets"):
        m.mlm_loss_and_grads(src, np.full(src.shape, 99))
    with pytest.raises(ValueError, match="gradient_outputs"):
        m.backward(np.zeros((3, 2)), src=src)
    with pytest.raises(TypeError, match="gradient_outputs"):
        m.backward(np.zeros((3, 3), np.float32), src=src)
    with pytest.raises(ValueError, match="block_size"):
        m.forward(np.ones((1, 10), np.int64))
    with pytest.raises(ValueError, match="row_offset"):
        make(np.float64, dropout=0.1).loss_and_grads(src, labels, row_offset=2)
    for kw, name in ((dict(pooling="max"), "pooling"), (dict(num_labels=0), "num_labels"),
                     (dict(type_vocab_size=0), "type_vocab_size"),
                     (dict(tie_mlm=1), "tie_mlm"), (dict(position="rope"), "position")):
        with pytest.raises(ValueError, match=name):
            BertConfig(**{**TINY, **kw})


# ------------------------------------------------------------------ data: pairs and masking

@pytest.fixture(scope="module")
def tok():
    text = "a man is playing a guitar. a woman is sleeping on the sofa. two dogs run. " * 20
    return BPETokenizer.train(text, 300, specials=BERT_SPECIALS)


def test_encode_pair_layout_and_truncation(tok):
    cls_id, sep_id = tok.special_id("<CLS>"), tok.special_id("<SEP>")
    assert (cls_id, sep_id, tok.special_id("<MASK>")) == (4, 5, 6)
    a, b = "a man is playing", "two dogs run"
    ids, types = encode_pair(tok, a, b, max_len=64)
    na, nb = len(tok.encode(a)), len(tok.encode(b))
    assert ids.tolist() == [cls_id, *tok.encode(a), sep_id, *tok.encode(b), sep_id]
    assert types.tolist() == [0] * (na + 2) + [1] * (nb + 1)
    ids, types = encode_pair(tok, a * 10, b, max_len=12)
    assert ids.size == 12 and ids[0] == cls_id and ids[-1] == sep_id
    assert (ids == sep_id).sum() == 2 and types.sum() == nb + 1  # the longer text lost tokens
    ids, types = encode_pair(tok, a, None, max_len=64)
    assert ids[-1] == sep_id and not types.any()
    src, tt, lengths = pad_pairs([encode_pair(tok, a, b), encode_pair(tok, b, None)])
    assert src.shape == (2, lengths.max()) and (src[1, lengths[1]:] == 0).all()
    with pytest.raises(ValueError, match="tokenizer has no <CLS>"):
        encode_pair(CharTokenizer.train("abc"), "a", "b")
    with pytest.raises(TypeError, match="tokenizer"):
        encode_pair("not a tokenizer", "a", "b")
    with pytest.raises(ValueError, match="max_len"):
        encode_pair(tok, a, b, max_len=4)


def test_mlm_mask_statistics_and_determinism():
    V, mask_id, specials = 100, 6, list(range(7))
    r = np.random.default_rng(0)
    ids = r.integers(7, V, (400, 250))
    ids[:, 0] = 4
    lengths = r.integers(1, 251, 400)
    inputs, targets = mlm_mask(ids, vocab_size=V, mask_id=mask_id, special_ids=specials,
                               seed=3, lengths=lengths)
    real = np.arange(250)[None] < lengths[:, None]
    maskable = real & (ids >= 7)
    chosen = targets != -100
    assert not (chosen & ~maskable).any()  # never a special token or padding
    np.testing.assert_array_equal(targets[chosen], ids[chosen])
    n = maskable.sum()
    p = chosen.sum() / n
    assert abs(p - 0.15) < 4 * math.sqrt(0.15 * 0.85 / n)
    k = chosen.sum()
    masked = (inputs == mask_id) & chosen
    kept = (inputs == ids) & chosen
    swapped = chosen & ~masked & ~kept
    for got, want in ((masked.sum(), 0.8), (swapped.sum(), 0.1 * (1 - 1 / 93)),
                      (kept.sum(), 0.1 + 0.1 / 93)):
        assert abs(got / k - want) < 4 * math.sqrt(want * (1 - want) / k)
    assert (inputs[swapped] >= 7).all()  # random replacements are never special
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    again = mlm_mask(ids, vocab_size=V, mask_id=mask_id, special_ids=specials, seed=3,
                     lengths=lengths)
    np.testing.assert_array_equal(again[0], inputs)
    other = mlm_mask(ids, vocab_size=V, mask_id=mask_id, special_ids=specials, seed=4,
                     lengths=lengths)
    assert (other[1] != targets).any()
    one_in, one_t = mlm_mask(ids[0], vocab_size=V, mask_id=mask_id, special_ids=specials,
                             seed=3, rate=1.0)
    assert one_in.shape == (250,) and (one_t[1:] != -100).all() and one_t[0] == -100


def test_mlm_mask_bad_inputs():
    ids = np.array([[7, 8, 9]])
    kw = dict(vocab_size=10, mask_id=6, special_ids=range(7), seed=0)
    with pytest.raises(TypeError, match="ids"):
        mlm_mask(ids.astype(float), **kw)
    with pytest.raises(IndexError, match="ids"):
        mlm_mask(ids + 5, **kw)
    with pytest.raises(ValueError, match="rate"):
        mlm_mask(ids, **kw, rate=1.5)
    with pytest.raises(ValueError, match="mask_id"):
        mlm_mask(ids, **{**kw, "mask_id": 10})
    with pytest.raises(ValueError, match="lengths"):
        mlm_mask(ids, **kw, lengths=[4])
    with pytest.raises(ValueError, match="special_ids"):
        mlm_mask(ids, **{**kw, "special_ids": range(10)})


def test_datasets(tok):
    pairs = [("a man is playing", "two dogs run"), ("a woman", "sleeping on the sofa")] * 3
    ds = PairDataset(tok, pairs, [0, 1] * 3, max_len=16)
    b = ds.batch_at([1, 0])
    assert b["src"].shape == (2, b["src_lengths"].max()) and b["labels"].tolist() == [1, 0]
    np.testing.assert_array_equal(ds.eval_starts(0), np.arange(6))
    with pytest.raises(ValueError, match="labels"):
        PairDataset(tok, pairs, [0, 1], max_len=16)
    stream = np.array(tok.encode("a man is playing a guitar. two dogs run. " * 5))
    mds = MaskedLMDataset(stream, 10, tok, seed=1)
    b1, b2 = mds.batch_at([0, 5]), mds.batch_at([0, 5])
    np.testing.assert_array_equal(b1["src"], b2["src"])
    assert b1["src"].shape == (2, 10) and (b1["src"][:, 0] == 4).all()
    assert ((b1["targets"] == -100) | (b1["targets"] >= 7)).all()
