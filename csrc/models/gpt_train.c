/* gpt_train.c: the GPT fast path (tc.h, "model"): parameter layout, activation-arena plan and
 * the model object; the forward/backward itself is gpt_train_impl.h, compiled per dtype.
 *
 * The arena is one 64-byte-aligned block carved by a bump allocator into the buffers below
 * (sizes per token; C width, H MLP width, NH heads, V vocabulary):
 *   kept for the backward, per layer:
 *     ln1 C, ln1 mean/rstd 2   pre-LN: ln_1(x); post-LN: x1 = ln_1(x + attn)
 *     qkvh C + 2KC             q, k, v: the c_attn output (B,T,C + 2KC) itself (KC = C, or
 *                              NKV * HS with grouped-query attention; token-major,
 *                              read by the attention kernel at its strides; with RoPE,
 *                              q and k rotated in place)
 *     qkn C + KC, qkr NH + NKV qk_norm only: the RMS-normalised q | k (B,T,C + KC) (RoPE
 *                              rotates them there; the attention reads q, k from it and
 *                              qkvh keeps the raw ones) and their rstd (q's (N,NH), then
 *                              k's (N,NKV))
 *     lse NH                   the attention rows' logsumexp
 *     atty C                   attention output, token-major (written there by the
 *                              attention kernel; the c_proj input)
 *     res2 C                   x + drop(attn)
 *     ln2 C, ln2 mean/rstd 2   pre-LN: ln_2(res2); post-LN: the layer output
 *     fch H, fcha H            c_fc output after the activation (fcha) and, for the
 *                              backward, before it (ReLU) or the GELU's derivative there
 *                              (dense MLP only)
 *     moe                      ffn == TC_FFN_MOE instead of fch, fcha: the layer's
 *                              tc_moe_cache (tc.h; model_moe_plan): probs E, gates K,
 *                              expert K, slot K (int64), and for the E cap =
 *                              tc_moe_capacity(N, E, K, cf) expert rows tok (int64), xg C,
 *                              pre H, hid H, eo C; counts and dropped E (int64) once
 *     res3 C                   pre-LN: the layer output; post-LN: x1 + drop(mlp)
 *     fcu H, fcg H             gated MLP only: c_fc's output (up) and act(c_gate's output)
 *                              (fch then holds c_gate's output, fcha act(gate) * up)
 *   kept once: pos ids (int64), enc C (embeddings), lnf C + 2, logits V (the backward
 *     turns them into dlogits in place), capped V (logit_softcap only: a copy of the capped
 *     logits for the soft-cap's backward), per-row loss and logsumexp 2;
 *   scratch shared by all layers: qkv C + 2KC (the c_attn output's gradient), dres C (the
 *     running residual gradient), ddrop C, dh1 H, dh2 H, dc C (also the forward's
 *     projection output and the attention output's gradient).
 */
#include "tc_generic.h"
#include "model_common.h"
#include "gpt_layout.h"

#include <stdlib.h>
#include <string.h>

typedef struct { /* byte offsets into the arena */
    size_t ln1, ln1_mean, ln1_rstd, qkvh, qkn, qkr, lse, atty, res2, ln2, ln2_mean, ln2_rstd,
        fch, fcha, res3;
    model_moe_acts moe; /* ffn == TC_FFN_MOE: the layer's tc_moe_cache */
    size_t fcu, fcg; /* the gated MLP's c_fc output and act(c_gate output) (empty without) */
} gpt_layer_acts;

typedef struct {
    size_t pos, enc, lnf, lnf_mean, lnf_rstd, logits, capped, losses, loss_lse;
    size_t qkv, dres, ddrop, dh1, dh2, dc;
    size_t total;
} gpt_acts;

struct tc_gpt {
    tc_gpt_config cfg;
    int64_t elem;                /* sizeof(real_t) */
    void *params, *grads;        /* borrowed flat buffers */
    int64_t num_params;
    int64_t wte, wpe, lnfw, lnfb, head;
    gpt_layer_params *lp;        /* (L,) */
    gpt_layer_acts *la;          /* (L,) */
    gpt_acts ga;
    char *arena;                 /* owned */
    size_t arena_bytes;
    int64_t cap_tokens;          /* the arena is carved for this many tokens */
    void *tab1, *tab2;           /* sinusoidal table (maxT,C); or rope cos, sin (maxT,HS/2) */
    /* data-parallel calls (model_common.h): worker w > 0 is a clone of this model (shared
     * parameters and tables, its own arena and gradient buffer), the model itself worker 0;
     * created on first use */
    int nclones;
    void *clones[TC_MODEL_MAX_WORKERS - 1]; /* tc_gpt * */
    void *clone_grads[TC_MODEL_MAX_WORKERS - 1];
    int borrowed_tables;         /* a clone: tab1, tab2 belong to the model it was cloned from */
    int64_t row0;                /* this pass's rows start at row0 of the global batch (the
                                  * call's row0 + the worker's first row): dropout masks are
                                  * drawn at their place in it (model_drop) */
    double *moe_aux;             /* (L,) ffn == TC_FFN_MOE: each layer's load-balancing loss
                                  * in the last forward */
    int64_t moe_tokens;          /* the tokens that forward routed (0: none yet) */
};

int64_t tc_gpt_num_params(const tc_gpt_config *cfg)
{
    if (!gpt_config_ok(cfg)) return -1;
    int64_t a, b, d, e, f;
    return gpt_param_plan(cfg, NULL, &a, &b, &d, &e, &f);
}

/* The rows per expert of a mixture of experts over N tokens (0 for a dense model). */
static int64_t gpt_moe_cap(const tc_gpt_config *c, int64_t N)
{
    return gpt_is_moe(c) ? tc_moe_capacity(N, c->moe_experts, c->moe_top_k, c->moe_capacity)
                         : 0;
}

/* Elements the arena holds per token (an upper bound, for the overflow checks). */
static double gpt_token_elems(const tc_gpt_config *c)
{
    const double moe = gpt_is_moe(c) ? model_moe_token_elems(c->C, c->H, c->moe_experts) : 0;
    return ((double)c->V + 20.0 * (double)c->C + 4.0 * (double)c->H + moe) *
           (double)(c->L + 1);
}

/* The arena plan for N tokens (la may be NULL); returns the total bytes. */
static size_t gpt_arena_plan(const tc_gpt_config *c, int64_t N, int64_t elem,
                             gpt_layer_acts *la, gpt_acts *ga)
{
    const int64_t Hd = gpt_is_moe(c) ? 0 : c->H; /* the dense MLP's width, 0 for experts */
    size_t u = 0;
    const int64_t C = c->C, H = c->H, NH = c->NH;
    gpt_acts g;
    g.pos = gpt_take(&u, N, sizeof(int64_t));
    g.enc = gpt_take(&u, N * C, elem);
    for (int64_t l = 0; l < c->L; l++) {
        gpt_layer_acts a;
        a.ln1 = gpt_take(&u, N * C, elem);
        a.ln1_mean = gpt_take(&u, N, elem);
        a.ln1_rstd = gpt_take(&u, N, elem);
        a.qkvh = gpt_take(&u, N * (C + 2 * gpt_kv_width(c)), elem);
        a.qkn = gpt_take(&u, c->qk_norm ? N * (C + gpt_kv_width(c)) : 0, elem);
        a.qkr = gpt_take(&u, c->qk_norm ? N * (NH + gpt_kv_heads(c)) : 0, elem);
        a.lse = gpt_take(&u, N * NH, elem);
        a.atty = gpt_take(&u, N * C, elem);
        a.res2 = gpt_take(&u, N * C, elem);
        a.ln2 = gpt_take(&u, N * C, elem);
        a.ln2_mean = gpt_take(&u, N, elem);
        a.ln2_rstd = gpt_take(&u, N, elem);
        a.fch = gpt_take(&u, N * Hd, elem);
        a.fcha = gpt_take(&u, N * Hd, elem);
        a.res3 = gpt_take(&u, N * C, elem);
        a.fcu = gpt_take(&u, c->gated ? N * H : 0, elem);
        a.fcg = gpt_take(&u, c->gated ? N * H : 0, elem);
        if (gpt_is_moe(c))
            a.moe = model_moe_plan(&u, N, C, c->H, c->moe_experts, c->moe_top_k,
                                   gpt_moe_cap(c, N), elem);
        if (la) la[l] = a;
    }
    g.lnf = gpt_take(&u, c->norm == TC_NORM_POST ? 0 : N * C, elem);
    g.lnf_mean = gpt_take(&u, c->norm == TC_NORM_POST ? 0 : N, elem);
    g.lnf_rstd = gpt_take(&u, c->norm == TC_NORM_POST ? 0 : N, elem);
    g.logits = gpt_take(&u, N * c->V, elem);
    g.capped = gpt_take(&u, c->logit_softcap > 0 ? N * c->V : 0, elem);
    g.losses = gpt_take(&u, N, elem);
    g.loss_lse = gpt_take(&u, N, elem);
    g.qkv = gpt_take(&u, N * (C + 2 * gpt_kv_width(c)), elem);
    g.dres = gpt_take(&u, N * C, elem);
    g.ddrop = gpt_take(&u, c->dropout > 0 ? N * C : 0, elem);
    g.dh1 = gpt_take(&u, N * H, elem);
    g.dh2 = gpt_take(&u, N * H, elem);
    g.dc = gpt_take(&u, N * C, elem);
    g.total = (u + 63) / 64 * 64;
    if (ga) *ga = g;
    return g.total;
}

int tc_gpt_arena_bytes(int64_t *bytes, const tc_gpt_config *cfg, int64_t B, int64_t T,
                       int64_t elem_size)
{
    if (!bytes || !gpt_config_ok(cfg) || B < 0 || T < 0 || T > cfg->maxT ||
        (elem_size != 4 && elem_size != 8))
        return TC_EINVAL;
    if (B > 0 && (double)B * (double)T * gpt_token_elems(cfg) > 1e18)
        return TC_EINVAL;
    *bytes = (int64_t)gpt_arena_plan(cfg, B * T, elem_size, NULL, NULL);
    return TC_OK;
}

/* Grow the arena to hold N tokens (the only allocation after creation). */
static int gpt_reserve(tc_gpt *m, int64_t N)
{
    if (N <= m->cap_tokens && m->arena) return TC_OK;
    if ((double)N * gpt_token_elems(&m->cfg) * (double)m->elem > 1e18)
        return TC_ENOMEM;
    gpt_acts ga;
    const size_t bytes = gpt_arena_plan(&m->cfg, N, m->elem, NULL, &ga);
    char *arena = tc_alloc_big(bytes);
    if (!arena) return TC_ENOMEM;
    free(m->arena);
    m->arena = arena;
    m->arena_bytes = bytes;
    m->cap_tokens = N;
    m->moe_tokens = 0; /* the routing read-out was in the old arena */
    gpt_arena_plan(&m->cfg, N, m->elem, m->la, &m->ga);
    return TC_OK;
}

static tc_gpt *gpt_new(const tc_gpt_config *cfg, int64_t elem, void *params, void *grads)
{
    tc_gpt *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->elem = elem;
    m->params = params;
    m->grads = grads;
    m->lp = malloc((size_t)cfg->L * sizeof *m->lp);
    m->la = malloc((size_t)cfg->L * sizeof *m->la);
    m->moe_aux = gpt_is_moe(cfg) ? calloc((size_t)cfg->L, sizeof *m->moe_aux) : NULL;
    if (!m->lp || !m->la || (gpt_is_moe(cfg) && !m->moe_aux)) {
        free(m->lp);
        free(m->la);
        free(m->moe_aux);
        free(m);
        return NULL;
    }
    m->num_params = gpt_param_plan(cfg, m->lp, &m->wte, &m->wpe, &m->lnfw, &m->lnfb, &m->head);
    return m;
}

void tc_gpt_free(tc_gpt *m)
{
    if (!m) return;
    for (int w = 0; w < m->nclones; w++) {
        tc_gpt_free(m->clones[w]);
        free(m->clone_grads[w]);
    }
    free(m->arena);
    if (!m->borrowed_tables) {
        free(m->tab1);
        free(m->tab2);
    }
    free(m->lp);
    free(m->la);
    free(m->moe_aux);
    free(m);
}

/* A data-parallel clone of model (model_clones_ready): same config and parameters, position
 * tables borrowed, gradient buffer grads. */
static void *gpt_clone(void *model, void *grads)
{
    const tc_gpt *m = model;
    tc_gpt *c = gpt_new(&m->cfg, m->elem, m->params, grads);
    if (!c) return NULL;
    c->tab1 = m->tab1;
    c->tab2 = m->tab2;
    c->borrowed_tables = 1;
    return c;
}

/* Make sure clones 1 .. W-1 exist, each with its own gradient buffer (its arena comes with
 * its first call). */
static int gpt_clones_ready(tc_gpt *m, int W)
{
    return model_clones_ready(m, m->clones, m->clone_grads, &m->nclones, W, m->num_params,
                              m->elem, 1, gpt_clone);
}

/* The workers of a call over B sequences (model_split_workers): one pass for a mixture of
 * experts, which routes (capacity, aux) over the whole batch, as the module path does. */
static int gpt_workers(const tc_gpt *m, int64_t B)
{
    return gpt_is_moe(&m->cfg) ? 1 : model_split_workers(B);
}

/* A call's forward FLOPs over B sequences of L tokens, about 2 per parameter per token (the
 * flush-to-zero scope's work, model_split_run: whether its regions would use the threads) */
static double gpt_call_flops(const tc_gpt *m, int64_t B, int64_t L)
{
    return 2.0 * (double)B * (double)L * (double)m->num_params;
}

// tokens, dropped (L,E), capacity (L,), aux (L,), each optional: the last forward's routing
int tc_gpt_moe_routing(const tc_gpt *m, int64_t *tokens, int64_t *dropped, int64_t *capacity,
                       double *aux)
{
    if (!m || !gpt_is_moe(&m->cfg) || m->moe_tokens < 1) return TC_EINVAL;
    const tc_gpt_config *c = &m->cfg;
    const int64_t E = c->moe_experts;
    for (int64_t l = 0; l < c->L; l++) {
        const model_moe_acts *a = &m->la[l].moe;
        if (tokens) memcpy(tokens + l * E, m->arena + a->counts, (size_t)E * sizeof *tokens);
        if (dropped) memcpy(dropped + l * E, m->arena + a->dropped, (size_t)E * sizeof *dropped);
        if (capacity) capacity[l] = gpt_moe_cap(c, m->moe_tokens);
        if (aux) aux[l] = m->moe_aux[l];
    }
    return TC_OK;
}

int64_t tc_gpt_arena_size(const tc_gpt *m)
{
    if (!m) return 0;
    int64_t bytes = (int64_t)m->arena_bytes;
    for (int w = 0; w < m->nclones; w++) bytes += (int64_t)((tc_gpt *)m->clones[w])->arena_bytes;
    return bytes;
}

#define TC_GENERIC_1 "gpt_train_impl.h"
#include "tc_dtypes.h"
