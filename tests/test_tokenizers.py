"""Tokenizers: GPT-2 pre-tokenisation, byte-level BPE (C) against a slow pure-Python
reference written here, round trips on arbitrary Unicode, specials, save/load, errors."""
import json
import re
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transformer_c as tc
from transformer_c import _C
from transformer_c.data import (SPECIALS, BPETokenizer, CharTokenizer, Tokenizer,
                                bytes_to_unicode, load_tokenizer, pretokenize)

from conftest import DATA_DIR

# ---------------------------------------------------------------------------- references

# Unicode White_Space, written out (the regex module's \s)
WS = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
     "\u2028\u2029\u202f\u205f\u3000"


def _ranges(pred):
    """A regex character-class body for the code points satisfying pred."""
    out, start = [], None
    for cp in range(0x110001):
        ok = cp < 0x110000 and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append(re.escape(chr(start)) if start == cp - 1
                       else f"{re.escape(chr(start))}-{re.escape(chr(cp - 1))}")
            start = None
    return "".join(out)


@lru_cache(maxsize=None)
def ref_pattern():
    """GPT-2's pattern rebuilt for Python's `re`: \\p{L}, \\p{N} as explicit category
    ranges from unicodedata, \\s as White_Space. An independent engine from the C scanner."""
    cat = unicodedata.category
    L = _ranges(lambda cp: cat(chr(cp))[0] == "L")
    N = _ranges(lambda cp: cat(chr(cp))[0] == "N")
    S = re.escape(WS)
    pat = (rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
           rf"|[{S}]+(?![^{S}])|[{S}]+")
    return re.compile(pat)


def ref_split(text):
    return ref_pattern().findall(text)


def ref_merge(word, pair, new):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def ref_train(texts, n_merges, min_count=1):
    """Slow BPE: recount every pair every step; most frequent pair, ties to the smallest
    (left, right); merges replace occurrences left to right."""
    words = Counter()
    for t in texts:
        for w in ref_split(t):
            words[tuple(w.encode("utf-8"))] += 1
    merges, counts = [], []
    for k in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
        if pairs[best] < min_count:
            break
        merges.append(best)
        counts.append(pairs[best])
        words = Counter({ref_merge(w, best, 256 + k): c for w, c in words.items()})
    return merges, counts


def ref_encode(text, merges):
    """Apply the merges, in order, to each pre-token (raw ids: bytes 0..255, 256 + k)."""
    out = []
    for w in ref_split(text):
        sym = tuple(w.encode("utf-8"))
        for k, pair in enumerate(merges):
            if len(sym) < 2:
                break
            sym = ref_merge(sym, tuple(pair), 256 + k)
        out.extend(sym)
    return out


SMALL_CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\n"
    "Resolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief enemy to "
    "the people.\n\nAll:\nWe know't, we know't.\n\nFirst Citizen:\nLet us kill him, and we'll "
    "have corn at our own price.\nIs't a verdict?\n\nAll:\nNo more talking on't; let it be "
    "done: away, away!\n   indented    lines\t\ttabs  and 12 numbers 3.14 1999 and don't "
    "they've I'm we'll you'd 'tis\n"
    "Ünïcödé wörds: naïve café, 東京は日本の首都です。 Привет, мир! 🙂🙂 e\u0301 x²+y² Ⅻ\n"
    "aaaa aaaaa aaaaaaa bbbbbb abababab\n" * 2
)

UNUSUAL = [
    "", " ", "  ", "\n", "\n\n", "a", "'s", "''s", "'S", " 's", "it's", "x'", "'", "''",
    "e\u0301\u0301", "\u0301", " \u0301abc", "🙂", "👩\u200d👩\u200d👧", "🇬🇧", "東京", " 東京 ",
    "²³¹", "Ⅻ", "١٢٣", " 123abc", "abc123", "a\u00a0b", "a\u3000b", "a\u2028b", "\x1c\x1d",
    "\u0085", "\ufeff", "\U0010ffff", "\U000e0001", "\x00", "tab\t\tx", "end  ", "  start",
    "x \n\n y", "a\r\nb", "\u200b", "\ue000",
]

# ---------------------------------------------------------------------------- pre-tokeniser


@pytest.mark.parametrize("text", UNUSUAL + [SMALL_CORPUS], ids=lambda t: repr(t)[:24])
def test_pretokenize_matches_reference(text):
    got = pretokenize(text)
    assert got == ref_split(text)
    assert "".join(got) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_pretokenize_matches_reference_hypothesis(text):
    assert pretokenize(text) == ref_split(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\u3000'sStdlmrveA1²é\u0301!?🙂東"))))
def test_pretokenize_small_alphabet_hypothesis(text):
    assert pretokenize(text) == ref_split(text)


def _assigned(text):
    return all(unicodedata.category(c) != "Cn" for c in text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_pretokenize_matches_regex_module(text):
    regex = pytest.importorskip("regex")
    from transformer_c.data import GPT2_SPLIT_PATTERN
    # characters unassigned in this Python's Unicode database may be letters to a newer
    # `regex`; the documented behaviour is to follow unicodedata
    text = "".join(c for c in text if unicodedata.category(c) != "Cn")
    assert pretokenize(text) == regex.findall(GPT2_SPLIT_PATTERN, text)


def test_pretokenize_raw_offsets_and_invalid_utf8():
    cls = tc.data.bpe.char_classes()
    starts = _C.bpe_pretokenize(b"hi there", cls)
    np.testing.assert_array_equal(starts, [0, 2, 8])
    assert starts.dtype == np.int64
    # bytes that are not UTF-8 are kept, one "other" character each
    data = b"ab\xff\xfe cd\xe2\x82"
    starts = _C.bpe_pretokenize(data, cls).tolist()
    assert starts == [0, 2, 4, 7, 9]
    np.testing.assert_array_equal(_C.bpe_pretokenize(b"", cls), [0])


# ---------------------------------------------------------------------------- BPE vs reference


def _raw(tok, ids):
    return (np.asarray(ids) - tok.n_special).tolist()


def test_bpe_merges_match_reference_small_corpus():
    n = 120
    tok = BPETokenizer.train(SMALL_CORPUS, vocab_size=len(SPECIALS) + 256 + n, min_frequency=1)
    merges, counts = ref_train([SMALL_CORPUS], n)
    assert tok.merges.tolist() == [list(m) for m in merges]
    assert tok.merge_counts.tolist() == counts
    assert _raw(tok, tok.encode(SMALL_CORPUS)) == ref_encode(SMALL_CORPUS, merges)
    other = "Citizens know the price of corn; they've resolved: 東京 café 🙂 aaaaaa!"
    assert _raw(tok, tok.encode(other)) == ref_encode(other, merges)


def test_bpe_merges_match_reference_tinyshakespeare_excerpt():
    path = DATA_DIR / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("tinyshakespeare.txt not available")
    text = path.read_text(encoding="utf-8")[:20000]
    tok = BPETokenizer.train(text, vocab_size=4 + 256 + 150, min_frequency=2)
    merges, counts = ref_train([text], 150, min_count=2)
    assert tok.merges.tolist() == [list(m) for m in merges]
    assert tok.merge_counts.tolist() == counts
    assert _raw(tok, tok.encode(text)) == ref_encode(text, merges)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("aab b\n'sé🙂")), max_size=40),
                min_size=1, max_size=4),
       st.integers(0, 40), st.integers(1, 3))
def test_bpe_train_matches_reference_hypothesis(docs, n, min_count):
    """Tiny alphabets: many ties and overlapping runs ("aaaa") stress the incremental
    counting; several documents are pre-tokenised separately."""
    tok = BPETokenizer.train(docs, vocab_size=4 + 256 + n, min_frequency=min_count)
    merges, counts = ref_train(docs, n, min_count)
    assert tok.merges.tolist() == [list(m) for m in merges]
    assert tok.merge_counts.tolist() == counts
    for d in docs:
        assert _raw(tok, tok.encode(d)) == ref_encode(d, merges)


@pytest.fixture(scope="module")
def corpus_tok():
    return BPETokenizer.train(SMALL_CORPUS, vocab_size=4 + 256 + 200, min_frequency=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(sorted(set(SMALL_CORPUS))), max_size=200))
def test_bpe_encode_matches_reference_hypothesis(corpus_tok, text):
    merges = corpus_tok.merges.tolist()
    assert _raw(corpus_tok, corpus_tok.encode(text)) == ref_encode(text, merges)


def test_bpe_encode_long_pretoken_matches_reference():
    """A long single pre-token (many merges per word) and a long whitespace run."""
    tok = BPETokenizer.train(["ab" * 50, "   " * 20], vocab_size=4 + 256 + 30, min_frequency=1)
    merges = tok.merges.tolist()
    for text in ["ab" * 3000 + "a", " " * 5001 + "x", "ba" * 777]:
        assert _raw(tok, tok.encode(text)) == ref_encode(text, merges)


# ---------------------------------------------------------------------------- round trips

ROUND_TRIP_TOK = None


def _roundtrip_tok():
    global ROUND_TRIP_TOK
    if ROUND_TRIP_TOK is None:
        ROUND_TRIP_TOK = BPETokenizer.train([SMALL_CORPUS] + UNUSUAL, vocab_size=600)
    return ROUND_TRIP_TOK


@pytest.mark.parametrize("text", UNUSUAL + [SMALL_CORPUS], ids=lambda t: repr(t)[:24])
def test_bpe_round_trip_examples(text):
    tok = _roundtrip_tok()
    ids = tok.encode(text)
    assert ids.dtype == np.int64
    assert tok.decode(ids) == text
    assert "".join(tok.tokenize(text)) == "".join(bytes_to_unicode()[b] for b in text.encode())


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trip_hypothesis(text):
    """Arbitrary (surrogate-free) Unicode: emoji, CJK, combining marks, controls, ..."""
    tok = _roundtrip_tok()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.size <= len(text.encode("utf-8"))
    assert (ids >= tok.n_special).all() and (ids < tok.vocab_size).all()


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_bpe_bytes_round_trip_hypothesis(data):
    tok = _roundtrip_tok()
    assert tok.decode_bytes(tok.encode_bytes(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from([SPECIALS, ()]))
def test_char_round_trip_hypothesis(text, specials):
    tok = CharTokenizer.train(text, specials=specials)
    ids = tok.encode(text)
    assert ids.tolist() == [tok.chars.index(c) + len(specials) for c in text]
    assert tok.decode(ids) == text
    assert tok.tokenize(text) == list(text)


def test_bpe_without_merges_is_bytes():
    tok = BPETokenizer([], specials=SPECIALS)
    assert tok.vocab_size == 260
    text = "héllo 🙂"
    assert _raw(tok, tok.encode(text)) == list(text.encode())
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("threads", [1, 2])
def test_bpe_encode_independent_of_thread_count(threads):
    """Long texts are encoded in parallel parts cut at pre-token boundaries."""
    tok = _roundtrip_tok()
    text = (SMALL_CORPUS * 60)[:250_000] + "\n\n  tail  "
    old = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        want = tok.encode(text)
        tc.set_num_threads(threads)
        got = tok.encode(text)
    finally:
        tc.set_num_threads(old)
    np.testing.assert_array_equal(got, want)
    assert tok.decode(got) == text


def test_bpe_vocab_sizes_on_tinyshakespeare():
    path = DATA_DIR / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("tinyshakespeare.txt not available")
    text = path.read_text(encoding="utf-8")
    train = text[:int(len(text) * 0.9)]
    prev = None
    for V in (1000, 5000, 10000):
        tok = BPETokenizer.train(train, vocab_size=V)
        assert tok.vocab_size == V
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        if prev is not None:  # merges are a greedy sequence: a smaller vocab is a prefix
            np.testing.assert_array_equal(tok.merges[:len(prev.merges)], prev.merges)
            assert ids.size < len(prev.encode(text))
        prev = tok
    # the best pair's count never increases from one merge to the next
    assert (np.diff(prev.merge_counts) <= 0).all()
    assert prev.merge_counts.min() >= 2


def test_bpe_stops_early_when_no_pair_is_frequent_enough():
    tok = BPETokenizer.train("ab ab ab cd", vocab_size=1000, min_frequency=2)
    assert tok.merges.tolist() == [[97, 98], [32, 256]]  # "ab", then " ab"
    assert tok.vocab_size == 4 + 256 + 2
    assert BPETokenizer.train("", vocab_size=1000).vocab_size == 260


# ---------------------------------------------------------------------------- specials


@pytest.mark.parametrize("make", [lambda: CharTokenizer.train("hello <EOS> world"),
                                  lambda: BPETokenizer.train("hello <EOS> world", 300)])
def test_specials(make):
    tok = make()
    assert tok.specials == SPECIALS
    assert (tok.pad_id, tok.sos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIALS)
    text = "hello <EOS> world"
    plain = tok.encode(text)
    assert 2 not in plain.tolist()  # by default special strings are ordinary text
    assert tok.decode(plain) == text
    sp = tok.encode(text, allow_specials=True)
    assert sp.tolist().count(2) == 1
    i = sp.tolist().index(2)
    assert tok.decode(sp[:i]) == "hello " and tok.decode(sp[i + 1:]) == " world"
    assert tok.decode(sp) == text
    assert tok.decode(sp, skip_specials=True) == "hello  world"
    wrapped = tok.encode("hello", add_sos=True, add_eos=True)
    assert wrapped[0] == 1 and wrapped[-1] == 2
    np.testing.assert_array_equal(wrapped[1:-1], tok.encode("hello"))
    assert tok.decode([0, 0]) == "<PAD><PAD>"
    assert tok.tokenize("<SOS>hello", allow_specials=True)[0] == "<SOS>"
    assert tok.encode("").shape == (0,)
    assert tok.decode([]) == ""


def test_char_unknown_characters():
    tok = CharTokenizer.train("abc")
    np.testing.assert_array_equal(tok.encode("abzc"), [4, 5, 3, 6])
    assert tok.decode(tok.encode("abzc")) == "ab<UNK>c"
    bare = CharTokenizer.train("abc", specials=())
    assert bare.vocab_size == 3 and bare.unk_id is None
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 2"):
        bare.encode("abzc")
    with pytest.raises(ValueError, match="no <SOS>"):
        bare.encode("a", add_sos=True)
    empty = CharTokenizer("", specials=SPECIALS)
    np.testing.assert_array_equal(empty.encode("xy"), [3, 3])


def test_char_nanogpt_vocabulary():
    path = DATA_DIR / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("tinyshakespeare.txt not available")
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text, specials=())
    assert tok.vocab_size == 65
    chars = sorted(set(text))
    ids = tok.encode(text[:1000])
    assert ids.tolist() == [chars.index(c) for c in text[:1000]]


# ---------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("make,sample", [
    (lambda: CharTokenizer.train(SMALL_CORPUS), SMALL_CORPUS),
    (lambda: CharTokenizer.train("xyz", specials=("<PAD>",)), "zzyx"),
    (lambda: BPETokenizer.train(SMALL_CORPUS, 400), SMALL_CORPUS),
    (lambda: BPETokenizer.train(SMALL_CORPUS, 300, specials=()), SMALL_CORPUS)])
def test_save_load_round_trip(tmp_path, make, sample):
    tok = make()
    path = tmp_path / "tok.json"
    tok.save(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["type"] == tok.kind and d["version"] == 1 and d["specials"] == list(tok.specials)
    back = load_tokenizer(path)
    assert type(back) is type(tok) and back == tok
    assert back.vocab_size == tok.vocab_size
    np.testing.assert_array_equal(back.encode(sample), tok.encode(sample))
    assert back.decode(back.encode(sample)) == sample
    assert type(tok).load(path) == tok


@pytest.mark.parametrize("make", [lambda: CharTokenizer.train("hello"),
                                  lambda: BPETokenizer.train("hello hello", 270)])
def test_pickle_round_trip(make):
    import pickle

    class Sub(type(make())):
        pass

    tok = make()
    back = pickle.loads(pickle.dumps(tok))
    assert type(back) is type(tok) and back == tok
    np.testing.assert_array_equal(back.encode("hello hel"), tok.encode("hello hel"))
    # a user subclass does not capture the base class's "type" when loading
    assert type(Tokenizer.from_dict(tok.to_dict())) is type(tok)
    assert Sub.kind == tok.kind


def test_bpe_saved_vocab_uses_gpt2_spelling(tmp_path):
    tok = BPETokenizer.train("the the the\nthe", 265)
    tok.save(tmp_path / "t.json")
    d = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert d["vocab"][:4] == list(SPECIALS)
    assert d["vocab"][4 + 32] == "Ġ" and d["vocab"][4 + 10] == "Ċ"
    assert "Ġthe" in d["vocab"]
    assert tok.tokenize(" the\n") == ["Ġthe", "Ċ"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        load_tokenizer(bad)
    cases = [
        ({"type": "wordpiece", "version": 1}, "unknown tokenizer type"),
        ({"type": "char", "version": 99, "chars": []}, "version 99"),
        ({"type": "char", "version": 1, "specials": [], "chars": ["a", "a"]}, "distinct"),
        ({"type": "bpe", "version": 1, "specials": [], "merges": [[300, 1]]}, r"merges\[0\]"),
        ({"type": "bpe", "version": 1, "specials": [], "merges": [[1, 2], [1, 2]]}, "once"),
        ({"type": "bpe", "version": 1, "specials": [], "merges": [["a", "b"]]}, "merges"),
        ({"type": "bpe", "version": 1, "specials": [], "merges": [[1, 2]],
          "vocab": ["x"] * 257}, "does not match"),
        ({"type": "bpe", "version": 1, "specials": [], "merges": [[1, 2]],
          "merge_counts": [5, 4]}, "merge_counts"),
    ]
    for d, msg in cases:
        bad.write_text(json.dumps(d))
        with pytest.raises(ValueError, match=msg):
            load_tokenizer(bad)
    CharTokenizer.train("ab").save(bad)
    with pytest.raises(ValueError, match="not a 'bpe'"):
        BPETokenizer.load(bad)


# ---------------------------------------------------------------------------- bad input


def test_bad_arguments():
    tok = BPETokenizer.train("hello world", 270)
    with pytest.raises(TypeError, match="text"):
        tok.encode(b"bytes")
    with pytest.raises(TypeError, match="ids"):
        tok.decode([1.5, 2.0])
    with pytest.raises(TypeError, match="ids"):
        tok.decode(np.array([True]))
    with pytest.raises(ValueError, match="ids"):
        tok.decode([[1, 2]])
    with pytest.raises(IndexError, match="ids"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(IndexError, match="ids"):
        tok.decode([-1])
    with pytest.raises(IndexError, match="ids"):
        tok.decode(np.array([2 ** 63 + 5], dtype=np.uint64))
    with pytest.raises(IndexError, match="byte-level"):
        tok.decode_bytes([0])
    with pytest.raises(ValueError, match=r"surrogate U\+D800 at position 1"):
        tok.encode("a\ud800b")
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(TypeError, match="vocab_size"):
        BPETokenizer.train("abc", vocab_size=300.0)
    with pytest.raises(ValueError, match="min_frequency"):
        BPETokenizer.train("abc", vocab_size=300, min_frequency=0)
    with pytest.raises(TypeError, match=r"text\[1\]"):
        BPETokenizer.train(["abc", 5], vocab_size=300)
    with pytest.raises(ValueError, match="merges"):
        BPETokenizer([[1, 2, 3]])
    with pytest.raises(TypeError, match="merges"):
        BPETokenizer([[1.0, 2.0]])
    with pytest.raises(ValueError, match="specials"):
        CharTokenizer("ab", specials=("<PAD>", "<PAD>"))
    with pytest.raises(ValueError, match="overlap"):
        CharTokenizer("a<", specials=("<",))
    with pytest.raises(IndexError):
        tok.id_to_token(tok.vocab_size)


def test_raw_bindings_raise_instead_of_crashing():
    cls = tc.data.bpe.char_classes()
    with pytest.raises(TypeError, match="encoder"):
        _C.bpe_encode(object(), b"abc")
    with pytest.raises(TypeError):
        _C.bpe_encode(_C.bpe_new(np.zeros((0, 2), np.int64), cls), "not bytes")
    with pytest.raises(TypeError, match="cls"):
        _C.bpe_pretokenize(b"abc", cls.astype(np.int32))
    with pytest.raises(ValueError, match="cls"):
        _C.bpe_pretokenize(b"abc", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="doc_offsets"):
        _C.bpe_train(b"abc", np.array([0, 2]), cls, 10, 1)
    with pytest.raises(ValueError, match="doc_offsets"):
        _C.bpe_train(b"abcd", np.array([0, 3, 1, 4]), cls, 10, 1)
    with pytest.raises(ValueError, match="max_merges"):
        _C.bpe_train(b"abc", np.array([0, 3]), cls, -1, 1)
    with pytest.raises(ValueError, match="min_count"):
        _C.bpe_train(b"abc", np.array([0, 3]), cls, 3, 0)
    with pytest.raises(TypeError, match="max_merges"):
        _C.bpe_train(b"abc", np.array([0, 3]), cls, 3.0, 1)
    with pytest.raises(ValueError, match="merges"):
        _C.bpe_new(np.array([[1, 2, 3]]), cls)
    with pytest.raises(ValueError, match="merges"):
        _C.bpe_new(np.array([[256, 1]]), cls)
    with pytest.raises(IndexError, match="merges"):
        _C.bpe_new(np.array([[2 ** 64 - 1, 1]], dtype=np.uint64), cls)
    # merges that double a token 40 times would expand to 2**40 bytes: refused
    doubling = np.array([[0, 0]] + [[256 + k, 256 + k] for k in range(40)])
    with pytest.raises(ValueError, match="merges"):
        _C.bpe_new(doubling, cls)
    enc = _C.bpe_new(np.array([[97, 98]]), cls)
    assert _C.bpe_vocab_size(enc) == 257
    with pytest.raises(IndexError, match="ids"):
        _C.bpe_decode(enc, np.array([257]))
    with pytest.raises(TypeError, match="ids"):
        _C.bpe_decode(enc, np.array([1.0]))
    with pytest.raises(TypeError):
        _C.bpe_train(b"abc")
    # an out-of-range class value is read as "other", never as an index; so are code
    # points beyond the table (here: all of them, so the whole text is one "other" run)
    weird = np.full(128, 200, dtype=np.uint8)
    assert _C.bpe_pretokenize(b"ab cd", weird).tolist() == [0, 5]
    assert _C.bpe_pretokenize(b"ab cd", np.zeros(0, np.uint8)).tolist() == [0, 5]
