/* position_ref.h: the plain reference of the sinusoidal position table (position_impl.h),
 * written once for real_t: column d of row n from its own angle (pos / base^(2 floor(d/2) /
 * D), in double, pos = offset + n), sin for even d, cos for odd d, rounded to real_t once
 * (no cached denominators, no threads). The same operations as the kernel: bitwise equal. */

// out (T,D): the table for positions offset .. offset + T - 1
int FN(tc_position_sinusoidal_ref)(real_t *out, int64_t T, int64_t D, double base, int64_t offset)
{
    if (T < 0 || D < 0 || !(base > 0) || !isfinite(base)) return TC_EINVAL;
    for (int64_t n = 0; n < T; n++)
        for (int64_t d = 0; d < D; d++) {
            const double a = ((double)offset + (double)n) / pow(base, (double)(d / 2 * 2) / (double)D);
            out[n * D + d] = (real_t)(d % 2 ? cos(a) : sin(a));
        }
    return TC_OK;
}
