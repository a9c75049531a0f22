/* encdec_decode.c: KV-cache decoding of an encoder-decoder (tc.h,
 * "model_encdec_decode"): the decoder object, its caches and scratch, and the row selection
 * of beam search; the forward itself is encdec_decode_impl.h, compiled per dtype.
 *
 * Memory, all allocated when the decoder is created (only the prefill scratch may grow):
 *   k, v       (Ld, Bmax, NKV, Tmax, HS) each: the decoder's self-attention keys and values
 *              (NKV kv heads: NH, or n_kv_head with grouped-query attention); layer l's
 *              first B rows are the (B, NKV, Tmax, HS) caches tc_attention_decode reads and
 *              appends to;
 *   xk, xv     (Ld, Bmax * NH * Smax * HS) each: layer l's cross-attention keys and values
 *              of the memory, stored as (B, NH, S, HS) with S the source length of the
 *              batch (computed once by prefill);
 *   mask       (Bmax * Smax): the source key-padding mask as (B, S), when there is padding;
 *   tab        the sinusoidal table (Tmax, C) of the target positions;
 *   enc        a tc_encdec over the same parameters (no gradients) that runs the encoder;
 *   scratch    per token: x C, h C, qkv 3C, qkvh 3C, atth C, atty C, proj C, fc H (2H
 *              gated: the gate and the up projection),
 *              pos (int64), lse NH, last C, lnf C (sized for Bmax tokens, grown by a long
 *              prefix);
 *   k2 .. mask2 the second buffers of select (on first use).
 */
#include "tc_generic.h"
#include "encdec_layout.h"
/* the shared helpers of the fast paths; the training-only ones stay unused here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "model_common.h"
#pragma GCC diagnostic pop

#include <stdlib.h>
#include <string.h>

struct tc_encdec_kv {
    tc_encdec_config cfg;
    int64_t elem;                    /* sizeof(real_t) */
    const void *params;              /* borrowed flat buffer */
    tc_encdec *enc;                  /* runs the encoder */
    ed_globals g;
    ed_layer_params *dp;             /* (Ld,) */
    int64_t Bmax, Tmax, Smax;        /* capacity */
    int64_t B, pos, S;               /* rows now, target slots filled, source length */
    int has_mask;                    /* mask holds the (B, S) source mask */
    void *k, *v, *xk, *xv, *k2, *v2, *xk2, *xv2;
    uint8_t *mask, *mask2;
    void *tab;
    dec_scratch sc;                  /* per-token scratch (grown by a long prefill) */
    dec_moe_scratch moe;             /* ffn == TC_FFN_MOE: a layer's tc_moe_cache for the
                                      * target tokens of a call, each routed alone */
};

/* Bytes of one self-attention cache buffer (k or v: KC = NKV * HS wide) and of one
 * cross-attention one (C wide). */
static size_t edk_self_bytes(const tc_encdec_kv *kv)
{
    return (size_t)(kv->cfg.Ld * kv->Bmax * ed_kv_width(&kv->cfg) * kv->Tmax) *
           (size_t)kv->elem;
}

static size_t edk_cross_bytes(const tc_encdec_kv *kv)
{
    return (size_t)(kv->cfg.Ld * kv->Bmax * kv->cfg.C * kv->Smax) * (size_t)kv->elem;
}

void tc_encdec_kv_free(tc_encdec_kv *kv)
{
    if (!kv) return;
    tc_encdec_free(kv->enc);
    free(kv->dp);
    free(kv->k);
    free(kv->v);
    free(kv->xk);
    free(kv->xv);
    free(kv->k2);
    free(kv->v2);
    free(kv->xk2);
    free(kv->xv2);
    free(kv->mask);
    free(kv->mask2);
    free(kv->tab);
    free(kv->sc.mem);
    free(kv->moe.mem);
    free(kv);
}

/* The decoder without its encoder and position table (encdec_decode_impl.h adds them). */
static int edk_new(tc_encdec_kv **out, const tc_encdec_config *cfg, const void *params,
                   int64_t elem, int64_t Bmax, int64_t Tmax, int64_t Smax)
{
    if (!out) return TC_EINVAL;
    *out = NULL;
    if (!params || !ed_config_ok(cfg) || Bmax < 1 || Tmax < 1 || Smax < 1 ||
        Tmax > cfg->maxT || Smax > cfg->maxT)
        return TC_EINVAL;
    const double rows = (double)cfg->Ld * (double)Bmax * (double)cfg->C * (double)elem;
    if (rows * (double)Tmax > 1e14 || rows * (double)Smax > 1e14 ||
        (double)Bmax * (double)Smax > 1e12 ||
        !dec_tokens_ok(cfg->C, 2 * cfg->H, cfg->NH, Bmax, elem))
        return TC_ENOMEM;
    tc_encdec_kv *kv = calloc(1, sizeof *kv);
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
    kv->Tmax = Tmax;
    kv->Smax = Smax;
    kv->dp = malloc((size_t)cfg->Ld * sizeof *kv->dp);
    if (kv->dp) ed_param_plan(cfg, &kv->g, NULL, kv->dp);
    const size_t sb = edk_self_bytes(kv), cb = edk_cross_bytes(kv);
    kv->k = malloc(sb);
    kv->v = malloc(sb);
    kv->xk = malloc(cb);
    kv->xv = malloc(cb);
    kv->mask = malloc((size_t)(Bmax * Smax));
    if (!kv->dp || !kv->k || !kv->v || !kv->xk || !kv->xv || !kv->mask ||
        dec_reserve(&kv->sc, Bmax) != TC_OK ||
        (ed_is_moe(cfg) && dec_moe_reserve(&kv->moe, Bmax) != TC_OK)) {
        tc_encdec_kv_free(kv);
        return TC_ENOMEM;
    }
    *out = kv;
    return TC_OK;
}

int tc_encdec_kv_state(const tc_encdec_kv *kv, int64_t *rows, int64_t *pos, int64_t *src_len)
{
    if (!kv || !rows || !pos || !src_len) return TC_EINVAL;
    *rows = kv->B;
    *pos = kv->pos;
    *src_len = kv->S;
    return TC_OK;
}

int64_t tc_encdec_kv_cache_bytes(const tc_encdec_kv *kv)
{
    if (!kv) return 0;
    const size_t pair = 2 * (edk_self_bytes(kv) + edk_cross_bytes(kv));
    return (int64_t)(pair * (kv->k2 ? 2 : 1));
}

/* Row j of the second buffers becomes row rows[j] of the current ones: the filled
 * self-attention slots [0, pos) of every head (dec_copy_cache_rows), the whole (NH, S, HS)
 * cross-attention row and the mask row. */
static void edk_copy_rows(tc_encdec_kv *kv, const int64_t *rows, int64_t B2)
{
    const int64_t Ld = kv->cfg.Ld, NH = kv->cfg.NH, HS = kv->cfg.C / NH, S = kv->S;
    dec_copy_cache_rows(kv->k2, kv->v2, kv->k, kv->v, rows, B2, Ld, kv->Bmax,
                        model_kv_heads(NH, kv->cfg.NKV), kv->Tmax, HS, kv->pos, kv->elem, 0);
    const size_t xrow = (size_t)(NH * S * HS) * (size_t)kv->elem;
    const size_t xlayer = (size_t)(kv->Bmax * NH * kv->Smax * HS) * (size_t)kv->elem;
    char *xkd = kv->xk2, *xvd = kv->xv2;
    const char *xks = kv->xk, *xvs = kv->xv;
#pragma omp parallel for collapse(2) schedule(static) if (TC_PAR(Ld * B2 * NH * S * HS, TC_PARALLEL_MIN_WORK * 4))
    for (int64_t l = 0; l < Ld; l++) {
        for (int64_t j = 0; j < B2; j++) {
            memcpy(xkd + l * xlayer + j * xrow, xks + l * xlayer + rows[j] * xrow, xrow);
            memcpy(xvd + l * xlayer + j * xrow, xvs + l * xlayer + rows[j] * xrow, xrow);
        }
    }
    if (kv->has_mask)
        for (int64_t j = 0; j < B2; j++)
            memcpy(kv->mask2 + j * S, kv->mask + rows[j] * S, (size_t)S);
}

// rows (B2,) in [0, B): row j of the caches becomes old row rows[j]
int tc_encdec_kv_select(tc_encdec_kv *kv, const int64_t *rows, int64_t B2)
{
    if (!kv || B2 < 0 || B2 > kv->Bmax || (B2 > 0 && !rows)) return TC_EINVAL;
    int identity = B2 == kv->B;
    for (int64_t j = 0; j < B2; j++) {
        if (rows[j] < 0 || rows[j] >= kv->B) return TC_EINVAL;
        identity &= rows[j] == j;
    }
    if (identity) return TC_OK;
    if (!kv->k2) {
        const size_t sb = edk_self_bytes(kv), cb = edk_cross_bytes(kv);
        void *k2 = malloc(sb), *v2 = malloc(sb), *xk2 = malloc(cb), *xv2 = malloc(cb);
        uint8_t *m2 = malloc((size_t)(kv->Bmax * kv->Smax));
        if (!k2 || !v2 || !xk2 || !xv2 || !m2) {
            free(k2);
            free(v2);
            free(xk2);
            free(xv2);
            free(m2);
            return TC_ENOMEM;
        }
        kv->k2 = k2;
        kv->v2 = v2;
        kv->xk2 = xk2;
        kv->xv2 = xv2;
        kv->mask2 = m2;
    }
    edk_copy_rows(kv, rows, B2);
    dec_swap(&kv->k, &kv->k2);
    dec_swap(&kv->v, &kv->v2);
    dec_swap(&kv->xk, &kv->xk2);
    dec_swap(&kv->xv, &kv->xv2);
    void *m = kv->mask;
    kv->mask = kv->mask2;
    kv->mask2 = m;
    kv->B = B2;
    return TC_OK;
}

#define TC_GENERIC_1 "encdec_decode_impl.h"
#include "tc_dtypes.h"
