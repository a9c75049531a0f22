/* encdec_layout.h: the encoder-decoder parameter layout (tc.h, "model_encdec") shared by the
 * fast path (encdec_train.c) and the KV-cache decoder (encdec_decode.c): the config
 * check and the offset of every parameter in the flat buffer. Static functions: include it
 * once per .c file. */
#ifndef TC_ENCDEC_LAYOUT_H
#define TC_ENCDEC_LAYOUT_H

#include "tc_generic.h"
#include "model_common.h"

typedef struct { int64_t w, b; } ed_lin; /* element offsets of a weight and bias (-1: absent) */

typedef struct { /* lnx..xproj: decoder; ffn == TC_FFN_MOE: router (E,C) (no bias), and fc,
                  * fcproj the E experts' stacked w1 (E,H,C), b1 (E,H), w2 (E,C,H), b2 (E,C);
                  * qn, kn: attn.q_norm, k_norm (HS,) (qk_norm); fcg: mlp.c_gate (gated) */
    ed_lin ln1, att, proj, qn, kn, lnx, xq, xkv, xproj, ln2, router, fc, fcg, fcproj;
} ed_layer_params;

/* Whether the config's feed-forward is a mixture of experts. */
static inline int ed_is_moe(const tc_encdec_config *c) { return c->ffn == TC_FFN_MOE; }

/* The config's block-sparse self-attention pattern in *sp, or NULL for dense attention. */
static inline const tc_attention_sparse *ed_sparse(const tc_encdec_config *c,
                                                   tc_attention_sparse *sp)
{
    return model_sparse(sp, c->attention, c->sparse_block, c->sparse_window, c->sparse_stride,
                        c->sparse_global);
}

/* The self-attentions' kv heads (NKV, or NH without grouped-query attention) and KC, the
 * width of k (and of v) in their c_attn output (B,L,C + 2 KC). */
static inline int64_t ed_kv_width(const tc_encdec_config *c)
{
    return model_kv_heads(c->NH, c->NKV) * (c->C / c->NH);
}

/* The offsets of the parameters outside the layers (-1: absent). */
typedef struct {
    int64_t swte, twte, swpe, twpe, head;
    ed_lin slnf, tlnf;
} ed_globals;

static int ed_config_ok(const tc_encdec_config *c)
{
    if (!c) return 0;
    if (c->Vs < 1 || c->Vt < 1 || c->maxT < 1 || c->C < 1 || c->Le < 1 || c->Ld < 1 ||
        c->NH < 1 || c->H < 1)
        return 0;
    if (c->Le > TC_MAX_LAYERS || c->Ld > TC_MAX_LAYERS) return 0; /* before any layer loop */
    if (c->C % c->NH) return 0;
    if ((c->position != TC_POS_LEARNED && c->position != TC_POS_SINUSOIDAL) ||
        c->activation < 0 || c->activation >= TC_ACT_COUNT)
        return 0;
    if ((c->bias != 0 && c->bias != 1) || (c->norm < 0 || c->norm >= TC_NORM_COUNT) ||
        (c->share != 0 && c->share != 1) || (c->tie != 0 && c->tie != 1))
        return 0;
    if (c->share && c->Vs != c->Vt) return 0;
    if (!(c->eps >= 0) || !isfinite(c->eps)) return 0;
    if (!(c->pos_base > 0) || !isfinite(c->pos_base)) return 0;
    if (!(c->dropout >= 0 && c->dropout < 1)) return 0;
    if (!model_ffn_ok(c->ffn, c->moe_experts, c->moe_top_k, c->moe_capacity,
                      c->moe_aux_weight) ||
        !model_block_ok(c->norm_type, c->qk_norm, c->NKV, c->NH, c->gated, c->ffn))
        return 0;
    if (c->attention < 0 || c->attention >= TC_ATTN_COUNT) return 0;
    if (c->attention == TC_ATTN_BLOCK_SPARSE) {
        tc_attention_sparse sp;
        if (!tc_attention_sparse_ok(ed_sparse(c, &sp))) return 0;
    }
    /* keep every buffer (in elements, times 8 bytes) far from size_t / int64 overflow */
    const double big = 1e15, L = (double)c->Le + (double)c->Ld;
    if ((double)c->Vs * (double)c->C > big || (double)c->Vt * (double)c->C > big ||
        (double)c->maxT * (double)c->C > big ||
        (double)c->H * (double)c->C * L * (ed_is_moe(c) ? (double)c->moe_experts : 1.0) > big ||
        (double)c->C * (double)c->C * 8.0 * L > big)
        return 0;
    return 1;
}

/* The offsets of an (o, i) weight and (when bias) an (o,) bias taken from *off in order. */
static ed_lin ed_take_lin(int64_t *off, int64_t o, int64_t i, int bias)
{
    ed_lin r;
    r.w = *off;
    *off += o * i;
    r.b = bias ? *off : -1;
    if (bias) *off += o;
    return r;
}

/* The parameters of one layer from *off on, in order: ln_1, attn.c_attn, attn.c_proj
 * (attn.q_norm, attn.k_norm with qk_norm), the decoder's (dec) ln_cross_attn,
 * crossattention.q_attn, .c_attn, .c_proj, then ln_2, mlp.c_fc (mlp.c_gate when gated),
 * mlp.c_proj (a mixture of experts: mlp.router, w1, b1, w2, b2); absent ones {-1, -1}. */
static ed_layer_params ed_take_layer(int64_t *off, const tc_encdec_config *c, int dec)
{
    const int64_t C = c->C, H = c->H, HS = C / c->NH, KC = ed_kv_width(c);
    const ed_lin none = {-1, -1};
    ed_layer_params p = {none, none, none, none, none, none, none, none,
                         none, none, none, none, none, none};
    const int64_t E = ed_is_moe(c) ? c->moe_experts : 1; /* MLPs per layer */
    p.ln1 = ed_take_lin(off, C, 1, c->bias);
    p.att = ed_take_lin(off, C + 2 * KC, C, c->bias);
    p.proj = ed_take_lin(off, C, C, c->bias);
    if (c->qk_norm) {
        p.qn = ed_take_lin(off, HS, 1, 0);
        p.kn = ed_take_lin(off, HS, 1, 0);
    }
    if (dec) {
        p.lnx = ed_take_lin(off, C, 1, c->bias);
        p.xq = ed_take_lin(off, C, C, c->bias);
        p.xkv = ed_take_lin(off, 2 * C, C, c->bias);
        p.xproj = ed_take_lin(off, C, C, c->bias);
    }
    p.ln2 = ed_take_lin(off, C, 1, c->bias);
    if (ed_is_moe(c)) p.router = ed_take_lin(off, E, C, 0);
    p.fc = ed_take_lin(off, E * H, C, c->bias);
    if (c->gated) p.fcg = ed_take_lin(off, H, C, c->bias);
    p.fcproj = ed_take_lin(off, E * C, H, c->bias);
    return p;
}

/* Parameter offsets in layout order (m, ep, dp may be NULL); returns the total count. */
static int64_t ed_param_plan(const tc_encdec_config *c, ed_globals *m, ed_layer_params *ep,
                             ed_layer_params *dp)
{
    int64_t off = 0;
    const int64_t C = c->C;
#define TAKE(n) (off += (n), off - (n))
#define NORM() ed_take_lin(&off, C, 1, c->bias)
    int64_t shared = c->share ? TAKE(c->Vs * C) : -1;
    int64_t swte = c->share ? shared : TAKE(c->Vs * C);
    int64_t swpe = c->position == TC_POS_LEARNED ? TAKE(c->maxT * C) : -1;
    for (int64_t l = 0; l < c->Le; l++) {
        const ed_layer_params p = ed_take_layer(&off, c, 0);
        if (ep) ep[l] = p;
    }
    ed_lin slnf = {-1, -1};
    if (c->norm == TC_NORM_PRE) slnf = NORM();
    int64_t twte = c->share ? shared : TAKE(c->Vt * C);
    int64_t twpe = c->position == TC_POS_LEARNED ? TAKE(c->maxT * C) : -1;
    for (int64_t l = 0; l < c->Ld; l++) {
        const ed_layer_params p = ed_take_layer(&off, c, 1);
        if (dp) dp[l] = p;
    }
    ed_lin tlnf = {-1, -1};
    if (c->norm == TC_NORM_PRE) tlnf = NORM();
    int64_t head = c->tie ? twte : TAKE(c->Vt * C);
#undef NORM
#undef TAKE
    if (m) {
        m->swte = swte;
        m->twte = twte;
        m->swpe = swpe;
        m->twpe = twpe;
        m->slnf = slnf;
        m->tlnf = tlnf;
        m->head = head;
    }
    return off;
}

#endif /* TC_ENCDEC_LAYOUT_H */
