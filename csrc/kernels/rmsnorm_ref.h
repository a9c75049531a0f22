/* rmsnorm_ref.h: the plain reference of the RMS-norm kernels (rmsnorm_impl.h), written once
 * for real_t: one row at a time, every sum in double, each result rounded to real_t once
 * (no vectors, no chunked column sums, no threads).
 *   forward:  y = x r w + b,  r = 1 / sqrt(sum(x^2) / C + eps)
 *   backward: xhat = x r, gx = g w,  dx = r (gx - xhat mean_c(gx xhat)),
 *             dw = sum_n g xhat, db = sum_n g   (all written) */

// out (N,C), rstd (N,) from inp (N,C), weight (C,), bias (C,) or NULL
int FN(tc_rmsnorm_forward_ref)(real_t *out, real_t *rstd, const real_t *inp, const real_t *weight,
                               const real_t *bias, int64_t N, int64_t C, double eps)
{
    if (N < 0 || C < 1 || !(eps >= 0)) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = inp + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
        const double r = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            out[n * C + c] = (real_t)(x[c] * r * weight[c] + (bias ? bias[c] : 0.0));
        rstd[n] = (real_t)r;
    }
    return TC_OK;
}

// dinp (N,C), dweight (C,), dbias (C,) written, from dout (N,C), inp (N,C), weight (C,) and
// the forward's rstd (N,)
int FN(tc_rmsnorm_backward_ref)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                const real_t *inp, const real_t *weight, const real_t *rstd,
                                int64_t N, int64_t C)
{
    if (N < 0 || C < 1) return TC_EINVAL;
    for (int64_t c = 0; c < C; c++) {
        double dw = 0, db = 0;
        for (int64_t n = 0; n < N; n++) {
            dw += (double)dout[n * C + c] * ((double)inp[n * C + c] * rstd[n]);
            db += dout[n * C + c];
        }
        dweight[c] = (real_t)dw;
        dbias[c] = (real_t)db;
    }
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = inp + n * C, *g = dout + n * C;
        const double r = rstd[n];
        double sgx = 0;
        for (int64_t c = 0; c < C; c++) sgx += (double)g[c] * weight[c] * ((double)x[c] * r);
        for (int64_t c = 0; c < C; c++)
            dinp[n * C + c] = (real_t)(r * ((double)g[c] * weight[c] - (double)x[c] * r * sgx /
                                            (double)C));
    }
    return TC_OK;
}
