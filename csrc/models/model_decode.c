/* model_decode.c: KV-cache decoding of a GPT (tc.h, "model_decode"): the decoder object,
 * its cache and scratch, and the row selection of beam search; the forward itself is
 * model_decode_impl.h, compiled per dtype.
 *
 * Memory, all allocated when the decoder is created (only the prefill scratch may grow):
 *   k, v       (L, Bmax, NH, Smax, HS) each: every layer's keys (after RoPE) and values;
 *              layer l's first B rows are the (B, NH, Smax, HS) caches that
 *              tc_attention_decode reads and appends to;
 *   pad        (Bmax,) left-padding slots of each row; kp (Bmax * Smax) key-padding scratch;
 *   tab1, tab2 sinusoidal table (Smax, C), or RoPE cos, sin (Smax, HS/2);
 *   scratch    per token: x C, h C, qkv 3C, qkvh 3C, atth C, atty C, proj C, fc H,
 *              pos (int64), last C, lnf C (sized for Bmax tokens, grown by a long prefill);
 *   k2, v2     the second cache buffers of a select that reorders rows (on first use).
 */
#include "tc_generic.h"
#include "gpt_layout.h"
#include "model_common.h"

#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TC_PORTABLE_ONLY)
#define TC_DEC_X86 1
/* The AVX2+FMA matrix-vector kernel runs when the GEMM runs its AVX2+FMA kernel, so
 * TC_GEMM_KERNEL=generic / tc_gemm_set_kernel("generic") test the portable one too. */
static int decode_use_avx2(void) { return tc_cpu_pick(TC_CPU_DECODE); }
#else
#define TC_DEC_X86 0
#endif

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
    char *scratch;
    int64_t cap_tokens;              /* the scratch is carved for this many tokens */
    dec_bufs sb;
};

static int kv_tokens_ok(const tc_gpt_config *c, int64_t N, int64_t elem)
{
    return dec_tokens_ok(c->C, c->H, c->NH, N, elem);
}

/* Grow the scratch to hold N tokens. */
static int kv_reserve(tc_gpt_kv *kv, int64_t N)
{
    return dec_reserve(&kv->scratch, &kv->cap_tokens, &kv->sb, kv->cfg.C, kv->cfg.H,
                       kv->cfg.NH, N, kv->elem);
}

/* Bytes of one cache buffer (k or v): L * Bmax * C * Smax elements. */
static size_t kv_cache_bytes(const tc_gpt_kv *kv)
{
    return (size_t)(kv->cfg.L * kv->Bmax * kv->cfg.C * kv->Smax) * (size_t)kv->elem;
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
    free(kv->scratch);
    free(kv);
}

/* The decoder without its position tables (model_decode_impl.h adds them). */
static int kv_new(tc_gpt_kv **out, const tc_gpt_config *cfg, const void *params, int64_t elem,
                  int64_t Bmax, int64_t Smax)
{
    if (!out) return TC_EINVAL;
    *out = NULL;
    if (!params || !gpt_config_ok(cfg) || Bmax < 1 || Smax < 1 || Smax > cfg->maxT)
        return TC_EINVAL;
    /* the caches: 2 * L * Bmax * Smax * C elements (twice that after a reordering select) */
    if ((double)cfg->L * (double)Bmax * (double)Smax * (double)cfg->C * (double)elem > 1e14 ||
        (double)Bmax * (double)Smax > 1e12 || !kv_tokens_ok(cfg, Bmax, elem))
        return TC_ENOMEM;
    tc_gpt_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return TC_ENOMEM;
    kv->cfg = *cfg;
    kv->elem = elem;
    kv->params = params;
    kv->Bmax = Bmax;
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
        kv_reserve(kv, Bmax) != TC_OK) {
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

/* Copy the filled slots [0, pos) of row src of every layer of (ks, vs) to row dst of
 * (kd, vd); the four may be the same buffers when dst != src. */
static void kv_copy_rows(tc_gpt_kv *kv, char *kd, char *vd, const char *ks, const char *vs,
                         const int64_t *rows, int64_t B2, int in_place)
{
    const int64_t L = kv->cfg.L, NH = kv->cfg.NH, HS = kv->cfg.C / NH, Smax = kv->Smax;
    const size_t head = (size_t)(Smax * HS) * (size_t)kv->elem;  /* bytes per head */
    const size_t row = head * (size_t)NH, layer = row * (size_t)kv->Bmax;
    const size_t used = (size_t)(kv->pos * HS) * (size_t)kv->elem;
    const int64_t work = L * B2 * NH * kv->pos * HS;
    if (in_place) {
        /* rows strictly increasing with rows[j] >= j: row j's source is never a row that an
         * earlier j' < j has overwritten, so each layer copies forward in order */
#pragma omp parallel for schedule(static) if (work >= TC_PARALLEL_MIN_WORK * 4)
        for (int64_t l = 0; l < L; l++) {
            for (int64_t j = 0; j < B2; j++) {
                if (rows[j] == j) continue;
                for (int64_t h = 0; h < NH; h++) {
                    const size_t d = l * layer + j * row + h * head;
                    const size_t s = l * layer + rows[j] * row + h * head;
                    memcpy(kd + d, ks + s, used);
                    memcpy(vd + d, vs + s, used);
                }
            }
        }
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if (work >= TC_PARALLEL_MIN_WORK * 4)
    for (int64_t l = 0; l < L; l++) {
        for (int64_t j = 0; j < B2; j++) {
            for (int64_t h = 0; h < NH; h++) {
                const size_t d = l * layer + j * row + h * head;
                const size_t s = l * layer + rows[j] * row + h * head;
                memcpy(kd + d, ks + s, used);
                memcpy(vd + d, vs + s, used);
            }
        }
    }
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
        void *t = kv->k;
        kv->k = kv->k2;
        kv->k2 = t;
        t = kv->v;
        kv->v = kv->v2;
        kv->v2 = t;
        for (int64_t j = 0; j < B2; j++) kv->pad2[j] = kv->pad[rows[j]];
        int64_t *p = kv->pad;
        kv->pad = kv->pad2;
        kv->pad2 = p;
    }
    kv->B = B2;
    return TC_OK;
}

#define real_t float
#define SFX f32
#include "model_decode_impl.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "model_decode_impl.h"
#undef real_t
#undef SFX
