/* linear_impl.h: fully connected layer, written once for T. Every product goes through
 * tc_gemm. */

// out (N,OC), inp (N,C), weight (OC,C), bias (OC,) or NULL
int FN(tc_linear_forward)(T *out, const T *inp, const T *weight, const T *bias,
                          int64_t N, int64_t C, int64_t OC)
{
    if (N < 0 || C < 0 || OC < 0) return TC_EINVAL;
    if (bias) {
#pragma omp parallel for schedule(static) if (N * OC >= TC_PARALLEL_MIN_WORK)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof(T));
    }
    return FN(tc_gemm)(out, inp, weight, N, OC, C, OC, C, C, 0, 1, (T)1, bias ? (T)1 : (T)0);
}

// dinp (N,C), dweight (OC,C), dbias (OC,) each optional; dout (N,OC), inp (N,C), weight (OC,C)
int FN(tc_linear_backward)(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp,
                           const T *weight, int64_t N, int64_t C, int64_t OC)
{
    return FN(tc_linear_backward_set)(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 0);
}

// as tc_linear_backward; the outputs named in `set` (TC_LINEAR_SET_*) are written, not
// accumulated. The same bits as accumulating into zeros: the products' sums start at +0
// (never -0), so beta = 0 (C = acc) and beta = 1 over zeros (C = 0 + acc) agree, and so do
// dbias = s and dbias = 0 + s.
int FN(tc_linear_backward_set)(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp,
                               const T *weight, int64_t N, int64_t C, int64_t OC, int set)
{
    if (N < 0 || C < 0 || OC < 0 || (set & ~TC_LINEAR_SET_ALL)) return TC_EINVAL;
    const T beta_in = (set & TC_LINEAR_SET_DINP) ? (T)0 : (T)1;
    const T beta_w = (set & TC_LINEAR_SET_DWEIGHT) ? (T)0 : (T)1;
    const int set_b = (set & TC_LINEAR_SET_DBIAS) != 0;
    int st = TC_OK;
    if (dinp) st = FN(tc_gemm)(dinp, dout, weight, N, C, OC, C, OC, C, 0, 0, (T)1, beta_in);
    if (st == TC_OK && dweight)
        st = FN(tc_gemm)(dweight, dout, inp, OC, C, N, C, OC, C, 1, 0, (T)1, beta_w);
    if (st == TC_OK && dbias) {
        /* each thread owns blocks of 64 output channels and sums rows in order */
#pragma omp parallel for schedule(static) if (N * OC >= TC_PARALLEL_MIN_WORK)
        for (int64_t o0 = 0; o0 < OC; o0 += 64) {
            const int64_t width = OC - o0 < 64 ? OC - o0 : 64;
            T s[64] = {0};
            for (int64_t n = 0; n < N; n++) {
                const T *row = dout + n * OC + o0;
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
