/* moe_ref.h: the plain reference of the mixture-of-experts kernels (tc_moe_*_ref): the
 * textbook loops, one choice at a time, sums in double, no GEMM, no threads. The routing
 * rules (top-K with its tie order, the capacity pass, the aux loss) are moe_impl.h's plain
 * helpers. Its cache keeps the pre-activation itself (the fast kernel may keep act'(pre)):
 * a cache goes back to the backward of the kernel that filled it. */

// out (N,C); cache; inp (N,C), router (E,C), w1 (E,H,C), b1 (E,H) or NULL, w2 (E,C,H),
// b2 (E,C) or NULL
int FN(tc_moe_forward_ref)(real_t *out, FN(tc_moe_cache) *cache, const real_t *inp,
                           const real_t *router, const real_t *w1, const real_t *b1,
                           const real_t *w2, const real_t *b2, int64_t N, int64_t C, int64_t H,
                           int64_t E, int64_t K, double capacity_factor, int act)
{
    if (FN(moe_check_sizes)(cache, N, C, H, E, K, act)) return TC_EINVAL;
    const int64_t cap = cache->cap;
    if (cap != tc_moe_capacity(N, E, K, capacity_factor)) return TC_EINVAL;
    double *l = malloc((size_t)(E > 0 ? E : 1) * sizeof(double));
    if (!l) return TC_ENOMEM;
    for (int64_t n = 0; n < N; n++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t e = 0; e < E; e++) {
            double acc = 0.0;
            for (int64_t c = 0; c < C; c++) acc += (double)inp[n * C + c] * (double)router[e * C + c];
            l[e] = acc;
            if (acc > mx) mx = acc;
        }
        for (int64_t e = 0; e < E; e++) sum += exp(l[e] - mx);
        for (int64_t e = 0; e < E; e++) cache->probs[n * E + e] = (real_t)(exp(l[e] - mx) / sum);
        FN(moe_top_k)(cache->expert + n * K, cache->gates + n * K, cache->probs + n * E, E, K);
    }
    free(l);
    FN(moe_assign)(cache, N, E, K);
    cache->aux = FN(moe_aux)(cache, N, E, K);
    for (int64_t s = 0; s < E * cap; s++) {
        const int64_t a = cache->tok[s], e = s / cap;
        if (a < 0) continue;
        const real_t *x = inp + (a / K) * C;
        real_t *xg = cache->xg + s * C, *pre = cache->pre + s * H, *hid = cache->hid + s * H;
        real_t *eo = cache->eo + s * C;
        for (int64_t c = 0; c < C; c++) xg[c] = x[c];
        for (int64_t h = 0; h < H; h++) {
            double acc = b1 ? (double)b1[e * H + h] : 0.0;
            for (int64_t c = 0; c < C; c++) acc += (double)w1[(e * H + h) * C + c] * (double)x[c];
            pre[h] = (real_t)acc;
        }
        int st = FN(tc_activation_forward_ref)(hid, pre, H, act);
        if (st != TC_OK) return st;
        for (int64_t c = 0; c < C; c++) {
            double acc = b2 ? (double)b2[e * C + c] : 0.0;
            for (int64_t h = 0; h < H; h++) acc += (double)w2[(e * C + c) * H + h] * (double)hid[h];
            eo[c] = (real_t)acc;
        }
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double acc = 0.0;
            for (int64_t j = 0; j < K; j++) {
                const int64_t s = cache->slot[n * K + j];
                if (s >= 0) acc += (double)cache->gates[n * K + j] * (double)cache->eo[s * C + c];
            }
            out[n * C + c] = (real_t)acc;
        }
    return TC_OK;
}

// dinp (N,C), drouter (E,C), dw1 (E,H,C), db1 (E,H), dw2 (E,C,H), db2 (E,C), each optional;
// dout (N,C); cache from tc_moe_forward_ref; inp (N,C), router (E,C), w1 (E,H,C), w2 (E,C,H).
// write: TC_WRITE(0..5) = dinp, drouter, dw1, db1, dw2, db2 (written ones zeroed, then added)
int FN(tc_moe_backward_ref)(real_t *dinp, real_t *drouter, real_t *dw1, real_t *db1, real_t *dw2,
                            real_t *db2, const real_t *dout, double aux_grad,
                            const FN(tc_moe_cache) *cache, const real_t *inp,
                            const real_t *router, const real_t *w1, const real_t *w2, int64_t N,
                            int64_t C, int64_t H, int64_t E, int64_t K, int act, int write)
{
    if (FN(moe_check_sizes)(cache, N, C, H, E, K, act)) return TC_EINVAL;
    if (FN(moe_cache_check)(cache, N, E, K)) return TC_EINVAL;
    real_t *outs[6] = {dinp, drouter, dw1, db1, dw2, db2};
    const int64_t sizes[6] = {N * C, E * C, E * H * C, E * H, E * C * H, E * C};
    for (int k = 0; k < 6; k++)
        if (outs[k] && TC_WRITES(write, k)) memset(outs[k], 0, (size_t)sizes[k] * sizeof(real_t));
    const int64_t cap = cache->cap;
    real_t *buf = malloc((size_t)(C + 2 * H + E + 1) * sizeof(real_t));
    if (!buf) return TC_ENOMEM;
    real_t *dye = buf, *dh = dye + C, *dpre = dh + H, *dp = dpre + H;
    int st = TC_OK;
    for (int64_t n = 0; n < N && st == TC_OK; n++) {
        /* dp: the aux term, then each choice's gate */
        for (int64_t e = 0; e < E; e++) {
            int64_t f = 0;
            for (int64_t a = 0; a < N * K; a++) f += cache->expert[a] == e;
            dp[e] = (real_t)(aux_grad * (double)E * ((double)f / (double)(N * K)) / (double)N);
        }
        double dg[2] = {0.0, 0.0};
        for (int64_t j = 0; j < K; j++) {
            const int64_t a = n * K + j, s = cache->slot[a];
            if (s < 0) continue;
            const int64_t e = s / cap;
            for (int64_t c = 0; c < C; c++) dg[j] += (double)dout[n * C + c] * (double)cache->eo[s * C + c];
            /* the expert at gate g: dye = g dout */
            for (int64_t c = 0; c < C; c++) dye[c] = cache->gates[a] * dout[n * C + c];
            const real_t *hid = cache->hid + s * H, *xg = cache->xg + s * C;
            for (int64_t c = 0; c < C; c++) {
                if (db2) db2[e * C + c] += dye[c];
                if (dw2)
                    for (int64_t h = 0; h < H; h++) dw2[(e * C + c) * H + h] += dye[c] * hid[h];
            }
            for (int64_t h = 0; h < H; h++) {
                double acc = 0.0;
                for (int64_t c = 0; c < C; c++) acc += (double)w2[(e * C + c) * H + h] * (double)dye[c];
                dh[h] = (real_t)acc;
            }
            st = FN(tc_activation_backward_ref)(dpre, dh, cache->pre + s * H, H, act);
            if (st != TC_OK) break;
            for (int64_t h = 0; h < H; h++) {
                if (db1) db1[e * H + h] += dpre[h];
                if (dw1)
                    for (int64_t c = 0; c < C; c++) dw1[(e * H + h) * C + c] += dpre[h] * xg[c];
            }
            if (dinp)
                for (int64_t c = 0; c < C; c++) {
                    double acc = 0.0;
                    for (int64_t h = 0; h < H; h++) acc += (double)w1[(e * H + h) * C + c] * (double)dpre[h];
                    dinp[n * C + c] += (real_t)acc;
                }
        }
        const int64_t *ex = cache->expert + n * K;
        const real_t *p = cache->probs + n * E, *g = cache->gates + n * K;
        if (K == 1) {
            dp[ex[0]] += (real_t)dg[0];
        } else {
            const double s = (double)p[ex[0]] + (double)p[ex[1]];
            const double t = dg[0] * (double)g[0] + dg[1] * (double)g[1];
            dp[ex[0]] += (real_t)((dg[0] - t) / s);
            dp[ex[1]] += (real_t)((dg[1] - t) / s);
        }
        /* softmax: dl = p (dp - sum dp p); the router's products */
        double dot = 0.0;
        for (int64_t e = 0; e < E; e++) dot += (double)dp[e] * (double)p[e];
        for (int64_t e = 0; e < E; e++) {
            const double dl = (double)p[e] * ((double)dp[e] - dot);
            for (int64_t c = 0; c < C; c++) {
                if (drouter) drouter[e * C + c] += (real_t)(dl * (double)inp[n * C + c]);
                if (dinp) dinp[n * C + c] += (real_t)(dl * (double)router[e * C + c]);
            }
        }
    }
    free(buf);
    return st;
}
