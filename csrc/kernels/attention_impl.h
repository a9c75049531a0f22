/* attention_impl.h: the materialised reference kernels and the mask/dropout helpers the
 * tiled kernel shares, written once for real_t.
 *
 * Per batch-head bh = (b, h) (q (T,DK), k (S,DK), v (S,DV) slices):
 *   scores = scale * q k^T (+ bias)            (T,S)   tc_gemm
 *   masked keys (causal, keep == 0, key_padding == 0, bias == -inf) -> -INFINITY
 *   P = softmax(scores) row-wise, lse = logsumexp(scores) row-wise (a row with every key
 *   masked: P = 0, lse = -INFINITY)
 *   P~ = P * Z / (1 - p) with dropout, else P
 *   out = P~ v                                  (T,DV)  tc_gemm
 * Backward recomputes P from lse and uses dS = P * (dP - rowsum(dout * out)) with
 * dP = Z / (1 - p) * dout v^T: the softmax Jacobian is never built.
 *
 * Parallel over batch-heads (each thread owns whole batch-heads and its own T x S scratch,
 * allocated once per call); with a single batch-head (or too little work per head) the
 * batch-head loop is serial and the row loops and tc_gemm run in parallel instead. Every
 * output element is computed by one thread in a fixed order: results are bitwise
 * reproducible for a fixed thread count.
 */

/* Dropout of one call: on, the Philox seed, the 32-bit keep threshold (a word w is kept
 * iff w >= thresh; none is kept when p rounds to 1) and the 1 / (1 - p) scale of kept
 * elements. */
typedef struct {
    int on, keep_none;
    uint64_t seed, first; /* first: the stream index of probability (0,0,0,0) */
    uint32_t thresh;
    real_t inv;
} FN(attention_drop);

static FN(attention_drop) FN(attention_drop_make)(double p, uint64_t seed,
                                                  const tc_attention_masks *masks)
{
    FN(attention_drop) d = {0, 0, seed, masks ? masks->dropout_first : 0, 0, (real_t)1};
    if (p > 0) {
        const uint64_t thr = tc_rng_keep_threshold(p);
        d.on = 1;
        d.keep_none = thr > UINT32_MAX;
        d.thresh = d.keep_none ? UINT32_MAX : (uint32_t)thr;
        d.inv = d.keep_none ? (real_t)0 : (real_t)(1.0 / (1.0 - p));
    }
    return d;
}

/* p[j] (and p2[j] when p2 != NULL) for j in [0, n): times 1/(1-p) where element
 * first + j of the dropout stream is kept, 0 where it is dropped. The stream is word i of
 * Philox (seed, subsequence 0) for element i: the mask tc_dropout_* draws for element i
 * of a flat array, here of the (B,NH,T,S) probabilities. */
static void FN(attention_dropout_row)(real_t *p, real_t *p2, int64_t n, const FN(attention_drop) *d,
                                      uint64_t first)
{
    uint32_t w[ATT_RNG_WORDS + 4];
    first += d->first;
    for (int64_t j = 0; j < n;) {
        const uint64_t idx = first + (uint64_t)j;
        const int64_t off = (int64_t)(idx & 3);
        const int64_t m = n - j < ATT_RNG_WORDS ? n - j : ATT_RNG_WORDS;
        tc_rng_words(w, d->seed, 0, idx >> 2, (off + m + 3) >> 2);
        real_t *pj = p + j, *p2j = p2 ? p2 + j : NULL;
        for (int64_t t = 0; t < m; t++) {
            const real_t z = !d->keep_none && w[off + t] >= d->thresh ? d->inv : (real_t)0;
            pj[t] *= z;
            if (p2j) p2j[t] *= z;
        }
        j += m;
    }
}

/* Scores s[0..n) of query row i against keys [j0, j0 + n) of batch-head (b, h): adds the
 * bias and sets masked keys to -INFINITY (keys j >= lim are hidden by causality; qoff:
 * attention_qoff, the offset of the query positions a block-sparse pattern reads). */
static void FN(attention_mask_row)(real_t *s, const tc_attention_masks *m, int64_t b, int64_t h,
                                   int64_t i, int64_t j0, int64_t n, int64_t lim, int64_t S,
                                   int64_t qoff)
{
    int64_t nv = lim - j0;
    nv = nv < 0 ? 0 : nv > n ? n : nv;
    if (m && m->sparse) { /* keys of blocks the pattern hides, a block at a time */
        const tc_attention_sparse *sp = m->sparse;
        const int64_t sh = m->sparse_shift ? m->sparse_shift[b] : 0; /* slot of position 0 */
        const int64_t p = i + qoff - sh, qb = p >= 0 ? p / sp->block : 0;
        for (int64_t j = 0; j < nv;) {
            const int64_t kp = j0 + j - sh; /* the key's position */
            const int64_t kb = kp >= 0 ? kp / sp->block : -1;
            int64_t e = kp >= 0 ? (kb + 1) * sp->block + sh - j0 : sh - j0;
            e = e < nv ? e : nv;
            if (p < 0 || kb < 0 || !attention_sparse_visible(sp, qb, kb))
                for (int64_t t = j; t < e; t++) s[t] = -INFINITY;
            j = e;
        }
    }
    if (m) {
        if (m->bias) {
            const int64_t *st = m->bias_strides;
            const real_t *bp = (const real_t *)m->bias + b * st[0] + h * st[1] + i * st[2] + j0 * st[3];
            for (int64_t j = 0; j < nv; j++) s[j] += bp[j * st[3]];
        }
        if (m->keep) {
            const int64_t *st = m->keep_strides;
            const uint8_t *kp = m->keep + b * st[0] + h * st[1] + i * st[2] + j0 * st[3];
            for (int64_t j = 0; j < nv; j++)
                if (!kp[j * st[3]]) s[j] = -INFINITY;
        }
        if (m->key_padding) {
            const uint8_t *kp = m->key_padding + b * S + j0;
            for (int64_t j = 0; j < nv; j++)
                if (!kp[j]) s[j] = -INFINITY;
        }
    }
    for (int64_t j = nv; j < n; j++) s[j] = -INFINITY;
}

static int FN(attention_args_ok)(const tc_attention_masks *m, int64_t B, int64_t NH, int64_t T,
                                 int64_t S, int64_t DK, int64_t DV, int causal, double p)
{
    return attention_dims_ok(B, NH, T, S, DK, DV) && attention_causal_ok(causal) &&
           p >= 0 && p <= 1 && (!m || !m->sparse || tc_attention_sparse_ok(m->sparse));
}

/* Context of one reference call. */
typedef struct {
    const tc_attention_masks *m;
    int64_t NH, Tq, S, DK, DV;
    real_t scale;
    int causal;
    FN(attention_drop) drop;
} FN(attention_ref_ctx);

/* P (T,S) <- softmax of the scaled scores already in P, masked, then dropped out;
 * lse (T,) <- logsumexp. */
static void FN(attention_softmax_rows)(real_t *P, real_t *lse, const FN(attention_ref_ctx) *c,
                                       int64_t bh, int parallel)
{
    const int64_t Tq = c->Tq, S = c->S, b = bh / c->NH, h = bh % c->NH;
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < Tq; i++) {
        real_t *p = P + i * S;
        FN(attention_mask_row)(p, c->m, b, h, i, 0, S, attention_limit(i, Tq, S, c->causal), S,
                               attention_qoff(Tq, S, c->causal));
        real_t m = -INFINITY;
        for (int64_t j = 0; j < S; j++) m = p[j] > m ? p[j] : m;
        if (m == -INFINITY) { /* every key masked: out row = 0, lse = -inf (never NaN) */
            for (int64_t j = 0; j < S; j++) p[j] = 0;
            lse[i] = -INFINITY;
            continue;
        }
        real_t sum = 0;
        for (int64_t j = 0; j < S; j++) {
            p[j] = MATH(exp)(p[j] - m);
            sum += p[j];
        }
        const real_t inv = (real_t)1 / sum;
        for (int64_t j = 0; j < S; j++) p[j] *= inv;
        lse[i] = m + MATH(log)(sum);
        if (c->drop.on)
            FN(attention_dropout_row)(p, NULL, S, &c->drop, ((uint64_t)bh * (uint64_t)Tq +
                                                             (uint64_t)i) * (uint64_t)S);
    }
}

/* p (B,NH,L,D) at strides st <- 0 (the outputs of a call with no key or no query) */
static void FN(att_zero)(real_t *p, const tc_attention_strides *st, int64_t B, int64_t NH,
                         int64_t L, int64_t D)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < L; t++)
                memset(p + b * st->b + h * st->h + t * st->t, 0, (size_t)D * sizeof(real_t));
}

/* What every forward does before any work: TC_EINVAL for bad arguments; TC_OK when there
 * is nothing to compute (no batch-head or query) or no key (then lse (B,NH,T) = -inf and
 * out (B,NH,T,DV) = 0 at the strides ost); -1 when there is work. */
static int FN(attention_forward_prologue)(real_t *out, real_t *lse, const tc_attention_strides *ost,
                                          const tc_attention_masks *masks, int64_t B, int64_t NH,
                                          int64_t Tq, int64_t S, int64_t DK, int64_t DV,
                                          int causal, double dropout_p)
{
    if (!FN(attention_args_ok)(masks, B, NH, Tq, S, DK, DV, causal, dropout_p))
        return TC_EINVAL;
    if (B * NH == 0 || Tq == 0) return TC_OK;
    if (S == 0) { /* every row has no key to attend to */
        for (int64_t i = 0; i < B * NH * Tq; i++) lse[i] = -INFINITY;
        FN(att_zero)(out, ost, B, NH, Tq, DV);
        return TC_OK;
    }
    return -1;
}

/* The threads of a reference call: batch-heads in parallel (outer: each of nthreads threads
 * with its own nmat (T,S) scratch matrices) when there are several and head_work (scalar
 * operations per batch-head) makes it worth it, else one thread running the rows and
 * tc_gemm in parallel (inner) when a head is big enough. Returns the scratch (malloc'ed;
 * NULL when out of memory). */
typedef struct {
    int outer, nthreads, inner;
} FN(attention_ref_plan);

static real_t *FN(attention_ref_plan_make)(FN(attention_ref_plan) *pl, int64_t BH, int64_t Tq,
                                           int64_t S, double head_work, int nmat)
{
    pl->outer = BH > 1 && TC_PAR(head_work * (double)BH, TC_PARALLEL_MIN_WORK);
    pl->nthreads = pl->outer ? attention_max_threads() : 1;
    pl->inner = !pl->outer && TC_PAR((double)Tq * (double)S, TC_PARALLEL_MIN_WORK);
    const size_t n = attention_scratch_elems(Tq, S, nmat, pl->nthreads, sizeof(real_t));
    return n ? malloc(n * sizeof(real_t)) : NULL;
}

/* One batch-head of the forward; P is (T,S) scratch. */
static int FN(attention_forward_head)(real_t *out, real_t *lse, real_t *P, const real_t *q, const real_t *k,
                                      const real_t *v, const FN(attention_ref_ctx) *c, int64_t bh,
                                      int parallel)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DV = c->DV;
    int st = FN(tc_gemm)(P, q, k, Tq, S, DK, S, DK, DK, 0, 1, c->scale, (real_t)0);
    if (st != TC_OK) return st;
    FN(attention_softmax_rows)(P, lse, c, bh, parallel);
    return FN(tc_gemm)(out, P, v, Tq, DV, S, DV, S, DV, 0, 0, (real_t)1, (real_t)0);
}

// out (B,NH,T,DV), lse (B,NH,T), q (B,NH,T,DK), k (B,NKV,S,DK), v (B,NKV,S,DV): query head
// h reads kv head h / (NH / NKV)
int FN(tc_attention_forward_ref_grouped)(real_t *out, real_t *lse, const real_t *q, const real_t *k,
                                         const real_t *v, const tc_attention_masks *masks,
                                         int64_t B, int64_t NH, int64_t NKV, int64_t Tq, int64_t S,
                                         int64_t DK, int64_t DV, real_t scale, int causal,
                                         double dropout_p, uint64_t seed)
{
    if (NKV <= 0 ? NH > 0 || NKV < 0 : NH % NKV) return TC_EINVAL;
    const int64_t G = NKV > 0 ? NH / NKV : 1;
    const tc_attention_strides ost = {NH * Tq * DV, Tq * DV, DV};
    const int pro = FN(attention_forward_prologue)(out, lse, &ost, masks, B, NH, Tq, S, DK, DV,
                                                   causal, dropout_p);
    if (pro >= 0) return pro;
    const int64_t BH = B * NH;
    const FN(attention_ref_ctx) c = {masks, NH, Tq, S, DK, DV, scale, causal,
                                     FN(attention_drop_make)(dropout_p, seed, masks)};
    FN(attention_ref_plan) pl;
    real_t *scratch = FN(attention_ref_plan_make)(&pl, BH, Tq, S,
                                                  (double)Tq * (double)S * (double)(DK + DV + 8), 1);
    if (!scratch) return TC_ENOMEM;
    int status = TC_OK;
#pragma omp parallel num_threads(pl.nthreads) if (pl.outer)
    {
        real_t *P = scratch + (size_t)attention_thread_num() * (size_t)Tq * (size_t)S;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < BH; b++) {
            int st = FN(attention_forward_head)(out + b * Tq * DV, lse + b * Tq, P,
                                                q + b * Tq * DK, k + b / G * S * DK,
                                                v + b / G * S * DV, &c, b, pl.inner);
            if (st != TC_OK) {
#pragma omp atomic write
                status = st;
            }
        }
    }
    free(scratch);
    return status;
}

/* One batch-head of the backward; P and dS are (T,S) scratch. */
static int FN(attention_backward_head)(real_t *dq, real_t *dk, real_t *dv, real_t *P, real_t *dS, const real_t *dout,
                                       const real_t *q, const real_t *k, const real_t *v, const real_t *out,
                                       const real_t *lse, const FN(attention_ref_ctx) *c,
                                       int64_t bh, int parallel)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DV = c->DV;
    const int64_t b = bh / c->NH, h = bh % c->NH;
    (void)parallel;
    /* scores = scale q k^T */
    int st = FN(tc_gemm)(P, q, k, Tq, S, DK, S, DK, DK, 0, 1, c->scale, (real_t)0);
    if (st != TC_OK) return st;
    /* dP~ = dout v^T */
    st = FN(tc_gemm)(dS, dout, v, Tq, S, DV, S, DV, DV, 0, 1, (real_t)1, (real_t)0);
    if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < Tq; i++) {
        real_t *p = P + i * S, *ds = dS + i * S;
        const real_t l = lse[i];
        if (l == -INFINITY) { /* a row with every key masked: no gradient */
            for (int64_t j = 0; j < S; j++) p[j] = ds[j] = 0;
            continue;
        }
        FN(attention_mask_row)(p, c->m, b, h, i, 0, S, attention_limit(i, Tq, S, c->causal), S,
                               attention_qoff(Tq, S, c->causal));
        for (int64_t j = 0; j < S; j++) p[j] = MATH(exp)(p[j] - l); /* masked: exactly 0 */
        const real_t *go = dout + i * DV, *o = out + i * DV;
        real_t D = 0; /* D_i = rowsum(dout * out) = rowsum(dP * P) */
        for (int64_t cc = 0; cc < DV; cc++) D += go[cc] * o[cc];
        if (c->drop.on) {
            /* dP = Z/(1-p) dP~; dS = P (dP - D); then P <- P~ for dv */
            const uint64_t first = ((uint64_t)bh * (uint64_t)Tq + (uint64_t)i) * (uint64_t)S;
            FN(attention_dropout_row)(ds, NULL, S, &c->drop, first);
            for (int64_t j = 0; j < S; j++) ds[j] = p[j] * (ds[j] - D);
            FN(attention_dropout_row)(p, NULL, S, &c->drop, first);
        } else {
            for (int64_t j = 0; j < S; j++) ds[j] = p[j] * (ds[j] - D);
        }
    }
    /* dv += P~^T dout; dq += scale dS k; dk += scale dS^T q */
    st = FN(tc_gemm)(dv, P, dout, S, DV, Tq, DV, S, DV, 1, 0, (real_t)1, (real_t)1);
    if (st == TC_OK) st = FN(tc_gemm)(dq, dS, k, Tq, DK, S, DK, S, DK, 0, 0, c->scale, (real_t)1);
    if (st == TC_OK) st = FN(tc_gemm)(dk, dS, q, S, DK, Tq, DK, S, DK, 1, 0, c->scale, (real_t)1);
    return st;
}

// out (B,NH,T,DV), lse (B,NH,T), q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV)
int FN(tc_attention_forward_ref)(real_t *out, real_t *lse, const real_t *q, const real_t *k, const real_t *v,
                                 const tc_attention_masks *masks, int64_t B, int64_t NH,
                                 int64_t Tq, int64_t S, int64_t DK, int64_t DV, real_t scale,
                                 int causal, double dropout_p, uint64_t seed)
{
    return FN(tc_attention_forward_ref_grouped)(out, lse, q, k, v, masks, B, NH, NH, Tq, S, DK,
                                                DV, scale, causal, dropout_p, seed);
}

// dq (B,NH,T,DK), dk (B,NKV,S,DK), dv (B,NKV,S,DV) accumulated (+=) or, by write
// (TC_WRITE(0/1/2)), zeroed first; dout/out (B,NH,T,DV), q (B,NH,T,DK), k (B,NKV,S,DK),
// v (B,NKV,S,DV), lse (B,NH,T) from the forward; a kv head's NH / NKV query heads add their
// gradients in head order
int FN(tc_attention_backward_ref_grouped)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout,
                                          const real_t *q, const real_t *k, const real_t *v,
                                          const real_t *out, const real_t *lse,
                                          const tc_attention_masks *masks, int64_t B,
                                          int64_t NH, int64_t NKV, int64_t Tq, int64_t S,
                                          int64_t DK, int64_t DV, real_t scale, int causal,
                                          double dropout_p, uint64_t seed, int write)
{
    if (!FN(attention_args_ok)(masks, B, NH, Tq, S, DK, DV, causal, dropout_p))
        return TC_EINVAL;
    if (NKV <= 0 ? NH > 0 || NKV < 0 : NH % NKV) return TC_EINVAL;
    const int64_t G = NKV > 0 ? NH / NKV : 1;
    const int64_t BH = B * NH, BKV = B * NKV;
    if (TC_WRITES(write, 0)) memset(dq, 0, (size_t)(BH * Tq * DK) * sizeof(real_t));
    if (TC_WRITES(write, 1)) memset(dk, 0, (size_t)(BKV * S * DK) * sizeof(real_t));
    if (TC_WRITES(write, 2)) memset(dv, 0, (size_t)(BKV * S * DV) * sizeof(real_t));
    if (BH == 0 || Tq == 0 || S == 0) return TC_OK; /* every gradient is zero */
    const FN(attention_ref_ctx) c = {masks, NH, Tq, S, DK, DV, scale, causal,
                                     FN(attention_drop_make)(dropout_p, seed, masks)};
    FN(attention_ref_plan) pl;
    real_t *scratch = FN(attention_ref_plan_make)(
        &pl, BH, Tq, S, (double)Tq * (double)S * (double)(2 * DK + 2 * DV + 8), 2);
    if (!scratch) return TC_ENOMEM;
    int status = TC_OK;
#pragma omp parallel num_threads(pl.nthreads) if (pl.outer)
    {
        real_t *P = scratch + (size_t)attention_thread_num() * 2 * (size_t)Tq * (size_t)S;
        real_t *dS = P + (size_t)Tq * (size_t)S;
#pragma omp for schedule(static)
        for (int64_t bkv = 0; bkv < BKV; bkv++)
        for (int64_t b = bkv * G; b < (bkv + 1) * G; b++) { /* a kv head's query heads in order */
            int st = FN(attention_backward_head)(
                dq + b * Tq * DK, dk + bkv * S * DK, dv + bkv * S * DV, P, dS,
                dout + b * Tq * DV, q + b * Tq * DK, k + bkv * S * DK, v + bkv * S * DV,
                out + b * Tq * DV, lse + b * Tq, &c, b, pl.inner);
            if (st != TC_OK) {
#pragma omp atomic write
                status = st;
            }
        }
    }
    free(scratch);
    return status;
}

// the ungrouped reference (NKV = NH): dq (B,NH,T,DK), dk (B,NH,S,DK), dv (B,NH,S,DV)
int FN(tc_attention_backward_ref)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *q, const real_t *k,
                                  const real_t *v, const real_t *out, const real_t *lse,
                                  const tc_attention_masks *masks, int64_t B, int64_t NH,
                                  int64_t Tq, int64_t S, int64_t DK, int64_t DV, real_t scale,
                                  int causal, double dropout_p, uint64_t seed, int write)
{
    return FN(tc_attention_backward_ref_grouped)(dq, dk, dv, dout, q, k, v, out, lse, masks, B,
                                                 NH, NH, Tq, S, DK, DV, scale, causal, dropout_p,
                                                 seed, write);
}
