/* rope_impl.h: rotary position embedding (Su et al., RoFormer), written once for real_t.
 *
 * With head size HS (even), half = HS/2 and frequencies theta_i = base^(-2i/HS), i < half,
 * the row of channels at position pos has its channel pairs (a, b) rotated by pos*theta_i:
 *
 *   a' = a cos - b sin,   b' = a sin + b cos
 *
 * pairs (i, i + half) ("rotate half": GPT-NeoX, Llama; interleaved = 0) or (2i, 2i + 1)
 * (the paper, GPT-J; interleaved = 1). The rotation is orthogonal, so the backward is the
 * rotation by -pos*theta_i. Angles are computed in double and rounded to real_t in the table.
 *
 * Layout: x (N, L, NH, HS) with the position along L: (B*NH, L, 1, HS) for the head-major
 * (B, NH, L, HS) layout, (B, L, NH, HS) for the token-major one. (In this file the
 * sequence length is called L because T is the element type.)
 */

// cos (L, HS/2), sin (L, HS/2): the tables for positions offset .. offset + L - 1
int FN(tc_rope_table)(real_t *cos_t, real_t *sin_t, int64_t L, int64_t HS, double base, int64_t offset)
{
    if (L < 0 || HS < 0 || HS % 2 || !(base > 0) || !isfinite(base)) return TC_EINVAL;
    const int64_t half = HS / 2;
    if (L == 0 || half == 0) return TC_OK;
    /* a sin and a cos cost tens of operations each */
#pragma omp parallel for schedule(static) if (TC_PAR(L * half, TC_PARALLEL_MIN_WORK / 16))
    for (int64_t n = 0; n < L; n++) {
        const double pos = (double)offset + (double)n;
        for (int64_t i = 0; i < half; i++) {
            const double a = pos * pow(base, -(double)(2 * i) / (double)HS);
            cos_t[n * half + i] = (real_t)cos(a);
            sin_t[n * half + i] = (real_t)sin(a);
        }
    }
    return TC_OK;
}

/* One row of HS channels: out = rotate(inp) by (c, sgn * s). out may be inp; with acc the
 * result is added to out (which then must not alias inp). */
static inline void FN(rope_row)(real_t *out, const real_t *inp, const real_t *c, const real_t *s, int64_t half,
                                int interleaved, real_t sgn, int acc)
{
    if (!interleaved) {
        const real_t *a = inp, *b = inp + half;
        real_t *oa = out, *ob = out + half;
        if (acc) {
            for (int64_t i = 0; i < half; i++) {
                const real_t si = sgn * s[i];
                oa[i] += a[i] * c[i] - b[i] * si;
                ob[i] += a[i] * si + b[i] * c[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) {
                const real_t si = sgn * s[i], ai = a[i], bi = b[i];
                oa[i] = ai * c[i] - bi * si;
                ob[i] = ai * si + bi * c[i];
            }
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            const real_t si = sgn * s[i], ai = inp[2 * i], bi = inp[2 * i + 1];
            const real_t ra = ai * c[i] - bi * si, rb = ai * si + bi * c[i];
            if (acc) {
                out[2 * i] += ra;
                out[2 * i + 1] += rb;
            } else {
                out[2 * i] = ra;
                out[2 * i + 1] = rb;
            }
        }
    }
}

static int FN(rope_apply)(real_t *out, const real_t *inp, const real_t *cos_t, const real_t *sin_t, int64_t N,
                          int64_t L, int64_t NH, int64_t HS, int interleaved, real_t sgn, int acc)
{
    if (N < 0 || L < 0 || NH < 0 || HS < 0 || HS % 2 || (interleaved != 0 && interleaved != 1))
        return TC_EINVAL;
    const int64_t half = HS / 2, rows = N * L * NH;
    if (rows == 0 || half == 0) return TC_OK;
#pragma omp parallel for schedule(static) if (TC_PAR(rows * HS, TC_PARALLEL_MIN_WORK))
    for (int64_t r = 0; r < rows; r++) {
        const int64_t pos = (r / NH) % L;
        FN(rope_row)(out + r * HS, inp + r * HS, cos_t + pos * half, sin_t + pos * half, half,
                     interleaved, sgn, acc);
    }
    return TC_OK;
}

// out (N,L,NH,HS) = rope(inp (N,L,NH,HS)); cos, sin (L, HS/2); out may be inp
int FN(tc_rope_forward)(real_t *out, const real_t *inp, const real_t *cos_t, const real_t *sin_t, int64_t N,
                        int64_t L, int64_t NH, int64_t HS, int interleaved)
{
    return FN(rope_apply)(out, inp, cos_t, sin_t, N, L, NH, HS, interleaved, (real_t)1, 0);
}

// dinp (N,L,NH,HS) += rope^-1(dout (N,L,NH,HS)); cos, sin (L, HS/2); dinp must not alias dout;
// write: TC_WRITE(0) = dinp zeroed first, then accumulated into
int FN(tc_rope_backward)(real_t *dinp, const real_t *dout, const real_t *cos_t, const real_t *sin_t, int64_t N,
                         int64_t L, int64_t NH, int64_t HS, int interleaved, int write)
{
    if (N < 0 || L < 0 || NH < 0 || HS < 0) return TC_EINVAL;
    if (TC_WRITES(write, 0) && dinp)
        memset(dinp, 0, (size_t)N * (size_t)L * (size_t)NH * (size_t)HS * sizeof(real_t));
    return FN(rope_apply)(dinp, dout, cos_t, sin_t, N, L, NH, HS, interleaved, (real_t)-1, 1);
}

// x (N,L,NH,HS) = rope^-1(x) in place (the backward without accumulation); cos, sin (L, HS/2)
int FN(tc_rope_inverse_inplace)(real_t *x, const real_t *cos_t, const real_t *sin_t, int64_t N, int64_t L,
                                int64_t NH, int64_t HS, int interleaved)
{
    return FN(rope_apply)(x, x, cos_t, sin_t, N, L, NH, HS, interleaved, (real_t)-1, 0);
}

// x (N,L,NH,HS) at element strides (sn, sl, sh) (the last dim contiguous; e.g. the q or k
// slice of a token-major (B,L,3C) buffer: (L*3C, 3C, HS)) rotated in place, by +angle
// (inverse = 0, the forward) or -angle (inverse = 1); cos, sin (L, HS/2)
int FN(tc_rope_inplace_strided)(real_t *x, const real_t *cos_t, const real_t *sin_t, int64_t N, int64_t L,
                                int64_t NH, int64_t HS, int64_t sn, int64_t sl, int64_t sh,
                                int interleaved, int inverse)
{
    if (N < 0 || L < 0 || NH < 0 || HS < 0 || HS % 2 || (interleaved != 0 && interleaved != 1) ||
        (inverse != 0 && inverse != 1))
        return TC_EINVAL;
    const int64_t half = HS / 2, rows = N * L * NH;
    if (rows == 0 || half == 0) return TC_OK;
    const real_t sgn = inverse ? (real_t)-1 : (real_t)1;
#pragma omp parallel for schedule(static) if (TC_PAR(rows * HS, TC_PARALLEL_MIN_WORK))
    for (int64_t r = 0; r < rows; r++) {
        const int64_t h = r % NH, pos = (r / NH) % L, n = r / NH / L;
        real_t *row = x + n * sn + pos * sl + h * sh;
        FN(rope_row)(row, row, cos_t + pos * half, sin_t + pos * half, half, interleaved, sgn,
                     0);
    }
    return TC_OK;
}
