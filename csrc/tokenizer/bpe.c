/* bpe.c: byte-level BPE in the style of GPT-2: the pre-tokeniser, the trainer (merge
 * counting) and the encoder/decoder. Everything here works on bytes and integer ids only (no
 * float dtypes), so there is no bpe_impl.h.
 *
 * Symbols: ids 0..255 are the bytes; merge k (0-based) creates symbol 256 + k from the pair
 * merges[k] = (left, right). The Python layer (transformer_c.data.bpe) shifts these ids by the
 * number of special tokens.
 *
 * Pre-tokenisation reproduces GPT-2's pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (leftmost alternative first, each quantifier greedy) by a hand-written scanner over code
 * points. The caller supplies the character classes as a table cls[cp] (TC_BPE_CLASS_*);
 * code points at or beyond the table, and bytes that are not valid UTF-8 (each such byte is
 * one "character"), are class OTHER, so any byte string can be encoded.
 */
#include "tc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SYMBOLS ((int64_t)INT32_MAX - 256)

/* ------------------------------------------------------------------ small helpers */

static uint64_t mix64(uint64_t x) /* splitmix64 finaliser */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const uint8_t *p, int64_t n) /* FNV-1a, 8 bytes at a time */
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix64(h);
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* Grow *buf (elements of size `size`) to hold at least `need` elements; 0 or -1 (ENOMEM). */
static int grow(void **buf, int64_t *cap, int64_t need, size_t size)
{
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*buf, (size_t)c * size);
    if (!p) return -1;
    *buf = p;
    *cap = c;
    return 0;
}

/* ------------------------------------------------------------------ UTF-8 and classes */

/* The code point starting at p (n >= 1 bytes available) in *cp and its length in bytes;
 * an invalid or truncated sequence gives *cp = -1 and length 1 (the byte stands alone). */
static int utf8_next(const uint8_t *p, int64_t n, int32_t *cp)
{
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n >= 2 && (p[1] & 0xC0) == 0x80) {
            *cp = ((int32_t)(c & 0x1F) << 6) | (p[1] & 0x3F);
            return 2;
        }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (n >= 3 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
            int32_t v = ((int32_t)(c & 0x0F) << 12) | ((int32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
            if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
                *cp = v;
                return 3;
            }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (n >= 4 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80) {
            int32_t v = ((int32_t)(c & 0x07) << 18) | ((int32_t)(p[1] & 0x3F) << 12) |
                        ((int32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
            if (v >= 0x10000 && v <= 0x10FFFF) {
                *cp = v;
                return 4;
            }
        }
    }
    *cp = -1;
    return 1;
}

typedef struct {
    const uint8_t *t; /* text */
    int64_t n;        /* its length in bytes */
    const uint8_t *cls;
    int64_t ncls;
} scanner;

static int class_of(const scanner *s, int32_t cp)
{
    if (cp < 0 || cp >= s->ncls) return TC_BPE_CLASS_OTHER;
    int k = s->cls[cp];
    return k <= TC_BPE_CLASS_SPACE ? k : TC_BPE_CLASS_OTHER;
}

/* Class of the character at byte i (< n) and its length in *len. */
static int class_at(const scanner *s, int64_t i, int *len)
{
    int32_t cp;
    *len = utf8_next(s->t + i, s->n - i, &cp);
    return class_of(s, cp);
}

/* End of the maximal run of characters of class k starting at byte i. */
static int64_t run_end(const scanner *s, int64_t i, int k)
{
    while (i < s->n) {
        int len;
        if (class_at(s, i, &len) != k) break;
        i += len;
    }
    return i;
}

/* End (exclusive byte offset) of the pre-token that starts at byte i < n. */
static int64_t pretoken_end(const scanner *s, int64_t i)
{
    const uint8_t *t = s->t;
    int64_t n = s->n;
    uint8_t c = t[i];
    if (c == '\'' && i + 1 < n) { /* 's 't 'm 'd 're 've 'll */
        uint8_t d = t[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t e = t[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    int len, k = class_at(s, i, &len);
    if (c == ' ' && i + 1 < n) { /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the space */
        int len2, k2 = class_at(s, i + 1, &len2);
        if (k2 != TC_BPE_CLASS_SPACE) return run_end(s, i + 1 + len2, k2);
    }
    if (k != TC_BPE_CLASS_SPACE) return run_end(s, i + len, k);
    /* whitespace: "\s+(?!\S)" keeps the last whitespace character of a run that is followed
     * by a non-space for the next token; a single one (or a run reaching the end) is "\s+" */
    int64_t j = i + len, last = i;
    while (j < n) {
        int l;
        if (class_at(s, j, &l) != TC_BPE_CLASS_SPACE) break;
        last = j;
        j += l;
    }
    return (j == n || last == i) ? j : last;
}

int tc_bpe_pretokenize(int64_t *starts, int64_t *count, const uint8_t *text, int64_t n,
                       const uint8_t *cls, int64_t ncls)
{
    if (!starts || !count || n < 0 || (n > 0 && !text) || ncls < 0 || (ncls > 0 && !cls))
        return TC_EINVAL;
    scanner s = {text, n, cls, ncls};
    int64_t m = 0;
    for (int64_t i = 0; i < n; i = pretoken_end(&s, i)) starts[m++] = i;
    starts[m] = n;
    *count = m;
    return TC_OK;
}

/* ------------------------------------------------------------------ training */

/* The trainer keeps every distinct pre-token ("word") once, with its count, as an array of
 * symbols; a hash table of adjacent pairs with their total counts and, per pair, a linked
 * list of the words that contain (or once contained) it; and a lazy max-heap of
 * (count, pair). After a merge only pairs containing the new symbol can gain occurrences, so
 * a heap entry's count is an upper bound of the pair's true count: pop, compare with the
 * table, re-push if stale. Ties go to the smallest (left, right). */

typedef struct {
    int32_t a, b;
    int32_t last_word; /* the word most recently linked into this pair's list */
    int32_t pending;   /* queued to be pushed on the heap after the current merge */
    int64_t count;
    int64_t head;      /* first node of the word list, -1 if none */
} pair_t;

typedef struct {
    int32_t word;
    int64_t next;
} node_t;

typedef struct {
    int64_t count;
    int32_t a, b;
} heap_t;

typedef struct {
    /* words */
    int64_t n_words, cap_words;
    int64_t *w_off;   /* byte offset in the text (for hashing while counting), then sym offset */
    int32_t *w_len;   /* length in bytes, then in symbols */
    int64_t *w_count;
    int64_t cap_w_len, cap_w_count;
    int32_t *syms;
    /* pairs and their hash table (indices into pairs, -1 empty) */
    pair_t *pairs;
    int64_t n_pairs, cap_pairs;
    int32_t *table;
    int64_t table_cap; /* a power of two */
    /* word lists */
    node_t *nodes;
    int64_t n_nodes, cap_nodes;
    /* heap */
    heap_t *heap;
    int64_t n_heap, cap_heap;
    /* pairs to push after a merge */
    int32_t *pending;
    int64_t n_pending, cap_pending;
} trainer;

static void trainer_free(trainer *t)
{
    free(t->w_off);
    free(t->w_len);
    free(t->w_count);
    free(t->syms);
    free(t->pairs);
    free(t->table);
    free(t->nodes);
    free(t->heap);
    free(t->pending);
}

static int heap_less(const heap_t *x, const heap_t *y) /* x below y in the max-heap */
{
    if (x->count != y->count) return x->count < y->count;
    if (x->a != y->a) return x->a > y->a;
    return x->b > y->b;
}

static int heap_push(trainer *t, int64_t count, int32_t a, int32_t b)
{
    if (grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof(heap_t))) return -1;
    heap_t e = {count, a, b};
    int64_t i = t->n_heap++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!heap_less(&t->heap[p], &e)) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = e;
    return 0;
}

static heap_t heap_pop(trainer *t)
{
    heap_t top = t->heap[0], e = t->heap[--t->n_heap];
    int64_t i = 0, n = t->n_heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&t->heap[c], &t->heap[c + 1])) c++;
        if (!heap_less(&e, &t->heap[c])) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n > 0) t->heap[i] = e;
    return top;
}

static int pair_table_rehash(trainer *t, int64_t cap)
{
    int32_t *tab = malloc((size_t)cap * sizeof *tab);
    if (!tab) return -1;
    memset(tab, 0xff, (size_t)cap * sizeof *tab);
    for (int64_t p = 0; p < t->n_pairs; p++) {
        uint64_t h = mix64(pair_key(t->pairs[p].a, t->pairs[p].b)) & (uint64_t)(cap - 1);
        while (tab[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        tab[h] = (int32_t)p;
    }
    free(t->table);
    t->table = tab;
    t->table_cap = cap;
    return 0;
}

/* Index of pair (a, b), inserted with count 0 if absent; -1 on ENOMEM or too many pairs. */
static int64_t pair_get(trainer *t, int32_t a, int32_t b)
{
    uint64_t mask = (uint64_t)(t->table_cap - 1);
    uint64_t h = mix64(pair_key(a, b)) & mask;
    for (;;) {
        int32_t p = t->table[h];
        if (p < 0) break;
        if (t->pairs[p].a == a && t->pairs[p].b == b) return p;
        h = (h + 1) & mask;
    }
    if (t->n_pairs >= INT32_MAX) return -1;
    if (grow((void **)&t->pairs, &t->cap_pairs, t->n_pairs + 1, sizeof(pair_t))) return -1;
    int64_t p = t->n_pairs++;
    pair_t np = {a, b, -1, 0, 0, -1};
    t->pairs[p] = np;
    t->table[h] = (int32_t)p;
    if (2 * t->n_pairs > t->table_cap && pair_table_rehash(t, 2 * t->table_cap)) return -1;
    return p;
}

/* Link word w into pair p's list unless it was the last word linked. */
static int pair_link(trainer *t, int64_t p, int32_t w)
{
    if (t->pairs[p].last_word == w) return 0;
    if (grow((void **)&t->nodes, &t->cap_nodes, t->n_nodes + 1, sizeof(node_t))) return -1;
    t->nodes[t->n_nodes].word = w;
    t->nodes[t->n_nodes].next = t->pairs[p].head;
    t->pairs[p].head = t->n_nodes++;
    t->pairs[p].last_word = w;
    return 0;
}

static int32_t *word_table(const uint64_t *hashes, int64_t n_words, int64_t cap)
{
    int32_t *tab = malloc((size_t)cap * sizeof *tab);
    if (!tab) return NULL;
    memset(tab, 0xff, (size_t)cap * sizeof *tab);
    for (int64_t k = 0; k < n_words; k++) {
        uint64_t h = hashes[k] & (uint64_t)(cap - 1);
        while (tab[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        tab[h] = (int32_t)k;
    }
    return tab;
}

/* Count the distinct pre-tokens of every document: words in first-occurrence order. */
static int count_words(trainer *t, const uint8_t *text, const int64_t *doc_offsets,
                       int64_t n_docs, const uint8_t *cls, int64_t ncls)
{
    int64_t cap = 1024, cap_hashes = 0;
    uint64_t *hashes = NULL;
    int32_t *tab = word_table(NULL, 0, cap);
    if (!tab) return TC_ENOMEM;
    int st = TC_OK;
    for (int64_t d = 0; d < n_docs && st == TC_OK; d++) {
        scanner s = {text + doc_offsets[d], doc_offsets[d + 1] - doc_offsets[d], cls, ncls};
        for (int64_t i = 0, e; i < s.n; i = e) {
            e = pretoken_end(&s, i);
            const uint8_t *w = s.t + i;
            int64_t len = e - i;
            uint64_t hv = hash_bytes(w, len), h = hv & (uint64_t)(cap - 1);
            int32_t found = -1;
            for (;; h = (h + 1) & (uint64_t)(cap - 1)) {
                int32_t k = tab[h];
                if (k < 0) break;
                if (hashes[k] == hv && t->w_len[k] == len &&
                    !memcmp(text + t->w_off[k], w, (size_t)len)) {
                    found = k;
                    break;
                }
            }
            if (found >= 0) {
                t->w_count[found]++;
                continue;
            }
            if (t->n_words >= INT32_MAX || len > INT32_MAX) {
                st = TC_EINVAL;
                break;
            }
            int64_t k = t->n_words, need = k + 1;
            if (grow((void **)&t->w_off, &t->cap_words, need, sizeof(int64_t)) ||
                grow((void **)&t->w_len, &t->cap_w_len, need, sizeof(int32_t)) ||
                grow((void **)&t->w_count, &t->cap_w_count, need, sizeof(int64_t)) ||
                grow((void **)&hashes, &cap_hashes, need, sizeof(uint64_t))) {
                st = TC_ENOMEM;
                break;
            }
            t->w_off[k] = w - text;
            t->w_len[k] = (int32_t)len;
            t->w_count[k] = 1;
            hashes[k] = hv;
            tab[h] = (int32_t)k;
            t->n_words++;
            if (2 * t->n_words > cap) {
                int32_t *bigger = word_table(hashes, t->n_words, 2 * cap);
                if (!bigger) {
                    st = TC_ENOMEM;
                    break;
                }
                free(tab);
                tab = bigger;
                cap *= 2;
            }
        }
    }
    free(tab);
    free(hashes);
    return st;
}

/* Apply merge (a, b) -> c to word w, updating pair counts and lists. */
static int merge_word(trainer *t, int32_t w, int32_t a, int32_t b, int32_t c)
{
    int32_t *s = t->syms + t->w_off[w];
    int64_t L = t->w_len[w], cnt = t->w_count[w];
    int64_t first = -1;
    for (int64_t i = 0; i + 1 < L; i++) {
        if (s[i] == a && s[i + 1] == b) {
            first = i;
            break;
        }
    }
    if (first < 0) return 0; /* a stale list entry: the word no longer holds the pair */
    /* remove the pairs of the old symbols from `first - 1` on, merge, add the new pairs:
     * exact also for overlapping runs such as (a, a) in "a a a" */
    int64_t from = first > 0 ? first - 1 : 0;
    for (int64_t i = from; i + 1 < L; i++) {
        int64_t p = pair_get(t, s[i], s[i + 1]);
        if (p < 0) return -1;
        t->pairs[p].count -= cnt;
    }
    int64_t j = first;
    for (int64_t i = first; i < L;) {
        if (i + 1 < L && s[i] == a && s[i + 1] == b) {
            s[j++] = c;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    L = j;
    t->w_len[w] = (int32_t)L;
    for (int64_t i = from; i + 1 < L; i++) {
        int64_t p = pair_get(t, s[i], s[i + 1]);
        if (p < 0) return -1;
        t->pairs[p].count += cnt;
        if (s[i] == c || s[i + 1] == c) {
            if (pair_link(t, p, w)) return -1;
            if (!t->pairs[p].pending) {
                if (grow((void **)&t->pending, &t->cap_pending, t->n_pending + 1, sizeof(int32_t)))
                    return -1;
                t->pairs[p].pending = 1;
                t->pending[t->n_pending++] = (int32_t)p;
            }
        }
    }
    return 0;
}

int tc_bpe_train(int32_t *merges, int64_t *counts, int64_t *n_merges, const uint8_t *text,
                 const int64_t *doc_offsets, int64_t n_docs, const uint8_t *cls, int64_t ncls,
                 int64_t max_merges, int64_t min_count)
{
    if (!n_merges || n_docs < 0 || !doc_offsets || max_merges < 0 || max_merges > MAX_SYMBOLS ||
        (max_merges > 0 && (!merges || !counts)) || ncls < 0 || (ncls > 0 && !cls))
        return TC_EINVAL;
    for (int64_t d = 0; d < n_docs; d++)
        if (doc_offsets[d + 1] < doc_offsets[d]) return TC_EINVAL;
    if (doc_offsets[n_docs] > doc_offsets[0] && !text) return TC_EINVAL;
    if (min_count < 1) min_count = 1;
    *n_merges = 0;
    trainer t;
    memset(&t, 0, sizeof t);
    int st = count_words(&t, text, doc_offsets, n_docs, cls, ncls);
    if (st != TC_OK) goto done;
    st = TC_ENOMEM;
    /* symbols: the bytes of every word, laid end to end (w_off becomes the symbol offset) */
    int64_t total = 0;
    for (int64_t w = 0; w < t.n_words; w++) total += t.w_len[w];
    t.syms = malloc((size_t)(total > 0 ? total : 1) * sizeof(int32_t));
    if (!t.syms) goto done;
    for (int64_t w = 0, o = 0; w < t.n_words; w++) {
        const uint8_t *src = text + t.w_off[w];
        for (int32_t i = 0; i < t.w_len[w]; i++) t.syms[o + i] = src[i];
        t.w_off[w] = o;
        o += t.w_len[w];
    }
    if (pair_table_rehash(&t, 1024)) goto done;
    for (int64_t w = 0; w < t.n_words; w++) {
        const int32_t *s = t.syms + t.w_off[w];
        for (int32_t i = 0; i + 1 < t.w_len[w]; i++) {
            int64_t p = pair_get(&t, s[i], s[i + 1]);
            if (p < 0 || pair_link(&t, p, (int32_t)w)) goto done;
            t.pairs[p].count += t.w_count[w];
        }
    }
    for (int64_t p = 0; p < t.n_pairs; p++)
        if (heap_push(&t, t.pairs[p].count, t.pairs[p].a, t.pairs[p].b)) goto done;
    int64_t m = 0;
    while (m < max_merges && t.n_heap > 0) {
        heap_t e = heap_pop(&t);
        int64_t p = pair_get(&t, e.a, e.b);
        if (p < 0) goto done;
        int64_t cur = t.pairs[p].count;
        if (cur != e.count) { /* stale: re-queue with the true count */
            if (cur > 0 && heap_push(&t, cur, e.a, e.b)) goto done;
            continue;
        }
        if (cur < min_count) break;
        int32_t c = (int32_t)(256 + m);
        merges[2 * m] = e.a;
        merges[2 * m + 1] = e.b;
        counts[m] = cur;
        m++;
        for (int64_t nd = t.pairs[p].head; nd >= 0; nd = t.nodes[nd].next)
            if (merge_word(&t, t.nodes[nd].word, e.a, e.b, c)) goto done;
        for (int64_t k = 0; k < t.n_pending; k++) {
            pair_t *q = &t.pairs[t.pending[k]];
            q->pending = 0;
            if (q->count > 0 && heap_push(&t, q->count, q->a, q->b)) goto done;
        }
        t.n_pending = 0;
    }
    *n_merges = m;
    st = TC_OK;
done:
    trainer_free(&t);
    return st;
}

/* ------------------------------------------------------------------ encoder / decoder */

struct tc_bpe {
    int64_t n_merges;
    int32_t *merges;   /* (n_merges, 2) */
    int64_t cap;       /* pair -> rank hash table, a power of two */
    uint64_t *keys;
    int32_t *ranks;    /* -1: empty slot */
    int64_t *tok_off;  /* (V + 1,): bytes of token i are tok_bytes[tok_off[i] : tok_off[i+1]] */
    uint8_t *tok_bytes;
    int64_t *tok_len;  /* (V,) */
    uint8_t *cls;
    int64_t ncls;
};

void tc_bpe_free(tc_bpe *bpe)
{
    if (!bpe) return;
    free(bpe->merges);
    free(bpe->keys);
    free(bpe->ranks);
    free(bpe->tok_off);
    free(bpe->tok_bytes);
    free(bpe->tok_len);
    free(bpe->cls);
    free(bpe);
}

static int32_t rank_of(const tc_bpe *bpe, int32_t a, int32_t b)
{
    uint64_t key = pair_key(a, b), mask = (uint64_t)(bpe->cap - 1);
    for (uint64_t h = mix64(key) & mask;; h = (h + 1) & mask) {
        int32_t r = bpe->ranks[h];
        if (r < 0 || bpe->keys[h] == key) return r;
    }
}

int64_t tc_bpe_vocab_size(const tc_bpe *bpe) { return bpe ? 256 + bpe->n_merges : 0; }

int tc_bpe_new(tc_bpe **out, const int32_t *merges, int64_t n_merges, const uint8_t *cls,
               int64_t ncls)
{
    if (!out) return TC_EINVAL;
    *out = NULL;
    if (n_merges < 0 || n_merges > MAX_SYMBOLS || (n_merges > 0 && !merges) || ncls < 0 ||
        (ncls > 0 && !cls))
        return TC_EINVAL;
    int64_t V = 256 + n_merges;
    tc_bpe *bpe = calloc(1, sizeof *bpe);
    if (!bpe) return TC_ENOMEM;
    int st = TC_ENOMEM;
    bpe->n_merges = n_merges;
    bpe->cap = 16;
    while (bpe->cap < 2 * n_merges) bpe->cap *= 2;
    bpe->merges = malloc((size_t)(n_merges > 0 ? 2 * n_merges : 1) * sizeof(int32_t));
    bpe->keys = malloc((size_t)bpe->cap * sizeof(uint64_t));
    bpe->ranks = malloc((size_t)bpe->cap * sizeof(int32_t));
    bpe->tok_len = malloc((size_t)V * sizeof(int64_t));
    bpe->tok_off = malloc((size_t)(V + 1) * sizeof(int64_t));
    bpe->cls = malloc((size_t)(ncls > 0 ? ncls : 1));
    if (!bpe->merges || !bpe->keys || !bpe->ranks || !bpe->tok_len || !bpe->tok_off || !bpe->cls)
        goto fail;
    if (ncls > 0) memcpy(bpe->cls, cls, (size_t)ncls);
    bpe->ncls = ncls;
    memset(bpe->ranks, 0xff, (size_t)bpe->cap * sizeof(int32_t));
    for (int64_t i = 0; i < 256; i++) bpe->tok_len[i] = 1;
    int64_t total = 256;
    for (int64_t k = 0; k < n_merges; k++) {
        int32_t a = merges[2 * k], b = merges[2 * k + 1];
        /* a merge may only use bytes and earlier merges, and each pair appears once */
        if (a < 0 || b < 0 || a >= 256 + k || b >= 256 + k || rank_of(bpe, a, b) >= 0) {
            st = TC_EINVAL;
            goto fail;
        }
        bpe->merges[2 * k] = a;
        bpe->merges[2 * k + 1] = b;
        uint64_t key = pair_key(a, b), mask = (uint64_t)(bpe->cap - 1), h = mix64(key) & mask;
        while (bpe->ranks[h] >= 0) h = (h + 1) & mask;
        bpe->keys[h] = key;
        bpe->ranks[h] = (int32_t)k;
        bpe->tok_len[256 + k] = bpe->tok_len[a] + bpe->tok_len[b];
        total += bpe->tok_len[256 + k];
        if (total > INT32_MAX) { /* adversarial merges that double a token every step */
            st = TC_EINVAL;
            goto fail;
        }
    }
    bpe->tok_bytes = malloc((size_t)total);
    if (!bpe->tok_bytes) goto fail;
    bpe->tok_off[0] = 0;
    for (int64_t i = 0; i < V; i++) bpe->tok_off[i + 1] = bpe->tok_off[i] + bpe->tok_len[i];
    for (int64_t i = 0; i < 256; i++) bpe->tok_bytes[i] = (uint8_t)i;
    for (int64_t k = 0; k < n_merges; k++) {
        int32_t a = bpe->merges[2 * k], b = bpe->merges[2 * k + 1];
        uint8_t *dst = bpe->tok_bytes + bpe->tok_off[256 + k];
        memcpy(dst, bpe->tok_bytes + bpe->tok_off[a], (size_t)bpe->tok_len[a]);
        memcpy(dst + bpe->tok_len[a], bpe->tok_bytes + bpe->tok_off[b], (size_t)bpe->tok_len[b]);
    }
    *out = bpe;
    return TC_OK;
fail:
    tc_bpe_free(bpe);
    return st;
}

/* Workspace of one encoding pass. */
typedef struct {
    int32_t *sym, *next, *prev;
    int64_t cap_sym, cap_next, cap_prev;
    uint64_t *heap; /* min-heap of (rank << 32 | position) */
    int64_t n_heap, cap_heap;
    /* cache: pre-token bytes -> the ids already written for its first occurrence */
    int64_t *c_src, *c_out; /* byte offset in the text; offset of its ids in the output */
    int32_t *c_len, *c_nids;
    uint64_t *c_hash;
    int64_t c_n, c_cap;
    int32_t *c_tab; /* -1 empty */
} encoder;

static void encoder_free(encoder *e)
{
    free(e->sym);
    free(e->next);
    free(e->prev);
    free(e->heap);
    free(e->c_src);
    free(e->c_out);
    free(e->c_len);
    free(e->c_nids);
    free(e->c_hash);
    free(e->c_tab);
}

static int uheap_push(encoder *e, uint64_t v)
{
    if (grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof(uint64_t))) return -1;
    int64_t i = e->n_heap++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (e->heap[p] <= v) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = v;
    return 0;
}

static uint64_t uheap_pop(encoder *e)
{
    uint64_t top = e->heap[0], v = e->heap[--e->n_heap];
    int64_t i = 0, n = e->n_heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && e->heap[c + 1] < e->heap[c]) c++;
        if (v <= e->heap[c]) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0) e->heap[i] = v;
    return top;
}

/* Push the merge candidate starting at symbol i (with its right neighbour), if any. */
static int push_candidate(encoder *e, const tc_bpe *bpe, int32_t i)
{
    int32_t j = e->next[i];
    if (j < 0) return 0;
    int32_t r = rank_of(bpe, e->sym[i], e->sym[j]);
    return r < 0 ? 0 : uheap_push(e, ((uint64_t)r << 32) | (uint32_t)i);
}

/* BPE of one pre-token w (len bytes) into ids; returns the number of ids, or -1 (ENOMEM),
 * -2 (a pre-token of 2 GiB or more).
 * Merges are applied lowest rank first and, within a rank, left to right, which is the
 * same as applying the merge list in order to the word (what training did). */
static int64_t bpe_word(encoder *e, const tc_bpe *bpe, const uint8_t *w, int64_t len, int32_t *ids)
{
    if (len == 1) {
        ids[0] = w[0];
        return 1;
    }
    if (len > INT32_MAX) return -2;
    if (grow((void **)&e->sym, &e->cap_sym, len, sizeof(int32_t)) ||
        grow((void **)&e->next, &e->cap_next, len, sizeof(int32_t)) ||
        grow((void **)&e->prev, &e->cap_prev, len, sizeof(int32_t)))
        return -1;
    for (int64_t i = 0; i < len; i++) {
        e->sym[i] = w[i];
        e->next[i] = i + 1 < len ? (int32_t)(i + 1) : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    e->n_heap = 0;
    for (int32_t i = 0; i + 1 < len; i++)
        if (push_candidate(e, bpe, i)) return -1;
    while (e->n_heap > 0) {
        uint64_t top = uheap_pop(e);
        int32_t r = (int32_t)(top >> 32), i = (int32_t)(uint32_t)top;
        int32_t j = e->next[i];
        /* still valid? symbol i alive and (sym[i], sym[j]) still the pair of rank r */
        if (e->sym[i] < 0 || j < 0 || e->sym[i] != bpe->merges[2 * r] ||
            e->sym[j] != bpe->merges[2 * r + 1])
            continue;
        e->sym[i] = 256 + r;
        e->sym[j] = -1;
        e->next[i] = e->next[j];
        if (e->next[j] >= 0) e->prev[e->next[j]] = i;
        if (e->prev[i] >= 0 && push_candidate(e, bpe, e->prev[i])) return -1;
        if (push_candidate(e, bpe, i)) return -1;
    }
    int64_t m = 0;
    for (int32_t i = 0; i >= 0; i = e->next[i]) ids[m++] = e->sym[i];
    return m;
}

static int cache_rehash(encoder *e, int64_t cap)
{
    int32_t *tab = malloc((size_t)cap * sizeof *tab);
    if (!tab) return -1;
    memset(tab, 0xff, (size_t)cap * sizeof *tab);
    for (int64_t k = 0; k < e->c_n; k++) {
        uint64_t h = e->c_hash[k] & (uint64_t)(cap - 1);
        while (tab[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        tab[h] = (int32_t)k;
    }
    free(e->c_tab);
    e->c_tab = tab;
    e->c_cap = cap;
    return 0;
}

/* Encode text[0:n] (starting at a pre-token boundary) into ids; *count ids. */
static int encode_span(encoder *e, const tc_bpe *bpe, int32_t *ids, int64_t *count,
                       const uint8_t *text, int64_t n)
{
    scanner s = {text, n, bpe->cls, bpe->ncls};
    int64_t m = 0, cap_src = 0, cap_out = 0, cap_len = 0, cap_nids = 0, cap_hash = 0;
    if (cache_rehash(e, 1024)) return TC_ENOMEM;
    for (int64_t i = 0, end; i < n; i = end) {
        end = pretoken_end(&s, i);
        int64_t len = end - i;
        const uint8_t *w = text + i;
        if (len == 1) {
            ids[m++] = w[0];
            continue;
        }
        uint64_t hv = hash_bytes(w, len), mask = (uint64_t)(e->c_cap - 1), h = hv & mask;
        int32_t hit = -1;
        for (;; h = (h + 1) & mask) {
            int32_t k = e->c_tab[h];
            if (k < 0) break;
            if (e->c_hash[k] == hv && e->c_len[k] == len &&
                !memcmp(text + e->c_src[k], w, (size_t)len)) {
                hit = k;
                break;
            }
        }
        if (hit >= 0) {
            memcpy(ids + m, ids + e->c_out[hit], (size_t)e->c_nids[hit] * sizeof(int32_t));
            m += e->c_nids[hit];
            continue;
        }
        int64_t got = bpe_word(e, bpe, w, len, ids + m);
        if (got < 0) return got == -1 ? TC_ENOMEM : TC_EINVAL;
        if (len <= INT32_MAX && e->c_n < INT32_MAX) { /* remember it */
            int64_t k = e->c_n;
            if (grow((void **)&e->c_src, &cap_src, k + 1, sizeof(int64_t)) ||
                grow((void **)&e->c_out, &cap_out, k + 1, sizeof(int64_t)) ||
                grow((void **)&e->c_len, &cap_len, k + 1, sizeof(int32_t)) ||
                grow((void **)&e->c_nids, &cap_nids, k + 1, sizeof(int32_t)) ||
                grow((void **)&e->c_hash, &cap_hash, k + 1, sizeof(uint64_t)))
                return TC_ENOMEM;
            e->c_src[k] = i;
            e->c_out[k] = m;
            e->c_len[k] = (int32_t)len;
            e->c_nids[k] = (int32_t)got;
            e->c_hash[k] = hv;
            e->c_tab[h] = (int32_t)k;
            e->c_n++;
            if (2 * e->c_n > e->c_cap && cache_rehash(e, 2 * e->c_cap)) return TC_ENOMEM;
        }
        m += got;
    }
    *count = m;
    return TC_OK;
}

/* A pre-token boundary at or after `pos` (< end), or -1: a lone newline between a
 * non-space ASCII character and a non-space character, "x\nA" -> boundary before "A". The
 * newline is its own pre-token whether or not the text stops right after it, so both
 * halves encode exactly as the whole text does. */
static int64_t boundary_after(const scanner *s, int64_t pos, int64_t end)
{
    for (int64_t i = pos > 2 ? pos : 2; i < end; i++) {
        uint8_t before = s->t[i - 2];
        if (s->t[i - 1] != '\n' || before >= 0x80 || class_of(s, before) == TC_BPE_CLASS_SPACE)
            continue;
        int len;
        if (class_at(s, i, &len) != TC_BPE_CLASS_SPACE) return i;
    }
    return -1;
}

#define ENCODE_MAX_PARTS 64
#define ENCODE_MIN_PART ((int64_t)1 << 16)

int tc_bpe_encode(int32_t *ids, int64_t *count, const tc_bpe *bpe, const uint8_t *text, int64_t n)
{
    if (!ids || !count || !bpe || n < 0 || (n > 0 && !text)) return TC_EINVAL;
    *count = 0;
    /* split long texts at pre-token boundaries and encode the parts in parallel; every part
     * writes its ids at its own byte offset (a part never has more ids than bytes), then
     * the parts are packed in order, so the result does not depend on the thread count */
    int64_t cut[ENCODE_MAX_PARTS + 1];
    int parts = 1;
    cut[0] = 0;
    int threads = tc_get_num_threads();
    int want = threads < ENCODE_MAX_PARTS ? threads : ENCODE_MAX_PARTS;
    if (want > 1 && n >= 2 * ENCODE_MIN_PART) {
        scanner s = {text, n, bpe->cls, bpe->ncls};
        int64_t per = n / want;
        for (int k = 1; k < want; k++) {
            int64_t from = k * per > cut[parts - 1] + 1 ? k * per : cut[parts - 1] + 1;
            int64_t b = boundary_after(&s, from, n);
            if (b < 0) break;
            cut[parts++] = b;
        }
    }
    cut[parts] = n;
    int64_t got[ENCODE_MAX_PARTS];
    int status[ENCODE_MAX_PARTS];
#pragma omp parallel for schedule(static, 1) num_threads(parts) if (parts > 1)
    for (int k = 0; k < parts; k++) {
        encoder e;
        memset(&e, 0, sizeof e);
        status[k] = encode_span(&e, bpe, ids + cut[k], &got[k], text + cut[k], cut[k + 1] - cut[k]);
        encoder_free(&e);
    }
    int64_t m = 0;
    for (int k = 0; k < parts; k++) {
        if (status[k] != TC_OK) return status[k];
        if (m != cut[k]) memmove(ids + m, ids + cut[k], (size_t)got[k] * sizeof(int32_t));
        m += got[k];
    }
    *count = m;
    return TC_OK;
}

int tc_bpe_decode_size(int64_t *size, const tc_bpe *bpe, const int64_t *ids, int64_t n)
{
    if (!size || !bpe || n < 0 || (n > 0 && !ids)) return TC_EINVAL;
    int64_t V = 256 + bpe->n_merges, total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V || total > INT64_MAX - bpe->tok_len[ids[i]])
            return TC_EINVAL;
        total += bpe->tok_len[ids[i]];
    }
    *size = total;
    return TC_OK;
}

int tc_bpe_decode(uint8_t *out, const tc_bpe *bpe, const int64_t *ids, int64_t n)
{
    if (!bpe || n < 0 || (n > 0 && (!ids || !out))) return TC_EINVAL;
    int64_t V = 256 + bpe->n_merges, o = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V) return TC_EINVAL;
        memcpy(out + o, bpe->tok_bytes + bpe->tok_off[ids[i]], (size_t)bpe->tok_len[ids[i]]);
        o += bpe->tok_len[ids[i]];
    }
    return TC_OK;
}
