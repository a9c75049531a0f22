/* softmax_ref.h: the plain reference of the softmax / log-softmax kernels (softmax_impl.h),
 * written once for real_t: one slice at a time, the max, exp and sums in double, rounded to
 * real_t at the store (no vector exp, no tiles, no threads). is_log selects log-softmax.
 * Special values come out as the formulas give them: a NaN or +inf max, or an all -inf
 * slice, makes x - max NaN and so the whole slice NaN. */

// out (outer,C,inner) = softmax / log-softmax of inp (outer,C,inner) along C
int FN(tc_softmax_forward_ref)(real_t *out, const real_t *inp, int64_t outer, int64_t C,
                               int64_t inner, int is_log)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const real_t *x = inp + o * C * inner + j;
            real_t *y = out + o * C * inner + j;
            double m = -INFINITY, sum = 0;
            for (int64_t c = 0; c < C; c++)
                if (x[c * inner] > m || x[c * inner] != x[c * inner]) m = x[c * inner];
            for (int64_t c = 0; c < C; c++) sum += exp(x[c * inner] - m);
            for (int64_t c = 0; c < C; c++)
                y[c * inner] = (real_t)(is_log ? x[c * inner] - m - log(sum)
                                               : exp(x[c * inner] - m) / sum);
        }
    return TC_OK;
}

// dinp (outer,C,inner) = the gradient (written) from dout and the forward's out (same shape):
// softmax dx = y (g - sum_c g y), log-softmax dx = g - exp(y) sum_c g (sums in double)
int FN(tc_softmax_backward_ref)(real_t *dinp, const real_t *dout, const real_t *out,
                                int64_t outer, int64_t C, int64_t inner, int is_log)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const int64_t base = o * C * inner + j;
            double s = 0;
            for (int64_t c = 0; c < C; c++)
                s += (double)dout[base + c * inner] * (is_log ? 1.0 : out[base + c * inner]);
            for (int64_t c = 0; c < C; c++) {
                const double g = dout[base + c * inner], y = out[base + c * inner];
                dinp[base + c * inner] = (real_t)(is_log ? g - exp(y) * s : y * (g - s));
            }
        }
    return TC_OK;
}
