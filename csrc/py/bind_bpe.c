/* bind_bpe.c: bindings of bpe.c (byte-level BPE: pre-tokeniser, trainer, encoder, decoder).
 * Text arrives as a bytes-like object (UTF-8), the character-class table as a 1-D uint8
 * array, and a trained encoder travels as a capsule made by bpe_new. */
#include "bind.h"

#include <string.h>

#define BPE_CAPSULE "transformer_c._C.bpe"

/* cls as a 1-D C-contiguous uint8 array (no casts: TypeError for another dtype). */
static PyArrayObject *class_table(PyObject *obj)
{
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_UINT8) {
        PyErr_SetString(PyExc_TypeError, "cls must be a uint8 numpy array of character classes");
        return NULL;
    }
    if (PyArray_NDIM((PyArrayObject *)obj) != 1) {
        PyErr_SetString(PyExc_ValueError, "cls must be 1-dimensional (one class per code point)");
        return NULL;
    }
    return (PyArrayObject *)PyArray_FROM_OTF(obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY);
}

static tc_bpe *get_encoder(PyObject *obj)
{
    if (!PyCapsule_IsValid(obj, BPE_CAPSULE)) {
        PyErr_Format(PyExc_TypeError, "encoder must be a BPE encoder made by bpe_new, got %s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (tc_bpe *)PyCapsule_GetPointer(obj, BPE_CAPSULE);
}

static void encoder_destructor(PyObject *capsule)
{
    tc_bpe_free((tc_bpe *)PyCapsule_GetPointer(capsule, BPE_CAPSULE));
}

/* bpe_pretokenize(text bytes, cls uint8 (ncls,)) -> starts int64 (count + 1,) */
static PyObject *py_bpe_pretokenize(PyObject *self, PyObject *args)
{
    PyObject *cls_obj, *result = NULL;
    Py_buffer text = {0};
    PyArrayObject *cls = NULL, *out = NULL;
    int64_t *starts = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O:bpe_pretokenize", &text, &cls_obj)) return NULL;
    if (!(cls = class_table(cls_obj))) goto done;
    int64_t n = text.len, count = 0;
    if (!(starts = PyMem_RawMalloc((size_t)(n + 1) * sizeof *starts))) {
        PyErr_NoMemory();
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bpe_pretokenize(starts, &count, text.buf, n, PyArray_DATA(cls), PyArray_DIM(cls, 0));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "bpe_pretokenize")) goto done;
    npy_intp dims[1] = {count + 1};
    if (!(out = tc_py_new(1, dims, NPY_INT64, 0))) goto done;
    memcpy(PyArray_DATA(out), starts, (size_t)(count + 1) * sizeof *starts);
    result = (PyObject *)out;
    out = NULL;
done:
    PyMem_RawFree(starts);
    if (text.obj) PyBuffer_Release(&text);
    Py_XDECREF(cls);
    Py_XDECREF(out);
    return result;
}

/* bpe_train(text bytes, doc_offsets int (D+1,), cls uint8, max_merges, min_count)
 *   -> (merges int32 (M, 2), counts int64 (M,)) */
static PyObject *py_bpe_train(PyObject *self, PyObject *args)
{
    PyObject *off_obj, *cls_obj, *maxm_obj, *minc_obj, *result = NULL;
    Py_buffer text = {0};
    PyArrayObject *off = NULL, *cls = NULL, *merges = NULL, *counts = NULL;
    int32_t *m_buf = NULL;
    int64_t *c_buf = NULL;
    int64_t max_merges, min_count, n_merges = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*OOOO:bpe_train", &text, &off_obj, &cls_obj, &maxm_obj,
                          &minc_obj))
        return NULL;
    if (!(off = tc_py_index_array(off_obj, "doc_offsets", 1))) goto done;
    if (!(cls = class_table(cls_obj))) goto done;
    if (tc_py_int64(maxm_obj, "max_merges", &max_merges)) goto done;
    if (tc_py_int64(minc_obj, "min_count", &min_count)) goto done;
    if (max_merges < 0 || max_merges > (int64_t)INT32_MAX - 256) {
        PyErr_Format(PyExc_ValueError, "max_merges must be in [0, %ld], got %lld",
                     (long)INT32_MAX - 256, (long long)max_merges);
        goto done;
    }
    if (min_count < 1) {
        PyErr_Format(PyExc_ValueError, "min_count must be >= 1, got %lld", (long long)min_count);
        goto done;
    }
    npy_intp nd = PyArray_DIM(off, 0);
    const int64_t *o = PyArray_DATA(off);
    if (nd < 1 || o[0] != 0 || o[nd - 1] != (int64_t)text.len) {
        PyErr_Format(PyExc_ValueError, "doc_offsets must start at 0 and end at len(text) = %ld",
                     (long)text.len);
        goto done;
    }
    for (npy_intp d = 0; d + 1 < nd; d++) {
        if (o[d + 1] < o[d]) {
            PyErr_Format(PyExc_ValueError, "doc_offsets must be non-decreasing, got %lld after "
                         "%lld at position %ld", (long long)o[d + 1], (long long)o[d], (long)d + 1);
            goto done;
        }
    }
    m_buf = PyMem_RawMalloc((size_t)(max_merges > 0 ? 2 * max_merges : 1) * sizeof *m_buf);
    c_buf = PyMem_RawMalloc((size_t)(max_merges > 0 ? max_merges : 1) * sizeof *c_buf);
    if (!m_buf || !c_buf) {
        PyErr_NoMemory();
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bpe_train(m_buf, c_buf, &n_merges, text.buf, o, nd - 1, PyArray_DATA(cls),
                      PyArray_DIM(cls, 0), max_merges, min_count);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "bpe_train")) goto done;
    npy_intp md[2] = {n_merges, 2};
    if (!(merges = tc_py_new(2, md, NPY_INT32, 0))) goto done;
    if (!(counts = tc_py_new(1, md, NPY_INT64, 0))) goto done;
    memcpy(PyArray_DATA(merges), m_buf, (size_t)(2 * n_merges) * sizeof *m_buf);
    memcpy(PyArray_DATA(counts), c_buf, (size_t)n_merges * sizeof *c_buf);
    result = PyTuple_Pack(2, (PyObject *)merges, (PyObject *)counts);
done:
    PyMem_RawFree(m_buf);
    PyMem_RawFree(c_buf);
    if (text.obj) PyBuffer_Release(&text);
    Py_XDECREF(off);
    Py_XDECREF(cls);
    Py_XDECREF(merges);
    Py_XDECREF(counts);
    return result;
}

/* bpe_new(merges int (M, 2), cls uint8 (ncls,)) -> encoder capsule */
static PyObject *py_bpe_new(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *cls_obj, *result = NULL;
    PyArrayObject *m = NULL, *cls = NULL;
    int32_t *buf = NULL;
    tc_bpe *bpe = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:bpe_new", &m_obj, &cls_obj)) return NULL;
    if (!(m = tc_py_index_array(m_obj, "merges", 2))) goto done;
    if (tc_py_check_dim(m, "merges", 1, 2, "2 (left, right)")) goto done;
    if (!(cls = class_table(cls_obj))) goto done;
    npy_intp M = PyArray_DIM(m, 0);
    if (M > (npy_intp)INT32_MAX - 256) {
        PyErr_Format(PyExc_ValueError, "merges has %ld rows, more than %ld", (long)M,
                     (long)INT32_MAX - 256);
        goto done;
    }
    const int64_t *mv = PyArray_DATA(m);
    for (npy_intp k = 0; k < M; k++) {
        for (int s = 0; s < 2; s++) {
            if (mv[2 * k + s] < 0 || mv[2 * k + s] >= 256 + (int64_t)k) {
                PyErr_Format(PyExc_ValueError, "merges[%ld] = (%lld, %lld): merge k may only use "
                             "bytes (0..255) and earlier merges (< 256 + k)", (long)k,
                             (long long)mv[2 * k], (long long)mv[2 * k + 1]);
                goto done;
            }
        }
    }
    if (!(buf = PyMem_RawMalloc((size_t)(M > 0 ? 2 * M : 1) * sizeof *buf))) {
        PyErr_NoMemory();
        goto done;
    }
    for (npy_intp k = 0; k < 2 * M; k++) buf[k] = (int32_t)mv[k];
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bpe_new(&bpe, buf, M, PyArray_DATA(cls), PyArray_DIM(cls, 0));
    Py_END_ALLOW_THREADS
    if (st == TC_EINVAL) {
        PyErr_SetString(PyExc_ValueError, "merges: every pair must appear once (and tokens "
                        "may not expand beyond 2 GiB)");
        goto done;
    }
    if (tc_py_status(st, "bpe_new")) goto done;
    if (!(result = PyCapsule_New(bpe, BPE_CAPSULE, encoder_destructor))) goto done;
    bpe = NULL;
done:
    tc_bpe_free(bpe);
    PyMem_RawFree(buf);
    Py_XDECREF(m);
    Py_XDECREF(cls);
    return result;
}

/* bpe_encode(encoder, text bytes) -> ids int32 (count,) */
static PyObject *py_bpe_encode(PyObject *self, PyObject *args)
{
    PyObject *enc_obj, *result = NULL;
    Py_buffer text = {0};
    PyArrayObject *out = NULL;
    int32_t *ids = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*:bpe_encode", &enc_obj, &text)) return NULL;
    const tc_bpe *bpe = get_encoder(enc_obj);
    if (!bpe) goto done;
    int64_t n = text.len, count = 0;
    if (!(ids = PyMem_RawMalloc((size_t)(n > 0 ? n : 1) * sizeof *ids))) {
        PyErr_NoMemory();
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bpe_encode(ids, &count, bpe, text.buf, n);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "bpe_encode")) goto done;
    npy_intp dims[1] = {count};
    if (!(out = tc_py_new(1, dims, NPY_INT32, 0))) goto done;
    memcpy(PyArray_DATA(out), ids, (size_t)count * sizeof *ids);
    result = (PyObject *)out;
    out = NULL;
done:
    PyMem_RawFree(ids);
    if (text.obj) PyBuffer_Release(&text);
    Py_XDECREF(out);
    return result;
}

/* bpe_decode(encoder, ids int (n,)) -> bytes */
static PyObject *py_bpe_decode(PyObject *self, PyObject *args)
{
    PyObject *enc_obj, *ids_obj, *result = NULL, *bytes = NULL;
    PyArrayObject *ids = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:bpe_decode", &enc_obj, &ids_obj)) return NULL;
    const tc_bpe *bpe = get_encoder(enc_obj);
    if (!bpe) goto done;
    if (!(ids = tc_py_index_array(ids_obj, "ids", 1))) goto done;
    if (tc_py_check_index_range(ids, "ids", tc_bpe_vocab_size(bpe))) goto done;
    int64_t n = PyArray_DIM(ids, 0), size = 0;
    if (tc_py_status(tc_bpe_decode_size(&size, bpe, PyArray_DATA(ids), n), "bpe_decode")) goto done;
    if (!(bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = tc_bpe_decode((uint8_t *)PyBytes_AS_STRING(bytes), bpe, PyArray_DATA(ids), n);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "bpe_decode")) goto done;
    result = bytes;
    bytes = NULL;
done:
    Py_XDECREF(ids);
    Py_XDECREF(bytes);
    return result;
}

/* bpe_vocab_size(encoder) -> 256 + number of merges */
static PyObject *py_bpe_vocab_size(PyObject *self, PyObject *args)
{
    PyObject *enc_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O:bpe_vocab_size", &enc_obj)) return NULL;
    const tc_bpe *bpe = get_encoder(enc_obj);
    return bpe ? PyLong_FromLongLong((long long)tc_bpe_vocab_size(bpe)) : NULL;
}

PyMethodDef tc_methods_bpe[] = {
    {"bpe_pretokenize", py_bpe_pretokenize, METH_VARARGS,
     "bpe_pretokenize(text, cls) -> int64 byte offsets where GPT-2 pre-tokens start, then len(text)"},
    {"bpe_train", py_bpe_train, METH_VARARGS,
     "bpe_train(text, doc_offsets, cls, max_merges, min_count) -> (merges int32 (M,2), counts int64 (M,))"},
    {"bpe_new", py_bpe_new, METH_VARARGS, "bpe_new(merges (M,2), cls) -> encoder capsule"},
    {"bpe_encode", py_bpe_encode, METH_VARARGS, "bpe_encode(encoder, text) -> int32 ids"},
    {"bpe_decode", py_bpe_decode, METH_VARARGS, "bpe_decode(encoder, ids) -> bytes"},
    {"bpe_vocab_size", py_bpe_vocab_size, METH_VARARGS, "bpe_vocab_size(encoder) -> int"},
    {NULL, NULL, 0, NULL},
};
