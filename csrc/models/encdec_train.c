/* encdec_train.c: the encoder-decoder fast path (tc.h, "model_encdec"): parameter layout,
 * activation-arena plan and the model object; the forward/backward itself is
 * encdec_train_impl.h, compiled per dtype.
 *
 * Every layer is a chain of residual sub-layers, each with one slot of buffers:
 *   slot A: self-attention, slot B: cross-attention (decoder only), slot C: MLP;
 *   pre-LN:  ln = LN(in); r = in + drop(f(ln)); the sub-layer's output is r;
 *   post-LN: r = in + drop(f(in)); ln = LN(r); the sub-layer's output is ln.
 * The arena is one 64-byte-aligned block carved by a bump allocator (sizes per token of the
 * stack: Ns = B*S source tokens for the encoder, Nt = B*T target tokens for the decoder, Nm
 * the larger; C width, H MLP width, NH heads, V target vocabulary):
 *   kept for the backward, per layer:
 *     per slot: ln C, mean/rstd 2, r C
 *     self-attention: qkvh C + 2KC (the c_attn output (B,L,C + 2KC): q, k, v token-major;
 *       KC = NKV * HS, C without grouped-query attention), lse NH (row logsumexp), atty C
 *       (attention output, token-major, the c_proj input); qk_norm: qkn C + KC (the
 *       RMS-normalised q | k the attention reads) and qkr NH + NKV (their rstd)
 *     cross-attention (decoder): xqh C (queries, token-major), xkvh 2C per SOURCE token
 *       (keys and values of the memory, (B,S,2C)), xlse NH, xatty C
 *     MLP: fch H, fcha H (c_fc output after the activation, and before it for ReLU or the
 *       GELU's derivative there: the backward's cache; gated: fch = c_gate's output, fcha
 *       the product, plus fcu H, fcg H: c_fc's output and act(fch)); a mixture of experts (ffn ==
 *       TC_FFN_MOE) instead: the layer's tc_moe_cache (model_moe_plan) over its stack's
 *       tokens
 *   kept once: source and target positions (int64), the two embedding outputs, each
 *     stack's ln_f C + 2 (pre-LN), logits V (turned into dlogits in place), per-row loss and
 *     logsumexp 2;
 *   scratch (Nm tokens): qkv 3C (projection outputs / their gradients), dres C and dtmp C
 *     (the running residual gradient), ddrop C, dfin C (a branch's input gradient; also
 *     the forward's branch output), datty C, dh1 H, dh2 H; and dmem C
 *     per source token (the memory's gradient, summed over the decoder layers).
 */
#include "tc_generic.h"
#include "model_common.h"
#include "encdec_layout.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t ln[3], mean[3], rstd[3], r[3];   /* slots A (self), B (cross), C (MLP) */
    size_t qkvh, lse, atty;
    size_t qkn, qkr;                         /* qk_norm: the normalised q | k, their rstd */
    size_t xqh, xkvh, xlse, xatty;
    size_t fch, fcha;
    size_t fcu, fcg;                         /* gated: c_fc's output, act(c_gate's) */
    model_moe_acts moe;                      /* ffn == TC_FFN_MOE: the MLP's tc_moe_cache */
} ed_layer_acts;

typedef struct {
    size_t spos, tpos, semb, temb, slnf, slnf_mean, slnf_rstd, tlnf, tlnf_mean, tlnf_rstd;
    size_t logits, losses, loss_lse;
    size_t qkv, dres, dtmp, ddrop, dfin, datty, dh1, dh2, dmem;
    size_t total;
} ed_acts;

/* One call's sizes and options. */
typedef struct {
    int64_t B, Ls, Lt;           /* batch, source and target lengths */
    const uint8_t *mask;         /* (B,Ls) nonzero = real source token, or NULL (all real) */
    model_drop d;                /* the dropout of these rows (their place in the whole
                                  * batch: the masks are drawn there) */
    int grads;                   /* a backward follows (the MLPs cache what it needs) */
} ed_call;

/* The sub-layers of a layer in order: kind (= slot: 0 self-attention, 1 cross-attention,
 * 2 MLP), the dropout site of its attention probabilities and of its branch output. Layer l
 * of the encoder uses sites 3l + 1.. 3l + 3, of the decoder D0 + 5l + 1 .. D0 + 5l + 5 with
 * D0 = 1 + 3 Le (the decoder's embedding site), in order of use. */
static int ed_layer_plan(const tc_encdec_config *c, int dec, int64_t l, int kinds[3],
                         int64_t probs[3], int64_t branch[3])
{
    int64_t site = dec ? 1 + 3 * c->Le + 5 * l + 1 : 3 * l + 1;
    int n = 0;
    for (int kind = 0; kind < 3; kind++) {
        if (kind == 1 && !dec) continue;
        kinds[n] = kind;
        probs[n] = kind < 2 ? site++ : -1;
        branch[n] = site++;
        n++;
    }
    return n;
}

struct tc_encdec {
    tc_encdec_config cfg;
    int64_t elem;                 /* sizeof(real_t) */
    void *params, *grads;         /* borrowed flat buffers */
    int64_t num_params;
    int64_t swte, twte, swpe, twpe, head;
    ed_lin slnf, tlnf;
    ed_layer_params *ep, *dp;     /* (Le,), (Ld,) */
    ed_layer_acts *ea, *da;
    ed_acts ga;
    char *arena;                  /* owned */
    size_t arena_bytes;
    int64_t cap_src, cap_tgt;     /* the arena is carved for this many tokens */
    void *tab;                    /* sinusoidal table (maxT,C) */
    int borrowed_tab;             /* a clone: tab belongs to the model it was cloned from */
    /* data-parallel calls (model_common.h): clones sharing the parameters and the table,
     * each with its own arena and gradient buffer; created on first use */
    int nclones;
    void *clones[TC_MODEL_MAX_WORKERS - 1]; /* tc_encdec * */
    void *clone_grads[TC_MODEL_MAX_WORKERS - 1];
    double *moe_aux;              /* (Le + Ld,) ffn == TC_FFN_MOE: each layer's load-balancing
                                   * loss in the last forward (encoder layers first) */
};

int64_t tc_encdec_num_params(const tc_encdec_config *cfg)
{
    if (!ed_config_ok(cfg)) return -1;
    return ed_param_plan(cfg, NULL, NULL, NULL);
}

/* The rows per expert of a mixture of experts over N tokens (0 for a dense model). */
static int64_t ed_moe_cap(const tc_encdec_config *c, int64_t N)
{
    return ed_is_moe(c) ? tc_moe_capacity(N, c->moe_experts, c->moe_top_k, c->moe_capacity)
                        : 0;
}

/* The arena plan for Ns source and Nt target tokens (ea, da may be NULL); total bytes. */
static size_t ed_arena_plan(const tc_encdec_config *c, int64_t Ns, int64_t Nt, int64_t elem,
                            ed_layer_acts *ea, ed_layer_acts *da, ed_acts *ga)
{
    size_t u = 0;
    const int64_t C = c->C, H = c->H, NH = c->NH, Nm = Ns > Nt ? Ns : Nt;
    const int64_t pre = c->norm == TC_NORM_PRE;
    ed_acts g;
    g.spos = gpt_take(&u, Ns, sizeof(int64_t));
    g.tpos = gpt_take(&u, Nt, sizeof(int64_t));
    g.semb = gpt_take(&u, Ns * C, elem);
    for (int dec = 0; dec < 2; dec++) {
        const int64_t N = dec ? Nt : Ns, L = dec ? c->Ld : c->Le;
        if (dec) g.temb = gpt_take(&u, Nt * C, elem);
        for (int64_t l = 0; l < L; l++) {
            ed_layer_acts a;
            memset(&a, 0, sizeof a);
            for (int s = 0; s < 3; s++) {
                const int64_t n = (s == 1 && !dec) ? 0 : N;
                a.ln[s] = gpt_take(&u, n * C, elem);
                a.mean[s] = gpt_take(&u, n, elem);
                a.rstd[s] = gpt_take(&u, n, elem);
                a.r[s] = gpt_take(&u, n * C, elem);
            }
            a.qkvh = gpt_take(&u, N * (C + 2 * ed_kv_width(c)), elem);
            a.lse = gpt_take(&u, N * NH, elem);
            a.atty = gpt_take(&u, N * C, elem);
            a.qkn = gpt_take(&u, c->qk_norm ? N * (C + ed_kv_width(c)) : 0, elem);
            a.qkr = gpt_take(&u, c->qk_norm ? N * (NH + model_kv_heads(NH, c->NKV)) : 0, elem);
            if (dec) {
                a.xqh = gpt_take(&u, Nt * C, elem);
                a.xkvh = gpt_take(&u, 2 * Ns * C, elem);
                a.xlse = gpt_take(&u, Nt * NH, elem);
                a.xatty = gpt_take(&u, Nt * C, elem);
            }
            a.fch = gpt_take(&u, ed_is_moe(c) ? 0 : N * H, elem);
            a.fcha = gpt_take(&u, ed_is_moe(c) ? 0 : N * H, elem);
            a.fcu = gpt_take(&u, c->gated ? N * H : 0, elem);
            a.fcg = gpt_take(&u, c->gated ? N * H : 0, elem);
            if (ed_is_moe(c))
                a.moe = model_moe_plan(&u, N, C, H, c->moe_experts, c->moe_top_k,
                                       ed_moe_cap(c, N), elem);
            if (dec && da) da[l] = a;
            if (!dec && ea) ea[l] = a;
        }
        const int64_t n = pre ? N : 0;
        size_t *lnf = dec ? &g.tlnf : &g.slnf;
        lnf[0] = gpt_take(&u, n * C, elem);
        lnf[1] = gpt_take(&u, n, elem);
        lnf[2] = gpt_take(&u, n, elem);
    }
    g.logits = gpt_take(&u, Nt * c->Vt, elem);
    g.losses = gpt_take(&u, Nt, elem);
    g.loss_lse = gpt_take(&u, Nt, elem);
    g.qkv = gpt_take(&u, 3 * Nm * C, elem);
    g.dres = gpt_take(&u, Nm * C, elem);
    g.dtmp = gpt_take(&u, Nm * C, elem);
    g.ddrop = gpt_take(&u, c->dropout > 0 ? Nm * C : 0, elem);
    g.dfin = gpt_take(&u, Nm * C, elem);
    g.datty = gpt_take(&u, Nm * C, elem);
    g.dh1 = gpt_take(&u, Nm * H, elem);
    g.dh2 = gpt_take(&u, Nm * H, elem);
    g.dmem = gpt_take(&u, Ns * C, elem);
    g.total = (u + 63) / 64 * 64;
    if (ga) *ga = g;
    return g.total;
}

/* A rough upper bound of the arena's elements, to refuse sizes that could overflow. */
static double ed_arena_elems(const tc_encdec_config *c, double Ns, double Nt)
{
    const double per = 22.0 * (double)c->C + 6.0 * (double)c->H + 4.0 * (double)c->NH +
                       (ed_is_moe(c) ? model_moe_token_elems(c->C, c->H, c->moe_experts) : 0);
    return (Ns + Nt) * (per * ((double)c->Le + (double)c->Ld + 1.0) + (double)c->Vt);
}

int tc_encdec_arena_bytes(int64_t *bytes, const tc_encdec_config *cfg, int64_t B, int64_t S,
                          int64_t T, int64_t elem_size)
{
    if (!bytes || !ed_config_ok(cfg) || B < 0 || S < 0 || T < 0 || S > cfg->maxT ||
        T > cfg->maxT || (elem_size != 4 && elem_size != 8))
        return TC_EINVAL;
    if (ed_arena_elems(cfg, (double)B * (double)S, (double)B * (double)T) * 8.0 > 1e18)
        return TC_EINVAL;
    *bytes = (int64_t)ed_arena_plan(cfg, B * S, B * T, elem_size, NULL, NULL, NULL);
    return TC_OK;
}

/* Grow the arena to hold Ns source and Nt target tokens (the only allocation after
 * creation; the plan keeps the largest sizes seen). */
static int ed_reserve(tc_encdec *m, int64_t Ns, int64_t Nt)
{
    if (m->arena && Ns <= m->cap_src && Nt <= m->cap_tgt) return TC_OK;
    if (Ns < m->cap_src) Ns = m->cap_src;
    if (Nt < m->cap_tgt) Nt = m->cap_tgt;
    if (ed_arena_elems(&m->cfg, (double)Ns, (double)Nt) * (double)m->elem > 1e18)
        return TC_ENOMEM;
    const size_t bytes = ed_arena_plan(&m->cfg, Ns, Nt, m->elem, NULL, NULL, NULL);
    char *arena = tc_alloc_big(bytes);
    if (!arena) return TC_ENOMEM;
    free(m->arena);
    m->arena = arena;
    m->arena_bytes = bytes;
    m->cap_src = Ns;
    m->cap_tgt = Nt;
    ed_arena_plan(&m->cfg, Ns, Nt, m->elem, m->ea, m->da, &m->ga);
    return TC_OK;
}

static tc_encdec *ed_new(const tc_encdec_config *cfg, int64_t elem, void *params, void *grads)
{
    tc_encdec *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->elem = elem;
    m->params = params;
    m->grads = grads;
    m->ep = malloc((size_t)cfg->Le * sizeof *m->ep);
    m->dp = malloc((size_t)cfg->Ld * sizeof *m->dp);
    m->ea = malloc((size_t)cfg->Le * sizeof *m->ea);
    m->da = malloc((size_t)cfg->Ld * sizeof *m->da);
    if (ed_is_moe(cfg)) m->moe_aux = calloc((size_t)(cfg->Le + cfg->Ld), sizeof *m->moe_aux);
    if (!m->ep || !m->dp || !m->ea || !m->da || (ed_is_moe(cfg) && !m->moe_aux)) {
        tc_encdec_free(m);
        return NULL;
    }
    ed_globals g;
    m->num_params = ed_param_plan(cfg, &g, m->ep, m->dp);
    m->swte = g.swte;
    m->twte = g.twte;
    m->swpe = g.swpe;
    m->twpe = g.twpe;
    m->head = g.head;
    m->slnf = g.slnf;
    m->tlnf = g.tlnf;
    return m;
}

void tc_encdec_free(tc_encdec *m)
{
    if (!m) return;
    for (int w = 0; w < m->nclones; w++) {
        tc_encdec_free(m->clones[w]);
        free(m->clone_grads[w]);
    }
    free(m->arena);
    if (!m->borrowed_tab) free(m->tab);
    free(m->ep);
    free(m->dp);
    free(m->ea);
    free(m->da);
    free(m->moe_aux);
    free(m);
}

/* A data-parallel clone of model (model_clones_ready): same config and parameters, the
 * position table borrowed, gradient buffer grads (NULL when the model has none). */
static void *ed_clone(void *model, void *grads)
{
    const tc_encdec *m = model;
    tc_encdec *c = ed_new(&m->cfg, m->elem, m->params, grads);
    if (!c) return NULL;
    c->tab = m->tab;
    c->borrowed_tab = 1;
    return c;
}

/* Make sure clones 1 .. W-1 exist (model_common.h), each with its own gradient buffer when
 * the model has one. */
static int ed_clones_ready(tc_encdec *m, int W)
{
    return model_clones_ready(m, m->clones, m->clone_grads, &m->nclones, W, m->num_params,
                              m->elem, m->grads != NULL, ed_clone);
}

/* Whether the loss has a load-balancing term (its gradient is due even without a counted
 * target, as on the module path). */
static int ed_aux_on(const tc_encdec_config *c)
{
    return ed_is_moe(c) && c->moe_aux_weight > 0;
}

/* The workers of a call over B rows (model_split_workers): one pass for a mixture of
 * experts, which routes over the whole batch, as the module path does. */
static int ed_workers(const tc_encdec *m, int64_t B)
{
    return ed_is_moe(&m->cfg) ? 1 : model_split_workers(B);
}

/* A call's forward FLOPs over B rows of L = Ls + Lt tokens, at most about 2 per parameter
 * per token (the flush-to-zero scope's work, model_split_run) */
static double ed_call_flops(const tc_encdec *m, int64_t B, int64_t L)
{
    return 2.0 * (double)B * (double)L * (double)m->num_params;
}

int64_t tc_encdec_arena_size(const tc_encdec *m)
{
    if (!m) return 0;
    int64_t bytes = (int64_t)m->arena_bytes;
    for (int w = 0; w < m->nclones; w++) bytes += (int64_t)((tc_encdec *)m->clones[w])->arena_bytes;
    return bytes;
}

#define TC_GENERIC_1 "encdec_train_impl.h"
#include "tc_dtypes.h"
