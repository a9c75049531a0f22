/* linear_impl.h: fully connected layer, written once for real_t. Every product goes through
 * tc_gemm. */

// out (N,OC), inp (N,C), weight (OC,C), bias (OC,) or NULL
int FN(tc_linear_forward)(real_t *out, const real_t *inp, const real_t *weight, const real_t *bias,
                          int64_t N, int64_t C, int64_t OC)
{
    if (N < 0 || C < 0 || OC < 0) return TC_EINVAL;
    if (bias) {
#pragma omp parallel for schedule(static) if (TC_PAR(N * OC, TC_PARALLEL_MIN_WORK))
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof(real_t));
    }
    return FN(tc_gemm)(out, inp, weight, N, OC, C, OC, C, C, 0, 1, (real_t)1, bias ? (real_t)1 : (real_t)0);
}

// dinp (N,C), dweight (OC,C), dbias (OC,) each optional; dout (N,OC), inp (N,C), weight (OC,C).
// write: TC_WRITE(0/1/2) = dinp/dweight/dbias written, else accumulated. Written outputs have
// the bits accumulating into zeros gives: the products' sums start at +0 (never -0), so
// beta = 0 (C = acc) and beta = 1 over zeros (C = 0 + acc) agree, and so do dbias = s and
// dbias = 0 + s.
int FN(tc_linear_backward)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout, const real_t *inp,
                           const real_t *weight, int64_t N, int64_t C, int64_t OC, int write)
{
    if (N < 0 || C < 0 || OC < 0) return TC_EINVAL;
    const real_t beta_in = TC_WRITES(write, 0) ? (real_t)0 : (real_t)1;
    const real_t beta_w = TC_WRITES(write, 1) ? (real_t)0 : (real_t)1;
    const int set_b = TC_WRITES(write, 2);
    int st = TC_OK;
    if (dinp) st = FN(tc_gemm)(dinp, dout, weight, N, C, OC, C, OC, C, 0, 0, (real_t)1, beta_in);
    if (st == TC_OK && dweight)
        st = FN(tc_gemm)(dweight, dout, inp, OC, C, N, C, OC, C, 1, 0, (real_t)1, beta_w);
    if (st == TC_OK && dbias) {
        /* each thread owns blocks of 64 output channels and sums rows in order */
#pragma omp parallel for schedule(static) if (TC_PAR(N * OC, TC_PARALLEL_MIN_WORK))
        for (int64_t o0 = 0; o0 < OC; o0 += 64) {
            const int64_t width = OC - o0 < 64 ? OC - o0 : 64;
            real_t s[64] = {0};
            for (int64_t n = 0; n < N; n++) {
                const real_t *row = dout + n * OC + o0;
                for (int64_t o = 0; o < width; o++) s[o] += row[o];
            }
            if (set_b)
                for (int64_t o = 0; o < width; o++) dbias[o0 + o] = s[o];
            else
                for (int64_t o = 0; o < width; o++) dbias[o0 + o] += s[o];
        }
    }
    return st;
}
