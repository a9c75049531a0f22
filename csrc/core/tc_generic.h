/* tc_generic.h: helpers for writing a kernel once and compiling it per dtype.
 *
 * A family's implementation lives in <family>_impl.h (and its plain reference in
 * <family>_ref.h) and uses real_t (the element type; T is a sequence length everywhere, as
 * in tc.h) and SFX (f32 or f64). <family>.c compiles them once per dtype with tc_dtypes.h:
 *
 *     #define TC_GENERIC_1 "linear_impl.h"
 *     #include "tc_dtypes.h"
 *
 * FN(tc_linear_forward) expands to tc_linear_forward_f32 or tc_linear_forward_f64.
 * The optimised families' <family>_ref.h (listed after <family>_impl.h) is the plain
 * reference (textbook loops, no SIMD, no threads), tc_<family>_<action>_ref_* in tc.h, that
 * tests/test_reference_kernels.py holds the optimised kernels to.
 */
#ifndef TC_GENERIC_H
#define TC_GENERIC_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tc.h"

#define TC_CAT_(a, b) a##b
#define TC_CAT(a, b) TC_CAT_(a, b)
#define FN(name) TC_CAT(name, TC_CAT(_, SFX))

/* Math functions for real_t: MATH(exp)(x) is expf for float and exp for double. */
#define TC_MATH_f32(fn) fn##f
#define TC_MATH_f64(fn) fn
#define MATH(fn) TC_CAT(TC_MATH_, SFX)(fn)

/* 1 where the build may carry x86 AVX2 variants, dispatched at run time by tc_cpu_pick
 * (core/cpu.c); 0 in TC_PORTABLE_ONLY builds and elsewhere (e.g. aarch64). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TC_PORTABLE_ONLY)
#define TC_CPU_X86 1
#else
#define TC_CPU_X86 0
#endif
/* 1 where the build carries the AArch64 NEON variants (the GEMM micro-kernel, the FMA row
 * kernels of softmax / activations / loss), dispatched by tc_cpu_pick likewise; NEON is
 * mandatory on AArch64, so the probe only confirms it. 0 in TC_PORTABLE_ONLY builds. */
#if defined(__aarch64__) && defined(__GNUC__) && !defined(TC_PORTABLE_ONLY)
#define TC_CPU_NEON 1
#else
#define TC_CPU_NEON 0
#endif

/* Whether a backward's `write` flag (tc.h conventions) writes its k-th gradient output. */
#define TC_WRITES(write, k) (((unsigned)(write) >> (k)) & 1u)

/* Minimum number of scalar operations before a loop is worth running in parallel. */
#define TC_PARALLEL_MIN_WORK 32768
/* Whether a region of `work` units (at least `min_work` for threads to pay on an idle
 * machine) runs on the threads: tc_parallel_worth (core/threads.c), which also keeps it on
 * one thread while the machine has no free core for the others (the contention guard).
 * Every OpenMP region of a kernel whose results do not depend on the thread count asks it. */
#define TC_PAR(work, min_work) tc_parallel_worth((double)(work), (double)(min_work))

/* Whether nth threads should take whole jobs (count costs, sorted descending, each a double
 * `stride` bytes after the last): when greedy longest-first assignment keeps the busiest
 * thread within 5% of an even share (the Muon optimizer's matrices, the experts of a
 * mixture); otherwise each job's own work should be split over the threads instead. */
static inline int tc_jobs_balance(const double *cost, size_t stride, int64_t count, int nth)
{
    double load[64] = {0}, total = 0, most = 0;
    if (nth < 2 || nth > 64 || count < nth) return 0;
    for (int64_t k = 0; k < count; k++) {
        const double c = *(const double *)((const char *)cost + (size_t)k * stride);
        int t = 0;
        for (int u = 1; u < nth; u++) if (load[u] < load[t]) t = u;
        load[t] += c;
        total += c;
    }
    for (int u = 0; u < nth; u++) if (load[u] > most) most = load[u];
    return most <= 1.05 * total / nth;
}

#endif
