/* dropout_impl.h: inverted dropout, written once for real_t.
 *
 * mask[i] = 1 / (1 - p) if element i is kept, else 0, where element i (the flat C-order
 * index) is kept iff word i of the Philox stream (seed, subsequence 0) is
 * >= ceil(p * 2^32), i.e. U_i >= p with U_i uniform in [0, 1) (rng.h). The decision does
 * not depend on T, the thread count or the chunking: float32 and float64 calls with one
 * seed drop the same elements.
 *
 * out = inp * mask and dinp += dout * mask, multiplied as torch does (x * mask), so a NaN
 * or inf in a dropped position stays NaN, and p == 1 gives inp * 0.
 */

/* mode 0: out = inp * mask; 1: out += inp * mask; 2: out = mask (inp unused); 3: out =
 * 0 + inp * mask (a written gradient: the bits of 1 into zeros); element i uses word
 * first + i of the stream */
static int FN(dropout_apply)(real_t *out, const real_t *inp, int64_t N, double p, uint64_t seed,
                             uint64_t first, int mode)
{
    if (N < 0 || !(p >= 0.0 && p <= 1.0)) return TC_EINVAL;
    if (N == 0) return TC_OK;
    if (!out || (mode != 2 && !inp)) return TC_EINVAL;
    /* keep iff word >= thr64; thr64 == 2^32 (p == 1, or p within 2^-32 of 1) keeps nothing:
     * then scale = 0 makes every mask value 0 whatever the (clamped) 32-bit compare says.
     * The compare is done in 32 bits: a 64-bit unsigned compare does not vectorise on the
     * baseline x86-64 and made the loops 10x slower. */
    const uint64_t thr64 = tc_rng_keep_threshold(p);
    const int keep_none = thr64 > UINT32_MAX;
    const uint32_t thr = keep_none ? UINT32_MAX : (uint32_t)thr64;
    const real_t scale = keep_none ? (real_t)0 : (real_t)(1.0 / (1.0 - p));
    const int64_t chunks = (N + TC_DROPOUT_CHUNK - 1) / TC_DROPOUT_CHUNK;
#pragma omp parallel for schedule(static) if (TC_PAR(N * 16, TC_PARALLEL_MIN_WORK))
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t i0 = c * TC_DROPOUT_CHUNK;
        const int64_t n = N - i0 < TC_DROPOUT_CHUNK ? N - i0 : TC_DROPOUT_CHUNK;
        uint32_t words[TC_DROPOUT_CHUNK + 4];
        /* element i0 + k uses word (first + i0 + k) % 4 of block (first + i0 + k) / 4 */
        const uint64_t idx = first + (uint64_t)i0;
        const int64_t off = (int64_t)(idx & 3);
        tc_rng_words(words, seed, 0, idx >> 2, (off + n + 3) >> 2);
        const uint32_t *w = words + off;
        real_t *o = out + i0;
        const real_t *x = inp ? inp + i0 : NULL;
        if (mode == 0)
            for (int64_t k = 0; k < n; k++) o[k] = x[k] * (w[k] >= thr ? scale : (real_t)0);
        else if (mode == 1)
            for (int64_t k = 0; k < n; k++) o[k] += x[k] * (w[k] >= thr ? scale : (real_t)0);
        else if (mode == 3)
            for (int64_t k = 0; k < n; k++) o[k] = (real_t)0 + x[k] * (w[k] >= thr ? scale : (real_t)0);
        else
            for (int64_t k = 0; k < n; k++) o[k] = w[k] >= thr ? scale : (real_t)0;
    }
    return TC_OK;
}

// out (N,) = inp (N,) * mask (N,); p in [0, 1], else TC_EINVAL
int FN(tc_dropout_forward)(real_t *out, const real_t *inp, int64_t N, double p, uint64_t seed)
{
    return FN(dropout_apply)(out, inp, N, p, seed, 0, 0);
}

// out (N,) = inp (N,) * mask, element i with word first + i of the stream
int FN(tc_dropout_forward_at)(real_t *out, const real_t *inp, int64_t N, double p, uint64_t seed,
                              uint64_t first)
{
    return FN(dropout_apply)(out, inp, N, p, seed, first, 0);
}

// dinp (N,) (+)= dout (N,) * mask (N,), the mask regenerated from (p, seed); write:
// TC_WRITE(0) writes dinp (0 + value, not read), else adds to it
int FN(tc_dropout_backward)(real_t *dinp, const real_t *dout, int64_t N, double p, uint64_t seed,
                            int write)
{
    return FN(tc_dropout_backward_at)(dinp, dout, N, p, seed, 0, write);
}

// the same, element i with word first + i of the stream
int FN(tc_dropout_backward_at)(real_t *dinp, const real_t *dout, int64_t N, double p, uint64_t seed,
                               uint64_t first, int write)
{
    return FN(dropout_apply)(dinp, dout, N, p, seed, first, TC_WRITES(write, 0) ? 3 : 1);
}

// mask (N,) = 1 / (1 - p) where kept, else 0
int FN(tc_dropout_mask)(real_t *mask, int64_t N, double p, uint64_t seed)
{
    return FN(dropout_apply)(mask, NULL, N, p, seed, 0, 2);
}
