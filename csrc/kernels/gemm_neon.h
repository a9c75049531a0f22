/* gemm_neon.h: the AArch64 NEON GEMM micro-kernel, for real_t (included by gemm_impl.h per
 * dtype when TC_GEMM_NEON). Same contract, packing and summation order as the portable
 * kernel of gemm_kernel.h (its header explains the arguments), so that the two differ only
 * in rounding:
 *   acc (MR, NR) = sum over p = 0, 1, ..., kc-1 of a(:,p) b(p,:), one fused multiply-add
 *   (FMLA by lane: acc += b * a[lane], rounded once) per p, where the portable kernel
 *   rounds the product and the sum separately;
 *   C (mr, nr) = fma(alpha, acc, beta * C) (beta == 0: alpha * acc, C is not read;
 *   alpha = beta = 1: C + acc), ab = {alpha, beta}.
 * So each C entry is the portable kernel's result with each multiply-add fused, exactly
 * what the AVX2+FMA kernel computes (GCC contracts its a * b + c): within the usual FMA
 * bound of the portable result, and bitwise equal to a scalar fma() model in the same
 * order (tests/c/test_kernels.c checks both, on x86-64 for AVX2 and on AArch64 under qemu
 * for this kernel).
 *
 * The whole MR x NR tile (6 x 16 floats / 6 x 8 doubles) in one pass: 24 accumulator
 * registers of 128 bits, 4 for the b row, 2 (float) / 3 (double) for the a column: 30 or 31
 * of AArch64's 32 vector registers, and no broadcast (FMLA takes a from a lane).
 */
#include <arm_neon.h>

#if TC_F64
#define NEON_V float64x2_t
#define NEON_LD vld1q_f64
#define NEON_ST vst1q_f64
#define NEON_DUP vdupq_n_f64
#define NEON_ADD vaddq_f64
#define NEON_MULN vmulq_n_f64
#define NEON_FMAN vfmaq_n_f64
#else
#define NEON_V float32x4_t
#define NEON_LD vld1q_f32
#define NEON_ST vst1q_f32
#define NEON_DUP vdupq_n_f32
#define NEON_ADD vaddq_f32
#define NEON_MULN vmulq_n_f32
#define NEON_FMAN vfmaq_n_f32
#endif
#define NEON_VL ((int)(16 / sizeof(real_t)))  /* lanes: 4 floats / 2 doubles */

/* The a column of one p step as vectors: av0 (rows 0-3 / 0-1), av1 (4-5 / 2-3), av2 (- / 4-5):
 * NEON_A_PACKED from a packed panel (6 contiguous entries), NEON_A_GATHER from 6 scalars. */
#if TC_F64
#define NEON_A_PACKED(ap)                                                                   \
    const float64x2_t av0 = vld1q_f64(ap), av1 = vld1q_f64((ap) + 2), av2 = vld1q_f64((ap) + 4)
#define NEON_A_GATHER(x0, x1, x2, x3, x4, x5)                                               \
    const float64x2_t av0 = {x0, x1}, av1 = {x2, x3}, av2 = {x4, x5}
/* acc_i += b * a(i, p) for the 6 rows (FMLA by lane) */
#define NEON_FMAS                                                                           \
    NEON_ROW(0, vfmaq_laneq_f64, av0, 0) NEON_ROW(1, vfmaq_laneq_f64, av0, 1)               \
    NEON_ROW(2, vfmaq_laneq_f64, av1, 0) NEON_ROW(3, vfmaq_laneq_f64, av1, 1)               \
    NEON_ROW(4, vfmaq_laneq_f64, av2, 0) NEON_ROW(5, vfmaq_laneq_f64, av2, 1)
#else
#define NEON_A_PACKED(ap)                                                                   \
    const float32x4_t av0 = vld1q_f32(ap);                                                  \
    const float32x2_t av1 = vld1_f32((ap) + 4)
#define NEON_A_GATHER(x0, x1, x2, x3, x4, x5)                                               \
    const float32x4_t av0 = {x0, x1, x2, x3};                                               \
    const float32x2_t av1 = {x4, x5}
#define NEON_FMAS                                                                           \
    NEON_ROW(0, vfmaq_laneq_f32, av0, 0) NEON_ROW(1, vfmaq_laneq_f32, av0, 1)               \
    NEON_ROW(2, vfmaq_laneq_f32, av0, 2) NEON_ROW(3, vfmaq_laneq_f32, av0, 3)               \
    NEON_ROW(4, vfmaq_lane_f32, av1, 0) NEON_ROW(5, vfmaq_lane_f32, av1, 1)
#endif
/* the 24 accumulators are named variables (an array of them was spilled to the stack) */
#define NEON_ROW(i, fma, av, lane)                                                          \
    acc##i##_0 = fma(acc##i##_0, b0, av, lane);                                             \
    acc##i##_1 = fma(acc##i##_1, b1, av, lane);                                             \
    acc##i##_2 = fma(acc##i##_2, b2, av, lane);                                             \
    acc##i##_3 = fma(acc##i##_3, b3, av, lane);
#define NEON_DECL(i) NEON_V acc##i##_0 = zero, acc##i##_1 = zero, acc##i##_2 = zero, acc##i##_3 = zero;
#define NEON_TILE(i)                                                                        \
    NEON_ST(tile + (i) * GEMM_NR, acc##i##_0);                                              \
    NEON_ST(tile + (i) * GEMM_NR + NEON_VL, acc##i##_1);                                    \
    NEON_ST(tile + (i) * GEMM_NR + 2 * NEON_VL, acc##i##_2);                                \
    NEON_ST(tile + (i) * GEMM_NR + 3 * NEON_VL, acc##i##_3);

/* acc (MR, NR) = sum_p a(:,p) b(p,:), then C's mr x nr corner <- alpha acc + beta C;
 * a (kc, MR) packed (rsa = 1, csa = MR) or A in place (a(i,p) = a[i*rsa + p*csa]; rows
 * past mr repeat the last real row), b (kc, NR) packed, c (mr, nr) with row stride ldc */
__attribute__((always_inline)) static inline void
FN(gemm_neon_body)(int64_t kc, const real_t *restrict a, int64_t rsa, int64_t csa,
                   const real_t *restrict b, real_t *restrict c, int64_t ldc, int64_t mr,
                   int64_t nr, const real_t *ab)
{
    const NEON_V zero = NEON_DUP(0);
    NEON_DECL(0) NEON_DECL(1) NEON_DECL(2) NEON_DECL(3) NEON_DECL(4) NEON_DECL(5)
    if (rsa == 1 && csa == GEMM_MR) {
        for (int64_t p = 0; p < kc; p++) {
            const real_t *bp = b + p * GEMM_NR;
            const NEON_V b0 = NEON_LD(bp), b1 = NEON_LD(bp + NEON_VL),
                         b2 = NEON_LD(bp + 2 * NEON_VL), b3 = NEON_LD(bp + 3 * NEON_VL);
            NEON_A_PACKED(a + p * GEMM_MR);
            NEON_FMAS
        }
    } else {
        const int64_t last = mr - 1;
        const real_t *a0 = a, *a1 = a + (last < 1 ? last : 1) * rsa,
                     *a2 = a + (last < 2 ? last : 2) * rsa, *a3 = a + (last < 3 ? last : 3) * rsa,
                     *a4 = a + (last < 4 ? last : 4) * rsa, *a5 = a + (last < 5 ? last : 5) * rsa;
        for (int64_t p = 0; p < kc; p++) {
            const real_t *bp = b + p * GEMM_NR;
            const NEON_V b0 = NEON_LD(bp), b1 = NEON_LD(bp + NEON_VL),
                         b2 = NEON_LD(bp + 2 * NEON_VL), b3 = NEON_LD(bp + 3 * NEON_VL);
            const int64_t q = p * csa;
            NEON_A_GATHER(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q]);
            NEON_FMAS
        }
    }
    real_t tile[GEMM_MR * GEMM_NR] __attribute__((aligned(16)));
    NEON_TILE(0) NEON_TILE(1) NEON_TILE(2) NEON_TILE(3) NEON_TILE(4) NEON_TILE(5)
    const real_t alpha = ab[0], beta = ab[1];
    if (mr == GEMM_MR && nr == GEMM_NR) {
        for (int i = 0; i < GEMM_MR; i++) {
            for (int v = 0; v < GEMM_NR; v += NEON_VL) {
                real_t *cp = c + i * ldc + v;
                const NEON_V t = NEON_LD(tile + i * GEMM_NR + v);
                if (beta == 0)
                    NEON_ST(cp, NEON_MULN(t, alpha));
                else if (alpha == 1 && beta == 1)
                    NEON_ST(cp, NEON_ADD(NEON_LD(cp), t));
                else
                    NEON_ST(cp, NEON_FMAN(NEON_MULN(NEON_LD(cp), beta), t, alpha));
            }
        }
        return;
    }
    for (int64_t i = 0; i < mr; i++) {
        real_t *ci = c + i * ldc;
        const real_t *t = tile + i * GEMM_NR;
        if (beta == 0) {
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * t[j];
        } else {
            for (int64_t j = 0; j < nr; j++) ci[j] = MATH(fma)(alpha, t[j], beta * ci[j]);
        }
    }
}

/* One MR x NR tile (mr <= MR rows and nr <= NR columns of it are real), the common layouts
 * of a specialised so the compiler sees constant strides (as gemm_kernel.h). */
static void FN(gemm_kernel_neon)(int64_t kc, const real_t *restrict a, int64_t rsa, int64_t csa,
                                 const real_t *restrict b, real_t *restrict c, int64_t ldc,
                                 int64_t mr, int64_t nr, const real_t *ab)
{
    if (rsa == 1 && csa == GEMM_MR)
        FN(gemm_neon_body)(kc, a, 1, GEMM_MR, b, c, ldc, mr, nr, ab);
    else if (csa == 1)
        FN(gemm_neon_body)(kc, a, rsa, 1, b, c, ldc, mr, nr, ab);
    else
        FN(gemm_neon_body)(kc, a, rsa, csa, b, c, ldc, mr, nr, ab);
}

#undef NEON_V
#undef NEON_LD
#undef NEON_ST
#undef NEON_DUP
#undef NEON_ADD
#undef NEON_MULN
#undef NEON_FMAN
#undef NEON_VL
#undef NEON_A_PACKED
#undef NEON_A_GATHER
#undef NEON_FMAS
#undef NEON_ROW
#undef NEON_DECL
#undef NEON_TILE
