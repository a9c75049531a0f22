"""GPT-2 tokenizers from their files: Hugging Face's ids over this package's byte-level BPE.

A GPT-2 tokenizer is a byte-level BPE (the same pre-tokenisation and the same
lowest-rank-first merging as :class:`BPETokenizer`, which runs it in C) whose ids are
arbitrary: ``vocab.json`` maps each token's spelling (GPT-2's byte-to-character form, " " ->
"Ġ") to its id, ``merges.txt`` lists the merges by rank, and tokens that are neither a byte
nor a merge (``<|endoftext|>``) are special tokens. :class:`GPT2Tokenizer` keeps the
merges in byte space for the C encoder and maps its symbols to and from the file's ids, so
``encode`` returns exactly the ids Hugging Face's tokenizer gives (for text the same
Unicode version classifies alike: letters and numbers are Python's :mod:`unicodedata`).
Nothing is downloaded: :meth:`GPT2Tokenizer.from_huggingface` reads a directory.
"""
import json
import os

import numpy as np

from .bpe import BPETokenizer, bytes_to_unicode

_CHAR_BYTES = {c: b for b, c in bytes_to_unicode().items()}


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _read_merges(path):
    """merges.txt: an optional "#version" line, then one "left right" pair per line."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = []
    for n, line in enumerate(lines, 2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {n}: expected two tokens separated by a space, "
                             f"got {line!r}")
        merges.append(tuple(parts))
    return merges


def _check_tokenizer_json(d, path):
    """The (vocab, merges, added) of a tokenizer.json that is GPT-2's kind of tokenizer."""
    model = d.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r}, expected a byte-level 'BPE'")
    pre = d.get("pre_tokenizer") or {}
    checks = [("pre_tokenizer.type", pre.get("type"), "ByteLevel"),
              ("pre_tokenizer.add_prefix_space", pre.get("add_prefix_space", False), False),
              ("pre_tokenizer.use_regex", pre.get("use_regex", True), True),
              ("normalizer", d.get("normalizer"), None),
              ("model.dropout", model.get("dropout"), None),
              ("model.continuing_subword_prefix", model.get("continuing_subword_prefix") or None,
               None),
              ("model.end_of_word_suffix", model.get("end_of_word_suffix") or None, None),
              ("model.byte_fallback", model.get("byte_fallback", False), False),
              ("model.ignore_merges", model.get("ignore_merges", False), False)]
    for name, got, want in checks:
        if got != want:
            raise ValueError(f"{path}: {name} is {got!r}; a GPT-2 tokenizer has {want!r}")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    added = {t["content"]: t["id"] for t in d.get("added_tokens", [])}
    return model["vocab"], merges, added


class GPT2Tokenizer(BPETokenizer):
    """A GPT-2 (byte-level BPE) tokenizer with a Hugging Face vocabulary's ids.

    vocab: {token spelling: id}, ids 0..V-1 each used once; merges: [(left, right)] in
    rank order, spellings; added: {special token: id} beyond those found in ``vocab``
    (every vocab entry that is neither a byte nor a merge result is special). Read one
    with :meth:`from_huggingface`.
    """

    kind = "gpt2"

    def __init__(self, vocab, merges, added=None):
        vocab = dict(vocab)
        vocab.update(added or {})
        for s, i in vocab.items():
            if not isinstance(s, str) or isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"the vocabulary must map token strings to int ids, got "
                                 f"{s!r}: {i!r}")
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError("the vocabulary's ids must be 0..V-1, each used once")
        missing = [b for c, b in _CHAR_BYTES.items() if c not in vocab]
        if missing:
            raise ValueError(f"not a byte-level vocabulary: byte 0x{missing[0]:02x} "
                             f"({bytes_to_unicode()[missing[0]]!r}) has no token")
        symbol = dict(_CHAR_BYTES)  # spelling -> byte-space symbol
        pairs = []
        for k, (a, b) in enumerate(merges):
            for part in (a, b):
                if part not in symbol:
                    raise ValueError(f"merge {k} ({a!r} {b!r}) uses {part!r}, which is neither "
                                     "a byte nor made by an earlier merge")
            if a + b in symbol:
                raise ValueError(f"merge {k} ({a!r} {b!r}) makes {a + b!r} a second time "
                                 "(not supported: each token must have one merge)")
            if a + b not in vocab:
                raise ValueError(f"merge {k} ({a!r} {b!r}) makes {a + b!r}, which is not in "
                                 "the vocabulary")
            pairs.append((symbol[a], symbol[b]))
            symbol[a + b] = 256 + k
        super().__init__(np.array(pairs, dtype=np.int64).reshape(-1, 2), specials=())
        specials = sorted((i, s) for s, i in vocab.items() if s not in symbol)
        self._init_specials([s for _, s in specials], [i for i, _ in specials])
        self._vocab = vocab
        self._merge_strings = [tuple(m) for m in merges]
        self._hf_of = np.zeros(256 + len(pairs), dtype=np.int64)    # symbol -> id
        self._symbol_of = np.full(len(vocab), -1, dtype=np.int64)   # id -> symbol
        for s, sym in symbol.items():
            self._hf_of[sym] = vocab[s]
            self._symbol_of[vocab[s]] = sym

    @classmethod
    def from_files(cls, vocab_file, merges_file, added=None):
        """From a ``vocab.json`` and a ``merges.txt`` (GPT-2's original files)."""
        return cls(_read_json(vocab_file), _read_merges(merges_file), added)

    @classmethod
    def from_huggingface(cls, path):
        """From a local Hugging Face tokenizer: a ``tokenizer.json`` file, or a directory
        holding ``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` (what
        ``save_pretrained`` writes). Nothing is downloaded."""
        path = os.fspath(path)
        if os.path.isfile(path):
            return cls(*_check_tokenizer_json(_read_json(path), path))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} is neither a tokenizer.json file nor a directory "
                                    "(nothing is downloaded: pass a local directory holding "
                                    "tokenizer.json or vocab.json + merges.txt)")
        tj = os.path.join(path, "tokenizer.json")
        if os.path.isfile(tj):
            return cls.from_huggingface(tj)
        vocab, merges = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
        if not (os.path.isfile(vocab) and os.path.isfile(merges)):
            raise FileNotFoundError(f"{path} holds no tokenizer.json and no vocab.json + "
                                    "merges.txt")
        config = os.path.join(path, "tokenizer_config.json")
        if os.path.isfile(config) and _read_json(config).get("add_prefix_space"):
            raise ValueError(f"{config}: add_prefix_space is true; GPT-2 has false")
        return cls.from_files(vocab, merges)

    @classmethod
    def train(cls, *args, **kwargs):
        """Not available: a GPT2Tokenizer is read from files (train a BPETokenizer)."""
        raise TypeError("GPT2Tokenizer is read from files (from_huggingface); "
                        "BPETokenizer.train learns a new byte-level BPE")

    @property
    def vocab_size(self):
        return len(self._vocab)

    @property
    def eos_id(self):
        """GPT-2's end of text, ``<|endoftext|>`` (None without it)."""
        return self.special_id("<|endoftext|>")

    # ---------------------------------------------------------------- encode / decode
    def _ids_of_symbols(self, symbols):
        return self._hf_of[symbols]

    def _symbols_of_ids(self, ids):
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))[0]
            raise IndexError(f"ids holds id {int(ids[bad])} at position {int(bad)}, outside "
                             f"[0, {self.vocab_size})")
        sym = self._symbol_of[ids]
        if (sym < 0).any():
            bad = int(np.flatnonzero(sym < 0)[0])
            raise IndexError(f"ids holds special id {int(ids[bad])} at position {bad}, which "
                             "has no bytes")
        return sym

    def token_bytes(self, i):
        """The bytes of token ``i`` (a special token: its name in UTF-8)."""
        name = self._special_names.get(int(i))
        return self.decode_bytes([i]) if name is None else name.encode("utf-8")

    # ---------------------------------------------------------------- save / load
    def _to_dict(self):
        return {"vocab": self._vocab, "merges": [" ".join(m) for m in self._merge_strings]}

    @classmethod
    def _from_dict(cls, d):
        vocab, merges = d.get("vocab"), d.get("merges")
        if not isinstance(vocab, dict) or not isinstance(merges, list):
            raise ValueError("a gpt2 tokenizer file needs a 'vocab' object and a 'merges' list")
        return cls(vocab, [tuple(m.split(" ")) for m in merges])
