/* bind_rope.c: bindings of rope.c. */
#include "bind.h"


/* rope_table(length, head_size, base, offset, dtype) -> (cos, sin), each (length, head_size/2) */
static PyObject *py_rope_table(PyObject *self, PyObject *args)
{
    PyObject *len_obj, *hs_obj, *off_obj, *dt_obj, *result = NULL;
    PyArrayObject *c = NULL, *s = NULL;
    double base;
    int64_t L, HS, offset;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOdOO", &len_obj, &hs_obj, &base, &off_obj, &dt_obj))
        return NULL;
    if (tc_py_int64_min(len_obj, "length", 0, &L) || tc_py_int64(hs_obj, "head_size", &HS) ||
        tc_py_int64(off_obj, "offset", &offset))
        goto done;
    if (HS < 0 || HS % 2) {
        PyErr_Format(PyExc_ValueError, "head_size must be even and >= 0, got %lld",
                     (long long)HS);
        goto done;
    }
    if (tc_py_check_real(base, "base", TC_PY_POSITIVE)) goto done;
    const int ty = tc_py_dtype(dt_obj, "dtype");
    if (ty < 0) goto done;
    npy_intp dims[2] = {(npy_intp)L, (npy_intp)(HS / 2)};
    if (!(c = tc_py_new(2, dims, ty, 0)) || !(s = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_rope_table, PyArray_DATA(c), PyArray_DATA(s), L, HS, base, offset);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rope_table")) goto done;
    result = Py_BuildValue("(OO)", c, s);
done:
    Py_XDECREF(c);
    Py_XDECREF(s);
    return result;
}

/* Shared by forward and backward: x (N,L,NH,HS), cos/sin (L, HS/2), interleaved flag. */
static PyObject *rope_common(PyObject *args, int backward)
{
    PyObject *x_obj, *c_obj, *s_obj, *result = NULL;
    PyArrayObject *x = NULL, *c = NULL, *s = NULL, *out = NULL;
    int interleaved;
    const char *xname = backward ? "grad_output" : "x";
    if (!PyArg_ParseTuple(args, "OOOp", &x_obj, &c_obj, &s_obj, &interleaved)) return NULL;
    int ty = tc_py_float_type(x_obj, xname);
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, xname, ty, 4))) goto done;
    if (!(c = tc_py_float_array(c_obj, "cos", ty, 2))) goto done;
    if (!(s = tc_py_float_array(s_obj, "sin", ty, 2))) goto done;
    npy_intp N = PyArray_DIM(x, 0), L = PyArray_DIM(x, 1), NH = PyArray_DIM(x, 2),
             HS = PyArray_DIM(x, 3);
    if (HS % 2) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "%s must have an even head size (last dim), got shape %s",
                     xname, tc_py_shape_str(x, buf, sizeof buf));
        goto done;
    }
    if (tc_py_check_dim(c, "cos", 0, L, "the sequence length") ||
        tc_py_check_dim(c, "cos", 1, HS / 2, "head_size / 2") ||
        tc_py_check_same_shape(s, "sin", c, "cos"))
        goto done;
    if (!(out = tc_py_new(4, PyArray_DIMS(x), ty, backward))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (backward)
        st = TC_CALL(ty, tc_rope_backward, PyArray_DATA(out), PyArray_DATA(x), PyArray_DATA(c),
                     PyArray_DATA(s), N, L, NH, HS, interleaved, TC_ACCUMULATE);
    else
        st = TC_CALL(ty, tc_rope_forward, PyArray_DATA(out), PyArray_DATA(x), PyArray_DATA(c),
                     PyArray_DATA(s), N, L, NH, HS, interleaved);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, backward ? "rope_backward" : "rope_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(c);
    Py_XDECREF(s);
    Py_XDECREF(out);
    return result;
}

static PyObject *py_rope_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return rope_common(args, 0);
}

static PyObject *py_rope_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return rope_common(args, 1);
}

/* rope_inplace_strided(x (N,L,NH,HS), cos (L,HS/2), sin (L,HS/2), interleaved, inverse)
 * -> None: x (a writeable view with a contiguous last dim, used at its own strides) rotated
 * in place, by +angle or (inverse) -angle */
static PyObject *py_rope_inplace_strided(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *c_obj, *s_obj, *result = NULL;
    PyArrayObject *c = NULL, *s = NULL;
    int interleaved, inverse;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOpp", &x_obj, &c_obj, &s_obj, &interleaved, &inverse))
        return NULL;
    if (!PyArray_Check(x_obj)) {
        PyErr_Format(PyExc_TypeError, "x must be a numpy array (rotated in place), got %s",
                     Py_TYPE(x_obj)->tp_name);
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)x_obj; /* borrowed */
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    char buf[128];
    if (PyArray_NDIM(x) != 4) {
        PyErr_Format(PyExc_ValueError, "x must be 4-dimensional (N, L, NH, HS), got shape %s",
                     tc_py_shape_str(x, buf, sizeof buf));
        goto done;
    }
    const npy_intp N = PyArray_DIM(x, 0), L = PyArray_DIM(x, 1), NH = PyArray_DIM(x, 2);
    const npy_intp HS = PyArray_DIM(x, 3), isz = PyArray_ITEMSIZE(x);
    if (HS % 2) {
        PyErr_Format(PyExc_ValueError, "x must have an even head size (last dim), got shape %s",
                     tc_py_shape_str(x, buf, sizeof buf));
        goto done;
    }
    int ok = PyArray_SIZE(x) == 0 || (PyArray_ISALIGNED(x) && PyArray_ISNOTSWAPPED(x));
    for (int ax = 0; ax < 4 && ok && PyArray_SIZE(x); ax++) ok = PyArray_STRIDE(x, ax) % isz == 0;
    if (ok && PyArray_SIZE(x) && HS > 1) ok = PyArray_STRIDE(x, 3) == isz;
    if (!ok || !PyArray_ISWRITEABLE(x)) {
        PyErr_SetString(PyExc_ValueError, "x must be a writeable aligned native array with a "
                        "contiguous last dim and element strides");
        goto done;
    }
    if (!(c = tc_py_float_array(c_obj, "cos", ty, 2))) goto done;
    if (!(s = tc_py_float_array(s_obj, "sin", ty, 2))) goto done;
    if (tc_py_check_dim(c, "cos", 0, L, "the sequence length") ||
        tc_py_check_dim(c, "cos", 1, HS / 2, "head_size / 2") ||
        tc_py_check_same_shape(s, "sin", c, "cos"))
        goto done;
    const int64_t sn = PyArray_STRIDE(x, 0) / isz, sl = PyArray_STRIDE(x, 1) / isz;
    const int64_t sh = PyArray_STRIDE(x, 2) / isz;
    int st;
    void *px = PyArray_DATA(x);
    const void *pc = PyArray_DATA(c), *ps = PyArray_DATA(s);
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_rope_inplace_strided, px, pc, ps, N, L, NH, HS, sn, sl, sh, interleaved,
                 inverse);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rope_inplace_strided")) goto done;
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(c);
    Py_XDECREF(s);
    return result;
}

/* rope_ref(x (N,L,NH,HS), base, offset, interleaved, backward) -> the rotated copy: test
 * hook (positional), the plain reference of rope_ref.h (backward 0: tc_rope_forward_ref,
 * 1: tc_rope_backward_ref, the rotation by -angle) */
static PyObject *py_rope_ref(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *off_obj, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    double base;
    int64_t offset;
    int interleaved, backward;
    (void)self;
    if (!PyArg_ParseTuple(args, "OdOip", &x_obj, &base, &off_obj, &interleaved, &backward))
        return NULL;
    if (tc_py_int64(off_obj, "offset", &offset)) return NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, 4))) goto done;
    if (!(out = tc_py_new(4, PyArray_DIMS(x), ty, 0))) goto done;
    const npy_intp *d = PyArray_DIMS(x);
    int st = backward ? TC_CALL(ty, tc_rope_backward_ref, PyArray_DATA(out), PyArray_DATA(x),
                                d[0], d[1], d[2], d[3], base, offset, interleaved)
                      : TC_CALL(ty, tc_rope_forward_ref, PyArray_DATA(out), PyArray_DATA(x),
                                d[0], d[1], d[2], d[3], base, offset, interleaved);
    if (tc_py_status(st, "rope_ref")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

PyMethodDef tc_methods_rope[] = {
    {"rope_table", py_rope_table, METH_VARARGS,
     "rope_table(length, head_size, base, offset, dtype) -> (cos, sin) (length, head_size/2)"},
    {"rope_forward", py_rope_forward, METH_VARARGS,
     "rope_forward(x (N,L,NH,HS), cos (L,HS/2), sin (L,HS/2), interleaved) -> rotated x"},
    {"rope_backward", py_rope_backward, METH_VARARGS,
     "rope_backward(grad_output (N,L,NH,HS), cos, sin, interleaved) -> grad of x"},
    {"rope_inplace_strided", py_rope_inplace_strided, METH_VARARGS,
     "rope_inplace_strided(x (N,L,NH,HS), cos, sin, interleaved, inverse) -> None; x (a "
     "writeable view, last dim contiguous) rotated in place at its own strides"},
    {"rope_ref", py_rope_ref, METH_VARARGS,
     "rope_ref(x, base, offset, interleaved, backward) -> y: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
