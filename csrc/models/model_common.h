/* model_common.h: dtype-independent helpers shared by the whole-model fast paths (gpt_train.c for
 * GPT, encdec_train.c for the encoder-decoder); the per-dtype ones are model_common_impl.h. */
#ifndef TC_MODEL_COMMON_H
#define TC_MODEL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Return the status of a call that fails (every driver function returns TC_OK or the first
 * error). */
#define CHECK(call)                    \
    do {                               \
        int st_ = (call);              \
        if (st_ != TC_OK) return st_;  \
    } while (0)

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

/* The dropout of one pass over rows [row0, row0 + nrows) of a global batch (the fast paths'):
 * on, probability p, the call's seed. A site's mask is drawn at these rows' place in the
 * global batch (row0 = the caller's row offset + the worker's first row), so a data-parallel
 * worker, thread or process, draws the one-pass masks. */
typedef struct {
    int on;           /* training with p > 0 */
    double p;
    uint64_t seed;
    int64_t row0, nrows;
} model_drop;

/* The dropout stream index of element 0 of a batch-major tensor of n elements over the
 * call's rows: its place in the whole batch (row0 rows of n / nrows elements before it). */
static inline uint64_t model_drop_first(const model_drop *d, int64_t n)
{
    return (uint64_t)d->row0 * (uint64_t)(n / d->nrows);
}

/* *count = the targets (n,) not equal to ignore_index; TC_EINVAL if one of those lies
 * outside [0, V). */
static inline int model_count_targets(const int64_t *targets, int64_t n, int64_t V,
                                      int64_t ignore_index, int64_t *count)
{
    *count = 0;
    for (int64_t i = 0; i < n; i++) {
        if (targets[i] == ignore_index) continue;
        if (targets[i] < 0 || targets[i] >= V) return TC_EINVAL;
        ++*count;
    }
    return TC_OK;
}

/* TC_OK if every id of ids (n,) lies in [0, V), else TC_EINVAL. */
static inline int model_ids_ok(const int64_t *ids, int64_t n, int64_t V)
{
    if (!ids) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return TC_EINVAL;
    return TC_OK;
}

/* Attention operand strides (tc_attention_strides) of the heads of a token-major buffer
 * (B,L,row) whose C-wide slice holds the NH heads of HS values: element (b,h,t,d) at
 * b*L*row + h*HS + t*row + d (from the slice's first element). */
static inline tc_attention_strides model_tokens(int64_t L, int64_t row, int64_t HS)
{
    tc_attention_strides s = {L * row, HS, row};
    return s;
}

/* Grouped-query self-attention over the fused c_attn output (B,L,C + 2KC) (q: C wide, k and
 * v: KC = NKV * HS wide each, and their gradients in the same layout), its output and output
 * gradient token-major (B,L,C); KC = C: every query head its own k, v. */
static inline tc_attention_layout model_self_layout_grouped(int64_t L, int64_t C, int64_t KC,
                                                            int64_t HS)
{
    tc_attention_layout lay;
    memset(&lay, 0, sizeof lay);
    lay.q = lay.k = lay.v = lay.dq = lay.dk = lay.dv = model_tokens(L, C + 2 * KC, HS);
    lay.out = lay.dout = model_tokens(L, C, HS);
    lay.kv_heads = KC / HS;
    return lay;
}

/* The self-attention layout of a model block (model_self_layout_grouped), with qk_norm q and
 * k read from the QK-norm output (B,L,C + KC) [q | k] instead (model_qk_norm_forward); dq,
 * dk stay in the c_attn gradient's layout. */
static inline tc_attention_layout model_block_layout(int64_t L, int64_t C, int64_t KC,
                                                     int64_t HS, int qk_norm)
{
    tc_attention_layout lay = model_self_layout_grouped(L, C, KC, HS);
    if (qk_norm) lay.q = lay.k = model_tokens(L, C + KC, HS);
    return lay;
}

/* The kv heads of a self-attention of NH heads with the config's NKV (0: NH). */
static inline int64_t model_kv_heads(int64_t NH, int64_t NKV) { return NKV ? NKV : NH; }

/* Whether a model config's block fields (GPT's and the encoder-decoder's) are valid:
 * norm_type a TC_NORM_TYPE_*, qk_norm and gated flags, NKV 0 or a divisor of NH, the gated
 * MLP only as the dense MLP (ffn TC_FFN_MLP). */
static inline int model_block_ok(int norm_type, int qk_norm, int64_t NKV, int64_t NH, int gated,
                                 int ffn)
{
    if (norm_type < 0 || norm_type >= TC_NORM_TYPE_COUNT) return 0;
    if ((qk_norm != 0 && qk_norm != 1) || (gated != 0 && gated != 1)) return 0;
    if (NKV < 0 || (NKV > 0 && NH % NKV)) return 0;
    return !(gated && ffn == TC_FFN_MOE);
}

/* Self-attention over the fused c_attn output (B,L,3C) (q, k, v, and their gradients in the
 * same layout), its output and output gradient token-major (B,L,C). */
static inline tc_attention_layout model_self_layout(int64_t L, int64_t C, int64_t HS)
{
    return model_self_layout_grouped(L, C, C, HS);
}

/* Cross-attention: queries, output and their gradients token-major (B,Lt,C), keys and values
 * (and gradients) side by side in (B,Ls,2C). */
static inline tc_attention_layout model_cross_layout(int64_t Lt, int64_t Ls, int64_t C,
                                                     int64_t HS)
{
    tc_attention_layout lay;
    memset(&lay, 0, sizeof lay);
    lay.q = lay.dq = lay.out = lay.dout = model_tokens(Lt, C, HS);
    lay.k = lay.v = lay.dk = lay.dv = model_tokens(Ls, 2 * C, HS);
    return lay;
}

/* The contiguous head-major (B,NH,L,HS) strides. */
static inline tc_attention_strides model_heads(int64_t NH, int64_t L, int64_t HS)
{
    tc_attention_strides s = {NH * L * HS, L * HS, HS};
    return s;
}

/* ------------------------------------------------------------------ KV-cache decoders */

#if TC_CPU_X86
#define TC_DEC_X86 1
/* The AVX2+FMA matrix-vector kernel, unless the CPU lacks it or the portable override is on
 * (the one dispatch point, core/cpu.c). */
static inline int dec_use_avx2(void) { return tc_cpu_pick(TC_CPU_DECODE); }
#else
#define TC_DEC_X86 0
#endif

/* rows up to which a decoder's product goes through the matrix-vector kernel */
#define DEC_GEMV_MAX_ROWS 8
/* output rows per parallel work item of the matrix-vector kernel */
#define DEC_GEMV_BLOCK 16

/* What a decoder layer's shared pieces (decode_common_impl.h) read of the model's config. */
typedef struct {
    int norm, act;      /* TC_NORM_*, TC_ACT_* */
    int64_t C, H, NH;   /* width, MLP width, heads */
    double eps;         /* layer norm epsilon */
    const tc_attention_sparse *sp; /* the self-attention's block-sparse pattern, or NULL */
    const int64_t *shift;          /* its per-row slot shifts (B,) (left padding), or NULL */
    int norm_type;                 /* TC_NORM_TYPE_* of every norm */
    double softcap;                /* logit soft-cap (0: off) */
    int64_t NKV;        /* the self-attention's kv heads (grouped-query); 0: NH */
} dec_dims;

/* Rows of the self-attention caches kd, vd (L layers of (Bmax, NH, Smax, HS) elements of
 * elem bytes) from ks, vs: destination row j becomes source row rows[j] (j < B2), the
 * filled slots [0, pos) of every head. in_place (kd == ks, vd == vs): rows strictly
 * increasing with rows[j] >= j, so row j's source is never a row an earlier j' < j has
 * overwritten and each layer copies forward in order (rows[j] == j is skipped). */
static inline void dec_copy_cache_rows(char *kd, char *vd, const char *ks, const char *vs,
                                       const int64_t *rows, int64_t B2, int64_t L,
                                       int64_t Bmax, int64_t NH, int64_t Smax, int64_t HS,
                                       int64_t pos, int64_t elem, int in_place)
{
    const size_t head = (size_t)(Smax * HS) * (size_t)elem; /* bytes per head */
    const size_t row = head * (size_t)NH, layer = row * (size_t)Bmax;
    const size_t used = (size_t)(pos * HS) * (size_t)elem;
    const int64_t work = L * B2 * NH * pos * HS;
    (void)work; /* read only by the OpenMP if clauses: unused in a serial build */
    if (in_place) {
#pragma omp parallel for schedule(static) if (TC_PAR(work, TC_PARALLEL_MIN_WORK * 4))
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
#pragma omp parallel for collapse(2) schedule(static) if (TC_PAR(work, TC_PARALLEL_MIN_WORK * 4))
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

static inline void dec_swap(void **a, void **b)
{
    void *t = *a;
    *a = *b;
    *b = t;
}

/* The per-token scratch of the KV decoders (gpt_decode.c, encdec_decode.c): byte
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

/* A decoder's per-token scratch: mem carved as sb for cap tokens, for a model of width C, MLP
 * width H, NH heads and elements of elem bytes. */
typedef struct {
    char *mem;
    int64_t cap;
    dec_bufs sb;
    int64_t C, H, NH, elem;
} dec_scratch;

/* Whether s can be carved for N tokens (far from size_t overflow). */
static inline int dec_scratch_fits(const dec_scratch *s, int64_t N)
{
    return dec_tokens_ok(s->C, s->H, s->NH, N, s->elem);
}

/* Grow s to hold N tokens. */
static inline int dec_reserve(dec_scratch *s, int64_t N)
{
    if (N <= s->cap && s->mem) return TC_OK;
    if (!dec_scratch_fits(s, N)) return TC_ENOMEM;
    const dec_bufs b = dec_plan(s->C, s->H, s->NH, N, s->elem);
    char *p = aligned_alloc(64, b.total ? b.total : 64);
    if (!p) return TC_ENOMEM;
    free(s->mem);
    s->mem = p;
    s->sb = b;
    s->cap = N;
    return TC_OK;
}

/* Data-parallel training and forward (GPT and encoder-decoder fast paths): with T OpenMP
 * threads, 2 <= T <= TC_MODEL_MAX_WORKERS, at least T sequences in the batch, not called
 * from inside a parallel region and tc_set_data_parallel not turned off, a call splits the batch into T row ranges and each thread runs a whole forward
 * (and backward) of its rows on the model (worker 0) or a clone of it sharing the
 * parameters (its own arena and gradient buffer), every kernel inside on that one thread;
 * the gradients are then summed in worker order (bitwise reproducible for a fixed thread
 * count). Dropout masks are drawn at each row's place in the whole batch (the kernels'
 * stream offsets), so they are the one-pass masks. No barrier inside the passes, and every step of them (GEMMs, attention, layer
 * norms, copies) has all the cores. Otherwise one pass, the kernels parallel inside. */
#define TC_MODEL_MAX_WORKERS 8

/* The number of workers for a batch of B sequences (1: one pass). */
static inline int model_split_workers(int64_t B)
{
#ifdef _OPENMP
    if (!tc_get_data_parallel() || omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t >= 2 && t <= TC_MODEL_MAX_WORKERS && B >= t ? t : 1;
#else
    (void)B;
    return 1;
#endif
}

/* fn(ctx, w, b0, nb) for every worker w < W, rows [b0, b0 + nb) = [B w / W, B (w+1) / W),
 * on W threads with one thread for the kernels each calls; the first error, or TC_OK.
 * W == 1: fn(ctx, 0, 0, B) on this thread, the kernels parallel inside. Inside a
 * flush-to-zero scope (core/fpenv.c: subnormals cost the trained models' steps up to 1.6x):
 * W == 1, one scope of the call's `work` (FLOPs, an estimate), which sets the team's bits
 * only when its regions would use the team; W > 1, a scope per worker on its own thread (the
 * split's region is the only one; no region opened for the bits). */
static inline int model_split_run(int W, int64_t B, int (*fn)(void *, int, int64_t, int64_t),
                                  void *ctx, double work)
{
    if (W == 1) {
        const unsigned fp = tc_fp_enter(work);
        const int st = fn(ctx, 0, 0, B);
        tc_fp_leave(fp);
        return st;
    }
    int st[TC_MODEL_MAX_WORKERS];
#pragma omp parallel num_threads(W)
    {
#ifdef _OPENMP
        omp_set_num_threads(1); /* kernels called from here run on this thread alone */
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        const unsigned fp = tc_fp_enter(0.0); /* this thread only */
        for (int w = tid; w < W; w += nth) {
            const int64_t b0 = B * w / W, b1 = B * (w + 1) / W;
            st[w] = fn(ctx, w, b0, b1 - b0);
        }
        tc_fp_leave(fp);
    }
    for (int w = 0; w < W; w++)
        if (st[w] != TC_OK) return st[w];
    return TC_OK;
}

/* Make sure a model has W - 1 data-parallel clones: clones[0 .. *nclones) grow to W - 1 with
 * clone(model, grads) (the model's config and parameters, its tables borrowed), each with
 * its own gradient buffer of num_params elements of elem bytes (with_grads; else NULL). */
static inline int model_clones_ready(void *model, void **clones, void **clone_grads, int *nclones,
                                     int W, int64_t num_params, int64_t elem, int with_grads,
                                     void *(*clone)(void *model, void *grads))
{
    while (*nclones < W - 1) {
        void *grads = with_grads ? tc_alloc_big((size_t)num_params * (size_t)elem) : NULL;
        void *c = !with_grads || grads ? clone(model, grads) : NULL;
        if (!c) {
            free(grads);
            return TC_ENOMEM;
        }
        clone_grads[*nclones] = grads;
        clones[(*nclones)++] = c;
    }
    return TC_OK;
}

/* ------------------------------------------------------------------ mixture of experts */

/* A model config's block-sparse self-attention pattern (tc_attention_sparse) in *sp from its
 * attention kind and pattern fields, or NULL for dense attention. */
static inline const tc_attention_sparse *model_sparse(tc_attention_sparse *sp, int attention,
                                                      int64_t block, int64_t window,
                                                      int64_t stride, int64_t global)
{
    if (attention != TC_ATTN_BLOCK_SPARSE) return NULL;
    sp->block = block;
    sp->window = window;
    sp->stride = stride;
    sp->global = global;
    return sp;
}

/* Whether a model config's feed-forward fields are valid: ffn a TC_FFN_* value; with a
 * mixture of experts (TC_FFN_MOE) 1 <= K <= 2, K <= E, a finite capacity factor > 0
 * (tc_moe_capacity) and a finite aux weight >= 0. */
static inline int model_ffn_ok(int ffn, int64_t E, int64_t K, double capacity, double aux_w)
{
    if (ffn < 0 || ffn >= TC_FFN_COUNT) return 0;
    if (ffn != TC_FFN_MOE) return 1;
    if (K < 1 || K > 2 || E < K || tc_moe_capacity(1, E, K, capacity) < 0) return 0;
    return aux_w >= 0 && isfinite(aux_w);
}

/* Byte offsets of one layer's tc_moe_cache arrays (tc.h, "mixture of experts") in a
 * driver's memory (an arena, a decoder's scratch): model_moe_cache (model_common_impl.h)
 * makes the cache over them. */
typedef struct {
    size_t probs, gates, expert, slot, tok, counts, dropped, xg, pre, hid, eo;
} model_moe_acts;

/* The cache of a mixture of E experts (width C, expert width H, top-K) over N tokens with
 * cap rows per expert, carved by gpt_take from *used: probs (N,E), gates (N,K), expert and
 * slot (N,K) int64, tok (E*cap) int64, counts and dropped (E,) int64, xg and eo
 * (E*cap,C), pre and hid (E*cap,H). */
static inline model_moe_acts model_moe_plan(size_t *used, int64_t N, int64_t C, int64_t H,
                                            int64_t E, int64_t K, int64_t cap, int64_t elem)
{
    const int64_t rows = E * cap, i64 = (int64_t)sizeof(int64_t);
    model_moe_acts a;
    a.probs = gpt_take(used, N * E, elem);
    a.gates = gpt_take(used, N * K, elem);
    a.expert = gpt_take(used, N * K, i64);
    a.slot = gpt_take(used, N * K, i64);
    a.tok = gpt_take(used, rows, i64);
    a.counts = gpt_take(used, E, i64);
    a.dropped = gpt_take(used, E, i64);
    a.xg = gpt_take(used, rows * C, elem);
    a.pre = gpt_take(used, rows * H, elem);
    a.hid = gpt_take(used, rows * H, elem);
    a.eo = gpt_take(used, rows * C, elem);
    return a;
}

/* Elements (of either size) per token a model_moe_plan of E experts needs at most, for the
 * drivers' overflow checks: E cap <= E N rows of 2C + 2H, probs, tok, gates, expert, slot. */
static inline double model_moe_token_elems(int64_t C, int64_t H, int64_t E)
{
    return (double)E * (2.0 * (double)C + 2.0 * (double)H + 2.0) + 6.0;
}

/* A KV decoder's mixture-of-experts cache (ffn == TC_FFN_MOE): one layer's tc_moe_cache for
 * the tokens of a call, every token routed alone (cap = the tokens: nothing dropped),
 * carved for cap tokens by dec_moe_reserve. */
typedef struct {
    char *mem;
    int64_t cap;
    model_moe_acts acts;
    int64_t C, H, E, K, elem; /* width, expert width, experts, top-K, element bytes */
} dec_moe_scratch;

/* Grow s to hold N tokens. */
static inline int dec_moe_reserve(dec_moe_scratch *s, int64_t N)
{
    if (N <= s->cap && s->mem) return TC_OK;
    if ((double)N * model_moe_token_elems(s->C, s->H, s->E) * (double)s->elem > 1e15)
        return TC_ENOMEM;
    size_t u = 0;
    const model_moe_acts a = model_moe_plan(&u, N, s->C, s->H, s->E, s->K, N, s->elem);
    char *p = aligned_alloc(64, (u + 63) / 64 * 64);
    if (!p) return TC_ENOMEM;
    free(s->mem);
    s->mem = p;
    s->acts = a;
    s->cap = N;
    return TC_OK;
}

#endif /* TC_MODEL_COMMON_H */
