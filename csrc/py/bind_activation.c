/* bind_activation.c: bindings of activation.c (ReLU, GELU). The kernels are element-wise,
 * so arrays of any shape (0-d and empty included) are passed flat and the result keeps the
 * input's shape. */
#include "bind.h"

typedef int (*unary_f32_fn)(float *, const float *, int64_t, int);
typedef int (*unary_f64_fn)(double *, const double *, int64_t, int);
typedef int (*unary_bwd_f32_fn)(float *, const float *, const float *, int64_t, int);
typedef int (*unary_bwd_f64_fn)(double *, const double *, const double *, int64_t, int);

/* adapters giving relu the gelu signature (the option is ignored), and the backwards in
 * write mode (TC_WRITE(0): the result array is allocated uninitialised) */
static int relu_fwd_f32(float *o, const float *x, int64_t n, int opt)
{
    (void)opt;
    return tc_relu_forward_f32(o, x, n);
}
static int relu_fwd_f64(double *o, const double *x, int64_t n, int opt)
{
    (void)opt;
    return tc_relu_forward_f64(o, x, n);
}
static int relu_bwd_f32(float *d, const float *g, const float *x, int64_t n, int opt)
{
    (void)opt;
    return tc_relu_backward_f32(d, g, x, n, TC_WRITE(0));
}
static int relu_bwd_f64(double *d, const double *g, const double *x, int64_t n, int opt)
{
    (void)opt;
    return tc_relu_backward_f64(d, g, x, n, TC_WRITE(0));
}
static int gelu_bwd_f32(float *d, const float *g, const float *x, int64_t n, int approx)
{
    return tc_gelu_backward_f32(d, g, x, n, approx, TC_WRITE(0));
}
static int gelu_bwd_f64(double *d, const double *g, const double *x, int64_t n, int approx)
{
    return tc_gelu_backward_f64(d, g, x, n, approx, TC_WRITE(0));
}

/* y = f(x), same shape and dtype as x */
static PyObject *unary_forward(PyObject *x_obj, int opt, unary_f32_fn f32, unary_f64_fn f64,
                               const char *kernel)
{
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, -1))) goto done;
    if (!(out = tc_py_new(PyArray_NDIM(x), PyArray_DIMS(x), ty, 0))) goto done;
    npy_intp N = PyArray_SIZE(x);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT ? f32(PyArray_DATA(out), PyArray_DATA(x), N, opt)
                         : f64(PyArray_DATA(out), PyArray_DATA(x), N, opt);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, kernel)) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

/* dx = grad_output * f'(x), grad_output and x of one shape and dtype; dx is allocated
 * uninitialised: the kernels write it (TC_WRITE(0)) */
static PyObject *unary_backward(PyObject *dy_obj, PyObject *x_obj, int opt, unary_bwd_f32_fn f32,
                                unary_bwd_f64_fn f64, const char *kernel)
{
    PyObject *result = NULL;
    PyArrayObject *dy = NULL, *x = NULL, *dx = NULL;
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, -1))) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, -1))) goto done;
    if (tc_py_check_same_shape(dy, "grad_output", x, "x")) goto done;
    if (!(dx = tc_py_new(PyArray_NDIM(x), PyArray_DIMS(x), ty, 0))) goto done;
    npy_intp N = PyArray_SIZE(x);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT ? f32(PyArray_DATA(dx), PyArray_DATA(dy), PyArray_DATA(x), N, opt)
                         : f64(PyArray_DATA(dx), PyArray_DATA(dy), PyArray_DATA(x), N, opt);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, kernel)) goto done;
    result = (PyObject *)dx;
    dx = NULL;
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(dx);
    return result;
}

/* relu_forward(x (any shape)) -> y */
static PyObject *py_relu_forward(PyObject *self, PyObject *args)
{
    PyObject *x;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &x)) return NULL;
    return unary_forward(x, 0, relu_fwd_f32, relu_fwd_f64, "relu_forward");
}

/* relu_backward(grad_output, x) -> dx */
static PyObject *py_relu_backward(PyObject *self, PyObject *args)
{
    PyObject *dy, *x;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &dy, &x)) return NULL;
    return unary_backward(dy, x, 0, relu_bwd_f32, relu_bwd_f64, "relu_backward");
}

/* gelu_forward(x (any shape), approximate_tanh 0|1) -> y */
static PyObject *py_gelu_forward(PyObject *self, PyObject *args)
{
    PyObject *x;
    int flag;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oi", &x, &flag)) return NULL;
    if (tc_py_check_flag(flag, "approximate_tanh")) return NULL;
    return unary_forward(x, flag, tc_gelu_forward_f32, tc_gelu_forward_f64, "gelu_forward");
}

/* gelu_backward(grad_output, x, approximate_tanh 0|1) -> dx */
static PyObject *py_gelu_backward(PyObject *self, PyObject *args)
{
    PyObject *dy, *x;
    int flag;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOi", &dy, &x, &flag)) return NULL;
    if (tc_py_check_flag(flag, "approximate_tanh")) return NULL;
    return unary_backward(dy, x, flag, gelu_bwd_f32, gelu_bwd_f64, "gelu_backward");
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
