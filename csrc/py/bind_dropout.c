/* bind_dropout.c: bindings of dropout.c. Arrays of any shape are passed flat (C order); the
 * mask of element i depends only on (seed, i, p). */
#include "bind.h"

/* p and seed from Python objects, validated */
static int parse_p_seed(PyObject *p_obj, PyObject *seed_obj, double *p, uint64_t *seed)
{
    return tc_py_real(p_obj, "p", TC_PY_PROB, p) || tc_py_uint64(seed_obj, "seed", seed) ? -1 : 0;
}

typedef struct {
    double p;
    uint64_t seed;
    int kind; /* drop_forward: 0 the kernel, 1 its reference, 2 the backward's reference */
} drop_ctx;

static int drop_forward(int ty, void *out, const void *x, const void *unused, int64_t n,
                        const void *ctx)
{
    const drop_ctx *c = ctx;
    (void)unused;
    return c->kind == 0   ? TC_CALL(ty, tc_dropout_forward, out, x, n, c->p, c->seed)
           : c->kind == 1 ? TC_CALL(ty, tc_dropout_forward_ref, out, x, n, c->p, c->seed)
                          : TC_CALL(ty, tc_dropout_backward_ref, out, x, n, c->p, c->seed);
}

/* dx written (TC_WRITE(0): tc_py_map allocates it uninitialised) */
static int drop_backward(int ty, void *dx, const void *dy, const void *unused, int64_t n,
                         const void *ctx)
{
    const drop_ctx *c = ctx;
    (void)unused;
    return TC_CALL(ty, tc_dropout_backward, dx, dy, n, c->p, c->seed, TC_WRITE(0));
}

/* dropout_forward(x (any shape), p, seed) -> y = x * mask (kind 0); the plain references
 * (dropout_ref.h; test hooks) dropout_forward_ref (kind 1) and dropout_backward_ref(
 * grad_output, p, seed) -> grad_output * mask (kind 2) */
static PyObject *dropout_forward_common(PyObject *args, int kind)
{
    PyObject *x_obj, *p_obj, *seed_obj;
    drop_ctx c;
    if (!PyArg_ParseTuple(args, "OOO", &x_obj, &p_obj, &seed_obj)) return NULL;
    if (parse_p_seed(p_obj, seed_obj, &c.p, &c.seed)) return NULL;
    c.kind = kind;
    return tc_py_map(x_obj, "x", NULL, NULL, drop_forward, &c, "dropout_forward");
}

static PyObject *py_dropout_forward(PyObject *self, PyObject *args)
{
    (void)self;
    return dropout_forward_common(args, 0);
}

static PyObject *py_dropout_forward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return dropout_forward_common(args, 1);
}

static PyObject *py_dropout_backward_ref(PyObject *self, PyObject *args)
{
    (void)self;
    return dropout_forward_common(args, 2);
}

/* dropout_backward(grad_output (any shape), p, seed) -> dx = grad_output * mask */
static PyObject *py_dropout_backward(PyObject *self, PyObject *args)
{
    PyObject *dy_obj, *p_obj, *seed_obj;
    drop_ctx c;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &dy_obj, &p_obj, &seed_obj)) return NULL;
    if (parse_p_seed(p_obj, seed_obj, &c.p, &c.seed)) return NULL;
    c.kind = 0;
    return tc_py_map(dy_obj, "grad_output", NULL, NULL, drop_backward, &c, "dropout_backward");
}

/* dropout_mask(n, p, seed, float64) -> mask (n,), float64 if the flag is true else float32 */
static PyObject *py_dropout_mask(PyObject *self, PyObject *args)
{
    PyObject *n_obj, *p_obj, *seed_obj, *result = NULL;
    PyArrayObject *mask = NULL;
    int is_f64;
    int64_t n;
    double p;
    uint64_t seed;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOp", &n_obj, &p_obj, &seed_obj, &is_f64)) return NULL;
    if (tc_py_int64_min(n_obj, "n", 0, &n)) goto done;
    if (parse_p_seed(p_obj, seed_obj, &p, &seed)) goto done;
    const int ty = is_f64 ? NPY_DOUBLE : NPY_FLOAT;
    npy_intp dims[1] = {(npy_intp)n};
    if (!(mask = tc_py_new(1, dims, ty, 0))) goto done;
    int st;
    TC_PY_BEGIN_ALLOW_THREADS
    st = TC_CALL(ty, tc_dropout_mask, PyArray_DATA(mask), n, p, seed);
    Py_END_ALLOW_THREADS
    if (tc_py_status(st, "dropout_mask")) goto done;
    result = (PyObject *)mask;
    mask = NULL;
done:
    Py_XDECREF(mask);
    return result;
}

PyMethodDef tc_methods_dropout[] = {
    {"dropout_forward", py_dropout_forward, METH_VARARGS,
     "dropout_forward(x, p, seed) -> x * mask"},
    {"dropout_backward", py_dropout_backward, METH_VARARGS,
     "dropout_backward(grad_output, p, seed) -> grad_output * mask"},
    {"dropout_mask", py_dropout_mask, METH_VARARGS,
     "dropout_mask(n, p, seed, float64) -> mask (n,): 1/(1-p) where kept, else 0"},
    {"dropout_forward_ref", py_dropout_forward_ref, METH_VARARGS,
     "dropout_forward_ref(x, p, seed) -> x * mask: test hook, the plain reference"},
    {"dropout_backward_ref", py_dropout_backward_ref, METH_VARARGS,
     "dropout_backward_ref(grad_output, p, seed) -> grad_output * mask: test hook, the plain "
     "reference"},
    {NULL, NULL, 0, NULL},
};
