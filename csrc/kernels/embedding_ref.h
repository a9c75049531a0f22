/* embedding_ref.h: the plain reference of the embedding lookup and its scatter-add backward
 * (embedding_impl.h), written once for real_t: a row copy, and rows of dout added into a
 * zeroed dweight in order n = 0..N-1 (in real_t, as the kernel: no column blocks, no
 * threads), so both agree with the kernels bitwise. */

// out (N,D) = weight (V,D) rows picked by ids (N,) in [0, V)
int FN(tc_embedding_forward_ref)(real_t *out, const int64_t *ids, const real_t *weight, int64_t N,
                                 int64_t V, int64_t D)
{
    if (N < 0 || V < 0 || D < 0) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++) out[n * D + d] = weight[ids[n] * D + d];
    return TC_OK;
}

// dweight (V,D) written: sum over n with ids[n] == v of dout (N,D) row n, in order of n
int FN(tc_embedding_backward_ref)(real_t *dweight, const real_t *dout, const int64_t *ids,
                                  int64_t N, int64_t V, int64_t D)
{
    if (N < 0 || V < 0 || D < 0) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V) return TC_EINVAL;
    for (int64_t i = 0; i < V * D; i++) dweight[i] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++) dweight[ids[n] * D + d] += dout[n * D + d];
    return TC_OK;
}
