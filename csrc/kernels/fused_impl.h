/* fused_impl.h: fused kernels that save passes over memory, written once for real_t.
 *
 * linear + activation:  pre = inp @ weight^T + bias,  out = act(pre), act one of GELU (exact
 *   erf or GPT-2's tanh form), ReLU or squared ReLU (the activations of tc.h's list with a
 *   fused pair; the activation table's fused column, activation_table_impl.h).
 *   The bias and the activation are applied in the GEMM's epilogue, to each finished
 *   column block (16 columns x up to a row block) while it is still in L1 / L2: one pass
 *   writes pre (the backward's cache) or act'(pre) (want_grad) and out, instead of bias
 *   fill + GEMM + an activation pass reading pre back. One epilogue for every activation:
 *   it is parameterised by the activation's vector value / value-and-derivative macros
 *   (LG_* below; the GELUs' from gelu_math.h).
 *   Backward: dpre = dout * act'(pre) and the column sums of chunks of TC_FUSED_ROWS rows
 *   in one pass streaming the rows (dbias += the chunk sums, in chunk order), then
 *   dinp += dpre @ weight, dweight += dpre^T @ inp (two GEMMs).
 * residual + layernorm:  s = x + r (written out: the residual stream), y = LN(s), with the
 *   row arithmetic of layernorm_rows.h (the same as the layernorm kernels).
 *   Backward: ds_total = ds + LN'(dy) (ds: the gradient reaching s directly, or none);
 *   dx += ds_total, dr += ds_total; dweight, dbias as layernorm.
 *
 * GELU as in activation_impl.h (exact erf form, or GPT-2's tanh form), on whole vectors
 * (gelu_math.h). ReLU and squared ReLU as activation_impl.h's kernels, bitwise: relu(x) =
 * x < 0 ? 0 : x (NaN propagates, -0 stays -0), relu' = x > 0 ? 1 : 0; relu2 = relu(x)^2,
 * relu2' = x > 0 ? 2 x : 0 (0 at x == 0 and at NaN, as the unfused backward's select), so
 * dout * relu2' is the unfused (2 x) dout bit for bit.
 * Every output element is written by one thread in a fixed order: results are bitwise
 * reproducible for a fixed thread count.
 */

#ifndef TC_FUSED_ONCE
#define TC_FUSED_ONCE
#define TC_FUSED_BLOCK 64 /* columns per thread block in column sums */
#define TC_FUSED_ROWS 32  /* rows per chunk of linear + GELU's bias-gradient partial sums */
#define TC_LG_GIVEN 2     /* lg_grad_rows mode: gelu'(pre) given, not evaluated */
/* the epilogue's activation (lg_rows kind) */
#define TC_LG_ERF 0   /* exact GELU */
#define TC_LG_TANH 1  /* GPT-2's tanh GELU */
#define TC_LG_RELU 2  /* max(x, 0) */
#define TC_LG_RELU2 3 /* max(x, 0)^2 */
#endif

#include "vec_math.h"
#include "gelu_math.h"
#include "layernorm_rows.h"

/* Each row/block routine below is written once as an always-inline body and compiled
 * twice: for the x86-64 baseline and with AVX2 (8 floats / 4 doubles per instruction,
 * chosen at run time like the GEMM kernel). No FMA: the two versions round identically, so
 * results do not depend on the CPU. */
#if TC_FUSED_X86
#define TC_FUSED_PICK(name) (tc_fused_use_avx2() ? FN(name##_avx2) : FN(name##_generic))
#else
#define TC_FUSED_PICK(name) FN(name##_generic)
#endif

/* out = F(v) at column j of a row, v = pre (+ bias): with a derivative form F also writes
 * act'(v) over pre (want_grad), else v back to pre when a bias was added; the first
 * k < VL lanes only when partial */
#define LG_VEC(F, j, k, partial)                                                            \
    do {                                                                                    \
        VF lv_ = (partial) ? VLOADN(pre + (j), k, 0) : VLOAD(pre + (j));                    \
        if (b) lv_ = lv_ + ((partial) ? VLOADN(b + (j), k, 0) : VLOAD(b + (j)));            \
        VF ld_ = lv_;                                                                       \
        const VF ly_ = F(lv_, &ld_);                                                        \
        /* pre before out: without a pre buffer they are the same memory */                \
        if (partial) {                                                                      \
            if (b || want_grad) VSTOREN(pre + (j), ld_, k);                                 \
            VSTOREN(out + (j), ly_, k);                                                     \
        } else {                                                                            \
            if (b || want_grad) VSTORE(pre + (j), ld_);                                     \
            VSTORE(out + (j), ly_);                                                         \
        }                                                                                   \
    } while (0)
#define LG_ROWS(F)                                                                          \
    for (int64_t i = i0; i < i0 + m; i++) {                                                 \
        real_t *pre = pre_all + i * OC + j0, *out = out_all + i * OC + j0;                       \
        int64_t j = 0;                                                                      \
        for (; j + VL <= n; j += VL) LG_VEC(F, j, VL, 0);                                   \
        if (j < n) LG_VEC(F, j, n - j, 1);                                                  \
    }
/* F(v, &d): the value, with d left as v (pre += bias) or set to the derivative */
#define LG_TANH(v, d) GELU_TANH_V(v)
#define LG_ERF(v, d) GELU_ERF_V(v)
#define LG_TANH_D(v, d) GELU_TANH_AND_GRAD_V(v, d)
#define LG_ERF_D(v, d) GELU_ERF_AND_GRAD_V(v, d)
/* relu(v) = v < 0 ? 0 : v (as activation_impl.h's select: NaN and -0 pass through) */
#define LG_RELU_R(v) TC_VSEL(VI, VF, (v) < (real_t)0, VSPLAT(0), (v))
#define LG_RELU(v, d) LG_RELU_R(v)
#define LG_RELU2(v, d) ({                                                                   \
    const VF r_r = LG_RELU_R(v);                                                            \
    r_r * r_r;                                                                              \
})
/* with the derivatives relu' = v > 0 ? 1 : 0, relu2' = v > 0 ? 2 v : 0 (0 at 0 and NaN) */
#define LG_RELU_D(v, d) ({                                                                  \
    *(d) = TC_VSEL(VI, VF, (v) > (real_t)0, VSPLAT(1), VSPLAT(0));                          \
    LG_RELU_R(v);                                                                           \
})
#define LG_RELU2_D(v, d) ({                                                                 \
    *(d) = TC_VSEL(VI, VF, (v) > (real_t)0, (real_t)2 * (v), VSPLAT(0));                    \
    LG_RELU2(v, d);                                                                         \
})

/* one finished GEMM block of linear + activation (kind: TC_LG_*), rows [i0, i0+m), columns
 * [j0, j0+n): pre += bias, out = act(pre); with want_grad pre is then replaced by act'(pre)
 * (what the backward needs, so that it evaluates no activation) */
__attribute__((always_inline)) static inline void
FN(lg_rows_body)(real_t *out_all, real_t *pre_all, const real_t *bias, int64_t OC, int64_t i0, int64_t j0,
                 int64_t m, int64_t n, int kind, int want_grad)
{
    const real_t *b = bias ? bias + j0 : NULL;
#define LG_KIND(K, F, FD)                                                                   \
    case K:                                                                                 \
        if (want_grad) {                                                                    \
            LG_ROWS(FD)                                                                     \
        } else {                                                                            \
            LG_ROWS(F)                                                                      \
        }                                                                                   \
        break;
    switch (kind) {
        LG_KIND(TC_LG_TANH, LG_TANH, LG_TANH_D)
        LG_KIND(TC_LG_RELU, LG_RELU, LG_RELU_D)
        LG_KIND(TC_LG_RELU2, LG_RELU2, LG_RELU2_D)
    default:
        LG_KIND(TC_LG_ERF, LG_ERF, LG_ERF_D)
    }
#undef LG_KIND
}
#undef LG_VEC
#undef LG_ROWS
#undef LG_TANH
#undef LG_ERF
#undef LG_TANH_D
#undef LG_ERF_D
#undef LG_RELU_R
#undef LG_RELU
#undef LG_RELU2
#undef LG_RELU_D
#undef LG_RELU2_D

/* d = g * F(p) over the width columns of a row, added to the column sums s */
#define LG_GRAD_ROW(F)                                                                      \
    do {                                                                                    \
        int64_t o = 0;                                                                      \
        for (; o + VL <= width; o += VL) {                                                  \
            const VF v = VLOAD(g + o) * F(VLOAD(p + o));                                    \
            VSTORE(d + o, v);                                                               \
            VSTORE(s + o, VLOAD(s + o) + v);                                                \
        }                                                                                   \
        if (o < width) {                                                                    \
            const int64_t k = width - o;                                                    \
            const VF v = VLOADN(g + o, k, 0) * F(VLOADN(p + o, k, 0));                      \
            VSTOREN(d + o, v, k);                                                           \
            VSTOREN(s + o, VLOADN(s + o, k, 0) + v, k);                                     \
        }                                                                                   \
    } while (0)

#define LG_IDENTITY(x) (x)
/* rows [n0, n1) of dpre = dout * gelu'(pre) (all OC columns), and their column sums (rows
 * in order) written to part (OC,): the arrays are streamed row by row. mode: 0 / 1 the
 * erf / tanh form of gelu' evaluated at pre; TC_LG_GIVEN: pre already holds gelu'. */
__attribute__((always_inline)) static inline void
FN(lg_grad_rows_body)(real_t *dpre, real_t *part, const real_t *dout, const real_t *pre, int64_t OC, int64_t n0,
                      int64_t n1, int mode)
{
    real_t *s = part;
    const int64_t width = OC;
    for (int64_t o = 0; o < OC; o++) s[o] = 0;
    for (int64_t n = n0; n < n1; n++) {
        const real_t *p = pre + n * OC, *g = dout + n * OC;
        real_t *d = dpre + n * OC;
        if (mode == TC_LG_GIVEN)
            LG_GRAD_ROW(LG_IDENTITY);
        else if (mode == 1)
            LG_GRAD_ROW(GELU_TANH_GRAD_V);
        else
            LG_GRAD_ROW(GELU_ERF_GRAD_V);
    }
}
#undef LG_GRAD_ROW
#undef LG_IDENTITY

/* one row of residual + layernorm forward: s = x + r, then the row arithmetic of
 * layernorm_rows.h (shared with layernorm_impl.h) on s */
__attribute__((always_inline)) static inline void
FN(lnr_fwd_row_body)(real_t *y, real_t *s, real_t *mean, real_t *rstd, const real_t *xr, const real_t *rr, const real_t *weight,
                     const real_t *bias, int64_t C, double eps)
{
#pragma omp simd
    for (int64_t c = 0; c < C; c++) s[c] = xr[c] + rr[c];
    double m, rs;
    real_t mh, ml;
    FN(lnrow_stats)(s, C, eps, &m, &rs, &mh, &ml);
    if (mean) *mean = (real_t)m;
    if (rstd) *rstd = (real_t)rs;
    FN(lnrow_out)(y, s, weight, bias, C, mh, ml, (real_t)rs);
}

/* one row of residual + layernorm backward: v = layernorm'(dy) + ds; gx += v, gr += v;
 * with pw, pb also the weight / bias partial sums (layernorm_rows.h) */
__attribute__((always_inline)) static inline void
FN(lnr_bwd_row_body)(real_t *gx, real_t *gr, real_t *pw, real_t *pb, const real_t *dy, const real_t *ds, const real_t *s,
                     const real_t *weight, real_t m, real_t rs, int64_t C)
{
    FN(lnrow_backward)(gx, gr, pw, pb, dy, ds, s, weight, C, m, rs);
}

/* dweight, dbias of columns [c0, c0+width): sums over all rows, in order */
__attribute__((always_inline)) static inline void
FN(lnr_wb_block_body)(real_t *dweight, real_t *dbias, const real_t *dout, const real_t *sum, const real_t *mean,
                      const real_t *rstd, int64_t N, int64_t C, int64_t c0, int64_t width)
{
    FN(lnrow_wb_block)(dweight, dbias, dout, sum, mean, rstd, N, C, c0, width);
}

#define TC_FUSED_VARIANT(attr, sfx)                                                         \
    attr static void FN(lg_rows##sfx)(real_t *out, real_t *pre, const real_t *bias, int64_t OC, int64_t i0, \
                                      int64_t j0, int64_t m, int64_t n, int kind,            \
                                      int want_grad)                                         \
    {                                                                                        \
        FN(lg_rows_body)(out, pre, bias, OC, i0, j0, m, n, kind, want_grad);                 \
    }                                                                                        \
    attr static void FN(lg_grad_rows##sfx)(real_t *dpre, real_t *part, const real_t *dout, const real_t *pre,    \
                                           int64_t OC, int64_t n0, int64_t n1, int mode)     \
    {                                                                                        \
        FN(lg_grad_rows_body)(dpre, part, dout, pre, OC, n0, n1, mode);                      \
    }                                                                                        \
    attr static void FN(lnr_fwd_row##sfx)(real_t *y, real_t *s, real_t *mean, real_t *rstd, const real_t *x,          \
                                          const real_t *r, const real_t *w, const real_t *b, int64_t C,     \
                                          double eps)                                        \
    {                                                                                        \
        FN(lnr_fwd_row_body)(y, s, mean, rstd, x, r, w, b, C, eps);                          \
    }                                                                                        \
    attr static void FN(lnr_bwd_row##sfx)(real_t *gx, real_t *gr, real_t *pw, real_t *pb, const real_t *dy,           \
                                          const real_t *ds, const real_t *s, const real_t *w, real_t m, real_t rs,    \
                                          int64_t C)                                         \
    {                                                                                        \
        FN(lnr_bwd_row_body)(gx, gr, pw, pb, dy, ds, s, w, m, rs, C);                        \
    }                                                                                        \
    attr static void FN(lnr_wb_block##sfx)(real_t *dw, real_t *db, const real_t *dout, const real_t *sum,        \
                                           const real_t *mean, const real_t *rstd, int64_t N,          \
                                           int64_t C, int64_t c0, int64_t width)             \
    {                                                                                        \
        FN(lnr_wb_block_body)(dw, db, dout, sum, mean, rstd, N, C, c0, width);               \
    }

TC_FUSED_VARIANT(, _generic)
#if TC_FUSED_X86
TC_FUSED_VARIANT(__attribute__((target("avx2"))), _avx2)
#endif

typedef struct {
    real_t *out;        /* (N,OC) act(pre) */
    real_t *pre;        /* (N,OC) where the GEMM wrote inp @ weight^T; bias is added in place */
    const real_t *bias; /* (OC,) or NULL */
    int64_t OC;
    int kind;      /* TC_LG_* */
    int want_grad; /* replace pre by act'(pre) */
    void (*rows)(real_t *, real_t *, const real_t *, int64_t, int64_t, int64_t, int64_t, int64_t, int, int);
} FN(fused_lg_ctx);

static void FN(fused_lg_epilogue)(void *vctx, int64_t i0, int64_t j0, int64_t m, int64_t n)
{
    const FN(fused_lg_ctx) *c = vctx;
    c->rows(c->out, c->pre, c->bias, c->OC, i0, j0, m, n, c->kind, c->want_grad);
}

/* the product with the epilogue of activation kind (TC_LG_*): cache (N,OC) receives pre, or
 * act'(pre) with want_grad */
static int FN(linear_act_run)(real_t *out, real_t *cache, const real_t *inp, const real_t *weight, const real_t *bias,
                              int64_t N, int64_t C, int64_t OC, int kind, int want_grad)
{
    if (N < 0 || C < 0 || OC < 0) return TC_EINVAL;
    FN(fused_lg_ctx) ctx = {out, cache, bias, OC, kind, want_grad, TC_FUSED_PICK(lg_rows)};
    return FN(tc_gemm_ep)(cache, inp, weight, N, OC, C, OC, C, C, 0, 1, (real_t)1, (real_t)0,
                          FN(fused_lg_epilogue), &ctx);
}

// out (N,OC), pre (N,OC) or NULL, inp (N,C), weight (OC,C), bias (OC,) or NULL
int FN(tc_linear_gelu_forward)(real_t *out, real_t *pre, const real_t *inp, const real_t *weight, const real_t *bias,
                               int64_t N, int64_t C, int64_t OC, int approximate_tanh)
{
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(linear_act_run)(out, pre ? pre : out, inp, weight, bias, N, C, OC,
                              approximate_tanh ? TC_LG_TANH : TC_LG_ERF, 0);
}

// out (N,OC), dact (N,OC) (not out), inp (N,C), weight (OC,C), bias (OC,) or NULL
int FN(tc_linear_gelu_forward_dact)(real_t *out, real_t *dact, const real_t *inp, const real_t *weight,
                                    const real_t *bias, int64_t N, int64_t C, int64_t OC,
                                    int approximate_tanh)
{
    if (!out || !dact || out == dact) return TC_EINVAL;
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(linear_act_run)(out, dact, inp, weight, bias, N, C, OC,
                              approximate_tanh ? TC_LG_TANH : TC_LG_ERF, 1);
}

// out (N,OC), dact (N,OC) (not out) or NULL, inp (N,C), weight (OC,C), bias (OC,) or NULL;
// squared 0: relu, 1: relu2
int FN(tc_linear_relu_forward)(real_t *out, real_t *dact, const real_t *inp, const real_t *weight,
                               const real_t *bias, int64_t N, int64_t C, int64_t OC, int squared)
{
    if (!out || out == dact || (squared != 0 && squared != 1)) return TC_EINVAL;
    return FN(linear_act_run)(out, dact ? dact : out, inp, weight, bias, N, C, OC,
                              squared ? TC_LG_RELU2 : TC_LG_RELU, dact != NULL);
}

/* dpre = dout * gelu'(pre) (mode 0 / 1: evaluated at cache = pre; TC_LG_GIVEN: cache holds
 * gelu'(pre)) into the calling thread's scratch, dbias += its column sums, then the two
 * GEMMs of the linear's backward; the outputs whose bit of write is set (TC_WRITE(0/1/2) =
 * dinp/dweight/dbias) are written (GEMM beta = 0, dbias = the sum) instead of added to */
static int FN(linear_gelu_grads)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout, const real_t *cache,
                                 const real_t *inp, const real_t *weight, real_t *dpre, real_t *part, int64_t N,
                                 int64_t C, int64_t OC, int mode, int write)
{
    const int64_t nchunks = (N + TC_FUSED_ROWS - 1) / TC_FUSED_ROWS;
    /* dbias: per-chunk partial sums of TC_FUSED_ROWS rows, added in chunk order (independent
     * of the thread count); each array streamed in order */
    void (*rows)(real_t *, real_t *, const real_t *, const real_t *, int64_t, int64_t, int64_t, int) =
        TC_FUSED_PICK(lg_grad_rows);
#pragma omp parallel if (TC_PAR(N * OC * 8, TC_PARALLEL_MIN_WORK))
    {
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nchunks; k++) {
            const int64_t n0 = k * TC_FUSED_ROWS;
            rows(dpre, part + k * OC, dout, cache, OC, n0,
                 N - n0 < TC_FUSED_ROWS ? N : n0 + TC_FUSED_ROWS, mode);
        }
        if (dbias) {
#pragma omp for schedule(static)
            for (int64_t o0 = 0; o0 < OC; o0 += TC_FUSED_BLOCK) {
                const int64_t width = OC - o0 < TC_FUSED_BLOCK ? OC - o0 : TC_FUSED_BLOCK;
                real_t acc[TC_FUSED_BLOCK] = {0};
                for (int64_t k = 0; k < nchunks; k++)
                    for (int64_t o = 0; o < width; o++) acc[o] += part[k * OC + o0 + o];
                if (TC_WRITES(write, 2))
                    for (int64_t o = 0; o < width; o++) dbias[o0 + o] = acc[o];
                else
                    for (int64_t o = 0; o < width; o++) dbias[o0 + o] += acc[o];
            }
        }
    }
    int st = TC_OK;
    if (dinp)
        st = FN(tc_gemm)(dinp, dpre, weight, N, C, OC, C, OC, C, 0, 0, (real_t)1,
                         TC_WRITES(write, 0) ? (real_t)0 : (real_t)1);
    if (st == TC_OK && dweight)
        st = FN(tc_gemm)(dweight, dpre, inp, OC, C, N, C, OC, C, 1, 0, (real_t)1,
                         TC_WRITES(write, 1) ? (real_t)0 : (real_t)1);
    return st;
}

/* no products (N == 0 or OC == 0): the written outputs are zero, the others unchanged */
static void FN(linear_gelu_zero_set)(real_t *dinp, real_t *dweight, real_t *dbias, int64_t N, int64_t C,
                                     int64_t OC, int write)
{
    if (dinp && TC_WRITES(write, 0)) memset(dinp, 0, (size_t)N * (size_t)C * sizeof(real_t));
    if (dweight && TC_WRITES(write, 1)) memset(dweight, 0, (size_t)OC * (size_t)C * sizeof(real_t));
    if (dbias && TC_WRITES(write, 2)) memset(dbias, 0, (size_t)OC * sizeof(real_t));
}

/* the calling thread's cached scratch (no allocation once warmed up): dpre (N,OC), and the
 * chunks' partial sums after `extra` elements of a second buffer (returned in *scratch) */
static int FN(linear_gelu_scratch)(int64_t N, int64_t OC, size_t extra, real_t **dpre, real_t **scratch,
                                   real_t **part)
{
    const size_t count = (size_t)N * (size_t)OC;
    if (count > SIZE_MAX / sizeof(real_t)) return TC_ENOMEM;
    const int64_t nchunks = (N + TC_FUSED_ROWS - 1) / TC_FUSED_ROWS;
    const size_t npart = (size_t)nchunks * (size_t)OC;
    if (npart > SIZE_MAX / sizeof(real_t) - extra) return TC_ENOMEM;
    *dpre = tc_workspace(TC_WS_FUSED, count * sizeof(real_t));
    if (!*dpre) return TC_ENOMEM;
    *scratch = tc_workspace(TC_WS_FUSED2, (extra + npart) * sizeof(real_t));
    if (!*scratch) return TC_ENOMEM;
    *part = *scratch + extra;
    return TC_OK;
}

// dinp (N,C), dweight (OC,C), dbias (OC,) each optional; dout (N,OC), pre (N,OC) or NULL
// (recomputed from inp, weight, bias), inp (N,C), weight (OC,C), bias (OC,) or NULL; write:
// TC_WRITE(0/1/2) = dinp/dweight/dbias written (GEMM beta = 0, dbias = the sum), else
// accumulated; written ones have the bits of accumulating into zeros (the sums start at +0)
int FN(tc_linear_gelu_backward)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                const real_t *pre, const real_t *inp, const real_t *weight, const real_t *bias,
                                int64_t N, int64_t C, int64_t OC, int approximate_tanh, int write)
{
    if (N < 0 || C < 0 || OC < 0) return TC_EINVAL;
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    if (N == 0 || OC == 0) {
        FN(linear_gelu_zero_set)(dinp, dweight, dbias, N, C, OC, write);
        return TC_OK;
    }
    real_t *dpre, *scratch, *part;
    int st = FN(linear_gelu_scratch)(N, OC, pre ? 0 : (size_t)N * (size_t)OC, &dpre,
                                     &scratch, &part);
    if (st != TC_OK) return st;
    if (!pre) {
        /* out = dpre as scratch: its values are overwritten below */
        st = FN(tc_linear_gelu_forward)(dpre, scratch, inp, weight, bias, N, C, OC,
                                        approximate_tanh);
        pre = scratch;
    }
    if (st != TC_OK) return st;
    return FN(linear_gelu_grads)(dinp, dweight, dbias, dout, pre, inp, weight, dpre, part, N,
                                 C, OC, approximate_tanh, write);
}

// dinp (N,C), dweight (OC,C), dbias (OC,) each optional; dout (N,OC), dact (N,OC) =
// act'(pre) from any fused forward (tc_linear_gelu_forward_dact, tc_linear_relu_forward),
// inp (N,C), weight (OC,C); write as tc_linear_gelu_backward
int FN(tc_linear_backward_dact)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                const real_t *dact, const real_t *inp, const real_t *weight,
                                int64_t N, int64_t C, int64_t OC, int write)
{
    if (N < 0 || C < 0 || OC < 0 || !dact) return TC_EINVAL;
    if (N == 0 || OC == 0) {
        FN(linear_gelu_zero_set)(dinp, dweight, dbias, N, C, OC, write);
        return TC_OK;
    }
    real_t *dpre, *scratch, *part;
    const int st = FN(linear_gelu_scratch)(N, OC, 0, &dpre, &scratch, &part);
    if (st != TC_OK) return st;
    return FN(linear_gelu_grads)(dinp, dweight, dbias, dout, dact, inp, weight, dpre, part, N,
                                 C, OC, TC_LG_GIVEN, write);
}

// out (N,C), sum (N,C), mean (N,) or NULL, rstd (N,) or NULL, x (N,C), r (N,C), weight (C,),
// bias (C,) or NULL; sum may be x or r (updated in place)
int FN(tc_layernorm_residual_forward)(real_t *out, real_t *sum, real_t *mean, real_t *rstd, const real_t *x,
                                      const real_t *r, const real_t *weight, const real_t *bias, int64_t N,
                                      int64_t C, double eps)
{
    if (N < 0 || C < 1 || !(eps >= 0) || !out || !sum || !weight) return TC_EINVAL;
    void (*row)(real_t *, real_t *, real_t *, real_t *, const real_t *, const real_t *, const real_t *, const real_t *, int64_t,
                double) = TC_FUSED_PICK(lnr_fwd_row);
#pragma omp parallel for schedule(static) if (N > 1 && TC_PAR(N * C, LN_PAR_MIN))
    for (int64_t n = 0; n < N; n++)
        row(out + n * C, sum + n * C, mean ? mean + n : NULL, rstd ? rstd + n : NULL,
            x + n * C, r + n * C, weight, bias, C, eps);
    return TC_OK;
}

// dx (N,C), dr (N,C), dweight (C,), dbias (C,) each optional (dx may equal dr: it then
// receives the gradient twice); dout (N,C) the gradient of y, dsum (N,C) or NULL the
// gradient reaching s directly; sum (N,C), mean (N,), rstd (N,) from the forward; write:
// TC_WRITE(0/1/2/3) = dx/dr/dweight/dbias zeroed first, then accumulated into (the bits of
// accumulating into zeros; dx == dr written still receives 2g)
int FN(tc_layernorm_residual_backward)(real_t *dx, real_t *dr, real_t *dweight, real_t *dbias, const real_t *dout,
                                       const real_t *dsum, const real_t *sum, const real_t *weight,
                                       const real_t *mean, const real_t *rstd, int64_t N, int64_t C,
                                       int write)
{
    if (N < 0 || C < 1 || !dout || !sum || !weight || !mean || !rstd) return TC_EINVAL;
    const size_t nc = (size_t)N * (size_t)C * sizeof(real_t), c1 = (size_t)C * sizeof(real_t);
    if (dx && TC_WRITES(write, 0)) memset(dx, 0, nc);
    if (dr && TC_WRITES(write, 1)) memset(dr, 0, nc);
    if (dweight && TC_WRITES(write, 2)) memset(dweight, 0, c1);
    if (dbias && TC_WRITES(write, 3)) memset(dbias, 0, c1);
    if (N == 0) return TC_OK;
    void (*block)(real_t *, real_t *, const real_t *, const real_t *, const real_t *, const real_t *, int64_t, int64_t,
                  int64_t, int64_t) = TC_FUSED_PICK(lnr_wb_block);
    void (*row)(real_t *, real_t *, real_t *, real_t *, const real_t *, const real_t *, const real_t *, const real_t *, real_t, real_t,
                int64_t) = TC_FUSED_PICK(lnr_bwd_row);
    const int par = TC_PAR(N * C, LN_PAR_MIN);
    (void)par; /* read only by the OpenMP if clauses: unused in a serial build */
    if ((dx || dr) && (dweight || dbias)) {
        /* one pass, as tc_layernorm_backward: per-chunk partial sums of LN_ROWS rows, added
         * in chunk order (independent of the thread count) */
        const int64_t nchunks = (N + LN_ROWS - 1) / LN_ROWS;
        real_t *part = malloc((size_t)nchunks * 2 * (size_t)C * sizeof(real_t));
        if (!part) return TC_ENOMEM;
#pragma omp parallel if (par)
        {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < nchunks; k++) {
                real_t *pw = part + 2 * k * C, *pb = pw + C;
                for (int64_t c = 0; c < 2 * C; c++) pw[c] = 0;
                const int64_t n1 = N - k * LN_ROWS < LN_ROWS ? N : (k + 1) * LN_ROWS;
                for (int64_t n = k * LN_ROWS; n < n1; n++)
                    row(dx ? dx + n * C : NULL, dr ? dr + n * C : NULL, pw, pb, dout + n * C,
                        dsum ? dsum + n * C : NULL, sum + n * C, weight, mean[n], rstd[n], C);
            }
#pragma omp for schedule(static)
            for (int64_t c0 = 0; c0 < C; c0 += LN_COLS)
                FN(lnrow_reduce_chunks)(dweight, dbias, part, nchunks, C, c0,
                                        C - c0 < LN_COLS ? C : c0 + LN_COLS);
        }
        free(part);
        return TC_OK;
    }
    const int64_t nblocks = (C + TC_FUSED_BLOCK - 1) / TC_FUSED_BLOCK;
    /* one parallel region: the column blocks of dweight / dbias, then (no barrier: other
     * outputs) the rows of dx / dr */
#pragma omp parallel if (par)
    {
        if (dweight || dbias) {
#pragma omp for schedule(static) nowait
            for (int64_t k = 0; k < nblocks; k++) {
                const int64_t c0 = k * TC_FUSED_BLOCK;
                const int64_t width = C - c0 < TC_FUSED_BLOCK ? C - c0 : TC_FUSED_BLOCK;
                block(dweight, dbias, dout, sum, mean, rstd, N, C, c0, width);
            }
        }
        if (dx || dr) {
#pragma omp for schedule(static) nowait
            for (int64_t n = 0; n < N; n++)
                row(dx ? dx + n * C : NULL, dr ? dr + n * C : NULL, NULL, NULL, dout + n * C,
                    dsum ? dsum + n * C : NULL, sum + n * C, weight, mean[n], rstd[n], C);
        }
    }
    return TC_OK;
}

#undef TC_FUSED_PICK
#undef TC_FUSED_VARIANT

