"""Datasets, masks, synthetic tasks, corpus loading and the embedded default corpus."""
import re
import sys

import numpy as np
import pytest

from transformer_c.data import (ArithmeticTask, BPETokenizer, CharTokenizer, CopyTask,
                                Example, ReversalTask, SentenceDataset, StreamDataset, causal_mask,
                                collate, default_corpus, default_corpus_files,
                                default_corpus_info, load_text_splits, pad_mask, read_text,
                                split_text)
from transformer_c.data import corpus as corpus_mod

from conftest import DATA_DIR

# ---------------------------------------------------------------------------- stream dataset


def test_stream_batches_are_shifted_windows():
    tokens = np.arange(100, 200, dtype=np.int32)  # token value - 100 = its position
    ds = StreamDataset(tokens, block_size=8)
    assert len(ds) == 92
    x, y = ds.get_batch(16, np.random.default_rng(0))
    assert x.shape == y.shape == (16, 8) and x.dtype == y.dtype == np.int64
    assert x.flags.c_contiguous and y.flags.c_contiguous
    for b in range(16):
        s = int(x[b, 0]) - 100
        np.testing.assert_array_equal(x[b], tokens[s:s + 8])
        np.testing.assert_array_equal(y[b], tokens[s + 1:s + 9])
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])


def test_stream_draws_every_start_and_is_seeded():
    ds = StreamDataset(np.arange(12), block_size=4)
    x, _ = ds.get_batch(4000, np.random.default_rng(1))
    assert sorted(set(x[:, 0].tolist())) == list(range(8))  # starts in [0, len - T)
    a = ds.get_batch(5, np.random.default_rng(7))
    b = ds.get_batch(5, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    # the same draws as nanoGPT's randint(len(data) - block_size), with numpy's generator
    starts = np.random.default_rng(7).integers(0, 8, size=5)
    np.testing.assert_array_equal(a[0][:, 0], starts)


def test_stream_eval_batches_cover_the_stream_once():
    tokens = np.arange(50)
    ds = StreamDataset(tokens, block_size=7)
    batches = list(ds.eval_batches(3))
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    assert [x.shape[0] for x, _ in batches] == [3, 3, 1]
    np.testing.assert_array_equal(xs.ravel(), tokens[:49])  # 7 windows of 7
    np.testing.assert_array_equal(ys.ravel(), tokens[1:50])
    assert len(list(ds.eval_batches(2, max_batches=2))) == 2
    x, y = StreamDataset(np.arange(2), 1).batch_at([0])
    assert x.tolist() == [[0]] and y.tolist() == [[1]]


def test_stream_errors():
    with pytest.raises(ValueError, match="block_size"):
        StreamDataset(np.arange(8), block_size=8)
    with pytest.raises(ValueError, match="block_size"):
        StreamDataset(np.arange(8), block_size=0)
    with pytest.raises(TypeError, match="tokens"):
        StreamDataset(np.linspace(0, 1, 10), block_size=2)
    with pytest.raises(ValueError, match="tokens"):
        StreamDataset(np.zeros((3, 4), np.int64), block_size=2)
    ds = StreamDataset(np.arange(10), block_size=2)
    with pytest.raises(TypeError, match="rng"):
        ds.get_batch(2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        ds.get_batch(0, np.random.default_rng())
    with pytest.raises(IndexError, match="starts"):
        ds.batch_at([8])


# ---------------------------------------------------------------------------- sentences


def test_sentence_dataset_shift_and_padding():
    tok = CharTokenizer("abc")  # a=4, b=5, c=6
    ds = SentenceDataset(["abc", "a", ""], tok)
    assert len(ds) == 3
    inp, tgt = ds[0]
    assert inp.tolist() == [1, 4, 5, 6] and tgt.tolist() == [4, 5, 6, 2]
    assert ds[2][0].tolist() == [1] and ds[2][1].tolist() == [2]
    inputs, targets, lengths = ds.collate([ds[0], ds[1], ds[2]])
    np.testing.assert_array_equal(inputs, [[1, 4, 5, 6], [1, 4, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(targets, [[4, 5, 6, 2], [4, 2, 0, 0], [2, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [4, 2, 1])
    assert inputs.dtype == targets.dtype == lengths.dtype == np.int64
    assert ds.n_chars == 4 and ds.n_tokens == 4 + 2 + 1
    # the pad mask of a collated batch marks exactly the padding
    np.testing.assert_array_equal(pad_mask(inputs, lengths), inputs == 0)


def test_sentence_dataset_truncation_batches_and_bpe():
    tok = BPETokenizer.train(["the cat sat", "on the mat"] * 5, 300)
    texts = ["the cat sat on the mat", "the", "mat the cat", "on"]
    ds = SentenceDataset(texts, tok, max_length=2)
    assert max(len(ds[i][0]) for i in range(len(ds))) == 3
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(ds[i][1][:-1], tok.encode(t)[:2])
    seen = []
    for inputs, targets, lengths in ds.batches(3, np.random.default_rng(0)):
        assert inputs.shape == targets.shape and inputs.shape[0] == lengths.shape[0]
        seen.extend(inputs[:, 1].tolist())
    assert len(seen) == 4
    assert [b[0].shape[0] for b in ds.batches(3, drop_last=True)] == [3]
    first = next(ds.batches(4))
    np.testing.assert_array_equal(first[2], [3, 2, 3, 2])


def test_collate_and_sentence_errors():
    assert [a.shape for a in collate([], 0)] == [(0, 0), (0, 0), (0,)]
    with pytest.raises(ValueError, match=r"items\[0\]"):
        collate([([1, 2], [1])], 0)
    with pytest.raises(ValueError, match="<SOS>"):
        SentenceDataset(["a"], CharTokenizer("a", specials=("<PAD>",)))
    with pytest.raises(TypeError, match="texts"):
        SentenceDataset("abc", CharTokenizer("abc"))
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        SentenceDataset(["a", 3], CharTokenizer("abc"))


# ---------------------------------------------------------------------------- masks

F, T = False, True


def test_causal_mask_coursework_example():
    x = np.array([[1, 2, 3, 0, 0], [1, 2, 0, 0, 0]])
    want = np.array([[F, T, T, T, T],
                     [F, F, T, T, T],
                     [F, F, F, T, T],
                     [F, F, F, F, T],
                     [F, F, F, F, F]])
    for arg in (x, 5, np.zeros((2, 5, 3)), np.zeros(5)):
        m = causal_mask(arg)
        assert m.dtype == np.bool_
        np.testing.assert_array_equal(m, want)
    assert causal_mask(1).tolist() == [[False]] and causal_mask(0).shape == (0, 0)
    with pytest.raises(ValueError, match="x"):
        causal_mask(-1)
    with pytest.raises(ValueError, match="x"):
        causal_mask(np.array(3))


def test_pad_mask_coursework_example():
    x = np.array([[1, 2, 3, 0, 0], [1, 2, 0, 0, 0]])
    want = np.array([[F, F, F, T, T],
                     [F, F, T, T, T]])
    m = pad_mask(x, np.array([3, 2]))
    assert m.dtype == np.bool_
    np.testing.assert_array_equal(m, want)
    np.testing.assert_array_equal(pad_mask(np.zeros((2, 5, 7)), [3, 2]), want)
    np.testing.assert_array_equal(pad_mask(x, [0, 5]), [[T] * 5, [F] * 5])
    assert pad_mask(np.zeros((0, 4)), np.zeros(0, np.int64)).shape == (0, 4)
    with pytest.raises(ValueError, match="lengths"):
        pad_mask(x, [3])
    with pytest.raises(ValueError, match="lengths"):
        pad_mask(x, [6, 1])
    with pytest.raises(TypeError, match="lengths"):
        pad_mask(x, [1.0, 2.0])
    with pytest.raises(ValueError, match="x"):
        pad_mask(np.zeros(5), [2])


# ---------------------------------------------------------------------------- synthetic tasks


def test_copy_and_reversal_formats():
    rng = np.random.default_rng(0)
    for task, f in ((CopyTask(min_len=2, max_len=5), lambda s: s),
                    (ReversalTask(min_len=2, max_len=5), lambda s: s[::-1])):
        exs = task.sample(300, rng)
        lengths = set()
        for ex in exs:
            assert re.fullmatch(r"[a-j]{2,5}=", ex.prompt), ex
            assert ex.answer == f(ex.prompt[:-1])
            assert ex.text == ex.prompt + ex.answer
            lengths.add(len(ex.answer))
        assert lengths == {2, 3, 4, 5}
        assert set("".join(e.text for e in exs)) <= set(task.alphabet)


def test_arithmetic_format_and_values():
    task = ArithmeticTask(digits=2, ops="+-*")
    exs = task.sample(500, np.random.default_rng(1))
    ops = set()
    for ex in exs:
        m = re.fullmatch(r"(\d{1,2})([+*-])(\d{1,2})=", ex.prompt)
        assert m, ex
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        want = a + b if op == "+" else a - b if op == "-" else a * b
        assert ex.answer == str(want)
        ops.add(op)
    assert ops == set("+-*")
    assert ArithmeticTask().sample(1, 0)[0].prompt.count("+") == 1
    tok = task.tokenizer()
    for ex in exs:
        assert tok.decode(tok.encode(ex.text)) == ex.text and tok.unk_id not in tok.encode(ex.text)


def test_splits_are_disjoint_and_deterministic():
    task = ArithmeticTask(digits=2, seed=3)
    train = task.all_examples("train")
    val = task.all_examples("val")
    assert len(train) + len(val) == 10_000
    assert not {e.prompt for e in train} & {e.prompt for e in val}
    assert 0.07 < len(val) / 10_000 < 0.13
    # a + b and b + a always share a split
    val_prompts = {e.prompt for e in val}
    for e in val:
        a, b = e.prompt[:-1].split("+")
        assert f"{b}+{a}=" in val_prompts
    # sampled examples respect the split, and are reproducible by seed
    rng = np.random.default_rng(0)
    tr = task.sample(2000, rng, "train")
    va = task.sample(300, rng, "val")
    assert {e.prompt for e in tr} <= {e.prompt for e in train}
    assert {e.prompt for e in va} <= val_prompts
    assert task.sample(20, 5, "val") == task.sample(20, np.random.default_rng(5), "val")
    # another seed gives another split; the same seed the same one
    assert ArithmeticTask(digits=2, seed=3).all_examples("val") == val
    assert ArithmeticTask(digits=2, seed=4).all_examples("val") != val
    copy = CopyTask(min_len=1, max_len=3, symbols="abc", seed=1, val_fraction=0.3)
    ctrain, cval = copy.all_examples("train"), copy.all_examples("val")
    assert len(ctrain) + len(cval) == 3 + 9 + 27
    drawn = copy.sample(500, 0, "train")
    assert not {e.prompt for e in drawn} & {e.prompt for e in cval}


def test_task_batch_and_errors():
    task = ArithmeticTask(digits=1)
    tok = task.tokenizer()
    inputs, targets, lengths, answer = task.batch(8, np.random.default_rng(2), tok)
    assert inputs.shape == targets.shape == answer.shape
    for b in range(8):
        L = lengths[b]
        text = tok.decode(inputs[b, 1:L])
        assert inputs[b, 0] == tok.sos_id and targets[b, L - 1] == tok.eos_id
        assert tok.decode(targets[b, :L - 1]) == text
        prompt, ans = text.split("=")
        assert tok.decode(targets[b][answer[b]]) == ans + "<EOS>"
        assert (inputs[b, L:] == tok.pad_id).all() and not answer[b, L:].any()
    with pytest.raises(ValueError, match="split"):
        task.sample(1, 0, "test")
    with pytest.raises(ValueError, match="val_fraction"):
        ArithmeticTask(val_fraction=1.0)
    with pytest.raises(ValueError, match="empty"):
        ArithmeticTask(val_fraction=0.0).sample(1, 0, "val")
    with pytest.raises(ValueError, match="ops"):
        ArithmeticTask(ops="/")
    with pytest.raises(ValueError, match="max_len"):
        CopyTask(min_len=3, max_len=2)
    with pytest.raises(ValueError, match="symbols"):
        CopyTask(symbols="ab=")
    with pytest.raises(ValueError, match="too large"):
        CopyTask(max_len=12).all_examples("val")
    with pytest.raises(TypeError, match="rng"):
        task.sample(1, "seed")
    # a problem space too small to hold the requested split fails instead of spinning
    tiny = CopyTask(min_len=1, max_len=1, symbols="a", val_fraction=0.5)  # one problem
    only = tiny.split_of(Example("a=", "a"))
    assert tiny.sample(3, 0, only) == [Example("a=", "a")] * 3
    with pytest.raises(ValueError, match="empty"):
        tiny.sample(1, 0, "train" if only == "val" else "val")


# ---------------------------------------------------------------------------- text files


def test_read_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="directory"):
        read_text(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_text(empty)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("héllo\nwörld".encode("latin-1"))
    with pytest.raises(ValueError, match=r"byte 0xe9 at byte offset 1 \(line 1\)"):
        read_text(bad)
    bad.write_bytes(b"ok line\n\xc3\xa9 fine\nthen \xff")
    with pytest.raises(ValueError, match=r"byte 0xff at byte offset 21 \(line 3\)"):
        read_text(bad)
    good = tmp_path / "good.txt"
    good.write_bytes("héllo\r\n🙂".encode("utf-8"))
    assert read_text(good) == "héllo\r\n🙂"


def test_split_text_exact():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, val = split_text(text)
    assert train == text[:900] and val == text[900:]
    train, val = split_text("abcdefghij", 0.25)
    assert (train, val) == ("abcdefg", "hij")  # int(10 * 0.75) = 7
    assert split_text("abc", 0.0) == ("abc", "")
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="val_fraction"):
            split_text("abc", bad)
    with pytest.raises(TypeError, match="text"):
        split_text(b"abc")


def test_load_text_splits_block_checks(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("x" * 100, encoding="utf-8")
    train, val = load_text_splits(p, block_size=8)
    assert len(train) == 90 and len(val) == 10
    with pytest.raises(ValueError, match=r"holds 100 characters, shorter than one block"):
        load_text_splits(p, block_size=100)
    with pytest.raises(ValueError, match="validation split"):
        load_text_splits(p, block_size=20)
    assert load_text_splits(p, val_fraction=0.0, block_size=20)[1] == ""
    with pytest.raises(ValueError, match="block_size"):
        load_text_splits(p, block_size=0)


def test_tinyshakespeare_split():
    path = DATA_DIR / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("tinyshakespeare.txt not available")
    train, val = load_text_splits(path, 0.1, block_size=256)
    assert (len(train), len(val)) == (1_003_854, 111_540)  # nanoGPT's split
    assert train.startswith("First Citizen:") and train + val == read_text(path)


# ---------------------------------------------------------------------------- default corpus


def test_default_corpus_is_deterministic_stdlib_source():
    text = default_corpus()
    assert len(text) > 1_000_000
    assert "def " in text and "import " in text and "\r" not in text
    files = default_corpus_files()
    rels = [r for r, _ in files]
    assert rels == sorted(rels) and "argparse.py" in rels and "json/decoder.py" in rels
    assert not any("/test/" in r or "/tests/" in r for r in rels)
    # recomputed from the files, uncached: the same text
    corpus_mod._full_text.cache_clear()
    assert default_corpus() == text
    assert default_corpus(max_chars=1000) == text[:1000]
    info = default_corpus_info()
    assert info["n_chars"] == len(text) and info["files"] == rels
    assert info["python_version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert len(info["sha256"]) == 64
    with pytest.raises(ValueError, match="max_chars"):
        default_corpus(max_chars=0)


def test_default_corpus_gathering_rules(tmp_path):
    """The exact text from a fake standard library: listed modules only, packages
    recursively without test directories, sorted paths, newlines normalised."""
    root = tmp_path / "lib"
    (root / "json" / "tests").mkdir(parents=True)
    (root / "unittest" / "test").mkdir(parents=True)
    (root / "argparse.py").write_bytes(b"A = 1\r\nB = 2")  # CRLF, no final newline
    (root / "json" / "__init__.py").write_text("J = 0\n")
    (root / "json" / "decoder.py").write_text("D = 'd\xe9'\n", encoding="utf-8")
    (root / "json" / "tests" / "t.py").write_text("TEST\n")
    (root / "unittest" / "test" / "x.py").write_text("TEST\n")
    (root / "unittest" / "case.py").write_text("C = 3\n")
    (root / "notlisted.py").write_text("NOPE\n")
    (root / "abc.py").write_bytes(b"# -*- coding: latin-1 -*-\nX = '\xe9'\n")
    rels = [r for r, _ in default_corpus_files(root)]
    assert rels == ["abc.py", "argparse.py", "json/__init__.py", "json/decoder.py",
                    "unittest/case.py"]
    want = ("# -*- coding: latin-1 -*-\nX = '\xe9'\n" + "\n" + "A = 1\nB = 2\n" + "\n" +
            "J = 0\n" + "\n" + "D = 'd\xe9'\n" + "\n" + "C = 3\n")
    assert default_corpus(root=root) == want
    assert default_corpus_info(root=root)["n_files"] == 5
    with pytest.raises(RuntimeError, match="no .py sources"):
        default_corpus(root=tmp_path / "empty")
