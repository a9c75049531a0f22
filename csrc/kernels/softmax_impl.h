/* softmax_impl.h: softmax / log-softmax along C of an (outer, C, inner) array, written once
 * for real_t.
 *
 * Element (o, c, j) lives at o * C * inner + c * inner + j. For inner == 1 (the last axis)
 * each of the `outer` rows is contiguous; otherwise the C values of one softmax are `inner`
 * apart, and a task handles a tile of up to TC_SOFTMAX_TILE neighbouring j at once so that
 * every inner loop runs over contiguous memory.
 *
 * Forward subtracts the maximum first, so large inputs (1000, 1e30) do not overflow.
 * Special values follow torch.softmax: a slice whose values are all -inf, or that holds
 * +inf or NaN, gives NaN everywhere in that slice (no probability distribution exists);
 * -inf next to finite values gives probability 0 (log-probability -inf).
 *
 * Backward takes the forward OUTPUT y:
 *   softmax:      dx += y * (g - sum_c g * y)
 *   log-softmax:  dx += g - exp(y) * sum_c g
 * Every sum is taken by one task in a fixed order, so results are bitwise identical for any
 * thread count.
 */

#include "vec_math.h"
#include "vec_rows.h"

/* Each row / tile routine is an always-inline body over VL-lane vectors (vec_math.h, exp
 * through its vectorised VEXP), compiled twice below: for the portable baseline and with
 * AVX2+FMA (x86-64) or NEON FMA (AArch64), picked at run time. A tail of fewer than VL elements goes through the same
 * vector code on a partial vector, so every element is computed the same way wherever it
 * lies. */

/* ---- contiguous rows (inner == 1) */

__attribute__((always_inline)) static inline void FN(sm_row_forward_body)(real_t *y, const real_t *x,
                                                                          int64_t C, int is_log)
{
    const real_t m = FN(vrow_max)(x, C);
    int64_t c;
    if (is_log) {
        const real_t ls = MATH(log)(FN(vrow_exp_sum)(NULL, x, C, m));
        for (c = 0; c + VL <= C; c += VL) VSTORE(y + c, (VLOAD(x + c) - m) - ls);
        if (c < C) VSTORER(y + c, (VLOADR(x + c, C - c, 0, C >= VL) - m) - ls, C - c, C >= VL);
    } else {
        const real_t sum = FN(vrow_exp_sum)(y, x, C, m);
        for (c = 0; c + VL <= C; c += VL) VSTORE(y + c, VLOAD(y + c) / sum);
        if (c < C) VSTORER(y + c, VLOADR(y + c, C - c, 0, C >= VL) / sum, C - c, C >= VL);
    }
}

/* (set: dx is written as 0 + its value, the bits accumulating into zeros gives) */
__attribute__((always_inline)) static inline void FN(sm_row_backward_body)(real_t *dx, const real_t *g,
                                                                           const real_t *y, int64_t C,
                                                                           int is_log, int set)
{
    int64_t c = 0;
    const int64_t r = C % VL, cv = C - r;
    if (is_log) {
        const real_t s = FN(vrow_dot)(g, NULL, C);
        for (; c < cv; c += VL)
            VSTORE(dx + c, (set ? VSPLAT(0) : VLOAD(dx + c)) + (VLOAD(g + c) - VEXP(VLOAD(y + c)) * s));
        if (r)
            VSTORER(dx + c, (set ? VSPLAT(0) : VLOADR(dx + c, r, 0, C >= VL)) + (VLOADR(g + c, r, 0, C >= VL) - VEXP(VLOADR(y + c, r, 0, C >= VL)) * s), r, C >= VL);
    } else {
        const real_t s = FN(vrow_dot)(g, y, C);
        for (; c < cv; c += VL)
            VSTORE(dx + c, (set ? VSPLAT(0) : VLOAD(dx + c)) + VLOAD(y + c) * (VLOAD(g + c) - s));
        if (r)
            VSTORER(dx + c, (set ? VSPLAT(0) : VLOADR(dx + c, r, 0, C >= VL)) + VLOADR(y + c, r, 0, C >= VL) * (VLOADR(g + c, r, 0, C >= VL) - s), r, C >= VL);
    }
}

/* ---- strided slabs (inner > 1): w <= TC_SOFTMAX_TILE columns j, the C values of column j
 * at x[c * inner + j]; the per-column statistics m[], s[] are handled VL columns at a time
 * (TC_SOFTMAX_TILE is a multiple of VL, so whole vectors of m[] and s[] stay in bounds) */

/* a vector of row p[0..w) starting at column j: whole, or the first w - j lanes */
#define SM_LOAD(p, j, w, fill) ((w) - (j) >= VL ? VLOAD((p) + (j)) : VLOADN((p) + (j), (w) - (j), fill))
#define SM_STORE(p, j, w, v)                                 \
    do {                                                     \
        if ((w) - (j) >= VL)                                 \
            VSTORE((p) + (j), v);                            \
        else                                                 \
            VSTOREN((p) + (j), v, (w) - (j));                \
    } while (0)

__attribute__((always_inline)) static inline void FN(sm_tile_forward_body)(real_t *y, const real_t *x,
                                                                           int64_t C, int64_t inner,
                                                                           int64_t w, int is_log)
{
    real_t m[TC_SOFTMAX_TILE], s[TC_SOFTMAX_TILE];
    for (int64_t j = 0; j < TC_SOFTMAX_TILE; j++) {
        m[j] = -INFINITY;
        s[j] = 0;
    }
    for (int64_t c = 0; c < C; c++) {
        const real_t *xr = x + c * inner;
        for (int64_t j = 0; j < w; j += VL) VSTORE(m + j, VMAX(SM_LOAD(xr, j, w, -INFINITY), VLOAD(m + j)));
    }
    if (is_log) {
        for (int64_t c = 0; c < C; c++) {
            const real_t *xr = x + c * inner;
            for (int64_t j = 0; j < w; j += VL)
                VSTORE(s + j, VLOAD(s + j) + VEXP(SM_LOAD(xr, j, w, -INFINITY) - VLOAD(m + j)));
        }
        for (int64_t j = 0; j < w; j++) s[j] = MATH(log)(s[j]);
        for (int64_t c = 0; c < C; c++) {
            const real_t *xr = x + c * inner;
            real_t *yr = y + c * inner;
            for (int64_t j = 0; j < w; j += VL)
                SM_STORE(yr, j, w, (SM_LOAD(xr, j, w, 0) - VLOAD(m + j)) - VLOAD(s + j));
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            const real_t *xr = x + c * inner;
            real_t *yr = y + c * inner;
            for (int64_t j = 0; j < w; j += VL) {
                const VF e = VEXP(SM_LOAD(xr, j, w, -INFINITY) - VLOAD(m + j));
                SM_STORE(yr, j, w, e);
                VSTORE(s + j, VLOAD(s + j) + e);
            }
        }
        for (int64_t c = 0; c < C; c++) {
            real_t *yr = y + c * inner;
            for (int64_t j = 0; j < w; j += VL) SM_STORE(yr, j, w, SM_LOAD(yr, j, w, 0) / VLOAD(s + j));
        }
    }
}

__attribute__((always_inline)) static inline void FN(sm_tile_backward_body)(real_t *dx, const real_t *g,
                                                                            const real_t *y, int64_t C,
                                                                            int64_t inner, int64_t w,
                                                                            int is_log, int set)
{
    real_t s[TC_SOFTMAX_TILE];
    for (int64_t j = 0; j < TC_SOFTMAX_TILE; j++) s[j] = 0;
    for (int64_t c = 0; c < C; c++) {
        const real_t *gr = g + c * inner, *yr = y + c * inner;
        if (is_log)
            for (int64_t j = 0; j < w; j += VL) VSTORE(s + j, VLOAD(s + j) + SM_LOAD(gr, j, w, 0));
        else
            for (int64_t j = 0; j < w; j += VL)
                VSTORE(s + j, VLOAD(s + j) + SM_LOAD(gr, j, w, 0) * SM_LOAD(yr, j, w, 0));
    }
    for (int64_t c = 0; c < C; c++) {
        const real_t *gr = g + c * inner, *yr = y + c * inner;
        real_t *dr = dx + c * inner;
        if (is_log)
            for (int64_t j = 0; j < w; j += VL)
                SM_STORE(dr, j, w, (set ? VSPLAT(0) : SM_LOAD(dr, j, w, 0)) + (SM_LOAD(gr, j, w, 0) - VEXP(SM_LOAD(yr, j, w, 0)) * VLOAD(s + j)));
        else
            for (int64_t j = 0; j < w; j += VL)
                SM_STORE(dr, j, w, (set ? VSPLAT(0) : SM_LOAD(dr, j, w, 0)) + SM_LOAD(yr, j, w, 0) * (SM_LOAD(gr, j, w, 0) - VLOAD(s + j)));
    }
}

#undef SM_LOAD
#undef SM_STORE

/* one task: a row (inner == 1) or a tile of w columns */
#define SM_VARIANT(attr, sfx)                                                                   \
    attr static void FN(sm_forward_task##sfx)(real_t *y, const real_t *x, int64_t C, int64_t inner,       \
                                              int64_t w, int is_log)                            \
    {                                                                                           \
        if (inner == 1)                                                                         \
            FN(sm_row_forward_body)(y, x, C, is_log);                                           \
        else                                                                                    \
            FN(sm_tile_forward_body)(y, x, C, inner, w, is_log);                                \
    }                                                                                           \
    attr static void FN(sm_exp##sfx)(real_t *y, const real_t *x, int64_t n)                              \
    {                                                                                           \
        int64_t i = 0;                                                                          \
        for (; i + VL <= n; i += VL) VSTORE(y + i, VEXP(VLOAD(x + i)));                         \
        if (i < n) VSTOREN(y + i, VEXP(VLOADN(x + i, n - i, 0)), n - i);                        \
    }                                                                                           \
    attr static void FN(sm_backward_task##sfx)(real_t *dx, const real_t *g, const real_t *y, int64_t C,        \
                                               int64_t inner, int64_t w, int is_log, int set)   \
    {                                                                                           \
        if (inner == 1 && set)                                                                  \
            FN(sm_row_backward_body)(dx, g, y, C, is_log, 1);                                   \
        else if (inner == 1)                                                                    \
            FN(sm_row_backward_body)(dx, g, y, C, is_log, 0);                                   \
        else if (set)                                                                           \
            FN(sm_tile_backward_body)(dx, g, y, C, inner, w, is_log, 1);                        \
        else                                                                                    \
            FN(sm_tile_backward_body)(dx, g, y, C, inner, w, is_log, 0);                        \
    }

SM_VARIANT(, _generic)
#if TC_VEC_X86
SM_VARIANT(TC_VEC_AVX2, _avx2)
#define SM_PICK(name) (tc_cpu_pick(TC_CPU_SOFTMAX) ? FN(name##_avx2) : FN(name##_generic))
#elif TC_VEC_NEON
SM_VARIANT(TC_VEC_NEON_FMA, _neon)
#define SM_PICK(name) (tc_cpu_pick(TC_CPU_SOFTMAX) ? FN(name##_neon) : FN(name##_generic))
#else
#define SM_PICK(name) FN(name##_generic)
#endif
#undef SM_VARIANT

/* ---- drivers: one task per row (inner == 1) or per (o, tile of j) */

static int FN(softmax_forward_any)(real_t *out, const real_t *inp, int64_t outer, int64_t C,
                                   int64_t inner, int is_log)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    if (outer == 0 || C == 0 || inner == 0) return TC_OK;
    if (!out || !inp) return TC_EINVAL;
    const int64_t tiles = (inner + TC_SOFTMAX_TILE - 1) / TC_SOFTMAX_TILE;
    const int64_t tasks = outer * tiles, work = outer * C * inner;
    void (*task)(real_t *, const real_t *, int64_t, int64_t, int64_t, int) = SM_PICK(sm_forward_task);
    (void)work; /* read only by the OpenMP if clause: unused in a serial build */
#pragma omp parallel for schedule(static) if (tasks > 1 && TC_PAR(work, TC_SOFTMAX_PAR_MIN))
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t o = t / tiles, j0 = (t % tiles) * TC_SOFTMAX_TILE;
        const int64_t off = o * C * inner + j0;
        const int64_t w = inner - j0 < TC_SOFTMAX_TILE ? inner - j0 : TC_SOFTMAX_TILE;
        task(out + off, inp + off, C, inner, w, is_log);
    }
    return TC_OK;
}

static int FN(softmax_backward_any)(real_t *dinp, const real_t *dout, const real_t *out, int64_t outer,
                                    int64_t C, int64_t inner, int is_log, int set)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    if (outer == 0 || C == 0 || inner == 0) return TC_OK;
    if (!dinp || !dout || !out) return TC_EINVAL;
    const int64_t tiles = (inner + TC_SOFTMAX_TILE - 1) / TC_SOFTMAX_TILE;
    const int64_t tasks = outer * tiles, work = outer * C * inner;
    void (*task)(real_t *, const real_t *, const real_t *, int64_t, int64_t, int64_t, int, int) =
        SM_PICK(sm_backward_task);
    /* the softmax backward has no exp: cheaper per element than the forward */
    const int64_t min_work = is_log ? TC_SOFTMAX_PAR_MIN : 2 * TC_SOFTMAX_PAR_MIN;
    (void)work, (void)min_work; /* read only by the OpenMP if clause: unused in a serial build */
#pragma omp parallel for schedule(static) if (tasks > 1 && TC_PAR(work, min_work))
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t o = t / tiles, j0 = (t % tiles) * TC_SOFTMAX_TILE;
        const int64_t off = o * C * inner + j0;
        const int64_t w = inner - j0 < TC_SOFTMAX_TILE ? inner - j0 : TC_SOFTMAX_TILE;
        task(dinp + off, dout + off, out + off, C, inner, w, is_log, set != 0);
    }
    return TC_OK;
}

/* ---- public kernels */

// out (outer,C,inner) = softmax of inp (outer,C,inner) along C
int FN(tc_softmax_forward)(real_t *out, const real_t *inp, int64_t outer, int64_t C, int64_t inner)
{
    return FN(softmax_forward_any)(out, inp, outer, C, inner, 0);
}

// dinp (outer,C,inner) += out * (dout - sum_C dout * out); dout, out (outer,C,inner);
// write: TC_WRITE(0) writes dinp (0 + value, not read)
int FN(tc_softmax_backward)(real_t *dinp, const real_t *dout, const real_t *out, int64_t outer, int64_t C,
                            int64_t inner, int write)
{
    return FN(softmax_backward_any)(dinp, dout, out, outer, C, inner, 0, (int)TC_WRITES(write, 0));
}

// out (outer,C,inner) = log_softmax of inp (outer,C,inner) along C
int FN(tc_log_softmax_forward)(real_t *out, const real_t *inp, int64_t outer, int64_t C, int64_t inner)
{
    return FN(softmax_forward_any)(out, inp, outer, C, inner, 1);
}

// dinp (outer,C,inner) += dout - exp(out) * sum_C dout; dout, out (outer,C,inner); write
// as tc_softmax_backward
int FN(tc_log_softmax_backward)(real_t *dinp, const real_t *dout, const real_t *out, int64_t outer, int64_t C,
                                int64_t inner, int write)
{
    return FN(softmax_backward_any)(dinp, dout, out, outer, C, inner, 1, (int)TC_WRITES(write, 0));
}

// out (N,) = exp(inp (N,)) lane by lane through vec_math.h's vector exp (the one the
// kernels above use); exposed so tests can measure its error against libm
int FN(tc_vec_exp)(real_t *out, const real_t *inp, int64_t N)
{
    if (N < 0 || (N > 0 && (!out || !inp))) return TC_EINVAL;
    void (*f)(real_t *, const real_t *, int64_t) = SM_PICK(sm_exp);
    f(out, inp, N);
    return TC_OK;
}

#undef SM_PICK
