/* softcap_ref.h: the plain reference of softcap_impl.h, written once for real_t: every
 * element in double (tanh of double), rounded to real_t once.
 *   forward:  y = cap tanh(x / cap);  backward: dx = dy (1 - tanh(x / cap)^2), from the INPUT
 *   x (the textbook derivative; the fast kernel reads the output). */

// out (n,) = cap tanh(inp (n,) / cap)
int FN(tc_softcap_forward_ref)(real_t *out, const real_t *inp, int64_t n, double cap)
{
    if (n < 0 || !(cap > 0 && isfinite(cap))) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++) out[i] = (real_t)(cap * tanh((double)inp[i] / cap));
    return TC_OK;
}

// dinp (n,) = dout (n,) (1 - tanh(inp / cap)^2), written
int FN(tc_softcap_backward_ref)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t n,
                                double cap)
{
    if (n < 0 || !(cap > 0 && isfinite(cap))) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        const double t = tanh((double)inp[i] / cap);
        dinp[i] = (real_t)((double)dout[i] * (1.0 - t * t));
    }
    return TC_OK;
}
