/* bind_perf.c: private switches and probes for tests and benchmarks: force the GEMM
 * micro-kernel, measure the machine's peak FP32 FLOP/s, count scratch allocations. */
#include "bind.h"

/* gemm_set_kernel(name): "generic", "avx2+fma" / "neon", "avx512" or "auto" (the cpu
 * override by name; "avx2+fma" also caps the GEMM below its AVX-512 kernel) */
static PyObject *py_gemm_set_kernel(PyObject *self, PyObject *args)
{
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (tc_gemm_set_kernel(name) != TC_OK) {
        const char *fast = tc_cpu_has_fast() ? tc_cpu_fast_name() : NULL;
        PyErr_Format(PyExc_ValueError,
                     "name must be 'generic', 'auto' or a kernel this CPU has (%s%s), got '%s'",
                     fast ? fast : "none", tc_cpu_has_avx512() ? ", avx512" : "", name);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* cpu_set_portable(on): True forces the portable kernels in every family, False the CPU's
 * best, None the environment's choice (TC_PORTABLE) again */
static PyObject *py_cpu_set_portable(PyObject *self, PyObject *args)
{
    PyObject *on_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &on_obj)) return NULL;
    int on = -1;
    if (on_obj != Py_None) {
        if (!PyLong_Check(on_obj)) {
            PyErr_Format(PyExc_TypeError, "on must be True, False or None, got %s",
                         Py_TYPE(on_obj)->tp_name);
            return NULL;
        }
        const long v = PyLong_AsLong(on_obj);
        if (v != 0 && v != 1) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "on must be True, False or None");
            }
            return NULL;
        }
        on = (int)v;
    }
    tc_cpu_set_portable(on);
    Py_RETURN_NONE;
}

/* cpu_portable() -> bool: whether the portable override is on */
static PyObject *py_cpu_portable(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_cpu_get_portable());
}

/* cpu_has_avx2() -> bool: whether this CPU (and build) has the AVX2+FMA kernels */
static PyObject *py_cpu_has_avx2(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_cpu_has_avx2());
}

/* cpu_has_avx512() -> bool: whether this CPU (and build) has the AVX-512F GEMM kernel */
static PyObject *py_cpu_has_avx512(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_cpu_has_avx512());
}

/* cpu_kernel(family) -> "avx512" (gemm, bench) | "avx2+fma" | "neon" | "generic" | None: the
 * variant family last ran */
static PyObject *py_cpu_kernel(PyObject *self, PyObject *args)
{
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int f = 0; f < TC_CPU_FAMILY_COUNT; f++)
        if (strcmp(name, tc_cpu_family_name(f)) == 0) {
            const char *k = tc_cpu_kernel_name(f);
            if (!k) Py_RETURN_NONE;
            return PyUnicode_FromString(k);
        }
    PyErr_Format(PyExc_ValueError, "family must be one of 'gemm', 'attention', 'softmax', "
                 "'activation', 'layernorm', 'loss', 'fused', 'decode', 'bench', got '%s'", name);
    return NULL;
}

/* peak_flops(iters, chains) -> FP32 FLOP/s of the FMA loop (chains of 8, 12, 16 or 24) on
 * the current thread count, with the GEMM's dispatch (cpu_kernel("bench") says which ran) */
static PyObject *py_peak_flops(PyObject *self, PyObject *args)
{
    PyObject *n_obj;
    int64_t iters;
    int chains;
    double flops = 0;
    float checksum = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oi", &n_obj, &chains)) return NULL;
    if (tc_py_int64(n_obj, "iters", &iters)) return NULL;
    if (iters < 1 || iters > 100000000) {
        PyErr_Format(PyExc_ValueError, "iters must be in [1, 1e8], got %lld", (long long)iters);
        return NULL;
    }
    if (chains != 8 && chains != 12 && chains != 16 && chains != 24) {
        PyErr_Format(PyExc_ValueError, "chains must be 8, 12, 16 or 24, got %d", chains);
        return NULL;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bench_peak_flops(&flops, &checksum, iters, chains);
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

/* gemm_pack_panel(src, rs, cs, n, kc, side) -> the packed A block (ceil(n/6), kc, 6)
 * (side 0) or one B panel (kc, NR) (side 1), read from the flat array src with element strides (rs, cs) */
static PyObject *py_gemm_pack_panel(PyObject *self, PyObject *args)
{
    PyObject *src_obj, *rs_obj, *cs_obj, *n_obj, *kc_obj, *side_obj, *ret = NULL;
    PyArrayObject *src = NULL, *dst = NULL;
    int64_t rs, cs, n, kc, side;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &src_obj, &rs_obj, &cs_obj, &n_obj, &kc_obj,
                          &side_obj))
        return NULL;
    const int typenum = tc_py_float_type(src_obj, "src");
    if (typenum < 0) return NULL;
    if (tc_py_int64(rs_obj, "rs", &rs) || tc_py_int64(cs_obj, "cs", &cs) ||
        tc_py_int64(n_obj, "n", &n) || tc_py_int64(kc_obj, "kc", &kc) ||
        tc_py_int64(side_obj, "side", &side))
        return NULL;
    if (!(src = tc_py_float_array(src_obj, "src", typenum, 1))) goto done;
    const int64_t width = side ? (typenum == NPY_FLOAT ? 16 : 8) : 6;
    const int64_t nmax = side ? width : (int64_t)1 << 20;
    if (side != 0 && side != 1) {
        PyErr_Format(PyExc_ValueError, "side must be 0 (A) or 1 (B), got %lld", (long long)side);
        goto done;
    }
    if (n < 1 || n > nmax || kc < 1 || rs < 0 || cs < 0 || rs > INT32_MAX || cs > INT32_MAX ||
        kc > INT32_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "need 1 <= n <= %lld, kc >= 1 and strides rs, cs >= 0, got n=%lld "
                     "kc=%lld rs=%lld cs=%lld", (long long)nmax, (long long)n, (long long)kc,
                     (long long)rs, (long long)cs);
        goto done;
    }
    /* the last element read: (n-1, kc-1) of the viewed matrix */
    const int64_t last = side ? (kc - 1) * rs + (n - 1) * cs : (n - 1) * rs + (kc - 1) * cs;
    if (last >= (int64_t)PyArray_SIZE(src)) {
        PyErr_Format(PyExc_ValueError, "src has %lld elements, the panel reads up to index %lld",
                     (long long)PyArray_SIZE(src), (long long)last);
        goto done;
    }
    npy_intp dims[3] = {(npy_intp)((n + 5) / 6), (npy_intp)kc, 6};
    if (side) dims[0] = (npy_intp)kc, dims[1] = (npy_intp)width;
    if (!(dst = tc_py_new(side ? 2 : 3, dims, typenum, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(typenum, tc_gemm_pack_panel, PyArray_DATA(dst), PyArray_DATA(src), rs, cs, n,
                 kc, (int)side);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gemm_pack_panel")) goto done;
    ret = (PyObject *)dst;
    dst = NULL;
done:
    Py_XDECREF(src);
    Py_XDECREF(dst);
    return ret;
}

/* 0 if a has ndim dims with the given sizes, else ValueError naming it */
static int perf_check_shape(PyArrayObject *a, const char *name, int ndim, npy_intp d0,
                            npy_intp d1)
{
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dims, got %d", name, ndim,
                     PyArray_NDIM(a));
        return -1;
    }
    if (tc_py_check_dim(a, name, 0, d0, "the expected size")) return -1;
    return ndim == 2 ? tc_py_check_dim(a, name, 1, d1, "the expected size") : 0;
}

/* backward_into(kind, dinp, dweight, dbias, dout, inp, weight, pre, write): the backward of
 * kind "linear", "linear_gelu" (tanh form, with pre (N,OC)), "linear_gelu_dact" (pre (N,OC)
 * holding gelu'(pre)) or "layernorm" (statistics recomputed from inp) into the given arrays,
 * updated in place: the outputs whose bit of write (0..7; TC_WRITE(0/1/2) = dinp / dweight /
 * dbias) is set are written, the others accumulated. For tests of the write flag. */
static PyObject *py_backward_into(PyObject *self, PyObject *args)
{
    const char *kind;
    PyObject *dx_obj, *dw_obj, *db_obj, *dy_obj, *x_obj, *w_obj, *pre_obj, *write_obj;
    PyObject *ret = NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL, *dy = NULL, *x = NULL, *w = NULL,
                  *pre = NULL, *mean = NULL, *rstd = NULL;
    int64_t write;
    (void)self;
    if (!PyArg_ParseTuple(args, "sOOOOOOOO", &kind, &dx_obj, &dw_obj, &db_obj, &dy_obj, &x_obj,
                          &w_obj, &pre_obj, &write_obj))
        return NULL;
    const int dact = strcmp(kind, "linear_gelu_dact") == 0;
    const int k = strcmp(kind, "linear") == 0               ? 0
                  : strcmp(kind, "linear_gelu") == 0 || dact ? 1
                  : strcmp(kind, "layernorm") == 0          ? 2
                                                            : -1;
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "kind must be 'linear', 'linear_gelu', "
                     "'linear_gelu_dact' or 'layernorm', got '%s'", kind);
        return NULL;
    }
    if (tc_py_int64(write_obj, "write", &write)) return NULL;
    if (tc_py_check_write(write, 3, "write")) return NULL;
    const int ty = tc_py_float_type(x_obj, "inp");
    if (ty < 0) return NULL;
    if (!(x = tc_py_float_array(x_obj, "inp", ty, 2))) goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (!(w = tc_py_float_array(w_obj, "weight", ty, k == 2 ? 1 : 2))) goto done;
    const npy_intp OC = k == 2 ? C : PyArray_DIM(w, 0);
    if (perf_check_shape(w, "weight", k == 2 ? 1 : 2, k == 2 ? C : OC, C)) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "dout", ty, 2))) goto done;
    if (perf_check_shape(dy, "dout", 2, N, OC)) goto done;
    if (!(dx = tc_py_inout_array(dx_obj, "dinp", ty))) goto done;
    if (perf_check_shape(dx, "dinp", 2, N, C)) goto done;
    if (!(dw = tc_py_inout_array(dw_obj, "dweight", ty))) goto done;
    if (perf_check_shape(dw, "dweight", k == 2 ? 1 : 2, k == 2 ? C : OC, C)) goto done;
    if (!(db = tc_py_inout_array(db_obj, "dbias", ty))) goto done;
    if (perf_check_shape(db, "dbias", 1, OC, 0)) goto done;
    if (k == 1) {
        if (!(pre = tc_py_float_array(pre_obj, "pre", ty, 2))) goto done;
        if (perf_check_shape(pre, "pre", 2, N, OC)) goto done;
    }
    if (k == 2) {
        npy_intp sdims[1] = {N};
        if (C < 1) {
            PyErr_SetString(PyExc_ValueError, "inp must have at least one channel");
            goto done;
        }
        if (!(mean = tc_py_new(1, sdims, ty, 0)) || !(rstd = tc_py_new(1, sdims, ty, 0)))
            goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (k == 0)
        st = TC_CALL(ty, tc_linear_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                     PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(x), PyArray_DATA(w), N, C,
                     OC, (int)write);
    else if (dact)
        st = TC_CALL(ty, tc_linear_backward_dact, PyArray_DATA(dx), PyArray_DATA(dw),
                     PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(pre), PyArray_DATA(x),
                     PyArray_DATA(w), N, C, OC, (int)write);
    else if (k == 1)
        st = TC_CALL(ty, tc_linear_gelu_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                     PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(pre), PyArray_DATA(x),
                     PyArray_DATA(w), NULL, N, C, OC, 1, (int)write);
    else {
        st = TC_CALL(ty, tc_layernorm_forward, NULL, PyArray_DATA(mean), PyArray_DATA(rstd),
                     PyArray_DATA(x), PyArray_DATA(w), NULL, N, C, 1e-5);
        if (st == TC_OK)
            st = TC_CALL(ty, tc_layernorm_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                         PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(x), PyArray_DATA(w),
                         PyArray_DATA(mean), PyArray_DATA(rstd), N, C, (int)write);
    }
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "backward_into")) goto done;
    ret = Py_None;
    Py_INCREF(ret);
done:
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(pre);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    return ret;
}

/* softmax_backward_into(dinp, dout, y, is_log, write): the (log-)softmax backward along axis
 * 1 of (outer, C, inner) arrays into dinp in place, written (write 1) or accumulated (0). For
 * tests. */
static PyObject *py_softmax_backward_into(PyObject *self, PyObject *args)
{
    PyObject *dx_obj, *dy_obj, *y_obj, *ret = NULL;
    PyArrayObject *dx = NULL, *dy = NULL, *y = NULL;
    int is_log, write;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOpi", &dx_obj, &dy_obj, &y_obj, &is_log, &write)) return NULL;
    if (tc_py_check_write(write, 1, "write")) return NULL;
    const int ty = tc_py_float_type(y_obj, "y");
    if (ty < 0) return NULL;
    if (!(y = tc_py_float_array(y_obj, "y", ty, 3))) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "dout", ty, 3))) goto done;
    if (tc_py_check_same_shape(dy, "dout", y, "y")) goto done;
    if (!(dx = tc_py_inout_array(dx_obj, "dinp", ty))) goto done;
    if (PyArray_NDIM(dx) != 3 || tc_py_check_same_shape(dx, "dinp", y, "y")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "dinp must have y's shape");
        goto done;
    }
    const int64_t outer = PyArray_DIM(y, 0), C = PyArray_DIM(y, 1), inner = PyArray_DIM(y, 2);
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (is_log)
        st = TC_CALL(ty, tc_log_softmax_backward, PyArray_DATA(dx), PyArray_DATA(dy),
                     PyArray_DATA(y), outer, C, inner, write);
    else
        st = TC_CALL(ty, tc_softmax_backward, PyArray_DATA(dx), PyArray_DATA(dy),
                     PyArray_DATA(y), outer, C, inner, write);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "softmax_backward_into")) goto done;
    ret = Py_None;
    Py_INCREF(ret);
done:
    Py_XDECREF(dx);
    Py_XDECREF(dy);
    Py_XDECREF(y);
    return ret;
}

PyMethodDef tc_methods_perf[] = {
    {"softmax_backward_into", py_softmax_backward_into, METH_VARARGS,
     "softmax_backward_into(dinp, dout, y, is_log, write): the (log-)softmax backward along "
     "axis 1 of (outer, C, inner) arrays into dinp in place, written or accumulated (for "
     "tests)"},
    {"backward_into", py_backward_into, METH_VARARGS,
     "backward_into(kind, dinp, dweight, dbias, dout, inp, weight, pre, write): a linear, "
     "linear_gelu or layernorm backward into the given arrays in place, the outputs whose "
     "bit of write is set (1 dinp, 2 dweight, 4 dbias) written, the others accumulated "
     "(for tests)"},
    {"gemm_pack_panel", py_gemm_pack_panel, METH_VARARGS,
     "gemm_pack_panel(src, rs, cs, n, kc, side) -> one packed GEMM panel (for tests of the "
     "packers): side 0 (ceil(n/6), kc, 6) of A rows [0,n), side 1 (kc, NR) of B columns [0,n), src a "
     "flat array read with element strides (rs, cs)"},
    {"scratch_alloc_count", py_scratch_alloc_count, METH_VARARGS,
     "scratch_alloc_count() -> int: allocations made so far by the kernels' per-thread scratch "
     "workspace (for tests: a warmed-up step makes none)"},
    {"gemm_set_kernel", py_gemm_set_kernel, METH_VARARGS,
     "gemm_set_kernel(name): the cpu override by name, for every family: 'generic' = "
     "cpu_set_portable(True), 'avx2+fma' (x86-64: also caps the GEMM below AVX-512) or "
     "'neon' (AArch64) = (False), 'avx512' = (False) with the GEMM's AVX-512F "
     "kernel (ValueError without avx512f), 'auto' = (None)"},
    {"cpu_set_portable", py_cpu_set_portable, METH_VARARGS,
     "cpu_set_portable(on): True forces the portable kernels in every family (GEMM, "
     "attention, softmax, activations, layernorm, loss, fused, decode, bench), False the "
     "CPU's best, None the environment's choice (TC_PORTABLE=1) again"},
    {"cpu_portable", py_cpu_portable, METH_NOARGS, "cpu_portable() -> bool: the override"},
    {"cpu_has_avx2", py_cpu_has_avx2, METH_NOARGS,
     "cpu_has_avx2() -> bool: whether this CPU and build have the AVX2+FMA kernels"},
    {"cpu_has_avx512", py_cpu_has_avx512, METH_NOARGS,
     "cpu_has_avx512() -> bool: whether this CPU and build have the AVX-512F GEMM "
     "kernel"},
    {"cpu_kernel", py_cpu_kernel, METH_VARARGS,
     "cpu_kernel(family) -> 'avx512' (gemm, bench), 'avx2+fma', 'neon', 'generic' or None (not run yet): the variant the "
     "family ('gemm', 'attention', 'softmax', 'activation', 'layernorm', 'loss', 'fused', "
     "'decode', 'bench') last ran"},
    {"peak_flops", py_peak_flops, METH_VARARGS,
     "peak_flops(iters, chains) -> peak FP32 FLOP/s of an FMA loop (chains: 8, 12, 16 or 24 "
     "independent accumulators) on the current thread count, with the GEMM's dispatch "
     "(cpu_kernel('bench') says which loop ran: 'avx512', 'avx2+fma' or 'generic')"},
    {NULL, NULL, 0, NULL},
};
