/* optim_muon_ref.h: the plain reference of the Muon update (optim_muon_impl.h), written once
 * for real_t: one matrix at a time, every quantity in double (triple-loop products, no
 * transposed copy: the r x r Gram matrix is taken over the shorter side directly), the
 * momentum buffer and the parameters rounded to real_t when stored; no threads. */

// param, momentum_buffer (n,) updated where matrices lie; grad (n,); matrices (count, 3)
int FN(tc_optim_muon_update_ref)(real_t *param, real_t *momentum_buffer, const real_t *grad,
                                 int64_t n, const int64_t *matrices, int64_t count, double lr,
                                 double momentum, double weight_decay, int nesterov,
                                 int ns_steps)
{
    int64_t max_rc, max_r2;
    if (n < 0 || count < 0 || ns_steps < 0 || (count > 0 && !matrices)
        || muon_check_matrices(matrices, count, n, &max_rc, &max_r2))
        return TC_EINVAL;
    if (count == 0) return TC_OK;
    if (!param || !momentum_buffer || !grad) return TC_EINVAL;
    double *X = malloc(sizeof(double) * (size_t)(2 * max_rc + 2 * max_r2));
    if (!X) return TC_ENOMEM;
    double *Xn = X + max_rc, *A = Xn + max_rc, *B = A + max_r2;
    for (int64_t k = 0; k < count; k++) {
        const int64_t off = matrices[3 * k], rows = matrices[3 * k + 1];
        const int64_t cols = matrices[3 * k + 2], tr = rows > cols;
        const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
        real_t *p = param + off, *buf = momentum_buffer + off;
        const real_t *g = grad + off;
        double norm = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                const int64_t e = i * cols + j;
                const double b = buf[e] + (1 - momentum) * ((double)g[e] - buf[e]);
                buf[e] = (real_t)b;
                const double u = nesterov ? g[e] + momentum * (b - g[e]) : b;
                X[tr ? j * rows + i : e] = u; /* X (r, c) */
                norm += u * u;
            }
        norm = sqrt(norm) + MUON_EPS;
        for (int64_t e = 0; e < rows * cols; e++) X[e] /= norm;
        for (int s = 0; s < ns_steps; s++) {
            for (int64_t i = 0; i < r; i++) /* A = X X^T */
                for (int64_t j = 0; j < r; j++) {
                    double acc = 0;
                    for (int64_t t = 0; t < c; t++) acc += X[i * c + t] * X[j * c + t];
                    A[i * r + j] = acc;
                }
            for (int64_t i = 0; i < r; i++) /* B = b A + c A A */
                for (int64_t j = 0; j < r; j++) {
                    double acc = 0;
                    for (int64_t t = 0; t < r; t++) acc += A[i * r + t] * A[t * r + j];
                    B[i * r + j] = MUON_B * A[i * r + j] + MUON_C * acc;
                }
            for (int64_t i = 0; i < r; i++) /* Xn = a X + B X */
                for (int64_t j = 0; j < c; j++) {
                    double acc = 0;
                    for (int64_t t = 0; t < r; t++) acc += B[i * r + t] * X[t * c + j];
                    Xn[i * c + j] = MUON_A * X[i * c + j] + acc;
                }
            double *t = X;
            X = Xn;
            Xn = t;
        }
        const double scale = sqrt(tr ? (double)rows / (double)cols : 1.0);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                const int64_t e = i * cols + j;
                p[e] = (real_t)(p[e] * (1 - lr * weight_decay)
                                - lr * scale * X[tr ? j * rows + i : e]);
            }
    }
    free(X < Xn ? X : Xn); /* the swaps may have exchanged the two halves */
    return TC_OK;
}
