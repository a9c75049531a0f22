/* bind_position.c: bindings of position.c. */
#include "bind.h"

#include <math.h>
#include <stdio.h>

/* 0 if base is finite and > 0, else -1 with ValueError naming base. */
static int check_base(double base)
{
    if (base > 0 && isfinite(base)) return 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%g", base);
    PyErr_Format(PyExc_ValueError, "base must be a finite number > 0, got %s", buf);
    return -1;
}

/* position_sinusoidal(length, dim, base, offset, dtype) -> table (length, dim) of dtype
 * (float32 or float64) */
static PyObject *py_position_sinusoidal(PyObject *self, PyObject *args)
{
    PyObject *len_obj, *dim_obj, *off_obj, *dt_obj, *result = NULL;
    PyArray_Descr *descr = NULL;
    PyArrayObject *out = NULL;
    double base;
    int64_t L, D, offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOdOO", &len_obj, &dim_obj, &base, &off_obj, &dt_obj))
        return NULL;
    if (tc_py_int64(len_obj, "length", &L) || tc_py_int64(dim_obj, "dim", &D) ||
        tc_py_int64(off_obj, "offset", &offset))
        goto done;
    if (L < 0) {
        PyErr_Format(PyExc_ValueError, "length must be >= 0, got %lld", (long long)L);
        goto done;
    }
    if (D < 1) {
        PyErr_Format(PyExc_ValueError, "dim must be >= 1, got %lld", (long long)D);
        goto done;
    }
    if (check_base(base)) goto done;
    if (!PyArray_DescrConverter(dt_obj, &descr)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "dtype must be float32 or float64");
        goto done;
    }
    int ty = descr->type_num;
    if (ty != NPY_FLOAT && ty != NPY_DOUBLE) {
        PyErr_SetString(PyExc_TypeError, "dtype must be float32 or float64");
        goto done;
    }
    npy_intp dims[2] = {(npy_intp)L, (npy_intp)D};
    if (!(out = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_position_sinusoidal, PyArray_DATA(out), L, D, base, offset);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "position_sinusoidal")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(descr);
    Py_XDECREF(out);
    return result;
}

/* position_add_sinusoidal(x (B,T,D), base, offset) -> x + table[:T] (a new array) */
static PyObject *py_position_add_sinusoidal(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *off_obj, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    double base;
    int64_t offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "OdO", &x_obj, &base, &off_obj)) return NULL;
    if (tc_py_int64(off_obj, "offset", &offset)) goto done;
    if (check_base(base)) goto done;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, 3))) goto done;
    npy_intp B = PyArray_DIM(x, 0), L = PyArray_DIM(x, 1), D = PyArray_DIM(x, 2);
    if (!(out = tc_py_new(3, PyArray_DIMS(x), ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_position_add_sinusoidal, PyArray_DATA(out), PyArray_DATA(x), B, L, D,
                 base, offset);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "position_add_sinusoidal")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

/* position_sinusoidal_ref(out (T,D), base, offset) -> None, out filled in place: test hook
 * (positional), the plain reference of position_ref.h (out's dtype picks the kernel) */
static PyObject *py_position_sinusoidal_ref(PyObject *self, PyObject *args)
{
    PyObject *out_obj, *off_obj, *result = NULL;
    PyArrayObject *out = NULL;
    double base;
    int64_t offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "OdO", &out_obj, &base, &off_obj)) return NULL;
    if (tc_py_int64(off_obj, "offset", &offset) || check_base(base)) return NULL;
    int ty = tc_py_float_type(out_obj, "out");
    if (ty < 0) goto done;
    if (!(out = tc_py_inout_array(out_obj, "out", ty))) goto done;
    if (PyArray_NDIM(out) != 2) {
        PyErr_SetString(PyExc_ValueError, "out must be 2-D (T, D)");
        goto done;
    }
    int st = TC_CALL(ty, tc_position_sinusoidal_ref, PyArray_DATA(out), PyArray_DIM(out, 0),
                     PyArray_DIM(out, 1), base, offset);
    if (tc_py_status(st, "position_sinusoidal_ref")) goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(out);
    return result;
}

PyMethodDef tc_methods_position[] = {
    {"position_sinusoidal", py_position_sinusoidal, METH_VARARGS,
     "position_sinusoidal(length, dim, base, offset, dtype) -> table (length, dim)"},
    {"position_add_sinusoidal", py_position_add_sinusoidal, METH_VARARGS,
     "position_add_sinusoidal(x (B,T,D), base, offset) -> x + table[:T]"},
    {"position_sinusoidal_ref", py_position_sinusoidal_ref, METH_VARARGS,
     "position_sinusoidal_ref(out, base, offset) -> None: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
