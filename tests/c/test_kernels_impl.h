/* test_kernels_impl.h: the checks of test_kernels.c, written once for real_t (included per
 * dtype by tc_dtypes.h). */

#if TC_F64
#define T_EPS 2.220446049250313e-16
#define T_DT "f64"
#else
#define T_EPS 1.1920928955078125e-07
#define T_DT "f32"
#endif

/* distance in units in the last place (0 for equal values, +0 / -0, or two NaNs) */
static double FN(ulps)(real_t a, real_t b)
{
    if (a != a || b != b) return (a != a && b != b) ? 0 : INFINITY;
    if (a == b) return 0;
#if TC_F64
    int64_t ia, ib;
    memcpy(&ia, &a, sizeof a);
    memcpy(&ib, &b, sizeof b);
    if (ia < 0) ia = INT64_MIN - ia;
    if (ib < 0) ib = INT64_MIN - ib;
#else
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof a);
    memcpy(&ib, &b, sizeof b);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
#endif
    return fabs((double)ia - (double)ib);
}

/* fast (n,) against portable (n,), both produced for case `what` of group s: exact (bitwise)
 * or each element within ulp_tol ulp or eps_tol eps of the case's scale (its largest finite
 * portable magnitude: where results cancel, ulps of a tiny value mean little); also
 * per-element bounds (bound != NULL: |fast - portable| <= bound[i], the GEMM's). */
static void FN(check)(stat_t *s, const char *what, const real_t *fast, const real_t *port, int64_t n,
                      int exact, double ulp_tol, double eps_tol, const double *bound)
{
    /* the digest of the portable output, every NaN as one pattern (a NaN made by an
     * operation, e.g. -inf * 0, is the CPU's default NaN: sign set on x86-64, clear on
     * AArch64) */
    uint64_t h = FNV0;
    for (int64_t i = 0; i < n; i++) {
        const real_t v = port[i] != port[i] ? (real_t)NAN : port[i];
        h = fnv(h, &v, sizeof v);
    }
    s->digest = fnv(s->digest, &h, sizeof h);
    uint64_t hf = FNV0;
    for (int64_t i = 0; i < n; i++) {
        const real_t v = fast[i] != fast[i] ? (real_t)NAN : fast[i];
        hf = fnv(hf, &v, sizeof v);
    }
    s->fast_digest = fnv(s->fast_digest, &hf, sizeof hf);
    if (g_verbose) printf("case %s.%s %s %016llx\n", T_DT, s->name, what, (unsigned long long)h);
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(port[i]) && fabs((double)port[i]) > scale) scale = fabs((double)port[i]);
    if (scale == 0) scale = 1;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(fast + i, port + i, sizeof(real_t)) == 0) continue;
        const double u = FN(ulps)(fast[i], port[i]);
        const double d = fabs((double)fast[i] - (double)port[i]);
        if (exact) {
            if (bad < 0) bad = i;
            continue;
        }
        if (u > 0 && fabs((double)port[i]) >= 1e-3 * scale && u > s->max_ulp) s->max_ulp = u;
        if (isfinite(d) && d / scale > s->max_rel) s->max_rel = d / scale;
        const int ok = bound ? d <= bound[i] : (u <= ulp_tol || d <= eps_tol * T_EPS * scale);
        if (!ok && bad < 0) bad = i;
    }
    if (bad >= 0) {
        s->fails++;
        printf("  mismatch %s %s %s: [%lld] %s %.17g, portable %.17g (%.0f ulp)\n", T_DT, s->name,
               what, (long long)bad, g_fast, (double)fast[bad], (double)port[bad],
               FN(ulps)(fast[bad], port[bad]));
    }
}

/* flips bit `bit` of *x (for -inject) */
static void FN(flip)(real_t *x, int bit)
{
#if TC_F64
    uint64_t u;
    memcpy(&u, x, sizeof u);
    u ^= (uint64_t)1 << bit;
#else
    uint32_t u;
    memcpy(&u, x, sizeof u);
    u ^= (uint32_t)1 << bit;
#endif
    memcpy(x, &u, sizeof u);
}

static void FN(fill)(real_t *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++) x[i] = (real_t)rng_uniform(lo, hi);
}

static real_t *FN(alloc)(int64_t n)
{
    real_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(real_t));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* ------------------------------------------------------------------ GEMM */

/* C (M,N) = alpha op(A) op(B) + beta C in the kernels' summation order: k ascending in
 * blocks of GEMM_KC = 512, each block summed from 0 (fused: fma per k, else a rounded
 * product then a rounded sum), then C = alpha acc + b C (b = beta for the first block, 1
 * after; b == 0: C is not read; fused: fma(alpha, acc, b C), the fast kernels' epilogue);
 * K == 0 or alpha == 0: C = beta C (0 if beta == 0). */
static void FN(gemm_model)(real_t *C, const real_t *A, const real_t *B, int64_t M, int64_t N, int64_t K,
                           int64_t ldc, int64_t lda, int64_t ldb, int ta, int tb, real_t alpha,
                           real_t beta, int fused)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            real_t c = C[i * ldc + j];
            if (K == 0 || alpha == 0) {
                C[i * ldc + j] = beta == 0 ? 0 : beta * c;
                continue;
            }
            for (int64_t pc = 0; pc < K; pc += 512) {
                real_t acc = 0;
                for (int64_t k = pc; k < K && k < pc + 512; k++) {
                    const real_t a = ta ? A[k * lda + i] : A[i * lda + k];
                    const real_t b = tb ? B[j * ldb + k] : B[k * ldb + j];
                    if (fused)
                        acc = MATH(fma)(a, b, acc);
                    else {
                        const real_t prod = a * b;
                        acc = acc + prod;
                    }
                }
                const real_t bb = pc == 0 ? beta : 1;
                if (bb == 0)
                    c = alpha * acc;
                else if (fused)
                    c = MATH(fma)(alpha, acc, bb * c);
                else {
                    const real_t t1 = alpha * acc, t2 = bb * c;
                    c = t1 + t2;
                }
            }
            C[i * ldc + j] = c;
        }
}

static void FN(test_gemm)(void)
{
    static const int64_t shapes[][3] = {
        {1, 1, 1},    {1, 17, 5},  {6, 16, 8},   {7, 33, 13}, {13, 5, 64},   {2, 3, 0},
        {37, 97, 41}, {5, 200, 3}, {64, 64, 600}, {150, 20, 9}, {100, 130, 1100}, {1, 300, 77},
        /* (more 12 x 32 tiles and their edges; these last ones leave the random stream
         * of the later groups as it was without them) */
        {25, 70, 37}, {30, 100, 530}};
    const size_t n_stream_shapes = 12;
    uint64_t rng_after = 0;
    static const double ab[][2] = {{1, 0}, {1, 1}, {0.5, -2}, {-1.25, 0}, {0, 3}};
    stat_t s, sm, sf, st, sa;
    stat_begin(&s, "gemm");          /* fast vs portable */
    stat_begin(&sa, "gemm_avx2_level"); /* x86: the AVX2 kernel with AVX-512 capped */
    stat_begin(&sm, "gemm_portable_model");
    stat_begin(&sf, "gemm_fast_model");
    stat_begin(&st, "gemm_threads");
    int ci = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        if (si == n_stream_shapes) rng_after = g_rng;
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        for (int tr = 0; tr < 4; tr++, ci++) {
            const int ta = tr & 1, tb = tr >> 1;
            const real_t alpha = (real_t)ab[ci % 5][0], beta = (real_t)ab[ci % 5][1];
            /* row strides past the row length: non-contiguous views */
            const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
            real_t *A = FN(alloc)((ta ? K : M) * lda), *B = FN(alloc)((tb ? N : K) * ldb);
            real_t *C0 = FN(alloc)(M * ldc), *Cf = FN(alloc)(M * ldc), *Cp = FN(alloc)(M * ldc);
            real_t *Cm = FN(alloc)(M * ldc);
            double *bound = malloc((size_t)(M * ldc > 0 ? M * ldc : 1) * sizeof(double));
            FN(fill)(A, (ta ? K : M) * lda, -1, 1);
            FN(fill)(B, (tb ? N : K) * ldb, -1, 1);
            FN(fill)(C0, M * ldc, -1, 1);
            char what[96];
            snprintf(what, sizeof what, "M=%lld N=%lld K=%lld ta=%d tb=%d a=%g b=%g", (long long)M,
                     (long long)N, (long long)K, ta, tb, (double)alpha, (double)beta);
            memcpy(Cf, C0, (size_t)(M * ldc) * sizeof(real_t));
            memcpy(Cp, C0, (size_t)(M * ldc) * sizeof(real_t));
            tc_cpu_set_portable(0);
            int rc = FN(tc_gemm)(Cf, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta);
            const char *kf = tc_cpu_kernel_name(TC_CPU_GEMM);
            const int fast_ran = kf && strcmp(kf, "generic") != 0;
            if (g_inject && M > 0 && N > 0 && K > 0) FN(flip)(Cf, 0);
            tc_cpu_set_portable(1);
            rc |= FN(tc_gemm)(Cp, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta);
            if (rc != TC_OK) {
                printf("  tc_gemm failed (%d) %s\n", rc, what);
                s.fails++;
            }
            /* |fast - portable| <= 2 (K + 2) eps (|alpha| sum |a b| + |beta c|), per entry */
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < ldc; j++) {
                    double sa = 0;
                    for (int64_t k = 0; k < K && j < N; k++)
                        sa += fabs((double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                   (double)(tb ? B[j * ldb + k] : B[k * ldb + j]));
                    bound[i * ldc + j] = j < N ? 2.0 * (double)(K + 2) * T_EPS *
                                                     (fabs((double)alpha) * sa +
                                                      fabs((double)beta * (double)C0[i * ldc + j]))
                                               : 0.0;
                }
            s.cases++;
            s.fast_cases += fast_ran;
            FN(check)(&s, what, Cf, Cp, M * ldc, !fast_ran, 0, 0, bound);
            /* each path against the scalar model of its order (the padding columns of C, past
             * N, must be untouched: the model leaves them too) */
            memcpy(Cm, C0, (size_t)(M * ldc) * sizeof(real_t));
            FN(gemm_model)(Cm, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta, 0);
            sm.cases++;
            FN(check)(&sm, what, Cp, Cm, M * ldc, 1, 0, 0, NULL);
            if (fast_ran) {
                memcpy(Cm, C0, (size_t)(M * ldc) * sizeof(real_t));
                FN(gemm_model)(Cm, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta, 1);
                sf.cases++;
                sf.fast_cases++;
                FN(check)(&sf, what, Cf, Cm, M * ldc, 1, 0, 0, NULL);
            }
            /* with the GEMM capped below AVX-512 (tc_cpu_set_avx512(0): the AVX2 kernel on
             * x86-64, nothing else changes elsewhere): the same model, bitwise; so the two
             * x86 levels give the same bits */
            {
                tc_cpu_set_portable(!fast_ran);
                tc_cpu_set_avx512(0);
                real_t *Ca = FN(alloc)(M * ldc);
                memcpy(Ca, C0, (size_t)(M * ldc) * sizeof(real_t));
                FN(tc_gemm)(Ca, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta);
                tc_cpu_set_avx512(-1);
                memcpy(Cm, C0, (size_t)(M * ldc) * sizeof(real_t));
                FN(gemm_model)(Cm, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta, fast_ran);
                sa.cases++;
                sa.fast_cases += fast_ran;
                FN(check)(&sa, what, Ca, Cm, M * ldc, 1, 0, 0, NULL);
                free(Ca);
            }
            /* products past 2 MFLOP run parallel: 2 threads give the same bits as 1 */
            if (2.0 * (double)M * (double)N * (double)K > 2097152.0) {
                for (int portable = 0; portable < 2; portable++) {
                    tc_cpu_set_portable(portable);
                    memcpy(Cm, C0, (size_t)(M * ldc) * sizeof(real_t));
                    tc_set_num_threads(2);
                    tc_sync_num_threads();
                    FN(tc_gemm)(Cm, A, B, M, N, K, ldc, lda, ldb, ta, tb, alpha, beta);
                    tc_set_num_threads(1);
                    tc_sync_num_threads();
                    st.cases++;
                    st.fast_cases += !portable && fast_ran;
                    FN(check)(&st, what, Cm, portable ? Cp : Cf, M * ldc, 1, 0, 0, NULL);
                }
            }
            free(A), free(B), free(C0), free(Cf), free(Cp), free(Cm), free(bound);
        }
    }
    g_rng = rng_after;
    stat_end(&s, T_DT, "fast vs portable within the FMA bound");
    stat_end(&sm, T_DT, "portable == mul+add model bitwise");
    stat_end(&sf, T_DT, "fast == fma model bitwise");
    stat_end(&st, T_DT, "2 threads == 1 bitwise");
    stat_end(&sa, T_DT, "AVX-512 capped == model bitwise");
}

/* ------------------------------------------------------------------ rows */

/* run `call` (writing the arrays out[0..nout)) with the fast variant into the *f buffers,
 * then the portable one into the *p buffers; fast_fma: whether an FMA variant ran */
#define RUN_BOTH(fast_fma, call_fast, call_port)                                            \
    do {                                                                                    \
        tc_cpu_set_portable(0);                                                             \
        if ((call_fast) != TC_OK) printf("  call failed: %s\n", #call_fast), g_fail = 1;    \
        fast_fma = fast_fma_ran();                                                          \
        tc_cpu_set_portable(1);                                                             \
        if ((call_port) != TC_OK) printf("  call failed: %s\n", #call_port), g_fail = 1;    \
    } while (0)

/* the values a row kernel must survive, written over the first entries of x (n >= 12) */
static void FN(specials)(real_t *x, int64_t n, int with_nan)
{
    const real_t sp[] = {0, -0.0, (real_t)1e-30, (real_t)-1e-30, 20, -20, 80, -80,
                         (real_t)1e4, (real_t)-1e4, INFINITY, -INFINITY, NAN};
    const int64_t m = (int64_t)(sizeof sp / sizeof sp[0]) - (with_nan ? 0 : 1);
    for (int64_t i = 0; i < m && i < n; i++) x[i] = sp[i];
}

#define ROW_ULP 8   /* fast vs portable tolerance of the row kernels, in ulp ... */
#define ROW_EPS 8   /* ... or in eps of the case's scale */

static void FN(test_exp)(void)
{
    stat_t s;
    stat_begin(&s, "vec_exp");
    static const int64_t ns[] = {1, 3, 8, 9, 31, 4096};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int64_t n = ns[k];
        real_t *x = FN(alloc)(n), *yf = FN(alloc)(n), *yp = FN(alloc)(n);
#if TC_F64
        FN(fill)(x, n, -750, 715);
#else
        FN(fill)(x, n, -110, 95);
#endif
        if (n >= 13) FN(specials)(x, n, 1);
        if (n == 4096) FN(fill)(x + 13, 2000, -2, 2);
        int ff;
        RUN_BOTH(ff, FN(tc_vec_exp)(yf, x, n), FN(tc_vec_exp)(yp, x, n));
        if (g_inject) FN(flip)(yf + n - 1, sizeof(real_t) * 8 - 3); /* an exponent bit */
        char what[32];
        snprintf(what, sizeof what, "n=%lld", (long long)n);
        s.cases++;
        s.fast_cases += ff;
        FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, 0, NULL);
        free(x), free(yf), free(yp);
    }
    stat_end(&s, T_DT, "exp rows");
}

static void FN(test_softmax)(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 1},  {2, 8, 1},  {2, 9, 1}, {3, 33, 1},
                                        {2, 1000, 1}, {3, 5, 4}, {2, 17, 9}, {1, 1, 5}};
    stat_t s;
    stat_begin(&s, "softmax");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t O = shapes[k][0], C = shapes[k][1], I = shapes[k][2], n = O * C * I;
        real_t *x = FN(alloc)(n), *g = FN(alloc)(n), *yf = FN(alloc)(n), *yp = FN(alloc)(n);
        real_t *df = FN(alloc)(n), *dp = FN(alloc)(n);
        FN(fill)(x, n, -8, 8);
        FN(fill)(g, n, -1, 1);
        if (n > 20) x[n / 2] = -INFINITY, x[n / 3] = 40; /* a masked entry, a large one */
        for (int is_log = 0; is_log < 2; is_log++) {
            char what[64];
            snprintf(what, sizeof what, "(%lld,%lld,%lld) log=%d", (long long)O, (long long)C,
                     (long long)I, is_log);
            int ff;
            if (is_log)
                RUN_BOTH(ff, FN(tc_log_softmax_forward)(yf, x, O, C, I),
                         FN(tc_log_softmax_forward)(yp, x, O, C, I));
            else
                RUN_BOTH(ff, FN(tc_softmax_forward)(yf, x, O, C, I),
                         FN(tc_softmax_forward)(yp, x, O, C, I));
            s.cases++;
            s.fast_cases += ff;
            FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, ROW_EPS, NULL);
            /* backward from the same (portable) forward output, written, then accumulated */
            for (int write = 0; write < 2; write++) {
                FN(fill)(df, n, -1, 1);
                memcpy(dp, df, (size_t)n * sizeof(real_t));
                const int w = write ? TC_WRITE(0) : 0;
                if (is_log)
                    RUN_BOTH(ff, FN(tc_log_softmax_backward)(df, g, yp, O, C, I, w),
                             FN(tc_log_softmax_backward)(dp, g, yp, O, C, I, w));
                else
                    RUN_BOTH(ff, FN(tc_softmax_backward)(df, g, yp, O, C, I, w),
                             FN(tc_softmax_backward)(dp, g, yp, O, C, I, w));
                s.cases++;
                s.fast_cases += ff;
                FN(check)(&s, what, df, dp, n, !ff, ROW_ULP, ROW_EPS, NULL);
            }
        }
        free(x), free(g), free(yf), free(yp), free(df), free(dp);
    }
    stat_end(&s, T_DT, "softmax / log-softmax fwd+bwd");
}

static void FN(test_activation)(void)
{
    static const int acts[] = {TC_ACT_GELU_TANH, TC_ACT_GELU, TC_ACT_RELU, TC_ACT_SILU};
    static const int64_t ns[] = {1, 3, 8, 9, 31, 1000};
    stat_t s;
    stat_begin(&s, "activation");
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            const int64_t n = ns[k];
            real_t *x = FN(alloc)(n), *g = FN(alloc)(n), *yf = FN(alloc)(n), *yp = FN(alloc)(n);
            FN(fill)(x, n, -12, 12);
            FN(fill)(g, n, -1, 1);
            if (n >= 13) FN(specials)(x, n, 1);
            char what[48];
            snprintf(what, sizeof what, "act=%d n=%lld", acts[a], (long long)n);
            int ff;
            RUN_BOTH(ff, FN(tc_activation_forward)(acts[a], yf, x, n),
                     FN(tc_activation_forward)(acts[a], yp, x, n));
            s.cases++;
            s.fast_cases += ff;
            FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, ROW_EPS, NULL);
            for (int write = 0; write < 2; write++) {
                FN(fill)(yf, n, -1, 1);
                memcpy(yp, yf, (size_t)n * sizeof(real_t));
                const int w = write ? TC_WRITE(0) : 0;
                RUN_BOTH(ff, FN(tc_activation_backward)(acts[a], yf, g, x, n, w),
                         FN(tc_activation_backward)(acts[a], yp, g, x, n, w));
                s.cases++;
                s.fast_cases += ff;
                FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, ROW_EPS, NULL);
            }
            free(x), free(g), free(yf), free(yp);
        }
    stat_end(&s, T_DT, "gelu(tanh, erf)/relu/silu fwd+bwd");
}

static void FN(test_loss)(void)
{
    static const int64_t vs[] = {1, 7, 50, 1000};
    const int64_t N = 6;
    stat_t s;
    stat_begin(&s, "cross_entropy");
    for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++)
        for (int smooth = 0; smooth < 2; smooth++) {
            const int64_t V = vs[k];
            const real_t eps = smooth ? (real_t)0.1 : 0;
            real_t *x = FN(alloc)(N * V), *lf = FN(alloc)(N), *lp = FN(alloc)(N);
            real_t *sf = FN(alloc)(N), *sp = FN(alloc)(N), *df = FN(alloc)(N * V),
                   *dp = FN(alloc)(N * V);
            int64_t t[6];
            for (int64_t i = 0; i < N; i++) t[i] = (int64_t)(rng_next() % (uint64_t)V);
            t[2] = -100; /* ignored */
            FN(fill)(x, N * V, -10, 10);
            x[V / 2] += 30; /* a dominant logit */
            char what[48];
            snprintf(what, sizeof what, "V=%lld smoothing=%g", (long long)V, (double)eps);
            double tf, tp;
            int ff;
            RUN_BOTH(ff, FN(tc_loss_cross_entropy_forward)(lf, sf, &tf, x, t, N, V, -100, eps),
                     FN(tc_loss_cross_entropy_forward)(lp, sp, &tp, x, t, N, V, -100, eps));
            s.cases++;
            s.fast_cases += ff;
            FN(check)(&s, what, lf, lp, N, !ff, ROW_ULP, ROW_EPS, NULL);
            FN(check)(&s, what, sf, sp, N, !ff, ROW_ULP, ROW_EPS, NULL);
            RUN_BOTH(ff,
                     FN(tc_loss_cross_entropy_backward)(df, sp, x, t, NULL, N, V, -100, eps,
                                                        (real_t)0.2, TC_WRITE(0)),
                     FN(tc_loss_cross_entropy_backward)(dp, sp, x, t, NULL, N, V, -100, eps,
                                                        (real_t)0.2, TC_WRITE(0)));
            s.cases++;
            s.fast_cases += ff;
            FN(check)(&s, what, df, dp, N * V, !ff, ROW_ULP, ROW_EPS, NULL);
            free(x), free(lf), free(lp), free(sf), free(sp), free(df), free(dp);
        }
    stat_end(&s, T_DT, "cross-entropy fwd+bwd");
}

static void FN(test_layernorm)(void)
{
    static const int64_t cs[] = {1, 7, 8, 64, 129};
    const int64_t N = 5;
    stat_t s;
    stat_begin(&s, "layernorm");
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        const int64_t C = cs[k], n = N * C;
        real_t *x = FN(alloc)(n), *w = FN(alloc)(C), *b = FN(alloc)(C), *g = FN(alloc)(n);
        real_t *yf = FN(alloc)(n), *yp = FN(alloc)(n), *mf = FN(alloc)(N), *mp = FN(alloc)(N);
        real_t *rf = FN(alloc)(N), *rp = FN(alloc)(N);
        real_t *dxf = FN(alloc)(n), *dxp = FN(alloc)(n), *dwf = FN(alloc)(C), *dwp = FN(alloc)(C);
        real_t *dbf = FN(alloc)(C), *dbp = FN(alloc)(C);
        FN(fill)(x, n, -3, 5);
        FN(fill)(w, C, 0.5, 1.5);
        FN(fill)(b, C, -1, 1);
        FN(fill)(g, n, -1, 1);
        char what[32];
        snprintf(what, sizeof what, "C=%lld", (long long)C);
        int ff;
        RUN_BOTH(ff, FN(tc_layernorm_forward)(yf, mf, rf, x, w, b, N, C, 1e-5),
                 FN(tc_layernorm_forward)(yp, mp, rp, x, w, b, N, C, 1e-5));
        s.cases++;
        s.fast_cases += ff;
        FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, mf, mp, N, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, rf, rp, N, !ff, ROW_ULP, ROW_EPS, NULL);
        RUN_BOTH(ff, FN(tc_layernorm_backward)(dxf, dwf, dbf, g, x, w, mp, rp, N, C, 7),
                 FN(tc_layernorm_backward)(dxp, dwp, dbp, g, x, w, mp, rp, N, C, 7));
        s.cases++;
        s.fast_cases += ff;
        FN(check)(&s, what, dxf, dxp, n, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, dwf, dwp, C, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, dbf, dbp, C, !ff, ROW_ULP, ROW_EPS, NULL);
        free(x), free(w), free(b), free(g), free(yf), free(yp), free(mf), free(mp), free(rf);
        free(rp), free(dxf), free(dxp), free(dwf), free(dwp), free(dbf), free(dbp);
    }
    stat_end(&s, T_DT, "layernorm fwd+bwd");
}

static void FN(test_rmsnorm)(void)
{
    static const int64_t cs[] = {1, 7, 8, 64, 129};
    const int64_t N = 5;
    stat_t s;
    stat_begin(&s, "rmsnorm");
    const uint64_t rng_before = g_rng; /* restored: the later groups keep their inputs */
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        const int64_t C = cs[k], n = N * C;
        real_t *x = FN(alloc)(n), *w = FN(alloc)(C), *b = FN(alloc)(C), *g = FN(alloc)(n);
        real_t *yf = FN(alloc)(n), *yp = FN(alloc)(n), *rf = FN(alloc)(N), *rp = FN(alloc)(N);
        real_t *dxf = FN(alloc)(n), *dxp = FN(alloc)(n), *dwf = FN(alloc)(C), *dwp = FN(alloc)(C);
        real_t *dbf = FN(alloc)(C), *dbp = FN(alloc)(C);
        FN(fill)(x, n, -3, 5);
        FN(fill)(w, C, 0.5, 1.5);
        FN(fill)(b, C, -1, 1);
        FN(fill)(g, n, -1, 1);
        char what[32];
        snprintf(what, sizeof what, "C=%lld", (long long)C);
        int ff;
        RUN_BOTH(ff, FN(tc_rmsnorm_forward)(yf, rf, x, w, b, N, C, 1e-5),
                 FN(tc_rmsnorm_forward)(yp, rp, x, w, b, N, C, 1e-5));
        s.cases++;
        s.fast_cases += ff;
        FN(check)(&s, what, yf, yp, n, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, rf, rp, N, !ff, ROW_ULP, ROW_EPS, NULL);
        RUN_BOTH(ff, FN(tc_rmsnorm_backward)(dxf, dwf, dbf, g, x, w, rp, N, C, 7),
                 FN(tc_rmsnorm_backward)(dxp, dwp, dbp, g, x, w, rp, N, C, 7));
        s.cases++;
        s.fast_cases += ff;
        FN(check)(&s, what, dxf, dxp, n, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, dwf, dwp, C, !ff, ROW_ULP, ROW_EPS, NULL);
        FN(check)(&s, what, dbf, dbp, C, !ff, ROW_ULP, ROW_EPS, NULL);
        free(x), free(w), free(b), free(g), free(yf), free(yp), free(rf), free(rp);
        free(dxf), free(dxp), free(dwf), free(dwp), free(dbf), free(dbp);
    }
    g_rng = rng_before;
    stat_end(&s, T_DT, "rmsnorm fwd+bwd");
}

static void FN(test_attention)(void)
{
    static const int64_t cfg[][4] = {/* T, S, DK, DV */
                                     {1, 1, 8, 8}, {5, 5, 13, 13}, {37, 37, 8, 16},
                                     {4, 9, 16, 8}, {70, 70, 32, 32}};
    const int64_t B = 2, NH = 2;
    stat_t s;
    stat_begin(&s, "attention");
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++)
        for (int causal = 0; causal < 3; causal++) {
            const int64_t T = cfg[k][0], S = cfg[k][1], DK = cfg[k][2], DV = cfg[k][3];
            const int64_t nq = B * NH * T * DK, nk = B * NH * S * DK, nv = B * NH * S * DV,
                          no = B * NH * T * DV, nl = B * NH * T;
            real_t *q = FN(alloc)(nq), *kk = FN(alloc)(nk), *v = FN(alloc)(nv), *g = FN(alloc)(no);
            real_t *of = FN(alloc)(no), *op = FN(alloc)(no), *lf = FN(alloc)(nl), *lp = FN(alloc)(nl);
            real_t *dqf = FN(alloc)(nq), *dqp = FN(alloc)(nq), *dkf = FN(alloc)(nk),
                   *dkp = FN(alloc)(nk), *dvf = FN(alloc)(nv), *dvp = FN(alloc)(nv);
            FN(fill)(q, nq, -2, 2);
            FN(fill)(kk, nk, -2, 2);
            FN(fill)(v, nv, -1, 1);
            FN(fill)(g, no, -1, 1);
            const real_t scale = (real_t)(1.0 / sqrt((double)DK));
            char what[64];
            snprintf(what, sizeof what, "T=%lld S=%lld DK=%lld DV=%lld causal=%d", (long long)T,
                     (long long)S, (long long)DK, (long long)DV, causal);
            int ff;
            RUN_BOTH(ff,
                     FN(tc_attention_forward)(of, lf, q, kk, v, NULL, B, NH, T, S, DK, DV, scale,
                                              causal, 0.0, 0),
                     FN(tc_attention_forward)(op, lp, q, kk, v, NULL, B, NH, T, S, DK, DV, scale,
                                              causal, 0.0, 0));
            s.cases++;
            s.fast_cases += ff;
            FN(check)(&s, what, of, op, no, !ff, ROW_ULP, ROW_EPS, NULL);
            FN(check)(&s, what, lf, lp, nl, !ff, ROW_ULP, ROW_EPS, NULL);
            RUN_BOTH(ff,
                     FN(tc_attention_backward)(dqf, dkf, dvf, g, q, kk, v, op, lp, NULL, B, NH, T,
                                               S, DK, DV, scale, causal, 0.0, 0, 7),
                     FN(tc_attention_backward)(dqp, dkp, dvp, g, q, kk, v, op, lp, NULL, B, NH, T,
                                               S, DK, DV, scale, causal, 0.0, 0, 7));
            s.cases++;
            s.fast_cases += ff;
            /* gradients sum many products: compared to their scale */
            FN(check)(&s, what, dqf, dqp, nq, !ff, ROW_ULP, 4 * ROW_EPS, NULL);
            FN(check)(&s, what, dkf, dkp, nk, !ff, ROW_ULP, 4 * ROW_EPS, NULL);
            FN(check)(&s, what, dvf, dvp, nv, !ff, ROW_ULP, 4 * ROW_EPS, NULL);
            free(q), free(kk), free(v), free(g), free(of), free(op), free(lf), free(lp);
            free(dqf), free(dqp), free(dkf), free(dkp), free(dvf), free(dvp);
        }
    stat_end(&s, T_DT, "attention fwd+bwd");
}

static void FN(test_all)(void)
{
    FN(test_gemm)();
    FN(test_exp)();
    FN(test_softmax)();
    FN(test_activation)();
    FN(test_loss)();
    FN(test_layernorm)();
    FN(test_rmsnorm)();
    FN(test_attention)();
}

#undef T_EPS
#undef T_DT
