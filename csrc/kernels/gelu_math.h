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
 *   R the interpolant at Chebyshev points of 2t - 1 (then expanded in powers), from erfc
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
    const VI neg_g = x_g < (real_t)0;                                                            \
    const VF ax_g = TC_VSEL(VI, VF, neg_g, -x_g, x_g);                                      \
    const VF a_g = VEXP((real_t)(-2 * TC_GELU_BETA) *                                            \
                        (ax_g * ((real_t)1 + (real_t)TC_GELU_KAPPA * (x_g * x_g))));                  \
    const VF r_g = (real_t)1 / ((real_t)1 + a_g);                                                     \
    const VF ar_g = a_g * r_g;                                                              \
    const VF s_g = TC_VSEL(VI, VF, neg_g, ar_g, r_g);                                       \
    const VF q_g = ar_g * r_g

/* gelu(x), tanh form, on a vector of real_t */
#define GELU_TANH_V(xin) ({                                                                 \
    GELU_TANH_PARTS(xin);                                                                   \
    (void)q_g;                                                                              \
    x_g * s_g;                                                                              \
})

/* gelu'(x), tanh form, from the parts GELU_TANH_PARTS declared */
#define GELU_TANH_GRAD_FROM_PARTS() ({                                                      \
    VF xc_g = TC_VSEL(VI, VF, x_g > (real_t)TC_GELU_XCLAMP, VSPLAT(TC_GELU_XCLAMP), x_g);        \
    xc_g = TC_VSEL(VI, VF, xc_g < (real_t)-TC_GELU_XCLAMP, VSPLAT(-TC_GELU_XCLAMP), xc_g);       \
    s_g + (real_t)(2 * TC_GELU_BETA) * xc_g * q_g *                                              \
              ((real_t)1 + (real_t)(3 * TC_GELU_KAPPA) * (xc_g * xc_g));                              \
})

/* gelu'(x), tanh form, on a vector of real_t */
#define GELU_TANH_GRAD_V(xin) ({                                                            \
    GELU_TANH_PARTS(xin);                                                                   \
    GELU_TANH_GRAD_FROM_PARTS();                                                            \
})

/* gelu(x) and gelu'(x), tanh form, from one evaluation of the parts: the value is returned,
 * the derivative stored to dst (the same bits as GELU_TANH_V and GELU_TANH_GRAD_V) */
#define GELU_TANH_AND_GRAD_V(xin, dst) ({                                                   \
    GELU_TANH_PARTS(xin);                                                                   \
    *(dst) = GELU_TANH_GRAD_FROM_PARTS();                                                   \
    x_g * s_g;                                                                              \
})

/* R(t) of the exact form as a polynomial in y = 2t - 1 (the Chebyshev interpolant expanded;
 * sum |a_k| = 1.31 against R >= 0.71 on [-1, 1]: evaluating it loses at most ~2 ulp) */
#define TC_ERFC_N_f32 12
#define TC_ERFC_N_f64 27
static const float tc_erfc_poly_f32[TC_ERFC_N_f32] = {
    9.7841729131279663143e-1f, 2.9125661024967043954e-1f, 1.1784766754601293911e-2f,
    -2.4657707279050184922e-2f, -3.1500116358249472707e-3f, 3.3320802119987368212e-3f,
    2.5464196795940603001e-4f, -5.9575224549758033685e-4f, 4.0145462072306421920e-5f,
    1.0244233619295847207e-4f, -1.5065296368521478109e-5f, -1.1110627797759051101e-5f};
static const double tc_erfc_poly_f64[TC_ERFC_N_f64] = {
    9.7841729475797702226e-1, 2.9125661034416641974e-1, 1.1784517788112485446e-2,
    -2.4657713718765682234e-2, -3.1470518293245766843e-3, 3.3321332384034395750e-3,
    2.4152118010605934104e-4, -5.9577488239116019993e-4, 6.7298614906699850398e-5,
    1.0167005150983255352e-4, -4.2800663587395145970e-5, -8.6517637398761345726e-6,
    1.3044410803096846878e-5, -3.0765521981870613269e-6, -1.9510928766143246364e-6,
    1.6928702716341970440e-6, -3.0862116482063966152e-7, -3.0684562180506496145e-7,
    2.6377916905881413681e-7, -6.0467342474148075978e-8, -5.6636462303483105512e-8,
    5.3687738434369640051e-8, -4.6543501816244391908e-9, -1.4589248418438902774e-8,
    4.9896137850082543892e-9, 1.6096694898746031415e-9, -8.1434881576973866885e-10};

/* Phi(x) and E = e^{-x^2/2} of the exact form, lane by lane, for the vector x of the current
 * T; declares x_e, e_e, phi_e (Phi) in the enclosing scope */
#define GELU_ERF_PARTS(xin)                                                                 \
    const VF x_e = (xin);                                                                   \
    const VI neg_e = x_e < (real_t)0;                                                            \
    const VF ax_e = TC_VSEL(VI, VF, neg_e, -x_e, x_e);                                      \
    const VF t_e = (real_t)2 / ((real_t)2 + (real_t)TC_RSQRT2 * ax_e);                                     \
    const VF y_e = (real_t)2 * t_e - (real_t)1;                                                       \
    const VF w_e = y_e * y_e;                                                               \
    /* the even and odd halves in y^2: two independent Horner chains */                     \
    VF pe_e = VSPLAT(0), po_e = VSPLAT(0);                                                  \
    for (int k_ = (TC_CAT(TC_ERFC_N_, SFX) - 1) & ~1; k_ >= 0; k_ -= 2)                     \
        pe_e = pe_e * w_e + TC_CAT(tc_erfc_poly_, SFX)[k_];                                 \
    for (int k_ = (TC_CAT(TC_ERFC_N_, SFX) - 2) | 1; k_ >= 1; k_ -= 2)                      \
        po_e = po_e * w_e + TC_CAT(tc_erfc_poly_, SFX)[k_];                                 \
    const VF r_e = pe_e + y_e * po_e;                                                       \
    const VF e_e = VEXP((real_t)-0.5 * (x_e * x_e));                                             \
    const VF q_e = (real_t)0.5 * t_e * ((real_t)1 + (t_e - (real_t)1) * r_e) * e_e;                        \
    const VF phi_e = TC_VSEL(VI, VF, neg_e, q_e, (real_t)1 - q_e)

/* gelu(x), exact form, on a vector of real_t */
#define GELU_ERF_V(xin) ({                                                                  \
    GELU_ERF_PARTS(xin);                                                                    \
    x_e * phi_e;                                                                            \
})

/* gelu'(x), exact form, on a vector of real_t */
#define GELU_ERF_GRAD_V(xin) ({                                                             \
    GELU_ERF_PARTS(xin);                                                                    \
    phi_e + x_e * (e_e * (real_t)TC_RSQRT2PI);                                                   \
})

/* gelu(x) and gelu'(x), exact form, from one evaluation of the parts: the value is returned,
 * the derivative stored to dst (the same bits as GELU_ERF_V and GELU_ERF_GRAD_V) */
#define GELU_ERF_AND_GRAD_V(xin, dst) ({                                                    \
    GELU_ERF_PARTS(xin);                                                                    \
    *(dst) = phi_e + x_e * (e_e * (real_t)TC_RSQRT2PI);                                          \
    x_e * phi_e;                                                                            \
})

#endif

