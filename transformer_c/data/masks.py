"""Attention masks in the coursework convention: True = masked (may not be attended to)."""
import numpy as np


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


def causal_mask(x):
    """(T, T) bool mask, True above the diagonal: query i may not see keys j > i.

    x: the sequence length T, or a batch (N, T) / (N, T, ...) (T = x.shape[1]), or one
    sequence (T,). As the coursework's CausalMask, e.g. T = 3:
    [[F, T, T], [F, F, T], [F, F, F]].
    """
    T = _length(x, "x")
    return np.triu(np.ones((T, T), dtype=bool), k=1)


def pad_mask(x, lengths):
    """(N, T) bool mask, True at padding: position t of row n is masked iff t >= lengths[n].

    x: a padded batch (N, T) or (N, T, ...); lengths: (N,) integers in [0, T]. As the
    coursework's PadMask.
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
    return np.arange(T)[None, :] >= lengths.astype(np.int64)[:, None]
