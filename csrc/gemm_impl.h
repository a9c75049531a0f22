/* gemm_impl.h: packed, cache-blocked GEMM (Goto/BLIS loop order), written once for T.
 *
 * Loop nest: jc (NC columns of C) > pc (KC of the shared dimension; B panel packed once)
 *            > ic (MC rows; A block packed once) > (jr, ir) tiles of GEMM_MR x GEMM_NR,
 * the tiles shared out among OpenMP threads. Each C entry is owned by one thread and sums
 * over k in a fixed order, so results are reproducible for a fixed thread count.
 */

#define VEC FN(tc_gemm_vec)
typedef T VEC __attribute__((vector_size(32)));
#define GEMM_VL ((int64_t)(32 / sizeof(T)))
#define GEMM_NR (2 * GEMM_VL)
#define GEMM_KC 256
#define GEMM_MC ((int64_t)(576 / sizeof(T)))   /* 144 rows (f32), 72 (f64): A block ~ L2 */
#define GEMM_NC ((int64_t)(12288 / sizeof(T))) /* 3072 (f32), 1536 (f64): B panel ~ L3 */

typedef void (*FN(tc_gemm_kernel_fn))(int64_t, const T *, const T *, T *);

#define KNAME FN(gemm_kernel_generic)
#define KATTR
#include "gemm_kernel.h"
#undef KNAME
#undef KATTR
#if TC_GEMM_X86
#define KNAME FN(gemm_kernel_avx2)
#define KATTR __attribute__((target("avx2,fma")))
#include "gemm_kernel.h"
#undef KNAME
#undef KATTR
#endif

static FN(tc_gemm_kernel_fn) FN(gemm_pick_kernel)(void)
{
    return tc_gemm_has_avx2() ? FN(gemm_kernel_avx2) : FN(gemm_kernel_generic);
}

/* C (M,N) = alpha op(A) op(B) + beta C, the plain reference. */
int FN(tc_gemm_ref)(T *C, const T *A, const T *B, int64_t M, int64_t N, int64_t K,
                    int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                    T alpha, T beta)
{
    if (M < 0 || N < 0 || K < 0) return TC_EINVAL;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            T s = 0;
            for (int64_t k = 0; k < K; k++) {
                T a = trans_a ? A[k * lda + i] : A[i * lda + k];
                T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            T *c = &C[i * ldc + j];
            *c = alpha * s + (beta == 0 ? 0 : beta * *c);
        }
    }
    return TC_OK;
}

/* ap (MR-row panels, each kc x MR) <- rows [0,mc) x cols [0,kc) of A viewed with strides
 * (rs, cs); rows past mc are zero-padded. */
static void FN(gemm_pack_a)(T *restrict ap, const T *A, int64_t rs, int64_t cs,
                            int64_t mc, int64_t kc, int64_t panel)
{
    int64_t i0 = panel * GEMM_MR;
    int64_t mr = mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR;
    T *dst = ap + panel * GEMM_MR * kc;
    for (int64_t p = 0; p < kc; p++) {
        for (int64_t i = 0; i < GEMM_MR; i++)
            dst[p * GEMM_MR + i] = i < mr ? A[(i0 + i) * rs + p * cs] : 0;
    }
}

/* bp (NR-column panels, each kc x NR) <- rows [0,kc) x cols of one panel of B (strides rs, cs). */
static void FN(gemm_pack_b)(T *restrict bp, const T *B, int64_t rs, int64_t cs,
                            int64_t nc, int64_t kc, int64_t panel)
{
    int64_t j0 = panel * GEMM_NR;
    int64_t nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
    T *dst = bp + panel * GEMM_NR * kc;
    if (cs == 1 && nr == GEMM_NR) {
        for (int64_t p = 0; p < kc; p++)
            memcpy(dst + p * GEMM_NR, B + p * rs + j0, GEMM_NR * sizeof(T));
        return;
    }
    for (int64_t p = 0; p < kc; p++) {
        for (int64_t j = 0; j < GEMM_NR; j++)
            dst[p * GEMM_NR + j] = j < nr ? B[p * rs + (j0 + j) * cs] : 0;
    }
}

/* C (mr,nr) <- alpha * tile + beta * C (beta == 0: C is not read). */
static void FN(gemm_store)(T *C, int64_t ldc, const T *tile, int64_t mr, int64_t nr,
                           T alpha, T beta)
{
    for (int64_t i = 0; i < mr; i++) {
        T *c = C + i * ldc;
        const T *t = tile + i * GEMM_NR;
        if (beta == 0) {
            for (int64_t j = 0; j < nr; j++) c[j] = alpha * t[j];
        } else {
            for (int64_t j = 0; j < nr; j++) c[j] = alpha * t[j] + beta * c[j];
        }
    }
}

static void FN(gemm_scale)(T *C, int64_t ldc, int64_t M, int64_t N, T beta)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
}

int FN(tc_gemm)(T *C, const T *A, const T *B, int64_t M, int64_t N, int64_t K,
                int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                T alpha, T beta)
{
    if (M < 0 || N < 0 || K < 0) return TC_EINVAL;
    if (M == 0 || N == 0) return TC_OK;
    if (K == 0 || alpha == 0) {
        FN(gemm_scale)(C, ldc, M, N, beta);
        return TC_OK;
    }
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    const int64_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
    const int64_t kc_max = K < GEMM_KC ? K : GEMM_KC;
    const int64_t mc_max = M < GEMM_MC ? M : GEMM_MC;
    const int64_t nc_max = N < GEMM_NC ? N : GEMM_NC;
    const int64_t a_panels = (mc_max + GEMM_MR - 1) / GEMM_MR;
    const int64_t b_panels = (nc_max + GEMM_NR - 1) / GEMM_NR;
    size_t a_bytes = (size_t)(a_panels * GEMM_MR * kc_max) * sizeof(T);
    size_t b_bytes = (size_t)(b_panels * GEMM_NR * kc_max) * sizeof(T);
    a_bytes = (a_bytes + 63) / 64 * 64;
    b_bytes = (b_bytes + 63) / 64 * 64;
    T *ap = aligned_alloc(64, a_bytes);
    T *bp = aligned_alloc(64, b_bytes);
    if (!ap || !bp) {
        free(ap);
        free(bp);
        return TC_ENOMEM;
    }
    const FN(tc_gemm_kernel_fn) kernel = FN(gemm_pick_kernel)();
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    const int parallel = flops >= 4.0 * TC_PARALLEL_MIN_WORK;
    (void)parallel;

#pragma omp parallel if (parallel)
    {
        T tile[GEMM_MR * GEMM_NR] __attribute__((aligned(64)));
        for (int64_t jc = 0; jc < N; jc += GEMM_NC) {
            const int64_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
            const int64_t np = (nc + GEMM_NR - 1) / GEMM_NR;
            for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
                const int64_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
                const T beta_eff = pc == 0 ? beta : (T)1;
                const T *Bblk = B + pc * rsb + jc * csb;
#pragma omp for schedule(static)
                for (int64_t jp = 0; jp < np; jp++)
                    FN(gemm_pack_b)(bp, Bblk, rsb, csb, nc, kc, jp);
                for (int64_t ic = 0; ic < M; ic += GEMM_MC) {
                    const int64_t mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
                    const int64_t mp = (mc + GEMM_MR - 1) / GEMM_MR;
                    const T *Ablk = A + ic * rsa + pc * csa;
#pragma omp for schedule(static)
                    for (int64_t ip = 0; ip < mp; ip++)
                        FN(gemm_pack_a)(ap, Ablk, rsa, csa, mc, kc, ip);
#pragma omp for collapse(2) schedule(static)
                    for (int64_t jp = 0; jp < np; jp++) {
                        for (int64_t ip = 0; ip < mp; ip++) {
                            const int64_t i0 = ip * GEMM_MR, j0 = jp * GEMM_NR;
                            const int64_t mr = mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR;
                            const int64_t nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
                            kernel(kc, ap + ip * GEMM_MR * kc, bp + jp * GEMM_NR * kc, tile);
                            FN(gemm_store)(C + (ic + i0) * ldc + jc + j0, ldc, tile, mr, nr,
                                           alpha, beta_eff);
                        }
                    }
                }
            }
        }
    }
    free(ap);
    free(bp);
    return TC_OK;
}

#undef VEC
#undef GEMM_VL
#undef GEMM_NR
#undef GEMM_KC
#undef GEMM_MC
#undef GEMM_NC
