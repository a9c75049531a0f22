/* activation_impl.h: element-wise activations, written once for real_t.
 *
 * relu(x) = max(x, 0); NaN propagates and -0.0 stays -0.0 (as torch.relu).
 * relu'(x) = 1 if x > 0 else 0 (0 at x == 0, PyTorch's convention).
 *
 * gelu, exact:  y = 0.5 x (1 + erf(x / sqrt 2)) = x Phi(x),  y' = Phi(x) + x phi(x)
 *   with Phi(x) = 0.5 (1 + erf(x / sqrt 2)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi); on whole
 *   vectors through a Chebyshev erfc and one vector exp (gelu_math.h).
 * gelu, tanh (GPT-2, torch approximate='tanh'):
 *   u = sqrt(2/pi) (x + 0.044715 x^3),  y = 0.5 x (1 + tanh u) = x sigmoid(2u),
 *   y' = s + 2 sqrt(2/pi) x s (1 - s) (1 + 3 * 0.044715 x^2), s = sigmoid(2u),
 *   on whole vectors through one vector exp (gelu_math.h: overflow and NaN handling there).
 *
 * silu (swish): y = x sigmoid(x), y' = s + x s (1 - s), s = sigmoid(x); with a = e^{-|x|}
 *   in [0, 1] (one vector exp) and r = 1 / (1 + a): s = r (x >= 0) or a r (x < 0),
 *   s (1 - s) = a r^2 (no overflow inside, no cancellation in either tail; silu(-0) = -0,
 *   NaN propagates, silu(-inf) = -inf * 0 = NaN as the formula gives, like torch). The
 *   derivative's second term takes x clamped to [-1e4, 1e4] (where a is already 0), so
 *   silu'(+-inf) = 1 / 0, the limits, rather than inf * 0 = NaN (as the GELUs).
 *
 * relu2 (squared ReLU, So et al. 2021 "Primer"): y = r^2, r = max(x, 0) as relu (NaN
 *   propagates, relu2(-0) = +0); y' = 2 x if x > 0 else 0 (a select as relu's: 0 at x == 0
 *   and at NaN).
 *
 * Every activation of tc.h's TC_ACTIVATIONS list has a pair FN(act_<name>_forward)(out, inp,
 * N) / FN(act_<name>_backward)(dinp, dout, inp, N, write) at the end of this file: the rows of
 * the activation table (activation_table_impl.h).
 *
 * These loops are independent per element, so results do not depend on the thread count.
 * Each loop is an always-inline body compiled twice, for the portable baseline and with
 * AVX2+FMA (x86-64) or NEON FMA (AArch64), picked at run time (vec_math.h); a call splits
 * the array into one contiguous chunk per thread, and runs in parallel only from a
 * per-kernel size on (ACT_*_PAR_MIN): a parallel region costs more than a cheap pass over
 * a small array. ReLU's backward is a
 * branch-free select (vectorised); both GELU forms are written on vectors (gelu_math.h).
 */

#include "vec_math.h"
#include "gelu_math.h"

#ifndef TC_ACT_ONCE
#define TC_ACT_ONCE
#ifdef _OPENMP
#include <omp.h>
#endif
/* elements from which a call runs in parallel (about 50 us of one thread's work) */
#define ACT_RELU_PAR_MIN (1 << 18)
#define ACT_GELU_PAR_MIN (1 << 14)
#define ACT_SILU_PAR_MIN (1 << 14)
#define ACT_RELU2_PAR_MIN (1 << 18)
/* [*i0, *i0 + *n) of [0, N): thread tid's contiguous share of nt, in multiples of 64 */
static inline void act_chunk(int64_t N, int tid, int nt, int64_t *i0, int64_t *n)
{
    const int64_t per = ((N + nt - 1) / nt + 63) / 64 * 64;
    const int64_t a = (int64_t)tid * per < N ? (int64_t)tid * per : N;
    *i0 = a;
    *n = N - a < per ? N - a : per;
}
#endif

__attribute__((always_inline)) static inline void FN(act_relu_fwd_body)(real_t *out, const real_t *inp,
                                                                        int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const real_t x = inp[i];
        out[i] = x < (real_t)0 ? (real_t)0 : x;
    }
}

__attribute__((always_inline)) static inline void FN(act_relu_bwd_body)(real_t *dinp, const real_t *dout,
                                                                        const real_t *inp, int64_t n,
                                                                        int acc)
{
    /* both loads unconditional, so the select is a vector blend, not a branch */
    if (acc) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const real_t g = dout[i], x = inp[i];
            dinp[i] += x > (real_t)0 ? g : (real_t)0;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const real_t g = dout[i], x = inp[i];
            dinp[i] = (real_t)0 + (x > (real_t)0 ? g : (real_t)0);
        }
    }
}

__attribute__((always_inline)) static inline void FN(act_relu2_fwd_body)(real_t *out, const real_t *inp,
                                                                         int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const real_t x = inp[i], r = x < (real_t)0 ? (real_t)0 : x;
        out[i] = r * r;
    }
}

__attribute__((always_inline)) static inline void FN(act_relu2_bwd_body)(real_t *dinp, const real_t *dout,
                                                                         const real_t *inp, int64_t n,
                                                                         int acc)
{
    if (acc) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const real_t g = dout[i], x = inp[i];
            dinp[i] += x > (real_t)0 ? (real_t)2 * x * g : (real_t)0;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const real_t g = dout[i], x = inp[i];
            dinp[i] = (real_t)0 + (x > (real_t)0 ? (real_t)2 * x * g : (real_t)0);
        }
    }
}

/* out[0, n) = F(inp[0, n)) for a vector function F (a macro of gelu_math.h): whole vectors,
 * then the last n % VL elements as one partial vector */
#define ACT_MAP(F, out, inp, n)                                                             \
    do {                                                                                    \
        int64_t i_ = 0;                                                                     \
        for (; i_ + VL <= (n); i_ += VL) VSTORE((out) + i_, F(VLOAD((inp) + i_)));          \
        if (i_ < (n)) VSTOREN((out) + i_, F(VLOADN((inp) + i_, (n) - i_, 0)), (n) - i_);    \
    } while (0)
/* dinp[0, n) (+)= dout * F(inp) likewise; acc: += (else dinp = 0 + value, never read) */
#define ACT_MAP_BWD(F, dinp, dout, inp, n, acc)                                             \
    do {                                                                                    \
        int64_t i_ = 0;                                                                     \
        if (acc)                                                                            \
            for (; i_ + VL <= (n); i_ += VL)                                                \
                VSTORE((dinp) + i_,                                                         \
                       VLOAD((dinp) + i_) + VLOAD((dout) + i_) * F(VLOAD((inp) + i_)));     \
        else                                                                                \
            for (; i_ + VL <= (n); i_ += VL)                                                \
                VSTORE((dinp) + i_, VSPLAT(0) + VLOAD((dout) + i_) * F(VLOAD((inp) + i_))); \
        if (i_ < (n)) {                                                                     \
            const int64_t m_ = (n) - i_;                                                    \
            VF v_ = VLOADN((dout) + i_, m_, 0) * F(VLOADN((inp) + i_, m_, 0));              \
            v_ = (acc ? VLOADN((dinp) + i_, m_, 0) : VSPLAT(0)) + v_;                       \
            VSTOREN((dinp) + i_, v_, m_);                                                   \
        }                                                                                   \
    } while (0)

__attribute__((always_inline)) static inline void FN(act_gelu_fwd_body)(real_t *out, const real_t *inp,
                                                                        int64_t n, int approx)
{
    if (approx)
        ACT_MAP(GELU_TANH_V, out, inp, n);
    else
        ACT_MAP(GELU_ERF_V, out, inp, n);
}

__attribute__((always_inline)) static inline void FN(act_gelu_bwd_body)(real_t *dinp, const real_t *dout,
                                                                        const real_t *inp, int64_t n,
                                                                        int approx, int acc)
{
    if (approx)
        ACT_MAP_BWD(GELU_TANH_GRAD_V, dinp, dout, inp, n, acc);
    else
        ACT_MAP_BWD(GELU_ERF_GRAD_V, dinp, dout, inp, n, acc);
}

/* s = sigmoid(x) and q = s (1 - s), lane by lane, for the vector x; declares x_s, s_s, q_s */
#define SILU_PARTS(xin)                                                                     \
    const VF x_s = (xin);                                                                   \
    const VI neg_s = x_s < (real_t)0;                                                       \
    const VF a_s = VEXP(-TC_VSEL(VI, VF, neg_s, -x_s, x_s));                                \
    const VF r_s = (real_t)1 / ((real_t)1 + a_s);                                           \
    const VF ar_s = a_s * r_s;                                                              \
    const VF s_s = TC_VSEL(VI, VF, neg_s, ar_s, r_s);                                       \
    const VF q_s = ar_s * r_s
/* silu(x) and silu'(x) on a vector of real_t */
#define SILU_V(xin) ({ SILU_PARTS(xin); (void)q_s; x_s * s_s; })
#define SILU_GRAD_V(xin) ({                                                                \
    SILU_PARTS(xin);                                                                        \
    VF xc_s = TC_VSEL(VI, VF, x_s > (real_t)TC_GELU_XCLAMP, VSPLAT(TC_GELU_XCLAMP), x_s);   \
    xc_s = TC_VSEL(VI, VF, xc_s < (real_t)-TC_GELU_XCLAMP, VSPLAT(-TC_GELU_XCLAMP), xc_s);  \
    s_s + xc_s * q_s;                                                                       \
})

__attribute__((always_inline)) static inline void FN(act_silu_fwd_body)(real_t *out, const real_t *inp,
                                                                        int64_t n)
{
    ACT_MAP(SILU_V, out, inp, n);
}

__attribute__((always_inline)) static inline void FN(act_silu_bwd_body)(real_t *dinp, const real_t *dout,
                                                                        const real_t *inp, int64_t n,
                                                                        int acc)
{
    ACT_MAP_BWD(SILU_GRAD_V, dinp, dout, inp, n, acc);
}

#define ACT_VARIANT(attr, sfx)                                                                  \
    attr static void FN(act_relu_fwd##sfx)(real_t *o, const real_t *x, const real_t *u, int64_t n, int a)      \
    {                                                                                           \
        (void)u;                                                                                \
        (void)a;                                                                                \
        FN(act_relu_fwd_body)(o, x, n);                                                         \
    }                                                                                           \
    attr static void FN(act_relu_bwd##sfx)(real_t *d, const real_t *g, const real_t *x, int64_t n, int a)      \
    {                                                                                           \
        FN(act_relu_bwd_body)(d, g, x, n, a >> 1);                                              \
    }                                                                                           \
    attr static void FN(act_gelu_fwd##sfx)(real_t *o, const real_t *x, const real_t *u, int64_t n, int a)      \
    {                                                                                           \
        (void)u;                                                                                \
        FN(act_gelu_fwd_body)(o, x, n, a);                                                      \
    }                                                                                           \
    attr static void FN(act_gelu_bwd##sfx)(real_t *d, const real_t *g, const real_t *x, int64_t n, int a)      \
    {                                                                                           \
        FN(act_gelu_bwd_body)(d, g, x, n, a & 1, a >> 1);                                       \
    }                                                                                           \
    attr static void FN(act_silu_fwd##sfx)(real_t *o, const real_t *x, const real_t *u, int64_t n, int a)      \
    {                                                                                           \
        (void)u;                                                                                \
        (void)a;                                                                                \
        FN(act_silu_fwd_body)(o, x, n);                                                         \
    }                                                                                           \
    attr static void FN(act_silu_bwd##sfx)(real_t *d, const real_t *g, const real_t *x, int64_t n, int a)      \
    {                                                                                           \
        FN(act_silu_bwd_body)(d, g, x, n, a >> 1);                                              \
    }                                                                                           \
    attr static void FN(act_relu2_fwd##sfx)(real_t *o, const real_t *x, const real_t *u, int64_t n, int a)     \
    {                                                                                           \
        (void)u;                                                                                \
        (void)a;                                                                                \
        FN(act_relu2_fwd_body)(o, x, n);                                                        \
    }                                                                                           \
    attr static void FN(act_relu2_bwd##sfx)(real_t *d, const real_t *g, const real_t *x, int64_t n, int a)     \
    {                                                                                           \
        FN(act_relu2_bwd_body)(d, g, x, n, a >> 1);                                             \
    }
ACT_VARIANT(, _generic)
#if TC_VEC_X86
ACT_VARIANT(TC_VEC_AVX2, _avx2)
#define ACT_PICK(name) (tc_cpu_pick(TC_CPU_ACTIVATION) ? FN(name##_avx2) : FN(name##_generic))
#elif TC_VEC_NEON
ACT_VARIANT(TC_VEC_NEON_FMA, _neon)
#define ACT_PICK(name) (tc_cpu_pick(TC_CPU_ACTIVATION) ? FN(name##_neon) : FN(name##_generic))
#else
#define ACT_PICK(name) FN(name##_generic)
#endif
#undef ACT_VARIANT

/* f(out, a, b, n, opt) over [0, N) (a, b: inputs, b may be NULL), one contiguous chunk per
 * thread when N >= min_par. opt of the backward variants: approximate_tanh | accumulate << 1 */
static void FN(act_run)(void (*f)(real_t *, const real_t *, const real_t *, int64_t, int), real_t *out, const real_t *a,
                        const real_t *b, int64_t N, int opt, int64_t min_par)
{
#ifdef _OPENMP
    if (TC_PAR(N, min_par)) {
#pragma omp parallel
        {
            int64_t i0, n;
            act_chunk(N, omp_get_thread_num(), omp_get_num_threads(), &i0, &n);
            if (n > 0) f(out + i0, a + i0, b ? b + i0 : NULL, n, opt);
        }
        return;
    }
#else
    (void)min_par;
#endif
    f(out, a, b, N, opt);
}

/* The checked entry of every element-wise forward: out (N,) = f(inp (N,)) with option opt,
 * over threads from min_par elements; TC_EINVAL for N < 0 or a missing array. */
static int FN(act_forward_checked)(void (*f)(real_t *, const real_t *, const real_t *, int64_t, int),
                                   real_t *out, const real_t *inp, int64_t N, int opt, int64_t min_par)
{
    if (N < 0 || (N > 0 && (!out || !inp))) return TC_EINVAL;
    if (N > 0) FN(act_run)(f, out, inp, NULL, N, opt, min_par);
    return TC_OK;
}

/* The checked entry of every element-wise backward: dinp (N,) (+)= dout (N,) * f'(inp (N,))
 * with option opt (approximate_tanh for the GELUs) and the write flag (TC_WRITE(0): written,
 * else accumulated). */
static int FN(act_backward_checked)(void (*f)(real_t *, const real_t *, const real_t *, int64_t, int),
                                    real_t *dinp, const real_t *dout, const real_t *inp, int64_t N, int opt,
                                    int write, int64_t min_par)
{
    if (N < 0 || (N > 0 && (!dinp || !dout || !inp))) return TC_EINVAL;
    if (N > 0) FN(act_run)(f, dinp, dout, inp, N, opt | !TC_WRITES(write, 0) << 1, min_par);
    return TC_OK;
}

// out (N,), inp (N,)
int FN(tc_relu_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(act_forward_checked)(ACT_PICK(act_relu_fwd), out, inp, N, 0, ACT_RELU_PAR_MIN);
}

// dinp (N,) (+)= dout (N,) * (inp (N,) > 0); write: TC_WRITE(0) writes dinp (0 + value, its
// old content not read), else adds to it
int FN(tc_relu_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N, int write)
{
    return FN(act_backward_checked)(ACT_PICK(act_relu_bwd), dinp, dout, inp, N, 0, write,
                                    ACT_RELU_PAR_MIN);
}

// out (N,), inp (N,); approximate_tanh: 0 = exact erf form, 1 = tanh form
int FN(tc_gelu_forward)(real_t *out, const real_t *inp, int64_t N, int approximate_tanh)
{
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(act_forward_checked)(ACT_PICK(act_gelu_fwd), out, inp, N, approximate_tanh,
                                   ACT_GELU_PAR_MIN);
}

// dinp (N,) (+)= dout (N,) * gelu'(inp (N,)); approximate_tanh as in tc_gelu_forward;
// write as tc_relu_backward
int FN(tc_gelu_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N, int approximate_tanh,
                         int write)
{
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    return FN(act_backward_checked)(ACT_PICK(act_gelu_bwd), dinp, dout, inp, N, approximate_tanh,
                                    write, ACT_GELU_PAR_MIN);
}

/* The rows of the activation table (tc.h's TC_ACTIVATIONS): out (N,) = act(inp (N,)) and
 * dinp (N,) (+)= dout (N,) * act'(inp (N,)) with the write flag (TC_WRITE(0): written). */
static int FN(act_gelu_tanh_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(tc_gelu_forward)(out, inp, N, 1);
}
static int FN(act_gelu_tanh_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                      int write)
{
    return FN(tc_gelu_backward)(dinp, dout, inp, N, 1, write);
}
static int FN(act_gelu_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(tc_gelu_forward)(out, inp, N, 0);
}
static int FN(act_gelu_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                 int write)
{
    return FN(tc_gelu_backward)(dinp, dout, inp, N, 0, write);
}
static int FN(act_relu_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(tc_relu_forward)(out, inp, N);
}
static int FN(act_relu_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                 int write)
{
    return FN(tc_relu_backward)(dinp, dout, inp, N, write);
}

// out (N,) = silu(inp (N,))
static int FN(act_silu_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(act_forward_checked)(ACT_PICK(act_silu_fwd), out, inp, N, 0, ACT_SILU_PAR_MIN);
}

// dinp (N,) (+)= dout (N,) * silu'(inp (N,)); write as tc_relu_backward
static int FN(act_silu_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                 int write)
{
    return FN(act_backward_checked)(ACT_PICK(act_silu_bwd), dinp, dout, inp, N, 0, write,
                                    ACT_SILU_PAR_MIN);
}

// out (N,) = relu2(inp (N,)) = max(inp, 0)^2
static int FN(act_relu2_forward)(real_t *out, const real_t *inp, int64_t N)
{
    return FN(act_forward_checked)(ACT_PICK(act_relu2_fwd), out, inp, N, 0, ACT_RELU2_PAR_MIN);
}

// dinp (N,) (+)= dout (N,) * 2 inp (inp > 0, else 0); write as tc_relu_backward
static int FN(act_relu2_backward)(real_t *dinp, const real_t *dout, const real_t *inp, int64_t N,
                                  int write)
{
    return FN(act_backward_checked)(ACT_PICK(act_relu2_bwd), dinp, dout, inp, N, 0, write,
                                    ACT_RELU2_PAR_MIN);
}

#undef ACT_PICK
#undef ACT_MAP
#undef ACT_MAP_BWD
