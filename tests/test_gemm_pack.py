"""The GEMM's panel packers, through the private _C.gemm_pack_panel: the fast (AVX2) packers
and the portable ones (which run when the portable kernel is forced) both give exactly the
panel built here with NumPy indexing, for full and partial panels, kc below and above a
multiple of 8, and every stride layout the product uses (row-major, transposed, odd)."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import GEMM_KERNELS, rng

_C = tc._C

KERNELS = GEMM_KERNELS



def expected(src, rs, cs, n, kc, side, width):
    """The panels by NumPy indexing: A side (ceil(n/6), kc, 6)[ip, p, i] = A(6 ip + i, p) =
    src[(6 ip + i)*rs + p*cs]; B side (kc, width)[p, j] = B(p, j) = src[p*rs + j*cs]; zero
    past n."""
    p = np.arange(kc)[:, None]
    i = np.arange(n)[None, :]
    idx = i * rs + p * cs if side == 0 else p * rs + i * cs
    if side == 1:
        out = np.zeros((kc, width), src.dtype)
        out[:, :n] = src[idx]
        return out
    mp = (n + 5) // 6
    out = np.zeros((kc, 6 * mp), src.dtype)
    out[:, :n] = src[idx]
    return out.reshape(kc, mp, 6).transpose(1, 0, 2)


def layouts(n, kc, side):
    """(rs, cs) of a row-major, a transposed and an odd-strided view of the (n, kc) (A) or
    (kc, n) (B) matrix, each with some slack in its leading dimension."""
    rows, cols = (n, kc) if side == 0 else (kc, n)
    return [(cols, 1), (cols + 3, 1), (1, rows), (1, rows + 5), (3, 3 * rows + 1),
            (2 * cols + 1, 2)]


def src_for(dtype, rs, cs, n, kc, side, seed):
    last = (n - 1) * rs + (kc - 1) * cs if side == 0 else (kc - 1) * rs + (n - 1) * cs
    x = rng(seed).standard_normal(last + 1).astype(dtype)  # exactly as long as needed
    x[::7] = -0.0  # signed zeros survive the copy
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("kc", [1, 2, 3, 7, 8, 9, 17, 64, 513])
def test_pack_panel_matches_numpy(kernel, dtype, side, kc):
    width = 6 if side == 0 else (16 if dtype == np.float32 else 8)
    # A side: single panels and blocks of several (full and partial last panel)
    for n in list(range(1, width + 1)) + ([11, 12, 13, 50] if side == 0 else []):
        for rs, cs in layouts(n, kc, side):
            src = src_for(dtype, rs, cs, n, kc, side, n * 1000 + kc)
            got = _C.gemm_pack_panel(src, rs, cs, n, kc, side)
            want = expected(src, rs, cs, n, kc, side, width)
            assert got.dtype == dtype and got.shape == want.shape
            # a copy: bit for bit (signed zeros included)
            assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), (n, rs, cs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_and_portable_packers_agree_bitwise(dtype):
    if len(KERNELS) < 2:
        pytest.skip("no AVX2 on this CPU")
    r = rng(5)
    for side in (0, 1):
        width = 6 if side == 0 else (16 if dtype == np.float32 else 8)
        for kc in (5, 16, 31, 200):
            for n in (1, width - 1, width) + ((17, 144) if side == 0 else ()):
                for rs, cs in layouts(n, kc, side):
                    src = src_for(dtype, rs, cs, n, kc, side, int(r.integers(1 << 30)))
                    got = {}
                    for k in KERNELS:
                        _C.gemm_set_kernel(k)
                        try:
                            got[k] = _C.gemm_pack_panel(src, rs, cs, n, kc, side)
                        finally:
                            _C.gemm_set_kernel("auto")
                    assert np.array_equal(got["generic"].view(np.uint8),
                                          got["avx2+fma"].view(np.uint8))


def test_pack_panel_rejects_bad_arguments():
    x = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="side"):
        _C.gemm_pack_panel(x, 1, 6, 6, 4, 2)
    with pytest.raises(ValueError, match="n <="):
        _C.gemm_pack_panel(x, 1, 6, 17, 4, 1)
    with pytest.raises(ValueError, match="n <="):
        _C.gemm_pack_panel(x, -1, 6, 6, 4, 0)
    with pytest.raises(ValueError, match="src has 100"):
        _C.gemm_pack_panel(x, 1, 50, 6, 4, 0)
    with pytest.raises(TypeError, match="src"):
        _C.gemm_pack_panel(np.zeros(10, np.int32), 1, 1, 1, 1, 0)


@pytest.mark.parametrize("M,N,K", [(128, 128, 768), (65, 128, 768), (130, 40, 33),
                                   (7, 200, 520)])
def test_weight_gradient_product_kernels_match_reference(M, N, K):
    # dW (M,N) += dY^T (M,K) X (K,N): the transposed-A packer on full and partial panels;
    # the fast product with either kernel against the reference loop
    r = rng(M + N + K)
    dy = r.standard_normal((K, M)).astype(np.float32)
    x = r.standard_normal((K, N)).astype(np.float32)
    ref = tc.functional.gemm(dy, x, trans_a=True, reference=True)
    for k in KERNELS:
        _C.gemm_set_kernel(k)
        try:
            got = tc.functional.gemm(dy, x, trans_a=True)
        finally:
            _C.gemm_set_kernel("auto")
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))
