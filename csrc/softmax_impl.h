/* softmax_impl.h: softmax / log-softmax along C of an (outer, C, inner) array, written once
 * for T.
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

/* ---- contiguous rows (inner == 1) */

/* max of x[0..C), NaN ignored (it poisons the exp/sum later anyway); -inf for C == 0 */
static T FN(softmax_row_max)(const T *x, int64_t C)
{
    T m[8];
    for (int k = 0; k < 8; k++) m[k] = -INFINITY;
    int64_t c = 0;
    for (; c + 8 <= C; c += 8)
        for (int k = 0; k < 8; k++) m[k] = x[c + k] > m[k] ? x[c + k] : m[k];
    for (; c < C; c++) m[0] = x[c] > m[0] ? x[c] : m[0];
    T r = m[0];
    for (int k = 1; k < 8; k++) r = m[k] > r ? m[k] : r;
    return r;
}

/* sum of a[c] * (b ? b[c] : 1) over c in [0, C), eight accumulators, fixed order */
static T FN(softmax_row_dot)(const T *a, const T *b, int64_t C)
{
    T s[8] = {0};
    int64_t c = 0;
    if (b) {
        for (; c + 8 <= C; c += 8)
            for (int k = 0; k < 8; k++) s[k] += a[c + k] * b[c + k];
        for (; c < C; c++) s[0] += a[c] * b[c];
    } else {
        for (; c + 8 <= C; c += 8)
            for (int k = 0; k < 8; k++) s[k] += a[c + k];
        for (; c < C; c++) s[0] += a[c];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static void FN(softmax_row_forward)(T *y, const T *x, int64_t C, int is_log)
{
    const T m = FN(softmax_row_max)(x, C);
    T s = 0;
    if (is_log) {
        for (int64_t c = 0; c < C; c++) s += MATH(exp)(x[c] - m);
        const T ls = MATH(log)(s);
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) - ls;
    } else {
        for (int64_t c = 0; c < C; c++) {
            const T e = MATH(exp)(x[c] - m);
            y[c] = e;
            s += e;
        }
        for (int64_t c = 0; c < C; c++) y[c] = y[c] / s;
    }
}

static void FN(softmax_row_backward)(T *dx, const T *g, const T *y, int64_t C, int is_log)
{
    if (is_log) {
        const T s = FN(softmax_row_dot)(g, NULL, C);
        for (int64_t c = 0; c < C; c++) dx[c] += g[c] - MATH(exp)(y[c]) * s;
    } else {
        const T s = FN(softmax_row_dot)(g, y, C);
        for (int64_t c = 0; c < C; c++) dx[c] += y[c] * (g[c] - s);
    }
}

/* ---- strided slabs (inner > 1): w <= TC_SOFTMAX_TILE columns j, the C values of column j
 * at x[c * inner + j] */

static void FN(softmax_tile_forward)(T *y, const T *x, int64_t C, int64_t inner, int64_t w,
                                     int is_log)
{
    T m[TC_SOFTMAX_TILE], s[TC_SOFTMAX_TILE];
    for (int64_t j = 0; j < w; j++) {
        m[j] = -INFINITY;
        s[j] = 0;
    }
    for (int64_t c = 0; c < C; c++) {
        const T *xr = x + c * inner;
        for (int64_t j = 0; j < w; j++) m[j] = xr[j] > m[j] ? xr[j] : m[j];
    }
    if (is_log) {
        for (int64_t c = 0; c < C; c++) {
            const T *xr = x + c * inner;
            for (int64_t j = 0; j < w; j++) s[j] += MATH(exp)(xr[j] - m[j]);
        }
        for (int64_t j = 0; j < w; j++) s[j] = MATH(log)(s[j]);
        for (int64_t c = 0; c < C; c++) {
            const T *xr = x + c * inner;
            T *yr = y + c * inner;
            for (int64_t j = 0; j < w; j++) yr[j] = (xr[j] - m[j]) - s[j];
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            const T *xr = x + c * inner;
            T *yr = y + c * inner;
            for (int64_t j = 0; j < w; j++) {
                const T e = MATH(exp)(xr[j] - m[j]);
                yr[j] = e;
                s[j] += e;
            }
        }
        for (int64_t c = 0; c < C; c++) {
            T *yr = y + c * inner;
            for (int64_t j = 0; j < w; j++) yr[j] = yr[j] / s[j];
        }
    }
}

static void FN(softmax_tile_backward)(T *dx, const T *g, const T *y, int64_t C, int64_t inner,
                                      int64_t w, int is_log)
{
    T s[TC_SOFTMAX_TILE];
    for (int64_t j = 0; j < w; j++) s[j] = 0;
    for (int64_t c = 0; c < C; c++) {
        const T *gr = g + c * inner, *yr = y + c * inner;
        if (is_log)
            for (int64_t j = 0; j < w; j++) s[j] += gr[j];
        else
            for (int64_t j = 0; j < w; j++) s[j] += gr[j] * yr[j];
    }
    for (int64_t c = 0; c < C; c++) {
        const T *gr = g + c * inner, *yr = y + c * inner;
        T *dr = dx + c * inner;
        if (is_log)
            for (int64_t j = 0; j < w; j++) dr[j] += gr[j] - MATH(exp)(yr[j]) * s[j];
        else
            for (int64_t j = 0; j < w; j++) dr[j] += yr[j] * (gr[j] - s[j]);
    }
}

/* ---- drivers: one task per row (inner == 1) or per (o, tile of j) */

static int FN(softmax_forward_any)(T *out, const T *inp, int64_t outer, int64_t C,
                                   int64_t inner, int is_log)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    if (outer == 0 || C == 0 || inner == 0) return TC_OK;
    if (!out || !inp) return TC_EINVAL;
    const int64_t tiles = (inner + TC_SOFTMAX_TILE - 1) / TC_SOFTMAX_TILE;
    const int64_t tasks = outer * tiles, work = outer * C * inner * 8;
#pragma omp parallel for schedule(static) if (work >= TC_PARALLEL_MIN_WORK)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t o = t / tiles, j0 = (t % tiles) * TC_SOFTMAX_TILE;
        const int64_t off = o * C * inner + j0;
        if (inner == 1) {
            FN(softmax_row_forward)(out + off, inp + off, C, is_log);
        } else {
            const int64_t w = inner - j0 < TC_SOFTMAX_TILE ? inner - j0 : TC_SOFTMAX_TILE;
            FN(softmax_tile_forward)(out + off, inp + off, C, inner, w, is_log);
        }
    }
    return TC_OK;
}

static int FN(softmax_backward_any)(T *dinp, const T *dout, const T *out, int64_t outer,
                                    int64_t C, int64_t inner, int is_log)
{
    if (outer < 0 || C < 0 || inner < 0) return TC_EINVAL;
    if (outer == 0 || C == 0 || inner == 0) return TC_OK;
    if (!dinp || !dout || !out) return TC_EINVAL;
    const int64_t tiles = (inner + TC_SOFTMAX_TILE - 1) / TC_SOFTMAX_TILE;
    const int64_t tasks = outer * tiles, work = outer * C * inner * 4;
#pragma omp parallel for schedule(static) if (work >= TC_PARALLEL_MIN_WORK)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t o = t / tiles, j0 = (t % tiles) * TC_SOFTMAX_TILE;
        const int64_t off = o * C * inner + j0;
        if (inner == 1) {
            FN(softmax_row_backward)(dinp + off, dout + off, out + off, C, is_log);
        } else {
            const int64_t w = inner - j0 < TC_SOFTMAX_TILE ? inner - j0 : TC_SOFTMAX_TILE;
            FN(softmax_tile_backward)(dinp + off, dout + off, out + off, C, inner, w, is_log);
        }
    }
    return TC_OK;
}

/* ---- public kernels */

// out (outer,C,inner) = softmax of inp (outer,C,inner) along C
int FN(tc_softmax_forward)(T *out, const T *inp, int64_t outer, int64_t C, int64_t inner)
{
    return FN(softmax_forward_any)(out, inp, outer, C, inner, 0);
}

// dinp (outer,C,inner) += out * (dout - sum_C dout * out); dout, out (outer,C,inner)
int FN(tc_softmax_backward)(T *dinp, const T *dout, const T *out, int64_t outer, int64_t C,
                            int64_t inner)
{
    return FN(softmax_backward_any)(dinp, dout, out, outer, C, inner, 0);
}

// out (outer,C,inner) = log_softmax of inp (outer,C,inner) along C
int FN(tc_log_softmax_forward)(T *out, const T *inp, int64_t outer, int64_t C, int64_t inner)
{
    return FN(softmax_forward_any)(out, inp, outer, C, inner, 1);
}

// dinp (outer,C,inner) += dout - exp(out) * sum_C dout; dout, out (outer,C,inner)
int FN(tc_log_softmax_backward)(T *dinp, const T *dout, const T *out, int64_t outer, int64_t C,
                                int64_t inner)
{
    return FN(softmax_backward_any)(dinp, dout, out, outer, C, inner, 1);
}
