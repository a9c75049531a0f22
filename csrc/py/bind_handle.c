/* bind_handle.c: C objects (models, decoders) owned by Python capsules.
 *
 * A binding's handle struct starts with a tc_py_handle; the capsule owns the handle, the C
 * object and the NumPy arrays the object borrows. While a call runs without the GIL the
 * handle is marked busy, so a second thread using the same object gets RuntimeError
 * instead of sharing its arena. */
#include "bind_decoder.h"

#include <stdio.h>

void tc_py_handle_discard(tc_py_handle *h)
{
    if (!h) return;
    if (h->obj && h->free_obj) h->free_obj(h->obj);
    Py_XDECREF(h->params);
    Py_XDECREF(h->grads);
    PyMem_Free(h);
}

static void handle_capsule_free(PyObject *cap)
{
    tc_py_handle *h = PyCapsule_GetPointer(cap, PyCapsule_GetName(cap));
    if (!h) {
        PyErr_Clear();
        return;
    }
    tc_py_handle_discard(h);
}

PyObject *tc_py_handle_wrap(tc_py_handle *h, const char *capsule_name)
{
    PyObject *cap = PyCapsule_New(h, capsule_name, handle_capsule_free);
    if (!cap) tc_py_handle_discard(h);
    return cap;
}

void *tc_py_handle_acquire(PyObject *obj, const char *capsule_name, const char *what,
                           const char *name)
{
    if (!PyCapsule_IsValid(obj, capsule_name)) {
        PyErr_Format(PyExc_TypeError, "%s must be %s, got %s", name, what,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    tc_py_handle *h = PyCapsule_GetPointer(obj, capsule_name);
    if (!h) return NULL;
    if (h->busy) {
        PyErr_Format(PyExc_RuntimeError, "this %s is already running a call in another thread "
                     "(its buffers serve one call at a time)", name);
        return NULL;
    }
    h->busy = 1;
    return h;
}

int tc_py_flat_buffers(PyObject *p_obj, PyObject *g_obj, int64_t P, int *typenum,
                       PyArrayObject **params, PyArrayObject **grads)
{
    *params = *grads = NULL;
    int ty = tc_py_float_type(p_obj, "params");
    if (ty < 0) return -1;
    PyArrayObject *p = g_obj ? tc_py_inout_array(p_obj, "params", ty)
                             : tc_py_float_array(p_obj, "params", ty, -1);
    if (!p) return -1;
    if (PyArray_NDIM(p) != 1 || PyArray_DIM(p, 0) != P) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "params must be 1-D with %lld elements for this config, "
                     "got shape %s", (long long)P, tc_py_shape_str(p, buf, sizeof buf));
        goto fail;
    }
    if (g_obj) {
        PyArrayObject *g = tc_py_inout_array(g_obj, "grads", ty);
        if (!g) goto fail;
        if (tc_py_check_same_shape(g, "grads", p, "params")) {
            Py_DECREF(g);
            goto fail;
        }
        if (PyArray_DATA(p) == PyArray_DATA(g)) {
            PyErr_SetString(PyExc_ValueError, "grads must not share memory with params");
            Py_DECREF(g);
            goto fail;
        }
        *grads = g;
    }
    *params = p;
    *typenum = ty;
    return 0;
fail:
    Py_DECREF(p);
    return -1;
}

int tc_py_check_targets(PyArrayObject *targets, const char *name, int64_t V,
                        int64_t ignore_index)
{
    const int64_t *t = PyArray_DATA(targets);
    for (npy_intp n = 0; n < PyArray_SIZE(targets); n++) {
        if (t[n] != ignore_index && (t[n] < 0 || t[n] >= V)) {
            PyErr_Format(PyExc_IndexError, "%s holds id %lld at flat position %ld, outside "
                         "[0, %lld) and not ignore_index (%lld)", name, (long long)t[n],
                         (long)n, (long long)V, (long long)ignore_index);
            return -1;
        }
    }
    return 0;
}

PyArrayObject *tc_py_select_rows(PyObject *obj, int64_t rows_now, int64_t max_rows)
{
    PyArrayObject *rows = tc_py_index_array(obj, "rows", 1);
    if (!rows) return NULL;
    if (PyArray_DIM(rows, 0) > max_rows) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "rows must have at most max_batch = %lld entries, got %s",
                     (long long)max_rows, tc_py_shape_str(rows, buf, sizeof buf));
        Py_DECREF(rows);
        return NULL;
    }
    if (tc_py_check_index_range(rows, "rows", rows_now)) {
        Py_DECREF(rows);
        return NULL;
    }
    return rows;
}

/* ------------------------------------------------------------------ KV-cache decoders */

int tc_py_decoder_sizes(long long Bmax, long long Tmax, int64_t maxT)
{
    if (Bmax < 1) {
        PyErr_Format(PyExc_ValueError, "max_batch must be >= 1, got %lld", Bmax);
        return -1;
    }
    if (Tmax < 1 || Tmax > maxT) {
        PyErr_Format(PyExc_ValueError, "max_len must be in [1, block_size = %lld], got %lld",
                     (long long)maxT, Tmax);
        return -1;
    }
    return 0;
}

tc_py_decoder *tc_py_decoder_new(const tc_py_decoder_kind *kind, PyObject *p_obj, int64_t P)
{
    PyArrayObject *p = NULL, *unused = NULL;
    int ty;
    if (tc_py_flat_buffers(p_obj, NULL, P, &ty, &p, &unused)) return NULL;
    tc_py_decoder *h = PyMem_Calloc(1, sizeof *h);
    if (!h) {
        Py_DECREF(p);
        PyErr_NoMemory();
        return NULL;
    }
    h->base = (tc_py_handle){.free_obj = kind->free_obj, .params = (PyObject *)p, .typenum = ty};
    h->kind = kind;
    return h;
}

PyObject *tc_py_decoder_wrap(tc_py_decoder *h, int st)
{
    h->base.obj = h->kv;
    if (tc_py_status(st, h->kind->create)) {
        tc_py_handle_discard(&h->base);
        return NULL;
    }
    return tc_py_handle_wrap(&h->base, h->kind->capsule);
}

tc_py_decoder *tc_py_decoder_acquire(PyObject *obj, const tc_py_decoder_kind *kind)
{
    char what[96];
    snprintf(what, sizeof what, "a KV-cache decoder made by %s", kind->create);
    return tc_py_handle_acquire(obj, kind->capsule, what, "decoder");
}

PyObject *tc_py_decoder_step(PyObject *args, const tc_py_decoder_kind *kind)
{
    PyObject *k_obj, *t_obj, *result = NULL;
    PyArrayObject *tok = NULL, *out = NULL;
    tc_py_decoder *h;
    int64_t rows = 0, pos = 0;
    char name[64];
    snprintf(name, sizeof name, "%s_step", kind->prefix);
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &t_obj)) return NULL;
    if (!(h = tc_py_decoder_acquire(k_obj, kind))) return NULL;
    kind->state(h->kv, &rows, &pos);
    if (pos < 1) {
        PyErr_Format(PyExc_ValueError, "%s: nothing is cached (call %s_prefill first; a failed "
                     "call empties the cache)", name, kind->prefix);
        goto done;
    }
    if (pos >= h->Tmax) {
        PyErr_Format(PyExc_ValueError, "the KV cache is full: all max_len = %lld %s are used "
                     "(%s plus the new tokens exceed the length the decoder was created for)",
                     (long long)h->Tmax, kind->positions, kind->cached);
        goto done;
    }
    if (!(tok = tc_py_index_array(t_obj, "tokens", 1))) goto done;
    if (tc_py_check_dim(tok, "tokens", 0, (npy_intp)rows, "one token per cached row")) goto done;
    if (tc_py_check_index_range(tok, "tokens", h->V)) goto done;
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)h->V};
    if (!(out = tc_py_new(2, dims, h->base.typenum, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = kind->step(h->base.typenum, h->kv, PyArray_DATA(out), PyArray_DATA(tok), rows);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, name)) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->base.busy = 0;
    Py_XDECREF(tok);
    Py_XDECREF(out);
    return result;
}

PyObject *tc_py_decoder_select(PyObject *args, const tc_py_decoder_kind *kind)
{
    PyObject *k_obj, *r_obj, *result = NULL;
    PyArrayObject *rows = NULL;
    tc_py_decoder *h;
    int64_t B = 0, pos = 0;
    char name[64];
    snprintf(name, sizeof name, "%s_select", kind->prefix);
    if (!PyArg_ParseTuple(args, "OO", &k_obj, &r_obj)) return NULL;
    if (!(h = tc_py_decoder_acquire(k_obj, kind))) return NULL;
    kind->state(h->kv, &B, &pos);
    if (!(rows = tc_py_select_rows(r_obj, B, h->Bmax))) goto done;
    const int64_t B2 = PyArray_DIM(rows, 0);
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = kind->select(h->kv, PyArray_DATA(rows), B2);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, name)) goto done;
    Py_INCREF(Py_None);
    result = Py_None;
done:
    h->base.busy = 0;
    Py_XDECREF(rows);
    return result;
}
