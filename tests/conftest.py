"""Shared test helpers: finite differences, PyTorch access, tolerances.

Every kernel is checked three ways (DESIGN.md section 6): against a NumPy reference written
in the test, against float64 central differences, and against PyTorch autograd.
"""
import os
import pathlib

import numpy as np
import pytest

DATA_DIR = pathlib.Path(os.environ.get("TC_DATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
ROOT = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Two build variants change what the run checks (tools/ci_wheel.sh, ci_variants.sh):
    TC_TEST_INSTALLED=1: the suite must test an installed transformer_c (a wheel in a
    virtualenv), never the source checkout beside the tests: stop at once otherwise.
    The contention guard is off for the suite (see below).
    A serial build (no OpenMP): set_num_threads(n > 1) warns and runs on one thread, so
    the tests that ask for threads run serially (their results must hold all the same)
    instead of failing on the warning (warnings are errors in this suite)."""
    import transformer_c

    where = pathlib.Path(transformer_c.__file__).resolve()
    if os.environ.get("TC_TEST_INSTALLED") == "1" and \
            (ROOT in where.parents or "site-packages" not in where.parts):
        raise pytest.UsageError(f"TC_TEST_INSTALLED=1 but transformer_c is {where}, not an "
                                "installed package's (site-packages) outside {ROOT}")
    config.addinivalue_line("markers", "openmp: needs OpenMP threads (skipped in a serial build)")
    # the contention guard keeps parallel regions on one thread while the machine is busy; it
    # changes no number, but the suite must run the threads' paths whatever the load (its own
    # tests, tests/test_thread_guard.py, switch it on)
    transformer_c.set_thread_guard(False)
    if not transformer_c.build_info()["openmp"]:
        config.addinivalue_line("filterwarnings",
                                r"ignore:set_num_threads\(\d+\):RuntimeWarning")

# tolerances against PyTorch / NumPy references
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}


def gemm_kernels():
    """The GEMM micro-kernels this CPU can run: the portable one, AVX2+FMA when present, and
    the AVX-512F one (on top of AVX2+FMA) when the CPU has avx512f."""
    from transformer_c import _C

    return (["generic"] + (["avx2+fma"] if _C.cpu_has_avx2() else [])
            + (["avx512"] if _C.cpu_has_avx512() else []))


GEMM_KERNELS = gemm_kernels()


def pytest_collection_modifyitems(config, items):
    """Tests marked openmp (they check what threads do: counts held per thread, batches
    split across threads) skip in a serial build, saying so."""
    import transformer_c

    if transformer_c.build_info()["openmp"]:
        return
    skip = pytest.mark.skip(reason="needs OpenMP threads: this build is serial "
                            "(transformer_c.build_info()['openmp'] is False)")
    for item in items:
        if "openmp" in item.keywords:
            item.add_marker(skip)


def kernel_fixture(kernels, doc):
    """A fixture running its test once per kernel name of ``kernels`` (each forced with
    gemm_set_kernel, checked, and set back to "auto" afterwards)."""
    @pytest.fixture(params=kernels)
    def kernel(request):
        from transformer_c import _C

        _C.gemm_set_kernel(request.param)
        try:
            assert _C.gemm_kernel_name() == request.param
            yield request.param
        finally:
            _C.gemm_set_kernel("auto")
    kernel.__doc__ = doc
    return kernel


kernel = kernel_fixture(GEMM_KERNELS, "Runs the test once per GEMM micro-kernel (the row "
                                      "kernels follow the same switch).")


def tol(dtype):
    return TOL[np.dtype(dtype).type]


def rng(seed=0):
    return np.random.default_rng(seed)


def num_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of float64 array a
    (perturbed in place and restored)."""
    g = np.zeros(a.shape)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_grads(forward, backward_grads, arrays, seed=123, rtol=1e-6, atol=1e-8):
    """Check analytic gradients against central differences of L = sum(forward() * G).

    forward(): uses the float64 arrays in ``arrays`` (a dict name -> array, perturbed in
    place); backward_grads(G) -> dict name -> gradient of L w.r.t. that array.
    """
    out = forward()
    G = rng(seed).standard_normal(np.shape(out))
    got = backward_grads(G)
    for name, arr in arrays.items():
        want = num_grad(lambda: float(np.sum(forward() * G)), arr)
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=f"d/d{name}")


@pytest.fixture
def threads():
    """transformer_c's set_num_threads for one test; the thread count is restored after."""
    import transformer_c as tc

    before = tc.get_num_threads()
    yield tc.set_num_threads
    tc.set_num_threads(before)


@pytest.fixture(scope="session")
def torch():
    """PyTorch (float64 enabled) or a clean skip when it is not installed."""
    t = pytest.importorskip("torch")
    t.set_num_threads(2)
    return t


def to_torch(torch, x, grad=True):
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.requires_grad_(grad) if t.is_floating_point() else t


def non_contiguous(x):
    """The same values as x in a non-contiguous view (every other element of a larger array)."""
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype) if x.ndim else x
    if x.ndim == 0:
        return x
    big[..., ::2] = x
    v = big[..., ::2]
    assert not v.flags.c_contiguous or x.shape[-1] <= 1
    return v


def fortran(x):
    return np.asfortranarray(x)
