/* bind_softmax.c: bindings of softmax.c. The softmax axis of an n-d array becomes the
 * middle of an (outer, C, inner) view, so no transposed copy is ever made. */
#include "bind.h"

typedef int (*sm_fwd_f32_fn)(float *, const float *, int64_t, int64_t, int64_t);
typedef int (*sm_fwd_f64_fn)(double *, const double *, int64_t, int64_t, int64_t);
typedef int (*sm_bwd_f32_fn)(float *, const float *, const float *, int64_t, int64_t, int64_t,
                             int);
typedef int (*sm_bwd_f64_fn)(double *, const double *, const double *, int64_t, int64_t,
                             int64_t, int);

/* (outer, C, inner) of array a for the Python int axis_obj (negative counts from the end).
 * A 0-d array is one softmax over one element (axis 0 or -1), as torch. -1 with TypeError /
 * ValueError naming axis otherwise. */
static int split_axis(PyArrayObject *a, PyObject *axis_obj, int64_t *outer, int64_t *C,
                      int64_t *inner)
{
    int64_t axis;
    if (tc_py_int64(axis_obj, "axis", &axis)) return -1;
    const int nd = PyArray_NDIM(a), span = nd > 0 ? nd : 1;
    if (axis < -span || axis >= span) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "axis %lld is out of range for an array of shape %s "
                     "(valid: %d to %d)", (long long)axis, tc_py_shape_str(a, buf, sizeof buf),
                     -span, span - 1);
        return -1;
    }
    if (axis < 0) axis += span;
    *outer = *C = *inner = 1;
    for (int d = 0; d < nd; d++) {
        const int64_t n = PyArray_DIM(a, d);
        if (d < axis) *outer *= n;
        else if (d == axis) *C = n;
        else *inner *= n;
    }
    return 0;
}

static PyObject *softmax_forward_common(PyObject *args, sm_fwd_f32_fn f32, sm_fwd_f64_fn f64,
                                        const char *kernel)
{
    PyObject *x_obj, *axis_obj, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    int64_t outer, C, inner;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &axis_obj)) return NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, -1))) goto done;
    if (split_axis(x, axis_obj, &outer, &C, &inner)) goto done;
    if (!(out = tc_py_new(PyArray_NDIM(x), PyArray_DIMS(x), ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT ? f32(PyArray_DATA(out), PyArray_DATA(x), outer, C, inner)
                         : f64(PyArray_DATA(out), PyArray_DATA(x), outer, C, inner);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, kernel)) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

static PyObject *softmax_backward_common(PyObject *args, sm_bwd_f32_fn f32, sm_bwd_f64_fn f64,
                                         const char *kernel)
{
    PyObject *dy_obj, *y_obj, *axis_obj, *result = NULL;
    PyArrayObject *dy = NULL, *y = NULL, *dx = NULL;
    int64_t outer, C, inner;
    if (!PyArg_ParseTuple(args, "OOO", &dy_obj, &y_obj, &axis_obj)) return NULL;
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, -1))) goto done;
    if (!(y = tc_py_float_array(y_obj, "y", ty, -1))) goto done;
    if (tc_py_check_same_shape(dy, "grad_output", y, "y")) goto done;
    if (split_axis(y, axis_obj, &outer, &C, &inner)) goto done;
    /* uninitialised: the kernel writes every entry (TC_WRITE(0); no zeroing pass) */
    if (!(dx = tc_py_new(PyArray_NDIM(y), PyArray_DIMS(y), ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? f32(PyArray_DATA(dx), PyArray_DATA(dy), PyArray_DATA(y), outer, C, inner, TC_WRITE(0))
        : f64(PyArray_DATA(dx), PyArray_DATA(dy), PyArray_DATA(y), outer, C, inner, TC_WRITE(0));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, kernel)) goto done;
    result = (PyObject *)dx;
    dx = NULL;
done:
    Py_XDECREF(dy);
    Py_XDECREF(y);
    Py_XDECREF(dx);
    return result;
}

/* softmax_forward(x (any shape), axis) -> y */
static PyObject *py_softmax_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_forward_common(args, tc_softmax_forward_f32, tc_softmax_forward_f64,
                                  "softmax_forward");
}

/* softmax_backward(grad_output, y, axis) -> dx, y the forward output */
static PyObject *py_softmax_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_backward_common(args, tc_softmax_backward_f32, tc_softmax_backward_f64,
                                   "softmax_backward");
}

/* log_softmax_forward(x (any shape), axis) -> y */
static PyObject *py_log_softmax_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_forward_common(args, tc_log_softmax_forward_f32, tc_log_softmax_forward_f64,
                                  "log_softmax_forward");
}

/* log_softmax_backward(grad_output, y, axis) -> dx, y the forward output */
static PyObject *py_log_softmax_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_backward_common(args, tc_log_softmax_backward_f32,
                                   tc_log_softmax_backward_f64, "log_softmax_backward");
}

static int vec_exp(int ty, void *out, const void *x, const void *unused, int64_t n,
                   const void *ctx)
{
    (void)unused;
    (void)ctx;
    return TC_CALL(ty, tc_vec_exp, out, x, n);
}

/* vec_exp(x (any shape)) -> exp(x) through the kernels' shared vector exp (for tests) */
static PyObject *py_vec_exp(PyObject *self, PyObject *args)
{
    PyObject *x_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &x_obj)) return NULL;
    return tc_py_map(x_obj, "x", NULL, NULL, vec_exp, NULL, "vec_exp");
}

PyMethodDef tc_methods_softmax[] = {
    {"softmax_forward", py_softmax_forward, METH_VARARGS, "softmax_forward(x, axis) -> y"},
    {"softmax_backward", py_softmax_backward, METH_VARARGS,
     "softmax_backward(grad_output, y, axis) -> dx (y: the forward output)"},
    {"log_softmax_forward", py_log_softmax_forward, METH_VARARGS,
     "log_softmax_forward(x, axis) -> y"},
    {"log_softmax_backward", py_log_softmax_backward, METH_VARARGS,
     "log_softmax_backward(grad_output, y, axis) -> dx (y: the forward output)"},
    {"vec_exp", py_vec_exp, METH_VARARGS,
     "vec_exp(x) -> exp(x) through the kernels' shared vector exp (vec_math.h; for tests)"},
    {NULL, NULL, 0, NULL},
};
