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
 * tc_fp_enter(work) sets MXCSR's FTZ and DAZ bits on the calling thread, and on every
 * thread of an OpenMP team of tc_get_num_threads() threads (the pool the call's parallel
 * regions then reuse) only when the call's regions would use that team: when
 * tc_parallel_worth(work, TC_FP_TEAM_MIN_WORK) says so (the call's FLOP estimate against the
 * GEMM's idle-machine crossover, more than one thread, not inside a parallel region, and the
 * contention guard's free core). A call too small for threads, or one on a busy machine,
 * never wakes the other threads (issue #17 item 4: a woken thread waits milliseconds for a
 * time slice when its core is busy). The returned state holds the calling thread's previous
 * bits and whether the team was touched (TC_FP_TEAM); tc_fp_leave(state) puts the previous
 * bits back on exactly what enter touched: the team and the calling thread, or the calling
 * thread alone. So no thread keeps FTZ after a call. Inside a parallel region (a worker of
 * the data-parallel batch split, model_common.h) only the calling thread is touched: each
 * split worker enters and leaves its own scope.
 *
 * The corner: a call judged too small (or contended) for the team whose inner regions still
 * go parallel (the guard is dynamic: a reading 10 ms later may find a free core; the
 * attention backward's few-heads split keeps its thread count whatever the guard says; a
 * kernel threshold below the call's estimate in a model of tiny width) runs those regions'
 * worker threads with gradual underflow: their results differ from a flushed run only where
 * a subnormal appears (a subnormal instead of a signed zero, a little slower), never a crash
 * and never a thread left with FTZ (the workers' bits were never changed).
 *
 * Results change only where a subnormal would have appeared (it becomes a signed zero). Off
 * (tc_set_flush_subnormals(0), or TC_FLUSH_SUBNORMALS=0 in the environment): gradual
 * underflow as IEEE 754 has it.
 * x86 only; elsewhere the scope does nothing.
 */
#include "tc_generic.h"
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

/* The call's work (FLOPs) from which the team is set: the GEMM's crossover (kernels/gemm.c,
 * GEMM_PARALLEL_MIN_FLOPS), the biggest region of every whole-model call. */
#define TC_FP_TEAM_MIN_WORK 2097152.0
/* In tc_fp_enter's state, beside the saved MXCSR bits (bits 0-15): the team was touched. */
#define TC_FP_TEAM 0x80000000u

static unsigned long tc_fp_team_count = 0; /* team touches by tc_fp_enter, for the tests */

unsigned long tc_fp_team_entries(void) { return __atomic_load_n(&tc_fp_team_count, __ATOMIC_RELAXED); }

/* bits on this thread and on a team of the thread count (not inside a parallel region) */
static void tc_fp_team_put(unsigned bits)
{
#ifdef _OPENMP
#pragma omp parallel num_threads(tc_get_num_threads())
    tc_fp_put(bits);
#endif
    tc_fp_put(bits);
}

unsigned tc_fp_enter(double work)
{
    const unsigned saved = tc_fp_get() & TC_FP_BITS;
    if (!TC_FP_BITS || !tc_get_flush_subnormals() || saved == TC_FP_BITS) return saved;
#ifdef _OPENMP
    /* (tc_parallel_worth: false inside a parallel region or with one thread) */
    if (tc_parallel_worth(work, TC_FP_TEAM_MIN_WORK)) {
        __atomic_fetch_add(&tc_fp_team_count, 1ul, __ATOMIC_RELAXED);
        tc_fp_team_put(TC_FP_BITS);
        return saved | TC_FP_TEAM;
    }
#else
    (void)work;
#endif
    tc_fp_put(TC_FP_BITS);
    return saved;
}

void tc_fp_leave(unsigned state)
{
    const unsigned bits = state & TC_FP_BITS;
    if (state & TC_FP_TEAM)
        tc_fp_team_put(bits);
    else if ((tc_fp_get() & TC_FP_BITS) != bits)
        tc_fp_put(bits);
}
