/* optim_ref.h: the plain references of the optimizer updates (optim_impl.h), written once
 * for real_t: the textbook formulas (Kingma & Ba's bias-corrected m_hat, v_hat rather than
 * torch's folded step size) evaluated per element in double, each state rounded to real_t
 * when stored; the global norm summed in double in element order (no chunks, no threads).
 *   sgd:  g = grad + wd p; b = first ? g : mu b + (1 - damp) g; g = nesterov ? g + mu b : b
 *         (b only with mu != 0); p -= lr g
 *   adam: g = grad + wd p (decoupled 0) or p *= 1 - lr wd (decoupled 1, AdamW);
 *         m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *         p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) */

// param (n,), momentum_buffer (n,) (NULL allowed when momentum == 0), grad (n,)
int FN(tc_optim_sgd_update_ref)(real_t *param, real_t *momentum_buffer, const real_t *grad,
                                int64_t n, double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step)
{
    if (n < 0 || (momentum != 0 && !momentum_buffer)) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        double g = (double)grad[i] + weight_decay * param[i];
        if (momentum != 0) {
            const double b = first_step ? g : momentum * momentum_buffer[i] + (1 - dampening) * g;
            momentum_buffer[i] = (real_t)b;
            g = nesterov ? g + momentum * b : b;
        }
        param[i] = (real_t)(param[i] - lr * g);
    }
    return TC_OK;
}

// param, exp_avg, exp_avg_sq (n,) updated; grad (n,); step >= 1; decoupled 1 = AdamW
int FN(tc_optim_adam_update_ref)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq,
                                 const real_t *grad, int64_t n, int64_t step, double lr,
                                 double beta1, double beta2, double eps, double weight_decay,
                                 int decoupled)
{
    if (n < 0 || step < 1 || (decoupled != 0 && decoupled != 1)) return TC_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        double p = param[i], g = grad[i];
        if (decoupled) p *= 1 - lr * weight_decay;
        else g += weight_decay * p;
        const double m = beta1 * exp_avg[i] + (1 - beta1) * g;
        const double v = beta2 * exp_avg_sq[i] + (1 - beta2) * g * g;
        const double mhat = m / (1 - pow(beta1, (double)step));
        const double vhat = v / (1 - pow(beta2, (double)step));
        exp_avg[i] = (real_t)m;
        exp_avg_sq[i] = (real_t)v;
        param[i] = (real_t)(p - lr * mhat / (sqrt(vhat) + eps));
    }
    return TC_OK;
}

// *norm = sqrt(sum of squares of x (n,)), summed in double in order
int FN(tc_optim_global_norm_ref)(double *norm, const real_t *x, int64_t n)
{
    if (!norm || n < 0) return TC_EINVAL;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    *norm = sqrt(s);
    return TC_OK;
}
