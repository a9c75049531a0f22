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

/* Scaled dot-product attention over (B, NH) batch-heads: T queries, S keys (S may differ
 * from T: cross-attention), DK query/key size, DV value size (DK may differ from DV).
 * q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), out (B,NH,T,DV), lse (B,NH,T).
 *
 * Forward, per batch-head (b,h) and query row i:
 *   s_ij = scale * q_i . k_j  (+ bias[b,h,i,j])
 *   key j is masked (s_ij = -INFINITY, probability exactly 0) when
 *     - causal masking hides it: TC_CAUSAL_TOP_LEFT (torch's is_causal): j > i;
 *       TC_CAUSAL_BOTTOM_RIGHT (the last query sees the last key; KV-cache decoding):
 *       j > i + S - T (rows i < T - S then see no key at all);
 *     - keep[b,h,i,j] == 0 (boolean mask, NONZERO = ATTEND, as torch SDPA), or
 *     - key_padding[b,j] == 0 (nonzero = a real key, 0 = padding), or
 *     - bias[b,h,i,j] == -INFINITY;
 *   P_i = softmax_j(s_ij), lse_i = logsumexp_j(s_ij);
 *   with dropout_p > 0: P_ij *= Z_ij / (1 - dropout_p), Z_ij = 1 iff element
 *     (((b*NH + h)*T + i)*S + j) of the Philox stream of `seed` is kept, i.e. exactly the
 *     mask tc_dropout_forward draws for a (B,NH,T,S) tensor (csrc/rng.h);
 *   out_i = sum_j P_ij v_j.
 * A row whose keys are ALL masked gets out_i = 0 and lse_i = -INFINITY (torch gives NaN
 * there): zeros, not NaN, and in the backward exactly zero gradient from that row.
 * Entries of bias must be finite or -INFINITY (the bindings check).
 *
 * Backward recomputes P from lse, then dv += P~^T dout (P~ = dropped-out P);
 * dP = Z/(1-p) * dout v^T; D_i = dout_i . out_i; dS = P * (dP - D) (the softmax Jacobian is
 * never built); dq += scale dS k; dk += scale dS^T q. Gradients ACCUMULATE (+=).
 *
 * tc_attention_* is the tiled (flash-style) kernel: online softmax over key tiles, extra
 * memory O(T * (DK + DV)) per thread and no (T, S) matrix; tiles every row of which is
 * masked by causality or key padding are skipped (a causal pass does about half the
 * work). Parallel over (batch-head, query-block) work items in the forward and over
 * batch-heads (or a head's key blocks, with per-thread dq partials summed in thread
 * order, when there are few heads) in the backward; bitwise reproducible for a fixed
 * thread count. tc_attention_*_ref materialises each batch-head's (T, S) scores in full:
 * the plain reference the tiled kernel is tested against (same arguments, same results
 * up to rounding). */
enum { TC_CAUSAL_NONE = 0, TC_CAUSAL_TOP_LEFT = 1, TC_CAUSAL_BOTTOM_RIGHT = 2 };

/* Optional masks of one attention call (a NULL pointer, or a NULL tc_attention_masks *,
 * means "not used"). Element (b,h,i,j) of the broadcast (B,NH,T,S) mask is read at
 * b*strides[0] + h*strides[1] + i*strides[2] + j*strides[3] (element strides, 0 to
 * broadcast a dim).
 *   keep:        uint8, nonzero = attend (torch SDPA's boolean attn_mask convention);
 *   bias:        additive float mask in the call's dtype (const float * for _f32,
 *                const double * for _f64), added to the scaled scores;
 *   key_padding: uint8 (B,S), C-contiguous, nonzero = real key, 0 = padding (ignored). */
typedef struct {
    const uint8_t *keep;
    int64_t keep_strides[4];
    const void *bias;
    int64_t bias_strides[4];
    const uint8_t *key_padding;
} tc_attention_masks;

/* out (B,NH,T,DV), lse (B,NH,T), q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV).
 * causal: TC_CAUSAL_*; dropout_p in [0, 1] (1 drops everything); seed: the dropout stream. */
int tc_attention_forward_f32(float *out, float *lse, const float *q, const float *k,
                             const float *v, const tc_attention_masks *masks, int64_t B,
                             int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                             float scale, int causal, double dropout_p, uint64_t seed);
int tc_attention_forward_f64(double *out, double *lse, const double *q, const double *k,
                             const double *v, const tc_attention_masks *masks, int64_t B,
                             int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                             double scale, int causal, double dropout_p, uint64_t seed);
/* dq (B,NH,T,DK), dk (B,NH,S,DK), dv (B,NH,S,DV) accumulated (+=); dout, out (B,NH,T,DV)
 * and lse (B,NH,T) from the forward with the same masks, scale, causal, dropout_p, seed. */
int tc_attention_backward_f32(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              const float *out, const float *lse,
                              const tc_attention_masks *masks, int64_t B, int64_t NH,
                              int64_t T, int64_t S, int64_t DK, int64_t DV, float scale,
                              int causal, double dropout_p, uint64_t seed);
int tc_attention_backward_f64(double *dq, double *dk, double *dv, const double *dout,
                              const double *q, const double *k, const double *v,
                              const double *out, const double *lse,
                              const tc_attention_masks *masks, int64_t B, int64_t NH,
                              int64_t T, int64_t S, int64_t DK, int64_t DV, double scale,
                              int causal, double dropout_p, uint64_t seed);
/* The materialised references: same arguments and semantics as above. */
int tc_attention_forward_ref_f32(float *out, float *lse, const float *q, const float *k,
                                 const float *v, const tc_attention_masks *masks, int64_t B,
                                 int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                                 float scale, int causal, double dropout_p, uint64_t seed);
int tc_attention_forward_ref_f64(double *out, double *lse, const double *q, const double *k,
                                 const double *v, const tc_attention_masks *masks, int64_t B,
                                 int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                                 double scale, int causal, double dropout_p, uint64_t seed);
int tc_attention_backward_ref_f32(float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v,
                                  const float *out, const float *lse,
                                  const tc_attention_masks *masks, int64_t B, int64_t NH,
                                  int64_t T, int64_t S, int64_t DK, int64_t DV, float scale,
                                  int causal, double dropout_p, uint64_t seed);
int tc_attention_backward_ref_f64(double *dq, double *dk, double *dv, const double *dout,
                                  const double *q, const double *k, const double *v,
                                  const double *out, const double *lse,
                                  const tc_attention_masks *masks, int64_t B, int64_t NH,
                                  int64_t T, int64_t S, int64_t DK, int64_t DV, double scale,
                                  int causal, double dropout_p, uint64_t seed);

/* One decoding step against a KV cache. k_cache (B,NH,Smax,DK) and v_cache (B,NH,Smax,DV)
 * hold `pos` valid positions; the TN new positions' keys k_new (B,NH,TN,DK) and values
 * v_new (B,NH,TN,DV) are written into positions [pos, pos + TN) of the caches (in place),
 * then the new queries q (B,NH,TN,DK) attend to every cached position [0, pos + TN) with
 * bottom-right causal masking (query t, at position pos + t, sees positions <= pos + t):
 * out (B,NH,TN,DV). Nothing of the past is recomputed; the result equals rows
 * [pos, pos + TN) of the full causal forward. key_padding: NULL or (B, pos + TN) uint8,
 * nonzero = real position (e.g. to skip left padding of a batch of prompts).
 * TC_EINVAL unless 0 <= pos and pos + TN <= Smax. */
int tc_attention_decode_f32(float *out, float *k_cache, float *v_cache, const float *q,
                            const float *k_new, const float *v_new,
                            const uint8_t *key_padding, int64_t B, int64_t NH, int64_t TN,
                            int64_t Smax, int64_t pos, int64_t DK, int64_t DV, float scale);
int tc_attention_decode_f64(double *out, double *k_cache, double *v_cache, const double *q,
                            const double *k_new, const double *v_new,
                            const uint8_t *key_padding, int64_t B, int64_t NH, int64_t TN,
                            int64_t Smax, int64_t pos, int64_t DK, int64_t DV, double scale);
/* Name of the tile micro-kernels chosen at run time ("avx2+fma" or "generic"). */
const char *tc_attention_kernel_name(void);

/* ------------------------------------------------------------------ end attention */



/* ------------------------------------------------------------------ loss (loss.c) */

/* ------------------------------------------------------------------ end loss */



/* ------------------------------------------------------------------ optimizers (optim.c) */

/* ------------------------------------------------------------------ end optimizers */

#ifdef __cplusplus
}
#endif

#endif /* TC_H */
