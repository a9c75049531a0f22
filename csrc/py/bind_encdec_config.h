/* bind_encdec_config.h: the encoder-decoder config as every encoder-decoder binding
 * (bind_model_encdec.c, bind_decode_encdec.c) takes it: a dict of tc_encdec_config's fields
 * by name (EncoderDecoderConfig.c_fields()), read with encdec_config (a PyArg "O&"
 * converter); and the source mask argument. */
#ifndef TC_BIND_ENCDEC_CONFIG_H
#define TC_BIND_ENCDEC_CONFIG_H

#include "bind_config.h"

#define ED_FIELD(name, kind, opt) {#name, kind, offsetof(tc_encdec_config, name), opt}
static const tc_py_field encdec_config_fields[] = {
    ED_FIELD(Vs, TC_PY_FIELD_INT64, 0),
    ED_FIELD(Vt, TC_PY_FIELD_INT64, 0),
    ED_FIELD(maxT, TC_PY_FIELD_INT64, 0),
    ED_FIELD(C, TC_PY_FIELD_INT64, 0),
    ED_FIELD(Le, TC_PY_FIELD_INT64, 0),
    ED_FIELD(Ld, TC_PY_FIELD_INT64, 0),
    ED_FIELD(NH, TC_PY_FIELD_INT64, 0),
    ED_FIELD(H, TC_PY_FIELD_INT64, 0),
    ED_FIELD(bias, TC_PY_FIELD_FLAG, 0),
    ED_FIELD(position, TC_PY_FIELD_OPTION, TC_OPT_POSITION),
    ED_FIELD(norm, TC_PY_FIELD_OPTION, TC_OPT_NORM),
    ED_FIELD(activation, TC_PY_FIELD_OPTION, TC_OPT_ACTIVATION),
    ED_FIELD(share, TC_PY_FIELD_FLAG, 0),
    ED_FIELD(tie, TC_PY_FIELD_FLAG, 0),
    ED_FIELD(eps, TC_PY_FIELD_DOUBLE, 0),
    ED_FIELD(pos_base, TC_PY_FIELD_DOUBLE, 0),
    ED_FIELD(dropout, TC_PY_FIELD_DOUBLE, 0),
    TC_PY_BLOCK_OPTION_FIELDS(ED_FIELD),
    ED_FIELD(norm_type, TC_PY_FIELD_OPTION, TC_OPT_NORM_TYPE),
    ED_FIELD(qk_norm, TC_PY_FIELD_FLAG, 0),
    ED_FIELD(NKV, TC_PY_FIELD_INT64, 0),
    ED_FIELD(gated, TC_PY_FIELD_FLAG, 0),
    {NULL, 0, 0, 0},
};
#undef ED_FIELD

/* PyArg "O&" converter: *(tc_encdec_config *)out from the dict obj; 1, or 0 with TypeError /
 * ValueError naming the field, or ValueError for a config the C library rejects. */
static inline int encdec_config(PyObject *obj, void *out)
{
    tc_encdec_config *c = out;
    memset(c, 0, sizeof *c);
    if (tc_py_config_fill(obj, "encoder-decoder config", encdec_config_fields, c) ||
        tc_py_config_layers("encoder-decoder config", "Le", c->Le) ||
        tc_py_config_layers("encoder-decoder config", "Ld", c->Ld))
        return 0;
    if (tc_encdec_num_params(c) >= 0) return 1;
    PyErr_SetString(PyExc_ValueError,
                    "invalid encoder-decoder config: sizes must be >= 1 (and not absurdly "
                    "large), C divisible by NH, position learned (0) or sinusoidal (1), "
                    "Vs == Vt with shared embeddings, eps >= 0, base > 0, dropout in [0, 1), "
                    "with block-sparse attention sparse_block >= 1, sparse_window >= 1, "
                    "sparse_stride >= 0, sparse_global >= 0, and with ffn='moe' moe_top_k 1 or 2, moe_experts >= moe_top_k, "
                    "moe_capacity finite > 0, moe_aux_weight finite >= 0, NKV 0 or a divisor "
                    "of NH, and gated only with ffn='mlp'");
    return 0;
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
