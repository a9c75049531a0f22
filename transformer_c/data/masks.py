"""Attention masks, in both polarities, each saying which in its name:

- the library's polarity (transformer_c.functional, nn, the models): True = attend / a
  real key. ``causal_attn_mask(T)`` is an ``attn_mask``, ``key_padding_mask(x, lengths)``
  a ``key_padding_mask`` (True = real token);
- the coursework's (hw4lib's CausalMask / PadMask): True = MASKED (may not be attended
  to). ``causal_mask`` and ``pad_mask`` keep the course's names and semantics; they are
  the negations of the two above.
"""
import numpy as np

__all__ = ["causal_attn_mask", "key_padding_mask", "causal_mask", "pad_mask"]


def _length(x, name):
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or an array, got bool")
    if isinstance(x, (int, np.integer)):
        if x < 0:
            raise ValueError(f"{name} must be >= 0, got {x}")
        return int(x)
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an int T or an array of shape (T,) or (N, T, ...), "
                         f"got a scalar array")
    return arr.shape[0] if arr.ndim == 1 else arr.shape[1]


def causal_attn_mask(x):
    """(T, T) bool attn_mask, True = attend: query i sees keys j <= i (True on and below
    the diagonal). x as for causal_mask. The negation of causal_mask.
    """
    T = _length(x, "x")
    return np.tril(np.ones((T, T), dtype=bool))


def causal_mask(x):
    """COURSEWORK POLARITY (True = masked): (T, T) bool, True above the diagonal: query i
    may not see keys j > i. For transformer_c's attn_mask use causal_attn_mask.

    x: the sequence length T, or a batch (N, T) / (N, T, ...) (T = x.shape[1]), or one
    sequence (T,). As the coursework's CausalMask, e.g. T = 3:
    [[F, T, T], [F, F, T], [F, F, F]].
    """
    T = _length(x, "x")
    return np.triu(np.ones((T, T), dtype=bool), k=1)


def pad_mask(x, lengths):
    """COURSEWORK POLARITY (True = padding): (N, T) bool, position t of row n is masked iff
    t >= lengths[n]. For transformer_c's key_padding_mask use key_padding_mask.

    x: a padded batch (N, T) or (N, T, ...); lengths: (N,) integers in [0, T]. As the
    coursework's PadMask.
    """
    return ~key_padding_mask(x, lengths)


def key_padding_mask(x, lengths):
    """(N, T) bool key_padding_mask, True = a real token: position t of row n is real iff
    t < lengths[n]. The negation of pad_mask.

    x: a padded batch (N, T) or (N, T, ...); lengths: (N,) integers in [0, T] (TypeError /
    ValueError naming ``lengths`` otherwise).
    """
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"x must be a padded batch of shape (N, T) or (N, T, ...), got shape "
                         f"{arr.shape}")
    N, T = arr.shape[:2]
    lengths = np.asarray(lengths)
    if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if lengths.shape != (N,):
        raise ValueError(f"lengths must have shape (N,) = ({N},), got {lengths.shape}")
    if N and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [0, T] = [0, {T}], got min {lengths.min()} "
                         f"and max {lengths.max()}")
    return np.arange(T)[None, :] < lengths.astype(np.int64)[:, None]
