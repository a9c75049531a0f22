/* bind_encdec_config.h: the encoder-decoder config as every encoder-decoder binding
 * (bind_model_encdec.c, bind_decode_encdec.c) takes it: 17 positional values in one order,
 * parsed with ED_CFG_FMT / ED_CFG_ARGS; and the source mask argument. */
#ifndef TC_BIND_ENCDEC_CONFIG_H
#define TC_BIND_ENCDEC_CONFIG_H

#include "bind.h"

/* Config from the 17 values every binding passes in the same order. */
#define ED_CFG_FMT "LLLLLLLLiiiiiiddd"
#define ED_CFG_ARGS(c)                                                                     \
    (long long *)&(c).Vs, (long long *)&(c).Vt, (long long *)&(c).maxT,                    \
        (long long *)&(c).C, (long long *)&(c).Le, (long long *)&(c).Ld,                   \
        (long long *)&(c).NH, (long long *)&(c).H, &(c).bias, &(c).position,               \
        &(c).post_norm, &(c).activation, &(c).share, &(c).tie, &(c).eps, &(c).pos_base,     \
        &(c).dropout

static inline int encdec_check_config(const tc_encdec_config *c)
{
    if (tc_encdec_num_params(c) >= 0) return 0;
    PyErr_SetString(PyExc_ValueError,
                    "invalid encoder-decoder config: sizes must be >= 1 (and not absurdly "
                    "large), C divisible by NH, position learned (0) or sinusoidal (1), options "
                    "in range, Vs == Vt with shared embeddings, eps >= 0, base > 0, dropout in "
                    "[0, 1)");
    return -1;
}

/* The source mask: None (NULL, *out stays NULL) or a bool (B,S) array; -1 on error. */
static inline int encdec_mask(PyObject *obj, PyArrayObject *src, PyArrayObject **out)
{
    *out = NULL;
    if (obj == Py_None) return 0;
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_BOOL) {
        PyErr_SetString(PyExc_TypeError, "src_mask must be None or a boolean array "
                        "(True = real token, False = padding)");
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(obj, NPY_BOOL, NPY_ARRAY_IN_ARRAY);
    if (!a) return -1;
    if (tc_py_check_same_shape(a, "src_mask", src, "src")) {
        Py_DECREF(a);
        return -1;
    }
    *out = a;
    return 0;
}

#endif /* TC_BIND_ENCDEC_CONFIG_H */
