/* gemm_kernel.h: the register-blocked GEMM micro-kernel, written once.
 *
 * Included by gemm_impl.h once per instruction set with T, SFX, VEC (a 32-byte GCC vector
 * of T), KNAME (the function name) and KATTR (a target attribute, or nothing).
 * The vector type is plain GNU C: the compiler emits AVX2/FMA under
 * __attribute__((target("avx2,fma"))) and SSE2 pairs (or NEON, ...) otherwise.
 */

/* out (MR,NR) = a (kc,MR packed) ^T @ b (kc,NR packed): one MR x NR tile of the product. */
KATTR static void KNAME(int64_t kc, const T *restrict a, const T *restrict b, T *restrict out)
{
    VEC acc[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++) {
        acc[i][0] = (VEC){0};
        acc[i][1] = (VEC){0};
    }
    for (int64_t p = 0; p < kc; p++) {
        const VEC b0 = *(const VEC *)(b + p * GEMM_NR);
        const VEC b1 = *(const VEC *)(b + p * GEMM_NR + GEMM_VL);
        const T *ap = a + p * GEMM_MR;
        for (int i = 0; i < GEMM_MR; i++) {
            acc[i][0] += ap[i] * b0;
            acc[i][1] += ap[i] * b1;
        }
    }
    for (int i = 0; i < GEMM_MR; i++) {
        *(VEC *)(out + i * GEMM_NR) = acc[i][0];
        *(VEC *)(out + i * GEMM_NR + GEMM_VL) = acc[i][1];
    }
}
