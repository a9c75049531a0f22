/* decode_gemv.h: the matrix-vector product of KV-cache decoding, written once.
 *
 * Included by decode_common_impl.h once per instruction set with real_t, SFX, DVEC (a 32-byte GCC
 * vector of real_t), DEC_VL (its lanes), KNAME (the function name) and KATTR (a target
 * attribute, or nothing), like gemm_kernel.h. The vector type is plain GNU C: AVX2/FMA
 * under __attribute__((target("avx2,fma"))), SSE2 pairs (or NEON, ...) otherwise.
 *
 * Why not tc_gemm: a decoding step multiplies one token (or a few rows) by every weight
 * matrix; the GEMM would pack (read and write) the whole weight matrix to use it once. Here
 * each weight row is read once, straight from the (OC, C) layout, and dotted with the N
 * input rows while it sits in L1; the work is bound by memory bandwidth, not arithmetic.
 */

/* out[n, o] = dot(W[o, :], x[n, :]) (+ b[o]) for o in [o0, o1), n < N;
 * out (N,OC), x (N,C), W (OC,C), b (OC,) or NULL. The weights are read strictly in order,
 * one row at a time (a single sequential stream: interleaving four rows measured half the
 * bandwidth), each row dotted with the N input rows while it sits in L1. Every dot product
 * runs in one fixed order (four vector accumulators, then one, then the lanes, then the
 * tail, then the bias), whoever computes it. */
KATTR static void KNAME(real_t *restrict out, const real_t *restrict x, const real_t *restrict W,
                        const real_t *restrict b, int64_t N, int64_t C, int64_t OC, int64_t o0,
                        int64_t o1)
{
    const int64_t C4 = C / (4 * DEC_VL) * (4 * DEC_VL), C1 = C / DEC_VL * DEC_VL;
    for (int64_t o = o0; o < o1; o++) {
        const real_t *w = W + o * C;
        for (int64_t n = 0; n < N; n++) {
            const real_t *xn = x + n * C;
            DVEC a0 = (DVEC){0}, a1 = (DVEC){0}, a2 = (DVEC){0}, a3 = (DVEC){0};
            for (int64_t c = 0; c < C4; c += 4 * DEC_VL) {
                a0 += DEC_LOAD(w + c) * DEC_LOAD(xn + c);
                a1 += DEC_LOAD(w + c + DEC_VL) * DEC_LOAD(xn + c + DEC_VL);
                a2 += DEC_LOAD(w + c + 2 * DEC_VL) * DEC_LOAD(xn + c + 2 * DEC_VL);
                a3 += DEC_LOAD(w + c + 3 * DEC_VL) * DEC_LOAD(xn + c + 3 * DEC_VL);
            }
            for (int64_t c = C4; c < C1; c += DEC_VL) a0 += DEC_LOAD(w + c) * DEC_LOAD(xn + c);
            const DVEC s = (a0 + a1) + (a2 + a3);
            real_t acc = 0;
            for (int i = 0; i < DEC_VL; i++) acc += s[i];
            for (int64_t c = C1; c < C; c++) acc += w[c] * xn[c];
            out[n * OC + o] = b ? acc + b[o] : acc;
        }
    }
}
