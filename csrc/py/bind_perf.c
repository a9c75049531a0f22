/* bind_perf.c: private switches and probes for tests and benchmarks: force the GEMM
 * micro-kernel, measure the machine's peak FP32 FLOP/s, count scratch allocations. */
#include "bind.h"

/* gemm_set_kernel(name): "generic", "avx2+fma" or "auto" */
static PyObject *py_gemm_set_kernel(PyObject *self, PyObject *args)
{
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (tc_gemm_set_kernel(name) != TC_OK) {
        PyErr_Format(PyExc_ValueError,
                     "name must be 'generic', 'auto' or a kernel this CPU has ('avx2+fma'), "
                     "got '%s'", name);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* peak_flops(iters) -> FP32 FLOP/s of the FMA loop on the current thread count */
static PyObject *py_peak_flops(PyObject *self, PyObject *args)
{
    PyObject *n_obj;
    int64_t iters;
    double flops = 0;
    float checksum = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &n_obj)) return NULL;
    if (tc_py_int64(n_obj, "iters", &iters)) return NULL;
    if (iters < 1 || iters > 100000000) {
        PyErr_Format(PyExc_ValueError, "iters must be in [1, 1e8], got %lld", (long long)iters);
        return NULL;
    }
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = tc_bench_peak_flops(&flops, &checksum, iters);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "peak_flops")) return NULL;
    return PyFloat_FromDouble(flops);
}

/* scratch_alloc_count() -> allocations made so far by the kernels' scratch workspace */
static PyObject *py_scratch_alloc_count(PyObject *self, PyObject *args)
{
    (void)self;
    if (!PyArg_ParseTuple(args, ":scratch_alloc_count")) return NULL;
    return PyLong_FromUnsignedLongLong((unsigned long long)tc_workspace_alloc_count());
}

PyMethodDef tc_methods_perf[] = {
    {"scratch_alloc_count", py_scratch_alloc_count, METH_VARARGS,
     "scratch_alloc_count() -> int: allocations made so far by the kernels' per-thread scratch "
     "workspace (for tests: a warmed-up step makes none)"},
    {"gemm_set_kernel", py_gemm_set_kernel, METH_VARARGS,
     "gemm_set_kernel(name): force the GEMM micro-kernel ('generic', 'avx2+fma', 'auto')"},
    {"peak_flops", py_peak_flops, METH_VARARGS,
     "peak_flops(iters) -> peak FP32 FLOP/s of an FMA loop on the current thread count"},
    {NULL, NULL, 0, NULL},
};
