/* attention_flash_impl.h: the tiled (flash-style) attention kernels and the KV-cache decode
 * step, written once for real_t (the per-tile work is in attention_tile.h).
 *
 * Forward: a work item is (batch-head, block of ATT_BR query rows). It keeps the scaled
 * query block, one transposed key tile (ATT_BC keys), one score tile (ATT_BR x ATT_BC) and
 * the output accumulator (ATT_BR x DV) in cache, and walks the key tiles with an online
 * softmax (running max m and sum l per row; the accumulator is rescaled by exp(m_old -
 * m_new) when the max grows). Only the per-row logsumexp is saved. Key tiles past the
 * block's causal limit are never visited and tiles of padding keys only are skipped, so a
 * causal pass does about half the work of a full one; inside a diagonal tile each strip
 * of ATT_MR query rows computes only the keys (rounded up to ATT_NR) its rows can see, in
 * the forward and in the backward (whose dk, dv products start each strip of ATT_MR keys
 * at the first query row that sees it). A work item of fewer than ATT_MR
 * rows (decoding a token or a few) instead takes each row's dot products straight from the
 * key rows and accumulates P v row by row. Work items are shared out
 * dynamically; each computes its outputs alone, in a fixed order: the results do not even
 * depend on the thread count.
 *
 * Block-sparse (c->sp): query blocks and key tiles are cut where the pattern's blocks start
 * (c->rows, c->keys: attention_sparse_tile; FN(att_origin)), so a tile rarely mixes blocks
 * that different queries see, and inside a tile each row strip computes only the columns
 * from the first to the last key some row of it sees (att_sparse_strips: per-strip column
 * bounds, on top of the causal widths), in the score and P v products of the forward and
 * in the four products of the backward (whose key strips sum only the rows from the first
 * to the last row strip that sees them). Rows that see all of a strip's keys skip the mask.
 *
 * Backward: a work item is (batch-head, key tile). It recomputes P = exp(s - lse) for every
 * query block that sees the tile, accumulates dk, dv of the tile in cache and adds dS k
 * into a dq accumulator. With many batch-heads each thread owns whole heads (dq needs no
 * reduction); with few (or a number the threads do not divide), every head's key tiles are
 * dealt round-robin to the threads, each with its own dq partial, summed in thread order
 * (reproducible for a fixed thread count).
 *
 * Extra memory: O(ATT_BR * ATT_BC + T * (DK + DV)) per thread, plus in the forward one
 * transposed copy of k (the size of k) and, when v's rows are not DVP apart, one packed
 * copy of v; never a (T, S) matrix.
 *
 * Operands are addressed through the call's tc_attention_layout (tc.h): element (b,h,t,d)
 * of each at b*st.b + h*st.h + t*st.t + d, so the kernels read q, k, v and write out, dq,
 * dk, dv in token-major buffers in place. Every strided operand is read row by row into
 * packed tiles (and its rows prefetched, as no hardware prefetcher follows a stride of
 * 3C), so the arithmetic, and the results, are those of the contiguous call. The backward
 * adds into dq, dk, dv or writes them (0 + value), each as its bit of `write` says.
 */

#define AVEC FN(att_vec)
#define AIVEC FN(att_ivec)
#define AUVEC FN(att_uvec)
typedef real_t AVEC __attribute__((vector_size(32)));
#if ATT_F64
typedef int64_t AIVEC __attribute__((vector_size(32)));
typedef uint64_t AUVEC __attribute__((vector_size(32)));
#define ATT_BR 48
#define ATT_BC 48
#define ATT_BQ 24 /* lcm(ATT_MR, ATT_NR): key tiles are padded to a multiple of it */
#define ATT_VEXP ATT_VEXP_F64
#else
typedef int32_t AIVEC __attribute__((vector_size(32)));
typedef uint32_t AUVEC __attribute__((vector_size(32)));
#define ATT_BR 72 /* query rows per block: 72 x 96 tiles measured best among 48..120 x 48..192;
                     with the diagonal tiles' hidden strips skipped, 96 or 144 x 48..144
                     measure the same (within 1%) at the GPT shapes */
#define ATT_BC 96 /* keys per tile */
#define ATT_BQ 48
#define ATT_VEXP ATT_VEXP_F32
#endif
#define ATT_VL ((int64_t)(32 / sizeof(real_t)))
#define ATT_NR (2 * ATT_VL)
#define ATT_MR 6

#define ATT_VLOAD(p) ({ AVEC v_; memcpy(&v_, (p), sizeof v_); v_; })
#define ATT_VSTORE(p, x) do { AVEC v_ = (x); memcpy((p), &v_, sizeof v_); } while (0)

/* Context of one tiled call (forward, backward or decode). */
typedef struct {
    real_t *out, *lse;                   /* forward outputs (lse may be NULL) */
    real_t *dq, *dk, *dv;                /* backward outputs */
    const real_t *q, *k, *v, *dout, *o, *lse_in;
    const tc_attention_masks *masks;
    int masked;                     /* keep, bias, key_padding or sparse present */
    int other;                      /* keep, bias or key_padding present */
    const tc_attention_sparse *sp;  /* the block-sparse pattern, or NULL */
    const int64_t *sshift;          /* its per-row slot shifts (B,), or NULL */
    int64_t rows, keys;             /* query rows of a work item, keys of a key tile: ATT_BR,
                                       ATT_BC; block-sparse: aligned to the pattern's blocks
                                       (attention_sparse_tile, FN(att_origin)) */
    int64_t qoff;                   /* query row i is at position i + qoff (attention_qoff) */
    int64_t NH, Tq, S, DK, DV, DKP, DVP;
    tc_attention_layout lay;        /* element strides of every operand (tc.h) */
    int64_t G;                      /* query heads per kv head (lay.kv_heads; 1: none shared) */
    int write;                      /* backward: TC_WRITE(0/1/2) = dq/dk/dv =, else += */
    const real_t *kt;               /* forward: k^T of every key tile, (BH, nkt, DK, ATT_BC):
                                       tile t of a head in columns [0, keys) of panel t,
                                       zero-padded past S, or NULL */
    int64_t nkt;                    /* key tiles per head (FN(att_ntiles)) */
    const real_t *vp;                    /* forward: v packed (BH, S, DVP), columns past DV zero,
                                       or NULL (v read in place, or per tile) */
    real_t scale;
    int causal;
    FN(attention_drop) drop;
} FN(att_ctx);

/* buffer sizes rounded to 16 elements, so every sub-buffer starts 64-byte aligned */
static inline int64_t FN(att_pad)(int64_t n) { return attention_round_up(n, 16); }

static int64_t FN(att_fwd_scratch)(int64_t DK, int64_t DVP)
{
    return FN(att_pad)(ATT_BR * DK) + FN(att_pad)(DK * ATT_BC) + FN(att_pad)(ATT_BC * DVP) +
           ATT_BR * ATT_BC + FN(att_pad)(ATT_BR * DVP) + 2 * ATT_BR + 16;
}

/* the row path (fewer than ATT_MR query rows): scaled q row, output row, scores of a row */
static int64_t FN(att_rows_scratch)(int64_t S, int64_t DK, int64_t DV)
{
    return FN(att_pad)(DK) + FN(att_pad)(DV) + FN(att_pad)(S + ATT_VL) + 16;
}

static int64_t FN(att_bwd_scratch)(int64_t DK, int64_t DV, int64_t DKP, int64_t DVP)
{
    return FN(att_pad)(DK * ATT_BC) + FN(att_pad)(DV * ATT_BC) + FN(att_pad)(ATT_BC * DKP) +
           3 * ATT_BR * ATT_BC + ATT_BC * DKP + ATT_BC * DVP + 16;
}

/* Vector exp of a vector of real_t, float: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
 * cephes' degree-7 expf polynomial (about 1 ulp), 2^n added into the exponent bits.
 * Inputs below -86.5 (and -inf) give exactly 0: exp(-86.5) < 3e-38 is far below the
 * rounding of any softmax sum >= 1, and the lanes whose intermediates overflowed are
 * masked off at the end. Inputs must be <= 88 (the kernels only take exp of x - max and
 * s - lse, which are <= 0 up to rounding). */
#define ATT_VEXP_F32(xin) ({                                                              \
    const AVEC x_ = (xin);                                                                \
    const AIVEC und_ = x_ < -86.5f;                                                       \
    TC_VEXPF_CORE(AVEC, x_);                                                              \
    const AUVEC e_ = ((AUVEC)t_ - 0x4B400000u) << 23;                                     \
    (AVEC)(((AUVEC)p_ + e_) & ~(AUVEC)und_);                                              \
})

/* The same for double: degree-12 Taylor polynomial on |r| <= ln2/2 (relative error below
 * 2e-16 before rounding); inputs below -700 give exactly 0; inputs must be <= 700. */
#define ATT_VEXP_F64(xin) ({                                                              \
    const AVEC x_ = (xin);                                                                \
    const AIVEC und_ = x_ < -700.0;                                                       \
    const AVEC t_ = x_ * 1.4426950408889634074 + 6755399441055744.0;                      \
    const AVEC n_ = t_ - 6755399441055744.0;                                              \
    AVEC r_ = x_ - n_ * 6.93145751953125e-1;                                              \
    r_ = r_ - n_ * 1.42860682030941723212e-6;                                             \
    AVEC p_ = r_ * (1.0 / 479001600.0) + (1.0 / 39916800.0);                              \
    TC_VEXP_F64_TAIL;                                                                     \
    const AUVEC e_ = ((AUVEC)t_ - 0x4338000000000000u) << 52;                             \
    (AVEC)(((AUVEC)p_ + e_) & ~(AUVEC)und_);                                              \
})

/* Where the tiles of n slots (n = c->rows: query rows, or c->keys: keys) of batch row b
 * start: tile t covers slots [t n - o, (t + 1) n - o) (clipped to the sequence), o the
 * return value in [0, n). Dense: o = 0. Block-sparse: the tiles start where pattern blocks
 * do (query row i is at position i + qoff - shift, key slot j at j - shift). */
static inline int64_t FN(att_origin)(const FN(att_ctx) *c, int64_t b, int64_t n, int query)
{
    if (!c->sp) return 0;
    const int64_t sh = c->sshift ? c->sshift[b] : 0, x = (query ? c->qoff - sh : -sh) % n;
    return x < 0 ? x + n : x;
}

/* Tile t of n slots of batch-head bh over L slots: returns its first slot, *end its end
 * (empty, *end <= start, for a row whose tiles end before t) */
static inline int64_t FN(att_tile)(const FN(att_ctx) *c, int64_t bh, int64_t t, int64_t n,
                                   int64_t L, int query, int64_t *end)
{
    const int64_t j0 = t * n - FN(att_origin)(c, bh / c->NH, n, query);
    *end = j0 + n < L ? j0 + n : L;
    return j0 > 0 ? j0 : 0;
}

typedef void (*FN(att_fwd_item_fn))(const FN(att_ctx) *, int64_t, int64_t, int64_t, real_t *);
typedef void (*FN(att_bwd_kblock_fn))(const FN(att_ctx) *, int64_t, int64_t, int64_t, const real_t *,
                                       const real_t *, const real_t *, real_t *, real_t *);

#define KN(name) TC_CAT(FN(name), _generic)
#define KATTR
#define ATT_TR8 0
#include "attention_tile.h"
#undef KN
#undef KATTR
#undef ATT_TR8
#if TC_ATT_X86
#define KN(name) TC_CAT(FN(name), _avx2)
#define KATTR __attribute__((target("avx2,fma")))
#define ATT_TR8 (!ATT_F64) /* 8 x 8 float blocks transposed in registers */
#include "attention_tile.h"
#undef KN
#undef KATTR
#undef ATT_TR8
#define FN_PICK(name) (attention_use_avx2() ? TC_CAT(FN(name), _avx2) : TC_CAT(FN(name), _generic))
#else
#define FN_PICK(name) TC_CAT(FN(name), _generic)
#endif

/* n elements of the calling thread's cached scratch for slot (TC_WS_ATTENTION or
 * TC_WS_ATT_KEYS): no allocation once warmed up */
static real_t *FN(att_alloc)(int slot, int64_t n)
{
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(real_t) / 2) return NULL;
    size_t bytes = (size_t)attention_round_up(n * (int64_t)sizeof(real_t), 64);
    return tc_workspace(slot, bytes);
}

static FN(att_ctx) FN(att_ctx_make)(const tc_attention_masks *masks, int64_t NH, int64_t Tq,
                                    int64_t S, int64_t DK, int64_t DV, real_t scale, int causal)
{
    FN(att_ctx) c;
    memset(&c, 0, sizeof c);
    c.masks = masks;
    c.other = masks && (masks->keep || masks->bias || masks->key_padding);
    c.masked = c.other || (masks && masks->sparse);
    c.sp = masks ? masks->sparse : NULL;
    c.sshift = masks ? masks->sparse_shift : NULL;
    c.rows = c.sp ? attention_sparse_tile(c.sp->block, ATT_BR) : ATT_BR;
    c.keys = c.sp ? attention_sparse_tile(c.sp->block, ATT_BC) : ATT_BC;
    c.qoff = attention_qoff(Tq, S, causal);
    c.NH = NH;
    c.Tq = Tq;
    c.S = S;
    c.DK = DK;
    c.DV = DV;
    c.DKP = attention_round_up(DK > 0 ? DK : 1, ATT_NR);
    c.DVP = attention_round_up(DV > 0 ? DV : 1, ATT_NR);
    tc_attention_layout_contiguous(&c.lay, NH, Tq, S, DK, DV);
    c.G = 1;
    c.write = TC_ACCUMULATE;
    c.scale = scale;
    c.causal = causal;
    c.drop = FN(attention_drop_make)(0, 0, NULL);
    return c;
}

/* Tiles of n slots per head covering L slots at every batch row's origin (the most any
 * row needs; a row's tiles past its last slot are empty) */
static int64_t FN(att_ntiles)(const FN(att_ctx) *c, int64_t BH, int64_t L, int64_t n,
                              int query)
{
    int64_t o = 0;
    for (int64_t b = 0; c->sp && b < BH / c->NH; b++) {
        const int64_t x = FN(att_origin)(c, b, n, query);
        o = x > o ? x : o;
    }
    return (L + o + n - 1) / n;
}

/* rows ahead that the row loops over strided operands prefetch */
#define ATT_PF_ROWS 4

/* vp (BH, S, DVP) <- the values of batch-head bh, columns past DV zero */
static void FN(att_pack_values)(const FN(att_ctx) *c, real_t *vp, int64_t bh)
{
    const int64_t S = c->S, DV = c->DV, DVP = c->DVP, ldv = c->lay.v.t;
    const real_t *v = ATT_KVHEAD(c->v, c->lay.v, c->NH, c->G, bh);
    real_t *d = vp + bh * S * DVP;
    for (int64_t j = 0; j < S; j++) {
        if (j + ATT_PF_ROWS < S)
            for (int64_t p = 0; p < DV; p += 64 / (int64_t)sizeof(real_t))
                __builtin_prefetch(v + (j + ATT_PF_ROWS) * ldv + p);
        memcpy(d + j * DVP, v + j * ldv, (size_t)DV * sizeof(real_t));
        for (int64_t p = DV; p < DVP; p++) d[j * DVP + p] = 0;
    }
}

/* The forward over BH batch-heads, c->Tq >= 1, c->S >= 1. With more than one query block
 * per head the keys are transposed once per head first (a copy the size of k), instead of
 * once per key tile of every work item. */
static int FN(att_forward_run)(FN(att_ctx) *c, int64_t BH)
{
    const int64_t qr = c->rows, nqb = FN(att_ntiles)(c, BH, c->Tq, qr, 1), items = BH * nqb;
    const double work = (double)BH * (double)c->Tq * (double)c->S * (double)(c->DK + c->DV + 8);
    int nt = items > 1 && TC_PAR(work, TC_PARALLEL_MIN_WORK) ? attention_max_threads() : 1;
    if (nt > items) nt = (int)items;
    const int64_t tiled = FN(att_fwd_scratch)(c->DK, c->DVP);
    /* (a block-sparse item of fewer than ATT_MR rows can fall anywhere) */
    const int64_t rows = c->sp || (c->Tq % ATT_BR && c->Tq % ATT_BR < ATT_MR)
                             ? FN(att_rows_scratch)(c->S, c->DK, c->DV) : 0;
    const int64_t per = tiled > rows ? tiled : rows;
    real_t *scratch = FN(att_alloc)(TC_WS_ATTENTION, per * nt);
    if (!scratch) return TC_ENOMEM;
    /* with several query blocks per head, v is packed once per head (not once per tile
     * of every work item) when its rows are not already DVP apart */
    real_t *kt = NULL, *vp = NULL;
    const int packv = nqb > 1 && (c->DV != c->DVP || c->lay.v.t != c->DVP);
    /* (a block-sparse forward visits runs of keys that need not start at a tile boundary:
     * it reads them from inside the tile's panel; the ATT_NR extra elements keep a read
     * past the last panel's end in bounds) */
    const int tk = nqb > 1 && c->DK > 0;
    if (tk || packv) {
        c->nkt = FN(att_ntiles)(c, BH, c->S, c->keys, 0);
        const int64_t nk = tk ? FN(att_pad)(BH * c->nkt * c->DK * ATT_BC + ATT_NR) : 0;
        const int64_t nv = packv ? BH * c->S * c->DVP : 0;
        real_t *blk = FN(att_alloc)(TC_WS_ATT_KEYS, nk + nv);
        if (!blk) return TC_ENOMEM;
        kt = nk ? blk : NULL;
        vp = nv ? blk + nk : NULL;
        const int64_t nkp = BH * c->nkt * c->DK * ATT_BC; /* the panels; then the pad */
        if (kt) memset(kt + nkp, 0, (size_t)(nk - nkp) * sizeof(real_t));
    }
    const FN(att_fwd_item_fn) item = FN_PICK(att_fwd_item);
    void (*const tkeys)(const FN(att_ctx) *, real_t *, int64_t, int64_t) =
        FN_PICK(att_transpose_keys);
    c->kt = kt; /* read by the work items only after the barrier that ends the transposes */
    c->vp = vp;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        real_t *w = scratch + (size_t)attention_thread_num() * (size_t)per;
        if (kt || vp) {
#pragma omp for schedule(static)
            for (int64_t bh = 0; bh < BH; bh++) {
                if (kt) tkeys(c, kt, bh, bh + 1);
                if (vp) FN(att_pack_values)(c, vp, bh);
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) { /* late (heavier causal) blocks first */
            const int64_t bh = it / nqb, qb = nqb - 1 - it % nqb;
            int64_t z;
            const int64_t a = FN(att_tile)(c, bh, qb, qr, c->Tq, 1, &z);
            if (z > a) item(c, bh, a, z - a, w);
        }
    }
    c->kt = NULL;
    c->vp = NULL;
    return TC_OK;
}

/* Prefetch a row of DK values at q and rows of DV values at g and o (one touch per line). */
static inline void FN(att_prefetch_rows)(const real_t *q, const real_t *g, const real_t *o, int64_t DK,
                                         int64_t DV)
{
    const int64_t step = 64 / (int64_t)sizeof(real_t);
    for (int64_t p = 0; p < DK; p += step) __builtin_prefetch(q + p);
    for (int64_t p = 0; p < DV; p += step) {
        __builtin_prefetch(g + p);
        __builtin_prefetch(o + p);
    }
}

/* Rows [i0, i1) of the backward's per-head operands: Qs = scale q and dOp = dout padded
 * to (Tp, DKP) / (Tp, DVP) with zeros, Dv = rowsum(dout * out). */
static void FN(att_bwd_pack)(const FN(att_ctx) *c, int64_t bh, int64_t i0, int64_t i1, real_t *Qs,
                             real_t *dOp, real_t *Dv)
{
    const int64_t Tq = c->Tq, DK = c->DK, DV = c->DV, DKP = c->DKP, DVP = c->DVP;
    for (int64_t i = i0; i < i1; i++) {
        real_t *qs = Qs + i * DKP, *go = dOp + i * DVP;
        if (i >= Tq) {
            memset(qs, 0, (size_t)DKP * sizeof(real_t));
            memset(go, 0, (size_t)DVP * sizeof(real_t));
            continue;
        }
        const real_t *q = ATT_HEAD(c->q, c->lay.q, c->NH, bh) + i * c->lay.q.t;
        const real_t *g = ATT_HEAD(c->dout, c->lay.dout, c->NH, bh) + i * c->lay.dout.t;
        const real_t *o = ATT_HEAD(c->o, c->lay.out, c->NH, bh) + i * c->lay.out.t;
        if (i + ATT_PF_ROWS < Tq) /* strided rows: no hardware prefetcher follows them */
            FN(att_prefetch_rows)(q + ATT_PF_ROWS * c->lay.q.t, g + ATT_PF_ROWS * c->lay.dout.t,
                                  o + ATT_PF_ROWS * c->lay.out.t, DK, DV);
        for (int64_t p = 0; p < DK; p++) qs[p] = c->scale * q[p];
        for (int64_t p = DK; p < DKP; p++) qs[p] = 0;
        real_t d = 0;
        for (int64_t p = 0; p < DV; p++) {
            go[p] = g[p];
            d += g[p] * o[p];
        }
        for (int64_t p = DV; p < DVP; p++) go[p] = 0;
        Dv[i] = d;
    }
}

/* The context of query head bh's part of a grouped backward: the first query head of its kv
 * head (bh % G == 0) writes dk, dv as c->write says, the others add to them. */
static inline FN(att_ctx) FN(att_head_ctx)(const FN(att_ctx) *c, int64_t bh)
{
    FN(att_ctx) h = *c;
    if (bh % c->G) h.write &= ~(TC_WRITE(1) | TC_WRITE(2));
    return h;
}

/* The backward over BH batch-heads, c->Tq >= 1, c->S >= 1. With grouped kv heads (c->G > 1)
 * a work item of the first scheme is a kv head: its G query heads in order, so the
 * gradients of a shared key or value are summed by one thread in a fixed order. */
static int FN(att_backward_run)(const FN(att_ctx) *c, int64_t BH)
{
    const int64_t Tq = c->Tq, S = c->S, DK = c->DK, DKP = c->DKP, DVP = c->DVP;
    /* (block-sparse query blocks start anywhere: ATT_MR more rows keep their padded
     * strips inside Qs and dOp) */
    const int64_t Tp = attention_round_up(Tq, ATT_BR) + (c->sp ? ATT_MR : 0);
    const int64_t W = c->keys, nkb = FN(att_ntiles)(c, BH, S, W, 0);
    const double work = (double)BH * (double)Tq * (double)S * (double)(2 * DK + 2 * c->DV + 8);
    int nt = work >= TC_PARALLEL_MIN_WORK ? attention_max_threads() : 1;
    /* the contention guard may keep the whole-heads split on one thread (each head is one
     * thread's, whatever the count); the few-heads split below sums per-thread partials, so
     * its thread count stays fixed */
    if (nt > 1 && (BH % nt == 0 || BH >= 4 * (int64_t)nt || nkb == 1) &&
        !TC_PAR(work, TC_PARALLEL_MIN_WORK))
        nt = 1;
    const int64_t kscr = FN(att_bwd_scratch)(DK, c->DV, DKP, DVP);
    const int64_t qsz = FN(att_pad)(Tp * DKP), osz = FN(att_pad)(Tp * DVP);
    const int64_t dsz = FN(att_pad)(Tq);
    const FN(att_bwd_kblock_fn) kblock = FN_PICK(att_bwd_kblock);
    const real_t scale = c->scale;
    const int64_t G = c->G, BKV = BH / G;
    if (nt == 1 || BKV % nt == 0 || BKV >= 4 * (int64_t)nt || nkb == 1) {
        /* each thread owns whole (kv) heads: Qs, dOp, Dv, dQ and the tile scratch */
        if (nt > BKV) nt = (int)BKV;
        const int64_t per = 2 * qsz + osz + dsz + kscr;
        real_t *scratch = FN(att_alloc)(TC_WS_ATTENTION, per * nt);
        if (!scratch) return TC_ENOMEM;
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            real_t *Qs = scratch + (size_t)attention_thread_num() * (size_t)per;
            real_t *dQ = Qs + qsz, *dOp = dQ + qsz, *Dv = dOp + osz, *w = Dv + dsz;
#pragma omp for schedule(dynamic, 1)
            for (int64_t bkv = 0; bkv < BKV; bkv++)
            for (int64_t bh = bkv * G; bh < (bkv + 1) * G; bh++) {
                const FN(att_ctx) ch = FN(att_head_ctx)(c, bh);
                FN(att_bwd_pack)(c, bh, 0, Tp, Qs, dOp, Dv);
                memset(dQ, 0, (size_t)(Tp * DKP) * sizeof(real_t));
                for (int64_t kb = 0; kb < nkb; kb++) {
                    int64_t z;
                    const int64_t a = FN(att_tile)(c, bh, kb, W, S, 0, &z);
                    if (z > a) kblock(&ch, bh, a, z - a, Qs, dOp, Dv, dQ, w);
                }
                real_t *dq = ATT_HEAD(c->dq, c->lay.dq, c->NH, bh);
                const int64_t ldq = c->lay.dq.t;
                if (!TC_WRITES(c->write, 0)) {
                    for (int64_t i = 0; i < Tq; i++)
                        for (int64_t p = 0; p < DK; p++)
                            dq[i * ldq + p] += scale * dQ[i * DKP + p];
                } else {
                    for (int64_t i = 0; i < Tq; i++)
                        for (int64_t p = 0; p < DK; p++)
                            dq[i * ldq + p] = (real_t)0 + scale * dQ[i * DKP + p];
                }
            }
        }
        return TC_OK;
    }
    /* few heads: every head's key tiles dealt round-robin to the threads; shared Qs, dOp,
     * Dv; a dq partial per thread, summed in thread order */
    const int64_t per = qsz + kscr;
    real_t *scratch = FN(att_alloc)(TC_WS_ATTENTION, qsz + osz + dsz + per * nt);
    if (!scratch) return TC_ENOMEM;
    real_t *Qs = scratch, *dOp = Qs + qsz, *Dv = dOp + osz, *part = Dv + dsz;
#pragma omp parallel num_threads(nt)
    {
        const int tid = attention_thread_num();
#ifdef _OPENMP
        const int nthr = omp_get_num_threads();
#else
        const int nthr = 1;
#endif
        real_t *dQ = part + (size_t)tid * (size_t)per, *w = dQ + qsz;
        for (int64_t bh = 0; bh < BH; bh++) { /* (a kv head's query heads in order) */
            const FN(att_ctx) ch = FN(att_head_ctx)(c, bh);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < Tp; i += 8)
                FN(att_bwd_pack)(c, bh, i, i + 8 < Tp ? i + 8 : Tp, Qs, dOp, Dv);
            memset(dQ, 0, (size_t)(Tp * DKP) * sizeof(real_t));
#pragma omp for schedule(static, 1)
            for (int64_t kb = 0; kb < nkb; kb++) {
                int64_t z;
                const int64_t a = FN(att_tile)(c, bh, kb, W, S, 0, &z);
                if (z > a) kblock(&ch, bh, a, z - a, Qs, dOp, Dv, dQ, w);
            }
            real_t *dq = ATT_HEAD(c->dq, c->lay.dq, c->NH, bh);
            const int64_t ldq = c->lay.dq.t;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < Tq; i++) {
                for (int64_t p = 0; p < DK; p++) {
                    real_t s = 0;
                    for (int t = 0; t < nthr; t++) s += part[(size_t)t * (size_t)per + (size_t)(i * DKP + p)];
                    if (!TC_WRITES(c->write, 0)) dq[i * ldq + p] += scale * s;
                    else dq[i * ldq + p] = (real_t)0 + scale * s;
                }
            }
        }
    }
    return TC_OK;
}

// out (B,NH,T,DV), lse (B,NH,T), q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV) at the
// layout's strides (NULL: contiguous)
int FN(tc_attention_forward_strided)(real_t *out, real_t *lse, const real_t *q, const real_t *k, const real_t *v,
                                     const tc_attention_masks *masks,
                                     const tc_attention_layout *layout, int64_t B, int64_t NH,
                                     int64_t Tq, int64_t S, int64_t DK, int64_t DV, real_t scale,
                                     int causal, double dropout_p, uint64_t seed)
{
    FN(att_ctx) c = FN(att_ctx_make)(masks, NH, Tq, S, DK, DV, scale, causal);
    if (layout) c.lay = *layout;
    if (!attention_kv_heads_ok(c.lay.kv_heads, NH)) return TC_EINVAL;
    c.G = attention_group(c.lay.kv_heads, NH);
    const int pro = FN(attention_forward_prologue)(out, lse, &c.lay.out, masks, B, NH, Tq, S,
                                                   DK, DV, causal, dropout_p);
    if (pro >= 0) return pro;
    const int64_t BH = B * NH;
    c.out = out;
    c.lse = lse;
    c.q = q;
    c.k = k;
    c.v = v;
    c.drop = FN(attention_drop_make)(dropout_p, seed, masks);
    return FN(att_forward_run)(&c, BH);
}

// out (B,NH,T,DV), lse (B,NH,T), q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV)
int FN(tc_attention_forward)(real_t *out, real_t *lse, const real_t *q, const real_t *k, const real_t *v,
                             const tc_attention_masks *masks, int64_t B, int64_t NH,
                             int64_t Tq, int64_t S, int64_t DK, int64_t DV, real_t scale,
                             int causal, double dropout_p, uint64_t seed)
{
    return FN(tc_attention_forward_strided)(out, lse, q, k, v, masks, NULL, B, NH, Tq, S, DK,
                                            DV, scale, causal, dropout_p, seed);
}

// dq (B,NH,T,DK), dk (B,NH,S,DK), dv (B,NH,S,DV) accumulated (+=) or, by write
// (TC_WRITE(0/1/2) = dq/dk/dv), written; dout/out (B,NH,T,DV), q (B,NH,T,DK),
// k (B,NH,S,DK), v (B,NH,S,DV) at the layout's strides (NULL: contiguous), lse (B,NH,T)
// from the forward
int FN(tc_attention_backward_strided)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *q,
                                      const real_t *k, const real_t *v, const real_t *out, const real_t *lse,
                                      const tc_attention_masks *masks,
                                      const tc_attention_layout *layout, int64_t B,
                                      int64_t NH, int64_t Tq, int64_t S, int64_t DK,
                                      int64_t DV, real_t scale, int causal, double dropout_p,
                                      uint64_t seed, int write)
{
    if (!FN(attention_args_ok)(masks, B, NH, Tq, S, DK, DV, causal, dropout_p))
        return TC_EINVAL;
    const int64_t BH = B * NH;
    FN(att_ctx) c = FN(att_ctx_make)(masks, NH, Tq, S, DK, DV, scale, causal);
    if (layout) c.lay = *layout;
    if (!attention_kv_heads_ok(c.lay.kv_heads, NH)) return TC_EINVAL;
    c.G = attention_group(c.lay.kv_heads, NH);
    const int64_t NKV = NH / c.G;
    c.write = write;
    if (BH == 0 || Tq == 0 || S == 0) { /* every gradient is zero */
        if (TC_WRITES(write, 0)) FN(att_zero)(dq, &c.lay.dq, B, NH, Tq, DK);
        if (TC_WRITES(write, 1)) FN(att_zero)(dk, &c.lay.dk, B, NKV, S, DK);
        if (TC_WRITES(write, 2)) FN(att_zero)(dv, &c.lay.dv, B, NKV, S, DV);
        return TC_OK;
    }
    c.dq = dq;
    c.dk = dk;
    c.dv = dv;
    c.dout = dout;
    c.q = q;
    c.k = k;
    c.v = v;
    c.o = out;
    c.lse_in = lse;
    c.drop = FN(attention_drop_make)(dropout_p, seed, masks);
    return FN(att_backward_run)(&c, BH);
}

// dq (B,NH,T,DK), dk (B,NH,S,DK), dv (B,NH,S,DV) accumulated (+=) or written as
// write says (as tc_attention_backward_strided); dout/out (B,NH,T,DV),
// q (B,NH,T,DK), k (B,NH,S,DK), v (B,NH,S,DV), lse (B,NH,T) from the forward
int FN(tc_attention_backward)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *q, const real_t *k,
                              const real_t *v, const real_t *out, const real_t *lse,
                              const tc_attention_masks *masks, int64_t B, int64_t NH,
                              int64_t Tq, int64_t S, int64_t DK, int64_t DV, real_t scale,
                              int causal, double dropout_p, uint64_t seed, int write)
{
    return FN(tc_attention_backward_strided)(dq, dk, dv, dout, q, k, v, out, lse, masks, NULL,
                                             B, NH, Tq, S, DK, DV, scale, causal, dropout_p,
                                             seed, write);
}

// out (B,NH,TN,DV), q (B,NH,TN,DK); k_cache (B,NKV,Smax,DK), v_cache (B,NKV,Smax,DV)
// updated in place from k_new (B,NKV,TN,DK), v_new (B,NKV,TN,DV) (query head h reads kv
// head h / (NH / NKV)); key_padding NULL or (B, pos+TN); sparse NULL (dense) or a
// block-sparse pattern; shift NULL or (B,)
int FN(tc_attention_decode_grouped)(real_t *out, real_t *k_cache, real_t *v_cache, const real_t *q,
                                    const real_t *k_new, const real_t *v_new,
                                    const uint8_t *key_padding, const tc_attention_sparse *sparse,
                                    const int64_t *shift, int64_t B, int64_t NH, int64_t NKV,
                                    int64_t TN, int64_t Smax, int64_t pos, int64_t DK, int64_t DV,
                                    real_t scale)
{
    if (!attention_dims_ok(B, NH, TN, Smax, DK, DV) || pos < 0 || pos > Smax - TN ||
        (sparse && !tc_attention_sparse_ok(sparse)) || NKV < 0 || (NH > 0 && NKV == 0) ||
        !attention_kv_heads_ok(NKV, NH))
        return TC_EINVAL;
    const int64_t BH = B * NH, BKV = B * NKV, S = pos + TN;
    if (BH == 0 || TN == 0) return TC_OK;
    const int par = TC_PAR((double)BH * (double)TN * (double)(DK + DV), TC_PARALLEL_MIN_WORK);
    (void)par;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bh = 0; bh < BKV; bh++) {
        /* memmove: k_new may be a view of the cache itself */
        memmove(k_cache + (bh * Smax + pos) * DK, k_new + bh * TN * DK,
                (size_t)(TN * DK) * sizeof(real_t));
        memmove(v_cache + (bh * Smax + pos) * DV, v_new + bh * TN * DV,
                (size_t)(TN * DV) * sizeof(real_t));
    }
    tc_attention_masks m;
    memset(&m, 0, sizeof m);
    m.key_padding = key_padding;
    m.sparse = sparse;
    m.sparse_shift = sparse ? shift : NULL;
    FN(att_ctx) c = FN(att_ctx_make)(key_padding || sparse ? &m : NULL, NH, TN, S, DK, DV,
                                     scale, TC_CAUSAL_BOTTOM_RIGHT);
    c.out = out;
    c.q = q;
    c.k = k_cache;
    c.v = v_cache;
    c.lay.k = (tc_attention_strides){NKV * Smax * DK, Smax * DK, DK};
    c.lay.v = (tc_attention_strides){NKV * Smax * DV, Smax * DV, DV};
    c.lay.kv_heads = NKV;
    c.G = attention_group(NKV, NH);
    return FN(att_forward_run)(&c, BH);
}

// the ungrouped step (NKV = NH): k_cache (B,NH,Smax,DK), v_cache (B,NH,Smax,DV), out, q,
// k_new (B,NH,TN,DK), v_new (B,NH,TN,DV)
int FN(tc_attention_decode_sparse)(real_t *out, real_t *k_cache, real_t *v_cache, const real_t *q,
                                   const real_t *k_new, const real_t *v_new,
                                   const uint8_t *key_padding, const tc_attention_sparse *sparse,
                                   const int64_t *shift, int64_t B, int64_t NH, int64_t TN,
                                   int64_t Smax, int64_t pos, int64_t DK, int64_t DV,
                                   real_t scale)
{
    return FN(tc_attention_decode_grouped)(out, k_cache, v_cache, q, k_new, v_new, key_padding,
                                           sparse, shift, B, NH, NH, TN, Smax, pos, DK, DV,
                                           scale);
}

// out (B,NH,TN,DV); k_cache (B,NH,Smax,DK), v_cache (B,NH,Smax,DV) updated in place;
// q, k_new (B,NH,TN,DK), v_new (B,NH,TN,DV); key_padding NULL or (B, pos+TN)
int FN(tc_attention_decode)(real_t *out, real_t *k_cache, real_t *v_cache, const real_t *q, const real_t *k_new,
                            const real_t *v_new, const uint8_t *key_padding, int64_t B, int64_t NH,
                            int64_t TN, int64_t Smax, int64_t pos, int64_t DK, int64_t DV,
                            real_t scale)
{
    return FN(tc_attention_decode_sparse)(out, k_cache, v_cache, q, k_new, v_new, key_padding,
                                          NULL, NULL, B, NH, TN, Smax, pos, DK, DV, scale);
}

#undef FN_PICK
#undef ATT_VLOAD
#undef ATT_VSTORE
#undef ATT_VEXP
#undef ATT_BR
#undef ATT_BC
#undef ATT_BQ
#undef ATT_VL
#undef ATT_NR
#undef ATT_MR
#undef ATT_PF_ROWS
#undef AVEC
#undef AIVEC
#undef AUVEC
