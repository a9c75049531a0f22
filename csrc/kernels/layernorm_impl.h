/* layernorm_impl.h: layer normalisation over the last axis, written once for real_t.
 *
 *   y = (x - mean) * rstd * weight + bias,  mean = sum(x)/C,
 *   rstd = 1/sqrt(sum((x - mean)^2)/C + eps)   (biased variance, as torch).
 *
 * The row arithmetic is in layernorm_rows.h (shared with the fused residual + layernorm):
 * two passes over each row while it is in L1 (the mean in double, then the squared
 * deviations from it), so a row with a large common offset (1e4 + noise in float32) keeps
 * its precision. Vectorised explicitly (vec_math.h),
 * compiled for the x86-64 baseline and with AVX2 (no FMA: identical rounding), picked at
 * run time. Every output element is written by one thread in a fixed order, so results do
 * not depend on the thread count at all. A call runs in parallel only from LN_PAR_MIN
 * elements on; the backward's two passes (column sums for dweight / dbias, rows for dinp)
 * share one parallel region.
 */

#include "vec_math.h"
#include "layernorm_rows.h"

#ifndef TC_LN_ONCE
#define TC_LN_ONCE
#ifdef _OPENMP
#include <omp.h>
#endif
#endif

/* rows [n0, n1) of the forward */
__attribute__((always_inline)) static inline void FN(ln_fwd_rows_body)(real_t *out, real_t *mean, real_t *rstd,
                                                                       const real_t *inp, const real_t *weight,
                                                                       const real_t *bias, int64_t n0,
                                                                       int64_t n1, int64_t C,
                                                                       double eps)
{
    for (int64_t n = n0; n < n1; n++) {
        const real_t *x = inp + n * C;
        double m, s;
        real_t mh, ml;
        FN(lnrow_stats)(x, C, eps, &m, &s, &mh, &ml);
        if (mean) mean[n] = (real_t)m;
        if (rstd) rstd[n] = (real_t)s;
        if (out) FN(lnrow_out)(out + n * C, x, weight, bias, C, mh, ml, (real_t)s);
    }
}

/* rows [n0, n1) of dinp; with part, also the weight / bias partial sums of every chunk of
 * LN_ROWS rows in [n0, n1) (n0 a multiple of LN_ROWS): part[k] (2 rows of C) for chunk k */
__attribute__((always_inline)) static inline void FN(ln_bwd_rows_body)(real_t *dinp, real_t *part,
                                                                       const real_t *dout,
                                                                       const real_t *inp, const real_t *weight,
                                                                       const real_t *mean, const real_t *rstd,
                                                                       int64_t n0, int64_t n1,
                                                                       int64_t C, int set)
{
    for (int64_t n = n0; n < n1; n++) {
        real_t *pw = NULL, *pb = NULL;
        if (part) {
            pw = part + 2 * (n / LN_ROWS) * C;
            pb = pw + C;
            if (n % LN_ROWS == 0)
                for (int64_t c = 0; c < 2 * C; c++) pw[c] = 0;
        }
        FN(lnrow_backward_m)(dinp + n * C, NULL, pw, pb, dout + n * C, NULL, inp + n * C,
                             weight, C, mean[n], rstd[n], set);
    }
}

#define LN_VARIANT(attr, sfx)                                                                   \
    attr static void FN(ln_fwd_rows##sfx)(real_t *out, real_t *mean, real_t *rstd, const real_t *inp, const real_t *w,   \
                                          const real_t *b, int64_t n0, int64_t n1, int64_t C,        \
                                          double eps)                                           \
    {                                                                                           \
        FN(ln_fwd_rows_body)(out, mean, rstd, inp, w, b, n0, n1, C, eps);                       \
    }                                                                                           \
    attr static void FN(ln_bwd_rows##sfx)(real_t *dinp, real_t *part, const real_t *dout, const real_t *inp,        \
                                          const real_t *w, const real_t *mean, const real_t *rstd, int64_t n0, \
                                          int64_t n1, int64_t C, int set)                       \
    {                                                                                           \
        if (set)                                                                                \
            FN(ln_bwd_rows_body)(dinp, part, dout, inp, w, mean, rstd, n0, n1, C, 1);           \
        else                                                                                    \
            FN(ln_bwd_rows_body)(dinp, part, dout, inp, w, mean, rstd, n0, n1, C, 0);           \
    }                                                                                           \
    attr static void FN(ln_wb_block##sfx)(real_t *dw, real_t *db, const real_t *dout, const real_t *inp,            \
                                          const real_t *mean, const real_t *rstd, int64_t N, int64_t C,   \
                                          int64_t c0, int64_t width)                            \
    {                                                                                           \
        FN(lnrow_wb_block)(dw, db, dout, inp, mean, rstd, N, C, c0, width);                     \
    }
LN_VARIANT(, _generic)
#if TC_VEC_X86
LN_VARIANT(TC_VEC_AVX2_NOFMA, _avx2)
#define LN_PICK(name) (tc_cpu_pick(TC_CPU_LAYERNORM) ? FN(name##_avx2) : FN(name##_generic))
#else
#define LN_PICK(name) FN(name##_generic)
#endif
#undef LN_VARIANT

/* [*n0, *n1): this thread's contiguous share of N rows (all of them outside a parallel
 * region) */
static inline void FN(ln_share)(int64_t N, int64_t *n0, int64_t *n1)
{
#ifdef _OPENMP
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
#else
    const int64_t nt = 1, t = 0;
#endif
    const int64_t per = N / nt, extra = N % nt;
    *n0 = t * per + (t < extra ? t : extra);
    *n1 = *n0 + per + (t < extra);
}

// out (N,C) or NULL, mean (N,) or NULL, rstd (N,) or NULL, inp (N,C), weight (C,),
// bias (C,) or NULL. With out == NULL only the statistics are computed (weight unused).
int FN(tc_layernorm_forward)(real_t *out, real_t *mean, real_t *rstd, const real_t *inp, const real_t *weight,
                             const real_t *bias, int64_t N, int64_t C, double eps)
{
    if (N < 0 || C < 1 || !(eps >= 0) || (out && !weight)) return TC_EINVAL;
    if (N == 0) return TC_OK;
    void (*rows)(real_t *, real_t *, real_t *, const real_t *, const real_t *, const real_t *, int64_t, int64_t, int64_t,
                 double) = LN_PICK(ln_fwd_rows);
#pragma omp parallel if (N > 1 && TC_PAR(N * C, LN_PAR_MIN))
    {
        int64_t n0, n1;
        FN(ln_share)(N, &n0, &n1);
        if (n0 < n1) rows(out, mean, rstd, inp, weight, bias, n0, n1, C, eps);
    }
    return TC_OK;
}

// dinp (N,C) or NULL, dweight (C,) or NULL, dbias (C,) or NULL, accumulated (+=) or, by
// write (TC_WRITE(0/1/2) = dinp/dweight/dbias), written; dout (N,C), inp (N,C), weight (C,),
// mean (N,), rstd (N,) as filled by the forward.
//   xhat = (x - mean) * rstd, g = dout * weight,
//   dinp += rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),
//   dweight += sum_n dout * xhat, dbias += sum_n dout.
// A written dinp is computed as 0 + value in the row pass; written dweight / dbias are
// zeroed (C elements) and then accumulated into: the bits of accumulating into zeros.
int FN(tc_layernorm_backward)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout, const real_t *inp,
                              const real_t *weight, const real_t *mean, const real_t *rstd, int64_t N,
                              int64_t C, int write)
{
    if (N < 0 || C < 1 || !mean || !rstd || (dinp && !weight)) return TC_EINVAL;
    if (dweight && TC_WRITES(write, 1)) memset(dweight, 0, (size_t)C * sizeof(real_t));
    if (dbias && TC_WRITES(write, 2)) memset(dbias, 0, (size_t)C * sizeof(real_t));
    if (N == 0) return TC_OK;
    void (*block)(real_t *, real_t *, const real_t *, const real_t *, const real_t *, const real_t *, int64_t, int64_t,
                  int64_t, int64_t) = LN_PICK(ln_wb_block);
    void (*rows)(real_t *, real_t *, const real_t *, const real_t *, const real_t *, const real_t *, const real_t *, int64_t,
                 int64_t, int64_t, int) = LN_PICK(ln_bwd_rows);
    const int set = (int)TC_WRITES(write, 0);
    const int par = TC_PAR(N * C, LN_PAR_MIN);
    (void)par; /* read only by the OpenMP if clauses: unused in a serial build */
    if (dinp && (dweight || dbias)) {
        /* one pass: each chunk of LN_ROWS rows adds its weight / bias partial sums into its
         * own 2 rows of part while the rows are in L1, then the chunks are added in order
         * (in double, per column): independent of the thread count */
        const int64_t nchunks = (N + LN_ROWS - 1) / LN_ROWS;
        real_t *part = malloc((size_t)nchunks * 2 * (size_t)C * sizeof(real_t));
        if (!part) return TC_ENOMEM;
#pragma omp parallel if (par)
        {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < nchunks; k++) {
                const int64_t n0 = k * LN_ROWS, n1 = N - n0 < LN_ROWS ? N : n0 + LN_ROWS;
                rows(dinp, part, dout, inp, weight, mean, rstd, n0, n1, C, set);
            }
#pragma omp for schedule(static)
            for (int64_t c0 = 0; c0 < C; c0 += LN_COLS)
                FN(lnrow_reduce_chunks)(dweight, dbias, part, nchunks, C, c0,
                                        C - c0 < LN_COLS ? C : c0 + LN_COLS);
        }
        free(part);
        return TC_OK;
    }
    const int64_t nblocks = (C + LN_COLS - 1) / LN_COLS;
#pragma omp parallel if (par)
    {
        if (dweight || dbias) {
            /* each thread owns blocks of LN_COLS columns and sums the rows in order */
#pragma omp for schedule(static) nowait
            for (int64_t k = 0; k < nblocks; k++) {
                const int64_t c0 = k * LN_COLS;
                const int64_t width = C - c0 < LN_COLS ? C - c0 : LN_COLS;
                block(dweight, dbias, dout, inp, mean, rstd, N, C, c0, width);
            }
        }
        if (dinp) {
            int64_t n0, n1;
            FN(ln_share)(N, &n0, &n1);
            if (n0 < n1) rows(dinp, NULL, dout, inp, weight, mean, rstd, n0, n1, C, set);
        }
    }
    return TC_OK;
}

#undef LN_PICK
