/* gemm.c: matrix multiply for every product in transformer_c (float32 and float64).
 * The fast kernel picks its micro-kernel at run time by CPU detection: AVX2+FMA where the
 * CPU has it, NEON on AArch64 (gemm_neon.h, lane-indexed FMLA over the whole 6 x 16 tile;
 * correctness tested under qemu, never timed on ARM hardware), the portable kernel
 * (16-byte GNU C vectors: SSE2, NEON, ...) otherwise
 * (about 19 GFLOP/s float32 on one core here, against 75-80 for AVX2+FMA). The cpu
 * override (core/cpu.c: TC_PORTABLE=1, tc_cpu_set_portable(1), tc_gemm_set_kernel("generic"))
 * forces the portable one, so it is tested on machines that have AVX2 too.
 *
 * AVX-512F (on top of AVX2+FMA where the CPU has avx512f: tc_cpu_use_avx512, gemm_impl.h):
 * gemm_kernel_avx512 takes 12 x 2NR tiles (12 x 32 float32, 12 x 16 float64), two packed A
 * panels by two adjacent packed B panels (the same packed formats), 24 zmm accumulators;
 * partial edges and a last odd panel run the AVX2 6 x NR kernel. Each C entry gets exactly
 * the AVX2 kernel's operations (one FMA chain in k order, the same alpha / beta update), so
 * the results are bitwise the AVX2 kernel's (tests/test_gemm.py, tests/c); float32 runs at
 * 1.4-1.5x its speed on an AVX-512 Xeon. TC_GEMM_KERNEL=avx2+fma /
 * tc_gemm_set_kernel("avx2+fma") caps the GEMM at AVX2. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define GEMM_MR 6
/* A is read in place (not packed) when N <= this: packing A costs about 1/N of the product */
#define GEMM_PACK_A_MIN_N 96
#define GEMM_PARALLEL_MIN_FLOPS 2097152.0 /* 2 MFLOP */


static int tc_gemm_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int tc_gemm_thread_count(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
static int tc_gemm_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* the micro-kernel and packers: AVX2+FMA or portable, as the cpu section says (core/cpu.c) */
#define TC_GEMM_X86 TC_CPU_X86
#define TC_GEMM_NEON TC_CPU_NEON /* the NEON micro-kernel (gemm_neon.h); packers portable */
static inline int tc_gemm_use_avx2(void) { return tc_cpu_pick(TC_CPU_GEMM); }

int tc_gemm_set_kernel(const char *name)
{
    if (!name || strcmp(name, "auto") == 0) {
        tc_cpu_set_avx512(-1);
        return tc_cpu_set_portable(-1);
    }
    if (strcmp(name, "generic") == 0) return tc_cpu_set_portable(1);
    if (strcmp(name, "avx512") == 0) {
        if (!tc_cpu_has_avx512()) return TC_EINVAL;
        tc_cpu_set_avx512(1);
        return tc_cpu_set_portable(0);
    }
    if (tc_cpu_fast_name() && strcmp(name, tc_cpu_fast_name()) == 0 && tc_cpu_has_fast()) {
        if (TC_CPU_X86) tc_cpu_set_avx512(0); /* "avx2+fma": not the AVX-512 one */
        return tc_cpu_set_portable(0);
    }
    return TC_EINVAL;
}

const char *tc_gemm_kernel_name(void)
{
    return tc_cpu_use_avx512() ? "avx512" : tc_cpu_kernel_name(-1);
}

#if TC_GEMM_X86
#include <immintrin.h>
#include "tr8_avx2.h"

/* A float32 A panel (kc, 6) <- 6 full rows of A (row stride rs, unit column stride), by
 * 8 x 8 register transposes; p past the last multiple of 8 element by element. */
__attribute__((target("avx2,fma"))) static void tc_gemm_pack_a6_f32_avx2(float *restrict dst,
                                                                        const float *A,
                                                                        int64_t rs, int64_t kc)
{
    const __m256i keep6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(A + i * rs + p);
        r[6] = r[7] = _mm256_setzero_ps();
        tc_tr8_avx2(r);
        /* 8-wide stores overlapping the next row's 2 first entries, which it then rewrites;
         * the last one masked so nothing past this block is touched */
        for (int q = 0; q < 7; q++) _mm256_storeu_ps(dst + (p + q) * 6, r[q]);
        _mm256_maskstore_ps(dst + (p + 7) * 6, keep6, r[7]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < 6; i++) dst[p * 6 + i] = A[i * rs + p];
}

/* A float32 B panel (kc, 16) <- 16 full columns of op(B) stored as rows of B (row stride
 * cs, unit stride along k), by 8 x 8 register transposes. */
__attribute__((target("avx2,fma"))) static void tc_gemm_pack_b16t_f32_avx2(float *restrict dst,
                                                                          const float *B,
                                                                          int64_t cs, int64_t kc)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int j0 = 0; j0 < 16; j0 += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(B + (j0 + j) * cs + p);
            tc_tr8_avx2(r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (p + q) * 16 + j0, r[q]);
        }
    }
    for (; p < kc; p++)
        for (int j = 0; j < 16; j++) dst[p * 16 + j] = B[j * cs + p];
}

/* A float32 A panel (kc, 6) <- op(A) = A^T stored row-major (the weight gradient's
 * dY^T): for each p the mr <= 6 contiguous entries A[p*cs + i], zero-padded to 6. Only
 * those entries are read (masked loads for a partial panel). */
__attribute__((target("avx2,fma"))) static inline void tc_gemm_pack_a6t_f32_avx2(float *restrict dst,
                                                                         const float *A,
                                                                         int64_t cs, int64_t mr,
                                                                         int64_t kc)
{
    if (mr == 6) {
        int64_t p = 0;
        /* two k at a time: 12 entries as one 8-wide and one 4-wide store */
        for (; p + 2 <= kc; p += 2) {
            const float *s0 = A + p * cs, *s1 = s0 + cs;
            const __m128 lo0 = _mm_loadu_ps(s0);
            const __m128 hi0 = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i_u *)(s0 + 4)));
            const __m128 lo1 = _mm_loadu_ps(s1);
            const __m128 hi1 = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i_u *)(s1 + 4)));
            /* (s0[0..3]) (s0[4], s0[5], s1[0], s1[1]) (s1[2..5]) */
            const __m128 mid = _mm_movelh_ps(hi0, lo1);
            const __m128 tail = _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(1, 0, 3, 2));
            _mm256_storeu_ps(dst + p * 6, _mm256_insertf128_ps(_mm256_castps128_ps256(lo0), mid, 1));
            _mm_storeu_ps(dst + p * 6 + 8, tail);
        }
        for (; p < kc; p++) {
            const float *s0 = A + p * cs;
            _mm_storeu_ps(dst + p * 6, _mm_loadu_ps(s0));
            _mm_storel_epi64((__m128i_u *)(dst + p * 6 + 4),
                             _mm_loadl_epi64((const __m128i_u *)(s0 + 4)));
        }
        return;
    }
    /* a partial panel: lanes past mr are not read and stored as 0 */
    const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
    const __m128i mlo = _mm_cmpgt_epi32(_mm_set1_epi32((int)mr), lane);
    const __m128i mhi = _mm_cmpgt_epi32(_mm_set1_epi32((int)mr - 4), lane);
    for (int64_t p = 0; p < kc; p++) {
        const float *s0 = A + p * cs;
        _mm_storeu_ps(dst + p * 6, _mm_maskload_ps(s0, mlo));
        _mm_storel_epi64((__m128i_u *)(dst + p * 6 + 4),
                         _mm_castps_si128(_mm_maskload_ps(s0 + 4, mhi)));
    }
}

/* The whole A block of mc rows (ceil(mc/6) panels of (kc, 6), panel ip at dst + ip*6*kc)
 * <- op(A) = A^T stored row-major, by strips of 8 k: each strip's 8 rows of A are read
 * once, front to back, across all panels (rather than a panel's 6 columns out of kc rows,
 * kc cache lines per panel, each line fetched again by the next panel). */
__attribute__((target("avx2,fma"))) static void
tc_gemm_pack_a6t_block_f32_avx2(float *restrict dst, const float *A, int64_t cs, int64_t mc,
                                int64_t kc)
{
    const int64_t full = mc / 6, rem = mc - full * 6;
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        const int64_t pn = kc - p0 < 8 ? kc - p0 : 8;
        const float *src = A + p0 * cs;
        for (int64_t ip = 0; ip < full; ip++)
            tc_gemm_pack_a6t_f32_avx2(dst + ip * 6 * kc + p0 * 6, src + ip * 6, cs, 6, pn);
        if (rem)
            tc_gemm_pack_a6t_f32_avx2(dst + full * 6 * kc + p0 * 6, src + full * 6, cs, rem, pn);
    }
}

/* A float32 B panel (kc, 16) <- nr <= 16 columns of a row-major B (row stride rs, unit
 * column stride), zero-padded to 16; lanes past nr are not read. */
__attribute__((target("avx2,fma"))) static void tc_gemm_pack_b16_f32_avx2(float *restrict dst,
                                                                         const float *B,
                                                                         int64_t rs, int64_t nr,
                                                                         int64_t kc)
{
    if (nr == 16) {
        for (int64_t p = 0; p < kc; p++) {
            const float *s = B + p * rs;
            _mm256_storeu_ps(dst + p * 16, _mm256_loadu_ps(s));
            _mm256_storeu_ps(dst + p * 16 + 8, _mm256_loadu_ps(s + 8));
        }
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lane);
    for (int64_t p = 0; p < kc; p++) {
        const float *s = B + p * rs;
        _mm256_storeu_ps(dst + p * 16, _mm256_maskload_ps(s, m0));
        _mm256_storeu_ps(dst + p * 16 + 8, _mm256_maskload_ps(s + 8, m1));
    }
}

#define TC_GEMM_FAST_PACK_F32 tc_gemm_use_avx2()
#else
#define TC_GEMM_FAST_PACK_F32 0
static void tc_gemm_pack_a6_f32_avx2(float *dst, const float *A, int64_t rs, int64_t kc)
{
    (void)dst, (void)A, (void)rs, (void)kc;
}
static void tc_gemm_pack_b16t_f32_avx2(float *dst, const float *B, int64_t cs, int64_t kc)
{
    (void)dst, (void)B, (void)cs, (void)kc;
}
static void tc_gemm_pack_b16_f32_avx2(float *dst, const float *B, int64_t rs, int64_t nr,
                                      int64_t kc)
{
    (void)dst, (void)B, (void)rs, (void)nr, (void)kc;
}
static void tc_gemm_pack_a6t_block_f32_avx2(float *dst, const float *A, int64_t cs,
                                            int64_t mc, int64_t kc)
{
    (void)dst, (void)A, (void)cs, (void)mc, (void)kc;
}
#endif

#define TC_GENERIC_1 "gemm_impl.h"
#include "tc_dtypes.h"
