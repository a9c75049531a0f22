/* loss_impl.h: fused log-softmax + negative log-likelihood (cross-entropy over the last
 * axis), written once for T. Semantics are torch.nn.functional.cross_entropy's:
 *
 *   logp = logits - logsumexp(logits)                       (per row, max-subtracted)
 *   q    = (1 - eps) * target + eps / V                     (label smoothing eps)
 *   loss = -sum_c q_c logp_c
 *
 * where target is one-hot at the class id (id targets) or a given distribution
 * (probability targets). With id targets and eps > 0 the loss is
 * (1 - eps) * nll + eps * (-mean_c logp_c); rows whose id equals ignore_index get loss 0 and
 * exactly zero gradient. The gradient of loss_n is softmax * sum_c q_c - q.
 *
 * Each row is handled by one thread start to end, so results are bitwise reproducible.
 */

/* Row statistics: *m = max_c x_c, returns log(sum_c exp(x_c - m)). NaN in x propagates;
 * a row of all -inf gives NaN (as torch). */
static T FN(loss_row_logsumexp)(const T *x, int64_t V, T *m)
{
    T mx = -INFINITY;
    for (int64_t c = 0; c < V; c++) mx = x[c] > mx ? x[c] : mx;
    T s = 0;
    for (int64_t c = 0; c < V; c++) s += MATH(exp)(x[c] - mx);
    *m = mx;
    return MATH(log)(s);
}

/* 0 if every id lies in [0, V) or equals ignore_index. */
static int FN(loss_check_targets)(const int64_t *targets, int64_t N, int64_t V,
                                  int64_t ignore_index)
{
    for (int64_t n = 0; n < N; n++) {
        const int64_t t = targets[n];
        if (t != ignore_index && (t < 0 || t >= V)) return TC_EINVAL;
    }
    return TC_OK;
}

/* *total = sum_n losses[n], in double, in row order (NULL: not wanted). */
static void FN(loss_total)(double *total, const T *losses, int64_t N)
{
    if (!total) return;
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += (double)losses[n];
    *total = s;
}

// losses (N,), lse (N,) or NULL, total (scalar) or NULL, logits (N,V), targets (N,) ids
int FN(tc_loss_cross_entropy_forward)(T *losses, T *lse, double *total, const T *logits,
                                      const int64_t *targets, int64_t N, int64_t V,
                                      int64_t ignore_index, T label_smoothing)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    if (FN(loss_check_targets)(targets, N, V, ignore_index)) return TC_EINVAL;
    const T eps = label_smoothing, on = 1 - label_smoothing;
#pragma omp parallel for schedule(static) if (N * V >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const T *x = logits + n * V;
        T m;
        const T ls = FN(loss_row_logsumexp)(x, V, &m);
        if (lse) lse[n] = m + ls;
        const int64_t t = targets[n];
        if (t == ignore_index) {
            losses[n] = 0;
            continue;
        }
        T loss = ls - (x[t] - m); /* -logp[t] */
        if (eps > 0) {
            T sd = 0; /* sum_c (x_c - m) */
            for (int64_t c = 0; c < V; c++) sd += x[c] - m;
            loss = on * loss + eps * (ls - sd / (T)V); /* smooth term: -mean_c logp_c */
        }
        losses[n] = loss;
    }
    FN(loss_total)(total, losses, N);
    return TC_OK;
}

/* The weight of row n's gradient. */
#define LOSS_ROW_WEIGHT(n) (dlosses ? scale * dlosses[n] : scale)

// dlogits (N,V) += w_n (softmax_n - q_n) with w_n = scale * dlosses[n] (dlosses (N,) or NULL:
// w_n = scale); lse (N,) from the forward, or NULL to recompute it; logits (N,V), targets (N,)
int FN(tc_loss_cross_entropy_backward)(T *dlogits, const T *lse, const T *logits,
                                       const int64_t *targets, const T *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, T label_smoothing,
                                       T scale)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    if (FN(loss_check_targets)(targets, N, V, ignore_index)) return TC_EINVAL;
    const T on = 1 - label_smoothing, off = label_smoothing / (T)V;
#pragma omp parallel for schedule(static) if (N * V >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const int64_t t = targets[n];
        if (t == ignore_index) continue;
        const T *x = logits + n * V;
        T *dx = dlogits + n * V;
        const T w = LOSS_ROW_WEIGHT(n);
        /* softmax_c = exp(x_c - shift1 - shift2) */
        T shift1, shift2;
        if (lse) {
            shift1 = lse[n];
            shift2 = 0;
        } else {
            shift2 = FN(loss_row_logsumexp)(x, V, &shift1);
        }
        if (off > 0) {
            for (int64_t c = 0; c < V; c++)
                dx[c] += w * (MATH(exp)(x[c] - shift1 - shift2) - off);
        } else {
            for (int64_t c = 0; c < V; c++) dx[c] += w * MATH(exp)(x[c] - shift1 - shift2);
        }
        dx[t] -= w * on;
    }
    return TC_OK;
}

// losses (N,), lse (N,) or NULL, total (scalar) or NULL, logits (N,V), targets (N,V) class
// probabilities (rows need not sum to 1: the loss is linear in them)
int FN(tc_loss_cross_entropy_probs_forward)(T *losses, T *lse, double *total, const T *logits,
                                            const T *targets, int64_t N, int64_t V,
                                            T label_smoothing)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    const T on = 1 - label_smoothing, off = label_smoothing / (T)V;
    const int smooth = label_smoothing > 0;
#pragma omp parallel for schedule(static) if (N * V >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const T *x = logits + n * V, *p = targets + n * V;
        T m;
        const T ls = FN(loss_row_logsumexp)(x, V, &m);
        if (lse) lse[n] = m + ls;
        T loss = 0; /* sum_c q_c * -logp_c */
        if (smooth) {
            for (int64_t c = 0; c < V; c++) loss += (on * p[c] + off) * (ls - (x[c] - m));
        } else {
            for (int64_t c = 0; c < V; c++) loss += p[c] * (ls - (x[c] - m));
        }
        losses[n] = loss;
    }
    FN(loss_total)(total, losses, N);
    return TC_OK;
}

// dlogits (N,V) += w_n (softmax_n * sum_c q_nc - q_n), w_n as in tc_loss_cross_entropy_backward;
// lse (N,) or NULL, logits (N,V), targets (N,V) probabilities, dlosses (N,) or NULL
int FN(tc_loss_cross_entropy_probs_backward)(T *dlogits, const T *lse, const T *logits,
                                             const T *targets, const T *dlosses, int64_t N,
                                             int64_t V, T label_smoothing, T scale)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    const T on = 1 - label_smoothing, off = label_smoothing / (T)V;
    const int smooth = label_smoothing > 0;
#pragma omp parallel for schedule(static) if (N * V >= TC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const T *x = logits + n * V, *p = targets + n * V;
        T *dx = dlogits + n * V;
        const T w = LOSS_ROW_WEIGHT(n);
        T shift1, shift2;
        if (lse) {
            shift1 = lse[n];
            shift2 = 0;
        } else {
            shift2 = FN(loss_row_logsumexp)(x, V, &shift1);
        }
        T sq = 0; /* sum_c q_c */
        if (smooth) {
            for (int64_t c = 0; c < V; c++) sq += on * p[c] + off;
            for (int64_t c = 0; c < V; c++)
                dx[c] += w * (MATH(exp)(x[c] - shift1 - shift2) * sq - (on * p[c] + off));
        } else {
            for (int64_t c = 0; c < V; c++) sq += p[c];
            for (int64_t c = 0; c < V; c++)
                dx[c] += w * (MATH(exp)(x[c] - shift1 - shift2) * sq - p[c]);
        }
    }
    return TC_OK;
}

#undef LOSS_ROW_WEIGHT
