/* layernorm_ref.h: the plain reference of the layer-norm kernels (layernorm_impl.h,
 * layernorm_rows.h), written once for real_t: one row at a time, mean and biased variance
 * by the two-pass textbook formula, every sum in double, each result rounded to real_t once
 * (no vectors, no chunked column sums, no threads).
 *   forward:  y = (x - mean) rstd w + b,  rstd = 1 / sqrt(sum((x - mean)^2) / C + eps)
 *   backward: xhat = (x - mean) rstd, gx = g w,
 *             dx = rstd (gx - mean_c(gx) - xhat mean_c(gx xhat)),
 *             dw = sum_n g xhat, db = sum_n g   (all written) */

// out (N,C), mean (N,), rstd (N,) from inp (N,C), weight (C,), bias (C,) or NULL
int FN(tc_layernorm_forward_ref)(real_t *out, real_t *mean, real_t *rstd, const real_t *inp,
                                 const real_t *weight, const real_t *bias, int64_t N, int64_t C,
                                 double eps)
{
    if (N < 0 || C < 1 || !(eps >= 0)) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = inp + n * C;
        double m = 0, var = 0;
        for (int64_t c = 0; c < C; c++) m += x[c];
        m /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        const double r = 1.0 / sqrt(var / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            out[n * C + c] = (real_t)((x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0));
        mean[n] = (real_t)m;
        rstd[n] = (real_t)r;
    }
    return TC_OK;
}

// dinp (N,C), dweight (C,), dbias (C,) written, from dout (N,C), inp (N,C), weight (C,) and
// the forward's mean (N,), rstd (N,)
int FN(tc_layernorm_backward_ref)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                  const real_t *inp, const real_t *weight, const real_t *mean,
                                  const real_t *rstd, int64_t N, int64_t C)
{
    if (N < 0 || C < 1) return TC_EINVAL;
    for (int64_t c = 0; c < C; c++) {
        double dw = 0, db = 0;
        for (int64_t n = 0; n < N; n++) {
            dw += (double)dout[n * C + c] * ((inp[n * C + c] - (double)mean[n]) * rstd[n]);
            db += dout[n * C + c];
        }
        dweight[c] = (real_t)dw;
        dbias[c] = (real_t)db;
    }
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = inp + n * C, *g = dout + n * C;
        const double m = mean[n], r = rstd[n];
        double sg = 0, sgx = 0;
        for (int64_t c = 0; c < C; c++) {
            sg += (double)g[c] * weight[c];
            sgx += (double)g[c] * weight[c] * ((x[c] - m) * r);
        }
        for (int64_t c = 0; c < C; c++)
            dinp[n * C + c] = (real_t)(r * ((double)g[c] * weight[c] - sg / (double)C -
                                            (x[c] - m) * r * sgx / (double)C));
    }
    return TC_OK;
}
