"""Synthetic sequence tasks generated on the fly: copy, reversal, integer arithmetic.

Every example is a prompt ending in "=" and an answer: "abc=abc" (copy), "abc=cba"
(reversal), "37+85=122" (arithmetic). Held-out splits are exact: whether a problem is in
"train" or "val" is a fixed function of the problem and the task's ``seed`` (a keyed
BLAKE2 hash), so the two splits never share an example however many are drawn; sampling
draws uniformly and keeps the problems of the requested split (rejection sampling).
"""
import hashlib
from typing import NamedTuple

import numpy as np

from .char import CharTokenizer
from .datasets import collate
from .tokenizer import SPECIALS

SPLITS = ("train", "val")


class Example(NamedTuple):
    prompt: str
    answer: str

    @property
    def text(self):
        """The example as text: the source, then the target."""
        return self.prompt + self.answer


def _int(v, name, minimum):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def _rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


class SyntheticTask:
    """Base class. Subclasses define ``alphabet``, ``_draw(rng) -> Example``,
    ``_key(example) -> str`` (problems with one key share a split) and optionally
    ``space_size`` / ``_enumerate()`` for exact full evaluation of small problem spaces."""

    name = None
    alphabet = ""
    space_size = None  # number of distinct problems, when small enough to enumerate

    def __init__(self, *, seed=0, val_fraction=0.1):
        self.seed = _int(seed, "seed", 0)
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)

    def split_of(self, example):
        """"train" or "val": a fixed function of the problem and the task seed."""
        h = hashlib.blake2b(self._key(example).encode(), digest_size=8,
                            key=self.seed.to_bytes(8, "little"))
        u = int.from_bytes(h.digest(), "little") / 2.0 ** 64
        return "val" if u < self.val_fraction else "train"

    def sample(self, n, rng, split="train"):
        """``n`` examples of ``split`` drawn with ``rng`` (np.random.Generator or seed)."""
        n = _int(n, "n", 0)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "val" and self.val_fraction == 0.0:
            raise ValueError("split='val' is empty: this task has val_fraction=0")
        rng = _rng(rng)
        out, tries = [], 0
        limit = 1000 + 1000 * n
        while len(out) < n:
            ex = self._draw(rng)
            tries += 1
            if self.split_of(ex) == split:
                out.append(ex)
            elif tries > limit:
                raise ValueError(f"could not draw {n} {split!r} examples in {limit} tries: the "
                                 f"{split!r} split of this problem space is (nearly) empty")
        return out

    def all_examples(self, split):
        """Every problem of ``split``, in a fixed order (small problem spaces only)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self.space_size is None or self.space_size > 10 ** 6:
            raise ValueError(f"the problem space of {self!r} is too large to enumerate")
        return [ex for ex in self._enumerate() if self.split_of(ex) == split]

    def tokenizer(self, specials=SPECIALS):
        """A CharTokenizer over this task's alphabet."""
        return CharTokenizer(sorted(self.alphabet), specials=specials)

    def batch(self, batch_size, rng, tokenizer, split="train"):
        """A padded batch for sequence training.

        Returns (inputs, targets, lengths, answer_positions): inputs = <SOS> + text,
        targets = text + <EOS> (int64 (B, L), padded with <PAD>), lengths (B,), and
        answer_positions (B, L) bool, True where the target is part of the answer or the
        final <EOS> (the positions to score for exact-match accuracy).
        """
        examples = self.sample(batch_size, rng, split)
        items, starts = [], []
        sos, eos = tokenizer._require_special("<SOS>"), tokenizer._require_special("<EOS>")
        pad = tokenizer._require_special("<PAD>")
        for ex in examples:
            p, a = tokenizer.encode(ex.prompt), tokenizer.encode(ex.answer)
            ids = np.concatenate([p, a])
            items.append((np.concatenate([[sos], ids]), np.concatenate([ids, [eos]])))
            starts.append(p.size)
        inputs, targets, lengths = collate(items, pad)
        pos = np.arange(inputs.shape[1])[None, :]
        answer = (pos >= np.array(starts, dtype=np.int64)[:, None]) & (pos < lengths[:, None])
        return inputs, targets, lengths, answer

    def __repr__(self):
        return f"{type(self).__name__}(seed={self.seed}, val_fraction={self.val_fraction})"


class _StringTask(SyntheticTask):
    def __init__(self, *, min_len=1, max_len=8, symbols="abcdefghij", seed=0, val_fraction=0.1):
        super().__init__(seed=seed, val_fraction=val_fraction)
        self.min_len = _int(min_len, "min_len", 1)
        self.max_len = _int(max_len, "max_len", self.min_len)
        if not isinstance(symbols, str) or not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be a non-empty string of distinct characters, "
                             f"got {symbols!r}")
        if "=" in symbols:
            raise ValueError("symbols may not contain '=', the prompt/answer separator")
        self.symbols = symbols
        self.alphabet = symbols + "="
        k = len(symbols)
        self.space_size = sum(k ** L for L in range(self.min_len, self.max_len + 1))

    def _draw(self, rng):
        L = int(rng.integers(self.min_len, self.max_len + 1))
        s = "".join(self.symbols[i] for i in rng.integers(0, len(self.symbols), size=L))
        return Example(s + "=", self._answer(s))

    def _key(self, example):
        return example.prompt[:-1]

    def _enumerate(self):
        import itertools
        for L in range(self.min_len, self.max_len + 1):
            for t in itertools.product(self.symbols, repeat=L):
                s = "".join(t)
                yield Example(s + "=", self._answer(s))


class CopyTask(_StringTask):
    """Copy a random string: "cab=cab". Lengths uniform in [min_len, max_len]."""

    name = "copy"

    def _answer(self, s):
        return s


class ReversalTask(_StringTask):
    """Reverse a random string: "cab=bac"."""

    name = "reversal"

    def _answer(self, s):
        return s[::-1]


class ArithmeticTask(SyntheticTask):
    """Integer arithmetic: "37+85=122", "3-41=-38", "12*7=84".

    Operands are uniform in [0, 10**digits); the operator uniform over ``ops`` (a string
    of "+", "-", "*"). For the commutative "+" and "*", a+b and b+a share a split, so a
    problem's mirror image never leaks from train into val.
    """

    name = "arithmetic"

    def __init__(self, *, digits=2, ops="+", seed=0, val_fraction=0.1):
        super().__init__(seed=seed, val_fraction=val_fraction)
        self.digits = _int(digits, "digits", 1)
        if not isinstance(ops, str) or not ops or set(ops) - set("+-*") or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be a string of distinct operators from '+-*', got {ops!r}")
        self.ops = ops
        self.alphabet = "0123456789=" + ops  # "-" also spells negative differences
        self.space_size = len(ops) * 10 ** (2 * self.digits)

    @staticmethod
    def _apply(a, op, b):
        return a + b if op == "+" else a - b if op == "-" else a * b

    def _make(self, a, op, b):
        return Example(f"{a}{op}{b}=", str(self._apply(a, op, b)))

    def _draw(self, rng):
        hi = 10 ** self.digits
        a, b = (int(v) for v in rng.integers(0, hi, size=2))
        op = self.ops[int(rng.integers(0, len(self.ops)))]
        return self._make(a, op, b)

    def _key(self, example):
        p = example.prompt[:-1]
        op = next(c for c in "+-*" if c in p)
        a, b = (int(v) for v in p.split(op))
        if op in "+*":
            a, b = min(a, b), max(a, b)
        return f"{a}{op}{b}"

    def _enumerate(self):
        hi = 10 ** self.digits
        for op in self.ops:
            for a in range(hi):
                for b in range(hi):
                    yield self._make(a, op, b)


TASKS = {"copy": CopyTask, "reversal": ReversalTask, "arithmetic": ArithmeticTask}
