/* softcap_impl.h: logit soft-capping, written once for real_t:
 *
 *   y = cap * tanh(x / cap)          (Gemma 2's final-logit soft-capping; cap > 0)
 *   dx = dy * (1 - (y / cap)^2)      (from the OUTPUT y: the forward may run in place)
 *
 * Element-wise with the C library's tanh in real_t (tanhf for float32: correctly rounded to
 * about 1 ulp, no overflow for any x, +-inf -> +-cap, NaN -> NaN), parallel from
 * TC_PARALLEL_MIN_WORK elements (each element by one thread: independent of the thread
 * count). Not vectorised: a vocabulary-sized row costs about as much as one softmax. */

#ifndef TC_SOFTCAP_ONCE
#define TC_SOFTCAP_ONCE
/* whether cap is a usable soft cap: finite and > 0 */
static inline int softcap_ok(double cap) { return cap > 0 && isfinite(cap); }
#endif

// out (n,) = cap * tanh(inp (n,) / cap); out may be inp
int FN(tc_softcap_forward)(real_t *out, const real_t *inp, int64_t n, double cap)
{
    if (n < 0 || !softcap_ok(cap) || (n && (!out || !inp))) return TC_EINVAL;
    const real_t c = (real_t)cap, r = (real_t)(1.0 / cap);
#pragma omp parallel for schedule(static) if (n >= TC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) out[i] = c * MATH(tanh)(inp[i] * r);
    return TC_OK;
}

// dinp (n,) = (TC_WRITE(0)) or += dout (n,) * (1 - (out / cap)^2), out (n,) the forward's
// output; dinp may be dout
int FN(tc_softcap_backward)(real_t *dinp, const real_t *dout, const real_t *out, int64_t n,
                            double cap, int write)
{
    if (n < 0 || !softcap_ok(cap) || (n && (!dinp || !dout || !out))) return TC_EINVAL;
    const real_t r = (real_t)(1.0 / cap);
    if (TC_WRITES(write, 0)) {
#pragma omp parallel for schedule(static) if (n >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < n; i++) {
            const real_t t = out[i] * r;
            dinp[i] = dout[i] * (1 - t * t);
        }
    } else {
#pragma omp parallel for schedule(static) if (n >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < n; i++) {
            const real_t t = out[i] * r;
            dinp[i] += dout[i] * (1 - t * t);
        }
    }
    return TC_OK;
}
