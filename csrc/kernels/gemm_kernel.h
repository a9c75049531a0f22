/* gemm_kernel.h: the register-blocked GEMM micro-kernel, written once.
 *
 * Included by gemm_impl.h once per instruction set with real_t, SFX, KVEC (a GCC vector of real_t:
 * 32 bytes for AVX2, 16 bytes for the portable kernel), KUVEC (the same, only
 * element-aligned), KVL (its length), KNAME (the function name) and KATTR (a target
 * attribute, or nothing). The vector types are plain GNU C: the compiler emits AVX2/FMA
 * under __attribute__((target("avx2,fma"))) and SSE2 (or NEON, ...) otherwise.
 *
 * One tile of C: MR rows x NR columns (NR = 16 floats / 8 doubles, the packed panel width).
 * It is computed in column blocks of up to 2 * KVL columns (one block for AVX2, two for
 * 16-byte vectors), each with MR x 2 vector accumulators: 12 registers + 2 for b + 1
 * broadcast, which fits the 16 registers of SSE2 and AVX2 alike. Per block:
 *   acc (MR, nv * KVL) = sum over p < kc of a(:,p) b(p, cols),
 *   C (mr, cols) = alpha * acc + beta * C (beta == 0: C is not read), ab = {alpha, beta}.
 * a(i,p) is a[i*rsa + p*csa]: a packed panel (rsa = 1, csa = MR) or A itself, unpacked.
 * b is a packed panel (kc rows of NR). nv = 2 vectors, or 1 for a narrow right edge.
 */

__attribute__((always_inline)) KATTR static inline void
TC_CAT(KNAME, _body)(int64_t kc, const real_t *restrict a, int64_t rsa, int64_t csa,
                     const real_t *restrict b, real_t *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                     const real_t *ab, const int nv)
{
    KVEC acc[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++) {
        acc[i][0] = (KVEC){0};
        acc[i][1] = (KVEC){0};
    }
    for (int64_t i = 0; i < mr; i++) {
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + nv * KVL - 1, 1);
    }
    /* rows past mr repeat the last real row (never read past A; results discarded) */
    const int64_t last = mr - 1;
    const real_t *a0 = a, *a1 = a + (last < 1 ? last : 1) * rsa, *a2 = a + (last < 2 ? last : 2) * rsa,
            *a3 = a + (last < 3 ? last : 3) * rsa, *a4 = a + (last < 4 ? last : 4) * rsa,
            *a5 = a + (last < 5 ? last : 5) * rsa;
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        const KVEC b0 = *(const KVEC *)(b + p * GEMM_NR);
        const KVEC b1 = nv == 2 ? *(const KVEC *)(b + p * GEMM_NR + KVL) : (KVEC){0};
        const int64_t q = p * csa;
        /* row by row: one broadcast live at a time (12 accumulators + 2 + 1 registers) */
#define TC_GEMM_ROW(i, ai)                           \
        {                                            \
            const real_t x = ai[q];                       \
            acc[i][0] += x * b0;                     \
            if (nv == 2) acc[i][1] += x * b1;        \
        }
        TC_GEMM_ROW(0, a0)
        TC_GEMM_ROW(1, a1)
        TC_GEMM_ROW(2, a2)
        TC_GEMM_ROW(3, a3)
        TC_GEMM_ROW(4, a4)
        TC_GEMM_ROW(5, a5)
#undef TC_GEMM_ROW
    }
    /* alpha, beta come through memory: read only now, they hold no register in the loop */
    const real_t alpha = ab[0], beta = ab[1];
    if (mr == GEMM_MR && nr == nv * KVL) {
        for (int i = 0; i < GEMM_MR; i++) {
            for (int v = 0; v < nv; v++) {
                KUVEC *cp = (KUVEC *)(c + i * ldc + v * KVL);
                if (beta == 0)
                    *cp = alpha * acc[i][v];
                else if (alpha == 1 && beta == 1)
                    *cp += acc[i][v];
                else
                    *cp = alpha * acc[i][v] + beta * *cp;
            }
        }
        return;
    }
    real_t tile[GEMM_MR * 2 * KVL] __attribute__((aligned(32)));
    for (int i = 0; i < GEMM_MR; i++)
        for (int v = 0; v < nv; v++) *(KVEC *)(tile + (i * 2 + v) * KVL) = acc[i][v];
    for (int64_t i = 0; i < mr; i++) {
        real_t *ci = c + i * ldc;
        const real_t *t = tile + i * 2 * KVL;
        if (beta == 0) {
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * t[j];
        } else {
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * t[j] + beta * ci[j];
        }
    }
}

/* One column block, the common layouts of a specialised so the compiler sees constant
 * strides: packed (1, MR), rows of a row-major A (rsa, 1), anything else. */
__attribute__((always_inline)) KATTR static inline void
TC_CAT(KNAME, _block)(int64_t kc, const real_t *restrict a, int64_t rsa, int64_t csa,
                      const real_t *restrict b, real_t *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                      const real_t *ab)
{
    const int nv = nr > KVL ? 2 : 1;
    if (rsa == 1 && csa == GEMM_MR) {
        if (nv == 2)
            TC_CAT(KNAME, _body)(kc, a, 1, GEMM_MR, b, c, ldc, mr, nr, ab, 2);
        else
            TC_CAT(KNAME, _body)(kc, a, 1, GEMM_MR, b, c, ldc, mr, nr, ab, 1);
    } else if (csa == 1) {
        if (nv == 2)
            TC_CAT(KNAME, _body)(kc, a, rsa, 1, b, c, ldc, mr, nr, ab, 2);
        else
            TC_CAT(KNAME, _body)(kc, a, rsa, 1, b, c, ldc, mr, nr, ab, 1);
    } else {
        if (nv == 2)
            TC_CAT(KNAME, _body)(kc, a, rsa, csa, b, c, ldc, mr, nr, ab, 2);
        else
            TC_CAT(KNAME, _body)(kc, a, rsa, csa, b, c, ldc, mr, nr, ab, 1);
    }
}

/* One MR x NR tile (mr <= MR rows and nr <= NR columns of it are real), in column blocks
 * of 2 * KVL. */
KATTR static void KNAME(int64_t kc, const real_t *restrict a, int64_t rsa, int64_t csa,
                        const real_t *restrict b, real_t *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                        const real_t *ab)
{
    for (int64_t col0 = 0; col0 < nr; col0 += 2 * KVL) {
        const int64_t cols = nr - col0 < 2 * KVL ? nr - col0 : 2 * KVL;
        TC_CAT(KNAME, _block)(kc, a, rsa, csa, b + col0, c + col0, ldc, mr, cols, ab);
    }
}
