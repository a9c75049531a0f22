/* optim_impl.h: in-place optimizer updates over flat arrays, written once for real_t. The math
 * is torch.optim's single-tensor ("for-loop") implementation operation for operation, so
 * float64 agrees to rounding and float32 to a few ulps. Hyper-parameters arrive as double
 * (Python floats) and are rounded to real_t where torch rounds them; bias corrections are
 * computed once per call in double, never inside the per-element loop.
 *
 * Every element is updated independently, so the loops split across threads with results
 * independent of the thread count. The SGD and scale loops vectorise; the Adam loop stays
 * scalar because sqrt may set errno (it would vectorise under -fno-math-errno, which
 * changes no result) - it is memory-bound either way. */

// param (n,), momentum_buffer (n,) (NULL allowed only when momentum == 0), grad (n,)
int FN(tc_optim_sgd_update)(real_t *param, real_t *momentum_buffer, const real_t *grad, int64_t n,
                            double lr, double momentum, double dampening, double weight_decay,
                            int nesterov, int first_step)
{
    if (n < 0 || (momentum != 0 && !momentum_buffer)) return TC_EINVAL;
    const real_t neg_lr = (real_t)-lr, mu = (real_t)momentum, keep = (real_t)(1.0 - dampening);
    const real_t wd = (real_t)weight_decay;
    const int use_wd = weight_decay != 0, use_mu = momentum != 0;
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    for (int64_t i = 0; i < n; i++) {
        real_t g = grad[i];
        if (use_wd) g = g + wd * param[i]; /* grad.add(param, alpha=wd) */
        if (use_mu) {
            /* first step: buf = clone(grad); then buf.mul_(momentum).add_(grad, alpha=1-damp) */
            const real_t b = first_step ? g : momentum_buffer[i] * mu + keep * g;
            momentum_buffer[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        param[i] = param[i] + neg_lr * g; /* param.add_(grad, alpha=-lr) */
    }
    return TC_OK;
}

/* Adam and AdamW: decoupled selects AdamW's param *= 1 - lr*wd over Adam's grad += wd*param. */
static int FN(optim_adam)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq, const real_t *grad, int64_t n,
                          int64_t step, double lr, double beta1, double beta2, double eps,
                          double weight_decay, int decoupled)
{
    if (n < 0 || step < 1) return TC_EINVAL;
    const double bias_correction1 = 1.0 - pow(beta1, (double)step);
    const double bias_correction2 = 1.0 - pow(beta2, (double)step);
    const real_t neg_step_size = (real_t)-(lr / bias_correction1);
    const real_t bc2_sqrt = (real_t)sqrt(bias_correction2);
    const real_t w1 = (real_t)(1.0 - beta1), w1c = 1 - w1; /* exp_avg.lerp_(grad, w1) */
    const int lerp_small = MATH(fabs)(w1) < (real_t)0.5;
    const real_t b2 = (real_t)beta2, w2 = (real_t)(1.0 - beta2), e = (real_t)eps;
    const real_t wd = (real_t)weight_decay, decay = (real_t)(1.0 - lr * weight_decay);
    const int l2 = weight_decay != 0 && !decoupled, shrink = weight_decay != 0 && decoupled;
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    for (int64_t i = 0; i < n; i++) {
        real_t p = param[i], g = grad[i];
        if (shrink) p = p * decay;  /* param.mul_(1 - lr * wd) */
        if (l2) g = g + wd * p;     /* grad.add(param, alpha=wd) */
        const real_t m0 = exp_avg[i];    /* torch's lerp: the formula depends on |weight| < 0.5 */
        const real_t m = lerp_small ? m0 + w1 * (g - m0) : g - (g - m0) * w1c;
        const real_t v = exp_avg_sq[i] * b2 + w2 * g * g; /* mul_(b2).addcmul_(g, g, 1 - b2) */
        const real_t denom = MATH(sqrt)(v) / bc2_sqrt + e;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p + neg_step_size * m / denom; /* addcdiv_(m, denom, value=-step_size) */
    }
    return TC_OK;
}

// param, exp_avg, exp_avg_sq (n,) updated in place; grad (n,); step >= 1 counts this update
int FN(tc_optim_adam_update)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq, const real_t *grad, int64_t n,
                             int64_t step, double lr, double beta1, double beta2, double eps,
                             double weight_decay)
{
    return FN(optim_adam)(param, exp_avg, exp_avg_sq, grad, n, step, lr, beta1, beta2, eps,
                          weight_decay, 0);
}

// param, exp_avg, exp_avg_sq (n,) updated in place; grad (n,); step >= 1 counts this update
int FN(tc_optim_adamw_update)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq, const real_t *grad, int64_t n,
                              int64_t step, double lr, double beta1, double beta2, double eps,
                              double weight_decay)
{
    return FN(optim_adam)(param, exp_avg, exp_avg_sq, grad, n, step, lr, beta1, beta2, eps,
                          weight_decay, 1);
}

/* Sum of squares of x (n,) in double: fixed chunks of OPTIM_CHUNK elements, each summed in
 * order, then the chunk sums added in order, so the result does not depend on threads. */
#define OPTIM_CHUNK 4096
#define OPTIM_BLOCK 64 /* chunks per parallel block (partial sums kept on the stack) */
static double FN(optim_sum_squares)(const real_t *x, int64_t n)
{
    double total = 0;
    for (int64_t b0 = 0; b0 < n; b0 += (int64_t)OPTIM_CHUNK * OPTIM_BLOCK) {
        const int64_t len = n - b0 < (int64_t)OPTIM_CHUNK * OPTIM_BLOCK
                                ? n - b0 : (int64_t)OPTIM_CHUNK * OPTIM_BLOCK;
        const int64_t nchunks = (len + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
        double part[OPTIM_BLOCK];
#pragma omp parallel for schedule(static) if (TC_PAR(len, TC_PARALLEL_MIN_WORK))
        for (int64_t k = 0; k < nchunks; k++) {
            const real_t *p = x + b0 + k * OPTIM_CHUNK;
            const int64_t m = len - k * OPTIM_CHUNK < OPTIM_CHUNK ? len - k * OPTIM_CHUNK
                                                                  : OPTIM_CHUNK;
            double s[4] = {0, 0, 0, 0}; /* four independent accumulators */
            int64_t i = 0;
            for (; i + 4 <= m; i += 4)
                for (int j = 0; j < 4; j++) s[j] += (double)p[i + j] * (double)p[i + j];
            for (; i < m; i++) s[0] += (double)p[i] * (double)p[i];
            part[k] = (s[0] + s[1]) + (s[2] + s[3]);
        }
        for (int64_t k = 0; k < nchunks; k++) total += part[k];
    }
    return total;
}
#undef OPTIM_CHUNK
#undef OPTIM_BLOCK

// *norm = sqrt(sum_k sum_i arrays[k][i]^2) over count arrays, arrays[k] of sizes[k] elements
int FN(tc_optim_global_norm)(double *norm, const real_t *const *arrays, const int64_t *sizes,
                             int64_t count)
{
    if (!norm || count < 0) return TC_EINVAL;
    double total = 0;
    for (int64_t k = 0; k < count; k++) {
        if (sizes[k] < 0 || (sizes[k] > 0 && !arrays[k])) return TC_EINVAL;
        total += FN(optim_sum_squares)(arrays[k], sizes[k]);
    }
    *norm = sqrt(total);
    return TC_OK;
}

// x (n,) *= factor (rounded to real_t once)
int FN(tc_optim_scale)(real_t *x, int64_t n, double factor)
{
    if (n < 0) return TC_EINVAL;
    const real_t f = (real_t)factor;
#pragma omp parallel for schedule(static) if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    for (int64_t i = 0; i < n; i++) x[i] *= f;
    return TC_OK;
}
