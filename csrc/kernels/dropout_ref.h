/* dropout_ref.h: the plain reference of inverted dropout (dropout_impl.h), written once for
 * real_t: element i draws word i of the Philox stream of seed (tc_rng_u32, one call per
 * element: no blocks, no chunks, no threads), is kept iff U_i = word * 2^-32 >= p (exact in
 * double), and is multiplied by 1 / (1 - p) rounded to real_t (0 when p == 1). The same
 * operations as the kernel, so the two agree bitwise. */

/* out (N,) = inp (N,) * mask (N,) */
static int FN(dropout_ref_apply)(real_t *out, const real_t *inp, int64_t N, double p, uint64_t seed)
{
    if (N < 0 || !(p >= 0.0 && p <= 1.0)) return TC_EINVAL;
    const real_t scale = p < 1.0 ? (real_t)(1.0 / (1.0 - p)) : (real_t)0;
    for (int64_t i = 0; i < N; i++) {
        const double u = (double)tc_rng_u32(seed, 0, (uint64_t)i) * 0x1p-32;
        out[i] = inp[i] * (u >= p ? scale : (real_t)0);
    }
    return TC_OK;
}

// out (N,) = inp (N,) * mask (N,); p in [0, 1]
int FN(tc_dropout_forward_ref)(real_t *out, const real_t *inp, int64_t N, double p, uint64_t seed)
{
    return FN(dropout_ref_apply)(out, inp, N, p, seed);
}

// dinp (N,) = 0 + dout (N,) * mask (N,): written as every backward writes (the bits of
// accumulating into zeros: a dropped -0 gradient is +0)
int FN(tc_dropout_backward_ref)(real_t *dinp, const real_t *dout, int64_t N, double p, uint64_t seed)
{
    const int st = FN(dropout_ref_apply)(dinp, dout, N, p, seed);
    for (int64_t i = 0; st == TC_OK && i < N; i++) dinp[i] = (real_t)0 + dinp[i];
    return st;
}
