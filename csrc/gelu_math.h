/* gelu_math.h: GELU and its derivative, written once for T; shared by the activation
 * kernels (activation_impl.h) and the fused linear + GELU (fused_impl.h). Include it per
 * dtype (T, SFX defined).
 *
 *   exact: gelu(x) = 0.5 x (1 + erf(x / sqrt 2)),  gelu'(x) = Phi(x) + x phi(x)
 *     (one element at a time, libm erf; fused_gelu_exact / fused_gelu_exact_grad).
 *   tanh (GPT-2): u = sqrt(2/pi) (x + 0.044715 x^3), gelu(x) = 0.5 x (1 + tanh u),
 *     evaluated on a whole vector (vec_math.h's VF) as x sigmoid(2u), which is the same
 *     function: 0.5 (1 + tanh u) = 1 / (1 + e^{-2u}). With a = e^{-2|u|} in [0, 1] (one call
 *     of the shared vector exp) and r = 1 / (1 + a):
 *       s = sigmoid(2u) = r (x >= 0) or a r (x < 0),   s (1 - s) = a r^2,
 *       gelu(x) = x s,   gelu'(x) = s + 2 sqrt(2/pi) x s (1 - s) (1 + 3 * 0.044715 x^2).
 *     No 1 + tanh u cancellation (accurate in both tails), no overflow inside (a <= 1), a
 *     few ulp in float32 and float64 alike. Where x^3 overflows a = 0, so gelu(x) = x for
 *     large positive x and -0 for large negative x, gelu' = 1 / 0; the derivative's second
 *     term is taken at x clamped to [-1e4, 1e4] (where a is already exactly 0), so it is 0
 *     rather than 0 * inf = NaN. NaN propagates (every step keeps it); gelu(-inf) is NaN
 *     (-inf * 0), as 0.5 x (1 + tanh u) is. No FMA is written: compiled without FMA the
 *     AVX2 and baseline builds round identically (fused_impl.h relies on it).
 */

#include "vec_math.h"

#ifndef TC_GELU_MATH_ONCE
#define TC_GELU_MATH_ONCE
#define TC_GELU_BETA 0.79788456080286535588   /* sqrt(2 / pi) */
#define TC_GELU_KAPPA 0.044715
#define TC_RSQRT2 0.70710678118654752440      /* 1 / sqrt(2) */
#define TC_RSQRT2PI 0.39894228040143267794    /* 1 / sqrt(2 pi) */
#define TC_GELU_XCLAMP 1e4                    /* |x| beyond: e^{-2|u|} == 0 in both dtypes */

/* s = sigmoid(2u) and q = s (1 - s) of the tanh-form GELU, lane by lane, for the vector x
 * of the current T (VF); declares x_g, s_g, q_g in the enclosing scope */
#define GELU_TANH_PARTS(xin)                                                                \
    const VF x_g = (xin);                                                                   \
    const VI neg_g = x_g < (T)0;                                                            \
    const VF ax_g = TC_VSEL(VI, VF, neg_g, -x_g, x_g);                                      \
    const VF a_g = VEXP((T)(-2 * TC_GELU_BETA) *                                            \
                        (ax_g * ((T)1 + (T)TC_GELU_KAPPA * (x_g * x_g))));                  \
    const VF r_g = (T)1 / ((T)1 + a_g);                                                     \
    const VF ar_g = a_g * r_g;                                                              \
    const VF s_g = TC_VSEL(VI, VF, neg_g, ar_g, r_g);                                       \
    const VF q_g = ar_g * r_g

/* gelu(x), tanh form, on a vector of T */
#define GELU_TANH_V(xin) ({                                                                 \
    GELU_TANH_PARTS(xin);                                                                   \
    (void)q_g;                                                                              \
    x_g * s_g;                                                                              \
})

/* gelu'(x), tanh form, on a vector of T */
#define GELU_TANH_GRAD_V(xin) ({                                                            \
    GELU_TANH_PARTS(xin);                                                                   \
    VF xc_g = TC_VSEL(VI, VF, x_g > (T)TC_GELU_XCLAMP, VSPLAT(TC_GELU_XCLAMP), x_g);        \
    xc_g = TC_VSEL(VI, VF, xc_g < (T)-TC_GELU_XCLAMP, VSPLAT(-TC_GELU_XCLAMP), xc_g);       \
    s_g + (T)(2 * TC_GELU_BETA) * xc_g * q_g *                                              \
              ((T)1 + (T)(3 * TC_GELU_KAPPA) * (xc_g * xc_g));                              \
})
#endif

/* gelu(x), exact form */
static inline T FN(fused_gelu_exact)(T x)
{
    return (T)0.5 * x * ((T)1 + MATH(erf)(x * (T)TC_RSQRT2));
}

/* gelu'(x), exact form */
static inline T FN(fused_gelu_exact_grad)(T x)
{
    const T cdf = (T)0.5 * ((T)1 + MATH(erf)(x * (T)TC_RSQRT2));
    const T pdf = MATH(exp)((T)-0.5 * x * x) * (T)TC_RSQRT2PI;
    return cdf + x * pdf;
}
