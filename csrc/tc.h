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
/* Force the micro-kernel: "generic" (the portable one, for tests), "avx2+fma" (TC_EINVAL if
 * the CPU lacks it), or "auto"/NULL (CPU detection, unless TC_GEMM_KERNEL=generic is set in
 * the environment). Not thread-safe against concurrent products: a test switch. */
int tc_gemm_set_kernel(const char *name);
/* tc_gemm with an epilogue: ep(ctx, i0, j0, m, n) is called once for every finished block
 * C[i0:i0+m, j0:j0+n] (at most 6 x 16 entries, still in L1), by the thread that computed
 * it, right after its last k-block; fused kernels apply bias and activation there.
 * With K == 0 it is called once for the whole of C. ep may be NULL. */
typedef void (*tc_gemm_epilogue_fn)(void *ctx, int64_t i0, int64_t j0, int64_t m, int64_t n);
int tc_gemm_ep_f32(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K,
                   int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                   float alpha, float beta, tc_gemm_epilogue_fn ep, void *ep_ctx);
int tc_gemm_ep_f64(double *C, const double *A, const double *B, int64_t M, int64_t N,
                   int64_t K, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                   double alpha, double beta, tc_gemm_epilogue_fn ep, void *ep_ctx);

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

/* Element-wise on flat arrays (any shape flattened to N elements).
 * relu: out (N,) = max(inp, 0) (NaN propagates); backward: dinp (N,) += dout * (inp > 0),
 * so the gradient at inp == 0 is 0 (PyTorch's convention). */
int tc_relu_forward_f32(float *out, const float *inp, int64_t N);
int tc_relu_forward_f64(double *out, const double *inp, int64_t N);
int tc_relu_backward_f32(float *dinp, const float *dout, const float *inp, int64_t N);
int tc_relu_backward_f64(double *dinp, const double *dout, const double *inp, int64_t N);
/* gelu: out (N,) = gelu(inp (N,)); approximate_tanh = 0: exact 0.5 x (1 + erf(x / sqrt 2)),
 * 1: GPT-2's 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); any other value -> TC_EINVAL.
 * backward: dinp (N,) += dout (N,) * gelu'(inp (N,)). */
int tc_gelu_forward_f32(float *out, const float *inp, int64_t N, int approximate_tanh);
int tc_gelu_forward_f64(double *out, const double *inp, int64_t N, int approximate_tanh);
int tc_gelu_backward_f32(float *dinp, const float *dout, const float *inp, int64_t N,
                         int approximate_tanh);
int tc_gelu_backward_f64(double *dinp, const double *dout, const double *inp, int64_t N,
                         int approximate_tanh);

/* ------------------------------------------------------------------ end activations */



/* ------------------------------------------------------------------ softmax (softmax.c) */

/* Softmax / log-softmax along C of an (outer, C, inner) C-contiguous array: any axis of an
 * n-d array, with outer = prod(shape[:axis]), C = shape[axis], inner = prod(shape[axis+1:]).
 * Forward subtracts the max (no overflow for large inputs); a slice that is all -inf or holds
 * +inf/NaN gives NaN, as torch. Backward takes the forward OUTPUT out and accumulates:
 *   softmax:     dinp += out * (dout - sum_C dout * out)
 *   log-softmax: dinp += dout - exp(out) * sum_C dout */
int tc_softmax_forward_f32(float *out, const float *inp, int64_t outer, int64_t C,
                           int64_t inner);
int tc_softmax_forward_f64(double *out, const double *inp, int64_t outer, int64_t C,
                           int64_t inner);
int tc_softmax_backward_f32(float *dinp, const float *dout, const float *out, int64_t outer,
                            int64_t C, int64_t inner);
int tc_softmax_backward_f64(double *dinp, const double *dout, const double *out, int64_t outer,
                            int64_t C, int64_t inner);
int tc_log_softmax_forward_f32(float *out, const float *inp, int64_t outer, int64_t C,
                               int64_t inner);
int tc_log_softmax_forward_f64(double *out, const double *inp, int64_t outer, int64_t C,
                               int64_t inner);
int tc_log_softmax_backward_f32(float *dinp, const float *dout, const float *out,
                                int64_t outer, int64_t C, int64_t inner);
int tc_log_softmax_backward_f64(double *dinp, const double *dout, const double *out,
                                int64_t outer, int64_t C, int64_t inner);

/* ------------------------------------------------------------------ end softmax */



/* ------------------------------------------------------------------ dropout (dropout.c) */

/* Inverted dropout on flat arrays (any shape flattened to N, C order). Element i is kept iff
 * word i of the Philox4x32-10 stream of `seed` (rng.h) is >= ceil(p * 2^32), i.e. with
 * probability 1 - p; mask[i] = 1 / (1 - p) if kept, else 0 (all 0 for p == 1). The mask is a
 * pure function of (seed, i, p): identical for float32 and float64 and any thread count, and
 * never stored (backward regenerates it). p outside [0, 1] (or NaN) -> TC_EINVAL.
 * forward: out (N,) = inp (N,) * mask; backward: dinp (N,) += dout (N,) * mask;
 * mask: mask (N,) written out, for inspection and tests. */
int tc_dropout_forward_f32(float *out, const float *inp, int64_t N, double p, uint64_t seed);
int tc_dropout_forward_f64(double *out, const double *inp, int64_t N, double p, uint64_t seed);
int tc_dropout_backward_f32(float *dinp, const float *dout, int64_t N, double p, uint64_t seed);
int tc_dropout_backward_f64(double *dinp, const double *dout, int64_t N, double p,
                            uint64_t seed);
int tc_dropout_mask_f32(float *mask, int64_t N, double p, uint64_t seed);
int tc_dropout_mask_f64(double *mask, int64_t N, double p, uint64_t seed);

/* ------------------------------------------------------------------ end dropout */



/* ------------------------------------------------------------------ layernorm (layernorm.c) */

/* Layer normalisation of each row of inp over its C channels (the last axis):
 * out (N,C) = (inp - mean) * rstd * weight (C,) + bias (C,), with mean (N,) the row mean
 * and rstd (N,) = 1/sqrt(biased row variance + eps). Statistics are computed in double
 * (two passes), so rows with a large common offset stay accurate. bias may be NULL; mean
 * and rstd may be NULL (not wanted); out may be NULL to compute only mean and rstd.
 * TC_EINVAL if C < 1 or eps < 0 (or NaN). */
int tc_layernorm_forward_f32(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int64_t N, int64_t C,
                             double eps);
int tc_layernorm_forward_f64(double *out, double *mean, double *rstd, const double *inp,
                             const double *weight, const double *bias, int64_t N, int64_t C,
                             double eps);
/* dinp (N,C) += d/dinp, dweight (C,) += sum_n dout * xhat, dbias (C,) += sum_n dout, given
 * dout (N,C), inp (N,C), weight (C,) and the forward's mean (N,), rstd (N,). Any of dinp,
 * dweight, dbias may be NULL (not wanted). The column sums are split over threads by
 * column, each summed over rows in order: bitwise reproducible for any thread count. */
int tc_layernorm_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int64_t N, int64_t C);
int tc_layernorm_backward_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                              const double *inp, const double *weight, const double *mean,
                              const double *rstd, int64_t N, int64_t C);

/* ------------------------------------------------------------------ end layernorm */



/* ------------------------------------------------------------------ embedding (embedding.c) */

/* out (N,D) = rows of weight (V,D) picked by ids (N,): out[n] = weight[ids[n]].
 * TC_EINVAL (nothing written) if any id lies outside [0, V). */
int tc_embedding_forward_f32(float *out, const int64_t *ids, const float *weight, int64_t N,
                             int64_t V, int64_t D);
int tc_embedding_forward_f64(double *out, const int64_t *ids, const double *weight, int64_t N,
                             int64_t V, int64_t D);
/* dweight (V,D) += scatter-add of dout (N,D) by ids (N,): dweight[ids[n]] += dout[n];
 * repeated ids accumulate. Threads split the D columns, each adding rows in order n = 0..
 * N-1: no atomics, bitwise reproducible for any thread count. TC_EINVAL (nothing written)
 * if any id lies outside [0, V). */
int tc_embedding_backward_f32(float *dweight, const float *dout, const int64_t *ids, int64_t N,
                              int64_t V, int64_t D);
int tc_embedding_backward_f64(double *dweight, const double *dout, const int64_t *ids,
                              int64_t N, int64_t V, int64_t D);

/* ------------------------------------------------------------------ end embedding */



/* ------------------------------------------------------------------ positions (position.c) */

/* out (T,D): sinusoidal position encodings for positions pos = offset + n, n < T:
 * out[n,2k] = sin(pos / base^(2k/D)), out[n,2k+1] = cos(pos / base^(2k/D)); with an odd D
 * the last column is a sin. Angles in double for both dtypes. TC_EINVAL unless base is
 * finite and > 0 and T, D >= 0. */
int tc_position_sinusoidal_f32(float *out, int64_t T, int64_t D, double base, int64_t offset);
int tc_position_sinusoidal_f64(double *out, int64_t T, int64_t D, double base, int64_t offset);
/* out (B,T,D) = inp (B,T,D) + the (T,D) table above (rounded to the dtype first); out may
 * be inp. The backward is the identity (the table has no parameters). */
int tc_position_add_sinusoidal_f32(float *out, const float *inp, int64_t B, int64_t T,
                                   int64_t D, double base, int64_t offset);
int tc_position_add_sinusoidal_f64(double *out, const double *inp, int64_t B, int64_t T,
                                   int64_t D, double base, int64_t offset);

/* ------------------------------------------------------------------ end positions */



/* ------------------------------------------------------------------ attention (attention.c) */

/* Scaled dot-product attention, materialised (the T x S scores of each batch-head are
 * built in full): the reference kernels. BH = batch * heads (any leading dims flattened),
 * T queries, S keys, DK query/key size, DV value size; DK may differ from DV, T from S.
 *
 * Forward, per batch-head: scores = scale * q k^T; with causal, query i sees keys j <= i
 * (top-left alignment, as torch's is_causal, also for T != S) and the others are
 * -INFINITY, i.e. probability exactly 0; P = softmax(scores) row-wise; out = P v;
 * lse = per-row logsumexp of the scaled, masked scores (the cache the backward needs).
 * Under top-left causal masking row i always sees key 0, so a row with no visible key
 * only happens when S == 0: its out row is 0 and its lse is -INFINITY (never NaN).
 * out (BH,T,DV), lse (BH,T), q (BH,T,DK), k (BH,S,DK), v (BH,S,DV) */
int tc_attention_forward_ref_f32(float *out, float *lse, const float *q, const float *k,
                                 const float *v, int64_t BH, int64_t T, int64_t S, int64_t DK,
                                 int64_t DV, float scale, int causal);
int tc_attention_forward_ref_f64(double *out, double *lse, const double *q, const double *k,
                                 const double *v, int64_t BH, int64_t T, int64_t S, int64_t DK,
                                 int64_t DV, double scale, int causal);
/* Backward: recomputes P = exp(scale q k^T - lse) (masked entries exactly 0), then
 * dv += P^T dout; dP = dout v^T; D = rowsum(dout * out); dS = P * (dP - D) (masked
 * entries exactly 0; the softmax Jacobian is never built); dq += scale dS k;
 * dk += scale dS^T q. Gradients ACCUMULATE into buffers the caller zeroed.
 * dq (BH,T,DK), dk (BH,S,DK), dv (BH,S,DV), dout (BH,T,DV), q (BH,T,DK), k (BH,S,DK),
 * v (BH,S,DV), out (BH,T,DV) and lse (BH,T) from the forward */
int tc_attention_backward_ref_f32(float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v,
                                  const float *out, const float *lse, int64_t BH, int64_t T,
                                  int64_t S, int64_t DK, int64_t DV, float scale, int causal);
int tc_attention_backward_ref_f64(double *dq, double *dk, double *dv, const double *dout,
                                  const double *q, const double *k, const double *v,
                                  const double *out, const double *lse, int64_t BH, int64_t T,
                                  int64_t S, int64_t DK, int64_t DV, double scale, int causal);

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

/* ------------------------------------------------------------------ fused (fused.c) */

/* Linear + GELU in one pass: pre (N,OC) = inp (N,C) @ weight^T (OC,C) + bias (OC,),
 * out (N,OC) = gelu(pre), with bias and GELU applied in the GEMM's epilogue (no extra pass
 * over memory). pre may be NULL (inference: nothing cached), bias may be NULL.
 * approximate_tanh 0: exact erf GELU, 1: the tanh form (float32 uses a vectorised tanh
 * accurate to a few ulp); other values TC_EINVAL. */
int tc_linear_gelu_forward_f32(float *out, float *pre, const float *inp, const float *weight,
                               const float *bias, int64_t N, int64_t C, int64_t OC,
                               int approximate_tanh);
int tc_linear_gelu_forward_f64(double *out, double *pre, const double *inp,
                               const double *weight, const double *bias, int64_t N, int64_t C,
                               int64_t OC, int approximate_tanh);
/* Backward: dpre = dout (N,OC) * gelu'(pre) (pre (N,OC) from the forward, or NULL to
 * recompute it from inp, weight, bias), then dinp (N,C) += dpre @ weight, dweight (OC,C) +=
 * dpre^T @ inp, dbias (OC,) += sum_n dpre (each optional, NULL = not wanted). */
int tc_linear_gelu_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *pre, const float *inp, const float *weight,
                                const float *bias, int64_t N, int64_t C, int64_t OC,
                                int approximate_tanh);
int tc_linear_gelu_backward_f64(double *dinp, double *dweight, double *dbias,
                                const double *dout, const double *pre, const double *inp,
                                const double *weight, const double *bias, int64_t N, int64_t C,
                                int64_t OC, int approximate_tanh);
/* Residual add + layernorm: sum (N,C) = x (N,C) + r (N,C) (written out: the residual
 * stream; sum may be x or r itself), out (N,C) = layernorm(sum) with weight (C,), bias (C,)
 * or NULL, mean/rstd (N,) or NULL as tc_layernorm_forward. TC_EINVAL if C < 1 or eps < 0. */
int tc_layernorm_residual_forward_f32(float *out, float *sum, float *mean, float *rstd,
                                      const float *x, const float *r, const float *weight,
                                      const float *bias, int64_t N, int64_t C, double eps);
int tc_layernorm_residual_forward_f64(double *out, double *sum, double *mean, double *rstd,
                                      const double *x, const double *r, const double *weight,
                                      const double *bias, int64_t N, int64_t C, double eps);
/* Backward: g = dsum (N,C) (the gradient reaching sum directly, or NULL for none) + the
 * layernorm gradient of dout (N,C); dx (N,C) += g, dr (N,C) += g (dx may be dr: it then gets
 * 2g); dweight (C,) += sum_n dout * xhat, dbias (C,) += sum_n dout. Any of dx, dr, dweight,
 * dbias may be NULL. sum (N,C), mean, rstd (N,) from the forward. */
int tc_layernorm_residual_backward_f32(float *dx, float *dr, float *dweight, float *dbias,
                                       const float *dout, const float *dsum, const float *sum,
                                       const float *weight, const float *mean,
                                       const float *rstd, int64_t N, int64_t C);
int tc_layernorm_residual_backward_f64(double *dx, double *dr, double *dweight, double *dbias,
                                       const double *dout, const double *dsum,
                                       const double *sum, const double *weight,
                                       const double *mean, const double *rstd, int64_t N,
                                       int64_t C);

/* ------------------------------------------------------------------ end fused */



/* ------------------------------------------------------------------ bench (bench.c) */

/* Peak FP32 FLOP/s of this machine with the current thread count: every thread runs iters
 * rounds of 12 independent 8-wide FMA chains (AVX2+FMA when the CPU has it). *checksum
 * receives a value of the chains (so they are not optimised away). TC_EINVAL if iters < 1. */
int tc_bench_peak_flops(double *flops_per_s, float *checksum, int64_t iters);

/* ------------------------------------------------------------------ end bench */



/* ------------------------------------------------------------------ bpe (bpe.c) */

/* Byte-level BPE as GPT-2: symbols 0..255 are bytes, merge k creates symbol 256 + k from the
 * pair merges[k] = (left, right). Text is UTF-8 bytes (invalid bytes are kept, each a
 * character of class OTHER), split into GPT-2 pre-tokens
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with character classes from the caller's table cls (ncls,) indexed by code point (code
 * points >= ncls and values > 3 are OTHER). No float data, hence no _f32/_f64 variants. */
enum { TC_BPE_CLASS_OTHER = 0, TC_BPE_CLASS_LETTER = 1, TC_BPE_CLASS_NUMBER = 2,
       TC_BPE_CLASS_SPACE = 3 };
/* starts (n+1,): the byte offsets where pre-tokens of text (n,) start, then n; *count of them. */
int tc_bpe_pretokenize(int64_t *starts, int64_t *count, const uint8_t *text, int64_t n,
                       const uint8_t *cls, int64_t ncls);
/* Train: documents text[doc_offsets[d] : doc_offsets[d+1]] for d < n_docs (each pre-tokenised
 * on its own); merges (max_merges, 2) and counts (max_merges,) receive up to max_merges merges
 * and the corpus frequency of each pair when merged; *n_merges how many were made. Each step
 * merges the most frequent adjacent pair (ties: smallest left id, then smallest right id),
 * replacing its occurrences left to right; it stops early when no pair occurs min_count times. */
int tc_bpe_train(int32_t *merges, int64_t *counts, int64_t *n_merges, const uint8_t *text,
                 const int64_t *doc_offsets, int64_t n_docs, const uint8_t *cls, int64_t ncls,
                 int64_t max_merges, int64_t min_count);
/* An immutable encoder built from merges (n_merges, 2) (each pair once, using only bytes and
 * earlier merges, else TC_EINVAL) and a copy of cls (ncls,); safe to share between threads. */
typedef struct tc_bpe tc_bpe;
int tc_bpe_new(tc_bpe **bpe, const int32_t *merges, int64_t n_merges, const uint8_t *cls,
               int64_t ncls);
void tc_bpe_free(tc_bpe *bpe);
int64_t tc_bpe_vocab_size(const tc_bpe *bpe); /* 256 + n_merges */
/* ids (n,) receives the *count (<= n) ids of text (n,): merges applied in order, per
 * pre-token; long texts are split at pre-token boundaries and encoded by several threads
 * (same result for any thread count). */
int tc_bpe_encode(int32_t *ids, int64_t *count, const tc_bpe *bpe, const uint8_t *text,
                  int64_t n);
/* *size = number of bytes ids (n,) decode to; tc_bpe_decode writes them into out (size,).
 * An id outside [0, vocab size) is TC_EINVAL. */
int tc_bpe_decode_size(int64_t *size, const tc_bpe *bpe, const int64_t *ids, int64_t n);
int tc_bpe_decode(uint8_t *out, const tc_bpe *bpe, const int64_t *ids, int64_t n);

/* ------------------------------------------------------------------ end bpe */

#ifdef __cplusplus
}
#endif

#endif /* TC_H */
