"""Argument checks shared by the decoders (glue only: no math).

Every check raises with a message that names the argument: ValueError for a bad value,
TypeError for a bad type.
"""
import math
import numbers

import numpy as np

from ..functional._util import as_int


def integer(value, name, *, minimum=None):
    """value as a Python int (bools rejected), at least ``minimum`` (functional's as_int)."""
    return as_int(value, name, minimum)


# The most tokens one generation may add (greedy, sampling, beam search; SequenceGenerator's
# max_length): a bound for models that have none of their own (a plain logits function, a
# custom DecodeModel). A GPT or EncoderDecoder is bounded further by its block size.
MAX_NEW_TOKENS = 1 << 20


def new_tokens(value, name="max_new_tokens"):
    """value as a token count in [0, MAX_NEW_TOKENS] (ValueError naming ``name`` beyond)."""
    value = integer(value, name, minimum=0)
    if value > MAX_NEW_TOKENS:
        raise ValueError(f"{name} must be <= {MAX_NEW_TOKENS} (transformer_c.generate."
                         f"MAX_NEW_TOKENS, the bound of one generation), got {value}")
    return value


def real(value, name):
    """value as a finite Python float (bools rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def temperature(value, name="temperature"):
    """temperature >= 0 (0 means greedy)."""
    value = real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 means greedy), got {value}")
    return value


def top_k(value, name="top_k"):
    """top_k >= 0 (0 means no top-k filtering)."""
    return integer(value, name, minimum=0)


def top_p(value, name="top_p"):
    """top_p in (0, 1] (1 means no nucleus filtering)."""
    value = real(value, name)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def penalty(value, name="repetition_penalty"):
    """A repetition penalty > 0 (1 means none)."""
    value = real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0 (1 means no penalty), got {value}")
    return value


def eos_ids(value, name="eos_id"):
    """None, one id or several ids (an end of sequence on any of them) as an int64 array."""
    if value is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(value, (list, tuple, np.ndarray)):
        ids = [integer(v, name, minimum=0) for v in np.asarray(value).reshape(-1).tolist()]
        return np.asarray(ids, dtype=np.int64)
    return np.asarray([integer(value, name, minimum=0)], dtype=np.int64)


def stop_strings(strings, decode):
    """stop_strings as a tuple of non-empty str; ``decode`` must be callable if any."""
    if strings is None:
        strings = ()
    elif isinstance(strings, str):
        strings = (strings,)
    strings = tuple(strings)
    for s in strings:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop_strings must be non-empty strings, got {s!r}")
    if strings and not callable(decode):
        raise ValueError("stop_strings need decode: a callable mapping a list of token ids "
                         "to text")
    return strings


def generator(seed):
    """seed (None, an int, or a numpy Generator used as is) as a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(integer(seed, "seed", minimum=0))


def prompts(value, name="prompts"):
    """prompts as a list of 1-D int64 arrays.

    Accepts a list/tuple of 1-D integer sequences (lengths may differ), a 2-D integer array
    (one prompt per row), or a single 1-D integer array / list of ints (one prompt).
    """
    if isinstance(value, np.ndarray):
        items = [value] if value.ndim == 1 else list(value) if value.ndim == 2 else None
        if items is None:
            raise ValueError(f"{name} must be 1-D (one prompt) or 2-D (one per row), got "
                             f"shape {value.shape}")
    elif isinstance(value, (list, tuple)):
        flat = len(value) > 0 and all(isinstance(v, (numbers.Integral, np.integer))
                                      and not isinstance(v, bool) for v in value)
        items = [value] if flat else list(value)
    else:
        raise TypeError(f"{name} must be a list of 1-D integer arrays or a 2-D integer array, "
                        f"got {type(value).__name__}")
    out = []
    for i, p in enumerate(items):
        a = np.asarray(p)
        if a.ndim != 1:
            raise ValueError(f"{name}[{i}] must be 1-D, got shape {a.shape}")
        if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{name}[{i}] must hold integer token ids, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and a.min() < 0:
            raise IndexError(f"{name}[{i}] holds a negative token id {a.min()}")
        out.append(a)
    return out


def check_logits(logits, rows, where):
    """The (rows, V) float logits a model returned; ValueError naming ``where`` otherwise."""
    logits = np.asarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where} must return float32 or float64 logits, got {logits.dtype}")
    if logits.ndim != 2 or logits.shape[0] != rows or logits.shape[1] < 1:
        raise ValueError(f"{where} must return logits of shape ({rows}, V), got "
                         f"{logits.shape}")
    return logits
