/* bind_gpt_config.h: the GPT config as every GPT binding (bind_model.c, bind_decode.c) takes
 * it: 15 positional values in one order, parsed with GPT_CFG_FMT / GPT_CFG_ARGS. */
#ifndef TC_BIND_GPT_CONFIG_H
#define TC_BIND_GPT_CONFIG_H

#include "bind.h"

#define GPT_CFG_FMT "LLLLLLiiiiiddid"
#define GPT_CFG_ARGS(c)                                                                  \
    (long long *)&(c).V, (long long *)&(c).maxT, (long long *)&(c).C, (long long *)&(c).L, \
        (long long *)&(c).NH, (long long *)&(c).H, &(c).bias, &(c).position,              \
        &(c).post_norm, &(c).activation, &(c).tie, &(c).eps, &(c).pos_base,               \
        &(c).rope_interleaved, &(c).dropout

/* 0 for a valid config, else -1 with ValueError. */
static inline int gpt_check_config(const tc_gpt_config *c)
{
    if (tc_gpt_num_params(c) >= 0) return 0;
    PyErr_SetString(PyExc_ValueError,
                    "invalid GPT config: sizes must be >= 1 (and not absurdly large), C "
                    "divisible by NH, an even head size with RoPE, options in range, eps >= 0, "
                    "base > 0, dropout in [0, 1)");
    return -1;
}

#endif /* TC_BIND_GPT_CONFIG_H */
