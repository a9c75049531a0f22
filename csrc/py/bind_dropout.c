/* bind_dropout.c: bindings of dropout.c. Arrays of any shape are passed flat (C order); the
 * mask of element i depends only on (seed, i, p). */
#include "bind.h"

/* p and seed from Python objects, validated */
static int parse_p_seed(PyObject *p_obj, PyObject *seed_obj, double *p, uint64_t *seed)
{
    return tc_py_real(p_obj, "p", TC_PY_PROB, p) || tc_py_uint64(seed_obj, "seed", seed) ? -1 : 0;
}

/* dropout_forward(x (any shape), p, seed) -> y = x * mask */
static PyObject *py_dropout_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *p_obj, *seed_obj, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    double p;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &x_obj, &p_obj, &seed_obj)) return NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, -1))) goto done;
    if (parse_p_seed(p_obj, seed_obj, &p, &seed)) goto done;
    if (!(out = tc_py_new(PyArray_NDIM(x), PyArray_DIMS(x), ty, 0))) goto done;
    npy_intp N = PyArray_SIZE(x);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_dropout_forward, PyArray_DATA(out), PyArray_DATA(x), N, p, seed);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "dropout_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

/* dropout_backward(grad_output (any shape), p, seed) -> dx = grad_output * mask */
static PyObject *py_dropout_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *p_obj, *seed_obj, *result = NULL;
    PyArrayObject *dy = NULL, *dx = NULL;
    double p;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &dy_obj, &p_obj, &seed_obj)) return NULL;
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, -1))) goto done;
    if (parse_p_seed(p_obj, seed_obj, &p, &seed)) goto done;
    /* uninitialised: the kernel writes it (accumulate = 0) */
    if (!(dx = tc_py_new(PyArray_NDIM(dy), PyArray_DIMS(dy), ty, 0))) goto done;
    npy_intp N = PyArray_SIZE(dy);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_dropout_backward, PyArray_DATA(dx), PyArray_DATA(dy), N, p, seed,
                 TC_WRITE(0));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "dropout_backward")) goto done;
    result = (PyObject *)dx;
    dx = NULL;
done:
    Py_XDECREF(dy);
    Py_XDECREF(dx);
    return result;
}

/* dropout_mask(n, p, seed, float64) -> mask (n,), float64 if the flag is true else float32 */
static PyObject *py_dropout_mask(PyObject *self, PyObject *args)
{
    PyObject *n_obj, *p_obj, *seed_obj, *result = NULL;
    PyArrayObject *mask = NULL;
    int is_f64;
    int64_t n;
    double p;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOp", &n_obj, &p_obj, &seed_obj, &is_f64)) return NULL;
    if (tc_py_int64(n_obj, "n", &n)) goto done;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "n must be >= 0, got %lld", (long long)n);
        goto done;
    }
    if (parse_p_seed(p_obj, seed_obj, &p, &seed)) goto done;
    const int ty = is_f64 ? NPY_DOUBLE : NPY_FLOAT;
    npy_intp dims[1] = {(npy_intp)n};
    if (!(mask = tc_py_new(1, dims, ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_dropout_mask, PyArray_DATA(mask), n, p, seed);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "dropout_mask")) goto done;
    result = (PyObject *)mask;
    mask = NULL;
done:
    Py_XDECREF(mask);
    return result;
}

PyMethodDef tc_methods_dropout[] = {
    {"dropout_forward", py_dropout_forward, METH_VARARGS,
     "dropout_forward(x, p, seed) -> x * mask"},
    {"dropout_backward", py_dropout_backward, METH_VARARGS,
     "dropout_backward(grad_output, p, seed) -> grad_output * mask"},
    {"dropout_mask", py_dropout_mask, METH_VARARGS,
     "dropout_mask(n, p, seed, float64) -> mask (n,): 1/(1-p) where kept, else 0"},
    {NULL, NULL, 0, NULL},
};
