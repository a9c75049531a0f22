"""The fast paths' data-parallel calls (GPT and encoder-decoder): with T threads (2 <= T <= 8) and at
least T sequences, loss_and_grads runs each thread's share of the batch
through a whole forward and backward on its own (the model, or a clone of it sharing the
parameters) and sums the gradients. It must give the one-pass result up to float
re-association, bitwise the same result for a fixed thread count, and fall back to the one
pass where it does not apply."""
import numpy as np
import pytest

import transformer_c as tc
from transformer_c.nn import GPT, EncoderDecoder, EncoderDecoderConfig, GPTConfig

pytestmark = pytest.mark.openmp  # the split needs threads: skipped in a serial build

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
VARIANTS = {
    "gpt2": {},
    "post_sinusoidal": dict(norm="post", position="sinusoidal"),
    "rope": dict(position="rope"),
    "nopos_post": dict(position="none", norm="post"),
    "nobias_untied_relu": dict(bias=False, tie_embeddings=False, activation="relu"),
    "qknorm_mqa_rope": dict(qk_norm=True, n_kv_head=1, position="rope"),
}
TOL = {np.float64: 1e-12, np.float32: 2e-5}


def make(variant="gpt2", dtype=np.float64, **kw):
    cfg = GPTConfig(**{**TINY, **VARIANTS[variant], **kw})
    r = np.random.default_rng(0)
    m = GPT.create(cfg, r, dtype=dtype)
    flat = m.flat_parameters
    flat += r.normal(0, 0.1, flat.shape).astype(dtype)
    return cfg, m


def batch(cfg, B, T, seed=1):
    r = np.random.default_rng(seed)
    return r.integers(0, cfg.vocab_size, (B, T)), r.integers(0, cfg.vocab_size, (B, T))


def step(m, idx, tgt, n_threads, set_threads, **kw):
    set_threads(n_threads)
    loss, _ = m.loss_and_grads(idx, tgt, **kw)
    return loss, m.flat_grads.copy()


def assert_same(a, b, dtype):
    tol = TOL[dtype]
    assert a[0] == pytest.approx(b[0], rel=tol, abs=tol)
    scale = max(1.0, float(np.abs(b[1]).max()))
    np.testing.assert_allclose(a[1], b[1], rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [2, 3, 5])
def test_split_equals_one_pass(threads, variant, dtype, B):
    cfg, m = make(variant, dtype)
    idx, tgt = batch(cfg, B, 7)
    tgt[0, 2] = -100
    one = step(m, idx, tgt, 1, threads)
    two = step(m, idx, tgt, 2, threads)
    assert_same(two, one, dtype)
    assert tc.get_num_threads() == 2  # the workers' own thread count does not leak out


def test_split_is_bitwise_reproducible_and_thread_counts_agree(threads):
    cfg, m = make(dtype=np.float32)
    idx, tgt = batch(cfg, 6, 8)
    one = step(m, idx, tgt, 1, threads)
    runs = {t: [step(m, idx, tgt, t, threads) for _ in range(2)] for t in (2, 3)}
    for t, (a, b) in runs.items():
        assert a[0] == b[0] and np.array_equal(a[1], b[1]), t
        assert_same(a, one, np.float32)


def test_ignored_targets_weigh_the_whole_batch(threads):
    # the loss is the mean over every counted target of the batch, so a worker whose rows
    # are mostly ignored must not be averaged on its own
    cfg, m = make()
    idx, tgt = batch(cfg, 4, 6)
    tgt[:2, 1:] = -100          # the first worker keeps 2 targets, the second all 12
    assert_same(step(m, idx, tgt, 2, threads), step(m, idx, tgt, 1, threads), np.float64)
    tgt[:2] = -100              # the first worker has none at all
    assert_same(step(m, idx, tgt, 2, threads), step(m, idx, tgt, 1, threads), np.float64)


def test_every_target_ignored(threads):
    cfg, m = make()
    idx, tgt = batch(cfg, 4, 6)
    tgt[:] = -100
    loss, g = step(m, idx, tgt, 2, threads)
    assert np.isnan(loss) and not g.any()


@pytest.mark.parametrize("B,n_threads", [(1, 2), (2, 3)])
def test_fewer_sequences_than_threads_take_one_pass(threads, B, n_threads):
    cfg, m = make()
    idx, tgt = batch(cfg, B, 5)
    assert_same(step(m, idx, tgt, n_threads, threads), step(m, idx, tgt, 1, threads),
                np.float64)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("B", [2, 5])
def test_split_with_dropout_draws_the_one_pass_masks(threads, variant, B):
    # every dropout site (embeddings, attention probabilities, branches) is drawn at the
    # rows' place in the whole batch: the split gives the one-pass result with the same seed
    cfg, m = make(variant, dropout=0.3)
    idx, tgt = batch(cfg, B, 8)
    one = step(m, idx, tgt, 1, threads, seed=5)
    two = step(m, idx, tgt, 2, threads, seed=5)
    assert_same(two, one, np.float64)
    # the split ran (the one pass before grew the model's own arena to all B rows; a
    # clone's arena for its rows came on top)
    assert tc._C.gpt_arena_size(m._context()) > m.activation_bytes(B, 8)
    other = step(m, idx, tgt, 2, threads, seed=6)
    assert other[0] != pytest.approx(one[0])        # the seed matters: dropout is on
    m.training = False
    no_drop = step(m, idx, tgt, 2, threads)
    assert_same(no_drop, step(m, idx, tgt, 1, threads), np.float64)
    assert no_drop[0] != pytest.approx(one[0])


def test_split_after_one_pass_and_back(threads):
    # the same model object alternates between both paths (arena and clones stay valid)
    cfg, m = make()
    small, big = batch(cfg, 1, 8), batch(cfg, 4, 8, seed=2)
    ref_small, ref_big = step(m, *small, 1, threads), step(m, *big, 1, threads)
    for _ in range(2):
        assert_same(step(m, *big, 2, threads), ref_big, np.float64)
        assert_same(step(m, *small, 2, threads), ref_small, np.float64)
    logits_split = m.forward(big[0])
    threads(1)
    np.testing.assert_allclose(m.forward(big[0]), logits_split, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ encoder-decoder

ED = dict(src_vocab_size=11, tgt_vocab_size=13, block_size=9, n_encoder_layer=2,
          n_decoder_layer=2, n_head=2, n_embd=8, dropout=0.0)
ED_VARIANTS = {"pre": {}, "post_sinusoidal_relu": dict(norm="post", position="sinusoidal",
                                                      activation="relu")}


def make_ed(variant="pre", dtype=np.float64, **kw):
    cfg = EncoderDecoderConfig(**{**ED, **ED_VARIANTS[variant], **kw})
    r = np.random.default_rng(0)
    m = EncoderDecoder.create(cfg, r, dtype=dtype)
    m.flat_parameters[...] += r.normal(0, 0.1, m.num_parameters).astype(dtype)
    return cfg, m


def ed_batch(cfg, B, S=7, T=6, seed=1):
    """Sources of different lengths (padding masked) and padded targets (ignored)."""
    r = np.random.default_rng(seed)
    lengths = 1 + (np.arange(B) * 3) % S
    src = r.integers(1, cfg.src_vocab_size, (B, S))
    src[np.arange(S)[None] >= lengths[:, None]] = 0
    tin = r.integers(1, cfg.tgt_vocab_size, (B, T))
    tout = r.integers(1, cfg.tgt_vocab_size, (B, T))
    pad = np.arange(T)[None] >= (1 + np.arange(B) % T)[:, None]
    tin[pad], tout[pad] = 0, 0
    return src, lengths, tin, tout


def ed_step(m, b, n_threads, set_threads, **kw):
    set_threads(n_threads)
    src, lengths, tin, tout = b
    loss, _ = m.loss_and_grads(src, tin, tout, src_lengths=lengths, **kw)
    return loss, m.flat_grads.copy()


@pytest.mark.parametrize("variant", sorted(ED_VARIANTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [2, 5])
def test_encdec_split_equals_one_pass(threads, variant, dtype, B):
    cfg, m = make_ed(variant, dtype)
    b = ed_batch(cfg, B)
    one = ed_step(m, b, 1, threads)
    two = ed_step(m, b, 2, threads)
    assert_same(two, one, dtype)
    again = ed_step(m, b, 2, threads)
    assert two[0] == again[0] and np.array_equal(two[1], again[1])
    src, lengths, tin, _ = b
    logits_two = m.forward(src, tin, src_lengths=lengths)
    threads(1)
    np.testing.assert_allclose(m.forward(src, tin, src_lengths=lengths), logits_two,
                               rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("variant", sorted(ED_VARIANTS))
def test_encdec_split_with_dropout_and_a_single_sequence(threads, variant):
    cfg, m = make_ed(variant, dropout=0.3)
    b = ed_batch(cfg, 5)
    one = ed_step(m, b, 1, threads, seed=3)
    assert_same(ed_step(m, b, 2, threads, seed=3), one, np.float64)
    assert ed_step(m, b, 2, threads, seed=4)[0] != pytest.approx(one[0])
    single = tuple(a[:1] for a in b)
    assert_same(ed_step(m, single, 2, threads), ed_step(m, single, 1, threads), np.float64)


def test_each_worker_holds_an_arena_for_its_rows(threads):
    threads(2)
    cfg, m = make(dtype=np.float32)
    idx, tgt = batch(cfg, 3, 8)                 # rows 0 | 1, 2
    m.loss_and_grads(idx, tgt)
    assert tc._C.gpt_arena_size(m._context()) == m.activation_bytes(1, 8) + m.activation_bytes(2, 8)
    cfg, m = make_ed(dtype=np.float32)
    src, lengths, tin, tout = ed_batch(cfg, 4)  # rows 0, 1 | 2, 3
    m.loss_and_grads(src, tin, tout, src_lengths=lengths)
    assert tc._C.encdec_arena_size(m._context()) == 2 * m.activation_bytes(2, 7, 6)


def test_data_parallel_can_be_turned_off(threads):
    # off: one pass (no clone, no extra gradient buffer), the same result
    cfg, m = make()
    idx, tgt = batch(cfg, 4, 8)
    split = step(m, idx, tgt, 2, threads)
    cfg, m2 = make()
    assert tc.get_data_parallel() is True
    tc.set_data_parallel(False)
    try:
        assert tc.get_data_parallel() is False
        one = step(m2, idx, tgt, 2, threads)
        assert tc._C.gpt_arena_size(m2._context()) == m2.activation_bytes(4, 8)
    finally:
        tc.set_data_parallel(True)
    assert_same(split, one, np.float64)
    assert tc._C.gpt_arena_size(m._context()) == 2 * m.activation_bytes(2, 8)
