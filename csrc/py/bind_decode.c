/* bind_decode.c: bindings of model_decode.c (KV-cache decoding of a GPT). A decoder is a
 * capsule that owns a tc_gpt_kv and keeps the parameter array it reads alive. */
#include "bind_gpt_config.h"

#define KV_CAPSULE "transformer_c.gpt_kv"

typedef struct {
    tc_py_handle base; /* owns kv and the parameter array it reads */
    tc_gpt_kv *kv;
    int64_t V, Bmax, Smax;
} kv_handle;

static void kv_free(void *kv) { tc_gpt_kv_free(kv); }

static kv_handle *kv_acquire(PyObject *obj)
{
    return tc_py_handle_acquire(obj, KV_CAPSULE, "a KV-cache decoder made by gpt_kv_create",
                                "decoder");
}

/* gpt_kv_create(params (P,), config, Bmax, Smax) -> decoder capsule */
static PyObject *py_gpt_kv_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj;
    PyArrayObject *p = NULL, *unused = NULL;
    kv_handle *h = NULL;
    tc_gpt_config cfg;
    long long Bmax, Smax;
    int ty;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO&LL", &p_obj, gpt_config, &cfg, &Bmax, &Smax))
        return NULL;
    if (Bmax < 1) {
        PyErr_Format(PyExc_ValueError, "max_batch must be >= 1, got %lld", Bmax);
        return NULL;
    }
    if (Smax < 1 || Smax > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "max_len must be in [1, block_size = %lld], got %lld",
                     (long long)cfg.maxT, Smax);
        return NULL;
    }
    if (tc_py_flat_buffers(p_obj, NULL, tc_gpt_num_params(&cfg), &ty, &p, &unused))
        return NULL;
    if (!(h = PyMem_Calloc(1, sizeof *h))) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    h->base = (tc_py_handle){.free_obj = kv_free, .params = (PyObject *)p, .typenum = ty};
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_gpt_kv_create, &h->kv, &cfg, PyArray_DATA(p), Bmax, Smax);
    Py_END_ALLOW_THREADS
    h->base.obj = h->kv;
    if (tc_py_status(st, "gpt_kv_create")) {
        tc_py_handle_discard(&h->base);
        return NULL;
    }
    h->V = cfg.V;
    h->Bmax = Bmax;
    h->Smax = Smax;
    return tc_py_handle_wrap(&h->base, KV_CAPSULE);
}

/* gpt_kv_prefill(decoder, idx (B,T), pad (B,)) -> logits (B,V) */
static PyObject *py_gpt_kv_prefill(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *i_obj, *p_obj, *result = NULL;
    PyArrayObject *idx = NULL, *pad = NULL, *out = NULL;
    kv_handle *h;
    char buf[128];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &k_obj, &i_obj, &p_obj)) return NULL;
    if (!(h = kv_acquire(k_obj))) return NULL;
    if (!(idx = tc_py_index_array(i_obj, "idx", 2))) goto done;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    if (B < 1 || B > h->Bmax || T < 1 || T > h->Smax) {
        PyErr_Format(PyExc_ValueError, "idx must have shape (B, T) with 1 <= B <= max_batch = "
                     "%lld and 1 <= T <= max_len = %lld, got %s", (long long)h->Bmax,
                     (long long)h->Smax, tc_py_shape_str(idx, buf, sizeof buf));
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
    Py_BEGIN_ALLOW_THREADS
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
    PyObject *k_obj, *t_obj, *result = NULL;
    PyArrayObject *tok = NULL, *out = NULL;
    kv_handle *h;
    int64_t rows = 0, pos = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &t_obj)) return NULL;
    if (!(h = kv_acquire(k_obj))) return NULL;
    tc_gpt_kv_state(h->kv, &rows, &pos);
    if (pos < 1) {
        PyErr_SetString(PyExc_ValueError, "gpt_kv_step: nothing is cached (call gpt_kv_prefill "
                        "first; a failed call empties the cache)");
        goto done;
    }
    if (pos >= h->Smax) {
        PyErr_Format(PyExc_ValueError, "the KV cache is full: all max_len = %lld positions are "
                     "used (the prompt length plus the new tokens exceed the length the "
                     "decoder was created for)", (long long)h->Smax);
        goto done;
    }
    if (!(tok = tc_py_index_array(t_obj, "tokens", 1))) goto done;
    if (tc_py_check_dim(tok, "tokens", 0, (npy_intp)rows, "one token per cached row")) goto done;
    if (tc_py_check_index_range(tok, "tokens", h->V)) goto done;
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)h->V};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = TC_CALL(h->base.typenum, tc_gpt_kv_step, h->kv, PyArray_DATA(out), PyArray_DATA(tok),
                 rows);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_kv_step")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(tok);
    Py_XDECREF(out);
    return result;
}

/* gpt_kv_select(decoder, rows (B2,)) -> None */
static PyObject *py_gpt_kv_select(PyObject *self, PyObject *args)
{
    PyObject *k_obj, *r_obj, *result = NULL;
    PyArrayObject *rows = NULL;
    kv_handle *h;
    int64_t B = 0, pos = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &r_obj)) return NULL;
    if (!(h = kv_acquire(k_obj))) return NULL;
    tc_gpt_kv_state(h->kv, &B, &pos);
    if (!(rows = tc_py_select_rows(r_obj, B, h->Bmax))) goto done;
    const int64_t B2 = PyArray_DIM(rows, 0);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = tc_gpt_kv_select(h->kv, PyArray_DATA(rows), B2);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_kv_select")) goto done;
    Py_INCREF(Py_None);
    result = Py_None;
done:
    h->base.busy = 0;
    Py_XDECREF(rows);
    return result;
}

/* gpt_kv_state(decoder) -> (rows, pos, max_batch, max_len, cache_bytes) */
static PyObject *py_gpt_kv_state(PyObject *self, PyObject *args)
{
    PyObject *k_obj;
    int64_t rows = 0, pos = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &k_obj)) return NULL;
    kv_handle *h = kv_acquire(k_obj);
    if (!h) return NULL;
    tc_gpt_kv_state(h->kv, &rows, &pos);
    const int64_t bytes = tc_gpt_kv_cache_bytes(h->kv);
    h->base.busy = 0;
    return Py_BuildValue("(LLLLL)", (long long)rows, (long long)pos, (long long)h->Bmax,
                         (long long)h->Smax, (long long)bytes);
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
