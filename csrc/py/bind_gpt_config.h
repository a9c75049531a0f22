/* bind_gpt_config.h: the GPT config as every GPT binding (bind_model.c, bind_decode.c) takes
 * it: a dict of tc_gpt_config's fields by name (GPTConfig.c_fields()), read with
 * gpt_config (a PyArg "O&" converter). */
#ifndef TC_BIND_GPT_CONFIG_H
#define TC_BIND_GPT_CONFIG_H

#include "bind_config.h"

#define GPT_FIELD(name, kind, opt) {#name, kind, offsetof(tc_gpt_config, name), opt}
static const tc_py_field gpt_config_fields[] = {
    GPT_FIELD(V, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(maxT, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(C, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(L, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(NH, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(H, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(bias, TC_PY_FIELD_FLAG, 0),
    GPT_FIELD(position, TC_PY_FIELD_OPTION, TC_OPT_POSITION),
    GPT_FIELD(norm, TC_PY_FIELD_OPTION, TC_OPT_NORM),
    GPT_FIELD(activation, TC_PY_FIELD_OPTION, TC_OPT_ACTIVATION),
    GPT_FIELD(tie, TC_PY_FIELD_FLAG, 0),
    GPT_FIELD(eps, TC_PY_FIELD_DOUBLE, 0),
    GPT_FIELD(pos_base, TC_PY_FIELD_DOUBLE, 0),
    GPT_FIELD(rope_interleaved, TC_PY_FIELD_FLAG, 0),
    GPT_FIELD(dropout, TC_PY_FIELD_DOUBLE, 0),
    TC_PY_BLOCK_OPTION_FIELDS(GPT_FIELD),
    GPT_FIELD(norm_type, TC_PY_FIELD_OPTION, TC_OPT_NORM_TYPE),
    GPT_FIELD(qk_norm, TC_PY_FIELD_FLAG, 0),
    GPT_FIELD(logit_softcap, TC_PY_FIELD_DOUBLE, 0),
    GPT_FIELD(NKV, TC_PY_FIELD_INT64, 0),
    GPT_FIELD(gated, TC_PY_FIELD_FLAG, 0),
    {NULL, 0, 0, 0},
};
#undef GPT_FIELD

/* PyArg "O&" converter: *(tc_gpt_config *)out from the dict obj; 1, or 0 with TypeError /
 * ValueError naming the field, or ValueError for a config the C library rejects. */
static inline int gpt_config(PyObject *obj, void *out)
{
    tc_gpt_config *c = out;
    memset(c, 0, sizeof *c);
    if (tc_py_config_fill(obj, "GPT config", gpt_config_fields, c) ||
        tc_py_config_layers("GPT config", "L", c->L))
        return 0;
    if (tc_gpt_num_params(c) >= 0) return 1;
    PyErr_SetString(PyExc_ValueError,
                    "invalid GPT config: sizes must be >= 1 (and not absurdly large), C "
                    "divisible by NH, an even head size with RoPE, eps >= 0, base > 0, "
                    "dropout in [0, 1), logit_softcap finite >= 0, with block-sparse attention "
                    "sparse_block >= 1, sparse_window >= 1, sparse_stride >= 0, "
                    "sparse_global >= 0, with ffn='moe' moe_top_k 1 or 2, moe_experts >= "
                    "moe_top_k, moe_capacity finite > 0, moe_aux_weight finite >= 0, NKV 0 or "
                    "a divisor of NH, and gated only with ffn='mlp'");
    return 0;
}

#endif /* TC_BIND_GPT_CONFIG_H */
