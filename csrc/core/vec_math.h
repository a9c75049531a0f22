/* vec_math.h: portable 32-byte vectors (GCC vector extensions) and a vectorised exp for
 * float32 and float64, shared by the element-wise and row kernels (softmax, cross-entropy,
 * activations, layernorm).
 *
 * A "vector" is 32 bytes: 8 floats or 4 doubles. The compiler emits AVX2 (+FMA) for it in
 * functions marked TC_VEC_AVX2 and pairs of SSE2 registers elsewhere (on AArch64: pairs of
 * NEON registers, with FMA in functions marked TC_VEC_NEON_FMA), so a kernel body is
 * written once as an always-inline function and compiled twice; each family picks the
 * variant with tc_cpu_pick(TC_CPU_<family>) (core/cpu.c), so the one cpu override
 * (TC_PORTABLE=1, tc_cpu_set_portable(1)) selects the portable variants here too and
 * tests can run both. Vectors are never passed by value across a real
 * function boundary (only inside always-inline bodies and statement expressions), so the
 * two builds cannot disagree on an ABI.
 *
 * TC_VEXP_F32(x) / TC_VEXP_F64(x): e^x lane by lane, for vectors of float / double:
 *   x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (Cody-Waite: ln2 split into a
 *   high part whose product with n is exact and a low part), e^r by a polynomial (float:
 *   Cephes' expf, degree 5 after 1 + r; double: Taylor series to r^13, truncation below
 *   4e-18), then scaled by 2^n as 2^(n/2) * 2^(n - n/2), two exact powers of two, so that
 *   results that overflow become +inf and results in the subnormal range are rounded once
 *   from the normal product. Measured error against libm: <= 1 ulp (float) / 2 ulp
 *   (double) over the whole range (tests/test_vec_math.py). x is clamped to
 *   [-104, 89] (float) / [-746, 710] (double) first, beyond which e^x is 0 or +inf anyway:
 *   -inf gives 0, +inf gives +inf, NaN gives NaN (the clamp compares are false for NaN and
 *   every step keeps it).
 */
#ifndef TC_VEC_MATH_H
#define TC_VEC_MATH_H

#include <stdint.h>
#include <string.h>

typedef float tc_vf32 __attribute__((vector_size(32)));
typedef int32_t tc_vi32 __attribute__((vector_size(32)));
typedef uint32_t tc_vu32 __attribute__((vector_size(32)));
typedef double tc_vf64 __attribute__((vector_size(32)));
typedef int64_t tc_vi64 __attribute__((vector_size(32)));
typedef uint64_t tc_vu64 __attribute__((vector_size(32)));

#if TC_CPU_X86
#define TC_VEC_X86 1
#define TC_VEC_AVX2 __attribute__((target("avx2,fma")))
/* AVX2 without FMA: rounds exactly as the baseline build (no contraction), for kernels
 * whose results must not depend on the CPU (layernorm, fused residual + layernorm) */
#define TC_VEC_AVX2_NOFMA __attribute__((target("avx2")))
#else
#define TC_VEC_X86 0
#define TC_VEC_AVX2
#define TC_VEC_AVX2_NOFMA
#endif
/* AArch64: GCC compiles these vectors to NEON in every function (NEON is the baseline); the
 * build turns FMA contraction off (setup.py: -ffp-contract=off on AArch64), so the portable
 * variants round exactly as on x86-64 (a separate multiply and add). The NEON variants of
 * the row kernels (softmax, activations, loss: tc_cpu_pick) are the same bodies with
 * contraction on, a * b + c as one fused multiply-add (FMLA), as the AVX2+FMA variants. */
#if TC_CPU_NEON
#define TC_VEC_NEON 1
#define TC_VEC_NEON_FMA __attribute__((optimize("fp-contract=fast")))
#else
#define TC_VEC_NEON 0
#define TC_VEC_NEON_FMA
#endif

/* mask ? a : b lane by lane; mask a vector of 0 / -1 of the integer type IV */
#define TC_VSEL(IV, VT, mask, a, b) ((VT)(((mask) & (IV)(a)) | (~(mask) & (IV)(b))))

/* The core of the float exps (TC_VEXP_F32 below, ATT_VEXP_F32 in attention_flash_impl.h):
 * declares, inside the caller's statement expression, t_ = x log2(e) + 1.5 * 2^23 (whose
 * low mantissa bits hold n = round(x / ln2)), n_ = n, r_ = x - n ln2 (Cody-Waite: ln2 in
 * two parts) and p_ = e^r (Cephes' expf polynomial); VT is the vector type of x. */
#define TC_VEXPF_CORE(VT, x)                                                                \
    const VT t_ = (x) * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23 */                \
    const VT n_ = t_ - 12582912.0f;                                                         \
    VT r_ = (x) - n_ * 0.693359375f;                                                        \
    r_ = r_ - n_ * -2.12194440e-4f;                                                         \
    VT p_ = 1.9875691500e-4f * r_ + 1.3981999507e-3f;                                       \
    p_ = p_ * r_ + 8.3334519073e-3f;                                                        \
    p_ = p_ * r_ + 4.1665795894e-2f;                                                        \
    p_ = p_ * r_ + 1.6666665459e-1f;                                                        \
    p_ = p_ * r_ + 5.0000001201e-1f;                                                        \
    p_ = p_ * (r_ * r_) + r_ + 1.0f

/* The last Horner steps of the double exps' Taylor polynomial, 1/10! down to 1/2!, then
 * p_ = p_ r_^2 + r_ + 1, on the caller's p_ and r_ (TC_VEXP_F64 starts at 1/13!,
 * ATT_VEXP_F64 at 1/12!). */
#define TC_VEXP_F64_TAIL                                                                    \
    p_ = p_ * r_ + (1.0 / 3628800.0);                                                       \
    p_ = p_ * r_ + (1.0 / 362880.0);                                                        \
    p_ = p_ * r_ + (1.0 / 40320.0);                                                         \
    p_ = p_ * r_ + (1.0 / 5040.0);                                                          \
    p_ = p_ * r_ + (1.0 / 720.0);                                                           \
    p_ = p_ * r_ + (1.0 / 120.0);                                                           \
    p_ = p_ * r_ + (1.0 / 24.0);                                                            \
    p_ = p_ * r_ + (1.0 / 6.0);                                                             \
    p_ = p_ * r_ + 0.5;                                                                     \
    p_ = p_ * (r_ * r_) + r_ + 1.0

#define TC_VEXP_F32(xin) ({                                                                 \
    tc_vf32 x_ = (xin);                                                                     \
    const tc_vi32 hi_ = x_ > 89.0f, lo_ = x_ < -104.0f;                                     \
    x_ = TC_VSEL(tc_vi32, tc_vf32, hi_, (tc_vf32){0} + 89.0f, x_);                          \
    x_ = TC_VSEL(tc_vi32, tc_vf32, lo_, (tc_vf32){0} - 104.0f, x_);                         \
    TC_VEXPF_CORE(tc_vf32, x_);                                                             \
    const tc_vi32 ni_ = (tc_vi32)((tc_vu32)t_ - 0x4B400000u);                               \
    const tc_vi32 n1_ = ni_ >> 1;                                                           \
    const tc_vu32 n2_ = (tc_vu32)ni_ - (tc_vu32)n1_;                                        \
    const tc_vf32 s1_ = (tc_vf32)(((tc_vu32)n1_ + 127u) << 23);                             \
    const tc_vf32 s2_ = (tc_vf32)((n2_ + 127u) << 23);                                      \
    (p_ * s1_) * s2_;                                                                       \
})

#define TC_VEXP_F64(xin) ({                                                                 \
    tc_vf64 x_ = (xin);                                                                     \
    const tc_vi64 hi_ = x_ > 710.0, lo_ = x_ < -746.0;                                      \
    x_ = TC_VSEL(tc_vi64, tc_vf64, hi_, (tc_vf64){0} + 710.0, x_);                          \
    x_ = TC_VSEL(tc_vi64, tc_vf64, lo_, (tc_vf64){0} - 746.0, x_);                          \
    const tc_vf64 t_ = x_ * 1.4426950408889634074 + 6755399441055744.0; /* 1.5 * 2^52 */    \
    const tc_vf64 n_ = t_ - 6755399441055744.0;                                             \
    tc_vf64 r_ = x_ - n_ * 6.93147180369123816490e-01;                                      \
    r_ = r_ - n_ * 1.90821492927058770002e-10;                                              \
    tc_vf64 p_ = r_ * (1.0 / 6227020800.0) + (1.0 / 479001600.0);                           \
    p_ = p_ * r_ + (1.0 / 39916800.0);                                                      \
    TC_VEXP_F64_TAIL;                                                                       \
    const tc_vi64 ni_ = (tc_vi64)((tc_vu64)t_ - 0x4338000000000000u);                       \
    const tc_vi64 n1_ = ni_ >> 1;                                                           \
    const tc_vu64 n2_ = (tc_vu64)ni_ - (tc_vu64)n1_;                                        \
    const tc_vf64 s1_ = (tc_vf64)(((tc_vu64)n1_ + 1023u) << 52);                            \
    const tc_vf64 s2_ = (tc_vf64)((n2_ + 1023u) << 52);                                     \
    (p_ * s1_) * s2_;                                                                       \
})

/* per-dtype names, picked with TC_CAT(name, SFX) below */
#define TC_VF_f32 tc_vf32
#define TC_VF_f64 tc_vf64
#define TC_VI_f32 tc_vi32
#define TC_VI_f64 tc_vi64
#define TC_VL_f32 8
#define TC_VL_f64 4
#define TC_LANEINT_f32 int32_t
#define TC_LANEINT_f64 int64_t
#define TC_IOTA_f32 ((tc_vi32){0, 1, 2, 3, 4, 5, 6, 7})
#define TC_IOTA_f64 ((tc_vi64){0, 1, 2, 3})
#define TC_VEXP_f32 TC_VEXP_F32
#define TC_VEXP_f64 TC_VEXP_F64
#endif /* TC_VEC_MATH_H */

/* ---- names for the current real_t / SFX (re-evaluated at each use, so this part needs no
 * re-inclusion per dtype) */
#ifndef VF
#define VF TC_CAT(TC_VF_, SFX)       /* vector of real_t */
#define VI TC_CAT(TC_VI_, SFX)       /* integer vector of the same lane width (masks) */
#define VL TC_CAT(TC_VL_, SFX)       /* lanes */
#define VEXP(x) TC_CAT(TC_VEXP_, SFX)(x)
/* a vector with every lane s */
#define VSPLAT(s) ((VF){0} + (real_t)(s))
/* unaligned load / store of a whole vector */
#define VLOAD(p) ({ VF v_; memcpy(&v_, (p), sizeof v_); v_; })
#define VSTORE(p, x) do { VF v_ = (x); memcpy((p), &v_, sizeof v_); } while (0)
/* load of the first n < VL elements, the other lanes = fill; store of the first n (lane
 * by lane: a variable-length memcpy would be a library call) */
#define VLOADN(p, n, fill) ({                                                               \
    const real_t *lp_ = (p);                                                                     \
    const int ln_ = (int)(n);                                                               \
    VF v_ = VSPLAT(fill);                                                                   \
    for (int l_ = 0; l_ < ln_; l_++) v_[l_] = lp_[l_];                                      \
    v_;                                                                                     \
})
#define VSTOREN(p, x, n)                                                                    \
    do {                                                                                    \
        real_t *sp_ = (p);                                                                       \
        const VF sv_ = (x);                                                                 \
        const int sn_ = (int)(n);                                                           \
        for (int l_ = 0; l_ < sn_; l_++) sp_[l_] = sv_[l_];                                 \
    } while (0)
/* The tail of a row of at least VL elements: the r < VL elements at p, loaded as the LAST
 * r lanes of the whole vector that ends there (the VL - r lanes before, which belong to the
 * same row, are replaced by fill), and stored back the same way (the other lanes rewritten
 * with what they held): no partial memory access and no library call. VLOADR / VSTORER
 * pick this when full (the row has >= VL elements), else VLOADN / VSTOREN. Use one
 * kind per expression, so that the lanes of different operands match. */
#define VTAILMASK(r) (TC_CAT(TC_IOTA_, SFX) >= (VI){0} + (TC_CAT(TC_LANEINT_, SFX))(VL - (r)))
#define VLOADT(p, r, fill) ({                                                               \
    const VF tv_ = VLOAD((p) + (r) - VL);                                                   \
    TC_VSEL(VI, VF, VTAILMASK(r), tv_, VSPLAT(fill));                                       \
})
#define VSTORET(p, x, r)                                                                    \
    do {                                                                                    \
        real_t *tp_ = (p) + (r) - VL;                                                            \
        const VF tx_ = (x);                                                                 \
        VSTORE(tp_, TC_VSEL(VI, VF, VTAILMASK(r), tx_, VLOAD(tp_)));                        \
    } while (0)
#define VLOADR(p, r, fill, full) ((full) ? VLOADT(p, r, fill) : VLOADN(p, r, fill))
#define VSTORER(p, x, r, full)                                                              \
    do {                                                                                    \
        if (full)                                                                           \
            VSTORET(p, x, r);                                                               \
        else                                                                                \
            VSTOREN(p, x, r);                                                               \
    } while (0)
/* lane-wise max ignoring NaN in b (a > b ? a : b, as a scalar loop with that compare) */
#define VMAX(a, b) ({ VF a_ = (a), b_ = (b); TC_VSEL(VI, VF, a_ > b_, a_, b_); })
/* sum of the lanes in a fixed order (reproducible) */
#define VHSUM(v) ({ VF h_ = (v); real_t s_ = h_[0]; for (int l_ = 1; l_ < VL; l_++) s_ += h_[l_]; s_; })
/* max of the lanes (NaN lanes ignored unless all are NaN) */
#define VHMAX(v) ({ VF h_ = (v); real_t m_ = -INFINITY; for (int l_ = 0; l_ < VL; l_++) m_ = h_[l_] > m_ ? h_[l_] : m_; m_; })
#endif
