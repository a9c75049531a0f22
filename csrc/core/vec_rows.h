/* vec_rows.h: reductions over one contiguous row through the vectors of vec_math.h,
 * written once for real_t and included per dtype (after vec_math.h) by the softmax and
 * cross-entropy kernels. Every routine is an always-inline body: it is compiled into the
 * caller's baseline and AVX2 variants. Sums use two vector accumulators, combined lane by
 * lane in a fixed order (reproducible); a tail of fewer than VL elements goes through the
 * same vector code on a partial vector. */

/* max of x[0..C), NaN ignored; -inf for C == 0 */
__attribute__((always_inline)) static inline real_t FN(vrow_max)(const real_t *x, int64_t C)
{
    VF m0 = VSPLAT(-INFINITY), m1 = m0;
    int64_t c = 0;
    for (; c + 2 * VL <= C; c += 2 * VL) {
        m0 = VMAX(VLOAD(x + c), m0);
        m1 = VMAX(VLOAD(x + c + VL), m1);
    }
    for (; c + VL <= C; c += VL) m0 = VMAX(VLOAD(x + c), m0);
    if (c < C) m1 = VMAX(VLOADR(x + c, C - c, -INFINITY, C >= VL), m1);
    return VHMAX(VMAX(m0, m1));
}

/* sum_c a[c] * (b ? b[c] : 1) */
__attribute__((always_inline)) static inline real_t FN(vrow_dot)(const real_t *a, const real_t *b, int64_t C)
{
    VF s0 = VSPLAT(0), s1 = s0;
    int64_t c = 0;
    if (b) {
        for (; c + 2 * VL <= C; c += 2 * VL) {
            s0 += VLOAD(a + c) * VLOAD(b + c);
            s1 += VLOAD(a + c + VL) * VLOAD(b + c + VL);
        }
        for (; c + VL <= C; c += VL) s0 += VLOAD(a + c) * VLOAD(b + c);
        if (c < C) s1 += VLOADR(a + c, C - c, 0, C >= VL) * VLOADR(b + c, C - c, 0, C >= VL);
    } else {
        for (; c + 2 * VL <= C; c += 2 * VL) {
            s0 += VLOAD(a + c);
            s1 += VLOAD(a + c + VL);
        }
        for (; c + VL <= C; c += VL) s0 += VLOAD(a + c);
        if (c < C) s1 += VLOADR(a + c, C - c, 0, C >= VL);
    }
    return VHSUM(s0 + s1);
}

/* sum_c (x[c] - m) */
__attribute__((always_inline)) static inline real_t FN(vrow_sum_sub)(const real_t *x, int64_t C, real_t m)
{
    VF s0 = VSPLAT(0), s1 = s0;
    int64_t c = 0;
    for (; c + 2 * VL <= C; c += 2 * VL) {
        s0 += VLOAD(x + c) - m;
        s1 += VLOAD(x + c + VL) - m;
    }
    for (; c + VL <= C; c += VL) s0 += VLOAD(x + c) - m;
    if (c < C) s1 += VLOADR(x + c, C - c, m, C >= VL) - m;
    return VHSUM(s0 + s1);
}

/* sum_c exp(x[c] - m) for the row max m (padding lanes: exp(-inf - m) = 0 when m is finite;
 * otherwise the sum is NaN anyway, as it must be); y[c] = exp(x[c] - m) too when y != NULL */
__attribute__((always_inline)) static inline real_t FN(vrow_exp_sum)(real_t *y, const real_t *x, int64_t C, real_t m)
{
    VF s0 = VSPLAT(0), s1 = s0;
    int64_t c = 0;
    if (y) {
        for (; c + VL <= C; c += VL) {
            const VF e = VEXP(VLOAD(x + c) - m);
            VSTORE(y + c, e);
            s0 += e;
        }
        if (c < C) {
            const VF e = VEXP(VLOADR(x + c, C - c, -INFINITY, C >= VL) - m);
            VSTORER(y + c, e, C - c, C >= VL);
            s1 += e;
        }
    } else {
        for (; c + 2 * VL <= C; c += 2 * VL) {
            s0 += VEXP(VLOAD(x + c) - m);
            s1 += VEXP(VLOAD(x + c + VL) - m);
        }
        for (; c + VL <= C; c += VL) s0 += VEXP(VLOAD(x + c) - m);
        if (c < C) s1 += VEXP(VLOADR(x + c, C - c, -INFINITY, C >= VL) - m);
    }
    return VHSUM(s0 + s1);
}
