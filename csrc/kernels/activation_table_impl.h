/* activation_table_impl.h: the activation table, written once for real_t (included by
 * activation.c per dtype). One row per tc_activation value (TC_ACT_*): its element-wise
 * forward and backward, and its fused linear + activation pair (fused.c) or NULL where the
 * activation has none (then the caller runs the linear, then the activation). Every model
 * driver reaches an activation through tc_activation_* / tc_linear_activation_* only. */

/* out (N,) = act(inp (N,)) */
typedef int (*FN(act_fwd_fn))(real_t *, const real_t *, int64_t);
/* dinp (N,) (+)= dout (N,) * act'(inp (N,)); write: TC_WRITE(0) writes dinp */
typedef int (*FN(act_bwd_fn))(real_t *, const real_t *, const real_t *, int64_t, int);
/* out (N,OC) = act(inp (N,C) @ w^T (OC,C) + b (OC,)); dact (N,OC) = act'(pre) or NULL */
typedef int (*FN(lin_act_fwd_fn))(real_t *, real_t *, const real_t *, const real_t *,
                                  const real_t *, int64_t, int64_t, int64_t);
/* dpre = dout (N,OC) * dact (N,OC), then the linear's gradients (write: TC_WRITE(0..2)) */
typedef int (*FN(lin_act_bwd_fn))(real_t *, real_t *, real_t *, const real_t *, const real_t *,
                                  const real_t *, const real_t *, int64_t, int64_t, int64_t, int);

/* the fused GELUs: with dact, the forward caching gelu'(pre); without, inference only */
static int FN(tab_lin_gelu_tanh_fwd)(real_t *o, real_t *dact, const real_t *x, const real_t *w,
                                     const real_t *b, int64_t N, int64_t C, int64_t OC)
{
    return dact ? FN(tc_linear_gelu_forward_dact)(o, dact, x, w, b, N, C, OC, 1)
                : FN(tc_linear_gelu_forward)(o, NULL, x, w, b, N, C, OC, 1);
}
static int FN(tab_lin_gelu_fwd)(real_t *o, real_t *dact, const real_t *x, const real_t *w,
                                const real_t *b, int64_t N, int64_t C, int64_t OC)
{
    return dact ? FN(tc_linear_gelu_forward_dact)(o, dact, x, w, b, N, C, OC, 0)
                : FN(tc_linear_gelu_forward)(o, NULL, x, w, b, N, C, OC, 0);
}
/* the fused ReLUs (relu, relu2 = relu^2): the same epilogue, caching act'(pre) with dact */
static int FN(tab_lin_relu_fwd)(real_t *o, real_t *dact, const real_t *x, const real_t *w,
                                const real_t *b, int64_t N, int64_t C, int64_t OC)
{
    return FN(tc_linear_relu_forward)(o, dact, x, w, b, N, C, OC, 0);
}
static int FN(tab_lin_relu2_fwd)(real_t *o, real_t *dact, const real_t *x, const real_t *w,
                                 const real_t *b, int64_t N, int64_t C, int64_t OC)
{
    return FN(tc_linear_relu_forward)(o, dact, x, w, b, N, C, OC, 1);
}

/* One row per activation of tc.h's TC_ACTIVATIONS list, its element-wise pair from
 * activation_impl.h (FN(act_<name>_forward) / _backward) */
static const struct {
    FN(act_fwd_fn) fwd;
    FN(act_bwd_fn) bwd;
} FN(act_table)[] = {
#define ACT_ROW_(E, name, formula) [TC_ACT_##E] = {FN(act_##name##_forward), FN(act_##name##_backward)},
    TC_ACTIVATIONS(ACT_ROW_)
#undef ACT_ROW_
};
_Static_assert(sizeof FN(act_table) / sizeof FN(act_table)[0] == TC_ACT_COUNT,
               "the activation table has one row per TC_ACT_* value");

/* The activations with a fused linear + activation pair (fused.c: the GELUs, relu, relu2;
 * the backward of each is dpre = dout * the cached act'(pre), then the linear's gradients);
 * the others (NULL: silu) run the linear, then the activation */
static const struct {
    FN(lin_act_fwd_fn) lin_fwd;
    FN(lin_act_bwd_fn) lin_bwd;
} FN(act_fused)[TC_ACT_COUNT] = {
    [TC_ACT_GELU_TANH] = {FN(tab_lin_gelu_tanh_fwd), FN(tc_linear_backward_dact)},
    [TC_ACT_GELU] = {FN(tab_lin_gelu_fwd), FN(tc_linear_backward_dact)},
    [TC_ACT_RELU] = {FN(tab_lin_relu_fwd), FN(tc_linear_backward_dact)},
    [TC_ACT_RELU2] = {FN(tab_lin_relu2_fwd), FN(tc_linear_backward_dact)},
};

static int FN(act_known)(int act)
{
    return act >= 0 && act < TC_ACT_COUNT && FN(act_table)[act].fwd && FN(act_table)[act].bwd;
}

// out (N,) = act(inp (N,)); out may be inp
int FN(tc_activation_forward)(int act, real_t *out, const real_t *inp, int64_t N)
{
    if (!FN(act_known)(act)) return TC_EINVAL;
    return FN(act_table)[act].fwd(out, inp, N);
}

// dinp (N,) (+)= dout (N,) * act'(inp (N,)); write: TC_WRITE(0) writes dinp, else it adds
int FN(tc_activation_backward)(int act, real_t *dinp, const real_t *dout, const real_t *inp,
                               int64_t N, int write)
{
    if (!FN(act_known)(act)) return TC_EINVAL;
    return FN(act_table)[act].bwd(dinp, dout, inp, N, write);
}

// out (N,OC) = act(inp (N,C) @ weight^T (OC,C) + bias (OC,)); dact (N,OC) = act'(pre) or NULL
int FN(tc_linear_activation_forward)(int act, real_t *out, real_t *dact, const real_t *inp,
                                     const real_t *weight, const real_t *bias, int64_t N,
                                     int64_t C, int64_t OC)
{
    if (!FN(act_known)(act) || !FN(act_fused)[act].lin_fwd) return TC_EINVAL;
    return FN(act_fused)[act].lin_fwd(out, dact, inp, weight, bias, N, C, OC);
}

// dpre = dout (N,OC) * dact (N,OC), then the linear's gradients (write: TC_WRITE(0) dinp,
// TC_WRITE(1) dweight, TC_WRITE(2) dbias)
int FN(tc_linear_activation_backward)(int act, real_t *dinp, real_t *dweight, real_t *dbias,
                                      const real_t *dout, const real_t *dact, const real_t *inp,
                                      const real_t *weight, int64_t N, int64_t C, int64_t OC,
                                      int write)
{
    if (!FN(act_known)(act) || !FN(act_fused)[act].lin_bwd) return TC_EINVAL;
    return FN(act_fused)[act].lin_bwd(dinp, dweight, dbias, dout, dact, inp, weight, N, C, OC,
                                      write);
}
