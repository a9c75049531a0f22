/* activation_ref.h: the plain reference of the activation kernels (activation_impl.h),
 * written once for real_t: one scalar libm call per element, evaluated in double and
 * rounded to real_t once (no vector exp, no Chebyshev erfc, no threads). The tests hold
 * the vectorised kernels to it. act is a tc_activation (TC_ACT_*).
 *   relu:      y = x < 0 ? 0 : x (NaN and -0 propagate),  y' = (x > 0)
 *   gelu:      y = 0.5 x (1 + erf(x / sqrt 2)),  y' = Phi(x) + x exp(-x^2/2) / sqrt(2 pi)
 *   gelu_tanh: y = 0.5 x (1 + tanh u) = x s, u = sqrt(2/pi) (x + 0.044715 x^3),
 *              s = 0.5 (1 + tanh u) = 1 / (1 + exp(-2u)) (no cancellation for x < 0),
 *              y' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
 *   silu:      y = x s, s = 1 / (1 + exp(-x)),  y' = s + x s (1 - s)
 *   relu2:     y = r * r, r = (x < 0 ? 0 : x),  y' = 2 x (x > 0) (else 0, also at NaN)
 */

/* y = act(x) (grad 0) or act'(x) (grad 1) for one element, in double */
static double FN(act_ref_scalar)(double x, int act, int grad)
{
    const double beta = 0.79788456080286535588, kappa = 0.044715;
    if (act == TC_ACT_RELU) return x < 0 ? 0.0 : x; /* NaN and -0 pass (the backward selects) */
    if (act == TC_ACT_RELU2) {
        const double r = x < 0 ? 0.0 : x;
        return grad ? (x > 0 ? 2.0 * x : 0.0) : r * r;
    }
    if (act == TC_ACT_SILU) {
        const double s = 1.0 / (1.0 + exp(-x)), xc = fmin(fmax(x, -1e4), 1e4);
        return grad ? s + xc * s * (1.0 - s) : x * s; /* y'(+-inf): the limits 1 / 0 */
    }
    if (act == TC_ACT_GELU) {
        const double Phi = 0.5 * erfc(-x * 0.70710678118654752440);
        return grad ? Phi + x * exp(-0.5 * x * x) * 0.39894228040143267794 : x * Phi;
    }
    if (fabs(x) > 1e4) return grad ? (x > 0 ? 1.0 : 0.0) : (x > 0 ? x : -0.0); /* inf * 0 */
    /* 0.5 (1 + tanh u) = s = 1 / (1 + exp(-2u)) and 0.5 (1 - tanh^2 u) = 2 s (1 - s): the
     * same functions without the 1 + tanh u cancellation for x < 0 */
    const double s = 1.0 / (1.0 + exp(-2.0 * beta * (x + kappa * x * x * x)));
    if (!grad) return x * s;
    return s + 2.0 * x * s * (1.0 - s) * beta * (1.0 + 3.0 * kappa * x * x);
}

// out (N,) = act(inp (N,)); TC_EINVAL for act outside [0, TC_ACT_COUNT)
int FN(tc_activation_forward_ref)(real_t *out, const real_t *inp, int64_t N, int act)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    for (int64_t i = 0; i < N; i++) out[i] = (real_t)FN(act_ref_scalar)(inp[i], act, 0);
    return TC_OK;
}

// dinp (N,) = dout (N,) * act'(inp (N,)) (written); the product in real_t, as the kernels
int FN(tc_activation_backward_ref)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                   int act)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    for (int64_t i = 0; i < N; i++)
        dinp[i] = act == TC_ACT_RELU    ? (inp[i] > 0 ? dout[i] : (real_t)0)
                  : act == TC_ACT_RELU2 ? (inp[i] > 0 ? (real_t)2 * inp[i] * dout[i] : (real_t)0)
                                        : dout[i] * (real_t)FN(act_ref_scalar)(inp[i], act, 1);
    return TC_OK;
}
