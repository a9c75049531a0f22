/* activation_impl.h: element-wise activations, written once for T.
 *
 * relu(x) = max(x, 0); NaN propagates and -0.0 stays -0.0 (as torch.relu).
 * relu'(x) = 1 if x > 0 else 0 (0 at x == 0, PyTorch's convention).
 *
 * gelu, exact:  y = 0.5 x (1 + erf(x / sqrt 2)),  y' = Phi(x) + x phi(x)
 *   with Phi(x) = 0.5 (1 + erf(x / sqrt 2)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
 * gelu, tanh (GPT-2, torch approximate='tanh'):
 *   u = sqrt(2/pi) (x + 0.044715 x^3),  y = 0.5 x (1 + tanh u),
 *   y' = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
 *   For large |x| (x^3 overflows, 1 - tanh^2 u == 0) the second term is taken as exactly 0
 *   rather than 0 * inf = NaN.
 *
 * These loops are independent per element, so results do not depend on the thread count.
 */

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
    const T rsqrt2 = (T)0.70710678118654752440;  /* 1 / sqrt(2) */
    const T beta = (T)0.79788456080286535588;    /* sqrt(2 / pi) */
    const T kappa = (T)0.044715;
    if (approximate_tanh) {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const T x = inp[i];
            const T u = beta * (x + kappa * x * x * x);
            out[i] = (T)0.5 * x * ((T)1 + MATH(tanh)(u));
        }
    } else {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const T x = inp[i];
            out[i] = (T)0.5 * x * ((T)1 + MATH(erf)(x * rsqrt2));
        }
    }
    return TC_OK;
}

// dinp (N,) += dout (N,) * gelu'(inp (N,)); approximate_tanh as in tc_gelu_forward
int FN(tc_gelu_backward)(T *dinp, const T *dout, const T *inp, int64_t N, int approximate_tanh)
{
    if (N < 0 || (N > 0 && (!dinp || !dout || !inp))) return TC_EINVAL;
    if (approximate_tanh != 0 && approximate_tanh != 1) return TC_EINVAL;
    const T rsqrt2 = (T)0.70710678118654752440;   /* 1 / sqrt(2) */
    const T rsqrt2pi = (T)0.39894228040143267794; /* 1 / sqrt(2 pi) */
    const T beta = (T)0.79788456080286535588;     /* sqrt(2 / pi) */
    const T kappa = (T)0.044715;
    if (approximate_tanh) {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const T x = inp[i];
            const T x2 = x * x;
            const T t = MATH(tanh)(beta * (x + kappa * x2 * x));
            const T sech2 = (T)1 - t * t;
            const T tail = sech2 == (T)0
                ? (T)0 : (T)0.5 * x * sech2 * beta * ((T)1 + (T)3 * kappa * x2);
            dinp[i] += dout[i] * ((T)0.5 * ((T)1 + t) + tail);
        }
    } else {
#pragma omp parallel for schedule(static) if (N * TC_GELU_COST >= TC_PARALLEL_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const T x = inp[i];
            const T cdf = (T)0.5 * ((T)1 + MATH(erf)(x * rsqrt2));
            const T pdf = MATH(exp)((T)-0.5 * x * x) * rsqrt2pi;
            /* pdf underflows to 0 long before x overflows, so x * pdf is 0, not NaN */
            dinp[i] += dout[i] * (cdf + x * pdf);
        }
    }
    return TC_OK;
}

#undef TC_GELU_COST
