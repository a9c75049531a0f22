/* bind.h: the shared header of the CPython bindings (csrc/py/ files), the only code that sees
 * Python.h. The kernels beside csrc/ stay pure C.
 *
 * Every binding follows one pattern:
 *   - positional arguments only ("O..." in PyArg_ParseTuple), no defaults: the public,
 *     friendly API is transformer_c.functional;
 *   - the call's dtype comes from its first float argument (tc_py_float_type); every other
 *     float argument must have that dtype exactly (no silent casts: mixing is TypeError);
 *   - inputs are converted with the helpers below (C-contiguous, aligned, native byte order;
 *     non-contiguous or Fortran inputs are copied), shapes are checked with messages that
 *     name the argument, all before the GIL is released;
 *   - pointers start NULL, every failure is `goto done`, one Py_XDECREF block at the end;
 *   - the kernel runs between TC_PY_BEGIN_ALLOW_THREADS / Py_END_ALLOW_THREADS, chosen by
 *     TC_CALL, and its status goes through tc_py_status.
 */
#ifndef TC_BIND_H
#define TC_BIND_H

#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL tc_ARRAY_API
#ifndef TC_BIND_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <Python.h>
#include <numpy/arrayobject.h>

#include "../tc.h"

/* Py_BEGIN_ALLOW_THREADS, then the process-wide thread count (tc_set_num_threads) applied
 * to this thread, which may not be the one that set it: every binding releases the GIL for
 * its kernels with this, never with Py_BEGIN_ALLOW_THREADS alone (tests/test_hardening.py
 * checks). Close with Py_END_ALLOW_THREADS. */
#define TC_PY_BEGIN_ALLOW_THREADS \
    Py_BEGIN_ALLOW_THREADS        \
    tc_sync_num_threads();

/* Call fn_f32 or fn_f64 by the dtype typenum (NPY_FLOAT or NPY_DOUBLE). */
#define TC_CALL(typenum, fn, ...) \
    ((typenum) == NPY_FLOAT ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))

/* NPY_FLOAT or NPY_DOUBLE: the dtype of obj, which must be a float32/float64 array (or
 * something np.asarray turns into one). -1 with TypeError naming `name` otherwise. */
int tc_py_float_type(PyObject *obj, const char *name);

/* obj as a C-contiguous aligned native array of dtype typenum with `ndim` dimensions
 * (ndim < 0: any). TypeError naming `name` if obj's dtype is not typenum, ValueError if
 * ndim differs. New reference, or NULL with the exception set. */
PyArrayObject *tc_py_float_array(PyObject *obj, const char *name, int typenum, int ndim);

/* obj (any integer dtype) as a C-contiguous int64 array with `ndim` dims (< 0: any).
 * TypeError naming `name` for non-integer dtypes (floats, bools). */
PyArrayObject *tc_py_index_array(PyObject *obj, const char *name, int ndim);

/* An array updated in place: must already be a writeable, C-contiguous, aligned, native
 * ndarray of dtype typenum (nothing is copied). Borrowed-style: returns a new reference. */
PyArrayObject *tc_py_inout_array(PyObject *obj, const char *name, int typenum);

/* 0 if a.shape[axis] == want, else -1 with ValueError:
 * "<name> must have <what> = <want> along axis <axis>, got shape (..)". */
/* -1 with ValueError unless write is a backward's write flag (tc.h) over nout outputs:
 * 0 <= write < 2^nout. */
int tc_py_check_write(int64_t write, int nout, const char *name);
int tc_py_check_dim(PyArrayObject *a, const char *name, int axis, npy_intp want,
                    const char *what);

/* The operands of a linear layer, converted and checked: x (N,C) float32/float64 (its dtype
 * is the call's: *ty), weight (OC,C), and unless their object is NULL bias (OC,) (Py_None:
 * *b stays NULL) and grad_output (N,OC), all of x's dtype. 0, or -1 with the exception set;
 * either way the caller releases the references made. */
int tc_py_linear_args(PyObject *x_obj, PyObject *w_obj, PyObject *b_obj, PyObject *dy_obj,
                      int *ty, PyArrayObject **x, PyArrayObject **w, PyArrayObject **b,
                      PyArrayObject **dy);

/* An element-wise binding: out = a new (uninitialised) array of x's shape and dtype,
 * filled by fn(ty, out, x, y, n, ctx) without the GIL (n = x.size; the kernel writes every
 * element). x (named x_name, any shape) sets the dtype; y (NULL: none) must have x's shape
 * and dtype. out, or NULL with the exception set (a bad status names kernel). */
typedef int (*tc_py_map_fn)(int ty, void *out, const void *x, const void *y, int64_t n,
                            const void *ctx);
PyObject *tc_py_map(PyObject *x_obj, const char *x_name, PyObject *y_obj, const char *y_name,
                    tc_py_map_fn fn, const void *ctx, const char *kernel);
/* Its second half, for arrays the caller has converted (and keeps the references to). */
PyObject *tc_py_map_arrays(int ty, PyArrayObject *x, PyArrayObject *y, tc_py_map_fn fn,
                           const void *ctx, const char *kernel);
/* tc_py_float_type and tc_py_float_array in one: obj, the call's first float array, sets
 * *ty. New reference, or NULL with the exception set. */
PyArrayObject *tc_py_float_input(PyObject *obj, const char *name, int ndim, int *ty);

/* 0 if a and b have identical shapes, else -1 with ValueError naming both. */
int tc_py_check_same_shape(PyArrayObject *a, const char *a_name, PyArrayObject *b,
                           const char *b_name);

/* 0 if every index in ids lies in [0, limit), else -1 with IndexError naming `name`. */
int tc_py_check_index_range(PyArrayObject *ids, const char *name, int64_t limit);

/* A new array of the given shape and dtype, zero-filled if zero != 0. NULL on failure. */
PyArrayObject *tc_py_new(int ndim, const npy_intp *dims, int typenum, int zero);

/* 0 for TC_OK; -1 with MemoryError / ValueError naming the kernel otherwise. */
int tc_py_status(int status, const char *kernel);

/* Python int -> C values with range checks; -1 with ValueError/TypeError naming `name`. */
int tc_py_int64(PyObject *obj, const char *name, int64_t *out);

/* tc_py_int64, then ValueError "<name> must be >= <min>, got <v>" below min. */
int tc_py_int64_min(PyObject *obj, const char *name, int64_t min, int64_t *out);

/* A dtype argument (np.float32, "float64", ...) -> NPY_FLOAT or NPY_DOUBLE, or -1 with
 * TypeError "<name> must be float32 or float64". */
int tc_py_dtype(PyObject *obj, const char *name);

/* Python int in [0, 2**64) -> uint64 (seeds); TypeError/ValueError naming `name`. */
int tc_py_uint64(PyObject *obj, const char *name, uint64_t *out);

/* The scalar converters every binding uses: one message and one exception type per kind of
 * error (TypeError: not a real number / not an integer; ValueError: out of range).
 * The range of a real: */
enum {
    TC_PY_FINITE,   /* "a finite number" (scale) */
    TC_PY_NONNEG,   /* "a finite number >= 0" (eps) */
    TC_PY_POSITIVE, /* "a finite number > 0" (base) */
    TC_PY_PROB      /* "a probability in [0, 1]" (p, dropout_p, label_smoothing) */
};
/* 0 if v lies in range, else -1 with ValueError "<name> must be <range>, got <v>". */
int tc_py_check_real(double v, const char *name, int range);
/* A Python real number (not bool, not complex) -> double in range; TypeError / ValueError
 * naming `name`. */
int tc_py_real(PyObject *obj, const char *name, int range, double *out);
/* 0 if v is 0 or 1, else -1 with ValueError naming `name`. */
int tc_py_check_flag(int v, const char *name);
/* 0 if v is a value of option kind (tc.h options: TC_OPT_*), else -1 with ValueError
 * naming `name` and listing the values with their names. */
int tc_py_check_option(int kind, int v, const char *name);

/* "(2, 3, 4)" for error messages, written into buf (size n). */
const char *tc_py_shape_str(PyArrayObject *a, char *buf, size_t n);

/* A C object (model, decoder) owned by a capsule (bind_handle.c). A binding's handle struct
 * has this as its FIRST member and is allocated with PyMem_Calloc. */
typedef struct {
    void *obj;                /* the C object */
    void (*free_obj)(void *); /* frees obj */
    PyObject *params, *grads; /* owned references to the arrays obj borrows (may be NULL) */
    int typenum;              /* NPY_FLOAT or NPY_DOUBLE */
    int busy;                 /* set while a call runs without the GIL */
} tc_py_handle;

/* A capsule named capsule_name (a string literal) owning h; on failure h is discarded and
 * NULL returned with the exception set. */
PyObject *tc_py_handle_wrap(tc_py_handle *h, const char *capsule_name);

/* Frees h, its object and its array references (NULL-safe). */
void tc_py_handle_discard(tc_py_handle *h);

/* The handle inside a capsule made by tc_py_handle_wrap(capsule_name), marked busy (the
 * caller clears ->busy when its call ends). TypeError "<name> must be <what>" for any other
 * object, RuntimeError if another thread is using it. */
void *tc_py_handle_acquire(PyObject *obj, const char *capsule_name, const char *what,
                           const char *name);

/* The flat parameter buffer (P,) of a model and, unless g_obj is NULL, its gradient buffer:
 * both written in place by the C object, so they must be writeable C-contiguous arrays of one
 * float dtype (no copies), distinct. Without grads, params is read only (copied if needed).
 * 0 with *typenum and two new references set, or -1 with ValueError/TypeError. */
int tc_py_flat_buffers(PyObject *p_obj, PyObject *g_obj, int64_t P, int *typenum,
                       PyArrayObject **params, PyArrayObject **grads);

/* 0 if every target id lies in [0, V) or equals ignore_index, else -1 with IndexError. */
int tc_py_check_targets(PyArrayObject *targets, const char *name, int64_t V,
                        int64_t ignore_index);

/* The rows argument of a decoder's select: 1-D ids in [0, rows_now), at most max_rows of
 * them (ValueError / IndexError / TypeError naming "rows"). New reference or NULL. */
PyArrayObject *tc_py_select_rows(PyObject *obj, int64_t rows_now, int64_t max_rows);

/* Method tables, one per family (bind_<family>.c); module.c adds them all. */
extern PyMethodDef tc_methods_linear[];
extern PyMethodDef tc_methods_activation[];
extern PyMethodDef tc_methods_softmax[];
extern PyMethodDef tc_methods_dropout[];
extern PyMethodDef tc_methods_layernorm[];
extern PyMethodDef tc_methods_rmsnorm[];
extern PyMethodDef tc_methods_embedding[];
extern PyMethodDef tc_methods_position[];
extern PyMethodDef tc_methods_attention[];
extern PyMethodDef tc_methods_loss[];
extern PyMethodDef tc_methods_optim[];
extern PyMethodDef tc_methods_fused[];
extern PyMethodDef tc_methods_perf[];
extern PyMethodDef tc_methods_rope[];
extern PyMethodDef tc_methods_model[];
extern PyMethodDef tc_methods_bpe[];
extern PyMethodDef tc_methods_model_encdec[];
extern PyMethodDef tc_methods_decode[];
extern PyMethodDef tc_methods_decode_encdec[];
extern PyMethodDef tc_methods_moe[];
extern PyMethodDef tc_methods_glu[];

#endif /* TC_BIND_H */
