/* bind_activation.c: bindings of activation.c (ReLU, GELU). The kernels are element-wise,
 * so arrays of any shape (0-d and empty included) are passed flat and the result keeps the
 * input's shape. */
#include "bind.h"

/* ctx: the GELU's approximate_tanh flag, or -1 for ReLU. The backwards write dx (TC_WRITE(0):
 * tc_py_map allocates it uninitialised). */
static int act_forward(int ty, void *out, const void *x, const void *unused, int64_t n,
                       const void *ctx)
{
    const int approx = *(const int *)ctx;
    (void)unused;
    return approx < 0 ? TC_CALL(ty, tc_relu_forward, out, x, n)
                      : TC_CALL(ty, tc_gelu_forward, out, x, n, approx);
}

static int act_backward(int ty, void *dx, const void *dy, const void *x, int64_t n,
                        const void *ctx)
{
    const int approx = *(const int *)ctx;
    return approx < 0 ? TC_CALL(ty, tc_relu_backward, dx, dy, x, n, TC_WRITE(0))
                      : TC_CALL(ty, tc_gelu_backward, dx, dy, x, n, approx, TC_WRITE(0));
}

static const int relu_ctx = -1;

/* relu_forward(x (any shape)) -> y */
static PyObject *py_relu_forward(PyObject *self, PyObject *args)
{
    PyObject *x;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &x)) return NULL;
    return tc_py_map(x, "x", NULL, NULL, act_forward, &relu_ctx, "relu_forward");
}

/* relu_backward(grad_output, x) -> dx */
static PyObject *py_relu_backward(PyObject *self, PyObject *args)
{
    PyObject *dy, *x;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &dy, &x)) return NULL;
    return tc_py_map(dy, "grad_output", x, "x", act_backward, &relu_ctx, "relu_backward");
}

/* gelu_forward(x (any shape), approximate_tanh 0|1) -> y */
static PyObject *py_gelu_forward(PyObject *self, PyObject *args)
{
    PyObject *x;
    int flag;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oi", &x, &flag)) return NULL;
    if (tc_py_check_flag(flag, "approximate_tanh")) return NULL;
    return tc_py_map(x, "x", NULL, NULL, act_forward, &flag, "gelu_forward");
}

/* gelu_backward(grad_output, x, approximate_tanh 0|1) -> dx */
static PyObject *py_gelu_backward(PyObject *self, PyObject *args)
{
    PyObject *dy, *x;
    int flag;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOi", &dy, &x, &flag)) return NULL;
    if (tc_py_check_flag(flag, "approximate_tanh")) return NULL;
    return tc_py_map(dy, "grad_output", x, "x", act_backward, &flag, "gelu_backward");
}

PyMethodDef tc_methods_activation[] = {
    {"relu_forward", py_relu_forward, METH_VARARGS, "relu_forward(x) -> y"},
    {"relu_backward", py_relu_backward, METH_VARARGS, "relu_backward(grad_output, x) -> dx"},
    {"gelu_forward", py_gelu_forward, METH_VARARGS,
     "gelu_forward(x, approximate_tanh) -> y; approximate_tanh 0 (erf) or 1 (tanh)"},
    {"gelu_backward", py_gelu_backward, METH_VARARGS,
     "gelu_backward(grad_output, x, approximate_tanh) -> dx"},
    {NULL, NULL, 0, NULL},
};
