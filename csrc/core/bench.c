/* bench.c: a micro-benchmark of the machine's peak FP32 FLOP/s (benchmarks/ reports model
 * FLOP utilisation against it). Each thread runs `chains` independent chains of float
 * vector FMAs (8, 12, 16 or 24: enough of them cover the FMA latency times the FMA ports;
 * benchmarks/peak.py measures each count and keeps the best), with the GEMM's runtime
 * dispatch (core/cpu.c, family TC_CPU_BENCH): 16-wide AVX-512F FMAs where the GEMM runs
 * its AVX-512 kernel, else 8-wide AVX2+FMA ones, else a portable 8-wide loop (which the
 * compiler may or may not fuse: a lower bound there). The AVX2 peak stays measurable with
 * the GEMM's cap (TC_GEMM_KERNEL=avx2+fma, tc_gemm_set_kernel("avx2+fma")); the build
 * stays baseline x86-64 (target attributes). */
#include <stdint.h>
#include <time.h>
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

typedef float tc_bench_v8 __attribute__((vector_size(32)));
typedef float tc_bench_v16 __attribute__((vector_size(64)));

/* one thread's loop: NCH chains of W-wide vectors V, each acc = acc * m + a (one FMA, 2 W
 * FLOPs) per iteration; each chain depends on its previous value: nothing to fold away */
#define TC_BENCH_DEF(name, ATTR, V, W, NCH)                                               \
    ATTR static float name(int64_t iters)                                                 \
    {                                                                                     \
        V acc[NCH];                                                                       \
        const V m = (V){0} + 0.999999f, a = (V){0} + 1e-7f;                               \
        for (int i = 0; i < NCH; i++) acc[i] = (V){0} + (float)i;                         \
        for (int64_t it = 0; it < iters; it++) {                                          \
            /* unrolled: every chain in its own register */                               \
            _Pragma("GCC unroll 24") for (int i = 0; i < NCH; i++) acc[i] = acc[i] * m + a; \
        }                                                                                 \
        float s = 0;                                                                      \
        for (int i = 0; i < NCH; i++)                                                     \
            for (int j = 0; j < W; j++) s += acc[i][j];                                   \
        return s;                                                                         \
    }

typedef float (*tc_bench_fn)(int64_t iters);
#define TC_BENCH_NCOUNTS 4
static const int tc_bench_counts[TC_BENCH_NCOUNTS] = {8, 12, 16, 24};

TC_BENCH_DEF(tc_bench_fma_generic_8, , tc_bench_v8, 8, 8)
TC_BENCH_DEF(tc_bench_fma_generic_12, , tc_bench_v8, 8, 12)
TC_BENCH_DEF(tc_bench_fma_generic_16, , tc_bench_v8, 8, 16)
TC_BENCH_DEF(tc_bench_fma_generic_24, , tc_bench_v8, 8, 24)
static const tc_bench_fn tc_bench_generic[TC_BENCH_NCOUNTS] = {
    tc_bench_fma_generic_8, tc_bench_fma_generic_12, tc_bench_fma_generic_16,
    tc_bench_fma_generic_24};

#if TC_CPU_X86
#define TC_BENCH_AVX2 __attribute__((target("avx2,fma")))
#define TC_BENCH_AVX512 __attribute__((target("avx512f,avx2,fma")))
TC_BENCH_DEF(tc_bench_fma_avx2_8, TC_BENCH_AVX2, tc_bench_v8, 8, 8)
TC_BENCH_DEF(tc_bench_fma_avx2_12, TC_BENCH_AVX2, tc_bench_v8, 8, 12)
TC_BENCH_DEF(tc_bench_fma_avx2_16, TC_BENCH_AVX2, tc_bench_v8, 8, 16)
TC_BENCH_DEF(tc_bench_fma_avx2_24, TC_BENCH_AVX2, tc_bench_v8, 8, 24)
TC_BENCH_DEF(tc_bench_fma_avx512_8, TC_BENCH_AVX512, tc_bench_v16, 16, 8)
TC_BENCH_DEF(tc_bench_fma_avx512_12, TC_BENCH_AVX512, tc_bench_v16, 16, 12)
TC_BENCH_DEF(tc_bench_fma_avx512_16, TC_BENCH_AVX512, tc_bench_v16, 16, 16)
TC_BENCH_DEF(tc_bench_fma_avx512_24, TC_BENCH_AVX512, tc_bench_v16, 16, 24)
static const tc_bench_fn tc_bench_avx2[TC_BENCH_NCOUNTS] = {
    tc_bench_fma_avx2_8, tc_bench_fma_avx2_12, tc_bench_fma_avx2_16, tc_bench_fma_avx2_24};
static const tc_bench_fn tc_bench_avx512[TC_BENCH_NCOUNTS] = {
    tc_bench_fma_avx512_8, tc_bench_fma_avx512_12, tc_bench_fma_avx512_16,
    tc_bench_fma_avx512_24};
#endif

static double tc_bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tc_bench_peak_flops(double *flops_per_s, float *checksum, int64_t iters, int chains)
{
    if (!flops_per_s || iters < 1) return TC_EINVAL;
    int c = -1;
    for (int i = 0; i < TC_BENCH_NCOUNTS; i++)
        if (tc_bench_counts[i] == chains) c = i;
    if (c < 0) return TC_EINVAL;
    /* the GEMM's choice: tc_cpu_pick records "avx512" for this family when it is used */
    const int fast = tc_cpu_pick(TC_CPU_BENCH);
    tc_bench_fn fn = tc_bench_generic[c];
    int width = 8;
#if TC_CPU_X86
    if (fast && tc_cpu_use_avx512()) {
        fn = tc_bench_avx512[c];
        width = 16;
    } else if (fast) {
        fn = tc_bench_avx2[c];
    }
#else
    (void)fast;
#endif
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
        mine = fn(iters);
#pragma omp barrier
#pragma omp master
        {
            t1 = tc_bench_now();
            first = mine; /* keeps the chains live */
        }
    }
    const double flops = 2.0 * width * chains * (double)iters * nth;
    *flops_per_s = t1 > t0 ? flops / (t1 - t0) : 0.0;
    if (checksum) *checksum = first;
    return TC_OK;
}
