/* moe_impl.h: the mixture-of-experts feed-forward (tc.h explains the maths), written once
 * for real_t.
 *
 * Forward: logits (N,E) = inp @ router^T (GEMM), the softmax kernel, per row the top-K and
 * the gates (threads over rows), the capacity pass (one sequential pass over the N K
 * choices in priority order: the only order-dependent step), the load-balancing loss; then
 * per expert: its rows gathered into xg (counts[e], C), the dense model's MLP on them
 * (mlp_block.h: fused linear + activation where the activation has one), outputs into eo
 * (with threads: one region over (expert, row range) tasks, moe_experts_forward);
 * finally out[n] = sum_j g_j eo[slot_j] (threads over rows, choices in order).
 * Backward: dg from dout and eo, each expert's MLP backward on its rows with dout scaled by
 * the gate (with threads and experts whose rows balance over them: whole experts handed to
 * the threads, moe_spread_experts; else expert by expert, the products threaded), the gate
 * and aux gradients into dp (N,E), the softmax backward, the router's two products, and
 * dinp[n] += the expert rows' input gradients (threads over rows).
 * Results are bitwise reproducible for a fixed thread count (every sum has a fixed order),
 * and do not depend on how the experts are scheduled: every product entry and bias sum is
 * computed by one thread in an order fixed by the shapes alone.
 */
#include "mlp_block.h"

#ifndef MOE_IMPL_ONCE
#define MOE_IMPL_ONCE
#define MOE_SPREAD_MAX_E 64 /* more experts: the backward runs expert by expert */

/* The thread count the experts may be spread over (1 without OpenMP or inside a region). */
static inline int moe_threads(void)
{
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/* This thread's number in the region, after keeping kernels it calls on this thread alone. */
static inline int moe_task_thread(void)
{
#ifdef _OPENMP
    omp_set_num_threads(1);
    return omp_get_thread_num();
#else
    return 0;
#endif
}
#endif

/* 0 if the cache's routing (expert, slot, tok, counts) lies in range and agrees, else
 * TC_EINVAL: the backward reads rows by these indices. */
static int FN(moe_cache_check)(const FN(tc_moe_cache) *c, int64_t N, int64_t E, int64_t K)
{
    const int64_t cap = c->cap;
    if (cap < 0 || (N > 0 && cap > N)) return TC_EINVAL;
    for (int64_t e = 0; e < E; e++)
        if (c->counts[e] < 0 || c->counts[e] > cap) return TC_EINVAL;
    for (int64_t a = 0; a < N * K; a++) {
        const int64_t e = c->expert[a], s = c->slot[a];
        if (e < 0 || e >= E) return TC_EINVAL;
        if (s == -1) continue;
        if (s < e * cap || s >= e * cap + c->counts[e] || c->tok[s] != a) return TC_EINVAL;
    }
    for (int64_t e = 0; e < E; e++)
        for (int64_t i = 0; i < c->counts[e]; i++) {
            const int64_t a = c->tok[e * cap + i];
            if (a < 0 || a >= N * K || c->slot[a] != e * cap + i) return TC_EINVAL;
        }
    return TC_OK;
}

/* the sizes every MoE kernel checks */
static int FN(moe_check_sizes)(const FN(tc_moe_cache) *c, int64_t N, int64_t C, int64_t H,
                               int64_t E, int64_t K, int act)
{
    if (N < 0 || C < 0 || H < 0 || E < 1 || (K != 1 && K != 2) || K > E) return TC_EINVAL;
    if (act < 0 || act >= TC_ACT_COUNT || !c) return TC_EINVAL;
    return TC_OK;
}

/* Top-K of one row of probabilities p (E,): the first maximum, then the first maximum of
 * the rest (ties to the lower index; NaN never wins a comparison, so indices stay valid),
 * and the gates. */
static inline void FN(moe_top_k)(int64_t *ex, real_t *g, const real_t *p, int64_t E, int64_t K)
{
    int64_t e1 = 0;
    for (int64_t e = 1; e < E; e++)
        if (p[e] > p[e1]) e1 = e;
    ex[0] = e1;
    if (K == 1) {
        g[0] = p[e1];
        return;
    }
    int64_t e2 = e1 == 0 ? 1 : 0;
    for (int64_t e = e2 + 1; e < E; e++)
        if (e != e1 && p[e] > p[e2]) e2 = e;
    ex[1] = e2;
    const real_t s = p[e1] + p[e2];
    g[0] = p[e1] / s;
    g[1] = p[e2] / s;
}

/* The capacity pass over the top-K choices (expert (N,K) given): slot, tok, counts,
 * dropped; choices in priority order j = 0 for every row, then j = 1. */
static void FN(moe_assign)(FN(tc_moe_cache) *c, int64_t N, int64_t E, int64_t K)
{
    const int64_t cap = c->cap;
    for (int64_t e = 0; e < E; e++) c->counts[e] = c->dropped[e] = 0;
    for (int64_t i = 0; i < E * cap; i++) c->tok[i] = -1;
    for (int64_t j = 0; j < K; j++)
        for (int64_t n = 0; n < N; n++) {
            const int64_t a = n * K + j, e = c->expert[a];
            if (c->counts[e] < cap) {
                const int64_t s = e * cap + c->counts[e]++;
                c->slot[a] = s;
                c->tok[s] = a;
            } else {
                c->slot[a] = -1;
                c->dropped[e]++;
            }
        }
}

/* aux = E sum_e f_e P_e from probs and the choices (sums in row order, in double) */
static double FN(moe_aux)(const FN(tc_moe_cache) *c, int64_t N, int64_t E, int64_t K)
{
    if (N == 0) return 0.0;
    double aux = 0.0;
    for (int64_t e = 0; e < E; e++) {
        int64_t f = 0;
        double P = 0.0;
        for (int64_t n = 0; n < N; n++) {
            P += (double)c->probs[n * E + e];
            for (int64_t j = 0; j < K; j++) f += c->expert[n * K + j] == e;
        }
        aux += ((double)f / (double)(N * K)) * (P / (double)N);
    }
    return (double)E * aux;
}

/* Expert e's MLP forward on its buffer rows [i0, i1): the inputs gathered into xg, fc
 * (pre, hid) and c_proj (eo) on those rows alone. Each row's results do not depend on which
 * rows share the call (every product entry sums k in a fixed order; i0 a multiple of the
 * GEMM's tile rows), so any split into row ranges gives the bits of one call. */
static int FN(moe_expert_rows)(FN(tc_moe_cache) *c, const real_t *inp, const real_t *w1,
                               const real_t *b1, const real_t *w2, const real_t *b2, int64_t e,
                               int64_t i0, int64_t i1, int64_t C, int64_t H, int64_t K, int act)
{
    const int64_t r0 = e * c->cap + i0, m = i1 - i0;
    real_t *xg = c->xg + r0 * C;
    for (int64_t i = 0; i < m; i++)
        memcpy(xg + i * C, inp + (c->tok[r0 + i] / K) * C, (size_t)C * sizeof(real_t));
    const int st = FN(gpt_fc_forward)(c->hid + r0 * H, c->pre + r0 * H, xg, w1 + e * H * C,
                                      b1 ? b1 + e * H : NULL, m, C, H, act, 1);
    return st != TC_OK ? st
                       : FN(tc_linear_forward)(c->eo + r0 * C, c->hid + r0 * H, w2 + e * C * H,
                                               b2 ? b2 + e * C : NULL, m, H, C);
}

/* The experts' forward. One thread (or a product too small for threads): expert by expert,
 * each kernel threaded inside as it decides. Several: one region over tasks (expert, range
 * of about kept / (4 threads) rows, a multiple of 48), handed out dynamically, each run on
 * one thread: a single barrier instead of a few per expert product (the expert products of
 * a mixture are each a fraction of the dense MLP's, so per-product barriers cost a larger
 * share), the same bits either way (moe_expert_rows). */
static int FN(moe_experts_forward)(FN(tc_moe_cache) *c, const real_t *inp, const real_t *w1,
                                   const real_t *b1, const real_t *w2, const real_t *b2,
                                   int64_t C, int64_t H, int64_t E, int64_t K, int act)
{
    int64_t kept = 0;
    for (int64_t e = 0; e < E; e++) kept += c->counts[e];
    const int nth = moe_threads();
    if (nth < 2 || !TC_PAR(4.0 * (double)kept * (double)C * (double)H, 4.0 * 2097152.0)) {
        int st = TC_OK;
        for (int64_t e = 0; e < E && st == TC_OK; e++)
            if (c->counts[e] > 0)
                st = FN(moe_expert_rows)(c, inp, w1, b1, w2, b2, e, 0, c->counts[e], C, H, K,
                                         act);
        return st;
    }
    int64_t R = (kept + 4 * nth - 1) / (4 * nth);
    R = (R + 47) / 48 * 48;
    int64_t ntask = 0;
    for (int64_t e = 0; e < E; e++) ntask += (c->counts[e] + R - 1) / R;
    int st = TC_OK;
#pragma omp parallel num_threads(nth)
    {
        (void)moe_task_thread();
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++) {
            int64_t e = 0, q = t; /* task t: expert e's q-th range */
            while (q >= (c->counts[e] + R - 1) / R) q -= (c->counts[e] + R - 1) / R, e++;
            const int64_t i0 = q * R, i1 = i0 + R < c->counts[e] ? i0 + R : c->counts[e];
            int failed;
#pragma omp atomic read
            failed = st;
            if (failed != TC_OK) continue;
            const int s = FN(moe_expert_rows)(c, inp, w1, b1, w2, b2, e, i0, i1, C, H, K, act);
            if (s != TC_OK) {
#pragma omp atomic write
                st = s;
            }
        }
    }
    return st;
}

// out (N,C); cache (tc.h); inp (N,C), router (E,C), w1 (E,H,C), b1 (E,H) or NULL,
// w2 (E,C,H), b2 (E,C) or NULL
int FN(tc_moe_forward)(real_t *out, FN(tc_moe_cache) *cache, const real_t *inp, const real_t *router,
                       const real_t *w1, const real_t *b1, const real_t *w2, const real_t *b2,
                       int64_t N, int64_t C, int64_t H, int64_t E, int64_t K,
                       double capacity_factor, int act)
{
    if (FN(moe_check_sizes)(cache, N, C, H, E, K, act)) return TC_EINVAL;
    const int64_t cap = cache->cap;
    if (cap != tc_moe_capacity(N, E, K, capacity_factor)) return TC_EINVAL;
    real_t *logits = tc_workspace(TC_WS_MOE, (size_t)(N * E) * sizeof(real_t) + 64);
    if (!logits) return TC_ENOMEM;
    int st = FN(tc_gemm)(logits, inp, router, N, E, C, E, C, C, 0, 1, (real_t)1, (real_t)0);
    if (st == TC_OK) st = FN(tc_softmax_forward)(cache->probs, logits, N, E, 1);
    if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (TC_PAR(N * E, TC_PARALLEL_MIN_WORK))
    for (int64_t n = 0; n < N; n++)
        FN(moe_top_k)(cache->expert + n * K, cache->gates + n * K, cache->probs + n * E, E, K);
    FN(moe_assign)(cache, N, E, K);
    cache->aux = FN(moe_aux)(cache, N, E, K);

    st = FN(moe_experts_forward)(cache, inp, w1, b1, w2, b2, C, H, E, K, act);
    if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (TC_PAR(N * C * K, TC_PARALLEL_MIN_WORK))
    for (int64_t n = 0; n < N; n++) {
        real_t *o = out + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = 0;
        for (int64_t j = 0; j < K; j++) {
            const int64_t s = cache->slot[n * K + j];
            if (s < 0) continue;
            const real_t g = cache->gates[n * K + j], *y = cache->eo + s * C;
            for (int64_t c = 0; c < C; c++) o[c] += g * y[c];
        }
    }
    return TC_OK;
}

/* dp (N,E) = d(loss)/d(probs) from the gates' gradients dg (N,K) and the aux term, the
 * chain rule of tc.h row by row; fa (E,) scratch: the aux term aux_grad E f_e / N, f_e =
 * choices of e / (N K) */
static void FN(moe_dprobs)(real_t *dp, real_t *fa, const real_t *dg, const FN(tc_moe_cache) *c,
                           double aux_grad, int64_t N, int64_t E, int64_t K)
{
    for (int64_t e = 0; e < E; e++) fa[e] = 0;
    if (N > 0 && aux_grad != 0.0) {
        for (int64_t a = 0; a < N * K; a++) fa[c->expert[a]] += (real_t)1;
        const double scale = aux_grad * (double)E / ((double)N * (double)N * (double)K);
        for (int64_t e = 0; e < E; e++) fa[e] = (real_t)((double)fa[e] * scale);
    }
#pragma omp parallel for schedule(static) if (TC_PAR(N * E, TC_PARALLEL_MIN_WORK))
    for (int64_t n = 0; n < N; n++) {
        real_t *d = dp + n * E;
        const int64_t *ex = c->expert + n * K;
        const real_t *g = c->gates + n * K, *gd = dg + n * K, *p = c->probs + n * E;
        for (int64_t e = 0; e < E; e++) d[e] = fa[e];
        if (K == 1) {
            d[ex[0]] += gd[0];
        } else {
            const real_t s = p[ex[0]] + p[ex[1]];
            const real_t t = gd[0] * g[0] + gd[1] * g[1];
            d[ex[0]] += (gd[0] - t) / s;
            d[ex[1]] += (gd[1] - t) / s;
        }
    }
}

/* The gradient outputs of tc_moe_backward's experts (dxg (E cap, C) or NULL; the weights'
 * as its arguments) and whether they are written (set_w) or accumulated. */
typedef struct {
    real_t *dxg, *dw1, *db1, *dw2, *db2;
    int set_w;
} FN(moe_grads);

/* Expert e's backward: dye (cap,C) = gate * dout on its rows, the MLP's backward into its
 * slices of the gradients (dxg rows written), dh, dh2 (cap,H) scratch; an expert without
 * rows zeroes its written gradients. */
static int FN(moe_expert_backward)(const FN(moe_grads) *g, real_t *dye, real_t *dh, real_t *dh2,
                                   const real_t *dout, const FN(tc_moe_cache) *c,
                                   const real_t *w1, const real_t *w2, int64_t e, int64_t C,
                                   int64_t H, int64_t K, int act)
{
    const int64_t m = c->counts[e], r0 = e * c->cap;
    real_t *gw1 = g->dw1 ? g->dw1 + e * H * C : NULL, *gb1 = g->db1 ? g->db1 + e * H : NULL;
    real_t *gw2 = g->dw2 ? g->dw2 + e * C * H : NULL, *gb2 = g->db2 ? g->db2 + e * C : NULL;
    if (m == 0) {
        if (g->set_w) {
            if (gw1) memset(gw1, 0, (size_t)(H * C) * sizeof(real_t));
            if (gb1) memset(gb1, 0, (size_t)H * sizeof(real_t));
            if (gw2) memset(gw2, 0, (size_t)(C * H) * sizeof(real_t));
            if (gb2) memset(gb2, 0, (size_t)C * sizeof(real_t));
        }
        return TC_OK;
    }
#pragma omp parallel for schedule(static) if (TC_PAR(m * C, TC_PARALLEL_MIN_WORK))
    for (int64_t i = 0; i < m; i++) {
        const int64_t a = c->tok[r0 + i];
        const real_t gate = c->gates[a], *d = dout + (a / K) * C;
        real_t *y = dye + i * C;
        for (int64_t k = 0; k < C; k++) y[k] = gate * d[k];
    }
    return FN(gpt_mlp_backward)(g->dxg ? g->dxg + r0 * C : NULL, dh, dh2, gw1, gb1, gw2, gb2, dye,
                                c->xg + r0 * C, c->pre + r0 * H, c->hid + r0 * H,
                                w1 + e * H * C, w2 + e * C * H, m, C, H, act, 1, g->set_w);
}

typedef struct {
    double cost; /* the expert's rows */
    int64_t k;   /* the expert */
} FN(moe_job);

static int FN(moe_job_cmp)(const void *x, const void *y) /* rows descending, then expert */
{
    const FN(moe_job) *a = x, *b = y;
    if (a->cost != b->cost) return a->cost < b->cost ? 1 : -1;
    return (a->k > b->k) - (a->k < b->k);
}

/* Whether the experts' backward runs whole experts on the threads (*nth of them), largest
 * first (jobs: the E experts sorted by rows, descending): with threads, a product worth
 * them, at most MOE_SPREAD_MAX_E experts, and row counts that balance (tc_jobs_balance).
 * Each expert's gradients are then the sums of one thread in the order the threaded
 * products use (their results do not depend on the thread count): the same bits. */
static int FN(moe_spread_experts)(FN(moe_job) *jobs, int *nth, const FN(tc_moe_cache) *c,
                                  int64_t C, int64_t H, int64_t E)
{
    *nth = moe_threads();
    if (*nth < 2 || E > MOE_SPREAD_MAX_E) return 0;
    double kept = 0;
    for (int64_t e = 0; e < E; e++) {
        jobs[e].cost = (double)c->counts[e];
        jobs[e].k = e;
        kept += jobs[e].cost;
    }
    if (!TC_PAR(8.0 * kept * (double)C * (double)H, 4.0 * 2097152.0)) return 0;
    qsort(jobs, (size_t)E, sizeof jobs[0], FN(moe_job_cmp));
    return tc_jobs_balance(&jobs[0].cost, sizeof jobs[0], E, *nth);
}

// dinp (N,C), drouter (E,C), dw1 (E,H,C), db1 (E,H), dw2 (E,C,H), db2 (E,C), each optional;
// dout (N,C); cache from the forward; inp (N,C), router (E,C), w1 (E,H,C), w2 (E,C,H).
// write: TC_WRITE(0..5) = dinp, drouter, dw1, db1, dw2, db2 written, else accumulated.
int FN(tc_moe_backward)(real_t *dinp, real_t *drouter, real_t *dw1, real_t *db1, real_t *dw2,
                        real_t *db2, const real_t *dout, double aux_grad,
                        const FN(tc_moe_cache) *cache, const real_t *inp, const real_t *router,
                        const real_t *w1, const real_t *w2, int64_t N, int64_t C, int64_t H,
                        int64_t E, int64_t K, int act, int write)
{
    if (FN(moe_check_sizes)(cache, N, C, H, E, K, act)) return TC_EINVAL;
    if (FN(moe_cache_check)(cache, N, E, K)) return TC_EINVAL;
    const int64_t cap = cache->cap;
    /* the experts over the threads when their row counts balance (moe_spread_experts) */
    FN(moe_job) jobs[MOE_SPREAD_MAX_E];
    int nth = 1;
    const int spread = FN(moe_spread_experts)(jobs, &nth, cache, C, H, E);
    /* scratch: dg (N,K), dp and dl (N,E), fa (E,), dxg (E cap, C) when dinp is wanted, per
     * expert (per thread when spread) dye (cap,C), dh and dh2 (cap,H) */
    const int64_t nxg = dinp ? E * cap * C : 0, per = cap * C + 2 * cap * H;
    const size_t nb = (size_t)(N * K + 2 * N * E + E + nxg + (spread ? nth : 1) * per);
    real_t *dg = tc_workspace(TC_WS_MOE, nb * sizeof(real_t) + 64);
    if (!dg) return TC_ENOMEM;
    real_t *dp = dg + N * K, *dl = dp + N * E, *fa = dl + N * E, *dxg = fa + E;
    real_t *dye = dxg + nxg, *dh = dye + cap * C, *dh2 = dh + cap * H;

#pragma omp parallel for schedule(static) if (TC_PAR(N * C * K, TC_PARALLEL_MIN_WORK))
    for (int64_t a = 0; a < N * K; a++) {
        const int64_t s = cache->slot[a];
        double acc = 0.0;
        if (s >= 0) {
            const real_t *y = cache->eo + s * C, *d = dout + (a / K) * C;
            for (int64_t c = 0; c < C; c++) acc += (double)d[c] * (double)y[c];
        }
        dg[a] = (real_t)acc;
    }

    /* the experts: all four weight gradients written or all accumulated in one call; a
     * mixed write flag zeroes the written ones first */
    const int wbits = (write >> 2) & 15;
    if (wbits != 0 && wbits != 15) {
        if (TC_WRITES(write, 2) && dw1) memset(dw1, 0, (size_t)(E * H * C) * sizeof(real_t));
        if (TC_WRITES(write, 3) && db1) memset(db1, 0, (size_t)(E * H) * sizeof(real_t));
        if (TC_WRITES(write, 4) && dw2) memset(dw2, 0, (size_t)(E * C * H) * sizeof(real_t));
        if (TC_WRITES(write, 5) && db2) memset(db2, 0, (size_t)(E * C) * sizeof(real_t));
    }
    const FN(moe_grads) g = {dinp ? dxg : NULL, dw1, db1, dw2, db2, wbits == 15};
    int st = TC_OK;
    if (spread) {
#pragma omp parallel num_threads(nth)
        {
            const int tid = moe_task_thread();
            real_t *y = dye + (int64_t)tid * per, *h = y + cap * C, *h2 = h + cap * H;
#pragma omp for schedule(dynamic, 1)
            for (int64_t q = 0; q < E; q++) {
                int failed;
#pragma omp atomic read
                failed = st;
                if (failed != TC_OK) continue;
                const int s = FN(moe_expert_backward)(&g, y, h, h2, dout, cache, w1, w2,
                                                      jobs[q].k, C, H, K, act);
                if (s != TC_OK) {
#pragma omp atomic write
                    st = s;
                }
            }
        }
    } else {
        for (int64_t e = 0; e < E && st == TC_OK; e++)
            st = FN(moe_expert_backward)(&g, dye, dh, dh2, dout, cache, w1, w2, e, C, H, K,
                                         act);
    }
    if (st != TC_OK) return st;

    /* the router: dp, the softmax backward (dl = dlogits), the two products */
    FN(moe_dprobs)(dp, fa, dg, cache, aux_grad, N, E, K);
    st = FN(tc_softmax_backward)(dl, dp, cache->probs, N, E, 1, TC_WRITE(0));
    if (st == TC_OK && drouter)
        st = FN(tc_gemm)(drouter, dl, inp, E, C, N, C, E, C, 1, 0, (real_t)1,
                         TC_WRITES(write, 1) ? (real_t)0 : (real_t)1);
    if (st == TC_OK && dinp)
        st = FN(tc_gemm)(dinp, dl, router, N, C, E, C, E, C, 0, 0, (real_t)1,
                         TC_WRITES(write, 0) ? (real_t)0 : (real_t)1);
    if (st != TC_OK || !dinp) return st;
#pragma omp parallel for schedule(static) if (TC_PAR(N * C * K, TC_PARALLEL_MIN_WORK))
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < K; j++) {
            const int64_t s = cache->slot[n * K + j];
            if (s < 0) continue;
            real_t *d = dinp + n * C;
            const real_t *x = dxg + s * C;
            for (int64_t c = 0; c < C; c++) d[c] += x[c];
        }
    return TC_OK;
}
