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
