"""transformer_c.generate: greedy, sampling, beam search and the coursework SequenceGenerator,
checked against decoding loops unrolled by hand in this file over deterministic scoring
tables and functions (no real model needed)."""
import itertools
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import rng

G = tc.generate
EOS = 0


# ------------------------------------------------------------------ deterministic "models"

def ref_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max()
    return z - math.log(np.exp(z).sum())


class HashLM:
    """Next-token logits a deterministic function of the whole prefix: a row of a fixed
    random table picked by a polynomial hash of the prefix. ``calls`` records the shapes."""

    def __init__(self, V=11, K=997, seed=0, scale=2.0, dtype=np.float64, eos_boost=0.0):
        self.V, self.K = V, K
        self.table = (scale * rng(seed).standard_normal((K, V))).astype(dtype)
        self.table[:, EOS] += eos_boost
        self.calls = []

    def next_logits(self, prefix):
        h = 0
        for t in prefix:
            h = (h * 1000003 + int(t) + 1) % 2147483647
        return self.table[h % self.K]

    def last(self, ids):                       # (n, T) -> (n, V)
        self.calls.append(ids.shape)
        return np.stack([self.next_logits(r) for r in ids])

    def __call__(self, ids):                   # (n, T) -> (n, T, V)
        self.calls.append(ids.shape)
        return np.stack([np.stack([self.next_logits(r[:t + 1]) for t in range(ids.shape[1])])
                         for r in ids])


class TableLM:
    """Probabilities given by a table keyed on the generated suffix (the tokens after the
    prompt, whose length is fixed); logits = log(p). Unlisted suffixes use ``default``."""

    def __init__(self, table, default, prompt_len=1):
        self.table, self.default, self.P = table, np.asarray(default, float), prompt_len

    def probs(self, suffix):
        return np.asarray(self.table.get(tuple(int(t) for t in suffix), self.default), float)

    def __call__(self, ids):
        with np.errstate(divide="ignore"):
            return np.stack([np.log(self.probs(r[self.P:])) for r in ids])


def hand_greedy(next_logits, prompt, max_new, eos=(EOS,), penalty=1.0):
    """Greedy decoding unrolled by hand: argmax, repetition penalty as CTRL."""
    seq, toks, lps = list(prompt), [], []
    for _ in range(max_new):
        l = np.array(next_logits(seq), dtype=np.float64)
        if penalty != 1.0:
            for t in set(seq):
                l[t] = l[t] / penalty if l[t] > 0 else l[t] * penalty
        tok = int(np.argmax(l))
        toks.append(tok)
        lps.append(ref_log_softmax(l)[tok])
        seq.append(tok)
        if tok in eos:
            break
    return toks, lps


# ------------------------------------------------------------------ greedy

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("last_only", [False, True])
def test_greedy_equals_hand_unrolled_argmax(dtype, last_only):
    lm = HashLM(dtype=dtype, eos_boost=0.5)
    prompts = [np.array([3, 1, 4]), np.array([5]), np.array([9, 2, 6, 5, 3, 5, 8])]
    model = G.FunctionModel(lm.last if last_only else lm, last_only=last_only)
    out = G.greedy(model, prompts, max_new_tokens=12, eos_id=EOS)
    assert len(out) == 3
    for i, p in enumerate(prompts):
        toks, lps = hand_greedy(lm.next_logits, p, 12)
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_array_equal(out.tokens[i], toks)
        np.testing.assert_allclose(out.logprobs[i], lps, rtol=rtol)
        np.testing.assert_allclose(out.scores[i], sum(lps), rtol=rtol)
        assert out.finish_reasons[i] == ("eos" if toks[-1] == EOS else "length")
        np.testing.assert_array_equal(out.sequences[i], np.concatenate([p, toks]))
        assert out.tokens[i].dtype == np.int64 and out.scores.dtype == np.float64
    assert out.beam_scores is None
    assert {r for r in out.finish_reasons} == {"eos", "length"}  # rows stop at different times


def test_greedy_ties_pick_lowest_id_and_generate_defaults_to_greedy():
    def fn(ids):
        l = np.zeros(ids.shape + (5,))
        l[..., 2] = l[..., 4] = 1.0   # tie between 2 and 4
        return l
    out = G.generate(fn, [np.array([1])], max_new_tokens=3)
    np.testing.assert_array_equal(out.tokens[0], [2, 2, 2])
    np.testing.assert_allclose(out.logprobs[0], [ref_log_softmax([0, 0, 1, 0, 1])[2]] * 3,
                               rtol=1e-14)


def test_batch_equals_one_by_one_and_calls_group_rows_by_length():
    lm = HashLM(eos_boost=0.8, seed=3)
    prompts = [np.array([1, 2]), np.array([7]), np.array([4, 4, 4, 4]), np.array([2, 8]),
               np.array([10])]
    for kw in (dict(), dict(repetition_penalty=1.7), dict(num_beams=3),
               dict(num_beams=2, num_return_sequences=2, length_penalty=0.5)):
        lm.calls.clear()
        batch = G.generate(lm, prompts, max_new_tokens=9, eos_id=EOS, **kw)
        first_calls = list(lm.calls)
        for i, p in enumerate(prompts):
            one = G.generate(lm, [p], max_new_tokens=9, eos_id=EOS, **kw)
            n = one.num_return_sequences
            for j in range(n):
                np.testing.assert_array_equal(batch.tokens[i * n + j], one.tokens[j])
                assert batch.scores[i * n + j] == one.scores[j]
                np.testing.assert_array_equal(batch.logprobs[i * n + j], one.logprobs[j])
                assert batch.finish_reasons[i * n + j] == one.finish_reasons[j]
                np.testing.assert_array_equal(batch.prompts[i * n + j], p)
        if not kw:
            # start: one call per distinct prompt length (1, 2, 4), never padded
            assert sorted(first_calls[:3]) == [(1, 4), (2, 1), (2, 2)]


def test_function_model_feeds_only_context_size_tokens():
    seen = []

    def fn(ids):
        seen.append(ids.shape[1])
        return np.zeros(ids.shape + (4,))
    G.greedy(G.FunctionModel(fn, context_size=3), [np.array([1, 2])], max_new_tokens=5)
    assert seen == [2, 3, 3, 3, 3]


class BigramCached:
    """A hand-written DecodeModel with a 'cache' over a bigram table: the state holds each
    row's last token and how many tokens it was fed, checked against the start hints (what a
    preallocated KV cache relies on)."""

    def __init__(self, table):
        self.table, self.steps, self.hints = table, 0, None

    def start(self, prompts, *, max_new_tokens, max_batch):
        self.hints = (max_new_tokens, max_batch)
        last = np.array([p[-1] for p in prompts], dtype=np.int64)
        return (last, np.zeros(len(prompts), dtype=np.int64)), self.table[last]

    def step(self, state, new_tokens):
        self.steps += 1
        last, fed = state
        assert new_tokens.shape == last.shape and new_tokens.dtype == np.int64
        assert np.all(fed + 1 <= self.hints[0] - 1)
        return (new_tokens.copy(), fed + 1), self.table[new_tokens]

    def select(self, state, rows):
        assert len(rows) <= self.hints[1]
        return state[0][rows], state[1][rows]


@pytest.mark.parametrize("kw,rows", [
    (dict(), 3), (dict(temperature=0.9, top_k=5, top_p=0.9, seed=4), 3),
    (dict(num_beams=3, num_return_sequences=3), 9),
    (dict(repetition_penalty=1.3, temperature=1.0, seed=1, num_return_sequences=2), 6)])
def test_cached_protocol_adapter_equals_uncached_function(kw, rows):
    table = 2 * rng(5).standard_normal((9, 9))
    cached = BigramCached(table)
    prompts = [np.array([3, 1]), np.array([5]), np.array([2, 2, 7])]
    a = G.generate(cached, prompts, max_new_tokens=10, eos_id=EOS, **kw)
    b = G.generate(lambda ids: table[ids], prompts, max_new_tokens=10, eos_id=EOS, **kw)
    assert cached.steps > 0 and cached.hints == (10, rows)
    assert max(t.size for t in a.tokens) == 10      # some row ran to max_new_tokens
    for x, y in zip(a.tokens, b.tokens):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.finish_reasons == b.finish_reasons


def test_max_new_tokens_zero_and_empty_batch_do_not_call_the_model():
    def fn(ids):
        raise AssertionError("called")
    out = G.generate(fn, [np.array([1, 2])], max_new_tokens=0)
    assert out.tokens[0].size == 0 and out.scores[0] == 0 and out.finish_reasons == ["length"]
    np.testing.assert_array_equal(out.sequences[0], [1, 2])
    assert len(G.generate(fn, [], max_new_tokens=5)) == 0
    assert len(G.generate(fn, [], max_new_tokens=5, num_beams=2)) == 0


def test_prompt_forms_and_padded():
    table = rng(1).standard_normal((6, 6))
    fn = lambda ids: table[ids]  # noqa: E731
    a = G.greedy(fn, np.array([[1, 2], [3, 4]]), max_new_tokens=3)
    b = G.greedy(fn, [[1, 2], [3, 4]], max_new_tokens=3)
    c = G.greedy(fn, [1, 2], max_new_tokens=3)
    d = G.greedy(fn, np.array([1, 2], dtype=np.int32), max_new_tokens=3)
    for x in (b, c, d):
        np.testing.assert_array_equal(x.tokens[0], a.tokens[0])
    assert len(c) == 1 and len(b) == 2
    out = G.greedy(fn, [[1], [2]], max_new_tokens=4, eos_id=[int(a.tokens[0][0])])
    pad = out.padded(-1)
    assert pad.shape == (2, max(t.size for t in out.tokens))
    for i, t in enumerate(out.tokens):
        np.testing.assert_array_equal(pad[i, :t.size], t)
        assert np.all(pad[i, t.size:] == -1)
    np.testing.assert_array_equal(out.padded(-1, with_prompt=True)[0, :1], [1])


def test_encoder_decoder_style_adapter_keeps_prompt_out_of_output():
    class Seq2Seq(BigramCached):
        prompt_in_output = False

        def start(self, prompts, **hints):   # the "encoder" sees the source; BOS = 1
            _, logits = super().start(prompts, **hints)
            bos = np.ones(len(prompts), dtype=np.int64)
            return (bos, np.zeros(len(prompts), dtype=np.int64)), self.table[bos]

    table = np.zeros((4, 4))
    table[1] = [0, 0, 0, 5.0]   # after BOS: token 3
    table[3] = [0, 0, 4.0, 0]   # after 3: token 2
    table[2] = [0, 0, 0, 3.0]
    m = Seq2Seq(table)
    out = G.greedy(m, [np.array([2, 2, 2])], max_new_tokens=3, repetition_penalty=100.0)
    # the source's token 2 is not penalised (else 2's logit 4 -> 0.04 and the argmax is 0)
    np.testing.assert_array_equal(out.tokens[0][:2], [3, 2])
    np.testing.assert_array_equal(out.sequences[0], out.tokens[0])


# ------------------------------------------------------------------ beam search

# 0 = <EOS>, 1 = a, 2 = b. Greedy: a (.5), a (.36), <EOS> (.4): p = .072.
# Best: b (.4), <EOS> (.9): p = .36.
BEAM_TABLE = {(): [0.1, 0.5, 0.4], (1,): [0.3, 0.36, 0.34], (1, 1): [0.4, 0.3, 0.3],
              (2,): [0.9, 0.05, 0.05]}
BEAM_DEFAULT = [0.5, 0.25, 0.25]


def test_beam_finds_best_sequence_where_greedy_fails():
    lm = G.FunctionModel(TableLM(BEAM_TABLE, BEAM_DEFAULT), last_only=True)
    g = G.greedy(lm, [np.array([1])], max_new_tokens=5, eos_id=EOS)
    np.testing.assert_array_equal(g.tokens[0], [1, 1, 0])
    np.testing.assert_allclose(g.scores[0], math.log(.5) + math.log(.36) + math.log(.4),
                               rtol=1e-12)
    for alpha in (0.0, 1.0):
        b = G.beam_search(lm, [np.array([1])], num_beams=2, max_new_tokens=5, eos_id=EOS,
                          length_penalty=alpha, num_return_sequences=2)
        np.testing.assert_array_equal(b.tokens[0], [2, 0])
        np.testing.assert_allclose(b.logprobs[0], [math.log(.4), math.log(.9)], rtol=1e-12)
        np.testing.assert_allclose(b.scores[0], math.log(.36), rtol=1e-12)
        np.testing.assert_allclose(b.beam_scores[0], math.log(.36) / 2 ** alpha, rtol=1e-12)
        assert b.finish_reasons[0] == "eos"
    # second best (alpha 0): a b <EOS> = .5 * .34 * .5 = .085 beats a a <EOS> = .072
    b0 = G.beam_search(lm, [np.array([1])], num_beams=2, max_new_tokens=5, eos_id=EOS,
                       length_penalty=0.0, num_return_sequences=2)
    np.testing.assert_array_equal(b0.tokens[1], [1, 2, 0])
    np.testing.assert_allclose(b0.scores[1], math.log(.5 * .34 * .5), rtol=1e-12)


def test_beam_width_1_equals_greedy():
    lm = HashLM(eos_boost=0.7, seed=8)
    prompts = [np.array([1, 5]), np.array([3]), np.array([6, 6, 2])]
    for kw in (dict(), dict(repetition_penalty=1.4)):
        g = G.greedy(lm, prompts, max_new_tokens=10, eos_id=EOS, **kw)
        b = G.beam_search(lm, prompts, num_beams=1, max_new_tokens=10, eos_id=EOS, **kw)
        for i in range(3):
            np.testing.assert_array_equal(b.tokens[i], g.tokens[i])
            assert b.scores[i] == g.scores[i]
            assert b.finish_reasons[i] == g.finish_reasons[i]
            np.testing.assert_allclose(b.beam_scores[i], g.scores[i] / g.tokens[i].size,
                                       rtol=1e-14)


def brute_force_hypotheses(next_logits, prompt, V, max_new, alpha):
    """Every complete hypothesis (ends in <EOS>, or reaches max_new): (norm, sum, tokens)."""
    out = []
    for L in range(1, max_new + 1):
        for toks in itertools.product(range(V), repeat=L):
            if EOS in toks[:-1] or (L < max_new and toks[-1] != EOS):
                continue
            seq, total = list(prompt), 0.0
            for t in toks:
                total += ref_log_softmax(next_logits(seq))[t]
                seq.append(t)
            out.append((total / L ** alpha, total, toks))
    return sorted(out, key=lambda h: -h[0])


@pytest.mark.parametrize("alpha", [0.0, 0.7, 2.0])
def test_wide_beam_is_exhaustive_search(alpha):
    lm = HashLM(V=3, seed=11, scale=1.5)
    want = brute_force_hypotheses(lm.next_logits, [2], 3, 3, alpha)
    b = G.beam_search(lm, [np.array([2])], num_beams=len(want), max_new_tokens=3,
                      eos_id=EOS, length_penalty=alpha, num_return_sequences=len(want),
                      early_stopping=False)
    for j, (norm, total, toks) in enumerate(want):
        np.testing.assert_array_equal(b.tokens[j], toks)
        np.testing.assert_allclose(b.scores[j], total, rtol=1e-12)
        np.testing.assert_allclose(b.beam_scores[j], norm, rtol=1e-12)


# 0 = <EOS>, 1 = a. <EOS> now: log .6 = -0.51; a <EOS>: log(.4 * .99) = -0.93 (-0.46 per token)
STOP_TABLE = {(): [0.6, 0.4], (1,): [0.99, 0.01]}


def test_length_penalty_and_early_stopping():
    lm = G.FunctionModel(TableLM(STOP_TABLE, [0.5, 0.5]), last_only=True)
    kw = dict(num_beams=1, max_new_tokens=5, eos_id=EOS)
    # early stopping: done as soon as num_beams hypotheses are finished
    b = G.beam_search(lm, [[1]], length_penalty=1.0, early_stopping=True, **kw)
    np.testing.assert_array_equal(b.tokens[0], [0])
    # without it the live beam "a" can still reach log(.4) / 5 > log(.6): search goes on
    b = G.beam_search(lm, [[1]], length_penalty=1.0, early_stopping=False, **kw)
    np.testing.assert_array_equal(b.tokens[0], [1, 0])
    np.testing.assert_allclose(b.scores[0], math.log(.4 * .99), rtol=1e-12)
    np.testing.assert_allclose(b.beam_scores[0], math.log(.4 * .99) / 2, rtol=1e-12)
    # length_penalty 0 ranks raw log-probabilities: the short one wins
    b = G.beam_search(lm, [[1]], length_penalty=0.0, early_stopping=False, **kw)
    np.testing.assert_array_equal(b.tokens[0], [0])
    np.testing.assert_allclose(b.beam_scores[0], math.log(.6), rtol=1e-12)


def test_exact_bound_keeps_searching_for_long_hypotheses():
    # <EOS> now: log .7 = -0.36. a a a <EOS>: log(.3 * .999**3) = -1.21, -0.30 per token.
    # After "a" (score -1.20, length 1) the best reachable is -1.20 / 5 > -0.36: go on
    # (a bound at length 2, -0.60, would wrongly stop).
    table = {(): [0.7, 0.3], (1,): [0.001, 0.999], (1, 1): [0.001, 0.999],
             (1, 1, 1): [0.999, 0.001]}
    lm = G.FunctionModel(TableLM(table, [0.5, 0.5]), last_only=True)
    b = G.beam_search(lm, [[1]], num_beams=1, max_new_tokens=5, eos_id=EOS,
                      length_penalty=1.0, early_stopping=False)
    np.testing.assert_array_equal(b.tokens[0], [1, 1, 1, 0])
    np.testing.assert_allclose(b.beam_scores[0], math.log(.3 * .999 ** 3) / 4, rtol=1e-12)


def test_eos_ranked_below_num_beams_is_not_a_hypothesis():
    # as Hugging Face: only an <EOS> among the first num_beams candidates finishes a beam.
    # 0 and 1 both end a sequence, 2 = a, 3 = b. Step 1: <EOS0> (.3) rank 0 -> hypothesis,
    # a (.26) rank 1 -> beam, <EOS1> (.25) rank 2 -> skipped, b (.19) -> beam.
    # Step 2: a <EOS0> (.26 * .9) -> the second hypothesis.
    table = {(): [0.3, 0.25, 0.26, 0.19], (2,): [0.9, 0.0333, 0.0333, 0.0334]}
    lm = G.FunctionModel(TableLM(table, [0.25] * 4), last_only=True)
    b = G.beam_search(lm, [[1]], num_beams=2, max_new_tokens=4, eos_id=[0, 1],
                      num_return_sequences=2, length_penalty=0.0)
    np.testing.assert_array_equal(b.tokens[0], [0])
    np.testing.assert_array_equal(b.tokens[1], [2, 0])
    np.testing.assert_allclose(b.scores, [math.log(.3), math.log(.26 * .9)], rtol=1e-12)


def test_beam_width_1_skips_an_eos_that_greedy_would_not_take():
    # Step 1: a (.6) rank 0 fills the single beam; <EOS> (.4) is never a hypothesis.
    table = {(): [0.4, 0.6]}
    lm = G.FunctionModel(TableLM(table, [0.1, 0.9]), last_only=True)
    b = G.beam_search(lm, [[1]], num_beams=1, max_new_tokens=3, eos_id=EOS)
    np.testing.assert_array_equal(b.tokens[0], [1, 1, 1])
    assert b.finish_reasons == ["length"]
    g = G.greedy(lm, [[1]], max_new_tokens=3, eos_id=EOS)
    np.testing.assert_array_equal(g.tokens[0], b.tokens[0])


def test_beam_without_eos_runs_to_max_length_and_ranks_beams():
    table = rng(2).standard_normal((5, 5))
    # 125 beams hold every path of length 3, so the search is exact at length 4
    b = G.beam_search(lambda ids: table[ids], [[1]], num_beams=125, max_new_tokens=4,
                      num_return_sequences=3, length_penalty=0.0)
    assert all(t.size == 4 for t in b.tokens) and b.finish_reasons == ["length"] * 3
    # the best 3 of all 5**4 paths of a bigram table, by brute force
    lp = np.stack([ref_log_softmax(r) for r in table])
    total = {s: sum(lp[a, c] for a, c in zip((1,) + s[:-1], s))
             for s in itertools.product(range(5), repeat=4)}
    best = sorted(total, key=lambda s: -total[s])[:3]
    for j in range(3):
        np.testing.assert_array_equal(b.tokens[j], best[j])
        np.testing.assert_allclose(b.scores[j], total[best[j]], rtol=1e-12)


# ------------------------------------------------------------------ sampling

CHI2_CRIT_001 = [10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877,
                 29.588, 31.264, 32.909]


def chi_square(observed, expected_p):
    """Pearson's statistic by hand and whether it passes at the 0.001 level (degrees of
    freedom = categories - 1). Cross-checked against scipy when it is installed."""
    observed = np.asarray(observed, float)
    exp = np.asarray(expected_p, float) * observed.sum()
    stat = float(((observed - exp) ** 2 / exp).sum())
    try:
        from scipy import stats
        ref = stats.chisquare(observed, exp)
        assert stat == pytest.approx(ref.statistic, rel=1e-10)
    except ImportError:
        pass
    return stat, stat < CHI2_CRIT_001[len(observed) - 2]


def ref_filter(logits, temperature, top_k, top_p):
    """The sampling distribution by hand: softmax(l / T), keep top-k, renormalise, keep the
    nucleus (tokens whose higher-ranked mass is < top_p), renormalise."""
    l = np.asarray(logits, float) / temperature
    p = np.exp(l - l.max())
    p /= p.sum()
    if top_k:
        kth = np.sort(l)[-top_k]
        p = np.where(l >= kth, p, 0.0)
        p /= p.sum()
    if top_p < 1:
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        keep, mass = np.zeros(len(p), bool), 0.0
        for i in order:
            if mass < top_p:
                keep[i] = True
            mass += p[i]
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    return p


LOGITS = np.array([1.2, -0.3, 2.5, 0.1, 0.9, -2.0, 1.9, 0.4, -1.1, 0.0])


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 4, 1.0), (0.7, 0, 0.8),
                                                     (1.5, 6, 0.7), (1.0, 0, 1.0),
                                                     (2.0, 3, 0.5)])
def test_sampling_matches_expected_distribution(temperature, top_k, top_p):
    fn = lambda ids: np.broadcast_to(LOGITS, ids.shape + (10,))  # noqa: E731
    n = 20000
    out = G.sample(fn, [[3]], max_new_tokens=1, temperature=temperature, top_k=top_k,
                   top_p=top_p, seed=123, num_return_sequences=n)
    toks = np.concatenate(out.tokens)
    want = ref_filter(LOGITS, temperature, top_k, top_p)
    assert not np.any(np.isin(toks, np.flatnonzero(want == 0)))      # never an excluded token
    kept = np.flatnonzero(want > 0)
    counts = np.bincount(toks, minlength=10)[kept]
    _, ok = chi_square(counts, want[kept])
    assert ok
    # the test has power: a uniform distribution over the same tokens is rejected
    assert not chi_square(counts, np.full(kept.size, 1.0 / kept.size))[1]
    # scores are the model's log-probabilities (untruncated, no temperature)
    np.testing.assert_allclose(out.scores, ref_log_softmax(LOGITS)[toks], rtol=1e-12)


def test_top_k_top_p_never_emit_excluded_tokens_over_many_steps():
    lm = HashLM(V=13, seed=21, scale=2.5)
    prompts = [np.array([i % 13, (3 * i) % 13]) for i in range(60)]
    temperature, top_k, top_p = 0.8, 5, 0.75
    out = G.sample(G.FunctionModel(lm.last, last_only=True), prompts,
                   max_new_tokens=15, temperature=temperature, top_k=top_k, top_p=top_p,
                   seed=7)
    checked = 0
    for p, toks in zip(prompts, out.tokens):
        seq = list(p)
        for t in toks:
            allowed = ref_filter(lm.next_logits(seq), temperature, top_k, top_p) > 0
            assert allowed[t]
            assert allowed.sum() <= top_k
            seq.append(int(t))
            checked += 1
    assert checked == 60 * 15


def test_temperature_zero_is_greedy_and_tiny_temperatures_do_not_overflow():
    lm = HashLM(eos_boost=0.3, seed=4)
    prompts = [np.array([1, 2, 3]), np.array([4])]
    g = G.greedy(lm, prompts, max_new_tokens=8, eos_id=EOS)
    for t in (0.0, 1e-30, 1e-300):
        s = G.sample(lm, prompts, max_new_tokens=8, eos_id=EOS, temperature=t, seed=0)
        for a, b in zip(s.tokens, g.tokens):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(s.scores, g.scores)
    s = G.generate(lm, prompts, max_new_tokens=8, eos_id=EOS, temperature=0.0, top_k=3)
    np.testing.assert_array_equal(s.scores, g.scores)
    z = G.apply_temperature(np.array([[1.0, 2.0, -np.inf]], dtype=np.float32), 1e-40)
    assert z.dtype == np.float32 and z[0, 1] == 0 and np.all(z[0, [0, 2]] == -np.inf)


def test_seeded_sampling_is_reproducible():
    lm = HashLM(seed=6)
    prompts = [np.array([1, 2]), np.array([3])]
    kw = dict(max_new_tokens=20, temperature=1.2, top_k=8, top_p=0.95)
    a = G.sample(lm, prompts, seed=42, **kw)
    b = G.sample(lm, prompts, seed=42, **kw)
    c = G.sample(lm, prompts, seed=np.random.default_rng(42), **kw)
    d = G.sample(lm, prompts, seed=43, **kw)
    for x in (b, c):
        for u, v in zip(a.tokens, x.tokens):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(a.tokens, d.tokens))


def test_num_return_sequences_sampling_rows_are_prompt_major():
    lm = HashLM(seed=2)
    out = G.sample(lm, [[1], [2, 3]], max_new_tokens=4, seed=0, num_return_sequences=3)
    assert len(out) == 6 and out.num_return_sequences == 3
    for j in range(6):
        np.testing.assert_array_equal(out.prompts[j], [1] if j < 3 else [2, 3])


# ------------------------------------------------------------------ stopping, streaming

def cycle_model(V=5):
    """Deterministic: after token t comes t + 1 (mod V, skipping 0 = <EOS>)."""
    table = np.full((V, V), -5.0)
    for t in range(V):
        table[t, t % (V - 1) + 1] = 5.0
    return lambda ids: table[ids]


def letters(ids):
    return "".join("_abcd"[i] for i in ids)


def test_stop_strings_across_tokens_and_eos_ids():
    fn = cycle_model()
    # 1 -> 2 -> 3 -> 4 -> 1 ...: text "bcdabcd"; "da" is completed by the 4th token
    out = G.greedy(fn, [[1], [3]], max_new_tokens=10, stop_strings=["da"], decode=letters)
    np.testing.assert_array_equal(out.tokens[0], [2, 3, 4, 1])
    np.testing.assert_array_equal(out.tokens[1], [4, 1])
    assert out.finish_reasons == ["stop", "stop"]
    out = G.greedy(fn, [[1]], max_new_tokens=10, eos_id=[4, 3])
    np.testing.assert_array_equal(out.tokens[0], [2, 3])
    assert out.finish_reasons == ["eos"]
    out = G.beam_search(fn, [[1]], num_beams=2, max_new_tokens=10, stop_strings="cd",
                        decode=letters)
    np.testing.assert_array_equal(out.tokens[0], [2, 3, 4])
    assert out.finish_reasons[0] == "stop"
    # the prompt's text does not count: "a" is in the prompt, not in the new tokens
    out = G.greedy(fn, [[1]], max_new_tokens=3, stop_strings=["a"], decode=letters)
    assert out.finish_reasons == ["length"]


def test_streaming_callback_receives_every_token_in_order():
    lm = HashLM(eos_boost=0.6, seed=9)
    got = []
    out = G.generate(lm, [[1, 2], [5]], max_new_tokens=6, eos_id=EOS, temperature=0.9,
                     seed=3, callback=lambda row, tok: got.append((row, tok)))
    for r in (0, 1):
        assert [t for row, t in got if row == r] == out.tokens[r].tolist()
    assert len(got) == sum(t.size for t in out.tokens)
    # interleaved by step: row 0's k-th token comes before row 1's (k+1)-th
    steps = {}
    for i, (row, _) in enumerate(got):
        steps.setdefault(row, []).append(i)
    assert steps[0][0] < steps[1][0]


# ------------------------------------------------------------------ repetition penalty

def test_repetition_penalty_values():
    l = np.array([[2.0, -1.0, 0.5, -3.0, 0.0]])
    seen = np.array([[True, True, False, False, True]])
    np.testing.assert_array_equal(G.apply_repetition_penalty(l, seen, 2.0),
                                  [[1.0, -2.0, 0.5, -3.0, 0.0]])
    np.testing.assert_array_equal(G.apply_repetition_penalty(l, seen, 0.5),
                                  [[4.0, -0.5, 0.5, -3.0, 0.0]])
    f32 = G.apply_repetition_penalty(l.astype(np.float32), seen, 3.0)
    assert f32.dtype == np.float32


def test_repetition_penalty_in_greedy_counts_prompt_and_generated_tokens():
    base = np.array([3.0, 2.5, 1.0, -1.0])
    fn = lambda ids: np.broadcast_to(base, ids.shape + (4,))  # noqa: E731
    out = G.greedy(fn, [[0]], max_new_tokens=3, repetition_penalty=2.0)
    # step 1: 0 is in the prompt: [1.5, 2.5, 1, -1] -> 1; step 2: [1.5, 1.25, 1, -1] -> 0;
    # step 3: the same -> 0
    np.testing.assert_array_equal(out.tokens[0], [1, 0, 0])
    want = [ref_log_softmax([1.5, 2.5, 1, -1])[1], ref_log_softmax([1.5, 1.25, 1, -1])[0],
            ref_log_softmax([1.5, 1.25, 1, -1])[0]]
    np.testing.assert_allclose(out.logprobs[0], want, rtol=1e-12)
    lm = HashLM(seed=12)
    for p in ([1, 2, 3], [7]):
        toks, lps = hand_greedy(lm.next_logits, p, 10, eos=(), penalty=1.8)
        out = G.greedy(lm, [p], max_new_tokens=10, repetition_penalty=1.8)
        np.testing.assert_array_equal(out.tokens[0], toks)
        np.testing.assert_allclose(out.logprobs[0], lps, rtol=1e-12)


class FixedUniforms:
    def __init__(self, u):
        self.u = np.asarray(u, float)

    def random(self, n):
        return self.u[:n]


def test_sample_tokens_never_draws_zero_probability_tokens():
    p = np.array([[0.0, 0.5, 0.0, 0.5, 0.0]] * 3)
    tok = tc.generate.processors.sample_tokens(p, FixedUniforms([0.0, 0.5, 1 - 1e-16]))
    np.testing.assert_array_equal(tok, [1, 3, 3])


def test_top_k_and_top_p_filters_directly():
    l = np.array([[1.0, 3.0, 2.0, 3.0, -1.0]])
    np.testing.assert_array_equal(np.isfinite(G.top_k_filter(l, 2)), [[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(np.isfinite(G.top_k_filter(l, 3)), [[0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(G.top_k_filter(l, 0), l)
    np.testing.assert_array_equal(G.top_k_filter(l, 9), l)
    p = np.log(np.array([[0.1, 0.5, 0.25, 0.15]]))
    np.testing.assert_array_equal(np.isfinite(G.top_p_filter(p, 0.5)), [[0, 1, 0, 0]])
    np.testing.assert_array_equal(np.isfinite(G.top_p_filter(p, 0.6)), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(np.isfinite(G.top_p_filter(p, 0.85)), [[0, 1, 1, 1]])
    np.testing.assert_array_equal(np.isfinite(G.top_p_filter(p, 0.95)), [[1, 1, 1, 1]])
    np.testing.assert_array_equal(np.isfinite(G.top_p_filter(p, 0.01)), [[0, 1, 0, 0]])
    assert G.top_p_filter(p.astype(np.float32), 0.6).dtype == np.float32


# ------------------------------------------------------------------ SequenceGenerator

SG_TABLE = {  # keyed on the generated suffix after a length-2 prompt; 0 = <EOS>, V = 4
    (): [0.1, 0.2, 0.3, 0.4], (3,): [0.5, 0.1, 0.3, 0.1], (3, 0): [0.1, 0.6, 0.2, 0.1],
    (3, 0, 1): [0.25, 0.25, 0.25, 0.25],
}
SG_DEFAULT = [0.2, 0.3, 0.1, 0.4]


def hand_pseudocode(x, score, max_length, temperature, penalty, pad_finished=True):
    """The HW4 pseudocode unrolled in plain Python lists and math."""
    x = [list(r) for r in x]
    scores = [0.0] * len(x)
    finished = [False] * len(x)
    for _ in range(max_length - len(x[0])):
        if all(finished):
            break
        new = []
        for i, row in enumerate(x):
            l = list(score(row))
            for t in set(row):
                l[t] = l[t] / penalty if l[t] > 0 else l[t] * penalty
            l = [v / temperature for v in l]
            m = max(l)
            lse = m + math.log(sum(math.exp(v - m) for v in l))
            lp = [v - lse for v in l]
            tok = lp.index(max(lp))
            if not finished[i]:
                scores[i] += lp[tok]
            new.append(0 if (finished[i] and pad_finished) else tok)
        for i, tok in enumerate(new):
            x[i].append(tok)
            finished[i] = finished[i] or tok == 0
    return x, scores


def sg_logits(row):
    suffix = tuple(row[2:])
    p = np.asarray(SG_TABLE.get(suffix, SG_DEFAULT))
    return list(np.log(p) + np.array([0.7, -0.2, 1.1, 0.3]) * (1 + len(suffix)) + 0.5)


def sg_fn(ids):
    return np.array([sg_logits(list(r)) for r in ids])


@pytest.mark.parametrize("temperature,penalty", [(1.0, 1.0), (2.0, 1.5), (0.5, 1.2),
                                                 (1.3, 0.8)])
@pytest.mark.parametrize("pad_finished", [True, False])
def test_sequence_generator_greedy_matches_hand_unrolled_pseudocode(temperature, penalty,
                                                                     pad_finished):
    x = np.array([[1, 2], [3, 3], [2, 1]])
    gen = G.SequenceGenerator(sg_fn, eos_id=0, max_length=7, pad_finished=pad_finished)
    got_x, got_s = gen.generate_greedy(x, temperature=temperature, repeat_penalty=penalty)
    want_x, want_s = hand_pseudocode(x.tolist(), sg_logits, 7, temperature, penalty,
                                     pad_finished)
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-12)
    assert got_s.dtype == np.float64 and got_x.dtype == np.int64


def test_sequence_generator_scores_accumulate_only_until_eos():
    # row 0 ends at once (<EOS> certain), row 1 never does: row 0's score is one term
    def fn(ids):
        out = np.empty((ids.shape[0], 3))
        for i, r in enumerate(ids):
            out[i] = [5.0, 0.0, 0.0] if r[0] == 1 else [0.0, 1.0, 3.0]
        return out
    gen = G.SequenceGenerator(fn, eos_id=0, max_length=5)
    x, s = gen.generate_greedy(np.array([[1], [2]]), temperature=1.0, repeat_penalty=1.0)
    np.testing.assert_array_equal(x, [[1, 0, 0, 0, 0], [2, 2, 2, 2, 2]])
    np.testing.assert_allclose(s, [ref_log_softmax([5, 0, 0])[0],
                                   4 * ref_log_softmax([0, 1, 3])[2]], rtol=1e-12)
    # all finished: the loop stops early
    gen = G.SequenceGenerator(fn, eos_id=0, max_length=9)
    x, _ = gen.generate_greedy(np.array([[1], [1]]))
    assert x.shape == (2, 2)


def test_sequence_generator_beam_and_sample():
    lm = TableLM(BEAM_TABLE, BEAM_DEFAULT)
    gen = G.SequenceGenerator(lm, eos_id=0, max_length=5)
    x0 = np.array([[1], [1]])
    gx, gs = gen.generate_greedy(x0)
    np.testing.assert_array_equal(gx, [[1, 1, 1, 0]] * 2)   # all finished: stops early
    bx, bs = gen.generate_beam(x0, beam_width=2)
    assert bx.shape == (2, 2, 4) and bs.shape == (2, 2)   # all beams finished at length 4
    np.testing.assert_array_equal(bx[0, 0], [1, 2, 0, 0])
    np.testing.assert_array_equal(bx[1], bx[0])
    np.testing.assert_allclose(bs[0, 0], math.log(.36), rtol=1e-12)
    # fixed width: the finished beam b <EOS> holds a slot, so a b is pruned at step 2
    np.testing.assert_array_equal(bx[0, 1], [1, 1, 1, 0])
    np.testing.assert_allclose(bs[0, 1], math.log(.5 * .36 * .4), rtol=1e-12)
    b1x, b1s = gen.generate_beam(x0, beam_width=1)
    np.testing.assert_array_equal(b1x[:, 0], gx)
    np.testing.assert_allclose(b1s[:, 0], gs, rtol=1e-12)
    # sampling: reproducible, only top-k tokens, scores under the filtered distribution
    gen = G.SequenceGenerator(lambda ids: np.broadcast_to(LOGITS, (ids.shape[0], 10)),
                              eos_id=5, max_length=30)
    x = np.zeros((40, 1), dtype=np.int64)
    sx, ss = gen.generate_sample(x, temperature=0.8, top_k=3, seed=1)
    sx2, ss2 = gen.generate_sample(x, temperature=0.8, top_k=3, seed=1)
    np.testing.assert_array_equal(sx, sx2)
    assert set(np.unique(sx[:, 1:]).tolist()) <= {2, 6, 0}
    lp = np.log(ref_filter(LOGITS, 0.8, 3, 1.0)[sx[:, 1:]])
    np.testing.assert_allclose(ss, lp.sum(axis=1), rtol=1e-10)


# ------------------------------------------------------------------ bad arguments

LM = HashLM()


@pytest.mark.parametrize("kw,name", [
    (dict(temperature=-0.1), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.2), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(num_beams=0), "num_beams"),
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(repetition_penalty=0.0),
                                                  "repetition_penalty"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=0), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(num_beams=2, temperature=0.5), "temperature"), (dict(num_beams=2, top_k=3), "top_k"),
    (dict(num_beams=2, callback=print), "callback"), (dict(eos_id=-1), "eos_id"),
    (dict(eos_id=11), "eos_id"), (dict(stop_strings=["x"]), "decode"),
    (dict(stop_strings=[""], decode=letters), "stop_strings"),
    (dict(length_penalty=float("inf")), "length_penalty"),
])
def test_bad_arguments_raise_value_error_naming_them(kw, name):
    with pytest.raises(ValueError, match=name):
        G.generate(LM, [[1, 2]], **kw)


def test_bad_arguments_to_each_entry_point():
    with pytest.raises(ValueError, match="num_beams"):
        G.beam_search(LM, [[1]], num_beams=0)
    with pytest.raises(ValueError, match="temperature"):
        G.sample(LM, [[1]], temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        G.greedy(LM, [[1]], max_new_tokens=-3)
    with pytest.raises(TypeError, match="top_k"):
        G.generate(LM, [[1]], top_k=2.5)
    with pytest.raises(TypeError, match="seed"):
        G.sample(LM, [[1]], seed="x")
    with pytest.raises(TypeError, match="model"):
        G.generate(object(), [[1]])
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        G.generate(LM, [[1], [[1, 2]]])
    with pytest.raises(TypeError, match=r"prompts\[0\]"):
        G.generate(LM, [np.array([0.5, 1.0])])
    with pytest.raises(IndexError, match=r"prompts\[0\]"):
        G.generate(LM, [[1, -2]])
    with pytest.raises(ValueError, match="empty"):
        G.generate(LM, [np.array([], dtype=int)])
    with pytest.raises(ValueError, match="logits_fn"):
        G.generate(lambda ids: np.zeros((ids.shape[0], 3)), [[1]])
    with pytest.raises(ValueError, match="model.start"):
        G.generate(lambda ids: np.full(ids.shape + (3,), np.nan), [[1]])
    with pytest.raises(ValueError, match="p"):
        G.top_p_filter(np.zeros((1, 3)), 0)
    sg = G.SequenceGenerator(sg_fn, eos_id=0, max_length=4)
    for kw, name in ((dict(temperature=0.0), "temperature"),
                     (dict(repeat_penalty=-1.0), "repeat_penalty")):
        with pytest.raises(ValueError, match=name):
            sg.generate_greedy(np.array([[1, 2]]), **kw)
    with pytest.raises(ValueError, match="beam_width"):
        sg.generate_beam(np.array([[1, 2]]), beam_width=0)
    with pytest.raises(ValueError, match="beam_width"):
        sg.generate_beam(np.array([[1, 2]]), beam_width=5)
    with pytest.raises(ValueError, match="top_p"):
        sg.generate_sample(np.array([[1, 2]]), top_p=2.0)
    with pytest.raises(ValueError, match="max_length"):
        sg.generate_greedy(np.array([[1, 2, 3, 1, 2]]))
    with pytest.raises(ValueError, match="x"):
        sg.generate_greedy(np.array([1, 2]))
