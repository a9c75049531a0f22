/* activation_impl.h: element-wise activations, written once for T.
 *
 * relu(x) = max(x, 0); NaN propagates and -0.0 stays -0.0 (as torch.relu).
 * relu'(x) = 1 if x > 0 else 0 (0 at x == 0, PyTorch's convention).
 *
 * gelu, exact:  y = 0.5 x (1 + erf(x / sqrt 2)),  y' = Phi(x) + x phi(x)
 *   with Phi(x) = 0.5 (1 + erf(x / sqrt 2)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
 * gelu, tanh (GPT-2, torch approximate='tanh'; float32 through the vectorisable tanh of
 * gelu_math.h):
 *   u = sqrt(2/pi) (x + 0.044715 x^3),  y = 0.5 x (1 + tanh u),
 *   y' = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
 *   For large |x| (x^3 overflows, 1 - tanh^2 u == 0) the second term is taken as exactly 0
 *   rather than 0 * inf = NaN.
 *
 * These loops are independent per element, so results do not depend on the thread count.
 */

#include "gelu_math.h"

/* rough cost of one element, in "scalar operations", for the parallel threshold */
#define TC_GELU_COST 32

// out (N,), inp (N,)
int FN(tc_relu_forward)(T *out, const T *inp, int64_t N)
{
    if (N < 0 || (N > 0 && (!out || !inp))) return TC_EINVAL;
#pragma omp parallel for simd schedule(static) if (N >= TC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < N; i++) {
        const T x = inp[i];
        out[i] = x < (T)0 ? (T)0 : x;
    }
    return TC_OK;
}

// dinp (N,) += dout (N,) * (inp (N,) > 0)
int FN(tc_relu_backward)(T *dinp, const T *dout, const T *inp, int64_t N)
{
    if (N < 0 || (N > 0 && (!dinp || !dout || !inp))) return TC_EINVAL;
#pragma omp parallel for simd schedule(static) if (N >= TC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < N; i++) dinp[i] += inp[i] > (T)0 ? dout[i] : (T)0;
    return TC_OK;
}

// out (N,), inp (N,); approximate_tanh: 0 = exact erf form, 1 = tanh form
int FN(tc_gelu_forward)(T *out, const T *inp, int64_t N, int approximate_tanh)
{
    if (N < 0 || (N > 0 && (!out || !inp))) return TC_EINVAL;
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    if (approximate_tanh) {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) out[i] = FN(fused_gelu)(inp[i], 1);
    } else {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) out[i] = FN(fused_gelu)(inp[i], 0);
    }
    return TC_OK;
}

// dinp (N,) += dout (N,) * gelu'(inp (N,)); approximate_tanh as in tc_gelu_forward
int FN(tc_gelu_backward)(T *dinp, const T *dout, const T *inp, int64_t N, int approximate_tanh)
{
    if (N < 0 || (N > 0 && (!dinp || !dout || !inp))) return TC_EINVAL;
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    if (approximate_tanh) {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) dinp[i] += dout[i] * FN(fused_gelu_grad)(inp[i], 1);
    } else {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) dinp[i] += dout[i] * FN(fused_gelu_grad)(inp[i], 0);
    }
    return TC_OK;
}

#undef TC_GELU_COST
