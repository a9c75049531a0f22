/* optim_muon_impl.h: the Muon update (Keller Jordan's "MomentUm Orthogonalized by
 * Newton-Schulz", kellerjordan.github.io/posts/muon) of the hidden weight matrices of a flat
 * parameter buffer, written once for real_t. Per matrix W (rows, cols) at an offset of the
 * flat arrays, with torch's lerp:
 *   buf = lerp(buf, grad, 1 - momentum);  u = nesterov ? lerp(grad, buf, momentum) : buf;
 *   X = u, or u^T when rows > cols (X is (r, c), r = min(rows, cols));  X /= ||X||_F + 1e-7;
 *   ns_steps times: A = X X^T (r, r);  B = b A + c A A;  X = a X + B X,
 *                   (a, b, c) = (3.4445, -4.7750, 2.0315), the published quintic;
 *   W = W (1 - lr weight_decay) - lr sqrt(max(1, rows / cols)) X (transposed back).
 * The products per step run on tc_gemm (packed, vectorised, threaded), the symmetric ones
 * (A, A A) by their lower triangle only (muon_syrk_lower), and a I goes into B's diagonal
 * (muon_combine), so that a step is three products and two r x r passes; the element-wise
 * passes are threaded loops, tiled where they transpose. The driver spreads whole matrices
 * over the threads when their costs balance (tc_jobs_balance). The reference runs the iteration in bfloat16 on a
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

/* C (n, n) = alpha X X^T for X (n, k) row-major, C row-major, symmetric: only the blocks
 * on and below the diagonal are computed, a row block [i0, i1) of MUON_SYRK_NB rows against
 * rows [0, i1) per tc_gemm call (about (1 + NB / n) / 2 of the full product's FLOPs: 5/8 at
 * n = 384), then the upper triangle is mirrored from the lower (the caller's combine pass,
 * muon_mirror or muon_combine). C's upper part above the diagonal blocks is left unwritten
 * here. n <= MUON_SYRK_NB: one full product. sym: X is itself symmetric (k == n). */
#ifndef MUON_SYRK_NB
#define MUON_SYRK_NB 96
#endif
static int FN(muon_syrk_lower)(real_t *C, const real_t *X, int64_t n, int64_t k, real_t alpha,
                                int sym)
{
    for (int64_t i0 = 0; i0 < n; i0 += MUON_SYRK_NB) {
        const int64_t i1 = n - i0 < MUON_SYRK_NB ? n : i0 + MUON_SYRK_NB;
        /* sym (X symmetric, k == n): X^T's columns are X's, read untransposed (the cheaper
         * packing), the same products in the same order as with X^T */
        const int st = FN(tc_gemm)(C + i0 * n, X + i0 * k, X, i1 - i0, i1, k, n, k, k, 0, !sym,
                                   alpha, 0);
        if (st != TC_OK) return st;
    }
    return TC_OK;
}

/* Tiles of the transposing passes (the mirror, the combine, the transposed copies in and
 * out of X): a MUON_TILE x MUON_TILE tile is read by rows and written by columns while both
 * stay in L1 (a plain column write would touch a new cache line per element). */
#ifndef MUON_TILE
#define MUON_TILE 32
#endif
#ifndef MUON_TILED_FOR
/* (i, j) over [0, rows) x [0, cols) tile by tile (the rectangular transposing passes; the
 * caller's `omp parallel for` splits the tile rows) */
#define MUON_TILED_FOR(i, j, rows, cols)                                                    \
    for (int64_t i##b_ = 0; i##b_ < (rows); i##b_ += MUON_TILE)                             \
        for (int64_t j##b_ = 0; j##b_ < (cols); j##b_ += MUON_TILE)                         \
            for (int64_t i = i##b_; i < i##b_ + MUON_TILE && i < (rows); i++)               \
                for (int64_t j = j##b_; j < j##b_ + MUON_TILE && j < (cols); j++)
#endif

/* A (n, n): the strict upper triangle <- the strict lower one (A symmetric again) */
static void FN(muon_mirror)(real_t *A, int64_t n, int par)
{
    (void)par; /* read only by the OpenMP pragma (none in a serial build) */
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t ib = 0; ib < n; ib += MUON_TILE)
        for (int64_t jb = 0; jb <= ib; jb += MUON_TILE)
            for (int64_t i = ib; i < ib + MUON_TILE && i < n; i++)
                for (int64_t j = jb; j < jb + MUON_TILE && j < i; j++) A[j * n + i] = A[i * n + j];
}

/* B (n, n) <- a I + b A + B on and below the diagonal, mirrored above (B holds the lower
 * triangle of c A A, A is symmetric): the whole polynomial a I + b A + c A^2 of the
 * Newton-Schulz step, so that X <- (a I + b A + c A^2) X is one product */
static void FN(muon_combine)(real_t *B, const real_t *A, int64_t n, real_t a, real_t b,
                             int par)
{
    (void)par;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t ib = 0; ib < n; ib += MUON_TILE)
        for (int64_t jb = 0; jb <= ib; jb += MUON_TILE)
            for (int64_t i = ib; i < ib + MUON_TILE && i < n; i++) {
                for (int64_t j = jb; j < jb + MUON_TILE && j < i; j++) {
                    const real_t v = b * A[i * n + j] + B[i * n + j];
                    B[i * n + j] = v;
                    B[j * n + i] = v;
                }
                if (jb == ib) B[i * n + i] = a + (b * A[i * n + i] + B[i * n + i]);
            }
}

/* One matrix: param, buf, grad (rows, cols) row-major; X, Xn (rows * cols), A, B (r * r)
 * scratch. Per Newton-Schulz step, r = min(rows, cols), c = max(rows, cols):
 *   A (r, r) = X X^T            lower block rows on tc_gemm, mirrored   (~5/8 of 2 r^2 c)
 *   B (r, r) = c A A            the same (A A = A A^T: A is symmetric) (~5/8 of 2 r^3)
 *   B <- a I + b A + B          one pass over the lower triangle, mirrored
 *   Xn (r, c) = B X             one product (a X folded into B's diagonal: no extra pass)
 * The element-wise passes and the products use the threads unless this runs inside a
 * parallel region (the matrices spread over the threads): then all of it is serial. */
static int FN(muon_matrix)(real_t *param, real_t *buf, const real_t *grad, int64_t rows,
                           int64_t cols, real_t *X, real_t *Xn, real_t *A, real_t *B,
                           double lr, double momentum, double weight_decay, int nesterov,
                           int ns_steps)
{
    const int64_t size = rows * cols, tr = rows > cols;
    const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
    const real_t w_buf = (real_t)(1.0 - momentum), w_nest = (real_t)momentum;
    const int par = TC_PAR(size, TC_PARALLEL_MIN_WORK);
    const int par_r2 = TC_PAR(r * r, TC_PARALLEL_MIN_WORK);
    (void)par; /* read only by the OpenMP pragmas (none in a serial build) */
    /* momentum, then X = the update (transposed when rows > cols) */
    if (!tr) { /* X = u in place of the matrix: one contiguous pass */
#pragma omp parallel for schedule(static) if (par)
        for (int64_t e = 0; e < size; e++) {
            const real_t b = FN(muon_lerp)(buf[e], grad[e], w_buf);
            buf[e] = b;
            X[e] = nesterov ? FN(muon_lerp)(grad[e], b, w_nest) : b;
        }
    } else { /* X = u^T, by tiles (the column writes stay in L1) */
#pragma omp parallel for schedule(static) if (par)
        MUON_TILED_FOR(i, j, rows, cols) {
            const int64_t e = i * cols + j;
            const real_t b = FN(muon_lerp)(buf[e], grad[e], w_buf);
            buf[e] = b;
            X[j * rows + i] = nesterov ? FN(muon_lerp)(grad[e], b, w_nest) : b;
        }
    }
    const real_t denom = (real_t)(sqrt(FN(optim_sum_squares)(X, size)) + MUON_EPS);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t e = 0; e < size; e++) X[e] = X[e] / denom;
    const real_t a = (real_t)MUON_A, bq = (real_t)MUON_B;
    for (int s = 0; s < ns_steps; s++) {
        int st = FN(muon_syrk_lower)(A, X, r, c, 1, 0); /* A = X X^T (lower) */
        if (st != TC_OK) return st;
        FN(muon_mirror)(A, r, par_r2);
        st = FN(muon_syrk_lower)(B, A, r, r, (real_t)MUON_C, 1); /* B = c A A (lower) */
        if (st != TC_OK) return st;
        FN(muon_combine)(B, A, r, a, bq, par_r2);               /* B = a I + b A + c A A */
        st = FN(tc_gemm)(Xn, B, X, r, c, r, c, r, c, 0, 0, 1, 0); /* Xn = B X */
        if (st != TC_OK) return st;
        real_t *t = X;
        X = Xn;
        Xn = t;
    }
    const real_t scale = (real_t)sqrt(rows > cols ? (double)rows / (double)cols : 1.0);
    const real_t decay = (real_t)(1.0 - lr * weight_decay), neg_lr = (real_t)-lr;
    if (!tr) {
#pragma omp parallel for schedule(static) if (par)
        for (int64_t e = 0; e < size; e++)
            param[e] = param[e] * decay + neg_lr * (X[e] * scale); /* p *= 1 - lr wd; -= lr u */
    } else {
#pragma omp parallel for schedule(static) if (par)
        MUON_TILED_FOR(i, j, rows, cols) {
            const int64_t e = i * cols + j;
            param[e] = param[e] * decay + neg_lr * (X[j * rows + i] * scale);
        }
    }
    return TC_OK;
}

#ifndef OPTIM_MUON_SCHED_ONCE
#define OPTIM_MUON_SCHED_ONCE
/* The FLOPs of one matrix's Newton-Schulz steps (r = min, c = max side; full products) */
static double muon_cost(int64_t rows, int64_t cols, int ns_steps)
{
    const double r = (double)(rows < cols ? rows : cols), c = (double)(rows < cols ? cols : rows);
    return (double)ns_steps * (4 * r * r * c + 2 * r * r * r) + 8 * r * c;
}

typedef struct {
    double cost;
    int64_t k;
} muon_job;

static int muon_job_cmp(const void *x, const void *y) /* cost descending, then k */
{
    const muon_job *a = x, *b = y;
    if (a->cost != b->cost) return a->cost < b->cost ? 1 : -1;
    return (a->k > b->k) - (a->k < b->k);
}

#endif

// param, momentum_buffer (n,) updated where matrices lie; grad (n,); matrices (count, 3)
/* Schedule: with several threads and matrices that balance over them (tc_jobs_balance),
 * each thread takes whole matrices, largest first (dynamic hand-out), and runs them serially
 * in its own scratch: no barrier inside a matrix, and every product at full single-core
 * speed. Otherwise one matrix at a time with threaded products and passes. Either way each
 * matrix is computed the same way by one code path whose products do not depend on the
 * thread count, so the results do not either (bitwise, given the same sum of squares, which
 * is chunked in a fixed order). */
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
    muon_job *jobs = malloc(sizeof(muon_job) * (size_t)count);
    if (!jobs) return TC_ENOMEM;
    double total = 0;
    for (int64_t k = 0; k < count; k++) {
        jobs[k].cost = muon_cost(matrices[3 * k + 1], matrices[3 * k + 2], ns_steps);
        jobs[k].k = k;
        total += jobs[k].cost;
    }
    qsort(jobs, (size_t)count, sizeof(muon_job), muon_job_cmp);
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    const int spread = TC_PAR(total, 4.0 * 2097152.0) &&
                       tc_jobs_balance(&jobs[0].cost, sizeof(muon_job), count, nth);
    (void)spread; /* read only by the OpenMP if clause: unused in a serial build */
    const int64_t per = 2 * max_rc + 2 * max_r2; /* one thread's scratch: X, Xn, A, B */
    int st = TC_OK;
#pragma omp parallel num_threads(nth) if (spread)
    {
        /* each thread's own cached workspace: a warmed-up step allocates nothing */
        real_t *X = tc_workspace(TC_WS_MUON, sizeof(real_t) * (size_t)per);
        if (!X) {
#pragma omp atomic write
            st = TC_ENOMEM;
        }
        real_t *Xn = X ? X + max_rc : NULL, *A = X ? Xn + max_rc : NULL;
        real_t *B = X ? A + max_r2 : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t q = 0; q < count; q++) {
            const int64_t k = jobs[q].k, off = matrices[3 * k];
            int failed;
#pragma omp atomic read
            failed = st;
            if (failed != TC_OK || !X) continue;
            const int s = FN(muon_matrix)(param + off, momentum_buffer + off, grad + off,
                                          matrices[3 * k + 1], matrices[3 * k + 2], X, Xn, A,
                                          B, lr, momentum, weight_decay, nesterov, ns_steps);
            if (s != TC_OK) {
#pragma omp atomic write
                st = s;
            }
        }
    }
    free(jobs);
    return st;
}
