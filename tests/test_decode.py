"""KV-cache GPT decoding (csrc/models/gpt_decode.c, transformer_c.generate.GPTModel).

The decoder's logits are checked against GPT.forward on the whole prefix (both its C fast
path and its module-by-module path) and against an independent PyTorch model with its own
KV cache (benchmarks/decode.py's twin); generation with the cache against generation that
reruns GPT.forward every step (FunctionModel), and a batch of prompts of different lengths
against one prompt at a time."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from conftest import tol as conftest_tol
from transformer_c import _C
from transformer_c.generate import FunctionModel, GPTModel, as_model, generate
from transformer_c.nn import GPT, GPTConfig

DTYPES = [np.float64, np.float32]


def tol(dtype):
    """float64 as conftest; float32 looser than conftest's 1e-5: the large random weights of
    these models (logits of size ~10) amplify float32 rounding differences between the
    decoder's and the forward's summation orders."""
    return conftest_tol(dtype) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)


def make_gpt(dtype=np.float64, seed=0, scale=4.0, **kw):
    """A small GPT with large random weights (block matrices ~ N(0, scale^2 / fan_in),
    embeddings ~ N(0, 1), random biases and layer-norm weights), so that its greedy output
    depends on the context instead of repeating one token."""
    base = dict(vocab_size=13, block_size=48, n_layer=2, n_head=2, n_embd=16)
    base.update(kw)
    model = GPT.create(GPTConfig(**base), rng(seed), dtype=dtype, training=False)
    r = rng(seed + 100)
    for name, leaf in model.state_dict().items():
        if name.endswith("bias"):
            leaf[...] = r.normal(0.0, 0.1, leaf.shape)
        elif ".ln_" in name or name.startswith("ln_"):
            leaf[...] = 1.0 + r.normal(0.0, 0.2, leaf.shape)
        elif name.startswith("h."):
            leaf[...] = r.normal(0.0, scale / np.sqrt(leaf.shape[1]), leaf.shape)
        else:
            leaf[...] = r.normal(0.0, 1.0, leaf.shape)
    return model


def reference(model):
    """The uncached reference: GPT.forward (in C) on the whole prefix at every step."""
    return FunctionModel(lambda ids: model.forward(ids))


def left_pad(prompts):
    T = max(len(p) for p in prompts)
    idx = np.zeros((len(prompts), T), dtype=np.int64)
    pad = np.array([T - len(p) for p in prompts], dtype=np.int64)
    for i, p in enumerate(prompts):
        idx[i, pad[i]:] = p
    return idx, pad


def check_steps(model, seqs, prompt_lens, steps, max_batch=None, fast=True):
    """Prefill rows seqs[b][:prompt_lens[b]] together, feed seqs[b][len + t] for t < steps,
    and compare every step's logits with the forward of each row's prefix alone."""
    dt = model.dtype
    dec = _C.gpt_kv_create(model.flat_parameters, model.config.c_fields(),
                           max_batch or len(seqs), max(prompt_lens) + steps)
    idx, pad = left_pad([s[:n] for s, n in zip(seqs, prompt_lens)])
    logits = _C.gpt_kv_prefill(dec, idx, pad)
    for t in range(steps + 1):
        assert logits.dtype == dt and logits.shape == (len(seqs), model.config.vocab_size)
        for b, (s, n) in enumerate(zip(seqs, prompt_lens)):
            want = model.forward(np.asarray(s[:n + t]), fast=fast)[-1]
            np.testing.assert_allclose(logits[b], want, **tol(dt))
        if t < steps:
            logits = _C.gpt_kv_step(dec, np.array([s[n + t] for s, n in zip(seqs, prompt_lens)]))
    return dec


# ------------------------------------------------------------------ logits against forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "none"])
def test_step_logits_equal_forward(position, norm, dtype):
    model = make_gpt(dtype, position=position, norm=norm)
    seq = rng(1).integers(0, 13, 20)
    check_steps(model, [seq], [5], 12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "none"])
def test_left_padded_batch_equals_rows_alone(position, dtype):
    # rows of lengths 1, 4, 9 (the last one unpadded), each position kind; also the
    # module-by-module forward as the reference
    model = make_gpt(dtype, position=position, n_head=3, n_embd=24)
    seqs = [rng(2 + i).integers(0, 13, 20) for i in range(3)]
    check_steps(model, seqs, [1, 4, 9], 8, fast=False)


@pytest.mark.parametrize("kw", [
    dict(bias=False), dict(tie_embeddings=False), dict(activation="relu"),
    dict(activation="gelu"), dict(activation="silu"), dict(activation="relu2"),
    dict(n_kv_head=1), dict(n_head=4, n_kv_head=2, position="rope"),  # grouped-query caches
    dict(gated=True, activation="silu", n_inner=11),  # SwiGLU
    dict(gated=True, activation="gelu", norm="post", n_kv_head=1, bias=False),
    dict(position="rope", rope_interleaved=True),
    dict(n_inner=7, n_embd=15, n_head=3, position="sinusoidal"),  # odd widths, head size 5
    dict(n_layer=1, n_head=1, n_embd=33, norm="post", bias=False),
    dict(position="rope", n_embd=28, n_head=2, position_base=500.0, layer_norm_epsilon=1e-3),
])
def test_options(kw):
    model = make_gpt(np.float64, **kw)
    seqs = [rng(5).integers(0, 13, 16), rng(6).integers(0, 13, 16)]
    check_steps(model, seqs, [3, 7], 6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_rows_and_long_prompts(dtype):
    # 11 rows: every product has more than 8 rows (the GEMM path, not the matrix-vector one);
    # prompts up to 30 tokens (the tiled attention of the prefill)
    model = make_gpt(dtype, n_embd=24, n_head=4)
    seqs = [rng(10 + i).integers(0, 13, 40) for i in range(11)]
    check_steps(model, seqs, [1 + 3 * i for i in range(11)], 5)


def test_portable_matrix_vector_kernel():
    # the portable kernel (what a machine without AVX2 runs) follows the GEMM's switch
    model = make_gpt(np.float32, n_embd=40, n_head=4)
    seqs = [rng(12).integers(0, 13, 12), rng(13).integers(0, 13, 12)]
    tc._C.gemm_set_kernel("generic")
    try:
        check_steps(model, seqs, [2, 5], 5)
    finally:
        tc._C.gemm_set_kernel("auto")


def test_against_pytorch_kv_cache():
    torch = pytest.importorskip("torch")
    from benchmarks.decode import torch_kv_gpt

    torch.set_default_dtype(torch.float64)
    try:
        model = make_gpt(np.float64, n_embd=24, n_head=3)
        twin = torch_kv_gpt(torch, model.config, model.parameters, 1, 30)
    finally:
        torch.set_default_dtype(torch.float32)
    seq = rng(3).integers(0, 13, 30)
    dec = _C.gpt_kv_create(model.flat_parameters, model.config.c_fields(), 1, 30)
    got = _C.gpt_kv_prefill(dec, seq[None, :6], np.zeros(1, np.int64))
    with torch.inference_mode():
        want = twin.prefill(torch.from_numpy(seq[None, :6])).numpy()
        for t in range(6, 30):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
            got = _C.gpt_kv_step(dec, seq[t:t + 1])
            want = twin.step(torch.from_numpy(seq[t:t + 1])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_full_cache_to_block_size():
    # a sequence that fills the whole block: the last position's table row is used
    for position in ("learned", "sinusoidal", "rope", "none"):
        model = make_gpt(np.float64, position=position, block_size=12)
        seq = rng(4).integers(0, 13, 12)
        check_steps(model, [seq], [1], 11)


def test_dropout_is_off_and_parameters_are_read_in_place():
    model = make_gpt(np.float64, dropout=0.3)
    model.train()
    seq = rng(7).integers(0, 13, 10)
    dec = _C.gpt_kv_create(model.flat_parameters, model.config.c_fields(), 1, 10)
    got = _C.gpt_kv_prefill(dec, seq[None, :4], np.zeros(1, np.int64))
    model.eval()
    np.testing.assert_allclose(got[0], model.forward(seq[:4])[-1], **tol(np.float64))
    model.parameters["ln_f"]["bias"][...] += 0.5   # in place: seen by the next step
    got = _C.gpt_kv_step(dec, seq[4:5])
    np.testing.assert_allclose(got[0], model.forward(seq[:5])[-1], **tol(np.float64))


def test_bitwise_reproducible():
    model = make_gpt(np.float32, n_embd=32, n_head=4)
    prompts = [rng(8).integers(0, 13, 7), rng(9).integers(0, 13, 3)]
    a = generate(model, prompts, max_new_tokens=20, num_beams=3)
    b = generate(model, prompts, max_new_tokens=20, num_beams=3)
    for x, y in zip(a.logprobs, b.logprobs):
        assert np.array_equal(x, y)


# ------------------------------------------------------------------ select

@pytest.mark.parametrize("rows", [[2, 0, 0, 1], [1, 2], [0, 2], [2], [0, 1, 2], [1, 1, 1, 1, 1]])
def test_select_rows(rows):
    # reorder / duplicate (a second cache) and drop (in place); every row then continues as
    # the row it was copied from
    model = make_gpt(np.float64, position="rope")
    seqs = [rng(20 + i).integers(0, 13, 20) for i in range(3)]
    lens = [2, 6, 4]
    dec = _C.gpt_kv_create(model.flat_parameters, model.config.c_fields(), 5, 14)
    idx, pad = left_pad([s[:n] for s, n in zip(seqs, lens)])
    _C.gpt_kv_prefill(dec, idx, pad)
    _C.gpt_kv_step(dec, np.array([s[n] for s, n in zip(seqs, lens)]))
    _C.gpt_kv_select(dec, np.array(rows))
    assert _C.gpt_kv_state(dec)[:2] == (len(rows), 7)
    for t in range(1, 4):
        logits = _C.gpt_kv_step(dec, np.array([seqs[r][lens[r] + t] for r in rows]))
        for j, r in enumerate(rows):
            want = model.forward(seqs[r][:lens[r] + t + 1])[-1]
            np.testing.assert_allclose(logits[j], want, **tol(np.float64))
    _C.gpt_kv_select(dec, np.zeros(0, np.int64))   # every row finished
    assert _C.gpt_kv_state(dec)[0] == 0


# ------------------------------------------------------------------ generation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_cached_equals_uncached_greedy_and_beam(position, dtype):
    model = make_gpt(dtype, position=position, n_embd=24, n_head=3)
    prompts = [rng(30).integers(0, 13, 5), rng(31).integers(0, 13, 1), rng(32).integers(0, 13, 9)]
    assert isinstance(as_model(model), GPTModel)
    for kw in (dict(), dict(num_beams=3, num_return_sequences=2),
               dict(num_beams=4, eos_id=[0, 1], early_stopping=False, length_penalty=0.5),
               dict(eos_id=2, repetition_penalty=1.3)):
        a = generate(model, prompts, max_new_tokens=15, **kw)
        b = generate(reference(model), prompts, max_new_tokens=15, **kw)
        assert a.finish_reasons == b.finish_reasons
        for x, y in zip(a.tokens, b.tokens):
            assert np.array_equal(x, y)
        for x, y in zip(a.logprobs, b.logprobs):
            np.testing.assert_allclose(x, y, **tol(dtype))
        assert len({tuple(t) for t in a.tokens}) > 1   # the rows really differ


def test_cached_equals_uncached_sampling():
    model = make_gpt(np.float64, position="sinusoidal", n_embd=24, n_head=3, scale=1.5)
    prompts = [rng(33).integers(0, 13, 4), rng(34).integers(0, 13, 2)]
    kw = dict(max_new_tokens=25, temperature=0.9, top_k=6, top_p=0.9, seed=5, eos_id=0,
              num_return_sequences=3)
    a = generate(model, prompts, **kw)
    b = generate(reference(model), prompts, **kw)
    for x, y in zip(a.tokens, b.tokens):
        assert np.array_equal(x, y)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_equals_one_by_one(dtype):
    model = make_gpt(dtype, position="rope", n_embd=24, n_head=3)
    prompts = [rng(40 + i).integers(0, 13, n) for i, n in enumerate([3, 8, 1, 5, 5])]
    batch = generate(model, prompts, max_new_tokens=20, eos_id=8)
    assert "eos" in batch.finish_reasons and "length" in batch.finish_reasons
    for i, p in enumerate(prompts):
        one = generate(model, [p], max_new_tokens=20, eos_id=8)
        assert np.array_equal(one.tokens[0], batch.tokens[i])
        assert one.finish_reasons[0] == batch.finish_reasons[i]
        np.testing.assert_allclose(one.logprobs[0], batch.logprobs[i], **tol(dtype))


def test_streaming_and_state():
    model = make_gpt(np.float32)
    seen = []
    out = generate(model, [[1, 2, 3]], max_new_tokens=6, callback=lambda r, t: seen.append(t))
    assert seen == out.tokens[0].tolist()
    gm = GPTModel(model)
    state, logits = gm.start([np.array([1, 2]), np.array([3])], max_new_tokens=4, max_batch=2)
    assert (state.rows, state.length) == (2, 2) and logits.dtype == np.float32
    assert "max_len=5" in repr(state) and state.cache_bytes > 0
    state, logits = gm.step(state, np.array([0, 0]))
    assert state.length == 3 and logits.shape == (2, 13)


# ------------------------------------------------------------------ bad input

def test_bad_prompts_and_lengths():
    model = make_gpt(np.float64, block_size=10)
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [np.zeros(11, np.int64)], max_new_tokens=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [np.zeros(6, np.int64)], max_new_tokens=6)
    generate(model, [np.zeros(6, np.int64)], max_new_tokens=5)   # 6 + 5 - 1 = 10 fits
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        generate(model, [[1], []], max_new_tokens=2)
    with pytest.raises(IndexError, match="idx"):
        generate(model, [[1, 13]], max_new_tokens=2)
    with pytest.raises(IndexError, match="prompts"):
        generate(model, [[1, -1]], max_new_tokens=2)
    with pytest.raises(TypeError, match="prompts"):
        generate(model, [np.array([1.0, 2.0])], max_new_tokens=2)
    with pytest.raises(TypeError, match="gpt"):
        GPTModel(lambda ids: ids)
    gm = GPTModel(model)
    with pytest.raises(ValueError, match="empty"):
        gm.start([], max_new_tokens=2, max_batch=1)
    state, _ = gm.start([[1, 2]], max_new_tokens=None, max_batch=None)
    assert "max_len=10" in repr(state)


def test_raw_decoder_bad_input():
    model = make_gpt(np.float64, block_size=10)
    cfg = model.config.c_fields()
    flat = model.flat_parameters
    with pytest.raises(ValueError, match="max_len"):
        _C.gpt_kv_create(flat, cfg, 1, 11)
    with pytest.raises(ValueError, match="max_batch"):
        _C.gpt_kv_create(flat, cfg, 0, 5)
    with pytest.raises(ValueError, match="params"):
        _C.gpt_kv_create(flat[:-1], cfg, 1, 5)
    with pytest.raises(TypeError, match="params"):
        _C.gpt_kv_create(flat.astype(np.float16), cfg, 1, 5)
    with pytest.raises(ValueError, match="invalid GPT config"):
        _C.gpt_kv_create(flat, {**cfg, "NH": 5}, 1, 5)   # NH = 5 does not divide C
    with pytest.raises(TypeError):
        _C.gpt_kv_create(flat, cfg)
    with pytest.raises(TypeError, match="decoder"):
        _C.gpt_kv_step(object(), np.array([1]))
    dec = _C.gpt_kv_create(flat, cfg, 2, 4)
    with pytest.raises(TypeError, match="decoder must be a KV-cache decoder"):
        _C.gpt_kv_step(model._context(), np.array([1]))    # a training context is not one
    with pytest.raises(TypeError, match="model must be a GPT context"):
        _C.gpt_forward(dec, np.zeros((1, 2), np.int64), 0, False)
    with pytest.raises(ValueError, match="nothing is cached"):
        _C.gpt_kv_step(dec, np.array([1]))
    with pytest.raises(ValueError, match="idx"):
        _C.gpt_kv_prefill(dec, np.zeros((3, 2), np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="idx"):
        _C.gpt_kv_prefill(dec, np.zeros((1, 5), np.int64), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="pad"):
        _C.gpt_kv_prefill(dec, np.zeros((1, 2), np.int64), np.array([2]))
    with pytest.raises(ValueError, match="pad"):
        _C.gpt_kv_prefill(dec, np.zeros((2, 2), np.int64), np.zeros(1, np.int64))
    with pytest.raises(TypeError, match="idx"):
        _C.gpt_kv_prefill(dec, np.zeros((1, 2)), np.zeros(1, np.int64))
    with pytest.raises(IndexError, match=r"idx\[0, 1\]"):
        _C.gpt_kv_prefill(dec, np.array([[0, 13]]), np.zeros(1, np.int64))
    # a padding slot may hold anything
    _C.gpt_kv_prefill(dec, np.array([[99, 1], [2, 3]]), np.array([1, 0]))
    with pytest.raises(ValueError, match="tokens"):
        _C.gpt_kv_step(dec, np.array([1]))
    with pytest.raises(IndexError, match="tokens"):
        _C.gpt_kv_step(dec, np.array([1, 13]))
    with pytest.raises(TypeError, match="tokens"):
        _C.gpt_kv_step(dec, np.array([1.0, 2.0]))
    with pytest.raises(IndexError, match="rows"):
        _C.gpt_kv_select(dec, np.array([2]))
    with pytest.raises(ValueError, match="max_batch"):
        _C.gpt_kv_select(dec, np.array([0, 0, 0]))
    _C.gpt_kv_step(dec, np.array([1, 2]))
    _C.gpt_kv_step(dec, np.array([1, 2]))
    with pytest.raises(ValueError, match="full"):
        _C.gpt_kv_step(dec, np.array([1, 2]))
    assert _C.gpt_kv_state(dec)[:2] == (2, 4)
