/* attention_probs_impl.h: the attention probabilities of a finished forward, read out on
 * request (functional.scaled_dot_product_attention(return_weights=True), the nn layers'
 * weights, the models' inspect), written once for real_t.
 *
 * Per batch-head bh = (b, h): scores = scale * q k^T (tc_gemm, q and k at their layout
 * strides), masked by attention_mask_row -- the one mask function both attention kernels
 * use -- then P_ij = exp(s_ij - lse_i) with the forward's logsumexp, exactly as the
 * backward recomputes P: masked keys get exactly 0, a row with every key masked
 * (lse = -inf) is all zeros. No dropout: the pre-dropout probabilities. The only (T,S)
 * memory is the output itself. */

/* P (T,S) of batch-head bh: q (T,DK) at row stride ldq, k (S,DK) at row stride ldk,
 * lse (T,) */
static int FN(attention_probs_head)(real_t *P, const real_t *q, int64_t ldq, const real_t *k,
                                    int64_t ldk, const real_t *lse,
                                    const tc_attention_masks *masks, int64_t NH, int64_t bh,
                                    int64_t Tq, int64_t S, int64_t DK, real_t scale, int causal,
                                    int parallel)
{
    const int64_t b = bh / NH, h = bh % NH;
    int st = FN(tc_gemm)(P, q, k, Tq, S, DK, S, ldq, ldk, 0, 1, scale, (real_t)0);
    if (st != TC_OK) return st;
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < Tq; i++) {
        real_t *p = P + i * S;
        const real_t l = lse[i];
        if (l == -INFINITY) { /* every key masked: the forward's zero row */
            for (int64_t j = 0; j < S; j++) p[j] = 0;
            continue;
        }
        FN(attention_mask_row)(p, masks, b, h, i, 0, S, attention_limit(i, Tq, S, causal), S,
                               attention_qoff(Tq, S, causal));
        for (int64_t j = 0; j < S; j++) p[j] = MATH(exp)(p[j] - l); /* masked: exactly 0 */
    }
    return TC_OK;
}

// P (B,NH,T,S) written; q (B,NH,T,DK), k (B,NH,S,DK) at layout->q / layout->k strides
// (layout NULL: contiguous), lse (B,NH,T) from the forward with the same masks, scale, causal
int FN(tc_attention_probs_strided)(real_t *P, const real_t *q, const real_t *k, const real_t *lse,
                                   const tc_attention_masks *masks,
                                   const tc_attention_layout *layout, int64_t B, int64_t NH,
                                   int64_t Tq, int64_t S, int64_t DK, real_t scale, int causal)
{
    if (!attention_dims_ok(B, NH, Tq, S, DK, 0) || !attention_causal_ok(causal) ||
        (masks && masks->sparse && !tc_attention_sparse_ok(masks->sparse)))
        return TC_EINVAL;
    if (layout && !attention_kv_heads_ok(layout->kv_heads, NH)) return TC_EINVAL;
    const int64_t BH = B * NH;
    if (BH == 0 || Tq == 0 || S == 0) return TC_OK;
    tc_attention_layout cont;
    if (!layout) {
        tc_attention_layout_contiguous(&cont, NH, Tq, S, DK, 0);
        layout = &cont;
    }
    const int64_t G = attention_group(layout->kv_heads, NH);
    const double head_work = (double)Tq * (double)S * (double)(DK + 8);
    const int outer = BH > 1 && TC_PAR(head_work * (double)BH, TC_PARALLEL_MIN_WORK);
    const int inner = !outer && TC_PAR((double)Tq * (double)S, TC_PARALLEL_MIN_WORK);
    int status = TC_OK;
#pragma omp parallel for schedule(static) if (outer)
    for (int64_t bh = 0; bh < BH; bh++) {
        int st = FN(attention_probs_head)(P + bh * Tq * S, ATT_HEAD(q, layout->q, NH, bh),
                                          layout->q.t, ATT_KVHEAD(k, layout->k, NH, G, bh),
                                          layout->k.t, lse + bh * Tq, masks, NH, bh, Tq, S, DK,
                                          scale, causal, inner);
        if (st != TC_OK) {
#pragma omp atomic write
            status = st;
        }
    }
    return status;
}

// P (B,NH,T,S) written; q (B,NH,T,DK), k (B,NH,S,DK), lse (B,NH,T) contiguous
int FN(tc_attention_probs)(real_t *P, const real_t *q, const real_t *k, const real_t *lse,
                           const tc_attention_masks *masks, int64_t B, int64_t NH, int64_t Tq,
                           int64_t S, int64_t DK, real_t scale, int causal)
{
    return FN(tc_attention_probs_strided)(P, q, k, lse, masks, NULL, B, NH, Tq, S, DK, scale,
                                          causal);
}
