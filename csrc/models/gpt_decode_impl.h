/* gpt_decode_impl.h: the GPT forward over a KV cache (see gpt_decode.c), written once for
 * real_t. Every normalisation, activation, embedding lookup, RoPE rotation and attention step
 * is the library kernel the fast path (gpt_train_impl.h) calls; the layers are the decoders'
 * shared pieces (decode_common_impl.h: products, sub-layers, the head). What is the GPT's
 * alone: position lookups, RoPE on the new queries and keys, and the key-padding mask of
 * left-padded rows. */

#define KP(off) ((off) < 0 ? NULL : (const real_t *)kv->params + (off)) /* parameter pointer */
#define KS(off) ((real_t *)(kv->sc.mem + (off)))                       /* scratch pointer */

#include "decode_common_impl.h"

/* RoPE on the new slots [pos0, pos0 + TN) of x (B,NH,TN,HS) (queries, NH = the heads, or
 * keys, NH = the kv heads): the token in slot s of row b sits at position s - pad[b];
 * padding slots (s < pad[b]) stay as they are (they are masked out of every attention). */
static int FN(dec_rope)(tc_gpt_kv *kv, real_t *x, int64_t NH, int64_t B, int64_t TN, int64_t pos0)
{
    const int64_t HS = kv->cfg.C / kv->cfg.NH, half = HS / 2, S = pos0 + TN;
    const real_t *cos_t = (const real_t *)kv->tab1, *sin_t = (const real_t *)kv->tab2;
    const int inter = kv->cfg.rope_interleaved;
    for (int64_t b = 0; b < B; b++) {
        const int64_t pad = kv->pad[b];
        const int64_t s0 = pos0 > pad ? pos0 : pad;
        if (s0 >= S) continue;
        const int64_t first = s0 - pad, t0 = s0 - pos0, len = S - s0;
        real_t *xb = x + b * NH * TN * HS;
        if (t0 == 0) { /* the row's heads are (NH, TN, HS) with every slot rotated */
            CHECK(FN(tc_rope_forward)(xb, xb, cos_t + first * half, sin_t + first * half, NH,
                                      TN, 1, HS, inter));
            continue;
        }
        for (int64_t h = 0; h < NH; h++) {
            real_t *p = xb + (h * TN + t0) * HS;
            CHECK(FN(tc_rope_forward)(p, p, cos_t + first * half, sin_t + first * half, 1, len,
                                      1, HS, inter));
        }
    }
    return TC_OK;
}

/* dec_self_attention's q, k hook: QK-norm (gains qnw, knw (HS,) of the current layer;
 * with qk_norm) then RoPE (position ROPE) on the new queries (B,NH,TN,HS) and keys
 * (B,NKV,TN,HS); the cache thus holds the normalised, rotated keys */
typedef struct {
    tc_gpt_kv *kv;
    const dec_dims *d;
    int64_t B, TN, pos0;
    const real_t *qnw, *knw;
} FN(dec_rope_ctx);

static int FN(dec_rope_qk)(void *ctx, real_t *qh, real_t *kh)
{
    const FN(dec_rope_ctx) *r = ctx;
    const tc_gpt_config *c = &r->kv->cfg;
    if (c->qk_norm) CHECK(FN(dec_qk_norm)(r->d, qh, kh, r->qnw, r->knw, r->B, r->TN));
    if (c->position != TC_POS_ROPE) return TC_OK;
    CHECK(FN(dec_rope)(r->kv, qh, c->NH, r->B, r->TN, r->pos0));
    return FN(dec_rope)(r->kv, kh, gpt_kv_heads(c), r->B, r->TN, r->pos0);
}

/* Append TN tokens idx (B,TN) to every row (slots [pos, pos + TN)) and write each row's
 * next-token logits (those of its last new token) to logits (B,V). The caller has checked
 * the ids and the room and set B and pad. */
static int FN(dec_run)(tc_gpt_kv *kv, real_t *logits, const int64_t *idx, int64_t B, int64_t TN)
{
    const tc_gpt_config *c = &kv->cfg;
    const int64_t pos0 = kv->pos, S = pos0 + TN, N = B * TN;
    const int64_t C = c->C, NH = c->NH, HS = C / NH, Smax = kv->Smax;
    tc_attention_sparse sp;
    const dec_dims d = {c->norm, c->activation, C, c->H, NH, c->eps, gpt_sparse(c, &sp),
                        kv->pad, c->norm_type, c->logit_softcap, gpt_kv_heads(c)};
    CHECK(dec_reserve(&kv->sc, N));
    const dec_bufs *sb = &kv->sc.sb;
    int64_t *pos = (int64_t *)(kv->sc.mem + sb->pos);
    real_t *x = KS(sb->x), *h = KS(sb->h), *proj = KS(sb->proj);

    /* embeddings + positions; key padding of left-padded rows */
    int padded = 0;
    for (int64_t b = 0; b < B; b++) {
        padded |= kv->pad[b] > 0;
        for (int64_t t = 0; t < TN; t++) {
            const int64_t p = pos0 + t - kv->pad[b];
            pos[b * TN + t] = p < 0 ? 0 : p;
        }
    }
    const uint8_t *kp = NULL;
    if (padded) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) kv->kp[b * S + s] = s >= kv->pad[b];
        kp = kv->kp;
    }
    CHECK(FN(tc_embedding_forward)(x, idx, KP(kv->wte), N, c->V, C));
    if (c->position == TC_POS_LEARNED) FN(gpt_add_rows)(x, KP(kv->wpe), pos, N, C);
    if (c->position == TC_POS_SINUSOIDAL) FN(gpt_add_rows)(x, (real_t *)kv->tab1, pos, N, C);

    FN(dec_rope_ctx) rope = {kv, &d, B, TN, pos0, NULL, NULL};
    const size_t layer = (size_t)(kv->Bmax * gpt_kv_heads(c) * Smax * HS);
    for (int64_t l = 0; l < c->L; l++) {
        const gpt_layer_params *p = &kv->lp[l];
        real_t *kc = (real_t *)kv->k + l * layer, *vc = (real_t *)kv->v + l * layer;
        rope.qnw = KP(p->qnw);
        rope.knw = KP(p->knw);
        CHECK(FN(dec_self_attention)(&d, x, h, KS(sb->qkv), KS(sb->qkvh), KS(sb->atth),
                                     KS(sb->atty), proj, kc, vc, kp, B, TN, Smax, pos0,
                                     KP(p->ln1w), KP(p->ln1b), KP(p->attw), KP(p->attb),
                                     KP(p->projw), KP(p->projb),
                                     c->position == TC_POS_ROPE || c->qk_norm ? FN(dec_rope_qk)
                                                                              : NULL,
                                     &rope));
        if (gpt_is_moe(c))
            CHECK(FN(dec_moe)(&d, &kv->moe, x, h, proj, N, KP(p->ln2w), KP(p->ln2b),
                              KP(p->router), KP(p->fcw), KP(p->fcb), KP(p->fcprojw),
                              KP(p->fcprojb)));
        else if (c->gated)
            CHECK(FN(dec_gated_mlp)(&d, x, h, KS(sb->fc), proj, N, KP(p->ln2w), KP(p->ln2b),
                                    KP(p->fcw), KP(p->fcb), KP(p->fcgw), KP(p->fcgb),
                                    KP(p->fcprojw), KP(p->fcprojb)));
        else
            CHECK(FN(dec_mlp)(&d, x, h, KS(sb->fc), proj, N, KP(p->ln2w), KP(p->ln2b),
                              KP(p->fcw), KP(p->fcb), KP(p->fcprojw), KP(p->fcprojb)));
    }
    CHECK(FN(dec_logits)(&d, logits, x, KS(sb->last), KS(sb->lnf), B, TN, KP(kv->lnfw),
                         KP(kv->lnfb), KP(kv->head), c->V));
    kv->pos = S;
    return TC_OK;
}

static int FN(dec_check)(const tc_gpt_kv *kv, const real_t *logits, const int64_t *idx, int64_t n)
{
    if (!kv || kv->elem != (int64_t)sizeof(real_t) || !logits) return TC_EINVAL;
    return model_ids_ok(idx, n, kv->cfg.V);
}

int FN(tc_gpt_kv_create)(tc_gpt_kv **kv, const tc_gpt_config *cfg, const real_t *params,
                         int64_t Bmax, int64_t Smax)
{
    CHECK(kv_new(kv, cfg, params, (int64_t)sizeof(real_t), Bmax, Smax));
    tc_gpt_kv *m = *kv;
    const int64_t C = cfg->C, HS = C / cfg->NH;
    int st = TC_OK;
    if (cfg->position == TC_POS_SINUSOIDAL) {
        m->tab1 = malloc((size_t)(Smax * C) * sizeof(real_t));
        st = m->tab1 ? FN(tc_position_sinusoidal)((real_t *)m->tab1, Smax, C, cfg->pos_base, 0)
                     : TC_ENOMEM;
    } else if (cfg->position == TC_POS_ROPE) {
        m->tab1 = malloc((size_t)(Smax * HS / 2) * sizeof(real_t));
        m->tab2 = malloc((size_t)(Smax * HS / 2) * sizeof(real_t));
        st = m->tab1 && m->tab2
            ? FN(tc_rope_table)((real_t *)m->tab1, (real_t *)m->tab2, Smax, HS, cfg->pos_base, 0)
            : TC_ENOMEM;
    }
    if (st != TC_OK) {
        tc_gpt_kv_free(m);
        *kv = NULL;
    }
    return st;
}

// logits (B,V); idx (B,T) left-padded prompts, pad (B,) with 0 <= pad[b] < T
int FN(tc_gpt_kv_prefill)(tc_gpt_kv *kv, real_t *logits, const int64_t *idx, const int64_t *pad,
                          int64_t B, int64_t T0)
{
    if (!kv || !pad || B < 1 || B > kv->Bmax || T0 < 1 || T0 > kv->Smax) return TC_EINVAL;
    for (int64_t b = 0; b < B; b++)
        if (pad[b] < 0 || pad[b] >= T0) return TC_EINVAL;
    /* padding slots may hold any id: only the real ones are checked and looked up */
    for (int64_t b = 0; b < B; b++)
        CHECK(FN(dec_check)(kv, logits, idx + b * T0 + pad[b], T0 - pad[b]));
    if (!dec_scratch_fits(&kv->sc, B * T0)) return TC_ENOMEM;
    CHECK(dec_reserve(&kv->sc, B * T0));
    kv->B = B;
    kv->pos = 0;
    memcpy(kv->pad, pad, (size_t)B * sizeof *pad);
    /* the id of a padding slot is replaced by the row's first real id (a valid lookup) */
    int64_t *ids = malloc((size_t)(B * T0) * sizeof *ids);
    if (!ids) return TC_ENOMEM;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T0; t++)
            ids[b * T0 + t] = idx[b * T0 + (t < pad[b] ? pad[b] : t)];
    const int st = FN(dec_run)(kv, logits, ids, B, T0);
    free(ids);
    if (st != TC_OK) kv->B = kv->pos = 0; /* nothing valid is cached */
    return st;
}

// logits (B,V); tokens (B,): one new token per row
int FN(tc_gpt_kv_step)(tc_gpt_kv *kv, real_t *logits, const int64_t *tokens, int64_t B)
{
    CHECK(FN(dec_check)(kv, logits, tokens, B));
    if (B != kv->B || B < 1 || kv->pos < 1 || kv->pos >= kv->Smax) return TC_EINVAL;
    const int st = FN(dec_run)(kv, logits, tokens, B, 1);
    if (st != TC_OK) kv->B = kv->pos = 0;
    return st;
}

#undef KP
#undef KS
