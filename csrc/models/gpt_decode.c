/* gpt_decode.c: KV-cache decoding of a GPT (tc.h, "model_decode"): the decoder object,
 * its cache and scratch, and the row selection of beam search; the forward itself is
 * gpt_decode_impl.h, compiled per dtype.
 *
 * Memory, all allocated when the decoder is created (only the prefill scratch may grow):
 *   k, v       (L, Bmax, NKV, Smax, HS) each: every layer's keys (after RoPE) and values
 *              (NKV kv heads: NH, or n_kv_head with grouped-query attention, whose cache
 *              is NH / NKV times smaller); layer l's first B rows are the (B, NKV, Smax, HS) caches that
 *              tc_attention_decode reads and appends to;
 *   pad        (Bmax,) left-padding slots of each row; kp (Bmax * Smax) key-padding scratch;
 *   tab1, tab2 sinusoidal table (Smax, C), or RoPE cos, sin (Smax, HS/2);
 *   scratch    per token: x C, h C, qkv 3C, qkvh 3C, atth C, atty C, proj C, fc H,
 *              pos (int64), last C, lnf C (sized for Bmax tokens, grown by a long prefill);
 *   k2, v2     the second cache buffers of a select that reorders rows (on first use);
 *   moe        ffn == TC_FFN_MOE: one layer's tc_moe_cache for the tokens of a call
 *              (model_moe_plan with cap = the tokens: every token routed alone, no drops;
 *              grown with the scratch).
 */
#include "tc_generic.h"
#include "gpt_layout.h"
#include "model_common.h"

#include <stdlib.h>
#include <string.h>

struct tc_gpt_kv {
    tc_gpt_config cfg;
    int64_t elem;                    /* sizeof(real_t) */
    const void *params;              /* borrowed flat buffer */
    int64_t wte, wpe, lnfw, lnfb, head;
    gpt_layer_params *lp;            /* (L,) */
    int64_t Bmax, Smax;              /* capacity */
    int64_t B, pos;                  /* rows now, slots filled (the same for every row) */
    void *k, *v, *k2, *v2;           /* caches (see above); k2, v2 NULL until needed */
    int64_t *pad, *pad2;             /* (Bmax,) */
    uint8_t *kp;                     /* (Bmax * Smax) */
    void *tab1, *tab2;
    dec_scratch sc;                  /* per-token scratch (grown by a long prefill) */
    dec_moe_scratch moe;             /* the mixture of experts' cache (see above) */
};

/* Bytes of one cache buffer (k or v): L * Bmax * KC * Smax elements (KC = NKV * HS). */
static size_t kv_cache_bytes(const tc_gpt_kv *kv)
{
    return (size_t)(kv->cfg.L * kv->Bmax * gpt_kv_width(&kv->cfg) * kv->Smax) *
           (size_t)kv->elem;
}

void tc_gpt_kv_free(tc_gpt_kv *kv)
{
    if (!kv) return;
    free(kv->lp);
    free(kv->k);
    free(kv->v);
    free(kv->k2);
    free(kv->v2);
    free(kv->pad);
    free(kv->pad2);
    free(kv->kp);
    free(kv->tab1);
    free(kv->tab2);
    free(kv->sc.mem);
    free(kv->moe.mem);
    free(kv);
}

/* The decoder without its position tables (gpt_decode_impl.h adds them). */
static int kv_new(tc_gpt_kv **out, const tc_gpt_config *cfg, const void *params, int64_t elem,
                  int64_t Bmax, int64_t Smax)
{
    if (!out) return TC_EINVAL;
    *out = NULL;
    if (!params || !gpt_config_ok(cfg) || Bmax < 1 || Smax < 1 || Smax > cfg->maxT)
        return TC_EINVAL;
    /* the caches: 2 * L * Bmax * Smax * C elements (twice that after a reordering select) */
    if ((double)cfg->L * (double)Bmax * (double)Smax * (double)cfg->C * (double)elem > 1e14 ||
        (double)Bmax * (double)Smax > 1e12 ||
        !dec_tokens_ok(cfg->C, 2 * cfg->H, cfg->NH, Bmax, elem))
        return TC_ENOMEM;
    tc_gpt_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return TC_ENOMEM;
    kv->cfg = *cfg;
    kv->elem = elem;
    kv->params = params;
    kv->Bmax = Bmax;
    /* (the scratch's fc holds 2 rows of H per token for the gated MLP: gate and up) */
    kv->sc = (dec_scratch){.C = cfg->C, .H = cfg->gated ? 2 * cfg->H : cfg->H, .NH = cfg->NH,
                           .elem = elem};
    kv->moe = (dec_moe_scratch){.C = cfg->C, .H = cfg->H, .E = cfg->moe_experts,
                                .K = cfg->moe_top_k, .elem = elem};
    kv->Smax = Smax;
    kv->lp = malloc((size_t)cfg->L * sizeof *kv->lp);
    if (kv->lp)
        gpt_param_plan(cfg, kv->lp, &kv->wte, &kv->wpe, &kv->lnfw, &kv->lnfb, &kv->head);
    const size_t cb = kv_cache_bytes(kv);
    kv->k = malloc(cb);
    kv->v = malloc(cb);
    kv->pad = calloc((size_t)Bmax, sizeof *kv->pad);
    kv->pad2 = calloc((size_t)Bmax, sizeof *kv->pad2);
    kv->kp = malloc((size_t)(Bmax * Smax));
    if (!kv->lp || !kv->k || !kv->v || !kv->pad || !kv->pad2 || !kv->kp ||
        dec_reserve(&kv->sc, Bmax) != TC_OK ||
        (gpt_is_moe(cfg) && dec_moe_reserve(&kv->moe, Bmax) != TC_OK)) {
        tc_gpt_kv_free(kv);
        return TC_ENOMEM;
    }
    *out = kv;
    return TC_OK;
}

int tc_gpt_kv_state(const tc_gpt_kv *kv, int64_t *rows, int64_t *pos)
{
    if (!kv || !rows || !pos) return TC_EINVAL;
    *rows = kv->B;
    *pos = kv->pos;
    return TC_OK;
}

int64_t tc_gpt_kv_cache_bytes(const tc_gpt_kv *kv)
{
    if (!kv) return 0;
    return (int64_t)(kv_cache_bytes(kv) * ((kv->k2 ? 2 : 0) + 2));
}

/* The caches' rows after a select (dec_copy_cache_rows). */
static void kv_copy_rows(tc_gpt_kv *kv, void *kd, void *vd, const void *ks, const void *vs,
                         const int64_t *rows, int64_t B2, int in_place)
{
    dec_copy_cache_rows(kd, vd, ks, vs, rows, B2, kv->cfg.L, kv->Bmax, gpt_kv_heads(&kv->cfg), kv->Smax,
                        kv->cfg.C / kv->cfg.NH, kv->pos, kv->elem, in_place);
}

// rows (B2,) in [0, B): row j of the cache becomes old row rows[j]
int tc_gpt_kv_select(tc_gpt_kv *kv, const int64_t *rows, int64_t B2)
{
    if (!kv || B2 < 0 || B2 > kv->Bmax || (B2 > 0 && !rows)) return TC_EINVAL;
    int in_place = 1;
    for (int64_t j = 0; j < B2; j++) {
        if (rows[j] < 0 || rows[j] >= kv->B) return TC_EINVAL;
        if (rows[j] < j || (j > 0 && rows[j] <= rows[j - 1])) in_place = 0;
    }
    if (in_place) {
        kv_copy_rows(kv, kv->k, kv->v, kv->k, kv->v, rows, B2, 1);
        for (int64_t j = 0; j < B2; j++) kv->pad[j] = kv->pad[rows[j]];
    } else {
        if (!kv->k2) {
            const size_t cb = kv_cache_bytes(kv);
            void *k2 = malloc(cb), *v2 = malloc(cb);
            if (!k2 || !v2) {
                free(k2);
                free(v2);
                return TC_ENOMEM;
            }
            kv->k2 = k2;
            kv->v2 = v2;
        }
        kv_copy_rows(kv, kv->k2, kv->v2, kv->k, kv->v, rows, B2, 0);
        dec_swap(&kv->k, &kv->k2);
        dec_swap(&kv->v, &kv->v2);
        for (int64_t j = 0; j < B2; j++) kv->pad2[j] = kv->pad[rows[j]];
        int64_t *p = kv->pad;
        kv->pad = kv->pad2;
        kv->pad2 = p;
    }
    kv->B = B2;
    return TC_OK;
}

#define TC_GENERIC_1 "gpt_decode_impl.h"
#include "tc_dtypes.h"
