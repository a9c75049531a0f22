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

/* The activation table (tc_activation_*) and its plain references (activation_ref.h): ctx
 * is {act, ref}; the backwards write dx (TC_WRITE(0); the references always write). */
typedef struct {
    int act, ref;
} table_ctx;

static int table_forward(int ty, void *out, const void *x, const void *unused, int64_t n,
                         const void *ctx)
{
    const table_ctx *c = ctx;
    (void)unused;
    return c->ref ? TC_CALL(ty, tc_activation_forward_ref, out, x, n, c->act)
                  : (ty == NPY_FLOAT32 ? tc_activation_forward_f32(c->act, out, x, n)
                                       : tc_activation_forward_f64(c->act, out, x, n));
}

static int table_backward(int ty, void *dx, const void *dy, const void *x, int64_t n,
                          const void *ctx)
{
    const table_ctx *c = ctx;
    return c->ref ? TC_CALL(ty, tc_activation_backward_ref, dx, dy, x, n, c->act)
                  : (ty == NPY_FLOAT32
                         ? tc_activation_backward_f32(c->act, dx, dy, x, n, TC_WRITE(0))
                         : tc_activation_backward_f64(c->act, dx, dy, x, n, TC_WRITE(0)));
}

/* args (act, x) -> y, or (act, grad_output, x) -> dx; act a TC_ACT_* value (ValueError naming
 * it otherwise) */
static PyObject *table_call(PyObject *args, int backward, int ref, const char *what)
{
    PyObject *a, *b = NULL;
    table_ctx c = {0, ref};
    if (backward ? !PyArg_ParseTuple(args, "iOO", &c.act, &a, &b)
                 : !PyArg_ParseTuple(args, "iO", &c.act, &a))
        return NULL;
    if (!tc_option_name(TC_OPT_ACTIVATION, c.act)) {
        PyErr_Format(PyExc_ValueError, "act must be an activation index in [0, %d), got %d",
                     tc_option_count(TC_OPT_ACTIVATION), c.act);
        return NULL;
    }
    return backward ? tc_py_map(a, "grad_output", b, "x", table_backward, &c, what)
                    : tc_py_map(a, "x", NULL, NULL, table_forward, &c, what);
}

/* activation_forward(act (TC_ACT_*), x (any shape)) -> y */
static PyObject *py_activation_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return table_call(args, 0, 0, "activation_forward");
}

/* activation_backward(act (TC_ACT_*), grad_output, x) -> dx */
static PyObject *py_activation_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return table_call(args, 1, 0, "activation_backward");
}

/* activation_forward_ref(act, x) -> y and activation_backward_ref(act, grad_output, x) -> dx:
 * test hooks (positional), the plain references, with the table's argument order */
static PyObject *py_activation_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return table_call(args, 0, 1, "activation_forward_ref");
}

static PyObject *py_activation_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return table_call(args, 1, 1, "activation_backward_ref");
}

PyMethodDef tc_methods_activation[] = {
    {"activation_forward", py_activation_forward, METH_VARARGS,
     "activation_forward(act, x) -> y; act: a TC_ACT_* value (the index in "
     "transformer_c.options.ACTIVATIONS)"},
    {"activation_backward", py_activation_backward, METH_VARARGS,
     "activation_backward(act, grad_output, x) -> dx"},
    {"relu_forward", py_relu_forward, METH_VARARGS, "relu_forward(x) -> y"},
    {"relu_backward", py_relu_backward, METH_VARARGS, "relu_backward(grad_output, x) -> dx"},
    {"gelu_forward", py_gelu_forward, METH_VARARGS,
     "gelu_forward(x, approximate_tanh) -> y; approximate_tanh 0 (erf) or 1 (tanh)"},
    {"gelu_backward", py_gelu_backward, METH_VARARGS,
     "gelu_backward(grad_output, x, approximate_tanh) -> dx"},
    {"activation_forward_ref", py_activation_forward_ref, METH_VARARGS,
     "activation_forward_ref(act, x) -> y: test hook, the plain reference"},
    {"activation_backward_ref", py_activation_backward_ref, METH_VARARGS,
     "activation_backward_ref(act, grad_output, x) -> dx: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
