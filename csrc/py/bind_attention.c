/* bind_attention.c: bindings of attention.c (materialised scaled dot-product attention). */
#include "bind.h"

#include <math.h>

/* 0 if scale is finite, else -1 with ValueError naming it. */
static int check_scale(double scale)
{
    if (isfinite(scale)) return 0;
    PyErr_Format(PyExc_ValueError, "scale must be a finite number, got %s",
                 isnan(scale) ? "nan" : scale > 0 ? "inf" : "-inf");
    return -1;
}

/* q (BH,T,DK), k (BH,S,DK), v (BH,S,DV): converted and checked against each other. */
static int qkv_arrays(PyObject *q_obj, PyObject *k_obj, PyObject *v_obj, int ty,
                      PyArrayObject **q, PyArrayObject **k, PyArrayObject **v)
{
    if (!(*q = tc_py_float_array(q_obj, "q", ty, 3))) return -1;
    if (!(*k = tc_py_float_array(k_obj, "k", ty, 3))) return -1;
    if (!(*v = tc_py_float_array(v_obj, "v", ty, 3))) return -1;
    const npy_intp BH = PyArray_DIM(*q, 0), DK = PyArray_DIM(*q, 2), S = PyArray_DIM(*k, 1);
    if (tc_py_check_dim(*k, "k", 0, BH, "the batch-heads of q")) return -1;
    if (tc_py_check_dim(*k, "k", 2, DK, "DK (the last dim of q)")) return -1;
    if (tc_py_check_dim(*v, "v", 0, BH, "the batch-heads of q")) return -1;
    if (tc_py_check_dim(*v, "v", 1, S, "S (the keys of k)")) return -1;
    return 0;
}

/* attention_forward_ref(q (BH,T,DK), k (BH,S,DK), v (BH,S,DV), scale, causal)
 *   -> (out (BH,T,DV), lse (BH,T)) */
static PyObject *py_attention_forward_ref(PyObject *self, PyObject *args)
{
    PyObject *q_obj, *k_obj, *v_obj, *result = NULL;
    double scale;
    int causal;
    PyArrayObject *q = NULL, *k = NULL, *v = NULL, *out = NULL, *lse = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOdp", &q_obj, &k_obj, &v_obj, &scale, &causal)) return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (qkv_arrays(q_obj, k_obj, v_obj, ty, &q, &k, &v)) goto done;
    if (check_scale(scale)) goto done;
    const npy_intp BH = PyArray_DIM(q, 0), Tq = PyArray_DIM(q, 1), DK = PyArray_DIM(q, 2);
    const npy_intp S = PyArray_DIM(k, 1), DV = PyArray_DIM(v, 2);
    npy_intp odims[3] = {BH, Tq, DV}, ldims[2] = {BH, Tq};
    if (!(out = tc_py_new(3, odims, ty, 0)) || !(lse = tc_py_new(2, ldims, ty, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? tc_attention_forward_ref_f32(PyArray_DATA(out), PyArray_DATA(lse), PyArray_DATA(q),
                                       PyArray_DATA(k), PyArray_DATA(v), BH, Tq, S, DK, DV,
                                       (float)scale, causal)
        : tc_attention_forward_ref_f64(PyArray_DATA(out), PyArray_DATA(lse), PyArray_DATA(q),
                                       PyArray_DATA(k), PyArray_DATA(v), BH, Tq, S, DK, DV,
                                       scale, causal);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_forward_ref")) goto done;
    result = Py_BuildValue("(OO)", out, lse);
done:
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    return result;
}

/* attention_backward_ref(dout (BH,T,DV), q, k, v, out (BH,T,DV), lse (BH,T), scale, causal)
 *   -> (dq (BH,T,DK), dk (BH,S,DK), dv (BH,S,DV)) */
static PyObject *py_attention_backward_ref(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *q_obj, *k_obj, *v_obj, *o_obj, *l_obj, *result = NULL;
    double scale;
    int causal;
    PyArrayObject *dy = NULL, *q = NULL, *k = NULL, *v = NULL, *out = NULL, *lse = NULL;
    PyArrayObject *dq = NULL, *dk = NULL, *dv = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOdp", &dy_obj, &q_obj, &k_obj, &v_obj, &o_obj, &l_obj,
                          &scale, &causal))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (qkv_arrays(q_obj, k_obj, v_obj, ty, &q, &k, &v)) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, 3))) goto done;
    if (!(out = tc_py_float_array(o_obj, "out", ty, 3))) goto done;
    if (!(lse = tc_py_float_array(l_obj, "lse", ty, 2))) goto done;
    if (check_scale(scale)) goto done;
    const npy_intp BH = PyArray_DIM(q, 0), Tq = PyArray_DIM(q, 1), DK = PyArray_DIM(q, 2);
    const npy_intp S = PyArray_DIM(k, 1), DV = PyArray_DIM(v, 2);
    if (tc_py_check_dim(dy, "grad_output", 0, BH, "the batch-heads of q")) goto done;
    if (tc_py_check_dim(dy, "grad_output", 1, Tq, "T (the queries of q)")) goto done;
    if (tc_py_check_dim(dy, "grad_output", 2, DV, "DV (the last dim of v)")) goto done;
    if (tc_py_check_same_shape(out, "out", dy, "grad_output")) goto done;
    if (tc_py_check_dim(lse, "lse", 0, BH, "the batch-heads of q")) goto done;
    if (tc_py_check_dim(lse, "lse", 1, Tq, "T (the queries of q)")) goto done;
    npy_intp qdims[3] = {BH, Tq, DK}, kdims[3] = {BH, S, DK}, vdims[3] = {BH, S, DV};
    if (!(dq = tc_py_new(3, qdims, ty, 1)) || !(dk = tc_py_new(3, kdims, ty, 1)) ||
        !(dv = tc_py_new(3, vdims, ty, 1)))
        goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? tc_attention_backward_ref_f32(PyArray_DATA(dq), PyArray_DATA(dk), PyArray_DATA(dv),
                                        PyArray_DATA(dy), PyArray_DATA(q), PyArray_DATA(k),
                                        PyArray_DATA(v), PyArray_DATA(out), PyArray_DATA(lse),
                                        BH, Tq, S, DK, DV, (float)scale, causal)
        : tc_attention_backward_ref_f64(PyArray_DATA(dq), PyArray_DATA(dk), PyArray_DATA(dv),
                                        PyArray_DATA(dy), PyArray_DATA(q), PyArray_DATA(k),
                                        PyArray_DATA(v), PyArray_DATA(out), PyArray_DATA(lse),
                                        BH, Tq, S, DK, DV, scale, causal);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_backward_ref")) goto done;
    result = Py_BuildValue("(OOO)", dq, dk, dv);
done:
    Py_XDECREF(dy);
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    Py_XDECREF(dq);
    Py_XDECREF(dk);
    Py_XDECREF(dv);
    return result;
}

PyMethodDef tc_methods_attention[] = {
    {"attention_forward_ref", py_attention_forward_ref, METH_VARARGS,
     "attention_forward_ref(q (BH,T,DK), k (BH,S,DK), v (BH,S,DV), scale, causal) "
     "-> (out (BH,T,DV), lse (BH,T))"},
    {"attention_backward_ref", py_attention_backward_ref, METH_VARARGS,
     "attention_backward_ref(grad_output (BH,T,DV), q, k, v, out (BH,T,DV), lse (BH,T), scale, "
     "causal) -> (dq, dk, dv)"},
    {NULL, NULL, 0, NULL},
};
