/* mlp_block.h: the feed-forward block's two halves, written once for real_t and used by the
 * whole-model drivers (models/model_common_impl.h: every GPT / encoder / encoder-decoder MLP)
 * and by the mixture-of-experts kernel (moe_impl.h: each expert is this MLP on its rows).
 * Included per dtype (no include guard); static functions over the public kernels only. */

/* h (N,H) = act(pre), pre = x (N,C) @ w^T (H,C) + b (H,) (b may be NULL), and the cache the
 * backward needs, through the activation table: an activation with a fused pair (the GELUs,
 * relu, relu2) caches act'(pre) (one fused product: bias, activation and its derivative in
 * the GEMM's epilogue, while each block is in cache; the backward evaluates no activation;
 * without grads, no backward follows: nothing cached); one without (silu) caches pre itself
 * (product, then activation). */
static int FN(gpt_fc_forward)(real_t *h, real_t *pre, const real_t *x, const real_t *w, const real_t *b, int64_t N,
                              int64_t C, int64_t H, int act, int grads)
{
    const int fused = tc_linear_activation_fused(act);
    if (fused < 0) return fused;
    if (fused) return FN(tc_linear_activation_forward)(act, h, grads ? pre : NULL, x, w, b, N, C, H);
    const int st = FN(tc_linear_forward)(pre, x, w, b, N, C, H);
    return st != TC_OK ? st : FN(tc_activation_forward)(act, h, pre, N * H);
}

/* The MLP's backward, from dout (N,C) (the gradient at c_proj's output) to dx (N,C) (added
 * to: +=, or written with set_dx: the same bits as adding to zeros) and the gradients of both
 * linears (+=, or written with set_w): dh (N,H) = dout @ projw is written, not
 * accumulated (nothing to zero first); with a fused pair dh * act'(pre) and c_fc's backward
 * run fused (vectorised, the bias gradient in the same pass); otherwise through dh2 (N,H).
 * pre (N,H) (gpt_fc_forward's cache), h = act(pre) (N,H) and x (N,C) come from the forward;
 * fcw (H,C), projw (C,H). */
static int FN(gpt_mlp_backward)(real_t *dx, real_t *dh, real_t *dh2, real_t *gfcw, real_t *gfcb, real_t *gprojw, real_t *gprojb,
                                const real_t *dout, const real_t *x, const real_t *pre, const real_t *h,
                                const real_t *fcw, const real_t *projw, int64_t N, int64_t C, int64_t H,
                                int act, int set_dx, int set_w)
{
    const int wset = set_w ? TC_WRITE(1) | TC_WRITE(2) : 0;
    const int xset = (set_dx ? TC_WRITE(0) : 0) | wset;
    const int fused = tc_linear_activation_fused(act);
    if (fused < 0) return fused;
    int st = FN(tc_gemm)(dh, dout, projw, N, H, C, H, C, H, 0, 0, (real_t)1, (real_t)0);
    if (st == TC_OK)
        st = FN(tc_linear_backward)(NULL, gprojw, gprojb, dout, h, projw, N, H, C, wset);
    if (st != TC_OK) return st;
    if (fused)
        return FN(tc_linear_activation_backward)(act, dx, gfcw, gfcb, dh, pre, x, fcw, N, C, H, xset);
    st = FN(tc_activation_backward)(act, dh2, dh, pre, N * H, TC_WRITE(0));
    return st != TC_OK ? st
                       : FN(tc_linear_backward)(dx, gfcw, gfcb, dh2, x, fcw, N, C, H, xset);
}
