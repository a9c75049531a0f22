/* bind_layernorm.c: bindings of layernorm.c. */
#include "bind.h"

#include <math.h>
#include <stdio.h>

/* 0 if x (N,C) has at least one channel, else -1 with ValueError naming x. */
static int check_channels(PyArrayObject *x)
{
    if (PyArray_DIM(x, 1) >= 1) return 0;
    char buf[128];
    PyErr_Format(PyExc_ValueError, "x must have at least one channel (its last dim), got "
                 "shape %s", tc_py_shape_str(x, buf, sizeof buf));
    return -1;
}

/* layernorm_forward[_ref](x (N,C), weight (C,), bias (C,)|None, eps)
 *   -> (out (N,C), mean (N,), rstd (N,)); ref: the plain reference (a test hook) */
static PyObject *layernorm_forward_common(PyObject *args, int ref)
{
    PyObject *x_obj, *w_obj, *b_obj, *result = NULL;
    double eps;
    PyArrayObject *x = NULL, *w = NULL, *b = NULL, *out = NULL, *mean = NULL, *rstd = NULL;
    if (!PyArg_ParseTuple(args, "OOOd", &x_obj, &w_obj, &b_obj, &eps)) return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    int ty;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (check_channels(x)) goto done;
    if (tc_py_check_dim(w, "weight", 0, C, "the channels of x (its last dim)")) goto done;
    if (b_obj != Py_None) {
        if (!(b = tc_py_float_array(b_obj, "bias", ty, 1))) goto done;
        if (tc_py_check_dim(b, "bias", 0, C, "the channels of x (its last dim)")) goto done;
    }
    npy_intp xdims[2] = {N, C}, sdims[1] = {N};
    if (!(out = tc_py_new(2, xdims, ty, 0)) || !(mean = tc_py_new(1, sdims, ty, 0)) ||
        !(rstd = tc_py_new(1, sdims, ty, 0)))
        goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_layernorm_forward_ref, PyArray_DATA(out), PyArray_DATA(mean),
                       PyArray_DATA(rstd), PyArray_DATA(x), PyArray_DATA(w),
                       b ? PyArray_DATA(b) : NULL, N, C, eps)
             : TC_CALL(ty, tc_layernorm_forward, PyArray_DATA(out), PyArray_DATA(mean),
                       PyArray_DATA(rstd), PyArray_DATA(x), PyArray_DATA(w),
                       b ? PyArray_DATA(b) : NULL, N, C, eps);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "layernorm_forward")) goto done;
    result = Py_BuildValue("(OOO)", out, mean, rstd);
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(out);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    return result;
}

static PyObject *py_layernorm_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return layernorm_forward_common(args, 0);
}

static PyObject *py_layernorm_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return layernorm_forward_common(args, 1);
}

/* layernorm_backward(grad_output (N,C), x (N,C), weight (C,), mean (N,)|None,
 *                    rstd (N,)|None, with_bias, eps) -> (dx, dweight, dbias|None)
 * mean and rstd are both given (from the forward) or both None: then they are recomputed
 * from x with eps. */
static PyObject *py_layernorm_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *x_obj, *w_obj, *m_obj, *r_obj, *result = NULL;
    int with_bias;
    double eps;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *mean = NULL, *rstd = NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOpd", &dy_obj, &x_obj, &w_obj, &m_obj, &r_obj,
                          &with_bias, &eps))
        return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    if ((m_obj == Py_None) != (r_obj == Py_None)) {
        PyErr_SetString(PyExc_ValueError, m_obj == Py_None
                        ? "rstd was given without mean: give both (from the forward) or neither"
                        : "mean was given without rstd: give both (from the forward) or neither");
        goto done;
    }
    int ty;
    if (!(dy = tc_py_float_input(dy_obj, "grad_output", 2, &ty))) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, 2))) goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (check_channels(x)) goto done;
    if (tc_py_check_same_shape(dy, "grad_output", x, "x")) goto done;
    if (tc_py_check_dim(w, "weight", 0, C, "the channels of x (its last dim)")) goto done;
    int recompute = m_obj == Py_None;
    npy_intp xdims[2] = {N, C}, sdims[1] = {N}, wdims[1] = {C};
    if (recompute) {
        if (!(mean = tc_py_new(1, sdims, ty, 0)) || !(rstd = tc_py_new(1, sdims, ty, 0)))
            goto done;
    } else {
        if (!(mean = tc_py_float_array(m_obj, "mean", ty, 1))) goto done;
        if (tc_py_check_dim(mean, "mean", 0, N, "the rows of x")) goto done;
        if (!(rstd = tc_py_float_array(r_obj, "rstd", ty, 1))) goto done;
        if (tc_py_check_dim(rstd, "rstd", 0, N, "the rows of x")) goto done;
    }
    /* dx uninitialised: the kernel writes it (no zeroing pass); dweight, dbias are summed */
    if (!(dx = tc_py_new(2, xdims, ty, 0)) || !(dw = tc_py_new(1, wdims, ty, 1))) goto done;
    if (with_bias && !(db = tc_py_new(1, wdims, ty, 1))) goto done;
    int st = TC_OK;
    TC_PY_BEGIN_ALLOW_THREADS
    if (recompute)
        st = TC_CALL(ty, tc_layernorm_forward, NULL, PyArray_DATA(mean), PyArray_DATA(rstd),
                     PyArray_DATA(x), PyArray_DATA(w), NULL, N, C, eps);
    if (st == TC_OK)
        st = TC_CALL(ty, tc_layernorm_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                     db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy), PyArray_DATA(x),
                     PyArray_DATA(w), PyArray_DATA(mean), PyArray_DATA(rstd), N, C,
                     TC_WRITE(0));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "layernorm_backward")) goto done;
    result = Py_BuildValue("(OOO)", dx, dw, db ? (PyObject *)db : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

/* Test hook (positional), the plain reference of layernorm_ref.h (the forward's is
 * layernorm_forward_ref above):
 * layernorm_backward_ref(grad_output (N,C), x (N,C), weight (C,), mean (N,), rstd (N,))
 *   -> (dx (N,C), dweight (C,), dbias (C,)) */
static PyObject *py_layernorm_backward_ref(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *x_obj, *w_obj, *m_obj, *r_obj, *result = NULL;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *mean = NULL, *rstd = NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &dy_obj, &x_obj, &w_obj, &m_obj, &r_obj)) return NULL;
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, 2)) ||
        !(x = tc_py_float_array(x_obj, "x", ty, 2)) || check_channels(x) ||
        tc_py_check_same_shape(dy, "grad_output", x, "x"))
        goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1)) ||
        tc_py_check_dim(w, "weight", 0, C, "the channels of x") ||
        !(mean = tc_py_float_array(m_obj, "mean", ty, 1)) ||
        tc_py_check_dim(mean, "mean", 0, N, "the rows of x") ||
        !(rstd = tc_py_float_array(r_obj, "rstd", ty, 1)) ||
        tc_py_check_dim(rstd, "rstd", 0, N, "the rows of x"))
        goto done;
    if (!(dx = tc_py_new(2, PyArray_DIMS(x), ty, 0)) || !(dw = tc_py_new(1, &C, ty, 0)) ||
        !(db = tc_py_new(1, &C, ty, 0)))
        goto done;
    int st = TC_CALL(ty, tc_layernorm_backward_ref, PyArray_DATA(dx), PyArray_DATA(dw),
                     PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(x), PyArray_DATA(w),
                     PyArray_DATA(mean), PyArray_DATA(rstd), N, C);
    if (tc_py_status(st, "layernorm_backward_ref")) goto done;
    result = Py_BuildValue("(OOO)", dx, dw, db);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

PyMethodDef tc_methods_layernorm[] = {
    {"layernorm_forward", py_layernorm_forward, METH_VARARGS,
     "layernorm_forward(x (N,C), weight (C,), bias (C,)|None, eps) -> (out, mean, rstd)"},
    {"layernorm_backward", py_layernorm_backward, METH_VARARGS,
     "layernorm_backward(grad_output (N,C), x (N,C), weight (C,), mean|None, rstd|None, "
     "with_bias, eps) -> (dx, dweight, dbias|None)"},
    {"layernorm_forward_ref", py_layernorm_forward_ref, METH_VARARGS,
     "layernorm_forward_ref(x, weight, bias, eps) -> (out, mean, rstd): test hook, the plain "
     "reference"},
    {"layernorm_backward_ref", py_layernorm_backward_ref, METH_VARARGS,
     "layernorm_backward_ref(grad_output, x, weight, mean, rstd) -> (dx, dweight, dbias): "
     "test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
