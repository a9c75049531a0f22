"""Junk and near-valid values for the fuzz harness, drawn from a seeded numpy Generator.

junk(r): any value a careless or hostile caller might pass (arrays of every dtype, byte
order, layout and size, NaN/inf, huge and negative ints, bools, strings, None, objects that
raise on conversion). Lists whose items mutate the list while it is converted
(mutating_list) are made only for arguments that are sequences of arrays: NumPy's own
np.asarray crashes on such a list (NumPy 2.4), so elsewhere they would test NumPy. mutate_array(r, a): a near-valid variant of
a valid array (wrong dtype, big-endian, Fortran or strided, a size changed, NaN/inf, a dim
added or removed, 0-size). The generator functions tag what they made (tags: a set) so the
harness can name and skip known defects.
"""
import numpy as np

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.int8, np.uint8, np.uint64, np.bool_,
          np.float16, np.complex64, np.longdouble, ">f4", ">f8", ">i8", "<U3", object]
INTS = [0, 1, -1, 2, 3, 7, -2**31, 2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, -2**63,
        2**64, 10**30, True, False, np.int64(-5), np.uint64(2**64 - 1), np.int32(3)]
FLOATS = [0.0, -0.0, 0.5, -1.0, 1e-300, 1e300, float("nan"), float("inf"), -float("inf"),
          np.float32(2.5), np.float16(1.0), 1 + 2j]
OTHERS = [None, "x", "", "gelu", "mean", b"\xff", (), [], {}, [1.0, 2.0], [[1, 2], [3]],
          (1, 2, 3), {"a": 1}, object(), slice(None), Ellipsis, range(3)]


def pick(r, seq):
    """One item of seq (kept as is: no conversion through a numpy array)."""
    return seq[int(r.integers(len(seq)))]


class Raises:
    """An object whose conversion to an array, number or index raises."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("fuzz: __array__ raised")

    def __index__(self):
        raise RuntimeError("fuzz: __index__ raised")

    def __float__(self):
        raise RuntimeError("fuzz: __float__ raised")

    def __len__(self):
        raise RuntimeError("fuzz: __len__ raised")

    def __repr__(self):
        return "Raises()"


class Mutator:
    """A sequence item that changes the sequence it sits in while it is converted to an
    array (clears it, pops from it or appends to it), then converts to a small array."""

    def __init__(self, target, how, value):
        self.target, self.how, self.value = target, how, value

    def __array__(self, dtype=None, copy=None):
        if self.how == "clear":
            self.target.clear()
        elif self.how == "pop" and self.target:
            self.target.pop()
        elif self.how == "append":
            self.target.append(np.zeros(3, np.float32))
        a = np.asarray(self.value)
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"Mutator({self.how})"


def random_array(r, shape=None, dtype=None):
    """An array of a random (small, 0-size or huge-dim) shape, dtype, contents and layout."""
    if shape is None:
        ndim = int(r.integers(0, 5))
        shape = tuple(int(pick(r, [0, 1, 2, 3, 5, 8])) for _ in range(ndim))
        if ndim and r.random() < 0.05:
            shape = shape[:-1] + (0,)  # 0-size, possibly with other dims
    dtype = DTYPES[int(r.integers(len(DTYPES)))] if dtype is None else dtype
    a = np.asarray(r.standard_normal(shape) * pick(r, [1.0, 1e-30, 1e30, 100.0]))
    which = r.random()
    if which < 0.1:
        a[...] = np.nan
    elif which < 0.2 and a.size:
        a.flat[int(r.integers(a.size))] = pick(r, [np.inf, -np.inf, np.nan])
    elif which < 0.35:
        a = np.asarray(r.integers(-5, 10, size=shape))
    with np.errstate(all="ignore"):
        try:
            a = a.astype(dtype)
        except (TypeError, ValueError):
            a = a.astype(np.float64)
    return layout(r, a)


def layout(r, a):
    """The same values in another memory layout: Fortran order, reversed strides, a strided
    view, read-only, or unchanged."""
    if a.ndim == 0:
        return a
    k = r.random()
    if a.size > 4096:
        return a
    if k < 0.15:
        return np.asfortranarray(a)
    if k < 0.3:
        return a[..., ::-1]
    if k < 0.4:
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]
    if k < 0.45:
        a = a.copy()
        a.flags.writeable = False
        return a
    return a


def huge_shape_array(r, tags):
    """An array with a dimension past 2**31: 0-size (C-contiguous, nothing behind it), or a
    zero-strided view claiming billions of elements (a copy of it cannot be allocated
    under the workers' address-space limit)."""
    tags.add("huge-dims")
    n = int(pick(r, [2**31, 2**31 + 7, 2**32 + 1, 2**40]))
    dt = pick(r, [np.float32, np.float64, np.int64])
    if r.random() < 0.5:
        shape = pick(r, [(n, 0), (0, n), (1, n, 0), (0, 2, n)])
        return np.zeros(shape, dt)
    m = 2**40 // n      # at least 2**40 elements: any copy fails at once
    shape = pick(r, [(n, m), (m, n), (1, n, m)])
    return np.lib.stride_tricks.as_strided(np.zeros(1, dt), shape=shape, strides=(0,) * len(shape))


def mutating_list(r, tags, value=None):
    """A list of small float arrays one of whose items mutates the list on conversion."""
    how = str(pick(r, ["clear", "pop", "append"]))
    tags.add("mutating-sequence")
    tags.add(f"mutating-sequence-{how}")
    items = [np.ones(int(r.integers(1, 6)), np.float32) for _ in range(int(r.integers(1, 5)))]
    lst = list(items)
    lst.insert(int(r.integers(len(lst) + 1)), Mutator(lst, how, np.ones(4, np.float32) if value is None else value))
    return lst


def junk(r, tags):
    """Any value: an array (most often), a scalar, a container, or a hostile object."""
    with np.errstate(all="ignore"):
        return _junk(r, tags)


def _junk(r, tags):
    k = r.random()
    if k < 0.45:
        return random_array(r)
    if k < 0.6:
        return INTS[int(r.integers(len(INTS)))]
    if k < 0.7:
        return FLOATS[int(r.integers(len(FLOATS)))]
    if k < 0.82:
        return OTHERS[int(r.integers(len(OTHERS)))]
    if k < 0.9:
        return Raises()
    if k < 0.95:
        return huge_shape_array(r, tags)
    return [random_array(r) for _ in range(int(r.integers(0, 4)))]


def mutate_array(r, a, tags):
    """A near-valid variant of the valid array a."""
    k = int(r.integers(12))
    if a.size > 4096:               # a huge-dims view: only cheap changes
        k = pick(r, [2, 5, 11])
    with np.errstate(all="ignore"):
        if k == 0:
            return a.astype(DTYPES[int(r.integers(len(DTYPES)))]) if a.dtype != object else a
        if k == 1:
            tags.add("big-endian")
            return a.astype(a.dtype.newbyteorder(">")) if a.dtype.kind in "fiu" else a
        if k == 2:
            return np.asfortranarray(a)
        if k == 3:
            return layout(r, a)
        if k == 4 and a.ndim:   # one dim changed
            shape = list(a.shape)
            i = int(r.integers(a.ndim))
            shape[i] = int(pick(r, [0, 1, shape[i] + 1, max(shape[i] - 1, 0)]))
            return random_array(r, tuple(shape), a.dtype)
        if k == 5:              # a dim added
            return a[None] if r.random() < 0.5 else a[..., None]
        if k == 6 and a.ndim:   # a dim removed
            return a[0] if a.shape[0] else a.reshape(a.shape[1:]) if a.size == 0 else a[0]
        if k == 7 and a.size and a.dtype.kind == "f":
            b = a.copy()
            b.flat[int(r.integers(b.size))] = pick(r, [np.nan, np.inf, -np.inf, 1e38])
            return b
        if k == 8 and a.dtype.kind in "iu" and a.size:   # ids out of range
            b = a.copy()
            b.flat[int(r.integers(b.size))] = pick(r, [-1, -2**31, 2**31 - 1, 10**6, 65])
            return b
        if k == 9:
            return a.tolist()
        if k == 10:
            return np.zeros((0,) * max(a.ndim, 1), a.dtype)
    return junk(r, tags)


def mutate_scalar(r, v, tags):
    """A near-valid variant of a valid scalar argument."""
    k = r.random()
    if k < 0.4 and isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v) + int(pick(r, [-1, 1, -int(v) - 1, 2**31, -2**31, 2**63, 10**6]))
    if k < 0.5 and isinstance(v, (int, np.integer)):
        return bool(v)                    # a bool for an int
    if k < 0.6 and isinstance(v, float):
        return float(pick(r, [np.nan, np.inf, -np.inf, -v, 0.0, 1e300]))
    if k < 0.7:
        return str(v)
    return junk(r, tags)
