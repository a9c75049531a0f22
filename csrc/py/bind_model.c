/* bind_model.c: bindings of gpt_train.c (the GPT fast path). A model is a capsule that owns a
 * tc_gpt and keeps its parameter and gradient arrays alive. */
#include "bind_gpt_config.h"

#define GPT_CAPSULE "transformer_c.gpt"

typedef struct {
    tc_py_handle base; /* owns model and the parameter and gradient arrays it borrows */
    tc_gpt *model;
    int64_t V, maxT;
    int64_t L, NH, C; /* the shapes gpt_inspect's outputs need */
    int64_t E;        /* experts per layer (ffn == TC_FFN_MOE), else 0 */
} gpt_handle;

static void gpt_free(void *model) { tc_gpt_free(model); }

static gpt_handle *gpt_acquire(PyObject *obj)
{
    return tc_py_handle_acquire(obj, GPT_CAPSULE, "a GPT context made by gpt_create", "model");
}

/* gpt_create(params (P,), grads (P,), config) -> model capsule */
static PyObject *py_gpt_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj, *g_obj;
    PyArrayObject *p = NULL, *g = NULL;
    gpt_handle *h = NULL;
    tc_gpt_config cfg;
    int ty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO&", &p_obj, &g_obj, gpt_config, &cfg))
        return NULL;
    if (tc_py_flat_buffers(p_obj, g_obj, tc_gpt_num_params(&cfg), &ty, &p, &g)) return NULL;
    if (!(h = PyMem_Calloc(1, sizeof *h))) {
        Py_DECREF(p);
        Py_DECREF(g);
        return PyErr_NoMemory();
    }
    h->base = (tc_py_handle){.free_obj = gpt_free, .params = (PyObject *)p,
                             .grads = (PyObject *)g, .typenum = ty};
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_gpt_create, &h->model, &cfg, PyArray_DATA(p), PyArray_DATA(g));
    Py_END_ALLOW_THREADS
    h->base.obj = h->model;
    if (tc_py_status(st, "gpt_create")) {
        tc_py_handle_discard(&h->base);
        return NULL;
    }
    h->V = cfg.V;
    h->maxT = cfg.maxT;
    h->L = cfg.L;
    h->NH = cfg.NH;
    h->C = cfg.C;
    h->E = cfg.ffn == TC_FFN_MOE ? cfg.moe_experts : 0;
    return tc_py_handle_wrap(&h->base, GPT_CAPSULE);
}

/* idx as a (B,T) int64 array with 1 <= T <= maxT, ids in [0, V); NULL with an exception. */
static PyArrayObject *gpt_ids(PyObject *obj, const char *name, const gpt_handle *h)
{
    PyArrayObject *a = tc_py_index_array(obj, name, 2);
    if (!a) return NULL;
    char buf[128];
    if (PyArray_DIM(a, 0) < 1 || PyArray_DIM(a, 1) < 1 || PyArray_DIM(a, 1) > h->maxT) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (B, T) with B >= 1 and "
                     "1 <= T <= block_size = %lld, got %s", name, (long long)h->maxT,
                     tc_py_shape_str(a, buf, sizeof buf));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* *row0 = row_offset (a Python int >= 0; NULL: not given, 0); -1 with an exception set
 * otherwise. */
static int gpt_row_offset(PyObject *obj, int64_t *row0)
{
    *row0 = 0;
    return obj ? tc_py_int64_min(obj, "row_offset", 0, row0) : 0;
}

/* gpt_loss_and_grads(model, idx (B,T), targets (B,T), ignore_index, seed, training,
 * row_offset=0) -> loss */
static PyObject *py_gpt_loss_and_grads(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *i_obj, *t_obj, *ig_obj, *s_obj, *r_obj = NULL, *result = NULL;
    PyArrayObject *idx = NULL, *tgt = NULL;
    gpt_handle *h = NULL;
    int training;
    int64_t ignore_index, row0;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOp|O", &m_obj, &i_obj, &t_obj, &ig_obj, &s_obj, &training,
                          &r_obj))
        return NULL;
    if (!(h = gpt_acquire(m_obj))) return NULL;
    if (tc_py_int64(ig_obj, "ignore_index", &ignore_index) ||
        tc_py_uint64(s_obj, "seed", &seed) || gpt_row_offset(r_obj, &row0))
        goto done;
    if (!(idx = gpt_ids(i_obj, "idx", h))) goto done;
    if (tc_py_check_index_range(idx, "idx", h->V)) goto done;
    if (!(tgt = tc_py_index_array(t_obj, "targets", 2))) goto done;
    if (tc_py_check_same_shape(tgt, "targets", idx, "idx")) goto done;
    if (tc_py_check_targets(tgt, "targets", h->V, ignore_index)) goto done;
    double loss = 0;
    int st;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    TC_PY_BEGIN_ALLOW_THREADS
    st = h->base.typenum == NPY_FLOAT
        ? tc_gpt_loss_and_grads_f32(h->model, &loss, PyArray_DATA(idx), PyArray_DATA(tgt), B, T,
                                    ignore_index, seed, row0, training)
        : tc_gpt_loss_and_grads_f64(h->model, &loss, PyArray_DATA(idx), PyArray_DATA(tgt), B, T,
                                    ignore_index, seed, row0, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_loss_and_grads")) goto done;
    result = PyFloat_FromDouble(loss);
done:
    h->base.busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(tgt);
    return result;
}

/* gpt_forward(model, idx (B,T), seed, training, row_offset=0) -> logits (B,T,V) */
static PyObject *py_gpt_forward(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *i_obj, *s_obj, *r_obj = NULL, *result = NULL;
    PyArrayObject *idx = NULL, *out = NULL;
    gpt_handle *h = NULL;
    int training;
    int64_t row0;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOp|O", &m_obj, &i_obj, &s_obj, &training, &r_obj))
        return NULL;
    if (!(h = gpt_acquire(m_obj))) return NULL;
    if (tc_py_uint64(s_obj, "seed", &seed) || gpt_row_offset(r_obj, &row0)) goto done;
    if (!(idx = gpt_ids(i_obj, "idx", h))) goto done;
    if (tc_py_check_index_range(idx, "idx", h->V)) goto done;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    npy_intp dims[3] = {(npy_intp)B, (npy_intp)T, (npy_intp)h->V};
    if (!(out = tc_py_new(3, dims, h->base.typenum, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = h->base.typenum == NPY_FLOAT
        ? tc_gpt_forward_f32(h->model, PyArray_DATA(out), PyArray_DATA(idx), B, T, seed, row0,
                             training)
        : tc_gpt_forward_f64(h->model, PyArray_DATA(out), PyArray_DATA(idx), B, T, seed, row0,
                             training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(out);
    return result;
}

/* gpt_inspect(model, idx (B,T), seed, training, attentions, hidden_states) -> (logits
 * (B,T,V), attn (L,B,NH,T,T) or None, hidden (L+1,B,T,C) or None) */
static PyObject *py_gpt_inspect(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *i_obj, *s_obj, *result = NULL;
    PyArrayObject *idx = NULL, *out = NULL, *attn = NULL, *hid = NULL;
    gpt_handle *h = NULL;
    int training, want_attn, want_hidden;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOppp", &m_obj, &i_obj, &s_obj, &training, &want_attn,
                          &want_hidden))
        return NULL;
    if (!(h = gpt_acquire(m_obj))) return NULL;
    if (tc_py_uint64(s_obj, "seed", &seed)) goto done;
    if (!(idx = gpt_ids(i_obj, "idx", h))) goto done;
    if (tc_py_check_index_range(idx, "idx", h->V)) goto done;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    const int ty = h->base.typenum;
    npy_intp dims[3] = {(npy_intp)B, (npy_intp)T, (npy_intp)h->V};
    npy_intp adims[5] = {(npy_intp)h->L, (npy_intp)B, (npy_intp)h->NH, (npy_intp)T, (npy_intp)T};
    npy_intp hdims[4] = {(npy_intp)h->L + 1, (npy_intp)B, (npy_intp)T, (npy_intp)h->C};
    if (!(out = tc_py_new(3, dims, ty, 0))) goto done;
    if (want_attn && !(attn = tc_py_new(5, adims, ty, 0))) goto done;
    if (want_hidden && !(hid = tc_py_new(4, hdims, ty, 0))) goto done;
    void *pa = attn ? PyArray_DATA(attn) : NULL, *ph = hid ? PyArray_DATA(hid) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_gpt_inspect, h->model, PyArray_DATA(out), pa, ph, PyArray_DATA(idx), B,
                 T, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_inspect")) goto done;
    result = Py_BuildValue("(OOO)", out, attn ? (PyObject *)attn : Py_None,
                           hid ? (PyObject *)hid : Py_None);
done:
    h->base.busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(out);
    Py_XDECREF(attn);
    Py_XDECREF(hid);
    return result;
}

/* gpt_arena_bytes(is_float64, config, B, T) -> bytes of the arena for B*T tokens */
static PyObject *py_gpt_arena_bytes(PyObject *self, PyObject *args)
{
    tc_gpt_config cfg;
    int is_f64;
    long long B, T;
    int64_t bytes = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "pO&LL", &is_f64, gpt_config, &cfg, &B, &T))
        return NULL;
    if (B < 0 || T < 0 || T > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "batch_size must be >= 0 and 0 <= seq_len <= "
                     "block_size = %lld, got (%lld, %lld)", (long long)cfg.maxT, B, T);
        return NULL;
    }
    if (tc_py_status(tc_gpt_arena_bytes(&bytes, &cfg, B, T, is_f64 ? 8 : 4), "gpt_arena_bytes"))
        return NULL;
    return PyLong_FromLongLong((long long)bytes);
}

/* gpt_arena_size(model) -> bytes of the model's arena now */
static PyObject *py_gpt_arena_size(PyObject *self, PyObject *args)
{
    PyObject *m_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &m_obj)) return NULL;
    gpt_handle *h = gpt_acquire(m_obj);
    if (!h) return NULL;
    int64_t n = tc_gpt_arena_size(h->model);
    h->base.busy = 0;
    return PyLong_FromLongLong((long long)n);
}

/* gpt_moe_routing(model) -> (tokens (L,E) int64, dropped (L,E) int64, capacity (L,) int64,
 * aux (L,) float64): the routing of the model's last forward (ffn='moe') */
static PyObject *py_gpt_moe_routing(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *result = NULL;
    PyArrayObject *tok = NULL, *drop = NULL, *cap = NULL, *aux = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &m_obj)) return NULL;
    gpt_handle *h = gpt_acquire(m_obj);
    if (!h) return NULL;
    if (!h->E) {
        PyErr_SetString(PyExc_ValueError, "gpt_moe_routing: the model's ffn is not 'moe'");
        goto done;
    }
    npy_intp d2[2] = {(npy_intp)h->L, (npy_intp)h->E}, d1[1] = {(npy_intp)h->L};
    if (!(tok = tc_py_new(2, d2, NPY_INT64, 0)) || !(drop = tc_py_new(2, d2, NPY_INT64, 0)) ||
        !(cap = tc_py_new(1, d1, NPY_INT64, 0)) || !(aux = tc_py_new(1, d1, NPY_FLOAT64, 0)))
        goto done;
    if (tc_gpt_moe_routing(h->model, PyArray_DATA(tok), PyArray_DATA(drop), PyArray_DATA(cap),
                           PyArray_DATA(aux)) != TC_OK) {
        PyErr_SetString(PyExc_ValueError, "gpt_moe_routing: the model has run no forward yet");
        goto done;
    }
    result = Py_BuildValue("(OOOO)", tok, drop, cap, aux);
done:
    h->base.busy = 0;
    Py_XDECREF(tok);
    Py_XDECREF(drop);
    Py_XDECREF(cap);
    Py_XDECREF(aux);
    return result;
}

PyMethodDef tc_methods_model[] = {
    {"gpt_create", py_gpt_create, METH_VARARGS,
     "gpt_create(params, grads, config) -> model; config: a dict of tc_gpt_config's fields "
     "(V, maxT, C, L, NH, H, bias, position, norm, activation, tie, eps, pos_base, "
     "rope_interleaved, dropout, attention, sparse_*, ffn, moe_*), as GPTConfig.c_fields() "
     "gives"},
    {"gpt_loss_and_grads", py_gpt_loss_and_grads, METH_VARARGS,
     "gpt_loss_and_grads(model, idx (B,T), targets (B,T), ignore_index, seed, training, "
     "row_offset=0) -> loss; the rows are rows [row_offset, row_offset + B) of a global batch "
     "(their dropout masks)"},
    {"gpt_forward", py_gpt_forward, METH_VARARGS,
     "gpt_forward(model, idx (B,T), seed, training, row_offset=0) -> logits (B,T,V)"},
    {"gpt_inspect", py_gpt_inspect, METH_VARARGS,
     "gpt_inspect(model, idx (B,T), seed, training, attentions, hidden_states) -> (logits "
     "(B,T,V), attn (L,B,NH,T,T) or None, hidden (L+1,B,T,C) or None): the forward with the "
     "attention probabilities of every layer and the hidden states read out"},
    {"gpt_arena_bytes", py_gpt_arena_bytes, METH_VARARGS,
     "gpt_arena_bytes(is_float64, config, B, T) -> bytes"},
    {"gpt_arena_size", py_gpt_arena_size, METH_VARARGS, "gpt_arena_size(model) -> bytes"},
    {"gpt_moe_routing", py_gpt_moe_routing, METH_VARARGS,
     "gpt_moe_routing(model) -> (tokens (L,E), dropped (L,E), capacity (L,), aux (L,)): the "
     "mixture-of-experts routing of the model's last forward"},
    {NULL, NULL, 0, NULL},
};
