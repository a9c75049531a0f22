/* bind_attention.c: bindings of attention.c (tiled and materialised scaled dot-product
 * attention, the KV-cache decode step). */
#include "bind.h"

#include <math.h>
#include <stdio.h>

/* The scalars shared by forward and backward: scale finite, causal a tc_causal, dropout_p
 * in [0, 1], seed an integer in [0, 2**64). */
static int check_options(double scale, int causal, double dropout_p, PyObject *seed_obj,
                         uint64_t *seed)
{
    if (tc_py_check_real(scale, "scale", TC_PY_FINITE) ||
        tc_py_check_option(TC_OPT_CAUSAL, causal, "causal") ||
        tc_py_check_real(dropout_p, "dropout_p", TC_PY_PROB))
        return -1;
    return tc_py_uint64(seed_obj, "seed", seed);
}

/* The optional block-sparse pattern: None (dense), or a tuple (block, window, stride,
 * global) of ints (tc_attention_sparse; errors name the config fields sparse_block, ...).
 * *out = sp filled, or NULL for None. */
static int sparse_arg(PyObject *obj, tc_attention_sparse *sp, const tc_attention_sparse **out)
{
    static const char *const names[4] = {"sparse_block", "sparse_window", "sparse_stride",
                                         "sparse_global"};
    static const int64_t mins[4] = {1, 1, 0, 0};
    int64_t v[4];
    *out = NULL;
    if (!obj || obj == Py_None) return 0;
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 4) {
        PyErr_Format(PyExc_TypeError, "sparse must be None or a tuple (block, window, stride, "
                     "global) of ints, got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    for (int i = 0; i < 4; i++)
        if (tc_py_int64_min(PyTuple_GET_ITEM(obj, i), names[i], mins[i], &v[i])) return -1;
    sp->block = v[0];
    sp->window = v[1];
    sp->stride = v[2];
    sp->global = v[3];
    *out = sp;
    return 0;
}

/* 0 if k's heads (dim 1) NKV divide NH, the heads of q (grouped-query attention; NKV = NH
 * the usual case), else -1 with ValueError naming it. */
static int check_kv_heads(PyArrayObject *k, const char *name, npy_intp NH)
{
    const npy_intp NKV = PyArray_DIM(k, 1);
    if (NKV == NH || (NKV > 0 && NH % NKV == 0)) return 0;
    PyErr_Format(PyExc_ValueError, "%s must have NH = %ld heads (those of q) or a divisor of "
                 "it (grouped-query attention) as dim 1, got %ld", name, (long)NH, (long)NKV);
    return -1;
}

/* q (B,NH,T,DK), k (B,NKV,S,DK), v (B,NKV,S,DV) (NKV = NH, or a divisor of it: grouped
 * query heads): converted and checked against each other. */
static int qkv_arrays(PyObject *q_obj, PyObject *k_obj, PyObject *v_obj, int ty,
                      PyArrayObject **q, PyArrayObject **k, PyArrayObject **v)
{
    if (!(*q = tc_py_float_array(q_obj, "q", ty, 4))) return -1;
    if (!(*k = tc_py_float_array(k_obj, "k", ty, 4))) return -1;
    if (!(*v = tc_py_float_array(v_obj, "v", ty, 4))) return -1;
    const npy_intp B = PyArray_DIM(*q, 0), NH = PyArray_DIM(*q, 1), DK = PyArray_DIM(*q, 3);
    const npy_intp S = PyArray_DIM(*k, 2), NKV = PyArray_DIM(*k, 1);
    if (tc_py_check_dim(*k, "k", 0, B, "B (the batch of q)")) return -1;
    if (check_kv_heads(*k, "k", NH)) return -1;
    if (tc_py_check_dim(*k, "k", 3, DK, "DK (the last dim of q)")) return -1;
    if (tc_py_check_dim(*v, "v", 0, B, "B (the batch of q)")) return -1;
    if (tc_py_check_dim(*v, "v", 1, NKV, "NKV (the heads of k)")) return -1;
    if (tc_py_check_dim(*v, "v", 2, S, "S (the keys of k)")) return -1;
    return 0;
}

/* A boolean array (dtype bool exactly) with ndim dims, C-contiguous; new reference. */
static PyArrayObject *bool_array(PyObject *obj, const char *name, int ndim)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj), *out = NULL;
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a boolean array, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (PyArray_TYPE(a) != NPY_BOOL) {
        PyErr_Format(PyExc_TypeError, "%s must be a boolean array (True = attend), got dtype "
                     "%s", name, PyArray_DESCR(a)->typeobj->tp_name);
        goto done;
    }
    if (PyArray_NDIM(a) != ndim) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "%s must be %d-dimensional, got shape %s", name, ndim,
                     tc_py_shape_str(a, buf, sizeof buf));
        goto done;
    }
    out = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)a, NPY_BOOL, NPY_ARRAY_IN_ARRAY);
done:
    Py_DECREF(a);
    return out;
}

/* Element strides of a 4-D mask broadcast to full (B,NH,T,S): each dim must be 1 (stride 0)
 * or the full size. */
static int mask_strides(PyArrayObject *a, const char *name, const npy_intp full[4],
                        int64_t strides[4])
{
    int64_t st = 1;
    for (int ax = 3; ax >= 0; ax--) {
        const npy_intp d = PyArray_DIM(a, ax);
        if (d != full[ax] && d != 1) {
            char buf[128];
            PyErr_Format(PyExc_ValueError, "%s must have shape (B, NH, T, S) = (%ld, %ld, %ld, "
                         "%ld) with 1 for broadcast dims, got %s", name, (long)full[0],
                         (long)full[1], (long)full[2], (long)full[3],
                         tc_py_shape_str(a, buf, sizeof buf));
            return -1;
        }
        strides[ax] = d == 1 ? 0 : st;
        st *= (int64_t)d;
    }
    return 0;
}

/* The optional masks: keep (4-D bool) and bias (4-D float, dtype ty) broadcast to
 * (B,NH,T,S), key_padding (B,S) bool; None means absent. Fills m. */
static int mask_arrays(PyObject *keep_obj, PyObject *bias_obj, PyObject *kp_obj, int ty,
                       const npy_intp full[4], PyArrayObject **keep, PyArrayObject **bias,
                       PyArrayObject **kp, tc_attention_masks *m)
{
    memset(m, 0, sizeof *m);
    if (keep_obj != Py_None) {
        if (!(*keep = bool_array(keep_obj, "attn_mask", 4))) return -1;
        if (mask_strides(*keep, "attn_mask", full, m->keep_strides)) return -1;
        m->keep = (const uint8_t *)PyArray_DATA(*keep);
    }
    if (bias_obj != Py_None) {
        if (!(*bias = tc_py_float_array(bias_obj, "attn_mask", ty, 4))) return -1;
        if (mask_strides(*bias, "attn_mask", full, m->bias_strides)) return -1;
        const npy_intp n = PyArray_SIZE(*bias);
        for (npy_intp i = 0; i < n; i++) {
            const double x = ty == NPY_FLOAT ? (double)((const float *)PyArray_DATA(*bias))[i]
                                             : ((const double *)PyArray_DATA(*bias))[i];
            if (isnan(x) || x == INFINITY) {
                PyErr_SetString(PyExc_ValueError, "attn_mask (a float mask) must hold finite "
                                "values or -inf, got nan or +inf");
                return -1;
            }
        }
        m->bias = PyArray_DATA(*bias);
    }
    if (kp_obj != Py_None) {
        if (!(*kp = bool_array(kp_obj, "key_padding_mask", 2))) return -1;
        if (tc_py_check_dim(*kp, "key_padding_mask", 0, full[0], "B (the batch of q)"))
            return -1;
        if (tc_py_check_dim(*kp, "key_padding_mask", 1, full[3], "S (the keys of k)"))
            return -1;
        m->key_padding = (const uint8_t *)PyArray_DATA(*kp);
    }
    return 0;
}

/* attention_forward[_ref](q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), keep, bias,
 *   key_padding, scale, causal, dropout_p, seed) -> (out (B,NH,T,DV), lse (B,NH,T)) */
static PyObject *forward_common(PyObject *args, int ref)
{
    PyObject *q_obj, *k_obj, *v_obj, *keep_obj, *bias_obj, *kp_obj, *seed_obj, *result = NULL;
    PyObject *sp_obj = Py_None;
    double scale, dropout_p;
    int causal;
    uint64_t seed = 0;
    PyArrayObject *q = NULL, *k = NULL, *v = NULL, *keep = NULL, *bias = NULL, *kp = NULL;
    PyArrayObject *out = NULL, *lse = NULL;
    tc_attention_masks m;
    tc_attention_sparse sp;
    if (!PyArg_ParseTuple(args, "OOOOOOdidO|O", &q_obj, &k_obj, &v_obj, &keep_obj, &bias_obj,
                          &kp_obj, &scale, &causal, &dropout_p, &seed_obj, &sp_obj))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (qkv_arrays(q_obj, k_obj, v_obj, ty, &q, &k, &v)) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2), DV = PyArray_DIM(v, 3);
    const npy_intp NKV = PyArray_DIM(k, 1);
    const npy_intp full[4] = {B, NH, Tq, S};
    if (mask_arrays(keep_obj, bias_obj, kp_obj, ty, full, &keep, &bias, &kp, &m)) goto done;
    if (sparse_arg(sp_obj, &sp, &m.sparse)) goto done;
    if (check_options(scale, causal, dropout_p, seed_obj, &seed)) goto done;
    npy_intp odims[4] = {B, NH, Tq, DV}, ldims[3] = {B, NH, Tq};
    tc_attention_layout lay;
    tc_attention_layout_grouped(&lay, NH, NKV, Tq, S, DK, DV);
    if (!(out = tc_py_new(4, odims, ty, 0)) || !(lse = tc_py_new(3, ldims, ty, 0))) goto done;
    int st;
    void *po = PyArray_DATA(out), *pl = PyArray_DATA(lse);
    const void *pq = PyArray_DATA(q), *pk = PyArray_DATA(k), *pv = PyArray_DATA(v);
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_attention_forward_ref_grouped, po, pl, pq, pk, pv, &m, B, NH,
                       NKV, Tq, S, DK, DV, scale, causal, dropout_p, seed)
             : TC_CALL(ty, tc_attention_forward_strided, po, pl, pq, pk, pv, &m, &lay, B, NH,
                       Tq, S, DK, DV, scale, causal, dropout_p, seed);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, ref ? "attention_forward_ref" : "attention_forward")) goto done;
    result = Py_BuildValue("(OO)", out, lse);
done:
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(keep);
    Py_XDECREF(bias);
    Py_XDECREF(kp);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    return result;
}

static PyObject *py_attention_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return forward_common(args, 0);
}

static PyObject *py_attention_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return forward_common(args, 1);
}

/* 0 if a has the given 4 dims, else -1 with ValueError naming it. */
static int check_dims4(PyArrayObject *a, const char *name, npy_intp d0, npy_intp d1,
                       npy_intp d2, npy_intp d3)
{
    const npy_intp want[4] = {d0, d1, d2, d3};
    for (int ax = 0; ax < 4; ax++) {
        if (PyArray_DIM(a, ax) != want[ax]) {
            char buf[128];
            PyErr_Format(PyExc_ValueError, "%s must have shape (%ld, %ld, %ld, %ld), got %s",
                         name, (long)d0, (long)d1, (long)d2, (long)d3,
                         tc_py_shape_str(a, buf, sizeof buf));
            return -1;
        }
    }
    return 0;
}

/* 0 if lse is (B,NH,T), else -1 with ValueError naming it. */
static int check_lse(PyArrayObject *lse, npy_intp B, npy_intp NH, npy_intp Tq)
{
    return tc_py_check_dim(lse, "lse", 0, B, "B (the batch of q)") ||
                   tc_py_check_dim(lse, "lse", 1, NH, "NH (the heads of q)") ||
                   tc_py_check_dim(lse, "lse", 2, Tq, "T (the queries of q)")
               ? -1
               : 0;
}

/* The backward of both bindings below, without the GIL: the reference kernel (ref), or the
 * tiled one at layout's strides (NULL: contiguous) with the given write flag. */
static int backward_run(int ty, int ref, PyArrayObject *dq, PyArrayObject *dk, PyArrayObject *dv,
                        PyArrayObject *dy, PyArrayObject *q, PyArrayObject *k, PyArrayObject *v,
                        PyArrayObject *out, PyArrayObject *lse, const tc_attention_masks *m,
                        const tc_attention_layout *lay, double scale, int causal,
                        double dropout_p, uint64_t seed, int write)
{
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2), DV = PyArray_DIM(v, 3);
    const npy_intp NKV = PyArray_DIM(k, 1);
    tc_attention_layout grouped; /* the contiguous (grouped) layout of a NULL lay */
    tc_attention_layout_grouped(&grouped, NH, NKV, Tq, S, DK, DV);
    void *pdq = PyArray_DATA(dq), *pdk = PyArray_DATA(dk), *pdv = PyArray_DATA(dv);
    const void *pdy = PyArray_DATA(dy), *pq = PyArray_DATA(q), *pk = PyArray_DATA(k);
    const void *pv = PyArray_DATA(v), *po = PyArray_DATA(out), *pl = PyArray_DATA(lse);
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_attention_backward_ref_grouped, pdq, pdk, pdv, pdy, pq, pk, pv,
                       po, pl, m, B, NH, NKV, Tq, S, DK, DV, scale, causal, dropout_p, seed,
                       write)
             : TC_CALL(ty, tc_attention_backward_strided, pdq, pdk, pdv, pdy, pq, pk, pv, po,
                       pl, m, lay ? lay : &grouped, B, NH, Tq, S, DK, DV, scale, causal,
                       dropout_p, seed, write);
    Py_END_ALLOW_THREADS
    return tc_py_status(st, ref ? "attention_backward_ref"
                                : lay ? "attention_backward_strided" : "attention_backward");
}

/* attention_backward[_ref](dout (B,NH,T,DV), q, k, v, out (B,NH,T,DV), lse (B,NH,T), keep,
 *   bias, key_padding, scale, causal, dropout_p, seed) -> (dq, dk, dv) */
static PyObject *backward_common(PyObject *args, int ref)
{
    PyObject *dy_obj, *q_obj, *k_obj, *v_obj, *o_obj, *l_obj, *keep_obj, *bias_obj, *kp_obj;
    PyObject *seed_obj, *result = NULL, *sp_obj = Py_None;
    double scale, dropout_p;
    int causal;
    uint64_t seed = 0;
    PyArrayObject *dy = NULL, *q = NULL, *k = NULL, *v = NULL, *out = NULL, *lse = NULL;
    PyArrayObject *keep = NULL, *bias = NULL, *kp = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    tc_attention_masks m;
    tc_attention_sparse sp;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOdidO|O", &dy_obj, &q_obj, &k_obj, &v_obj, &o_obj,
                          &l_obj, &keep_obj, &bias_obj, &kp_obj, &scale, &causal, &dropout_p,
                          &seed_obj, &sp_obj))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (qkv_arrays(q_obj, k_obj, v_obj, ty, &q, &k, &v)) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, 4))) goto done;
    if (!(out = tc_py_float_array(o_obj, "out", ty, 4))) goto done;
    if (!(lse = tc_py_float_array(l_obj, "lse", ty, 3))) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2), DV = PyArray_DIM(v, 3);
    if (check_dims4(dy, "grad_output", B, NH, Tq, DV) || check_dims4(out, "out", B, NH, Tq, DV) ||
        check_lse(lse, B, NH, Tq))
        goto done;
    const npy_intp full[4] = {B, NH, Tq, S};
    if (mask_arrays(keep_obj, bias_obj, kp_obj, ty, full, &keep, &bias, &kp, &m)) goto done;
    if (sparse_arg(sp_obj, &sp, &m.sparse)) goto done;
    if (check_options(scale, causal, dropout_p, seed_obj, &seed)) goto done;
    const npy_intp NKV = PyArray_DIM(k, 1);
    npy_intp qdims[4] = {B, NH, Tq, DK}, kdims[4] = {B, NKV, S, DK}, vdims[4] = {B, NKV, S, DV};
    if (!(dq = tc_py_new(4, qdims, ty, 1)) || !(dk = tc_py_new(4, kdims, ty, 1)) ||
        !(dv = tc_py_new(4, vdims, ty, 1)))
        goto done;
    if (backward_run(ty, ref, dq, dk, dv, dy, q, k, v, out, lse, &m, NULL, scale, causal,
                     dropout_p, seed, TC_ACCUMULATE))
        goto done;
    result = Py_BuildValue("(OOO)", dq, dk, dv);
done:
    Py_XDECREF(dy);
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    Py_XDECREF(keep);
    Py_XDECREF(bias);
    Py_XDECREF(kp);
    Py_XDECREF(dq);
    Py_XDECREF(dk);
    Py_XDECREF(dv);
    return result;
}

static PyObject *py_attention_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return backward_common(args, 0);
}

static PyObject *py_attention_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return backward_common(args, 1);
}

/* attention_decode(q (B,NH,TN,DK), k_new (B,NKV,TN,DK), v_new (B,NKV,TN,DV),
 *   k_cache (B,NKV,Smax,DK), v_cache (B,NKV,Smax,DV), pos, key_padding (B,pos+TN) or None,
 *   scale) -> out (B,NH,TN,DV); the caches are updated in place; NKV = NH or a divisor of it
 *   (grouped-query attention) */
static PyObject *py_attention_decode(PyObject *self, PyObject *args)
{
    PyObject *q_obj, *k_obj, *v_obj, *kc_obj, *vc_obj, *pos_obj, *kp_obj, *result = NULL;
    PyObject *sp_obj = Py_None;
    double scale;
    int64_t pos;
    PyArrayObject *q = NULL, *k = NULL, *v = NULL, *kc = NULL, *vc = NULL, *kp = NULL;
    PyArrayObject *out = NULL;
    tc_attention_sparse sp;
    const tc_attention_sparse *psp = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOd|O", &q_obj, &k_obj, &v_obj, &kc_obj, &vc_obj,
                          &pos_obj, &kp_obj, &scale, &sp_obj))
        return NULL;
    int ty;
    if (!(q = tc_py_float_input(q_obj, "q", 4, &ty))) goto done;
    if (!(k = tc_py_float_array(k_obj, "k", ty, 4))) goto done;
    if (!(v = tc_py_float_array(v_obj, "v", ty, 4))) goto done;
    if (!(kc = tc_py_inout_array(kc_obj, "k_cache", ty))) goto done;
    if (!(vc = tc_py_inout_array(vc_obj, "v_cache", ty))) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), TN = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), NKV = PyArray_DIM(k, 1);
    if (check_kv_heads(k, "k", NH) || check_dims4(k, "k", B, NKV, TN, DK)) goto done;
    if (tc_py_check_dim(v, "v", 0, B, "B (the batch of q)")) goto done;
    if (tc_py_check_dim(v, "v", 1, NKV, "NKV (the heads of k)")) goto done;
    if (tc_py_check_dim(v, "v", 2, TN, "TN (the new positions of q)")) goto done;
    const npy_intp DV = PyArray_DIM(v, 3);
    if (PyArray_NDIM(kc) != 4 || PyArray_NDIM(vc) != 4) {
        PyErr_SetString(PyExc_ValueError, "k_cache and v_cache must be 4-dimensional "
                        "(B, NH, Smax, DK) and (B, NH, Smax, DV)");
        goto done;
    }
    const npy_intp Smax = PyArray_DIM(kc, 2);
    if (tc_py_check_dim(kc, "k_cache", 0, B, "B (the batch of q)")) goto done;
    if (tc_py_check_dim(kc, "k_cache", 1, NKV, "NKV (the heads of k)")) goto done;
    if (tc_py_check_dim(kc, "k_cache", 3, DK, "DK (the last dim of q)")) goto done;
    if (tc_py_check_dim(vc, "v_cache", 0, B, "B (the batch of q)")) goto done;
    if (tc_py_check_dim(vc, "v_cache", 1, NKV, "NKV (the heads of k)")) goto done;
    if (tc_py_check_dim(vc, "v_cache", 2, Smax, "Smax (the positions of k_cache)")) goto done;
    if (tc_py_check_dim(vc, "v_cache", 3, DV, "DV (the last dim of v)")) goto done;
    if (tc_py_int64(pos_obj, "pos", &pos)) goto done;
    if (pos < 0 || pos > (int64_t)(Smax - TN)) {
        PyErr_Format(PyExc_ValueError, "pos must be in [0, Smax - TN] = [0, %ld] (the cache "
                     "holds Smax = %ld positions, %ld new), got %lld", (long)(Smax - TN),
                     (long)Smax, (long)TN, (long long)pos);
        goto done;
    }
    if (kp_obj != Py_None) {
        if (!(kp = bool_array(kp_obj, "key_padding_mask", 2))) goto done;
        if (tc_py_check_dim(kp, "key_padding_mask", 0, B, "B (the batch of q)")) goto done;
        if (tc_py_check_dim(kp, "key_padding_mask", 1, (npy_intp)pos + TN,
                            "pos + TN (the cached positions after this step)"))
            goto done;
    }
    if (tc_py_check_real(scale, "scale", TC_PY_FINITE)) goto done;
    if (sparse_arg(sp_obj, &sp, &psp)) goto done;
    npy_intp odims[4] = {B, NH, TN, DV};
    if (!(out = tc_py_new(4, odims, ty, 0))) goto done;
    int st;
    void *po = PyArray_DATA(out), *pkc = PyArray_DATA(kc), *pvc = PyArray_DATA(vc);
    const void *pq = PyArray_DATA(q), *pk = PyArray_DATA(k), *pv = PyArray_DATA(v);
    const uint8_t *pkp = kp ? (const uint8_t *)PyArray_DATA(kp) : NULL;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_attention_decode_grouped, po, pkc, pvc, pq, pk, pv, pkp, psp, NULL, B,
                 NH, NKV, TN, Smax, pos, DK, DV, scale);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_decode")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(kc);
    Py_XDECREF(vc);
    Py_XDECREF(kp);
    Py_XDECREF(out);
    return result;
}

/* A 4-D ndarray used in place at its own strides (no copy): dtype ty exactly, aligned,
 * native byte order, element strides (multiples of the item size) and a contiguous last
 * dim; writeable when `out`. Its strides go to st (b, h, t). New reference or NULL. */
static PyArrayObject *strided_view(PyObject *obj, const char *name, int ty, int out,
                                   tc_attention_strides *st)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array (used at its strides), got "
                     "%s", name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != ty) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s (the dtype of q), got %s", name,
                     ty == NPY_FLOAT ? "float32" : "float64",
                     PyArray_DESCR(a)->typeobj->tp_name);
        return NULL;
    }
    if (PyArray_NDIM(a) != 4) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "%s must be 4-dimensional, got shape %s", name,
                     tc_py_shape_str(a, buf, sizeof buf));
        return NULL;
    }
    const npy_intp isz = PyArray_ITEMSIZE(a);
    if (PyArray_SIZE(a) == 0) { /* nothing is read or written: any strides */
        st->b = st->h = st->t = 0;
        Py_INCREF(a);
        return a;
    }
    int ok = PyArray_ISALIGNED(a) && PyArray_ISNOTSWAPPED(a);
    for (int ax = 0; ax < 4 && ok; ax++) ok = PyArray_STRIDE(a, ax) % isz == 0;
    if (ok && PyArray_DIM(a, 3) > 1) ok = PyArray_STRIDE(a, 3) == isz;
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s must be an aligned native array with a contiguous "
                     "last dim and element strides", name);
        return NULL;
    }
    if (out && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writeable (it is written in place)", name);
        return NULL;
    }
    st->b = (int64_t)(PyArray_STRIDE(a, 0) / isz);
    st->h = (int64_t)(PyArray_STRIDE(a, 1) / isz);
    st->t = (int64_t)(PyArray_STRIDE(a, 2) / isz);
    Py_INCREF(a);
    return a;
}


/* attention_forward_strided(q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), out (B,NH,T,DV),
 *   keep, bias, key_padding, scale, causal, dropout_p, seed) -> lse (B,NH,T): the tiled
 * forward reading q, k, v and writing out in place, each at its own strides (views) */
static PyObject *py_attention_forward_strided(PyObject *self, PyObject *args)
{
    PyObject *q_obj, *k_obj, *v_obj, *o_obj, *keep_obj, *bias_obj, *kp_obj, *seed_obj;
    PyObject *result = NULL, *sp_obj = Py_None;
    double scale, dropout_p;
    int causal;
    uint64_t seed = 0;
    PyArrayObject *q = NULL, *k = NULL, *v = NULL, *out = NULL, *keep = NULL, *bias = NULL;
    PyArrayObject *kp = NULL, *lse = NULL;
    tc_attention_masks m;
    tc_attention_sparse sp;
    tc_attention_layout lay;
    (void)self;
    memset(&lay, 0, sizeof lay);
    if (!PyArg_ParseTuple(args, "OOOOOOOdidO|O", &q_obj, &k_obj, &v_obj, &o_obj, &keep_obj,
                          &bias_obj, &kp_obj, &scale, &causal, &dropout_p, &seed_obj, &sp_obj))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (!(q = strided_view(q_obj, "q", ty, 0, &lay.q))) goto done;
    if (!(k = strided_view(k_obj, "k", ty, 0, &lay.k))) goto done;
    if (!(v = strided_view(v_obj, "v", ty, 0, &lay.v))) goto done;
    if (!(out = strided_view(o_obj, "out", ty, 1, &lay.out))) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2), DV = PyArray_DIM(v, 3);
    const npy_intp NKV = PyArray_DIM(k, 1);
    if (check_kv_heads(k, "k", NH) || check_dims4(k, "k", B, NKV, S, DK) ||
        check_dims4(v, "v", B, NKV, S, DV) || check_dims4(out, "out", B, NH, Tq, DV))
        goto done;
    lay.kv_heads = NKV;
    const npy_intp full[4] = {B, NH, Tq, S};
    if (mask_arrays(keep_obj, bias_obj, kp_obj, ty, full, &keep, &bias, &kp, &m)) goto done;
    if (sparse_arg(sp_obj, &sp, &m.sparse)) goto done;
    if (check_options(scale, causal, dropout_p, seed_obj, &seed)) goto done;
    npy_intp ldims[3] = {B, NH, Tq};
    if (!(lse = tc_py_new(3, ldims, ty, 0))) goto done;
    int st;
    void *po = PyArray_DATA(out), *pl = PyArray_DATA(lse);
    const void *pq = PyArray_DATA(q), *pk = PyArray_DATA(k), *pv = PyArray_DATA(v);
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_attention_forward_strided, po, pl, pq, pk, pv, &m, &lay, B, NH, Tq, S,
                 DK, DV, scale, causal, dropout_p, seed);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_forward_strided")) goto done;
    result = (PyObject *)lse;
    lse = NULL;
done:
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(out);
    Py_XDECREF(keep);
    Py_XDECREF(bias);
    Py_XDECREF(kp);
    Py_XDECREF(lse);
    return result;
}

/* attention_backward_strided(dq, dk, dv, grad_output, q, k, v, out, lse (B,NH,T), keep,
 *   bias, key_padding, scale, causal, dropout_p, seed, write) -> None: the tiled
 * backward, every 4-D operand at its own strides; dq, dk, dv written in place or added to,
 * as the bits of write (0..7, TC_WRITE(0/1/2) = dq/dk/dv) say */
static PyObject *py_attention_backward_strided(PyObject *self, PyObject *args)
{
    PyObject *dq_obj, *dk_obj, *dv_obj, *dy_obj, *q_obj, *k_obj, *v_obj, *o_obj, *l_obj;
    PyObject *keep_obj, *bias_obj, *kp_obj, *seed_obj, *result = NULL, *sp_obj = Py_None;
    double scale, dropout_p;
    int causal, write;
    uint64_t seed = 0;
    PyArrayObject *dq = NULL, *dk = NULL, *dv = NULL, *dy = NULL, *q = NULL, *k = NULL;
    PyArrayObject *v = NULL, *out = NULL, *lse = NULL, *keep = NULL, *bias = NULL, *kp = NULL;
    tc_attention_masks m;
    tc_attention_sparse sp;
    tc_attention_layout lay;
    (void)self;
    memset(&lay, 0, sizeof lay);
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOdidOi|O", &dq_obj, &dk_obj, &dv_obj, &dy_obj,
                          &q_obj, &k_obj, &v_obj, &o_obj, &l_obj, &keep_obj, &bias_obj,
                          &kp_obj, &scale, &causal, &dropout_p, &seed_obj, &write, &sp_obj))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (!(q = strided_view(q_obj, "q", ty, 0, &lay.q))) goto done;
    if (!(k = strided_view(k_obj, "k", ty, 0, &lay.k))) goto done;
    if (!(v = strided_view(v_obj, "v", ty, 0, &lay.v))) goto done;
    if (!(out = strided_view(o_obj, "out", ty, 0, &lay.out))) goto done;
    if (!(dy = strided_view(dy_obj, "grad_output", ty, 0, &lay.dout))) goto done;
    if (!(dq = strided_view(dq_obj, "dq", ty, 1, &lay.dq))) goto done;
    if (!(dk = strided_view(dk_obj, "dk", ty, 1, &lay.dk))) goto done;
    if (!(dv = strided_view(dv_obj, "dv", ty, 1, &lay.dv))) goto done;
    if (!(lse = tc_py_float_array(l_obj, "lse", ty, 3))) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2), DV = PyArray_DIM(v, 3);
    const npy_intp NKV = PyArray_DIM(k, 1);
    if (check_kv_heads(k, "k", NH) || check_dims4(k, "k", B, NKV, S, DK) ||
        check_dims4(v, "v", B, NKV, S, DV) || check_dims4(out, "out", B, NH, Tq, DV) ||
        check_dims4(dy, "grad_output", B, NH, Tq, DV) || check_dims4(dq, "dq", B, NH, Tq, DK) ||
        check_dims4(dk, "dk", B, NKV, S, DK) || check_dims4(dv, "dv", B, NKV, S, DV))
        goto done;
    lay.kv_heads = NKV;
    if (check_lse(lse, B, NH, Tq)) goto done;
    const npy_intp full[4] = {B, NH, Tq, S};
    if (mask_arrays(keep_obj, bias_obj, kp_obj, ty, full, &keep, &bias, &kp, &m)) goto done;
    if (sparse_arg(sp_obj, &sp, &m.sparse)) goto done;
    if (check_options(scale, causal, dropout_p, seed_obj, &seed)) goto done;
    if (tc_py_check_write(write, 3, "write")) goto done;
    if (backward_run(ty, 0, dq, dk, dv, dy, q, k, v, out, lse, &m, &lay, scale, causal,
                     dropout_p, seed, write))
        goto done;
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(dq);
    Py_XDECREF(dk);
    Py_XDECREF(dv);
    Py_XDECREF(dy);
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    Py_XDECREF(keep);
    Py_XDECREF(bias);
    Py_XDECREF(kp);
    return result;
}

/* attention_probs(q (B,NH,T,DK), k (B,NH,S,DK), lse (B,NH,T), keep, bias, key_padding,
 *   scale, causal) -> P (B,NH,T,S): the (pre-dropout) probabilities of the forward that
 * returned lse with these masks, scale and causal; q and k read at their own strides */
static PyObject *py_attention_probs(PyObject *self, PyObject *args)
{
    PyObject *q_obj, *k_obj, *l_obj, *keep_obj, *bias_obj, *kp_obj, *result = NULL;
    PyObject *sp_obj = Py_None;
    double scale;
    int causal;
    PyArrayObject *q = NULL, *k = NULL, *lse = NULL, *keep = NULL, *bias = NULL, *kp = NULL;
    PyArrayObject *P = NULL;
    tc_attention_masks m;
    tc_attention_sparse sp;
    tc_attention_layout lay;
    (void)self;
    memset(&lay, 0, sizeof lay);
    if (!PyArg_ParseTuple(args, "OOOOOOdi|O", &q_obj, &k_obj, &l_obj, &keep_obj, &bias_obj,
                          &kp_obj, &scale, &causal, &sp_obj))
        return NULL;
    int ty = tc_py_float_type(q_obj, "q");
    if (ty < 0) goto done;
    if (!(q = strided_view(q_obj, "q", ty, 0, &lay.q))) goto done;
    if (!(k = strided_view(k_obj, "k", ty, 0, &lay.k))) goto done;
    if (!(lse = tc_py_float_array(l_obj, "lse", ty, 3))) goto done;
    const npy_intp B = PyArray_DIM(q, 0), NH = PyArray_DIM(q, 1), Tq = PyArray_DIM(q, 2);
    const npy_intp DK = PyArray_DIM(q, 3), S = PyArray_DIM(k, 2);
    if (check_kv_heads(k, "k", NH) || check_dims4(k, "k", B, PyArray_DIM(k, 1), S, DK) ||
        check_lse(lse, B, NH, Tq))
        goto done;
    lay.kv_heads = PyArray_DIM(k, 1);
    const npy_intp full[4] = {B, NH, Tq, S};
    if (mask_arrays(keep_obj, bias_obj, kp_obj, ty, full, &keep, &bias, &kp, &m)) goto done;
    if (sparse_arg(sp_obj, &sp, &m.sparse)) goto done;
    if (tc_py_check_real(scale, "scale", TC_PY_FINITE) ||
        tc_py_check_option(TC_OPT_CAUSAL, causal, "causal"))
        goto done;
    if (!(P = tc_py_new(4, full, ty, 1))) goto done;
    int st;
    void *pp = PyArray_DATA(P);
    const void *pq = PyArray_DATA(q), *pk = PyArray_DATA(k), *pl = PyArray_DATA(lse);
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_attention_probs_strided, pp, pq, pk, pl, &m, &lay, B, NH, Tq, S, DK,
                 scale, causal);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_probs")) goto done;
    result = (PyObject *)P;
    P = NULL;
done:
    Py_XDECREF(q);
    Py_XDECREF(k);
    Py_XDECREF(lse);
    Py_XDECREF(keep);
    Py_XDECREF(bias);
    Py_XDECREF(kp);
    Py_XDECREF(P);
    return result;
}

/* attention_sparse_blocks(sparse (block, window, stride, global), NQB, NKB) -> (NQB, NKB)
 * bool: the block layout (tc_attention_sparse_blocks) */
static PyObject *py_attention_sparse_blocks(PyObject *self, PyObject *args)
{
    PyObject *sp_obj, *nq_obj, *nk_obj;
    tc_attention_sparse sp;
    const tc_attention_sparse *psp;
    int64_t nq, nk;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &sp_obj, &nq_obj, &nk_obj)) return NULL;
    if (sparse_arg(sp_obj, &sp, &psp)) return NULL;
    if (!psp) {
        PyErr_SetString(PyExc_TypeError, "sparse must be a tuple (block, window, stride, global)");
        return NULL;
    }
    if (tc_py_int64_min(nq_obj, "NQB", 0, &nq) || tc_py_int64_min(nk_obj, "NKB", 0, &nk))
        return NULL;
    npy_intp dims[2] = {(npy_intp)nq, (npy_intp)nk};
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_BOOL, 0);
    if (!out) return NULL;
    if (tc_py_status(tc_attention_sparse_blocks((uint8_t *)PyArray_DATA(out), psp, nq, nk),
                     "attention_sparse_blocks")) {
        Py_DECREF(out);
        return NULL;
    }
    return (PyObject *)out;
}

/* attention_sparse_mask(sparse (block, window, stride, global), T, S, causal) -> (T, S)
 * bool: the pattern's element mask (tc_attention_sparse_mask) */
static PyObject *py_attention_sparse_mask(PyObject *self, PyObject *args)
{
    PyObject *sp_obj, *t_obj, *s_obj;
    int causal;
    tc_attention_sparse sp;
    const tc_attention_sparse *psp;
    int64_t T, S;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOi", &sp_obj, &t_obj, &s_obj, &causal)) return NULL;
    if (sparse_arg(sp_obj, &sp, &psp)) return NULL;
    if (!psp) {
        PyErr_SetString(PyExc_TypeError, "sparse must be a tuple (block, window, stride, global)");
        return NULL;
    }
    if (tc_py_int64_min(t_obj, "T", 0, &T) || tc_py_int64_min(s_obj, "S", 0, &S) ||
        tc_py_check_option(TC_OPT_CAUSAL, causal, "causal"))
        return NULL;
    npy_intp dims[2] = {(npy_intp)T, (npy_intp)S};
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_BOOL, 0);
    if (!out) return NULL;
    int st;
    uint8_t *po = (uint8_t *)PyArray_DATA(out);
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_attention_sparse_mask(po, psp, T, S, causal);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "attention_sparse_mask")) {
        Py_DECREF(out);
        return NULL;
    }
    return (PyObject *)out;
}

static PyObject *py_attention_kernel_name(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(tc_attention_kernel_name());
}

#define FWD_DOC "(q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), keep (4-D bool, True = attend) " \
    "or None, bias (4-D float) or None, key_padding (B,S) bool (True = real key) or None, "      \
    "scale, causal (0 none, 1 top-left, 2 bottom-right), dropout_p, seed[, sparse (block, "  \
    "window, stride, global) or None]) "                      \
    "-> (out (B,NH,T,DV), lse (B,NH,T)); masks have size 1 or the full size in each dim"
#define BWD_DOC "(grad_output (B,NH,T,DV), q, k, v, out (B,NH,T,DV), lse (B,NH,T), keep, bias, " \
    "key_padding, scale, causal, dropout_p, seed[, sparse]) -> (dq, dk, dv)"

PyMethodDef tc_methods_attention[] = {
    {"attention_forward", py_attention_forward, METH_VARARGS,
     "attention_forward" FWD_DOC " (tiled kernel)"},
    {"attention_forward_ref", py_attention_forward_ref, METH_VARARGS,
     "attention_forward_ref" FWD_DOC " (materialised reference)"},
    {"attention_backward", py_attention_backward, METH_VARARGS,
     "attention_backward" BWD_DOC " (tiled kernel)"},
    {"attention_backward_ref", py_attention_backward_ref, METH_VARARGS,
     "attention_backward_ref" BWD_DOC " (materialised reference)"},
    {"attention_decode", py_attention_decode, METH_VARARGS,
     "attention_decode(q (B,NH,TN,DK), k (B,NH,TN,DK), v (B,NH,TN,DV), k_cache (B,NH,Smax,DK), "
     "v_cache (B,NH,Smax,DV), pos, key_padding (B,pos+TN) bool or None, scale) "
     "-> out (B,NH,TN,DV); writes k, v at cache positions [pos, pos+TN) in place"},
    {"attention_forward_strided", py_attention_forward_strided, METH_VARARGS,
     "attention_forward_strided(q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), out (B,NH,T,DV), "
     "keep, bias, key_padding, scale, causal, dropout_p, seed) -> lse (B,NH,T); the tiled "
     "kernel on arrays used at their own strides (views, last dim contiguous); out written "
     "in place"},
    {"attention_backward_strided", py_attention_backward_strided, METH_VARARGS,
     "attention_backward_strided(dq, dk, dv, grad_output, q, k, v, out, lse, keep, bias, "
     "key_padding, scale, causal, dropout_p, seed, write) -> None; every 4-D operand at "
     "its own strides; dq, dk, dv written (bits 1, 2, 4 of write) or added to in place"},
    {"attention_probs", py_attention_probs, METH_VARARGS,
     "attention_probs(q (B,NH,T,DK), k (B,NH,S,DK), lse (B,NH,T), keep, bias, key_padding, "
     "scale, causal) -> P (B,NH,T,S): the pre-dropout probabilities of the forward that "
     "returned lse (same masks, scale, causal); q and k read at their own strides"},
    {"attention_sparse_blocks", py_attention_sparse_blocks, METH_VARARGS,
     "attention_sparse_blocks(sparse (block, window, stride, global), NQB, NKB) -> (NQB, NKB) "
     "bool: key block kb visible to query block qb (tc_attention_sparse_blocks)"},
    {"attention_sparse_mask", py_attention_sparse_mask, METH_VARARGS,
     "attention_sparse_mask(sparse (block, window, stride, global), T, S, causal) -> (T, S) "
     "bool: the pattern's element mask (causal only shifts positions when bottom-right)"},
    {"attention_kernel_name", py_attention_kernel_name, METH_NOARGS,
     "attention_kernel_name() -> the tile micro-kernel in use ('avx2+fma' or 'generic')"},
    {NULL, NULL, 0, NULL},
};
