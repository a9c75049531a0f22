/* bind_decode.c: bindings of gpt_decode.c (KV-cache decoding of a GPT). A decoder is a
 * capsule that owns a tc_gpt_kv and keeps the parameter array it reads alive; the handle,
 * creation, step and select are the decoders' shared ones (bind_decoder.h), this file the
 * GPT's prefill (left-padded prompts) and state. */
#include "bind_decoder.h"
#include "bind_gpt_config.h"

static void kv_free(void *kv) { tc_gpt_kv_free(kv); }

static void kv_state(const void *kv, int64_t *rows, int64_t *pos)
{
    tc_gpt_kv_state(kv, rows, pos);
}

static int kv_step(int ty, void *kv, void *logits, const int64_t *tokens, int64_t B)
{
    return TC_CALL(ty, tc_gpt_kv_step, kv, logits, tokens, B);
}

static int kv_select(void *kv, const int64_t *rows, int64_t B2)
{
    return tc_gpt_kv_select(kv, rows, B2);
}

static const tc_py_decoder_kind gpt_kv = {
    .capsule = "transformer_c.gpt_kv", .create = "gpt_kv_create", .prefix = "gpt_kv",
    .positions = "positions", .cached = "the prompt length", .free_obj = kv_free,
    .state = kv_state, .step = kv_step, .select = kv_select,
};

/* gpt_kv_create(params (P,), config, Bmax, Smax) -> decoder capsule */
static PyObject *py_gpt_kv_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj;
    tc_gpt_config cfg;
    long long Bmax, Smax;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO&LL", &p_obj, gpt_config, &cfg, &Bmax, &Smax))
        return NULL;
    if (tc_py_decoder_sizes(Bmax, Smax, cfg.maxT)) return NULL;
    tc_py_decoder *h = tc_py_decoder_new(&gpt_kv, p_obj, tc_gpt_num_params(&cfg));
    if (!h) return NULL;
    h->V = cfg.V;
    h->Bmax = Bmax;
    h->Tmax = Smax;
    tc_gpt_kv *kv = NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_gpt_kv_create, &kv, &cfg,
                 PyArray_DATA((PyArrayObject *)h->base.params), Bmax, Smax);
    Py_END_ALLOW_THREADS
    h->kv = kv;
    return tc_py_decoder_wrap(h, st);
}

/* gpt_kv_prefill(decoder, idx (B,T), pad (B,)) -> logits (B,V) */
static PyObject *py_gpt_kv_prefill(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *i_obj, *p_obj, *result = NULL;
    PyArrayObject *idx = NULL, *pad = NULL, *out = NULL;
    tc_py_decoder *h;
    char buf[128];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &k_obj, &i_obj, &p_obj)) return NULL;
    if (!(h = tc_py_decoder_acquire(k_obj, &gpt_kv))) return NULL;
    if (!(idx = tc_py_index_array(i_obj, "idx", 2))) goto done;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    if (B < 1 || B > h->Bmax || T < 1 || T > h->Tmax) {
        PyErr_Format(PyExc_ValueError, "idx must have shape (B, T) with 1 <= B <= max_batch = "
                     "%lld and 1 <= T <= max_len = %lld, got %s", (long long)h->Bmax,
                     (long long)h->Tmax, tc_py_shape_str(idx, buf, sizeof buf));
        goto done;
    }
    if (!(pad = tc_py_index_array(p_obj, "pad", 1))) goto done;
    if (tc_py_check_dim(pad, "pad", 0, (npy_intp)B, "B")) goto done;
    {
        const int64_t *pd = PyArray_DATA(pad), *id = PyArray_DATA(idx);
        for (int64_t b = 0; b < B; b++) {
            if (pd[b] < 0 || pd[b] >= T) {
                PyErr_Format(PyExc_ValueError, "pad[%lld] = %lld must be in [0, T = %lld): "
                             "every row needs at least one real token", (long long)b,
                             (long long)pd[b], (long long)T);
                goto done;
            }
            for (int64_t t = pd[b]; t < T; t++) {
                if (id[b * T + t] < 0 || id[b * T + t] >= h->V) {
                    PyErr_Format(PyExc_IndexError, "idx[%lld, %lld] = %lld is outside [0, %lld)",
                                 (long long)b, (long long)t, (long long)id[b * T + t],
                                 (long long)h->V);
                    goto done;
                }
            }
        }
    }
    npy_intp dims[2] = {(npy_intp)B, (npy_intp)h->V};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_gpt_kv_prefill, h->kv, PyArray_DATA(out), PyArray_DATA(idx),
                 PyArray_DATA(pad), B, T);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_kv_prefill")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(pad);
    Py_XDECREF(out);
    return result;
}

/* gpt_kv_step(decoder, tokens (B,)) -> logits (B,V) */
static PyObject *py_gpt_kv_step(PyObject *self, PyObject *args)
{
    (void)self;
    return tc_py_decoder_step(args, &gpt_kv);
}

/* gpt_kv_select(decoder, rows (B2,)) -> None */
static PyObject *py_gpt_kv_select(PyObject *self, PyObject *args)
{
    (void)self;
    return tc_py_decoder_select(args, &gpt_kv);
}

/* gpt_kv_state(decoder) -> (rows, pos, max_batch, max_len, cache_bytes) */
static PyObject *py_gpt_kv_state(PyObject *self, PyObject *args)
{
    PyObject *k_obj;
    int64_t rows = 0, pos = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &k_obj)) return NULL;
    tc_py_decoder *h = tc_py_decoder_acquire(k_obj, &gpt_kv);
    if (!h) return NULL;
    tc_gpt_kv_state(h->kv, &rows, &pos);
    const int64_t bytes = tc_gpt_kv_cache_bytes(h->kv);
    h->base.busy = 0;
    return Py_BuildValue("(LLLLL)", (long long)rows, (long long)pos, (long long)h->Bmax,
                         (long long)h->Tmax, (long long)bytes);
}

PyMethodDef tc_methods_decode[] = {
    {"gpt_kv_create", py_gpt_kv_create, METH_VARARGS,
     "gpt_kv_create(params, config, max_batch, max_len) -> decoder"},
    {"gpt_kv_prefill", py_gpt_kv_prefill, METH_VARARGS,
     "gpt_kv_prefill(decoder, idx (B,T) left-padded, pad (B,)) -> logits (B,V)"},
    {"gpt_kv_step", py_gpt_kv_step, METH_VARARGS,
     "gpt_kv_step(decoder, tokens (B,)) -> logits (B,V)"},
    {"gpt_kv_select", py_gpt_kv_select, METH_VARARGS,
     "gpt_kv_select(decoder, rows (B2,)) -> None: row j becomes old row rows[j]"},
    {"gpt_kv_state", py_gpt_kv_state, METH_VARARGS,
     "gpt_kv_state(decoder) -> (rows, pos, max_batch, max_len, cache_bytes)"},
    {NULL, NULL, 0, NULL},
};
