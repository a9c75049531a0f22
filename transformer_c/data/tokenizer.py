"""The behaviour every tokenizer shares: special tokens, argument checks, JSON save/load.

Ids: the special tokens come first (``<PAD>`` = 0, ``<SOS>`` = 1, ``<EOS>`` = 2,
``<UNK>`` = 3 with the default specials), then the tokenizer's own vocabulary.
"""
import abc
import json
import os
import re

import numpy as np

SPECIALS = ("<PAD>", "<SOS>", "<EOS>", "<UNK>")
FORMAT_VERSION = 1


def check_text(text, name="text"):
    """text itself if it is a str; TypeError naming ``name`` otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return text


def as_id_array(ids, name="ids"):
    """ids (a sequence or array of integers) as a 1-D int64 array."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.dtype.kind == "f":  # [] becomes float64: still an empty id list
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"{name} holds id {int(arr.max())}, outside the int64 range")
    return arr.astype(np.int64, copy=False)


class Tokenizer(abc.ABC):
    """Base class: special tokens, ``encode``/``decode``/``tokenize``, ``save``/``load``.

    Subclasses implement ``vocab_size``, ``_encode_ordinary(text) -> int64 ids``,
    ``_decode_ordinary(ids) -> str`` (ids without specials), ``_token_string(id)`` and
    ``_to_dict()`` / ``_from_dict(d)``.
    """

    kind = None

    def _init_specials(self, specials, ids=None):
        """Set the special tokens: ``specials`` (names) get ``ids`` (default 0, 1, ...: the
        specials come first, as in Char/BPE tokenizers; a GPT-2 vocabulary puts them last)."""
        if isinstance(specials, str):
            raise TypeError("specials must be a sequence of strings, got a single str")
        specials = tuple(specials)
        for s in specials:
            if not isinstance(s, str) or not s:
                raise ValueError(f"specials must be non-empty strings, got {s!r}")
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct, got {specials}")
        self.specials = specials
        self._special_ids = dict(zip(specials, range(len(specials)) if ids is None else ids))
        self._special_names = {i: s for s, i in self._special_ids.items()}
        self._special_id_array = np.array(sorted(self._special_names), dtype=np.int64)
        self._special_re = (re.compile("|".join(re.escape(s) for s in
                                                sorted(specials, key=len, reverse=True)))
                            if specials else None)

    # ---------------------------------------------------------------- specials
    def special_id(self, name):
        """The id of special token ``name`` (e.g. "<PAD>"), or None if this tokenizer has none."""
        return self._special_ids.get(name)

    @property
    def pad_id(self):
        """The id of <PAD>, or None without one."""
        return self.special_id("<PAD>")

    @property
    def sos_id(self):
        """The id of <SOS>, or None without one."""
        return self.special_id("<SOS>")

    @property
    def eos_id(self):
        """The id of <EOS>, or None without one."""
        return self.special_id("<EOS>")

    @property
    def unk_id(self):
        """The id of <UNK>, or None without one."""
        return self.special_id("<UNK>")

    @property
    def n_special(self):
        """The number of special tokens."""
        return len(self.specials)

    @property
    @abc.abstractmethod
    def vocab_size(self):
        """Number of ids, specials included (each subclass defines it)."""

    def __len__(self):
        return self.vocab_size

    # ---------------------------------------------------------------- encode / decode
    def encode(self, text, *, add_sos=False, add_eos=False, allow_specials=False):
        """Token ids (1-D int64 array) of ``text`` (a str).

        add_sos / add_eos: put the <SOS> id first / the <EOS> id last.
        allow_specials: if True, occurrences of special-token strings in the text (e.g.
        "<EOS>") become their ids; by default they are ordinary text.
        """
        check_text(text)
        if allow_specials and self._special_re is not None:
            parts, pos = [], 0
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    parts.append(self._encode_ordinary(text[pos:m.start()]))
                parts.append(np.array([self._special_ids[m.group()]], dtype=np.int64))
                pos = m.end()
            if pos < len(text):
                parts.append(self._encode_ordinary(text[pos:]))
            ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        else:
            ids = self._encode_ordinary(text)
        if add_sos or add_eos:
            head = [self._require_special("<SOS>")] if add_sos else []
            tail = [self._require_special("<EOS>")] if add_eos else []
            ids = np.concatenate([np.array(head, dtype=np.int64), ids,
                                  np.array(tail, dtype=np.int64)])
        return ids

    def decode(self, ids, *, skip_specials=False):
        """The text of ``ids`` (any integer sequence or 1-D array).

        Special ids become their names ("<EOS>"), or nothing with skip_specials=True.
        IndexError for an id outside [0, vocab_size).
        """
        ids = as_id_array(ids)
        if ids.size:
            bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))
            if bad.size:
                i = int(bad[0])
                raise IndexError(f"ids holds id {int(ids[i])} at position {i}, outside "
                                 f"[0, {self.vocab_size})")
        special = np.flatnonzero(np.isin(ids, self._special_id_array))
        if special.size == 0:
            return self._decode_ordinary(ids)
        out, pos = [], 0
        for i in special.tolist():
            if i > pos:
                out.append(self._decode_ordinary(ids[pos:i]))
            if not skip_specials:
                out.append(self._special_names[int(ids[i])])
            pos = i + 1
        if pos < ids.size:
            out.append(self._decode_ordinary(ids[pos:]))
        return "".join(out)

    def unknown_characters(self, text):
        """The distinct characters of ``text`` this tokenizer cannot represent (they encode as
        <UNK>), in order of first appearance; none for byte-level tokenizers."""
        check_text(text)
        return []

    def tokenize(self, text, *, allow_specials=False):
        """The token strings of ``text`` (one per id of ``encode(text)``); see id_to_token."""
        return [self.id_to_token(i) for i in self.encode(text, allow_specials=allow_specials).tolist()]

    def id_to_token(self, i):
        """The string of token ``i``: a special's name, or the tokenizer's own spelling."""
        i = int(i)
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside [0, {self.vocab_size})")
        name = self._special_names.get(i)
        return self._token_string(i) if name is None else name

    def _require_special(self, name):
        i = self.special_id(name)
        if i is None:
            raise ValueError(f"this tokenizer has no {name} token (specials={self.specials})")
        return i

    # ---------------------------------------------------------------- save / load
    def to_dict(self):
        """The tokenizer as a JSON-able dict (what save writes; from_dict reads it)."""
        d = {"type": self.kind, "version": FORMAT_VERSION, "specials": list(self.specials)}
        d.update(self._to_dict())
        return d

    def save(self, path):
        """Write the tokenizer as JSON (UTF-8) to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def from_dict(cls, d):
        """The tokenizer described by ``d`` (a dict as to_dict gives); ValueError for a
        damaged or foreign description."""
        if not isinstance(d, dict):
            raise ValueError(f"a tokenizer description must be a JSON object, got {type(d).__name__}")
        kind = d.get("type")
        sub = {}
        for c in _subclasses(Tokenizer):  # a kind's first (base) class, not a user subclass
            sub.setdefault(c.kind, c)
        if kind not in sub:
            raise ValueError(f"unknown tokenizer type {kind!r} (known: {sorted(sub)})")
        if cls is not Tokenizer and sub[kind] is not cls:
            raise ValueError(f"this file holds a {kind!r} tokenizer, not a {cls.kind!r} one")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"tokenizer format version {d.get('version')!r} is not supported "
                             f"(this transformer_c reads version {FORMAT_VERSION})")
        return sub[kind]._from_dict(d)

    @classmethod
    def load(cls, path):
        """Read a tokenizer saved by ``save`` (Tokenizer.load reads any kind)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not a tokenizer JSON file: {e}") from None
        return cls.from_dict(d)

    def __reduce__(self):  # pickle through the JSON description (BPE holds a C object)
        return (tokenizer_from_dict, (self.to_dict(),))

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, specials={self.specials})"


def _subclasses(c):
    for s in c.__subclasses__():
        yield s
        yield from _subclasses(s)


def tokenizer_from_dict(d):
    """The tokenizer described by ``d`` (what ``to_dict`` returns)."""
    return Tokenizer.from_dict(d)


def load_tokenizer(path):
    """Load a tokenizer (char, bpe or gpt2) saved with ``save`` (the JSON says which)."""
    return Tokenizer.load(path)
