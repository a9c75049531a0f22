/* layernorm_impl.h: layer normalisation over the last axis, written once for T.
 *
 *   y = (x - mean) * rstd * weight + bias,  mean = sum(x)/C,
 *   rstd = 1/sqrt(sum((x - mean)^2)/C + eps)   (biased variance, as torch).
 *
 * Row statistics are accumulated in double for both dtypes, in two passes (the mean, then
 * the mean squared deviation from it), so a row with a large common offset (1e4 + noise in
 * float32) keeps its precision; the normalised value (x - mean) * rstd is also formed in
 * double before it is rounded to T. Row reductions use LN_LANES independent partial sums
 * combined in a fixed order: the compiler vectorises them without fast-math flags and the
 * result is bitwise reproducible. Every output element is written by one thread in a
 * fixed order, so results do not depend on the thread count at all.
 */

#ifndef LN_LANES
#define LN_LANES 8
#define LN_BLOCK 64 /* columns per thread block in the weight/bias gradient */
static inline double ln_combine(const double *acc)
{
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
#endif

/* sum_c x[c], in double */
static double FN(ln_sum)(const T *x, int64_t C)
{
    double acc[LN_LANES] = {0};
    int64_t c = 0;
    for (; c + LN_LANES <= C; c += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) acc[j] += (double)x[c + j];
    for (int j = 0; c < C; c++, j++) acc[j] += (double)x[c];
    return ln_combine(acc);
}

/* sum_c (x[c] - m)^2, in double */
static double FN(ln_sum_sq_dev)(const T *x, int64_t C, double m)
{
    double acc[LN_LANES] = {0};
    int64_t c = 0;
    for (; c + LN_LANES <= C; c += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) {
            double d = (double)x[c + j] - m;
            acc[j] += d * d;
        }
    for (int j = 0; c < C; c++, j++) {
        double d = (double)x[c] - m;
        acc[j] += d * d;
    }
    return ln_combine(acc);
}

/* For one row: *a = sum_c g[c], *b = sum_c g[c] * xhat[c] with g = dy * w and
 * xhat = (x - m) * s, in double. */
static void FN(ln_row_dots)(const T *dy, const T *x, const T *w, int64_t C, double m, double s,
                            double *a, double *b)
{
    double aa[LN_LANES] = {0}, bb[LN_LANES] = {0};
    int64_t c = 0;
    for (; c + LN_LANES <= C; c += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) {
            double g = (double)dy[c + j] * (double)w[c + j];
            aa[j] += g;
            bb[j] += g * (((double)x[c + j] - m) * s);
        }
    for (int j = 0; c < C; c++, j++) {
        double g = (double)dy[c] * (double)w[c];
        aa[j] += g;
        bb[j] += g * (((double)x[c] - m) * s);
    }
    *a = ln_combine(aa);
    *b = ln_combine(bb);
}

// out (N,C) or NULL, mean (N,) or NULL, rstd (N,) or NULL, inp (N,C), weight (C,),
// bias (C,) or NULL. With out == NULL only the statistics are computed (weight unused).
int FN(tc_layernorm_forward)(T *out, T *mean, T *rstd, const T *inp, const T *weight,
                             const T *bias, int64_t N, int64_t C, double eps)
{
    if (N < 0 || C < 1 || !(eps >= 0) || (out && !weight)) return TC_EINVAL;
#pragma omp parallel for schedule(static) if (N * C >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const T *x = inp + n * C;
        const double m = FN(ln_sum)(x, C) / (double)C;
        const double s = 1.0 / sqrt(FN(ln_sum_sq_dev)(x, C, m) / (double)C + eps);
        if (mean) mean[n] = (T)m;
        if (rstd) rstd[n] = (T)s;
        if (!out) continue;
        T *y = out + n * C;
        if (bias) {
            for (int64_t c = 0; c < C; c++)
                y[c] = (T)(((double)x[c] - m) * s) * weight[c] + bias[c];
        } else {
            for (int64_t c = 0; c < C; c++) y[c] = (T)(((double)x[c] - m) * s) * weight[c];
        }
    }
    return TC_OK;
}

// dinp (N,C) or NULL, dweight (C,) or NULL, dbias (C,) or NULL, all accumulated (+=);
// dout (N,C), inp (N,C), weight (C,), mean (N,), rstd (N,) as filled by the forward.
//   xhat = (x - mean) * rstd, g = dout * weight,
//   dinp += rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),
//   dweight += sum_n dout * xhat, dbias += sum_n dout.
int FN(tc_layernorm_backward)(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp,
                              const T *weight, const T *mean, const T *rstd, int64_t N,
                              int64_t C)
{
    if (N < 0 || C < 1 || !mean || !rstd || (dinp && !weight)) return TC_EINVAL;
    if (dweight || dbias) {
        /* each thread owns blocks of LN_BLOCK columns and sums the rows in order */
#pragma omp parallel for schedule(static) if (N * C >= TC_PARALLEL_MIN_WORK)
        for (int64_t c0 = 0; c0 < C; c0 += LN_BLOCK) {
            const int64_t width = C - c0 < LN_BLOCK ? C - c0 : LN_BLOCK;
            double sw[LN_BLOCK] = {0}, sb[LN_BLOCK] = {0};
            for (int64_t n = 0; n < N; n++) {
                const T *dy = dout + n * C + c0, *x = inp + n * C + c0;
                const double m = (double)mean[n], s = (double)rstd[n];
                for (int64_t c = 0; c < width; c++) {
                    sw[c] += (double)dy[c] * (((double)x[c] - m) * s);
                    sb[c] += (double)dy[c];
                }
            }
            if (dweight)
                for (int64_t c = 0; c < width; c++) dweight[c0 + c] += (T)sw[c];
            if (dbias)
                for (int64_t c = 0; c < width; c++) dbias[c0 + c] += (T)sb[c];
        }
    }
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * C >= TC_PARALLEL_MIN_WORK)
        for (int64_t n = 0; n < N; n++) {
            const T *dy = dout + n * C, *x = inp + n * C;
            T *dx = dinp + n * C;
            const double m = (double)mean[n], s = (double)rstd[n];
            double a, b;
            FN(ln_row_dots)(dy, x, weight, C, m, s, &a, &b);
            a /= (double)C;
            b /= (double)C;
            for (int64_t c = 0; c < C; c++) {
                const double g = (double)dy[c] * (double)weight[c];
                dx[c] += (T)(s * (g - a - (((double)x[c] - m) * s) * b));
            }
        }
    }
    return TC_OK;
}
