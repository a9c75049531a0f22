/* model_common.h: dtype-independent helpers shared by the whole-model fast paths (model.c for
 * GPT, model_encdec.c for the encoder-decoder); the per-dtype ones are model_common_impl.h. */
#ifndef TC_MODEL_COMMON_H
#define TC_MODEL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tc.h"

/* Bump allocation: byte offset of a block of n elements of `size` bytes, 64-byte aligned. */
static inline size_t gpt_take(size_t *used, int64_t n, int64_t size)
{
    const size_t off = (*used + 63) / 64 * 64;
    *used = off + (size_t)n * (size_t)size;
    return off;
}

/* The dropout seed of site s (same rule as transformer_c.nn.blocks.site_seed). */
static inline uint64_t gpt_site_seed(uint64_t seed, int64_t site)
{
    return seed + (uint64_t)(site + 1) * UINT64_C(0x9E3779B97F4A7C15);
}

/* The per-token scratch of the KV decoders (model_decode.c, model_encdec_decode.c): byte
 * offsets of one block per buffer, carved for N tokens. */
typedef struct {
    size_t pos, x, h, qkv, qkvh, atth, atty, proj, fc, lse, last, lnf, total;
} dec_bufs;

/* Whether N tokens of decoder scratch (width C, MLP width H, NH heads) stay far from
 * size_t overflow. */
static inline int dec_tokens_ok(int64_t C, int64_t H, int64_t NH, int64_t N, int64_t elem)
{
    return (double)N * (double)(13 * C + H + NH + 8) * (double)elem < 1e15;
}

static inline dec_bufs dec_plan(int64_t C, int64_t H, int64_t NH, int64_t N, int64_t elem)
{
    size_t u = 0;
    dec_bufs s;
    s.pos = gpt_take(&u, N, sizeof(int64_t));
    s.x = gpt_take(&u, N * C, elem);
    s.h = gpt_take(&u, N * C, elem);
    s.qkv = gpt_take(&u, 3 * N * C, elem);
    s.qkvh = gpt_take(&u, 3 * N * C, elem);
    s.atth = gpt_take(&u, N * C, elem);
    s.atty = gpt_take(&u, N * C, elem);
    s.proj = gpt_take(&u, N * C, elem);
    s.fc = gpt_take(&u, N * H, elem);
    s.lse = gpt_take(&u, N * NH, elem);
    s.last = gpt_take(&u, N * C, elem);
    s.lnf = gpt_take(&u, N * C, elem);
    s.total = (u + 63) / 64 * 64;
    return s;
}

/* Grow a decoder's scratch (*mem, carved as *bufs for *cap tokens) to hold N tokens. */
static inline int dec_reserve(char **mem, int64_t *cap, dec_bufs *bufs, int64_t C, int64_t H,
                              int64_t NH, int64_t N, int64_t elem)
{
    if (N <= *cap && *mem) return TC_OK;
    if (!dec_tokens_ok(C, H, NH, N, elem)) return TC_ENOMEM;
    const dec_bufs s = dec_plan(C, H, NH, N, elem);
    char *p = aligned_alloc(64, s.total ? s.total : 64);
    if (!p) return TC_ENOMEM;
    free(*mem);
    *mem = p;
    *bufs = s;
    *cap = N;
    return TC_OK;
}

#endif /* TC_MODEL_COMMON_H */
