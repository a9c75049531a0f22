/* bind_optim.c: bindings of optim.c (in-place optimizer updates, gradient norm, scaling).
 *
 * param and optimizer states are updated in place, so they must already be writeable
 * C-contiguous arrays (tc_py_inout_array); grad may have any layout (it is copied if need
 * be). All of them must have the same shape and dtype. */
#include "bind.h"

#include <stdio.h>

/* param (in place) and grad of its shape; returns the dtype or -1 with an exception set. */
static int convert_param_grad(PyObject *param_obj, PyObject *grad_obj, PyArrayObject **param,
                              PyArrayObject **grad)
{
    int ty = tc_py_float_type(param_obj, "param");
    if (ty < 0) return -1;
    if (!(*param = tc_py_inout_array(param_obj, "param", ty))) return -1;
    if (!(*grad = tc_py_float_array(grad_obj, "grad", ty, -1))) return -1;
    if (tc_py_check_same_shape(*grad, "grad", *param, "param")) return -1;
    return ty;
}

/* An optimizer state updated in place: param's dtype and shape. */
static PyArrayObject *convert_state(PyObject *obj, const char *name, int ty, PyArrayObject *param)
{
    PyArrayObject *a = tc_py_inout_array(obj, name, ty);
    if (a && tc_py_check_same_shape(a, name, param, "param")) {
        Py_DECREF(a);
        a = NULL;
    }
    return a;
}

/* sgd_update(param, grad, momentum_buffer | None, lr, momentum, dampening, weight_decay,
 *            nesterov, first_step) -> None; param (and the buffer) updated in place */
static PyObject *py_sgd_update(PyObject *self, PyObject *args)
{
    PyObject *param_obj, *grad_obj, *buf_obj, *result = NULL;
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
    PyArrayObject *param = NULL, *grad = NULL, *buf = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOddddpp", &param_obj, &grad_obj, &buf_obj, &lr, &momentum,
                          &dampening, &weight_decay, &nesterov, &first_step))
        return NULL;
    int ty = convert_param_grad(param_obj, grad_obj, &param, &grad);
    if (ty < 0) goto done;
    if (buf_obj != Py_None) {
        if (!(buf = convert_state(buf_obj, "momentum_buffer", ty, param))) goto done;
    } else if (momentum != 0) {
        PyErr_SetString(PyExc_ValueError, "momentum_buffer is required when momentum != 0");
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_optim_sgd_update, PyArray_DATA(param), buf ? PyArray_DATA(buf) : NULL,
                 PyArray_DATA(grad), PyArray_SIZE(param), lr, momentum, dampening, weight_decay,
                 nesterov, first_step);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "sgd_update")) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(param);
    Py_XDECREF(grad);
    Py_XDECREF(buf);
    return result;
}

/* adam_update / adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
 *                            weight_decay) -> None; param and states updated in place */
static PyObject *adam_common(PyObject *args, int decoupled)
{
    PyObject *param_obj, *grad_obj, *m_obj, *v_obj, *step_obj, *result = NULL;
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step = 0;
    PyArrayObject *param = NULL, *grad = NULL, *m = NULL, *v = NULL;
    const char *name = decoupled ? "adamw_update" : "adam_update";
    if (!PyArg_ParseTuple(args, "OOOOOddddd", &param_obj, &grad_obj, &m_obj, &v_obj, &step_obj,
                          &lr, &beta1, &beta2, &eps, &weight_decay))
        return NULL;
    int ty = convert_param_grad(param_obj, grad_obj, &param, &grad);
    if (ty < 0) goto done;
    if (!(m = convert_state(m_obj, "exp_avg", ty, param))) goto done;
    if (!(v = convert_state(v_obj, "exp_avg_sq", ty, param))) goto done;
    if (tc_py_int64(step_obj, "step", &step)) goto done;
    if (step < 1) {
        PyErr_Format(PyExc_ValueError, "step must be >= 1 (the count of this update), got %lld",
                     (long long)step);
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    if (decoupled)
        st = TC_CALL(ty, tc_optim_adamw_update, PyArray_DATA(param), PyArray_DATA(m),
                     PyArray_DATA(v), PyArray_DATA(grad), PyArray_SIZE(param), step, lr, beta1,
                     beta2, eps, weight_decay);
    else
        st = TC_CALL(ty, tc_optim_adam_update, PyArray_DATA(param), PyArray_DATA(m),
                     PyArray_DATA(v), PyArray_DATA(grad), PyArray_SIZE(param), step, lr, beta1,
                     beta2, eps, weight_decay);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, name)) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(param);
    Py_XDECREF(grad);
    Py_XDECREF(m);
    Py_XDECREF(v);
    return result;
}

static PyObject *py_adam_update(PyObject *self, PyObject *args)
{
    (void)self;
    return adam_common(args, 0);
}

static PyObject *py_adamw_update(PyObject *self, PyObject *args)
{
    (void)self;
    return adam_common(args, 1);
}

/* 0 when each destination outs[a] is its source ins[a] or overlaps no source and no other
 * destination (n arrays of nbytes each), else -1 with ValueError naming both arrays. */
static int check_out_aliases(PyArrayObject **outs, const char *const *out_names, int nout,
                             PyArrayObject **ins, const char *const *in_names, int nin)
{
    for (int a = 0; a < nout; a++) {
        const char *d = PyArray_BYTES(outs[a]);
        const npy_intp nb = PyArray_NBYTES(outs[a]);
        for (int b = 0; b < nin + a; b++) {
            PyArrayObject *o = b < nin ? ins[b] : outs[b - nin];
            const char *s = PyArray_BYTES(o);
            const int same = d == s && b < nin;
            if (nb > 0 && !same && d < s + PyArray_NBYTES(o) && s < d + nb) {
                PyErr_Format(PyExc_ValueError,
                             "%s must be its own input array (in place) or not overlap %s",
                             out_names[a], b < nin ? in_names[b] : out_names[b - nin]);
                return -1;
            }
        }
    }
    return 0;
}

/* A destination of an out-of-place update: writeable C-contiguous, param's dtype and shape. */
static PyArrayObject *convert_out(PyObject *obj, const char *name, int ty, PyArrayObject *param)
{
    return convert_state(obj, name, ty, param);
}

/* sgd_update_out(new_param, new_buffer | None, param, grad, momentum_buffer | None, lr,
 *                momentum, dampening, weight_decay, nesterov, first_step) -> None:
 * new_param (and new_buffer) filled from the sources, which are only read */
static PyObject *py_sgd_update_out(PyObject *self, PyObject *args)
{
    PyObject *np_obj, *nb_obj, *p_obj, *g_obj, *b_obj, *result = NULL;
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
    PyArrayObject *arr[5] = {NULL, NULL, NULL, NULL, NULL}; /* new_p, new_b, p, g, b */
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOddddpp", &np_obj, &nb_obj, &p_obj, &g_obj, &b_obj, &lr,
                          &momentum, &dampening, &weight_decay, &nesterov, &first_step))
        return NULL;
    int ty = tc_py_float_type(p_obj, "param");
    if (ty < 0) goto done;
    if (!(arr[2] = tc_py_float_array(p_obj, "param", ty, -1))) goto done;
    if (!(arr[3] = tc_py_float_array(g_obj, "grad", ty, -1))) goto done;
    if (tc_py_check_same_shape(arr[3], "grad", arr[2], "param")) goto done;
    if (!(arr[0] = convert_out(np_obj, "out[0] (the new param)", ty, arr[2]))) goto done;
    const int use_mu = momentum != 0;
    if (use_mu) {
        if (b_obj == Py_None || nb_obj == Py_None) {
            PyErr_SetString(PyExc_ValueError,
                            "momentum_buffer and out[1] are required when momentum != 0");
            goto done;
        }
        if (!(arr[4] = tc_py_float_array(b_obj, "momentum_buffer", ty, -1))) goto done;
        if (tc_py_check_same_shape(arr[4], "momentum_buffer", arr[2], "param")) goto done;
        if (!(arr[1] = convert_out(nb_obj, "out[1] (the new momentum_buffer)", ty, arr[2])))
            goto done;
    }
    {
        PyArrayObject *outs[2] = {arr[0], arr[1]}, *ins[3] = {arr[2], arr[3], arr[4]};
        const char *on[2] = {"out[0] (the new param)", "out[1] (the new momentum_buffer)"};
        const char *in[3] = {"param", "grad", "momentum_buffer"};
        if (check_out_aliases(outs, on, use_mu ? 2 : 1, ins, in, use_mu ? 3 : 2)) goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_optim_sgd_update_out, PyArray_DATA(arr[0]),
                 use_mu ? PyArray_DATA(arr[1]) : NULL, PyArray_DATA(arr[2]),
                 use_mu ? PyArray_DATA(arr[4]) : NULL, PyArray_DATA(arr[3]),
                 PyArray_SIZE(arr[2]), lr, momentum, dampening, weight_decay, nesterov,
                 first_step);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "sgd_update_out")) goto done;
    result = Py_NewRef(Py_None);
done:
    for (int k = 0; k < 5; k++) Py_XDECREF(arr[k]);
    return result;
}

/* adam_update_out(new_param, new_exp_avg, new_exp_avg_sq, param, grad, exp_avg, exp_avg_sq,
 *                 step, lr, beta1, beta2, eps, weight_decay, decoupled) -> None: the new
 * arrays filled from the sources, which are only read (decoupled 1: AdamW) */
static PyObject *py_adam_update_out(PyObject *self, PyObject *args)
{
    PyObject *obj[7], *step_obj, *result = NULL;
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled;
    int64_t step = 0;
    PyArrayObject *arr[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    static const char *names[7] = {"out[0] (the new param)", "out[1] (the new exp_avg)",
                                   "out[2] (the new exp_avg_sq)", "param", "grad", "exp_avg",
                                   "exp_avg_sq"};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOdddddp", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4],
                          &obj[5], &obj[6], &step_obj, &lr, &beta1, &beta2, &eps,
                          &weight_decay, &decoupled))
        return NULL;
    int ty = tc_py_float_type(obj[3], "param");
    if (ty < 0) goto done;
    for (int k = 3; k < 7; k++) {
        if (!(arr[k] = tc_py_float_array(obj[k], names[k], ty, -1))) goto done;
        if (k > 3 && tc_py_check_same_shape(arr[k], names[k], arr[3], "param")) goto done;
    }
    for (int k = 0; k < 3; k++)
        if (!(arr[k] = convert_out(obj[k], names[k], ty, arr[3]))) goto done;
    if (check_out_aliases(arr, names, 3, arr + 3, names + 3, 4)) goto done;
    if (tc_py_int64(step_obj, "step", &step)) goto done;
    if (step < 1) {
        PyErr_Format(PyExc_ValueError, "step must be >= 1 (the count of this update), got %lld",
                     (long long)step);
        goto done;
    }
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_optim_adam_update_out, PyArray_DATA(arr[0]), PyArray_DATA(arr[1]),
                 PyArray_DATA(arr[2]), PyArray_DATA(arr[3]), PyArray_DATA(arr[5]),
                 PyArray_DATA(arr[6]), PyArray_DATA(arr[4]), PyArray_SIZE(arr[3]), step, lr,
                 beta1, beta2, eps, weight_decay, decoupled);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "adam_update_out")) goto done;
    result = Py_NewRef(Py_None);
done:
    for (int k = 0; k < 7; k++) Py_XDECREF(arr[k]);
    return result;
}

/* muon_update / muon_update_ref(param, momentum_buffer, grad, matrices (count, 3) int64,
 *                               lr, momentum, weight_decay, nesterov, ns_steps) -> None:
 * param and momentum_buffer updated in place where the matrices lie */
static PyObject *muon_common(PyObject *args, int ref)
{
    PyObject *p_obj, *b_obj, *g_obj, *mat_obj, *result = NULL;
    double lr, momentum, weight_decay;
    int nesterov, ns_steps;
    PyArrayObject *param = NULL, *grad = NULL, *buf = NULL, *mat = NULL;
    const char *name = ref ? "muon_update_ref" : "muon_update";
    if (!PyArg_ParseTuple(args, "OOOOdddpi", &p_obj, &b_obj, &g_obj, &mat_obj, &lr, &momentum,
                          &weight_decay, &nesterov, &ns_steps))
        return NULL;
    int ty = convert_param_grad(p_obj, g_obj, &param, &grad);
    if (ty < 0) goto done;
    if (!(buf = convert_state(b_obj, "momentum_buffer", ty, param))) goto done;
    if (!(mat = tc_py_index_array(mat_obj, "matrices", 2))) goto done;
    if (tc_py_check_dim(mat, "matrices", 1, 3, "(offset, rows, cols) columns")) goto done;
    if (ns_steps < 0) {
        PyErr_Format(PyExc_ValueError, "ns_steps must be >= 0, got %d", ns_steps);
        goto done;
    }
    int st;
    const int64_t count = PyArray_DIM(mat, 0);
    const int64_t *table = PyArray_DATA(mat);
    TC_PY_BEGIN_ALLOW_THREADS
    if (ref)
        st = TC_CALL(ty, tc_optim_muon_update_ref, PyArray_DATA(param), PyArray_DATA(buf),
                     PyArray_DATA(grad), PyArray_SIZE(param), table, count, lr, momentum,
                     weight_decay, nesterov, ns_steps);
    else
        st = TC_CALL(ty, tc_optim_muon_update, PyArray_DATA(param), PyArray_DATA(buf),
                     PyArray_DATA(grad), PyArray_SIZE(param), table, count, lr, momentum,
                     weight_decay, nesterov, ns_steps);
    Py_END_ALLOW_THREADS
    if (st == TC_EINVAL) {
        PyErr_Format(PyExc_ValueError, "%s: matrices must list (offset, rows, cols) rows with "
                     "rows, cols >= 1, in increasing non-overlapping order inside param's %lld "
                     "elements", name, (long long)PyArray_SIZE(param));
        goto done;
    }
    if (tc_py_status(st, name)) goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(param);
    Py_XDECREF(grad);
    Py_XDECREF(buf);
    Py_XDECREF(mat);
    return result;
}

static PyObject *py_muon_update(PyObject *self, PyObject *args)
{
    (void)self;
    return muon_common(args, 0);
}

static PyObject *py_muon_update_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return muon_common(args, 1);
}

/* global_grad_norm(arrays: sequence of float arrays, one dtype) -> float
 * sqrt of the sum of squares of every element, accumulated in double. */
static PyObject *py_global_grad_norm(PyObject *self, PyObject *args)
{
    PyObject *seq_obj, *seq = NULL, *result = NULL;
    PyArrayObject **arrs = NULL;
    const void **ptrs = NULL;
    int64_t *sizes = NULL;
    Py_ssize_t count = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &seq_obj)) return NULL;
    if (PyArray_Check(seq_obj) || !PySequence_Check(seq_obj)) {
        PyErr_Format(PyExc_TypeError, "arrays must be a list or tuple of arrays, got %s",
                     Py_TYPE(seq_obj)->tp_name);
        return NULL;
    }
    /* a snapshot (a new tuple holding every item): converting an item can run Python code
     * (__array__) that mutates the caller's list, which must not change what is read here */
    if (!(seq = PySequence_Tuple(seq_obj))) return NULL;
    count = PyTuple_GET_SIZE(seq);
    if (count == 0) {
        result = PyFloat_FromDouble(0.0);
        goto done;
    }
    arrs = PyMem_Calloc((size_t)count, sizeof *arrs);
    ptrs = PyMem_Calloc((size_t)count, sizeof *ptrs);
    sizes = PyMem_Calloc((size_t)count, sizeof *sizes);
    if (!arrs || !ptrs || !sizes) {
        PyErr_NoMemory();
        goto done;
    }
    char name[64];
    int ty = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PyTuple_GET_ITEM(seq, k);
        snprintf(name, sizeof name, "arrays[%ld]", (long)k);
        if (k == 0 && (ty = tc_py_float_type(item, name)) < 0) goto done;
        if (!(arrs[k] = tc_py_float_array(item, name, ty, -1))) goto done;
        ptrs[k] = PyArray_DATA(arrs[k]);
        sizes[k] = PyArray_SIZE(arrs[k]);
    }
    double norm = 0;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? tc_optim_global_norm_f32(&norm, (const float *const *)ptrs, sizes, count)
        : tc_optim_global_norm_f64(&norm, (const double *const *)ptrs, sizes, count);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "global_grad_norm")) goto done;
    result = PyFloat_FromDouble(norm);
done:
    if (arrs)
        for (Py_ssize_t k = 0; k < count; k++) Py_XDECREF(arrs[k]);
    PyMem_Free(arrs);
    PyMem_Free(ptrs);
    PyMem_Free(sizes);
    Py_XDECREF(seq);
    return result;
}

/* scale(array, factor) -> None: array *= factor in place */
static PyObject *py_scale(PyObject *self, PyObject *args)
{
    PyObject *obj, *result = NULL;
    double factor;
    PyArrayObject *a = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "Od", &obj, &factor)) return NULL;
    int ty = tc_py_float_type(obj, "array");
    if (ty < 0) goto done;
    if (!(a = tc_py_inout_array(obj, "array", ty))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_optim_scale, PyArray_DATA(a), PyArray_SIZE(a), factor);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "scale")) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(a);
    return result;
}

/* Test hooks (positional), the plain references of optim_ref.h, arrays as the bindings
 * above: sgd_update_ref(param, grad, momentum_buffer | None, lr, momentum, dampening,
 * weight_decay, nesterov, first_step) -> None; adam_update_ref(param, grad, exp_avg,
 * exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled) -> None (in place);
 * global_norm_ref(x) -> float, the norm of one array. */
static PyObject *py_sgd_update_ref(PyObject *self, PyObject *args)
{
    PyObject *p_obj, *g_obj, *b_obj, *result = NULL;
    PyArrayObject *param = NULL, *grad = NULL, *buf = NULL;
    double lr, momentum, dampening, wd;
    int nesterov, first_step;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOddddpp", &p_obj, &g_obj, &b_obj, &lr, &momentum,
                          &dampening, &wd, &nesterov, &first_step))
        return NULL;
    int ty = convert_param_grad(p_obj, g_obj, &param, &grad);
    if (ty < 0) goto done;
    if (b_obj != Py_None && !(buf = convert_state(b_obj, "momentum_buffer", ty, param))) goto done;
    int st = TC_CALL(ty, tc_optim_sgd_update_ref, PyArray_DATA(param), buf ? PyArray_DATA(buf) : NULL,
                     PyArray_DATA(grad), PyArray_SIZE(param), lr, momentum, dampening, wd,
                     nesterov, first_step);
    if (tc_py_status(st, "sgd_update_ref")) goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(param);
    Py_XDECREF(grad);
    Py_XDECREF(buf);
    return result;
}

static PyObject *py_adam_update_ref(PyObject *self, PyObject *args)
{
    PyObject *p_obj, *g_obj, *m_obj, *v_obj, *step_obj, *result = NULL;
    PyArrayObject *param = NULL, *grad = NULL, *m = NULL, *v = NULL;
    double lr, b1, b2, eps, wd;
    int64_t step;
    int decoupled;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOdddddp", &p_obj, &g_obj, &m_obj, &v_obj, &step_obj, &lr,
                          &b1, &b2, &eps, &wd, &decoupled))
        return NULL;
    if (tc_py_int64(step_obj, "step", &step)) return NULL;
    int ty = convert_param_grad(p_obj, g_obj, &param, &grad);
    if (ty < 0) goto done;
    if (!(m = convert_state(m_obj, "exp_avg", ty, param))) goto done;
    if (!(v = convert_state(v_obj, "exp_avg_sq", ty, param))) goto done;
    int st = TC_CALL(ty, tc_optim_adam_update_ref, PyArray_DATA(param), PyArray_DATA(m),
                     PyArray_DATA(v), PyArray_DATA(grad), PyArray_SIZE(param), step, lr, b1, b2,
                     eps, wd, decoupled);
    if (tc_py_status(st, "adam_update_ref")) goto done;
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(param);
    Py_XDECREF(grad);
    Py_XDECREF(m);
    Py_XDECREF(v);
    return result;
}

static PyObject *py_global_norm_ref(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *result = NULL;
    PyArrayObject *x = NULL;
    double norm = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &x_obj)) return NULL;
    int ty = tc_py_float_type(x_obj, "x");
    if (ty < 0) goto done;
    if (!(x = tc_py_float_array(x_obj, "x", ty, -1))) goto done;
    int st = TC_CALL(ty, tc_optim_global_norm_ref, &norm, PyArray_DATA(x), PyArray_SIZE(x));
    if (tc_py_status(st, "global_norm_ref")) goto done;
    result = PyFloat_FromDouble(norm);
done:
    Py_XDECREF(x);
    return result;
}

PyMethodDef tc_methods_optim[] = {
    {"sgd_update", py_sgd_update, METH_VARARGS,
     "sgd_update(param, grad, momentum_buffer|None, lr, momentum, dampening, weight_decay, "
     "nesterov, first_step) -> None (in place)"},
    {"adam_update", py_adam_update, METH_VARARGS,
     "adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)"
     " -> None (in place)"},
    {"adamw_update", py_adamw_update, METH_VARARGS,
     "adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, "
     "weight_decay) -> None (in place)"},
    {"sgd_update_out", py_sgd_update_out, METH_VARARGS,
     "sgd_update_out(new_param, new_buffer|None, param, grad, momentum_buffer|None, lr, "
     "momentum, dampening, weight_decay, nesterov, first_step) -> None (out of place)"},
    {"adam_update_out", py_adam_update_out, METH_VARARGS,
     "adam_update_out(new_param, new_exp_avg, new_exp_avg_sq, param, grad, exp_avg, "
     "exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled) -> None (out of place)"},
    {"muon_update", py_muon_update, METH_VARARGS,
     "muon_update(param, momentum_buffer, grad, matrices, lr, momentum, weight_decay, "
     "nesterov, ns_steps) -> None (in place, the listed matrices only)"},
    {"muon_update_ref", py_muon_update_ref, METH_VARARGS,
     "muon_update_ref(param, momentum_buffer, grad, matrices, lr, momentum, weight_decay, "
     "nesterov, ns_steps): test hook, the plain reference"},
    {"global_grad_norm", py_global_grad_norm, METH_VARARGS,
     "global_grad_norm(arrays) -> float: sqrt of the sum of squares, in double"},
    {"scale", py_scale, METH_VARARGS, "scale(array, factor) -> None: array *= factor in place"},
    {"sgd_update_ref", py_sgd_update_ref, METH_VARARGS,
     "sgd_update_ref(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, "
     "nesterov, first_step): test hook, the plain reference"},
    {"adam_update_ref", py_adam_update_ref, METH_VARARGS,
     "adam_update_ref(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, "
     "weight_decay, decoupled): test hook, the plain reference"},
    {"global_norm_ref", py_global_norm_ref, METH_VARARGS,
     "global_norm_ref(x) -> float: test hook, the plain reference"},
    {NULL, NULL, 0, NULL},
};
