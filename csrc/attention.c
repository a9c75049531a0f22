/* attention.c: plain (materialised) scaled dot-product attention and its backward,
 * float32 and float64. These are the *_ref kernels: the T x S score matrix of each
 * batch-head is built in full. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* Keys row i of a (T,S) score matrix sees: all S, or j <= i (top-left causal, as torch's
 * is_causal), so min(i + 1, S). */
static inline int64_t attention_visible(int64_t i, int64_t S, int causal)
{
    return causal ? (i + 1 < S ? i + 1 : S) : S;
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

#define T float
#define SFX f32
#include "attention_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "attention_impl.h"
#undef T
#undef SFX
