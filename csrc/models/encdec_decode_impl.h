/* encdec_decode_impl.h: the encoder-decoder's decoder over a KV cache (see
 * encdec_decode.c), written once for real_t. The encoder is the fast path's
 * (tc_encdec_encode); every normalisation, activation, embedding lookup and attention step
 * is the library kernel the module path (transformer_c.nn.EncoderDecoder, fast=False) calls:
 * tc_attention_decode for the causal self-attention against the cache, tc_attention_forward
 * with the source key-padding mask for the cross-attention against the cached keys and
 * values. The self-attention, MLP and head are the decoders' shared pieces
 * (decode_common_impl.h); what is the encoder-decoder's alone: the encoder run, the
 * cross-attention keys and values of its output, and the cross-attention sub-layer. */

#define KP(off) ((off) < 0 ? NULL : (const real_t *)kv->params + (off)) /* parameter pointer */
#define KS(off) ((real_t *)(kv->sc.mem + (off)))                       /* scratch pointer */
#include "decode_common_impl.h"

/* dec_self_attention's q, k hook with qk_norm: QK-norm of the new queries and keys with
 * the current layer's gains. */
typedef struct {
    const dec_dims *d;
    int64_t B, TN;
    const real_t *qnw, *knw;
} FN(edk_qk_ctx);

static int FN(edk_qk_norm)(void *ctx, real_t *qh, real_t *kh)
{
    const FN(edk_qk_ctx) *r = ctx;
    return FN(dec_qk_norm)(r->d, qh, kh, r->qnw, r->knw, r->B, r->TN);
}

/* Append TN tokens idx (B,TN) to every row (target positions [pos, pos + TN)) and write each
 * row's next-token logits (those of its last new token) to logits (B,Vt). The caller has
 * checked the ids and the room; the cross-attention keys and values are in place. */
static int FN(edk_run)(tc_encdec_kv *kv, real_t *logits, const int64_t *idx, int64_t B, int64_t TN)
{
    const tc_encdec_config *c = &kv->cfg;
    const int64_t pos0 = kv->pos, N = B * TN, S = kv->S;
    const int64_t C = c->C, NH = c->NH, HS = C / NH, Tmax = kv->Tmax;
    tc_attention_sparse sp;
    const dec_dims d = {c->norm, c->activation, C, c->H, NH, c->eps, ed_sparse(c, &sp), NULL,
                        c->norm_type, 0.0, model_kv_heads(NH, c->NKV)};
    FN(edk_qk_ctx) qk = {&d, B, TN, NULL, NULL};
    CHECK(dec_reserve(&kv->sc, N));
    const dec_bufs *sb = &kv->sc.sb;
    int64_t *pos = (int64_t *)(kv->sc.mem + sb->pos);
    real_t *x = KS(sb->x), *h = KS(sb->h), *q = KS(sb->qkv), *proj = KS(sb->proj);
    real_t *lse = KS(sb->lse), *atty = KS(sb->atty);
    tc_attention_masks mk;
    memset(&mk, 0, sizeof mk);
    mk.key_padding = kv->mask;
    const tc_attention_masks *xmask = kv->has_mask ? &mk : NULL;

    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < TN; t++) pos[b * TN + t] = pos0 + t;
    CHECK(FN(tc_embedding_forward)(x, idx, KP(kv->g.twte), N, c->Vt, C));
    if (c->position == TC_POS_LEARNED) FN(gpt_add_rows)(x, KP(kv->g.twpe), pos, N, C);
    else FN(gpt_add_rows)(x, (const real_t *)kv->tab, pos, N, C);

    const real_t scale = (real_t)(1.0 / sqrt((double)HS));
    tc_attention_layout xlay; /* the cross-attention: cached keys and values head-major */
    tc_attention_layout_contiguous(&xlay, NH, TN, S, HS, HS);
    xlay.q = xlay.out = model_tokens(TN, C, HS);
    const size_t slayer = (size_t)(kv->Bmax * ed_kv_width(c) * Tmax);
    const size_t xlayer = (size_t)(kv->Bmax * NH * kv->Smax * HS);
    for (int64_t l = 0; l < c->Ld; l++) {
        const ed_layer_params *p = &kv->dp[l];
        real_t *kc = (real_t *)kv->k + l * slayer, *vc = (real_t *)kv->v + l * slayer;
        const real_t *xk = (const real_t *)kv->xk + l * xlayer, *xv = (const real_t *)kv->xv + l * xlayer;
        qk.qnw = KP(p->qn.w);
        qk.knw = KP(p->kn.w);
        CHECK(FN(dec_self_attention)(&d, x, h, q, KS(sb->qkvh), KS(sb->atth), atty, proj, kc,
                                     vc, NULL, B, TN, Tmax, pos0, KP(p->ln1.w), KP(p->ln1.b),
                                     KP(p->att.w), KP(p->att.b), KP(p->proj.w), KP(p->proj.b),
                                     c->qk_norm ? FN(edk_qk_norm) : NULL, &qk));
        /* cross-attention to the memory's cached keys and values: q read from (B,TN,C) and
         * the output written to (B,TN,C) at their strides */
        const real_t *in;
        CHECK(FN(dec_sub_input)(&d, &in, h, x, KP(p->lnx.w), KP(p->lnx.b), N));
        CHECK(FN(dec_linear)(q, in, KP(p->xq.w), KP(p->xq.b), N, C, C));
        CHECK(FN(tc_attention_forward_strided)(atty, lse, q, xk, xv, xmask, &xlay, B, NH, TN, S,
                                               HS, HS, scale, TC_CAUSAL_NONE, 0.0, 0));
        CHECK(FN(dec_linear)(proj, atty, KP(p->xproj.w), KP(p->xproj.b), N, C, C));
        CHECK(FN(dec_residual)(&d, x, proj, KP(p->lnx.w), KP(p->lnx.b), N));
        if (ed_is_moe(c))
            CHECK(FN(dec_moe)(&d, &kv->moe, x, h, proj, N, KP(p->ln2.w), KP(p->ln2.b),
                              KP(p->router.w), KP(p->fc.w), KP(p->fc.b), KP(p->fcproj.w),
                              KP(p->fcproj.b)));
        else if (c->gated)
            CHECK(FN(dec_gated_mlp)(&d, x, h, KS(sb->fc), proj, N, KP(p->ln2.w), KP(p->ln2.b),
                                    KP(p->fc.w), KP(p->fc.b), KP(p->fcg.w), KP(p->fcg.b),
                                    KP(p->fcproj.w), KP(p->fcproj.b)));
        else
            CHECK(FN(dec_mlp)(&d, x, h, KS(sb->fc), proj, N, KP(p->ln2.w), KP(p->ln2.b),
                              KP(p->fc.w), KP(p->fc.b), KP(p->fcproj.w), KP(p->fcproj.b)));
    }
    CHECK(FN(dec_logits)(&d, logits, x, KS(sb->last), KS(sb->lnf), B, TN, KP(kv->g.tlnf.w),
                         KP(kv->g.tlnf.b), KP(kv->g.head), c->Vt));
    kv->pos = pos0 + TN;
    return TC_OK;
}

static int FN(edk_check)(const tc_encdec_kv *kv, const real_t *logits, const int64_t *ids,
                         int64_t n, int64_t V)
{
    if (!kv || kv->elem != (int64_t)sizeof(real_t) || !logits) return TC_EINVAL;
    return model_ids_ok(ids, n, V);
}

int FN(tc_encdec_kv_create)(tc_encdec_kv **kv, const tc_encdec_config *cfg, const real_t *params,
                            int64_t Bmax, int64_t Tmax, int64_t Smax)
{
    CHECK(edk_new(kv, cfg, params, (int64_t)sizeof(real_t), Bmax, Tmax, Smax));
    tc_encdec_kv *m = *kv;
    /* the encoder only reads the parameters; it has no gradient buffer */
    int st = FN(tc_encdec_create)(&m->enc, cfg, (real_t *)params, NULL);
    if (st == TC_OK && cfg->position == TC_POS_SINUSOIDAL) {
        m->tab = malloc((size_t)(Tmax * cfg->C) * sizeof(real_t));
        st = m->tab ? FN(tc_position_sinusoidal)((real_t *)m->tab, Tmax, cfg->C, cfg->pos_base, 0)
                    : TC_ENOMEM;
    }
    if (st != TC_OK) {
        tc_encdec_kv_free(m);
        *kv = NULL;
    }
    return st;
}

/* The encoder on src, then every layer's cross-attention keys and values of its output. */
static int FN(edk_encode)(tc_encdec_kv *kv, const int64_t *src, const uint8_t *src_mask,
                          int64_t B, int64_t S)
{
    const int64_t C = kv->cfg.C, NH = kv->cfg.NH, HS = C / NH;
    const size_t xlayer = (size_t)(kv->Bmax * NH * kv->Smax * HS);
    real_t *mem = malloc((size_t)(B * S * C) * sizeof(real_t));
    real_t *tmp = malloc((size_t)(2 * B * S * C) * sizeof(real_t));
    int st = mem && tmp ? TC_OK : TC_ENOMEM;
    if (st == TC_OK) st = FN(tc_encdec_encode)(kv->enc, mem, src, src_mask, B, S);
    for (int64_t l = 0; l < kv->cfg.Ld && st == TC_OK; l++) {
        const ed_layer_params *p = &kv->dp[l];
        st = FN(tc_linear_forward)(tmp, mem, KP(p->xkv.w), KP(p->xkv.b), B * S, C, 2 * C);
        real_t *const heads[2] = {(real_t *)kv->xk + l * xlayer, (real_t *)kv->xv + l * xlayer};
        if (st == TC_OK) FN(dec_to_heads)(heads, 2, tmp, B, S, NH, HS);
    }
    free(mem);
    free(tmp);
    return st;
}

// logits (B,Vt); src (B,S), src_mask (B,S) or NULL, tgt (B,T0) the target prefix
int FN(tc_encdec_kv_prefill)(tc_encdec_kv *kv, real_t *logits, const int64_t *src,
                             const uint8_t *src_mask, const int64_t *tgt, int64_t B, int64_t S,
                             int64_t T0)
{
    if (!kv || !src || B < 1 || B > kv->Bmax || S < 1 || S > kv->Smax || T0 < 1 ||
        T0 > kv->Tmax)
        return TC_EINVAL;
    CHECK(FN(edk_check)(kv, logits, src, B * S, kv->cfg.Vs));
    CHECK(FN(edk_check)(kv, logits, tgt, B * T0, kv->cfg.Vt));
    int has_mask = 0;
    if (src_mask) {
        for (int64_t b = 0; b < B; b++) {
            int any = 0;
            for (int64_t s = 0; s < S; s++) {
                any |= src_mask[b * S + s] != 0;
                has_mask |= src_mask[b * S + s] == 0;
            }
            if (!any) return TC_EINVAL; /* a source without a real token */
        }
    }
    if (!dec_scratch_fits(&kv->sc, B * T0) ||
        (double)B * (double)S * (double)kv->cfg.C * 3.0 * (double)kv->elem > 1e15)
        return TC_ENOMEM;
    kv->B = kv->pos = kv->S = 0;
    int st = FN(edk_encode)(kv, src, has_mask ? src_mask : NULL, B, S);
    if (st == TC_OK) {
        kv->has_mask = has_mask;
        if (has_mask)
            for (int64_t i = 0; i < B * S; i++) kv->mask[i] = src_mask[i] != 0;
        kv->B = B;
        kv->S = S;
        st = FN(edk_run)(kv, logits, tgt, B, T0);
    }
    if (st != TC_OK) kv->B = kv->pos = kv->S = 0; /* nothing valid is cached */
    return st;
}

// logits (B,Vt); tokens (B,): one new token per row
int FN(tc_encdec_kv_step)(tc_encdec_kv *kv, real_t *logits, const int64_t *tokens, int64_t B)
{
    if (!kv) return TC_EINVAL;
    CHECK(FN(edk_check)(kv, logits, tokens, B, kv->cfg.Vt));
    if (B != kv->B || B < 1 || kv->pos < 1 || kv->pos >= kv->Tmax) return TC_EINVAL;
    const int st = FN(edk_run)(kv, logits, tokens, B, 1);
    if (st != TC_OK) kv->B = kv->pos = kv->S = 0;
    return st;
}

#undef KP
#undef KS
