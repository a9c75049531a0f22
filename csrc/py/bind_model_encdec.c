/* bind_model_encdec.c: bindings of encdec_train.c (the encoder-decoder fast path). A model is
 * a capsule that owns a tc_encdec and keeps its parameter and gradient arrays alive. */
#include "bind_encdec_config.h"

#define ENCDEC_CAPSULE "transformer_c.encdec"

typedef struct {
    tc_py_handle base; /* owns model and the parameter and gradient arrays it borrows */
    tc_encdec *model;
    int64_t Vs, Vt, maxT;
    int64_t C, Le, Ld, NH; /* the shapes encdec_inspect's outputs need */
} encdec_handle;

static void encdec_free(void *model) { tc_encdec_free(model); }

static encdec_handle *encdec_acquire(PyObject *obj)
{
    return tc_py_handle_acquire(obj, ENCDEC_CAPSULE,
                                "an encoder-decoder context made by encdec_create", "model");
}

/* encdec_create(params (P,), grads (P,), config) -> model capsule */
static PyObject *py_encdec_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj, *g_obj;
    PyArrayObject *p = NULL, *g = NULL;
    encdec_handle *h = NULL;
    tc_encdec_config cfg;
    int ty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO&", &p_obj, &g_obj, encdec_config, &cfg)) return NULL;
    if (tc_py_flat_buffers(p_obj, g_obj, tc_encdec_num_params(&cfg), &ty, &p, &g)) return NULL;
    if (!(h = PyMem_Calloc(1, sizeof *h))) {
        Py_DECREF(p);
        Py_DECREF(g);
        return PyErr_NoMemory();
    }
    h->base = (tc_py_handle){.free_obj = encdec_free, .params = (PyObject *)p,
                             .grads = (PyObject *)g, .typenum = ty};
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_encdec_create, &h->model, &cfg, PyArray_DATA(p), PyArray_DATA(g));
    Py_END_ALLOW_THREADS
    h->base.obj = h->model;
    if (tc_py_status(st, "encdec_create")) {
        tc_py_handle_discard(&h->base);
        return NULL;
    }
    h->Vs = cfg.Vs;
    h->Vt = cfg.Vt;
    h->maxT = cfg.maxT;
    h->C = cfg.C;
    h->Le = cfg.Le;
    h->Ld = cfg.Ld;
    h->NH = cfg.NH;
    return tc_py_handle_wrap(&h->base, ENCDEC_CAPSULE);
}

/* ids as a (B,L) int64 array with B >= 1 (or B == want_B when want_B >= 0) and
 * 1 <= L <= maxT, ids in [0, V); NULL with an exception. */
static PyArrayObject *encdec_ids(PyObject *obj, const char *name, const encdec_handle *h,
                                 int64_t V, npy_intp want_B)
{
    PyArrayObject *a = tc_py_index_array(obj, name, 2);
    if (!a) return NULL;
    char buf[128];
    if (PyArray_DIM(a, 0) < 1 || PyArray_DIM(a, 1) < 1 || PyArray_DIM(a, 1) > h->maxT) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (B, L) with B >= 1 and "
                     "1 <= L <= block_size = %lld, got %s", name, (long long)h->maxT,
                     tc_py_shape_str(a, buf, sizeof buf));
        goto fail;
    }
    if (want_B >= 0 && tc_py_check_dim(a, name, 0, want_B, "B (the batch of src)")) goto fail;
    if (tc_py_check_index_range(a, name, V)) goto fail;
    return a;
fail:
    Py_DECREF(a);
    return NULL;
}

/* encdec_loss_and_grads(model, src (B,S), src_mask (B,S) bool or None, tgt_in (B,T),
 *   tgt_out (B,T), ignore_index, seed, training) -> loss */
static PyObject *py_encdec_loss_and_grads(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *s_obj, *k_obj, *i_obj, *o_obj, *ig_obj, *seed_obj, *result = NULL;
    PyArrayObject *src = NULL, *mask = NULL, *tin = NULL, *tout = NULL;
    encdec_handle *h = NULL;
    int training;
    int64_t ignore_index;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOp", &m_obj, &s_obj, &k_obj, &i_obj, &o_obj, &ig_obj,
                          &seed_obj, &training))
        return NULL;
    if (!(h = encdec_acquire(m_obj))) return NULL;
    if (tc_py_int64(ig_obj, "ignore_index", &ignore_index) ||
        tc_py_uint64(seed_obj, "seed", &seed))
        goto done;
    if (!(src = encdec_ids(s_obj, "src", h, h->Vs, -1))) goto done;
    if (encdec_mask(k_obj, src, &mask)) goto done;
    if (!(tin = encdec_ids(i_obj, "tgt_in", h, h->Vt, PyArray_DIM(src, 0)))) goto done;
    if (!(tout = tc_py_index_array(o_obj, "tgt_out", 2))) goto done;
    if (tc_py_check_same_shape(tout, "tgt_out", tin, "tgt_in")) goto done;
    if (tc_py_check_targets(tout, "tgt_out", h->Vt, ignore_index)) goto done;
    double loss = 0;
    int st;
    const int64_t B = PyArray_DIM(src, 0), S = PyArray_DIM(src, 1), T = PyArray_DIM(tin, 1);
    const uint8_t *pm = mask ? (const uint8_t *)PyArray_DATA(mask) : NULL;
    TC_PY_BEGIN_ALLOW_THREADS
    st = h->base.typenum == NPY_FLOAT
        ? tc_encdec_loss_and_grads_f32(h->model, &loss, PyArray_DATA(src), pm,
                                       PyArray_DATA(tin), PyArray_DATA(tout), B, S, T,
                                       ignore_index, seed, training)
        : tc_encdec_loss_and_grads_f64(h->model, &loss, PyArray_DATA(src), pm,
                                       PyArray_DATA(tin), PyArray_DATA(tout), B, S, T,
                                       ignore_index, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_loss_and_grads")) goto done;
    result = PyFloat_FromDouble(loss);
done:
    h->base.busy = 0;
    Py_XDECREF(src);
    Py_XDECREF(mask);
    Py_XDECREF(tin);
    Py_XDECREF(tout);
    return result;
}

/* encdec_forward(model, src (B,S), src_mask or None, tgt_in (B,T), seed, training)
 *   -> logits (B,T,Vt) */
static PyObject *py_encdec_forward(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *s_obj, *k_obj, *i_obj, *seed_obj, *result = NULL;
    PyArrayObject *src = NULL, *mask = NULL, *tin = NULL, *out = NULL;
    encdec_handle *h = NULL;
    int training;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOp", &m_obj, &s_obj, &k_obj, &i_obj, &seed_obj, &training))
        return NULL;
    if (!(h = encdec_acquire(m_obj))) return NULL;
    if (tc_py_uint64(seed_obj, "seed", &seed)) goto done;
    if (!(src = encdec_ids(s_obj, "src", h, h->Vs, -1))) goto done;
    if (encdec_mask(k_obj, src, &mask)) goto done;
    if (!(tin = encdec_ids(i_obj, "tgt_in", h, h->Vt, PyArray_DIM(src, 0)))) goto done;
    const int64_t B = PyArray_DIM(src, 0), S = PyArray_DIM(src, 1), T = PyArray_DIM(tin, 1);
    npy_intp dims[3] = {(npy_intp)B, (npy_intp)T, (npy_intp)h->Vt};
    if (!(out = tc_py_new(3, dims, h->base.typenum, 0))) goto done;
    const uint8_t *pm = mask ? (const uint8_t *)PyArray_DATA(mask) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = h->base.typenum == NPY_FLOAT
        ? tc_encdec_forward_f32(h->model, PyArray_DATA(out), PyArray_DATA(src), pm,
                                PyArray_DATA(tin), B, S, T, seed, training)
        : tc_encdec_forward_f64(h->model, PyArray_DATA(out), PyArray_DATA(src), pm,
                                PyArray_DATA(tin), B, S, T, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(src);
    Py_XDECREF(mask);
    Py_XDECREF(tin);
    Py_XDECREF(out);
    return result;
}

/* encdec_inspect(model, src (B,S), src_mask or None, tgt_in (B,T), seed, training,
 *   attentions, hidden_states) -> (logits (B,T,Vt), enc_attn (Le,B,NH,S,S), self_attn
 *   (Ld,B,NH,T,T), cross_attn (Ld,B,NH,T,S), enc_hidden (Le+1,B,S,C), dec_hidden
 *   (Ld+1,B,T,C)), the attentions None unless asked for, the hidden states likewise */
static PyObject *py_encdec_inspect(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *s_obj, *k_obj, *i_obj, *seed_obj, *result = NULL;
    PyArrayObject *src = NULL, *mask = NULL, *tin = NULL, *out = NULL;
    PyArrayObject *ro[5] = {NULL, NULL, NULL, NULL, NULL};
    encdec_handle *h = NULL;
    int training, want_attn, want_hidden;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOppp", &m_obj, &s_obj, &k_obj, &i_obj, &seed_obj,
                          &training, &want_attn, &want_hidden))
        return NULL;
    if (!(h = encdec_acquire(m_obj))) return NULL;
    if (tc_py_uint64(seed_obj, "seed", &seed)) goto done;
    if (!(src = encdec_ids(s_obj, "src", h, h->Vs, -1))) goto done;
    if (encdec_mask(k_obj, src, &mask)) goto done;
    if (!(tin = encdec_ids(i_obj, "tgt_in", h, h->Vt, PyArray_DIM(src, 0)))) goto done;
    const int64_t B = PyArray_DIM(src, 0), S = PyArray_DIM(src, 1), T = PyArray_DIM(tin, 1);
    const int ty = h->base.typenum;
    npy_intp dims[3] = {(npy_intp)B, (npy_intp)T, (npy_intp)h->Vt};
    const npy_intp shapes[5][5] = {{h->Le, B, h->NH, S, S}, {h->Ld, B, h->NH, T, T},
                                   {h->Ld, B, h->NH, T, S}, {h->Le + 1, B, S, h->C},
                                   {h->Ld + 1, B, T, h->C}};
    if (!(out = tc_py_new(3, dims, ty, 0))) goto done;
    void *pr[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int i = 0; i < 5; i++) {
        if (!(i < 3 ? want_attn : want_hidden)) continue;
        if (!(ro[i] = tc_py_new(i < 3 ? 5 : 4, shapes[i], ty, 0))) goto done;
        pr[i] = PyArray_DATA(ro[i]);
    }
    const tc_encdec_readout r = {pr[0], pr[1], pr[2], pr[3], pr[4]};
    const uint8_t *pm = mask ? (const uint8_t *)PyArray_DATA(mask) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_encdec_inspect, h->model, PyArray_DATA(out), &r, PyArray_DATA(src), pm,
                 PyArray_DATA(tin), B, S, T, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_inspect")) goto done;
    result = PyTuple_New(6);
    if (!result) goto done;
    PyTuple_SET_ITEM(result, 0, (PyObject *)out);
    out = NULL;
    for (int i = 0; i < 5; i++) {
        PyObject *v = ro[i] ? (PyObject *)ro[i] : Py_None;
        if (!ro[i]) Py_INCREF(Py_None);
        ro[i] = NULL;
        PyTuple_SET_ITEM(result, i + 1, v);
    }
done:
    h->base.busy = 0;
    Py_XDECREF(src);
    Py_XDECREF(mask);
    Py_XDECREF(tin);
    Py_XDECREF(out);
    for (int i = 0; i < 5; i++) Py_XDECREF(ro[i]);
    return result;
}

/* encdec_arena_bytes(is_float64, config, B, S, T) -> bytes of the arena */
static PyObject *py_encdec_arena_bytes(PyObject *self, PyObject *args)
{
    tc_encdec_config cfg;
    int is_f64;
    long long B, S, T;
    int64_t bytes = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "pO&LLL", &is_f64, encdec_config, &cfg, &B, &S, &T))
        return NULL;
    if (B < 0 || S < 0 || T < 0 || S > cfg.maxT || T > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "batch_size must be >= 0 and 0 <= src_len, tgt_len <= "
                     "block_size = %lld, got (%lld, %lld, %lld)", (long long)cfg.maxT, B, S, T);
        return NULL;
    }
    if (tc_py_status(tc_encdec_arena_bytes(&bytes, &cfg, B, S, T, is_f64 ? 8 : 4),
                     "encdec_arena_bytes"))
        return NULL;
    return PyLong_FromLongLong((long long)bytes);
}

/* encdec_arena_size(model) -> bytes of the model's arena now */
static PyObject *py_encdec_arena_size(PyObject *self, PyObject *args)
{
    PyObject *m_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &m_obj)) return NULL;
    encdec_handle *h = encdec_acquire(m_obj);
    if (!h) return NULL;
    int64_t n = tc_encdec_arena_size(h->model);
    h->base.busy = 0;
    return PyLong_FromLongLong((long long)n);
}

PyMethodDef tc_methods_model_encdec[] = {
    {"encdec_create", py_encdec_create, METH_VARARGS,
     "encdec_create(params, grads, config) -> model; config: a dict of tc_encdec_config's "
     "fields (Vs, Vt, maxT, C, Le, Ld, NH, H, bias, position, norm, activation, share, tie, "
     "eps, pos_base, dropout, the block options: attention, sparse_*, ffn, moe_*, norm_type, "
     "qk_norm, NKV, gated), as EncoderDecoderConfig.c_fields() gives"},
    {"encdec_loss_and_grads", py_encdec_loss_and_grads, METH_VARARGS,
     "encdec_loss_and_grads(model, src (B,S), src_mask (B,S) bool or None, tgt_in (B,T), "
     "tgt_out (B,T), ignore_index, seed, training) -> loss"},
    {"encdec_forward", py_encdec_forward, METH_VARARGS,
     "encdec_forward(model, src (B,S), src_mask or None, tgt_in (B,T), seed, training) -> "
     "logits (B,T,Vt)"},
    {"encdec_inspect", py_encdec_inspect, METH_VARARGS,
     "encdec_inspect(model, src (B,S), src_mask or None, tgt_in (B,T), seed, training, "
     "attentions, hidden_states) -> (logits (B,T,Vt), enc_attn (Le,B,NH,S,S), self_attn "
     "(Ld,B,NH,T,T), cross_attn (Ld,B,NH,T,S), enc_hidden (Le+1,B,S,C), dec_hidden "
     "(Ld+1,B,T,C)); what was not asked for is None"},
    {"encdec_arena_bytes", py_encdec_arena_bytes, METH_VARARGS,
     "encdec_arena_bytes(is_float64, config, B, S, T) -> bytes"},
    {"encdec_arena_size", py_encdec_arena_size, METH_VARARGS,
     "encdec_arena_size(model) -> bytes"},
    {NULL, NULL, 0, NULL},
};
