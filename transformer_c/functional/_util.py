"""Argument helpers shared by the functional wrappers (glue only: no math).

One converter per kind of argument, used everywhere, with one exception type per kind of
error: TypeError for a wrong type or dtype, ValueError for a wrong value or shape (and
IndexError for an id out of range), the message naming the argument."""
import math
import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def native(arr):
    """arr, converted to native byte order if it is a non-native (e.g. big-endian) float
    array, as the C bindings convert theirs: the values are the same."""
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def as_float(x, name):
    """x as an ndarray of dtype float32 or float64 (array-likes converted, dtype kept; a
    non-native byte order, e.g. big-endian '>f8', converted to native).

    Raises TypeError naming ``name`` for any other dtype (ints, bools, float16, objects).
    """
    arr = native(np.asarray(x) if not isinstance(x, np.ndarray) else x)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def same_dtype(ref, ref_name, x, name):
    """x as an ndarray with the dtype of ``ref`` (byte order aside: a non-native one is
    converted); TypeError (naming both) if it differs."""
    arr = native(np.asarray(x) if not isinstance(x, np.ndarray) else x)
    if arr.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {arr.dtype} but {ref_name} has {ref.dtype}: "
                        "transformer_c never mixes dtypes in one call")
    return arr


def check_inout(x, name):
    """x, an array updated in place: TypeError unless it is a numpy array, ValueError naming
    the byte order if it is not native (it cannot be converted: the update must land in x
    itself)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (it is updated in place), "
                        f"got {type(x).__name__}")
    if not x.dtype.isnative:
        raise ValueError(f"{name} is updated in place, so it must be in native byte order, "
                         f"got dtype {x.dtype.str} (convert it first: "
                         f"x.astype(x.dtype.newbyteorder('=')))")
    return x


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


def as_int(value, name, low=None):
    """value as a Python int (any integer type; TypeError naming ``name`` for bools,
    floats and the rest); with ``low``, ValueError unless value >= low."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def as_seed(value, name="seed"):
    """value as an int in [0, 2**64) (a counter-based RNG key): TypeError for non-integers
    (bools included), ValueError outside the range."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a non-negative integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a non-negative integer, "
                        f"got {type(value).__name__}") from None
    if not 0 <= value < 2 ** 64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return value


# the ranges as_real checks, with the phrase its ValueError uses
_RANGES = {
    None: ("a number", lambda v: not math.isnan(v)),
    "finite": ("a finite number", math.isfinite),
    "non_negative": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "positive": ("a finite number > 0", lambda v: math.isfinite(v) and v > 0),
    "probability": ("a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0),
}


def as_real(value, name, range="finite"):
    """value as a float: TypeError naming ``name`` unless it is a real number (bools and
    complex numbers are not), ValueError unless it lies in ``range``: None (anything but
    NaN), "finite", "non_negative" (finite >= 0), "positive" (finite > 0) or "probability"
    ([0, 1])."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    what, ok = _RANGES[range]
    if not ok(value):
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def positive_real(value, name):
    """value as a finite float > 0 (TypeError for non-reals, ValueError otherwise)."""
    return as_real(value, name, "positive")


_GELU_APPROXIMATE = {"none": 0, "tanh": 1}


def approximate_flag(approximate):
    """The C kernels' approximate_tanh flag: 'none' (exact erf GELU) -> 0, 'tanh' -> 1."""
    if not isinstance(approximate, str) or approximate not in _GELU_APPROXIMATE:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU_APPROXIMATE[approximate]


def check_shape(x, name, shape, what=None):
    """ValueError "<name> must have shape <shape> (<what>), got <x.shape>" unless it does."""
    if x.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}"
                         f"{f' ({what})' if what else ''}, got {x.shape}")


def check_linear(x, weight, bias=None, check_bias=True):
    """x (..., C) float, weight (OC, C) and bias (OC,) or None of x's dtype, checked (the
    bias's shape only with check_bias). Returns (x, weight, bias)."""
    x = as_float(x, "x")
    weight = same_dtype(x, "x", weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    last_dim(x, "x", weight.shape[1], "in_features (weight.shape[1])")
    if bias is not None:
        bias = same_dtype(x, "x", bias, "bias")
        if check_bias:
            check_shape(bias, "bias", (weight.shape[0],), "weight.shape[0]")
    return x, weight, bias


def check_norm(x, name, weight, bias):
    """weight and bias ((C,) or None, x's dtype) of a layer norm over x's C >= 1 channels
    (x an array named ``name``). Returns (weight, bias)."""
    C = last_dim(x, name)
    if C == 0:
        raise ValueError(f"{name} must have at least one channel (its last dim), got shape {x.shape}")
    weight = same_dtype(x, name, weight, "weight")
    check_shape(weight, "weight", (C,), f"the last dim of {name}")
    if bias is not None:
        bias = same_dtype(x, name, bias, "bias")
        check_shape(bias, "bias", (C,), f"the last dim of {name}")
    return weight, bias


def check_stats(x, name, mean, rstd):
    """mean and rstd (x.shape[:-1], x's dtype) from a layer norm's forward, both or neither
    given. Returns (mean, rstd) as arrays, or (None, None)."""
    if (mean is None) != (rstd is None):
        missing = "mean" if mean is None else "rstd"
        raise ValueError(f"{missing} is missing: give both mean and rstd (from the forward) "
                         "or neither")
    if mean is None:
        return None, None
    out = []
    for n, a in (("mean", mean), ("rstd", rstd)):
        a = same_dtype(x, name, a, n)
        check_shape(a, n, x.shape[:-1], f"{name}.shape[:-1]")
        out.append(a)
    return tuple(out)


def float_dtype(dtype):
    """np.dtype(dtype), which must be float32 or float64 (TypeError naming dtype), in native
    byte order (a non-native one, e.g. '>f8', gives the native dtype: results are native)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt.kind == "f" and not dt.isnative:
        dt = dt.newbyteorder("=")
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def as_bool_mask(value, name, meaning):
    """value as a NumPy bool array; TypeError naming ``name`` and its ``meaning`` (the mask's
    polarity, e.g. "True = real key, False = padding") for any other dtype."""
    m = np.asarray(value)
    if m.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array ({meaning}), got dtype {m.dtype}")
    return m
