/* optim_muon_impl.h: the Muon update (Keller Jordan's "MomentUm Orthogonalized by
 * Newton-Schulz", kellerjordan.github.io/posts/muon) of the hidden weight matrices of a flat
 * parameter buffer, written once for real_t. Per matrix W (rows, cols) at an offset of the
 * flat arrays, with torch's lerp:
 *   buf = lerp(buf, grad, 1 - momentum);  u = nesterov ? lerp(grad, buf, momentum) : buf;
 *   X = u, or u^T when rows > cols (X is (r, c), r = min(rows, cols));  X /= ||X||_F + 1e-7;
 *   ns_steps times: A = X X^T (r, r);  B = b A + c A A;  X = a X + B X,
 *                   (a, b, c) = (3.4445, -4.7750, 2.0315), the published quintic;
 *   W = W (1 - lr weight_decay) - lr sqrt(max(1, rows / cols)) X (transposed back).
 * The three products per step run on tc_gemm (packed, vectorised, threaded); the
 * element-wise passes are threaded loops. The reference runs the iteration in bfloat16 on a
 * GPU; here it runs in the parameters' dtype (float32 or float64). */

#ifndef OPTIM_MUON_ONCE
#define OPTIM_MUON_ONCE
#define MUON_A 3.4445
#define MUON_B (-4.7750)
#define MUON_C 2.0315
#define MUON_EPS 1e-7

/* 0 when the (count, 3) table of (offset, rows, cols) lists matrices inside [0, n) in
 * increasing, non-overlapping order with rows, cols >= 1; -1 otherwise. *max_rc, *max_r2:
 * the largest r * c and r * r (r = min(rows, cols)), the scratch sizes. */
static int muon_check_matrices(const int64_t *matrices, int64_t count, int64_t n,
                               int64_t *max_rc, int64_t *max_r2)
{
    int64_t end = 0;
    *max_rc = *max_r2 = 0;
    for (int64_t k = 0; k < count; k++) {
        const int64_t off = matrices[3 * k], rows = matrices[3 * k + 1];
        const int64_t cols = matrices[3 * k + 2];
        if (off < end || rows < 1 || cols < 1 || rows > n || cols > n / rows
            || off > n - rows * cols)
            return -1;
        end = off + rows * cols;
        const int64_t r = rows < cols ? rows : cols;
        if (rows * cols > *max_rc) *max_rc = rows * cols;
        if (r * r > *max_r2) *max_r2 = r * r;
    }
    return 0;
}
#endif

/* torch's lerp(start, end, weight) = start + weight (end - start), evaluated as torch does:
 * from the nearer end (the formula depends on |weight| < 0.5). */
static inline real_t FN(muon_lerp)(real_t start, real_t end, real_t weight)
{
    return MATH(fabs)(weight) < (real_t)0.5 ? start + weight * (end - start)
                                            : end - (end - start) * (1 - weight);
}

/* One matrix: param, buf, grad (rows, cols) row-major; X, Xn (rows * cols), A, B (r * r)
 * scratch. */
static int FN(muon_matrix)(real_t *param, real_t *buf, const real_t *grad, int64_t rows,
                           int64_t cols, real_t *X, real_t *Xn, real_t *A, real_t *B,
                           double lr, double momentum, double weight_decay, int nesterov,
                           int ns_steps)
{
    const int64_t size = rows * cols, tr = rows > cols;
    const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
    const real_t w_buf = (real_t)(1.0 - momentum), w_nest = (real_t)momentum;
    const int par = TC_PAR(size, TC_PARALLEL_MIN_WORK);
    (void)par; /* read only by the OpenMP pragmas (none in a serial build) */
    /* momentum, then X = the update (transposed when rows > cols) */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t e = i * cols + j;
            const real_t b = FN(muon_lerp)(buf[e], grad[e], w_buf);
            buf[e] = b;
            X[tr ? j * rows + i : e] = nesterov ? FN(muon_lerp)(grad[e], b, w_nest) : b;
        }
    const real_t denom = (real_t)(sqrt(FN(optim_sum_squares)(X, size)) + MUON_EPS);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t e = 0; e < size; e++) X[e] = X[e] / denom;
    const real_t a = (real_t)MUON_A, bq = (real_t)MUON_B;
    for (int s = 0; s < ns_steps; s++) {
        int st = FN(tc_gemm)(A, X, X, r, r, c, r, c, c, 0, 1, 1, 0); /* A = X X^T */
        if (st == TC_OK) /* B = c A A */
            st = FN(tc_gemm)(B, A, A, r, r, r, r, r, r, 0, 0, (real_t)MUON_C, 0);
        if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (TC_PAR(r * r, TC_PARALLEL_MIN_WORK))
        for (int64_t e = 0; e < r * r; e++) B[e] = bq * A[e] + B[e]; /* B = b A + c A A */
        st = FN(tc_gemm)(Xn, B, X, r, c, r, c, r, c, 0, 0, 1, 0);    /* Xn = B X */
        if (st != TC_OK) return st;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t e = 0; e < size; e++) Xn[e] = a * X[e] + Xn[e]; /* Xn = a X + B X */
        real_t *t = X;
        X = Xn;
        Xn = t;
    }
    const real_t scale = (real_t)sqrt(rows > cols ? (double)rows / (double)cols : 1.0);
    const real_t decay = (real_t)(1.0 - lr * weight_decay), neg_lr = (real_t)-lr;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const int64_t e = i * cols + j;
            const real_t u = X[tr ? j * rows + i : e] * scale;
            param[e] = param[e] * decay + neg_lr * u; /* p.mul_(1 - lr wd).add_(u, alpha=-lr) */
        }
    return TC_OK;
}

// param, momentum_buffer (n,) updated where matrices lie; grad (n,); matrices (count, 3)
int FN(tc_optim_muon_update)(real_t *param, real_t *momentum_buffer, const real_t *grad,
                             int64_t n, const int64_t *matrices, int64_t count, double lr,
                             double momentum, double weight_decay, int nesterov, int ns_steps)
{
    int64_t max_rc, max_r2;
    if (n < 0 || count < 0 || ns_steps < 0 || (count > 0 && !matrices)
        || muon_check_matrices(matrices, count, n, &max_rc, &max_r2))
        return TC_EINVAL;
    if (count == 0) return TC_OK;
    if (!param || !momentum_buffer || !grad) return TC_EINVAL;
    const size_t bytes = sizeof(real_t) * (size_t)(2 * max_rc + 2 * max_r2);
    real_t *scratch = tc_alloc_big(bytes);
    if (!scratch) return TC_ENOMEM;
    real_t *X = scratch, *Xn = X + max_rc, *A = Xn + max_rc, *B = A + max_r2;
    int st = TC_OK;
    for (int64_t k = 0; k < count && st == TC_OK; k++) {
        const int64_t off = matrices[3 * k];
        st = FN(muon_matrix)(param + off, momentum_buffer + off, grad + off, matrices[3 * k + 1],
                             matrices[3 * k + 2], X, Xn, A, B, lr, momentum, weight_decay,
                             nesterov, ns_steps);
    }
    free(scratch);
    return st;
}
