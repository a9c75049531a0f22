/* gelu_math.h: GELU and its derivative on whole vectors (vec_math.h's VF), written once for
 * T; shared by the activation kernels (activation_impl.h) and the fused linear + GELU
 * (fused_impl.h). Include it per dtype (T, SFX defined). No FMA is written: compiled without
 * FMA the AVX2 and baseline builds round identically (fused_impl.h relies on it). NaN
 * propagates through every step; gelu(-inf) is NaN (-inf * 0) in both forms, as the
 * textbook formulas give.
 *
 * tanh (GPT-2): u = sqrt(2/pi) (x + 0.044715 x^3), gelu(x) = 0.5 x (1 + tanh u), evaluated
 *   as x sigmoid(2u), which is the same function: 0.5 (1 + tanh u) = 1 / (1 + e^{-2u}).
 *   With a = e^{-2|u|} in [0, 1] (one call of the shared vector exp) and r = 1 / (1 + a):
 *     s = sigmoid(2u) = r (x >= 0) or a r (x < 0),   s (1 - s) = a r^2,
 *     gelu(x) = x s,   gelu'(x) = s + 2 sqrt(2/pi) x s (1 - s) (1 + 3 * 0.044715 x^2).
 *   No 1 + tanh u cancellation (accurate in both tails), no overflow inside (a <= 1). Where
 *   x^3 overflows a = 0, so gelu(x) = x for large positive x and -0 for large negative x,
 *   gelu' = 1 / 0; the derivative's second term is taken at x clamped to [-1e4, 1e4]
 *   (where a is already exactly 0), so it is 0 rather than 0 * inf = NaN.
 *
 * exact: gelu(x) = x Phi(x), gelu'(x) = Phi(x) + x phi(x), Phi(x) = 0.5 (1 + erf(x/sqrt 2)),
 *   phi(x) = e^{-x^2/2} / sqrt(2 pi). With z = |x| / sqrt 2 and E = e^{-x^2/2} = e^{-z^2}
 *   (one vector exp, shared with phi): Phi(-|x|) = 0.5 erfc(z), and
 *     erfc(z) = t E F(t),  t = 2 / (2 + z) in (0, 1],  F(t) = 1 + (t - 1) R(t),
 *   R a Chebyshev series in 2t - 1 (Clenshaw), interpolated at Chebyshev points from erfc
 *   at 50 digits (mpmath; re-derived by tests/test_activation.py): 12 terms for float
 *   (truncation 8e-9 relative), 27 of 28 for double (2e-17). Phi(x) = 0.5 erfc(z) for
 *   x < 0 (no 1 + erf cancellation in the left tail) and
 *   1 - 0.5 erfc(z) for x >= 0; the 1 + (t - 1) R form makes Phi(0) = 0.5 and gelu'(0) =
 *   0.5 exactly. Large |x|: E = 0, so gelu = x or -0 and gelu' = 1 or 0.
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

/* R(t) of the exact form, Chebyshev coefficients in 2t - 1 (see the top of the file) */
#define TC_ERFC_N_f32 12
#define TC_ERFC_N_f64 27
static const float tc_erfc_cheb_f32[TC_ERFC_N_f32] = {
    9.8321526574115744300e-1f, 2.7456548594819455179e-1f, 4.4481254960621275688e-3f,
    -5.2885996409149072175e-3f, -3.4075519449378496985e-4f, 1.5571027822006439001e-4f,
    9.1425545646110067709e-6f, -6.3039026893471955134e-6f, 1.9392352742208801935e-8f,
    2.8081292870750422476e-7f, -2.9424406969768511932e-8f, -1.0850222458749073341e-8f};
static const double tc_erfc_cheb_f64[TC_ERFC_N_f64] = {
    9.8321526574115740678e-1, 2.7456548594819356804e-1, 4.4481254960662717451e-3,
    -5.2885996409149263518e-3, -3.4075519454956778500e-4, 1.5571027840526079413e-4,
    9.1425547449661829379e-6, -6.3039059484029458332e-6, 1.9399940247989528634e-8,
    2.8083960763033224161e-7, -2.9625052234119642082e-8, -1.0705359001791788462e-8,
    3.0291954896134401704e-9, 1.4486345695787555062e-10, -2.0064526435256472560e-10,
    2.6678922827244769710e-11, 7.5875057988690501230e-12, -3.2590558076194618619e-12,
    1.8035518130610439639e-13, 1.8519703286016820744e-13, -5.5785124114362270871e-14,
    -1.8250500207178112891e-17, 4.1684495010863639990e-15, -1.0797534243399222230e-15,
    -3.6198320090180272861e-17, 9.5943778149759956686e-17, -2.4269485943607648279e-17};

/* Phi(x) and E = e^{-x^2/2} of the exact form, lane by lane, for the vector x of the current
 * T; declares x_e, e_e, phi_e (Phi) in the enclosing scope */
#define GELU_ERF_PARTS(xin)                                                                 \
    const VF x_e = (xin);                                                                   \
    const VI neg_e = x_e < (T)0;                                                            \
    const VF ax_e = TC_VSEL(VI, VF, neg_e, -x_e, x_e);                                      \
    const VF t_e = (T)2 / ((T)2 + (T)TC_RSQRT2 * ax_e);                                     \
    const VF y2_e = (T)4 * t_e - (T)2;                                                      \
    VF b1_e = VSPLAT(0), b2_e = VSPLAT(0);                                                  \
    for (int k_ = TC_CAT(TC_ERFC_N_, SFX) - 1; k_ >= 1; k_--) {                             \
        const VF b_e = y2_e * b1_e - b2_e + TC_CAT(tc_erfc_cheb_, SFX)[k_];                 \
        b2_e = b1_e;                                                                        \
        b1_e = b_e;                                                                         \
    }                                                                                       \
    const VF r_e = ((T)0.5 * y2_e * b1_e - b2_e) + TC_CAT(tc_erfc_cheb_, SFX)[0];           \
    const VF e_e = VEXP((T)-0.5 * (x_e * x_e));                                             \
    const VF q_e = (T)0.5 * t_e * ((T)1 + (t_e - (T)1) * r_e) * e_e;                        \
    const VF phi_e = TC_VSEL(VI, VF, neg_e, q_e, (T)1 - q_e)

/* gelu(x), exact form, on a vector of T */
#define GELU_ERF_V(xin) ({                                                                  \
    GELU_ERF_PARTS(xin);                                                                    \
    x_e * phi_e;                                                                            \
})

/* gelu'(x), exact form, on a vector of T */
#define GELU_ERF_GRAD_V(xin) ({                                                             \
    GELU_ERF_PARTS(xin);                                                                    \
    phi_e + x_e * (e_e * (T)TC_RSQRT2PI);                                                   \
})

#endif

