/* decode_common_impl.h: the KV-cache decoders' shared forward pieces (gpt_decode_impl.h for
 * the GPT, encdec_decode_impl.h for the encoder-decoder's decoder), written once for
 * real_t and included by each per dtype (it includes model_common_impl.h): the
 * matrix-vector product of a decoding step (decode_gemv.h), the copies between token-major
 * and head-major layouts, a sub-layer's input and residual for either norm placement, the
 * causal self-attention against the cache, the MLP or mixture of experts, and the
 * last-token -> ln_f -> head tail. The two decoders
 * differ only where the models do: the GPT's positions (RoPE, left padding), the
 * encoder-decoder's cross-attention to the encoded source. */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the training-only helpers */
#include "model_common_impl.h"
#pragma GCC diagnostic pop

#define DVEC FN(dec_vec)
typedef real_t DVEC __attribute__((vector_size(32)));
#define DEC_VL ((int)(32 / sizeof(real_t)))
#define DEC_LOAD(p) ({ DVEC v_; memcpy(&v_, (p), sizeof v_); v_; })

#define KNAME FN(dec_gemv_generic)
#define KATTR
#include "decode_gemv.h"
#undef KNAME
#undef KATTR
#if TC_DEC_X86
#define KNAME FN(dec_gemv_avx2)
#define KATTR __attribute__((target("avx2,fma")))
#include "decode_gemv.h"
#undef KNAME
#undef KATTR
#endif
#undef DVEC
#undef DEC_VL
#undef DEC_LOAD

// out (N,OC) = inp (N,C) @ W^T (OC,C) + b (OC,) (b may be NULL): the matrix-vector kernel
// up to DEC_GEMV_MAX_ROWS rows (a decoding step), tc_linear_forward beyond
static int FN(dec_linear)(real_t *out, const real_t *inp, const real_t *W, const real_t *b, int64_t N, int64_t C,
                          int64_t OC)
{
    if (N > DEC_GEMV_MAX_ROWS) return FN(tc_linear_forward)(out, inp, W, b, N, C, OC);
#if TC_DEC_X86
    const int avx2 = dec_use_avx2();
#endif
    const int64_t nblk = (OC + DEC_GEMV_BLOCK - 1) / DEC_GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (TC_PAR(N * OC * C, 4 * TC_PARALLEL_MIN_WORK))
    for (int64_t i = 0; i < nblk; i++) {
        const int64_t o0 = i * DEC_GEMV_BLOCK;
        const int64_t o1 = o0 + DEC_GEMV_BLOCK < OC ? o0 + DEC_GEMV_BLOCK : OC;
#if TC_DEC_X86
        if (avx2) {
            FN(dec_gemv_avx2)(out, inp, W, b, N, C, OC, o0, o1);
            continue;
        }
#endif
        FN(dec_gemv_generic)(out, inp, W, b, N, C, OC, o0, o1);
    }
    return TC_OK;
}

/* d (n,) <- s (n,): head rows are short (HS values); an inline loop beats a memcpy call */
static inline void FN(dec_copy)(real_t *restrict d, const real_t *restrict s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

// dst[i] (B,NH,L,HS) <- the i-th C-wide slice of src (B,L,n*C), i < n (q, k, v: n = 3; the
// cross-attention's k, v: n = 2)
static void FN(dec_to_heads)(real_t *const *dst, int n, const real_t *src, int64_t B, int64_t L,
                             int64_t NH, int64_t HS)
{
    const int64_t C = NH * HS;
#pragma omp parallel for collapse(2) schedule(static) if (TC_PAR(B * L * C, TC_MODEL_COPY_MIN_WORK))
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const int64_t o = (b * NH + h) * L * HS;
            for (int64_t t = 0; t < L; t++) {
                const real_t *row = src + (b * L + t) * n * C + h * HS;
                for (int i = 0; i < n; i++) FN(dec_copy)(dst[i] + o + t * HS, row + i * C, HS);
            }
        }
    }
}

// dst (B,NH,L,HS) <- the NH*HS columns from off of src (B,L,row): one slice, e.g. the k of a
// grouped c_attn output (B,L,C + 2KC)
static void FN(dec_slice_to_heads)(real_t *dst, const real_t *src, int64_t off, int64_t row,
                                   int64_t B, int64_t L, int64_t NH, int64_t HS)
{
#pragma omp parallel for collapse(2) schedule(static) if (TC_PAR(B * L * NH * HS, TC_MODEL_COPY_MIN_WORK))
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < L; t++)
                FN(dec_copy)(dst + ((b * NH + h) * L + t) * HS, src + (b * L + t) * row + off + h * HS,
                             HS);
}

// y (B,TN,C) <- yh (B,NH,TN,HS)
static void FN(dec_merge_heads)(real_t *y, const real_t *yh, int64_t B, int64_t TN, int64_t NH,
                                int64_t HS)
{
    const int64_t C = NH * HS;
#pragma omp parallel for collapse(2) schedule(static) if (TC_PAR(B * TN * C, TC_MODEL_COPY_MIN_WORK))
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < TN; t++)
            for (int64_t h = 0; h < NH; h++)
                FN(dec_copy)(y + (b * TN + t) * C + h * HS, yh + ((b * NH + h) * TN + t) * HS, HS);
}

/* The input of a sub-layer over x (N,C): pre-LN *in = norm(x) (weight w, bias b or NULL) in
 * h (N,C), post-LN *in = x itself. */
static int FN(dec_sub_input)(const dec_dims *d, const real_t **in, real_t *h, const real_t *x,
                             const real_t *w, const real_t *b, int64_t N)
{
    *in = x;
    if (d->norm == TC_NORM_POST) return TC_OK;
    *in = h;
    return FN(model_norm_forward)(d->norm_type, h, NULL, NULL, x, w, b, N, d->C, d->eps);
}

/* The residual of a sub-layer with branch output proj (N,C): pre-LN x += proj; post-LN
 * x = norm(x + proj) (proj is overwritten). */
static int FN(dec_residual)(const dec_dims *d, real_t *x, real_t *proj, const real_t *w,
                            const real_t *b, int64_t N)
{
    if (d->norm == TC_NORM_PRE) {
        FN(gpt_add)(x, x, proj, N * d->C);
        return TC_OK;
    }
    FN(gpt_add)(proj, x, proj, N * d->C);
    return FN(model_norm_forward)(d->norm_type, x, NULL, NULL, proj, w, b, N, d->C, d->eps);
}

/* One decoder layer's causal self-attention sub-layer on x (B*TN,C): the new tokens' q, k, v
 * (head-major in qkvh (3,B,NH,TN,HS), via qkv (B*TN,3C); with grouped-query attention, d->NKV
 * kv heads, qkv is (B*TN,C + 2KC) and k, v (B,NKV,TN,HS)), rope(ctx, q, k) when given (the
 * GPT's QK-norm and RoPE), tc_attention_decode against the layer's caches kc, vc (B,NKV,Smax,HS) from slot
 * pos0 with the key-padding mask kp (B,pos0+TN) or NULL, the output projection into proj
 * and the residual (norm weight nw, nb). h, atth, atty (N,C) are scratch. */
static int FN(dec_self_attention)(const dec_dims *d, real_t *x, real_t *h, real_t *qkv, real_t *qkvh,
                                  real_t *atth, real_t *atty, real_t *proj, real_t *kc, real_t *vc,
                                  const uint8_t *kp, int64_t B, int64_t TN, int64_t Smax, int64_t pos0,
                                  const real_t *nw, const real_t *nb, const real_t *attw,
                                  const real_t *attb, const real_t *projw, const real_t *projb,
                                  int (*rope)(void *, real_t *, real_t *), void *rope_ctx)
{
    const int64_t C = d->C, NH = d->NH, HS = C / NH, N = B * TN;
    const int64_t NKV = d->NKV ? d->NKV : NH, KC = NKV * HS;
    real_t *qh = qkvh, *kh = qh + N * C, *vh = kh + N * KC;
    const real_t *in;
    CHECK(FN(dec_sub_input)(d, &in, h, x, nw, nb, N));
    CHECK(FN(dec_linear)(qkv, in, attw, attb, N, C, C + 2 * KC));
    if (KC == C) {
        real_t *const heads[3] = {qh, kh, vh};
        FN(dec_to_heads)(heads, 3, qkv, B, TN, NH, HS);
    } else { /* grouped: q (NH heads), k, v (NKV heads) of rows C + 2KC wide */
        FN(dec_slice_to_heads)(qh, qkv, 0, C + 2 * KC, B, TN, NH, HS);
        FN(dec_slice_to_heads)(kh, qkv, C, C + 2 * KC, B, TN, NKV, HS);
        FN(dec_slice_to_heads)(vh, qkv, C + KC, C + 2 * KC, B, TN, NKV, HS);
    }
    if (rope) CHECK(rope(rope_ctx, qh, kh));
    CHECK(FN(tc_attention_decode_grouped)(atth, kc, vc, qh, kh, vh, kp, d->sp, d->shift, B, NH,
                                          NKV, TN, Smax, pos0, HS, HS,
                                          (real_t)(1.0 / sqrt((double)HS))));
    if (TN > 1) FN(dec_merge_heads)(atty, atth, B, TN, NH, HS);
    else atty = atth; /* (B,NH,1,HS) is already token-major */
    CHECK(FN(dec_linear)(proj, atty, projw, projb, N, C, C));
    return FN(dec_residual)(d, x, proj, nw, nb, N);
}

/* QK-norm (qk_norm) of the new tokens' q (B,NH,TN,HS) and k (B,NKV,TN,HS) (d->NKV kv heads),
 * every head vector RMS-normalised in place with gains qnw, knw (HS,) (dec_self_attention's
 * q, k hook calls it: the cache holds the normalised keys). */
static int FN(dec_qk_norm)(const dec_dims *d, real_t *qh, real_t *kh, const real_t *qnw,
                           const real_t *knw, int64_t B, int64_t TN)
{
    const int64_t HS = d->C / d->NH, qrows = B * d->NH * TN;
    const int64_t krows = B * model_kv_heads(d->NH, d->NKV) * TN;
    CHECK(FN(tc_rmsnorm_heads_forward)(qh, HS, NULL, qh, HS, qnw, qrows, 1, HS, d->eps));
    return FN(tc_rmsnorm_heads_forward)(kh, HS, NULL, kh, HS, knw, krows, 1, HS, d->eps);
}

/* The MLP sub-layer on x (N,C): proj (N,C) = c_proj(act(c_fc(in))), fc (N,H) and h (N,C)
 * scratch, then the residual (norm weight nw, nb). */
static int FN(dec_mlp)(const dec_dims *d, real_t *x, real_t *h, real_t *fc, real_t *proj, int64_t N,
                       const real_t *nw, const real_t *nb, const real_t *fcw, const real_t *fcb,
                       const real_t *projw, const real_t *projb)
{
    const real_t *in;
    CHECK(FN(dec_sub_input)(d, &in, h, x, nw, nb, N));
    CHECK(FN(dec_linear)(fc, in, fcw, fcb, N, d->C, d->H));
    CHECK(FN(tc_activation_forward)(d->act, fc, fc, N * d->H));
    CHECK(FN(dec_linear)(proj, fc, projw, projb, N, d->H, d->C));
    return FN(dec_residual)(d, x, proj, nw, nb, N);
}

/* The gated MLP sub-layer on x (N,C): proj (N,C) = c_proj(act(c_gate(in)) * c_fc(in)) (gate
 * weights gw (H,C), gb (H,) or NULL), fc (2N,H) scratch (the gate, then the up projection),
 * h (N,C) scratch; the residual as dec_mlp's. */
static inline int FN(dec_gated_mlp)(const dec_dims *d, real_t *x, real_t *h, real_t *fc, real_t *proj,
                             int64_t N, const real_t *nw, const real_t *nb, const real_t *fcw,
                             const real_t *fcb, const real_t *gw, const real_t *gb,
                             const real_t *projw, const real_t *projb)
{
    const real_t *in;
    real_t *g = fc, *u = fc + N * d->H;
    CHECK(FN(dec_sub_input)(d, &in, h, x, nw, nb, N));
    CHECK(FN(dec_linear)(g, in, gw, gb, N, d->C, d->H));
    CHECK(FN(dec_linear)(u, in, fcw, fcb, N, d->C, d->H));
    CHECK(FN(tc_glu_forward)(d->act, g, NULL, g, u, N * d->H)); /* in place over the gate */
    CHECK(FN(dec_linear)(proj, g, projw, projb, N, d->H, d->C));
    return FN(dec_residual)(d, x, proj, nw, nb, N);
}

/* The mixture-of-experts sub-layer (ffn == TC_FFN_MOE, in the MLP's place) on x (N,C):
 * tc_moe_forward over the experts (router (E,C), w1 (E,H,C), b1 (E,H), w2 (E,C,H), b2 (E,C);
 * biases may be NULL) with every token routed alone (capacity factor E: cap = N rows per
 * expert, nothing dropped: what the module path gives one token, whose choice, or two
 * choices of two experts, always fits), into the cache ms (grown to N tokens), then the
 * residual (norm weight nw, nb); h, proj (N,C) scratch. */
static int FN(dec_moe)(const dec_dims *d, dec_moe_scratch *ms, real_t *x, real_t *h,
                       real_t *proj, int64_t N, const real_t *nw, const real_t *nb,
                       const real_t *router, const real_t *w1, const real_t *b1,
                       const real_t *w2, const real_t *b2)
{
    const real_t *in;
    CHECK(dec_moe_reserve(ms, N));
    FN(tc_moe_cache) mc = FN(model_moe_cache)(ms->mem, &ms->acts, N);
    CHECK(FN(dec_sub_input)(d, &in, h, x, nw, nb, N));
    CHECK(FN(tc_moe_forward)(proj, &mc, in, router, w1, b1, w2, b2, N, d->C, d->H, ms->E,
                             ms->K, (double)ms->E, d->act));
    return FN(dec_residual)(d, x, proj, nw, nb, N);
}

/* logits (B,V) of each row's last token of x (B,TN,C): pre-LN through ln_f (lnfw, lnfb),
 * soft-capped when d->softcap > 0; last and lnf (B,C) scratch. */
static int FN(dec_logits)(const dec_dims *d, real_t *logits, const real_t *x, real_t *last,
                          real_t *lnf, int64_t B, int64_t TN, const real_t *lnfw,
                          const real_t *lnfb, const real_t *head, int64_t V)
{
    const int64_t C = d->C;
    const real_t *in = x;
    if (TN > 1) {
        for (int64_t b = 0; b < B; b++)
            memcpy(last + b * C, x + (b * TN + TN - 1) * C, (size_t)C * sizeof(real_t));
        in = last;
    }
    if (d->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_forward)(d->norm_type, lnf, NULL, NULL, in, lnfw, lnfb, B, C, d->eps));
        in = lnf;
    }
    CHECK(FN(dec_linear)(logits, in, head, NULL, B, C, V));
    if (d->softcap > 0) return FN(tc_softcap_forward)(logits, logits, B * V, d->softcap);
    return TC_OK;
}
