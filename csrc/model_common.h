/* model_common.h: dtype-independent helpers shared by the whole-model fast paths (model.c for
 * GPT, model_encdec.c for the encoder-decoder); the per-dtype ones are model_common_impl.h. */
#ifndef TC_MODEL_COMMON_H
#define TC_MODEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Bump allocation: byte offset of a block of n elements of `size` bytes, 64-byte aligned. */
static size_t gpt_take(size_t *used, int64_t n, int64_t size)
{
    const size_t off = (*used + 63) / 64 * 64;
    *used = off + (size_t)n * (size_t)size;
    return off;
}

/* The dropout seed of site s (same rule as transformer_c.nn.blocks.site_seed). */
static uint64_t gpt_site_seed(uint64_t seed, int64_t site)
{
    return seed + (uint64_t)(site + 1) * UINT64_C(0x9E3779B97F4A7C15);
}

#endif /* TC_MODEL_COMMON_H */
