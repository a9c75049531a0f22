/* cpu.c: the one CPU-dispatch point (tc.h "cpu").
 *
 * Every kernel family with an instruction-set-specific variant asks tc_cpu_pick(family)
 * which variant to run: the CPU is probed once (cached) and the portable override (set
 * from the environment at the first query, or by tc_cpu_set_portable) applies to all of
 * them alike. Each family's last choice is remembered, so tests can see which kernel ran.
 * State lives in relaxed atomics: the switch is a test and tuning knob, not meant to be
 * flipped while kernels run.
 */
#include "tc_generic.h"

/* The build's instruction-set variant: its name, the families that have one, the probe. */
#define TC_CPU_ALL_FAMILIES ((1u << TC_CPU_FAMILY_COUNT) - 1u)
#if TC_CPU_X86
#define TC_CPU_FAST_NAME "avx2+fma"
#define TC_CPU_FAST_FAMILIES TC_CPU_ALL_FAMILIES
static int tc_cpu_probe(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#elif TC_CPU_NEON
/* NEON (Advanced SIMD) is mandatory on AArch64; Linux reports it as HWCAP_ASIMD. Only the
 * GEMM micro-kernel and the row kernels have a NEON variant; the other families run their
 * portable code (which GCC compiles to NEON vectors too, without FMA contraction). */
#define TC_CPU_FAST_NAME "neon"
#define TC_CPU_FAST_FAMILIES                                                                \
    ((1u << TC_CPU_GEMM) | (1u << TC_CPU_SOFTMAX) | (1u << TC_CPU_ACTIVATION) |             \
     (1u << TC_CPU_LOSS))
#if defined(__linux__)
#include <sys/auxv.h>
static int tc_cpu_probe(void)
{
#ifdef HWCAP_ASIMD
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#else
    return 1;
#endif
}
#else
static int tc_cpu_probe(void) { return 1; }
#endif
#else
#define TC_CPU_FAST_NAME NULL
#define TC_CPU_FAST_FAMILIES 0u
static int tc_cpu_probe(void) { return 0; }
#endif

/* The GEMM family's one wider level on x86-64: the AVX-512F micro-kernel (gemm_impl.h),
 * and the peak-FLOP/s bench's 16-wide loop (core/bench.c) with it, used on top of the AVX2+FMA variants where the CPU has avx512f (with the OS saving the zmm
 * state: __builtin_cpu_supports checks XGETBV too). */
#if TC_CPU_X86
static int tc_cpu_probe_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
static int tc_cpu_probe_avx512(void) { return 0; }
#endif

static int tc_cpu_fast = -1;     /* -1: not probed yet */
static int tc_cpu_avx512 = -1;   /* -1: not probed yet */
static int tc_cpu_no_avx512 = -1; /* -1: the environment's choice (TC_GEMM_KERNEL=avx2+fma) */
static int tc_cpu_portable = -1; /* -1: take the environment's choice at the next query */
/* 0: not run, else 1 + (fast variant used) (+ 1 more for the GEMM's / bench's AVX-512) */
static int tc_cpu_last[TC_CPU_FAMILY_COUNT] = {0};

int tc_cpu_has_fast(void)
{
    int c = __atomic_load_n(&tc_cpu_fast, __ATOMIC_RELAXED);
    if (c < 0) {
        c = tc_cpu_probe();
        __atomic_store_n(&tc_cpu_fast, c, __ATOMIC_RELAXED);
    }
    return c;
}

const char *tc_cpu_fast_name(void) { return TC_CPU_FAST_NAME; }

int tc_cpu_has_avx2(void) { return TC_CPU_X86 && tc_cpu_has_fast(); }

/* TC_PORTABLE=1 (or the older TC_GEMM_KERNEL=generic) forces the portable kernels */
static int tc_cpu_env_portable(void)
{
    const char *p = getenv("TC_PORTABLE"), *g = getenv("TC_GEMM_KERNEL");
    return (p && p[0] && strcmp(p, "0") != 0) || (g && strcmp(g, "generic") == 0);
}

int tc_cpu_get_portable(void)
{
    int p = __atomic_load_n(&tc_cpu_portable, __ATOMIC_RELAXED);
    if (p < 0) {
        p = tc_cpu_env_portable();
        __atomic_store_n(&tc_cpu_portable, p, __ATOMIC_RELAXED);
    }
    return p;
}

int tc_cpu_set_portable(int on)
{
    if (on < -1 || on > 1) return TC_EINVAL;
    __atomic_store_n(&tc_cpu_portable, on, __ATOMIC_RELAXED);
    return TC_OK;
}

int tc_cpu_use_fast(void) { return tc_cpu_has_fast() && !tc_cpu_get_portable(); }

int tc_cpu_use_avx2(void) { return TC_CPU_X86 && tc_cpu_use_fast(); }

int tc_cpu_has_avx512(void)
{
    int c = __atomic_load_n(&tc_cpu_avx512, __ATOMIC_RELAXED);
    if (c < 0) {
        c = TC_CPU_X86 && tc_cpu_has_fast() && tc_cpu_probe_avx512();
        __atomic_store_n(&tc_cpu_avx512, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* TC_GEMM_KERNEL=avx2+fma caps the GEMM at its AVX2+FMA kernel */
static int tc_cpu_get_no_avx512(void)
{
    int p = __atomic_load_n(&tc_cpu_no_avx512, __ATOMIC_RELAXED);
    if (p < 0) {
        const char *g = getenv("TC_GEMM_KERNEL");
        p = g && strcmp(g, "avx2+fma") == 0;
        __atomic_store_n(&tc_cpu_no_avx512, p, __ATOMIC_RELAXED);
    }
    return p;
}

int tc_cpu_set_avx512(int on)
{
    if (on < -1 || on > 1) return TC_EINVAL;
    if (on == 1 && !tc_cpu_has_avx512()) return TC_EINVAL;
    __atomic_store_n(&tc_cpu_no_avx512, on < 0 ? -1 : !on, __ATOMIC_RELAXED);
    return TC_OK;
}

int tc_cpu_use_avx512(void)
{
    return tc_cpu_has_avx512() && !tc_cpu_get_portable() && !tc_cpu_get_no_avx512();
}

int tc_cpu_pick(int family)
{
    if (family < 0 || family >= TC_CPU_FAMILY_COUNT) return tc_cpu_use_fast();
    const int v = ((TC_CPU_FAST_FAMILIES >> family) & 1u) && tc_cpu_use_fast();
    const int w = v && (family == TC_CPU_GEMM || family == TC_CPU_BENCH) && tc_cpu_use_avx512();
    if (__atomic_load_n(&tc_cpu_last[family], __ATOMIC_RELAXED) != 1 + v + w)
        __atomic_store_n(&tc_cpu_last[family], 1 + v + w, __ATOMIC_RELAXED);
    return v;
}

const char *tc_cpu_kernel_name(int family)
{
    if (family < 0) return tc_cpu_use_fast() ? TC_CPU_FAST_NAME : "generic";
    if (family >= TC_CPU_FAMILY_COUNT) return NULL;
    /* a family without a fast variant in this build (all of them in a TC_PORTABLE_ONLY
     * build) has one kernel and may never ask tc_cpu_pick */
    if (!((TC_CPU_FAST_FAMILIES >> family) & 1u)) return "generic";
    switch (__atomic_load_n(&tc_cpu_last[family], __ATOMIC_RELAXED)) {
    case 1: return "generic";
    case 2: return TC_CPU_FAST_NAME;
    case 3: return "avx512";
    default: return NULL;
    }
}

const char *tc_cpu_family_name(int family)
{
    static const char *const names[TC_CPU_FAMILY_COUNT] = {
        "gemm", "attention", "softmax", "activation", "layernorm", "loss", "fused",
        "decode", "bench"};
    return family >= 0 && family < TC_CPU_FAMILY_COUNT ? names[family] : NULL;
}
