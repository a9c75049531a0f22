"""transformer_c.compat.hw4lib and the HW4 SequenceGenerator (seed 001, Task 2), tested
from the handout's descriptions: its mask examples, its LMDataset description and its
generate_greedy pseudocode."""
import numpy as np
import pytest

from transformer_c.compat.hw4lib import CausalMask, LMDataset, PadMask, SequenceGenerator
from transformer_c.data import CharTokenizer

F_, T_ = False, True
BATCH = np.array([[1, 2, 3, 0, 0], [1, 2, 0, 0, 0]])


def test_masks_match_the_handout_examples():
    np.testing.assert_array_equal(PadMask(BATCH, np.array([3, 2])),
                                  [[F_, F_, F_, T_, T_], [F_, F_, T_, T_, T_]])
    want = np.array([[F_, T_, T_, T_, T_], [F_, F_, T_, T_, T_], [F_, F_, F_, T_, T_],
                     [F_, F_, F_, F_, T_], [F_, F_, F_, F_, F_]])
    np.testing.assert_array_equal(CausalMask(BATCH), want)
    feats = np.zeros((2, 5, 7))  # the (N, T, ...) case
    np.testing.assert_array_equal(CausalMask(feats), want)
    np.testing.assert_array_equal(PadMask(feats, [3, 2]), PadMask(BATCH, [3, 2]))
    with pytest.raises(ValueError, match="lengths"):
        PadMask(BATCH, np.array([6, 2]))


def test_masks_on_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(BATCH)
    pm = PadMask(x, torch.tensor([3, 2]))
    cm = CausalMask(torch.zeros(2, 5, 3))
    assert isinstance(pm, torch.Tensor) and pm.dtype == torch.bool and pm.device == x.device
    assert cm.shape == (5, 5) and cm.dtype == torch.bool
    np.testing.assert_array_equal(pm.numpy(), PadMask(BATCH, np.array([3, 2])))
    # usable as torch.nn.MultiheadAttention masks (same polarity: True = do not attend)
    mha = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    q = torch.randn(2, 5, 4)
    out, _ = mha(q, q, q, key_padding_mask=pm, attn_mask=CausalMask(x))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- SequenceGenerator
V, EOS = 6, 5
TABLE = np.random.default_rng(0).standard_normal((V, V))  # next-token logits by last token


def bigram(x):
    assert x.ndim == 2  # the contract: (batch_size, seq_len) -> (batch_size, vocab_size)
    return TABLE[x[:, -1]]


class Tok:
    eos_id = EOS


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def pseudocode_greedy(score_fn, x, max_length, temperature):
    """generate_greedy exactly as the handout's pseudocode (repeat_penalty 1)."""
    scores = np.zeros(x.shape[0])
    finished = np.zeros(x.shape[0], bool)
    for _ in range(max_length - x.shape[1]):
        if finished.all():
            break
        logits = score_fn(x) / temperature
        log_probs = log_softmax(logits)
        next_tokens = log_probs.argmax(-1)
        token_scores = log_probs[np.arange(len(x)), next_tokens]
        scores = np.where(finished, scores, scores + token_scores)
        x = np.concatenate([x, next_tokens[:, None]], 1)
        finished |= next_tokens == EOS
    return x, scores


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_greedy_follows_the_pseudocode_with_the_course_constructor(temperature):
    x = np.array([[0, 1], [2, 3], [4, 4]])
    gen = SequenceGenerator(bigram, Tok(), 9, "cpu", pad_finished=False)
    got, scores = gen.generate_greedy(x, temperature=temperature)
    want, want_scores = pseudocode_greedy(bigram, x, 9, temperature)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-12)
    assert SequenceGenerator(bigram, EOS, 9).eos_id == EOS  # the id in the tokenizer's place
    with pytest.raises(TypeError, match="exactly one"):
        SequenceGenerator(bigram, Tok(), 9, eos_id=EOS)


def test_beam_search_calls_score_fn_with_2d_batches():
    shapes = []

    def fn(x):
        shapes.append(x.shape)
        return bigram(x)
    gen = SequenceGenerator(fn, Tok(), 6, "cpu")
    beams, scores = gen.generate_beam(np.array([[0], [1]]), beam_width=3)
    assert beams.shape[:2] == (2, 3) and scores.shape == (2, 3)
    assert shapes[0] == (2, 1) and all(s[0] == 6 and len(s) == 2 for s in shapes[1:])
    assert np.all(np.diff(scores, axis=1) <= 0)  # best beam first
    # width 1 is greedy
    g, gs = SequenceGenerator(bigram, Tok(), 6).generate_greedy(np.array([[0], [1]]))
    b, bs = SequenceGenerator(bigram, Tok(), 6).generate_beam(np.array([[0], [1]]), 1)
    np.testing.assert_array_equal(b[:, 0], g)
    np.testing.assert_allclose(bs[:, 0], gs)


def test_torch_inputs_reach_score_fn_as_torch_and_come_back_as_torch():
    torch = pytest.importorskip("torch")
    seen = []

    def fn(x):
        seen.append(type(x))
        return torch.from_numpy(TABLE)[x[:, -1]]
    gen = SequenceGenerator(fn, Tok(), 7, "cpu")
    x, scores = gen.generate_greedy(torch.tensor([[0, 1], [2, 3]]))
    assert isinstance(x, torch.Tensor) and isinstance(scores, torch.Tensor)
    assert set(seen) == {torch.Tensor}
    want, _ = SequenceGenerator(bigram, Tok(), 7).generate_greedy(np.array([[0, 1], [2, 3]]))
    np.testing.assert_array_equal(x.numpy(), want)


def test_post_process_sequence_cuts_after_the_first_eos():
    seq = np.array([[1, 2, EOS, 3, EOS], [1, 1, 1, 1, 1], [EOS, 0, 0, 0, 0]])
    out = SequenceGenerator.post_process_sequence(seq, Tok())
    assert [o.tolist() for o in out] == [[1, 2, EOS], [1, 1, 1, 1, 1], [EOS]]
    assert SequenceGenerator.post_process_sequence(seq[0], Tok()).tolist() == [1, 2, EOS]
    torch = pytest.importorskip("torch")
    t = SequenceGenerator.post_process_sequence(torch.from_numpy(seq), EOS)
    assert isinstance(t[0], torch.Tensor) and t[0].tolist() == [1, 2, EOS]


# ---------------------------------------------------------------- LMDataset
def write_partition(root, sentences):
    (root / "train").mkdir(parents=True)
    for i, s in enumerate(sentences):
        np.save(root / "train" / f"{i:04d}.npy", np.array(s))
    return root


def test_lm_dataset_reads_a_folder_of_sentences_and_adds_sos_eos(tmp_path):
    sentences = ["hello there", "hi", "a longer sentence"]
    root = write_partition(tmp_path, sentences)
    np.save(root / "train" / "0003.npy", np.array(list("char array")))  # a 1-d str array
    tok = CharTokenizer(sorted(set("".join(sentences) + "char array")))
    ds = LMDataset("train", {"root": str(root)}, tok)
    assert len(ds) == 4
    shifted, golden = ds[1]
    ids = tok.encode("hi")
    np.testing.assert_array_equal(shifted, [tok.sos_id, *ids])
    np.testing.assert_array_equal(golden, [*ids, tok.eos_id])
    assert ds.total_chars == sum(map(len, sentences)) + len("char array")
    assert ds.total_tokens == ds.total_chars + 4  # characters, plus one <EOS> each
    assert ds.text_max_len == len("a longer sentence") + 1
    assert ds.get_avg_chars_per_token() == pytest.approx(ds.total_chars / ds.total_tokens)
    s, g, lengths = ds.collate_fn([ds[0], ds[1]])
    assert s.shape == g.shape == (2, 12) and lengths.tolist() == [12, 3]
    assert np.all(s[1, 3:] == tok.pad_id) and np.all(g[1, 3:] == tok.pad_id)
    half = LMDataset("train", {"root": str(root), "subset": 0.5}, tok)
    assert len(half) == 2
    with pytest.raises(FileNotFoundError, match="valid"):
        LMDataset("valid", {"root": str(root)}, tok)
