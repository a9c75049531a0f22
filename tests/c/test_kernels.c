/* test_kernels.c: the C kernels without Python, fast variant against portable.
 *
 * Links csrc/core and csrc/kernels only (tools/c_kernel_test.sh builds it natively, and for
 * AArch64 with the cross compiler, run under qemu-aarch64). Every case runs the public
 * entry point twice, with the build's fast variant (AVX2+FMA on x86-64, NEON on AArch64:
 * tc_cpu_set_portable(0)) and with the portable kernels (tc_cpu_set_portable(1)), on the
 * same inputs (a fixed integer RNG: the same numbers on every platform), and checks:
 *   - GEMM: each path bitwise against a scalar model of its summation order, written here
 *     (not the code under test): the portable kernel = a separately rounded multiply and
 *     add per k, the fast kernel = one fma() per k, in blocks of GEMM_KC = 512 k, then
 *     C = alpha acc + beta C; and fast against portable within the FMA error bound;
 *     1 thread == 2 threads bitwise;
 *   - the row kernels (exp, softmax, log-softmax, cross-entropy, activations with their
 *     exp / tanh forms, layernorm, rmsnorm) and attention (forward, backward): bitwise when no
 *     family with an FMA variant ran (the kernels are then the same code), else within a
 *     few ulp (or a few eps of the case's scale, where the result cancels), max ulp shown;
 *   - "digest" / "fast_digest" lines: a hash per group of the portable / fast outputs
 *     (every NaN as one pattern), so that two platforms (x86-64 and AArch64 under qemu) can
 *     be compared bitwise (tests/test_c_kernels.py does).
 * Exit status: 0 iff every check passed. Output: one line per check group; with -v a
 * digest line per case too; -inject flips the last bit of one fast GEMM entry and an
 * exponent bit of one fast exp per case, which the checks must catch (exit 1).
 */
#include <stdio.h>
#include <math.h>
#include "tc_generic.h"
#include "vec_math.h"

static int g_fail = 0;
static const char *g_fast = "generic";   /* the fast variant's name, or "generic" */
static int g_verbose = 0;                /* -v: a digest line per case too */
static int g_inject = 0;                 /* -inject: corrupt the fast GEMM / exp outputs (the
                                          * checks must then fail: tests/test_c_kernels.py) */

/* xorshift64*: the same stream on every platform */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}
/* uniform in [lo, hi), from 53 random bits (float32 inputs are these rounded: 24-bit inputs
 * would make float64 products exact, and fma equal to a multiply and add) */
static double rng_uniform(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_next() >> 11) / 9007199254740992.0);
}

/* FNV-1a over bytes, accumulated per check group */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}
#define FNV0 14695981039346656037ull

/* whether a family with a fused-multiply-add fast variant ran since the last portable run
 * (tc_cpu_kernel_name: every case runs fast first, then portable, which resets the names) */
static int fast_fma_ran(void)
{
    for (int f = 0; f < TC_CPU_FAMILY_COUNT; f++) {
        const char *k = tc_cpu_kernel_name(f);
        /* the norms' AVX2 variants (layernorm, rmsnorm: one family) are built without
         * FMA: they round as the portable ones */
        if (k && strcmp(k, "generic") != 0 && f != TC_CPU_LAYERNORM) return 1;
    }
    return 0;
}

/* one check group's summary */
typedef struct {
    const char *name;
    int cases, fast_cases, fails;
    double max_ulp;      /* fast vs portable, over elements not dominated by cancellation */
    double max_rel;      /* |fast - portable| / the case's scale */
    uint64_t digest;     /* of the portable outputs */
    uint64_t fast_digest; /* of the fast outputs */
} stat_t;

static void stat_begin(stat_t *s, const char *name)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->digest = FNV0;
    s->fast_digest = FNV0;
}

static void stat_end(stat_t *s, const char *dt, const char *what)
{
    printf("%s %-5s %-24s %3d cases (%3d on %s): %s, max %.0f ulp, max |diff|/scale %.2e\n",
           s->fails ? "FAIL" : "ok  ", dt, s->name, s->cases, s->fast_cases, g_fast, what,
           s->max_ulp, s->max_rel);
    printf("digest %s.%s %016llx\n", dt, s->name, (unsigned long long)s->digest);
    printf("fast_digest %s.%s %016llx\n", dt, s->name, (unsigned long long)s->fast_digest);
    if (s->fails) g_fail = 1;
}

#define TC_GENERIC_1 "test_kernels_impl.h"
#include "tc_dtypes.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0)
            g_verbose = 1;
        else if (strcmp(argv[i], "-inject") == 0)
            g_inject = 1;
        else {
            fprintf(stderr, "usage: %s [-v] [-inject]\n", argv[0]);
            return 2;
        }
    }
    tc_cpu_set_portable(0);
    if (tc_cpu_has_fast() && tc_cpu_fast_name()) g_fast = tc_cpu_fast_name();
    printf("platform: %s, fast variant: %s\nGEMM kernel: %s\n",
#if defined(__aarch64__)
           "aarch64",
#elif defined(__x86_64__)
           "x86-64",
#else
           "other",
#endif
           g_fast, tc_gemm_kernel_name());
    tc_set_num_threads(1);
    test_all_f32();
    test_all_f64();
    printf(g_fail ? "FAILED\n" : "all passed\n");
    return g_fail;
}
