/* moe.c: the mixture-of-experts feed-forward (tc.h, "mixture of experts"), float32 and
 * float64: router, top-k routing with capacity, the experts (the dense model's MLP on the
 * project's GEMM), the load-balancing loss, and the backward of all of it. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int64_t tc_moe_capacity(int64_t N, int64_t E, int64_t K, double capacity_factor)
{
    if (N < 0 || E < 1 || (K != 1 && K != 2) || K > E) return -1;
    if (!(capacity_factor > 0) || !isfinite(capacity_factor)) return -1;
    const double c = ceil(capacity_factor * (double)N * (double)K / (double)E);
    return c >= (double)N ? N : (int64_t)c;
}

#define TC_GENERIC_1 "moe_impl.h"
#define TC_GENERIC_2 "moe_ref.h"
#include "tc_dtypes.h"
