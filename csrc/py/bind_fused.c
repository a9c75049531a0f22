/* bind_fused.c: bindings of fused.c (linear + GELU, residual add + layernorm). */
#include "bind.h"

#include <math.h>
#include <stdio.h>

/* The fused forward of both bindings below: out (N,OC) = act(x (N,C) @ weight^T (OC,C) +
 * bias (OC,)|None) and a cache (N,OC) of kind `cache` (FUSED_NONE: none, FUSED_PRE: pre, the
 * GELUs only, FUSED_DACT: act'(pre)) -> (out, cache|None); `name` for errors. */
enum { FUSED_NONE, FUSED_PRE, FUSED_DACT };
static PyObject *fused_forward(const char *name, int act, int cache, PyObject *x_obj,
                               PyObject *w_obj, PyObject *b_obj)
{
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *w = NULL, *b = NULL, *out = NULL, *c = NULL;
    int ty;
    if (tc_py_linear_args(x_obj, w_obj, b_obj, NULL, &ty, &x, &w, &b, NULL)) goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    npy_intp dims[2] = {N, OC};
    if (!(out = tc_py_new(2, dims, ty, 0))) goto done;
    if (cache != FUSED_NONE && !(c = tc_py_new(2, dims, ty, 0))) goto done;
    void *cd = c ? PyArray_DATA(c) : NULL;
    const void *bd = b ? PyArray_DATA(b) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (cache == FUSED_PRE)
        st = TC_CALL(ty, tc_linear_gelu_forward, PyArray_DATA(out), cd, PyArray_DATA(x),
                     PyArray_DATA(w), bd, N, C, OC, act == TC_ACT_GELU_TANH);
    else
        st = TC_CALL(ty, tc_linear_activation_forward, act, PyArray_DATA(out), cd,
                     PyArray_DATA(x), PyArray_DATA(w), bd, N, C, OC);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, name)) goto done;
    result = Py_BuildValue("(OO)", out, c ? (PyObject *)c : Py_None);
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(out);
    Py_XDECREF(c);
    return result;
}

/* linear_gelu_forward(x (N,C), weight (OC,C), bias (OC,)|None, approximate_tanh, want)
 *   -> (out (N,OC), cache (N,OC)|None); want 0: no cache, 1: pre, 2: dact = gelu'(pre) */
static PyObject *py_linear_gelu_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *b_obj;
    int approx, want;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOii", &x_obj, &w_obj, &b_obj, &approx, &want)) return NULL;
    if (tc_py_check_flag(approx, "approximate_tanh")) return NULL;
    if (want < 0 || want > 2) {
        PyErr_Format(PyExc_ValueError, "want must be 0, 1 (pre) or 2 (dact), got %d", want);
        return NULL;
    }
    const int cache = want == 1 ? FUSED_PRE : want == 2 ? FUSED_DACT : FUSED_NONE;
    return fused_forward("linear_gelu_forward", approx ? TC_ACT_GELU_TANH : TC_ACT_GELU, cache,
                         x_obj, w_obj, b_obj);
}

/* linear_activation_forward(act, x (N,C), weight (OC,C), bias (OC,)|None, want_dact)
 *   -> (out (N,OC), dact (N,OC)|None): the activation table's fused pair of act (a TC_ACT_*
 *   index; ValueError naming activation if it has none) */
static PyObject *py_linear_activation_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *b_obj;
    int act, want;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOOp", &act, &x_obj, &w_obj, &b_obj, &want)) return NULL;
    if (tc_linear_activation_fused(act) != 1) {
        PyErr_Format(PyExc_ValueError,
                     "activation %d has no fused linear + activation pair "
                     "(tc_linear_activation_fused)", act);
        return NULL;
    }
    return fused_forward("linear_activation_forward", act, want ? FUSED_DACT : FUSED_NONE,
                         x_obj, w_obj, b_obj);
}

/* linear_gelu_backward(grad_output (N,OC), x (N,C), weight (OC,C), bias (OC,)|None,
 *                      cache (N,OC)|None, approximate_tanh, with_bias, cache_is_dact=0)
 *   -> (dx (N,C), dweight (OC,C), dbias (OC,)|None). cache: pre (None: recomputed), or
 *   with cache_is_dact gelu'(pre) from linear_gelu_forward(..., want=2). */
static PyObject *py_linear_gelu_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *x_obj, *w_obj, *b_obj, *p_obj, *result = NULL;
    int approx, with_bias, is_dact = 0;
    PyArrayObject *dy = NULL, *x = NULL, *w = NULL, *b = NULL, *pre = NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOip|p", &dy_obj, &x_obj, &w_obj, &b_obj, &p_obj, &approx,
                          &with_bias, &is_dact))
        return NULL;
    if (is_dact && p_obj == Py_None) {
        PyErr_SetString(PyExc_ValueError, "dact (the cache) is required with cache_is_dact");
        return NULL;
    }
    if (tc_py_check_flag(approx, "approximate_tanh")) goto done;
    int ty;
    if (tc_py_linear_args(x_obj, w_obj, b_obj, dy_obj, &ty, &x, &w, &b, &dy)) goto done;
    const npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    if (p_obj != Py_None) {
        if (!(pre = tc_py_float_array(p_obj, "pre", ty, 2))) goto done;
        if (tc_py_check_same_shape(pre, "pre", dy, "grad_output")) goto done;
    }
    npy_intp xdims[2] = {N, C}, wdims[2] = {OC, C}, bdims[1] = {OC};
    /* uninitialised: the kernel writes every gradient (no zeroing pass) */
    if (!(dx = tc_py_new(2, xdims, ty, 0)) || !(dw = tc_py_new(2, wdims, ty, 0))) goto done;
    if (with_bias && !(db = tc_py_new(1, bdims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (is_dact)
        st = TC_CALL(ty, tc_linear_backward_dact, PyArray_DATA(dx), PyArray_DATA(dw),
                     db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy), PyArray_DATA(pre),
                     PyArray_DATA(x), PyArray_DATA(w), N, C, OC, TC_WRITE_ALL);
    else
        st = TC_CALL(ty, tc_linear_gelu_backward, PyArray_DATA(dx), PyArray_DATA(dw),
                     db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy),
                     pre ? PyArray_DATA(pre) : NULL, PyArray_DATA(x), PyArray_DATA(w),
                     b ? PyArray_DATA(b) : NULL, N, C, OC, approx, TC_WRITE_ALL);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "linear_gelu_backward")) goto done;
    result = Py_BuildValue("(OOO)", dx, dw, db ? (PyObject *)db : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(pre);
    Py_XDECREF(dx);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

/* layernorm_residual_forward(x (N,C), r (N,C), weight (C,), bias (C,)|None, eps)
 *   -> (out (N,C), sum (N,C), mean (N,), rstd (N,)) */
static PyObject *py_layernorm_residual_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *r_obj, *w_obj, *b_obj, *result = NULL;
    double eps;
    PyArrayObject *x = NULL, *r = NULL, *w = NULL, *b = NULL;
    PyArrayObject *out = NULL, *sum = NULL, *mean = NULL, *rstd = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOd", &x_obj, &r_obj, &w_obj, &b_obj, &eps)) return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) goto done;
    int ty;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    if (!(r = tc_py_float_array(r_obj, "residual", ty, 2))) goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "x must have at least one channel (its last dim)");
        goto done;
    }
    if (tc_py_check_same_shape(r, "residual", x, "x")) goto done;
    if (tc_py_check_dim(w, "weight", 0, C, "the channels of x (its last dim)")) goto done;
    if (b_obj != Py_None) {
        if (!(b = tc_py_float_array(b_obj, "bias", ty, 1))) goto done;
        if (tc_py_check_dim(b, "bias", 0, C, "the channels of x (its last dim)")) goto done;
    }
    npy_intp xdims[2] = {N, C}, sdims[1] = {N};
    if (!(out = tc_py_new(2, xdims, ty, 0)) || !(sum = tc_py_new(2, xdims, ty, 0)) ||
        !(mean = tc_py_new(1, sdims, ty, 0)) || !(rstd = tc_py_new(1, sdims, ty, 0)))
        goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_layernorm_residual_forward, PyArray_DATA(out), PyArray_DATA(sum),
                 PyArray_DATA(mean), PyArray_DATA(rstd), PyArray_DATA(x), PyArray_DATA(r),
                 PyArray_DATA(w), b ? PyArray_DATA(b) : NULL, N, C, eps);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "layernorm_residual_forward")) goto done;
    result = Py_BuildValue("(OOOO)", out, sum, mean, rstd);
done:
    Py_XDECREF(x);
    Py_XDECREF(r);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(out);
    Py_XDECREF(sum);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    return result;
}

/* layernorm_residual_backward(grad_output (N,C), grad_sum (N,C)|None, sum (N,C),
 *                             weight (C,), mean (N,), rstd (N,), with_bias)
 *   -> (dx (N,C), dresidual (N,C), dweight (C,), dbias (C,)|None) */
static PyObject *py_layernorm_residual_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *ds_obj, *s_obj, *w_obj, *m_obj, *r_obj, *result = NULL;
    int with_bias;
    PyArrayObject *dy = NULL, *ds = NULL, *s = NULL, *w = NULL, *mean = NULL, *rstd = NULL;
    PyArrayObject *dx = NULL, *dr = NULL, *dw = NULL, *db = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOp", &dy_obj, &ds_obj, &s_obj, &w_obj, &m_obj, &r_obj,
                          &with_bias))
        return NULL;
    int ty;
    if (!(s = tc_py_float_input(s_obj, "sum", 2, &ty))) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, 2))) goto done;
    if (!(w = tc_py_float_array(w_obj, "weight", ty, 1))) goto done;
    if (!(mean = tc_py_float_array(m_obj, "mean", ty, 1))) goto done;
    if (!(rstd = tc_py_float_array(r_obj, "rstd", ty, 1))) goto done;
    npy_intp N = PyArray_DIM(s, 0), C = PyArray_DIM(s, 1);
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "sum must have at least one channel (its last dim)");
        goto done;
    }
    if (tc_py_check_same_shape(dy, "grad_output", s, "sum")) goto done;
    if (ds_obj != Py_None) {
        if (!(ds = tc_py_float_array(ds_obj, "grad_sum", ty, 2))) goto done;
        if (tc_py_check_same_shape(ds, "grad_sum", s, "sum")) goto done;
    }
    if (tc_py_check_dim(w, "weight", 0, C, "the channels of sum (its last dim)")) goto done;
    if (tc_py_check_dim(mean, "mean", 0, N, "the rows of sum")) goto done;
    if (tc_py_check_dim(rstd, "rstd", 0, N, "the rows of sum")) goto done;
    npy_intp xdims[2] = {N, C}, cdims[1] = {C};
    if (!(dx = tc_py_new(2, xdims, ty, 1)) || !(dr = tc_py_new(2, xdims, ty, 1)) ||
        !(dw = tc_py_new(1, cdims, ty, 1)))
        goto done;
    if (with_bias && !(db = tc_py_new(1, cdims, ty, 1))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_layernorm_residual_backward, PyArray_DATA(dx), PyArray_DATA(dr),
                 PyArray_DATA(dw), db ? PyArray_DATA(db) : NULL, PyArray_DATA(dy),
                 ds ? PyArray_DATA(ds) : NULL, PyArray_DATA(s), PyArray_DATA(w),
                 PyArray_DATA(mean), PyArray_DATA(rstd), N, C, TC_ACCUMULATE);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "layernorm_residual_backward")) goto done;
    result = Py_BuildValue("(OOOO)", dx, dr, dw, db ? (PyObject *)db : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(ds);
    Py_XDECREF(s);
    Py_XDECREF(w);
    Py_XDECREF(mean);
    Py_XDECREF(rstd);
    Py_XDECREF(dx);
    Py_XDECREF(dr);
    Py_XDECREF(dw);
    Py_XDECREF(db);
    return result;
}

/* Test hooks (positional), the plain references of fused_ref.h:
 * linear_gelu_forward_ref(x (N,C), weight (OC,C), bias (OC,) | None, approximate_tanh)
 *   -> (out (N,OC), pre (N,OC));
 * linear_gelu_backward_ref(grad_output (N,OC), pre (N,OC), x (N,C), weight (OC,C),
 *   approximate_tanh) -> (dx, dweight, dbias);
 * linear_activation_forward_ref(act, x, weight, bias | None) and
 *   linear_activation_backward_ref(act, grad_output, pre, x, weight): the same for any
 *   TC_ACT_* act (the GELU hooks are their GELU cases);
 * layernorm_residual_forward_ref(x (N,C), r (N,C), weight (C,), bias (C,) | None, eps)
 *   -> (out, sum, mean, rstd);
 * layernorm_residual_backward_ref(grad_output (N,C), dsum (N,C) | None, sum (N,C),
 *   weight (C,), mean (N,), rstd (N,)) -> (dx, dr, dweight, dbias) */

/* obj (None allowed if opt) as an array of dtype ty and shape (d0[, d1]) (ndim 1 if
 * d1 < 0); *a stays NULL for None. 0, or -1 with the exception naming `name`. */
static int ref_array(PyObject *obj, const char *name, int ty, npy_intp d0, npy_intp d1,
                     int opt, PyArrayObject **a)
{
    if (opt && obj == Py_None) return 0;
    if (!(*a = tc_py_float_array(obj, name, ty, d1 < 0 ? 1 : 2))) return -1;
    if (tc_py_check_dim(*a, name, 0, d0, "the rows of the first argument")) return -1;
    if (d1 >= 0 && tc_py_check_dim(*a, name, 1, d1, "the columns it must have")) return -1;
    return 0;
}

/* a tuple of n new arrays of dtype ty, shapes dims[k] (ndim 1 where dims[k][1] < 0), filled
 * by the caller after; the arrays go to out[k] */
static int ref_outputs(int n, npy_intp dims[][2], int ty, PyArrayObject **out)
{
    for (int k = 0; k < n; k++)
        if (!(out[k] = tc_py_new(dims[k][1] < 0 ? 1 : 2, dims[k], ty, 0))) return -1;
    return 0;
}

static PyObject *ref_result(int st, const char *kernel, int n, PyArrayObject **out)
{
    if (tc_py_status(st, kernel)) return NULL;
    PyObject *t = PyTuple_New(n);
    for (int k = 0; t && k < n; k++) PyTuple_SET_ITEM(t, k, Py_NewRef((PyObject *)out[k]));
    return t;
}

#define REF_FREE(arr)                                                   \
    for (size_t k_ = 0; k_ < sizeof arr / sizeof arr[0]; k_++) Py_XDECREF(arr[k_])

/* the forward reference of activation act (checked by the caller) */
static PyObject *lin_act_forward_ref(PyObject *x_obj, PyObject *w_obj, PyObject *b_obj, int act)
{
    PyObject *result = NULL;
    PyArrayObject *in[3] = {NULL, NULL, NULL}, *out[2] = {NULL, NULL};
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0 || !(in[0] = tc_py_float_array(x_obj, "x", ty, 2))) goto done;
    const npy_intp N = PyArray_DIM(in[0], 0), C = PyArray_DIM(in[0], 1);
    if (!(in[1] = tc_py_float_array(w_obj, "weight", ty, 2)) ||
        tc_py_check_dim(in[1], "weight", 1, C, "the channels of x"))
        goto done;
    const npy_intp OC = PyArray_DIM(in[1], 0);
    npy_intp dims[2][2] = {{N, OC}, {N, OC}};
    if (ref_array(b_obj, "bias", ty, OC, -1, 1, &in[2]) || ref_outputs(2, dims, ty, out))
        goto done;
    int st = TC_CALL(ty, tc_linear_activation_forward_ref, act, PyArray_DATA(out[0]),
                     PyArray_DATA(out[1]), PyArray_DATA(in[0]), PyArray_DATA(in[1]),
                     in[2] ? PyArray_DATA(in[2]) : NULL, N, C, OC);
    result = ref_result(st, "linear_activation_forward_ref", 2, out);
done:
    REF_FREE(in);
    REF_FREE(out);
    return result;
}

static PyObject *py_linear_gelu_forward_ref(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *b_obj;
    int approx;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOi", &x_obj, &w_obj, &b_obj, &approx)) return NULL;
    if (tc_py_check_flag(approx, "approximate_tanh")) return NULL;
    return lin_act_forward_ref(x_obj, w_obj, b_obj, approx ? TC_ACT_GELU_TANH : TC_ACT_GELU);
}

static int ref_check_act(int act)
{
    if (act >= 0 && act < TC_ACT_COUNT) return 0;
    PyErr_Format(PyExc_ValueError, "activation must be in [0, %d), got %d", TC_ACT_COUNT, act);
    return -1;
}

static PyObject *py_linear_activation_forward_ref(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *w_obj, *b_obj;
    int act;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOO", &act, &x_obj, &w_obj, &b_obj)) return NULL;
    if (ref_check_act(act)) return NULL;
    return lin_act_forward_ref(x_obj, w_obj, b_obj, act);
}

/* the backward reference of activation act (checked by the caller) */
static PyObject *lin_act_backward_ref(PyObject *dy_obj, PyObject *pre_obj, PyObject *x_obj,
                                      PyObject *w_obj, int act)
{
    PyObject *result = NULL;
    PyArrayObject *in[4] = {NULL, NULL, NULL, NULL}, *out[3] = {NULL, NULL, NULL};
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0 || !(in[0] = tc_py_float_array(dy_obj, "grad_output", ty, 2))) goto done;
    const npy_intp N = PyArray_DIM(in[0], 0), OC = PyArray_DIM(in[0], 1);
    if (ref_array(pre_obj, "pre", ty, N, OC, 0, &in[1]) ||
        !(in[2] = tc_py_float_array(x_obj, "x", ty, 2)) ||
        tc_py_check_dim(in[2], "x", 0, N, "the rows of grad_output"))
        goto done;
    const npy_intp C = PyArray_DIM(in[2], 1);
    npy_intp dims[3][2] = {{N, C}, {OC, C}, {OC, -1}};
    if (ref_array(w_obj, "weight", ty, OC, C, 0, &in[3]) || ref_outputs(3, dims, ty, out))
        goto done;
    int st = TC_CALL(ty, tc_linear_activation_backward_ref, act, PyArray_DATA(out[0]),
                     PyArray_DATA(out[1]), PyArray_DATA(out[2]), PyArray_DATA(in[0]),
                     PyArray_DATA(in[1]), PyArray_DATA(in[2]), PyArray_DATA(in[3]), N, C, OC);
    result = ref_result(st, "linear_activation_backward_ref", 3, out);
done:
    REF_FREE(in);
    REF_FREE(out);
    return result;
}

static PyObject *py_linear_gelu_backward_ref(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *pre_obj, *x_obj, *w_obj;
    int approx;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOi", &dy_obj, &pre_obj, &x_obj, &w_obj, &approx))
        return NULL;
    if (tc_py_check_flag(approx, "approximate_tanh")) return NULL;
    return lin_act_backward_ref(dy_obj, pre_obj, x_obj, w_obj,
                                approx ? TC_ACT_GELU_TANH : TC_ACT_GELU);
}

static PyObject *py_linear_activation_backward_ref(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *pre_obj, *x_obj, *w_obj;
    int act;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOOO", &act, &dy_obj, &pre_obj, &x_obj, &w_obj)) return NULL;
    if (ref_check_act(act)) return NULL;
    return lin_act_backward_ref(dy_obj, pre_obj, x_obj, w_obj, act);
}

static PyObject *py_layernorm_residual_forward_ref(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *r_obj, *w_obj, *b_obj, *result = NULL;
    PyArrayObject *in[4] = {NULL, NULL, NULL, NULL}, *out[4] = {NULL, NULL, NULL, NULL};
    double eps;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOd", &x_obj, &r_obj, &w_obj, &b_obj, &eps)) return NULL;
    if (tc_py_check_real(eps, "eps", TC_PY_NONNEG)) return NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0 || !(in[0] = tc_py_float_array(x_obj, "x", ty, 2))) goto done;
    const npy_intp N = PyArray_DIM(in[0], 0), C = PyArray_DIM(in[0], 1);
    npy_intp dims[4][2] = {{N, C}, {N, C}, {N, -1}, {N, -1}};
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "x must have at least one channel");
        goto done;
    }
    if (ref_array(r_obj, "r", ty, N, C, 0, &in[1]) || ref_array(w_obj, "weight", ty, C, -1, 0, &in[2]) ||
        ref_array(b_obj, "bias", ty, C, -1, 1, &in[3]) || ref_outputs(4, dims, ty, out))
        goto done;
    int st = TC_CALL(ty, tc_layernorm_residual_forward_ref, PyArray_DATA(out[0]),
                     PyArray_DATA(out[1]), PyArray_DATA(out[2]), PyArray_DATA(out[3]),
                     PyArray_DATA(in[0]), PyArray_DATA(in[1]), PyArray_DATA(in[2]),
                     in[3] ? PyArray_DATA(in[3]) : NULL, N, C, eps);
    result = ref_result(st, "layernorm_residual_forward_ref", 4, out);
done:
    REF_FREE(in);
    REF_FREE(out);
    return result;
}

static PyObject *py_layernorm_residual_backward_ref(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *ds_obj, *s_obj, *w_obj, *m_obj, *r_obj, *result = NULL;
    PyArrayObject *in[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    PyArrayObject *out[4] = {NULL, NULL, NULL, NULL};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO", &dy_obj, &ds_obj, &s_obj, &w_obj, &m_obj, &r_obj))
        return NULL;
    int ty = tc_py_float_type(dy_obj, "grad_output");
    if (ty < 0 || !(in[0] = tc_py_float_array(dy_obj, "grad_output", ty, 2))) goto done;
    const npy_intp N = PyArray_DIM(in[0], 0), C = PyArray_DIM(in[0], 1);
    npy_intp dims[4][2] = {{N, C}, {N, C}, {C, -1}, {C, -1}};
    if (C < 1) {
        PyErr_SetString(PyExc_ValueError, "grad_output must have at least one channel");
        goto done;
    }
    if (ref_array(ds_obj, "dsum", ty, N, C, 1, &in[1]) || ref_array(s_obj, "sum", ty, N, C, 0, &in[2]) ||
        ref_array(w_obj, "weight", ty, C, -1, 0, &in[3]) ||
        ref_array(m_obj, "mean", ty, N, -1, 0, &in[4]) ||
        ref_array(r_obj, "rstd", ty, N, -1, 0, &in[5]) || ref_outputs(4, dims, ty, out))
        goto done;
    int st = TC_CALL(ty, tc_layernorm_residual_backward_ref, PyArray_DATA(out[0]),
                     PyArray_DATA(out[1]), PyArray_DATA(out[2]), PyArray_DATA(out[3]),
                     PyArray_DATA(in[0]), in[1] ? PyArray_DATA(in[1]) : NULL,
                     PyArray_DATA(in[2]), PyArray_DATA(in[3]), PyArray_DATA(in[4]),
                     PyArray_DATA(in[5]), N, C);
    result = ref_result(st, "layernorm_residual_backward_ref", 4, out);
done:
    REF_FREE(in);
    REF_FREE(out);
    return result;
}
#undef REF_FREE

PyMethodDef tc_methods_fused[] = {
    {"linear_gelu_forward", py_linear_gelu_forward, METH_VARARGS,
     "linear_gelu_forward(x, weight, bias|None, approximate_tanh, want) -> (out, cache|None); "
     "want 0 none, 1 pre, 2 dact = gelu'(pre)"},
    {"linear_activation_forward", py_linear_activation_forward, METH_VARARGS,
     "linear_activation_forward(act, x, weight, bias|None, want_dact) -> (out, dact|None): "
     "the activation table's fused pair"},
    {"linear_gelu_backward", py_linear_gelu_backward, METH_VARARGS,
     "linear_gelu_backward(grad_output, x, weight, bias|None, pre|None, approximate_tanh, "
     "with_bias, cache_is_dact=False) -> (dx, dweight, dbias|None)"},
    {"layernorm_residual_forward", py_layernorm_residual_forward, METH_VARARGS,
     "layernorm_residual_forward(x, residual, weight, bias|None, eps) -> (out, sum, mean, rstd)"},
    {"layernorm_residual_backward", py_layernorm_residual_backward, METH_VARARGS,
     "layernorm_residual_backward(grad_output, grad_sum|None, sum, weight, mean, rstd, "
     "with_bias) -> (dx, dresidual, dweight, dbias|None)"},
    {"linear_gelu_forward_ref", py_linear_gelu_forward_ref, METH_VARARGS,
     "linear_gelu_forward_ref(x, weight, bias, approximate_tanh) -> (out, pre): test hook, "
     "the plain reference"},
    {"linear_activation_forward_ref", py_linear_activation_forward_ref, METH_VARARGS,
     "linear_activation_forward_ref(act, x, weight, bias|None) -> (out, pre): test hook, the "
     "plain reference of any activation's linear + activation"},
    {"linear_activation_backward_ref", py_linear_activation_backward_ref, METH_VARARGS,
     "linear_activation_backward_ref(act, grad_output, pre, x, weight) -> (dx, dweight, "
     "dbias): test hook, the plain reference"},
    {"linear_gelu_backward_ref", py_linear_gelu_backward_ref, METH_VARARGS,
     "linear_gelu_backward_ref(grad_output, pre, x, weight, approximate_tanh) -> (dx, dweight, "
     "dbias): test hook, the plain reference"},
    {"layernorm_residual_forward_ref", py_layernorm_residual_forward_ref, METH_VARARGS,
     "layernorm_residual_forward_ref(x, r, weight, bias, eps) -> (out, sum, mean, rstd): test "
     "hook, the plain reference"},
    {"layernorm_residual_backward_ref", py_layernorm_residual_backward_ref, METH_VARARGS,
     "layernorm_residual_backward_ref(grad_output, dsum, sum, weight, mean, rstd) -> (dx, dr, "
     "dweight, dbias): test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
