/* bind_decode_encdec.c: bindings of model_encdec_decode.c (KV-cache decoding of an
 * encoder-decoder). A decoder is a capsule that owns a tc_encdec_kv and keeps the parameter
 * array it reads alive. */
#include "bind_encdec_config.h"

#define EDK_CAPSULE "transformer_c.encdec_kv"

typedef struct {
    tc_py_handle base; /* owns kv and the parameter array it reads */
    tc_encdec_kv *kv;
    int64_t Vs, Vt, Bmax, Tmax, Smax;
} edk_handle;

static void edk_free(void *kv) { tc_encdec_kv_free(kv); }

static edk_handle *edk_acquire(PyObject *obj)
{
    return tc_py_handle_acquire(obj, EDK_CAPSULE,
                                "a KV-cache decoder made by encdec_kv_create", "decoder");
}

/* encdec_kv_create(params (P,), config, Bmax, Tmax, Smax) -> decoder */
static PyObject *py_encdec_kv_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj;
    PyArrayObject *p = NULL, *unused = NULL;
    edk_handle *h = NULL;
    tc_encdec_config cfg;
    long long Bmax, Tmax, Smax;
    int ty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO&LLL", &p_obj, encdec_config, &cfg, &Bmax, &Tmax,
                          &Smax))
        return NULL;
    if (Bmax < 1) {
        PyErr_Format(PyExc_ValueError, "max_batch must be >= 1, got %lld", Bmax);
        return NULL;
    }
    if (Tmax < 1 || Tmax > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "max_len must be in [1, block_size = %lld], got %lld",
                     (long long)cfg.maxT, Tmax);
        return NULL;
    }
    if (Smax < 1 || Smax > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "max_src_len must be in [1, block_size = %lld], got "
                     "%lld", (long long)cfg.maxT, Smax);
        return NULL;
    }
    if (tc_py_flat_buffers(p_obj, NULL, tc_encdec_num_params(&cfg), &ty, &p, &unused))
        return NULL;
    if (!(h = PyMem_Calloc(1, sizeof *h))) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    h->base = (tc_py_handle){.free_obj = edk_free, .params = (PyObject *)p, .typenum = ty};
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_encdec_kv_create, &h->kv, &cfg, PyArray_DATA(p), Bmax, Tmax, Smax);
    Py_END_ALLOW_THREADS
    h->base.obj = h->kv;
    if (tc_py_status(st, "encdec_kv_create")) {
        tc_py_handle_discard(&h->base);
        return NULL;
    }
    h->Vs = cfg.Vs;
    h->Vt = cfg.Vt;
    h->Bmax = Bmax;
    h->Tmax = Tmax;
    h->Smax = Smax;
    return tc_py_handle_wrap(&h->base, EDK_CAPSULE);
}

/* encdec_kv_prefill(decoder, src (B,S), src_mask (B,S) bool or None, tgt (B,T))
 *   -> logits (B,Vt) */
static PyObject *py_encdec_kv_prefill(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *s_obj, *m_obj, *t_obj, *result = NULL;
    PyArrayObject *src = NULL, *mask = NULL, *tgt = NULL, *out = NULL;
    edk_handle *h;
    char buf[128];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &k_obj, &s_obj, &m_obj, &t_obj)) return NULL;
    if (!(h = edk_acquire(k_obj))) return NULL;
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
    if (tc_py_check_index_range(tgt, "tgt", h->Vt)) goto done;
    npy_intp dims[2] = {(npy_intp)B, (npy_intp)h->Vt};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    const uint8_t *pm = mask ? (const uint8_t *)PyArray_DATA(mask) : NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
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
    PyObject *k_obj, *t_obj, *result = NULL;
    PyArrayObject *tok = NULL, *out = NULL;
    edk_handle *h;
    int64_t rows = 0, pos = 0, slen = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &t_obj)) return NULL;
    if (!(h = edk_acquire(k_obj))) return NULL;
    tc_encdec_kv_state(h->kv, &rows, &pos, &slen);
    if (pos < 1) {
        PyErr_SetString(PyExc_ValueError, "encdec_kv_step: nothing is cached (call "
                        "encdec_kv_prefill first; a failed call empties the cache)");
        goto done;
    }
    if (pos >= h->Tmax) {
        PyErr_Format(PyExc_ValueError, "the KV cache is full: all max_len = %lld target "
                     "positions are used (the target prefix plus the new tokens exceed the "
                     "length the decoder was created for)", (long long)h->Tmax);
        goto done;
    }
    if (!(tok = tc_py_index_array(t_obj, "tokens", 1))) goto done;
    if (tc_py_check_dim(tok, "tokens", 0, (npy_intp)rows, "one token per cached row")) goto done;
    if (tc_py_check_index_range(tok, "tokens", h->Vt)) goto done;
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)h->Vt};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_encdec_kv_step, h->kv, PyArray_DATA(out),
                 PyArray_DATA(tok), rows);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_kv_step")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(tok);
    Py_XDECREF(out);
    return result;
}

/* encdec_kv_select(decoder, rows (B2,)) -> None */
static PyObject *py_encdec_kv_select(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *r_obj, *result = NULL;
    PyArrayObject *rows = NULL;
    edk_handle *h;
    int64_t B = 0, pos = 0, slen = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &r_obj)) return NULL;
    if (!(h = edk_acquire(k_obj))) return NULL;
    tc_encdec_kv_state(h->kv, &B, &pos, &slen);
    if (!(rows = tc_py_select_rows(r_obj, B, h->Bmax))) goto done;
    const int64_t B2 = PyArray_DIM(rows, 0);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = tc_encdec_kv_select(h->kv, PyArray_DATA(rows), B2);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "encdec_kv_select")) goto done;
    Py_INCREF(Py_None);
    result = Py_None;
done:
    h->base.busy = 0;
    Py_XDECREF(rows);
    return result;
}

/* encdec_kv_state(decoder) -> (rows, pos, src_len, max_batch, max_len, max_src_len,
 *                              cache_bytes) */
static PyObject *py_encdec_kv_state(PyObject *self, PyObject *args)
{
    PyObject *k_obj;
    int64_t rows = 0, pos = 0, slen = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &k_obj)) return NULL;
    edk_handle *h = edk_acquire(k_obj);
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
