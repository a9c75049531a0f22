/* bind_moe.c: bindings of moe.c (the mixture-of-experts feed-forward).
 *
 * moe_forward returns its cache as a tuple of arrays (CACHE_FIELDS order, then cap and the
 * reference flag); moe_backward takes the tuple back and checks every array's dtype and
 * shape here, the kernel checks the routing indices (TC_EINVAL: ValueError). */
#include "bind.h"

#include <stdio.h>

/* the cache tuple: 7 float / int64 arrays + 4 float arrays, then cap, reference */
enum { M_PROBS, M_GATES, M_EXPERT, M_SLOT, M_TOK, M_COUNTS, M_DROPPED, M_XG, M_PRE, M_HID,
       M_EO, M_NARR };
static const char *const cache_names[M_NARR] = {"probs", "gates", "expert", "slot", "tok",
                                                "counts", "dropped", "xg", "pre", "hid", "eo"};

/* the cache arrays' shapes for sizes N, C, H, E, K, cap (ndim, dims) and int64-ness */
static int cache_shape(int i, npy_intp *d, int64_t N, int64_t C, int64_t H, int64_t E,
                       int64_t K, int64_t cap, int *is_int)
{
    *is_int = i >= M_EXPERT && i <= M_DROPPED;
    switch (i) {
    case M_PROBS: d[0] = N; d[1] = E; return 2;
    case M_GATES: case M_EXPERT: case M_SLOT: d[0] = N; d[1] = K; return 2;
    case M_TOK: d[0] = E; d[1] = cap; return 2;
    case M_COUNTS: case M_DROPPED: d[0] = E; return 1;
    case M_XG: case M_EO: d[0] = E; d[1] = cap; d[2] = C; return 3;
    default: d[0] = E; d[1] = cap; d[2] = H; return 3; /* pre, hid */
    }
}

#define FILL_CACHE(c, arr, capv)                                                     \
    do {                                                                             \
        (c).probs = PyArray_DATA(arr[M_PROBS]);                                      \
        (c).gates = PyArray_DATA(arr[M_GATES]);                                      \
        (c).expert = PyArray_DATA(arr[M_EXPERT]);                                    \
        (c).slot = PyArray_DATA(arr[M_SLOT]);                                        \
        (c).tok = PyArray_DATA(arr[M_TOK]);                                          \
        (c).counts = PyArray_DATA(arr[M_COUNTS]);                                    \
        (c).dropped = PyArray_DATA(arr[M_DROPPED]);                                  \
        (c).xg = PyArray_DATA(arr[M_XG]);                                            \
        (c).pre = PyArray_DATA(arr[M_PRE]);                                          \
        (c).hid = PyArray_DATA(arr[M_HID]);                                          \
        (c).eo = PyArray_DATA(arr[M_EO]);                                            \
        (c).cap = (capv);                                                            \
        (c).aux = 0.0;                                                               \
    } while (0)

/* the weights: router (E,C), w1 (E,H,C), w2 (E,C,H), and b1 (E,H) / b2 (E,C) unless their
 * object is NULL (Py_None: left NULL); C from x (N,C) */
static int moe_weights(int ty, int64_t C, PyObject *r_obj, PyObject *w1_obj, PyObject *b1_obj,
                       PyObject *w2_obj, PyObject *b2_obj, PyArrayObject **r,
                       PyArrayObject **w1, PyArrayObject **b1, PyArrayObject **w2,
                       PyArrayObject **b2, int64_t *E, int64_t *H)
{
    if (!(*r = tc_py_float_array(r_obj, "router", ty, 2))) return -1;
    if (tc_py_check_dim(*r, "router", 1, C, "C (x.shape[1])")) return -1;
    *E = PyArray_DIM(*r, 0);
    if (*E < 1) {
        PyErr_SetString(PyExc_ValueError, "router must have at least one expert (E >= 1 rows)");
        return -1;
    }
    if (!(*w1 = tc_py_float_array(w1_obj, "w1", ty, 3))) return -1;
    if (tc_py_check_dim(*w1, "w1", 0, *E, "E (router.shape[0])") ||
        tc_py_check_dim(*w1, "w1", 2, C, "C (x.shape[1])"))
        return -1;
    *H = PyArray_DIM(*w1, 1);
    if (!(*w2 = tc_py_float_array(w2_obj, "w2", ty, 3))) return -1;
    if (tc_py_check_dim(*w2, "w2", 0, *E, "E (router.shape[0])") ||
        tc_py_check_dim(*w2, "w2", 1, C, "C (x.shape[1])") ||
        tc_py_check_dim(*w2, "w2", 2, *H, "H (w1.shape[1])"))
        return -1;
    if (b1_obj && b1_obj != Py_None) {
        if (!(*b1 = tc_py_float_array(b1_obj, "b1", ty, 2))) return -1;
        if (tc_py_check_dim(*b1, "b1", 0, *E, "E (router.shape[0])") ||
            tc_py_check_dim(*b1, "b1", 1, *H, "H (w1.shape[1])"))
            return -1;
    }
    if (b2_obj && b2_obj != Py_None) {
        if (!(*b2 = tc_py_float_array(b2_obj, "b2", ty, 2))) return -1;
        if (tc_py_check_dim(*b2, "b2", 0, *E, "E (router.shape[0])") ||
            tc_py_check_dim(*b2, "b2", 1, C, "C (x.shape[1])"))
            return -1;
    }
    return 0;
}

/* top_k in {1, 2} and <= E; act an activation */
static int moe_check_k_act(int64_t K, int64_t E, int act)
{
    if (K != 1 && K != 2) {
        PyErr_Format(PyExc_ValueError, "top_k must be 1 or 2, got %lld", (long long)K);
        return -1;
    }
    if (K > E) {
        PyErr_Format(PyExc_ValueError, "top_k (%lld) must be <= the number of experts E = %lld",
                     (long long)K, (long long)E);
        return -1;
    }
    return tc_py_check_option(TC_OPT_ACTIVATION, act, "activation");
}

/* moe_forward(x (N,C), router (E,C), w1 (E,H,C), b1 (E,H)|None, w2 (E,C,H), b2 (E,C)|None,
 * top_k, capacity_factor, act, reference) -> (out (N,C), aux, cache tuple) */
static PyObject *py_moe_forward(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *r_obj, *w1_obj, *b1_obj, *w2_obj, *b2_obj, *k_obj, *cf_obj;
    PyObject *result = NULL, *cache_t = NULL;
    int act, reference;
    PyArrayObject *x = NULL, *r = NULL, *w1 = NULL, *b1 = NULL, *w2 = NULL, *b2 = NULL, *out = NULL;
    PyArrayObject *arr[M_NARR] = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOip", &x_obj, &r_obj, &w1_obj, &b1_obj, &w2_obj,
                          &b2_obj, &k_obj, &cf_obj, &act, &reference))
        return NULL;
    int ty;
    int64_t E, H, K;
    double cf;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    const int64_t N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (moe_weights(ty, C, r_obj, w1_obj, b1_obj, w2_obj, b2_obj, &r, &w1, &b1, &w2, &b2, &E, &H))
        goto done;
    if (tc_py_int64(k_obj, "top_k", &K) || moe_check_k_act(K, E, act)) goto done;
    if (tc_py_real(cf_obj, "capacity_factor", TC_PY_POSITIVE, &cf)) goto done;
    const int64_t cap = tc_moe_capacity(N, E, K, cf);
    if (cap < 0) {
        PyErr_Format(PyExc_ValueError, "capacity_factor %g gives no valid capacity", cf);
        goto done;
    }
    npy_intp od[2] = {N, C};
    if (!(out = tc_py_new(2, od, ty, 0))) goto done;
    for (int i = 0; i < M_NARR; i++) {
        npy_intp d[3];
        int is_int;
        const int nd = cache_shape(i, d, N, C, H, E, K, cap, &is_int);
        /* uninitialised: the kernel writes the routing arrays whole and the expert rows
         * [e*cap, e*cap + counts[e]) of xg / pre / hid / eo, the only rows any kernel reads
         * (the rest is never looked at: zeroing it cost a pass over E*cap*(2C+2H) values) */
        if (!(arr[i] = tc_py_new(nd, d, is_int ? NPY_INT64 : ty, 0))) goto done;
    }
    int st;
    double aux = 0.0;
    const void *b1p = b1 ? PyArray_DATA(b1) : NULL, *b2p = b2 ? PyArray_DATA(b2) : NULL;
    TC_PY_BEGIN_ALLOW_THREADS
    if (ty == NPY_FLOAT) {
        tc_moe_cache_f32 c;
        FILL_CACHE(c, arr, cap);
        st = (reference ? tc_moe_forward_ref_f32 : tc_moe_forward_f32)(
            PyArray_DATA(out), &c, PyArray_DATA(x), PyArray_DATA(r), PyArray_DATA(w1), b1p,
            PyArray_DATA(w2), b2p, N, C, H, E, K, cf, act);
        aux = c.aux;
    } else {
        tc_moe_cache_f64 c;
        FILL_CACHE(c, arr, cap);
        st = (reference ? tc_moe_forward_ref_f64 : tc_moe_forward_f64)(
            PyArray_DATA(out), &c, PyArray_DATA(x), PyArray_DATA(r), PyArray_DATA(w1), b1p,
            PyArray_DATA(w2), b2p, N, C, H, E, K, cf, act);
        aux = c.aux;
    }
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "moe_forward")) goto done;
    if (!(cache_t = PyTuple_New(M_NARR + 2))) goto done;
    for (int i = 0; i < M_NARR; i++) {
        PyArray_CLEARFLAGS(arr[i], NPY_ARRAY_WRITEABLE);
        PyTuple_SET_ITEM(cache_t, i, (PyObject *)arr[i]);
        arr[i] = NULL;
    }
    PyTuple_SET_ITEM(cache_t, M_NARR, PyLong_FromLongLong(cap));
    PyTuple_SET_ITEM(cache_t, M_NARR + 1, PyBool_FromLong(reference));
    if (!PyTuple_GET_ITEM(cache_t, M_NARR)) goto done;
    result = Py_BuildValue("(OdO)", out, aux, cache_t);
done:
    Py_XDECREF(x);
    Py_XDECREF(r);
    Py_XDECREF(w1);
    Py_XDECREF(b1);
    Py_XDECREF(w2);
    Py_XDECREF(b2);
    Py_XDECREF(out);
    Py_XDECREF(cache_t);
    for (int i = 0; i < M_NARR; i++) Py_XDECREF(arr[i]);
    return result;
}

/* moe_backward(dout (N,C), aux_grad, cache tuple, x, router, w1, w2, with_b1, with_b2,
 * top_k, act) -> (dx, drouter, dw1, db1|None, dw2, db2|None); the kernel (fast or
 * reference) is the one that filled the cache */
static PyObject *py_moe_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *ag_obj, *cache_t, *x_obj, *r_obj, *w1_obj, *w2_obj, *k_obj;
    PyObject *result = NULL;
    int with_b1, with_b2, act;
    PyArrayObject *dy = NULL, *x = NULL, *r = NULL, *w1 = NULL, *w2 = NULL;
    PyArrayObject *g[6] = {0};
    PyArrayObject *arr[M_NARR] = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOppOi", &dy_obj, &ag_obj, &cache_t, &x_obj, &r_obj,
                          &w1_obj, &w2_obj, &with_b1, &with_b2, &k_obj, &act))
        return NULL;
    int ty;
    int64_t E, H, K, cap;
    double aux_grad;
    if (!(x = tc_py_float_input(x_obj, "x", 2, &ty))) goto done;
    const int64_t N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if (moe_weights(ty, C, r_obj, w1_obj, NULL, w2_obj, NULL, &r, &w1, NULL, &w2, NULL, &E, &H))
        goto done;
    if (tc_py_int64(k_obj, "top_k", &K) || moe_check_k_act(K, E, act)) goto done;
    if (tc_py_real(ag_obj, "aux_grad", TC_PY_FINITE, &aux_grad)) goto done;
    if (!(dy = tc_py_float_array(dy_obj, "grad_output", ty, 2))) goto done;
    if (tc_py_check_dim(dy, "grad_output", 0, N, "N (x.shape[0])") ||
        tc_py_check_dim(dy, "grad_output", 1, C, "C (x.shape[1])"))
        goto done;
    if (!PyTuple_Check(cache_t) || PyTuple_GET_SIZE(cache_t) != M_NARR + 2) {
        PyErr_SetString(PyExc_TypeError, "cache must be the tuple moe_forward returned");
        goto done;
    }
    if (tc_py_int64_min(PyTuple_GET_ITEM(cache_t, M_NARR), "cache capacity", 0, &cap)) goto done;
    const int reference = PyObject_IsTrue(PyTuple_GET_ITEM(cache_t, M_NARR + 1));
    if (reference < 0) goto done;
    for (int i = 0; i < M_NARR; i++) {
        npy_intp d[3];
        int is_int;
        const int nd = cache_shape(i, d, N, C, H, E, K, cap, &is_int);
        char name[32];
        snprintf(name, sizeof name, "cache %s", cache_names[i]);
        PyObject *o = PyTuple_GET_ITEM(cache_t, i);
        if (is_int) {
            if (!(arr[i] = tc_py_index_array(o, name, nd))) goto done;
        } else if (!(arr[i] = tc_py_float_array(o, name, ty, nd))) {
            goto done;
        }
        for (int a = 0; a < nd; a++)
            if (tc_py_check_dim(arr[i], name, a, d[a], "the forward's size")) goto done;
    }
    npy_intp sh[6][3] = {{N, C}, {E, C}, {E, H, C}, {E, H}, {E, C, H}, {E, C}};
    const int nds[6] = {2, 2, 3, 2, 3, 2};
    for (int k = 0; k < 6; k++) {
        if ((k == 3 && !with_b1) || (k == 5 && !with_b2)) continue;
        if (!(g[k] = tc_py_new(nds[k], sh[k], ty, 0))) goto done;
    }
    int st;
    void *gp[6];
    for (int k = 0; k < 6; k++) gp[k] = g[k] ? PyArray_DATA(g[k]) : NULL;
    TC_PY_BEGIN_ALLOW_THREADS
    if (ty == NPY_FLOAT) {
        tc_moe_cache_f32 c;
        FILL_CACHE(c, arr, cap);
        st = (reference ? tc_moe_backward_ref_f32 : tc_moe_backward_f32)(
            gp[0], gp[1], gp[2], gp[3], gp[4], gp[5], PyArray_DATA(dy), aux_grad, &c,
            PyArray_DATA(x), PyArray_DATA(r), PyArray_DATA(w1), PyArray_DATA(w2), N, C, H, E,
            K, act, TC_WRITE_ALL);
    } else {
        tc_moe_cache_f64 c;
        FILL_CACHE(c, arr, cap);
        st = (reference ? tc_moe_backward_ref_f64 : tc_moe_backward_f64)(
            gp[0], gp[1], gp[2], gp[3], gp[4], gp[5], PyArray_DATA(dy), aux_grad, &c,
            PyArray_DATA(x), PyArray_DATA(r), PyArray_DATA(w1), PyArray_DATA(w2), N, C, H, E,
            K, act, TC_WRITE_ALL);
    }
    Py_END_ALLOW_THREADS
    if (st == TC_EINVAL) {
        PyErr_SetString(PyExc_ValueError,
                        "cache: its routing is inconsistent (not the tuple moe_forward "
                        "returned for these sizes)");
        goto done;
    }
    if (tc_py_status(st, "moe_backward")) goto done;
    result = Py_BuildValue("(OOOOOO)", g[0], g[1], g[2], g[3] ? (PyObject *)g[3] : Py_None,
                           g[4], g[5] ? (PyObject *)g[5] : Py_None);
done:
    Py_XDECREF(dy);
    Py_XDECREF(x);
    Py_XDECREF(r);
    Py_XDECREF(w1);
    Py_XDECREF(w2);
    for (int k = 0; k < 6; k++) Py_XDECREF(g[k]);
    for (int i = 0; i < M_NARR; i++) Py_XDECREF(arr[i]);
    return result;
}

/* moe_capacity(N, E, top_k, capacity_factor) -> cap (tc_moe_capacity) */
static PyObject *py_moe_capacity(PyObject *self, PyObject *args)
{
    PyObject *n_obj, *e_obj, *k_obj, *cf_obj;
    int64_t N, E, K;
    double cf;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &n_obj, &e_obj, &k_obj, &cf_obj)) return NULL;
    if (tc_py_int64_min(n_obj, "N", 0, &N) || tc_py_int64_min(e_obj, "E", 1, &E) ||
        tc_py_int64(k_obj, "top_k", &K) || moe_check_k_act(K, E, 0) ||
        tc_py_real(cf_obj, "capacity_factor", TC_PY_POSITIVE, &cf))
        return NULL;
    return PyLong_FromLongLong(tc_moe_capacity(N, E, K, cf));
}

PyMethodDef tc_methods_moe[] = {
    {"moe_forward", py_moe_forward, METH_VARARGS,
     "moe_forward(x, router, w1, b1|None, w2, b2|None, top_k, capacity_factor, act, reference)"
     " -> (out, aux, cache)"},
    {"moe_backward", py_moe_backward, METH_VARARGS,
     "moe_backward(grad_output, aux_grad, cache, x, router, w1, w2, with_b1, with_b2, top_k, "
     "act) -> (dx, drouter, dw1, db1|None, dw2, db2|None)"},
    {"moe_capacity", py_moe_capacity, METH_VARARGS,
     "moe_capacity(N, E, top_k, capacity_factor) -> capacity per expert"},
    {NULL, NULL, 0, NULL},
};
