/* bind_decoder.h: what the KV-cache decoder bindings (bind_decode.c for the GPT,
 * bind_decode_encdec.c for the encoder-decoder) share, in bind_handle.c: the decoder handle,
 * its creation (sizes, parameter buffer, capsule), and the step and select calls, which are
 * the same for both decoders up to the C functions and the words of their messages. Each
 * binding keeps only its prefill and its state tuple. */
#ifndef TC_BIND_DECODER_H
#define TC_BIND_DECODER_H

#include "bind.h"

/* One kind of C decoder: its capsule, names and C entry points (adapters over the typed
 * functions of tc.h). */
typedef struct {
    const char *capsule;   /* the capsule name, e.g. "transformer_c.gpt_kv" */
    const char *create;    /* the creating binding, e.g. "gpt_kv_create" */
    const char *prefix;    /* the bindings' prefix, e.g. "gpt_kv" */
    const char *positions; /* what the cache holds: "positions", "target positions" */
    const char *cached;    /* what fills it first: "the prompt length", "the target prefix" */
    void (*free_obj)(void *);
    /* rows now and positions filled */
    void (*state)(const void *kv, int64_t *rows, int64_t *pos);
    /* logits (B,V) of one new token per row, tokens (B,); typenum NPY_FLOAT / NPY_DOUBLE */
    int (*step)(int typenum, void *kv, void *logits, const int64_t *tokens, int64_t B);
    int (*select)(void *kv, const int64_t *rows, int64_t B2);
} tc_py_decoder_kind;

/* A decoder's handle: base first (a tc_py_handle). */
typedef struct {
    tc_py_handle base;
    const tc_py_decoder_kind *kind;
    void *kv;                /* the C decoder (base.obj) */
    int64_t V;               /* the logits' width (the output vocabulary) */
    int64_t Bmax, Tmax;      /* rows and cached positions the decoder was created for */
    int64_t Vs, Smax;        /* the encoder-decoder's source vocabulary and length (else 0) */
} tc_py_decoder;

/* 0 if 1 <= Bmax and 1 <= Tmax <= maxT, else -1 with ValueError naming max_batch /
 * max_len. */
int tc_py_decoder_sizes(long long Bmax, long long Tmax, int64_t maxT);

/* A new handle of kind over the read-only parameter buffer p_obj (P,) (base.typenum set), or
 * NULL with the exception set. */
tc_py_decoder *tc_py_decoder_new(const tc_py_decoder_kind *kind, PyObject *p_obj, int64_t P);

/* The capsule owning h once its C create call returned st (h->kv set), or NULL with the
 * exception set (h discarded). */
PyObject *tc_py_decoder_wrap(tc_py_decoder *h, int st);

/* The handle of a decoder capsule of kind, marked busy; NULL with TypeError / RuntimeError. */
tc_py_decoder *tc_py_decoder_acquire(PyObject *obj, const tc_py_decoder_kind *kind);

/* <prefix>_step(decoder, tokens (B,)) -> logits (B,V) and <prefix>_select(decoder,
 * rows (B2,)) -> None, from the binding's args. */
PyObject *tc_py_decoder_step(PyObject *args, const tc_py_decoder_kind *kind);
PyObject *tc_py_decoder_select(PyObject *args, const tc_py_decoder_kind *kind);

#endif /* TC_BIND_DECODER_H */
