/* model_decode_gemv.h: the matrix-vector product of KV-cache decoding, written once.
 *
 * Included by model_decode_impl.h once per instruction set with T, SFX, DVEC (a 32-byte GCC
 * vector of T), DEC_VL (its lanes), KNAME (the function name) and KATTR (a target
 * attribute, or nothing), like gemm_kernel.h. The vector type is plain GNU C: AVX2/FMA
 * under __attribute__((target("avx2,fma"))), SSE2 pairs (or NEON, ...) otherwise.
 *
 * Why not tc_gemm: a decoding step multiplies one token (or a few rows) by every weight
 * matrix; the GEMM would pack (read and write) the whole weight matrix to use it once. Here
 * each weight row is read once, straight from the (OC, C) layout, and dotted with the N
 * input rows while it sits in L1; the work is bound by memory bandwidth, not arithmetic.
 */

/* out[n, o] = dot(W[o, :], x[n, :]) (+ b[o]) for o in [o0, o1), n < N;
 * out (N,OC), x (N,C), W (OC,C), b (OC,) or NULL. Every dot product runs in one fixed
 * order (two vector accumulators, then the lanes, then the tail, then the bias), whoever
 * computes it. */
KATTR static void KNAME(T *restrict out, const T *restrict x, const T *restrict W,
                        const T *restrict b, int64_t N, int64_t C, int64_t OC, int64_t o0,
                        int64_t o1)
{
    const int64_t C2 = C / (2 * DEC_VL) * (2 * DEC_VL);
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4) {
        const T *w0 = W + o * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
        for (int64_t n = 0; n < N; n++) {
            const T *xn = x + n * C;
            DVEC a[4][2];
            for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = (DVEC){0};
            for (int64_t c = 0; c < C2; c += 2 * DEC_VL) {
                const DVEC x0 = DEC_LOAD(xn + c), x1 = DEC_LOAD(xn + c + DEC_VL);
                a[0][0] += DEC_LOAD(w0 + c) * x0;
                a[0][1] += DEC_LOAD(w0 + c + DEC_VL) * x1;
                a[1][0] += DEC_LOAD(w1 + c) * x0;
                a[1][1] += DEC_LOAD(w1 + c + DEC_VL) * x1;
                a[2][0] += DEC_LOAD(w2 + c) * x0;
                a[2][1] += DEC_LOAD(w2 + c + DEC_VL) * x1;
                a[3][0] += DEC_LOAD(w3 + c) * x0;
                a[3][1] += DEC_LOAD(w3 + c + DEC_VL) * x1;
            }
            const T *wr[4] = {w0, w1, w2, w3};
            for (int r = 0; r < 4; r++) {
                const DVEC s = a[r][0] + a[r][1];
                T acc = 0;
                for (int i = 0; i < DEC_VL; i++) acc += s[i];
                for (int64_t c = C2; c < C; c++) acc += wr[r][c] * xn[c];
                out[n * OC + o + r] = b ? acc + b[o + r] : acc;
            }
        }
    }
    for (; o < o1; o++) {
        const T *w0 = W + o * C;
        for (int64_t n = 0; n < N; n++) {
            const T *xn = x + n * C;
            DVEC a0 = (DVEC){0}, a1 = (DVEC){0};
            for (int64_t c = 0; c < C2; c += 2 * DEC_VL) {
                a0 += DEC_LOAD(w0 + c) * DEC_LOAD(xn + c);
                a1 += DEC_LOAD(w0 + c + DEC_VL) * DEC_LOAD(xn + c + DEC_VL);
            }
            const DVEC s = a0 + a1;
            T acc = 0;
            for (int i = 0; i < DEC_VL; i++) acc += s[i];
            for (int64_t c = C2; c < C; c++) acc += w0[c] * xn[c];
            out[n * OC + o] = b ? acc + b[o] : acc;
        }
    }
}
