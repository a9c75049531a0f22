/* gpt_layout.h: the GPT parameter layout (tc.h, "model") shared by the fast path (gpt_train.c)
 * and the KV-cache decoder (gpt_decode.c): the config check and the offset of every
 * parameter in the flat buffer. Static functions: include it once per .c file. */
#ifndef TC_GPT_LAYOUT_H
#define TC_GPT_LAYOUT_H

#include "tc_generic.h"
#include "model_common.h"

typedef struct { /* element offsets into the parameter (and gradient) buffer; -1: absent.
                  * ffn == TC_FFN_MOE: router (E,C), and fcw, fcb, fcprojw, fcprojb hold the
                  * E experts' stacked weights: w1 (E,H,C), b1 (E,H), w2 (E,C,H), b2 (E,C) */
    int64_t ln1w, ln1b, attw, attb, projw, projb, qnw, knw, ln2w, ln2b, router, fcw, fcb,
        fcprojw, fcprojb;
    int64_t fcgw, fcgb; /* the gated MLP's c_gate (H,C), (H,); -1 without gating */
} gpt_layer_params;

/* Whether the config's feed-forward is a mixture of experts. */
static inline int gpt_is_moe(const tc_gpt_config *c) { return c->ffn == TC_FFN_MOE; }

/* The config's feed-forward fields are valid (model_ffn_ok), the experts' weights far
 * from overflow. */
static int gpt_ffn_ok(const tc_gpt_config *c)
{
    if (!model_ffn_ok(c->ffn, c->moe_experts, c->moe_top_k, c->moe_capacity,
                      c->moe_aux_weight))
        return 0;
    return !gpt_is_moe(c) ||
           (double)c->moe_experts * (double)c->H * (double)c->C * (double)c->L <= 1e15;
}

/* The config's block-sparse pattern in *sp, or NULL for dense attention. */
static inline const tc_attention_sparse *gpt_sparse(const tc_gpt_config *c,
                                                    tc_attention_sparse *sp)
{
    return model_sparse(sp, c->attention, c->sparse_block, c->sparse_window, c->sparse_stride,
                        c->sparse_global);
}

/* The kv heads (NKV, or NH without grouped-query attention) and KC, the width of k (and of
 * v) in the c_attn output (B,T,C + 2 KC). */
static inline int64_t gpt_kv_heads(const tc_gpt_config *c) { return model_kv_heads(c->NH, c->NKV); }
static inline int64_t gpt_kv_width(const tc_gpt_config *c)
{
    return gpt_kv_heads(c) * (c->C / c->NH);
}

static int gpt_config_ok(const tc_gpt_config *c)
{
    if (!c) return 0;
    if (c->V < 1 || c->maxT < 1 || c->C < 1 || c->L < 1 || c->NH < 1 || c->H < 1) return 0;
    if (c->L > TC_MAX_LAYERS) return 0; /* before any loop over the layers */
    if (c->C % c->NH) return 0;
    if (!model_block_ok(c->norm_type, c->qk_norm, c->NKV, c->NH, c->gated, c->ffn)) return 0;
    if (c->position < 0 || c->position >= TC_POS_COUNT || c->activation < 0 ||
        c->activation >= TC_ACT_COUNT) return 0;
    if ((c->bias != 0 && c->bias != 1) || (c->norm < 0 || c->norm >= TC_NORM_COUNT) ||
        (c->tie != 0 && c->tie != 1) || (c->rope_interleaved != 0 && c->rope_interleaved != 1))
        return 0;
    if (c->position == TC_POS_ROPE && (c->C / c->NH) % 2) return 0;
    if (!(c->eps >= 0) || !isfinite(c->eps)) return 0;
    if (!(c->pos_base > 0) || !isfinite(c->pos_base)) return 0;
    if (!(c->dropout >= 0 && c->dropout < 1)) return 0;
    if (c->attention < 0 || c->attention >= TC_ATTN_COUNT) return 0;
    if (!(c->logit_softcap >= 0) || !isfinite(c->logit_softcap)) return 0;
    if (!gpt_ffn_ok(c)) return 0;
    if (c->attention == TC_ATTN_BLOCK_SPARSE) {
        tc_attention_sparse sp;
        if (!tc_attention_sparse_ok(gpt_sparse(c, &sp))) return 0;
    }
    /* keep every buffer (in elements, times 8 bytes) far from size_t / int64 overflow */
    const double big = 1e15;
    if ((double)c->V * (double)c->C > big || (double)c->maxT * (double)c->C > big ||
        (double)c->H * (double)c->C * (double)c->L > big ||
        (double)c->C * (double)c->C * 4.0 * (double)c->L > big)
        return 0;
    return 1;
}

/* Parameter offsets in layout order (lp may be NULL); returns the total count. */
static int64_t gpt_param_plan(const tc_gpt_config *c, gpt_layer_params *lp, int64_t *wte,
                              int64_t *wpe, int64_t *lnfw, int64_t *lnfb, int64_t *head)
{
    int64_t off = 0;
    const int64_t C = c->C, H = c->H;
#define TAKE(n) (off += (n), off - (n))
    *wte = TAKE(c->V * C);
    *wpe = c->position == TC_POS_LEARNED ? TAKE(c->maxT * C) : -1;
    for (int64_t l = 0; l < c->L; l++) {
        gpt_layer_params p;
        p.ln1w = TAKE(C);
        p.ln1b = c->bias ? TAKE(C) : -1;
        p.attw = TAKE((C + 2 * gpt_kv_width(c)) * C);
        p.attb = c->bias ? TAKE(C + 2 * gpt_kv_width(c)) : -1;
        p.projw = TAKE(C * C);
        p.projb = c->bias ? TAKE(C) : -1;
        p.qnw = c->qk_norm ? TAKE(C / c->NH) : -1;
        p.knw = c->qk_norm ? TAKE(C / c->NH) : -1;
        p.ln2w = TAKE(C);
        p.ln2b = c->bias ? TAKE(C) : -1;
        const int64_t E = gpt_is_moe(c) ? c->moe_experts : 1; /* MLPs per layer */
        p.router = gpt_is_moe(c) ? TAKE(E * C) : -1;
        p.fcw = TAKE(E * H * C);
        p.fcb = c->bias ? TAKE(E * H) : -1;
        p.fcgw = c->gated ? TAKE(H * C) : -1; /* the gated MLP (never MoE): c_gate */
        p.fcgb = c->gated && c->bias ? TAKE(H) : -1;
        p.fcprojw = TAKE(E * C * H);
        p.fcprojb = c->bias ? TAKE(E * C) : -1;
        if (lp) lp[l] = p;
    }
    *lnfw = c->norm == TC_NORM_PRE ? TAKE(C) : -1;
    *lnfb = c->norm == TC_NORM_PRE && c->bias ? TAKE(C) : -1;
    *head = c->tie ? *wte : TAKE(c->V * C);
#undef TAKE
    return off;
}

#endif /* TC_GPT_LAYOUT_H */
