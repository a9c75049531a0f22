/* bind_loss.c: bindings of loss.c (cross-entropy).
 *
 * targets decide the kind of loss: an integer array (N,) holds class ids (ignore_index
 * allowed), a float array (N,V) of the logits' dtype holds class probabilities. */
#include "bind.h"

#include <string.h>

/* 1 if obj holds integers (class ids), 0 if floats (probabilities), -1 with TypeError naming
 * targets otherwise (bools, objects, strings...). */
static int targets_are_ids(PyObject *obj)
{
    if (obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "targets must be an array, got None");
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "targets must be array-like, got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    int kind = PyArray_ISINTEGER(a) ? 1 : PyArray_ISFLOAT(a) ? 0 : -1;
    Py_DECREF(a);
    if (kind < 0)
        PyErr_SetString(PyExc_TypeError, "targets must hold integer class ids or float class "
                                         "probabilities");
    return kind;
}

/* Like tc_py_check_index_range, but ids equal to ignore_index are allowed; *n_valid counts
 * the others. (A local helper: the shared one has no ignore_index.) */
static int check_targets(PyArrayObject *ids, int64_t V, int64_t ignore_index, int64_t *n_valid)
{
    const int64_t *p = (const int64_t *)PyArray_DATA(ids);
    npy_intp n = PyArray_SIZE(ids);
    int64_t kept = 0;
    for (npy_intp i = 0; i < n; i++) {
        if (p[i] == ignore_index) continue;
        if (p[i] < 0 || p[i] >= V) {
            PyErr_Format(PyExc_IndexError, "targets holds class id %lld at flat position %ld, "
                         "outside [0, %lld) and not ignore_index (%lld)", (long long)p[i],
                         (long)i, (long long)V, (long long)ignore_index);
            return -1;
        }
        kept++;
    }
    *n_valid = kept;
    return 0;
}

/* The arguments both bindings share, converted and checked: logits (N,V) and targets, ids
 * (N,) int64 or probabilities (N,V). Returns the dtype, or -1 with an exception set. */
static int convert_common(PyObject *logits_obj, PyObject *targets_obj, PyObject *ignore_obj,
                          double label_smoothing, PyArrayObject **logits, PyArrayObject **ids,
                          PyArrayObject **probs, int64_t *ignore_index, int64_t *n_valid)
{
    int ty = tc_py_float_type(logits_obj, "logits");
    if (ty < 0) return -1;
    if (!(*logits = tc_py_float_array(logits_obj, "logits", ty, 2))) return -1;
    npy_intp N = PyArray_DIM(*logits, 0), V = PyArray_DIM(*logits, 1);
    if (V < 1) {
        PyErr_Format(PyExc_ValueError, "logits must have at least one class (V >= 1) along "
                     "axis 1, got V = %ld", (long)V);
        return -1;
    }
    if (tc_py_int64(ignore_obj, "ignore_index", ignore_index)) return -1;
    if (tc_py_check_real(label_smoothing, "label_smoothing", TC_PY_PROB)) return -1;
    int kind = targets_are_ids(targets_obj);
    if (kind < 0) return -1;
    if (kind) {
        if (!(*ids = tc_py_index_array(targets_obj, "targets", 1))) return -1;
        if (tc_py_check_dim(*ids, "targets", 0, N, "the rows of logits")) return -1;
        if (check_targets(*ids, V, *ignore_index, n_valid)) return -1;
    } else {
        if (!(*probs = tc_py_float_array(targets_obj, "targets", ty, 2))) return -1;
        if (tc_py_check_same_shape(*probs, "targets", *logits, "logits")) return -1;
        *n_valid = N;
    }
    return ty;
}

/* cross_entropy_forward(logits (N,V), targets (N,) ints | (N,V) floats, ignore_index,
 *                       label_smoothing) -> (losses (N,), lse (N,), total, n_valid)
 * total is the sum of losses (a float); n_valid the rows not ignored (N for probabilities). */
static PyObject *py_cross_entropy_forward(PyObject *self, PyObject *args)
{
    PyObject *logits_obj, *targets_obj, *ignore_obj, *result = NULL;
    double eps;
    PyArrayObject *logits = NULL, *ids = NULL, *probs = NULL, *losses = NULL, *lse = NULL;
    int64_t ignore_index = 0, n_valid = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOd", &logits_obj, &targets_obj, &ignore_obj, &eps))
        return NULL;
    int ty = convert_common(logits_obj, targets_obj, ignore_obj, eps, &logits, &ids, &probs,
                            &ignore_index, &n_valid);
    if (ty < 0) goto done;
    npy_intp N = PyArray_DIM(logits, 0), V = PyArray_DIM(logits, 1);
    npy_intp dims[1] = {N};
    if (!(losses = tc_py_new(1, dims, ty, 0)) || !(lse = tc_py_new(1, dims, ty, 0))) goto done;
    double total = 0;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (ids)
        st = TC_CALL(ty, tc_loss_cross_entropy_forward, PyArray_DATA(losses), PyArray_DATA(lse),
                     &total, PyArray_DATA(logits), PyArray_DATA(ids), N, V, ignore_index, eps);
    else
        st = TC_CALL(ty, tc_loss_cross_entropy_probs_forward, PyArray_DATA(losses),
                     PyArray_DATA(lse), &total, PyArray_DATA(logits), PyArray_DATA(probs), N, V,
                     eps);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "cross_entropy_forward")) goto done;
    result = Py_BuildValue("(OOdL)", losses, lse, total, (long long)n_valid);
done:
    Py_XDECREF(logits);
    Py_XDECREF(ids);
    Py_XDECREF(probs);
    Py_XDECREF(losses);
    Py_XDECREF(lse);
    return result;
}

/* cross_entropy_backward(logits (N,V), targets, lse (N,) | None, grad_output, reduction,
 *                        ignore_index, label_smoothing) -> dlogits (N,V)
 * reduction "mean" | "sum": grad_output is a float (mean divides it by the rows kept);
 * "none": grad_output (N,) holds one gradient per row. lse None: recomputed. */
static PyObject *py_cross_entropy_backward(PyObject *self, PyObject *args)
{
    PyObject *logits_obj, *targets_obj, *lse_obj, *g_obj, *ignore_obj, *result = NULL;
    const char *reduction;
    double eps;
    PyArrayObject *logits = NULL, *ids = NULL, *probs = NULL, *lse = NULL, *g = NULL;
    PyArrayObject *dlogits = NULL;
    int64_t ignore_index = 0, n_valid = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOsOd", &logits_obj, &targets_obj, &lse_obj, &g_obj,
                          &reduction, &ignore_obj, &eps))
        return NULL;
    int ty = convert_common(logits_obj, targets_obj, ignore_obj, eps, &logits, &ids, &probs,
                            &ignore_index, &n_valid);
    if (ty < 0) goto done;
    npy_intp N = PyArray_DIM(logits, 0), V = PyArray_DIM(logits, 1);
    if (lse_obj != Py_None) {
        if (!(lse = tc_py_float_array(lse_obj, "lse", ty, 1))) goto done;
        if (tc_py_check_dim(lse, "lse", 0, N, "the rows of logits")) goto done;
    }
    double scale = 1.0;
    if (strcmp(reduction, "none") == 0) {
        if (!(g = tc_py_float_array(g_obj, "grad_output", ty, 1))) goto done;
        if (tc_py_check_dim(g, "grad_output", 0, N, "the rows of logits")) goto done;
    } else if (strcmp(reduction, "mean") == 0 || strcmp(reduction, "sum") == 0) {
        if (!PyFloat_Check(g_obj) && !PyLong_Check(g_obj) && !PyArray_IsScalar(g_obj, Number)) {
            PyErr_Format(PyExc_TypeError, "grad_output must be a float for reduction '%s', "
                         "got %s", reduction, Py_TYPE(g_obj)->tp_name);
            goto done;
        }
        scale = PyFloat_AsDouble(g_obj);
        if (scale == -1.0 && PyErr_Occurred()) goto done;
        /* mean over zero kept rows: no row gets a gradient (and none is divided by 0) */
        if (reduction[0] == 'm') scale = n_valid ? scale / (double)n_valid : 0.0;
    } else {
        PyErr_Format(PyExc_ValueError, "reduction must be 'mean', 'sum' or 'none', got '%s'",
                     reduction);
        goto done;
    }
    npy_intp dims[2] = {N, V};
    if (!(dlogits = tc_py_new(2, dims, ty, 1))) goto done;
    const void *lse_p = lse ? PyArray_DATA(lse) : NULL, *g_p = g ? PyArray_DATA(g) : NULL;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (ids)
        st = TC_CALL(ty, tc_loss_cross_entropy_backward, PyArray_DATA(dlogits), lse_p,
                     PyArray_DATA(logits), PyArray_DATA(ids), g_p, N, V, ignore_index, eps,
                     scale, TC_ACCUMULATE);
    else
        st = TC_CALL(ty, tc_loss_cross_entropy_probs_backward, PyArray_DATA(dlogits), lse_p,
                     PyArray_DATA(logits), PyArray_DATA(probs), g_p, N, V, eps, scale,
                     TC_ACCUMULATE);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "cross_entropy_backward")) goto done;
    result = (PyObject *)dlogits;
    dlogits = NULL;
done:
    Py_XDECREF(logits);
    Py_XDECREF(ids);
    Py_XDECREF(probs);
    Py_XDECREF(lse);
    Py_XDECREF(g);
    Py_XDECREF(dlogits);
    return result;
}

/* Test hooks (positional), the plain references of loss_ref.h, targets as above:
 * cross_entropy_forward_ref(logits (N,V), targets, ignore_index, label_smoothing)
 *   -> (losses (N,), lse (N,));
 * cross_entropy_backward_ref(logits, targets, dlosses (N,) | None, ignore_index,
 *   label_smoothing, scale) -> dlogits (N,V) */
static PyObject *py_cross_entropy_ref(PyObject *args, int backward)
{
    PyObject *x_obj, *t_obj, *dl_obj = Py_None, *ig_obj, *result = NULL;
    PyArrayObject *logits = NULL, *ids = NULL, *probs = NULL, *dl = NULL, *a = NULL, *b = NULL;
    double eps, scale = 0;
    int64_t ignore_index, n_valid;
    if (backward ? !PyArg_ParseTuple(args, "OOOOdd", &x_obj, &t_obj, &dl_obj, &ig_obj, &eps, &scale)
                 : !PyArg_ParseTuple(args, "OOOd", &x_obj, &t_obj, &ig_obj, &eps))
        return NULL;
    int ty = convert_common(x_obj, t_obj, ig_obj, eps, &logits, &ids, &probs, &ignore_index,
                            &n_valid);
    if (ty < 0) goto done;
    const npy_intp N = PyArray_DIM(logits, 0), V = PyArray_DIM(logits, 1);
    if (dl_obj != Py_None) {
        if (!(dl = tc_py_float_array(dl_obj, "dlosses", ty, 1))) goto done;
        if (tc_py_check_dim(dl, "dlosses", 0, N, "the rows of logits")) goto done;
    }
    const void *pi = ids ? PyArray_DATA(ids) : NULL, *pp = probs ? PyArray_DATA(probs) : NULL;
    int st;
    if (backward) {
        if (!(a = tc_py_new(2, PyArray_DIMS(logits), ty, 0))) goto done;
        st = TC_CALL(ty, tc_loss_cross_entropy_backward_ref, PyArray_DATA(a), PyArray_DATA(logits),
                     pi, pp, dl ? PyArray_DATA(dl) : NULL, N, V, ignore_index, eps, scale);
    } else {
        if (!(a = tc_py_new(1, PyArray_DIMS(logits), ty, 0)) ||
            !(b = tc_py_new(1, PyArray_DIMS(logits), ty, 0)))
            goto done;
        st = TC_CALL(ty, tc_loss_cross_entropy_forward_ref, PyArray_DATA(a), PyArray_DATA(b),
                     PyArray_DATA(logits), pi, pp, N, V, ignore_index, eps);
    }
    if (tc_py_status(st, "cross_entropy_ref")) goto done;
    result = backward ? Py_NewRef((PyObject *)a) : Py_BuildValue("(OO)", a, b);
done:
    Py_XDECREF(logits);
    Py_XDECREF(ids);
    Py_XDECREF(probs);
    Py_XDECREF(dl);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

static PyObject *py_cross_entropy_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return py_cross_entropy_ref(args, 0);
}

static PyObject *py_cross_entropy_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return py_cross_entropy_ref(args, 1);
}

PyMethodDef tc_methods_loss[] = {
    {"cross_entropy_forward", py_cross_entropy_forward, METH_VARARGS,
     "cross_entropy_forward(logits (N,V), targets (N,) ids | (N,V) probs, ignore_index, "
     "label_smoothing) -> (losses (N,), lse (N,), total, n_valid)"},
    {"cross_entropy_backward", py_cross_entropy_backward, METH_VARARGS,
     "cross_entropy_backward(logits, targets, lse|None, grad_output, reduction, ignore_index, "
     "label_smoothing) -> dlogits (N,V)"},
    {"cross_entropy_forward_ref", py_cross_entropy_forward_ref, METH_VARARGS,
     "cross_entropy_forward_ref(logits, targets, ignore_index, label_smoothing) -> (losses, "
     "lse): test hook, the plain reference"},
    {"cross_entropy_backward_ref", py_cross_entropy_backward_ref, METH_VARARGS,
     "cross_entropy_backward_ref(logits, targets, dlosses, ignore_index, label_smoothing, "
     "scale) -> dlogits: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
