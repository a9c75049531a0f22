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
 *    branches and gradient accumulation need no extra buffers. Every backward kernel takes
 *    ONE write-or-accumulate flag, its last argument `int write` (the GEMM's beta, for
 *    several outputs): a bitmask over its gradient outputs in argument order. Bit k clear:
 *    the k-th gradient output accumulates (+=); bit k set (TC_WRITE(k)): it is WRITTEN,
 *    its old content never read (garbage and NaN are fine), with exactly the bits
 *    accumulating into zeros gives (0 + value: even signed zeros agree), and the caller
 *    needs no zeroing pass (the hot kernels - linear, linear+GELU, layernorm's dinp,
 *    softmax, activations, dropout, attention - write directly; the others zero the
 *    output inside, then accumulate). write = TC_ACCUMULATE (0) accumulates everything
 *    (the default above); TC_WRITE_ALL writes every output. Bits past a kernel's outputs
 *    are ignored; NULL (not wanted) outputs are skipped;
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

/* The `write` flag of the backward kernels (conventions above). */
#define TC_ACCUMULATE 0
#define TC_WRITE(k) (1 << (k))
#define TC_WRITE_ALL (~0)

/* ------------------------------------------------------------------ options (core/options.c) */

/* Every choice a layer or model driver makes is one enum here, and one table of names
 * (tc_option_name) that the Python package reads (transformer_c._C.OPTIONS, then
 * transformer_c.options): the names are spelt once, in C, and every module, config, CLI
 * flag and checkpoint uses them. A value outside [0, TC_<KIND>_COUNT) is TC_EINVAL wherever
 * it is passed. Masks have one polarity in the public API: True / nonzero = attend (a real
 * key); the coursework convention (True = masked) is only in helpers that say so in their
 * names. */
/* The feed-forward activations, one line each: X(ENUM, name, formula). The list makes the
 * enum (TC_ACT_<ENUM>, in this order: append, never reorder, checkpoints store names but C
 * callers store numbers), the option names, the kernel table (kernels/activation.c: the
 * kernels FN(act_<name>_forward) / FN(act_<name>_backward) of activation_impl.h) and the
 * Python functions (functional.<name>, functional.<name>_backward, documented by the
 * formula). Adding an activation: CONTRIBUTING.md. */
#define TC_ACTIVATIONS(X)                                                                   \
    X(GELU_TANH, gelu_tanh, "GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))") \
    X(GELU, gelu, "GELU, exact: 0.5 x (1 + erf(x / sqrt(2)))")                             \
    X(RELU, relu, "ReLU: max(x, 0)")                                                        \
    X(SILU, silu, "SiLU (swish): x sigmoid(x) = x / (1 + exp(-x))")                     \
    X(RELU2, relu2, "squared ReLU (Primer): max(x, 0)^2")
typedef enum {
#define TC_ACT_ENUM_(E, name, formula) TC_ACT_##E,
    TC_ACTIVATIONS(TC_ACT_ENUM_)
#undef TC_ACT_ENUM_
    TC_ACT_COUNT
} tc_activation;
typedef enum {                 /* where a block's layer norms sit */
    TC_NORM_PRE = 0,           /* "pre": x += f(norm(x)), and a final norm (GPT-2) */
    TC_NORM_POST = 1,          /* "post": x = norm(x + f(x)) (the original Transformer) */
    TC_NORM_COUNT
} tc_norm_placement;
typedef enum {                 /* how a model encodes positions */
    TC_POS_LEARNED = 0,        /* "learned": a wpe table added to the token embeddings */
    TC_POS_SINUSOIDAL = 1,     /* "sinusoidal": the fixed sin/cos table, added */
    TC_POS_ROPE = 2,           /* "rope": q and k rotated in every attention */
    TC_POS_NONE = 3,           /* "none": no position information (GPT only; causal
                                * attention alone tells positions apart) */
    TC_POS_COUNT
} tc_position;
typedef enum {                 /* causal masking of an attention call (attention.c) */
    TC_CAUSAL_NONE = 0,        /* "none" */
    TC_CAUSAL_TOP_LEFT = 1,    /* "top_left": query i sees keys j <= i (torch's is_causal) */
    TC_CAUSAL_BOTTOM_RIGHT = 2, /* "bottom_right": j <= i + S - T (the last query sees all) */
    TC_CAUSAL_COUNT
} tc_causal;
typedef enum {                 /* how an encoder classifier (BERT) pools its hidden states */
    TC_POOL_CLS = 0,           /* "cls": the hidden state of the first token ([CLS]) */
    TC_POOL_MEAN = 1,          /* "mean": the mean over the real (unpadded) tokens */
    TC_POOL_COUNT
} tc_pooling;
/* The attention patterns of a model's self-attention, one line each: X(ENUM, name, what).
 * Append, never reorder (as TC_ACTIVATIONS). */
#define TC_ATTENTIONS(X)                                                                    \
    X(DENSE, dense, "dense: every query sees every key (causal and padding masks aside)")   \
    X(BLOCK_SPARSE, block_sparse, "block-sparse: a local window of blocks plus strided and global blocks (tc_attention_sparse); empty tiles skipped")
typedef enum {
#define TC_ATTN_ENUM_(E, name, what) TC_ATTN_##E,
    TC_ATTENTIONS(TC_ATTN_ENUM_)
#undef TC_ATTN_ENUM_
    TC_ATTN_COUNT
} tc_attention_kind;
typedef enum {                 /* a block's feed-forward sublayer */
    TC_FFN_MLP = 0,            /* "mlp": the dense MLP (C -> H -> C) */
    TC_FFN_MOE = 1,            /* "moe": a mixture of experts over that MLP (moe.c) */
    TC_FFN_COUNT
} tc_ffn;
typedef enum {                 /* a model's normalisation layers (norm_type) */
    TC_NORM_TYPE_LAYERNORM = 0, /* "layernorm": (x - mean) / sqrt(var + eps) w + b */
    TC_NORM_TYPE_RMSNORM = 1,   /* "rmsnorm": x / sqrt(mean(x^2) + eps) w + b (rmsnorm.c) */
    TC_NORM_TYPE_COUNT
} tc_norm_type;
typedef enum { TC_OPT_ACTIVATION = 0, TC_OPT_NORM, TC_OPT_POSITION, TC_OPT_CAUSAL,
               TC_OPT_POOLING, TC_OPT_ATTENTION, TC_OPT_FFN, TC_OPT_NORM_TYPE,
               TC_OPT_COUNT } tc_option_kind;
/* The name of value v of option kind ("activation", "norm", "position", "causal",
 * "pooling", "attention", "ffn", "norm_type" for tc_option_kind_name), NULL when kind or v is out of
 * range. */
const char *tc_option_kind_name(int kind);
const char *tc_option_name(int kind, int v);
/* Number of values of kind (TC_<KIND>_COUNT), 0 when kind is out of range. */
int tc_option_count(int kind);
/* The formula of activation act (TC_ACTIVATIONS' third column), NULL out of range. */
const char *tc_activation_formula(int act);

/* ------------------------------------------------------------------ threads */

/* The number of OpenMP threads every kernel uses, for the whole process (every calling
 * thread): TC_EINVAL (nothing changed) unless 1 <= n <= tc_max_num_threads(). */
int tc_set_num_threads(int n);
/* The count set by tc_set_num_threads, or OpenMP's default (omp_get_max_threads) if unset. */
int tc_get_num_threads(void);
/* The largest count tc_set_num_threads accepts: max(1024, 4 x the processors). */
int tc_max_num_threads(void);
/* The OpenMP version of this build (_OPENMP, yyyymm: the compiler and its runtime were found
 * by setup.py's compile-and-link probe), 0 for a serial build (no OpenMP, or TC_NO_OPENMP=1 at build
 * time): then every kernel runs on the calling thread, tc_get_num_threads() is 1 and
 * tc_set_num_threads only records the count (the bindings warn for n > 1). */
int tc_openmp_version(void);
/* Apply the process-wide count to the calling thread (OpenMP's setting is per thread):
 * every entry point calls it before its parallel regions (the bindings do, bind.h); a
 * no-op while the count is unset or already applied, or inside a parallel region. */
void tc_sync_num_threads(void);
/* Whether the GPT / encoder-decoder fast paths may run a batch data-parallel (each thread a
 * whole pass over its rows, one extra gradient buffer per extra thread; model_common.h).
 * On by default; off: one pass with every kernel parallel inside. */
void tc_set_data_parallel(int on);
int tc_get_data_parallel(void);
/* Whether a parallel region of `work` units should use the threads: work >= min_work (the
 * kernel's idle-machine crossover), more than one thread, not inside a parallel region, and,
 * with the contention guard on, a free core on the machine for every thread but the caller
 * (core/threads.c). Asked only by kernels whose results do not depend on the thread count. */
int tc_parallel_worth(double work, double min_work);
/* The contention guard: on by default, unless TC_THREAD_GUARD=0 is in the environment. */
void tc_set_thread_guard(int on);
int tc_get_thread_guard(void);
/* Other processes' runnable tasks at the guard's last reading (/proc/loadavg's less this
 * process's runnable threads; -1: no reading yet, or no /proc/loadavg). */
int tc_thread_guard_others(void);

/* ------------------------------------------------------------------ fpenv (core/fpenv.c) */

/* Subnormal numbers flushed to zero inside the whole-model C paths (GPT and encoder-decoder
 * forward, loss_and_grads, inspect): on by default, unless TC_FLUSH_SUBNORMALS=0 is in the
 * environment. x86 only (MXCSR FTZ and DAZ); core/fpenv.c says why. */
void tc_set_flush_subnormals(int on);
int tc_get_flush_subnormals(void);
/* Enter a scope of `work` FLOPs (an estimate of the call's): FTZ and DAZ on the calling
 * thread, and on the OpenMP team when the call's parallel regions would use it
 * (tc_parallel_worth; when the switch is on); returns the state tc_fp_leave needs to put the
 * previous bits back on exactly the threads enter touched. work 0: the calling thread only. */
unsigned tc_fp_enter(double work);
void tc_fp_leave(unsigned state);
/* How many times tc_fp_enter has set the team's bits (the tests watch it). */
unsigned long tc_fp_team_entries(void);

/* ------------------------------------------------------------------ cpu (core/cpu.c) */

/* The one CPU-dispatch point. Every family with an instruction-set-specific variant (the
 * GEMM micro-kernel and packers, the attention tiles, the vectorised row kernels of
 * softmax, activations, layernorm and the loss, the fused kernels, the decode
 * matrix-vector products, the peak-FLOP/s bench) runs its fast variant iff
 * tc_cpu_pick(family): the build has one for that family, the CPU has the instruction set
 * (probed once) and the portable override is off. The fast variants are AVX2+FMA on x86-64
 * ("avx2+fma", every family) and NEON on AArch64 ("neon": the GEMM micro-kernel and the FMA
 * row kernels of softmax, activations and the loss; the other families run their portable
 * code there); there are none in a TC_PORTABLE_ONLY build or on other CPUs. The override
 * forces the portable kernels in every family at once: the environment variable
 * TC_PORTABLE=1 (or the older spelling TC_GEMM_KERNEL=generic), read once at the first
 * query, or tc_cpu_set_portable(1). A test and tuning switch: not to be flipped while
 * kernels run. */
typedef enum {
    TC_CPU_GEMM = 0, TC_CPU_ATTENTION, TC_CPU_SOFTMAX, TC_CPU_ACTIVATION, TC_CPU_LAYERNORM,
    TC_CPU_LOSS, TC_CPU_FUSED, TC_CPU_DECODE, TC_CPU_BENCH, TC_CPU_FAMILY_COUNT
} tc_cpu_family;
/* the CPU has the build's fast instruction set (AVX2+FMA / NEON), its name ("avx2+fma",
 * "neon"; NULL if the build has none), and whether it is used (the override is off) */
int tc_cpu_has_fast(void);
const char *tc_cpu_fast_name(void);
int tc_cpu_use_fast(void);
/* the same for AVX2+FMA only (0 on every other CPU) */
int tc_cpu_has_avx2(void);
int tc_cpu_use_avx2(void);
/* The GEMM family's one level above AVX2+FMA: the AVX-512F micro-kernel (x86-64 with
 * avx512f; both dtypes, bitwise the AVX2+FMA kernel's results), and with it the peak-FLOP/s
 * bench's 16-wide FMA loop (which measures what the GEMM can reach). has: the CPU (and build)
 * has it; use: the products run it now (has, the portable override off and the AVX-512 cap
 * off). tc_cpu_set_avx512: 0 caps the GEMM at AVX2+FMA, 1 lifts the cap (TC_EINVAL without
 * avx512f), -1 the environment's choice again (TC_GEMM_KERNEL=avx2+fma caps it, read at
 * the next query). */
int tc_cpu_has_avx512(void);
int tc_cpu_use_avx512(void);
int tc_cpu_set_avx512(int on);
/* on 1: force the portable kernels; 0: the CPU's best; -1: the environment's choice again
 * (read anew at the next query). TC_EINVAL otherwise. */
int tc_cpu_set_portable(int on);
int tc_cpu_get_portable(void);
/* whether family runs its fast variant now (it has one and tc_cpu_use_fast()), remembered
 * as family's last choice (what a kernel calls to dispatch). */
int tc_cpu_pick(int family);
/* "avx512" (the GEMM and bench families only), "avx2+fma", "neon" or "generic": what family last ran
 * (NULL if it has not run; any
 * family < 0: what would run now; always "generic" for a family without a fast variant in
 * this build, e.g. every family of a TC_PORTABLE_ONLY build); tc_cpu_family_name: "gemm",
 * "attention", ... (NULL out of range). */
const char *tc_cpu_kernel_name(int family);
const char *tc_cpu_family_name(int family);

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
/* The micro-kernel the next product runs ("avx512", "avx2+fma", "neon" or "generic";
 * tc_cpu_kernel_name(-1) unless "avx512"). tc_gemm_set_kernel: the cpu override by name (it applies to every family):
 * "generic" = tc_cpu_set_portable(1), "avx2+fma" / "neon" = (0) (TC_EINVAL unless it is the
 * build's fast variant and the CPU has it; "avx2+fma" also caps the GEMM below AVX-512:
 * tc_cpu_set_avx512(0)), "avx512" = (0) and tc_cpu_set_avx512(1) (TC_EINVAL without
 * avx512f), "auto"/NULL = (-1) for both. The environment's TC_GEMM_KERNEL=avx2+fma is the
 * cap, =generic the portable override. */
const char *tc_gemm_kernel_name(void);
int tc_gemm_set_kernel(const char *name);
/* tc_gemm with an epilogue: ep(ctx, i0, j0, m, n) is called once for every finished block
 * C[i0:i0+m, j0:j0+n] (a column of at most one micro-panel's width, 16 floats / 8 doubles,
 * by at most one row block, 144 / 72 rows: still in L1 / L2), by the thread that computed
 * it, right after its last k-block; fused kernels apply bias and activation there.
 * With K == 0 it is called once for the whole of C. ep may be NULL. */
/* Packed GEMM panels (for tests of the packers): side 0, dst (ceil(n/6), kc, 6) <- the A
 * block of rows [0,n) x cols [0,kc) of A viewed with strides (rs, cs), each panel of 6
 * rows zero-padded past n; side 1, dst
 * (kc, NR) <- rows [0,kc) x cols [0,n) of B (strides rs, cs), NR = 16 (f32) / 8 (f64),
 * n <= NR. The fast (AVX2) packers run with the AVX2 kernel, the portable ones with the
 * portable kernel. */
int tc_gemm_pack_panel_f32(float *dst, const float *src, int64_t rs, int64_t cs, int64_t n,
                           int64_t kc, int side);
int tc_gemm_pack_panel_f64(double *dst, const double *src, int64_t rs, int64_t cs, int64_t n,
                           int64_t kc, int side);
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
 * Any of dinp, dweight, dbias may be NULL (not wanted). write: TC_WRITE(0) dinp,
 * TC_WRITE(1) dweight, TC_WRITE(2) dbias (conventions above). */
int tc_linear_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int64_t N, int64_t C, int64_t OC,
                           int write);
int tc_linear_backward_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                           const double *inp, const double *weight, int64_t N, int64_t C, int64_t OC,
                           int write);

/* ------------------------------------------------------------------ activations (activation.c) */

/* Element-wise on flat arrays (any shape flattened to N elements).
 * relu: out (N,) = max(inp, 0) (NaN propagates); backward: dinp (N,) += dout * (inp > 0),
 * so the gradient at inp == 0 is 0 (PyTorch's convention). write: TC_WRITE(0) dinp. */
int tc_relu_forward_f32(float *out, const float *inp, int64_t N);
int tc_relu_forward_f64(double *out, const double *inp, int64_t N);
int tc_relu_backward_f32(float *dinp, const float *dout, const float *inp, int64_t N,
                         int write);
int tc_relu_backward_f64(double *dinp, const double *dout, const double *inp, int64_t N,
                         int write);
/* gelu: out (N,) = gelu(inp (N,)); approximate_tanh = 0: exact 0.5 x (1 + erf(x / sqrt 2)),
 * 1: GPT-2's 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); any other value -> TC_EINVAL.
 * backward: dinp (N,) (+)= dout (N,) * gelu'(inp (N,)) (write as for relu). */
int tc_gelu_forward_f32(float *out, const float *inp, int64_t N, int approximate_tanh);
int tc_gelu_forward_f64(double *out, const double *inp, int64_t N, int approximate_tanh);
int tc_gelu_backward_f32(float *dinp, const float *dout, const float *inp, int64_t N,
                         int approximate_tanh, int write);
int tc_gelu_backward_f64(double *dinp, const double *dout, const double *inp, int64_t N,
                         int approximate_tanh, int write);
/* The plain references (activation_ref.h; act a tc_activation; backward writes dinp). */
int tc_activation_forward_ref_f32(float *out, const float *inp, int64_t N, int act);
int tc_activation_forward_ref_f64(double *out, const double *inp, int64_t N, int act);
int tc_activation_backward_ref_f32(float *dinp, const float *dout, const float *inp, int64_t N,
                                   int act);
int tc_activation_backward_ref_f64(double *dinp, const double *dout, const double *inp,
                                   int64_t N, int act);

/* The activation table: activation act (a TC_ACT_* value) through one table indexed by
 * tc_activation (activation.c), the kernels above bitwise; TC_EINVAL for any other act.
 * forward: out (N,) = act(inp (N,)) (out may be inp); backward: dinp (N,) (+)= dout (N,) *
 * act'(inp (N,)) (write: TC_WRITE(0) dinp). */
int tc_activation_forward_f32(int act, float *out, const float *inp, int64_t N);
int tc_activation_forward_f64(int act, double *out, const double *inp, int64_t N);
int tc_activation_backward_f32(int act, float *dinp, const float *dout, const float *inp,
                               int64_t N, int write);
int tc_activation_backward_f64(int act, double *dinp, const double *dout, const double *inp,
                               int64_t N, int write);
/* Whether act has a fused linear + activation pair (the table's fused column): 1 it has
 * (tc_linear_activation_* below), 0 it has not (run tc_linear_forward, then the activation),
 * TC_EINVAL for an unknown act. */
int tc_linear_activation_fused(int act);
/* The fused pair of act (TC_EINVAL if it has none): out (N,OC) = act(pre), pre = inp (N,C) @
 * weight^T (OC,C) + bias (OC,) (bias may be NULL), and dact (N,OC) = act'(pre) for the
 * backward, or dact NULL (inference); backward: dpre = dout (N,OC) * dact, then dinp (N,C),
 * dweight (OC,C), dbias (OC,) (each optional) as tc_linear_backward_dact (`write`). */
int tc_linear_activation_forward_f32(int act, float *out, float *dact, const float *inp,
                                     const float *weight, const float *bias, int64_t N,
                                     int64_t C, int64_t OC);
int tc_linear_activation_forward_f64(int act, double *out, double *dact, const double *inp,
                                     const double *weight, const double *bias, int64_t N,
                                     int64_t C, int64_t OC);
int tc_linear_activation_backward_f32(int act, float *dinp, float *dweight, float *dbias,
                                      const float *dout, const float *dact, const float *inp,
                                      const float *weight, int64_t N, int64_t C, int64_t OC,
                                      int write);
int tc_linear_activation_backward_f64(int act, double *dinp, double *dweight, double *dbias,
                                      const double *dout, const double *dact, const double *inp,
                                      const double *weight, int64_t N, int64_t C, int64_t OC,
                                      int write);

/* Gated activations (glu.c; the GLU family of gated MLPs: SwiGLU = silu, GeGLU = gelu, ReGLU
 * = relu), act any TC_ACT_* value (else TC_EINVAL), flat arrays:
 * forward: out (N,) = act(gate (N,)) * up (N,); actg (N,) <- act(gate) for the backward, or
 * NULL. backward: dgate (N,) (+)= dout (N,) * up * act'(gate), dup (N,) (+)= dout * act(gate)
 * (actg: the forward's cache, or NULL: recomputed; dgate or dup may be NULL; dup may be
 * dout itself, updated in place, dgate may not); write:
 * TC_WRITE(0) dgate, TC_WRITE(1) dup. The _ref functions are the plain references (per
 * element in double from the activation references; the backward writes, ignores actg). */
int tc_glu_forward_f32(int act, float *out, float *actg, const float *gate, const float *up,
                       int64_t N);
int tc_glu_forward_f64(int act, double *out, double *actg, const double *gate,
                       const double *up, int64_t N);
int tc_glu_backward_f32(int act, float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, const float *actg, int64_t N, int write);
int tc_glu_backward_f64(int act, double *dgate, double *dup, const double *dout,
                        const double *gate, const double *up, const double *actg, int64_t N,
                        int write);
int tc_glu_forward_ref_f32(int act, float *out, float *actg, const float *gate, const float *up,
                           int64_t N);
int tc_glu_forward_ref_f64(int act, double *out, double *actg, const double *gate,
                           const double *up, int64_t N);
int tc_glu_backward_ref_f32(int act, float *dgate, float *dup, const float *dout,
                            const float *gate, const float *up, int64_t N);
int tc_glu_backward_ref_f64(int act, double *dgate, double *dup, const double *dout,
                            const double *gate, const double *up, int64_t N);

/* ------------------------------------------------------------------ end activations */



/* ------------------------------------------------------------------ softmax (softmax.c) */

/* Softmax / log-softmax along C of an (outer, C, inner) C-contiguous array: any axis of an
 * n-d array, with outer = prod(shape[:axis]), C = shape[axis], inner = prod(shape[axis+1:]).
 * Forward subtracts the max (no overflow for large inputs); a slice that is all -inf or holds
 * +inf/NaN gives NaN, as torch. Backward takes the forward OUTPUT out (write: TC_WRITE(0)
 * dinp):
 *   softmax:     dinp += out * (dout - sum_C dout * out)
 *   log-softmax: dinp += dout - exp(out) * sum_C dout */
int tc_softmax_forward_f32(float *out, const float *inp, int64_t outer, int64_t C,
                           int64_t inner);
int tc_softmax_forward_f64(double *out, const double *inp, int64_t outer, int64_t C,
                           int64_t inner);
int tc_softmax_backward_f32(float *dinp, const float *dout, const float *out, int64_t outer,
                            int64_t C, int64_t inner, int write);
int tc_softmax_backward_f64(double *dinp, const double *dout, const double *out, int64_t outer,
                            int64_t C, int64_t inner, int write);
int tc_log_softmax_forward_f32(float *out, const float *inp, int64_t outer, int64_t C,
                               int64_t inner);
int tc_log_softmax_forward_f64(double *out, const double *inp, int64_t outer, int64_t C,
                               int64_t inner);
int tc_log_softmax_backward_f32(float *dinp, const float *dout, const float *out,
                                int64_t outer, int64_t C, int64_t inner, int write);
int tc_log_softmax_backward_f64(double *dinp, const double *dout, const double *out,
                                int64_t outer, int64_t C, int64_t inner, int write);
/* out (N,) = exp(inp (N,)) through the shared vector exp of vec_math.h (the softmax,
 * cross-entropy and activation kernels use it); for tests of its accuracy. */
int tc_vec_exp_f32(float *out, const float *inp, int64_t N);
int tc_vec_exp_f64(double *out, const double *inp, int64_t N);
/* The plain references (softmax_ref.h; is_log selects log-softmax; backward writes dinp). */
int tc_softmax_forward_ref_f32(float *out, const float *inp, int64_t outer, int64_t C,
                               int64_t inner, int is_log);
int tc_softmax_forward_ref_f64(double *out, const double *inp, int64_t outer, int64_t C,
                               int64_t inner, int is_log);
int tc_softmax_backward_ref_f32(float *dinp, const float *dout, const float *out, int64_t outer,
                                int64_t C, int64_t inner, int is_log);
int tc_softmax_backward_ref_f64(double *dinp, const double *dout, const double *out,
                                int64_t outer, int64_t C, int64_t inner, int is_log);

/* ------------------------------------------------------------------ end softmax */



/* ------------------------------------------------------------------ dropout (dropout.c) */

/* Inverted dropout on flat arrays (any shape flattened to N, C order). Element i is kept iff
 * word i of the Philox4x32-10 stream of `seed` (rng.h) is >= ceil(p * 2^32), i.e. with
 * probability 1 - p; mask[i] = 1 / (1 - p) if kept, else 0 (all 0 for p == 1). The mask is a
 * pure function of (seed, i, p): identical for float32 and float64 and any thread count, and
 * never stored (backward regenerates it). p outside [0, 1] (or NaN) -> TC_EINVAL.
 * forward: out (N,) = inp (N,) * mask; backward: dinp (N,) += dout (N,) * mask (write:
 * TC_WRITE(0) dinp); mask: mask (N,) written out, for inspection and tests. */
int tc_dropout_forward_f32(float *out, const float *inp, int64_t N, double p, uint64_t seed);
int tc_dropout_forward_f64(double *out, const double *inp, int64_t N, double p, uint64_t seed);
int tc_dropout_backward_f32(float *dinp, const float *dout, int64_t N, double p, uint64_t seed,
                            int write);
int tc_dropout_backward_f64(double *dinp, const double *dout, int64_t N, double p,
                            uint64_t seed, int write);
int tc_dropout_mask_f32(float *mask, int64_t N, double p, uint64_t seed);
int tc_dropout_mask_f64(double *mask, int64_t N, double p, uint64_t seed);
/* The same from element `first` of the stream on: element i of the arrays uses word
 * first + i (a slice [first, first + N) of a larger array gets exactly its masks). */
int tc_dropout_forward_at_f32(float *out, const float *inp, int64_t N, double p,
                              uint64_t seed, uint64_t first);
int tc_dropout_forward_at_f64(double *out, const double *inp, int64_t N, double p,
                              uint64_t seed, uint64_t first);
int tc_dropout_backward_at_f32(float *dinp, const float *dout, int64_t N, double p,
                               uint64_t seed, uint64_t first, int write);
int tc_dropout_backward_at_f64(double *dinp, const double *dout, int64_t N, double p,
                               uint64_t seed, uint64_t first, int write);
/* The plain references (dropout_ref.h; backward writes dinp). */
int tc_dropout_forward_ref_f32(float *out, const float *inp, int64_t N, double p,
                               uint64_t seed);
int tc_dropout_forward_ref_f64(double *out, const double *inp, int64_t N, double p,
                               uint64_t seed);
int tc_dropout_backward_ref_f32(float *dinp, const float *dout, int64_t N, double p,
                                uint64_t seed);
int tc_dropout_backward_ref_f64(double *dinp, const double *dout, int64_t N, double p,
                                uint64_t seed);

/* ------------------------------------------------------------------ end dropout */



/* ------------------------------------------------------------------ layernorm (layernorm.c) */

/* Layer normalisation of each row of inp over its C channels (the last axis):
 * out (N,C) = (inp - mean) * rstd * weight (C,) + bias (C,), with mean (N,) the row mean
 * and rstd (N,) = 1/sqrt(biased row variance + eps). Two passes over each row (in cache):
 * the mean in double, then the squared deviations from it (in T; again in double if that
 * overflows), so rows with a large common offset stay accurate. bias may be NULL; mean
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
 * dweight, dbias may be NULL (not wanted). write: TC_WRITE(0) dinp, TC_WRITE(1) dweight,
 * TC_WRITE(2) dbias. The column sums are taken per chunk of 32 rows (in the pass that
 * computes dinp) and the chunks added in order: bitwise reproducible for any thread count.
 * TC_ENOMEM if the chunk sums cannot be allocated. */
int tc_layernorm_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int64_t N, int64_t C, int write);
int tc_layernorm_backward_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                              const double *inp, const double *weight, const double *mean,
                              const double *rstd, int64_t N, int64_t C, int write);

/* The plain references (layernorm_ref.h; mean, rstd required; backward writes all three). */
int tc_layernorm_forward_ref_f32(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t N, int64_t C,
                                 double eps);
int tc_layernorm_forward_ref_f64(double *out, double *mean, double *rstd, const double *inp,
                                 const double *weight, const double *bias, int64_t N, int64_t C,
                                 double eps);
int tc_layernorm_backward_ref_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int64_t N, int64_t C);
int tc_layernorm_backward_ref_f64(double *dinp, double *dweight, double *dbias,
                                  const double *dout, const double *inp, const double *weight,
                                  const double *mean, const double *rstd, int64_t N,
                                  int64_t C);
/* ------------------------------------------------------------------ end layernorm */

/* ------------------------------------------------------------------ rmsnorm (rmsnorm.c) */

/* RMS normalisation (norm_type "rmsnorm"; torch.nn.functional.rms_norm, plus an optional
 * bias): out (N,C) = inp * rstd * weight (C,) + bias (C,), rstd (N,) = 1/sqrt(mean_c(inp^2)
 * + eps). The sum of squares in double. bias, rstd may be NULL; out may be NULL (rstd
 * only). TC_EINVAL if C < 1 or eps < 0 (or NaN). */
int tc_rmsnorm_forward_f32(float *out, float *rstd, const float *inp, const float *weight,
                           const float *bias, int64_t N, int64_t C, double eps);
int tc_rmsnorm_forward_f64(double *out, double *rstd, const double *inp, const double *weight,
                           const double *bias, int64_t N, int64_t C, double eps);
/* dinp (N,C) += rstd * (g - xhat * mean_c(g * xhat)) with g = dout * weight, xhat = inp *
 * rstd; dweight (C,) += sum_n dout * xhat; dbias (C,) += sum_n dout; any may be NULL.
 * write: TC_WRITE(0/1/2) for dinp/dweight/dbias. Column sums per chunk of 32 rows, added in
 * order: reproducible for any thread count. TC_ENOMEM if the chunk sums cannot be
 * allocated. */
int tc_rmsnorm_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *rstd,
                            int64_t N, int64_t C, int write);
int tc_rmsnorm_backward_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight, const double *rstd,
                            int64_t N, int64_t C, int write);
/* QK-norm: the same normalisation (no bias) of every head vector of a token-major buffer:
 * N rows of G vectors of C elements, vector (n,g) of inp at inp + n*ld_inp + g*C (of out at
 * out + n*ld_out + g*C; ld >= G*C), rstd (N,G) or NULL, weight (C,) shared by all heads.
 * out may be inp (with ld_out == ld_inp). The backward's dinp (at ld_dinp) may be dout;
 * dout and inp share the stride ld; dweight (C,) or NULL; write bits as above (0, 1). */
int tc_rmsnorm_heads_forward_f32(float *out, int64_t ld_out, float *rstd, const float *inp,
                                 int64_t ld_inp, const float *weight, int64_t N, int64_t G,
                                 int64_t C, double eps);
int tc_rmsnorm_heads_forward_f64(double *out, int64_t ld_out, double *rstd, const double *inp,
                                 int64_t ld_inp, const double *weight, int64_t N, int64_t G,
                                 int64_t C, double eps);
int tc_rmsnorm_heads_backward_f32(float *dinp, int64_t ld_dinp, float *dweight,
                                  const float *dout, const float *inp, int64_t ld,
                                  const float *weight, const float *rstd, int64_t N, int64_t G,
                                  int64_t C, int write);
int tc_rmsnorm_heads_backward_f64(double *dinp, int64_t ld_dinp, double *dweight,
                                  const double *dout, const double *inp, int64_t ld,
                                  const double *weight, const double *rstd, int64_t N,
                                  int64_t G, int64_t C, int write);
/* The plain references (rmsnorm_ref.h; rstd required; the backward writes all three). */
int tc_rmsnorm_forward_ref_f32(float *out, float *rstd, const float *inp, const float *weight,
                               const float *bias, int64_t N, int64_t C, double eps);
int tc_rmsnorm_forward_ref_f64(double *out, double *rstd, const double *inp,
                               const double *weight, const double *bias, int64_t N, int64_t C,
                               double eps);
int tc_rmsnorm_backward_ref_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *rstd,
                                int64_t N, int64_t C);
int tc_rmsnorm_backward_ref_f64(double *dinp, double *dweight, double *dbias,
                                const double *dout, const double *inp, const double *weight,
                                const double *rstd, int64_t N, int64_t C);
/* ------------------------------------------------------------------ end rmsnorm */

/* ------------------------------------------------------------------ softcap (softcap.c) */

/* Logit soft-capping (Gemma 2): out (n,) = cap * tanh(inp (n,) / cap), cap finite > 0; out
 * may be inp. The backward reads the forward's OUTPUT: dinp (n,) = (TC_WRITE(0)) or +=
 * dout * (1 - (out / cap)^2); dinp may be dout. TC_EINVAL for a bad cap. The references
 * (softcap_ref.h) compute in double, the backward from the input inp. The fast tanh is
 * vectorised (Cephes' tanh / tanhf, about 2 ulp; softcap_impl.h). */
int tc_softcap_forward_f32(float *out, const float *inp, int64_t n, double cap);
int tc_softcap_forward_f64(double *out, const double *inp, int64_t n, double cap);
int tc_softcap_backward_f32(float *dinp, const float *dout, const float *out, int64_t n,
                            double cap, int write);
int tc_softcap_backward_f64(double *dinp, const double *dout, const double *out, int64_t n,
                            double cap, int write);
int tc_softcap_forward_ref_f32(float *out, const float *inp, int64_t n, double cap);
int tc_softcap_forward_ref_f64(double *out, const double *inp, int64_t n, double cap);
int tc_softcap_backward_ref_f32(float *dinp, const float *dout, const float *inp, int64_t n,
                                double cap);
int tc_softcap_backward_ref_f64(double *dinp, const double *dout, const double *inp,
                                int64_t n, double cap);
/* ------------------------------------------------------------------ end softcap */



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
 * if any id lies outside [0, V). write: TC_WRITE(0) dweight (rows no id names are 0). */
int tc_embedding_backward_f32(float *dweight, const float *dout, const int64_t *ids, int64_t N,
                              int64_t V, int64_t D, int write);
int tc_embedding_backward_f64(double *dweight, const double *dout, const int64_t *ids,
                              int64_t N, int64_t V, int64_t D, int write);
/* The plain references (embedding_ref.h; backward writes dweight). */
int tc_embedding_forward_ref_f32(float *out, const int64_t *ids, const float *weight, int64_t N,
                                 int64_t V, int64_t D);
int tc_embedding_forward_ref_f64(double *out, const int64_t *ids, const double *weight,
                                 int64_t N, int64_t V, int64_t D);
int tc_embedding_backward_ref_f32(float *dweight, const float *dout, const int64_t *ids,
                                  int64_t N, int64_t V, int64_t D);
int tc_embedding_backward_ref_f64(double *dweight, const double *dout, const int64_t *ids,
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
/* The plain reference of the table (position_ref.h). */
int tc_position_sinusoidal_ref_f32(float *out, int64_t T, int64_t D, double base,
                                   int64_t offset);
int tc_position_sinusoidal_ref_f64(double *out, int64_t T, int64_t D, double base,
                                   int64_t offset);

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
 *     mask tc_dropout_forward draws for a (B,NH,T,S) tensor (csrc/core/rng.h);
 *   out_i = sum_j P_ij v_j.
 * A row whose keys are ALL masked gets out_i = 0 and lse_i = -INFINITY (torch gives NaN
 * there): zeros, not NaN, and in the backward exactly zero gradient from that row.
 * Entries of bias must be finite or -INFINITY (the bindings check).
 *
 * Backward recomputes P from lse, then dv += P~^T dout (P~ = dropped-out P);
 * dP = Z/(1-p) * dout v^T; D_i = dout_i . out_i; dS = P * (dP - D) (the softmax Jacobian is
 * never built); dq += scale dS k; dk += scale dS^T q. Gradients accumulate (+=) or, by the
 * backward's write flag (TC_WRITE(0/1/2) = dq/dk/dv), are written.
 *
 * tc_attention_* is the tiled (flash-style) kernel: online softmax over key tiles, extra
 * memory O(T * (DK + DV)) per thread (plus, in the forward with more than one block of
 * query rows, a transposed copy of k and, unless v's rows are dense, a packed copy of v)
 * and no (T, S) matrix; tiles every row of which is
 * masked by causality or key padding are skipped (a causal pass does about half the
 * work). Parallel over (batch-head, query-block) work items in the forward and over
 * batch-heads (or a head's key blocks, with per-thread dq partials summed in thread
 * order, when there are few heads) in the backward; bitwise reproducible for a fixed
 * thread count. tc_attention_*_ref materialises each batch-head's (T, S) scores in full:
 * the plain reference the tiled kernel is tested against (same arguments, same results
 * up to rounding). */
/* Causal modes: tc_causal (options, above). */

/* Optional masks of one attention call (a NULL pointer, or a NULL tc_attention_masks *,
 * means "not used"). Element (b,h,i,j) of the broadcast (B,NH,T,S) mask is read at
 * b*strides[0] + h*strides[1] + i*strides[2] + j*strides[3] (element strides, 0 to
 * broadcast a dim).
 *   keep:        uint8, nonzero = attend (torch SDPA's boolean attn_mask convention);
 *   bias:        additive float mask in the call's dtype (const float * for _f32,
 *                const double * for _f64), added to the scaled scores;
 *   key_padding: uint8 (B,S), C-contiguous, nonzero = real key, 0 = padding (ignored);
 *   dropout_first: the index in the dropout stream of this call's probability (0,0,0,0),
 *                0 normally; a call on batch rows [b0, ...) of a larger (B',NH,T,S) call
 *                passes b0*NH*T*S and draws exactly that call's masks for its rows. */
typedef struct {
    const uint8_t *keep;
    int64_t keep_strides[4];
    const void *bias;
    int64_t bias_strides[4];
    const uint8_t *key_padding;
    uint64_t dropout_first;
    const struct tc_attention_sparse *sparse; /* NULL: dense; else a block-sparse pattern */
    const int64_t *sparse_shift; /* NULL, or (B,): row b's sequence starts at key slot
                                    sparse_shift[b] (left padding): the pattern reads query
                                    and key positions shifted down by it (slots below it
                                    are no position: hidden) */
} tc_attention_masks;

/* Block-sparse attention: a structural mask (like causal masking, whole tiles of it are
 * skipped by the tiled kernel, so the work is that of the visible blocks). Positions are
 * cut into blocks of `block` tokens. Query row i is at position p = i (p = i + S - T under
 * TC_CAUSAL_BOTTOM_RIGHT, so decoding against a KV cache sees what training saw); it sits
 * in block qb = p / block, key j in block kb = j / block, and key j is visible iff
 *   |qb - kb| < window                          (local: its own block, window - 1 each side)
 *   or stride > 0 and kb % stride == stride - 1 (strided "summary" blocks)
 *   or kb < global or qb < global               (global blocks: see and are seen by all)
 * (and causal / the other masks let it). A negative p sees nothing. window >= 1 (a query
 * always sees its own block, save causality), block >= 1, stride >= 0, global >= 0; else
 * TC_EINVAL. With window ~ sqrt(T)/block and stride ~ sqrt(T)/block a query sees
 * O(sqrt(T)) keys: O(T sqrt(T)) work in all (README, "Block-sparse attention"). */
typedef struct tc_attention_sparse {
    int64_t block, window, stride, global;
} tc_attention_sparse;
/* 1 if sp is a valid pattern (above), else 0. */
int tc_attention_sparse_ok(const tc_attention_sparse *sp);
/* The block layout: blocks (NQB, NKB) uint8 written, blocks[qb, kb] = 1 iff key block kb
 * is visible to query block qb by the rules above (causality not applied). TC_EINVAL for
 * a bad pattern or negative sizes. */
int tc_attention_sparse_blocks(uint8_t *blocks, const tc_attention_sparse *sp, int64_t NQB,
                               int64_t NKB);
/* The equivalent element mask of T queries against S keys: keep (T, S) uint8 written, 1
 * where the pattern lets query row i see key j (positions as above: causal only shifts the
 * query positions under TC_CAUSAL_BOTTOM_RIGHT; causality itself is not applied). */
int tc_attention_sparse_mask(uint8_t *keep, const tc_attention_sparse *sp, int64_t T,
                             int64_t S, int causal);

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
/* dq (B,NH,T,DK), dk (B,NH,S,DK), dv (B,NH,S,DV) accumulated (+=) or written (write:
 * TC_WRITE(0/1/2) = dq/dk/dv; every element of a written one, zeros where no gradient
 * flows); dout, out (B,NH,T,DV) and lse (B,NH,T) from the forward with the same masks,
 * scale, causal, dropout_p, seed. Written outputs must not overlap each other nor any
 * input. */
int tc_attention_backward_f32(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              const float *out, const float *lse,
                              const tc_attention_masks *masks, int64_t B, int64_t NH,
                              int64_t T, int64_t S, int64_t DK, int64_t DV, float scale,
                              int causal, double dropout_p, uint64_t seed, int write);
int tc_attention_backward_f64(double *dq, double *dk, double *dv, const double *dout,
                              const double *q, const double *k, const double *v,
                              const double *out, const double *lse,
                              const tc_attention_masks *masks, int64_t B, int64_t NH,
                              int64_t T, int64_t S, int64_t DK, int64_t DV, double scale,
                              int causal, double dropout_p, uint64_t seed, int write);
/* Strided operands ("token-major" layouts without copies). Element (b,h,t,d) of a
 * (B,NH,L,D) operand sits at p[b*st.b + h*st.h + t*st.t + d] (element strides; the last
 * dim is contiguous). The head-major (B,NH,L,D) array is {NH*L*D, L*D, D}; the q slice of
 * a token-major qkv buffer (B,L,3C), C = NH*HS, is {L*3C, HS, 3C} at qkv (k at qkv + C,
 * v at qkv + 2C); a (B,L,C) attention output is {L*C, HS, C}. */
typedef struct {
    int64_t b, h, t;
} tc_attention_strides;
/* The strides of every operand of a strided call (the forward reads q, k, v, out; the
 * backward all eight). lse stays (B,NH,T) contiguous.
 * kv_heads: grouped-query attention (GQA; multi-query for 1): k, v, dk, dv hold NKV =
 * kv_heads heads, (B,NKV,S,D), and query head h reads kv head h / (NH / NKV); the backward
 * sums the gradients of the NH / NKV query heads of a kv head into its dk, dv (in head
 * order, the first one's write flag applying). 0 (or NH): one kv head per query head, as
 * the contiguous calls; otherwise it must divide NH (else TC_EINVAL). */
typedef struct {
    tc_attention_strides q, k, v, out, dout, dq, dk, dv;
    int64_t kv_heads;
} tc_attention_layout;
/* lay <- the contiguous head-major layout of the entry points above. */
void tc_attention_layout_contiguous(tc_attention_layout *lay, int64_t NH, int64_t T,
                                    int64_t S, int64_t DK, int64_t DV);
/* lay <- the contiguous head-major layout of a grouped call: q, dq (B,NH,T,DK), out, dout
 * (B,NH,T,DV), k, dk (B,NKV,S,DK), v, dv (B,NKV,S,DV), kv_heads = NKV (NKV = NH: the
 * contiguous layout above). */
void tc_attention_layout_grouped(tc_attention_layout *lay, int64_t NH, int64_t NKV, int64_t T,
                                 int64_t S, int64_t DK, int64_t DV);
/* tc_attention_forward with every operand at its layout strides (layout NULL: contiguous);
 * the same arithmetic, so the results are bitwise those of the contiguous call. out must
 * not overlap q, k or v. */
int tc_attention_forward_strided_f32(float *out, float *lse, const float *q, const float *k,
                                     const float *v, const tc_attention_masks *masks,
                                     const tc_attention_layout *layout, int64_t B, int64_t NH,
                                     int64_t T, int64_t S, int64_t DK, int64_t DV, float scale,
                                     int causal, double dropout_p, uint64_t seed);
int tc_attention_forward_strided_f64(double *out, double *lse, const double *q,
                                     const double *k, const double *v,
                                     const tc_attention_masks *masks,
                                     const tc_attention_layout *layout, int64_t B, int64_t NH,
                                     int64_t T, int64_t S, int64_t DK, int64_t DV,
                                     double scale, int causal, double dropout_p,
                                     uint64_t seed);
/* tc_attention_backward with every operand at its layout strides (write the same). */
int tc_attention_backward_strided_f32(float *dq, float *dk, float *dv, const float *dout,
                                      const float *q, const float *k, const float *v,
                                      const float *out, const float *lse,
                                      const tc_attention_masks *masks,
                                      const tc_attention_layout *layout, int64_t B,
                                      int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                                      float scale, int causal, double dropout_p, uint64_t seed,
                                      int write);
int tc_attention_backward_strided_f64(double *dq, double *dk, double *dv, const double *dout,
                                      const double *q, const double *k, const double *v,
                                      const double *out, const double *lse,
                                      const tc_attention_masks *masks,
                                      const tc_attention_layout *layout, int64_t B,
                                      int64_t NH, int64_t T, int64_t S, int64_t DK, int64_t DV,
                                      double scale, int causal, double dropout_p,
                                      uint64_t seed, int write);
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
                                  int causal, double dropout_p, uint64_t seed, int write);
int tc_attention_backward_ref_f64(double *dq, double *dk, double *dv, const double *dout,
                                  const double *q, const double *k, const double *v,
                                  const double *out, const double *lse,
                                  const tc_attention_masks *masks, int64_t B, int64_t NH,
                                  int64_t T, int64_t S, int64_t DK, int64_t DV, double scale,
                                  int causal, double dropout_p, uint64_t seed, int write);

/* The references of a grouped call (tc_attention_layout's kv_heads): k, dk (B,NKV,S,DK),
 * v, dv (B,NKV,S,DV) contiguous, query head h reading kv head h / (NH / NKV); NKV must
 * divide NH (else TC_EINVAL). NKV = NH: the references above. */
int tc_attention_forward_ref_grouped_f32(float *out, float *lse, const float *q, const float *k,
                                         const float *v, const tc_attention_masks *masks,
                                         int64_t B, int64_t NH, int64_t NKV, int64_t T, int64_t S,
                                         int64_t DK, int64_t DV, float scale, int causal,
                                         double dropout_p, uint64_t seed);
int tc_attention_forward_ref_grouped_f64(double *out, double *lse, const double *q,
                                         const double *k, const double *v,
                                         const tc_attention_masks *masks, int64_t B, int64_t NH,
                                         int64_t NKV, int64_t T, int64_t S, int64_t DK, int64_t DV,
                                         double scale, int causal, double dropout_p,
                                         uint64_t seed);
int tc_attention_backward_ref_grouped_f32(float *dq, float *dk, float *dv, const float *dout,
                                          const float *q, const float *k, const float *v,
                                          const float *out, const float *lse,
                                          const tc_attention_masks *masks, int64_t B, int64_t NH,
                                          int64_t NKV, int64_t T, int64_t S, int64_t DK,
                                          int64_t DV, float scale, int causal, double dropout_p,
                                          uint64_t seed, int write);
int tc_attention_backward_ref_grouped_f64(double *dq, double *dk, double *dv, const double *dout,
                                          const double *q, const double *k, const double *v,
                                          const double *out, const double *lse,
                                          const tc_attention_masks *masks, int64_t B,
                                          int64_t NH, int64_t NKV, int64_t T, int64_t S,
                                          int64_t DK, int64_t DV, double scale, int causal,
                                          double dropout_p, uint64_t seed, int write);

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
/* The same step with a block-sparse pattern (NULL: dense, as above): query t at position
 * pos + t sees the keys the pattern lets it (bottom-right positions, tc_attention_sparse),
 * the key set a training forward gives that row; only the visible blocks' scores are
 * computed. shift: NULL or (B,), row b's sequence starting at cache slot shift[b] (left
 * padding; tc_attention_masks.sparse_shift). */
int tc_attention_decode_sparse_f32(float *out, float *k_cache, float *v_cache, const float *q,
                                   const float *k_new, const float *v_new,
                                   const uint8_t *key_padding,
                                   const tc_attention_sparse *sparse, const int64_t *shift,
                                   int64_t B, int64_t NH, int64_t TN, int64_t Smax, int64_t pos,
                                   int64_t DK, int64_t DV, float scale);
int tc_attention_decode_sparse_f64(double *out, double *k_cache, double *v_cache,
                                   const double *q, const double *k_new, const double *v_new,
                                   const uint8_t *key_padding,
                                   const tc_attention_sparse *sparse, const int64_t *shift,
                                   int64_t B, int64_t NH, int64_t TN, int64_t Smax, int64_t pos,
                                   int64_t DK, int64_t DV, double scale);
/* The same step for grouped-query attention: the caches and the new keys and values hold
 * NKV heads, k_cache (B,NKV,Smax,DK), v_cache (B,NKV,Smax,DV), k_new (B,NKV,TN,DK), v_new
 * (B,NKV,TN,DV), query head h of q (B,NH,TN,DK) reading kv head h / (NH / NKV) (NKV must
 * divide NH, else TC_EINVAL); NKV = NH is tc_attention_decode_sparse. */
int tc_attention_decode_grouped_f32(float *out, float *k_cache, float *v_cache, const float *q,
                                    const float *k_new, const float *v_new,
                                    const uint8_t *key_padding,
                                    const tc_attention_sparse *sparse, const int64_t *shift,
                                    int64_t B, int64_t NH, int64_t NKV, int64_t TN, int64_t Smax,
                                    int64_t pos, int64_t DK, int64_t DV, float scale);
int tc_attention_decode_grouped_f64(double *out, double *k_cache, double *v_cache,
                                    const double *q, const double *k_new, const double *v_new,
                                    const uint8_t *key_padding,
                                    const tc_attention_sparse *sparse, const int64_t *shift,
                                    int64_t B, int64_t NH, int64_t NKV, int64_t TN, int64_t Smax,
                                    int64_t pos, int64_t DK, int64_t DV, double scale);
/* The attention probabilities of a finished forward, on request (nothing else keeps a
 * (T,S) matrix): P (B,NH,T,S) written, P_ij = exp(scale q_i . k_j (+ bias) - lse_i) with the
 * keys the forward masked set by the same mask function (exactly 0) and rows with every key
 * masked (lse_i = -inf) all 0; q (B,NH,T,DK), k (B,NH,S,DK), lse (B,NH,T) and masks, scale,
 * causal those of the forward. With dropout these are the PRE-dropout probabilities (the
 * dropout fields of masks are not read). The strided form reads q and k at layout->q /
 * layout->k (NULL: contiguous); lse and P are contiguous. */
int tc_attention_probs_f32(float *P, const float *q, const float *k, const float *lse,
                           const tc_attention_masks *masks, int64_t B, int64_t NH, int64_t T,
                           int64_t S, int64_t DK, float scale, int causal);
int tc_attention_probs_f64(double *P, const double *q, const double *k, const double *lse,
                           const tc_attention_masks *masks, int64_t B, int64_t NH, int64_t T,
                           int64_t S, int64_t DK, double scale, int causal);
int tc_attention_probs_strided_f32(float *P, const float *q, const float *k, const float *lse,
                                   const tc_attention_masks *masks,
                                   const tc_attention_layout *layout, int64_t B, int64_t NH,
                                   int64_t T, int64_t S, int64_t DK, float scale, int causal);
int tc_attention_probs_strided_f64(double *P, const double *q, const double *k,
                                   const double *lse, const tc_attention_masks *masks,
                                   const tc_attention_layout *layout, int64_t B, int64_t NH,
                                   int64_t T, int64_t S, int64_t DK, double scale, int causal);
/* Name of the tile micro-kernels the next call runs ("avx2+fma" or "generic"; the cpu
 * section's choice). */
const char *tc_attention_kernel_name(void);

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
 * rounding error of |lse| * 2^-24 into every softmax value). write: TC_WRITE(0) dlogits
 * (ignored rows then 0). */
int tc_loss_cross_entropy_backward_f32(float *dlogits, const float *lse, const float *logits,
                                       const int64_t *targets, const float *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, float label_smoothing,
                                       float scale, int write);
int tc_loss_cross_entropy_backward_f64(double *dlogits, const double *lse, const double *logits,
                                       const int64_t *targets, const double *dlosses, int64_t N,
                                       int64_t V, int64_t ignore_index, double label_smoothing,
                                       double scale, int write);
/* Probability targets: targets (N,V) class probabilities (soft or one-hot; used as given, the
 * loss is linear in them). losses (N,), lse (N,) or NULL, total or NULL as above. */
int tc_loss_cross_entropy_probs_forward_f32(float *losses, float *lse, double *total,
                                            const float *logits, const float *targets, int64_t N,
                                            int64_t V, float label_smoothing);
int tc_loss_cross_entropy_probs_forward_f64(double *losses, double *lse, double *total,
                                            const double *logits, const double *targets,
                                            int64_t N, int64_t V, double label_smoothing);
/* dlogits (N,V) += w_n * (softmax(logits_n) * sum_c q_nc - q_n), w_n, lse, write as above. */
int tc_loss_cross_entropy_probs_backward_f32(float *dlogits, const float *lse,
                                             const float *logits, const float *targets,
                                             const float *dlosses, int64_t N, int64_t V,
                                             float label_smoothing, float scale, int write);
int tc_loss_cross_entropy_probs_backward_f64(double *dlogits, const double *lse,
                                             const double *logits, const double *targets,
                                             const double *dlosses, int64_t N, int64_t V,
                                             double label_smoothing, double scale, int write);
/* The plain references (loss_ref.h): targets as ids (N,) (probs NULL) or probs (N,V) (ids NULL);
 * losses, lse (N,) required; backward writes dlogits. */
int tc_loss_cross_entropy_forward_ref_f32(float *losses, float *lse, const float *logits,
                                          const int64_t *ids, const float *probs, int64_t N,
                                          int64_t V, int64_t ignore_index,
                                          double label_smoothing);
int tc_loss_cross_entropy_forward_ref_f64(double *losses, double *lse, const double *logits,
                                          const int64_t *ids, const double *probs, int64_t N,
                                          int64_t V, int64_t ignore_index,
                                          double label_smoothing);
int tc_loss_cross_entropy_backward_ref_f32(float *dlogits, const float *logits,
                                           const int64_t *ids, const float *probs,
                                           const float *dlosses, int64_t N, int64_t V,
                                           int64_t ignore_index, double label_smoothing,
                                           double scale);
int tc_loss_cross_entropy_backward_ref_f64(double *dlogits, const double *logits,
                                           const int64_t *ids, const double *probs,
                                           const double *dlosses, int64_t N, int64_t V,
                                           int64_t ignore_index, double label_smoothing,
                                           double scale);

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
/* The same updates out of place: new_* (n,) from the sources (n,), which are not modified
 * (the immutable tree optimizers). Each destination is its own source (in place: the
 * functions above are these with new_* = the sources) or disjoint from every input, and the
 * destinations are pairwise disjoint: TC_EINVAL otherwise (a partial overlap). The numbers
 * are bitwise those of the in-place updates; out of place on large arrays the results are
 * written with non-temporal stores (no read of the destinations' old memory). adam with
 * decoupled 1 is AdamW; the momentum buffers NULL only when momentum == 0. */
int tc_optim_sgd_update_out_f32(float *new_param, float *new_buffer, const float *param,
                                const float *momentum_buffer, const float *grad, int64_t n,
                                double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step);
int tc_optim_sgd_update_out_f64(double *new_param, double *new_buffer, const double *param,
                                const double *momentum_buffer, const double *grad, int64_t n,
                                double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step);
int tc_optim_adam_update_out_f32(float *new_param, float *new_exp_avg, float *new_exp_avg_sq,
                                 const float *param, const float *exp_avg,
                                 const float *exp_avg_sq, const float *grad, int64_t n,
                                 int64_t step, double lr, double beta1, double beta2, double eps,
                                 double weight_decay, int decoupled);
int tc_optim_adam_update_out_f64(double *new_param, double *new_exp_avg,
                                 double *new_exp_avg_sq, const double *param,
                                 const double *exp_avg, const double *exp_avg_sq,
                                 const double *grad, int64_t n, int64_t step, double lr,
                                 double beta1, double beta2, double eps, double weight_decay,
                                 int decoupled);
/* *norm = sqrt of the sum of squares of every element of count arrays (arrays[k] has sizes[k]
 * elements), accumulated in double in a fixed order (independent of the thread count). */
int tc_optim_global_norm_f32(double *norm, const float *const *arrays, const int64_t *sizes,
                             int64_t count);
int tc_optim_global_norm_f64(double *norm, const double *const *arrays, const int64_t *sizes,
                             int64_t count);
/* x (n,) *= factor, factor rounded to the array type once (gradient clipping). */
int tc_optim_scale_f32(float *x, int64_t n, double factor);
int tc_optim_scale_f64(double *x, int64_t n, double factor);
/* The plain references (optim_ref.h): adam with decoupled 1 is AdamW; the norm of one flat
 * array (the global norm of several is that of their concatenation). */
int tc_optim_sgd_update_ref_f32(float *param, float *momentum_buffer, const float *grad,
                                int64_t n, double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step);
int tc_optim_sgd_update_ref_f64(double *param, double *momentum_buffer, const double *grad,
                                int64_t n, double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step);
int tc_optim_adam_update_ref_f32(float *param, float *exp_avg, float *exp_avg_sq,
                                 const float *grad, int64_t n, int64_t step, double lr,
                                 double beta1, double beta2, double eps, double weight_decay,
                                 int decoupled);
int tc_optim_adam_update_ref_f64(double *param, double *exp_avg, double *exp_avg_sq,
                                 const double *grad, int64_t n, int64_t step, double lr,
                                 double beta1, double beta2, double eps, double weight_decay,
                                 int decoupled);
int tc_optim_global_norm_ref_f32(double *norm, const float *x, int64_t n);
int tc_optim_global_norm_ref_f64(double *norm, const double *x, int64_t n);

/* Muon (Keller Jordan's; optim_muon_impl.h): the hidden weight matrices of a flat parameter
 * buffer, listed by matrices (count, 3) = (offset, rows, cols) in increasing, non-overlapping
 * order inside [0, n), each updated in place (param, momentum_buffer) from grad:
 *   buf = lerp(buf, grad, 1 - momentum);  u = nesterov ? lerp(grad, buf, momentum) : buf;
 *   X = u (u^T when rows > cols) / (||u||_F + 1e-7);  ns_steps times
 *   X = a X + (b A + c A A) X with A = X X^T, (a, b, c) = (3.4445, -4.7750, 2.0315);
 *   W = W (1 - lr weight_decay) - lr sqrt(max(1, rows / cols)) X.
 * Elements outside the matrices are not touched (the caller runs AdamW on them). Products
 * on tc_gemm (X X^T and A A by their lower triangle, mirrored; a I added to B's diagonal,
 * so X <- B X is one product); with several threads whole matrices go to the threads when
 * their costs balance (optim_muon_impl.h); the results do not depend on the thread count.
 * TC_EINVAL for a bad table, TC_ENOMEM if the scratch cannot be allocated.
 * _ref: the plain reference (double, triple loops, one thread). */
int tc_optim_muon_update_f32(float *param, float *momentum_buffer, const float *grad,
                             int64_t n, const int64_t *matrices, int64_t count, double lr,
                             double momentum, double weight_decay, int nesterov, int ns_steps);
int tc_optim_muon_update_f64(double *param, double *momentum_buffer, const double *grad,
                             int64_t n, const int64_t *matrices, int64_t count, double lr,
                             double momentum, double weight_decay, int nesterov, int ns_steps);
int tc_optim_muon_update_ref_f32(float *param, float *momentum_buffer, const float *grad,
                                 int64_t n, const int64_t *matrices, int64_t count, double lr,
                                 double momentum, double weight_decay, int nesterov,
                                 int ns_steps);
int tc_optim_muon_update_ref_f64(double *param, double *momentum_buffer, const double *grad,
                                 int64_t n, const int64_t *matrices, int64_t count, double lr,
                                 double momentum, double weight_decay, int nesterov,
                                 int ns_steps);

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
 * dpre^T @ inp, dbias (OC,) += sum_n dpre (each optional, NULL = not wanted). write:
 * TC_WRITE(0) dinp, TC_WRITE(1) dweight, TC_WRITE(2) dbias. */
int tc_linear_gelu_backward_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *pre, const float *inp, const float *weight,
                                const float *bias, int64_t N, int64_t C, int64_t OC,
                                int approximate_tanh, int write);
int tc_linear_gelu_backward_f64(double *dinp, double *dweight, double *dbias,
                                const double *dout, const double *pre, const double *inp,
                                const double *weight, const double *bias, int64_t N, int64_t C,
                                int64_t OC, int approximate_tanh, int write);
/* The same pair caching gelu'(pre) instead of pre: the forward writes dact (N,OC) =
 * gelu'(pre) (not out; from the same evaluation as out, so it costs no second exp) and the
 * backward then only multiplies, dpre = dout * dact, before the same gradient products as
 * tc_linear_gelu_backward (bitwise the same results; write as there). For training loops that need pre only for the backward (the models'
 * MLPs). */
int tc_linear_gelu_forward_dact_f32(float *out, float *dact, const float *inp,
                                    const float *weight, const float *bias, int64_t N,
                                    int64_t C, int64_t OC, int approximate_tanh);
int tc_linear_gelu_forward_dact_f64(double *out, double *dact, const double *inp,
                                    const double *weight, const double *bias, int64_t N,
                                    int64_t C, int64_t OC, int approximate_tanh);
/* The backward of every fused linear + activation pair from its cached dact (N,OC) =
 * act'(pre) (tc_linear_gelu_forward_dact, tc_linear_relu_forward, the activation table's
 * fused column): dpre = dout (N,OC) * dact, then dinp (N,C), dweight (OC,C), dbias (OC,)
 * (each optional) as tc_linear_gelu_backward (write as there). */
int tc_linear_backward_dact_f32(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *dact, const float *inp, const float *weight,
                                int64_t N, int64_t C, int64_t OC, int write);
int tc_linear_backward_dact_f64(double *dinp, double *dweight, double *dbias, const double *dout,
                                const double *dact, const double *inp, const double *weight,
                                int64_t N, int64_t C, int64_t OC, int write);
/* Linear + ReLU / squared ReLU in one pass, through the same GEMM epilogue as the GELUs:
 * out (N,OC) = act(pre), pre = inp (N,C) @ weight^T (OC,C) + bias (OC,) (bias may be NULL),
 * act = relu (squared 0) or relu2 = relu^2 (squared 1; other values TC_EINVAL), and dact
 * (N,OC) = act'(pre) (relu': 1 where pre > 0, else 0; relu2': 2 pre where pre > 0, else 0:
 * the unfused kernels' values, 0 at pre == 0), or dact NULL (inference: nothing cached;
 * dact may not be out). The backward is tc_linear_backward_dact (dpre = dout * dact:
 * it evaluates no activation). The activation table's fused relu / relu2 rows. */
int tc_linear_relu_forward_f32(float *out, float *dact, const float *inp, const float *weight,
                               const float *bias, int64_t N, int64_t C, int64_t OC,
                               int squared);
int tc_linear_relu_forward_f64(double *out, double *dact, const double *inp,
                               const double *weight, const double *bias, int64_t N, int64_t C,
                               int64_t OC, int squared);
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
 * dbias may be NULL. sum (N,C), mean, rstd (N,) from the forward. write: TC_WRITE(0) dx,
 * TC_WRITE(1) dr, TC_WRITE(2) dweight, TC_WRITE(3) dbias. */
int tc_layernorm_residual_backward_f32(float *dx, float *dr, float *dweight, float *dbias,
                                       const float *dout, const float *dsum, const float *sum,
                                       const float *weight, const float *mean,
                                       const float *rstd, int64_t N, int64_t C, int write);
int tc_layernorm_residual_backward_f64(double *dx, double *dr, double *dweight, double *dbias,
                                       const double *dout, const double *dsum,
                                       const double *sum, const double *weight,
                                       const double *mean, const double *rstd, int64_t N,
                                       int64_t C, int write);
/* The plain references (fused_ref.h; pre, mean, rstd required; backwards write every output,
 * dx and dr distinct). */
int tc_linear_gelu_forward_ref_f32(float *out, float *pre, const float *inp,
                                   const float *weight, const float *bias, int64_t N, int64_t C,
                                   int64_t OC, int approximate_tanh);
int tc_linear_gelu_forward_ref_f64(double *out, double *pre, const double *inp,
                                   const double *weight, const double *bias, int64_t N,
                                   int64_t C, int64_t OC, int approximate_tanh);
int tc_linear_gelu_backward_ref_f32(float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *pre, const float *inp,
                                    const float *weight, int64_t N, int64_t C, int64_t OC,
                                    int approximate_tanh);
int tc_linear_gelu_backward_ref_f64(double *dinp, double *dweight, double *dbias,
                                    const double *dout, const double *pre, const double *inp,
                                    const double *weight, int64_t N, int64_t C, int64_t OC,
                                    int approximate_tanh);
/* the same for any activation act (a TC_ACT_*: the reference of every fused pair, e.g. the
 * fused relu / relu2 of tc_linear_relu_forward); the GELU ones above are its GELU cases */
int tc_linear_activation_forward_ref_f32(int act, float *out, float *pre, const float *inp,
                                         const float *weight, const float *bias, int64_t N,
                                         int64_t C, int64_t OC);
int tc_linear_activation_forward_ref_f64(int act, double *out, double *pre, const double *inp,
                                         const double *weight, const double *bias, int64_t N,
                                         int64_t C, int64_t OC);
int tc_linear_activation_backward_ref_f32(int act, float *dinp, float *dweight, float *dbias,
                                          const float *dout, const float *pre, const float *inp,
                                          const float *weight, int64_t N, int64_t C, int64_t OC);
int tc_linear_activation_backward_ref_f64(int act, double *dinp, double *dweight, double *dbias,
                                          const double *dout, const double *pre,
                                          const double *inp, const double *weight, int64_t N,
                                          int64_t C, int64_t OC);
int tc_layernorm_residual_forward_ref_f32(float *out, float *sum, float *mean, float *rstd,
                                          const float *x, const float *r, const float *weight,
                                          const float *bias, int64_t N, int64_t C, double eps);
int tc_layernorm_residual_forward_ref_f64(double *out, double *sum, double *mean, double *rstd,
                                          const double *x, const double *r,
                                          const double *weight, const double *bias, int64_t N,
                                          int64_t C, double eps);
int tc_layernorm_residual_backward_ref_f32(float *dx, float *dr, float *dweight, float *dbias,
                                           const float *dout, const float *dsum,
                                           const float *sum, const float *weight,
                                           const float *mean, const float *rstd, int64_t N,
                                           int64_t C);
int tc_layernorm_residual_backward_ref_f64(double *dx, double *dr, double *dweight,
                                           double *dbias, const double *dout,
                                           const double *dsum, const double *sum,
                                           const double *weight, const double *mean,
                                           const double *rstd, int64_t N, int64_t C);

/* ------------------------------------------------------------------ end fused */



/* ------------------------------------------------------------------ bench (bench.c) */

/* Peak FP32 FLOP/s of this machine with the current thread count: every thread runs iters
 * rounds of `chains` (8, 12, 16 or 24) independent vector FMA chains, with the GEMM's
 * dispatch (family TC_CPU_BENCH): 16-wide AVX-512F FMAs where the GEMM runs its AVX-512
 * kernel (so its cap, TC_GEMM_KERNEL=avx2+fma / tc_gemm_set_kernel("avx2+fma"), measures
 * the AVX2 peak), 8-wide AVX2+FMA ones where the CPU has them, else a portable 8-wide loop;
 * tc_cpu_kernel_name(TC_CPU_BENCH) says which ran. *checksum (may be NULL) receives a
 * value of the chains (so they are not optimised away). TC_EINVAL if iters < 1 or chains
 * is not one of the four counts. */
int tc_bench_peak_flops(double *flops_per_s, float *checksum, int64_t iters, int chains);

/* ------------------------------------------------------------------ end bench */



/* ------------------------------------------------------------------ rope (rope.c) */

/* Rotary position embedding (RoFormer). Head size HS (even), half = HS/2, frequencies
 * theta_i = base^(-2i/HS) for i < half; a row at position pos has its channel pairs (a, b)
 * rotated by the angle pos * theta_i: (a, b) -> (a cos - b sin, a sin + b cos). Pairs are
 * (i, i + half) with interleaved = 0 ("rotate half": GPT-NeoX, Llama) or (2i, 2i + 1) with
 * interleaved = 1 (the paper, GPT-J); any other value -> TC_EINVAL.
 * Tables: cos (L, HS/2), sin (L, HS/2) for positions offset .. offset + L - 1, angles in
 * double. TC_EINVAL for an odd HS, or base not finite and > 0. */
int tc_rope_table_f32(float *cos, float *sin, int64_t L, int64_t HS, double base,
                      int64_t offset);
int tc_rope_table_f64(double *cos, double *sin, int64_t L, int64_t HS, double base,
                      int64_t offset);
/* out (N,L,NH,HS) = rope(inp (N,L,NH,HS)), position = the index along L (so (B*NH,L,1,HS)
 * for a head-major (B,NH,L,HS) array, (B,L,NH,HS) for a token-major one); out may be inp. */
int tc_rope_forward_f32(float *out, const float *inp, const float *cos, const float *sin,
                        int64_t N, int64_t L, int64_t NH, int64_t HS, int interleaved);
int tc_rope_forward_f64(double *out, const double *inp, const double *cos, const double *sin,
                        int64_t N, int64_t L, int64_t NH, int64_t HS, int interleaved);
/* dinp (N,L,NH,HS) += rotation of dout (N,L,NH,HS) by -angle (the transpose); dinp must
 * not alias dout. write: TC_WRITE(0) dinp. */
int tc_rope_backward_f32(float *dinp, const float *dout, const float *cos, const float *sin,
                         int64_t N, int64_t L, int64_t NH, int64_t HS, int interleaved,
                         int write);
int tc_rope_backward_f64(double *dinp, const double *dout, const double *cos,
                         const double *sin, int64_t N, int64_t L, int64_t NH, int64_t HS,
                         int interleaved, int write);
/* x (N,L,NH,HS) rotated by -angle in place: the backward without accumulation. */
int tc_rope_inverse_inplace_f32(float *x, const float *cos, const float *sin, int64_t N,
                                int64_t L, int64_t NH, int64_t HS, int interleaved);
int tc_rope_inverse_inplace_f64(double *x, const double *cos, const double *sin, int64_t N,
                                int64_t L, int64_t NH, int64_t HS, int interleaved);
/* x (N,L,NH,HS) rotated in place at element strides (sn, sl, sh) of n, the position and
 * the head (the last dim contiguous): by +angle (inverse = 0, = tc_rope_forward) or
 * -angle (inverse = 1, = tc_rope_inverse_inplace), bitwise as those on a contiguous copy.
 * E.g. the q slice of a token-major (B,L,3C) buffer: N = B, strides (L*3C, 3C, HS). */
int tc_rope_inplace_strided_f32(float *x, const float *cos, const float *sin, int64_t N,
                                int64_t L, int64_t NH, int64_t HS, int64_t sn, int64_t sl,
                                int64_t sh, int interleaved, int inverse);
int tc_rope_inplace_strided_f64(double *x, const double *cos, const double *sin, int64_t N,
                                int64_t L, int64_t NH, int64_t HS, int64_t sn, int64_t sl,
                                int64_t sh, int interleaved, int inverse);
/* The plain references (rope_ref.h; angles from base and offset, no table; backward writes dinp). */
int tc_rope_forward_ref_f32(float *out, const float *inp, int64_t N, int64_t L, int64_t NH,
                            int64_t HS, double base, int64_t offset, int interleaved);
int tc_rope_forward_ref_f64(double *out, const double *inp, int64_t N, int64_t L, int64_t NH,
                            int64_t HS, double base, int64_t offset, int interleaved);
int tc_rope_backward_ref_f32(float *dinp, const float *dout, int64_t N, int64_t L, int64_t NH,
                             int64_t HS, double base, int64_t offset, int interleaved);
int tc_rope_backward_ref_f64(double *dinp, const double *dout, int64_t N, int64_t L, int64_t NH,
                             int64_t HS, double base, int64_t offset, int interleaved);

/* ------------------------------------------------------------------ end rope */



/* ------------------------------------------------------------------ model (gpt_train.c) */

/* The GPT fast path: the whole forward, loss and backward of a GPT (transformer_c.nn.GPT)
 * in one call, over one activation arena owned by an opaque tc_gpt object, with no
 * per-layer round trips and no recomputation. It calls the kernels above (linear,
 * layernorm, gelu/relu, embedding, attention, rope, dropout, loss) in the order the
 * module-by-module path does, so both agree to rounding.
 *
 * Parameters and gradients are two caller-owned flat buffers of tc_gpt_num_params(cfg)
 * elements, laid out in this order (absent entries are skipped):
 *   wte (V,C); wpe (maxT,C) if position == LEARNED;
 *   per layer: ln_1.weight (C), ln_1.bias (C), attn.c_attn.weight (3C,C), .bias (3C),
 *              attn.c_proj.weight (C,C), .bias (C), attn.q_norm.weight (HS),
 *              attn.k_norm.weight (HS) (if qk_norm), ln_2.weight (C), ln_2.bias (C),
 *              mlp.c_fc.weight (H,C), .bias (H), mlp.c_proj.weight (C,H), .bias (C)
 *              (no biases when bias == 0);
 *   ln_f.weight (C), ln_f.bias (C) if norm == TC_NORM_PRE; lm_head.weight (V,C) if tie == 0.
 * Linear weights are (out, in). Pre-LN blocks: x += drop(attn(ln_1(x))); x += drop(mlp(ln_2(x)));
 * post-LN: x = ln_1(x + drop(attn(x))); x = ln_2(x + drop(mlp(x))) and no ln_f. Attention is
 * causal with scale 1/sqrt(HS), HS = C/NH, q and k rotated by RoPE when position == ROPE.
 * With position == NONE nothing encodes positions (no wpe, no table, no rotation).
 * norm_type picks the kernel of every ln_* (layer norm or RMS norm, same parameters); with
 * qk_norm each head's q and k are RMS-normalised (gains q_norm, k_norm) before RoPE; with
 * logit_softcap > 0 the logits are cap * tanh(logits / cap) (tc_softcap_forward).
 * Attention is the tiled kernel (tc_attention_forward / _backward); with attention ==
 * TC_ATTN_BLOCK_SPARSE it is block-sparse with the config's pattern (the same key set in
 * training, inspect and KV-cached decoding, left-padded rows included).
 * Dropout (probability cfg.dropout, when training) hits the embeddings (site 0), the
 * attention probabilities (site 1 + 3l) and the attention (site 2 + 3l) and MLP (site 3 + 3l)
 * branch outputs of layer l; site s uses seed + (s + 1) * 0x9E3779B97F4A7C15 (mod 2^64) with
 * the dropout kernels' Philox stream (the attention kernel's for site 1 + 3l).
 * With ffn == TC_FFN_MOE every layer's MLP is a mixture of moe_experts of them (tc_moe_forward
 * / _backward, "mixture of experts" below): its parameters take the MLP's place in the
 * layout, mlp.router (E,C), mlp.w1 (E,H,C), mlp.b1 (E,H), mlp.w2 (E,C,H), mlp.b2 (E,C) (no
 * biases when bias == 0), as transformer_c.nn.MoE's; the loss is the cross-entropy plus
 * moe_aux_weight times the sum of the layers' load-balancing losses, and the gradients are
 * its gradient. Routing (capacity, dropped choices, the aux fractions) is over the call's
 * B*T tokens, as the module path routes a batch: such a call runs one pass over the whole
 * batch (no data-parallel split, model_common.h), the kernels parallel inside, so the
 * routing does not depend on the thread count. tc_gpt_moe_routing reads it out. */
/* The most layers a model config may have (GPT L, encoder-decoder Le and Ld each): sizes
 * are refused before anything proportional to the layer count runs (tc_*_num_params). */
#define TC_MAX_LAYERS 65536

typedef struct {
    int64_t V, maxT, C, L, NH, H; /* vocabulary, block size, width, layers, heads, MLP width */
    int bias;                     /* biases in linear layers and layer norms */
    int position;                 /* TC_POS_* */
    int norm;                     /* TC_NORM_PRE (GPT-2) or TC_NORM_POST */
    int activation;               /* TC_ACT_* */
    int tie;                      /* lm_head = wte */
    double eps;                   /* layer norm epsilon */
    double pos_base;              /* base of the sinusoidal table and of RoPE */
    int rope_interleaved;         /* RoPE pairs (2i, 2i+1) instead of (i, i + HS/2) */
    double dropout;               /* in [0, 1) */
    int attention;                /* TC_ATTN_*: dense (0, the default) or block-sparse */
    int64_t sparse_block, sparse_window, sparse_stride, sparse_global; /* the pattern of
                                     BLOCK_SPARSE (tc_attention_sparse), ignored when dense */
    int ffn;                      /* TC_FFN_*: the dense MLP (0, the default) or TC_FFN_MOE */
    int64_t moe_experts, moe_top_k; /* E experts, top-K routing (K = 1 or 2, K <= E) */
    double moe_capacity;          /* the capacity factor (finite > 0; tc_moe_capacity) */
    double moe_aux_weight;        /* the load-balancing loss's weight in the loss (>= 0) */
    int norm_type;                /* TC_NORM_TYPE_*: every ln_* is a layer norm or an RMS norm */
    int qk_norm;                  /* RMS-norm q and k of every head (gains attn.q_norm,
                                     attn.k_norm (HS,)) after c_attn, before RoPE; the
                                     k-norm over the NKV key heads with grouped kv heads */
    double logit_softcap;         /* 0: off; > 0: logits = cap * tanh(logits / cap) */
    int64_t NKV;                  /* kv heads: 0 (= NH), or a divisor of NH: grouped-query
                                     attention (1: multi-query); c_attn is then (C + 2 KC, C),
                                     KC = NKV * HS, rows [q | k | v], and the KV cache of
                                     gpt_kv holds NKV heads */
    int gated;                    /* 0: the MLP; 1: the gated MLP c_proj(act(c_gate x) *
                                     c_fc x) (SwiGLU with TC_ACT_SILU), its c_gate weight
                                     (H,C) and bias (H,) after c_fc's in the layout */
} tc_gpt_config;
typedef struct tc_gpt tc_gpt;

/* Number of parameters of cfg, or -1 if cfg is invalid (a size < 1, C % NH != 0, an odd HS
 * with RoPE, an option out of range). */
int64_t tc_gpt_num_params(const tc_gpt_config *cfg);
/* *bytes = size of the activation arena for N = B*T tokens (T <= maxT) and elements of
 * elem_size bytes (4 or 8): what the forward keeps for the backward plus the backward's
 * scratch. The position tables (maxT rows) are not included. */
int tc_gpt_arena_bytes(int64_t *bytes, const tc_gpt_config *cfg, int64_t B, int64_t T,
                       int64_t elem_size);
/* *model = a new GPT over params and grads (tc_gpt_num_params(cfg) elements each, borrowed:
 * they must outlive the model). The arena is allocated by the first call and grown only
 * when a call needs more tokens than any before. Free with tc_gpt_free. */
int tc_gpt_create_f32(tc_gpt **model, const tc_gpt_config *cfg, float *params, float *grads);
int tc_gpt_create_f64(tc_gpt **model, const tc_gpt_config *cfg, double *params,
                      double *grads);
void tc_gpt_free(tc_gpt *model);
/* Size of the model's arena now (0 before the first call). */
int64_t tc_gpt_arena_size(const tc_gpt *model);
/* *loss = mean cross-entropy of logits (B,T,V) against targets (B,T) (rows whose target is
 * ignore_index are skipped; NaN when none is left), and grads = d loss / d params
 * (OVERWRITTEN, not accumulated: zeroed first; all zero when no row is left).
 * idx (B,T) ids in [0, V), targets (B,T) in [0, V) or ignore_index, 1 <= T <= maxT.
 * training != 0 turns dropout on (when cfg.dropout > 0), with masks from seed.
 * row0 >= 0: the B rows are rows [row0, row0 + B) of a global batch, and every dropout mask
 * of a row (each site's, the attention probabilities') is the one that row draws at its place
 * in that batch: calls over consecutive row ranges with their row0 (data-parallel ranks,
 * micro-batches) draw exactly the masks of one call over all the rows (row0 0 of B rows:
 * the batch itself). */
int tc_gpt_loss_and_grads_f32(tc_gpt *model, double *loss, const int64_t *idx,
                              const int64_t *targets, int64_t B, int64_t T,
                              int64_t ignore_index, uint64_t seed, int64_t row0, int training);
int tc_gpt_loss_and_grads_f64(tc_gpt *model, double *loss, const int64_t *idx,
                              const int64_t *targets, int64_t B, int64_t T,
                              int64_t ignore_index, uint64_t seed, int64_t row0, int training);
/* logits (B,T,V) of idx (B,T): the forward alone, over the same arena (seed, row0, training
 * as tc_gpt_loss_and_grads). */
int tc_gpt_forward_f32(tc_gpt *model, float *logits, const int64_t *idx, int64_t B, int64_t T,
                       uint64_t seed, int64_t row0, int training);
int tc_gpt_forward_f64(tc_gpt *model, double *logits, const int64_t *idx, int64_t B,
                       int64_t T, uint64_t seed, int64_t row0, int training);
/* tc_gpt_forward that also reads out, on request, for every layer l: attn[l] (B,NH,T,T), the
 * attention probabilities (pre-dropout; tc_attention_probs on the q, k and row logsumexp the
 * arena keeps), and hidden[l] (B,T,C), the input of block l, hidden[L] the last block's
 * output (before ln_f). attn (L,B,NH,T,T) and hidden (L+1,B,T,C) may each be NULL; logits
 * are bitwise those of tc_gpt_forward, and the arena is the same. */
int tc_gpt_inspect_f32(tc_gpt *model, float *logits, float *attn, float *hidden,
                       const int64_t *idx, int64_t B, int64_t T, uint64_t seed, int training);
int tc_gpt_inspect_f64(tc_gpt *model, double *logits, double *attn, double *hidden,
                       const int64_t *idx, int64_t B, int64_t T, uint64_t seed, int training);

/* The routing of the last forward (tc_gpt_forward, _inspect or _loss_and_grads) of a model
 * with ffn == TC_FFN_MOE, per layer l: tokens[l*E + e] the choices expert e ran on,
 * dropped[l*E + e] those dropped over capacity, capacity[l] the rows per expert, aux[l] the
 * layer's load-balancing loss (unweighted). tokens, dropped (L,E), capacity (L,), aux (L,);
 * each may be NULL. TC_EINVAL for a dense model or before the first call. */
int tc_gpt_moe_routing(const tc_gpt *model, int64_t *tokens, int64_t *dropped,
                       int64_t *capacity, double *aux);

/* ------------------------------------------------------------------ end model */


/* ------------------------------------------------------------------ model_encdec (encdec_train.c) */

/* The encoder-decoder fast path: the whole forward, loss and backward of an encoder-decoder
 * transformer (transformer_c.nn.EncoderDecoder) in one call over one activation arena owned
 * by an opaque tc_encdec object: no per-layer round trips, no recomputation, no allocation
 * after the first call of the largest size. The same kernels as the module-by-module path,
 * in the same order, so both agree to rounding.
 *
 * Parameters and gradients are two caller-owned flat buffers of tc_encdec_num_params(cfg)
 * elements, in this order (absent entries are skipped; every "norm" is weight (C) then
 * bias (C), every linear weight (out,in) then bias (out); no biases when bias == 0):
 *   wte (Vs,C) if share;
 *   encoder: wte (Vs,C) unless share; wpe (maxT,C) if position == LEARNED;
 *     per layer: ln_1 norm, attn.c_attn (C+2KC,C), attn.c_proj (C,C), attn.q_norm.weight
 *                (HS), attn.k_norm.weight (HS) (if qk_norm), ln_2 norm, mlp.c_fc (H,C),
 *                mlp.c_gate (H,C) (if gated), mlp.c_proj (C,H);
 *     ln_f norm if norm == TC_NORM_PRE;
 *   decoder: wte (Vt,C) unless share; wpe (maxT,C) if LEARNED;
 *     per layer: ln_1 norm, attn.c_attn (C+2KC,C), attn.c_proj (C,C), attn.q_norm,
 *                attn.k_norm (if qk_norm), ln_cross_attn norm, crossattention.q_attn (C,C),
 *                crossattention.c_attn (2C,C) ([k | v] of the memory),
 *                crossattention.c_proj (C,C), ln_2 norm, mlp.c_fc, mlp.c_gate (if gated),
 *                mlp.c_proj;
 *     ln_f norm if norm == TC_NORM_PRE;
 *   lm_head (Vt,C) unless tie (then the decoder's token embedding is the output head).
 * Encoder layers: bidirectional self-attention with the source key-padding mask, MLP;
 * decoder layers: causal self-attention, cross-attention to the encoder's output (the same
 * memory for every layer, source padding masked), MLP. Pre-LN sub-layers
 * x += drop(f(norm(x))) with a final ln_f per stack; post-LN x = norm(x + drop(f(x))).
 * Positions (learned or sinusoidal, cfg.position = TC_POS_LEARNED / _SINUSOIDAL; RoPE is
 * not supported) are added to the token embeddings of both stacks. Attention scale
 * 1/sqrt(HS), HS = C/NH; activation TC_ACT_*.
 * Dropout (cfg.dropout, when training) sites, each with seed + (site + 1) *
 * 0x9E3779B97F4A7C15 (mod 2^64): encoder embeddings 0, encoder layer l: attention
 * probabilities 3l+1, attention branch 3l+2, MLP branch 3l+3; decoder embeddings
 * D0 = 1 + 3 Le, decoder layer l (s = D0 + 5l): self-attention probabilities s+1 and
 * branch s+2, cross-attention probabilities s+3 and branch s+4, MLP branch s+5.
 * With attention == TC_ATTN_BLOCK_SPARSE the self-attention of both stacks is block-sparse
 * with the config's pattern (the encoder's bidirectional, the decoder's causal; the same key
 * set in training, inspect and KV-cached decoding); the cross-attention stays dense.
 * With ffn == TC_FFN_MOE every layer's MLP of both stacks is a mixture of moe_experts of
 * them, laid out as GPT's ("model": mlp.router (E,C), w1 (E,H,C), b1 (E,H), w2 (E,C,H),
 * b2 (E,C) in the MLP's place); each layer routes its stack's tokens of the call (B*S
 * source tokens, padded ones included, or B*T target tokens), one pass over the whole batch
 * (no data-parallel split); the loss adds moe_aux_weight times the load-balancing losses of
 * every layer of both stacks, the gradients theirs. KV-cached decoding (model_encdec_decode)
 * routes every target token alone; its prefill encodes the source as tc_encdec_encode
 * does (routed together).
 * norm_type, qk_norm, NKV and gated are GPT's (tc_gpt_config) for the self-attention and
 * MLP of both stacks (KC = NKV * HS the width of the self-attention's k and v; QK-norm's
 * k_norm over the NKV key heads); the cross-attention keeps NH kv heads and no QK-norm (as
 * transformer_c.nn.CrossAttention), and its ln_cross_attn follows norm_type. */
typedef struct {
    int64_t Vs, Vt;        /* source and target vocabularies */
    int64_t maxT;          /* longest source and longest target (rows of wpe) */
    int64_t C, Le, Ld, NH, H; /* width, encoder and decoder layers, heads, MLP width */
    int bias;              /* biases in linear layers and layer norms */
    int position;          /* TC_POS_LEARNED or TC_POS_SINUSOIDAL */
    int norm;              /* TC_NORM_PRE or TC_NORM_POST */
    int activation;        /* TC_ACT_* */
    int share;             /* one token embedding for source and target (Vs == Vt) */
    int tie;               /* the output head is the target token embedding */
    double eps;            /* layer norm epsilon */
    double pos_base;       /* base of the sinusoidal table */
    double dropout;        /* in [0, 1) */
    int attention;         /* TC_ATTN_*: the self-attention of both stacks, dense (0, the
                            * default) or block-sparse (the cross-attention is dense) */
    int64_t sparse_block, sparse_window, sparse_stride, sparse_global; /* the pattern of
                              BLOCK_SPARSE (tc_attention_sparse), ignored when dense */
    int ffn;               /* TC_FFN_*: the dense MLP (0, the default) or TC_FFN_MOE */
    int64_t moe_experts, moe_top_k; /* E experts, top-K routing (K = 1 or 2, K <= E) */
    double moe_capacity;   /* the capacity factor (finite > 0; tc_moe_capacity) */
    double moe_aux_weight; /* the load-balancing loss's weight in the loss (>= 0) */
    int norm_type;         /* TC_NORM_TYPE_*: every norm a layer norm or an RMS norm */
    int qk_norm;           /* RMS-norm the self-attentions' q and k per head (gains
                            * attn.q_norm, attn.k_norm (HS,)) */
    int64_t NKV;           /* the self-attentions' kv heads: 0 (= NH) or a divisor of NH */
    int gated;             /* 0: the MLP; 1: the gated MLP c_proj(act(c_gate x) * c_fc x) */
} tc_encdec_config;
typedef struct tc_encdec tc_encdec;

/* Number of parameters of cfg, or -1 if cfg is invalid (a size < 1, C % NH != 0, RoPE, an
 * option out of range, share with Vs != Vt). */
int64_t tc_encdec_num_params(const tc_encdec_config *cfg);
/* *bytes = size of the activation arena for B sources of S tokens and B targets of T tokens
 * (S, T <= maxT), elements of elem_size bytes (4 or 8). The sinusoidal table is not
 * included. */
int tc_encdec_arena_bytes(int64_t *bytes, const tc_encdec_config *cfg, int64_t B, int64_t S,
                          int64_t T, int64_t elem_size);
/* *model = a new encoder-decoder over params and grads (tc_encdec_num_params(cfg) elements
 * each, borrowed: they must outlive the model; grads may be NULL for a model that only runs
 * forward / encode). Free with tc_encdec_free. */
int tc_encdec_create_f32(tc_encdec **model, const tc_encdec_config *cfg, float *params,
                         float *grads);
int tc_encdec_create_f64(tc_encdec **model, const tc_encdec_config *cfg, double *params,
                         double *grads);
void tc_encdec_free(tc_encdec *model);
/* Size of the model's arena now (0 before the first call). */
int64_t tc_encdec_arena_size(const tc_encdec *model);
/* *loss = mean cross-entropy of the logits (B,T,Vt) of tgt_in against tgt_out (B,T) over the
 * rows whose target is not ignore_index (NaN when none is left), and grads = d loss / d
 * params (OVERWRITTEN: zeroed first; all zero when no row is left).
 * src (B,S) ids in [0, Vs); src_mask (B,S) uint8, nonzero = real token, 0 = padding (never
 * attended to by the encoder or the cross-attention), or NULL (no padding); tgt_in (B,T)
 * ids in [0, Vt); tgt_out (B,T) in [0, Vt) or ignore_index; 1 <= S, T <= maxT.
 * training != 0 turns dropout on (when cfg.dropout > 0), with masks from seed. */
int tc_encdec_loss_and_grads_f32(tc_encdec *model, double *loss, const int64_t *src,
                                 const uint8_t *src_mask, const int64_t *tgt_in,
                                 const int64_t *tgt_out, int64_t B, int64_t S, int64_t T,
                                 int64_t ignore_index, uint64_t seed, int training);
int tc_encdec_loss_and_grads_f64(tc_encdec *model, double *loss, const int64_t *src,
                                 const uint8_t *src_mask, const int64_t *tgt_in,
                                 const int64_t *tgt_out, int64_t B, int64_t S, int64_t T,
                                 int64_t ignore_index, uint64_t seed, int training);
/* logits (B,T,Vt) of tgt_in (B,T) given src (B,S) and src_mask: the forward alone. */
int tc_encdec_forward_f32(tc_encdec *model, float *logits, const int64_t *src,
                          const uint8_t *src_mask, const int64_t *tgt_in, int64_t B, int64_t S,
                          int64_t T, uint64_t seed, int training);
int tc_encdec_forward_f64(tc_encdec *model, double *logits, const int64_t *src,
                          const uint8_t *src_mask, const int64_t *tgt_in, int64_t B, int64_t S,
                          int64_t T, uint64_t seed, int training);

/* memory (B,S,C) = the encoder's output (the memory the decoder attends to) for src (B,S)
 * and src_mask (B,S) or NULL (rows at padded positions are computed but meaningless); no
 * dropout. A model created with grads == NULL can encode and run the forward (its
 * loss_and_grads is TC_EINVAL). */
int tc_encdec_encode_f32(tc_encdec *model, float *memory, const int64_t *src,
                         const uint8_t *src_mask, int64_t B, int64_t S);
int tc_encdec_encode_f64(tc_encdec *model, double *memory, const int64_t *src,
                         const uint8_t *src_mask, int64_t B, int64_t S);
/* What tc_encdec_inspect reads out (each NULL, or an array of the model's dtype; S the
 * source and T the target length of the call): enc_attn (Le,B,NH,S,S), self_attn
 * (Ld,B,NH,T,T) and cross_attn (Ld,B,NH,T,S), the attention probabilities (pre-dropout,
 * masked keys 0; tc_attention_probs on the q, k and row logsumexp the arena keeps);
 * enc_hidden (Le+1,B,S,C) and dec_hidden (Ld+1,B,T,C), the input of every block then the
 * last block's output (before ln_f). */
typedef struct {
    void *enc_attn, *self_attn, *cross_attn, *enc_hidden, *dec_hidden;
} tc_encdec_readout;
/* tc_encdec_forward (logits bitwise the same, the same arena) that also fills out. */
int tc_encdec_inspect_f32(tc_encdec *model, float *logits, const tc_encdec_readout *out,
                          const int64_t *src, const uint8_t *src_mask, const int64_t *tgt_in,
                          int64_t B, int64_t S, int64_t T, uint64_t seed, int training);
int tc_encdec_inspect_f64(tc_encdec *model, double *logits, const tc_encdec_readout *out,
                          const int64_t *src, const uint8_t *src_mask, const int64_t *tgt_in,
                          int64_t B, int64_t S, int64_t T, uint64_t seed, int training);

/* ------------------------------------------------------------------ end model_encdec */


/* ------------------------------------------------------------------ model_decode (gpt_decode.c) */

/* KV-cache decoding of a GPT (the config and flat parameter layout of "model" above; no
 * dropout: generation is inference). A tc_gpt_kv decoder holds, for up to Bmax rows and
 * Smax positions (Smax <= maxT), every layer's keys (after RoPE) and values, (L, Bmax, NH,
 * Smax, HS) each, allocated once at creation, and the scratch of one call.
 *
 * Rows are left-padded: prefill takes prompts padded on the left to a common length T
 * (row b has pad[b] padding slots, then its prompt). Padding slots are masked out of every
 * attention (key_padding of tc_attention_decode) and the token in slot s of row b sits at
 * position s - pad[b] (wpe row, sinusoidal row or RoPE angle), so every row computes what
 * it would alone (up to rounding). All rows share the slot counter pos.
 *
 * prefill: runs the prompts through the whole model once, fills cache slots [0, T) of rows
 *   [0, B) (discarding what was cached) and writes each row's next-token logits (those of
 *   its last slot). idx (B,T) (ids in padding slots are ignored), pad (B,) with
 *   0 <= pad[b] < T, 1 <= B <= Bmax, 1 <= T <= Smax.
 * step: appends one token per row at slot pos and writes the next-token logits: the whole
 *   model in one call (embedding + position, per layer LN, qkv, RoPE, tc_attention_decode
 *   into the cache, c_proj, LN, MLP; ln_f; head). tokens (B,) with B the rows now;
 *   TC_EINVAL when the cache is full (pos == Smax) or nothing was prefilled.
 * select: row j becomes old row rows[j] (rows (B2,) in [0, B), repeats allowed,
 *   0 <= B2 <= Bmax): beam search reorders and duplicates rows, finished rows are dropped.
 *   Strictly increasing rows (dropping rows) are moved in place; any other order copies
 *   into a second cache allocated on first use.
 * Products of at most 8 rows (a decoding step) use a matrix-vector kernel that reads each
 * weight row once (AVX2+FMA when tc_gemm runs its AVX2+FMA kernel, else the portable one);
 * larger ones tc_linear_forward.
 * With ffn == TC_FFN_MOE every token (prompt and step, padding slots included) is routed
 * alone: tc_moe_forward with capacity factor E, i.e. cap = the call's tokens, nothing
 * dropped; what the module path gives a token run alone (one token's capacity is 1 and its
 * choice, or its two choices of different experts, always fit). A full forward over a
 * sequence (tc_gpt_forward) routes its tokens together and may drop some: the two agree when
 * the capacity drops nothing.
 * An encoder-decoder decoder follows the same pattern (create, prefill = run the encoder
 * and the cross-attention keys/values once, step, select). */
typedef struct tc_gpt_kv tc_gpt_kv;
/* *kv = a decoder over params (tc_gpt_num_params(cfg) elements, borrowed: they must
 * outlive it). TC_EINVAL for a bad config, Bmax < 1, Smax < 1 or Smax > maxT. */
int tc_gpt_kv_create_f32(tc_gpt_kv **kv, const tc_gpt_config *cfg, const float *params,
                         int64_t Bmax, int64_t Smax);
int tc_gpt_kv_create_f64(tc_gpt_kv **kv, const tc_gpt_config *cfg, const double *params,
                         int64_t Bmax, int64_t Smax);
void tc_gpt_kv_free(tc_gpt_kv *kv);
/* logits (B,V), idx (B,T), pad (B,) */
int tc_gpt_kv_prefill_f32(tc_gpt_kv *kv, float *logits, const int64_t *idx, const int64_t *pad,
                          int64_t B, int64_t T);
int tc_gpt_kv_prefill_f64(tc_gpt_kv *kv, double *logits, const int64_t *idx,
                          const int64_t *pad, int64_t B, int64_t T);
/* logits (B,V), tokens (B,) */
int tc_gpt_kv_step_f32(tc_gpt_kv *kv, float *logits, const int64_t *tokens, int64_t B);
int tc_gpt_kv_step_f64(tc_gpt_kv *kv, double *logits, const int64_t *tokens, int64_t B);
/* rows (B2,) */
int tc_gpt_kv_select(tc_gpt_kv *kv, const int64_t *rows, int64_t B2);
/* *rows = the rows now, *pos = the slots filled in every row. */
int tc_gpt_kv_state(const tc_gpt_kv *kv, int64_t *rows, int64_t *pos);
/* Bytes of the caches now (the second pair included once a select allocated it). */
int64_t tc_gpt_kv_cache_bytes(const tc_gpt_kv *kv);

/* ------------------------------------------------------------------ end model_decode */


/* ------------------------------------------------------------------ model_encdec_decode (encdec_decode.c) */

/* KV-cache decoding of an encoder-decoder (the config and flat parameter layout of
 * "model_encdec" above; no dropout). A tc_encdec_kv decoder holds, for up to Bmax rows:
 *   the decoder's self-attention keys and values, (Ld, Bmax, NH, Tmax, HS) each, and the
 *   cross-attention keys and values of the memory, (Ld, Bmax, NH, Smax, HS) each
 *   (Smax: the longest source), with the source key-padding mask (Bmax, Smax),
 * all allocated at creation.
 *
 * prefill: runs the encoder ONCE on src (B,S) with src_mask (B,S) (uint8, nonzero = real
 *   token; every row needs one; NULL: no padding; tc_encdec_encode), computes every decoder
 *   layer's cross-attention keys and values of the memory ONCE, then runs the decoder on the
 *   target prefix tgt (B,T) (e.g. <SOS>; the same length for every row) and writes each
 *   row's next-token logits (those of its last prefix token) to logits (B,Vt).
 *   1 <= B <= Bmax, 1 <= S <= Smax, 1 <= T <= Tmax.
 * step: appends one token per row (tokens (B,)) at target position pos and writes the
 *   next-token logits: the whole decoder in one call (embedding + position, per layer:
 *   self-attention into the cache (tc_attention_decode), cross-attention against the cached
 *   keys and values with the source mask, MLP, pre- or post-LN; ln_f; head). TC_EINVAL
 *   when the cache is full (pos == Tmax) or nothing was prefilled.
 * select: row j becomes old row rows[j] (rows (B2,) in [0, B), repeats allowed,
 *   0 <= B2 <= Bmax), for both caches and the mask (second buffers allocated on first use).
 * Products of at most 8 rows use the matrix-vector kernel of decode_gemv.h. */
typedef struct tc_encdec_kv tc_encdec_kv;
/* *kv = a decoder over params (tc_encdec_num_params(cfg) elements, borrowed). TC_EINVAL for
 * a bad config, Bmax < 1, Tmax < 1, Smax < 1 or Tmax, Smax > maxT. */
int tc_encdec_kv_create_f32(tc_encdec_kv **kv, const tc_encdec_config *cfg,
                            const float *params, int64_t Bmax, int64_t Tmax, int64_t Smax);
int tc_encdec_kv_create_f64(tc_encdec_kv **kv, const tc_encdec_config *cfg,
                            const double *params, int64_t Bmax, int64_t Tmax, int64_t Smax);
void tc_encdec_kv_free(tc_encdec_kv *kv);
/* logits (B,Vt), src (B,S), src_mask (B,S) or NULL, tgt (B,T) */
int tc_encdec_kv_prefill_f32(tc_encdec_kv *kv, float *logits, const int64_t *src,
                             const uint8_t *src_mask, const int64_t *tgt, int64_t B, int64_t S,
                             int64_t T);
int tc_encdec_kv_prefill_f64(tc_encdec_kv *kv, double *logits, const int64_t *src,
                             const uint8_t *src_mask, const int64_t *tgt, int64_t B, int64_t S,
                             int64_t T);
/* logits (B,Vt), tokens (B,) */
int tc_encdec_kv_step_f32(tc_encdec_kv *kv, float *logits, const int64_t *tokens, int64_t B);
int tc_encdec_kv_step_f64(tc_encdec_kv *kv, double *logits, const int64_t *tokens, int64_t B);
/* rows (B2,) */
int tc_encdec_kv_select(tc_encdec_kv *kv, const int64_t *rows, int64_t B2);
/* *rows = the rows now, *pos = the target positions filled, *src_len = the source length. */
int tc_encdec_kv_state(const tc_encdec_kv *kv, int64_t *rows, int64_t *pos, int64_t *src_len);
/* Bytes of both caches now (the second buffers included once a select allocated them). */
int64_t tc_encdec_kv_cache_bytes(const tc_encdec_kv *kv);

/* ------------------------------------------------------------------ end model_encdec_decode */


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

/* ------------------------------------------------------------------ mixture of experts (moe.c) */

/* A mixture-of-experts feed-forward (Switch Transformer, GShard) over N rows of C channels:
 * E experts, each the MLP of the dense model (C -> H -> C, activation act of TC_ACTIVATIONS,
 * fused pair when it has one: kernels/mlp_block.h), and a softmax router:
 *   probs (N,E) = softmax(inp @ router^T), router (E,C) (no bias);
 *   top-K choices (K = 1 or 2, E >= K) per row, most probable first, ties to the lower
 *   expert index; gates: K = 1 g = p[e1] (Switch); K = 2 g_j = p[e_j] / (p[e1] + p[e2])
 *   (renormalised over the two, GShard);
 *   capacity per expert cap = min(N, ceil(capacity_factor * N * K / E)) (tc_moe_capacity):
 *   choices are taken in priority order (every row's first choice in row order, then every
 *   second choice), an expert that is full drops the rest (counted in dropped[e]); a dropped
 *   choice contributes 0 (in a block the residual passes the row through unchanged);
 *   out[n] (C,) = sum over kept choices j of g_j * expert_{e_j}(inp[n]);
 *   aux = E * sum_e f_e * P_e, the load-balancing loss: f_e = (choices of e, before
 *   capacity) / (N K) (K = 1: Switch's fraction of rows routed to e), P_e = mean_n probs[n,e];
 *   aux = 0 for N = 0. Its gradient treats f as a constant (it is piecewise constant).
 * Experts' weights: w1 (E,H,C), b1 (E,H), w2 (E,C,H), b2 (E,C); b1, b2 may be NULL.
 * The cache (one struct per dtype) holds the routing and each expert's rows: the caller
 * allocates every array (sizes below, cap = tc_moe_capacity(...)) and sets cap; forward
 * fills it, backward reads it. */
#define TC_MOE_CACHE(real)                                                                  \
    struct {                                                                                \
        real *probs;      /* (N,E) router probabilities */                                  \
        real *gates;      /* (N,K) gate of each choice */                                   \
        int64_t *expert;  /* (N,K) the chosen experts, most probable first */               \
        int64_t *slot;    /* (N,K) the choice's row in the expert buffers (e*cap + i), -1: dropped */ \
        int64_t *tok;     /* (E,cap) the choice n*K+j in each buffer row, -1: unused */     \
        int64_t *counts;  /* (E,) choices kept (rows expert e ran on) */                    \
        int64_t *dropped; /* (E,) choices dropped over capacity */                          \
        real *xg;         /* (E,cap,C) the gathered input rows */                           \
        real *pre;        /* (E,cap,H) the fc cache (pre-activation, or act'(pre) if fused) */ \
        real *hid;        /* (E,cap,H) act(pre) */                                          \
        real *eo;         /* (E,cap,C) the expert outputs (before the gate) */              \
        int64_t cap;      /* set by the caller: tc_moe_capacity(N, E, K, capacity_factor) */ \
        double aux;       /* written by forward: the load-balancing loss */                 \
    }
typedef TC_MOE_CACHE(float) tc_moe_cache_f32;
typedef TC_MOE_CACHE(double) tc_moe_cache_f64;
/* The capacity per expert: min(N, ceil(capacity_factor * N * K / E)); -1 if N < 0, E < 1,
 * K not in {1, 2}, K > E, or capacity_factor is not a finite number > 0. */
int64_t tc_moe_capacity(int64_t N, int64_t E, int64_t K, double capacity_factor);
/* out (N,C), cache as above; inp (N,C), router (E,C), w1 (E,H,C), b1 (E,H), w2 (E,C,H),
 * b2 (E,C). TC_EINVAL for bad sizes, K, act, or cache->cap != tc_moe_capacity(...). */
int tc_moe_forward_f32(float *out, tc_moe_cache_f32 *cache, const float *inp, const float *router,
                       const float *w1, const float *b1, const float *w2, const float *b2,
                       int64_t N, int64_t C, int64_t H, int64_t E, int64_t K,
                       double capacity_factor, int act);
int tc_moe_forward_f64(double *out, tc_moe_cache_f64 *cache, const double *inp,
                       const double *router, const double *w1, const double *b1,
                       const double *w2, const double *b2, int64_t N, int64_t C, int64_t H,
                       int64_t E, int64_t K, double capacity_factor, int act);
/* The backward of out and of aux_grad * aux: dinp (N,C), drouter (E,C), dw1 (E,H,C),
 * db1 (E,H), dw2 (E,C,H), db2 (E,C) (each may be NULL: not wanted; db1 / db2 must be NULL
 * when b1 / b2 were) from dout (N,C) and the forward's cache and inputs. Gates to router:
 * dp[n,e_j] += dg_j (K = 1), (dg_j - sum_i dg_i g_i) / (p[e1] + p[e2]) (K = 2), with
 * dg_j = dout[n] . eo[slot] for a kept choice (0 dropped); dp[n,e] += aux_grad E f_e / N;
 * then the softmax and the router product. write: TC_WRITE(0..5) = dinp, drouter, dw1, db1,
 * dw2, db2. TC_EINVAL also for a cache whose routing is out of range. */
int tc_moe_backward_f32(float *dinp, float *drouter, float *dw1, float *db1, float *dw2,
                        float *db2, const float *dout, double aux_grad,
                        const tc_moe_cache_f32 *cache, const float *inp, const float *router,
                        const float *w1, const float *w2, int64_t N, int64_t C, int64_t H,
                        int64_t E, int64_t K, int act, int write);
int tc_moe_backward_f64(double *dinp, double *drouter, double *dw1, double *db1, double *dw2,
                        double *db2, const double *dout, double aux_grad,
                        const tc_moe_cache_f64 *cache, const double *inp, const double *router,
                        const double *w1, const double *w2, int64_t N, int64_t C, int64_t H,
                        int64_t E, int64_t K, int act, int write);
/* The plain references (moe_ref.h: loops in double, no GEMM, no threads), same arguments. */
int tc_moe_forward_ref_f32(float *out, tc_moe_cache_f32 *cache, const float *inp,
                           const float *router, const float *w1, const float *b1,
                           const float *w2, const float *b2, int64_t N, int64_t C, int64_t H,
                           int64_t E, int64_t K, double capacity_factor, int act);
int tc_moe_forward_ref_f64(double *out, tc_moe_cache_f64 *cache, const double *inp,
                           const double *router, const double *w1, const double *b1,
                           const double *w2, const double *b2, int64_t N, int64_t C, int64_t H,
                           int64_t E, int64_t K, double capacity_factor, int act);
int tc_moe_backward_ref_f32(float *dinp, float *drouter, float *dw1, float *db1, float *dw2,
                            float *db2, const float *dout, double aux_grad,
                            const tc_moe_cache_f32 *cache, const float *inp,
                            const float *router, const float *w1, const float *w2, int64_t N,
                            int64_t C, int64_t H, int64_t E, int64_t K, int act, int write);
int tc_moe_backward_ref_f64(double *dinp, double *drouter, double *dw1, double *db1,
                            double *dw2, double *db2, const double *dout, double aux_grad,
                            const tc_moe_cache_f64 *cache, const double *inp,
                            const double *router, const double *w1, const double *w2,
                            int64_t N, int64_t C, int64_t H, int64_t E, int64_t K, int act,
                            int write);

/* ------------------------------------------------------------------ end mixture of experts */

/* ------------------------------------------------------------------ workspace (workspace.c) */

#include <stddef.h>

/* Kernel scratch, cached per calling thread (grow-only, 64-byte aligned, freed at thread
 * exit): tc_workspace(slot, bytes) returns the calling thread's buffer for slot, of at least
 * bytes, allocating only when it has to grow (NULL if that fails). Its contents are not
 * kept from call to call. Kernels that can be live at once on one thread use distinct slots. */
enum {
    TC_WS_GEMM_A,    /* tc_gemm: packed A blocks (one per thread of the product) */
    TC_WS_GEMM_B,    /* tc_gemm: the packed B panel */
    TC_WS_ATTENTION, /* attention forward/backward tile scratch */
    TC_WS_ATT_KEYS,  /* attention forward: transposed keys */
    TC_WS_FUSED,     /* fused kernels' intermediates */
    TC_WS_FUSED2,
    TC_WS_MOE,       /* mixture of experts: router logits, backward gradients */
    TC_WS_MUON,      /* Muon: one thread's Newton-Schulz matrices (X, Xn, A, B) */
    TC_WS_NSLOTS
};
void *tc_workspace(int slot, size_t bytes);
/* bytes of 64-byte aligned memory (NULL if out of memory), freed with free(); from 4 MiB up
 * 2 MiB aligned and advised to use transparent huge pages (Linux). */
void *tc_alloc_big(size_t bytes);
/* Free the calling thread's buffers (the next call allocates again). */
void tc_workspace_release(void);
/* Number of allocations tc_workspace has made in this process (for tests). */
uint64_t tc_workspace_alloc_count(void);

/* ------------------------------------------------------------------ end workspace */

#ifdef __cplusplus
}
#endif

#endif /* TC_H */
