/* attention_impl.h: materialised scaled dot-product attention, written once for T.
 *
 * Per batch-head b (q (T,DK), k (S,DK), v (S,DV) slices):
 *   scores = scale * q k^T                     (T,S)   tc_gemm
 *   masked (causal, j > i)  -> -INFINITY, i.e. probability exactly 0
 *   P = softmax(scores) row-wise, lse = logsumexp(scores) row-wise
 *   out = P v                                   (T,DV)  tc_gemm
 * Backward recomputes P from lse and uses dS = P * (dP - rowsum(dout * out)): the softmax
 * Jacobian is never built.
 *
 * Parallel over batch-heads (each thread owns whole batch-heads and its own T x S scratch,
 * allocated once per call); with a single batch-head (or too little work per head) the
 * batch-head loop is serial and the row loops and tc_gemm run in parallel instead. Every
 * output element is computed by one thread in a fixed order: results are bitwise
 * reproducible for a fixed thread count.
 */

/* P (T,S) <- softmax of the scores already in P, masked; lse (T,) <- logsumexp. */
static void FN(attention_softmax_rows)(T *P, T *lse, int64_t Tq, int64_t S, int causal,
                                       int parallel)
{
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < Tq; i++) {
        T *p = P + i * S;
        const int64_t L = attention_visible(i, S, causal);
        if (L == 0) { /* no visible key: out row = 0, lse = -inf (never NaN) */
            for (int64_t j = 0; j < S; j++) p[j] = 0;
            lse[i] = -INFINITY;
            continue;
        }
        T m = p[0];
        for (int64_t j = 1; j < L; j++) m = p[j] > m ? p[j] : m;
        T sum = 0;
        for (int64_t j = 0; j < L; j++) {
            p[j] = MATH(exp)(p[j] - m);
            sum += p[j];
        }
        const T inv = (T)1 / sum;
        for (int64_t j = 0; j < L; j++) p[j] *= inv;
        for (int64_t j = L; j < S; j++) p[j] = 0;
        lse[i] = m + MATH(log)(sum);
    }
}

/* One batch-head of the forward; P is (T,S) scratch. */
static int FN(attention_forward_head)(T *out, T *lse, T *P, const T *q, const T *k,
                                      const T *v, int64_t Tq, int64_t S, int64_t DK,
                                      int64_t DV, T scale, int causal, int parallel)
{
    int st = FN(tc_gemm)(P, q, k, Tq, S, DK, S, DK, DK, 0, 1, scale, (T)0);
    if (st != TC_OK) return st;
    FN(attention_softmax_rows)(P, lse, Tq, S, causal, parallel);
    return FN(tc_gemm)(out, P, v, Tq, DV, S, DV, S, DV, 0, 0, (T)1, (T)0);
}

// out (BH,T,DV), lse (BH,T), q (BH,T,DK), k (BH,S,DK), v (BH,S,DV)
int FN(tc_attention_forward_ref)(T *out, T *lse, const T *q, const T *k, const T *v,
                                 int64_t BH, int64_t Tq, int64_t S, int64_t DK, int64_t DV,
                                 T scale, int causal)
{
    if (BH < 0 || Tq < 0 || S < 0 || DK < 0 || DV < 0) return TC_EINVAL;
    if (BH == 0 || Tq == 0) return TC_OK;
    if (S == 0) { /* every row has no key to attend to */
        for (int64_t i = 0; i < BH * Tq; i++) lse[i] = -INFINITY;
        memset(out, 0, (size_t)(BH * Tq * DV) * sizeof(T));
        return TC_OK;
    }
    const double head_work = (double)Tq * (double)S * (double)(DK + DV + 8);
    const int outer = BH > 1 && head_work * (double)BH >= TC_PARALLEL_MIN_WORK;
    const int nthreads = outer ? attention_max_threads() : 1;
    const int inner = !outer && (double)Tq * (double)S >= TC_PARALLEL_MIN_WORK;
    const size_t n = attention_scratch_elems(Tq, S, 1, nthreads, sizeof(T));
    T *scratch = n ? malloc(n * sizeof(T)) : NULL;
    if (!scratch) return TC_ENOMEM;
    int status = TC_OK;
#pragma omp parallel num_threads(nthreads) if (outer)
    {
        T *P = scratch + (size_t)attention_thread_num() * (size_t)Tq * (size_t)S;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < BH; b++) {
            int st = FN(attention_forward_head)(out + b * Tq * DV, lse + b * Tq, P,
                                                q + b * Tq * DK, k + b * S * DK,
                                                v + b * S * DV, Tq, S, DK, DV, scale, causal,
                                                inner);
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
static int FN(attention_backward_head)(T *dq, T *dk, T *dv, T *P, T *dS, const T *dout,
                                       const T *q, const T *k, const T *v, const T *out,
                                       const T *lse, int64_t Tq, int64_t S, int64_t DK,
                                       int64_t DV, T scale, int causal, int parallel)
{
    (void)parallel;
    /* P = exp(scale q k^T - lse), masked entries exactly 0 */
    int st = FN(tc_gemm)(P, q, k, Tq, S, DK, S, DK, DK, 0, 1, scale, (T)0);
    if (st != TC_OK) return st;
    /* dP = dout v^T */
    st = FN(tc_gemm)(dS, dout, v, Tq, S, DV, S, DV, DV, 0, 1, (T)1, (T)0);
    if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < Tq; i++) {
        T *p = P + i * S, *ds = dS + i * S;
        const T l = lse[i];
        const int64_t L = l == -INFINITY ? 0 : attention_visible(i, S, causal);
        const T *go = dout + i * DV, *o = out + i * DV;
        T D = 0; /* D_i = rowsum(dout * out) = rowsum(dP * P) */
        for (int64_t c = 0; c < DV; c++) D += go[c] * o[c];
        for (int64_t j = 0; j < L; j++) {
            p[j] = MATH(exp)(p[j] - l);
            ds[j] = p[j] * (ds[j] - D);
        }
        for (int64_t j = L; j < S; j++) {
            p[j] = 0;
            ds[j] = 0;
        }
    }
    /* dv += P^T dout; dq += scale dS k; dk += scale dS^T q */
    st = FN(tc_gemm)(dv, P, dout, S, DV, Tq, DV, S, DV, 1, 0, (T)1, (T)1);
    if (st == TC_OK) st = FN(tc_gemm)(dq, dS, k, Tq, DK, S, DK, S, DK, 0, 0, scale, (T)1);
    if (st == TC_OK) st = FN(tc_gemm)(dk, dS, q, S, DK, Tq, DK, S, DK, 1, 0, scale, (T)1);
    return st;
}

// dq (BH,T,DK), dk (BH,S,DK), dv (BH,S,DV) accumulated (+=); dout/out (BH,T,DV),
// q (BH,T,DK), k (BH,S,DK), v (BH,S,DV), lse (BH,T) from the forward
int FN(tc_attention_backward_ref)(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k,
                                  const T *v, const T *out, const T *lse, int64_t BH,
                                  int64_t Tq, int64_t S, int64_t DK, int64_t DV, T scale,
                                  int causal)
{
    if (BH < 0 || Tq < 0 || S < 0 || DK < 0 || DV < 0) return TC_EINVAL;
    if (BH == 0 || Tq == 0 || S == 0) return TC_OK; /* every gradient is zero */
    const double head_work = (double)Tq * (double)S * (double)(2 * DK + 2 * DV + 8);
    const int outer = BH > 1 && head_work * (double)BH >= TC_PARALLEL_MIN_WORK;
    const int nthreads = outer ? attention_max_threads() : 1;
    const int inner = !outer && (double)Tq * (double)S >= TC_PARALLEL_MIN_WORK;
    const size_t n = attention_scratch_elems(Tq, S, 2, nthreads, sizeof(T));
    T *scratch = n ? malloc(n * sizeof(T)) : NULL;
    if (!scratch) return TC_ENOMEM;
    int status = TC_OK;
#pragma omp parallel num_threads(nthreads) if (outer)
    {
        T *P = scratch + (size_t)attention_thread_num() * 2 * (size_t)Tq * (size_t)S;
        T *dS = P + (size_t)Tq * (size_t)S;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < BH; b++) {
            int st = FN(attention_backward_head)(
                dq + b * Tq * DK, dk + b * S * DK, dv + b * S * DV, P, dS, dout + b * Tq * DV,
                q + b * Tq * DK, k + b * S * DK, v + b * S * DV, out + b * Tq * DV,
                lse + b * Tq, Tq, S, DK, DV, scale, causal, inner);
            if (st != TC_OK) {
#pragma omp atomic write
                status = st;
            }
        }
    }
    free(scratch);
    return status;
}
