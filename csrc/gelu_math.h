/* gelu_math.h: GELU and its derivative for one element, written once for T; shared by the
 * activation kernels (activation_impl.h) and the fused linear + GELU (fused_impl.h).
 * Include it per dtype (T, SFX defined).
 *
 *   exact: gelu(x) = 0.5 x (1 + erf(x / sqrt 2)),  gelu'(x) = Phi(x) + x phi(x);
 *   tanh (GPT-2): u = sqrt(2/pi) (x + 0.044715 x^3), gelu(x) = 0.5 x (1 + tanh u).
 * The float32 tanh form uses a branch-free, vectorisable tanh (fused_tanhf, error a few
 * ulp) instead of libm's scalar tanhf, so loops calling it vectorise; float64 uses libm.
 */

#ifndef TC_GELU_MATH_ONCE
#define TC_GELU_MATH_ONCE
#define TC_GELU_BETA 0.79788456080286535588   /* sqrt(2 / pi) */
#define TC_GELU_KAPPA 0.044715
#define TC_RSQRT2 0.70710678118654752440      /* 1 / sqrt(2) */
#define TC_RSQRT2PI 0.39894228040143267794    /* 1 / sqrt(2 pi) */

static inline int32_t fused_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}
static inline float fused_float(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* e^x for x in [0, 88] (Cephes expf: Cody-Waite reduction, degree-6 polynomial). */
static inline float fused_expf_pos(float x)
{
    const float fn = (float)(int32_t)(x * 1.44269504088896341f + 0.5f);
    const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    return p * fused_float(((int32_t)fn + 127) << 23);
}

/* tanh(x) for float: Cephes' odd polynomial for |x| < 0.625, 1 - 2 / (e^{2|x|} + 1)
 * beyond (exactly +-1 for |x| >= 9.1), NaN for NaN; relative error a few ulp. Both forms
 * are always computed and the choices are integer compares and bit blends on the IEEE bits
 * (monotonic for |x|): with float compares and trapping math GCC would keep branches and
 * not vectorise loops calling it. */
static inline float fused_tanhf(float x)
{
    const float ax = fabsf(x);
    const int32_t axi = fused_bits(ax);
    const float z = x * x;
    float ps = -5.70498872745E-3f;
    ps = ps * z + 2.06390887954E-2f;
    ps = ps * z - 5.37397155531E-2f;
    ps = ps * z + 1.33314422036E-1f;
    ps = ps * z - 3.33332819422E-1f;
    ps = ps * z * x + x;
    const int32_t a2i = fused_bits(2.0f * ax), cap = 0x42b00000; /* 88.0f */
    const float a2 = fused_float(a2i < cap ? a2i : cap);
    const float pl = copysignf(1.0f - 2.0f / (fused_expf_pos(a2) + 1.0f), x);
    const int32_t small = -(int32_t)(axi < 0x3f200000); /* |x| < 0.625f */
    const int32_t number = -(int32_t)(axi <= 0x7f800000); /* not NaN */
    const int32_t t = (small & fused_bits(ps)) | (~small & fused_bits(pl));
    return fused_float((number & t) | (~number & fused_bits(x)));
}
/* x clamped to [-10, 10] (NaN becomes +-10: callers propagate NaN another way); the
 * float one by an integer min on the bits of |x|, for the same reason as above */
static inline float fused_clamp10f(float x)
{
    const int32_t a = fused_bits(fabsf(x)), cap = 0x41200000; /* 10.0f */
    return copysignf(fused_float(a < cap ? a : cap), x);
}
static inline double fused_clamp10d(double x) { return fabs(x) < 10 ? x : copysign(10.0, x); }

/* FUSED_TANH: fused_tanhf for float, libm tanh for double */
#define fused_tanh_f32 fused_tanhf
#define fused_tanh_f64 tanh
#define fused_clamp10_f32 fused_clamp10f
#define fused_clamp10_f64 fused_clamp10d
#endif

#define FUSED_TANH TC_CAT(fused_tanh_, SFX)
#define FUSED_CLAMP10 TC_CAT(fused_clamp10_, SFX)

/* gelu(x) */
static inline T FN(fused_gelu)(T x, int approximate_tanh)
{
    if (approximate_tanh) {
        const T u = (T)TC_GELU_BETA * (x + (T)TC_GELU_KAPPA * x * x * x);
        return (T)0.5 * x * ((T)1 + FUSED_TANH(u));
    }
    return (T)0.5 * x * ((T)1 + MATH(erf)(x * (T)TC_RSQRT2));
}

/* gelu'(x) */
static inline T FN(fused_gelu_grad)(T x, int approximate_tanh)
{
    if (approximate_tanh) {
        /* for |x| >= 10, 1 - tanh^2 u is exactly 0 in both dtypes: the second term is taken
         * at the clamped x, so it is 0 rather than 0 * inf = NaN when x^3 overflows */
        const T xc = FUSED_CLAMP10(x), xc2 = xc * xc;
        const T t = FUSED_TANH((T)TC_GELU_BETA * (x + (T)TC_GELU_KAPPA * x * x * x));
        const T sech2 = (T)1 - t * t;
        const T tail = (T)0.5 * xc * sech2 * (T)TC_GELU_BETA * ((T)1 + (T)3 * (T)TC_GELU_KAPPA * xc2);
        return (T)0.5 * ((T)1 + t) + tail;
    }
    const T cdf = (T)0.5 * ((T)1 + MATH(erf)(x * (T)TC_RSQRT2));
    const T pdf = MATH(exp)((T)-0.5 * x * x) * (T)TC_RSQRT2PI;
    return cdf + x * pdf;
}

#undef FUSED_TANH
#undef FUSED_CLAMP10
