/* gemm.c: matrix multiply for every product in transformer_c (float32 and float64).
 * The fast kernel picks its micro-kernel at run time by CPU detection: AVX2+FMA where the
 * CPU has it, the portable kernel (16-byte GNU C vectors: SSE2, NEON, ...) otherwise
 * (about 19 GFLOP/s float32 on one core here, against 75-80 for AVX2+FMA). The environment
 * variable TC_GEMM_KERNEL=generic (read once) or tc_gemm_set_kernel("generic") forces the
 * portable one, so it is tested on machines that have AVX2 too.
 *
 * No AVX-512 kernel: the machine this was tuned on exposes none, and an untested kernel is
 * not shipped. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define GEMM_MR 6
/* A is read in place (not packed) when N <= this: packing A costs about 1/N of the product */
#define GEMM_PACK_A_MIN_N 96
#define GEMM_PARALLEL_MIN_FLOPS 2097152.0 /* 2 MFLOP */


static int tc_gemm_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int tc_gemm_thread_count(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
static int tc_gemm_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TC_PORTABLE_ONLY)
#define TC_GEMM_X86 1
static int tc_gemm_cpu_has_avx2(void)
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
static int tc_gemm_cpu_has_avx2(void) { return 0; }
#endif

/* -1: not yet decided; 0: generic; 1: avx2+fma */
static int tc_gemm_choice = -1;

static int tc_gemm_use_avx2(void)
{
    int c = __atomic_load_n(&tc_gemm_choice, __ATOMIC_RELAXED);
    if (c < 0) {
        const char *env = getenv("TC_GEMM_KERNEL");
        c = tc_gemm_cpu_has_avx2() && !(env && strcmp(env, "generic") == 0);
        __atomic_store_n(&tc_gemm_choice, c, __ATOMIC_RELAXED);
    }
    return c;
}

int tc_gemm_set_kernel(const char *name)
{
    int c;
    if (!name || strcmp(name, "auto") == 0) {
        __atomic_store_n(&tc_gemm_choice, -1, __ATOMIC_RELAXED);
        return TC_OK;
    }
    if (strcmp(name, "generic") == 0)
        c = 0;
    else if (strcmp(name, "avx2+fma") == 0 && tc_gemm_cpu_has_avx2())
        c = 1;
    else
        return TC_EINVAL;
    __atomic_store_n(&tc_gemm_choice, c, __ATOMIC_RELAXED);
    return TC_OK;
}

const char *tc_gemm_kernel_name(void) { return tc_gemm_use_avx2() ? "avx2+fma" : "generic"; }

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
