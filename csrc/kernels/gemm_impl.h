/* gemm_impl.h: packed, cache-blocked GEMM (Goto/BLIS loop order), written once for real_t.
 * The loop nest and the thread split are described above tc_gemm below. Each C entry is
 * owned by one thread and sums over k in a fixed order, so results are bitwise
 * reproducible (and in fact independent of the thread count).
 */

#define VEC FN(tc_gemm_vec)
#define UVEC FN(tc_gemm_uvec)
#define VEC16 FN(tc_gemm_vec16)
#define UVEC16 FN(tc_gemm_uvec16)
typedef real_t VEC __attribute__((vector_size(32)));
typedef real_t UVEC __attribute__((vector_size(32), aligned(sizeof(real_t))));
typedef real_t VEC16 __attribute__((vector_size(16)));
typedef real_t UVEC16 __attribute__((vector_size(16), aligned(sizeof(real_t))));
#define GEMM_VL ((int64_t)(32 / sizeof(real_t)))
#define GEMM_NR (2 * GEMM_VL)
#ifndef GEMM_KC
#define GEMM_KC 512
#endif
#ifndef GEMM_MCB
#define GEMM_MCB 576
#endif
#define GEMM_MC ((int64_t)(GEMM_MCB / sizeof(real_t))) /* 144 rows (f32), 72 (f64): A block ~ L2 */
#define GEMM_NC ((int64_t)(12288 / sizeof(real_t))) /* 3072 (f32), 1536 (f64): B panel ~ L3 */

typedef void (*FN(tc_gemm_kernel_fn))(int64_t, const real_t *, int64_t, int64_t, const real_t *, real_t *,
                                      int64_t, int64_t, int64_t, const real_t *);

/* the portable kernel: 16-byte vectors (SSE2, NEON, ...), two column blocks per tile */
#define KNAME FN(gemm_kernel_generic)
#define KATTR
#define KVEC VEC16
#define KUVEC UVEC16
#define KVL ((int64_t)(16 / sizeof(real_t)))
#include "gemm_kernel.h"
#undef KNAME
#undef KATTR
#undef KVEC
#undef KUVEC
#undef KVL
#if TC_GEMM_X86
#define KNAME FN(gemm_kernel_avx2)
#define KATTR __attribute__((target("avx2,fma")))
#define KVEC VEC
#define KUVEC UVEC
#define KVL GEMM_VL
#include "gemm_kernel.h"
#undef KNAME
#undef KATTR
#undef KVEC
#undef KUVEC
#undef KVL
#endif
#if TC_GEMM_NEON
#include "gemm_neon.h"
#endif

static FN(tc_gemm_kernel_fn) FN(gemm_pick_kernel)(void)
{
#if TC_GEMM_X86
    return tc_gemm_use_avx2() ? FN(gemm_kernel_avx2) : FN(gemm_kernel_generic);
#elif TC_GEMM_NEON
    return tc_cpu_pick(TC_CPU_GEMM) ? FN(gemm_kernel_neon) : FN(gemm_kernel_generic);
#else
    return FN(gemm_kernel_generic);
#endif
}

#if TC_GEMM_X86
/* The AVX-512F micro-kernel: one 12 x 2NR tile of C (12 x 32 float32, 12 x 16 float64),
 * 24 zmm accumulators, from two A panels (rows 0-5 at a0, rows 6-11 at a1, each
 * a(i,p) = a[i*rsa + p*csa]: packed (kc, MR) panels or A in place) and two adjacent packed
 * B panels (kc, NR) (one zmm per row each: columns [0, NR) at b0, [NR, 2NR) at b1): per k,
 * 2 B loads, 12 broadcasts, 24 FMAs.
 *   acc (12, 2NR) = sum over p < kc of a(:,p) b(p,:),  C (12, 2NR) = alpha acc + beta C
 * Full tiles only (partial edges run the AVX2 kernel). Each entry of C is computed with
 * exactly the AVX2 kernel's operations (one accumulator per entry, FMAs in k order, then
 * the same alpha / beta update), so the two give bitwise the same products
 * (tests/test_gemm.py, tests/c check it): which kernel takes a tile changes only the speed. */
#define VEC64 FN(tc_gemm_vec64)
#define UVEC64 FN(tc_gemm_uvec64)
typedef real_t VEC64 __attribute__((vector_size(64)));
typedef real_t UVEC64 __attribute__((vector_size(64), aligned(sizeof(real_t))));
#define TC_GEMM512_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))

__attribute__((always_inline)) TC_GEMM512_TARGET static inline void
FN(gemm_kernel_avx512_body)(int64_t kc, const real_t *restrict a0, const real_t *restrict a1,
                            const int64_t rsa, const int64_t csa, const real_t *restrict b0,
                            const real_t *restrict b1, real_t *restrict c, int64_t ldc,
                            const real_t *ab)
{
    VEC64 acc[12][2];
    for (int i = 0; i < 12; i++) {
        acc[i][0] = (VEC64){0};
        acc[i][1] = (VEC64){0};
    }
    for (int i = 0; i < 12; i++) {
        __builtin_prefetch(c + i * ldc, 1);
        __builtin_prefetch(c + i * ldc + 2 * GEMM_NR - 1, 1);
    }
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        const VEC64 x0 = *(const UVEC64 *)(b0 + p * GEMM_NR);
        const VEC64 x1 = *(const UVEC64 *)(b1 + p * GEMM_NR);
        const int64_t q = p * csa;
#define TC_GEMM512_ROW(i, ai, r)                  \
        {                                         \
            const real_t s = ai[(r) * rsa + q];   \
            acc[i][0] += s * x0;                  \
            acc[i][1] += s * x1;                  \
        }
        TC_GEMM512_ROW(0, a0, 0)
        TC_GEMM512_ROW(1, a0, 1)
        TC_GEMM512_ROW(2, a0, 2)
        TC_GEMM512_ROW(3, a0, 3)
        TC_GEMM512_ROW(4, a0, 4)
        TC_GEMM512_ROW(5, a0, 5)
        TC_GEMM512_ROW(6, a1, 0)
        TC_GEMM512_ROW(7, a1, 1)
        TC_GEMM512_ROW(8, a1, 2)
        TC_GEMM512_ROW(9, a1, 3)
        TC_GEMM512_ROW(10, a1, 4)
        TC_GEMM512_ROW(11, a1, 5)
#undef TC_GEMM512_ROW
    }
    /* the AVX2 kernel's full-tile update, a zmm at a time */
    const real_t alpha = ab[0], beta = ab[1];
    for (int i = 0; i < 12; i++) {
        for (int v = 0; v < 2; v++) {
            UVEC64 *cp = (UVEC64 *)(c + i * ldc + v * GEMM_NR);
            if (beta == 0)
                *cp = alpha * acc[i][v];
            else if (alpha == 1 && beta == 1)
                *cp += acc[i][v];
            else
                *cp = alpha * acc[i][v] + beta * *cp;
        }
    }
}

/* the common layouts of a specialised (constant strides): packed (1, MR), rows of a
 * row-major A (rsa, 1), anything else */
TC_GEMM512_TARGET static void FN(gemm_kernel_avx512)(int64_t kc, const real_t *a0,
                                                     const real_t *a1, int64_t rsa, int64_t csa,
                                                     const real_t *b0, const real_t *b1,
                                                     real_t *c, int64_t ldc, const real_t *ab)
{
    if (rsa == 1 && csa == GEMM_MR)
        FN(gemm_kernel_avx512_body)(kc, a0, a1, 1, GEMM_MR, b0, b1, c, ldc, ab);
    else if (csa == 1)
        FN(gemm_kernel_avx512_body)(kc, a0, a1, rsa, 1, b0, b1, c, ldc, ab);
    else
        FN(gemm_kernel_avx512_body)(kc, a0, a1, rsa, csa, b0, b1, c, ldc, ab);
}
#undef VEC64
#undef UVEC64
#undef TC_GEMM512_TARGET
#else
static void FN(gemm_kernel_avx512)(int64_t kc, const real_t *a0, const real_t *a1, int64_t rsa,
                                   int64_t csa, const real_t *b0, const real_t *b1, real_t *c,
                                   int64_t ldc, const real_t *ab)
{
    (void)kc, (void)a0, (void)a1, (void)rsa, (void)csa, (void)b0, (void)b1, (void)c;
    (void)ldc, (void)ab;
}
#endif

/* whether the products run the AVX-512F 12 x 2NR kernel on their full tiles */
static inline int FN(gemm_use_avx512)(void)
{
    return TC_GEMM_X86 && tc_cpu_pick(TC_CPU_GEMM) && tc_cpu_use_avx512();
}

/* C (M,N) = alpha op(A) op(B) + beta C, the plain reference. */
int FN(tc_gemm_ref)(real_t *C, const real_t *A, const real_t *B, int64_t M, int64_t N, int64_t K,
                    int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                    real_t alpha, real_t beta)
{
    if (M < 0 || N < 0 || K < 0) return TC_EINVAL;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            real_t s = 0;
            for (int64_t k = 0; k < K; k++) {
                real_t a = trans_a ? A[k * lda + i] : A[i * lda + k];
                real_t b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            real_t *c = &C[i * ldc + j];
            *c = alpha * s + (beta == 0 ? 0 : beta * *c);
        }
    }
    return TC_OK;
}

/* One MR-row panel of A (kc x MR, zero-padded past mr rows) <- rows [0,mr) x cols [0,kc)
 * of A viewed with strides (rs, cs). */
static void FN(gemm_pack_a)(real_t *restrict dst, const real_t *A, int64_t rs, int64_t cs, int64_t mr,
                            int64_t kc)
{
    if (cs == 1 && mr == GEMM_MR && sizeof(real_t) == sizeof(float) && TC_GEMM_FAST_PACK_F32) {
        tc_gemm_pack_a6_f32_avx2((float *)dst, (const float *)A, rs, kc);
        return;
    }
    /* (float32 op(A) = A^T with AVX2: packed a block at a time, gemm_pack_a_block) */
    if (rs == 1 && mr == GEMM_MR) { /* op(A) = A^T: each k holds MR contiguous entries */
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = 0; i < GEMM_MR; i++) dst[p * GEMM_MR + i] = A[p * cs + i];
        return;
    }
    if (cs == 1) {
        /* all MR rows stream side by side (prefetchers follow MR sequential streams) */
        const int64_t last = mr - 1;
        const real_t *r[GEMM_MR];
        for (int64_t i = 0; i < GEMM_MR; i++) r[i] = A + (i < last ? i : last) * rs;
        if (mr == GEMM_MR) {
            for (int64_t p = 0; p < kc; p++)
                for (int64_t i = 0; i < GEMM_MR; i++) dst[p * GEMM_MR + i] = r[i][p];
        } else {
            for (int64_t p = 0; p < kc; p++)
                for (int64_t i = 0; i < GEMM_MR; i++) dst[p * GEMM_MR + i] = i < mr ? r[i][p] : 0;
        }
        return;
    }
    for (int64_t p = 0; p < kc; p++) {
        const real_t *src = A + p * cs;
        for (int64_t i = 0; i < GEMM_MR; i++) dst[p * GEMM_MR + i] = i < mr ? src[i * rs] : 0;
    }
}

/* One NR-column panel of B (kc x NR, zero-padded past nr columns) <- rows [0,kc) x cols
 * [0,nr) of B viewed with strides (rs, cs). */
static void FN(gemm_pack_b)(real_t *restrict dst, const real_t *B, int64_t rs, int64_t cs, int64_t nr,
                            int64_t kc)
{
    if (cs == 1 && GEMM_NR == 16 && sizeof(real_t) == sizeof(float) && TC_GEMM_FAST_PACK_F32) {
        tc_gemm_pack_b16_f32_avx2((float *)dst, (const float *)B, rs, nr, kc);
        return;
    }
    if (cs == 1) {
        if (nr == GEMM_NR) {
            /* a fixed-size row copy: a few vector moves, not a memcpy call */
            for (int64_t p = 0; p < kc; p++)
                for (int64_t j = 0; j < GEMM_NR; j++) dst[p * GEMM_NR + j] = B[p * rs + j];
            return;
        }
        for (int64_t p = 0; p < kc; p++) {
            memcpy(dst + p * GEMM_NR, B + p * rs, (size_t)nr * sizeof(real_t));
            for (int64_t j = nr; j < GEMM_NR; j++) dst[p * GEMM_NR + j] = 0;
        }
        return;
    }
    if (rs == 1 && nr == GEMM_NR && GEMM_NR == 16 && sizeof(real_t) == sizeof(float) &&
        TC_GEMM_FAST_PACK_F32) {
        tc_gemm_pack_b16t_f32_avx2((float *)dst, (const float *)B, cs, kc);
        return;
    }
    /* columns of B are rows of the stored (transposed) matrix: nr sequential streams */
    const real_t *r[GEMM_NR];
    for (int64_t j = 0; j < GEMM_NR; j++) r[j] = B + (j < nr ? j : 0) * cs;
    if (nr == GEMM_NR) {
        for (int64_t p = 0; p < kc; p++)
            for (int64_t j = 0; j < GEMM_NR; j++) dst[p * GEMM_NR + j] = r[j][p * rs];
    } else {
        for (int64_t p = 0; p < kc; p++)
            for (int64_t j = 0; j < GEMM_NR; j++) dst[p * GEMM_NR + j] = j < nr ? r[j][p * rs] : 0;
    }
}

/* The A block of mc rows x kc columns (ceil(mc/MR) panels, panel ip at ap + ip*MR*kc) */
static void FN(gemm_pack_a_block)(real_t *restrict ap, const real_t *A, int64_t rs, int64_t cs,
                                  int64_t mc, int64_t kc)
{
    if (rs == 1 && sizeof(real_t) == sizeof(float) && TC_GEMM_FAST_PACK_F32) {
        tc_gemm_pack_a6t_block_f32_avx2((float *)ap, (const float *)A, cs, mc, kc);
        return;
    }
    const int64_t mp = (mc + GEMM_MR - 1) / GEMM_MR;
    for (int64_t ip = 0; ip < mp; ip++) {
        const int64_t i0 = ip * GEMM_MR;
        FN(gemm_pack_a)(ap + ip * GEMM_MR * kc, A + i0 * rs, rs, cs,
                        mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR, kc);
    }
}

/* One packed panel, for tests of the packers (the fast ones against the portable ones,
 * which run when the portable kernel is forced): side 0, the A block of ceil(n/MR) panels
 * (kc, MR) of rows [0,n) x cols [0,kc) of A viewed with strides (rs, cs), as the product
 * packs it; side 1, a B panel (kc, NR) of rows [0,kc) x cols [0,n), n <= NR. */
int FN(tc_gemm_pack_panel)(real_t *dst, const real_t *src, int64_t rs, int64_t cs, int64_t n, int64_t kc,
                           int side)
{
    if (!dst || !src || (side != 0 && side != 1) || n < 1 || (side && n > GEMM_NR) || kc < 0 ||
        rs < 0 || cs < 0)
        return TC_EINVAL;
    if (side)
        FN(gemm_pack_b)(dst, src, rs, cs, n, kc);
    else
        FN(gemm_pack_a_block)(dst, src, rs, cs, n, kc);
    return TC_OK;
}

static void FN(gemm_scale)(real_t *C, int64_t ldc, int64_t M, int64_t N, real_t beta)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
}

/* One block of rows [ic, ic+mc) of C against the packed micro-panels [jp0, jp1) of B at
 * (jc, pc): pack the A block (into ap, when given and a_packed is 0; else A is read in
 * place, or ap already holds it), then every MR x NR tile, jr outer (the B micro-panel
 * stays in L1) and ir inner. With use512, two full B micro-panels at a time and, inside,
 * two full A panels at a time: 2MR x 2NR tiles (12 x 32 float32, 12 x 16 float64) by the
 * AVX-512 kernel, the rest (partial edges, a last odd panel) by `kernel` (AVX2), tile by
 * tile. */
static inline void FN(gemm_block)(FN(tc_gemm_kernel_fn) kernel, const real_t *A, int64_t rsa,
                                  int64_t csa, real_t *C, int64_t ldc, int64_t ic, int64_t mc,
                                  int64_t jc, int64_t nc, int64_t pc, int64_t kc,
                                  int64_t kc_max, real_t *ap, const real_t *bp, int64_t jp0, int64_t jp1,
                                  const real_t *ab, int last_pc, tc_gemm_epilogue_fn ep,
                                  void *ep_ctx, int a_packed, int use512)
{
    const int64_t mp = (mc + GEMM_MR - 1) / GEMM_MR;
    const real_t *Ablk = A + ic * rsa + pc * csa;
    if (ap && !a_packed) FN(gemm_pack_a_block)(ap, Ablk, rsa, csa, mc, kc);
    for (int64_t jp = jp0; jp < jp1;) {
        const int64_t j0 = jp * GEMM_NR;
        /* two full micro-panels of B for the 12 x 32 kernel, else one */
        const int64_t jn = use512 && jp + 1 < jp1 && nc - j0 >= 2 * GEMM_NR ? 2 : 1;
        for (int64_t jq = jp; jq < jp + jn; jq++) {
            const int64_t jq0 = jq * GEMM_NR;
            const int64_t nr = nc - jq0 < GEMM_NR ? nc - jq0 : GEMM_NR;
            const real_t *bpanel = bp + jq * GEMM_NR * kc_max;
            for (int64_t ip = 0; ip < mp; ip++) {
                const int64_t i0 = ip * GEMM_MR;
                const int64_t mr = mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR;
                real_t *ct = C + (ic + i0) * ldc + jc + jq0;
                if (jn == 2 && mc - i0 >= 2 * GEMM_MR) {
                    /* rows [i0, i0 + 12) x both panels, once (at jq == jp) */
                    if (jq == jp) {
                        const real_t *a0 = ap ? ap + ip * GEMM_MR * kc : Ablk + i0 * rsa;
                        const real_t *a1 = ap ? a0 + GEMM_MR * kc : a0 + GEMM_MR * rsa;
                        FN(gemm_kernel_avx512)(kc, a0, a1, ap ? 1 : rsa, ap ? GEMM_MR : csa,
                                               bpanel, bpanel + GEMM_NR * kc_max, ct, ldc, ab);
                    }
                    ip++; /* the next panel was in the 12 rows */
                    continue;
                }
                if (ap)
                    kernel(kc, ap + ip * GEMM_MR * kc, 1, GEMM_MR, bpanel, ct, ldc, mr, nr, ab);
                else
                    kernel(kc, Ablk + i0 * rsa, rsa, csa, bpanel, ct, ldc, mr, nr, ab);
            }
        }
        /* each finished mc x nr column of C, still in L1 / L2: one call per column amortises
         * the epilogue's set-up and gives it long independent loops */
        if (ep && last_pc)
            for (int64_t jq = jp; jq < jp + jn; jq++) {
                const int64_t jq0 = jq * GEMM_NR;
                ep(ep_ctx, ic, jc + jq0, mc, nc - jq0 < GEMM_NR ? nc - jq0 : GEMM_NR);
            }
        jp += jn;
    }
}

/* The fast product. Loop nest (Goto/BLIS): jc (NC columns; B panel kc x NC packed once per
 * pc) > pc (KC of the shared dimension) > ic (MC rows; A block packed per thread, or read in
 * place when N is small and packing would not pay) > jr (NR-column micro-panels of B) > ir
 * (MR-row panels of A) > the micro-kernel over kc.
 * Threads: with enough rows, the row blocks are handed out dynamically (each thread packs
 * the A block it takes into its own buffer, in its own L2) and the B panel is packed
 * cooperatively; with few rows, each thread owns a range of B micro-panels and packs them
 * itself. Either way each C entry is computed
 * by one thread summing k in a fixed order (results do not depend on the thread count). */
int FN(tc_gemm_ep)(real_t *C, const real_t *A, const real_t *B, int64_t M, int64_t N, int64_t K,
                   int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                   real_t alpha, real_t beta, tc_gemm_epilogue_fn ep, void *ep_ctx)
{
    if (M < 0 || N < 0 || K < 0) return TC_EINVAL;
    if (M == 0 || N == 0) return TC_OK;
    if (K == 0 || alpha == 0) {
        FN(gemm_scale)(C, ldc, M, N, beta);
        if (ep) ep(ep_ctx, 0, 0, M, N);
        return TC_OK;
    }
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    const int64_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
    const int64_t kc_max = K < GEMM_KC ? K : GEMM_KC;
    const int64_t mc_max = M < GEMM_MC ? M : GEMM_MC;
    const int64_t nc_max = N < GEMM_NC ? N : GEMM_NC;
    const int64_t a_panels = (mc_max + GEMM_MR - 1) / GEMM_MR;
    const int64_t b_panels = (nc_max + GEMM_NR - 1) / GEMM_NR;
    /* packing A costs about as much as 1/N of the product: skip it for narrow products */
    const int pack_a = N > GEMM_PACK_A_MIN_N;
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    /* waking a second thread costs microseconds (far more if its core is busy): only worth
     * it past about 30 us of single-core work */
    const int parallel = TC_PAR(flops, GEMM_PARALLEL_MIN_FLOPS);
    const int max_threads = parallel ? tc_gemm_max_threads() : 1;
    size_t a_bytes = pack_a ? (size_t)(a_panels * GEMM_MR * kc_max) * sizeof(real_t) : 0;
    size_t b_bytes = (size_t)(b_panels * GEMM_NR * kc_max) * sizeof(real_t);
    a_bytes = (a_bytes + 63) / 64 * 64;
    b_bytes = (b_bytes + 63) / 64 * 64;
    /* the calling thread's cached buffers: no allocation once warmed up */
    real_t *ap = a_bytes ? tc_workspace(TC_WS_GEMM_A, a_bytes * (size_t)max_threads) : NULL;
    real_t *bp = tc_workspace(TC_WS_GEMM_B, b_bytes);
    if ((a_bytes && !ap) || !bp) return TC_ENOMEM;
    const FN(tc_gemm_kernel_fn) kernel = FN(gemm_pick_kernel)();
    const int use512 = FN(gemm_use_avx512)();
    const int64_t mp_all = (M + GEMM_MR - 1) / GEMM_MR;

    const int64_t panels_per_block = GEMM_MC / GEMM_MR;

#pragma omp parallel num_threads(max_threads) if (parallel)
    {
        const int nth = tc_gemm_thread_count(), tid = tc_gemm_thread_id();
        /* split rows when there are enough MR-panels for every thread, else columns */
        const int split_m = nth > 1 && mp_all >= 4 * nth;
        /* row split: blocks of at most MC rows, as many as a multiple of the thread count,
         * handed out dynamically (a thread that loses its core to other work does not hold
         * the others up); each C entry still sums k in the same order whoever computes it */
        int64_t nblocks = (mp_all + panels_per_block - 1) / panels_per_block;
        nblocks = (nblocks + nth - 1) / nth * nth;
        real_t *my_ap = ap ? (real_t *)((char *)ap + a_bytes * (size_t)tid) : NULL;
        for (int64_t jc = 0; jc < N; jc += GEMM_NC) {
            const int64_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
            const int64_t np = (nc + GEMM_NR - 1) / GEMM_NR;
            for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
                const int64_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
                const real_t ab[2] = {alpha, pc == 0 ? beta : (real_t)1};
                const int last_pc = pc + kc == K;
                const real_t *Bblk = B + pc * rsb + jc * csb;
                /* panels sit at a fixed stride (kc_max), so with the column split a thread
                 * packing the next pc never overlaps a neighbour still reading this one */
                if (split_m) {
#pragma omp for schedule(dynamic, 4)
                    for (int64_t jp = 0; jp < np; jp++) {
                        const int64_t j0 = jp * GEMM_NR;
                        FN(gemm_pack_b)(bp + jp * GEMM_NR * kc_max, Bblk + j0 * csb, rsb, csb,
                                        nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR, kc);
                    }
                    /* (the implicit barriers: B is packed before use, and used up before
                     * the next pc packs over it) */
#pragma omp for schedule(dynamic, 1)
                    for (int64_t blk = 0; blk < nblocks; blk++) {
                        const int64_t ic = mp_all * blk / nblocks * GEMM_MR;
                        int64_t ie = mp_all * (blk + 1) / nblocks * GEMM_MR;
                        if (ie > M) ie = M;
                        if (ie > ic)
                            FN(gemm_block)(kernel, A, rsa, csa, C, ldc, ic, ie - ic, jc, nc, pc,
                                           kc, kc_max, my_ap, bp, 0, np, ab, last_pc, ep, ep_ctx,
                                           0, use512);
                    }
                } else if (M <= GEMM_MC) {
                    /* one block of rows (the few rows of, e.g., an expert of a mixture):
                     * each B micro-panel is used by this block only, so it is packed right
                     * before its tiles, while they read it from L1 (the whole packed panel
                     * would go out to L3 and back); the same tiles, in the same order */
                    const int64_t pk0 = np * tid / nth, pk1 = np * (tid + 1) / nth;
                    /* (two micro-panels at a time for the AVX-512 kernel's 12 x 32 tiles) */
                    for (int64_t jp = pk0; jp < pk1;) {
                        const int64_t je = use512 && jp + 1 < pk1 ? jp + 2 : jp + 1;
                        for (int64_t jq = jp; jq < je; jq++) {
                            const int64_t j0 = jq * GEMM_NR;
                            FN(gemm_pack_b)(bp + jq * GEMM_NR * kc_max, Bblk + j0 * csb, rsb,
                                            csb, nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR, kc);
                        }
                        FN(gemm_block)(kernel, A, rsa, csa, C, ldc, 0, M, jc, nc, pc, kc,
                                       kc_max, my_ap, bp, jp, je, ab, last_pc, ep, ep_ctx,
                                       jp > pk0, use512);
                        jp = je;
                    }
                } else {
                    const int64_t pk0 = np * tid / nth, pk1 = np * (tid + 1) / nth;
                    for (int64_t jp = pk0; jp < pk1; jp++) {
                        const int64_t j0 = jp * GEMM_NR;
                        FN(gemm_pack_b)(bp + jp * GEMM_NR * kc_max, Bblk + j0 * csb, rsb, csb,
                                        nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR, kc);
                    }
                    for (int64_t ic = 0; ic < M; ic += GEMM_MC)
                        FN(gemm_block)(kernel, A, rsa, csa, C, ldc, ic,
                                       M - ic < GEMM_MC ? M - ic : GEMM_MC, jc, nc, pc, kc,
                                       kc_max, my_ap, bp, pk0, pk1, ab, last_pc, ep, ep_ctx, 0,
                                       use512);
                }
            }
        }
    }
    return TC_OK;
}

int FN(tc_gemm)(real_t *C, const real_t *A, const real_t *B, int64_t M, int64_t N, int64_t K,
                int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                real_t alpha, real_t beta)
{
    return FN(tc_gemm_ep)(C, A, B, M, N, K, ldc, lda, ldb, trans_a, trans_b, alpha, beta,
                          NULL, NULL);
}

#undef VEC
#undef UVEC
#undef VEC16
#undef UVEC16
#undef GEMM_VL
#undef GEMM_NR
#undef GEMM_KC
#undef GEMM_MC
#undef GEMM_NC
