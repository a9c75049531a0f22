/* optim_impl.h: in-place optimizer updates over flat arrays, written once for real_t. The math
 * is torch.optim's single-tensor ("for-loop") implementation operation for operation, so
 * float64 agrees to rounding and float32 to a few ulps. Hyper-parameters arrive as double
 * (Python floats) and are rounded to real_t where torch rounds them; bias corrections are
 * computed once per call in double, never inside the per-element loop.
 *
 * Every element is updated independently, so the loops split across threads with results
 * independent of the thread count; they vectorise (setup.py builds with -fno-math-errno,
 * which changes no result) and are memory-bound. The updates exist out of place too
 * (*_update_out: new arrays from old ones, the inputs unchanged, as the immutable tree
 * optimizers need) near the in-place cost: see OPTIM_BLOCK_N. */

#ifndef OPTIM_IMPL_ONCE
#define OPTIM_IMPL_ONCE
/* Element-wise updates run in blocks of OPTIM_BLOCK_N elements: each block's results are
 * computed into stack arrays (so the arithmetic loop never aliases its inputs and
 * vectorises alike in place and out of place), then copied to the destinations. Out of
 * place on large arrays (n >= OPTIM_STREAM_MIN) the copy uses non-temporal stores: they
 * skip reading the destination's old cache lines from memory, which an out-of-place update
 * of arrays larger than the cache would otherwise pay (10 memory passes instead of the
 * in-place 7 for Adam). Only whole 64-byte lines are streamed (a partly streamed line
 * leaves a write-combining buffer half full and costs a partial write to memory): the
 * blocks after the first start where the first destination's lines start (the first block
 * is the short head before that, optim_block_bounds), so destinations that share its
 * offset within a line (numpy's large allocations all do) stream every line but the
 * partial ones at either end of the array; any other destination streams the whole lines
 * inside each block and stores the partial ones plainly. The numbers are the same either
 * way: only where they are stored and in which blocks differs. SSE2 is baseline x86-64;
 * elsewhere plain stores.
 *
 * Streaming blocks are shorter (OPTIM_STREAM_BLOCK_N) and prefetch their inputs
 * OPTIM_PREFETCH_BYTES ahead (optim_prefetch): the write-combining buffers of the streamed
 * lines take the core's line-fill buffers, which the in-place update leaves to the reads,
 * so the hardware prefetchers keep fewer reads in flight; short blocks spread the streamed
 * lines evenly among the reads and the hints issue the reads early. On the 6x384 GPT
 * (10.8M float32, 1 thread) that took the out-of-place AdamW from 1.23x the in-place time
 * to about 1.06x (python -m benchmarks.optim; the in-place blocks, which gain nothing from
 * either, are unchanged). */
#define OPTIM_BLOCK_N 256
#define OPTIM_STREAM_BLOCK_N 64   /* a multiple of 16: whole 64-byte lines in float32 */
#define OPTIM_PREFETCH_BYTES 1024
#define OPTIM_STREAM_MIN ((int64_t)1 << 18)
#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__) && !defined(TC_PORTABLE_ONLY)
#include <emmintrin.h>
#define OPTIM_STREAMS 1
#define OPTIM_FENCE() _mm_sfence()
#else
#define OPTIM_STREAMS 0
#define OPTIM_FENCE() ((void)0)
#endif

/* 1 when dst is src (an in-place update) or [dst, dst + n) and [src, src + n) are disjoint;
 * 0 for a partial overlap (rejected: the blocks would read already-written elements). */
static int optim_alias_ok(const void *dst, const void *src, int64_t nbytes)
{
    const char *d = dst, *s = src;
    return d == s || d + nbytes <= s || s + nbytes <= d;
}

/* 1 when each of the nout destinations is each of the nin sources or disjoint from it, and
 * the destinations are pairwise disjoint (every array of nbytes bytes, n elements). */
static int optim_check_aliases(void *const *outs, int nout, const void *const *ins, int nin,
                               int64_t n, int64_t nbytes)
{
    for (int a = 0; a < nout; a++) {
        for (int b = 0; b < nin; b++)
            if (!optim_alias_ok(outs[a], ins[b], nbytes)) return 0;
        for (int b = 0; b < a; b++)
            if (!optim_alias_ok(outs[a], outs[b], nbytes) || (n > 0 && outs[a] == outs[b]))
                return 0;
    }
    return 1;
}

/* 1 when p is a multiple of size (every real_t array a kernel streams must be: the line
 * arithmetic below counts whole elements) */
static int optim_aligned(const void *p, size_t size)
{
    return ((uintptr_t)p % size) == 0;
}

/* Elements of size bytes from p (element-aligned) to the next 64-byte line boundary, at
 * most n. */
static int64_t optim_to_line(const void *p, int64_t n, size_t size)
{
    const int64_t k = (int64_t)(((64u - ((uintptr_t)p & 63u)) & 63u) / size);
    return k < n ? k : n;
}

/* Block k of an n-element update in blocks of bn elements (bn <= OPTIM_BLOCK_N) whose first
 * destination needs head elements to reach a line boundary: [*i0, *i0 + *len); block 0 is
 * [0, head), block k >= 1 is [head + (k-1) bn, ...) cut at n. nblocks = optim_nblocks(n,
 * head, bn). */
static void optim_block_bounds(int64_t k, int64_t n, int64_t head, int64_t bn, int64_t *i0,
                               int64_t *len)
{
    const int64_t a = k == 0 ? 0 : head + (k - 1) * bn;
    const int64_t b = k == 0 ? head : a + bn;
    *i0 = a;
    *len = (b < n ? b : n) - a;
}

static int64_t optim_nblocks(int64_t n, int64_t head, int64_t bn)
{
    return n == 0 ? 0 : 1 + (n - head + bn - 1) / bn;
}

/* Hint the lines [OPTIM_PREFETCH_BYTES, + nbytes) ahead of each of the inputs p[0..count)
 * into the cache, line by line across the inputs, when they lie inside the arrays (room:
 * the bytes from p[k] to the end of its array, alike for all): a streaming block's inputs
 * that a later block reads. */
static void optim_prefetch(const void *const *p, int count, int64_t nbytes, int64_t room)
{
    if (OPTIM_PREFETCH_BYTES + nbytes > room) return;
    for (int64_t o = OPTIM_PREFETCH_BYTES; o < OPTIM_PREFETCH_BYTES + nbytes; o += 64)
        for (int k = 0; k < count; k++) __builtin_prefetch((const char *)p[k] + o, 0, 3);
}
#endif

// dst (len,) = src (len,): when stream, non-temporal stores of the whole 64-byte lines of dst
// (dst element-aligned) and plain stores of the partial lines at either end; else plain
static void FN(optim_store)(real_t *dst, const real_t *src, int64_t len, int stream)
{
    int64_t i = 0;
#if OPTIM_STREAMS
    if (stream) {
        const int64_t per_line = 64 / (int64_t)sizeof(real_t);
        const int64_t head = optim_to_line(dst, len, sizeof(real_t));
        memcpy(dst, src, sizeof(real_t) * (size_t)head);
        const int64_t stop = head + (len - head) / per_line * per_line;
        for (i = head; i < stop; i += per_line) {
#if TC_F64
            for (int64_t j = 0; j < per_line; j += 2)
                _mm_stream_pd(dst + i + j, _mm_loadu_pd(src + i + j));
#else
            for (int64_t j = 0; j < per_line; j += 4)
                _mm_stream_ps(dst + i + j, _mm_loadu_ps(src + i + j));
#endif
        }
    }
#else
    (void)stream;
#endif
    memcpy(dst + i, src + i, sizeof(real_t) * (size_t)(len - i));
}

/* SGD's coefficients (rounded to real_t once per call) and switches. */
typedef struct {
    real_t neg_lr, mu, keep, wd;
    int use_wd, use_mu, nesterov, first_step;
} FN(optim_sgd_coef);

// new_p, new_b (len,) from param, momentum_buffer (NULL iff !use_mu), grad (len,)
static void FN(optim_sgd_block)(real_t *restrict new_p, real_t *restrict new_b,
                                const real_t *param, const real_t *momentum_buffer,
                                const real_t *grad, int64_t len, const FN(optim_sgd_coef) *c)
{
    const real_t neg_lr = c->neg_lr, mu = c->mu, keep = c->keep, wd = c->wd;
    const int use_wd = c->use_wd, use_mu = c->use_mu, nesterov = c->nesterov;
    const int first_step = c->first_step;
    for (int64_t i = 0; i < len; i++) {
        real_t g = grad[i];
        if (use_wd) g = g + wd * param[i]; /* grad.add(param, alpha=wd) */
        if (use_mu) {
            /* first step: buf = clone(grad); then buf.mul_(momentum).add_(grad, alpha=1-damp) */
            const real_t b = first_step ? g : momentum_buffer[i] * mu + keep * g;
            new_b[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        new_p[i] = param[i] + neg_lr * g; /* param.add_(grad, alpha=-lr) */
    }
}

/* new_param, new_buffer (n,) = the SGD update of param, momentum_buffer (n,) by grad (n,).
 * Each destination is its source (in place) or disjoint from every input; momentum_buffer
 * and new_buffer NULL only when momentum == 0. */
int FN(tc_optim_sgd_update_out)(real_t *new_param, real_t *new_buffer, const real_t *param,
                                const real_t *momentum_buffer, const real_t *grad, int64_t n,
                                double lr, double momentum, double dampening,
                                double weight_decay, int nesterov, int first_step)
{
    if (n < 0 || (momentum != 0 && (!momentum_buffer || !new_buffer))) return TC_EINVAL;
    if (n > 0 && (!new_param || !param || !grad)) return TC_EINVAL;
    const int64_t bytes = n * (int64_t)sizeof(real_t);
    const int nio = momentum != 0 ? 2 : 1;
    real_t *const outs[2] = {new_param, new_buffer};
    const real_t *const ins[3] = {param, grad, momentum_buffer};
    if (!optim_check_aliases((void *const *)outs, nio, (const void *const *)ins, nio + 1, n, bytes))
        return TC_EINVAL;
    const FN(optim_sgd_coef) c = {(real_t)-lr, (real_t)momentum, (real_t)(1.0 - dampening),
                                  (real_t)weight_decay, weight_decay != 0, momentum != 0,
                                  nesterov, first_step};
    const int stream = OPTIM_STREAMS && new_param != param && n >= OPTIM_STREAM_MIN
                       && optim_aligned(new_param, sizeof(real_t))
                       && (!c.use_mu || optim_aligned(new_buffer, sizeof(real_t)));
    const int64_t head = stream ? optim_to_line(new_param, n, sizeof(real_t)) : 0;
    const int64_t bn = stream ? OPTIM_STREAM_BLOCK_N : OPTIM_BLOCK_N;
    const int64_t nblocks = optim_nblocks(n, head, bn);
#pragma omp parallel if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    {
        _Alignas(64) real_t tp[OPTIM_BLOCK_N], tb[OPTIM_BLOCK_N];
#pragma omp for schedule(static) nowait
        for (int64_t k = 0; k < nblocks; k++) {
            int64_t i0, len;
            optim_block_bounds(k, n, head, bn, &i0, &len);
            if (stream) {
                const void *in[3] = {param + i0, grad + i0,
                                     c.use_mu ? momentum_buffer + i0 : NULL};
                optim_prefetch(in, c.use_mu && !c.first_step ? 3 : 2,
                               len * (int64_t)sizeof(real_t), (n - i0) * (int64_t)sizeof(real_t));
            }
            FN(optim_sgd_block)(tp, tb, param + i0, c.use_mu ? momentum_buffer + i0 : NULL,
                                grad + i0, len, &c);
            FN(optim_store)(new_param + i0, tp, len, stream);
            if (c.use_mu) FN(optim_store)(new_buffer + i0, tb, len, stream);
        }
        if (stream) OPTIM_FENCE();
    }
    return TC_OK;
}

// param (n,), momentum_buffer (n,) (NULL allowed only when momentum == 0), grad (n,)
int FN(tc_optim_sgd_update)(real_t *param, real_t *momentum_buffer, const real_t *grad, int64_t n,
                            double lr, double momentum, double dampening, double weight_decay,
                            int nesterov, int first_step)
{
    return FN(tc_optim_sgd_update_out)(param, momentum != 0 ? momentum_buffer : NULL, param,
                                       momentum != 0 ? momentum_buffer : NULL, grad, n, lr,
                                       momentum, dampening, weight_decay, nesterov, first_step);
}

/* Adam's coefficients (bias corrections folded in once per call, in double) and switches. */
typedef struct {
    real_t neg_step_size, bc2_sqrt, w1, w1c, b2, w2, e, wd, decay;
    int lerp_small, l2, shrink;
} FN(optim_adam_coef);

// new_p, new_m, new_v (len,) from param, exp_avg, exp_avg_sq, grad (len,)
static void FN(optim_adam_block)(real_t *restrict new_p, real_t *restrict new_m,
                                 real_t *restrict new_v, const real_t *param,
                                 const real_t *exp_avg, const real_t *exp_avg_sq,
                                 const real_t *grad, int64_t len, const FN(optim_adam_coef) *c)
{
    const real_t neg_step_size = c->neg_step_size, bc2_sqrt = c->bc2_sqrt;
    const real_t w1 = c->w1, w1c = c->w1c, b2 = c->b2, w2 = c->w2, e = c->e;
    const real_t wd = c->wd, decay = c->decay;
    const int lerp_small = c->lerp_small, l2 = c->l2, shrink = c->shrink;
    for (int64_t i = 0; i < len; i++) {
        real_t p = param[i], g = grad[i];
        if (shrink) p = p * decay;  /* param.mul_(1 - lr * wd) */
        if (l2) g = g + wd * p;     /* grad.add(param, alpha=wd) */
        const real_t m0 = exp_avg[i];    /* torch's lerp: the formula depends on |weight| < 0.5 */
        const real_t m = lerp_small ? m0 + w1 * (g - m0) : g - (g - m0) * w1c;
        const real_t v = exp_avg_sq[i] * b2 + w2 * g * g; /* mul_(b2).addcmul_(g, g, 1 - b2) */
        const real_t denom = MATH(sqrt)(v) / bc2_sqrt + e;
        new_m[i] = m;
        new_v[i] = v;
        new_p[i] = p + neg_step_size * m / denom; /* addcdiv_(m, denom, value=-step_size) */
    }
}

/* new_param, new_exp_avg, new_exp_avg_sq (n,) = the Adam (decoupled 0) or AdamW (1) update
 * of param, exp_avg, exp_avg_sq (n,) by grad (n,), step >= 1. Each destination is its
 * source (in place) or disjoint from every input. */
int FN(tc_optim_adam_update_out)(real_t *new_param, real_t *new_exp_avg, real_t *new_exp_avg_sq,
                                 const real_t *param, const real_t *exp_avg,
                                 const real_t *exp_avg_sq, const real_t *grad, int64_t n,
                                 int64_t step, double lr, double beta1, double beta2, double eps,
                                 double weight_decay, int decoupled)
{
    if (n < 0 || step < 1 || (decoupled != 0 && decoupled != 1)) return TC_EINVAL;
    if (n > 0 && (!new_param || !new_exp_avg || !new_exp_avg_sq || !param || !exp_avg
                  || !exp_avg_sq || !grad))
        return TC_EINVAL;
    const int64_t bytes = n * (int64_t)sizeof(real_t);
    real_t *const outs[3] = {new_param, new_exp_avg, new_exp_avg_sq};
    const real_t *const ins[4] = {param, exp_avg, exp_avg_sq, grad};
    if (!optim_check_aliases((void *const *)outs, 3, (const void *const *)ins, 4, n, bytes))
        return TC_EINVAL;
    const double bias_correction1 = 1.0 - pow(beta1, (double)step);
    const double bias_correction2 = 1.0 - pow(beta2, (double)step);
    const real_t w1 = (real_t)(1.0 - beta1); /* exp_avg.lerp_(grad, w1) */
    const FN(optim_adam_coef) c = {
        (real_t)-(lr / bias_correction1), (real_t)sqrt(bias_correction2), w1, 1 - w1,
        (real_t)beta2, (real_t)(1.0 - beta2), (real_t)eps, (real_t)weight_decay,
        (real_t)(1.0 - lr * weight_decay), MATH(fabs)(w1) < (real_t)0.5,
        weight_decay != 0 && !decoupled, weight_decay != 0 && decoupled};
    const int stream = OPTIM_STREAMS && n >= OPTIM_STREAM_MIN
                       && new_param != param && new_exp_avg != exp_avg
                       && new_exp_avg_sq != exp_avg_sq
                       && optim_aligned(new_param, sizeof(real_t))
                       && optim_aligned(new_exp_avg, sizeof(real_t))
                       && optim_aligned(new_exp_avg_sq, sizeof(real_t));
    const int64_t head = stream ? optim_to_line(new_param, n, sizeof(real_t)) : 0;
    const int64_t bn = stream ? OPTIM_STREAM_BLOCK_N : OPTIM_BLOCK_N;
    const int64_t nblocks = optim_nblocks(n, head, bn);
#pragma omp parallel if (TC_PAR(n, TC_PARALLEL_MIN_WORK))
    {
        _Alignas(64) real_t tp[OPTIM_BLOCK_N], tm[OPTIM_BLOCK_N], tv[OPTIM_BLOCK_N];
#pragma omp for schedule(static) nowait
        for (int64_t k = 0; k < nblocks; k++) {
            int64_t i0, len;
            optim_block_bounds(k, n, head, bn, &i0, &len);
            if (stream) {
                const void *in[4] = {param + i0, exp_avg + i0, exp_avg_sq + i0, grad + i0};
                optim_prefetch(in, 4, len * (int64_t)sizeof(real_t),
                               (n - i0) * (int64_t)sizeof(real_t));
            }
            FN(optim_adam_block)(tp, tm, tv, param + i0, exp_avg + i0, exp_avg_sq + i0,
                                 grad + i0, len, &c);
            FN(optim_store)(new_param + i0, tp, len, stream);
            FN(optim_store)(new_exp_avg + i0, tm, len, stream);
            FN(optim_store)(new_exp_avg_sq + i0, tv, len, stream);
        }
        if (stream) OPTIM_FENCE();
    }
    return TC_OK;
}

// param, exp_avg, exp_avg_sq (n,) updated in place; grad (n,); step >= 1 counts this update
int FN(tc_optim_adam_update)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq, const real_t *grad, int64_t n,
                             int64_t step, double lr, double beta1, double beta2, double eps,
                             double weight_decay)
{
    return FN(tc_optim_adam_update_out)(param, exp_avg, exp_avg_sq, param, exp_avg, exp_avg_sq,
                                        grad, n, step, lr, beta1, beta2, eps, weight_decay, 0);
}

// param, exp_avg, exp_avg_sq (n,) updated in place; grad (n,); step >= 1 counts this update
int FN(tc_optim_adamw_update)(real_t *param, real_t *exp_avg, real_t *exp_avg_sq, const real_t *grad, int64_t n,
                              int64_t step, double lr, double beta1, double beta2, double eps,
                              double weight_decay)
{
    return FN(tc_optim_adam_update_out)(param, exp_avg, exp_avg_sq, param, exp_avg, exp_avg_sq,
                                        grad, n, step, lr, beta1, beta2, eps, weight_decay, 1);
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
