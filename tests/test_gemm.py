"""The fast GEMM's every path: every micro-kernel (the portable one, AVX2+FMA and the
AVX-512F one, forced through the private switch), packed and in-place A, narrow and
partial edge tiles, every transpose, blocks past KC/MC, the row and the column thread
splits, and reproducibility."""
import numpy as np
import pytest

import transformer_c as tc
from conftest import GEMM_KERNELS, rng, tol

F = tc.functional
_C = tc._C

KERNELS = GEMM_KERNELS

# (M, N, K): N <= 96 reads A in place, N > 96 packs it; N % 16 in {1..8} takes the narrow
# edge kernel, others a partial wide tile; M % 6 != 0 leaves partial rows; K > 512 (KC) and
# M > 144 (MC, float32) run the blocking loops twice; M >= 48 splits rows among 2 threads.
SHAPES = [(1, 1, 1), (5, 3, 2), (6, 16, 7), (7, 17, 13), (13, 65, 33), (50, 9, 600),
          (150, 100, 530), (151, 200, 40), (8, 130, 70), (768 // 8, 65, 384 // 8)]



def operands(dtype, M, N, K, ta, tb, seed=0):
    r = rng(seed + M * 7 + N * 3 + K)
    A = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    return A, B, want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_kernels_match_numpy_and_reference(kernel, dtype, M, N, K, ta, tb):
    A, B, want = operands(dtype, M, N, K, ta, tb)
    got = F.gemm(A, B, trans_a=ta, trans_b=tb)
    ref = F.gemm(A, B, trans_a=ta, trans_b=tb, reference=True)
    scale = np.sqrt(K)
    t = tol(dtype)
    np.testing.assert_allclose(got, want, rtol=t["rtol"] * scale, atol=t["atol"] * scale)
    np.testing.assert_allclose(got, ref, rtol=t["rtol"] * scale, atol=t["atol"] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [5, 40, 300])
def test_gemm_accumulates_with_beta_one(kernel, dtype, N):
    # linear_forward runs C = bias; C += x @ W^T (beta = 1) on every tile shape
    r = rng(N)
    x = r.standard_normal((37, 45)).astype(dtype)
    W = r.standard_normal((N, 45)).astype(dtype)
    b = r.standard_normal(N).astype(dtype)
    want = x.astype(np.float64) @ W.T.astype(np.float64) + b
    np.testing.assert_allclose(F.linear(x, W, b), want, **{k: v * 10 for k, v in tol(dtype).items()})


def test_gemm_beta_zero_ignores_nan_in_output_and_large_values_survive(kernel):
    # large finite entries (1e18 * 1e18 * K stays below float64's max) are summed exactly
    # enough; NaN never comes from the uninitialised output buffer
    A = np.full((20, 30), 1e18)
    B = np.full((30, 20), 1e18)
    np.testing.assert_allclose(F.gemm(A, B), np.full((20, 20), 30e36), rtol=1e-12)
    A32 = np.full((20, 30), 1e20, np.float32)
    B32 = np.full((30, 20), 1e20, np.float32)
    assert np.all(np.isinf(F.gemm(A32, B32)))  # 1e40 overflows float32, as in numpy
    with np.errstate(over="ignore"):
        assert np.all(np.isinf(A32 @ B32))


@pytest.mark.parametrize("M,N", [(300, 200), (20, 700), (200, 40)])
def test_gemm_bitwise_reproducible_and_independent_of_thread_count(kernel, M, N):
    r = rng(9)
    A = r.standard_normal((M, 600)).astype(np.float32)
    B = r.standard_normal((600, N)).astype(np.float32)
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(2)
        two = F.gemm(A, B)
        for _ in range(5):  # threads race here if they ever share a buffer region
            assert np.array_equal(two, F.gemm(A, B))
        tc.set_num_threads(1)
        one = F.gemm(A, B)
    finally:
        tc.set_num_threads(n)
    # each C entry is summed by one thread in the same k order whatever the split
    assert np.array_equal(one, two)


def test_generic_and_avx2_kernels_agree_to_rounding():
    A, B, want = operands(np.float32, 100, 90, 700, False, True)
    outs = []
    for k in KERNELS:
        _C.gemm_set_kernel(k)
        try:
            outs.append(F.gemm(A, B, trans_b=True))
        finally:
            _C.gemm_set_kernel("auto")
    for o in outs:
        np.testing.assert_allclose(o, want, rtol=1e-4, atol=1e-4 * np.sqrt(700))


def test_gemm_set_kernel_rejects_unknown_names():
    with pytest.raises(ValueError, match="name"):
        _C.gemm_set_kernel("avx1024")
    if "avx512" not in KERNELS:
        with pytest.raises(ValueError, match="name"):
            _C.gemm_set_kernel("avx512")
    with pytest.raises(TypeError):
        _C.gemm_set_kernel(3)
    assert _C.gemm_kernel_name() in ("generic", "avx2+fma", "avx512")


def _with_kernel(k, fn):
    _C.gemm_set_kernel(k)
    try:
        assert _C.gemm_kernel_name() == k
        return fn()
    finally:
        _C.gemm_set_kernel("auto")


# every M, N in 1..70 crosses the 12 x 32 tiles of the AVX-512 kernel at each remainder
# (M % 12, N % 32, N <= 96 reading A in place); K = 1, odd, and past KC (512)
SWEEP = [(m, n, k) for m in (1, 5, 11, 12, 13, 23, 24, 25, 36, 47, 70)
         for n, k in ((1, 3), (16, 7), (31, 40), (32, 1), (33, 9), (63, 17), (64, 600),
                      (65, 5), (70, 33), (96, 2), (97, 65), (130, 19))]


@pytest.mark.skipif("avx512" not in KERNELS, reason="no AVX-512 kernel: a CPU without avx512f or a portable build")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_avx512_kernel_matches_numpy_and_is_bitwise_the_avx2_kernel(dtype, ta, tb):
    # the 12 x 2NR AVX-512 tiles (12 x 32 float32, 12 x 16 float64) compute each entry with
    # the AVX2 kernel's operations (one FMA chain in k order, the same update), the edges run
    # the AVX2 kernel itself: the same bits, and within rounding of the float64 product
    t = tol(dtype)
    for M, N, K in SWEEP:
        A, B, want = operands(dtype, M, N, K, ta, tb, seed=M * N)
        got = _with_kernel("avx512", lambda: F.gemm(A, B, trans_a=ta, trans_b=tb))
        avx2 = _with_kernel("avx2+fma", lambda: F.gemm(A, B, trans_a=ta, trans_b=tb))
        s = np.sqrt(K)
        np.testing.assert_allclose(got, want, rtol=t["rtol"] * s, atol=t["atol"] * s,
                                   err_msg=f"M={M} N={N} K={K}")
        assert np.array_equal(got.view(np.uint8), avx2.view(np.uint8)), (M, N, K)


@pytest.mark.skipif("avx512" not in KERNELS, reason="no AVX-512 kernel: a CPU without avx512f or a portable build")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("M,N,K,dtype", [(768, 1536, 384, np.float32), (300, 200, 1100, np.float32),
                                         (20, 700, 600, np.float32), (200, 40, 530, np.float32),
                                         (1536, 384, 70, np.float32), (300, 200, 600, np.float64)])
def test_avx512_kernel_large_and_non_contiguous_views_at_each_thread_count(threads, M, N, K,
                                                                           dtype):
    # the row split, the column split (few rows) and in-place A (N <= 96), past KC and MC;
    # strided views (every other column) go through the general packers
    r = rng(M + N + K)
    A = r.standard_normal((M, 2 * K)).astype(dtype)[:, ::2]
    B = r.standard_normal((K, N)).astype(dtype)
    want = A.astype(np.float64) @ B.astype(np.float64)
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(threads)
        got = _with_kernel("avx512", lambda: F.gemm(A, B))
        avx2 = _with_kernel("avx2+fma", lambda: F.gemm(A, B))
        # A^T and B^T stored: op(a) op(b) = A B again (TT layout)
        got_t = _with_kernel("avx512", lambda: F.gemm(A.T.copy(), B.T.copy(), trans_a=True,
                                                      trans_b=True))
    finally:
        tc.set_num_threads(n)
    s, t = np.sqrt(K), tol(dtype)
    np.testing.assert_allclose(got, want, rtol=t["rtol"] * s, atol=t["atol"] * s)
    np.testing.assert_allclose(got_t, want, rtol=t["rtol"] * s, atol=t["atol"] * s)
    assert np.array_equal(got.view(np.uint8), avx2.view(np.uint8))


def test_peak_flops_probe():
    f = _C.peak_flops(100000, 12)
    assert f > 1e8  # any machine does more than 0.1 GFLOP/s
    for bad in (0, -1, 10**9):
        with pytest.raises(ValueError, match="iters"):
            _C.peak_flops(bad, 12)
    for bad in (0, 1, 10, 32, -8):
        with pytest.raises(ValueError, match="chains"):
            _C.peak_flops(1000, bad)
    with pytest.raises(TypeError):
        _C.peak_flops("x", 12)
    with pytest.raises(TypeError):
        _C.peak_flops(1000)


def test_peak_flops_every_kernel_and_chain_count():
    # every FMA loop this CPU has (the GEMM's dispatch: the AVX-512 one where the GEMM runs
    # its AVX-512 kernel, AVX2+FMA under the GEMM's cap, the portable one under the
    # override) runs at every chain count and gives a positive finite rate, and the bench
    # family reports the loop that ran
    from benchmarks import peak
    want = ["avx512"] if _C.cpu_has_avx512() else []
    want += ["avx2+fma"] if _C.cpu_has_avx2() else []
    assert peak.kernels() == want + ["generic"]
    try:
        for k in peak.kernels():
            _C.gemm_set_kernel(k)
            for c in peak.CHAINS:
                f = _C.peak_flops(2000, c)
                assert np.isfinite(f) and f > 0
                assert _C.cpu_kernel("bench") == k
        _C.gemm_set_kernel("auto")
        _C.peak_flops(1000, 8)
        # the GEMM's own choice (the bench has no NEON loop: the portable one on AArch64)
        g = _C.gemm_kernel_name()
        assert _C.cpu_kernel("bench") == (g if g in ("avx512", "avx2+fma") else "generic")
    finally:
        _C.gemm_set_kernel("auto")


def test_portable_build_without_x86_dispatch_compiles():
    # a machine without x86 (aarch64, ...) compiles only the portable kernels; compile every
    # C source of that configuration here (TC_PORTABLE_ONLY drops the dispatch), warning-free,
    # so it cannot rot (the tests run from the source checkout: the sources must be there)
    import pathlib
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    csrc = pathlib.Path(__file__).resolve().parents[1] / "csrc"
    folders = ("core", "kernels", "models", "tokenizer")
    sources = [str(f) for d in folders for f in sorted((csrc / d).glob("*.c"))]
    assert len(sources) >= 20, f"C sources not found under {csrc}"
    includes = [f"-I{csrc}"] + [f"-I{csrc / d}" for d in folders]
    res = subprocess.run([cc, "-fsyntax-only", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra",
                          "-Werror", "-Wno-unused-parameter", "-DTC_PORTABLE_ONLY",
                          *includes, *sources], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("threads", [1, 2])
def test_gpt_loss_and_grads_agree_across_gemm_kernels(threads):
    # a whole training step (every product through tc_gemm: projections, MLP, head, their
    # weight and input gradients, attention in its own tiles) under each micro-kernel: the
    # AVX-512 and AVX2 ones give the same bits, the portable one agrees to float32 rounding
    cfg = tc.nn.GPTConfig(vocab_size=70, block_size=24, n_layer=2, n_head=2, n_embd=64)
    model = tc.nn.GPT.create(cfg, rng(1), dtype=np.float32)
    idx = rng(2).integers(0, 70, (5, 24))  # 120 rows: 10 twelve-row tiles
    n = tc.get_num_threads()
    out = {}
    try:
        tc.set_num_threads(threads)
        for k in KERNELS:
            loss, _ = _with_kernel(k, lambda: model.loss_and_grads(idx[:, :-1], idx[:, 1:]))
            out[k] = (loss, model.flat_grads.copy())
    finally:
        tc.set_num_threads(n)
    loss0, g0 = out["generic"]
    assert np.isfinite(loss0) and np.abs(g0).max() > 0
    for k, (loss, g) in out.items():
        np.testing.assert_allclose(loss, loss0, rtol=1e-5)
        np.testing.assert_allclose(g, g0, rtol=1e-3, atol=1e-4 * np.abs(g0).max())
    if "avx512" in out:
        assert out["avx512"][0] == out["avx2+fma"][0]
        assert np.array_equal(out["avx512"][1], out["avx2+fma"][1])
