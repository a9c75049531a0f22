"""Next-token logits processing: repetition penalty, temperature, top-k, top-p, sampling.

All functions take a batch of next-token logits (n, V), float32 or float64 (dtype kept), and
return a new array. The normalisations (softmax, log-softmax) run in the C kernels of
:mod:`transformer_c.functional`; selection (top-k partition, top-p sort, the inverse-CDF
draw) is NumPy glue. The order the samplers apply them in is the Hugging Face one:
repetition penalty, temperature, top-k, top-p.
"""
import numpy as np

from .. import functional as F
from . import _args

__all__ = ["apply_repetition_penalty", "apply_temperature", "top_k_filter", "top_p_filter",
           "log_probs", "probs", "sample_tokens", "greedy_tokens"]


def apply_repetition_penalty(logits, seen, penalty):
    """The CTRL / Hugging Face repetition penalty.

    logits (n, V); seen (n, V) bool, True where the token already occurs in the row's
    context; penalty > 0. A seen token's logit is divided by ``penalty`` when positive and
    multiplied by it otherwise (so penalty > 1 always makes a seen token less likely);
    unseen tokens are unchanged. Returns (n, V), the dtype of ``logits``.
    """
    penalty = _args.penalty(penalty, "penalty")
    logits = np.asarray(logits)
    if penalty == 1.0:
        return logits.copy()
    seen = np.asarray(seen, dtype=bool)
    if seen.shape != logits.shape:
        raise ValueError(f"seen must have the shape of logits {logits.shape}, got {seen.shape}")
    hit = np.where(logits > 0, logits / logits.dtype.type(penalty),
                   logits * logits.dtype.type(penalty))
    return np.where(seen, hit, logits)


def apply_temperature(logits, temperature):
    """(logits - row max) / temperature for temperature > 0: the softmax of the result is
    softmax(logits / temperature), but no entry can overflow to +inf however small the
    temperature (the row maximum becomes 0, the rest <= 0 or -inf).

    logits (n, V) with a finite maximum in every row. Returns (n, V), the dtype of logits.
    """
    temperature = _args.temperature(temperature)
    if temperature == 0:
        raise ValueError("temperature must be > 0 here (temperature 0 means greedy: use "
                         "greedy_tokens)")
    logits = np.asarray(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        return shifted / logits.dtype.type(temperature)


def top_k_filter(logits, k):
    """Keep the k largest logits of every row, set the rest to -inf.

    logits (n, V); k >= 0 (0, or k >= V, keeps everything). Entries equal to the k-th
    largest value are all kept (ties at the boundary, as in Hugging Face), so a row can keep
    more than k tokens only when logits tie. Returns (n, V).
    """
    k = _args.top_k(k, "k")
    logits = np.asarray(logits)
    V = logits.shape[-1]
    if k == 0 or k >= V:
        return logits.copy()
    kth = np.partition(logits, V - k, axis=-1)[..., V - k:V - k + 1]
    return np.where(logits < kth, logits.dtype.type(-np.inf), logits)


def top_p_filter(logits, p):
    """Nucleus filtering: keep the smallest set of most probable tokens whose probability
    (softmax of the row) adds up to at least p, set the rest to -inf.

    A token is kept when the probability of the tokens ranked strictly above it is below p
    (so the most probable token is always kept; equal probabilities are ranked by token id).
    This is Hugging Face's TopPLogitsWarper. logits (n, V); p in (0, 1] (1 keeps
    everything). Returns (n, V).
    """
    p = _args.top_p(p, "p")
    logits = np.asarray(logits)
    if p == 1.0:
        return logits.copy()
    pr = F.softmax(logits, axis=-1)
    order = np.argsort(-pr, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(pr, order, axis=-1).astype(np.float64)
    before = np.cumsum(sorted_p, axis=-1) - sorted_p
    before[..., 0] = 0.0
    remove_sorted = before >= p
    remove = np.empty_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, logits.dtype.type(-np.inf), logits)


def log_probs(logits):
    """log_softmax over the last axis (C kernel). logits (n, V) -> (n, V)."""
    return F.log_softmax(logits, axis=-1)


def probs(logits):
    """softmax over the last axis (C kernel). logits (n, V) -> (n, V)."""
    return F.softmax(logits, axis=-1)


def greedy_tokens(logits):
    """argmax of every row (the lowest token id among ties). logits (n, V) -> (n,) int64."""
    return np.argmax(logits, axis=-1).astype(np.int64)


def sample_tokens(p, rng):
    """One token per row drawn from the probabilities p (n, V) by the inverse CDF: one
    uniform draw u per row (rng.random(n), rows in order) picks the first token whose
    cumulative probability exceeds u * row_sum. A zero-probability token is never drawn.
    Returns (n,) int64."""
    p = np.asarray(p, dtype=np.float64)
    n, V = p.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    c = np.cumsum(p, axis=-1)
    u = rng.random(n) * c[:, -1]
    tok = np.array([np.searchsorted(c[i], u[i], side="right") for i in range(n)],
                   dtype=np.int64)
    for i in np.flatnonzero(tok >= V):  # u * sum rounded up to the sum: the last possible token
        tok[i] = np.flatnonzero(p[i] > 0)[-1]
    return tok
