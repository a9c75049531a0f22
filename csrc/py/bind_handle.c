/* bind_handle.c: C objects (models, decoders) owned by Python capsules.
 *
 * A binding's handle struct starts with a tc_py_handle; the capsule owns the handle, the C
 * object and the NumPy arrays the object borrows. While a call runs without the GIL the
 * handle is marked busy, so a second thread using the same object gets RuntimeError
 * instead of sharing its arena. */
#include "bind.h"

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
