/* bench.c: a micro-benchmark of the machine's peak FP32 FLOP/s (benchmarks/ reports model
 * FLOP utilisation against it). Each thread runs independent chains of 8-wide float FMAs,
 * enough of them to cover the FMA latency, with the same AVX2+FMA runtime dispatch as every
 * kernel (core/cpu.c). */
#include <stdint.h>
#include <time.h>
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

typedef float tc_bench_v8 __attribute__((vector_size(32)));
#define TC_BENCH_CHAINS 12

#define TC_BENCH_BODY                                                                   \
    {                                                                                   \
        tc_bench_v8 acc[TC_BENCH_CHAINS];                                               \
        const tc_bench_v8 m = (tc_bench_v8){0} + 0.999999f, a = (tc_bench_v8){0} + 1e-7f; \
        for (int i = 0; i < TC_BENCH_CHAINS; i++) acc[i] = (tc_bench_v8){0} + (float)i; \
        for (int64_t it = 0; it < iters; it++) {                                        \
            /* each chain depends on its previous value: nothing to fold away */          \
            for (int i = 0; i < TC_BENCH_CHAINS; i++) acc[i] = acc[i] * m + a;          \
        }                                                                               \
        float s = 0;                                                                    \
        for (int i = 0; i < TC_BENCH_CHAINS; i++)                                       \
            for (int j = 0; j < 8; j++) s += acc[i][j];                                 \
        return s;                                                                       \
    }

#if TC_CPU_X86
__attribute__((target("avx2,fma"))) static float tc_bench_fma_avx2(int64_t iters)
TC_BENCH_BODY
#endif
static float tc_bench_fma_generic(int64_t iters) TC_BENCH_BODY

static double tc_bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tc_bench_peak_flops(double *flops_per_s, float *checksum, int64_t iters)
{
    if (iters < 1) return TC_EINVAL;
    const int avx2 = tc_cpu_pick(TC_CPU_BENCH);
    double t0 = 0, t1 = 0;
    int nth = 1;
    float first = 0;
#pragma omp parallel
    {
        float mine;
#ifdef _OPENMP
#pragma omp single
        nth = omp_get_num_threads();
#endif
#pragma omp barrier
#pragma omp master
        t0 = tc_bench_now();
#if TC_CPU_X86
        mine = avx2 ? tc_bench_fma_avx2(iters) : tc_bench_fma_generic(iters);
#else
        (void)avx2;
        mine = tc_bench_fma_generic(iters);
#endif
#pragma omp barrier
#pragma omp master
        {
            t1 = tc_bench_now();
            first = mine; /* keeps the chains live */
        }
    }
    const double flops = 2.0 * 8.0 * TC_BENCH_CHAINS * (double)iters * nth;
    *flops_per_s = t1 > t0 ? flops / (t1 - t0) : 0.0;
    if (checksum) *checksum = first;
    return TC_OK;
}
