/* bind_decode_encdec.c: bindings of encdec_decode.c (KV-cache decoding of an
 * encoder-decoder). A decoder is a capsule that owns a tc_encdec_kv and keeps the parameter
 * array it reads alive; the handle, creation, step and select are the decoders' shared ones
 * (bind_decoder.h), this file the encoder-decoder's prefill (sources, mask, target prefix)
 * and state. */
#include "bind_decoder.h"
#include "bind_encdec_config.h"

static void edk_free(void *kv) { tc_encdec_kv_free(kv); }

static void edk_state(const void *kv, int64_t *rows, int64_t *pos)
{
    int64_t slen;
    tc_encdec_kv_state(kv, rows, pos, &slen);
}

static int edk_step(int ty, void *kv, void *logits, const int64_t *tokens, int64_t B)
{
    return TC_CALL(ty, tc_encdec_kv_step, kv, logits, tokens, B);
}

static int edk_select(void *kv, const int64_t *rows, int64_t B2)
{
    return tc_encdec_kv_select(kv, rows, B2);
}

static const tc_py_decoder_kind encdec_kv = {
    .capsule = "transformer_c.encdec_kv", .create = "encdec_kv_create", .prefix = "encdec_kv",
    .positions = "target positions", .cached = "the target prefix", .free_obj = edk_free,
    .state = edk_state, .step = edk_step, .select = edk_select,
};

/* encdec_kv_create(params (P,), config, Bmax, Tmax, Smax) -> decoder */
static PyObject *py_encdec_kv_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj;
    tc_encdec_config cfg;
    long long Bmax, Tmax, Smax;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO&LLL", &p_obj, encdec_config, &cfg, &Bmax, &Tmax,
                          &Smax))
        return NULL;
    if (tc_py_decoder_sizes(Bmax, Tmax, cfg.maxT)) return NULL;
    if (Smax < 1 || Smax > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "max_src_len must be in [1, block_size = %lld], got "
                     "%lld", (long long)cfg.maxT, Smax);
        return NULL;
    }
    tc_py_decoder *h = tc_py_decoder_new(&encdec_kv, p_obj, tc_encdec_num_params(&cfg));
    if (!h) return NULL;
    h->V = cfg.Vt;
    h->Vs = cfg.Vs;
    h->Bmax = Bmax;
    h->Tmax = Tmax;
    h->Smax = Smax;
    tc_encdec_kv *kv = NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_encdec_kv_create, &kv, &cfg,
                 PyArray_DATA((PyArrayObject *)h->base.params), Bmax, Tmax, Smax);
    Py_END_ALLOW_THREADS
    h->kv = kv;
    return tc_py_decoder_wrap(h, st);
}

/* encdec_kv_prefill(decoder, src (B,S), src_mask (B,S) bool or None, tgt (B,T))
 *   -> logits (B,Vt) */
static PyObject *py_encdec_kv_prefill(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *s_obj, *m_obj, *t_obj, *result = NULL;
    PyArrayObject *src = NULL, *mask = NULL, *tgt = NULL, *out = NULL;
    tc_py_decoder *h;
    char buf[128];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &k_obj, &s_obj, &m_obj, &t_obj)) return NULL;
    if (!(h = tc_py_decoder_acquire(k_obj, &encdec_kv))) return NULL;
    if (!(src = tc_py_index_array(s_obj, "src", 2))) goto done;
    const int64_t B = PyArray_DIM(src, 0), S = PyArray_DIM(src, 1);
    if (B < 1 || B > h->Bmax || S < 1 || S > h->Smax) {
        PyErr_Format(PyExc_ValueError, "src must have shape (B, S) with 1 <= B <= max_batch = "
                     "%lld and 1 <= S <= max_src_len = %lld, got %s", (long long)h->Bmax,
                     (long long)h->Smax, tc_py_shape_str(src, buf, sizeof buf));
        goto done;
    }
    if (tc_py_check_index_range(src, "src", h->Vs)) goto done;
    if (encdec_mask(m_obj, src, &mask)) goto done;
    if (mask) {
        const npy_bool *md = PyArray_DATA(mask);
        for (int64_t b = 0; b < B; b++) {
            int any = 0;
            for (int64_t s = 0; s < S && !any; s++) any = md[b * S + s] != 0;
            if (!any) {
                PyErr_Format(PyExc_ValueError, "src_mask row %lld has no real token: every "
                             "source needs at least one", (long long)b);
                goto done;
            }
        }
    }
    if (!(tgt = tc_py_index_array(t_obj, "tgt", 2))) goto done;
    if (tc_py_check_dim(tgt, "tgt", 0, (npy_intp)B, "B")) goto done;
    const int64_t T = PyArray_DIM(tgt, 1);
    if (T < 1 || T > h->Tmax) {
        PyErr_Format(PyExc_ValueError, "tgt must have shape (B, T) with 1 <= T <= max_len = "
                     "%lld, got %s", (long long)h->Tmax, tc_py_shape_str(tgt, buf, sizeof buf));
        goto done;
    }
    if (tc_py_check_index_range(tgt, "tgt", h->V)) goto done;
    npy_intp dims[2] = {(npy_intp)B, (npy_intp)h->V};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    const uint8_t *pm = mask ? (const uint8_t *)PyArray_DATA(mask) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_encdec_kv_prefill, h->kv, PyArray_DATA(out),
                 PyArray_DATA(src), pm, PyArray_DATA(tgt), B, S, T);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_kv_prefill")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(src);
    Py_XDECREF(mask);
    Py_XDECREF(tgt);
    Py_XDECREF(out);
    return result;
}

/* encdec_kv_step(decoder, tokens (B,)) -> logits (B,Vt) */
static PyObject *py_encdec_kv_step(PyObject *self, PyObject *args)
{
    (void)self;
    return tc_py_decoder_step(args, &encdec_kv);
}

/* encdec_kv_select(decoder, rows (B2,)) -> None */
static PyObject *py_encdec_kv_select(PyObject *self, PyObject *args)
{
    (void)self;
    return tc_py_decoder_select(args, &encdec_kv);
}

/* encdec_kv_state(decoder) -> (rows, pos, src_len, max_batch, max_len, max_src_len,
 *                              cache_bytes) */
static PyObject *py_encdec_kv_state(PyObject *self, PyObject *args)
{
    PyObject *k_obj;
    int64_t rows = 0, pos = 0, slen = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &k_obj)) return NULL;
    tc_py_decoder *h = tc_py_decoder_acquire(k_obj, &encdec_kv);
    if (!h) return NULL;
    tc_encdec_kv_state(h->kv, &rows, &pos, &slen);
    const int64_t bytes = tc_encdec_kv_cache_bytes(h->kv);
    h->base.busy = 0;
    return Py_BuildValue("(LLLLLLL)", (long long)rows, (long long)pos, (long long)slen,
                         (long long)h->Bmax, (long long)h->Tmax, (long long)h->Smax,
                         (long long)bytes);
}

PyMethodDef tc_methods_decode_encdec[] = {
    {"encdec_kv_create", py_encdec_kv_create, METH_VARARGS,
     "encdec_kv_create(params, config, max_batch, max_len, max_src_len) "
     "-> decoder"},
    {"encdec_kv_prefill", py_encdec_kv_prefill, METH_VARARGS,
     "encdec_kv_prefill(decoder, src (B,S), src_mask (B,S) bool or None, tgt (B,T)) -> "
     "logits (B,Vt): runs the encoder and the cross-attention keys/values once"},
    {"encdec_kv_step", py_encdec_kv_step, METH_VARARGS,
     "encdec_kv_step(decoder, tokens (B,)) -> logits (B,Vt)"},
    {"encdec_kv_select", py_encdec_kv_select, METH_VARARGS,
     "encdec_kv_select(decoder, rows (B2,)) -> None: row j becomes old row rows[j]"},
    {"encdec_kv_state", py_encdec_kv_state, METH_VARARGS,
     "encdec_kv_state(decoder) -> (rows, pos, src_len, max_batch, max_len, max_src_len, "
     "cache_bytes)"},
    {NULL, NULL, 0, NULL},
};
