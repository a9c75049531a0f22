"""KV-cache encoder-decoder decoding (csrc/models/encdec_decode.c,
transformer_c.generate.EncoderDecoderModel).

The decoder's logits are checked against EncoderDecoder.forward on each row's source and
target prefix alone (its module-by-module path, which re-runs the encoder and the whole
decoder, and its C fast path); generation with the caches against generation through an
uncached reference model that re-runs the module path every step; a batch of sources of
different lengths against one source at a time."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import rng
from conftest import tol as conftest_tol
from transformer_c import _C
from transformer_c.generate import EncoderDecoderModel, as_model, generate
from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig

DTYPES = [np.float64, np.float32]
VS, VT = 13, 11


def tol(dtype):
    """float64 as conftest; float32 looser: the large random weights of these models amplify
    float32 rounding differences between the decoder's and the forward's summation orders."""
    return conftest_tol(dtype) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)


def make_model(dtype=np.float64, seed=0, scale=3.0, **kw):
    """A small encoder-decoder with large random weights (layer matrices ~ N(0, scale^2 /
    fan_in), embeddings ~ N(0, 1), random biases and layer-norm weights), so that its greedy
    output depends on the source and the prefix."""
    base = dict(src_vocab_size=VS, tgt_vocab_size=VT, block_size=24, n_encoder_layer=2,
                n_decoder_layer=2, n_head=2, n_embd=16, dropout=0.0)
    base.update(kw)
    model = EncoderDecoder.create(EncoderDecoderConfig(**base), rng(seed), dtype=dtype,
                                  training=False)
    r = rng(seed + 100)
    for name, leaf in model.state_dict().items():
        if name.endswith("bias"):
            leaf[...] = r.normal(0.0, 0.1, leaf.shape)
        elif ".ln_" in name or name.startswith("ln_") or name.endswith("_norm.weight"):
            leaf[...] = 1.0 + r.normal(0.0, 0.2, leaf.shape)
        elif ".h." in name:
            leaf[...] = r.normal(0.0, scale / np.sqrt(leaf.shape[1]), leaf.shape)
        else:
            leaf[...] = r.normal(0.0, 1.0, leaf.shape)
    return model


class ModuleReference:
    """The uncached reference DecodeModel: every step runs EncoderDecoder.forward through the
    module path (fast=False: the encoder and the whole decoder again) on each row's source
    and target so far, alone."""

    prompt_in_output = False

    def __init__(self, model, prefix=(1,)):
        self.model, self.prefix = model, np.asarray(prefix, dtype=np.int64)

    def _logits(self, state):
        return np.stack([self.model.forward(s, t, fast=False)[-1] for s, t in state])

    def start(self, prompts, *, max_new_tokens=None, max_batch=None):
        state = [(np.asarray(p, dtype=np.int64), self.prefix) for p in prompts]
        return state, self._logits(state)

    def step(self, state, new_tokens):
        state = [(s, np.append(t, x)) for (s, t), x in zip(state, new_tokens)]
        return state, self._logits(state)

    def select(self, state, rows):
        return [state[int(i)] for i in rows]


def right_pad(sources):
    S = max(len(s) for s in sources)
    src = np.zeros((len(sources), S), dtype=np.int64)
    for i, s in enumerate(sources):
        src[i, :len(s)] = s
    mask = np.arange(S)[None, :] < np.array([len(s) for s in sources])[:, None]
    return src, (None if mask.all() else mask)


def sources_of(lengths, seed=0, V=VS):
    return [rng(seed + i).integers(0, V, n) for i, n in enumerate(lengths)]


def check_steps(model, sources, targets, prefix_len, steps, max_batch=None, fast=False):
    """Prefill every row with its source and targets[b][:prefix_len], feed targets[b][prefix_len
    + t] for t < steps, and compare every step's logits with the forward of each row's source
    and target prefix alone."""
    dt = model.dtype
    dec = _C.encdec_kv_create(model.flat_parameters, model.config.c_fields(),
                              max_batch or len(sources), prefix_len + steps,
                              max(len(s) for s in sources))
    src, mask = right_pad(sources)
    tgt = np.stack([t[:prefix_len] for t in targets])
    logits = _C.encdec_kv_prefill(dec, src, mask, tgt)
    for t in range(steps + 1):
        assert logits.dtype == dt and logits.shape == (len(sources), model.config.tgt_vocab_size)
        for b, (s, y) in enumerate(zip(sources, targets)):
            want = model.forward(s, y[:prefix_len + t], fast=fast)[-1]
            np.testing.assert_allclose(logits[b], want, **tol(dt))
        if t < steps:
            logits = _C.encdec_kv_step(dec, np.array([y[prefix_len + t] for y in targets]))
    return dec


def targets_of(n, length, seed=50):
    return [rng(seed + i).integers(0, VT, length) for i in range(n)]


# ------------------------------------------------------------------ logits against forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_step_logits_equal_module_forward(position, norm, dtype):
    # sources of different lengths (the mask), one prefix token, then 7 steps
    model = make_model(dtype, position=position, norm=norm)
    check_steps(model, sources_of([5, 2, 9]), targets_of(3, 10), 1, 7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_logits_equal_fast_forward(dtype):
    model = make_model(dtype)
    check_steps(model, sources_of([4, 7]), targets_of(2, 8), 1, 6, fast=True)


@pytest.mark.parametrize("kw", [
    dict(bias=False), dict(tie_embeddings=False), dict(activation="relu"),
    dict(activation="gelu"), dict(activation="silu"), dict(activation="relu2"),
    dict(share_embeddings=True, tgt_vocab_size=VS),
    dict(n_inner=7, n_embd=15, n_head=3, position="sinusoidal"),  # odd widths, head size 5
    dict(n_encoder_layer=1, n_decoder_layer=3, n_head=1, n_embd=33, norm="post", bias=False),
    dict(n_encoder_layer=3, n_decoder_layer=1, position_base=500.0, layer_norm_epsilon=1e-3),
])
def test_options(kw):
    model = make_model(np.float64, **kw)
    check_steps(model, sources_of([3, 8]), targets_of(2, 9), 1, 6)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_longer_target_prefix(norm):
    # a prefix of 4 tokens: the prefill runs the causal self-attention and the
    # cross-attention for several queries at once
    model = make_model(np.float64, norm=norm)
    check_steps(model, sources_of([6, 1, 11]), targets_of(3, 10), 4, 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_rows_and_long_sources(dtype):
    # 11 rows: every product has more than 8 rows (the GEMM path, not the matrix-vector one);
    # sources up to 24 tokens
    model = make_model(dtype, n_embd=24, n_head=4)
    sources = sources_of([1 + 2 * i + (i == 10) for i in range(11)], seed=10)
    check_steps(model, sources, targets_of(11, 6), 2, 4)


def test_portable_matrix_vector_kernel():
    model = make_model(np.float32, n_embd=40, n_head=4)
    tc._C.gemm_set_kernel("generic")
    try:
        check_steps(model, sources_of([3, 6]), targets_of(2, 6), 1, 5)
    finally:
        tc._C.gemm_set_kernel("auto")


def test_source_padding_is_masked():
    # whatever sits in the padding of a short source, its row's logits are those of the source
    # alone; a mask that hides a real token changes them
    model = make_model(np.float64)
    sources = sources_of([3, 7])
    dec = _C.encdec_kv_create(model.flat_parameters, model.config.c_fields(), 2, 1, 7)
    src, mask = right_pad(sources)
    tgt = np.ones((2, 1), np.int64)
    a = _C.encdec_kv_prefill(dec, src, mask, tgt)
    src[0, 3:] = rng(3).integers(0, VS, 4)
    b = _C.encdec_kv_prefill(dec, src, mask, tgt)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0], model.forward(sources[0], [1], fast=False)[-1],
                               **tol(np.float64))
    c = _C.encdec_kv_prefill(dec, src, None, tgt)    # no mask: the padding is attended to
    assert np.abs(c[0] - a[0]).max() > 1e-3
    np.testing.assert_allclose(c[1], a[1], **tol(np.float64))


def test_dropout_is_off_and_parameters_are_read_in_place():
    model = make_model(np.float64, dropout=0.3)
    model.train()
    em = EncoderDecoderModel(model)
    src = sources_of([5])
    state, logits = em.start(src, max_new_tokens=3)
    model.eval()
    np.testing.assert_allclose(logits[0], model.forward(src[0], [1], fast=False)[-1],
                               **tol(np.float64))
    model.flat_parameters[-5:] += 0.5      # the decoder sees the new values at its next step
    state, logits = em.step(state, np.array([3]))
    np.testing.assert_allclose(logits[0], model.forward(src[0], [1, 3], fast=False)[-1],
                               **tol(np.float64))


def test_bitwise_reproducible():
    model = make_model(np.float32, n_embd=32, n_head=4)
    sources = sources_of([7, 3, 12])
    a = generate(model, sources, max_new_tokens=15, num_beams=3)
    b = generate(model, sources, max_new_tokens=15, num_beams=3)
    for x, y in zip(a.logprobs, b.logprobs):
        assert np.array_equal(x, y)


# ------------------------------------------------------------------ select

@pytest.mark.parametrize("rows", [[2, 0, 0, 1], [1, 2], [0, 2], [2], [0, 1, 2], [1, 1, 1, 1, 1]])
def test_select_rows(rows):
    # reorder, duplicate and drop rows of both caches and the mask; every row then continues
    # as the row it was copied from
    model = make_model(np.float64)
    sources = sources_of([2, 9, 5], seed=20)
    targets = targets_of(3, 8, seed=60)
    dec = _C.encdec_kv_create(model.flat_parameters, model.config.c_fields(), 5, 8, 9)
    src, mask = right_pad(sources)
    _C.encdec_kv_prefill(dec, src, mask, np.stack([y[:1] for y in targets]))
    _C.encdec_kv_step(dec, np.array([y[1] for y in targets]))
    _C.encdec_kv_select(dec, np.array(rows))
    assert _C.encdec_kv_state(dec)[:3] == (len(rows), 2, 9)
    for t in range(2, 5):
        logits = _C.encdec_kv_step(dec, np.array([targets[r][t] for r in rows]))
        for j, r in enumerate(rows):
            want = model.forward(sources[r], targets[r][:t + 1], fast=False)[-1]
            np.testing.assert_allclose(logits[j], want, **tol(np.float64))
    _C.encdec_kv_select(dec, np.zeros(0, np.int64))   # every row finished
    assert _C.encdec_kv_state(dec)[0] == 0


# ------------------------------------------------------------------ generation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_cached_equals_uncached_greedy_and_beam(norm, dtype):
    model = make_model(dtype, norm=norm, n_embd=24, n_head=3)
    sources = sources_of([5, 1, 9], seed=30)
    assert isinstance(as_model(model), EncoderDecoderModel)
    for kw in (dict(), dict(num_beams=3, num_return_sequences=2),
               dict(num_beams=4, eos_id=[0, 2], early_stopping=False, length_penalty=0.5),
               dict(eos_id=2, repetition_penalty=1.3)):
        a = generate(model, sources, max_new_tokens=12, **kw)
        b = generate(ModuleReference(model), sources, max_new_tokens=12, **kw)
        assert a.finish_reasons == b.finish_reasons
        for x, y in zip(a.tokens, b.tokens):
            assert np.array_equal(x, y)
        for x, y in zip(a.logprobs, b.logprobs):
            np.testing.assert_allclose(x, y, **tol(dtype))
        assert len({tuple(t) for t in a.tokens}) > 1   # the rows really differ
        assert a.sequences[0].tolist() == a.tokens[0].tolist()   # no source in the output


def test_cached_equals_uncached_sampling():
    model = make_model(np.float64, position="sinusoidal", n_embd=24, n_head=3, scale=1.5)
    sources = sources_of([4, 2], seed=33)
    kw = dict(max_new_tokens=15, temperature=0.9, top_k=6, top_p=0.9, seed=5, eos_id=0,
              num_return_sequences=3)
    a = generate(model, sources, **kw)
    b = generate(ModuleReference(model), sources, **kw)
    for x, y in zip(a.tokens, b.tokens):
        assert np.array_equal(x, y)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_equals_one_by_one(dtype):
    model = make_model(dtype, n_embd=24, n_head=3)
    sources = sources_of([3, 8, 1, 5, 12], seed=40)
    batch = generate(model, sources, max_new_tokens=12)
    eos = int(batch.tokens[1][3])     # a token some row emits: rows stop at different steps
    batch = generate(model, sources, max_new_tokens=12, eos_id=eos)
    assert "eos" in batch.finish_reasons and "length" in batch.finish_reasons
    for i, s in enumerate(sources):
        one = generate(model, [s], max_new_tokens=12, eos_id=eos)
        assert np.array_equal(one.tokens[0], batch.tokens[i])
        assert one.finish_reasons[0] == batch.finish_reasons[i]
        np.testing.assert_allclose(one.logprobs[0], batch.logprobs[i], **tol(dtype))
        if one.finish_reasons[0] == "eos":
            assert one.tokens[0][-1] == eos and eos not in one.tokens[0][:-1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_beam_width_one_equals_greedy(dtype):
    model = make_model(dtype, n_embd=24, n_head=3)
    sources = sources_of([6, 2, 10], seed=45)
    g = generate(model, sources, max_new_tokens=10, eos_id=4)
    b = generate(model, sources, max_new_tokens=10, eos_id=4, num_beams=1)
    for x, y in zip(g.tokens, b.tokens):
        assert np.array_equal(x, y)
    # a wider beam never scores below greedy (length_penalty 0: the sum of log-probabilities)
    g0 = generate(model, sources, max_new_tokens=10)
    w = generate(model, sources, max_new_tokens=10, num_beams=4, length_penalty=0.0)
    assert np.all(w.scores >= g0.scores - (1e-9 if dtype == np.float64 else 1e-5))


def test_prefix_and_streaming_and_state():
    model = make_model(np.float32)
    seen = []
    out = generate(model, [[1, 2, 3]], max_new_tokens=6, callback=lambda r, t: seen.append(t))
    assert seen == out.tokens[0].tolist()
    em = EncoderDecoderModel(model, prefix=[1, 4])
    state, logits = em.start([np.array([1, 2]), np.array([3])], max_new_tokens=4, max_batch=3)
    assert (state.rows, state.length, state.source_length) == (2, 2, 2)
    assert logits.dtype == np.float32 and "max_len=5" in repr(state) and state.cache_bytes > 0
    np.testing.assert_allclose(logits[1], model.forward([3], [1, 4], fast=False)[-1],
                               **tol(np.float32))
    state, logits = em.step(state, np.array([0, 0]))
    assert state.length == 3 and logits.shape == (2, VT)
    ref = generate(ModuleReference(model, prefix=[1, 4]), [[5, 6]], max_new_tokens=5)
    got = generate(em, [[5, 6]], max_new_tokens=5)
    assert np.array_equal(ref.tokens[0], got.tokens[0])


# ------------------------------------------------------------------ bad input

def test_bad_sources_and_lengths():
    model = make_model(np.float64, block_size=10)
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [np.zeros(11, np.int64)], max_new_tokens=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [np.zeros(6, np.int64)], max_new_tokens=11)
    generate(model, [np.zeros(10, np.int64)], max_new_tokens=10)   # 1 + 10 - 1 = 10 fits
    with pytest.raises(ValueError, match=r"prompts\[1\] is an empty source"):
        generate(model, [[1], []], max_new_tokens=2)
    with pytest.raises(IndexError, match="src"):
        generate(model, [[1, VS]], max_new_tokens=2)
    with pytest.raises(IndexError, match="prompts"):
        generate(model, [[1, -1]], max_new_tokens=2)
    with pytest.raises(TypeError, match="prompts"):
        generate(model, [np.array([1.0, 2.0])], max_new_tokens=2)
    with pytest.raises(TypeError, match="model"):
        EncoderDecoderModel(lambda ids: ids)
    with pytest.raises(ValueError, match="bos_id"):
        EncoderDecoderModel(model, bos_id=VT)
    with pytest.raises(ValueError, match="prefix"):
        EncoderDecoderModel(model, prefix=[])
    with pytest.raises(ValueError, match="prefix"):
        EncoderDecoderModel(model, prefix=[1, VT])
    with pytest.raises(TypeError, match="prefix"):
        EncoderDecoderModel(model, prefix=[1.5])
    em = EncoderDecoderModel(model)
    with pytest.raises(ValueError, match="empty"):
        em.start([], max_new_tokens=2, max_batch=1)
    state, _ = em.start([[1, 2]], max_new_tokens=None, max_batch=None)
    assert "max_len=10" in repr(state)


def test_raw_decoder_bad_input():
    model = make_model(np.float64, block_size=10)
    cfg = model.config.c_fields()
    flat = model.flat_parameters
    with pytest.raises(ValueError, match="max_len"):
        _C.encdec_kv_create(flat, cfg, 1, 11, 5)
    with pytest.raises(ValueError, match="max_src_len"):
        _C.encdec_kv_create(flat, cfg, 1, 5, 0)
    with pytest.raises(ValueError, match="max_batch"):
        _C.encdec_kv_create(flat, cfg, 0, 5, 5)
    with pytest.raises(ValueError, match="params"):
        _C.encdec_kv_create(flat[:-1], cfg, 1, 5, 5)
    with pytest.raises(TypeError, match="params"):
        _C.encdec_kv_create(flat.astype(np.float16), cfg, 1, 5, 5)
    with pytest.raises(ValueError, match="invalid encoder-decoder config"):
        _C.encdec_kv_create(flat, {**cfg, "NH": 5}, 1, 5, 5)   # NH = 5 does not divide C
    with pytest.raises(TypeError):
        _C.encdec_kv_create(flat, cfg)
    with pytest.raises(TypeError, match="decoder"):
        _C.encdec_kv_step(object(), np.array([1]))
    with pytest.raises(TypeError, match="decoder"):
        _C.gpt_kv_step(_C.encdec_kv_create(flat, cfg, 1, 2, 2), np.array([1]))
    dec = _C.encdec_kv_create(flat, cfg, 2, 4, 6)
    with pytest.raises(ValueError, match="nothing is cached"):
        _C.encdec_kv_step(dec, np.array([1]))
    one = np.ones((1, 1), np.int64)
    with pytest.raises(ValueError, match="src"):
        _C.encdec_kv_prefill(dec, np.zeros((3, 2), np.int64), None, np.ones((3, 1), np.int64))
    with pytest.raises(ValueError, match="src"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 7), np.int64), None, one)
    with pytest.raises(ValueError, match="src"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 0), np.int64), None, one)
    with pytest.raises(IndexError, match="src"):
        _C.encdec_kv_prefill(dec, np.full((1, 2), VS), None, one)
    with pytest.raises(TypeError, match="src"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2)), None, one)
    with pytest.raises(TypeError, match="src_mask"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), np.ones((1, 2), np.uint8), one)
    with pytest.raises(ValueError, match="src_mask"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), np.ones((1, 3), bool), one)
    with pytest.raises(ValueError, match="src_mask row 0"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), np.zeros((1, 2), bool), one)
    with pytest.raises(ValueError, match="tgt"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), None, np.ones((2, 1), np.int64))
    with pytest.raises(ValueError, match="tgt"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), None, np.ones((1, 5), np.int64))
    with pytest.raises(IndexError, match="tgt"):
        _C.encdec_kv_prefill(dec, np.zeros((1, 2), np.int64), None, np.full((1, 1), VT))
    _C.encdec_kv_prefill(dec, np.zeros((2, 2), np.int64), None, np.ones((2, 1), np.int64))
    with pytest.raises(ValueError, match="tokens"):
        _C.encdec_kv_step(dec, np.array([1]))
    with pytest.raises(IndexError, match="tokens"):
        _C.encdec_kv_step(dec, np.array([1, VT]))
    with pytest.raises(IndexError, match="rows"):
        _C.encdec_kv_select(dec, np.array([2]))
    with pytest.raises(ValueError, match="rows"):
        _C.encdec_kv_select(dec, np.zeros(3, np.int64))
    for _ in range(3):
        _C.encdec_kv_step(dec, np.array([1, 2]))
    with pytest.raises(ValueError, match="full"):
        _C.encdec_kv_step(dec, np.array([1, 2]))
    assert _C.encdec_kv_state(dec)[:3] == (2, 4, 2)
