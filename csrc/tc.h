/* tc.h: the public C interface of transformer_c.
 *
 * Every layer has a forward and a backward kernel, each compiled for float32 (_f32) and
 * float64 (_f64) from one generic source (see tc_generic.h).
 *
 * Conventions (DESIGN.md section 2):
 *  - arguments: outputs first, then caches, then const inputs, then dimensions, then
 *    scalar hyper-parameters; every array is dense and C-contiguous (row-major);
 *  - dimensions are int64_t with fixed names: B batch, T query length, S key length,
 *    C channels, OC output channels, N rows (any leading dims flattened), V vocabulary,
 *    NH heads, HS head size;
 *  - forward fills the caches backward needs (mean/rstd, logsumexp, ...);
 *  - backward ACCUMULATES (+=) into gradient buffers the caller has zeroed, so residual
 *    branches and gradient accumulation need no extra buffers;
 *  - kernels return TC_OK, TC_ENOMEM or TC_EINVAL; they never print, exit, assert or
 *    touch Python; the bindings validate shapes before calling;
 *  - kernels are parallelised with OpenMP; for a fixed thread count results are bitwise
 *    reproducible.
 */
#ifndef TC_H
#define TC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TC_OK = 0, TC_ENOMEM = 1, TC_EINVAL = 2 };

/* ------------------------------------------------------------------ threads */

void tc_set_num_threads(int n); /* n <= 0 is ignored */
int tc_get_num_threads(void);

/* ------------------------------------------------------------------ gemm (gemm.c) */

/* C (M,N) = alpha * op(A) @ op(B) + beta * C, row-major, where
 * op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) if trans_a;
 * op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) if trans_b.
 * beta == 0 overwrites C without reading it (NaN in C does not leak).
 * tc_gemm_* is the packed, cache-blocked, vectorised, OpenMP-parallel kernel;
 * tc_gemm_ref_* is the plain triple loop it is tested against. */
int tc_gemm_f32(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K,
                int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                float alpha, float beta);
int tc_gemm_f64(double *C, const double *A, const double *B, int64_t M, int64_t N, int64_t K,
                int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                double alpha, double beta);
int tc_gemm_ref_f32(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K,
                    int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                    float alpha, float beta);
int tc_gemm_ref_f64(double *C, const double *A, const double *B, int64_t M, int64_t N, int64_t K,
                    int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                    double alpha, double beta);
/* Name of the micro-kernel chosen at run time ("avx2+fma" or "generic"). */
const char *tc_gemm_kernel_name(void);

/* ------------------------------------------------------------------ linear (linear.c) */

/* out (N,OC) = inp (N,C) @ weight^T (OC,C) + bias (OC,); bias may be NULL. */
int tc_linear_forward_f32(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int64_t C, int64_t OC);
int tc_linear_forward_f64(double *out, const double *inp, const double *weight, const double *bias,
                          int64_t N, int64_t C, int64_t OC);
/* dinp (N,C) += dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC,) += sum_n dout.
 * Any of dinp, dweight, dbias may be NULL (not wanted). */
int tc_linear_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int64_t N, int64_t C, int64_t OC);
int tc_linear_backward_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                           const double *inp, const double *weight, int64_t N, int64_t C, int64_t OC);

/* ------------------------------------------------------------------ activations (activation.c) */

/* ------------------------------------------------------------------ end activations */



/* ------------------------------------------------------------------ softmax (softmax.c) */

/* ------------------------------------------------------------------ end softmax */



/* ------------------------------------------------------------------ dropout (dropout.c) */

/* ------------------------------------------------------------------ end dropout */



/* ------------------------------------------------------------------ layernorm (layernorm.c) */

/* ------------------------------------------------------------------ end layernorm */



/* ------------------------------------------------------------------ embedding (embedding.c) */

/* ------------------------------------------------------------------ end embedding */



/* ------------------------------------------------------------------ positions (position.c) */

/* ------------------------------------------------------------------ end positions */



/* ------------------------------------------------------------------ attention (attention.c) */

/* ------------------------------------------------------------------ end attention */



/* ------------------------------------------------------------------ loss (loss.c) */

/* Cross-entropy over the last axis (fused log-softmax + NLL), torch.nn.functional.cross_entropy
 * semantics. Rows are logits (N,V), V >= 1; label_smoothing eps in [0, 1] mixes the target
 * with the uniform distribution: q = (1 - eps) * target + eps / V; loss_n = -sum_c q_c logp_c.
 * Max-subtracted throughout (no overflow for large logits).
 *
 * Id targets: targets (N,) int64 class ids in [0, V), or ignore_index (loss 0, zero gradient).
 * losses (N,) per-row losses; lse (N,) logsumexp of each row (the cache backward may reuse),
 * or NULL; total (scalar) = sum of losses, added in double in row order, or NULL.
 * TC_EINVAL for an id outside [0, V) that is not ignore_index, V < 1 or eps outside [0, 1]. */
int tc_loss_cross_entropy_forward_f32(float *losses, float *lse, double *total,
                                      const float *logits, const int64_t *targets, int64_t N,
                                      int64_t V, int64_t ignore_index, float label_smoothing);
int tc_loss_cross_entropy_forward_f64(double *losses, double *lse, double *total,
                                      const double *logits, const int64_t *targets, int64_t N,
                                      int64_t V, int64_t ignore_index, double label_smoothing);
/* dlogits (N,V) += w_n * (softmax(logits_n) - q_n) for every row not ignored, where
 * w_n = scale * dlosses[n] (dlosses (N,)), or w_n = scale when dlosses is NULL (mean: scale =
 * dloss / rows kept; sum: scale = dloss). lse (N,) from the forward, or NULL to recompute it
 * (in float32 recomputing is more precise when |lse| is large: the cached lse carries a
 * rounding error of |lse| * 2^-24 into every softmax value). */
int tc_loss_cross_entropy_backward_f32(float *dlogits, const float *lse, const float *logits,
                                       const int64_t *targets, const float *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, float label_smoothing,
                                       float scale);
int tc_loss_cross_entropy_backward_f64(double *dlogits, const double *lse, const double *logits,
                                       const int64_t *targets, const double *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, double label_smoothing,
                                       double scale);
/* Probability targets: targets (N,V) class probabilities (soft or one-hot; used as given, the
 * loss is linear in them). losses (N,), lse (N,) or NULL, total or NULL as above. */
int tc_loss_cross_entropy_probs_forward_f32(float *losses, float *lse, double *total,
                                            const float *logits, const float *targets, int64_t N,
                                            int64_t V, float label_smoothing);
int tc_loss_cross_entropy_probs_forward_f64(double *losses, double *lse, double *total,
                                            const double *logits, const double *targets,
                                            int64_t N, int64_t V, double label_smoothing);
/* dlogits (N,V) += w_n * (softmax(logits_n) * sum_c q_nc - q_n), w_n and lse as above. */
int tc_loss_cross_entropy_probs_backward_f32(float *dlogits, const float *lse,
                                             const float *logits, const float *targets,
                                             const float *dlosses, int64_t N, int64_t V,
                                             float label_smoothing, float scale);
int tc_loss_cross_entropy_probs_backward_f64(double *dlogits, const double *lse,
                                             const double *logits, const double *targets,
                                             const double *dlosses, int64_t N, int64_t V,
                                             double label_smoothing, double scale);

/* ------------------------------------------------------------------ end loss */



/* ------------------------------------------------------------------ optimizers (optim.c) */

/* In-place updates over flat arrays of n elements, torch.optim's single-tensor math operation
 * for operation (SGD, Adam, AdamW). Hyper-parameters are double (Python floats), rounded to
 * the array type where torch rounds them. Each element is independent: results do not depend
 * on the thread count. */

/* SGD: g = grad + weight_decay * param; with momentum != 0:
 *   buf = first_step ? g : momentum * buf + (1 - dampening) * g;  g = nesterov ? g + momentum * buf : buf;
 * then param -= lr * g. param (n,), momentum_buffer (n,) (may be NULL only when momentum == 0),
 * grad (n,). TC_EINVAL for n < 0 or a missing buffer. */
int tc_optim_sgd_update_f32(float *param, float *momentum_buffer, const float *grad, int64_t n,
                            double lr, double momentum, double dampening, double weight_decay,
                            int nesterov, int first_step);
int tc_optim_sgd_update_f64(double *param, double *momentum_buffer, const double *grad,
                            int64_t n, double lr, double momentum, double dampening,
                            double weight_decay, int nesterov, int first_step);
/* Adam (torch.optim.Adam, L2 weight decay: g = grad + weight_decay * param):
 *   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2;
 *   param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
 * param, exp_avg, exp_avg_sq (n,) updated in place; grad (n,); step >= 1 is the count of this
 * update (bias corrections computed once per call). TC_EINVAL for n < 0 or step < 1. */
int tc_optim_adam_update_f32(float *param, float *exp_avg, float *exp_avg_sq, const float *grad,
                             int64_t n, int64_t step, double lr, double beta1, double beta2,
                             double eps, double weight_decay);
int tc_optim_adam_update_f64(double *param, double *exp_avg, double *exp_avg_sq,
                             const double *grad, int64_t n, int64_t step, double lr,
                             double beta1, double beta2, double eps, double weight_decay);
/* AdamW (torch.optim.AdamW): param *= 1 - lr * weight_decay first (decoupled), then Adam
 * without L2 decay. Arguments as tc_optim_adam_update. */
int tc_optim_adamw_update_f32(float *param, float *exp_avg, float *exp_avg_sq, const float *grad,
                              int64_t n, int64_t step, double lr, double beta1, double beta2,
                              double eps, double weight_decay);
int tc_optim_adamw_update_f64(double *param, double *exp_avg, double *exp_avg_sq,
                              const double *grad, int64_t n, int64_t step, double lr,
                              double beta1, double beta2, double eps, double weight_decay);
/* *norm = sqrt of the sum of squares of every element of count arrays (arrays[k] has sizes[k]
 * elements), accumulated in double in a fixed order (independent of the thread count). */
int tc_optim_global_norm_f32(double *norm, const float *const *arrays, const int64_t *sizes,
                             int64_t count);
int tc_optim_global_norm_f64(double *norm, const double *const *arrays, const int64_t *sizes,
                             int64_t count);
/* x (n,) *= factor, factor rounded to the array type once (gradient clipping). */
int tc_optim_scale_f32(float *x, int64_t n, double factor);
int tc_optim_scale_f64(double *x, int64_t n, double factor);

/* ------------------------------------------------------------------ end optimizers */

#ifdef __cplusplus
}
#endif

#endif /* TC_H */
