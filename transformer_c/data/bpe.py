"""Byte-level BPE (GPT-2 style), trained from scratch; counting and encoding run in C.

Pre-tokenisation follows GPT-2's pattern :data:`GPT2_SPLIT_PATTERN` exactly, implemented
in C (csrc/tokenizer/bpe.c) without the third-party ``regex`` module: ``\\p{L}`` and ``\\p{N}`` are
the Unicode categories L* and N* as Python's :mod:`unicodedata` knows them (so a character
assigned in a newer Unicode version than this Python's is "other"), and ``\\s`` is the
Unicode White_Space property (``str.isspace`` minus U+001C..U+001F, as ``regex`` has it).

Ids: specials first (<PAD>=0, <SOS>=1, <EOS>=2, <UNK>=3 by default), then the 256 bytes,
then one id per merge in the order learned. Every string (indeed every byte string)
round-trips: decode(encode(s)) == s; <UNK> is never produced.
"""
import unicodedata

import numpy as np

from .. import _C
from .tokenizer import SPECIALS, Tokenizer, as_id_array, check_text

GPT2_SPLIT_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                      r"""|\s+(?!\S)|\s+""")

# character classes of the C scanner (TC_BPE_CLASS_* in tc.h)
OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
# Unicode White_Space (what the regex module's \s matches)
WHITESPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_TABLE_SIZE = 0x40000  # planes 0-3; every L*/N* code point lies below (planes 4+ hold none)
_classes = None


def char_classes():
    """The uint8 class table the C pre-tokeniser reads, indexed by code point (built once,
    from :mod:`unicodedata`, ~0.1 s)."""
    global _classes
    if _classes is None:
        cats = list(map(unicodedata.category, map(chr, range(_TABLE_SIZE))))
        lut = {c: LETTER if c[0] == "L" else NUMBER if c[0] == "N" else OTHER for c in set(cats)}
        table = np.frombuffer(bytes(map(lut.__getitem__, cats)), dtype=np.uint8).copy()
        table[list(WHITESPACE)] = SPACE
        table.setflags(write=False)
        _classes = table
    return _classes


def _utf8(text, name="text"):
    check_text(text, name)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} holds a lone surrogate U+{ord(text[e.start]):04X} at position "
                         f"{e.start}, which is not valid Unicode text") from None


def pretokenize(text):
    """GPT-2 pre-tokens of ``text``: the same list as
    ``regex.findall(GPT2_SPLIT_PATTERN, text)``, computed in C."""
    b = _utf8(text)
    starts = _C.bpe_pretokenize(b, char_classes()).tolist()
    return [b[s:e].decode("utf-8") for s, e in zip(starts[:-1], starts[1:])]


def bytes_to_unicode():
    """GPT-2's reversible map byte -> printable character (" " -> "Ġ", "\\n" -> "Ċ"), used
    to spell byte-level tokens as text (tokenize, the saved vocabulary)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_CHARS = bytes_to_unicode()


class BPETokenizer(Tokenizer):
    """Byte-level BPE tokenizer.

    ``merges`` is an (M, 2) integer array in byte space: ids 0..255 are bytes and merge k
    makes symbol 256 + k from (merges[k, 0], merges[k, 1]). Token ids add ``len(specials)``
    to these. Build one with :meth:`train`, or :meth:`load` a saved one.
    """

    kind = "bpe"

    def __init__(self, merges, specials=SPECIALS, *, merge_counts=None):
        self._init_specials(specials)
        m = np.asarray(merges)
        if m.size == 0:
            m = np.zeros((0, 2), dtype=np.int64)
        if m.dtype == np.bool_ or not np.issubdtype(m.dtype, np.integer):
            raise TypeError(f"merges must hold integer ids, got dtype {m.dtype}")
        if m.ndim != 2 or m.shape[1] != 2:
            raise ValueError(f"merges must have shape (M, 2), got {m.shape}")
        self._encoder = _C.bpe_new(m, char_classes())  # validates the merges
        self.merges = m.astype(np.int32)
        self.merges.setflags(write=False)
        if merge_counts is not None:
            merge_counts = np.asarray(merge_counts, dtype=np.int64)
            if merge_counts.shape != (len(self.merges),):
                raise ValueError(f"merge_counts must have shape ({len(self.merges)},), one count "
                                 f"per merge, got {merge_counts.shape}")
        self.merge_counts = merge_counts

    @classmethod
    def train(cls, text, vocab_size=5000, *, specials=SPECIALS, min_frequency=2):
        """Learn merges from ``text`` (a str, or an iterable of str documents that are
        pre-tokenised separately) until the vocabulary (specials + 256 bytes + merges) has
        ``vocab_size`` tokens, or no pair occurs ``min_frequency`` times any more.

        Each step merges the most frequent adjacent pair of symbols inside the pre-tokens
        (ties: the smallest left id, then the smallest right id).
        """
        docs = [text] if isinstance(text, str) else list(text)
        blobs = [_utf8(t, "text" if isinstance(text, str) else f"text[{i}]")
                 for i, t in enumerate(docs)]
        n_special = len(tuple(specials))
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < n_special + 256:
            raise ValueError(f"vocab_size must be >= {n_special + 256} (the {n_special} specials "
                             f"and 256 bytes), got {vocab_size}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, (int, np.integer)) \
                or min_frequency < 1:
            raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        merges, counts = _C.bpe_train(b"".join(blobs), offsets, char_classes(),
                                      int(vocab_size) - n_special - 256, int(min_frequency))
        return cls(merges, specials=specials, merge_counts=counts)

    @property
    def vocab_size(self):
        return self.n_special + 256 + len(self.merges)

    # ---------------------------------------------------------------- encode / decode
    def _encode_ordinary(self, text):
        return self.encode_bytes(_utf8(text))

    def encode_bytes(self, data):
        """Token ids of arbitrary bytes (need not be UTF-8); decode_bytes inverts it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return self._ids_of_symbols(_C.bpe_encode(self._encoder, data))

    def decode_bytes(self, ids):
        """The bytes of ``ids``, which must not contain special ids."""
        return _C.bpe_decode(self._encoder, self._symbols_of_ids(as_id_array(ids)))

    def _decode_ordinary(self, ids):
        # a run of ids may end inside a multi-byte character (e.g. model samples):
        # such bytes become U+FFFD
        return self.decode_bytes(ids).decode("utf-8", "replace")

    def _ids_of_symbols(self, symbols):
        """Token ids of the C encoder's symbols (bytes 0..255, then merges)."""
        return symbols.astype(np.int64) + self.n_special

    def _symbols_of_ids(self, ids):
        """The C encoder's symbols of non-special token ids (IndexError for others)."""
        if ids.size and (ids.min() < self.n_special or ids.max() >= self.vocab_size):
            bad = np.flatnonzero((ids < self.n_special) | (ids >= self.vocab_size))[0]
            raise IndexError(f"ids holds id {int(ids[bad])} at position {int(bad)}, outside the "
                             f"byte-level range [{self.n_special}, {self.vocab_size})")
        return ids - self.n_special

    def token_bytes(self, i):
        """The bytes of (non-special) token ``i``."""
        return self.decode_bytes([i])

    def _token_string(self, i):
        return "".join(_BYTE_CHARS[b] for b in self.token_bytes(i))

    @property
    def vocab(self):
        """Every token's spelling, by id: specials, then GPT-2's byte-to-character form."""
        return [self.id_to_token(i) for i in range(self.vocab_size)]

    # ---------------------------------------------------------------- save / load
    def _to_dict(self):
        d = {"merges": self.merges.tolist(), "vocab": self.vocab}
        if self.merge_counts is not None:
            d["merge_counts"] = self.merge_counts.tolist()
        return d

    @classmethod
    def _from_dict(cls, d):
        merges = d.get("merges")
        if not isinstance(merges, list):
            raise ValueError("a bpe tokenizer file needs a 'merges' list of [left, right] pairs")
        try:
            arr = np.array(merges, dtype=np.int64) if merges else np.zeros((0, 2), np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("'merges' must be a list of [left, right] integer pairs") from None
        tok = cls(arr, specials=d.get("specials", ()), merge_counts=d.get("merge_counts"))
        if "vocab" in d and d["vocab"] != tok.vocab:
            raise ValueError("the file's 'vocab' does not match its merges (corrupt file?)")
        return tok
