"""Character-level tokenizer: one id per Unicode code point of a fixed alphabet."""
import numpy as np

from .tokenizer import SPECIALS, Tokenizer, check_text


class CharTokenizer(Tokenizer):
    """One token per character.

    Ids: ``specials`` first (by default <PAD>=0, <SOS>=1, <EOS>=2, <UNK>=3), then the
    characters of ``chars`` in the order given (``train`` sorts them, as nanoGPT does:
    with ``specials=()`` Tiny Shakespeare gets nanoGPT's exact 65-id vocabulary).
    A character outside the alphabet encodes as <UNK>, or raises ValueError when there is
    no <UNK>. decode(encode(s)) == s for every s over the alphabet.
    """

    kind = "char"

    def __init__(self, chars, specials=SPECIALS):
        self._init_specials(specials)
        if isinstance(chars, str):
            chars = list(chars)
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for c in chars if chars.count(c) > 1)
            raise ValueError(f"chars must be distinct, {dup!r} appears twice")
        clash = set(chars) & set(self.specials)
        if clash:
            raise ValueError(f"chars and specials overlap: {sorted(clash)}")
        self.chars = tuple(chars)
        S = len(self.specials)
        cps = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(cps, kind="stable")
        self._sorted_cps = cps[order]
        self._sorted_ids = (order + S).astype(np.int64)
        self._itos = list(self.specials) + list(chars)

    @classmethod
    def train(cls, text, specials=SPECIALS):
        """The tokenizer whose alphabet is the sorted set of characters of ``text``
        (a str or an iterable of str)."""
        if isinstance(text, str):
            chars = set(text)
        else:
            chars = set()
            for i, t in enumerate(text):
                chars.update(check_text(t, f"text[{i}]"))
        return cls(sorted(chars), specials=specials)

    @property
    def vocab_size(self):
        return len(self._itos)

    def _lookup(self, text):
        """(ids, known): each character's id and whether it is in the alphabet."""
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        if self._sorted_cps.size == 0 or cps.size == 0:
            return np.zeros(cps.shape, dtype=np.int64), np.zeros(cps.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self._sorted_cps, cps), self._sorted_cps.size - 1)
        return self._sorted_ids[pos], self._sorted_cps[pos] == cps

    def _encode_ordinary(self, text):
        ids, ok = self._lookup(text)
        if not ok.all():
            if self.unk_id is None:
                i = int(np.flatnonzero(~ok)[0])
                raise ValueError(f"text holds {text[i]!r} (U+{ord(text[i]):04X}) at position "
                                 f"{i}, which is not in the vocabulary, and there is no <UNK>")
            ids[~ok] = self.unk_id
        return ids

    def unknown_characters(self, text):
        """The distinct characters of ``text`` outside the alphabet, in order of first
        appearance (encode turns each into <UNK>)."""
        _, ok = self._lookup(check_text(text))
        return list(dict.fromkeys(text[i] for i in np.flatnonzero(~ok).tolist()))

    def _decode_ordinary(self, ids):
        itos = self._itos
        return "".join([itos[i] for i in ids.tolist()])

    def _token_string(self, i):
        return self._itos[i]

    def _to_dict(self):
        return {"chars": list(self.chars)}

    @classmethod
    def _from_dict(cls, d):
        chars = d.get("chars")
        if not isinstance(chars, list):
            raise ValueError("a char tokenizer file needs a 'chars' list")
        return cls(chars, specials=d.get("specials", ()))
