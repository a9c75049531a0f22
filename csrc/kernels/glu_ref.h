/* glu_ref.h: the plain reference of the gated activations (glu_impl.h), written once for
 * real_t: per element, act(gate) and act'(gate) from the activation references
 * (tc_activation_*_ref_f64: one libm call in double), the products in double, rounded to
 * real_t once. No blocks, no threads, no scratch. */

/* act(x) (grad 0) or act'(x) (grad 1) of one element, in double */
static double FN(glu_ref_act)(int act, double x, int grad)
{
    double y = 0, one = 1;
    if (grad)
        tc_activation_backward_ref_f64(&y, &one, &x, 1, act);
    else
        tc_activation_forward_ref_f64(&y, &x, 1, act);
    return y;
}

// out (N,) = act(gate (N,)) * up (N,); actg (N,) = act(gate) or NULL
int FN(tc_glu_forward_ref)(int act, real_t *out, real_t *actg, const real_t *gate,
                           const real_t *up, int64_t N)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    for (int64_t i = 0; i < N; i++) {
        const double a = FN(glu_ref_act)(act, (double)gate[i], 0);
        out[i] = (real_t)(a * (double)up[i]);
        if (actg) actg[i] = (real_t)a;
    }
    return TC_OK;
}

// dgate (N,) = dout * up * act'(gate), dup (N,) = dout * act(gate) (written; either may be
// NULL; actg is not read: the reference recomputes)
int FN(tc_glu_backward_ref)(int act, real_t *dgate, real_t *dup, const real_t *dout,
                            const real_t *gate, const real_t *up, int64_t N)
{
    if (N < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    for (int64_t i = 0; i < N; i++) {
        const double g = (double)dout[i], x = (double)gate[i];
        if (dup) dup[i] = (real_t)(g * FN(glu_ref_act)(act, x, 0));
        if (dgate) dgate[i] = (real_t)(g * (double)up[i] * FN(glu_ref_act)(act, x, 1));
    }
    return TC_OK;
}
