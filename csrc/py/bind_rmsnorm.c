/* bind_rmsnorm.c: bindings of rmsnorm.c (RMS norm, QK-norm over heads) and softcap.c
 * (logit soft-capping). Positional, no defaults (the functional wrappers add them). */
#include "bind.h"

/* rmsnorm_forward[_ref](x (N,C), weight (C,), bias (C,)|None, eps) -> (out (N,C), rstd (N,)) */
static PyObject *rmsnorm_forward_common(PyObject *args, int ref)
{
    PyObject *x_obj, *w_obj, *b_obj, *result = NULL;
    double eps;
    PyArrayObject *x = NULL, *w = NULL, *b = NULL, *out = NULL, *rstd = NULL;
    if (!PyArg_ParseTuple(args, "OOOd", &x_obj, &w_obj, &b_obj, &eps)) return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    int ty;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "x must have at least one channel (its last dim)");
        goto done;
    }
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1)) ||
        tc_py_check_dim(w, "weight", 0, C, "the channels of x (its last dim)"))
        goto done;
    if (b_obj != Py_None && (!(b = tc_py_float_array(b_obj, "bias", ty, 1)) ||
                             tc_py_check_dim(b, "bias", 0, C, "the channels of x (its last dim)")))
        goto done;
    npy_intp xdims[2] = {N, C}, sdims[1] = {N};
    if (!(out = tc_py_new(2, xdims, ty, 0)) || !(rstd = tc_py_new(1, sdims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_rmsnorm_forward_ref, PyArray_DATA(out), PyArray_DATA(rstd),
                       PyArray_DATA(x), PyArray_DATA(w), b ? PyArray_DATA(b) : NULL, N, C, eps)
             : TC_CALL(ty, tc_rmsnorm_forward, PyArray_DATA(out), PyArray_DATA(rstd),
                       PyArray_DATA(x), PyArray_DATA(w), b ? PyArray_DATA(b) : NULL, N, C, eps);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rmsnorm_forward")) goto done;
    result = Py_BuildValue("(OO)", out, rstd);
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(out);
    Py_XDECREF(rstd);
    return result;
}

static PyObject *py_rmsnorm_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return rmsnorm_forward_common(args, 0);
}

static PyObject *py_rmsnorm_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return rmsnorm_forward_common(args, 1);
}

/* rmsnorm_backward[_ref](grad_output (N,C), x (N,C), weight (C,), rstd (N,)|None, with_bias,
 * eps) -> (dx, dweight, dbias|None); rstd None: recomputed from x with eps. The reference
 * always returns dbias. */
static PyObject *rmsnorm_backward_common(PyObject *args, int ref)
{
    PyObject *dy_obj, *x_obj, *w_obj, *r_obj, *result = NULL;
    int with_bias;
    double eps;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *rstd = NULL, *dx = NULL, *dw = NULL,
                  *db = NULL;
    if (!PyArg_ParseTuple(args, "OOOOpd", &dy_obj, &x_obj, &w_obj, &r_obj, &with_bias, &eps))
        return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    int ty;
    if (!(dy = tc_py_float_input(dy_obj, "grad_output", 2, &ty))) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, 2)) ||
        tc_py_check_same_shape(dy, "grad_output", x, "x"))
        goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "x must have at least one channel (its last dim)");
        goto done;
    }
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1)) ||
        tc_py_check_dim(w, "weight", 0, C, "the channels of x (its last dim)"))
        goto done;
    npy_intp xdims[2] = {N, C}, sdims[1] = {N}, wdims[1] = {C};
    const int recompute = r_obj == Py_None;
    if (recompute) {
        if (!(rstd = tc_py_new(1, sdims, ty, 0))) goto done;
    } else if (!(rstd = tc_py_float_array(r_obj, "rstd", ty, 1)) ||
               tc_py_check_dim(rstd, "rstd", 0, N, "the rows of x")) {
        goto done;
    }
    if (!(dx = tc_py_new(2, xdims, ty, 0)) || !(dw = tc_py_new(1, wdims, ty, 0))) goto done;
    if ((with_bias || ref) && !(db = tc_py_new(1, wdims, ty, 0))) goto done;
    int st = TC_OK;
    TC_PY_BEGIN_ALLOW_THREADS
    if (recompute)
        st = TC_CALL(ty, tc_rmsnorm_forward, NULL, PyArray_DATA(rstd), PyArray_DATA(x),
                     PyArray_DATA(w), NULL, N, C, eps);
    if (st == TC_OK)
        st = ref ? TC_CALL(ty, tc_rmsnorm_backward_ref, PyArray_DATA(dx), PyArray_DATA(dw),
                           PyArray_DATA(db), PyArray_DATA(dy), PyArray_DATA(x), PyArray_DATA(w),
                           PyArray_DATA(rstd), N, C)
                 : TC_CALL(ty, tc_rmsnorm_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                           db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy), PyArray_DATA(x),
                           PyArray_DATA(w), PyArray_DATA(rstd), N, C, TC_WRITE_ALL);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rmsnorm_backward")) goto done;
    result = Py_BuildValue("(OOO)", dx, dw, db ? (PyObject *)db : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(rstd);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

static PyObject *py_rmsnorm_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return rmsnorm_backward_common(args, 0);
}

static PyObject *py_rmsnorm_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return rmsnorm_backward_common(args, 1);
}

/* 0 if x (N,W) holds G vectors of C per row (G, C >= 1, G*C <= W), else ValueError */
static int check_heads(PyArrayObject *x, const char *name, npy_intp G, npy_intp C)
{
    if (G >= 1 && C >= 1 && G <= PyArray_DIM(x, 1) / C) return 0;
    PyErr_Format(PyExc_ValueError, "%s must hold G=%zd heads of C=%zd per row (G, C >= 1, "
                 "G*C <= its last dim %zd)", name, (Py_ssize_t)G, (Py_ssize_t)C,
                 (Py_ssize_t)PyArray_DIM(x, 1));
    return -1;
}

/* Test hook of the strided QK-norm kernels (positional):
 * rmsnorm_heads(x (N,W), weight (C,), G, eps) -> (out (N,G*C), rstd (N,G)): the first G*C
 * columns of each row of x as G vectors of C (read at stride W), written contiguously.
 * rmsnorm_heads_backward(grad_output (N,W), x (N,W), weight (C,), rstd (N,G), G) -> (dx
 * (N,W), dweight (C,)): dx is grad_output's copy with its first G*C columns replaced in
 * place (the fast path's use). */
static PyObject *py_rmsnorm_heads(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *result = NULL;
    Py_ssize_t G;
    double eps;
    PyArrayObject *x = NULL, *w = NULL, *out = NULL, *rstd = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnd", &x_obj, &w_obj, &G, &eps)) return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    int ty;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    const npy_intp N = PyArray_DIM(x, 0), W = PyArray_DIM(x, 1), C = PyArray_DIM(w, 0);
    if (check_heads(x, "x", G, C)) goto done;
    npy_intp odims[2] = {N, G * C}, rdims[2] = {N, G};
    if (!(out = tc_py_new(2, odims, ty, 0)) || !(rstd = tc_py_new(2, rdims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_rmsnorm_heads_forward, PyArray_DATA(out), G * C, PyArray_DATA(rstd),
                 PyArray_DATA(x), W, PyArray_DATA(w), N, G, C, eps);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rmsnorm_heads")) goto done;
    result = Py_BuildValue("(OO)", out, rstd);
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(out);
    Py_XDECREF(rstd);
    return result;
}

static PyObject *py_rmsnorm_heads_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *x_obj, *w_obj, *r_obj, *result = NULL;
    Py_ssize_t G;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *rstd = NULL, *dx = NULL, *dw = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOn", &dy_obj, &x_obj, &w_obj, &r_obj, &G)) return NULL;
    int ty;
    if (!(dy = tc_py_float_input(dy_obj, "grad_output", 2, &ty))) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, 2)) ||
        tc_py_check_same_shape(dy, "grad_output", x, "x"))
        goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    const npy_intp N = PyArray_DIM(x, 0), W = PyArray_DIM(x, 1), C = PyArray_DIM(w, 0);
    if (check_heads(x, "x", G, C)) goto done;
    npy_intp rdims[2] = {N, G};
    if (!(rstd = tc_py_float_array(r_obj, "rstd", ty, 2))) goto done;
    if (PyArray_DIM(rstd, 0) != N || PyArray_DIM(rstd, 1) != G) {
        PyErr_Format(PyExc_ValueError, "rstd must have shape (%zd, %zd) (rows of x, heads)",
                     (Py_ssize_t)rdims[0], (Py_ssize_t)rdims[1]);
        goto done;
    }
    if (!(dx = (PyArrayObject *)PyArray_NewCopy(dy, NPY_CORDER)) ||
        !(dw = tc_py_new(1, &PyArray_DIMS(w)[0], ty, 0)))
        goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_rmsnorm_heads_backward, PyArray_DATA(dx), W, PyArray_DATA(dw),
                 PyArray_DATA(dx), PyArray_DATA(x), W, PyArray_DATA(w), PyArray_DATA(rstd), N,
                 G, C, TC_WRITE(0) | TC_WRITE(1));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "rmsnorm_heads_backward")) goto done;
    result = Py_BuildValue("(OO)", dx, dw);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(rstd);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    return result;
}

/* softcap_forward[_ref](x (n,), cap) -> y (n,) */
static PyObject *softcap_forward_common(PyObject *args, int ref)
{
    PyObject *x_obj, *result = NULL;
    double cap;
    PyArrayObject *x = NULL, *y = NULL;
    if (!PyArg_ParseTuple(args, "Od", &x_obj, &cap)) return NULL;
    if (tc_py_check_real(cap, "cap", TC_PY_POSITIVE)) goto done;
    int ty;
    if (!(x = tc_py_float_input(x_obj, "x", 1, &ty))) goto done;
    const npy_intp n = PyArray_DIM(x, 0);
    if (!(y = tc_py_new(1, &n, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_softcap_forward_ref, PyArray_DATA(y), PyArray_DATA(x), n, cap)
             : TC_CALL(ty, tc_softcap_forward, PyArray_DATA(y), PyArray_DATA(x), n, cap);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "softcap_forward")) goto done;
    result = (PyObject *)y;
    y = NULL;
done:
    Py_XDECREF(x);
    Py_XDECREF(y);
    return result;
}

static PyObject *py_softcap_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return softcap_forward_common(args, 0);
}

static PyObject *py_softcap_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softcap_forward_common(args, 1);
}

/* softcap_backward(grad_output (n,), y (n,) the forward's output, cap) -> dx (n,);
 * softcap_backward_ref(grad_output (n,), x (n,) the forward's INPUT, cap) -> dx (n,) */
static PyObject *softcap_backward_common(PyObject *args, int ref)
{
    PyObject *dy_obj, *y_obj, *result = NULL;
    double cap;
    PyArrayObject *dy = NULL, *y = NULL, *dx = NULL;
    if (!PyArg_ParseTuple(args, "OOd", &dy_obj, &y_obj, &cap)) return NULL;
    if (tc_py_check_real(cap, "cap", TC_PY_POSITIVE)) goto done;
    int ty;
    const char *yname = ref ? "x" : "y";
    if (!(dy = tc_py_float_input(dy_obj, "grad_output", 1, &ty))) goto done;
    if (!(y = tc_py_float_array(y_obj, yname, ty, 1)) ||
        tc_py_check_same_shape(dy, "grad_output", y, yname))
        goto done;
    const npy_intp n = PyArray_DIM(y, 0);
    if (!(dx = tc_py_new(1, &n, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_softcap_backward_ref, PyArray_DATA(dx), PyArray_DATA(dy),
                       PyArray_DATA(y), n, cap)
             : TC_CALL(ty, tc_softcap_backward, PyArray_DATA(dx), PyArray_DATA(dy),
                       PyArray_DATA(y), n, cap, TC_WRITE(0));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "softcap_backward")) goto done;
    result = (PyObject *)dx;
    dx = NULL;
done:
    Py_XDECREF(dy);
    Py_XDECREF(y);
    Py_XDECREF(dx);
    return result;
}

static PyObject *py_softcap_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return softcap_backward_common(args, 0);
}

static PyObject *py_softcap_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return softcap_backward_common(args, 1);
}

PyMethodDef tc_methods_rmsnorm[] = {
    {"rmsnorm_forward", py_rmsnorm_forward, METH_VARARGS,
     "rmsnorm_forward(x (N,C), weight (C,), bias (C,)|None, eps) -> (out, rstd)"},
    {"rmsnorm_backward", py_rmsnorm_backward, METH_VARARGS,
     "rmsnorm_backward(grad_output (N,C), x (N,C), weight (C,), rstd|None, with_bias, eps) "
     "-> (dx, dweight, dbias|None)"},
    {"rmsnorm_forward_ref", py_rmsnorm_forward_ref, METH_VARARGS,
     "rmsnorm_forward_ref(x, weight, bias, eps) -> (out, rstd): test hook, the plain reference"},
    {"rmsnorm_backward_ref", py_rmsnorm_backward_ref, METH_VARARGS,
     "rmsnorm_backward_ref(grad_output, x, weight, rstd|None, with_bias, eps) -> (dx, dweight, "
     "dbias): test hook, the plain reference"},
    {"rmsnorm_heads", py_rmsnorm_heads, METH_VARARGS,
     "rmsnorm_heads(x (N,W), weight (C,), G, eps) -> (out (N,G*C), rstd (N,G)): test hook of "
     "the strided QK-norm kernel"},
    {"rmsnorm_heads_backward", py_rmsnorm_heads_backward, METH_VARARGS,
     "rmsnorm_heads_backward(grad_output (N,W), x (N,W), weight (C,), rstd (N,G), G) -> (dx "
     "(N,W), dweight (C,)): test hook, in place as the fast path"},
    {"softcap_forward", py_softcap_forward, METH_VARARGS,
     "softcap_forward(x (n,), cap) -> cap * tanh(x / cap)"},
    {"softcap_backward", py_softcap_backward, METH_VARARGS,
     "softcap_backward(grad_output (n,), y (n,) the forward's output, cap) -> dx"},
    {"softcap_forward_ref", py_softcap_forward_ref, METH_VARARGS,
     "softcap_forward_ref(x, cap): test hook, the plain reference"},
    {"softcap_backward_ref", py_softcap_backward_ref, METH_VARARGS,
     "softcap_backward_ref(grad_output, x (the forward's input), cap): test hook, the plain "
     "reference"},
    {NULL, NULL, 0, NULL},
};
