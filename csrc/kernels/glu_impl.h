/* glu_impl.h: the gated activation kernels, written once for real_t (glu.c).
 *
 *   forward:  a = act(gate), out = a * up (a cached in actg for the backward when given)
 *   backward: dgate (+)= dout * up * act'(gate), dup (+)= dout * a
 *
 * The array is cut into blocks of GLU_BLOCK elements, each a work item (in parallel from
 * GLU_PAR_MIN elements on): the activation of a block goes through the activation table
 * (tc_activation_forward / _backward: the vectorised kernels every activation has, each
 * call below its own parallel threshold), the products are plain vectorisable loops. The
 * result of an element depends on that element alone: bitwise the same for any thread
 * count. */

// out (N,) = act(gate (N,)) * up (N,); actg (N,) = act(gate) or NULL (not kept: then out may
// be gate itself, overwritten in place)
int FN(tc_glu_forward)(int act, real_t *out, real_t *actg, const real_t *gate, const real_t *up,
                       int64_t N)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT || (N > 0 && (!out || !gate || !up)))
        return TC_EINVAL;
    if (N == 0) return TC_OK;
    const int64_t nb = (N + GLU_BLOCK - 1) / GLU_BLOCK;
    int status = TC_OK;
#pragma omp parallel for schedule(static) if (TC_PAR(N, GLU_PAR_MIN))
    for (int64_t blk = 0; blk < nb; blk++) {
        const int64_t i0 = blk * GLU_BLOCK, n = N - i0 < GLU_BLOCK ? N - i0 : GLU_BLOCK;
        real_t *a = actg ? actg + i0 : out + i0; /* act(gate) first, then the product */
        const int st = FN(tc_activation_forward)(act, a, gate + i0, n);
        if (st != TC_OK) {
#pragma omp atomic write
            status = st;
            continue;
        }
        real_t *o = out + i0;
        const real_t *u = up + i0;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = a[i] * u[i];
    }
    return status;
}

// dgate (N,) (+)= dout (N,) * up (N,) * act'(gate (N,)), dup (N,) (+)= dout * act(gate);
// actg (N,): the forward's act(gate), or NULL (recomputed); either gradient may be NULL;
// dup may be dout itself (in place; dgate must not); write: TC_WRITE(0) dgate, TC_WRITE(1) dup
// (written, else added to)
int FN(tc_glu_backward)(int act, real_t *dgate, real_t *dup, const real_t *dout,
                        const real_t *gate, const real_t *up, const real_t *actg, int64_t N,
                        int write)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT ||
        (N > 0 && (!dout || !gate || !up || (!dgate && !dup))))
        return TC_EINVAL;
    if (N == 0) return TC_OK;
    const int64_t nb = (N + GLU_BLOCK - 1) / GLU_BLOCK;
    const int wg = (int)TC_WRITES(write, 0), wu = (int)TC_WRITES(write, 1);
    int status = TC_OK;
#pragma omp parallel for schedule(static) if (TC_PAR(N, GLU_PAR_MIN))
    for (int64_t blk = 0; blk < nb; blk++) {
        const int64_t i0 = blk * GLU_BLOCK, n = N - i0 < GLU_BLOCK ? N - i0 : GLU_BLOCK;
        real_t t[GLU_BLOCK];
        const real_t *g = dout + i0, *u = up + i0;
        int st = TC_OK;
        if (dgate) { /* first: dup may be dout itself (then overwritten block by block) */
#pragma omp simd
            for (int64_t i = 0; i < n; i++) t[i] = g[i] * u[i];
            st = FN(tc_activation_backward)(act, dgate + i0, t, gate + i0, n,
                                            wg ? TC_WRITE(0) : TC_ACCUMULATE);
        }
        if (dup && st == TC_OK) {
            const real_t *a = actg ? actg + i0 : t;
            if (!actg) st = FN(tc_activation_forward)(act, t, gate + i0, n);
            real_t *d = dup + i0;
            if (wu) {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) d[i] = (real_t)0 + g[i] * a[i];
            } else {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) d[i] += g[i] * a[i];
            }
        }
        if (st != TC_OK) {
#pragma omp atomic write
            status = st;
        }
    }
    return status;
}
