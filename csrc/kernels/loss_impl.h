/* loss_impl.h: fused log-softmax + negative log-likelihood (cross-entropy over the last
 * axis), written once for real_t. Semantics are torch.nn.functional.cross_entropy's:
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

#include "vec_math.h"
#include "vec_rows.h"

/* Per-row routines: always-inline bodies over the vectors of vec_math.h (exp through its
 * vectorised VEXP), compiled for the x86-64 baseline and with AVX2+FMA, picked at run
 * time (LOSS_PICK). */

/* Row statistics: *m = max_c x_c, returns log(sum_c exp(x_c - m)). NaN in x propagates;
 * a row of all -inf gives NaN (as torch). */
__attribute__((always_inline)) static inline real_t FN(loss_row_logsumexp_body)(const real_t *x,
                                                                          int64_t V, real_t *m)
{
    const real_t mx = FN(vrow_max)(x, V);
    *m = mx;
    return MATH(log)(FN(vrow_exp_sum)(NULL, x, V, mx));
}

/* dx[c] += w * (exp(x[c] - s1 - s2) * sq - (p ? on * p[c] + off : off)) */
__attribute__((always_inline)) static inline void FN(loss_row_grad_body)(real_t *dx, const real_t *x,
                                                                        const real_t *p, int64_t V,
                                                                        real_t s1, real_t s2, real_t w, real_t sq,
                                                                        real_t on, real_t off)
{
    int64_t c = 0;
    const int64_t r = V % VL, cv = V - r;
    if (p) {
        for (; c < cv; c += VL) {
            const VF e = VEXP((VLOAD(x + c) - s1) - s2);
            VSTORE(dx + c, VLOAD(dx + c) + w * (e * sq - (on * VLOAD(p + c) + off)));
        }
        if (r) {
            const VF e = VEXP((VLOADR(x + c, r, 0, V >= VL) - s1) - s2);
            VSTORER(dx + c, VLOADR(dx + c, r, 0, V >= VL) + w * (e * sq - (on * VLOADR(p + c, r, 0, V >= VL) + off)), r, V >= VL);
        }
    } else {
        for (; c < cv; c += VL) {
            const VF e = VEXP((VLOAD(x + c) - s1) - s2);
            VSTORE(dx + c, VLOAD(dx + c) + w * (e * sq - off));
        }
        if (r) {
            const VF e = VEXP((VLOADR(x + c, r, 0, V >= VL) - s1) - s2);
            VSTORER(dx + c, VLOADR(dx + c, r, 0, V >= VL) + w * (e * sq - off), r, V >= VL);
        }
    }
}

/* the same from e[c] = exp(x[c] - m) stored by the caller, softmax = e * inv:
 * dx[c] += w * (e[c] * inv * sq - (p ? on * p[c] + off : off)) */
__attribute__((always_inline)) static inline void FN(loss_row_grad_e_body)(real_t *dx, const real_t *e,
                                                                          const real_t *p, int64_t V,
                                                                          real_t inv, real_t w, real_t sq, real_t on,
                                                                          real_t off)
{
    int64_t c = 0;
    const int64_t r = V % VL, cv = V - r;
    const real_t f = inv * sq;
    if (p) {
        for (; c < cv; c += VL)
            VSTORE(dx + c, VLOAD(dx + c) + w * (VLOAD(e + c) * f - (on * VLOAD(p + c) + off)));
        if (r)
            VSTORER(dx + c, VLOADR(dx + c, r, 0, V >= VL) + w * (VLOADR(e + c, r, 0, V >= VL) * f - (on * VLOADR(p + c, r, 0, V >= VL) + off)), r, V >= VL);
    } else {
        for (; c < cv; c += VL) VSTORE(dx + c, VLOAD(dx + c) + w * (VLOAD(e + c) * f - off));
        if (r)
            VSTORER(dx + c, VLOADR(dx + c, r, 0, V >= VL) + w * (VLOADR(e + c, r, 0, V >= VL) * f - off), r, V >= VL);
    }
}

/* backward of one row without the forward's lse: e = exp(x - max) is computed once into
 * the scratch row e (V elements), then the gradient from it */
__attribute__((always_inline)) static inline void FN(loss_row_grad_fresh_body)(real_t *dx, real_t *e,
                                                                              const real_t *x,
                                                                              const real_t *p,
                                                                              int64_t V, real_t w,
                                                                              real_t sq, real_t on, real_t off)
{
    const real_t m = FN(vrow_max)(x, V);
    const real_t sum = FN(vrow_exp_sum)(e, x, V, m);
    FN(loss_row_grad_e_body)(dx, e, p, V, (real_t)1 / sum, w, sq, on, off);
}

#define LOSS_VARIANT(attr, sfx)                                                               \
    attr static real_t FN(loss_row_logsumexp##sfx)(const real_t *x, int64_t V, real_t *m)                    \
    {                                                                                         \
        return FN(loss_row_logsumexp_body)(x, V, m);                                          \
    }                                                                                         \
    attr static real_t FN(loss_row_sum_sub##sfx)(const real_t *x, int64_t V, real_t m)                       \
    {                                                                                         \
        return FN(vrow_sum_sub)(x, V, m);                                                     \
    }                                                                                         \
    attr static void FN(loss_row_grad##sfx)(real_t *dx, const real_t *x, const real_t *p, int64_t V, real_t s1,   \
                                            real_t s2, real_t w, real_t sq, real_t on, real_t off)                     \
    {                                                                                         \
        FN(loss_row_grad_body)(dx, x, p, V, s1, s2, w, sq, on, off);                          \
    }                                                                                         \
    attr static void FN(loss_row_grad_fresh##sfx)(real_t *dx, real_t *e, const real_t *x, const real_t *p,        \
                                                  int64_t V, real_t w, real_t sq, real_t on, real_t off)          \
    {                                                                                         \
        FN(loss_row_grad_fresh_body)(dx, e, x, p, V, w, sq, on, off);                         \
    }
LOSS_VARIANT(, _generic)
#if TC_VEC_X86
LOSS_VARIANT(TC_VEC_AVX2, _avx2)
#define LOSS_PICK(name) (tc_cpu_pick(TC_CPU_LOSS) ? FN(name##_avx2) : FN(name##_generic))
#elif TC_VEC_NEON
LOSS_VARIANT(TC_VEC_NEON_FMA, _neon)
#define LOSS_PICK(name) (tc_cpu_pick(TC_CPU_LOSS) ? FN(name##_neon) : FN(name##_generic))
#else
#define LOSS_PICK(name) FN(name##_generic)
#endif
#undef LOSS_VARIANT

/* the function pointers of one call */
#define LOSS_ROUTINES                                                                          \
    real_t (*const lse_fn)(const real_t *, int64_t, real_t *) = LOSS_PICK(loss_row_logsumexp);                \
    real_t (*const sum_sub_fn)(const real_t *, int64_t, real_t) = LOSS_PICK(loss_row_sum_sub);                \
    void (*const grad_fn)(real_t *, const real_t *, const real_t *, int64_t, real_t, real_t, real_t, real_t, real_t, real_t) =              \
        LOSS_PICK(loss_row_grad);                                                              \
    void (*const fresh_fn)(real_t *, real_t *, const real_t *, const real_t *, int64_t, real_t, real_t, real_t, real_t) =              \
        LOSS_PICK(loss_row_grad_fresh);                                                        \
    (void)fresh_fn;                                                                            \
    (void)lse_fn;                                                                              \
    (void)sum_sub_fn;                                                                          \
    (void)grad_fn

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
static void FN(loss_total)(double *total, const real_t *losses, int64_t N)
{
    if (!total) return;
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += (double)losses[n];
    *total = s;
}

// losses (N,), lse (N,) or NULL, total (scalar) or NULL, logits (N,V), targets (N,) ids
int FN(tc_loss_cross_entropy_forward)(real_t *losses, real_t *lse, double *total, const real_t *logits,
                                      const int64_t *targets, int64_t N, int64_t V,
                                      int64_t ignore_index, real_t label_smoothing)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    if (FN(loss_check_targets)(targets, N, V, ignore_index)) return TC_EINVAL;
    LOSS_ROUTINES;
    const real_t eps = label_smoothing, on = 1 - label_smoothing;
#pragma omp parallel for schedule(static) if (TC_PAR(N * V, TC_LOSS_PAR_MIN))
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = logits + n * V;
        real_t m;
        const real_t ls = lse_fn(x, V, &m);
        if (lse) lse[n] = m + ls;
        const int64_t t = targets[n];
        if (t == ignore_index) {
            losses[n] = 0;
            continue;
        }
        real_t loss = ls - (x[t] - m); /* -logp[t] */
        if (eps > 0) {
            const real_t sd = sum_sub_fn(x, V, m); /* sum_c (x_c - m) */
            loss = on * loss + eps * (ls - sd / (real_t)V); /* smooth term: -mean_c logp_c */
        }
        losses[n] = loss;
    }
    FN(loss_total)(total, losses, N);
    return TC_OK;
}

/* One row of a backward: dx (V,) += w (softmax(x) sq - q) with q_c = on p_c + off (p NULL:
 * q_c = off, the caller subtracts the one-hot part). The softmax comes from lse_n (the
 * forward's logsumexp of the row) or, lse_n NULL, is recomputed: a row of at most
 * LOSS_SCRATCH keeps its exps in a stack buffer (fresh_fn), a longer one takes the
 * logsumexp first. */
static inline void FN(loss_row_backward)(
    real_t *dx, const real_t *x, const real_t *p, int64_t V, const real_t *lse_n, real_t w,
    real_t sq, real_t on, real_t off, real_t (*const lse_fn)(const real_t *, int64_t, real_t *),
    void (*const grad_fn)(real_t *, const real_t *, const real_t *, int64_t, real_t, real_t, real_t, real_t, real_t, real_t),
    void (*const fresh_fn)(real_t *, real_t *, const real_t *, const real_t *, int64_t, real_t, real_t, real_t, real_t))
{
    if (!lse_n && V <= LOSS_SCRATCH) {
        real_t e[LOSS_SCRATCH];
        fresh_fn(dx, e, x, p, V, w, sq, on, off);
        return;
    }
    /* softmax_c = exp(x_c - shift1 - shift2) */
    real_t shift1, shift2;
    if (lse_n) {
        shift1 = *lse_n;
        shift2 = 0;
    } else {
        shift2 = lse_fn(x, V, &shift1);
    }
    grad_fn(dx, x, p, V, shift1, shift2, w, sq, on, off);
}

/* The weight of row n's gradient. */
#define LOSS_ROW_WEIGHT(n) (dlosses ? scale * dlosses[n] : scale)

// dlogits (N,V) += w_n (softmax_n - q_n) with w_n = scale * dlosses[n] (dlosses (N,) or NULL:
// w_n = scale); lse (N,) from the forward, or NULL to recompute it; logits (N,V), targets (N,);
// write: TC_WRITE(0) = dlogits zeroed first (ignored rows stay 0), then accumulated into
int FN(tc_loss_cross_entropy_backward)(real_t *dlogits, const real_t *lse, const real_t *logits,
                                       const int64_t *targets, const real_t *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, real_t label_smoothing,
                                       real_t scale, int write)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    if (FN(loss_check_targets)(targets, N, V, ignore_index)) return TC_EINVAL;
    if (TC_WRITES(write, 0)) memset(dlogits, 0, (size_t)N * (size_t)V * sizeof(real_t));
    LOSS_ROUTINES;
    const real_t on = 1 - label_smoothing, off = label_smoothing / (real_t)V;
#pragma omp parallel for schedule(static) if (TC_PAR(N * V, TC_LOSS_PAR_MIN))
    for (int64_t n = 0; n < N; n++) {
        const int64_t t = targets[n];
        if (t == ignore_index) continue;
        const real_t *x = logits + n * V;
        real_t *dx = dlogits + n * V;
        const real_t w = LOSS_ROW_WEIGHT(n);
        FN(loss_row_backward)(dx, x, NULL, V, lse ? lse + n : NULL, w, (real_t)1, on, off,
                              lse_fn, grad_fn, fresh_fn);
        dx[t] -= w * on;
    }
    return TC_OK;
}

// losses (N,), lse (N,) or NULL, total (scalar) or NULL, logits (N,V), targets (N,V) class
// probabilities (rows need not sum to 1: the loss is linear in them)
int FN(tc_loss_cross_entropy_probs_forward)(real_t *losses, real_t *lse, double *total, const real_t *logits,
                                            const real_t *targets, int64_t N, int64_t V,
                                            real_t label_smoothing)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    const real_t on = 1 - label_smoothing, off = label_smoothing / (real_t)V;
    const int smooth = label_smoothing > 0;
    LOSS_ROUTINES;
#pragma omp parallel for schedule(static) if (TC_PAR(N * V, TC_LOSS_PAR_MIN))
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = logits + n * V, *p = targets + n * V;
        real_t m;
        const real_t ls = lse_fn(x, V, &m);
        if (lse) lse[n] = m + ls;
        real_t loss = 0; /* sum_c q_c * -logp_c */
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
// lse (N,) or NULL, logits (N,V), targets (N,V) probabilities, dlosses (N,) or NULL; write
// as tc_loss_cross_entropy_backward
int FN(tc_loss_cross_entropy_probs_backward)(real_t *dlogits, const real_t *lse, const real_t *logits,
                                             const real_t *targets, const real_t *dlosses, int64_t N,
                                             int64_t V, real_t label_smoothing, real_t scale,
                                             int write)
{
    if (N < 0 || V < 1 || !(label_smoothing >= 0 && label_smoothing <= 1)) return TC_EINVAL;
    if (TC_WRITES(write, 0)) memset(dlogits, 0, (size_t)N * (size_t)V * sizeof(real_t));
    const real_t on = 1 - label_smoothing, off = label_smoothing / (real_t)V;
    const int smooth = label_smoothing > 0;
    LOSS_ROUTINES;
#pragma omp parallel for schedule(static) if (TC_PAR(N * V, TC_LOSS_PAR_MIN))
    for (int64_t n = 0; n < N; n++) {
        const real_t *x = logits + n * V, *p = targets + n * V;
        real_t *dx = dlogits + n * V;
        const real_t w = LOSS_ROW_WEIGHT(n);
        real_t sq = 0; /* sum_c q_c */
        if (smooth) {
            for (int64_t c = 0; c < V; c++) sq += on * p[c] + off;
        } else {
            for (int64_t c = 0; c < V; c++) sq += p[c];
        }
        FN(loss_row_backward)(dx, x, p, V, lse ? lse + n : NULL, w, sq,
                              smooth ? on : (real_t)1, smooth ? off : (real_t)0, lse_fn,
                              grad_fn, fresh_fn);
    }
    return TC_OK;
}

#undef LOSS_ROW_WEIGHT
#undef LOSS_ROUTINES
#undef LOSS_PICK
