/* model_decode_impl.h: the GPT forward over a KV cache (see model_decode.c), written once for
 * T. Every normalisation, activation, embedding lookup, RoPE rotation and attention step is
 * the library kernel the fast path (model_impl.h) calls; matrix products go through
 * tc_linear_forward, except the products of a handful of rows (a decoding step), which
 * use the matrix-vector kernel of model_decode_gemv.h. The glue here: position lookups,
 * the copies between token-major (B,TN,C) and head-major (B,NH,TN,HS) layouts, residual
 * additions and the key-padding mask of left-padded rows. */

#define KP(off) ((const real_t *)kv->params + (off))          /* parameter pointer */
#define KS(off) ((real_t *)(kv->scratch + (off)))             /* scratch pointer */
#define CHECK(call)                    \
    do {                               \
        int st_ = (call);              \
        if (st_ != TC_OK) return st_;  \
    } while (0)

#define DVEC FN(dec_vec)
typedef real_t DVEC __attribute__((vector_size(32)));
#define DEC_VL ((int)(32 / sizeof(real_t)))
#define DEC_LOAD(p) ({ DVEC v_; memcpy(&v_, (p), sizeof v_); v_; })

#define KNAME FN(dec_gemv_generic)
#define KATTR
#include "model_decode_gemv.h"
#undef KNAME
#undef KATTR
#if TC_DEC_X86
#define KNAME FN(dec_gemv_avx2)
#define KATTR __attribute__((target("avx2,fma")))
#include "model_decode_gemv.h"
#undef KNAME
#undef KATTR
#endif

/* rows up to which a product goes through the matrix-vector kernel */
#define DEC_GEMV_MAX_ROWS 8
/* output rows per parallel work item of the matrix-vector kernel */
#define DEC_GEMV_BLOCK 16

// out (N,OC) = inp (N,C) @ W^T (OC,C) + b (OC,) (b may be NULL)
static int FN(dec_linear)(real_t *out, const real_t *inp, const real_t *W, const real_t *b, int64_t N, int64_t C,
                          int64_t OC)
{
    if (N > DEC_GEMV_MAX_ROWS) return FN(tc_linear_forward)(out, inp, W, b, N, C, OC);
#if TC_DEC_X86
    const int avx2 = decode_use_avx2();
#endif
    const int64_t nblk = (OC + DEC_GEMV_BLOCK - 1) / DEC_GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (N * OC * C >= 4 * TC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < nblk; i++) {
        const int64_t o0 = i * DEC_GEMV_BLOCK;
        const int64_t o1 = o0 + DEC_GEMV_BLOCK < OC ? o0 + DEC_GEMV_BLOCK : OC;
#if TC_DEC_X86
        if (avx2) {
            FN(dec_gemv_avx2)(out, inp, W, b, N, C, OC, o0, o1);
            continue;
        }
#endif
        FN(dec_gemv_generic)(out, inp, W, b, N, C, OC, o0, o1);
    }
    return TC_OK;
}

// out (n,) = a (n,) + b (n,); out may be a or b
static void FN(dec_add)(real_t *out, const real_t *a, const real_t *b, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= TC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// x (N,C) += table[pos[n]] (rows of a position table)
static void FN(dec_add_rows)(real_t *x, const real_t *table, const int64_t *pos, int64_t N, int64_t C)
{
#pragma omp parallel for schedule(static) if (N * C >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const real_t *row = table + pos[n] * C;
        real_t *o = x + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = o[c] + row[c];
    }
}

// qh, kh, vh (B,NH,TN,HS) <- the three C-wide slices of qkv (B,TN,3C)
static void FN(dec_split_heads)(real_t *qh, real_t *kh, real_t *vh, const real_t *qkv, int64_t B, int64_t TN,
                                int64_t NH, int64_t HS)
{
    const int64_t C = NH * HS;
#pragma omp parallel for collapse(2) schedule(static) if (B * TN * C >= TC_PARALLEL_MIN_WORK)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const int64_t o = (b * NH + h) * TN * HS;
            for (int64_t t = 0; t < TN; t++) {
                const real_t *src = qkv + (b * TN + t) * 3 * C + h * HS;
                memcpy(qh + o + t * HS, src, (size_t)HS * sizeof(real_t));
                memcpy(kh + o + t * HS, src + C, (size_t)HS * sizeof(real_t));
                memcpy(vh + o + t * HS, src + 2 * C, (size_t)HS * sizeof(real_t));
            }
        }
    }
}

// y (B,TN,C) <- yh (B,NH,TN,HS)
static void FN(dec_merge_heads)(real_t *y, const real_t *yh, int64_t B, int64_t TN, int64_t NH,
                                int64_t HS)
{
    const int64_t C = NH * HS;
#pragma omp parallel for collapse(2) schedule(static) if (B * TN * C >= TC_PARALLEL_MIN_WORK)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < TN; t++) {
            for (int64_t h = 0; h < NH; h++)
                memcpy(y + (b * TN + t) * C + h * HS, yh + ((b * NH + h) * TN + t) * HS,
                       (size_t)HS * sizeof(real_t));
        }
    }
}

/* RoPE on the new slots [pos0, pos0 + TN) of x (B,NH,TN,HS) (queries or keys): the token in
 * slot s of row b sits at position s - pad[b]; padding slots (s < pad[b]) stay as they are
 * (they are masked out of every attention). */
static int FN(dec_rope)(tc_gpt_kv *kv, real_t *x, int64_t B, int64_t TN, int64_t pos0)
{
    const int64_t NH = kv->cfg.NH, HS = kv->cfg.C / NH, half = HS / 2, S = pos0 + TN;
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

/* Append TN tokens idx (B,TN) to every row (slots [pos, pos + TN)) and write each row's
 * next-token logits (those of its last new token) to logits (B,V). The caller has checked
 * the ids and the room and set B and pad. */
static int FN(dec_run)(tc_gpt_kv *kv, real_t *logits, const int64_t *idx, int64_t B, int64_t TN)
{
    const tc_gpt_config *c = &kv->cfg;
    const int64_t pos0 = kv->pos, S = pos0 + TN, N = B * TN;
    const int64_t C = c->C, H = c->H, NH = c->NH, HS = C / NH, Smax = kv->Smax;
    CHECK(kv_reserve(kv, N));
    const dec_bufs *sb = &kv->sb;
    int64_t *pos = (int64_t *)(kv->scratch + sb->pos);
    real_t *x = KS(sb->x), *hbuf = KS(sb->h), *qkv = KS(sb->qkv), *qh = KS(sb->qkvh);
    real_t *kh = qh + N * C, *vh = kh + N * C, *atth = KS(sb->atth), *proj = KS(sb->proj);
    real_t *fc = KS(sb->fc);
    real_t *atty = TN == 1 ? atth : KS(sb->atty); /* (B,NH,1,HS) is already token-major */

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
    if (c->position == TC_POS_LEARNED) FN(dec_add_rows)(x, KP(kv->wpe), pos, N, C);
    if (c->position == TC_POS_SINUSOIDAL) FN(dec_add_rows)(x, (real_t *)kv->tab1, pos, N, C);

    const real_t scale = (real_t)(1.0 / sqrt((double)HS));
    const size_t layer = (size_t)(kv->Bmax * NH * Smax * HS);
    for (int64_t l = 0; l < c->L; l++) {
        const gpt_layer_params *p = &kv->lp[l];
        real_t *kc = (real_t *)kv->k + l * layer, *vc = (real_t *)kv->v + l * layer;
        /* attention: pre-LN reads ln_1(x), post-LN x itself */
        const real_t *att_in = x;
        if (c->norm == TC_NORM_PRE) {
            CHECK(FN(tc_layernorm_forward)(hbuf, NULL, NULL, x, KP(p->ln1w),
                                           p->ln1b < 0 ? NULL : KP(p->ln1b), N, C, c->eps));
            att_in = hbuf;
        }
        CHECK(FN(dec_linear)(qkv, att_in, KP(p->attw), p->attb < 0 ? NULL : KP(p->attb), N, C,
                             3 * C));
        FN(dec_split_heads)(qh, kh, vh, qkv, B, TN, NH, HS);
        if (c->position == TC_POS_ROPE) {
            CHECK(FN(dec_rope)(kv, qh, B, TN, pos0));
            CHECK(FN(dec_rope)(kv, kh, B, TN, pos0));
        }
        CHECK(FN(tc_attention_decode)(atth, kc, vc, qh, kh, vh, kp, B, NH, TN, Smax, pos0, HS,
                                      HS, scale));
        if (TN > 1) FN(dec_merge_heads)(atty, atth, B, TN, NH, HS);
        CHECK(FN(dec_linear)(proj, atty, KP(p->projw), p->projb < 0 ? NULL : KP(p->projb), N,
                             C, C));
        /* pre-LN: x += proj, MLP on ln_2(x); post-LN: x = ln_1(x + proj), MLP on x */
        const real_t *mlp_in = x;
        if (c->norm == TC_NORM_PRE) {
            FN(dec_add)(x, x, proj, N * C);
            CHECK(FN(tc_layernorm_forward)(hbuf, NULL, NULL, x, KP(p->ln2w),
                                           p->ln2b < 0 ? NULL : KP(p->ln2b), N, C, c->eps));
            mlp_in = hbuf;
        } else {
            FN(dec_add)(proj, x, proj, N * C);
            CHECK(FN(tc_layernorm_forward)(x, NULL, NULL, proj, KP(p->ln1w),
                                           p->ln1b < 0 ? NULL : KP(p->ln1b), N, C, c->eps));
        }
        CHECK(FN(dec_linear)(fc, mlp_in, KP(p->fcw), p->fcb < 0 ? NULL : KP(p->fcb), N, C, H));
        CHECK(FN(tc_activation_forward)(c->activation, fc, fc, N * H));
        CHECK(FN(dec_linear)(proj, fc, KP(p->fcprojw), p->fcprojb < 0 ? NULL : KP(p->fcprojb),
                             N, H, C));
        if (c->norm == TC_NORM_PRE) {
            FN(dec_add)(x, x, proj, N * C);
        } else {
            FN(dec_add)(proj, x, proj, N * C);
            CHECK(FN(tc_layernorm_forward)(x, NULL, NULL, proj, KP(p->ln2w),
                                           p->ln2b < 0 ? NULL : KP(p->ln2b), N, C, c->eps));
        }
    }
    /* each row's last token -> ln_f (pre-LN) -> head */
    real_t *last = x;
    if (TN > 1) {
        last = KS(sb->last);
        for (int64_t b = 0; b < B; b++)
            memcpy(last + b * C, x + (b * TN + TN - 1) * C, (size_t)C * sizeof(real_t));
    }
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(tc_layernorm_forward)(KS(sb->lnf), NULL, NULL, last, KP(kv->lnfw),
                                       kv->lnfb < 0 ? NULL : KP(kv->lnfb), B, C, c->eps));
        last = KS(sb->lnf);
    }
    CHECK(FN(dec_linear)(logits, last, KP(kv->head), NULL, B, C, c->V));
    kv->pos = S;
    return TC_OK;
}

static int FN(dec_check)(const tc_gpt_kv *kv, const real_t *logits, const int64_t *idx, int64_t n)
{
    if (!kv || kv->elem != (int64_t)sizeof(real_t) || !logits || !idx) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= kv->cfg.V) return TC_EINVAL;
    return TC_OK;
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
    if (!kv_tokens_ok(&kv->cfg, B * T0, kv->elem)) return TC_ENOMEM;
    CHECK(kv_reserve(kv, B * T0));
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
#undef CHECK
#undef DVEC
#undef DEC_VL
#undef DEC_LOAD
#undef DEC_GEMV_MAX_ROWS
#undef DEC_GEMV_BLOCK
