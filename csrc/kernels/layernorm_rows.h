/* layernorm_rows.h: the per-row arithmetic of layer normalisation, written once for real_t and
 * shared by layernorm_impl.h and the fused residual + layernorm (fused_impl.h). Include it
 * per dtype after vec_math.h. Every routine is an always-inline body over the vectors of
 * vec_math.h, compiled into its caller's baseline and AVX2 variants (without FMA: both
 * round identically, so results do not depend on the CPU).
 *
 * Two passes over a row while it is in L1: the mean, summed in double (a row is read 4
 * elements at a time as a vector of 4 doubles, float32 widened on load), then the sum of
 * squared deviations in T, each deviation formed as (x - mh) - ml with mean = mh + ml split
 * into two T (x - mh is exact near the mean), so a large common offset (1e4 + noise in
 * float32) keeps its precision; if that sum overflows T (float32 values beyond ~1e19) the
 * row is redone in double. The normalised output and the backward's row sums are in T
 * (vectors of VL lanes, two accumulators combined in a fixed order: reproducible); the
 * weight / bias gradients sum LN_ROWS rows in T, then add them in double. Tails of fewer
 * than VL (or 4) elements take the same formulas in scalars (without FMA they round as
 * the vector lanes).
 */
#ifndef TC_LNROWS_ONCE
#define TC_LNROWS_ONCE
typedef float tc_vf32x4 __attribute__((vector_size(16)));
#define TC_NV_f32 tc_vf32x4 /* 4 elements of real_t */
#define TC_NV_f64 tc_vf64
#define LN_COLS 64 /* columns per thread block in the weight / bias gradients */
#define LN_ROWS 32 /* rows summed in T before they are added in double */
/* elements (N * C) from which a layernorm call runs in parallel */
#define LN_PAR_MIN (1 << 16)
static inline double ln_hsum4(tc_vf64 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
#endif

#define LNV TC_CAT(TC_NV_, SFX)
/* 4 elements of real_t at p as 4 doubles; 4 doubles rounded to real_t and stored at p */
#define LLOAD(p) ({ const real_t *lp_ = (p); (tc_vf64){(double)lp_[0], (double)lp_[1], (double)lp_[2], (double)lp_[3]}; })
#define LNARROW(v) __builtin_convertvector((v), LNV)
#define LNLOAD(p) ({ LNV l_; memcpy(&l_, (p), sizeof l_); l_; })
#define LNSTORE(p, v) do { LNV l_ = (v); memcpy((p), &l_, sizeof l_); } while (0)

/* sum of a row in vectors of real_t, two accumulators */
#define LN_VSUM(EXPR)                                                                         \
    ({                                                                                        \
        VF s0_ = VSPLAT(0), s1_ = s0_;                                                        \
        int64_t c_ = 0;                                                                       \
        for (; c_ + 2 * VL <= C; c_ += 2 * VL) {                                              \
            const int64_t c = c_;                                                             \
            s0_ += (EXPR);                                                                    \
            (void)c;                                                                          \
            {                                                                                 \
                const int64_t c = c_ + VL;                                                    \
                s1_ += (EXPR);                                                                \
            }                                                                                 \
        }                                                                                     \
        for (; c_ + VL <= C; c_ += VL) {                                                      \
            const int64_t c = c_;                                                             \
            s0_ += (EXPR);                                                                    \
        }                                                                                     \
        VHSUM(s0_ + s1_);                                                                     \
    })

/* *mean, *rstd of the row x[0..C): rstd = 1 / sqrt(biased variance + eps); *mh + *ml = the
 * mean to about twice T's precision (mh = mean rounded to real_t), for (x - mh) - ml in T */
__attribute__((always_inline)) static inline void FN(lnrow_stats)(const real_t *x, int64_t C,
                                                                 double eps, double *mean,
                                                                 double *rstd, real_t *mh, real_t *ml)
{
    /* pass 1: the mean, in double */
    tc_vf64 a0 = {0}, a1 = {0};
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        a0 += LLOAD(x + c);
        a1 += LLOAD(x + c + 4);
    }
    for (; c + 4 <= C; c += 4) a0 += LLOAD(x + c);
    double t = 0;
    for (; c < C; c++) t += (double)x[c];
    const double m = (ln_hsum4(a0 + a1) + t) / (double)C;
    const real_t h = (real_t)m, l = (real_t)(m - (double)h);
    /* pass 2: sum (x - mean)^2 in T, the deviation as (x - mh) - ml (x - mh is exact when x
     * is near the mean, where it matters) */
    const int64_t cv = C - C % VL;
    real_t tail = 0;
    for (c = cv; c < C; c++) {
        const real_t d = (x[c] - h) - l;
        tail += d * d;
    }
    double ss = (double)(LN_VSUM(({ const VF d_ = (VLOAD(x + c) - h) - l; d_ * d_; })) + tail);
    if (!(ss <= 1e300)) {
        /* overflow of real_t (float32 values beyond ~1e19), or NaN: again in double */
        tc_vf64 d0 = {0};
        t = 0;
        for (c = 0; c + 4 <= C; c += 4) {
            const tc_vf64 u = LLOAD(x + c) - m;
            d0 += u * u;
        }
        for (; c < C; c++) {
            const double u = (double)x[c] - m;
            t += u * u;
        }
        ss = ln_hsum4(d0) + t;
    }
    *mean = m;
    *rstd = 1.0 / sqrt(ss / (double)C + eps);
    *mh = h;
    *ml = l;
}

/* y[c] = ((x[c] - mh) - ml) * s * w[c] (+ b[c]), in T */
__attribute__((always_inline)) static inline void FN(lnrow_out)(real_t *y, const real_t *x, const real_t *w,
                                                               const real_t *b, int64_t C, real_t mh, real_t ml,
                                                               real_t s)
{
    int64_t c = 0;
    if (b) {
        for (; c + VL <= C; c += VL)
            VSTORE(y + c, ((VLOAD(x + c) - mh) - ml) * s * VLOAD(w + c) + VLOAD(b + c));
        for (; c < C; c++) y[c] = ((x[c] - mh) - ml) * s * w[c] + b[c];
    } else {
        for (; c + VL <= C; c += VL) VSTORE(y + c, ((VLOAD(x + c) - mh) - ml) * s * VLOAD(w + c));
        for (; c < C; c++) y[c] = ((x[c] - mh) - ml) * s * w[c];
    }
}

/* Backward of one row in T, g = dy * w, xhat = (x - m) * s (m, s: the forward's caches):
 *   v = s * (g - mean_c(g) - xhat * mean_c(g * xhat)) (+ ds[c]);  gx[c] += v, gr[c] += v
 * (gx, gr, ds each may be NULL); with pw, pb (both or neither) also pw[c] += dy[c] * xhat,
 * pb[c] += dy[c]: the weight / bias gradient partial sums, while the row is in L1. */
__attribute__((always_inline)) static inline void FN(lnrow_backward_m)(real_t *gx, real_t *gr, real_t *pw,
                                                                      real_t *pb, const real_t *dy,
                                                                      const real_t *ds, const real_t *x,
                                                                      const real_t *w, int64_t C, real_t m,
                                                                      real_t s, const int set_gx)
{
    const int64_t cv = C - C % VL;
    real_t ta = 0, tb = 0;
    for (int64_t c = cv; c < C; c++) {
        const real_t g = dy[c] * w[c];
        ta += g;
        tb += g * ((x[c] - m) * s);
    }
    const real_t a = (LN_VSUM(VLOAD(dy + c) * VLOAD(w + c)) + ta) / (real_t)C;
    const real_t b = (LN_VSUM(({ const VF g_ = VLOAD(dy + c) * VLOAD(w + c); g_ * ((VLOAD(x + c) - m) * s); })) + tb) / (real_t)C;
    int64_t c = 0;
    for (; c < cv; c += VL) {
        const VF g = VLOAD(dy + c), xh = (VLOAD(x + c) - m) * s;
        VF v = s * ((g * VLOAD(w + c) - a) - xh * b);
        if (ds) v += VLOAD(ds + c);
        if (gx) VSTORE(gx + c, (set_gx ? VSPLAT(0) : VLOAD(gx + c)) + v);
        if (gr) VSTORE(gr + c, VLOAD(gr + c) + v);
        if (pw) {
            VSTORE(pw + c, VLOAD(pw + c) + g * xh);
            VSTORE(pb + c, VLOAD(pb + c) + g);
        }
    }
    for (; c < C; c++) {
        const real_t xh = (x[c] - m) * s;
        real_t v = s * ((dy[c] * w[c] - a) - xh * b);
        if (ds) v += ds[c];
        if (gx) gx[c] = (set_gx ? (real_t)0 : gx[c]) + v;
        if (gr) gr[c] += v;
        if (pw) {
            pw[c] += dy[c] * xh;
            pb[c] += dy[c];
        }
    }
}

/* The row backward accumulating into gx (and gr); with set_gx, gx is written instead as
 * 0 + its value (the same bits as accumulating into a zeroed row, signed zeros included). */
__attribute__((always_inline)) static inline void FN(lnrow_backward)(real_t *gx, real_t *gr, real_t *pw, real_t *pb,
                                                                    const real_t *dy, const real_t *ds,
                                                                    const real_t *x, const real_t *w,
                                                                    int64_t C, real_t m, real_t s)
{
    FN(lnrow_backward_m)(gx, gr, pw, pb, dy, ds, x, w, C, m, s, 0);
}

/* dweight[c0 + j] += sum_n dy[n][c0 + j] * xhat[n][c0 + j], dbias[c0 + j] += sum_n dy[n][c0 + j]
 * for j < width <= LN_COLS, rows in order (each column summed by one thread: reproducible
 * for any thread count); either output may be NULL. Partial sums over LN_ROWS rows in T
 * are added into double totals. */
__attribute__((always_inline)) static inline void FN(lnrow_wb_block)(real_t *dweight, real_t *dbias,
                                                                    const real_t *dout, const real_t *inp,
                                                                    const real_t *mean, const real_t *rstd,
                                                                    int64_t N, int64_t C,
                                                                    int64_t c0, int64_t width)
{
    double tw[LN_COLS] = {0}, tb[LN_COLS] = {0};
    VF sw[LN_COLS / VL], sb[LN_COLS / VL];
    real_t pw[LN_COLS], pb[LN_COLS];
    const int64_t nv = width / VL;
    for (int64_t n0 = 0; n0 < N; n0 += LN_ROWS) {
        const int64_t n1 = N - n0 < LN_ROWS ? N : n0 + LN_ROWS;
        for (int64_t k = 0; k < nv; k++) {
            sw[k] = VSPLAT(0);
            sb[k] = VSPLAT(0);
        }
        for (int64_t j = nv * VL; j < width; j++) pw[j] = pb[j] = 0;
        for (int64_t n = n0; n < n1; n++) {
            const real_t *dy = dout + n * C + c0, *x = inp + n * C + c0;
            const real_t m = mean[n], s = rstd[n];
            for (int64_t k = 0; k < nv; k++) {
                const VF g = VLOAD(dy + k * VL);
                sw[k] += g * ((VLOAD(x + k * VL) - m) * s);
                sb[k] += g;
            }
            for (int64_t j = nv * VL; j < width; j++) {
                pw[j] += dy[j] * ((x[j] - m) * s);
                pb[j] += dy[j];
            }
        }
        for (int64_t k = 0; k < nv; k++) {
            VSTORE(pw + k * VL, sw[k]);
            VSTORE(pb + k * VL, sb[k]);
        }
        for (int64_t j = 0; j < width; j++) {
            tw[j] += (double)pw[j];
            tb[j] += (double)pb[j];
        }
    }
    for (int64_t j = 0; j < width; j++) {
        if (dweight) dweight[c0 + j] += (real_t)tw[j];
        if (dbias) dbias[c0 + j] += (real_t)tb[j];
    }
}

/* dweight[c] += sum_k part[k][0][c], dbias[c] += sum_k part[k][1][c] for c in [c0, c1):
 * the per-chunk partial sums (nchunks of them, each 2 rows of C) added in chunk order in
 * double; either output may be NULL */
static inline void FN(lnrow_reduce_chunks)(real_t *dweight, real_t *dbias, const real_t *part, int64_t nchunks,
                                           int64_t C, int64_t c0, int64_t c1)
{
    for (int64_t c = c0; c < c1; c++) {
        double tw = 0, tb = 0;
        for (int64_t k = 0; k < nchunks; k++) {
            tw += (double)part[2 * k * C + c];
            tb += (double)part[(2 * k + 1) * C + c];
        }
        if (dweight) dweight[c] += (real_t)tw;
        if (dbias) dbias[c] += (real_t)tb;
    }
}

#undef LNV
#undef LLOAD
#undef LNARROW
#undef LNLOAD
#undef LNSTORE
#undef LN_VSUM
