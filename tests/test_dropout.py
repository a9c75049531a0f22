"""Dropout with a counter-based RNG: an independent NumPy Philox4x32-10 reference (itself
checked against the Random123 known-answer vectors), statistics, reproducibility across
seeds and thread counts, finite differences, PyTorch parity with the same mask, awkward
shapes and bad input."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional

# ------------------------------------------------------------------ NumPy reference RNG

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_LO = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def ref_philox4x32_10(ctr, key):
    """Philox4x32-10 on arrays: ctr = 4 arrays of 32-bit words, key = 2 ints."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in ctr)
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
        p0, p1 = c0 * _M0, c2 * _M1  # 32 x 32 -> 64 bits: exact in uint64
        c0, c1, c2, c3 = ((p1 >> _32) ^ c1 ^ np.uint64(k0), p1 & _LO,
                          (p0 >> _32) ^ c3 ^ np.uint64(k1), p0 & _LO)
    return c0, c1, c2, c3


def ref_words(n, seed):
    """Words 0..n-1 of the stream of seed: block i // 4 (counter = (block lo, hi, 0, 0),
    key = (seed lo, seed hi)), word i % 4."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    zero = np.zeros_like(blocks)
    out = ref_philox4x32_10((blocks & _LO, blocks >> _32, zero, zero),
                            (seed & 0xFFFFFFFF, seed >> 32))
    return np.stack(out, axis=1).reshape(-1)[:n]


def ref_mask(shape, p, seed, dtype=np.float64):
    """Keep element i (C order) iff U_i = word_i / 2**32 >= p; kept -> 1/(1-p)."""
    n = int(np.prod(shape, dtype=np.int64))
    u = ref_words(n, seed).astype(np.float64) / 2.0 ** 32  # exact
    scale = dtype(1.0 / (1.0 - p)) if p < 1 else dtype(0)
    return np.where(u >= p, scale, dtype(0)).astype(dtype).reshape(shape)


def test_reference_philox_matches_random123_known_answers():
    # Random123 tests/kat_vectors, philox4x32 10: counter, key -> output
    kat = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
           ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
           ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
            (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
    for ctr, key, want in kat:
        got = ref_philox4x32_10([[c] for c in ctr], key)
        assert tuple(int(g[0]) for g in got) == want


# ------------------------------------------------------------------ 1. NumPy reference

SEEDS = [0, 1, 12345, 2 ** 40 + 3, 2 ** 64 - 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (13, 33), (2, 3, 1031)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_forward_backward_match_numpy_reference(dtype, shape, p):
    for seed in SEEDS:
        want = ref_mask(shape, p, seed, dtype)
        m = F.dropout_mask(shape, p, seed=seed, dtype=dtype)
        assert m.dtype == dtype and m.shape == shape
        np.testing.assert_array_equal(m, want)
        x = rng(seed % 1000).standard_normal(shape).astype(dtype)
        y = F.dropout(x, p, seed=seed)
        assert y.dtype == dtype and y.shape == shape
        np.testing.assert_array_equal(y, x * want)
        dx = F.dropout_backward(x, p, seed=seed)
        np.testing.assert_array_equal(dx, x * want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [13, 300 * 401])  # serial, and the parallel path
def test_backward_write_flag_at_the_C_level(dtype, n):
    # tc_dropout_backward through ctypes: write = TC_WRITE(0) = 1 overwrites dinp without
    # reading it (a NaN-filled buffer gives the plain gradient, with the bits of += into
    # zeros, signed zeros included), 0 adds to it; bits past the one output are ignored
    import ctypes

    f = getattr(ctypes.CDLL(tc._C.__file__),
                f"tc_dropout_backward_{'f32' if dtype == np.float32 else 'f64'}")
    f.restype = ctypes.c_int
    p, seed = 0.3, 12345
    g = rng(5).standard_normal(n).astype(dtype)
    want = g * ref_mask((n,), p, seed, dtype)

    def call(d, write):
        return f(d.ctypes.data_as(ctypes.c_void_p), g.ctypes.data_as(ctypes.c_void_p),
                 ctypes.c_int64(n), ctypes.c_double(p), ctypes.c_uint64(seed),
                 ctypes.c_int(write))

    zero = np.zeros(n, dtype)
    assert call(zero, 0) == 0
    for write in (1, -1):
        d = np.full(n, np.nan, dtype)
        assert call(d, write) == 0
        np.testing.assert_array_equal(d, want)
        assert np.array_equal(d.view(np.uint8), zero.view(np.uint8))
    base = np.linspace(-3, 3, n).astype(dtype)
    for write in (0, 2):
        d = base.copy()
        assert call(d, write) == 0
        np.testing.assert_array_equal(d, base + want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("first,n", [(0, 37), (1, 37), (3, 10), (4099, 5000), (77, 300 * 401)])
def test_stream_offset_draws_the_slice_of_a_larger_array(dtype, first, n):
    # tc_dropout_forward_at / backward_at (the data-parallel model steps' sites): element i
    # uses word first + i, so the call on a slice [first, first + n) of a larger array
    # gives exactly that slice of the larger array's mask, whatever first % 4 is
    import ctypes

    lib = ctypes.CDLL(tc._C.__file__)
    sfx = "f32" if dtype == np.float32 else "f64"
    fwd, bwd = getattr(lib, f"tc_dropout_forward_at_{sfx}"), getattr(lib, f"tc_dropout_backward_at_{sfx}")
    p, seed = 0.4, 987
    x = rng(3).standard_normal(n).astype(dtype)
    want = x * ref_mask((first + n,), p, seed, dtype)[first:]
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    out = np.full(n, np.nan, dtype)
    assert fwd(ptr(out), ptr(x), ctypes.c_int64(n), ctypes.c_double(p), ctypes.c_uint64(seed),
               ctypes.c_uint64(first)) == 0
    np.testing.assert_array_equal(out, want)
    d = np.ones(n, dtype)
    assert bwd(ptr(d), ptr(x), ctypes.c_int64(n), ctypes.c_double(p), ctypes.c_uint64(seed),
               ctypes.c_uint64(first), ctypes.c_int(0)) == 0
    np.testing.assert_array_equal(d, 1 + want)


def test_mask_values_and_dtypes_agree():
    m64 = F.dropout_mask((50, 41), 0.3, seed=9)
    m32 = F.dropout_mask((50, 41), 0.3, seed=9, dtype=np.float32)
    assert set(np.unique(m64)) == {0.0, 1.0 / 0.7}
    assert m32.dtype == np.float32 and set(np.unique(m32)) == {np.float32(0), np.float32(1 / 0.7)}
    np.testing.assert_array_equal(m64 != 0, m32 != 0)  # same elements dropped in both dtypes


# ------------------------------------------------------------------ reproducibility and statistics

def test_same_seed_same_mask_different_seed_different_mask():
    x = rng(1).standard_normal((64, 65))
    a, b = F.dropout(x, 0.5, seed=7), F.dropout(x, 0.5, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(F.dropout_backward(x, 0.5, seed=7), a)
    for other in (8, 7 + 2 ** 32, 2 ** 63 + 7):
        assert not np.array_equal(F.dropout(x, 0.5, seed=other), a)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_within_binomial_bound(p):
    n = 200_000
    for seed in (0, 3, 2 ** 64 - 1):
        keep = F.dropout_mask(n, p, seed=seed) != 0
        sigma = np.sqrt(n * p * (1 - p))
        assert abs(keep.sum() - n * (1 - p)) < 5 * sigma
        # each of the four words of a Philox block is fair on its own
        for lane in range(4):
            k = keep[lane::4]
            assert abs(k.sum() - k.size * (1 - p)) < 5 * np.sqrt(k.size * p * (1 - p))


def test_masks_of_neighbouring_seeds_and_positions_are_independent():
    n, p = 200_000, 0.5
    a = F.dropout_mask(n, p, seed=100) != 0
    for b in (F.dropout_mask(n, p, seed=101) != 0, np.roll(a, 1), np.roll(a, 4)):
        agree = (a == b).sum()  # independent: agreement ~ Binomial(n, p^2 + (1-p)^2)
        q = p * p + (1 - p) * (1 - p)
        assert abs(agree - n * q) < 5 * np.sqrt(n * q * (1 - q))


def test_bitwise_identical_with_one_and_two_threads():
    x = rng(2).standard_normal((301, 333)).astype(np.float32)
    n = tc.get_num_threads()
    outs = []
    try:
        for k in (1, 2):
            tc.set_num_threads(k)
            outs.append((F.dropout(x, 0.25, seed=11), F.dropout_backward(x, 0.25, seed=11),
                         F.dropout_mask(x.shape, 0.25, seed=11, dtype=np.float32)))
    finally:
        tc.set_num_threads(n)
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(outs[0][2], ref_mask(x.shape, 0.25, 11, np.float32))


# ------------------------------------------------------------------ 2. finite differences

@pytest.mark.parametrize("p", [0.3, 0.8])
def test_finite_differences(p):
    x = rng(3).standard_normal((4, 9))
    check_grads(lambda: F.dropout(x, p, seed=42),
                lambda G: {"x": F.dropout_backward(G, p, seed=42)}, {"x": x})


# ------------------------------------------------------------------ 3. PyTorch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 13), (2, 5, 33)])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_matches_torch_with_the_same_mask(torch, dtype, shape, p):
    r = rng(4)
    x = r.standard_normal(shape).astype(dtype)
    G = r.standard_normal(shape).astype(dtype)
    mask = F.dropout_mask(shape, p, seed=5, dtype=dtype)
    tx = to_torch(torch, x)
    ty = tx * torch.from_numpy(mask)
    (ty * torch.from_numpy(G)).sum().backward()
    np.testing.assert_allclose(F.dropout(x, p, seed=5), ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(F.dropout_backward(G, p, seed=5), tx.grad.numpy(), **tol(dtype))


def test_p_one_and_eval_mode_match_torch(torch):
    x = np.array([1.0, -2.0, 3.0, np.nan])
    tx = torch.from_numpy(x)
    want = torch.nn.functional.dropout(tx, p=1.0).numpy()
    got = F.dropout(x, 1.0, seed=0)
    np.testing.assert_array_equal(got, want)  # zeros; NaN * 0 stays NaN as in torch
    np.testing.assert_array_equal(got[:3], 0.0)
    np.testing.assert_array_equal(F.dropout_backward(x, 1.0, seed=0)[:3], 0.0)
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=0, training=False),
                                  torch.nn.functional.dropout(tx, p=0.5, training=False).numpy())


# ------------------------------------------------------------------ 4. awkward shapes and options

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_mode_and_p_zero_return_a_copy(dtype):
    x = rng(6).standard_normal((3, 4)).astype(dtype)
    for kw in (dict(p=0.5, training=False), dict(p=0.0), dict(p=0.0, training=False)):
        for fn in (F.dropout, F.dropout_backward):
            y = fn(x, seed=1, **kw)
            assert y.dtype == dtype and not np.shares_memory(y, x)
            np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(F.dropout_mask((3, 4), 0.0, seed=1), np.ones((3, 4)))
    np.testing.assert_array_equal(F.dropout_mask((3, 4), 1.0, seed=1), np.zeros((3, 4)))


@pytest.mark.parametrize("layout", [non_contiguous, fortran])
def test_mask_follows_logical_c_order_for_any_layout(layout):
    x = rng(7).standard_normal((5, 6, 7))
    want = x * ref_mask(x.shape, 0.4, 3)
    np.testing.assert_array_equal(F.dropout(layout(x), 0.4, seed=3), want)
    np.testing.assert_array_equal(F.dropout_backward(layout(x), 0.4, seed=3), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 2)])
def test_empty(dtype, shape):
    x = np.zeros(shape, dtype)
    for out in (F.dropout(x, 0.5, seed=1), F.dropout_backward(x, 0.5, seed=1),
                F.dropout_mask(shape, 0.5, seed=1, dtype=dtype)):
        assert out.shape == shape and out.dtype == dtype


def test_zero_dimensional_scalar_shapes_and_lists():
    x = np.array(2.0)
    want = 2.0 * ref_mask((), 0.5, 4)
    assert F.dropout(x, 0.5, seed=4).shape == () and F.dropout(x, 0.5, seed=4) == want
    assert F.dropout_mask((), 0.5, seed=4).shape == ()
    assert F.dropout_mask(5, 0.5, seed=4).shape == (5,)
    np.testing.assert_array_equal(F.dropout_mask([2, 3], 0.5, seed=4),
                                  F.dropout_mask((2, 3), 0.5, seed=4))
    np.testing.assert_array_equal(F.dropout([1.0, 2.0, 3.0], 0.5, seed=4),
                                  np.array([1.0, 2.0, 3.0]) * ref_mask((3,), 0.5, 4))
    # numpy scalars are accepted for p and seed
    np.testing.assert_array_equal(F.dropout_mask(9, np.float32(0.5), seed=np.uint64(4)),
                                  ref_mask((9,), float(np.float32(0.5)), 4))


def test_large_values_pass_through_scaled():
    x = np.array([1e300, -1e300, 1e-300, 3.0] * 8)
    m = ref_mask(x.shape, 0.5, 8)
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=8), x * m)
    x32 = np.array([3e38, -3e38, 1.0, 2.0] * 8, dtype=np.float32)
    y = F.dropout(x32, 0.1, seed=8)  # 3e38 / 0.9 overflows float32 to inf, as x * mask does
    np.testing.assert_array_equal(y, x32 * ref_mask(x32.shape, 0.1, 8, np.float32))


# ------------------------------------------------------------------ 5. bad input

def test_bad_input_names_the_argument():
    x = np.ones((2, 3))
    for fn in (F.dropout, F.dropout_backward):
        for p in (-0.1, 1.5, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="p"):
                fn(x, p, seed=0)
        for p in ("0.5", None, True, 1j):
            with pytest.raises(TypeError, match="p"):
                fn(x, p, seed=0)
        for seed in (-1, 2 ** 64):
            with pytest.raises(ValueError, match="seed"):
                fn(x, 0.5, seed=seed)
        for seed in (1.5, "3", None, True, np.float64(2.0)):
            with pytest.raises(TypeError, match="seed"):
                fn(x, 0.5, seed=seed)
        with pytest.raises(TypeError, match="seed"):
            fn(x, 0.5)
        with pytest.raises(ValueError, match="p"):  # validated in eval mode too
            fn(x, 2.0, seed=0, training=False)
    with pytest.raises(TypeError, match="x"):
        F.dropout(np.ones(3, dtype=np.int64), 0.5, seed=0)
    with pytest.raises(TypeError, match="grad_output"):
        F.dropout_backward(np.ones(3, dtype=np.float16), 0.5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        F.dropout_mask((2, -1), 0.5, seed=0)
    with pytest.raises(TypeError, match="shape"):
        F.dropout_mask((2.5,), 0.5, seed=0)
    for dtype in (np.int32, np.float16, "complex128"):
        with pytest.raises(TypeError, match="dtype"):
            F.dropout_mask((2,), 0.5, seed=0, dtype=dtype)
    with pytest.raises(ValueError, match="p"):
        F.dropout_mask((2,), -0.5, seed=0)
    with pytest.raises(ValueError, match="seed"):
        F.dropout_mask((2,), 0.5, seed=-3)


def test_raw_C_functions_raise_instead_of_crashing():
    x = np.ones(5)
    with pytest.raises(ValueError, match="p"):
        tc._C.dropout_forward(x, 1.5, 0)
    with pytest.raises(ValueError, match="p"):
        tc._C.dropout_backward(x, float("nan"), 0)
    with pytest.raises(TypeError, match="p"):
        tc._C.dropout_forward(x, "half", 0)
    with pytest.raises(ValueError, match="seed"):
        tc._C.dropout_forward(x, 0.5, -1)
    with pytest.raises(ValueError, match="seed"):
        tc._C.dropout_forward(x, 0.5, 2 ** 64)
    with pytest.raises(TypeError, match="seed"):
        tc._C.dropout_forward(x, 0.5, 1.0)
    with pytest.raises(TypeError, match="x"):
        tc._C.dropout_forward("not an array", 0.5, 0)
    with pytest.raises(TypeError, match="grad_output"):
        tc._C.dropout_backward(None, 0.5, 0)
    with pytest.raises(ValueError, match="n"):
        tc._C.dropout_mask(-1, 0.5, 0, True)
    with pytest.raises(TypeError):
        tc._C.dropout_forward(x, 0.5)
    # the raw call agrees with the reference too (seed at the top of the range)
    np.testing.assert_array_equal(tc._C.dropout_mask(10, 0.5, 2 ** 64 - 1, False),
                                  ref_mask((10,), 0.5, 2 ** 64 - 1, np.float32))
