/* model_common_impl.h: helpers shared by the whole-model fast paths (model_impl.h for GPT,
 * model_encdec_impl.h for the encoder-decoder), written once for real_t and included by each
 * per dtype: the copy of q, k, v from token-major (B,T,3C) to head-major (B,NH,T,HS) (for
 * the encoder-decoder's KV-cache decode step only, which defines TC_MODEL_HEAD_COPIES; the
 * fast paths' attention reads the token-major buffers in place), residual additions,
 * position rows, the in-place cross-entropy gradient and the activations. */

#ifndef TC_MODEL_COPY_MIN_WORK
/* memory-bound copies and additions: below ~1 MB a second thread costs more to wake (a
 * futex round trip with the passive wait policy) than it saves */
#define TC_MODEL_COPY_MIN_WORK (8 * TC_PARALLEL_MIN_WORK)
#endif

/* d (n,) <- s (n,): head rows are short (HS values); an inline loop beats a memcpy call */
static inline void FN(gpt_copy)(real_t *restrict d, const real_t *restrict s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

#ifdef TC_MODEL_HEAD_COPIES /* the includers that copy q, k, v to heads */
// qh, kh, vh (B,NH,T,HS) <- the three C-wide slices of qkv (B,T,3C)
static void FN(gpt_split_heads)(real_t *qh, real_t *kh, real_t *vh, const real_t *qkv, int64_t B, int64_t L,
                                int64_t NH, int64_t HS)
{
    const int64_t C = NH * HS;
#pragma omp parallel for collapse(2) schedule(static) if (B * L * C >= TC_MODEL_COPY_MIN_WORK)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const int64_t o = (b * NH + h) * L * HS;
            for (int64_t t = 0; t < L; t++) {
                const real_t *src = qkv + (b * L + t) * 3 * C + h * HS;
                FN(gpt_copy)(qh + o + t * HS, src, HS);
                FN(gpt_copy)(kh + o + t * HS, src + C, HS);
                FN(gpt_copy)(vh + o + t * HS, src + 2 * C, HS);
            }
        }
    }
}
#endif

// out (N,C) = a (N,C) + b (N,C); out may be a
static void FN(gpt_add)(real_t *out, const real_t *a, const real_t *b, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= TC_MODEL_COPY_MIN_WORK)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// x (N,C) += table[pos[n]] (rows of a (maxT,C) table)
static void FN(gpt_add_rows)(real_t *x, const real_t *table, const int64_t *pos, int64_t N, int64_t C)
{
#pragma omp parallel for schedule(static) if (N * C >= TC_MODEL_COPY_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const real_t *row = table + pos[n] * C;
        real_t *o = x + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = o[c] + row[c];
    }
}

/* logits (N,V) <- dlogits in place: row n (target t != ignore_index) becomes
 * scale * (exp(logits - lse[n]) - onehot(t)), exactly what tc_loss_cross_entropy_backward
 * adds to a zeroed buffer given the forward's lse; ignored rows become 0. */
static void FN(gpt_ce_backward_inplace)(real_t *logits, const real_t *lse, const int64_t *targets,
                                        int64_t N, int64_t V, int64_t ignore_index, real_t scale)
{
#pragma omp parallel for schedule(static) if (N * V >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        real_t *x = logits + n * V;
        const int64_t t = targets[n];
        if (t == ignore_index) {
            memset(x, 0, (size_t)V * sizeof(real_t));
            continue;
        }
        const real_t l = lse[n];
        for (int64_t c = 0; c < V; c++) x[c] = scale * MATH(exp)(x[c] - l);
        x[t] -= scale;
    }
}

/* out (n,) = act(inp (n,)); out may be inp */
static inline int FN(gpt_act_forward)(real_t *out, const real_t *inp, int64_t n, int act)
{
    if (act == TC_ACT_RELU) return FN(tc_relu_forward)(out, inp, n);
    return FN(tc_gelu_forward)(out, inp, n, act == TC_ACT_GELU_TANH);
}

/* h (N,H) = act(pre), pre = x (N,C) @ w^T (H,C) + b (H,) (b may be NULL), and the cache the
 * backward needs: for the GELUs gelu'(pre) (one fused product: bias, activation and its
 * derivative in the GEMM's epilogue, while each block is in cache; the backward evaluates
 * no GELU; without grads, no backward follows: nothing cached), for ReLU pre itself (product,
 * then activation). */
static int FN(gpt_fc_forward)(real_t *h, real_t *pre, const real_t *x, const real_t *w, const real_t *b, int64_t N,
                              int64_t C, int64_t H, int act, int grads)
{
    if (act == TC_ACT_RELU) {
        const int st = FN(tc_linear_forward)(pre, x, w, b, N, C, H);
        return st != TC_OK ? st : FN(tc_relu_forward)(h, pre, N * H);
    }
    if (!grads)
        return FN(tc_linear_gelu_forward)(h, NULL, x, w, b, N, C, H, act == TC_ACT_GELU_TANH);
    return FN(tc_linear_gelu_forward_dact)(h, pre, x, w, b, N, C, H,
                                           act == TC_ACT_GELU_TANH);
}

/* The MLP's backward, from dout (N,C) (the gradient at c_proj's output) to dx (N,C) (added
 * to: +=, or written with set_dx: the same bits as adding to zeros) and the gradients of both
 * linears (+=, or written with set_w): dh (N,H) = dout @ projw is written, not
 * accumulated (nothing to zero first); for the GELUs dh * gelu'(pre) and c_fc's backward
 * run fused (vectorised, the bias gradient in the same pass); ReLU goes through dh2 (N,H).
 * pre (N,H) (gelu'(pre) for the GELUs: gpt_fc_forward's cache), h = act(pre) (N,H) and
 * x (N,C) come from the forward; fcw (H,C), projw (C,H). */
static int FN(gpt_mlp_backward)(real_t *dx, real_t *dh, real_t *dh2, real_t *gfcw, real_t *gfcb, real_t *gprojw, real_t *gprojb,
                                const real_t *dout, const real_t *x, const real_t *pre, const real_t *h,
                                const real_t *fcw, const real_t *projw, int64_t N, int64_t C, int64_t H,
                                int act, int set_dx, int set_w)
{
    const int wset = set_w ? TC_WRITE(1) | TC_WRITE(2) : 0;
    const int xset = (set_dx ? TC_WRITE(0) : 0) | wset;
    int st = FN(tc_gemm)(dh, dout, projw, N, H, C, H, C, H, 0, 0, (real_t)1, (real_t)0);
    if (st == TC_OK)
        st = FN(tc_linear_backward)(NULL, gprojw, gprojb, dout, h, projw, N, H, C, wset);
    if (st != TC_OK) return st;
    if (act != TC_ACT_RELU)
        return FN(tc_linear_gelu_backward_dact)(dx, gfcw, gfcb, dh, pre, x, fcw, N, C, H, xset);
    st = FN(tc_relu_backward)(dh2, dh, pre, N * H, TC_WRITE(0));
    return st != TC_OK ? st
                       : FN(tc_linear_backward)(dx, gfcw, gfcb, dh2, x, fcw, N, C, H, xset);
}

/* g (P,) += the W - 1 buffers in others, in order (data-parallel gradients: a fixed order
 * for a fixed worker count), chunks spread over W threads */
static void FN(model_sum_grads)(real_t *g, real_t *const *others, int W, int64_t P)
{
    const int64_t chunk = 4096;
#pragma omp parallel for schedule(static) num_threads(W)
    for (int64_t i0 = 0; i0 < P; i0 += chunk) {
        const int64_t i1 = P - i0 < chunk ? P : i0 + chunk;
        for (int w = 0; w < W - 1; w++) {
            const real_t *o = others[w];
#pragma omp simd
            for (int64_t i = i0; i < i1; i++) g[i] += o[i];
        }
    }
}
