/* attention.c: scaled dot-product attention, float32 and float64.
 *
 *   attention_impl.h        the materialised reference kernels (*_ref): the (T,S) scores
 *                           of each batch-head built in full, products through tc_gemm;
 *                           also the mask and dropout helpers both kernels share;
 *   attention_flash_impl.h  the tiled (flash-style) forward/backward and the KV-cache
 *                           decode step: drivers (threads, scratch, work items);
 *   attention_tile.h        their per-tile work (register-blocked tile products, vector
 *                           exp, online softmax), compiled once per instruction set and
 *                           picked at run time (AVX2+FMA where the CPU has it);
 *   attention_probs_impl.h  the probabilities of a finished forward, read out on request
 *                           (from q, k and its logsumexp, through the same mask function).
 */
#include "tc_generic.h"
#include "rng.h"
#include "vec_math.h" /* TC_VEXPF_CORE, TC_VEXP_F64_TAIL: the exp core the tiles share */
#ifdef _OPENMP
#include <omp.h>
#endif

/* the tile kernels' variant, as the cpu section says (core/cpu.c) */
static inline int attention_use_avx2(void) { return tc_cpu_pick(TC_CPU_ATTENTION); }
#if TC_CPU_X86
#define TC_ATT_X86 1
#include <immintrin.h>
#include "tr8_avx2.h"

/* d[p*ldd + j] = s[j*lds + p] for an 8 x 8 block of floats */
__attribute__((target("avx2,fma"))) static inline void
attention_tr8_f32(float *d, int64_t ldd, const float *s, int64_t lds)
{
    __m256 r[8];
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(s + j * lds);
    tc_tr8_avx2(r);
    for (int p = 0; p < 8; p++) _mm256_storeu_ps(d + p * ldd, r[p]);
}
#else
#define TC_ATT_X86 0
#endif

const char *tc_attention_kernel_name(void) { return tc_cpu_kernel_name(-1); }

/* Threads a parallel region may use (its scratch is indexed by thread number). */
static int attention_max_threads(void)
{
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

static int attention_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Number of keys [0, lim) query row i may see under causal masking (keys j >= lim are
 * hidden): all S without it; j <= i top-left (torch's is_causal); j <= i + S - T
 * bottom-right (the last query sees the last key). */
static inline int64_t attention_limit(int64_t i, int64_t T, int64_t S, int causal)
{
    int64_t lim;
    if (causal == TC_CAUSAL_TOP_LEFT) lim = i + 1;
    else if (causal == TC_CAUSAL_BOTTOM_RIGHT) lim = i + 1 + S - T;
    else return S;
    return lim < 0 ? 0 : lim > S ? S : lim;
}

/* First query row that sees key j under causal masking (T if none does). */
static inline int64_t attention_first_row(int64_t j, int64_t T, int64_t S, int causal)
{
    int64_t i;
    if (causal == TC_CAUSAL_TOP_LEFT) i = j;
    else if (causal == TC_CAUSAL_BOTTOM_RIGHT) i = j - (S - T);
    else return 0;
    return i < 0 ? 0 : i > T ? T : i;
}

static int attention_causal_ok(int causal);

/* Block-sparse patterns (tc.h, tc_attention_sparse). The position of query row i is
 * i + attention_qoff(T, S, causal). */
static inline int64_t attention_qoff(int64_t T, int64_t S, int causal)
{
    return causal == TC_CAUSAL_BOTTOM_RIGHT ? S - T : 0;
}

int tc_attention_sparse_ok(const tc_attention_sparse *sp)
{
    return sp && sp->block >= 1 && sp->window >= 1 && sp->stride >= 0 && sp->global >= 0;
}

/* Key block kb visible to query block qb (both >= 0). */
static inline int attention_sparse_visible(const tc_attention_sparse *sp, int64_t qb, int64_t kb)
{
    const int64_t d = qb - kb;
    return (d < sp->window && -d < sp->window) ||
           (sp->stride > 0 && kb % sp->stride == sp->stride - 1) || kb < sp->global ||
           qb < sp->global;
}

/* Some query position in [qp0, qp1] sees some key position in [kp0, kp1] (inclusive
 * ranges; query positions below 0 see nothing): decides whether a tile is visited. */
static int attention_sparse_any(const tc_attention_sparse *sp, int64_t qp0, int64_t qp1,
                                int64_t kp0, int64_t kp1)
{
    if (qp0 < 0) qp0 = 0;
    if (kp0 < 0) kp0 = 0;
    if (qp1 < qp0 || kp1 < kp0) return 0;
    const int64_t qa = qp0 / sp->block, qz = qp1 / sp->block;
    if (qa < sp->global) return 1;
    for (int64_t kb = kp0 / sp->block; kb <= kp1 / sp->block; kb++) {
        if (kb < sp->global || (sp->stride > 0 && kb % sp->stride == sp->stride - 1)) return 1;
        if (qa < kb + sp->window && qz > kb - sp->window) return 1; /* a local block */
    }
    return 0;
}

/* The run of keys at or after j (and below kend) visible to some query position in
 * [qp0, qp1], whole blocks at a time: returns its start (kend when none) and sets *end to
 * its end. The forward visits these runs only. */
static int64_t attention_sparse_next(const tc_attention_sparse *sp, int64_t qp0, int64_t qp1,
                                     int64_t j, int64_t kend, int64_t *end)
{
    const int64_t bs = sp->block;
    if (j < 0) j = 0; /* no position below 0 */
    int64_t kb = j / bs;
    while (kb * bs < kend && !attention_sparse_any(sp, qp0, qp1, kb * bs, kb * bs))
        kb++;
    if (kb * bs >= kend) {
        *end = kend;
        return kend;
    }
    const int64_t start = kb * bs > j ? kb * bs : j;
    while ((kb + 1) * bs < kend &&
           attention_sparse_any(sp, qp0, qp1, (kb + 1) * bs, (kb + 1) * bs))
        kb++;
    *end = (kb + 1) * bs < kend ? (kb + 1) * bs : kend;
    return start;
}

/* The size of the tiles (query rows of a work item, keys of a key tile) a block-sparse
 * pass cuts a sequence into, at most max, aligned to the pattern's blocks of bs positions
 * so that a tile never straddles two blocks that different queries see: a multiple of bs
 * (bs <= max), else a divisor of bs of at least max / 2, else max (tiles then straddle
 * blocks: correct, with some masked work). */
static int64_t attention_sparse_tile(int64_t bs, int64_t max)
{
    if (bs <= max) return max / bs * bs;
    for (int64_t d = 2; bs / d >= max / 2; d++)
        if (bs % d == 0 && bs / d <= max) return bs / d;
    return max;
}

int tc_attention_sparse_blocks(uint8_t *blocks, const tc_attention_sparse *sp, int64_t NQB,
                               int64_t NKB)
{
    if (!tc_attention_sparse_ok(sp) || NQB < 0 || NKB < 0) return TC_EINVAL;
    for (int64_t qb = 0; qb < NQB; qb++)
        for (int64_t kb = 0; kb < NKB; kb++)
            blocks[qb * NKB + kb] = (uint8_t)attention_sparse_visible(sp, qb, kb);
    return TC_OK;
}

// keep (T,S) written
int tc_attention_sparse_mask(uint8_t *keep, const tc_attention_sparse *sp, int64_t T,
                             int64_t S, int causal)
{
    if (!tc_attention_sparse_ok(sp) || T < 0 || S < 0 || !attention_causal_ok(causal))
        return TC_EINVAL;
    const int64_t off = attention_qoff(T, S, causal);
    for (int64_t i = 0; i < T; i++) {
        const int64_t p = i + off;
        for (int64_t j = 0; j < S; j++)
            keep[i * S + j] = p >= 0 && attention_sparse_visible(sp, p / sp->block, j / sp->block);
    }
    return TC_OK;
}

/* Dimensions valid and the products the kernels index with fit in int64 / size_t. */
static int attention_dims_ok(int64_t B, int64_t NH, int64_t T, int64_t S, int64_t DK,
                             int64_t DV)
{
    if (B < 0 || NH < 0 || T < 0 || S < 0 || DK < 0 || DV < 0) return 0;
    const double lim = 9.0e15; /* well inside int64 and exact in double */
    const double bh = (double)B * (double)NH;
    const double d = (double)(DK > DV ? DK : DV) + 1;
    return bh * (double)(T + 1) * d < lim && bh * (double)(S + 1) * d < lim &&
           (double)(T + 1) * (double)(S + 1) < lim;
}

static int attention_causal_ok(int causal)
{
    return causal == TC_CAUSAL_NONE || causal == TC_CAUSAL_TOP_LEFT ||
           causal == TC_CAUSAL_BOTTOM_RIGHT;
}

/* Elements of scratch per thread, nbuf buffers of T*S; 0 on size overflow. */
static size_t attention_scratch_elems(int64_t T, int64_t S, int nbuf, int nthreads, size_t elem)
{
    const size_t lim = SIZE_MAX / elem;
    if ((size_t)T > lim / (size_t)S) return 0;
    size_t per = (size_t)T * (size_t)S;
    if (per > lim / (size_t)nbuf / (size_t)nthreads) return 0;
    return per * (size_t)nbuf * (size_t)nthreads;
}

/* words of the dropout stream drawn at a time */
#define ATT_RNG_WORDS 256

static inline int64_t attention_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }


void tc_attention_layout_grouped(tc_attention_layout *lay, int64_t NH, int64_t NKV, int64_t T,
                                 int64_t S, int64_t DK, int64_t DV)
{
    const tc_attention_strides q = {NH * T * DK, T * DK, DK}, k = {NKV * S * DK, S * DK, DK};
    const tc_attention_strides v = {NKV * S * DV, S * DV, DV}, o = {NH * T * DV, T * DV, DV};
    lay->q = lay->dq = q;
    lay->k = lay->dk = k;
    lay->v = lay->dv = v;
    lay->out = lay->dout = o;
    lay->kv_heads = NKV;
}

void tc_attention_layout_contiguous(tc_attention_layout *lay, int64_t NH, int64_t T,
                                    int64_t S, int64_t DK, int64_t DV)
{
    tc_attention_layout_grouped(lay, NH, NH, T, S, DK, DV);
}

/* kv_heads valid for NH query heads (tc_attention_layout): 0, or a divisor of NH */
static int attention_kv_heads_ok(int64_t kv_heads, int64_t NH)
{
    return kv_heads == 0 || (kv_heads > 0 && NH % kv_heads == 0);
}

/* G, the query heads per kv head (1 without grouping) */
static inline int64_t attention_group(int64_t kv_heads, int64_t NH)
{
    return kv_heads > 0 && NH >= kv_heads ? NH / kv_heads : 1;
}

/* The (b, h) = (bh / NH, bh % NH) head of operand p with strides st (a tc_attention_strides) */
#define ATT_HEAD(p, st, NH, bh) ((p) + ((bh) / (NH)) * (st).b + ((bh) % (NH)) * (st).h)
/* The kv head of (b, h) in a k, v, dk or dv operand: (b, h / G), G query heads per kv head */
#define ATT_KVHEAD(p, st, NH, G, bh) ((p) + ((bh) / (NH)) * (st).b + ((bh) % (NH)) / (G) * (st).h)

#define ATT_F64 TC_F64
#define TC_GENERIC_1 "attention_impl.h"
#define TC_GENERIC_2 "attention_flash_impl.h"
#define TC_GENERIC_3 "attention_probs_impl.h"
#include "tc_dtypes.h"
#undef ATT_F64
