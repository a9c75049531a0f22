/* fused_ref.h: the plain references of the fused kernels (fused_impl.h), written once for
 * real_t, built from the other references (no GEMM, no epilogue, no vectors, no threads):
 *   linear + activation (any TC_ACT_*; the GELUs' pair is the gelu_tanh / gelu case):
 *     pre = inp weight^T + bias (each dot product summed in double, rounded to real_t),
 *     out = act(pre) by tc_activation_forward_ref; backward: dpre = dout act'(pre) by
 *     tc_activation_backward_ref, then dinp = dpre weight, dweight = dpre^T inp,
 *     dbias = sum_n dpre (sums in double; all written). The dact cache (act'(pre)) is
 *     checked against tc_activation_backward_ref with dout = 1.
 *   residual + layer norm: sum = x + r (in real_t), then tc_layernorm_forward_ref;
 *     backward: g = layernorm backward (tc_layernorm_backward_ref) + dsum, dx = dr = g. */

// out (N,OC), pre (N,OC) from inp (N,C), weight (OC,C), bias (OC,) or NULL; act a TC_ACT_*
int FN(tc_linear_activation_forward_ref)(int act, real_t *out, real_t *pre, const real_t *inp,
                                         const real_t *weight, const real_t *bias, int64_t N,
                                         int64_t C, int64_t OC)
{
    if (N < 0 || C < 0 || OC < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int64_t c = 0; c < C; c++) s += (double)inp[n * C + c] * weight[o * C + c];
            pre[n * OC + o] = (real_t)s;
        }
    return FN(tc_activation_forward_ref)(out, pre, N * OC, act);
}

// as tc_linear_activation_forward_ref with act the exact (0) / tanh (1) GELU
int FN(tc_linear_gelu_forward_ref)(real_t *out, real_t *pre, const real_t *inp, const real_t *weight,
                                   const real_t *bias, int64_t N, int64_t C, int64_t OC,
                                   int approximate_tanh)
{
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(tc_linear_activation_forward_ref)(approximate_tanh ? TC_ACT_GELU_TANH : TC_ACT_GELU,
                                                out, pre, inp, weight, bias, N, C, OC);
}

// dinp (N,C), dweight (OC,C), dbias (OC,) written from dout (N,OC), the forward's pre (N,OC),
// inp (N,C), weight (OC,C); act a TC_ACT_*. TC_ENOMEM if the (N,OC) dpre cannot be allocated.
int FN(tc_linear_activation_backward_ref)(int act, real_t *dinp, real_t *dweight, real_t *dbias,
                                          const real_t *dout, const real_t *pre, const real_t *inp,
                                          const real_t *weight, int64_t N, int64_t C, int64_t OC)
{
    if (N < 0 || C < 0 || OC < 0 || act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    real_t *dpre = malloc((size_t)(N * OC > 0 ? N * OC : 1) * sizeof(real_t));
    if (!dpre) return TC_ENOMEM;
    FN(tc_activation_backward_ref)(dpre, dout, pre, N * OC, act);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t o = 0; o < OC; o++) s += (double)dpre[n * OC + o] * weight[o * C + c];
            dinp[n * C + c] = (real_t)s;
        }
    for (int64_t o = 0; o < OC; o++) {
        double sb = 0;
        for (int64_t n = 0; n < N; n++) sb += dpre[n * OC + o];
        dbias[o] = (real_t)sb;
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += (double)dpre[n * OC + o] * inp[n * C + c];
            dweight[o * C + c] = (real_t)s;
        }
    }
    free(dpre);
    return TC_OK;
}

// as tc_linear_activation_backward_ref with act the exact (0) / tanh (1) GELU
int FN(tc_linear_gelu_backward_ref)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                    const real_t *pre, const real_t *inp, const real_t *weight,
                                    int64_t N, int64_t C, int64_t OC, int approximate_tanh)
{
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(tc_linear_activation_backward_ref)(approximate_tanh ? TC_ACT_GELU_TANH : TC_ACT_GELU,
                                                 dinp, dweight, dbias, dout, pre, inp, weight, N,
                                                 C, OC);
}

// out (N,C), sum (N,C), mean (N,), rstd (N,) from x (N,C), r (N,C), weight (C,), bias (C,)|NULL
int FN(tc_layernorm_residual_forward_ref)(real_t *out, real_t *sum, real_t *mean, real_t *rstd,
                                          const real_t *x, const real_t *r, const real_t *weight,
                                          const real_t *bias, int64_t N, int64_t C, double eps)
{
    if (N < 0 || C < 1) return TC_EINVAL;
    for (int64_t i = 0; i < N * C; i++) sum[i] = x[i] + r[i];
    return FN(tc_layernorm_forward_ref)(out, mean, rstd, sum, weight, bias, N, C, eps);
}

// dx (N,C), dr (N,C) (distinct), dweight (C,), dbias (C,) written from dout (N,C), dsum
// (N,C) or NULL, and the forward's sum (N,C), mean (N,), rstd (N,); weight (C,)
int FN(tc_layernorm_residual_backward_ref)(real_t *dx, real_t *dr, real_t *dweight, real_t *dbias,
                                           const real_t *dout, const real_t *dsum, const real_t *sum,
                                           const real_t *weight, const real_t *mean,
                                           const real_t *rstd, int64_t N, int64_t C)
{
    const int st = FN(tc_layernorm_backward_ref)(dx, dweight, dbias, dout, sum, weight, mean,
                                                 rstd, N, C);
    if (st != TC_OK) return st;
    for (int64_t i = 0; i < N * C; i++) {
        if (dsum) dx[i] += dsum[i];
        dr[i] = dx[i];
    }
    return TC_OK;
}
