/* bind_glu.c: bindings of glu.c (gated activations). Element-wise: gate and up of one shape
 * (any, 0-d and empty included) are passed flat; results keep that shape. */
#include "bind.h"

/* act (a TC_ACT_* value) valid, else -1 with ValueError naming it */
static int check_act(int act)
{
    if (tc_option_name(TC_OPT_ACTIVATION, act)) return 0;
    PyErr_Format(PyExc_ValueError, "act must be an activation index in [0, %d), got %d",
                 tc_option_count(TC_OPT_ACTIVATION), act);
    return -1;
}

/* gate, up (and dout when dout_obj) converted to one dtype and shape; 0 or -1 */
static int glu_arrays(PyObject *gate_obj, PyObject *up_obj, PyObject *dout_obj, int *ty,
                      PyArrayObject **gate, PyArrayObject **up, PyArrayObject **dout)
{
    if (!(*gate = tc_py_float_input(gate_obj, "gate", -1, ty))) return -1;
    if (!(*up = tc_py_float_array(up_obj, "up", *ty, -1))) return -1;
    if (tc_py_check_same_shape(*up, "up", *gate, "gate")) return -1;
    if (!dout_obj) return 0;
    if (!(*dout = tc_py_float_array(dout_obj, "grad_output", *ty, -1))) return -1;
    return tc_py_check_same_shape(*dout, "grad_output", *gate, "gate");
}

/* glu_forward[_ref](act, gate, up) -> (out, act(gate)), each of gate's shape */
static PyObject *forward_common(PyObject *args, int ref)
{
    PyObject *gate_obj, *up_obj, *result = NULL;
    PyArrayObject *gate = NULL, *up = NULL, *out = NULL, *actg = NULL;
    int act, ty;
    if (!PyArg_ParseTuple(args, "iOO", &act, &gate_obj, &up_obj)) return NULL;
    if (check_act(act) || glu_arrays(gate_obj, up_obj, NULL, &ty, &gate, &up, NULL)) goto done;
    if (!(out = tc_py_new(PyArray_NDIM(gate), PyArray_DIMS(gate), ty, 0)) ||
        !(actg = tc_py_new(PyArray_NDIM(gate), PyArray_DIMS(gate), ty, 0)))
        goto done;
    const int64_t n = (int64_t)PyArray_SIZE(gate);
    void *po = PyArray_DATA(out), *pa = PyArray_DATA(actg);
    const void *pg = PyArray_DATA(gate), *pu = PyArray_DATA(up);
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_glu_forward_ref, act, po, pa, pg, pu, n)
             : TC_CALL(ty, tc_glu_forward, act, po, pa, pg, pu, n);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, ref ? "glu_forward_ref" : "glu_forward")) goto done;
    result = Py_BuildValue("(OO)", out, actg);
done:
    Py_XDECREF(gate);
    Py_XDECREF(up);
    Py_XDECREF(out);
    Py_XDECREF(actg);
    return result;
}

/* glu_backward[_ref](act, grad_output, gate, up) -> (dgate, dup), each of gate's shape (the
 * fast kernel recomputes act(gate): no cache is taken here) */
static PyObject *backward_common(PyObject *args, int ref)
{
    PyObject *dout_obj, *gate_obj, *up_obj, *result = NULL;
    PyArrayObject *gate = NULL, *up = NULL, *dout = NULL, *dgate = NULL, *dup = NULL;
    int act, ty;
    if (!PyArg_ParseTuple(args, "iOOO", &act, &dout_obj, &gate_obj, &up_obj)) return NULL;
    if (check_act(act) || glu_arrays(gate_obj, up_obj, dout_obj, &ty, &gate, &up, &dout))
        goto done;
    if (!(dgate = tc_py_new(PyArray_NDIM(gate), PyArray_DIMS(gate), ty, 0)) ||
        !(dup = tc_py_new(PyArray_NDIM(gate), PyArray_DIMS(gate), ty, 0)))
        goto done;
    const int64_t n = (int64_t)PyArray_SIZE(gate);
    void *pdg = PyArray_DATA(dgate), *pdu = PyArray_DATA(dup);
    const void *pd = PyArray_DATA(dout), *pg = PyArray_DATA(gate), *pu = PyArray_DATA(up);
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = ref ? TC_CALL(ty, tc_glu_backward_ref, act, pdg, pdu, pd, pg, pu, n)
             : TC_CALL(ty, tc_glu_backward, act, pdg, pdu, pd, pg, pu, NULL, n,
                       TC_WRITE(0) | TC_WRITE(1));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, ref ? "glu_backward_ref" : "glu_backward")) goto done;
    result = Py_BuildValue("(OO)", dgate, dup);
done:
    Py_XDECREF(gate);
    Py_XDECREF(up);
    Py_XDECREF(dout);
    Py_XDECREF(dgate);
    Py_XDECREF(dup);
    return result;
}

static PyObject *py_glu_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return forward_common(args, 0);
}

static PyObject *py_glu_backward(PyObject *self, PyObject *args)
{
    (void)self;
    return backward_common(args, 0);
}

static PyObject *py_glu_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return forward_common(args, 1);
}

static PyObject *py_glu_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return backward_common(args, 1);
}

PyMethodDef tc_methods_glu[] = {
    {"glu_forward", py_glu_forward, METH_VARARGS,
     "glu_forward(act, gate, up) -> (act(gate) * up, act(gate)); act: a TC_ACT_* value"},
    {"glu_backward", py_glu_backward, METH_VARARGS,
     "glu_backward(act, grad_output, gate, up) -> (dgate, dup)"},
    {"glu_forward_ref", py_glu_forward_ref, METH_VARARGS,
     "glu_forward_ref(act, gate, up) -> (out, act(gate)): test hook, the plain reference"},
    {"glu_backward_ref", py_glu_backward_ref, METH_VARARGS,
     "glu_backward_ref(act, grad_output, gate, up) -> (dgate, dup): test hook, the reference"},
    {NULL, NULL, 0, NULL},
};
