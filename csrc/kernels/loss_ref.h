/* loss_ref.h: the plain reference of the cross-entropy kernels (loss_impl.h), written once
 * for real_t: one row at a time, logsumexp (max-subtracted), the target distribution q and
 * every sum in double, rounded to real_t at the store (no vectors, no threads). The target
 * is either ids (N,) (one-hot; ignore_index rows: loss 0, gradient 0; probs NULL) or probs
 * (N,V) (ids NULL); q = (1 - eps) target + eps / V with eps = label_smoothing.
 *   loss_n = -sum_c q_c ((x_c - m_n) - ls_n), lse_n = m_n + ls_n (m_n the row max),  dx_n = w_n (softmax(x_n) sum_c q_c - q_n) */

/* q_c of row n (0 for an ignored row) */
static double FN(loss_ref_q)(const int64_t *ids, const real_t *probs, int64_t n, int64_t c,
                             int64_t V, int64_t ignore_index, double eps)
{
    if (probs) return (1 - eps) * probs[n * V + c] + eps / (double)V;
    if (ids[n] == ignore_index) return 0;
    return (1 - eps) * (ids[n] == c) + eps / (double)V;
}

/* logsumexp of row x (V,) in double as m + ls: *m the max, returns ls = log sum exp(x - m)
 * (kept apart: log-probabilities are (x - m) - ls, exact for large logits) */
static double FN(loss_ref_lse)(const real_t *x, int64_t V, double *m)
{
    double s = 0;
    *m = x[0];
    for (int64_t c = 1; c < V; c++) *m = x[c] > *m ? x[c] : *m;
    for (int64_t c = 0; c < V; c++) s += exp(x[c] - *m);
    return log(s);
}

/* TC_EINVAL unless exactly one target kind is given, V >= 1, eps in [0, 1], ids in range */
static int FN(loss_ref_check)(const int64_t *ids, const real_t *probs, int64_t N, int64_t V,
                              int64_t ignore_index, double eps)
{
    if (N < 0 || V < 1 || !(eps >= 0 && eps <= 1) || !ids == !probs) return TC_EINVAL;
    for (int64_t n = 0; ids && n < N; n++)
        if (ids[n] != ignore_index && (ids[n] < 0 || ids[n] >= V)) return TC_EINVAL;
    return TC_OK;
}

// losses (N,), lse (N,) from logits (N,V) and ids (N,) or probs (N,V)
int FN(tc_loss_cross_entropy_forward_ref)(real_t *losses, real_t *lse, const real_t *logits,
                                          const int64_t *ids, const real_t *probs, int64_t N,
                                          int64_t V, int64_t ignore_index, double label_smoothing)
{
    if (FN(loss_ref_check)(ids, probs, N, V, ignore_index, label_smoothing)) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++) {
        double m;
        const double ls = FN(loss_ref_lse)(logits + n * V, V, &m);
        double loss = 0;
        for (int64_t c = 0; c < V; c++)
            loss -= FN(loss_ref_q)(ids, probs, n, c, V, ignore_index, label_smoothing) *
                    ((logits[n * V + c] - m) - ls);
        losses[n] = (real_t)loss;
        lse[n] = (real_t)(m + ls);
    }
    return TC_OK;
}

// dlogits (N,V) written: w_n (softmax_n sum_c q_nc - q_n), w_n = scale * dlosses[n]
// (dlosses (N,)) or scale (dlosses NULL); logits (N,V), ids (N,) or probs (N,V)
int FN(tc_loss_cross_entropy_backward_ref)(real_t *dlogits, const real_t *logits,
                                           const int64_t *ids, const real_t *probs,
                                           const real_t *dlosses, int64_t N, int64_t V,
                                           int64_t ignore_index, double label_smoothing,
                                           double scale)
{
    if (FN(loss_ref_check)(ids, probs, N, V, ignore_index, label_smoothing)) return TC_EINVAL;
    for (int64_t n = 0; n < N; n++) {
        double m;
        const double ls = FN(loss_ref_lse)(logits + n * V, V, &m);
        const double w = dlosses ? scale * dlosses[n] : scale;
        double sq = 0;
        for (int64_t c = 0; c < V; c++)
            sq += FN(loss_ref_q)(ids, probs, n, c, V, ignore_index, label_smoothing);
        for (int64_t c = 0; c < V; c++)
            dlogits[n * V + c] = (real_t)(w * (exp((logits[n * V + c] - m) - ls) * sq -
                                          FN(loss_ref_q)(ids, probs, n, c, V, ignore_index,
                                                         label_smoothing)));
    }
    return TC_OK;
}
