/* gemm.c: matrix multiply for every product in transformer_c (float32 and float64).
 * The fast kernel picks its micro-kernel once, at run time, by CPU detection: AVX2+FMA
 * where the CPU has it, the portable vector-extension kernel otherwise. */
#include "tc_generic.h"

#define GEMM_MR 6

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define TC_GEMM_X86 1
static int tc_gemm_has_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#else
#define TC_GEMM_X86 0
static int tc_gemm_has_avx2(void) { return 0; }
#define gemm_kernel_avx2_f32 gemm_kernel_generic_f32
#define gemm_kernel_avx2_f64 gemm_kernel_generic_f64
#endif

const char *tc_gemm_kernel_name(void) { return tc_gemm_has_avx2() ? "avx2+fma" : "generic"; }

#define T float
#define SFX f32
#include "gemm_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "gemm_impl.h"
#undef T
#undef SFX
