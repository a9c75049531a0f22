/* encdec_train_impl.h: the encoder-decoder forward, loss and backward over the arena (see
 * encdec_train.c), written once for real_t. Every matrix product, normalisation, activation,
 * attention, dropout and loss step is the library kernel the module path
 * (transformer_c.nn.EncoderDecoder with fast=False) calls, in the same order; the glue is
 * residual additions, position rows and the in-place cross-entropy gradient
 * (model_common_impl.h); the attention kernel reads and writes the token-major projection
 * buffers at their strides (no layout copies). */

#define PP(off) ((off) < 0 ? NULL : (real_t *)m->params + (off))  /* parameter pointer */
#define GP(off) ((off) < 0 ? NULL : (real_t *)m->grads + (off))   /* gradient pointer */
#define AP(off) ((real_t *)(m->arena + (off)))                     /* activation pointer */

#include "model_common_impl.h"

/* The self-attention layout of a stack (dec) for a call (model_block_layout: grouped k, v;
 * with qk_norm q and k read from qkn); *q the buffer q starts at (k at *q + C). */
static tc_attention_layout FN(ed_self_layout)(const tc_encdec *m, const ed_layer_acts *a,
                                              int64_t L, const real_t **q)
{
    const tc_encdec_config *c = &m->cfg;
    *q = AP(c->qk_norm ? a->qkn : a->qkvh);
    return model_block_layout(L, c->C, ed_kv_width(c), c->C / c->NH, c->qk_norm);
}

/* Self-attention: proj (N,C) = c_proj(attention(c_attn(x))), x (B*L,C); bidirectional
 * with the source mask in the encoder (dec == 0), causal in the decoder. The attention
 * kernel reads q, k, v from the c_attn output (B,L,C + 2KC) kept in qkvh (with qk_norm q
 * and k from their RMS-normalised copy qkn (B,L,C + KC)) and writes its output token-major
 * into atty (B,L,C). */
static int FN(ed_self_forward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                               real_t *proj, const real_t *x, int dec, const ed_call *k, int64_t site)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t C = c->C, NH = c->NH, HS = C / NH, KC = ed_kv_width(c), B = k->B;
    const int64_t L = dec ? k->Lt : k->Ls, N = B * L;
    real_t *qkv = AP(a->qkvh);
    const real_t *q;
    const tc_attention_layout lay = FN(ed_self_layout)(m, a, L, &q);
    CHECK(FN(tc_linear_forward)(qkv, x, PP(p->att.w), PP(p->att.b), N, C, C + 2 * KC));
    if (c->qk_norm)
        CHECK(FN(model_qk_norm_forward)(AP(a->qkn), AP(a->qkr), qkv, PP(p->qn.w), PP(p->kn.w),
                                        N, NH, KC / HS, HS, c->eps));
    tc_attention_sparse sp;
    CHECK(FN(model_attention_forward)(AP(a->atty), AP(a->lse), q, q + C, qkv + C + KC, &lay,
                                      dec ? NULL : k->mask, ed_sparse(c, &sp), B, NH, L, L, HS,
                                      dec ? TC_CAUSAL_TOP_LEFT : TC_CAUSAL_NONE, &k->d, site));
    return FN(tc_linear_forward)(proj, AP(a->atty), PP(p->proj.w), PP(p->proj.b), N, C, C);
}

/* Its backward: given dproj (N,C), accumulate the weight gradients and dx (N,C) (written
 * with set_dx: the same bits as adding to zeros). dproj is read before dx is written (they
 * may be the same buffer). dq, dk, dv are written straight into dqkv (B,L,C + 2KC), where
 * QK-norm's backward turns dq, dk into the raw ones' in place. */
static int FN(ed_self_backward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                                real_t *dx, const real_t *dproj, const real_t *x, int dec, const ed_call *k,
                                int64_t site, int set_dx)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t C = c->C, NH = c->NH, HS = C / NH, KC = ed_kv_width(c), B = k->B;
    const int64_t L = dec ? k->Lt : k->Ls, N = B * L;
    real_t *datty = AP(m->ga.datty), *dqkv = AP(m->ga.qkv);
    const real_t *qkv = AP(a->qkvh), *q;
    const tc_attention_layout lay = FN(ed_self_layout)(m, a, L, &q);
    CHECK(FN(tc_linear_backward)(datty, GP(p->proj.w), GP(p->proj.b), dproj, AP(a->atty),
                                     PP(p->proj.w), N, C, C, TC_WRITE(0)));
    tc_attention_sparse sp;
    CHECK(FN(model_attention_backward)(dqkv, dqkv + C, dqkv + C + KC, datty, q, q + C,
                                       qkv + C + KC, AP(a->atty), AP(a->lse), &lay,
                                       dec ? NULL : k->mask, ed_sparse(c, &sp), B, NH, L,
                                       L, HS,
                                       dec ? TC_CAUSAL_TOP_LEFT : TC_CAUSAL_NONE, &k->d, site));
    if (c->qk_norm)
        CHECK(FN(model_qk_norm_backward)(dqkv, GP(p->qn.w), GP(p->kn.w), qkv, PP(p->qn.w),
                                         PP(p->kn.w), AP(a->qkr), N, NH, KC / HS, HS));
    return FN(tc_linear_backward)(dx, GP(p->att.w), GP(p->att.b), dqkv, x, PP(p->att.w), N,
                                      C, C + 2 * KC, set_dx ? TC_WRITE(0) : 0);
}

/* Cross-attention: proj (Nt,C) = c_proj(attention(q_attn(x), c_attn(mem))), x (B*Lt,C),
 * mem (B*Ls,C), source padding masked. The kernel reads the queries (B,Lt,C) from xqh and
 * the keys and values (B,Ls,2C) from xkvh, the projection outputs themselves, and writes
 * its output token-major into xatty (B,Lt,C). */
static int FN(ed_cross_forward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                                real_t *proj, const real_t *x, const real_t *mem, const ed_call *k,
                                int64_t site)
{
    const int64_t C = m->cfg.C, NH = m->cfg.NH, HS = C / NH, B = k->B;
    const int64_t Nt = B * k->Lt, Ns = B * k->Ls;
    real_t *q = AP(a->xqh), *kv = AP(a->xkvh);
    const tc_attention_layout lay = model_cross_layout(k->Lt, k->Ls, C, HS);
    CHECK(FN(tc_linear_forward)(q, x, PP(p->xq.w), PP(p->xq.b), Nt, C, C));
    CHECK(FN(tc_linear_forward)(kv, mem, PP(p->xkv.w), PP(p->xkv.b), Ns, C, 2 * C));
    CHECK(FN(model_attention_forward)(AP(a->xatty), AP(a->xlse), q, kv, kv + C, &lay, k->mask, NULL,
                                      B, NH, k->Lt, k->Ls, HS, TC_CAUSAL_NONE, &k->d, site));
    return FN(tc_linear_forward)(proj, AP(a->xatty), PP(p->xproj.w), PP(p->xproj.b), Nt, C, C);
}

/* Its backward: dx (Nt,C) (written with set_dx) and dmem (Ns,C) accumulated, dproj read
 * first. The kernel writes dq (B,Lt,C) and dkv (B,Ls,2C) side by side in the qkv scratch. */
static int FN(ed_cross_backward)(tc_encdec *m, const ed_layer_params *p,
                                 const ed_layer_acts *a, real_t *dx, real_t *dmem, const real_t *dproj,
                                 const real_t *x, const real_t *mem, const ed_call *k, int64_t site,
                                 int set_dx)
{
    const int64_t C = m->cfg.C, NH = m->cfg.NH, HS = C / NH, B = k->B;
    const int64_t Nt = B * k->Lt, Ns = B * k->Ls;
    real_t *datty = AP(m->ga.datty), *dq = AP(m->ga.qkv), *dkv = dq + Nt * C;
    const real_t *q = AP(a->xqh), *kv = AP(a->xkvh);
    const tc_attention_layout lay = model_cross_layout(k->Lt, k->Ls, C, HS);
    CHECK(FN(tc_linear_backward)(datty, GP(p->xproj.w), GP(p->xproj.b), dproj,
                                     AP(a->xatty), PP(p->xproj.w), Nt, C, C,
                                     TC_WRITE(0)));
    CHECK(FN(model_attention_backward)(dq, dkv, dkv + C, datty, q, kv, kv + C, AP(a->xatty),
                                       AP(a->xlse), &lay, k->mask, NULL, B, NH, k->Lt, k->Ls, HS,
                                       TC_CAUSAL_NONE, &k->d, site));
    CHECK(FN(tc_linear_backward)(dx, GP(p->xq.w), GP(p->xq.b), dq, x, PP(p->xq.w), Nt, C,
                                     C, set_dx ? TC_WRITE(0) : 0));
    return FN(tc_linear_backward)(dmem, GP(p->xkv.w), GP(p->xkv.b), dkv, mem, PP(p->xkv.w), Ns,
                                  C, 2 * C, TC_ACCUMULATE);
}

/* MLP: proj (N,C) = c_proj(act(c_fc(x))). */
static int FN(ed_mlp_forward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                              real_t *proj, const real_t *x, int64_t N, int grads)
{
    const int64_t C = m->cfg.C, H = m->cfg.H;
    CHECK(FN(gpt_fc_forward)(AP(a->fcha), AP(a->fch), x, PP(p->fc.w), PP(p->fc.b), N, C, H,
                             m->cfg.activation, grads));
    return FN(tc_linear_forward)(proj, AP(a->fcha), PP(p->fcproj.w), PP(p->fcproj.b), N, H, C);
}

static int FN(ed_mlp_backward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                               real_t *dx, const real_t *dproj, const real_t *x, int64_t N, int set_dx)
{
    const int64_t C = m->cfg.C, H = m->cfg.H;
    real_t *dh1 = AP(m->ga.dh1), *dh2 = AP(m->ga.dh2);
    return FN(gpt_mlp_backward)(dx, dh1, dh2, GP(p->fc.w), GP(p->fc.b), GP(p->fcproj.w),
                                GP(p->fcproj.b), dproj, x, AP(a->fch), AP(a->fcha), PP(p->fc.w),
                                PP(p->fcproj.w), N, C, H, m->cfg.activation, set_dx, 0);
}

/* The gated MLP's cache of layer acts a in the arena (model_gated_forward). */
static FN(model_glu_acts) FN(ed_glu_acts)(const tc_encdec *m, const ed_layer_acts *a)
{
    const FN(model_glu_acts) r = {AP(a->fch), AP(a->fcu), AP(a->fcg), AP(a->fcha)};
    return r;
}

/* Layer p's gated MLP weights in the buffer buf (the parameters or the gradients). */
static FN(model_glu_w) FN(ed_glu_w)(const ed_layer_params *p, void *buf)
{
#define AT(off) ((off) < 0 ? NULL : (real_t *)buf + (off))
    const FN(model_glu_w) w = {AT(p->fcg.w), AT(p->fcg.b), AT(p->fc.w), AT(p->fc.b),
                               AT(p->fcproj.w), AT(p->fcproj.b)};
#undef AT
    return w;
}

/* The gated MLP (gated): proj (N,C) = c_proj(act(c_gate(x)) * c_fc(x)). */
static int FN(ed_gated_forward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                                real_t *proj, const real_t *x, int64_t N)
{
    const FN(model_glu_acts) g = FN(ed_glu_acts)(m, a);
    const FN(model_glu_w) w = FN(ed_glu_w)(p, m->params);
    return FN(model_gated_forward)(proj, &g, x, &w, N, m->cfg.C, m->cfg.H, m->cfg.activation);
}

/* Its backward: dx (N,C) += (written with set_dx), the weight gradients +=. */
static int FN(ed_gated_backward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                                 real_t *dx, const real_t *dproj, const real_t *x, int64_t N,
                                 int set_dx)
{
    const FN(model_glu_acts) g = FN(ed_glu_acts)(m, a);
    const FN(model_glu_w) w = FN(ed_glu_w)(p, m->params), dw = FN(ed_glu_w)(p, m->grads);
    return FN(model_gated_backward)(dx, AP(m->ga.dh1), AP(m->ga.dh2), &dw, dproj, x, &g, &w, N,
                                    m->cfg.C, m->cfg.H, m->cfg.activation, set_dx, 0);
}

/* The mixture of experts (tc_moe_forward over the layer's experts): proj (N,C) of x (N,C),
 * routed over the N tokens of the pass (its stack's whole batch: ed_workers); the routing
 * stays in the arena, the load-balancing loss in *aux. */
static int FN(ed_moe_forward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                              real_t *proj, const real_t *x, int64_t N, double *aux)
{
    const tc_encdec_config *c = &m->cfg;
    FN(tc_moe_cache) mc = FN(model_moe_cache)(m->arena, &a->moe, ed_moe_cap(c, N));
    CHECK(FN(tc_moe_forward)(proj, &mc, x, PP(p->router.w), PP(p->fc.w), PP(p->fc.b),
                             PP(p->fcproj.w), PP(p->fcproj.b), N, c->C, c->H, c->moe_experts,
                             c->moe_top_k, c->moe_capacity, c->activation));
    *aux = mc.aux;
    return TC_OK;
}

/* Its backward with the gradient of moe_aux_weight * aux: dx (N,C) += (written with set_dx),
 * the router's and experts' gradients +=. dproj may be dx (accumulating): tc_moe_backward
 * reads all of it before it writes dinp. */
static int FN(ed_moe_backward)(tc_encdec *m, const ed_layer_params *p, const ed_layer_acts *a,
                               real_t *dx, const real_t *dproj, const real_t *x, int64_t N,
                               int set_dx)
{
    const tc_encdec_config *c = &m->cfg;
    const FN(tc_moe_cache) mc = FN(model_moe_cache)(m->arena, &a->moe, ed_moe_cap(c, N));
    return FN(tc_moe_backward)(dx, GP(p->router.w), GP(p->fc.w), GP(p->fc.b), GP(p->fcproj.w),
                               GP(p->fcproj.b), dproj, c->moe_aux_weight, &mc, x,
                               PP(p->router.w), PP(p->fc.w), PP(p->fcproj.w), N, c->C, c->H,
                               c->moe_experts, c->moe_top_k, c->activation,
                               set_dx ? TC_WRITE(0) : 0);
}

/* The feed-forward sub-layer of layer l of a stack (dec) by the config's kind. */
static int FN(ed_ffn_forward)(tc_encdec *m, int dec, int64_t l, real_t *proj, const real_t *x,
                              int64_t N, int grads)
{
    const ed_layer_params *p = dec ? &m->dp[l] : &m->ep[l];
    const ed_layer_acts *a = dec ? &m->da[l] : &m->ea[l];
    if (ed_is_moe(&m->cfg))
        return FN(ed_moe_forward)(m, p, a, proj, x, N, &m->moe_aux[dec ? m->cfg.Le + l : l]);
    if (m->cfg.gated) return FN(ed_gated_forward)(m, p, a, proj, x, N);
    return FN(ed_mlp_forward)(m, p, a, proj, x, N, grads);
}

static int FN(ed_ffn_backward)(tc_encdec *m, int dec, int64_t l, real_t *dx,
                               const real_t *dproj, const real_t *x, int64_t N, int set_dx)
{
    const ed_layer_params *p = dec ? &m->dp[l] : &m->ep[l];
    const ed_layer_acts *a = dec ? &m->da[l] : &m->ea[l];
    if (ed_is_moe(&m->cfg)) return FN(ed_moe_backward)(m, p, a, dx, dproj, x, N, set_dx);
    if (m->cfg.gated) return FN(ed_gated_backward)(m, p, a, dx, dproj, x, N, set_dx);
    return FN(ed_mlp_backward)(m, p, a, dx, dproj, x, N, set_dx);
}

static const ed_lin *FN(ed_norm_of)(const ed_layer_params *p, int slot)
{
    return slot == 0 ? &p->ln1 : slot == 1 ? &p->lnx : &p->ln2;
}

/* The output of layer l of a stack (dec 0: encoder, 1: decoder) and its input. */
static const real_t *FN(ed_layer_out)(const tc_encdec *m, int dec, int64_t l)
{
    const ed_layer_acts *a = dec ? &m->da[l] : &m->ea[l];
    return m->cfg.norm == TC_NORM_POST ? AP(a->ln[2]) : AP(a->r[2]);
}

static const real_t *FN(ed_layer_in)(const tc_encdec *m, int dec, int64_t l)
{
    if (l == 0) return AP(dec ? m->ga.temb : m->ga.semb);
    return FN(ed_layer_out)(m, dec, l - 1);
}

/* The encoder's output (the memory every decoder layer attends to). */
static const real_t *FN(ed_memory)(const tc_encdec *m)
{
    return m->cfg.norm == TC_NORM_POST ? FN(ed_layer_out)(m, 0, m->cfg.Le - 1) : AP(m->ga.slnf);
}

static int FN(ed_layer_forward)(tc_encdec *m, int dec, int64_t l, const ed_call *k)
{
    const tc_encdec_config *c = &m->cfg;
    const ed_layer_params *p = dec ? &m->dp[l] : &m->ep[l];
    const ed_layer_acts *a = dec ? &m->da[l] : &m->ea[l];
    const int64_t C = c->C, N = k->B * (dec ? k->Lt : k->Ls);
    int kinds[3];
    int64_t probs[3], branch[3];
    const int n = ed_layer_plan(c, dec, l, kinds, probs, branch);
    real_t *proj = AP(m->ga.dfin);
    const real_t *cur = FN(ed_layer_in)(m, dec, l);
    for (int i = 0; i < n; i++) {
        const int s = kinds[i];
        const ed_lin *ln = FN(ed_norm_of)(p, s);
        real_t *lnb = AP(a->ln[s]), *r = AP(a->r[s]), *mean = AP(a->mean[s]), *rstd = AP(a->rstd[s]);
        const real_t *fin = cur;
        if (c->norm == TC_NORM_PRE) {
            CHECK(FN(model_norm_forward)(c->norm_type, lnb, mean, rstd, cur, PP(ln->w),
                                         PP(ln->b), N, C, c->eps));
            fin = lnb;
        }
        if (s == 0) CHECK(FN(ed_self_forward)(m, p, a, proj, fin, dec, k, probs[i]));
        else if (s == 1) CHECK(FN(ed_cross_forward)(m, p, a, proj, fin, FN(ed_memory)(m), k,
                                                    probs[i]));
        else CHECK(FN(ed_ffn_forward)(m, dec, l, proj, fin, N, k->grads));
        CHECK(FN(model_dropout)(proj, N * C, &k->d, branch[i]));
        FN(gpt_add)(r, cur, proj, N * C);
        if (c->norm == TC_NORM_POST) {
            CHECK(FN(model_norm_forward)(c->norm_type, lnb, mean, rstd, r, PP(ln->w),
                                         PP(ln->b), N, C, c->eps));
            cur = lnb;
        } else {
            cur = r;
        }
    }
    return TC_OK;
}

/* On entry *dres holds d(layer output), on return d(layer input); *dtmp is a second buffer
 * of the same size (the two are swapped by post-LN sub-layers). Cross-attention adds the
 * memory's gradient to dmem. */
static int FN(ed_layer_backward)(tc_encdec *m, int dec, int64_t l, real_t **dres, real_t **dtmp,
                                 real_t *dmem, const ed_call *k)
{
    const tc_encdec_config *c = &m->cfg;
    const ed_layer_params *p = dec ? &m->dp[l] : &m->ep[l];
    const ed_layer_acts *a = dec ? &m->da[l] : &m->ea[l];
    const int64_t C = c->C, N = k->B * (dec ? k->Lt : k->Ls);
    int kinds[3];
    int64_t probs[3], branch[3];
    const int n = ed_layer_plan(c, dec, l, kinds, probs, branch);
    real_t *ddrop = AP(m->ga.ddrop), *dfin = AP(m->ga.dfin);
    for (int i = n - 1; i >= 0; i--) {
        const int s = kinds[i];
        const ed_lin *ln = FN(ed_norm_of)(p, s);
        const real_t *lnb = AP(a->ln[s]), *mean = AP(a->mean[s]), *rstd = AP(a->rstd[s]);
        /* the sub-layer's input */
        const real_t *in = i == 0 ? FN(ed_layer_in)(m, dec, l)
                             : AP(c->norm == TC_NORM_POST ? a->ln[kinds[i - 1]] : a->r[kinds[i - 1]]);
        const real_t *dp;
        real_t *dx;
        const real_t *fin;
        if (c->norm == TC_NORM_PRE) {
            /* *dres = d r; the branch's input gradient goes to dfin, then through the norm */
            CHECK(FN(model_dropout_back)(&dp, *dres, ddrop, N * C, &k->d, branch[i]));
            dx = dfin; /* written by the branch's backward (set_dx) */
            fin = lnb;
        } else {
            /* *dres = d ln; *dtmp = d r = the residual part of d in, plus the branch's part */
            CHECK(FN(model_norm_backward)(c->norm_type, *dtmp, GP(ln->w), GP(ln->b), *dres,
                                          AP(a->r[s]), PP(ln->w), mean, rstd, N, C,
                                          TC_WRITE(0)));
            CHECK(FN(model_dropout_back)(&dp, *dtmp, ddrop, N * C, &k->d, branch[i]));
            dx = *dtmp;
            fin = in;
        }
        const int set_dx = c->norm == TC_NORM_PRE;
        if (s == 0) CHECK(FN(ed_self_backward)(m, p, a, dx, dp, fin, dec, k, probs[i], set_dx));
        else if (s == 1) CHECK(FN(ed_cross_backward)(m, p, a, dx, dmem, dp, fin,
                                                     FN(ed_memory)(m), k, probs[i], set_dx));
        else CHECK(FN(ed_ffn_backward)(m, dec, l, dx, dp, fin, N, set_dx));
        if (c->norm == TC_NORM_PRE) {
            CHECK(FN(model_norm_backward)(c->norm_type, *dres, GP(ln->w), GP(ln->b), dfin, in,
                                          PP(ln->w), mean, rstd, N, C, TC_ACCUMULATE));
        } else {
            real_t *t = *dres;
            *dres = *dtmp;
            *dtmp = t;
        }
    }
    return TC_OK;
}

/* emb (N,C) = drop(wte[ids] + positions), pos (N,) = n % L. */
static int FN(ed_embed)(tc_encdec *m, real_t *emb, int64_t *pos, const int64_t *ids, int64_t wte,
                        int64_t wpe, int64_t V, int64_t N, int64_t L, const ed_call *k,
                        int64_t site)
{
    const int64_t C = m->cfg.C;
    for (int64_t n = 0; n < N; n++) pos[n] = n % L;
    CHECK(FN(tc_embedding_forward)(emb, ids, PP(wte), N, V, C));
    if (m->cfg.position == TC_POS_LEARNED) FN(gpt_add_rows)(emb, PP(wpe), pos, N, C);
    else FN(gpt_add_rows)(emb, (real_t *)m->tab, pos, N, C);
    return FN(model_dropout)(emb, N * C, &k->d, site);
}

static int FN(ed_embed_backward)(tc_encdec *m, const real_t *demb, const int64_t *pos,
                                 const int64_t *ids, int64_t wte, int64_t wpe, int64_t V,
                                 int64_t N, const ed_call *k, int64_t site)
{
    const real_t *d;
    CHECK(FN(model_dropout_back)(&d, demb, AP(m->ga.ddrop), N * m->cfg.C, &k->d, site));
    CHECK(FN(tc_embedding_backward)(GP(wte), d, ids, N, V, m->cfg.C, TC_ACCUMULATE));
    if (m->cfg.position == TC_POS_LEARNED)
        CHECK(FN(tc_embedding_backward)(GP(wpe), d, pos, N, m->cfg.maxT, m->cfg.C, TC_ACCUMULATE));
    return TC_OK;
}

/* The encoder stack: the memory (FN(ed_memory)) of src. */
static int FN(ed_encode)(tc_encdec *m, const int64_t *src, const ed_call *k)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t Ns = k->B * k->Ls;
    int64_t *spos = (int64_t *)(m->arena + m->ga.spos);
    CHECK(FN(ed_embed)(m, AP(m->ga.semb), spos, src, m->swte, m->swpe, c->Vs, Ns, k->Ls, k, 0));
    for (int64_t l = 0; l < c->Le; l++) CHECK(FN(ed_layer_forward)(m, 0, l, k));
    if (c->norm == TC_NORM_PRE)
        CHECK(FN(model_norm_forward)(c->norm_type, AP(m->ga.slnf), AP(m->ga.slnf_mean),
                                     AP(m->ga.slnf_rstd), FN(ed_layer_out)(m, 0, c->Le - 1),
                                     PP(m->slnf.w), PP(m->slnf.b), Ns, c->C, c->eps));
    return TC_OK;
}

static int FN(ed_forward_all)(tc_encdec *m, const int64_t *src, const int64_t *tgt,
                              const ed_call *k)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t Nt = k->B * k->Lt, C = c->C;
    int64_t *tpos = (int64_t *)(m->arena + m->ga.tpos);
    CHECK(FN(ed_encode)(m, src, k));
    CHECK(FN(ed_embed)(m, AP(m->ga.temb), tpos, tgt, m->twte, m->twpe, c->Vt, Nt, k->Lt, k,
                       1 + 3 * c->Le));
    for (int64_t l = 0; l < c->Ld; l++) CHECK(FN(ed_layer_forward)(m, 1, l, k));
    const real_t *xf = FN(ed_layer_out)(m, 1, c->Ld - 1);
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_forward)(c->norm_type, AP(m->ga.tlnf), AP(m->ga.tlnf_mean),
                                     AP(m->ga.tlnf_rstd), xf, PP(m->tlnf.w), PP(m->tlnf.b), Nt,
                                     C, c->eps));
        xf = AP(m->ga.tlnf);
    }
    return FN(tc_linear_forward)(AP(m->ga.logits), xf, PP(m->head), NULL, Nt, C, c->Vt);
}

/* The backward from dlogits (in the logits buffer) to every parameter gradient. */
static int FN(ed_backward_all)(tc_encdec *m, const int64_t *src, const int64_t *tgt,
                               const ed_call *k)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t Ns = k->B * k->Ls, Nt = k->B * k->Lt, C = c->C;
    real_t *dres = AP(m->ga.dres), *dtmp = AP(m->ga.dtmp), *dmem = AP(m->ga.dmem);
    /* logits -> head -> (ln_f) */
    const real_t *dec_out = FN(ed_layer_out)(m, 1, c->Ld - 1);
    const real_t *xf = c->norm == TC_NORM_POST ? dec_out : AP(m->ga.tlnf);
    CHECK(FN(tc_linear_backward)(dtmp, GP(m->head), NULL, AP(m->ga.logits), xf,
                                     PP(m->head), Nt, C, c->Vt, TC_WRITE(0)));
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(m->tlnf.w), GP(m->tlnf.b), dtmp,
                                      dec_out, PP(m->tlnf.w), AP(m->ga.tlnf_mean),
                                      AP(m->ga.tlnf_rstd), Nt, C, TC_WRITE(0)));
    } else {
        real_t *t = dres;
        dres = dtmp;
        dtmp = t;
    }
    /* the decoder, collecting the memory's gradient */
    memset(dmem, 0, (size_t)(Ns * C) * sizeof(real_t));
    for (int64_t l = c->Ld - 1; l >= 0; l--)
        CHECK(FN(ed_layer_backward)(m, 1, l, &dres, &dtmp, dmem, k));
    CHECK(FN(ed_embed_backward)(m, dres, (const int64_t *)(m->arena + m->ga.tpos), tgt, m->twte,
                                m->twpe, c->Vt, Nt, k, 1 + 3 * c->Le));
    /* the encoder from d memory */
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(m->slnf.w), GP(m->slnf.b), dmem,
                                      FN(ed_layer_out)(m, 0, c->Le - 1), PP(m->slnf.w),
                                      AP(m->ga.slnf_mean), AP(m->ga.slnf_rstd), Ns, C,
                                      TC_WRITE(0)));
    } else {
        memcpy(dres, dmem, (size_t)(Ns * C) * sizeof(real_t));
    }
    for (int64_t l = c->Le - 1; l >= 0; l--)
        CHECK(FN(ed_layer_backward)(m, 0, l, &dres, &dtmp, NULL, k));
    return FN(ed_embed_backward)(m, dres, (const int64_t *)(m->arena + m->ga.spos), src,
                                 m->swte, m->swpe, c->Vs, Ns, k, 0);
}

int FN(tc_encdec_create)(tc_encdec **model, const tc_encdec_config *cfg, real_t *params, real_t *grads)
{
    if (!model || !params || !ed_config_ok(cfg)) return TC_EINVAL;
    *model = NULL;
    tc_encdec *m = ed_new(cfg, (int64_t)sizeof(real_t), params, grads);
    if (!m) return TC_ENOMEM;
    if (cfg->position == TC_POS_SINUSOIDAL) {
        m->tab = malloc((size_t)(cfg->maxT * cfg->C) * sizeof(real_t));
        int st = m->tab ? FN(tc_position_sinusoidal)((real_t *)m->tab, cfg->maxT, cfg->C,
                                                     cfg->pos_base, 0)
                        : TC_ENOMEM;
        if (st != TC_OK) {
            tc_encdec_free(m);
            return st;
        }
    }
    *model = m;
    return TC_OK;
}

/* The arguments every call shares: the model's dtype, B, Ls, Lt, token ids in range. */
static int FN(ed_check_args)(const tc_encdec *m, const int64_t *src, const int64_t *tgt,
                             int64_t B, int64_t Ls, int64_t Lt)
{
    if (!m || m->elem != (int64_t)sizeof(real_t) || B < 1 || Ls < 1 || Lt < 1 ||
        Ls > m->cfg.maxT || Lt > m->cfg.maxT)
        return TC_EINVAL;
    CHECK(model_ids_ok(src, B * Ls, m->cfg.Vs));
    return model_ids_ok(tgt, B * Lt, m->cfg.Vt);
}

/* One call's work over a batch, row range by row range: the forward writing logits, or
 * (tgt_out != NULL) the loss and gradients; see model_common.h for the split. */
typedef struct {
    FN(model_job) run;
    tc_encdec *m;
    const int64_t *src, *tgt_in, *tgt_out;
    const uint8_t *src_mask;
    int64_t Ls, Lt;
} FN(ed_job);

/* Rows [b0, b0 + nb) of the job on worker w (model_split_run's callback). */
static int FN(ed_job_rows)(void *ctx, int w, int64_t b0, int64_t nb)
{
    FN(ed_job) *j = ctx;
    tc_encdec *m = w ? j->m->clones[w - 1] : j->m;
    const int64_t Ls = j->Ls, Lt = j->Lt, Nt = nb * Lt, V = m->cfg.Vt;
    const int64_t *src = j->src + b0 * Ls, *tgt_in = j->tgt_in + b0 * Lt;
    const ed_call k = {nb, Ls, Lt, j->src_mask ? j->src_mask + b0 * Ls : NULL,
                       {j->run.drop, m->cfg.dropout, j->run.seed, b0, nb}, j->tgt_out != NULL};
    CHECK(ed_reserve(m, nb * Ls, Nt));
    CHECK(FN(ed_forward_all)(m, src, tgt_in, &k));
    if (!j->tgt_out) {
        memcpy(j->run.logits + b0 * Lt * V, AP(m->ga.logits),
               (size_t)(Nt * V) * sizeof(real_t));
        return TC_OK;
    }
    const int64_t *tgt_out = j->tgt_out + b0 * Lt;
    j->run.part[w] = 0;
    CHECK(FN(tc_loss_cross_entropy_forward)(AP(m->ga.losses), AP(m->ga.loss_lse),
                                            &j->run.part[w], AP(m->ga.logits), tgt_out, Nt, V,
                                            j->run.ignore_index, 0));
    memset(m->grads, 0, (size_t)m->num_params * sizeof(real_t));
    if (j->run.inv_count == 0 && !ed_aux_on(&m->cfg)) return TC_OK;
    if (j->run.inv_count == 0) /* no counted target: the load-balancing term's gradient */
        memset(AP(m->ga.logits), 0, (size_t)(Nt * V) * sizeof(real_t));
    else
        FN(gpt_ce_backward_inplace)(AP(m->ga.logits), AP(m->ga.loss_lse), tgt_out, Nt, V,
                                    j->run.ignore_index, (real_t)j->run.inv_count);
    return FN(ed_backward_all)(m, src, tgt_in, &k);
}

/* The job over B rows on W workers (model_common.h; W == 1: one pass) */
static int FN(ed_run)(FN(ed_job) *j, int64_t B, int W)
{
    if (W > 1) CHECK(ed_clones_ready(j->m, W));
    return model_split_run(W, B, FN(ed_job_rows), j, ed_call_flops(j->m, B, j->Ls + j->Lt));
}

// logits (B,Lt,Vt), src (B,Ls), src_mask (B,Ls) or NULL, tgt_in (B,Lt)
int FN(tc_encdec_forward)(tc_encdec *m, real_t *logits, const int64_t *src, const uint8_t *src_mask,
                          const int64_t *tgt_in, int64_t B, int64_t Ls, int64_t Lt,
                          uint64_t seed, int training)
{
    if (!logits) return TC_EINVAL;
    CHECK(FN(ed_check_args)(m, src, tgt_in, B, Ls, Lt));
    const int drop = training && m->cfg.dropout > 0;
    FN(ed_job) j = {{logits, 0, 0.0, seed, drop, {0}}, m, src, tgt_in, NULL, src_mask, Ls, Lt};
    return FN(ed_run)(&j, B, ed_workers(m, B));
}

// loss (scalar), src (B,Ls), src_mask (B,Ls) or NULL, tgt_in (B,Lt), tgt_out (B,Lt);
// grads (num_params,) overwritten
int FN(tc_encdec_loss_and_grads)(tc_encdec *m, double *loss, const int64_t *src,
                                 const uint8_t *src_mask, const int64_t *tgt_in,
                                 const int64_t *tgt_out, int64_t B, int64_t Ls, int64_t Lt,
                                 int64_t ignore_index, uint64_t seed, int training)
{
    if (!loss || !tgt_out || !m || !m->grads) return TC_EINVAL;
    CHECK(FN(ed_check_args)(m, src, tgt_in, B, Ls, Lt));
    int64_t count;
    CHECK(model_count_targets(tgt_out, B * Lt, m->cfg.Vt, ignore_index, &count));
    const int drop = training && m->cfg.dropout > 0;
    FN(ed_job) j = {{NULL, ignore_index, count ? 1.0 / (double)count : 0.0, seed, drop, {0}},
                    m, src, tgt_in, tgt_out, src_mask, Ls, Lt};
    const int W = ed_workers(m, B);
    CHECK(FN(ed_run)(&j, B, W));
    FN(model_loss_finish)(loss, j.run.part, W, count, (real_t *)m->grads, m->clone_grads,
                          m->num_params);
    if (ed_is_moe(&m->cfg)) { /* + moe_aux_weight * every layer's load-balancing loss */
        double aux = 0;
        for (int64_t l = 0; l < m->cfg.Le + m->cfg.Ld; l++) aux += m->moe_aux[l];
        *loss += m->cfg.moe_aux_weight * aux;
    }
    return TC_OK;
}

// memory (B,Ls,C) = the encoder's output for src (B,Ls), src_mask (B,Ls) or NULL
int FN(tc_encdec_encode)(tc_encdec *m, real_t *memory, const int64_t *src, const uint8_t *src_mask,
                         int64_t B, int64_t Ls)
{
    if (!m || m->elem != (int64_t)sizeof(real_t) || !memory || B < 1 || Ls < 1 ||
        Ls > m->cfg.maxT)
        return TC_EINVAL;
    CHECK(model_ids_ok(src, B * Ls, m->cfg.Vs));
    CHECK(ed_reserve(m, B * Ls, 0));
    const ed_call k = {B, Ls, 0, src_mask, {0, 0.0, 0, 0, B}, 0};
    CHECK(FN(ed_encode)(m, src, &k));
    memcpy(memory, FN(ed_memory)(m), (size_t)(B * Ls * m->cfg.C) * sizeof(real_t));
    return TC_OK;
}

/* ---- read-out on request (tc_encdec_inspect): after the forward over rows [b0, b0 + nb),
 * every attention's probabilities, recomputed from the q, k and row logsumexp the arena
 * keeps for the backward (the masks and causal mode of the forward), and the block inputs /
 * outputs copied out. Nothing of it runs in training. */

typedef struct {
    FN(ed_job) job;             /* first: ed_job_rows runs the forward and copies logits */
    const tc_encdec_readout *out;
    int64_t B;
} FN(ed_inspect_job);

/* The probabilities of one attention of layer l into P (nb,NH,Lq,Lk): q and k at lay's
 * strides, the key mask, block-sparse pattern (or NULL) and causal mode of the forward
 * (model_attention_forward's scale). */
static int FN(ed_probs)(real_t *P, const real_t *q, const real_t *k, const real_t *lse,
                        const tc_attention_layout *lay, const uint8_t *mask,
                        const tc_attention_sparse *sp, int64_t nb, int64_t NH, int64_t Lq,
                        int64_t Lk, int64_t HS, int causal)
{
    tc_attention_masks mk;
    memset(&mk, 0, sizeof mk);
    mk.key_padding = mask;
    mk.sparse = sp;
    return FN(tc_attention_probs_strided)(P, q, k, lse, &mk, lay, nb, NH, Lq, Lk, HS,
                                          (real_t)(1.0 / sqrt((double)HS)), causal);
}

// the read-out of rows [b0, b0+nb) from m's arena (shapes: tc_encdec_readout)
static int FN(ed_readout_rows)(tc_encdec *m, const tc_encdec_readout *o, int64_t B, int64_t b0,
                               int64_t nb, int64_t Ls, int64_t Lt, const uint8_t *mask)
{
    const tc_encdec_config *c = &m->cfg;
    const int64_t C = c->C, NH = c->NH, HS = C / NH;
    const tc_attention_layout lx = model_cross_layout(Lt, Ls, C, HS);
    tc_attention_sparse spat;
    const tc_attention_sparse *sp = ed_sparse(c, &spat); /* the self-attentions' pattern */
    for (int64_t l = 0; o->enc_attn && l < c->Le; l++) {
        const real_t *q;
        const tc_attention_layout ls = FN(ed_self_layout)(m, &m->ea[l], Ls, &q);
        CHECK(FN(ed_probs)((real_t *)o->enc_attn + (l * B + b0) * NH * Ls * Ls, q, q + C,
                           AP(m->ea[l].lse), &ls, mask, sp, nb, NH, Ls, Ls, HS,
                           TC_CAUSAL_NONE));
    }
    for (int64_t l = 0; o->self_attn && l < c->Ld; l++) {
        const real_t *q;
        const tc_attention_layout lt = FN(ed_self_layout)(m, &m->da[l], Lt, &q);
        CHECK(FN(ed_probs)((real_t *)o->self_attn + (l * B + b0) * NH * Lt * Lt, q, q + C,
                           AP(m->da[l].lse), &lt, NULL, sp, nb, NH, Lt, Lt, HS,
                           TC_CAUSAL_TOP_LEFT));
    }
    for (int64_t l = 0; o->cross_attn && l < c->Ld; l++)
        CHECK(FN(ed_probs)((real_t *)o->cross_attn + (l * B + b0) * NH * Lt * Ls,
                           AP(m->da[l].xqh), AP(m->da[l].xkvh), AP(m->da[l].xlse), &lx, mask,
                           NULL, nb, NH, Lt, Ls, HS, TC_CAUSAL_NONE));
    for (int64_t l = 0; o->enc_hidden && l <= c->Le; l++)
        memcpy((real_t *)o->enc_hidden + (l * B + b0) * Ls * C, FN(ed_layer_in)(m, 0, l),
               (size_t)(nb * Ls * C) * sizeof(real_t));
    for (int64_t l = 0; o->dec_hidden && l <= c->Ld; l++)
        memcpy((real_t *)o->dec_hidden + (l * B + b0) * Lt * C, FN(ed_layer_in)(m, 1, l),
               (size_t)(nb * Lt * C) * sizeof(real_t));
    return TC_OK;
}

/* Rows [b0, b0 + nb) of an inspect job on worker w (model_split_run's callback). */
static int FN(ed_inspect_rows)(void *ctx, int w, int64_t b0, int64_t nb)
{
    FN(ed_inspect_job) *j = ctx;
    CHECK(FN(ed_job_rows)(&j->job, w, b0, nb));
    tc_encdec *m = w ? j->job.m->clones[w - 1] : j->job.m;
    const int64_t Ls = j->job.Ls;
    return FN(ed_readout_rows)(m, j->out, j->B, b0, nb, Ls, j->job.Lt,
                               j->job.src_mask ? j->job.src_mask + b0 * Ls : NULL);
}

// logits (B,Lt,Vt), the read-out out (tc_encdec_readout), src (B,Ls), src_mask (B,Ls) or
// NULL, tgt_in (B,Lt)
int FN(tc_encdec_inspect)(tc_encdec *m, real_t *logits, const tc_encdec_readout *out,
                          const int64_t *src, const uint8_t *src_mask, const int64_t *tgt_in,
                          int64_t B, int64_t Ls, int64_t Lt, uint64_t seed, int training)
{
    if (!logits || !out) return TC_EINVAL;
    CHECK(FN(ed_check_args)(m, src, tgt_in, B, Ls, Lt));
    const int drop = training && m->cfg.dropout > 0;
    FN(ed_inspect_job) j = {{{logits, 0, 0.0, seed, drop, {0}}, m, src, tgt_in, NULL, src_mask,
                             Ls, Lt}, out, B};
    const int W = ed_workers(m, B);
    if (W > 1) CHECK(ed_clones_ready(m, W));
    return model_split_run(W, B, FN(ed_inspect_rows), &j, ed_call_flops(m, B, Ls + Lt));
}

#undef PP
#undef GP
#undef AP
