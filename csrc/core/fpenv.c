/* fpenv.c: the flush-to-zero scope of the whole-model C paths (tc.h "fpenv").
 *
 * A subnormal number (magnitude below FLT_MIN = 1.2e-38 in float32) costs an x86 core a
 * microcode assist of 100+ cycles in every SSE/AVX instruction that reads one (unless DAZ)
 * or rounds a result into one (unless FTZ). A trained model makes many: attention
 * probabilities near exp(-86) times small gradients, softmax probabilities divided by the
 * token count, and the products that read them. The 6x384 GPT's float32 training step at
 * step 1000 of a Tiny Shakespeare run took 1.87 s CPU against 1.13 s for the same batch at
 * its initialisation (1 thread), and 1.22 s with FTZ and DAZ set (README, "Subnormals").
 *
 * tc_fp_enter sets MXCSR's FTZ and DAZ bits on the calling thread and on every thread of an
 * OpenMP team of tc_get_num_threads() threads (the pool the call's parallel regions then
 * reuse); tc_fp_leave puts the calling thread's previous two bits back on the same team.
 * Inside a parallel region only the calling thread is touched. Results change only where a
 * subnormal would have appeared (it becomes a signed zero). Off (tc_set_flush_subnormals(0),
 * or TC_FLUSH_SUBNORMALS=0 in the environment): gradual underflow as IEEE 754 has it.
 * x86 only; elsewhere the scope does nothing.
 */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define TC_FP_BITS 0x8040u /* FTZ (bit 15) | DAZ (bit 6) */
static unsigned tc_fp_get(void) { return _mm_getcsr(); }
static void tc_fp_put(unsigned bits)
{
    _mm_setcsr((_mm_getcsr() & ~TC_FP_BITS) | (bits & TC_FP_BITS));
}
#else
#define TC_FP_BITS 0u
static unsigned tc_fp_get(void) { return 0; }
static void tc_fp_put(unsigned bits) { (void)bits; }
#endif

static int tc_fp_flush = -1; /* -1: read TC_FLUSH_SUBNORMALS at the first query */

int tc_get_flush_subnormals(void)
{
    int on = __atomic_load_n(&tc_fp_flush, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv("TC_FLUSH_SUBNORMALS");
        on = !(e && strcmp(e, "0") == 0);
        __atomic_store_n(&tc_fp_flush, on, __ATOMIC_RELAXED);
    }
    return on;
}

void tc_set_flush_subnormals(int on) { __atomic_store_n(&tc_fp_flush, on ? 1 : 0, __ATOMIC_RELAXED); }

/* bits on this thread, and on a team of the thread count unless inside a parallel region */
static void tc_fp_team_put(unsigned bits)
{
#ifdef _OPENMP
    if (!omp_in_parallel() && tc_get_num_threads() > 1) {
#pragma omp parallel num_threads(tc_get_num_threads())
        tc_fp_put(bits);
    }
#endif
    tc_fp_put(bits);
}

unsigned tc_fp_enter(void)
{
    const unsigned saved = tc_fp_get() & TC_FP_BITS;
    if (TC_FP_BITS && tc_get_flush_subnormals() && saved != TC_FP_BITS) tc_fp_team_put(TC_FP_BITS);
    return saved;
}

void tc_fp_leave(unsigned saved)
{
    const unsigned bits = saved & TC_FP_BITS;
    if (TC_FP_BITS && (tc_fp_get() & TC_FP_BITS) != bits) tc_fp_team_put(bits);
}
