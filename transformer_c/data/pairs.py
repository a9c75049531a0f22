"""Data for encoder-only (BERT-style) models: special tokens, sentence-pair encoding,
masked-language-model masking, and the datasets transformer_c.train.Trainer reads.

- :data:`BERT_SPECIALS`: the default specials plus ``<CLS>``, ``<SEP>``, ``<MASK>`` (ids
  0..6: <PAD> 0, <SOS> 1, <EOS> 2, <UNK> 3, <CLS> 4, <SEP> 5, <MASK> 6); train a tokenizer
  with ``BPETokenizer.train(text, V, specials=BERT_SPECIALS)``.
- :func:`encode_pair`: ``[CLS] a [SEP] b [SEP]`` with segment ids 0 / 1, truncated
  longest-first to ``max_len``.
- :func:`mlm_mask`: BERT's masking: each maskable position is chosen with probability
  ``rate`` (0.15); a chosen token becomes <MASK> with probability 0.8, a random
  non-special token with 0.1, stays with 0.1; deterministic for a seed.
- :class:`PairDataset` (task "classify"), :class:`MaskedLMDataset` (task "mlm"):
  ``batch_at(indices) -> dict`` of the keyword arguments of ``Bert.loss_and_grads`` /
  ``Bert.mlm_loss_and_grads``.
- :func:`read_pairs`: a JSONL file of (text_a, text_b, label) rows.
"""
import json

import numpy as np

from .tokenizer import SPECIALS, Tokenizer

__all__ = ["BERT_SPECIALS", "encode_pair", "mlm_mask", "pad_pairs", "PairDataset",
           "MaskedLMDataset", "read_pairs"]

BERT_SPECIALS = SPECIALS + ("<CLS>", "<SEP>", "<MASK>")


def _special(tokenizer, name):
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be a transformer_c.data.Tokenizer, got "
                        f"{type(tokenizer).__name__}")
    i = tokenizer.special_id(name)
    if i is None:
        raise ValueError(f"tokenizer has no {name} token: train it with "
                         f"specials=transformer_c.data.BERT_SPECIALS")
    return i


def _check_int(v, name, low):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def encode_pair(tokenizer, text_a, text_b=None, *, max_len=128):
    """(ids (L,), token_types (L,)) int64 of ``[CLS] a [SEP] b [SEP]`` (or ``[CLS] a
    [SEP]`` without text_b): segment 0 up to the first [SEP] included, 1 after. The longer
    text loses tokens from its end first until L <= max_len (max_len >= 5 with a pair,
    >= 3 without)."""
    cls_id, sep_id = _special(tokenizer, "<CLS>"), _special(tokenizer, "<SEP>")
    max_len = _check_int(max_len, "max_len", 3 if text_b is None else 5)
    a = list(tokenizer.encode(text_a))
    b = None if text_b is None else list(tokenizer.encode(text_b))
    budget = max_len - (2 if b is None else 3)
    if b is None:
        a = a[:budget]
    else:
        while len(a) + len(b) > budget:
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
    ids = [cls_id] + a + [sep_id]
    types = [0] * len(ids)
    if b is not None:
        ids += b + [sep_id]
        types += [1] * (len(b) + 1)
    return np.array(ids, dtype=np.int64), np.array(types, dtype=np.int64)


def pad_pairs(encoded, pad_id=0):
    """(src (B, L), token_types (B, L), src_lengths (B,)) int64 from [(ids, types), ...]
    (encode_pair's), right-padded with pad_id (types with 0) to the longest row."""
    encoded = list(encoded)
    lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    L = int(lengths.max()) if encoded else 0
    src = np.full((len(encoded), L), pad_id, dtype=np.int64)
    types = np.zeros((len(encoded), L), dtype=np.int64)
    for i, (ids, t) in enumerate(encoded):
        if len(ids) != len(t):
            raise ValueError(f"encoded[{i}]: ids and token types differ in length "
                             f"({len(ids)} and {len(t)})")
        src[i, :len(ids)] = ids
        types[i, :len(t)] = t
    return src, types, lengths


def mlm_mask(ids, *, vocab_size, mask_id, special_ids, seed, rate=0.15, lengths=None,
             ignore_index=-100):
    """BERT's masked-LM corruption of ids (B, L) (or (L,)): (inputs, targets), int64, ids'
    shape. A position is maskable when it is inside its row's length (lengths (B,), None:
    the whole row) and its id is not in special_ids; each maskable position is chosen with
    probability ``rate``; a chosen position's target is its id (else ignore_index) and its
    input becomes mask_id (probability 0.8), a uniformly random non-special id in
    [0, vocab_size) (0.1), or stays (0.1). ``seed`` (an int or a sequence of ints, as
    numpy.random.default_rng) fixes every draw."""
    arr = np.asarray(ids)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"ids must have shape (B, L) or (L,), got {arr.shape}")
    vocab_size = _check_int(vocab_size, "vocab_size", 1)
    mask_id = _check_int(mask_id, "mask_id", 0)
    if mask_id >= vocab_size:
        raise ValueError(f"mask_id must lie in [0, vocab_size) = [0, {vocab_size}), "
                         f"got {mask_id}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a probability in [0, 1], got {rate!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise IndexError(f"ids holds id {arr.min() if arr.min() < 0 else arr.max()}, outside "
                         f"[0, {vocab_size})")
    specials = np.unique(np.asarray(list(special_ids), dtype=np.int64))
    normal = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), specials)
    if normal.size == 0:
        raise ValueError("special_ids covers the whole vocabulary: nothing to draw random "
                         "replacements from")
    x = np.atleast_2d(arr).astype(np.int64)
    B, L = x.shape
    maskable = ~np.isin(x, specials)
    if lengths is not None:
        n = np.asarray(lengths)
        if n.dtype == np.bool_ or not np.issubdtype(n.dtype, np.integer) or n.shape != (B,):
            raise ValueError(f"lengths must be integers of shape ({B},), got {n.dtype} "
                             f"{n.shape}")
        if B and (n.min() < 0 or n.max() > L):
            raise ValueError(f"lengths must lie in [0, {L}], got min {n.min()} and max "
                             f"{n.max()}")
        maskable &= np.arange(L)[None, :] < n[:, None]
    rng = np.random.default_rng(seed)
    chosen = maskable & (rng.random((B, L)) < rate)
    r = rng.random((B, L))
    random_ids = normal[rng.integers(0, normal.size, size=(B, L))]
    inputs = x.copy()
    inputs[chosen & (r < 0.8)] = mask_id
    swap = chosen & (r >= 0.8) & (r < 0.9)
    inputs[swap] = random_ids[swap]
    targets = np.where(chosen, x, ignore_index).astype(np.int64)
    if arr.ndim == 1:
        return inputs[0], targets[0]
    return inputs, targets


def read_pairs(path, *, fields=("text_a", "text_b", "label"), labels=None):
    """(pairs [(text_a, text_b)], label strings [str]) of a JSONL file: one JSON object a
    line with the keys ``fields`` (text_a, text_b, label; e.g. SNLI's ("sentence1",
    "sentence2", "gold_label")); text_b may be missing or null (single texts). Rows whose
    label is not in ``labels`` (when given; e.g. SNLI's "-") are skipped. ValueError naming
    the file and line for a row that is not an object with string texts."""
    fa, fb, fl = fields
    pairs, out = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(fa), str) \
                    or fl not in row or not isinstance(row.get(fb, ""), (str, type(None))):
                raise ValueError(f"{path}:{n}: expected an object with a string {fa!r}, an "
                                 f"optional string {fb!r} and a {fl!r}")
            label = str(row[fl])
            if labels is not None and label not in labels:
                continue
            pairs.append((row[fa], row.get(fb)))
            out.append(label)
    return pairs, out


class PairDataset:
    """Encoded (text_a, text_b) pairs with class ids, for Trainer (task "classify").

    PairDataset(tokenizer, pairs [(a, b)], labels (N,) ints, max_len): every pair encoded
    once by encode_pair. ``batch_at(indices)`` -> {"src" (B, L), "token_types" (B, L),
    "src_lengths" (B,), "labels" (B,)}, L the longest row of the batch; ``block_size`` is
    max_len.
    """

    task = "classify"

    def __init__(self, tokenizer, pairs, labels, max_len=128):
        self.block_size = _check_int(max_len, "max_len", 3)
        self.pad_id = tokenizer.pad_id or 0
        self.encoded = [encode_pair(tokenizer, a, b, max_len=max_len) for a, b in pairs]
        y = np.asarray(labels)
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer) or \
                y.shape != (len(self.encoded),):
            raise ValueError(f"labels must be {len(self.encoded)} integers (one per pair), "
                             f"got {y.dtype} {y.shape}")
        self.labels = y.astype(np.int64)

    def __len__(self):
        return len(self.encoded)

    def batch_at(self, indices):
        """The padded batch of examples ``indices`` (a dict, see the class doc)."""
        idx = np.asarray(indices, dtype=np.int64)
        src, types, lengths = pad_pairs([self.encoded[i] for i in idx], self.pad_id)
        return {"src": src, "token_types": types, "src_lengths": lengths,
                "labels": self.labels[idx]}

    def eval_starts(self, count):
        """Indices of the examples an evaluation uses: all (count 0 or >= len) or
        ``count`` evenly spaced ones."""
        n = len(self)
        if count == 0 or count >= n:
            return np.arange(n, dtype=np.int64)
        return np.linspace(0, n - 1, count).round().astype(np.int64)


class MaskedLMDataset:
    """Windows of a token stream, masked by mlm_mask, for Trainer (task "mlm").

    MaskedLMDataset(tokens (N,), block_size, tokenizer, seed=0, rate=0.15): example i is
    ``[CLS] tokens[i : i + block_size - 2] [SEP]`` (segment 0); ``batch_at(starts)`` ->
    {"src", "targets"} (B, block_size), masked with a seed made of (seed, *starts), so a
    batch is the same whenever it is drawn again (resume, evaluation).
    """

    task = "mlm"

    def __init__(self, tokens, block_size, tokenizer, seed=0, rate=0.15):
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.block_size = _check_int(block_size, "block_size", 3)
        if self.tokens.ndim != 1 or self.tokens.size < self.block_size - 2:
            raise ValueError(f"tokens must be a 1-D stream of at least block_size - 2 = "
                             f"{self.block_size - 2} ids, got shape {self.tokens.shape}")
        self.cls_id, self.sep_id = _special(tokenizer, "<CLS>"), _special(tokenizer, "<SEP>")
        self.mask_id = _special(tokenizer, "<MASK>")
        self.vocab_size = tokenizer.vocab_size
        self.special_ids = [tokenizer.special_id(s) for s in tokenizer.specials]
        self.seed, self.rate = _check_int(seed, "seed", 0), rate

    def __len__(self):
        return self.tokens.size - (self.block_size - 2) + 1

    def batch_at(self, starts):
        """{"src": masked windows (B, block_size), "targets": (B, block_size), -100 where
        nothing is predicted}."""
        s = np.asarray(starts, dtype=np.int64)
        w = self.tokens[s[:, None] + np.arange(self.block_size - 2)]
        B = s.size
        x = np.concatenate([np.full((B, 1), self.cls_id), w, np.full((B, 1), self.sep_id)],
                           axis=1)
        src, targets = mlm_mask(x, vocab_size=self.vocab_size, mask_id=self.mask_id,
                                special_ids=self.special_ids, rate=self.rate,
                                seed=[self.seed, *s.tolist()])
        return {"src": src, "targets": targets}
