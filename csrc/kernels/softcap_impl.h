/* softcap_impl.h: logit soft-capping, written once for real_t:
 *
 *   y = cap * tanh(x / cap)          (Gemma 2's final-logit soft-capping; cap > 0)
 *   dx = dy * (1 - (y / cap)^2)      (from the OUTPUT y: the forward may run in place)
 *
 * tanh is vectorised (vec_math.h), Cephes' tanh / tanhf lane by lane: for |u| >= 0.625,
 * 1 - 2 / (e^{2|u|} + 1) with u's sign (VEXP; no overflow: e^{2|u|} = inf gives 1);
 * below, u + u z R(z), z = u^2, R Cephes' rational function (double) or polynomial (float):
 * about 2 ulp. +-0 stays +-0, +-inf gives +-cap, NaN stays NaN. Every element goes through
 * the same vector formula (the last partial vector padded), in blocks of whole vectors at
 * fixed places, so results depend neither on the thread count nor on an element's place.
 * Compiled for the x86-64 baseline and with AVX2 without FMA (identical rounding), picked
 * with the activations' switch (tc_cpu_pick(TC_CPU_ACTIVATION)). */

#include "vec_math.h"

#ifndef TC_SOFTCAP_ONCE
#define TC_SOFTCAP_ONCE
/* whether cap is a usable soft cap: finite and > 0 */
static inline int softcap_ok(double cap) { return cap > 0 && isfinite(cap); }
#endif

/* tanh(x) lane by lane for a vector of real_t (the header comment's formula); a statement
 * expression (vectors never cross a function boundary: vec_math.h) */
#if TC_F64
#define SC_SMALL(x, z)                                                                          \
    ((x) + (x) * (z) * (((z) * -9.64399179425052238628E-1 + -9.92877231001918586564E1) * (z) + \
                        -1.61468768441708447952E3) /                                            \
               ((((z) + 1.12811678491632931402E2) * (z) + 2.23548839060100448583E3) * (z) +     \
                4.84406305325125486048E3))
#else
#define SC_SMALL(x, z)                                                                          \
    (((((-5.70498872745E-3f * (z) + 2.06390887954E-2f) * (z) - 5.37397155531E-2f) * (z) +      \
       1.33314422036E-1f) * (z) - 3.33332819422E-1f) * (z) * (x) + (x))
#endif
#define SC_VTANH(xin) ({                                                                        \
    const VF x_ = (xin);                                                                        \
    const VF a_ = TC_VSEL(VI, VF, x_ < 0, -x_, x_);                                             \
    const VF e_ = VEXP(a_ + a_);                                                                \
    VF big_ = (real_t)1 - (real_t)2 / (e_ + (real_t)1);                                         \
    big_ = TC_VSEL(VI, VF, x_ < 0, -big_, big_);                                                \
    const VF z_ = x_ * x_;                                                                      \
    const VF y_ = TC_VSEL(VI, VF, a_ >= (real_t)0.625, big_, SC_SMALL(x_, z_));                 \
    TC_VSEL(VI, VF, x_ == 0, x_, y_);                                                           \
})

/* elements [i0, i1) (i0 a multiple of VL; i1 too, or n) of the forward / the backward */
__attribute__((always_inline)) static inline void FN(sc_fwd_body)(real_t *out, const real_t *inp, int64_t i0,
                                                                  int64_t i1, real_t c, real_t r)
{
    int64_t i = i0;
    for (; i + VL <= i1; i += VL) VSTORE(out + i, c * SC_VTANH(VLOAD(inp + i) * r));
    if (i < i1) VSTOREN(out + i, c * SC_VTANH(VLOADN(inp + i, i1 - i, 0) * r), i1 - i);
}

__attribute__((always_inline)) static inline void FN(sc_bwd_body)(real_t *dinp, const real_t *dout,
                                                                  const real_t *out, int64_t i0,
                                                                  int64_t i1, real_t r, int set)
{
    for (int64_t i = i0; i < i1; i++) {
        const real_t t = out[i] * r;
        const real_t v = dout[i] * (1 - t * t);
        dinp[i] = set ? v : dinp[i] + v;
    }
}

#define SC_VARIANT(attr, sfx)                                                                  \
    attr static void FN(sc_fwd##sfx)(real_t *out, const real_t *inp, int64_t i0, int64_t i1, real_t c, \
                                     real_t r)                                                  \
    {                                                                                           \
        FN(sc_fwd_body)(out, inp, i0, i1, c, r);                                                \
    }
SC_VARIANT(, _generic)
#if TC_VEC_X86
SC_VARIANT(TC_VEC_AVX2_NOFMA, _avx2)
#define SC_PICK(name) (tc_cpu_pick(TC_CPU_ACTIVATION) ? FN(name##_avx2) : FN(name##_generic))
#else
#define SC_PICK(name) FN(name##_generic)
#endif
#undef SC_VARIANT

/* elements per parallel block: a multiple of every vector width */
#define SC_BLOCK 4096

// out (n,) = cap * tanh(inp (n,) / cap); out may be inp
int FN(tc_softcap_forward)(real_t *out, const real_t *inp, int64_t n, double cap)
{
    if (n < 0 || !softcap_ok(cap) || (n && (!out || !inp))) return TC_EINVAL;
    void (*fwd)(real_t *, const real_t *, int64_t, int64_t, real_t, real_t) = SC_PICK(sc_fwd);
    const real_t c = (real_t)cap, r = (real_t)(1.0 / cap);
    const int64_t nb = (n + SC_BLOCK - 1) / SC_BLOCK;
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    for (int64_t k = 0; k < nb; k++)
        fwd(out, inp, k * SC_BLOCK, n - k * SC_BLOCK < SC_BLOCK ? n : (k + 1) * SC_BLOCK, c, r);
    return TC_OK;
}

// dinp (n,) = (TC_WRITE(0)) or += dout (n,) * (1 - (out / cap)^2), out (n,) the forward's
// output; dinp may be dout
int FN(tc_softcap_backward)(real_t *dinp, const real_t *dout, const real_t *out, int64_t n,
                            double cap, int write)
{
    if (n < 0 || !softcap_ok(cap) || (n && (!dinp || !dout || !out))) return TC_EINVAL;
    const real_t r = (real_t)(1.0 / cap);
    const int set = (int)TC_WRITES(write, 0);
    const int64_t nb = (n + SC_BLOCK - 1) / SC_BLOCK;
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    for (int64_t k = 0; k < nb; k++) {
        const int64_t i0 = k * SC_BLOCK, i1 = n - i0 < SC_BLOCK ? n : i0 + SC_BLOCK;
        if (set)
            FN(sc_bwd_body)(dinp, dout, out, i0, i1, r, 1);
        else
            FN(sc_bwd_body)(dinp, dout, out, i0, i1, r, 0);
    }
    return TC_OK;
}

#undef SC_PICK
#undef SC_VTANH
#undef SC_SMALL
