/* bind_linear.c: bindings of gemm.c and linear.c. */
#include "bind.h"

typedef int (*gemm_f32_fn)(float *, const float *, const float *, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int, int, float, float);
typedef int (*gemm_f64_fn)(double *, const double *, const double *, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int, int, double, double);

/* op(a) @ op(b) for 2-D a, b with the fast or the reference kernel. */
static PyObject *gemm_common(PyObject *args, gemm_f32_fn f32, gemm_f64_fn f64, const char *name)
{
    PyObject *a_obj, *b_obj, *result = NULL;
    int ta, tb;
    PyArrayObject *a = NULL, *b = NULL, *c = NULL;
    if (!PyArg_ParseTuple(args, "OOpp", &a_obj, &b_obj, &ta, &tb)) return NULL;
    int ty;
    if (!(a = tc_py_float_input(a_obj, "a", 2, &ty))) goto done;
    if (!(b = tc_py_float_array(b_obj, "b", ty, 2))) goto done;
    npy_intp M = PyArray_DIM(a, ta ? 1 : 0), K = PyArray_DIM(a, ta ? 0 : 1);
    npy_intp N = PyArray_DIM(b, tb ? 0 : 1);
    if (tc_py_check_dim(b, "b", tb ? 1 : 0, K, "the inner dimension of a")) goto done;
    npy_intp dims[2] = {M, N};
    if (!(c = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? f32(PyArray_DATA(c), PyArray_DATA(a), PyArray_DATA(b), M, N, K, N,
              PyArray_DIM(a, 1), PyArray_DIM(b, 1), ta, tb, 1.0f, 0.0f)
        : f64(PyArray_DATA(c), PyArray_DATA(a), PyArray_DATA(b), M, N, K, N,
              PyArray_DIM(a, 1), PyArray_DIM(b, 1), ta, tb, 1.0, 0.0);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, name)) goto done;
    result = (PyObject *)c;
    c = NULL;
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    return result;
}

static PyObject *py_gemm(PyObject *self, PyObject *args)
{
    (void)self;
    return gemm_common(args, tc_gemm_f32, tc_gemm_f64, "gemm");
}

static PyObject *py_gemm_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return gemm_common(args, tc_gemm_ref_f32, tc_gemm_ref_f64, "gemm_ref");
}

/* linear_forward(x (N,C), weight (OC,C), bias (OC,) or None) -> out (N,OC) */
static PyObject *py_linear_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *b_obj, *result = NULL;
    PyArrayObject *x = NULL, *w = NULL, *b = NULL, *out = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &x_obj, &w_obj, &b_obj)) return NULL;
    int ty;
    if (tc_py_linear_args(x_obj, w_obj, b_obj, NULL, &ty, &x, &w, &b, NULL)) goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    npy_intp dims[2] = {N, OC};
    if (!(out = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_linear_forward, PyArray_DATA(out), PyArray_DATA(x), PyArray_DATA(w),
                 b ? PyArray_DATA(b) : NULL, N, C, OC);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "linear_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(out);
    return result;
}

/* linear_backward(dout (N,OC), x (N,C), weight (OC,C), with_bias) -> (dx, dweight, dbias|None) */
static PyObject *py_linear_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *x_obj, *w_obj, *result = NULL;
    int with_bias;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOp", &dy_obj, &x_obj, &w_obj, &with_bias)) return NULL;
    int ty;
    if (tc_py_linear_args(x_obj, w_obj, NULL, dy_obj, &ty, &x, &w, NULL, &dy)) goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    npy_intp xdims[2] = {N, C}, wdims[2] = {OC, C}, bdims[1] = {OC};
    /* uninitialised: the kernel writes every gradient (no zeroing pass) */
    if (!(dx = tc_py_new(2, xdims, ty, 0)) || !(dw = tc_py_new(2, wdims, ty, 0))) goto done;
    if (with_bias && !(db = tc_py_new(1, bdims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_linear_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                 db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy), PyArray_DATA(x),
                 PyArray_DATA(w), N, C, OC, TC_WRITE_ALL);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "linear_backward")) goto done;
    result = Py_BuildValue("(OOO)", dx, dw, db ? (PyObject *)db : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

PyMethodDef tc_methods_linear[] = {
    {"gemm", py_gemm, METH_VARARGS, "gemm(a, b, trans_a, trans_b) -> op(a) @ op(b)"},
    {"gemm_ref", py_gemm_ref, METH_VARARGS, "gemm_ref(a, b, trans_a, trans_b): reference loop"},
    {"linear_forward", py_linear_forward, METH_VARARGS, "linear_forward(x, weight, bias|None)"},
    {"linear_backward", py_linear_backward, METH_VARARGS,
     "linear_backward(grad_output, x, weight, with_bias) -> (dx, dweight, dbias|None)"},
    {NULL, NULL, 0, NULL},
};
