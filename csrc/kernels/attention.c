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


void tc_attention_layout_contiguous(tc_attention_layout *lay, int64_t NH, int64_t T,
                                    int64_t S, int64_t DK, int64_t DV)
{
    const tc_attention_strides q = {NH * T * DK, T * DK, DK}, k = {NH * S * DK, S * DK, DK};
    const tc_attention_strides v = {NH * S * DV, S * DV, DV}, o = {NH * T * DV, T * DV, DV};
    lay->q = lay->dq = q;
    lay->k = lay->dk = k;
    lay->v = lay->dv = v;
    lay->out = lay->dout = o;
}

/* The (b, h) = (bh / NH, bh % NH) head of operand p with strides st (a tc_attention_strides) */
#define ATT_HEAD(p, st, NH, bh) ((p) + ((bh) / (NH)) * (st).b + ((bh) % (NH)) * (st).h)

#define ATT_F64 TC_F64
#define TC_GENERIC_1 "attention_impl.h"
#define TC_GENERIC_2 "attention_flash_impl.h"
#define TC_GENERIC_3 "attention_probs_impl.h"
#include "tc_dtypes.h"
#undef ATT_F64
