/* gpt_train_impl.h: the GPT forward, loss and backward over the arena (see gpt_train.c), written
 * once for real_t. Every matrix product, normalisation, activation, attention, RoPE, dropout and
 * loss step is the library kernel the module path calls; the glue here is only residual
 * additions, the position lookup and the cross-entropy gradient written over the logits in
 * place: the attention kernel (and RoPE) read and write the token-major (B,T,3C) and
 * (B,T,C) buffers in place at their strides, with no copies to a head-major layout. */

#define PP(off) ((off) < 0 ? NULL : (real_t *)m->params + (off))  /* parameter pointer */
#define GP(off) ((off) < 0 ? NULL : (real_t *)m->grads + (off))   /* gradient pointer */
#define AP(off) ((real_t *)(m->arena + (off)))                     /* activation pointer */

#include "model_common_impl.h"

/* The position tables (computed once per model). */
static int FN(gpt_tables)(tc_gpt *m)
{
    const tc_gpt_config *c = &m->cfg;
    if ((c->position != TC_POS_SINUSOIDAL && c->position != TC_POS_ROPE) || m->tab1)
        return TC_OK;
    const int64_t cols = c->position == TC_POS_SINUSOIDAL ? c->C : c->C / c->NH / 2;
    const size_t bytes = (size_t)(c->maxT * cols) * sizeof(real_t) + 1;
    m->tab1 = malloc(bytes);
    if (c->position == TC_POS_ROPE) m->tab2 = malloc(bytes);
    if (!m->tab1 || (c->position == TC_POS_ROPE && !m->tab2)) {
        free(m->tab1);
        free(m->tab2);
        m->tab1 = m->tab2 = NULL;
        return TC_ENOMEM;
    }
    if (c->position == TC_POS_SINUSOIDAL)
        return FN(tc_position_sinusoidal)((real_t *)m->tab1, c->maxT, c->C, c->pos_base, 0);
    return FN(tc_rope_table)((real_t *)m->tab1, (real_t *)m->tab2, c->maxT, c->C / c->NH, c->pos_base, 0);
}

int FN(tc_gpt_create)(tc_gpt **model, const tc_gpt_config *cfg, real_t *params, real_t *grads)
{
    if (!model || !params || !grads || !gpt_config_ok(cfg)) return TC_EINVAL;
    *model = NULL;
    tc_gpt *m = gpt_new(cfg, (int64_t)sizeof(real_t), params, grads);
    if (!m) return TC_ENOMEM;
    int st = FN(gpt_tables)(m);
    if (st != TC_OK) {
        tc_gpt_free(m);
        return st;
    }
    *model = m;
    return TC_OK;
}

/* q (NH heads at qkv) and k (NKV heads at qkv + C) of a token-major (B,L,row) buffer (row
 * C + 2KC for the c_attn output, C + KC for qk_norm's q | k) rotated by RoPE in place: by +angle
 * (the forward) or -angle (the backward, on dq and dk). */
static int FN(gpt_rope_qk)(const tc_gpt *m, real_t *qkv, int64_t row, int64_t B, int64_t L,
                           int inverse)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t C = c->C, NH = c->NH, HS = C / NH;
    const int64_t heads[2] = {NH, gpt_kv_heads(c)};
    for (int s = 0; s < 2; s++)
        CHECK(FN(tc_rope_inplace_strided)(qkv + s * C, (real_t *)m->tab1, (real_t *)m->tab2, B, L,
                                          heads[s], HS, L * row, row, HS, c->rope_interleaved,
                                          inverse));
    return TC_OK;
}

/* The attention layout of layer l's q, k, v (and gradients): q and k read from qkn
 * (B,L,C + KC) with qk_norm, else from the c_attn output (B,L,C + 2KC) (model_block_layout);
 * *q the buffer q starts at (k at *q + C). */
static tc_attention_layout FN(gpt_qk_layout)(const tc_gpt *m, const gpt_layer_acts *a,
                                             int64_t L, const real_t **q)
{
    const int64_t C = m->cfg.C, HS = C / m->cfg.NH;
    *q = AP(m->cfg.qk_norm ? a->qkn : a->qkvh);
    return model_block_layout(L, C, gpt_kv_width(&m->cfg), HS, m->cfg.qk_norm);
}

/* QK-norm (qk_norm) of layer l's c_attn output qkv (N,C + 2KC) into its qkn, qkr
 * (model_qk_norm_forward). */
static int FN(gpt_qk_norm_forward)(tc_gpt *m, int64_t l, const real_t *qkv, int64_t N)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    return FN(model_qk_norm_forward)(AP(m->la[l].qkn), AP(m->la[l].qkr), qkv, PP(p->qnw),
                                     PP(p->knw), N, c->NH, gpt_kv_heads(c), c->C / c->NH,
                                     c->eps);
}

/* Its backward in place on dqkv (N,C + 2KC) (model_qk_norm_backward). */
static int FN(gpt_qk_norm_backward)(tc_gpt *m, int64_t l, real_t *dqkv, int64_t N)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    return FN(model_qk_norm_backward)(dqkv, GP(p->qnw), GP(p->knw), AP(m->la[l].qkvh),
                                      PP(p->qnw), PP(p->knw), AP(m->la[l].qkr), N, c->NH,
                                      gpt_kv_heads(c), c->C / c->NH);
}

/* One attention sub-layer forward: proj (N,C) = c_proj(attention(c_attn(x))), with the tiled
 * attention kernel (dropout on its probabilities: site 1 + 3l). The c_attn output (B,L,3C)
 * is kept in qkvh (with RoPE, q and k rotated there in place); the kernel reads q, k, v from
 * it and writes its output into atty (B,L,C), the c_proj input, all at their strides. */
static int FN(gpt_attention_forward)(tc_gpt *m, int64_t l, real_t *proj, const real_t *x, int64_t B,
                                     int64_t L, const model_drop *d)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t N = B * L, C = c->C, NH = c->NH, HS = C / NH, KC = gpt_kv_width(c);
    const gpt_layer_params *p = &m->lp[l];
    const gpt_layer_acts *a = &m->la[l];
    real_t *qkv = AP(a->qkvh);
    const real_t *q;
    const tc_attention_layout lay = FN(gpt_qk_layout)(m, a, L, &q);
    CHECK(FN(tc_linear_forward)(qkv, x, PP(p->attw), PP(p->attb), N, C, C + 2 * KC));
    if (c->qk_norm) CHECK(FN(gpt_qk_norm_forward)(m, l, qkv, N));
    if (c->position == TC_POS_ROPE)
        CHECK(FN(gpt_rope_qk)(m, (real_t *)q, c->qk_norm ? C + KC : C + 2 * KC, B, L, 0));
    tc_attention_sparse sp;
    CHECK(FN(model_attention_forward)(AP(a->atty), AP(a->lse), q, q + C, qkv + C + KC, &lay,
                                      NULL, gpt_sparse(c, &sp), B, NH, L, L, HS,
                                      TC_CAUSAL_TOP_LEFT, d, 1 + 3 * l));
    return FN(tc_linear_forward)(proj, AP(a->atty), PP(p->projw), PP(p->projb), N, C, C);
}

/* Its backward: given dproj (N,C), accumulate the weight gradients (write them with set_w)
 * and dx (N,C) += dx (or dx = dx with set_dx); written values have the bits adding to zeros
 * gives. The attention kernel reads the output gradient from datty (B,L,C) and WRITES dq,
 * dk, dv into dqkv (B,L,3C) (no zeroing), where RoPE rotates dq and dk back in place. */
static int FN(gpt_attention_backward)(tc_gpt *m, int64_t l, real_t *dx, const real_t *dproj,
                                      const real_t *x, int64_t B, int64_t L, const model_drop *d,
                                      int set_dx, int set_w)
{
    const int wset = set_w ? TC_WRITE(1) | TC_WRITE(2) : 0;
    const tc_gpt_config *c = &m->cfg;
    tc_attention_sparse sp;
    const int64_t N = B * L, C = c->C, NH = c->NH, HS = C / NH, KC = gpt_kv_width(c);
    const gpt_layer_params *p = &m->lp[l];
    const gpt_layer_acts *a = &m->la[l];
    real_t *datty = AP(m->ga.dc), *dqkv = AP(m->ga.qkv);
    const real_t *qkv = AP(a->qkvh), *q;
    const tc_attention_layout lay = FN(gpt_qk_layout)(m, a, L, &q);
    CHECK(FN(tc_linear_backward)(datty, GP(p->projw), GP(p->projb), dproj, AP(a->atty),
                                     PP(p->projw), N, C, C, TC_WRITE(0) | wset));
    CHECK(FN(model_attention_backward)(dqkv, dqkv + C, dqkv + C + KC, datty, q, q + C,
                                       qkv + C + KC, AP(a->atty), AP(a->lse), &lay, NULL,
                                       gpt_sparse(c, &sp), B, NH, L, L, HS, TC_CAUSAL_TOP_LEFT,
                                       d, 1 + 3 * l));
    if (c->position == TC_POS_ROPE) CHECK(FN(gpt_rope_qk)(m, dqkv, C + 2 * KC, B, L, 1));
    if (c->qk_norm) CHECK(FN(gpt_qk_norm_backward)(m, l, dqkv, N));
    return FN(tc_linear_backward)(dx, GP(p->attw), GP(p->attb), dqkv, x, PP(p->attw), N, C,
                                      C + 2 * KC, (set_dx ? TC_WRITE(0) : 0) | wset);
}

/* ---- the feed-forward sub-layer, one function per FFN kind (tc_ffn), called from the
 * block loops of gpt_forward_all / gpt_backward_all */

/* The dense MLP: out (N,C) = c_proj(act(c_fc(in))), in (N,C); grads: cache what the backward
 * needs (fch, fcha). */
static int FN(gpt_mlp_forward)(tc_gpt *m, int64_t l, real_t *out, const real_t *in, int64_t N,
                               int grads)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    const gpt_layer_acts *a = &m->la[l];
    CHECK(FN(gpt_fc_forward)(AP(a->fcha), AP(a->fch), in, PP(p->fcw), PP(p->fcb), N, c->C,
                             c->H, c->activation, grads));
    return FN(tc_linear_forward)(out, AP(a->fcha), PP(p->fcprojw), PP(p->fcprojb), N, c->H,
                                 c->C);
}

/* Its backward from dout (N,C): dx (N,C) += (written with set_dx), the weight gradients +=
 * (written with set_w); dh1, dh2 (N,H) scratch. dout may be dx (accumulating). */
static int FN(gpt_mlp_backward_layer)(tc_gpt *m, int64_t l, real_t *dx, const real_t *dout,
                                      const real_t *in, int64_t N, int set_dx, int set_w)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    const gpt_layer_acts *a = &m->la[l];
    return FN(gpt_mlp_backward)(dx, AP(m->ga.dh1), AP(m->ga.dh2), GP(p->fcw), GP(p->fcb),
                                GP(p->fcprojw), GP(p->fcprojb), dout, in, AP(a->fch),
                                AP(a->fcha), PP(p->fcw), PP(p->fcprojw), N, c->C, c->H,
                                c->activation, set_dx, set_w);
}

/* Layer l's tc_moe_cache over the arena, for N tokens. */
static FN(tc_moe_cache) FN(gpt_moe_cache)(const tc_gpt *m, int64_t l, int64_t N)
{
    FN(tc_moe_cache) mc = FN(model_moe_cache)(m->arena, &m->la[l].moe, gpt_moe_cap(&m->cfg, N));
    mc.aux = m->moe_aux[l];
    return mc;
}

/* The mixture of experts (tc_moe_forward over the layer's experts): out (N,C) of in (N,C),
 * routed over the N tokens of the pass (the whole batch: gpt_workers); the routing stays in
 * the arena and the load-balancing loss in m->moe_aux[l]. */
static int FN(gpt_moe_forward)(tc_gpt *m, int64_t l, real_t *out, const real_t *in, int64_t N)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    FN(tc_moe_cache) mc = FN(gpt_moe_cache)(m, l, N);
    CHECK(FN(tc_moe_forward)(out, &mc, in, PP(p->router), PP(p->fcw), PP(p->fcb),
                             PP(p->fcprojw), PP(p->fcprojb), N, c->C, c->H, c->moe_experts,
                             c->moe_top_k, c->moe_capacity, c->activation));
    m->moe_aux[l] = mc.aux;
    return TC_OK;
}

/* Its backward (tc_moe_backward), with the gradient of moe_aux_weight * aux (the loss adds
 * it): dx (N,C) += (written with set_dx), the router's and experts' gradients += (written
 * with set_w). dout may be dx (accumulating): tc_moe_backward reads all of dout before it
 * writes dinp. */
static int FN(gpt_moe_backward)(tc_gpt *m, int64_t l, real_t *dx, const real_t *dout,
                                const real_t *in, int64_t N, int set_dx, int set_w)
{
    const tc_gpt_config *c = &m->cfg;
    const gpt_layer_params *p = &m->lp[l];
    const FN(tc_moe_cache) mc = FN(gpt_moe_cache)(m, l, N);
    const int write = (set_dx ? TC_WRITE(0) : 0) |
                      (set_w ? TC_WRITE(1) | TC_WRITE(2) | TC_WRITE(3) | TC_WRITE(4) |
                                   TC_WRITE(5) : 0);
    return FN(tc_moe_backward)(dx, GP(p->router), GP(p->fcw), GP(p->fcb), GP(p->fcprojw),
                               GP(p->fcprojb), dout, c->moe_aux_weight, &mc, in,
                               PP(p->router), PP(p->fcw), PP(p->fcprojw), N, c->C, c->H,
                               c->moe_experts, c->moe_top_k, c->activation, write);
}

/* The gated MLP (cfg.gated) of layer l (model_gated_forward): out (N,C) of in (N,C), its
 * cache in the arena's fch, fcu, fcg, fcha. */
static FN(model_glu_acts) FN(gpt_glu_acts)(const tc_gpt *m, int64_t l)
{
    const gpt_layer_acts *a = &m->la[l];
    const FN(model_glu_acts) r = {AP(a->fch), AP(a->fcu), AP(a->fcg), AP(a->fcha)};
    return r;
}

/* Layer l's gated MLP weights in the buffer buf (the parameters or the gradients). */
static FN(model_glu_w) FN(gpt_glu_w)(const tc_gpt *m, int64_t l, void *buf)
{
    const gpt_layer_params *p = &m->lp[l];
#define AT(off) ((off) < 0 ? NULL : (real_t *)buf + (off))
    const FN(model_glu_w) w = {AT(p->fcgw), AT(p->fcgb), AT(p->fcw), AT(p->fcb), AT(p->fcprojw),
                               AT(p->fcprojb)};
#undef AT
    return w;
}

static int FN(gpt_gated_forward)(tc_gpt *m, int64_t l, real_t *out, const real_t *in, int64_t N)
{
    const FN(model_glu_acts) a = FN(gpt_glu_acts)(m, l);
    const FN(model_glu_w) w = FN(gpt_glu_w)(m, l, m->params);
    return FN(model_gated_forward)(out, &a, in, &w, N, m->cfg.C, m->cfg.H, m->cfg.activation);
}

/* Its backward (model_gated_backward) from dout (N,C) into dx (N,C) (+=, written with
 * set_dx) and the gradients (+=, written with set_w); in (N,C) the sub-layer's input. */
static int FN(gpt_gated_backward)(tc_gpt *m, int64_t l, real_t *dx, const real_t *dout,
                                  const real_t *in, int64_t N, int set_dx, int set_w)
{
    const FN(model_glu_acts) a = FN(gpt_glu_acts)(m, l);
    const FN(model_glu_w) w = FN(gpt_glu_w)(m, l, m->params), g = FN(gpt_glu_w)(m, l, m->grads);
    return FN(model_gated_backward)(dx, AP(m->ga.dh1), AP(m->ga.dh2), &g, dout, in, &a, &w, N,
                                    m->cfg.C, m->cfg.H, m->cfg.activation, set_dx, set_w);
}

/* The feed-forward sub-layer of layer l by the config's kind: out (N,C) of in (N,C). */
static int FN(gpt_ffn_forward)(tc_gpt *m, int64_t l, real_t *out, const real_t *in, int64_t N,
                               int grads)
{
    if (gpt_is_moe(&m->cfg)) return FN(gpt_moe_forward)(m, l, out, in, N);
    if (m->cfg.gated) return FN(gpt_gated_forward)(m, l, out, in, N);
    return FN(gpt_mlp_forward)(m, l, out, in, N, grads);
}

/* Its backward: dx (N,C) += (set_dx: written) from dout (N,C); weight gradients += (set_w:
 * written). */
static int FN(gpt_ffn_backward)(tc_gpt *m, int64_t l, real_t *dx, const real_t *dout,
                                const real_t *in, int64_t N, int set_dx, int set_w)
{
    if (gpt_is_moe(&m->cfg)) return FN(gpt_moe_backward)(m, l, dx, dout, in, N, set_dx, set_w);
    if (m->cfg.gated) return FN(gpt_gated_backward)(m, l, dx, dout, in, N, set_dx, set_w);
    return FN(gpt_mlp_backward_layer)(m, l, dx, dout, in, N, set_dx, set_w);
}

/* The input of layer l and the output of layer l. */
static const real_t *FN(gpt_layer_in)(const tc_gpt *m, int64_t l)
{
    if (l == 0) return AP(m->ga.enc);
    return m->cfg.norm == TC_NORM_POST ? AP(m->la[l - 1].ln2) : AP(m->la[l - 1].res3);
}

/* The forward over B sequences into the arena; grads: a backward follows (the MLPs then cache
 * what it needs) */
static int FN(gpt_forward_all)(tc_gpt *m, const int64_t *idx, int64_t B, int64_t L,
                               uint64_t seed, int drop, int grads)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t N = B * L, C = c->C;
    const model_drop d = {drop, c->dropout, seed, m->row0, B};
    int64_t *pos = (int64_t *)(m->arena + m->ga.pos);
    for (int64_t n = 0; n < N; n++) pos[n] = n % L;
    real_t *enc = AP(m->ga.enc);
    CHECK(FN(tc_embedding_forward)(enc, idx, PP(m->wte), N, c->V, C));
    if (c->position == TC_POS_LEARNED) FN(gpt_add_rows)(enc, PP(m->wpe), pos, N, C);
    if (c->position == TC_POS_SINUSOIDAL) FN(gpt_add_rows)(enc, (real_t *)m->tab1, pos, N, C);
    CHECK(FN(model_dropout)(enc, N * C, &d, 0));
    real_t *proj = AP(m->ga.dc);
    m->moe_tokens = 0;
    for (int64_t l = 0; l < c->L; l++) {
        const gpt_layer_params *p = &m->lp[l];
        const gpt_layer_acts *a = &m->la[l];
        const real_t *x = FN(gpt_layer_in)(m, l);
        real_t *ln1 = AP(a->ln1), *res2 = AP(a->res2), *ln2 = AP(a->ln2), *res3 = AP(a->res3);
        const real_t *att_in = x;
        if (c->norm == TC_NORM_PRE) {
            CHECK(FN(model_norm_forward)(c->norm_type, ln1, AP(a->ln1_mean), AP(a->ln1_rstd), x,
                                           PP(p->ln1w), PP(p->ln1b), N, C, c->eps));
            att_in = ln1;
        }
        CHECK(FN(gpt_attention_forward)(m, l, proj, att_in, B, L, &d));
        CHECK(FN(model_dropout)(proj, N * C, &d, 2 + 3 * l));
        FN(gpt_add)(res2, x, proj, N * C);
        /* pre-LN: the MLP reads ln_2(res2) and adds to res2; post-LN: reads and adds to
         * x1 = ln_1(res2) (kept in the ln1 buffer) */
        real_t *mlp_in = c->norm == TC_NORM_POST ? ln1 : ln2;
        if (c->norm == TC_NORM_PRE)
            CHECK(FN(model_norm_forward)(c->norm_type, ln2, AP(a->ln2_mean), AP(a->ln2_rstd), res2,
                                           PP(p->ln2w), PP(p->ln2b), N, C, c->eps));
        else
            CHECK(FN(model_norm_forward)(c->norm_type, ln1, AP(a->ln1_mean), AP(a->ln1_rstd), res2,
                                           PP(p->ln1w), PP(p->ln1b), N, C, c->eps));
        CHECK(FN(gpt_ffn_forward)(m, l, proj, mlp_in, N, grads));
        CHECK(FN(model_dropout)(proj, N * C, &d, 3 + 3 * l));
        FN(gpt_add)(res3, c->norm == TC_NORM_POST ? ln1 : res2, proj, N * C);
        if (c->norm == TC_NORM_POST)
            CHECK(FN(model_norm_forward)(c->norm_type, ln2, AP(a->ln2_mean), AP(a->ln2_rstd), res3,
                                           PP(p->ln2w), PP(p->ln2b), N, C, c->eps));
    }
    if (gpt_is_moe(c)) m->moe_tokens = N; /* every layer's routing is in the arena */
    const real_t *xf = FN(gpt_layer_in)(m, c->L);
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_forward)(c->norm_type, AP(m->ga.lnf), AP(m->ga.lnf_mean), AP(m->ga.lnf_rstd),
                                       xf, PP(m->lnfw), PP(m->lnfb), N, C, c->eps));
        xf = AP(m->ga.lnf);
    }
    CHECK(FN(tc_linear_forward)(AP(m->ga.logits), xf, PP(m->head), NULL, N, C, c->V));
    if (c->logit_softcap > 0)
        CHECK(FN(tc_softcap_forward)(AP(m->ga.logits), AP(m->ga.logits), N * c->V, c->logit_softcap));
    return TC_OK;
}

/* The backward into m->grads. With set_w the gradients of the linear layers (and the head)
 * are written, not accumulated: the caller zeroed only the others (gpt_zero_added_grads). */
static int FN(gpt_backward_all)(tc_gpt *m, const int64_t *idx, int64_t B, int64_t L,
                                uint64_t seed, int drop, int set_w)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t N = B * L, C = c->C;
    const model_drop d = {drop, c->dropout, seed, m->row0, B};
    real_t *dres = AP(m->ga.dres), *dc = AP(m->ga.dc), *ddrop = AP(m->ga.ddrop);
    const size_t nc_bytes = (size_t)(N * C) * sizeof(real_t);
    /* logits -> head -> (ln_f) */
    const real_t *xf = c->norm == TC_NORM_POST ? FN(gpt_layer_in)(m, c->L) : AP(m->ga.lnf);
    CHECK(FN(tc_linear_backward)(dc, GP(m->head), NULL, AP(m->ga.logits), xf, PP(m->head),
                                     N, C, c->V,
                                     TC_WRITE(0) | (set_w ? TC_WRITE(1) : 0)));
    if (c->norm == TC_NORM_PRE) {
        CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(m->lnfw), GP(m->lnfb), dc,
                                            FN(gpt_layer_in)(m, c->L), PP(m->lnfw),
                                            AP(m->ga.lnf_mean), AP(m->ga.lnf_rstd), N, C, TC_WRITE(0)));
    } else {
        memcpy(dres, dc, nc_bytes);
    }
    for (int64_t l = c->L - 1; l >= 0; l--) {
        const gpt_layer_params *p = &m->lp[l];
        const gpt_layer_acts *a = &m->la[l];
        const real_t *x = FN(gpt_layer_in)(m, l);
        const real_t *dp;
        if (c->norm == TC_NORM_PRE) {
            /* dres: d res3 (the layer output) */
            CHECK(FN(model_dropout_back)(&dp, dres, ddrop, N * C, &d, 3 + 3 * l));
            CHECK(FN(gpt_ffn_backward)(m, l, dc, dp, AP(a->ln2), N, 1, set_w));
            CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(p->ln2w), GP(p->ln2b), dc, AP(a->res2),
                                            PP(p->ln2w), AP(a->ln2_mean), AP(a->ln2_rstd), N,
                                            C, TC_ACCUMULATE));
            /* dres: d res2 */
            CHECK(FN(model_dropout_back)(&dp, dres, ddrop, N * C, &d, 2 + 3 * l));
            real_t *dln1 = AP(m->ga.dh1); /* (N,C) fits in the (N,H) scratch, free by now */
            CHECK(FN(gpt_attention_backward)(m, l, dln1, dp, AP(a->ln1), B, L, &d, 1,
                                             set_w));
            CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(p->ln1w), GP(p->ln1b), dln1, x,
                                            PP(p->ln1w), AP(a->ln1_mean), AP(a->ln1_rstd), N,
                                            C, TC_ACCUMULATE));
        } else {
            /* dres: d ln2 (the layer output) -> dc: d res3 */
            CHECK(FN(model_norm_backward)(c->norm_type, dc, GP(p->ln2w), GP(p->ln2b), dres, AP(a->res3),
                                                PP(p->ln2w), AP(a->ln2_mean), AP(a->ln2_rstd),
                                                N, C, TC_WRITE(0)));
            CHECK(FN(model_dropout_back)(&dp, dc, ddrop, N * C, &d, 3 + 3 * l));
            /* dc += through the MLP: d x1 */
            CHECK(FN(gpt_ffn_backward)(m, l, dc, dp, AP(a->ln1), N, 0, set_w));
            CHECK(FN(model_norm_backward)(c->norm_type, dres, GP(p->ln1w), GP(p->ln1b), dc, AP(a->res2),
                                                PP(p->ln1w), AP(a->ln1_mean), AP(a->ln1_rstd),
                                                N, C, TC_WRITE(0)));
            /* dres: d res2 = d x + ...; the attention input is x itself */
            CHECK(FN(model_dropout_back)(&dp, dres, ddrop, N * C, &d, 2 + 3 * l));
            /* dp may be dres: attention backward reads dproj before it adds into dx */
            CHECK(FN(gpt_attention_backward)(m, l, dres, dp, x, B, L, &d, 0, set_w));
        }
    }
    const real_t *denc;
    CHECK(FN(model_dropout_back)(&denc, dres, ddrop, N * C, &d, 0));
    CHECK(FN(tc_embedding_backward)(GP(m->wte), denc, idx, N, c->V, C, TC_ACCUMULATE));
    if (c->position == TC_POS_LEARNED)
        CHECK(FN(tc_embedding_backward)(GP(m->wpe), denc, (const int64_t *)(m->arena + m->ga.pos),
                                        N, c->maxT, C, TC_ACCUMULATE));
    return TC_OK;
}

/* Zero the gradients gpt_backward_all(set_w = 1) only adds into: the layernorms', the
 * embeddings' (wte only when untied: tied, it is the head's, which the backward writes
 * first). Every other gradient (the linear layers', the head's) it writes. */
static void FN(gpt_zero_added_grads)(tc_gpt *m)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t C = c->C;
#define ZERO(off, n) \
    if ((off) >= 0) memset((real_t *)m->grads + (off), 0, (size_t)(n) * sizeof(real_t))
    if (!c->tie) ZERO(m->wte, c->V * C);
    ZERO(m->wpe, c->maxT * C);
    for (int64_t l = 0; l < c->L; l++) {
        const gpt_layer_params *p = &m->lp[l];
        ZERO(p->ln1w, C);
        ZERO(p->ln1b, C);
        ZERO(p->ln2w, C);
        ZERO(p->ln2b, C);
        ZERO(p->qnw, C / c->NH);
        ZERO(p->knw, C / c->NH);
    }
    ZERO(m->lnfw, C);
    ZERO(m->lnfb, C);
#undef ZERO
}

/* The arguments every call shares: the model's dtype, B, L, token ids in range. */
static int FN(gpt_check_args)(const tc_gpt *m, const int64_t *idx, int64_t B, int64_t L)
{
    if (!m || m->elem != (int64_t)sizeof(real_t) || B < 1 || L < 1 || L > m->cfg.maxT)
        return TC_EINVAL;
    return model_ids_ok(idx, B * L, m->cfg.V);
}

/* The loss and gradients of the B sequences given to one model (the model itself, or one
 * data-parallel clone): the cross-entropy summed over counted targets into *total, the
 * gradients of (that sum * inv_count) written over m->grads (with a mixture of experts plus
 * those of moe_aux_weight times the layers' load-balancing losses, which the caller adds to
 * the loss). inv_count = 1 / the number of counted targets in the whole batch (0 when there
 * are none: no backward, but for the load-balancing term, as the module path). */
static int FN(gpt_loss_and_grads_rows)(tc_gpt *m, double *total, const int64_t *idx,
                                       const int64_t *targets, int64_t B, int64_t L,
                                       int64_t ignore_index, double inv_count, uint64_t seed,
                                       int drop)
{
    const int64_t N = B * L, V = m->cfg.V;
    const int aux = gpt_is_moe(&m->cfg) && m->cfg.moe_aux_weight > 0;
    CHECK(FN(gpt_forward_all)(m, idx, B, L, seed, drop, inv_count != 0 || aux));
    *total = 0;
    CHECK(FN(tc_loss_cross_entropy_forward)(AP(m->ga.losses), AP(m->ga.loss_lse), total,
                                            AP(m->ga.logits), targets, N, V, ignore_index, 0));
    if (inv_count == 0 && !aux) {
        memset(m->grads, 0, (size_t)m->num_params * sizeof(real_t));
        return TC_OK;
    }
    /* the linear layers' gradients are written by the backward: zero only the others */
    FN(gpt_zero_added_grads)(m);
    const double cap = m->cfg.logit_softcap;
    if (inv_count == 0) {
        memset(AP(m->ga.logits), 0, (size_t)(N * V) * sizeof(real_t));
    } else {
        if (cap > 0) /* the capped logits, for the soft-cap's backward */
            memcpy(AP(m->ga.capped), AP(m->ga.logits), (size_t)(N * V) * sizeof(real_t));
        FN(gpt_ce_backward_inplace)(AP(m->ga.logits), AP(m->ga.loss_lse), targets, N, V,
                                    ignore_index, (real_t)inv_count);
        if (cap > 0)
            CHECK(FN(tc_softcap_backward)(AP(m->ga.logits), AP(m->ga.logits), AP(m->ga.capped),
                                          N * V, cap, TC_WRITE(0)));
    }
    return FN(gpt_backward_all)(m, idx, B, L, seed, drop, 1);
}

/* One call's work over a batch, row range by row range: the forward writing logits, or
 * (targets != NULL) the loss and gradients. */
typedef struct {
    FN(model_job) run;
    tc_gpt *m;
    const int64_t *idx, *targets;
    int64_t L;
    int64_t row0; /* the call's first row in the global batch (its dropout masks' place) */
} FN(gpt_job);

/* Rows [b0, b0 + nb) of the job on worker w (model_split_run's callback). */
static int FN(gpt_job_rows)(void *ctx, int w, int64_t b0, int64_t nb)
{
    FN(gpt_job) *j = ctx;
    tc_gpt *m = w ? j->m->clones[w - 1] : j->m;
    const int64_t L = j->L, V = m->cfg.V;
    m->row0 = j->row0 + b0;
    CHECK(gpt_reserve(m, nb * L));
    if (j->targets)
        return FN(gpt_loss_and_grads_rows)(m, &j->run.part[w], j->idx + b0 * L, j->targets + b0 * L,
                                           nb, L, j->run.ignore_index, j->run.inv_count, j->run.seed,
                                           j->run.drop);
    CHECK(FN(gpt_forward_all)(m, j->idx + b0 * L, nb, L, j->run.seed, j->run.drop, 0));
    memcpy(j->run.logits + b0 * L * V, AP(m->ga.logits), (size_t)(nb * L * V) * sizeof(real_t));
    return TC_OK;
}

/* The job over B rows on W workers (model_common.h; W == 1: one pass) */
static int FN(gpt_run)(FN(gpt_job) *j, int64_t B, int W)
{
    if (W > 1) CHECK(gpt_clones_ready(j->m, W));
    return model_split_run(W, B, FN(gpt_job_rows), j, gpt_call_flops(j->m, B, j->L));
}

// logits (B,T,V), idx (B,T); the rows are rows [row0, row0 + B) of a global batch
int FN(tc_gpt_forward)(tc_gpt *m, real_t *logits, const int64_t *idx, int64_t B, int64_t L,
                       uint64_t seed, int64_t row0, int training)
{
    CHECK(FN(gpt_check_args)(m, idx, B, L));
    if (!logits || row0 < 0) return TC_EINVAL;
    const int drop = training && m->cfg.dropout > 0;
    FN(gpt_job) j = {{logits, 0, 0.0, seed, drop, {0}}, m, idx, NULL, L, row0};
    return FN(gpt_run)(&j, B, gpt_workers(m, B));
}

// loss (scalar), idx (B,T), targets (B,T); grads (num_params,) overwritten; the rows are
// rows [row0, row0 + B) of a global batch
int FN(tc_gpt_loss_and_grads)(tc_gpt *m, double *loss, const int64_t *idx,
                              const int64_t *targets, int64_t B, int64_t L,
                              int64_t ignore_index, uint64_t seed, int64_t row0, int training)
{
    if (!loss || !targets || row0 < 0) return TC_EINVAL;
    CHECK(FN(gpt_check_args)(m, idx, B, L));
    int64_t count;
    CHECK(model_count_targets(targets, B * L, m->cfg.V, ignore_index, &count));
    const int drop = training && m->cfg.dropout > 0;
    FN(gpt_job) j = {{NULL, ignore_index, count ? 1.0 / (double)count : 0.0, seed, drop, {0}},
                     m, idx, targets, L, row0};
    const int W = gpt_workers(m, B);
    CHECK(FN(gpt_run)(&j, B, W));
    FN(model_loss_finish)(loss, j.run.part, W, count, (real_t *)m->grads, m->clone_grads,
                          m->num_params);
    if (gpt_is_moe(&m->cfg)) { /* + moe_aux_weight * the layers' load-balancing losses */
        double aux = 0;
        for (int64_t l = 0; l < m->cfg.L; l++) aux += m->moe_aux[l];
        *loss += m->cfg.moe_aux_weight * aux;
    }
    return TC_OK;
}

/* ---- read-out on request (tc_gpt_inspect): after a forward over rows [b0, b0 + nb), the
 * attention probabilities of every layer, recomputed from the q, k (qkvh) and row logsumexp
 * the arena keeps for the backward, and the block inputs / outputs copied out. Nothing of it
 * runs in training: the arena and the training calls are unchanged. */

typedef struct {
    FN(gpt_job) job;            /* first: gpt_job_rows runs the forward and copies logits */
    real_t *attn, *hidden;      /* (L,B,NH,T,T) and (L+1,B,T,C), or NULL */
    int64_t B;
} FN(gpt_inspect_job);

// attn rows [b0, b0+nb) of (nl,B,NH,L,L) and hidden rows of (nl+1,B,L,C) from m's arena
static int FN(gpt_readout_rows)(tc_gpt *m, real_t *attn, real_t *hidden, int64_t B, int64_t b0,
                                int64_t nb, int64_t L)
{
    const tc_gpt_config *c = &m->cfg;
    const int64_t C = c->C, NH = c->NH, HS = C / NH;
    tc_attention_sparse sp;
    tc_attention_masks mk; /* the forward's block-sparse pattern, if any */
    memset(&mk, 0, sizeof mk);
    mk.sparse = gpt_sparse(c, &sp);
    for (int64_t l = 0; attn && l < c->L; l++) {
        const real_t *q;
        const tc_attention_layout lay = FN(gpt_qk_layout)(m, &m->la[l], L, &q);
        /* the scale model_attention_forward used */
        CHECK(FN(tc_attention_probs_strided)(attn + (l * B + b0) * NH * L * L, q, q + C,
                                             AP(m->la[l].lse), mk.sparse ? &mk : NULL, &lay,
                                             nb, NH, L, L, HS,
                                             (real_t)(1.0 / sqrt((double)HS)),
                                             TC_CAUSAL_TOP_LEFT));
    }
    for (int64_t l = 0; hidden && l <= c->L; l++)
        memcpy(hidden + (l * B + b0) * L * C, FN(gpt_layer_in)(m, l),
               (size_t)(nb * L * C) * sizeof(real_t));
    return TC_OK;
}

/* Rows [b0, b0 + nb) of an inspect job on worker w (model_split_run's callback). */
static int FN(gpt_inspect_rows)(void *ctx, int w, int64_t b0, int64_t nb)
{
    FN(gpt_inspect_job) *j = ctx;
    CHECK(FN(gpt_job_rows)(&j->job, w, b0, nb));
    tc_gpt *m = w ? j->job.m->clones[w - 1] : j->job.m;
    return FN(gpt_readout_rows)(m, j->attn, j->hidden, j->B, b0, nb, j->job.L);
}

// logits (B,T,V), attn (L,B,NH,T,T) or NULL, hidden (L+1,B,T,C) or NULL, idx (B,T)
int FN(tc_gpt_inspect)(tc_gpt *m, real_t *logits, real_t *attn, real_t *hidden,
                       const int64_t *idx, int64_t B, int64_t L, uint64_t seed, int training)
{
    CHECK(FN(gpt_check_args)(m, idx, B, L));
    if (!logits) return TC_EINVAL;
    const int drop = training && m->cfg.dropout > 0;
    FN(gpt_inspect_job) j = {{{logits, 0, 0.0, seed, drop, {0}}, m, idx, NULL, L, 0}, attn, hidden, B};
    const int W = gpt_workers(m, B);
    if (W > 1) CHECK(gpt_clones_ready(m, W));
    return model_split_run(W, B, FN(gpt_inspect_rows), &j, gpt_call_flops(m, B, L));
}

#undef PP
#undef GP
#undef AP
