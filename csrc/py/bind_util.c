/* bind_util.c: argument conversion and checking shared by every binding. */
#include "bind.h"

#include <math.h>
#include <stdio.h>

const char *tc_py_shape_str(PyArrayObject *a, char *buf, size_t n)
{
    size_t used = 0;
    int nd = PyArray_NDIM(a);
    used += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %ld" : "%ld",
                                 (long)PyArray_DIM(a, i));
    if (used < n) snprintf(buf + used, n - used, nd == 1 ? ",)" : ")");
    return buf;
}

static const char *dtype_name(PyArrayObject *a)
{
    switch (PyArray_TYPE(a)) {
    case NPY_FLOAT: return "float32";
    case NPY_DOUBLE: return "float64";
    case NPY_HALF: return "float16";
    case NPY_LONGDOUBLE: return "longdouble";
    case NPY_BOOL: return "bool";
    default: return PyArray_ISINTEGER(a) ? "an integer dtype" : "an unsupported dtype";
    }
}

/* obj as an ndarray without copying or casting; new reference or NULL. */
static PyArrayObject *as_ndarray(PyObject *obj, const char *name)
{
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be an array, got None", name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be array-like, got %s", name,
                     Py_TYPE(obj)->tp_name);
    }
    return a;
}

int tc_py_float_type(PyObject *obj, const char *name)
{
    PyArrayObject *a = as_ndarray(obj, name);
    if (!a) return -1;
    int t = PyArray_TYPE(a);
    if (t != NPY_FLOAT && t != NPY_DOUBLE) {
        PyErr_Format(PyExc_TypeError, "%s must be a float32 or float64 array, got %s", name,
                     dtype_name(a));
        t = -1;
    }
    Py_DECREF(a);
    return t;
}

static int check_ndim(PyArrayObject *a, const char *name, int ndim)
{
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got shape %s", name, ndim,
                     tc_py_shape_str(a, buf, sizeof buf));
        return -1;
    }
    return 0;
}

PyArrayObject *tc_py_float_array(PyObject *obj, const char *name, int typenum, int ndim)
{
    PyArrayObject *a = as_ndarray(obj, name), *out = NULL;
    if (!a) return NULL;
    if (PyArray_TYPE(a) != typenum) {
        PyErr_Format(PyExc_TypeError, "%s has dtype %s but this call computes in %s: "
                     "transformer_c never mixes float32 and float64 in one call",
                     name, dtype_name(a), typenum == NPY_FLOAT ? "float32" : "float64");
        goto done;
    }
    if (check_ndim(a, name, ndim)) goto done;
    out = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)a, typenum, NPY_ARRAY_IN_ARRAY);
done:
    Py_DECREF(a);
    return out;
}

PyArrayObject *tc_py_index_array(PyObject *obj, const char *name, int ndim)
{
    PyArrayObject *a = as_ndarray(obj, name), *out = NULL;
    if (!a) return NULL;
    if (!PyArray_ISINTEGER(a)) {
        PyErr_Format(PyExc_TypeError, "%s must hold integer token ids, got %s", name,
                     dtype_name(a));
        goto done;
    }
    if (check_ndim(a, name, ndim)) goto done;
    if (PyArray_ISUNSIGNED(a) && PyArray_ITEMSIZE(a) == 8 && PyArray_SIZE(a) > 0) {
        /* uint64 ids >= 2**63 would wrap to negative int64: report the true value */
        PyObject *mx = PyArray_Max(a, NPY_RAVEL_AXIS, NULL), *mxi = NULL;
        if (mx) mxi = PyNumber_Index(mx);
        Py_XDECREF(mx);
        if (!mxi) goto done;
        unsigned long long v = PyLong_AsUnsignedLongLong(mxi);
        Py_DECREF(mxi);
        if (PyErr_Occurred()) goto done;
        if (v > (unsigned long long)INT64_MAX) {
            PyErr_Format(PyExc_IndexError, "%s holds id %llu, outside the int64 range", name, v);
            goto done;
        }
    }
    out = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)a, NPY_INT64,
                                            NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
done:
    Py_DECREF(a);
    return out;
}

PyArrayObject *tc_py_inout_array(PyObject *obj, const char *name, int typenum)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array (it is updated in place), got %s",
                     name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != typenum) {
        PyErr_Format(PyExc_TypeError, "%s has dtype %s but this call computes in %s",
                     name, dtype_name(a), typenum == NPY_FLOAT ? "float32" : "float64");
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a) ||
        !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s is updated in place, so it must be a writeable, "
                     "C-contiguous, aligned array in native byte order", name);
        return NULL;
    }
    Py_INCREF(a);
    return a;
}

int tc_py_check_dim(PyArrayObject *a, const char *name, int axis, npy_intp want,
                    const char *what)
{
    if (PyArray_DIM(a, axis) != want) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "%s must have %s = %ld along axis %d, got shape %s",
                     name, what, (long)want, axis, tc_py_shape_str(a, buf, sizeof buf));
        return -1;
    }
    return 0;
}

int tc_py_check_write(int64_t write, int nout, const char *name)
{
    if (write < 0 || write >= ((int64_t)1 << nout)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a bitmask of the %d gradient outputs (0..%d), got %lld", name,
                     nout, (1 << nout) - 1, (long long)write);
        return -1;
    }
    return 0;
}

int tc_py_check_same_shape(PyArrayObject *a, const char *a_name, PyArrayObject *b,
                           const char *b_name)
{
    if (PyArray_NDIM(a) == PyArray_NDIM(b) &&
        PyArray_CompareLists(PyArray_DIMS(a), PyArray_DIMS(b), PyArray_NDIM(a)))
        return 0;
    char ba[128], bb[128];
    PyErr_Format(PyExc_ValueError, "%s must have the shape of %s %s, got %s", a_name, b_name,
                 tc_py_shape_str(b, bb, sizeof bb), tc_py_shape_str(a, ba, sizeof ba));
    return -1;
}

int tc_py_check_index_range(PyArrayObject *ids, const char *name, int64_t limit)
{
    const int64_t *p = (const int64_t *)PyArray_DATA(ids);
    npy_intp n = PyArray_SIZE(ids);
    for (npy_intp i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= limit) {
            PyErr_Format(PyExc_IndexError, "%s holds id %lld at flat position %ld, outside "
                         "[0, %lld)", name, (long long)p[i], (long)i, (long long)limit);
            return -1;
        }
    }
    return 0;
}

PyArrayObject *tc_py_new(int ndim, const npy_intp *dims, int typenum, int zero)
{
    return (PyArrayObject *)(zero ? PyArray_ZEROS(ndim, (npy_intp *)dims, typenum, 0)
                                  : PyArray_EMPTY(ndim, (npy_intp *)dims, typenum, 0));
}

int tc_py_status(int status, const char *kernel)
{
    if (status == TC_OK) return 0;
    if (status == TC_ENOMEM) PyErr_Format(PyExc_MemoryError, "%s: out of memory", kernel);
    else PyErr_Format(PyExc_ValueError, "%s: invalid arguments (status %d)", kernel, status);
    return -1;
}

int tc_py_int64(PyObject *obj, const char *name, int64_t *out)
{
    if (PyBool_Check(obj) || (!PyLong_Check(obj) && !PyIndex_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "%s must be an integer, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *num = PyNumber_Index(obj);
    if (!num) return -1;
    long long v = PyLong_AsLongLong(num);
    Py_DECREF(num);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is out of the 64-bit integer range", name);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* Python int in [0, 2^64) -> uint64_t; TypeError / ValueError naming `name` otherwise.
 */
int tc_py_uint64(PyObject *obj, const char *name, uint64_t *out)
{
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a non-negative integer, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *i = PyNumber_Index(obj);
    if (!i) return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(i);
    Py_DECREF(i);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be in [0, 2**64)", name);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int tc_py_check_real(double v, const char *name, int range)
{
    static const char *const what[] = {"a finite number", "a finite number >= 0",
                                       "a finite number > 0", "a probability in [0, 1]"};
    const int ok = range == TC_PY_PROB ? v >= 0.0 && v <= 1.0
                   : !isfinite(v)      ? 0
                   : range == TC_PY_NONNEG   ? v >= 0.0
                   : range == TC_PY_POSITIVE ? v > 0.0
                                             : 1;
    if (ok) return 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%g", v);
    PyErr_Format(PyExc_ValueError, "%s must be %s, got %s", name, what[range], buf);
    return -1;
}

int tc_py_real(PyObject *obj, const char *name, int range, double *out)
{
    if (PyBool_Check(obj) || PyComplex_Check(obj) || !PyNumber_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    const double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (tc_py_check_real(v, name, range)) return -1;
    *out = v;
    return 0;
}

int tc_py_check_flag(int v, const char *name)
{
    if (v == 0 || v == 1) return 0;
    PyErr_Format(PyExc_ValueError, "%s must be 0 or 1, got %d", name, v);
    return -1;
}

int tc_py_check_option(int kind, int v, const char *name)
{
    const int n = tc_option_count(kind);
    if (v >= 0 && v < n) return 0;
    char buf[256];
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof buf; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%d ('%s')", i ? ", " : "",
                                 i, tc_option_name(kind, i));
    PyErr_Format(PyExc_ValueError, "%s must be one of %s, got %d", name, n ? buf : "()", v);
    return -1;
}

int tc_py_int64_min(PyObject *obj, const char *name, int64_t min, int64_t *out)
{
    if (tc_py_int64(obj, name, out)) return -1;
    if (*out >= min) return 0;
    PyErr_Format(PyExc_ValueError, "%s must be >= %lld, got %lld", name, (long long)min,
                 (long long)*out);
    return -1;
}

int tc_py_dtype(PyObject *obj, const char *name)
{
    PyArray_Descr *descr = NULL;
    if (!PyArray_DescrConverter(obj, &descr)) PyErr_Clear();
    const int ty = descr ? descr->type_num : -1;
    Py_XDECREF(descr);
    if (ty == NPY_FLOAT || ty == NPY_DOUBLE) return ty;
    PyErr_Format(PyExc_TypeError, "%s must be float32 or float64", name);
    return -1;
}

int tc_py_linear_args(PyObject *x_obj, PyObject *w_obj, PyObject *b_obj, PyObject *dy_obj,
                      int *ty, PyArrayObject **x, PyArrayObject **w, PyArrayObject **b,
                      PyArrayObject **dy)
{
    if ((*ty = tc_py_float_type(x_obj, "x")) < 0) return -1;
    if (!(*x = tc_py_float_array(x_obj, "x", *ty, 2))) return -1;
    if (!(*w = tc_py_float_array(w_obj, "weight", *ty, 2))) return -1;
    const npy_intp N = PyArray_DIM(*x, 0), C = PyArray_DIM(*x, 1), OC = PyArray_DIM(*w, 0);
    if (tc_py_check_dim(*w, "weight", 1, C, "in_features (the last dim of x)")) return -1;
    if (dy_obj) {
        if (!(*dy = tc_py_float_array(dy_obj, "grad_output", *ty, 2))) return -1;
        if (tc_py_check_dim(*dy, "grad_output", 0, N, "the rows of x") ||
            tc_py_check_dim(*dy, "grad_output", 1, OC, "out_features (weight.shape[0])"))
            return -1;
    }
    if (b_obj && b_obj != Py_None) {
        if (!(*b = tc_py_float_array(b_obj, "bias", *ty, 1))) return -1;
        if (tc_py_check_dim(*b, "bias", 0, OC, "out_features (weight.shape[0])")) return -1;
    }
    return 0;
}

PyArrayObject *tc_py_float_input(PyObject *obj, const char *name, int ndim, int *ty)
{
    if ((*ty = tc_py_float_type(obj, name)) < 0) return NULL;
    return tc_py_float_array(obj, name, *ty, ndim);
}

PyObject *tc_py_map_arrays(int ty, PyArrayObject *x, PyArrayObject *y, tc_py_map_fn fn,
                           const void *ctx, const char *kernel)
{
    PyArrayObject *out = tc_py_new(PyArray_NDIM(x), PyArray_DIMS(x), ty, 0);
    if (!out) return NULL;
    const int64_t n = (int64_t)PyArray_SIZE(x);
    void *po = PyArray_DATA(out);
    const void *px = PyArray_DATA(x), *py = y ? PyArray_DATA(y) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = fn(ty, po, px, py, n, ctx);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, kernel)) {
        Py_DECREF(out);
        return NULL;
    }
    return (PyObject *)out;
}

PyObject *tc_py_map(PyObject *x_obj, const char *x_name, PyObject *y_obj, const char *y_name,
                    tc_py_map_fn fn, const void *ctx, const char *kernel)
{
    PyObject *result = NULL;
    PyArrayObject *y = NULL;
    int ty;
    PyArrayObject *x = tc_py_float_input(x_obj, x_name, -1, &ty);
    if (!x) goto done;
    if (y_obj) {
        if (!(y = tc_py_float_array(y_obj, y_name, ty, -1))) goto done;
        if (tc_py_check_same_shape(x, x_name, y, y_name)) goto done;
    }
    result = tc_py_map_arrays(ty, x, y, fn, ctx, kernel);
done:
    Py_XDECREF(x);
    Py_XDECREF(y);
    return result;
}
