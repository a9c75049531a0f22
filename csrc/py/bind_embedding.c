/* bind_embedding.c: bindings of embedding.c. */
#include "bind.h"

/* embedding_forward[_ref](ids (N,) any integer dtype, weight (V,D)) -> out (N,D); ref: the
 * plain reference (embedding_ref.h; a test hook) */
static PyObject *embedding_forward_common(PyObject *args, int ref)
{
    PyObject *ids_obj, *w_obj, *result = NULL;
    PyArrayObject *ids = NULL, *w = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO", &ids_obj, &w_obj)) return NULL;
    int ty;
    if (!(w = tc_py_float_input(w_obj, "weight", 2, &ty))) goto done;
    if (!(ids = tc_py_index_array(ids_obj, "ids", 1))) goto done;
    npy_intp N = PyArray_DIM(ids, 0), V = PyArray_DIM(w, 0), D = PyArray_DIM(w, 1);
    if (tc_py_check_index_range(ids, "ids", V)) goto done;
    npy_intp dims[2] = {N, D};
    if (!(out = tc_py_new(2, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_embedding_forward_ref, PyArray_DATA(out), PyArray_DATA(ids),
                       PyArray_DATA(w), N, V, D)
             : TC_CALL(ty, tc_embedding_forward, PyArray_DATA(out), PyArray_DATA(ids),
                       PyArray_DATA(w), N, V, D);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "embedding_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(ids);
    Py_XDECREF(w);
    Py_XDECREF(out);
    return result;
}

static PyObject *py_embedding_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return embedding_forward_common(args, 0);
}

static PyObject *py_embedding_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return embedding_forward_common(args, 1);
}

/* embedding_backward[_ref](grad_output (N,D), ids (N,) any integer dtype, num_embeddings V)
 *   -> dweight (V,D); ref: the plain reference (a test hook) */
static PyObject *embedding_backward_common(PyObject *args, int ref)
{
    PyObject *dy_obj, *ids_obj, *v_obj, *result = NULL;
    PyArrayObject *dy = NULL, *ids = NULL, *dw = NULL;
    int64_t V;
    if (!PyArg_ParseTuple(args, "OOO", &dy_obj, &ids_obj, &v_obj)) return NULL;
    if (tc_py_int64(v_obj, "num_embeddings", &V)) goto done;
    if (V < 0) {
        PyErr_Format(PyExc_ValueError, "num_embeddings must be >= 0, got %lld", (long long)V);
        goto done;
    }
    int ty;
    if (!(dy = tc_py_float_input(dy_obj, "grad_output", 2, &ty))) goto done;
    if (!(ids = tc_py_index_array(ids_obj, "ids", 1))) goto done;
    npy_intp N = PyArray_DIM(dy, 0), D = PyArray_DIM(dy, 1);
    if (tc_py_check_dim(ids, "ids", 0, N, "the rows of grad_output")) goto done;
    if (tc_py_check_index_range(ids, "ids", V)) goto done;
    npy_intp dims[2] = {(npy_intp)V, D};
    if (!(dw = tc_py_new(2, dims, ty, 1))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_embedding_backward_ref, PyArray_DATA(dw), PyArray_DATA(dy),
                       PyArray_DATA(ids), N, V, D)
             : TC_CALL(ty, tc_embedding_backward, PyArray_DATA(dw), PyArray_DATA(dy),
                       PyArray_DATA(ids), N, V, D, TC_ACCUMULATE);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "embedding_backward")) goto done;
    result = (PyObject *)dw;
    dw = NULL;
done:
    Py_XDECREF(dy);
    Py_XDECREF(ids);
    Py_XDECREF(dw);
    return result;
}

static PyObject *py_embedding_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return embedding_backward_common(args, 0);
}

static PyObject *py_embedding_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return embedding_backward_common(args, 1);
}

PyMethodDef tc_methods_embedding[] = {
    {"embedding_forward", py_embedding_forward, METH_VARARGS,
     "embedding_forward(ids (N,) integers, weight (V,D)) -> out (N,D)"},
    {"embedding_backward", py_embedding_backward, METH_VARARGS,
     "embedding_backward(grad_output (N,D), ids (N,), num_embeddings) -> dweight (V,D)"},
    {"embedding_forward_ref", py_embedding_forward_ref, METH_VARARGS,
     "embedding_forward_ref(ids, weight) -> out: test hook, the plain reference"},
    {"embedding_backward_ref", py_embedding_backward_ref, METH_VARARGS,
     "embedding_backward_ref(grad_output, ids, num_embeddings) -> dweight: test hook, the plain "
     "reference"},
    {NULL, NULL, 0, NULL},
};
