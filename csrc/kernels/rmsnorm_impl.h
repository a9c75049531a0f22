/* rmsnorm_impl.h: RMS normalisation (Zhang & Sennrich 2019; torch.nn.functional.rms_norm),
 * written once for real_t, the sibling of layernorm_impl.h without the centering:
 *
 *   y = x * rstd * weight (+ bias),  rstd = 1 / sqrt(sum(x^2) / C + eps).
 *
 * One vector of C elements at a time. The layout is general (rmsnorm_layout): N rows of G
 * vectors, vector (n, g) at n * ld + g * C, so the same code normalises the rows of an
 * (N, C) array (G = 1, ld = C) and, as QK-norm, every head's q or k inside the fused
 * token-major (N, 3C) c_attn output (G = NH heads of HS, ld = 3C). The sum of squares and
 * the backward's row dot product are summed in double (4 lanes, float32 widened on load);
 * the output and dx in real_t vectors (vec_math.h). Compiled for the x86-64 baseline and
 * with AVX2 (no FMA: identical rounding), picked at run time (tc_cpu_pick(TC_CPU_LAYERNORM),
 * the norm family's switch). The weight / bias gradients are summed per chunk of RMS_ROWS
 * vectors in real_t, then the chunks added in order in double: every result is independent
 * of the thread count.
 */

#include "vec_math.h"

#ifndef TC_RMS_ONCE
#define TC_RMS_ONCE
#ifdef _OPENMP
#include <omp.h>
#endif
#define RMS_ROWS 32           /* vectors per chunk of the weight / bias partial sums */
#define RMS_PAR_MIN (1 << 16) /* elements from which a call runs in parallel */
typedef struct {
    int64_t N, G, C;      /* N rows of G vectors of C elements */
    int64_t ld_out, ld_inp; /* row strides (elements) of out / dinp and inp / dout */
} rmsnorm_layout;
static inline double rms_hsum4(tc_vf64 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
#endif

/* 4 elements of real_t at p as 4 doubles */
#define RLOAD(p) ({ const real_t *rp_ = (p); (tc_vf64){(double)rp_[0], (double)rp_[1], (double)rp_[2], (double)rp_[3]}; })

/* sum_c a[c] * b[c] over C elements, in double */
__attribute__((always_inline)) static inline double FN(rms_dot)(const real_t *a, const real_t *b, int64_t C)
{
    tc_vf64 s0 = {0}, s1 = {0};
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        s0 += RLOAD(a + c) * RLOAD(b + c);
        s1 += RLOAD(a + c + 4) * RLOAD(b + c + 4);
    }
    for (; c + 4 <= C; c += 4) s0 += RLOAD(a + c) * RLOAD(b + c);
    double t = 0;
    for (; c < C; c++) t += (double)a[c] * (double)b[c];
    return rms_hsum4(s0 + s1) + t;
}

/* y = x * s * w (+ b) for one vector of C elements; *rstd = s (rstd may be NULL) */
__attribute__((always_inline)) static inline void FN(rms_fwd_vec)(real_t *y, real_t *rstd, const real_t *x,
                                                                  const real_t *w, const real_t *b,
                                                                  int64_t C, double eps)
{
    const real_t s = (real_t)(1.0 / sqrt(FN(rms_dot)(x, x, C) / (double)C + eps));
    if (rstd) *rstd = s;
    if (!y) return;
    int64_t c = 0;
    if (b) {
        for (; c + VL <= C; c += VL) VSTORE(y + c, VLOAD(x + c) * s * VLOAD(w + c) + VLOAD(b + c));
        for (; c < C; c++) y[c] = x[c] * s * w[c] + b[c];
    } else {
        for (; c + VL <= C; c += VL) VSTORE(y + c, VLOAD(x + c) * s * VLOAD(w + c));
        for (; c < C; c++) y[c] = x[c] * s * w[c];
    }
}

/* The backward of one vector: g = dy * w, xhat = x * s,
 *   dx = s * g - x * k with k = s^3 * sum(g * x) / C   (= s (g - xhat mean(g xhat))),
 * written (set) or added into dx (dx may be NULL, and may be dy itself); with pw also
 * pw += dy * xhat and (pb) pb += dy: the weight / bias partial sums. */
__attribute__((always_inline)) static inline void FN(rms_bwd_vec)(real_t *dx, real_t *pw, real_t *pb,
                                                                  const real_t *dy, const real_t *x,
                                                                  const real_t *w, int64_t C, real_t s,
                                                                  int set)
{
    real_t k = 0;
    if (dx) {
        tc_vf64 a0 = {0};
        int64_t c = 0;
        for (; c + 4 <= C; c += 4) a0 += RLOAD(dy + c) * RLOAD(w + c) * RLOAD(x + c);
        double t = 0;
        for (; c < C; c++) t += (double)dy[c] * (double)w[c] * (double)x[c];
        const double sd = (double)s;
        k = (real_t)(sd * sd * sd * (rms_hsum4(a0) + t) / (double)C);
    }
    int64_t c = 0;
    for (; c + VL <= C; c += VL) {
        const VF g = VLOAD(dy + c), xv = VLOAD(x + c);
        if (pw) VSTORE(pw + c, VLOAD(pw + c) + g * (xv * s));
        if (pb) VSTORE(pb + c, VLOAD(pb + c) + g);
        if (dx) {
            const VF v = s * (g * VLOAD(w + c)) - xv * k;
            VSTORE(dx + c, (set ? VSPLAT(0) : VLOAD(dx + c)) + v);
        }
    }
    for (; c < C; c++) {
        const real_t g = dy[c], xv = x[c];
        if (pw) pw[c] += g * (xv * s);
        if (pb) pb[c] += g;
        if (dx) dx[c] = (set ? (real_t)0 : dx[c]) + (s * (g * w[c]) - xv * k);
    }
}

/* vectors [i0, i1) (i = n * G + g) of the forward */
__attribute__((always_inline)) static inline void FN(rms_fwd_body)(real_t *out, real_t *rstd, const real_t *inp,
                                                                   const real_t *w, const real_t *b,
                                                                   const rmsnorm_layout *L, int64_t i0,
                                                                   int64_t i1, double eps)
{
    for (int64_t i = i0; i < i1; i++) {
        const int64_t n = i / L->G, g = i % L->G;
        FN(rms_fwd_vec)(out ? out + n * L->ld_out + g * L->C : NULL, rstd ? rstd + i : NULL,
                        inp + n * L->ld_inp + g * L->C, w, b, L->C, eps);
    }
}

/* vectors [i0, i1) of the backward; with part, the weight (and bias: pb) partial sums of
 * chunk i / RMS_ROWS into part + (i / RMS_ROWS) * stride (zeroed at a chunk's first vector) */
__attribute__((always_inline)) static inline void FN(rms_bwd_body)(real_t *dinp, real_t *part, int64_t stride, int with_b,
                                                                   const real_t *dout, const real_t *inp,
                                                                   const real_t *w, const real_t *rstd,
                                                                   const rmsnorm_layout *L, int64_t i0,
                                                                   int64_t i1, int set)
{
    const int64_t C = L->C;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t n = i / L->G, g = i % L->G;
        real_t *pw = NULL, *pb = NULL;
        if (part) {
            pw = part + (i / RMS_ROWS) * stride;
            pb = with_b ? pw + C : NULL;
            if (i % RMS_ROWS == 0)
                for (int64_t c = 0; c < stride; c++) pw[c] = 0;
        }
        FN(rms_bwd_vec)(dinp ? dinp + n * L->ld_out + g * C : NULL, pw, pb,
                        dout + n * L->ld_inp + g * C, inp + n * L->ld_inp + g * C, w, C, rstd[i],
                        set);
    }
}

#define RMS_VARIANT(attr, sfx)                                                                  \
    attr static void FN(rms_fwd##sfx)(real_t *out, real_t *rstd, const real_t *inp, const real_t *w,              \
                                      const real_t *b, const rmsnorm_layout *L, int64_t i0, int64_t i1, \
                                      double eps)                                                \
    {                                                                                            \
        FN(rms_fwd_body)(out, rstd, inp, w, b, L, i0, i1, eps);                                  \
    }                                                                                            \
    attr static void FN(rms_bwd##sfx)(real_t *dinp, real_t *part, int64_t stride, int with_b,                     \
                                      const real_t *dout, const real_t *inp, const real_t *w,                \
                                      const real_t *rstd, const rmsnorm_layout *L, int64_t i0,          \
                                      int64_t i1, int set)                                       \
    {                                                                                            \
        if (set)                                                                                 \
            FN(rms_bwd_body)(dinp, part, stride, with_b, dout, inp, w, rstd, L, i0, i1, 1);      \
        else                                                                                     \
            FN(rms_bwd_body)(dinp, part, stride, with_b, dout, inp, w, rstd, L, i0, i1, 0);      \
    }
RMS_VARIANT(, _generic)
#if TC_VEC_X86
RMS_VARIANT(TC_VEC_AVX2_NOFMA, _avx2)
#define RMS_PICK(name) (tc_cpu_pick(TC_CPU_LAYERNORM) ? FN(name##_avx2) : FN(name##_generic))
#else
#define RMS_PICK(name) FN(name##_generic)
#endif
#undef RMS_VARIANT

/* whether a layout is usable: sizes >= 0 (C >= 1), strides that keep a row's G vectors */
static inline int FN(rms_layout_ok)(const rmsnorm_layout *L)
{
    return L->N >= 0 && L->G >= 1 && L->C >= 1 && L->ld_out >= L->G * L->C &&
           L->ld_inp >= L->G * L->C;
}

// The forward over layout L: out (N rows at ld_out) or NULL, rstd (N*G,) or NULL, inp (N
// rows of G vectors of C at ld_inp), weight (C,), bias (C,) or NULL.
static int FN(rmsnorm_forward_layout)(real_t *out, real_t *rstd, const real_t *inp, const real_t *weight,
                                      const real_t *bias, const rmsnorm_layout *L, double eps)
{
    if (!FN(rms_layout_ok)(L) || !(eps >= 0) || !inp || (out && !weight)) return TC_EINVAL;
    const int64_t V = L->N * L->G;
    if (V == 0) return TC_OK;
    void (*fwd)(real_t *, real_t *, const real_t *, const real_t *, const real_t *, const rmsnorm_layout *,
                int64_t, int64_t, double) = RMS_PICK(rms_fwd);
    const int par = V > 1 && TC_PAR(V * L->C, RMS_PAR_MIN);
    (void)par;
#pragma omp parallel if (par)
    {
#ifdef _OPENMP
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
#else
        const int64_t nt = 1, t = 0;
#endif
        const int64_t i0 = V * t / nt, i1 = V * (t + 1) / nt;
        if (i0 < i1) fwd(out, rstd, inp, weight, bias, L, i0, i1, eps);
    }
    return TC_OK;
}

// The backward over layout L: dinp (at ld_out; may be dout itself) or NULL, dweight (C,) or
// NULL, dbias (C,) or NULL, each written (write bits 0/1/2) or accumulated; dout, inp (at
// ld_inp), weight (C,), rstd (N*G,) from the forward.
static int FN(rmsnorm_backward_layout)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                                       const real_t *inp, const real_t *weight, const real_t *rstd,
                                       const rmsnorm_layout *L, int write)
{
    if (!FN(rms_layout_ok)(L) || !rstd || !dout || !inp || (dinp && !weight)) return TC_EINVAL;
    const int64_t C = L->C, V = L->N * L->G;
    if (dweight && TC_WRITES(write, 1)) memset(dweight, 0, (size_t)C * sizeof(real_t));
    if (dbias && TC_WRITES(write, 2)) memset(dbias, 0, (size_t)C * sizeof(real_t));
    if (V == 0) return TC_OK;
    void (*bwd)(real_t *, real_t *, int64_t, int, const real_t *, const real_t *, const real_t *, const real_t *,
                const rmsnorm_layout *, int64_t, int64_t, int) = RMS_PICK(rms_bwd);
    const int set = (int)TC_WRITES(write, 0);
    const int with_p = dweight || dbias, with_b = dbias != NULL;
    const int64_t stride = with_b ? 2 * C : C;
    const int64_t nchunks = (V + RMS_ROWS - 1) / RMS_ROWS;
    real_t *part = NULL;
    if (with_p && !(part = malloc((size_t)(nchunks * stride) * sizeof(real_t)))) return TC_ENOMEM;
    const int par = TC_PAR(V * C, RMS_PAR_MIN);
    (void)par;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nchunks; k++) {
            const int64_t i0 = k * RMS_ROWS, i1 = V - i0 < RMS_ROWS ? V : i0 + RMS_ROWS;
            bwd(dinp, part, stride, with_b, dout, inp, weight, rstd, L, i0, i1, set);
        }
        if (with_p) {
            /* the chunks' partial sums added in chunk order, in double, per column */
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                double tw = 0, tb = 0;
                for (int64_t k = 0; k < nchunks; k++) {
                    tw += (double)part[k * stride + c];
                    if (with_b) tb += (double)part[k * stride + C + c];
                }
                if (dweight) dweight[c] += (real_t)tw;
                if (dbias) dbias[c] += (real_t)tb;
            }
        }
    }
    free(part);
    return TC_OK;
}

// out (N,C) or NULL, rstd (N,) or NULL, inp (N,C), weight (C,), bias (C,) or NULL
int FN(tc_rmsnorm_forward)(real_t *out, real_t *rstd, const real_t *inp, const real_t *weight,
                           const real_t *bias, int64_t N, int64_t C, double eps)
{
    const rmsnorm_layout L = {N, 1, C, C, C};
    return FN(rmsnorm_forward_layout)(out, rstd, inp, weight, bias, &L, eps);
}

// dinp (N,C) or NULL, dweight (C,) or NULL, dbias (C,) or NULL (write bits 0/1/2); dout
// (N,C), inp (N,C), weight (C,), rstd (N,) from the forward
int FN(tc_rmsnorm_backward)(real_t *dinp, real_t *dweight, real_t *dbias, const real_t *dout,
                            const real_t *inp, const real_t *weight, const real_t *rstd,
                            int64_t N, int64_t C, int write)
{
    const rmsnorm_layout L = {N, 1, C, C, C};
    return FN(rmsnorm_backward_layout)(dinp, dweight, dbias, dout, inp, weight, rstd, &L, write);
}

// out: N rows of G vectors of C at out + n*ld_out + g*C; rstd (N,G) or NULL; inp likewise
// at ld_inp; weight (C,) (no bias). out may be inp (ld_out == ld_inp).
int FN(tc_rmsnorm_heads_forward)(real_t *out, int64_t ld_out, real_t *rstd, const real_t *inp,
                                 int64_t ld_inp, const real_t *weight, int64_t N, int64_t G,
                                 int64_t C, double eps)
{
    const rmsnorm_layout L = {N, G, C, ld_out, ld_inp};
    return FN(rmsnorm_forward_layout)(out, rstd, inp, weight, NULL, &L, eps);
}

// dinp (at ld_dinp) written (TC_WRITE(0)) or accumulated, may be dout itself; dweight (C,)
// or NULL (TC_WRITE(1)); dout and inp N rows of G vectors of C at ld (vector (n,g) at
// n*ld + g*C), weight (C,), rstd (N,G) from the forward
int FN(tc_rmsnorm_heads_backward)(real_t *dinp, int64_t ld_dinp, real_t *dweight, const real_t *dout,
                                  const real_t *inp, int64_t ld, const real_t *weight,
                                  const real_t *rstd, int64_t N, int64_t G, int64_t C, int write)
{
    const rmsnorm_layout L = {N, G, C, ld_dinp, ld};
    return FN(rmsnorm_backward_layout)(dinp, dweight, NULL, dout, inp, weight, rstd, &L, write);
}

#undef RMS_PICK
#undef RLOAD
