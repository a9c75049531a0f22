"""Datasets: random windows of one token stream, and padded sentence batches."""
import numpy as np


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _positive_int(v, name, minimum=1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


class StreamDataset:
    """Random windows of ``block_size`` tokens from one long token array (character-level
    language modelling as nanoGPT does it).

    ``get_batch(batch_size, rng)`` draws window starts uniformly from
    [0, len(tokens) - block_size) and returns (x, y), both int64 (B, T), with
    ``y[b, t] = x[b, t + 1]``: y is x shifted left by one, continued by the next token.
    """

    def __init__(self, tokens, block_size):
        tokens = np.asarray(tokens)
        if tokens.dtype == np.bool_ or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens must hold integer ids, got dtype {tokens.dtype}")
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-dimensional, got shape {tokens.shape}")
        self.block_size = _positive_int(block_size, "block_size")
        if tokens.size < self.block_size + 1:
            raise ValueError(f"tokens holds {tokens.size} tokens, fewer than one block plus its "
                             f"target (block_size + 1 = {self.block_size + 1})")
        self.tokens = tokens

    def __len__(self):
        """The number of distinct windows (valid start positions)."""
        return self.tokens.size - self.block_size

    def batch_at(self, starts):
        """(x, y) int64 (B, T) for the windows starting at ``starts`` (B,)."""
        starts = np.asarray(starts, dtype=np.int64)
        if starts.ndim != 1:
            raise ValueError(f"starts must be 1-dimensional, got shape {starts.shape}")
        if starts.size and (starts.min() < 0 or starts.max() >= len(self)):
            raise IndexError(f"starts must lie in [0, {len(self)}), got {starts.min()}.."
                             f"{starts.max()}")
        w = self.tokens[starts[:, None] + np.arange(self.block_size + 1)].astype(np.int64)
        return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])

    def get_batch(self, batch_size, rng):
        """A random batch (x, y), int64 (batch_size, block_size); rng: np.random.Generator."""
        batch_size = _positive_int(batch_size, "batch_size")
        starts = _check_rng(rng).integers(0, len(self), size=batch_size)
        return self.batch_at(starts)

    def eval_batches(self, batch_size, max_batches=None):
        """Deterministic batches of consecutive, non-overlapping windows from the start
        (starts 0, T, 2T, ...): every token after the first is a target exactly once, up to
        a tail shorter than a block. The last batch may be smaller."""
        batch_size = _positive_int(batch_size, "batch_size")
        starts = np.arange(0, len(self), self.block_size)
        n = 0
        for i in range(0, starts.size, batch_size):
            if max_batches is not None and n >= max_batches:
                return
            yield self.batch_at(starts[i:i + batch_size])
            n += 1


def collate(items, pad_id):
    """Pad (input, target) pairs into a batch, the coursework collate_fn.

    items: a sequence of (input_ids, target_ids) with len(input) == len(target);
    returns (inputs (B, L), targets (B, L), lengths (B,)), int64, L the longest length,
    padded on the right with ``pad_id``.
    """
    items = list(items)
    lengths = np.zeros(len(items), dtype=np.int64)
    for i, pair in enumerate(items):
        if len(pair) != 2:
            raise ValueError(f"items[{i}] must be an (input, target) pair")
        a, b = np.asarray(pair[0]), np.asarray(pair[1])
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"items[{i}]: input and target must be 1-D of equal length, got "
                             f"shapes {a.shape} and {b.shape}")
        lengths[i] = a.size
    L = int(lengths.max()) if items else 0
    inputs = np.full((len(items), L), pad_id, dtype=np.int64)
    targets = np.full((len(items), L), pad_id, dtype=np.int64)
    for i, (a, b) in enumerate(items):
        inputs[i, :lengths[i]] = a
        targets[i, :lengths[i]] = b
    return inputs, targets, lengths


class SentenceDataset:
    """One example per text, in the coursework's LMDataset style.

    Each text is encoded to ids t; the input is [<SOS>] + t and the target t + [<EOS>]
    (``max_length`` truncates t first). ``collate`` pads with <PAD> and returns lengths.
    ``n_chars`` (characters of the texts) and ``n_tokens`` (target tokens, <EOS> included)
    give per-character perplexity: exp(total target NLL / n_chars).
    """

    def __init__(self, texts, tokenizer, *, max_length=None):
        for name in ("<PAD>", "<SOS>", "<EOS>"):
            if tokenizer.special_id(name) is None:
                raise ValueError(f"tokenizer needs a {name} token for a SentenceDataset "
                                 f"(its specials are {tokenizer.specials})")
        if max_length is not None:
            max_length = _positive_int(max_length, "max_length", minimum=0)
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str")
        self.tokenizer = tokenizer
        self.pad_id, sos, eos = tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id
        self.inputs, self.targets = [], []
        self.n_chars = 0
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
            ids = tokenizer.encode(t)
            if max_length is not None:
                ids = ids[:max_length]
            self.inputs.append(np.concatenate([[sos], ids]).astype(np.int64))
            self.targets.append(np.concatenate([ids, [eos]]).astype(np.int64))
            self.n_chars += len(t)
        self.n_tokens = sum(t.size for t in self.targets)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        """(input_ids, target_ids), both int64 1-D of the same length."""
        return self.inputs[i], self.targets[i]

    def collate(self, items):
        """(inputs (B, L), targets (B, L), lengths (B,)) padded with <PAD>."""
        return collate(items, self.pad_id)

    def batches(self, batch_size, rng=None, *, drop_last=False):
        """Collated batches over the dataset: in order, or shuffled by ``rng``."""
        batch_size = _positive_int(batch_size, "batch_size")
        order = np.arange(len(self)) if rng is None else _check_rng(rng).permutation(len(self))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if drop_last and idx.size < batch_size:
                return
            yield self.collate([self[j] for j in idx])
