/* rope_ref.h: the plain reference of the rotary position embedding (rope_impl.h), written
 * once for real_t: the angle pos * base^(-2i/HS) and its cos / sin computed per element in
 * double from (base, offset) (no table), the rotation in double, rounded to real_t once.
 * Pairs (i, i + HS/2) (interleaved 0) or (2i, 2i + 1) (interleaved 1):
 *   forward (a, b) -> (a cos - b sin, a sin + b cos); backward: the rotation by -angle. */

/* out = inp rotated by sgn * angle (sgn = +1 forward, -1 backward); out may not alias inp */
static int FN(rope_ref_rotate)(real_t *out, const real_t *inp, int64_t N, int64_t L, int64_t NH,
                               int64_t HS, double base, int64_t offset, int interleaved,
                               double sgn)
{
    if (N < 0 || L < 0 || NH < 0 || HS < 0 || HS % 2 || !(base > 0) || !isfinite(base) ||
        (interleaved != 0 && interleaved != 1))
        return TC_EINVAL;
    const int64_t half = HS / 2;
    for (int64_t n = 0; n < N; n++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t h = 0; h < NH; h++) {
                const int64_t row = ((n * L + l) * NH + h) * HS;
                for (int64_t i = 0; i < half; i++) {
                    const double ang = ((double)offset + (double)l) * pow(base, -(double)(2 * i) / (double)HS);
                    const double c = cos(ang), s = sgn * sin(ang);
                    const int64_t ia = row + (interleaved ? 2 * i : i);
                    const int64_t ib = row + (interleaved ? 2 * i + 1 : i + half);
                    const double a = inp[ia], b = inp[ib];
                    out[ia] = (real_t)(a * c - b * s);
                    out[ib] = (real_t)(a * s + b * c);
                }
            }
    return TC_OK;
}

// out (N,L,NH,HS) = rope(inp (N,L,NH,HS)) at positions offset + l
int FN(tc_rope_forward_ref)(real_t *out, const real_t *inp, int64_t N, int64_t L, int64_t NH,
                            int64_t HS, double base, int64_t offset, int interleaved)
{
    return FN(rope_ref_rotate)(out, inp, N, L, NH, HS, base, offset, interleaved, 1.0);
}

// dinp (N,L,NH,HS) = dout (N,L,NH,HS) rotated back (written)
int FN(tc_rope_backward_ref)(real_t *dinp, const real_t *dout, int64_t N, int64_t L, int64_t NH,
                             int64_t HS, double base, int64_t offset, int interleaved)
{
    return FN(rope_ref_rotate)(dinp, dout, N, L, NH, HS, base, offset, interleaved, -1.0);
}
