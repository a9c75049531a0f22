/* bind_model.c: bindings of model.c (the GPT fast path). A model is a capsule that owns a
 * tc_gpt and keeps its parameter and gradient arrays alive. */
#include "bind.h"

#define GPT_CAPSULE "transformer_c.gpt"

typedef struct {
    tc_gpt *model;
    PyObject *params, *grads; /* owned references: the model borrows their data */
    int typenum;
    int busy;                 /* set while a call runs without the GIL */
    int64_t V, maxT;
} gpt_handle;

static void gpt_capsule_free(PyObject *cap)
{
    gpt_handle *h = PyCapsule_GetPointer(cap, GPT_CAPSULE);
    if (!h) {
        PyErr_Clear();
        return;
    }
    tc_gpt_free(h->model);
    Py_XDECREF(h->params);
    Py_XDECREF(h->grads);
    PyMem_Free(h);
}

/* The handle of a capsule made by gpt_create, marked busy; NULL with TypeError/RuntimeError. */
static gpt_handle *gpt_acquire(PyObject *obj)
{
    if (!PyCapsule_IsValid(obj, GPT_CAPSULE)) {
        PyErr_Format(PyExc_TypeError, "model must be a GPT context made by gpt_create, got %s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    gpt_handle *h = PyCapsule_GetPointer(obj, GPT_CAPSULE);
    if (!h) return NULL;
    if (h->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this GPT is already running a step in another "
                        "thread (one model's arena serves one call at a time)");
        return NULL;
    }
    h->busy = 1;
    return h;
}

/* Config from the 15 values every binding passes in the same order. */
#define GPT_CFG_FMT "LLLLLLiiiiiddid"
#define GPT_CFG_ARGS(c)                                                                  \
    (long long *)&(c).V, (long long *)&(c).maxT, (long long *)&(c).C, (long long *)&(c).L, \
        (long long *)&(c).NH, (long long *)&(c).H, &(c).bias, &(c).position,              \
        &(c).post_norm, &(c).activation, &(c).tie, &(c).eps, &(c).pos_base,               \
        &(c).rope_interleaved, &(c).dropout

static int gpt_check_config(const tc_gpt_config *c)
{
    if (tc_gpt_num_params(c) >= 0) return 0;
    PyErr_SetString(PyExc_ValueError,
                    "invalid GPT config: sizes must be >= 1 (and not absurdly large), C "
                    "divisible by NH, an even head size with RoPE, options in range, eps >= 0, "
                    "base > 0, dropout in [0, 1)");
    return -1;
}

/* gpt_create(params (P,), grads (P,), <config>) -> model capsule */
static PyObject *py_gpt_create(PyObject *self, PyObject *args)
{
    PyObject *p_obj, *g_obj, *result = NULL;
    PyArrayObject *p = NULL, *g = NULL;
    gpt_handle *h = NULL;
    tc_gpt_config cfg;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO" GPT_CFG_FMT, &p_obj, &g_obj, GPT_CFG_ARGS(cfg)))
        return NULL;
    if (gpt_check_config(&cfg)) goto done;
    int ty = tc_py_float_type(p_obj, "params");
    if (ty < 0) goto done;
    if (!(p = tc_py_inout_array(p_obj, "params", ty))) goto done;
    if (!(g = tc_py_inout_array(g_obj, "grads", ty))) goto done;
    const int64_t P = tc_gpt_num_params(&cfg);
    if (PyArray_NDIM(p) != 1 || PyArray_DIM(p, 0) != P) {
        char buf[128];
        PyErr_Format(PyExc_ValueError, "params must be 1-D with %lld elements for this config, "
                     "got shape %s", (long long)P, tc_py_shape_str(p, buf, sizeof buf));
        goto done;
    }
    if (tc_py_check_same_shape(g, "grads", p, "params")) goto done;
    if (PyArray_DATA(p) == PyArray_DATA(g)) {
        PyErr_SetString(PyExc_ValueError, "grads must not share memory with params");
        goto done;
    }
    if (!(h = PyMem_Calloc(1, sizeof *h))) {
        PyErr_NoMemory();
        goto done;
    }
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = ty == NPY_FLOAT
        ? tc_gpt_create_f32(&h->model, &cfg, PyArray_DATA(p), PyArray_DATA(g))
        : tc_gpt_create_f64(&h->model, &cfg, PyArray_DATA(p), PyArray_DATA(g));
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_create")) goto done;
    h->typenum = ty;
    h->V = cfg.V;
    h->maxT = cfg.maxT;
    h->params = (PyObject *)p;
    h->grads = (PyObject *)g;
    p = g = NULL;
    result = PyCapsule_New(h, GPT_CAPSULE, gpt_capsule_free);
    if (!result) {
        tc_gpt_free(h->model);
        Py_XDECREF(h->params);
        Py_XDECREF(h->grads);
        PyMem_Free(h);
    }
    h = NULL;
done:
    if (h) {
        tc_gpt_free(h->model);
        PyMem_Free(h);
    }
    Py_XDECREF(p);
    Py_XDECREF(g);
    return result;
}

/* idx as a (B,T) int64 array with 1 <= T <= maxT, ids in [0, V); NULL with an exception. */
static PyArrayObject *gpt_ids(PyObject *obj, const char *name, const gpt_handle *h)
{
    PyArrayObject *a = tc_py_index_array(obj, name, 2);
    if (!a) return NULL;
    char buf[128];
    if (PyArray_DIM(a, 0) < 1 || PyArray_DIM(a, 1) < 1 || PyArray_DIM(a, 1) > h->maxT) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (B, T) with B >= 1 and "
                     "1 <= T <= block_size = %lld, got %s", name, (long long)h->maxT,
                     tc_py_shape_str(a, buf, sizeof buf));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* gpt_loss_and_grads(model, idx (B,T), targets (B,T), ignore_index, seed, training) -> loss */
static PyObject *py_gpt_loss_and_grads(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *i_obj, *t_obj, *ig_obj, *s_obj, *result = NULL;
    PyArrayObject *idx = NULL, *tgt = NULL;
    gpt_handle *h = NULL;
    int training;
    int64_t ignore_index;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOp", &m_obj, &i_obj, &t_obj, &ig_obj, &s_obj, &training))
        return NULL;
    if (!(h = gpt_acquire(m_obj))) return NULL;
    if (tc_py_int64(ig_obj, "ignore_index", &ignore_index) ||
        tc_py_uint64(s_obj, "seed", &seed))
        goto done;
    if (!(idx = gpt_ids(i_obj, "idx", h))) goto done;
    if (tc_py_check_index_range(idx, "idx", h->V)) goto done;
    if (!(tgt = tc_py_index_array(t_obj, "targets", 2))) goto done;
    if (tc_py_check_same_shape(tgt, "targets", idx, "idx")) goto done;
    {
        const int64_t *t = PyArray_DATA(tgt);
        for (npy_intp n = 0; n < PyArray_SIZE(tgt); n++) {
            if (t[n] != ignore_index && (t[n] < 0 || t[n] >= h->V)) {
                PyErr_Format(PyExc_IndexError, "targets holds id %lld at flat position %ld, "
                             "outside [0, %lld) and not ignore_index (%lld)", (long long)t[n],
                             (long)n, (long long)h->V, (long long)ignore_index);
                goto done;
            }
        }
    }
    double loss = 0;
    int st;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    Py_BEGIN_ALLOW_THREADS
    st = h->typenum == NPY_FLOAT
        ? tc_gpt_loss_and_grads_f32(h->model, &loss, PyArray_DATA(idx), PyArray_DATA(tgt), B, T,
                                    ignore_index, seed, training)
        : tc_gpt_loss_and_grads_f64(h->model, &loss, PyArray_DATA(idx), PyArray_DATA(tgt), B, T,
                                    ignore_index, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_loss_and_grads")) goto done;
    result = PyFloat_FromDouble(loss);
done:
    h->busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(tgt);
    return result;
}

/* gpt_forward(model, idx (B,T), seed, training) -> logits (B,T,V) */
static PyObject *py_gpt_forward(PyObject *self, PyObject *args)
{
    PyObject *m_obj, *i_obj, *s_obj, *result = NULL;
    PyArrayObject *idx = NULL, *out = NULL;
    gpt_handle *h = NULL;
    int training;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOp", &m_obj, &i_obj, &s_obj, &training)) return NULL;
    if (!(h = gpt_acquire(m_obj))) return NULL;
    if (tc_py_uint64(s_obj, "seed", &seed)) goto done;
    if (!(idx = gpt_ids(i_obj, "idx", h))) goto done;
    if (tc_py_check_index_range(idx, "idx", h->V)) goto done;
    const int64_t B = PyArray_DIM(idx, 0), T = PyArray_DIM(idx, 1);
    npy_intp dims[3] = {(npy_intp)B, (npy_intp)T, (npy_intp)h->V};
    if (!(out = tc_py_new(3, dims, h->typenum, 0))) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = h->typenum == NPY_FLOAT
        ? tc_gpt_forward_f32(h->model, PyArray_DATA(out), PyArray_DATA(idx), B, T, seed, training)
        : tc_gpt_forward_f64(h->model, PyArray_DATA(out), PyArray_DATA(idx), B, T, seed, training);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "gpt_forward")) goto done;
    result = (PyObject *)out;
    out = NULL;
done:
    h->busy = 0;
    Py_XDECREF(idx);
    Py_XDECREF(out);
    return result;
}

/* gpt_arena_bytes(is_float64, <config>, B, T) -> bytes of the arena for B*T tokens */
static PyObject *py_gpt_arena_bytes(PyObject *self, PyObject *args)
{
    tc_gpt_config cfg;
    int is_f64;
    long long B, T;
    int64_t bytes = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "p" GPT_CFG_FMT "LL", &is_f64, GPT_CFG_ARGS(cfg), &B, &T))
        return NULL;
    if (gpt_check_config(&cfg)) return NULL;
    if (B < 0 || T < 0 || T > cfg.maxT) {
        PyErr_Format(PyExc_ValueError, "batch_size must be >= 0 and 0 <= seq_len <= "
                     "block_size = %lld, got (%lld, %lld)", (long long)cfg.maxT, B, T);
        return NULL;
    }
    if (tc_py_status(tc_gpt_arena_bytes(&bytes, &cfg, B, T, is_f64 ? 8 : 4), "gpt_arena_bytes"))
        return NULL;
    return PyLong_FromLongLong((long long)bytes);
}

/* gpt_arena_size(model) -> bytes of the model's arena now */
static PyObject *py_gpt_arena_size(PyObject *self, PyObject *args)
{
    PyObject *m_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &m_obj)) return NULL;
    gpt_handle *h = gpt_acquire(m_obj);
    if (!h) return NULL;
    int64_t n = tc_gpt_arena_size(h->model);
    h->busy = 0;
    return PyLong_FromLongLong((long long)n);
}

PyMethodDef tc_methods_model[] = {
    {"gpt_create", py_gpt_create, METH_VARARGS,
     "gpt_create(params, grads, V, maxT, C, L, NH, H, bias, position, post_norm, activation, "
     "tie, eps, pos_base, rope_interleaved, dropout) -> model"},
    {"gpt_loss_and_grads", py_gpt_loss_and_grads, METH_VARARGS,
     "gpt_loss_and_grads(model, idx (B,T), targets (B,T), ignore_index, seed, training) -> loss"},
    {"gpt_forward", py_gpt_forward, METH_VARARGS,
     "gpt_forward(model, idx (B,T), seed, training) -> logits (B,T,V)"},
    {"gpt_arena_bytes", py_gpt_arena_bytes, METH_VARARGS,
     "gpt_arena_bytes(is_float64, <config as gpt_create>, B, T) -> bytes"},
    {"gpt_arena_size", py_gpt_arena_size, METH_VARARGS, "gpt_arena_size(model) -> bytes"},
    {NULL, NULL, 0, NULL},
};
