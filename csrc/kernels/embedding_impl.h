/* embedding_impl.h: token embedding lookup and its scatter-add backward, written once for real_t.
 *
 * ids are int64 (the bindings convert any integer dtype). Both kernels check every id
 * against [0, V) before touching memory and return TC_EINVAL otherwise, even though the
 * bindings have already checked: an id out of range must never read or write out of
 * bounds.
 */

#ifndef EMB_BLOCK
#define EMB_BLOCK 16 /* columns per thread block in the backward */
#endif

/* TC_OK if every ids[n] lies in [0, V), TC_EINVAL otherwise. */
static int FN(emb_check_ids)(const int64_t *ids, int64_t N, int64_t V)
{
    int bad = 0;
    for (int64_t n = 0; n < N; n++) bad |= ids[n] < 0 || ids[n] >= V;
    return bad ? TC_EINVAL : TC_OK;
}

// out (N,D), ids (N,) in [0,V), weight (V,D): out[n] = weight[ids[n]]
int FN(tc_embedding_forward)(real_t *out, const int64_t *ids, const real_t *weight, int64_t N,
                             int64_t V, int64_t D)
{
    if (N < 0 || V < 0 || D < 0) return TC_EINVAL;
    if (FN(emb_check_ids)(ids, N, V) != TC_OK) return TC_EINVAL;
#pragma omp parallel for schedule(static) if (TC_PAR(N * D, TC_PARALLEL_MIN_WORK))
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * D, weight + ids[n] * D, (size_t)D * sizeof(real_t));
    return TC_OK;
}

// dweight (V,D) (accumulated), dout (N,D), ids (N,) in [0,V): dweight[ids[n]] += dout[n]
int FN(tc_embedding_backward)(real_t *dweight, const real_t *dout, const int64_t *ids, int64_t N,
                              int64_t V, int64_t D, int write)
{
    if (N < 0 || V < 0 || D < 0) return TC_EINVAL;
    if (FN(emb_check_ids)(ids, N, V) != TC_OK) return TC_EINVAL;
    /* written: zeroed, then accumulated into (rows no id names stay 0) */
    if (TC_WRITES(write, 0)) memset(dweight, 0, (size_t)V * (size_t)D * sizeof(real_t));
    /* Repeated ids write the same dweight row, so rows cannot be shared out among threads.
     * Columns can: each thread owns blocks of EMB_BLOCK columns and adds the rows of dout
     * into them in order n = 0..N-1. No element is touched by two threads (no atomics)
     * and every sum runs in the serial order, whatever the thread count. */
#pragma omp parallel for schedule(static) if (TC_PAR(N * D, TC_PARALLEL_MIN_WORK))
    for (int64_t d0 = 0; d0 < D; d0 += EMB_BLOCK) {
        const int64_t width = D - d0 < EMB_BLOCK ? D - d0 : EMB_BLOCK;
        for (int64_t n = 0; n < N; n++) {
            real_t *dst = dweight + ids[n] * D + d0;
            const real_t *src = dout + n * D + d0;
            for (int64_t d = 0; d < width; d++) dst[d] += src[d];
        }
    }
    return TC_OK;
}
