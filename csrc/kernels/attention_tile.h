/* attention_tile.h: the per-tile work of the tiled attention kernel, written once.
 *
 * Included by attention_flash_impl.h once per instruction set with real_t, SFX, KN(name) (the
 * name with its dtype and instruction-set suffix) and KATTR (a target attribute, or
 * nothing). AVEC is a 32-byte GCC vector of real_t: the compiler emits AVX2/FMA under
 * __attribute__((target("avx2,fma"))) and SSE2 pairs (or NEON, ...) otherwise. No vector
 * is passed by value across a function boundary (only pointers), so the two builds never
 * disagree on an ABI.
 *
 * Tile products: C (M,N) (+)= A (M,K) B (K,N) with B read row by row (ldb) in vectors and A
 * broadcast element by element, either A row-major (nn: A(r,p) = a[r*lda + p]) or
 * transposed (tn: A(r,p) = a[p*lda + r]); M is a multiple of ATT_MR, N of ATT_NR. Each C
 * element sums over p in order: results are reproducible.
 */

/* The MR x NR micro-kernel: twelve accumulators in registers (named, not an array, so
 * nothing is spilled or zeroed through memory), two vector loads of b and six broadcasts
 * of A per step of p. AT(r) is A(r, p) for the current p. */
#define ATT_MK(AT)                                                                        \
    AVEC c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};                \
    AVEC c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};                \
    for (int64_t p = 0; p < kc; p++) {                                                    \
        const AVEC b0 = ATT_VLOAD(b + p * ldb), b1 = ATT_VLOAD(b + p * ldb + ATT_VL);     \
        real_t ar = AT(0);                                                                     \
        c00 += ar * b0;                                                                   \
        c01 += ar * b1;                                                                   \
        ar = AT(1);                                                                       \
        c10 += ar * b0;                                                                   \
        c11 += ar * b1;                                                                   \
        ar = AT(2);                                                                       \
        c20 += ar * b0;                                                                   \
        c21 += ar * b1;                                                                   \
        ar = AT(3);                                                                       \
        c30 += ar * b0;                                                                   \
        c31 += ar * b1;                                                                   \
        ar = AT(4);                                                                       \
        c40 += ar * b0;                                                                   \
        c41 += ar * b1;                                                                   \
        ar = AT(5);                                                                       \
        c50 += ar * b0;                                                                   \
        c51 += ar * b1;                                                                   \
    }                                                                                     \
    if (acc) {                                                                            \
        ATT_MK_ROW_ACC(0, c00, c01);                                                      \
        ATT_MK_ROW_ACC(1, c10, c11);                                                      \
        ATT_MK_ROW_ACC(2, c20, c21);                                                      \
        ATT_MK_ROW_ACC(3, c30, c31);                                                      \
        ATT_MK_ROW_ACC(4, c40, c41);                                                      \
        ATT_MK_ROW_ACC(5, c50, c51);                                                      \
    }                                                                                     \
    ATT_MK_ROW_STORE(0, c00, c01);                                                        \
    ATT_MK_ROW_STORE(1, c10, c11);                                                        \
    ATT_MK_ROW_STORE(2, c20, c21);                                                        \
    ATT_MK_ROW_STORE(3, c30, c31);                                                        \
    ATT_MK_ROW_STORE(4, c40, c41);                                                        \
    ATT_MK_ROW_STORE(5, c50, c51)
#define ATT_MK_ROW_ACC(r, x0, x1)                                                         \
    do {                                                                                  \
        x0 += ATT_VLOAD(c + (r) * ldc);                                                   \
        x1 += ATT_VLOAD(c + (r) * ldc + ATT_VL);                                          \
    } while (0)
#define ATT_MK_ROW_STORE(r, x0, x1)                                                       \
    do {                                                                                  \
        ATT_VSTORE(c + (r) * ldc, x0);                                                    \
        ATT_VSTORE(c + (r) * ldc + ATT_VL, x1);                                           \
    } while (0)

/* c (MR,NR) (+)= sum_p A(r,p) b[p*ldb + 0..NR), A(r,p) = a[r*lda + p] */
KATTR static inline void KN(att_mk_nn)(int64_t kc, const real_t *restrict a, int64_t lda,
                                       const real_t *restrict b, int64_t ldb, real_t *restrict c,
                                       int64_t ldc, int acc)
{
#define ATT_A_NN(r) a[(r) * lda + p]
    ATT_MK(ATT_A_NN);
#undef ATT_A_NN
}

/* c (MR,NR) (+)= sum_p A(r,p) b[p*ldb + 0..NR), A(r,p) = a[p*lda + r] */
KATTR static inline void KN(att_mk_tn)(int64_t kc, const real_t *restrict a, int64_t lda,
                                       const real_t *restrict b, int64_t ldb, real_t *restrict c,
                                       int64_t ldc, int acc)
{
#define ATT_A_TN(r) a[p * lda + (r)]
    ATT_MK(ATT_A_TN);
#undef ATT_A_TN
}

#undef ATT_MK
#undef ATT_MK_ROW_ACC
#undef ATT_MK_ROW_STORE

/* c (M,N) (+)= a (M,K) @ b (K,N); M % MR == 0, N % NR == 0. Row strip s (rows
 * [s*MR, s*MR + MR)) takes only the columns [nlo[s], nw[s]) (multiples of NR) and only
 * the terms klo[s] <= p < kw[s], each bound where its array is not NULL (else 0, N, 0,
 * K): the parts a causal or block-sparse mask hides. A strip with nothing to do under
 * them is skipped (its c rows are left as they are); K == 0 without kw stores zeros (or
 * leaves c) as any other K. */
KATTR static void KN(att_gemm_nn)(int64_t M, int64_t N, int64_t K, const real_t *a, int64_t lda,
                                  const real_t *b, int64_t ldb, real_t *c, int64_t ldc, int acc,
                                  const int64_t *nlo, const int64_t *nw, const int64_t *klo,
                                  const int64_t *kw)
{
    for (int64_t n0 = 0; n0 < N; n0 += ATT_NR)
        for (int64_t m0 = 0; m0 < M; m0 += ATT_MR) {
            const int64_t st = m0 / ATT_MR, k0 = klo ? klo[st] : 0;
            const int64_t kc = (kw ? kw[st] : K) - k0;
            if ((nw && n0 >= nw[st]) || (nlo && n0 < nlo[st]) || ((kw || klo) && kc <= 0))
                continue;
            KN(att_mk_nn)(kc, a + m0 * lda + k0, lda, b + k0 * ldb + n0, ldb,
                          c + m0 * ldc + n0, ldc, acc);
        }
}

/* c (M,N) (+)= a^T @ b, a (K,M) with row stride lda, b (K,N); M % MR == 0, N % NR == 0.
 * Row strip s of c sums only the terms ks[s] <= p < ke[s], each bound where its array is
 * not NULL (else 0, K; the other rows of a are zero there: queries that do not see these
 * keys); a strip with none is skipped. */
KATTR static void KN(att_gemm_tn)(int64_t M, int64_t N, int64_t K, const real_t *a, int64_t lda,
                                  const real_t *b, int64_t ldb, real_t *c, int64_t ldc, int acc,
                                  const int64_t *ks, const int64_t *ke)
{
    for (int64_t n0 = 0; n0 < N; n0 += ATT_NR)
        for (int64_t m0 = 0; m0 < M; m0 += ATT_MR) {
            const int64_t p0 = ks ? ks[m0 / ATT_MR] : 0, p1 = ke ? ke[m0 / ATT_MR] : K;
            if (p0 >= p1) continue;
            KN(att_mk_tn)(p1 - p0, a + p0 * lda + m0, lda, b + p0 * ldb + n0, ldb,
                          c + m0 * ldc + n0, ldc, acc);
        }
}

/* d[p*ldd + j] = s[j*lds + p] for j < n, p < m: a transposed copy */
KATTR static void KN(att_transpose)(real_t *restrict d, int64_t ldd, const real_t *restrict s,
                                    int64_t lds, int64_t n, int64_t m)
{
    int64_t j0 = 0;
#if ATT_TR8
    for (; j0 + 8 <= n; j0 += 8) {
        int64_t p = 0;
        for (; p + 8 <= m; p += 8)
            attention_tr8_f32(d + p * ldd + j0, ldd, s + j0 * lds + p, lds);
        for (; p < m; p++)
            for (int64_t j = j0; j < j0 + 8; j++) d[p * ldd + j] = s[j * lds + p];
    }
#endif
    for (int64_t j = j0; j < n; j++)
        for (int64_t p = 0; p < m; p++) d[p * ldd + j] = s[j * lds + p];
}

/* kt (BH, nkt, DK, ATT_BC) <- k^T of every key tile of batch-heads [bh0, bh1), one
 * contiguous (DK, ATT_BC) panel per tile (a row stride of S would put the panel's rows in
 * the same cache set): column x of panel t holds key slot t*keys - origin + x
 * (FN(att_tile)), columns of no key zero. */
KATTR static void KN(att_transpose_keys)(const FN(att_ctx) *c, real_t *kt, int64_t bh0,
                                          int64_t bh1)
{
    const int64_t S = c->S, DK = c->DK, ldk = c->lay.k.t, W = c->keys;
    for (int64_t bh = bh0; bh < bh1; bh++) {
        const real_t *k = ATT_KVHEAD(c->k, c->lay.k, c->NH, c->G, bh);
        const int64_t o = FN(att_origin)(c, bh / c->NH, W, 0);
        for (int64_t t = 0; t < c->nkt; t++) {
            real_t *d = kt + (bh * c->nkt + t) * DK * ATT_BC;
            int64_t j1;
            const int64_t j0 = FN(att_tile)(c, bh, t, W, S, 0, &j1), x0 = j0 - (t * W - o);
            const int64_t n = j1 > j0 ? j1 - j0 : 0;
            KN(att_transpose)(d + x0, ATT_BC, k + j0 * ldk, ldk, n, DK);
            for (int64_t p = 0; p < DK; p++) {
                for (int64_t j = 0; j < x0; j++) d[p * ATT_BC + j] = 0;
                for (int64_t j = x0 + n; j < ATT_BC; j++) d[p * ATT_BC + j] = 0;
            }
        }
    }
}

/* max of s[0..n), n a positive multiple of ATT_VL */
KATTR static real_t KN(att_row_max)(const real_t *s, int64_t n)
{
    AVEC m = ATT_VLOAD(s);
    for (int64_t j = ATT_VL; j < n; j += ATT_VL) {
        const AVEC x = ATT_VLOAD(s + j);
        const AIVEC gt = x > m;
        m = (AVEC)(((AIVEC)x & gt) | ((AIVEC)m & ~gt));
    }
    real_t r = m[0];
    for (int l = 1; l < ATT_VL; l++) r = m[l] > r ? m[l] : r;
    return r;
}

/* s[j] = exp(s[j] - m) for j < n (a multiple of ATT_VL); returns the sum (fixed order) */
KATTR static real_t KN(att_row_exp_sum)(real_t *s, int64_t n, real_t m)
{
    AVEC acc = (AVEC){0};
    for (int64_t j = 0; j < n; j += ATT_VL) {
        const AVEC e = ATT_VEXP(ATT_VLOAD(s + j) - m);
        ATT_VSTORE(s + j, e);
        acc += e;
    }
    real_t r = 0;
    for (int l = 0; l < ATT_VL; l++) r += acc[l];
    return r;
}

/* s[j] = exp(s[j] - m) for j < n (a multiple of ATT_VL) */
KATTR static void KN(att_row_exp)(real_t *s, int64_t n, real_t m)
{
    for (int64_t j = 0; j < n; j += ATT_VL) ATT_VSTORE(s + j, ATT_VEXP(ATT_VLOAD(s + j) - m));
}

/* ds[j] = p[j] * (ds[j] - D) for j < n (a multiple of ATT_VL) */
KATTR static void KN(att_row_ds)(real_t *restrict ds, const real_t *restrict p, int64_t n, real_t D)
{
    for (int64_t j = 0; j < n; j += ATT_VL)
        ATT_VSTORE(ds + j, ATT_VLOAD(p + j) * (ATT_VLOAD(ds + j) - D));
}

/* s[j] = q . k_j for the n keys k_j = k + j*ldk, four keys at a time (independent vector
 * accumulators), the DK % ATT_VL tail in scalars */
KATTR static void KN(att_row_scores)(real_t *restrict s, const real_t *restrict q, const real_t *restrict k,
                                     int64_t n, int64_t DK, int64_t ldk)
{
    const int64_t dv = DK / ATT_VL * ATT_VL;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const real_t *k0 = k + j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        AVEC a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t p = 0; p < dv; p += ATT_VL) {
            const AVEC x = ATT_VLOAD(q + p);
            a0 += x * ATT_VLOAD(k0 + p);
            a1 += x * ATT_VLOAD(k1 + p);
            a2 += x * ATT_VLOAD(k2 + p);
            a3 += x * ATT_VLOAD(k3 + p);
        }
        real_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (int l = 0; l < ATT_VL; l++) {
            d0 += a0[l];
            d1 += a1[l];
            d2 += a2[l];
            d3 += a3[l];
        }
        for (int64_t p = dv; p < DK; p++) {
            d0 += q[p] * k0[p];
            d1 += q[p] * k1[p];
            d2 += q[p] * k2[p];
            d3 += q[p] * k3[p];
        }
        s[j] = d0;
        s[j + 1] = d1;
        s[j + 2] = d2;
        s[j + 3] = d3;
    }
    for (; j < n; j++) {
        const real_t *kj = k + j * ldk;
        AVEC a = {0};
        for (int64_t p = 0; p < dv; p += ATT_VL) a += ATT_VLOAD(q + p) * ATT_VLOAD(kj + p);
        real_t d = 0;
        for (int l = 0; l < ATT_VL; l++) d += a[l];
        for (int64_t p = dv; p < DK; p++) d += q[p] * kj[p];
        s[j] = d;
    }
}

/* Causal extents of the query rows [i0, i0 + br) against the key tile [j0, j0 + bc)
 * (bc <= bcp, bcp a multiple of ATT_NR): nw[s] = the keys of the tile some row of strip s
 * (rows i0 + s*MR ...) sees, rounded up to ATT_NR and at most bcp (0: none), for the
 * strips covering brp rows (rows past br count as row br - 1). Without causal masking every
 * strip gets bcp. */
KATTR static void KN(att_strip_widths)(const FN(att_ctx) *c, int64_t i0, int64_t br,
                                       int64_t brp, int64_t j0, int64_t bcp, int64_t *nw)
{
    for (int64_t m0 = 0; m0 < brp; m0 += ATT_MR) {
        const int64_t rl = m0 + ATT_MR - 1 < br - 1 ? m0 + ATT_MR - 1 : br - 1;
        int64_t w = attention_limit(i0 + rl, c->Tq, c->S, c->causal) - j0;
        w = w <= 0 ? 0 : attention_round_up(w, ATT_NR);
        nw[m0 / ATT_MR] = w < bcp ? w : bcp;
    }
}

/* Block-sparse extents (c->sp) of the query rows [i0, i0 + br) of batch row b against the
 * key tile [j0, j0 + bc), strip by strip (rows i0 + s*MR ..., the strips covering brp
 * rows; rows past br count as row br - 1): the keys [f[s], kw[s]) of the tile hold every
 * key some row of strip s sees (pattern and causality); lo[s] = f[s] rounded down to
 * ATT_NR, nw[s] = kw[s] rounded up (nw[s] = kw[s] = 0: the strip sees none), so a strip
 * computes the columns [lo, nw) only; full[s] = 1 when every row of the strip sees every
 * key of [f, kw) by the pattern (only causality is left to mask). */
KATTR static void KN(att_sparse_strips)(const FN(att_ctx) *c, int64_t b, int64_t i0, int64_t br,
                                        int64_t brp, int64_t j0, int64_t bc, int64_t *lo,
                                        int64_t *f, int64_t *nw, int64_t *kw,
                                        unsigned char *full)
{
    const tc_attention_sparse *sp = c->sp;
    const int64_t bs = sp->block, sh = c->sshift ? c->sshift[b] : 0;
    for (int64_t m0 = 0; m0 < brp; m0 += ATT_MR) {
        const int64_t st = m0 / ATT_MR;
        const int64_t ra = m0 < br ? m0 : br - 1;
        const int64_t rz = m0 + ATT_MR - 1 < br - 1 ? m0 + ATT_MR - 1 : br - 1;
        const int64_t qp0 = i0 + ra + c->qoff - sh, qp1 = i0 + rz + c->qoff - sh;
        int64_t lim = attention_limit(i0 + rz, c->Tq, c->S, c->causal) - j0; /* causal */
        lim = lim < bc ? lim : bc;
        int64_t fa = -1, la = -1;
        int all = qp0 >= 0, gap = 0;
        if (qp1 >= 0 && lim > 0)
            for (int64_t kb = j0 - sh > 0 ? (j0 - sh) / bs : 0; kb * bs + sh < j0 + lim; kb++) {
                if (!attention_sparse_any(sp, qp0, qp1, kb * bs, kb * bs)) {
                    gap = fa >= 0;
                    continue;
                }
                const int64_t a = kb * bs + sh - j0, z = (kb + 1) * bs + sh - j0;
                if (fa < 0) fa = a > 0 ? a : 0;
                else if (gap) all = 0;
                la = z < lim ? z : lim;
                for (int64_t qb = (qp0 > 0 ? qp0 : 0) / bs; all && qb <= qp1 / bs; qb++)
                    all = attention_sparse_visible(sp, qb, kb);
            }
        if (fa < 0) {
            lo[st] = f[st] = nw[st] = kw[st] = 0;
            full[st] = 0;
            continue;
        }
        f[st] = fa;
        lo[st] = fa / ATT_NR * ATT_NR;
        kw[st] = la;
        nw[st] = attention_round_up(la, ATT_NR);
        full[st] = (unsigned char)all;
    }
}

/* Forward of a work item with fewer than ATT_MR query rows (decoding one or a few tokens):
 * row by row, the scores against every visible key straight from k (no transposed tiles,
 * no rows padded to ATT_MR), then the softmax and out = P v. w: FN(att_rows_scratch). */
KATTR static void KN(att_fwd_rows)(const FN(att_ctx) *c, int64_t bh, int64_t i0, int64_t br,
                                   real_t *w)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DV = c->DV;
    const int64_t b = bh / c->NH, h = bh % c->NH;
    const real_t *k = ATT_KVHEAD(c->k, c->lay.k, c->NH, c->G, bh);
    const real_t *v = ATT_KVHEAD(c->v, c->lay.v, c->NH, c->G, bh);
    const int64_t ldk = c->lay.k.t, ldv = c->lay.v.t;
    real_t *qs = w, *o = qs + FN(att_pad)(DK), *s = o + FN(att_pad)(DV);
    for (int64_t r = 0; r < br; r++) {
        const int64_t i = i0 + r;
        const real_t *q = ATT_HEAD(c->q, c->lay.q, c->NH, bh) + i * c->lay.q.t;
        real_t *out = ATT_HEAD(c->out, c->lay.out, c->NH, bh) + i * c->lay.out.t;
        const int64_t lim = attention_limit(i, Tq, S, c->causal);
        const int64_t n = attention_round_up(lim > 0 ? lim : 1, ATT_VL);
        for (int64_t p = 0; p < DK; p++) qs[p] = c->scale * q[p];
        if (c->sp) { /* block-sparse: the scores of the visible blocks only */
            const int64_t sh = c->sshift ? c->sshift[b] : 0, bs = c->sp->block;
            const int64_t p = i + c->qoff - sh;
            for (int64_t j = 0; j < lim;) {
                const int64_t kp = j - sh, kb = kp >= 0 ? kp / bs : -1;
                int64_t e = kp >= 0 ? (kb + 1) * bs + sh : sh;
                e = e < lim ? e : lim;
                if (p >= 0 && kb >= 0 && attention_sparse_visible(c->sp, p / bs, kb))
                    KN(att_row_scores)(s + j, qs, k + j * ldk, e - j, DK, ldk);
                else
                    for (int64_t t = j; t < e; t++) s[t] = -INFINITY;
                j = e;
            }
        } else {
            KN(att_row_scores)(s, qs, k, lim, DK, ldk);
        }
        if (c->masked) FN(attention_mask_row)(s, c->masks, b, h, i, 0, lim, lim, S, c->qoff);
        for (int64_t j = lim; j < n; j++) s[j] = -INFINITY;
        const real_t m = KN(att_row_max)(s, n);
        if (m == -INFINITY) { /* every key masked: zeros, lse = -inf */
            for (int64_t cc = 0; cc < DV; cc++) out[cc] = 0;
            if (c->lse) c->lse[bh * Tq + i] = -INFINITY;
            continue;
        }
        const real_t l = KN(att_row_exp_sum)(s, n, m);
        if (c->drop.on)
            FN(attention_dropout_row)(s, NULL, lim, &c->drop,
                                      ((uint64_t)bh * (uint64_t)Tq + (uint64_t)i) * (uint64_t)S);
        for (int64_t cc = 0; cc < DV; cc++) o[cc] = 0;
        for (int64_t j = 0; j < lim; j++) {
            const real_t pj = s[j];
            if (pj == 0) continue; /* masked or dropped */
            const real_t *vj = v + j * ldv;
            for (int64_t cc = 0; cc < DV; cc++) o[cc] += pj * vj[cc];
        }
        const real_t inv = (real_t)1 / l;
        for (int64_t cc = 0; cc < DV; cc++) out[cc] = o[cc] * inv;
        if (c->lse) c->lse[bh * Tq + i] = m + MATH(log)(l);
    }
}

/* One forward work item: query rows [i0, i0 + br) (br <= ATT_BR) of batch-head bh against
 * every visible key tile, online softmax; w: FN(att_fwd_scratch) elements. */
KATTR static void KN(att_fwd_item)(const FN(att_ctx) *c, int64_t bh, int64_t i0, int64_t br,
                                   real_t *w)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DV = c->DV, DVP = c->DVP;
    const int64_t b = bh / c->NH, h = bh % c->NH;
    if (br < ATT_MR) {
        KN(att_fwd_rows)(c, bh, i0, br, w);
        return;
    }
    const int64_t brp = attention_round_up(br, ATT_MR);
    const int64_t ldq = c->lay.q.t, ldk = c->lay.k.t, ldv0 = c->lay.v.t;
    const real_t *q = ATT_HEAD(c->q, c->lay.q, c->NH, bh) + i0 * ldq;
    const real_t *k = ATT_KVHEAD(c->k, c->lay.k, c->NH, c->G, bh);
    const real_t *v = ATT_KVHEAD(c->v, c->lay.v, c->NH, c->G, bh);
    real_t *Qs = w, *Kt = Qs + FN(att_pad)(ATT_BR * DK), *Vp = Kt + FN(att_pad)(DK * ATT_BC);
    real_t *Sb = Vp + FN(att_pad)(ATT_BC * DVP), *O = Sb + ATT_BR * ATT_BC;
    real_t *mx = O + FN(att_pad)(ATT_BR * DVP), *l = mx + ATT_BR;
    int64_t nw[ATT_BR / ATT_MR + 1], kw[ATT_BR / ATT_MR + 1];
    int64_t lo[ATT_BR / ATT_MR + 1], f[ATT_BR / ATT_MR + 1];
    unsigned char full[ATT_BR / ATT_MR + 1];

    /* Qs = scale * q block, rows past br zero */
    for (int64_t r = 0; r < br; r++) {
        if (r + 4 < br) /* strided rows: no hardware prefetcher follows them */
            for (int64_t p = 0; p < DK; p += 64 / (int64_t)sizeof(real_t))
                __builtin_prefetch(q + (r + 4) * ldq + p);
        for (int64_t p = 0; p < DK; p++) Qs[r * DK + p] = c->scale * q[r * ldq + p];
    }
    memset(Qs + br * DK, 0, (size_t)((brp - br) * DK) * sizeof(real_t));
    memset(O, 0, (size_t)(brp * DVP) * sizeof(real_t));
    for (int64_t r = 0; r < brp; r++) {
        mx[r] = -INFINITY;
        l[r] = 0;
    }
    /* keys [0, kend) are visible to some row of the block; [0, lim0) to all of them */
    const int64_t kend = attention_limit(i0 + br - 1, Tq, S, c->causal);
    const int64_t lim0 = attention_limit(i0, Tq, S, c->causal);
    const tc_attention_masks *m = c->masks;
    const uint8_t *kpad = m && m->key_padding ? m->key_padding + b * S : NULL;
    /* block-sparse: only the runs of keys some row of the block sees, a tile at a time;
     * a row strip whose rows all see a tile's keys by the pattern masks only the others */
    tc_attention_masks rest;
    if (m) {
        rest = *m;
        rest.sparse = NULL;
    }
    const tc_attention_masks *mfull = c->other ? &rest : NULL;
    const int64_t sh = c->sshift ? c->sshift[b] : 0; /* positions = slots - sh */
    const int64_t qp0 = i0 + c->qoff - sh, qp1 = i0 + br - 1 + c->qoff - sh;
    const int64_t W = c->keys, ko = FN(att_origin)(c, b, W, 0);
    int64_t run_end = 0;
    for (int64_t j0 = 0, bc = 0; j0 < kend; j0 += bc) {
        if (c->sp && j0 >= run_end) {
            j0 = attention_sparse_next(c->sp, qp0, qp1, j0 - sh, kend - sh, &run_end) + sh;
            run_end += sh;
            if (j0 >= kend) break;
        }
        /* the key tile t holding j0 (FN(att_tile)): this tile ends at its end at the latest */
        const int64_t t = (j0 + ko) / W, tend = (t + 1) * W - ko;
        bc = c->sp ? run_end : kend;
        bc = (bc < tend ? bc : tend) - j0;
        const int64_t bcp = attention_round_up(bc, ATT_NR);
        if (kpad) { /* skip a tile of padding keys only */
            int any = 0;
            for (int64_t j = 0; j < bc && !any; j++) any = kpad[j0 + j] != 0;
            if (!any) continue;
        }
        /* Kt (DK, bcp) = k tile transposed, columns past bc zero (or the head's k^T: from
         * column j0 of its tile's panel on; columns past bc are masked below) */
        const real_t *kt = Kt;
        if (c->kt) {
            kt = c->kt + (bh * c->nkt + t) * DK * ATT_BC + (j0 - (t * W - ko));
        } else {
            KN(att_transpose)(Kt, ATT_BC, k + j0 * ldk, ldk, bc, DK);
            for (int64_t p = 0; p < DK; p++)
                for (int64_t j = bc; j < bcp; j++) Kt[p * ATT_BC + j] = 0;
        }
        /* scores (brp, bcp) = Qs Kt; row strip s only over its nw[s] causally visible
         * columns (the rest of its rows of Sb is never read) */
        KN(att_strip_widths)(c, i0, br, brp, j0, bcp, nw);
        for (int64_t st = 0; st < brp / ATT_MR; st++) kw[st] = nw[st] < bc ? nw[st] : bc;
        if (c->sp) KN(att_sparse_strips)(c, b, i0, br, brp, j0, bc, lo, f, nw, kw, full);
        const int64_t *nlo = c->sp ? lo : NULL;
        KN(att_gemm_nn)(brp, bcp, DK, Qs, DK, kt, ATT_BC, Sb, ATT_BC, 0, nlo, nw, NULL, NULL);
        const int need_mask = c->masked || j0 + bc > lim0;
        for (int64_t r = 0; r < br; r++) {
            const int64_t st = r / ATT_MR, i = i0 + r, w = nw[st], n = kw[st];
            const int64_t l0 = nlo ? lo[st] : 0, f0 = nlo ? f[st] : 0;
            real_t *s = Sb + r * ATT_BC;
            if (w == 0) continue; /* no key of this tile is visible to the row */
            const int64_t lim = attention_limit(i, Tq, S, c->causal);
            /* (a block-sparse row that sees all of [f0, n) needs no mask) */
            if (need_mask && !(nlo && full[st] && !c->other && j0 + n <= lim))
                FN(attention_mask_row)(s + f0, nlo && full[st] ? mfull : m, b, h, i, j0 + f0,
                                       n - f0, lim, S, c->qoff);
            for (int64_t j = l0; j < f0; j++) s[j] = -INFINITY;
            for (int64_t j = n; j < w; j++) s[j] = -INFINITY;
            const real_t mt = KN(att_row_max)(s + l0, w - l0);
            const real_t mnew = mt > mx[r] ? mt : mx[r];
            if (mnew == -INFINITY) { /* no visible key so far */
                memset(s + l0, 0, (size_t)(w - l0) * sizeof(real_t));
                continue;
            }
            const real_t alpha = MATH(exp)(mx[r] - mnew); /* 0 when mx was -inf */
            const real_t sum = KN(att_row_exp_sum)(s + l0, w - l0, mnew);
            l[r] = l[r] * alpha + sum;
            if (c->drop.on)
                FN(attention_dropout_row)(s + f0, NULL, n - f0, &c->drop,
                                          ((uint64_t)bh * (uint64_t)Tq + (uint64_t)i) *
                                                  (uint64_t)S + (uint64_t)(j0 + f0));
            if (alpha != 1) {
                real_t *o = O + r * DVP;
                for (int64_t cc = 0; cc < DVP; cc++) o[cc] *= alpha;
            }
            mx[r] = mnew;
        }
        /* O (brp, DVP) += P (brp, bc) v tile (bc, DVP) */
        const real_t *vb = v + j0 * ldv0;
        int64_t ldv = ldv0;
        if (c->vp) { /* packed once per head */
            vb = c->vp + (bh * S + j0) * DVP;
            ldv = DVP;
        } else if (DV != DVP || ldv0 != DVP) {
            for (int64_t j = 0; j < bc; j++) {
                memcpy(Vp + j * DVP, vb + j * ldv0, (size_t)DV * sizeof(real_t));
                memset(Vp + j * DVP + DV, 0, (size_t)(DVP - DV) * sizeof(real_t));
            }
            vb = Vp;
            ldv = DVP;
        }
        KN(att_gemm_nn)(brp, DVP, bc, Sb, ATT_BC, vb, ldv, O, DVP, 1, NULL, NULL, nlo, kw);
    }
    real_t *ob = ATT_HEAD(c->out, c->lay.out, c->NH, bh) + i0 * c->lay.out.t;
    for (int64_t r = 0; r < br; r++) {
        real_t *o = ob + r * c->lay.out.t;
        if (l[r] > 0) {
            const real_t inv = (real_t)1 / l[r];
            for (int64_t cc = 0; cc < DV; cc++) o[cc] = O[r * DVP + cc] * inv;
            if (c->lse) c->lse[bh * Tq + i0 + r] = mx[r] + MATH(log)(l[r]);
        } else { /* every key masked: zeros, lse = -inf */
            for (int64_t cc = 0; cc < DV; cc++) o[cc] = 0;
            if (c->lse) c->lse[bh * Tq + i0 + r] = -INFINITY;
        }
    }
}

/* One backward work item: key rows [j0, j0 + bc) (bc <= ATT_BC) of batch-head bh against
 * every query block that sees them (blocks of c->rows rows, FN(att_tile)). Qs (Tp,DKP) = scale * q and dOp (Tp,DVP) = dout of the head (rows
 * past T and columns past DK/DV zero), Dv (T,) = rowsum(dout * out); dQ (Tp,DKP)
 * accumulates dS k (the caller scales it); dk, dv of the key rows accumulate here.
 * w: FN(att_bwd_scratch) elements. */
KATTR static void KN(att_bwd_kblock)(const FN(att_ctx) *c, int64_t bh, int64_t j0, int64_t bc,
                                     const real_t *Qs, const real_t *dOp, const real_t *Dv, real_t *dQ, real_t *w)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DV = c->DV, DKP = c->DKP, DVP = c->DVP;
    const int64_t b = bh / c->NH, h = bh % c->NH;
    const int64_t bcp = attention_round_up(bc, ATT_BQ);
    const int64_t ldk0 = c->lay.k.t, ldv = c->lay.v.t, lddk = c->lay.dk.t, lddv = c->lay.dv.t;
    real_t *dk = ATT_KVHEAD(c->dk, c->lay.dk, c->NH, c->G, bh) + j0 * lddk;
    real_t *dv = ATT_KVHEAD(c->dv, c->lay.dv, c->NH, c->G, bh) + j0 * lddv;
    const int64_t i_first = attention_first_row(j0, Tq, S, c->causal);
    int seen = i_first < Tq; /* some query sees these keys */
    const tc_attention_masks *m = c->masks;
    if (seen && m && m->key_padding) { /* padding keys only: no gradient */
        const uint8_t *kp = m->key_padding + b * S + j0;
        int any = 0;
        for (int64_t j = 0; j < bc && !any; j++) any = kp[j] != 0;
        seen = any;
    }
    if (!seen) { /* dk, dv of the tile: += 0, or written 0 */
        for (int64_t j = 0; j < bc; j++) {
            if (TC_WRITES(c->write, 1)) memset(dk + j * lddk, 0, (size_t)DK * sizeof(real_t));
            if (TC_WRITES(c->write, 2)) memset(dv + j * lddv, 0, (size_t)DV * sizeof(real_t));
        }
        return;
    }
    const real_t *k = ATT_KVHEAD(c->k, c->lay.k, c->NH, c->G, bh) + j0 * ldk0;
    const real_t *v = ATT_KVHEAD(c->v, c->lay.v, c->NH, c->G, bh) + j0 * ldv;
    const real_t *lse = c->lse_in + bh * Tq;
    real_t *Kt = w, *Vt = Kt + FN(att_pad)(DK * ATT_BC), *Kp = Vt + FN(att_pad)(DV * ATT_BC);
    real_t *Sb = Kp + FN(att_pad)(ATT_BC * DKP), *dP = Sb + ATT_BR * ATT_BC;
    real_t *Pd = dP + ATT_BR * ATT_BC, *dK = Pd + ATT_BR * ATT_BC, *dV = dK + ATT_BC * DKP;
    int64_t nw[ATT_BR / ATT_MR + 1], kw[ATT_BR / ATT_MR + 1], ks[ATT_BC / ATT_MR + 1];
    int64_t lo[ATT_BR / ATT_MR + 1], f[ATT_BR / ATT_MR + 1], ke[ATT_BC / ATT_MR + 1];
    unsigned char full[ATT_BR / ATT_MR + 1];
    tc_attention_masks rest; /* the masks but the pattern (as the forward) */
    if (m) {
        rest = *m;
        rest.sparse = NULL;
    }
    const tc_attention_masks *mfull = c->other ? &rest : NULL;
    const int64_t bcz = attention_round_up(bc, ATT_MR); /* the columns the key strips read */

    /* Kt, Vt: the tile transposed, zero columns up to bcn = bc rounded up to ATT_NR (the
     * score products never read past the causal widths, at most bcn) */
    const int64_t bcn = attention_round_up(bc, ATT_NR);
    KN(att_transpose)(Kt, ATT_BC, k, ldk0, bc, DK);
    KN(att_transpose)(Vt, ATT_BC, v, ldv, bc, DV);
    for (int64_t p = 0; p < DK; p++)
        for (int64_t j = bc; j < bcn; j++) Kt[p * ATT_BC + j] = 0;
    for (int64_t p = 0; p < DV; p++)
        for (int64_t j = bc; j < bcn; j++) Vt[p * ATT_BC + j] = 0;
    const real_t *kb = k;
    int64_t ldk = ldk0;
    if (DK != DKP || ldk0 != DKP) {
        for (int64_t j = 0; j < bc; j++) {
            memcpy(Kp + j * DKP, k + j * ldk0, (size_t)DK * sizeof(real_t));
            memset(Kp + j * DKP + DK, 0, (size_t)(DKP - DK) * sizeof(real_t));
        }
        kb = Kp;
        ldk = DKP;
    }
    memset(dK, 0, (size_t)(bcp * DKP) * sizeof(real_t));
    memset(dV, 0, (size_t)(bcp * DVP) * sizeof(real_t));

    const int64_t qr = c->rows, qo = FN(att_origin)(c, b, qr, 1);
    for (int64_t qb = (i_first + qo) / qr, ie = 0; ie < Tq; qb++) {
        const int64_t ib = FN(att_tile)(c, bh, qb, qr, Tq, 1, &ie), br = ie - ib;
        const int64_t sh = c->sp && c->sshift ? c->sshift[b] : 0;
        if (c->sp && !attention_sparse_any(c->sp, ib + c->qoff - sh, ib + br - 1 + c->qoff - sh,
                                           j0 - sh, j0 + bc - 1 - sh))
            continue; /* block-sparse: no row of the block sees a key of the tile */
        const int64_t brp = attention_round_up(br, ATT_MR);
        const int need_mask = c->masked || j0 + bc > attention_limit(ib, Tq, S, c->causal);
        /* Causal extents: row strip s computes the columns [0, nw[s]) of the scores and
         * keeps [0, nz) valid (nz = nw[s] rounded up to ATT_MR, zeros past nw[s]) for the
         * key-strip products; key strip t (keys j0 + t*MR ...) is seen by rows >= ks[t]
         * only, whose strips have nz past the key strip's end. */
        KN(att_strip_widths)(c, ib, br, brp, j0, bcp, nw);
        for (int64_t t = 0; t < brp / ATT_MR; t++) kw[t] = nw[t] < bc ? nw[t] : bc;
        for (int64_t t = 0; t < bcp / ATT_MR; t++) {
            const int64_t fr = attention_first_row(j0 + t * ATT_MR, Tq, S, c->causal) - ib;
            ks[t] = t * ATT_MR >= bc ? br : fr < 0 ? 0 : fr > br ? br : fr; /* padding keys: none */
            ke[t] = br;
        }
        /* block-sparse: row strip s computes the columns [lo, nw) only and zeroes the rest
         * of [0, bcz); key strip t sums the rows of the first to the last row strip that
         * sees one of its keys only */
        const int64_t *nlo = c->sp ? lo : NULL;
        if (c->sp) {
            KN(att_sparse_strips)(c, b, ib, br, brp, j0, bc, lo, f, nw, kw, full);
            for (int64_t t = 0; t < bcp / ATT_MR; t++) {
                int64_t a = br, z = 0;
                for (int64_t st = 0; st < brp / ATT_MR; st++)
                    if (kw[st] > t * ATT_MR && f[st] < t * ATT_MR + ATT_MR) {
                        a = a < st * ATT_MR ? a : st * ATT_MR;
                        z = st * ATT_MR + ATT_MR;
                    }
                ks[t] = ks[t] > a ? ks[t] : a;
                ke[t] = z < br ? z : br;
            }
        }
        /* scores = Qs Kt; dP~ = dout Vt */
        KN(att_gemm_nn)(brp, bcp, DK, Qs + ib * DKP, DKP, Kt, ATT_BC, Sb, ATT_BC, 0, nlo, nw,
                        NULL, NULL);
        KN(att_gemm_nn)(brp, bcp, DV, dOp + ib * DVP, DVP, Vt, ATT_BC, dP, ATT_BC, 0, nlo, nw,
                        NULL, NULL);
        for (int64_t r = 0; r < br; r++) {
            const int64_t st = r / ATT_MR, i = ib + r, w = nw[st], n = kw[st];
            const int64_t l0 = nlo ? lo[st] : 0, f0 = nlo ? f[st] : 0;
            const int64_t nz = attention_round_up(w, ATT_MR);
            real_t *s = Sb + r * ATT_BC, *dp = dP + r * ATT_BC, *pd = Pd + r * ATT_BC;
            const real_t li = lse[i];
            if (nlo && (w == 0 || li == -INFINITY)) { /* no gradient through the row */
                memset(s, 0, (size_t)bcz * sizeof(real_t));
                memset(dp, 0, (size_t)bcz * sizeof(real_t));
                if (c->drop.on) memset(pd, 0, (size_t)bcz * sizeof(real_t));
                continue;
            }
            if (w == 0) continue; /* no key of this tile is visible to the row */
            if (li == -INFINITY) { /* a row with every key masked: no gradient */
                memset(s, 0, (size_t)nz * sizeof(real_t));
                memset(dp, 0, (size_t)nz * sizeof(real_t));
                if (c->drop.on) memset(pd, 0, (size_t)nz * sizeof(real_t));
                continue;
            }
            const int64_t lim = attention_limit(i, Tq, S, c->causal);
            if (need_mask && !(nlo && full[st] && !c->other && j0 + n <= lim))
                FN(attention_mask_row)(s + f0, nlo && full[st] ? mfull : m, b, h, i, j0 + f0,
                                       n - f0, lim, S, c->qoff);
            for (int64_t j = l0; j < f0; j++) s[j] = -INFINITY;
            for (int64_t j = n; j < w; j++) s[j] = -INFINITY;
            KN(att_row_exp)(s + l0, w - l0, li); /* P; masked entries exactly 0 */
            for (int64_t j = w; j < nz; j++) s[j] = dp[j] = 0;
            if (nlo) {
                for (int64_t j = 0; j < l0; j++) s[j] = dp[j] = 0;
                for (int64_t j = nz; j < bcz; j++) s[j] = dp[j] = 0;
            }
            const int64_t pz = nlo ? bcz : nz; /* the columns the key strips read */
            if (c->drop.on) { /* P~ = Z/(1-p) P for dv; dP = Z/(1-p) dP~ */
                memcpy(pd, s, (size_t)pz * sizeof(real_t));
                FN(attention_dropout_row)(pd + f0, dp + f0, n - f0, &c->drop,
                                          ((uint64_t)bh * (uint64_t)Tq + (uint64_t)i) *
                                                  (uint64_t)S + (uint64_t)(j0 + f0));
            }
            KN(att_row_ds)(dp + l0, s + l0, w - l0, Dv[i]); /* dS = P (dP - D) */
        }
        /* (a block-sparse query block's padding rows are the next block's rows of dQ: they
         * add zeros) */
        if (nlo)
            for (int64_t r = br; r < brp; r++) memset(dP + r * ATT_BC, 0, (size_t)bcp * sizeof(real_t));
        /* dV += P~^T dout; dQ += dS k; dK += dS^T Qs */
        const int64_t *kend = nlo ? ke : NULL;
        KN(att_gemm_tn)(bcp, DVP, br, c->drop.on ? Pd : Sb, ATT_BC, dOp + ib * DVP, DVP, dV,
                        DVP, 1, ks, kend);
        KN(att_gemm_nn)(brp, DKP, bc, dP, ATT_BC, kb, ldk, dQ + ib * DKP, DKP, 1, NULL, NULL,
                        nlo, kw);
        KN(att_gemm_tn)(bcp, DKP, br, dP, ATT_BC, Qs + ib * DKP, DKP, dK, DKP, 1, ks, kend);
    }
    /* += into dk, dv, or written as 0 + value (the bits of += into zeros) */
    const int wk = (int)TC_WRITES(c->write, 1), wv = (int)TC_WRITES(c->write, 2);
    for (int64_t j = 0; j < bc; j++) {
        real_t *dkj = dk + j * lddk, *dvj = dv + j * lddv;
        const real_t *sk = dK + j * DKP, *sv = dV + j * DVP;
        if (wk)
            for (int64_t p = 0; p < DK; p++) dkj[p] = (real_t)0 + sk[p];
        else
            for (int64_t p = 0; p < DK; p++) dkj[p] += sk[p];
        if (wv)
            for (int64_t p = 0; p < DV; p++) dvj[p] = (real_t)0 + sv[p];
        else
            for (int64_t p = 0; p < DV; p++) dvj[p] += sv[p];
    }
}
