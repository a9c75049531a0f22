/* bind_softmax.c: bindings of softmax.c. The softmax axis of an n-d array becomes the
 * middle of an (outer, C, inner) view, so no transposed copy is ever made. */
#include "bind.h"

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

/* the kernels of one call and the (outer, C, inner) view of its arrays */
typedef struct {
    int is_log, ref; /* ref: the plain references of softmax_ref.h (test hooks) */
    int64_t outer, C, inner;
} sm_ctx;

static int sm_forward(int ty, void *out, const void *x, const void *unused, int64_t n,
                      const void *ctx)
{
    const sm_ctx *c = ctx;
    (void)unused;
    (void)n;
    if (c->ref)
        return TC_CALL(ty, tc_softmax_forward_ref, out, x, c->outer, c->C, c->inner, c->is_log);
    return c->is_log ? TC_CALL(ty, tc_log_softmax_forward, out, x, c->outer, c->C, c->inner)
                     : TC_CALL(ty, tc_softmax_forward, out, x, c->outer, c->C, c->inner);
}

/* dx written (TC_WRITE(0): tc_py_map_arrays allocates it uninitialised) */
static int sm_backward(int ty, void *dx, const void *dy, const void *y, int64_t n,
                       const void *ctx)
{
    const sm_ctx *c = ctx;
    (void)n;
    if (c->ref) /* the references write dx */
        return TC_CALL(ty, tc_softmax_backward_ref, dx, dy, y, c->outer, c->C, c->inner,
                       c->is_log);
    return c->is_log ? TC_CALL(ty, tc_log_softmax_backward, dx, dy, y, c->outer, c->C,
                               c->inner, TC_WRITE(0))
                     : TC_CALL(ty, tc_softmax_backward, dx, dy, y, c->outer, c->C, c->inner,
                               TC_WRITE(0));
}

/* (log_)softmax_forward(x, axis) when backward == 0, else (log_)softmax_backward(grad_output,
 * y, axis); ref: the plain references instead of the kernels */
static PyObject *softmax_common(PyObject *args, int is_log, int backward, int ref,
                                const char *kernel)
{
    PyObject *a_obj, *y_obj = NULL, *axis_obj, *result = NULL;
    PyArrayObject *a = NULL, *y = NULL;
    sm_ctx c = {is_log, ref, 0, 0, 0};
    int ty;
    if (backward ? !PyArg_ParseTuple(args, "OOO", &a_obj, &y_obj, &axis_obj)
                 : !PyArg_ParseTuple(args, "OO", &a_obj, &axis_obj))
        return NULL;
    if (!(a = tc_py_float_input(a_obj, backward ? "grad_output" : "x", -1, &ty))) goto done;
    if (backward) {
        if (!(y = tc_py_float_array(y_obj, "y", ty, -1))) goto done;
        if (tc_py_check_same_shape(a, "grad_output", y, "y")) goto done;
    }
    if (split_axis(a, axis_obj, &c.outer, &c.C, &c.inner)) goto done;
    result = tc_py_map_arrays(ty, a, y, backward ? sm_backward : sm_forward, &c, kernel);
done:
    Py_XDECREF(a);
    Py_XDECREF(y);
    return result;
}

/* softmax_forward(x (any shape), axis) -> y */
static PyObject *py_softmax_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 0, 0, 0, "softmax_forward");
}

/* softmax_backward(grad_output, y, axis) -> dx, y the forward output */
static PyObject *py_softmax_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 0, 1, 0, "softmax_backward");
}

/* log_softmax_forward(x (any shape), axis) -> y */
static PyObject *py_log_softmax_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 1, 0, 0, "log_softmax_forward");
}

/* log_softmax_backward(grad_output, y, axis) -> dx, y the forward output */
static PyObject *py_log_softmax_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 1, 1, 0, "log_softmax_backward");
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

/* The plain references (softmax_ref.h), test hooks with the kernels' arguments:
 * [log_]softmax_forward_ref(x, axis) -> y, [log_]softmax_backward_ref(grad_output, y, axis)
 * -> dx */
static PyObject *py_softmax_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 0, 0, 1, "softmax_forward_ref");
}

static PyObject *py_softmax_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 0, 1, 1, "softmax_backward_ref");
}

static PyObject *py_log_softmax_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 1, 0, 1, "log_softmax_forward_ref");
}

static PyObject *py_log_softmax_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softmax_common(args, 1, 1, 1, "log_softmax_backward_ref");
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
    {"softmax_forward_ref", py_softmax_forward_ref, METH_VARARGS,
     "softmax_forward_ref(x, axis) -> y: test hook, the plain reference"},
    {"softmax_backward_ref", py_softmax_backward_ref, METH_VARARGS,
     "softmax_backward_ref(grad_output, y, axis) -> dx: test hook, the plain reference"},
    {"log_softmax_forward_ref", py_log_softmax_forward_ref, METH_VARARGS,
     "log_softmax_forward_ref(x, axis) -> y: test hook, the plain reference"},
    {"log_softmax_backward_ref", py_log_softmax_backward_ref, METH_VARARGS,
     "log_softmax_backward_ref(grad_output, y, axis) -> dx: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
