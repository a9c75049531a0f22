/* fused.c: fused kernels (linear + GELU, residual add + layernorm); see fused_impl.h. */
#include "tc_generic.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TC_PORTABLE_ONLY)
#define TC_FUSED_X86 1
/* AVX2 variants of the row routines (fused_impl.h): used when the GEMM runs its AVX2+FMA
 * kernel, so TC_GEMM_KERNEL=generic / tc_gemm_set_kernel("generic") test both paths */
static int tc_fused_use_avx2(void) { return strcmp(tc_gemm_kernel_name(), "avx2+fma") == 0; }
#else
#define TC_FUSED_X86 0
#endif

#define real_t float
#define SFX f32
#include "fused_impl.h"
#include "fused_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "fused_impl.h"
#include "fused_ref.h"
#undef real_t
#undef SFX
