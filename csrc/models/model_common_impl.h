/* model_common_impl.h: helpers shared by the whole-model drivers (gpt_train_impl.h,
 * encdec_train_impl.h, and through decode_common_impl.h the KV decoders), written once for
 * real_t and included by each per dtype: residual additions, position rows, dropout of a
 * call's rows, the attention glue (the fast paths' attention reads and writes the
 * token-major buffers in place at their strides), the data-parallel loss and gradient sum,
 * the in-place cross-entropy gradient and the MLP (activations through the activation table
 * of activation.c). */

#ifndef TC_MODEL_COPY_MIN_WORK
/* memory-bound copies and additions: below ~1 MB a second thread costs more to wake (a
 * futex round trip with the passive wait policy) than it saves */
#define TC_MODEL_COPY_MIN_WORK (8 * TC_PARALLEL_MIN_WORK)
#endif

// out (N,C) = a (N,C) + b (N,C); out may be a
static void FN(gpt_add)(real_t *out, const real_t *a, const real_t *b, int64_t n)
{
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_MODEL_COPY_MIN_WORK))
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// x (N,C) += table[pos[n]] (rows of a (maxT,C) table)
static void FN(gpt_add_rows)(real_t *x, const real_t *table, const int64_t *pos, int64_t N, int64_t C)
{
#pragma omp parallel for schedule(static) if (TC_PAR(N * C, TC_MODEL_COPY_MIN_WORK))
    for (int64_t n = 0; n < N; n++) {
        const real_t *row = table + pos[n] * C;
        real_t *o = x + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = o[c] + row[c];
    }
}

/* x (n,) <- drop(x) at dropout site `site` (seed + (site + 1) * golden), when dropping */
static int FN(model_dropout)(real_t *x, int64_t n, const model_drop *d, int64_t site)
{
    if (!d->on) return TC_OK;
    return FN(tc_dropout_forward_at)(x, x, n, d->p, gpt_site_seed(d->seed, site),
                                     model_drop_first(d, n));
}

/* The gradient through a dropout site: *out = g itself when not dropping, else
 * scratch (n,) = g * mask. */
static int FN(model_dropout_back)(const real_t **out, const real_t *g, real_t *scratch, int64_t n,
                                  const model_drop *d, int64_t site)
{
    *out = g;
    if (!d->on) return TC_OK;
    *out = scratch;
    return FN(tc_dropout_backward_at)(scratch, g, n, d->p, gpt_site_seed(d->seed, site),
                                      model_drop_first(d, n), TC_WRITE(0));
}

/* Attention of B sequences of L queries against S keys (NH heads of HS values, scale
 * 1/sqrt(HS)), every operand at the strides of lay (token-major buffers read and written in
 * place), the key-padding mask (B,S) or NULL, causal mode `causal` (TC_CAUSAL_*), dropout on
 * the probabilities at site `site`. */
static int FN(model_attention_forward)(real_t *out, real_t *lse, const real_t *q, const real_t *k,
                                       const real_t *v, const tc_attention_layout *lay,
                                       const uint8_t *mask, const tc_attention_sparse *sp,
                                       int64_t B, int64_t NH, int64_t L, int64_t S, int64_t HS,
                                       int causal, const model_drop *d, int64_t site)
{
    tc_attention_masks mk;
    memset(&mk, 0, sizeof mk);
    mk.key_padding = mask;
    mk.sparse = sp;
    mk.dropout_first = model_drop_first(d, B * NH * L * S);
    return FN(tc_attention_forward_strided)(out, lse, q, k, v, &mk, lay, B, NH, L, S, HS, HS,
                                            (real_t)(1.0 / sqrt((double)HS)), causal,
                                            d->on ? d->p : 0.0, gpt_site_seed(d->seed, site));
}

/* Its backward: dq, dk, dv WRITTEN (no zeroing needed) at the strides of lay. */
static int FN(model_attention_backward)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout,
                                        const real_t *q, const real_t *k, const real_t *v,
                                        const real_t *out, const real_t *lse,
                                        const tc_attention_layout *lay, const uint8_t *mask,
                                        const tc_attention_sparse *sp, int64_t B, int64_t NH,
                                        int64_t L, int64_t S, int64_t HS, int causal,
                                        const model_drop *d, int64_t site)
{
    tc_attention_masks mk;
    memset(&mk, 0, sizeof mk);
    mk.key_padding = mask;
    mk.sparse = sp;
    mk.dropout_first = model_drop_first(d, B * NH * L * S);
    return FN(tc_attention_backward_strided)(dq, dk, dv, dout, q, k, v, out, lse, &mk, lay, B,
                                             NH, L, S, HS, HS, (real_t)(1.0 / sqrt((double)HS)),
                                             causal, d->on ? d->p : 0.0,
                                             gpt_site_seed(d->seed, site), TC_WRITE_ALL);
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

/* What one call's job over a batch shares (the drivers' job structs begin with it): the
 * forward's logits (NULL: the loss and gradients instead), ignore_index, 1 / the counted
 * targets of the whole batch (0: none), the dropout seed and switch, and each worker's
 * summed loss. */
typedef struct {
    real_t *logits;
    int64_t ignore_index;
    double inv_count;
    uint64_t seed;
    int drop;
    double part[TC_MODEL_MAX_WORKERS];
} FN(model_job);

/* *loss = the mean of the W workers' summed losses part (W,) over count targets (NaN when
 * none), and the clones' gradient buffers others (W - 1 of P elements) summed into g in
 * worker order. */
static void FN(model_loss_finish)(double *loss, const double *part, int W, int64_t count,
                                  real_t *g, void *const *others, int64_t P)
{
    double total = 0;
    for (int w = 0; w < W; w++) total += part[w];
    if (W > 1 && count) FN(model_sum_grads)(g, (real_t *const *)others, W, P);
    *loss = count ? total / (double)count : NAN;
}

/* logits (N,V) <- dlogits in place: row n (target t != ignore_index) becomes
 * scale * (exp(logits - lse[n]) - onehot(t)), exactly what tc_loss_cross_entropy_backward
 * adds to a zeroed buffer given the forward's lse; ignored rows become 0. */
static void FN(gpt_ce_backward_inplace)(real_t *logits, const real_t *lse, const int64_t *targets,
                                        int64_t N, int64_t V, int64_t ignore_index, real_t scale)
{
#pragma omp parallel for schedule(static) if (TC_PAR(N * V, TC_PARALLEL_MIN_WORK))
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

/* The norm of every ln_* of a model, by its norm_type (TC_NORM_TYPE_*): the one place the
 * drivers pick the kernel. out (N,C) or NULL, mean (N,) (layer norm only; may be NULL),
 * rstd (N,) or NULL, inp (N,C), weight (C,), bias (C,) or NULL. */
static inline int FN(model_norm_forward)(int type, real_t *out, real_t *mean, real_t *rstd,
                                         const real_t *inp, const real_t *w, const real_t *b,
                                         int64_t N, int64_t C, double eps)
{
    if (type == TC_NORM_TYPE_RMSNORM) return FN(tc_rmsnorm_forward)(out, rstd, inp, w, b, N, C, eps);
    return FN(tc_layernorm_forward)(out, mean, rstd, inp, w, b, N, C, eps);
}

/* Its backward (tc_layernorm_backward's arguments; mean unused by the RMS norm). */
static inline int FN(model_norm_backward)(int type, real_t *dinp, real_t *dw, real_t *db,
                                          const real_t *dout, const real_t *inp, const real_t *w,
                                          const real_t *mean, const real_t *rstd, int64_t N,
                                          int64_t C, int write)
{
    if (type == TC_NORM_TYPE_RMSNORM)
        return FN(tc_rmsnorm_backward)(dinp, dw, db, dout, inp, w, rstd, N, C, write);
    return FN(tc_layernorm_backward)(dinp, dw, db, dout, inp, w, mean, rstd, N, C, write);
}

/* QK-norm of a block's self-attention (qk_norm): the NH query heads at qkv and the NKV key
 * heads at qkv + C (HS values each) of a token-major (N,C + 2KC) c_attn output (C = NH HS,
 * KC = NKV HS), RMS-normalised per head (gains qw, kw (HS,), each shared by its heads;
 * the keys before grouped-query sharing) into qkn (N,C + KC) [q | k] (model_block_layout
 * reads them there), their rstd into r: q's (N,NH), then k's (N,NKV). */
static int FN(model_qk_norm_forward)(real_t *qkn, real_t *r, const real_t *qkv,
                                     const real_t *qw, const real_t *kw, int64_t N, int64_t NH,
                                     int64_t NKV, int64_t HS, double eps)
{
    const int64_t C = NH * HS, KC = NKV * HS;
    CHECK(FN(tc_rmsnorm_heads_forward)(qkn, C + KC, r, qkv, C + 2 * KC, qw, N, NH, HS, eps));
    return FN(tc_rmsnorm_heads_forward)(qkn + C, C + KC, r + N * NH, qkv + C, C + 2 * KC, kw,
                                        N, NKV, HS, eps);
}

/* Its backward in place on dqkv (N,C + 2KC): dq, dk (of the normalised q, k, at dqkv and
 * dqkv + C) become the raw ones' gradients; the gains' gradients dqw, dkw (HS,) accumulate.
 * qkv, r: the forward's input and rstd. */
static int FN(model_qk_norm_backward)(real_t *dqkv, real_t *dqw, real_t *dkw, const real_t *qkv,
                                      const real_t *qw, const real_t *kw, const real_t *r,
                                      int64_t N, int64_t NH, int64_t NKV, int64_t HS)
{
    const int64_t C = NH * HS, row = C + 2 * NKV * HS;
    CHECK(FN(tc_rmsnorm_heads_backward)(dqkv, row, dqw, dqkv, qkv, row, qw, r, N, NH, HS,
                                        TC_WRITE(0)));
    return FN(tc_rmsnorm_heads_backward)(dqkv + C, row, dkw, dqkv + C, qkv + C, row, kw,
                                         r + N * NH, N, NKV, HS, TC_WRITE(0));
}

/* The gated MLP's weights (or their gradients): c_gate gw (H,C), gb (H,), c_fc fw (H,C), fb
 * (H,), c_proj pw (C,H), pb (C,); biases may be NULL. */
typedef struct {
    real_t *gw, *gb, *fw, *fb, *pw, *pb;
} FN(model_glu_w);

/* What its forward keeps for the backward: fch = c_gate(in), fcu = c_fc(in), fcg =
 * act(fch), fcha = fcg * fcu, each (N,H). */
typedef struct {
    real_t *fch, *fcu, *fcg, *fcha;
} FN(model_glu_acts);

/* The gated MLP (cfg.gated): out (N,C) = c_proj(act(c_gate(in)) * c_fc(in)), in (N,C), the
 * cache a (tc_glu_forward). */
static int FN(model_gated_forward)(real_t *out, const FN(model_glu_acts) *a, const real_t *in,
                                   const FN(model_glu_w) *w, int64_t N, int64_t C, int64_t H,
                                   int act)
{
    CHECK(FN(tc_linear_forward)(a->fch, in, w->gw, w->gb, N, C, H));
    CHECK(FN(tc_linear_forward)(a->fcu, in, w->fw, w->fb, N, C, H));
    CHECK(FN(tc_glu_forward)(act, a->fcha, a->fcg, a->fch, a->fcu, N * H));
    return FN(tc_linear_forward)(out, a->fcha, w->pw, w->pb, N, H, C);
}

/* Its backward from dout (N,C) (may be dx itself): dh1 (N,H) = dout @ c_proj, then dgate
 * (dh2) and dup (over dh1) by tc_glu_backward from the cache a, then c_gate's and c_fc's
 * backward into dx (N,C) (+=, written with set_dx) and the gradients g (+=, written with
 * set_w). dh1, dh2 (N,H) scratch; in (N,C): the sub-layer's input. */
static int FN(model_gated_backward)(real_t *dx, real_t *dh1, real_t *dh2,
                                    const FN(model_glu_w) *g, const real_t *dout,
                                    const real_t *in, const FN(model_glu_acts) *a,
                                    const FN(model_glu_w) *w, int64_t N, int64_t C, int64_t H,
                                    int act, int set_dx, int set_w)
{
    const int wset = set_w ? TC_WRITE(1) | TC_WRITE(2) : 0;
    CHECK(FN(tc_gemm)(dh1, dout, w->pw, N, H, C, H, C, H, 0, 0, (real_t)1, (real_t)0));
    CHECK(FN(tc_linear_backward)(NULL, g->pw, g->pb, dout, a->fcha, w->pw, N, H, C, wset));
    CHECK(FN(tc_glu_backward)(act, dh2, dh1, dh1, a->fch, a->fcu, a->fcg, N * H,
                              TC_WRITE(0) | TC_WRITE(1)));
    CHECK(FN(tc_linear_backward)(dx, g->gw, g->gb, dh2, in, w->gw, N, C, H,
                                 (set_dx ? TC_WRITE(0) : 0) | wset));
    return FN(tc_linear_backward)(dx, g->fw, g->fb, dh1, in, w->fw, N, C, H, wset);
}

/* the MLP's two halves, gpt_fc_forward and gpt_mlp_backward, are shared with the
 * mixture-of-experts kernel (kernels/moe.c): kernels/mlp_block.h */
#include "mlp_block.h"


/* The tc_moe_cache over the arrays model_moe_plan carved at base, with cap rows per expert
 * (aux 0 until a forward writes it). */
static inline FN(tc_moe_cache) FN(model_moe_cache)(char *base, const model_moe_acts *a, int64_t cap)
{
    FN(tc_moe_cache) mc;
    memset(&mc, 0, sizeof mc);
    mc.probs = (real_t *)(base + a->probs);
    mc.gates = (real_t *)(base + a->gates);
    mc.expert = (int64_t *)(base + a->expert);
    mc.slot = (int64_t *)(base + a->slot);
    mc.tok = (int64_t *)(base + a->tok);
    mc.counts = (int64_t *)(base + a->counts);
    mc.dropped = (int64_t *)(base + a->dropped);
    mc.xg = (real_t *)(base + a->xg);
    mc.pre = (real_t *)(base + a->pre);
    mc.hid = (real_t *)(base + a->hid);
    mc.eo = (real_t *)(base + a->eo);
    mc.cap = cap;
    return mc;
}
