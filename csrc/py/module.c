/* module.c: the transformer_c._C extension module. Each family's bindings live in
 * bind_<family>.c and export a method table; this file adds them all. */
#define TC_BIND_MODULE_MAIN
#include "bind.h"

static PyObject *py_set_num_threads(PyObject *self, PyObject *args)
{
    PyObject *obj, *idx;
    (void)self;
    if (!PyArg_ParseTuple(args, "O:set_num_threads", &obj)) return NULL;
    if (PyBool_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "n must be an integer, got bool");
        return NULL;
    }
    if (!(idx = PyNumber_Index(obj))) return NULL;
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (n == -1 && PyErr_Occurred()) return NULL;
    const int max = tc_max_num_threads();
    if (overflow || n < 1 || n > max) {
        PyErr_Format(PyExc_ValueError, "n must be in [1, %d] (the larger of 1024 and 4 x the "
                     "processors), got %S", max, obj);
        return NULL;
    }
    if (tc_set_num_threads((int)n) != TC_OK) {
        PyErr_Format(PyExc_ValueError, "n must be in [1, %d], got %lld", max, n);
        return NULL;
    }
    /* a serial build runs every kernel on the calling thread: say so (stack level 2: the
     * caller of transformer_c.set_num_threads) */
    if (n > 1 && !tc_openmp_version() &&
        PyErr_WarnFormat(PyExc_RuntimeWarning, 2, "set_num_threads(%lld): this build of "
                         "transformer_c has no OpenMP (transformer_c.build_info()['openmp'] "
                         "is False), every kernel runs on one thread", n) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLong(tc_get_num_threads());
}

static PyObject *py_max_num_threads(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLong(tc_max_num_threads());
}

static PyObject *py_set_data_parallel(PyObject *self, PyObject *args)
{
    int on;
    (void)self;
    if (!PyArg_ParseTuple(args, "p:set_data_parallel", &on)) return NULL;
    tc_set_data_parallel(on);
    Py_RETURN_NONE;
}

static PyObject *py_get_data_parallel(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_get_data_parallel());
}

static PyObject *py_set_thread_guard(PyObject *self, PyObject *args)
{
    int on;
    (void)self;
    if (!PyArg_ParseTuple(args, "p:set_thread_guard", &on)) return NULL;
    tc_set_thread_guard(on);
    Py_RETURN_NONE;
}

static PyObject *py_set_flush_subnormals(PyObject *self, PyObject *args)
{
    (void)self;
    int on;
    if (!PyArg_ParseTuple(args, "p:set_flush_subnormals", &on)) return NULL;
    tc_set_flush_subnormals(on);
    Py_RETURN_NONE;
}

static PyObject *py_get_flush_subnormals(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_get_flush_subnormals());
}

static PyObject *py_get_thread_guard(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyBool_FromLong(tc_get_thread_guard());
}

static PyObject *py_parallel_worth(PyObject *self, PyObject *args)
{
    double work, min_work;
    (void)self;
    if (!PyArg_ParseTuple(args, "dd:parallel_worth", &work, &min_work)) return NULL;
    tc_sync_num_threads();
    return PyBool_FromLong(tc_parallel_worth(work, min_work));
}

static PyObject *py_fp_team_entries(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromUnsignedLong(tc_fp_team_entries());
}

static PyObject *py_thread_guard_others(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLong(tc_thread_guard_others());
}

static PyObject *py_gemm_kernel_name(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(tc_gemm_kernel_name());
}

/* tiled_span(leaves) -> (base, start, stop) or None: the leaves (a sequence) tile
 * base[start:stop] back to back in order, base their common 1-D C-contiguous ndarray base
 * (each leaf an exact ndarray of base's dtype, C-contiguous, starting where the previous one
 * ends); None otherwise. nn._flat.flat_span's check, one C loop instead of a Python one per
 * leaf (the immutable optimizers run it on every tree of every step); _flat_span_ref there
 * is the plain Python reference the tests hold it to. Reads only the leaves' array headers. */
static PyObject *py_tiled_span(PyObject *self, PyObject *args)
{
    PyObject *seq_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O:tiled_span", &seq_obj)) return NULL;
    PyObject *seq = PySequence_Fast(seq_obj, "tiled_span: leaves must be a sequence");
    if (!seq) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (count == 0 || Py_TYPE(items[0]) != &PyArray_Type) goto none;
    PyObject *base_obj = PyArray_BASE((PyArrayObject *)items[0]);
    if (!base_obj || Py_TYPE(base_obj) != &PyArray_Type) goto none;
    PyArrayObject *base = (PyArrayObject *)base_obj;
    if (PyArray_NDIM(base) != 1 || !PyArray_IS_C_CONTIGUOUS(base)) goto none;
    const npy_intp item = PyArray_ITEMSIZE(base);
    const char *origin = PyArray_BYTES(base);
    const char *first = PyArray_BYTES((PyArrayObject *)items[0]);
    if ((first - origin) % item != 0) goto none;
    const npy_intp start = (npy_intp)((first - origin) / item);
    npy_intp end = start;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *obj = items[i];
        if (Py_TYPE(obj) != &PyArray_Type) goto none;
        PyArrayObject *leaf = (PyArrayObject *)obj;
        if (PyArray_BASE(leaf) != base_obj || !PyArray_IS_C_CONTIGUOUS(leaf)
            || !PyArray_EquivTypes(PyArray_DESCR(leaf), PyArray_DESCR(base))
            || PyArray_BYTES(leaf) != origin + end * item)
            goto none;
        end += PyArray_SIZE(leaf);
    }
    result = Py_BuildValue("Onn", base_obj, (Py_ssize_t)start, (Py_ssize_t)end);
    Py_DECREF(seq);
    return result;
none:
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

/* Appends the leaves of trees[0..k) (k <= TREE_COLUMNS_MAX; nodes paired as
 * transformer_c.tree.tree_map pairs them: a dict's values by the first tree's keys, a
 * list's or tuple's by index) to the lists cols[j]: 1 when the trees share one structure of
 * exact dicts (of str keys: no Python code runs during the walk), lists and tuples, 0 when
 * they do not or hold a subclass of one or another key (the caller then takes tree_map,
 * whose errors name any difference), -1 with an exception set. */
#define TREE_COLUMNS_MAX 8
static int tree_columns_walk(PyObject *const *trees, Py_ssize_t k, PyObject *const *cols)
{
    PyObject *t = trees[0], *children[TREE_COLUMNS_MAX];
    int ok = 1;
    if (PyDict_CheckExact(t)) {
        for (Py_ssize_t j = 1; j < k; j++)
            if (!PyDict_CheckExact(trees[j]) || PyDict_GET_SIZE(trees[j]) != PyDict_GET_SIZE(t))
                return 0;
        if (Py_EnterRecursiveCall(" in tree_columns")) return -1;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (ok == 1 && PyDict_Next(t, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) { /* another key's __eq__ could run Python code */
                ok = 0;
                break;
            }
            children[0] = value;
            for (Py_ssize_t j = 1; j < k && ok == 1; j++) {
                children[j] = PyDict_GetItemWithError(trees[j], key); /* borrowed */
                if (!children[j]) ok = PyErr_Occurred() ? -1 : 0;
            }
            if (ok == 1) ok = tree_columns_walk(children, k, cols);
        }
        Py_LeaveRecursiveCall();
        return ok;
    }
    if (PyList_CheckExact(t) || PyTuple_CheckExact(t)) {
        const Py_ssize_t len = PySequence_Fast_GET_SIZE(t);
        for (Py_ssize_t j = 1; j < k; j++)
            if (!(PyList_CheckExact(trees[j]) || PyTuple_CheckExact(trees[j]))
                || PySequence_Fast_GET_SIZE(trees[j]) != len)
                return 0;
        if (Py_EnterRecursiveCall(" in tree_columns")) return -1;
        for (Py_ssize_t i = 0; i < len && ok == 1; i++) {
            /* re-read each size: a leaf's __eq__ cannot run here, but stay within bounds */
            for (Py_ssize_t j = 0; j < k && ok == 1; j++) {
                if (PySequence_Fast_GET_SIZE(trees[j]) <= i) ok = 0;
                else children[j] = PySequence_Fast_GET_ITEM(trees[j], i);
            }
            if (ok == 1) ok = tree_columns_walk(children, k, cols);
        }
        Py_LeaveRecursiveCall();
        return ok;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *o = trees[j];
        if (PyDict_Check(o) || PyList_Check(o) || PyTuple_Check(o)) return 0;
        if (PyList_Append(cols[j], o) < 0) return -1;
    }
    return 1;
}

/* tree_columns(trees) -> [leaves of each tree] or None: the leaves of a list of at most
 * TREE_COLUMNS_MAX trees, paired as transformer_c.tree.tree_map pairs them (in the first
 * tree's order), when the trees share one structure of exact dicts / lists / tuples; None
 * otherwise (also for subclasses: the caller then runs tree_map itself, which raises for a
 * structure mismatch). The immutable optimizers' per-step walk, in C. */
static PyObject *py_tree_columns(PyObject *self, PyObject *args)
{
    PyObject *list;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!:tree_columns", &PyList_Type, &list)) return NULL;
    const Py_ssize_t k = PyList_GET_SIZE(list);
    if (k < 1 || k > TREE_COLUMNS_MAX) Py_RETURN_NONE;
    PyObject *trees[TREE_COLUMNS_MAX], *cols[TREE_COLUMNS_MAX] = {NULL};
    PyObject *result = NULL;
    int ok = 1;
    for (Py_ssize_t j = 0; j < k; j++) {
        trees[j] = PyList_GET_ITEM(list, j);
        Py_INCREF(trees[j]); /* the walk may not lose them if the list is changed */
    }
    for (Py_ssize_t j = 0; j < k && ok == 1; j++)
        if (!(cols[j] = PyList_New(0))) ok = -1;
    if (ok == 1) ok = tree_columns_walk(trees, k, cols);
    if (ok == 1 && (result = PyList_New(k)))
        for (Py_ssize_t j = 0; j < k; j++) {
            PyList_SET_ITEM(result, j, cols[j]);
            cols[j] = NULL;
        }
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_XDECREF(cols[j]);
        Py_DECREF(trees[j]);
    }
    if (ok == -1) return NULL;
    if (ok == 0) Py_RETURN_NONE;
    return result;
}

/* The views of leaf (an ndarray: its shape) in each of the k 1-D arrays flats[j] at element
 * *offset, appended to outs[j]; *offset advances by the leaf's size. 1, 0 when the leaf is
 * no ndarray or overruns a flat, -1 with an exception set. */
static int tree_views_leaf(PyObject *leaf, PyArrayObject *const *flats, Py_ssize_t k,
                           npy_intp *offset, PyObject **made)
{
    if (!PyArray_Check(leaf)) return 0;
    PyArrayObject *a = (PyArrayObject *)leaf;
    const npy_intp size = PyArray_SIZE(a);
    for (Py_ssize_t j = 0; j < k; j++)
        if (*offset + size > PyArray_DIM(flats[j], 0)) return 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        PyArrayObject *f = flats[j];
        PyArray_Descr *descr = PyArray_DESCR(f);
        Py_INCREF(descr); /* stolen */
        const int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED
                          | (PyArray_ISWRITEABLE(f) ? NPY_ARRAY_WRITEABLE : 0);
        PyObject *view = PyArray_NewFromDescr(
            &PyArray_Type, descr, PyArray_NDIM(a), PyArray_DIMS(a), NULL,
            PyArray_BYTES(f) + *offset * PyArray_ITEMSIZE(f), flags, NULL);
        if (view) {
            Py_INCREF(f); /* stolen; numpy collapses it to the owner of the memory */
            if (PyArray_SetBaseObject((PyArrayObject *)view, (PyObject *)f) < 0) Py_CLEAR(view);
        }
        if (!view) {
            for (Py_ssize_t i = 0; i < j; i++) Py_CLEAR(made[i]);
            return -1;
        }
        made[j] = view;
    }
    *offset += size;
    return 1;
}

/* Builds into made[j] (new references) k trees of node's structure (exact dicts of str
 * keys, lists, tuples; ndarray leaves) whose leaves are views of flats[j]: 1, 0 for another
 * node or an overrun (made[] then holds nothing), -1 with an exception set. */
static int tree_views_walk(PyObject *node, PyArrayObject *const *flats, Py_ssize_t k,
                           npy_intp *offset, PyObject **made)
{
    PyObject *child[TREE_COLUMNS_MAX];
    int ok = 1;
    const int is_dict = PyDict_CheckExact(node), is_list = PyList_CheckExact(node);
    if (!is_dict && !is_list && !PyTuple_CheckExact(node)) {
        if (PyDict_Check(node) || PyList_Check(node) || PyTuple_Check(node)) return 0;
        return tree_views_leaf(node, flats, k, offset, made);
    }
    const Py_ssize_t len = is_dict ? PyDict_GET_SIZE(node) : PySequence_Fast_GET_SIZE(node);
    for (Py_ssize_t j = 0; j < k; j++) made[j] = NULL;
    for (Py_ssize_t j = 0; j < k && ok == 1; j++) {
        made[j] = is_dict ? PyDict_New() : is_list ? PyList_New(len) : PyTuple_New(len);
        if (!made[j]) ok = -1;
    }
    if (ok == 1 && Py_EnterRecursiveCall(" in tree_views")) ok = -1;
    else if (ok == 1) {
        Py_ssize_t pos = 0, i = 0;
        PyObject *key, *value;
        while (ok == 1 && (is_dict ? PyDict_Next(node, &pos, &key, &value)
                                   : (i < len && (value = PySequence_Fast_GET_ITEM(node, i))))) {
            if (is_dict && !PyUnicode_CheckExact(key)) {
                ok = 0;
                break;
            }
            ok = tree_views_walk(value, flats, k, offset, child);
            if (ok != 1) break; /* child holds nothing */
            for (Py_ssize_t j = 0; j < k; j++) { /* every child stored or released */
                if (!is_dict) {
                    if (is_list) PyList_SET_ITEM(made[j], i, child[j]); /* stolen */
                    else PyTuple_SET_ITEM(made[j], i, child[j]);
                    continue;
                }
                if (ok == 1 && PyDict_SetItem(made[j], key, child[j]) < 0) ok = -1;
                Py_DECREF(child[j]);
            }
            i++;
        }
        Py_LeaveRecursiveCall();
    }
    if (ok != 1)
        for (Py_ssize_t j = 0; j < k; j++) Py_CLEAR(made[j]);
    return ok;
}

/* tree_views(tree, flats) -> [trees] or None: one tree of tree's structure (exact dicts of
 * str keys, lists and tuples of ndarray leaves) per 1-D ndarray of the list flats, its
 * leaves views of that array back to back in tree order with the leaves' shapes (writeable
 * when the array is); None when tree holds anything else or outgrows a flat (the caller
 * then takes the Python walk, optim._build_views, the reference). At most
 * TREE_COLUMNS_MAX flats. */
static PyObject *py_tree_views(PyObject *self, PyObject *args)
{
    PyObject *tree, *list;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!:tree_views", &tree, &PyList_Type, &list)) return NULL;
    const Py_ssize_t k = PyList_GET_SIZE(list);
    if (k < 1 || k > TREE_COLUMNS_MAX) Py_RETURN_NONE;
    PyArrayObject *flats[TREE_COLUMNS_MAX];
    PyObject *made[TREE_COLUMNS_MAX];
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *f = PyList_GET_ITEM(list, j);
        if (Py_TYPE(f) != &PyArray_Type || PyArray_NDIM((PyArrayObject *)f) != 1
            || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)f)
            || !PyArray_ISALIGNED((PyArrayObject *)f))
            Py_RETURN_NONE;
        flats[j] = (PyArrayObject *)f;
    }
    for (Py_ssize_t j = 0; j < k; j++) Py_INCREF(flats[j]);
    npy_intp offset = 0;
    const int ok = tree_views_walk(tree, flats, k, &offset, made);
    for (Py_ssize_t j = 0; j < k; j++) Py_DECREF(flats[j]);
    if (ok == -1) return NULL;
    if (ok == 0) Py_RETURN_NONE;
    PyObject *result = PyList_New(k);
    if (!result) {
        for (Py_ssize_t j = 0; j < k; j++) Py_DECREF(made[j]);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) PyList_SET_ITEM(result, j, made[j]);
    return result;
}

static PyMethodDef module_methods[] = {
    {"set_num_threads", py_set_num_threads, METH_VARARGS,
     "set_num_threads(n): the OpenMP thread count of every kernel, process-wide; "
     "1 <= n <= max_num_threads(); RuntimeWarning for n > 1 in a build without OpenMP"},
    {"max_num_threads", py_max_num_threads, METH_NOARGS,
     "max_num_threads() -> int: the largest n set_num_threads accepts"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"set_data_parallel", py_set_data_parallel, METH_VARARGS,
     "set_data_parallel(on): whether model fast paths may split a batch across threads"},
    {"get_data_parallel", py_get_data_parallel, METH_NOARGS, "get_data_parallel() -> bool"},
    {"set_thread_guard", py_set_thread_guard, METH_VARARGS,
     "set_thread_guard(on): the contention guard (one thread while the machine has no free core)"},
    {"get_thread_guard", py_get_thread_guard, METH_NOARGS, "get_thread_guard() -> bool"},
    {"set_flush_subnormals", py_set_flush_subnormals, METH_VARARGS,
     "set_flush_subnormals(on): subnormals flushed to zero in the whole-model C paths"},
    {"get_flush_subnormals", py_get_flush_subnormals, METH_NOARGS,
     "get_flush_subnormals() -> bool"},
    {"fp_team_entries", py_fp_team_entries, METH_NOARGS,
     "fp_team_entries() -> int: how many whole-model calls set the OpenMP team's FTZ/DAZ bits "
     "(core/fpenv.c; for the tests)"},
    {"parallel_worth", py_parallel_worth, METH_VARARGS,
     "parallel_worth(work, min_work) -> bool: whether a region of that work would use the threads now"},
    {"thread_guard_others", py_thread_guard_others, METH_NOARGS,
     "thread_guard_others() -> int: other processes' runnable tasks at the guard's last "
     "reading (-1: none)"},
    {"gemm_kernel_name", py_gemm_kernel_name, METH_NOARGS, "name of the GEMM micro-kernel"},
    {"tiled_span", py_tiled_span, METH_VARARGS,
     "tiled_span(leaves) -> (base, start, stop) or None: whether the arrays tile "
     "base[start:stop] back to back (nn._flat.flat_span)"},
    {"tree_columns", py_tree_columns, METH_VARARGS,
     "tree_columns(trees) -> [leaves per tree] or None: the leaves of trees of one "
     "structure, paired as tree.tree_map pairs them (None: another structure or a subclass)"},
    {"tree_views", py_tree_views, METH_VARARGS,
     "tree_views(tree, flats) -> [trees] or None: per 1-D array of flats, a tree of tree's "
     "structure whose leaves are views of it back to back (optim._build_views)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "transformer_c._C",
    "Private C kernels of transformer_c (positional arguments, no defaults). "
    "Use transformer_c.functional.", -1, module_methods,
};

/* _C.BUILD: the features this extension was compiled with (transformer_c.build_info()) */
static PyObject *build_dict(void)
{
#if defined(__clang__)
    const char *compiler = __VERSION__; /* "Clang 16.0.6", "Apple LLVM ..." */
#elif defined(__GNUC__)
    const char *compiler = "gcc " __VERSION__;
#elif defined(_MSC_VER)
    const char *compiler = "MSVC " Py_STRINGIFY(_MSC_VER);
#else
    const char *compiler = "unknown";
#endif
    return Py_BuildValue("{s:O,s:i,s:O,s:s}",
                         "openmp", tc_openmp_version() ? Py_True : Py_False,
                         "openmp_version", tc_openmp_version(),
                         "portable_only", tc_cpu_fast_name() ? Py_False : Py_True,
                         "compiler", compiler);
}

/* _C.OPTIONS: {kind: (name of value 0, name of value 1, ...)} from tc.h's option tables. */
static PyObject *options_dict(void)
{
    PyObject *d = PyDict_New(), *names = NULL;
    if (!d) return NULL;
    for (int kind = 0; kind < TC_OPT_COUNT; kind++) {
        int n = tc_option_count(kind);
        names = PyTuple_New(n);
        if (!names) goto fail;
        for (int v = 0; v < n; v++) {
            PyObject *name = PyUnicode_FromString(tc_option_name(kind, v));
            if (!name) goto fail;
            PyTuple_SET_ITEM(names, v, name);
        }
        if (PyDict_SetItemString(d, tc_option_kind_name(kind), names) < 0) goto fail;
        Py_CLEAR(names);
    }
    return d;
fail:
    Py_XDECREF(names);
    Py_DECREF(d);
    return NULL;
}

PyMODINIT_FUNC PyInit__C(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    PyMethodDef *tables[] = {
        tc_methods_linear, tc_methods_activation, tc_methods_softmax, tc_methods_dropout,
        tc_methods_layernorm, tc_methods_rmsnorm, tc_methods_embedding, tc_methods_position, tc_methods_attention,
        tc_methods_loss, tc_methods_optim,
        tc_methods_fused, tc_methods_perf,
        tc_methods_rope, tc_methods_model,
        tc_methods_bpe,
        tc_methods_model_encdec,
        tc_methods_decode,
        tc_methods_decode_encdec,
        tc_methods_moe,
        tc_methods_glu,
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        if (PyModule_AddFunctions(m, tables[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    PyObject *options = options_dict();
    if (!options || PyModule_AddObject(m, "OPTIONS", options) < 0) {
        Py_XDECREF(options);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *build = build_dict();
    if (!build || PyModule_AddObject(m, "BUILD", build) < 0) {
        Py_XDECREF(build);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *formulas = PyDict_New(); /* _C.ACTIVATION_FORMULAS: {name: formula} */
    for (int a = 0; formulas && a < TC_ACT_COUNT; a++) {
        PyObject *f = PyUnicode_FromString(tc_activation_formula(a));
        if (!f || PyDict_SetItemString(formulas, tc_option_name(TC_OPT_ACTIVATION, a), f) < 0)
            Py_CLEAR(formulas);
        Py_XDECREF(f);
    }
    if (!formulas || PyModule_AddObject(m, "ACTIVATION_FORMULAS", formulas) < 0) {
        Py_XDECREF(formulas);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
