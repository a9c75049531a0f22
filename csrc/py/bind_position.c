/* bind_position.c: bindings of position.c. */
#include "bind.h"


/* position_sinusoidal(length, dim, base, offset, dtype) -> table (length, dim) of dtype
 * (float32 or float64) */
static PyObject *py_position_sinusoidal(PyObject *self, PyObject *args)
{
    PyObject *len_obj, *dim_obj, *off_obj, *dt_obj, *result = NULL;
    PyArrayObject *out = NULL;
    double base;
    int64_t L, D, offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOdOO", &len_obj, &dim_obj, &base, &off_obj, &dt_obj))
        return NULL;
    if (tc_py_int64_min(len_obj, "length", 0, &L) || tc_py_int64_min(dim_obj, "dim", 1, &D) ||
        tc_py_int64(off_obj, "offset", &offset) ||
        tc_py_check_real(base, "base", TC_PY_POSITIVE))
        goto done;
    const int ty = tc_py_dtype(dt_obj, "dtype");
    if (ty < 0) goto done;
    npy_intp dims[2] = {(npy_intp)L, (npy_intp)D};
    if (!(out = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_position_sinusoidal, PyArray_DATA(out), L, D, base, offset);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "position_sinusoidal")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(out);
    return result;
}

typedef struct {
    int64_t B, L, D, offset;
    double base;
} pos_ctx;

static int pos_add(int ty, void *out, const void *x, const void *unused, int64_t n,
                   const void *ctx)
{
    const pos_ctx *c = ctx;
    (void)unused;
    (void)n;
    return TC_CALL(ty, tc_position_add_sinusoidal, out, x, c->B, c->L, c->D, c->base,
                   c->offset);
}

/* position_add_sinusoidal(x (B,T,D), base, offset) -> x + table[:T] (a new array) */
static PyObject *py_position_add_sinusoidal(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *off_obj, *result = NULL;
    PyArrayObject *x = NULL;
    pos_ctx c;
    int ty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OdO", &x_obj, &c.base, &off_obj)) return NULL;
    if (tc_py_int64(off_obj, "offset", &c.offset) ||
        tc_py_check_real(c.base, "base", TC_PY_POSITIVE))
        return NULL;
    if (!(x = tc_py_float_input(x_obj, "x", 3, &ty))) return NULL;
    c.B = PyArray_DIM(x, 0);
    c.L = PyArray_DIM(x, 1);
    c.D = PyArray_DIM(x, 2);
    result = tc_py_map_arrays(ty, x, NULL, pos_add, &c, "position_add_sinusoidal");
    Py_DECREF(x);
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
    if (tc_py_int64(off_obj, "offset", &offset) || tc_py_check_real(base, "base", TC_PY_POSITIVE)) return NULL;
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
