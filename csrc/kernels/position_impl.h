/* position_impl.h: sinusoidal position encodings (Vaswani et al. 2017), written once for real_t.
 *
 *   PE[n, 2k]   = sin(pos / base^(2k/D)),
 *   PE[n, 2k+1] = cos(pos / base^(2k/D)),   pos = offset + n;
 *
 * with an odd D the last column is a sin. Angles are computed in double for both dtypes
 * and rounded to real_t at the end. (In this file the sequence length is called L because T
 * is the element type.)
 */

// out (L,D): the table above for positions offset .. offset + L - 1
int FN(tc_position_sinusoidal)(real_t *out, int64_t L, int64_t D, double base, int64_t offset)
{
    if (L < 0 || D < 0 || !(base > 0) || !isfinite(base)) return TC_EINVAL;
    if (L == 0 || D == 0) return TC_OK;
    const int64_t K = (D + 1) / 2; /* frequencies: one per (sin, cos) pair */
    double *denom = malloc((size_t)K * sizeof(double));
    if (!denom) return TC_ENOMEM;
    for (int64_t k = 0; k < K; k++) denom[k] = pow(base, (double)(2 * k) / (double)D);
    /* a sin and a cos cost tens of operations each */
#pragma omp parallel for schedule(static) if (TC_PAR(L * D, TC_PARALLEL_MIN_WORK / 16))
    for (int64_t n = 0; n < L; n++) {
        const double pos = (double)offset + (double)n;
        real_t *row = out + n * D;
        for (int64_t k = 0; k < D / 2; k++) {
            const double a = pos / denom[k];
            row[2 * k] = (real_t)sin(a);
            row[2 * k + 1] = (real_t)cos(a);
        }
        if (D % 2) row[D - 1] = (real_t)sin(pos / denom[K - 1]);
    }
    free(denom);
    return TC_OK;
}

// out (B,L,D) = inp (B,L,D) + PE (L,D) (the table above, rounded to real_t); out may be inp
int FN(tc_position_add_sinusoidal)(real_t *out, const real_t *inp, int64_t B, int64_t L, int64_t D,
                                   double base, int64_t offset)
{
    if (B < 0 || L < 0 || D < 0 || !(base > 0) || !isfinite(base)) return TC_EINVAL;
    if (B == 0 || L == 0 || D == 0) return TC_OK;
    real_t *pe = malloc((size_t)L * (size_t)D * sizeof(real_t));
    if (!pe) return TC_ENOMEM;
    int st = FN(tc_position_sinusoidal)(pe, L, D, base, offset);
    if (st == TC_OK) {
#pragma omp parallel for schedule(static) if (TC_PAR(B * L * D, TC_PARALLEL_MIN_WORK))
        for (int64_t r = 0; r < B * L; r++) {
            const real_t *p = pe + (r % L) * D, *x = inp + r * D;
            real_t *y = out + r * D;
            for (int64_t d = 0; d < D; d++) y[d] = x[d] + p[d];
        }
    }
    free(pe);
    return st;
}
