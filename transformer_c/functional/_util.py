"""Argument helpers shared by the functional wrappers (glue only: no math)."""
import math
import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(x, name):
    """x as an ndarray of dtype float32 or float64 (array-likes converted, dtype kept).

    Raises TypeError naming ``name`` for any other dtype (ints, bools, float16, objects).
    """
    arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def same_dtype(ref, ref_name, x, name):
    """x as an ndarray with the dtype of ``ref``; TypeError (naming both) if it differs."""
    arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if arr.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {arr.dtype} but {ref_name} has {ref.dtype}: "
                        "transformer_c never mixes dtypes in one call")
    return arr


def as_ids(x, name):
    """x as an integer ndarray (any integer dtype); TypeError naming ``name`` otherwise."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return arr


def last_dim(x, name, want=None, what="size"):
    """x.shape[-1], checking x has at least one dimension (and the size ``want``)."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    if want is not None and x.shape[-1] != want:
        raise ValueError(f"{name} must have last dimension {what} = {want}, got shape {x.shape}")
    return x.shape[-1]


def rows(x):
    """x viewed as 2-D (N, C): all leading dimensions flattened."""
    return x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1])


def as_int(value, name):
    """value as a Python int (any integer type; TypeError naming ``name`` for bools,
    floats and the rest)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def positive_real(value, name):
    """value as a finite float > 0 (TypeError for non-reals, ValueError otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def float_dtype(dtype):
    """np.dtype(dtype), which must be float32 or float64 (TypeError naming dtype)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt
