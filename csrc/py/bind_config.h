/* bind_config.h: a model config (a C struct of tc.h) filled from a Python dict whose keys are
 * exactly the struct's field names (what GPTConfig.c_fields() / EncoderDecoderConfig.c_fields()
 * give), one table of fields per struct (bind_gpt_config.h, bind_encdec_config.h). */
#ifndef TC_BIND_CONFIG_H
#define TC_BIND_CONFIG_H

#include <stddef.h>

#include "bind.h"

typedef enum {
    TC_PY_FIELD_INT64,  /* int64_t: a Python int (not bool) */
    TC_PY_FIELD_FLAG,   /* int 0/1: a bool (or the int 0 or 1) */
    TC_PY_FIELD_OPTION, /* int: a value of option kind `option` (TC_OPT_*), in range */
    TC_PY_FIELD_DOUBLE  /* double: a float or int (not bool) */
} tc_py_field_kind;

typedef struct {
    const char *name; /* the struct field's name, the dict key */
    int kind;         /* tc_py_field_kind */
    size_t offset;    /* offsetof(struct, field) */
    int option;       /* TC_OPT_* for TC_PY_FIELD_OPTION */
} tc_py_field;

/* The rows of the block options every model config struct shares (tc_gpt_config,
 * tc_encdec_config: attention, its sparse pattern, ffn, the mixture of experts' fields),
 * for a field table whose row macro is ROW(name, kind, option). */
#define TC_PY_BLOCK_OPTION_FIELDS(ROW)                                                      \
    ROW(attention, TC_PY_FIELD_OPTION, TC_OPT_ATTENTION),                                   \
    ROW(sparse_block, TC_PY_FIELD_INT64, 0),                                                \
    ROW(sparse_window, TC_PY_FIELD_INT64, 0),                                               \
    ROW(sparse_stride, TC_PY_FIELD_INT64, 0),                                               \
    ROW(sparse_global, TC_PY_FIELD_INT64, 0),                                               \
    ROW(ffn, TC_PY_FIELD_OPTION, TC_OPT_FFN),                                               \
    ROW(moe_experts, TC_PY_FIELD_INT64, 0),                                                 \
    ROW(moe_top_k, TC_PY_FIELD_INT64, 0),                                                   \
    ROW(moe_capacity, TC_PY_FIELD_DOUBLE, 0),                                               \
    ROW(moe_aux_weight, TC_PY_FIELD_DOUBLE, 0)

/* Fill the struct at out from the dict obj over fields (terminated by a NULL name): 0, or -1
 * with TypeError (obj not a dict, a missing or unknown key, a value of the wrong type) or
 * ValueError (a flag not 0/1, an option value out of range), the message naming `what` and
 * the field. Only the type and range of each field are checked here (the struct's own
 * validity is the C library's: tc_*_num_params). */
int tc_py_config_fill(PyObject *obj, const char *what, const tc_py_field *fields, void *out);

/* 0 if the layer count `value` of field `name` is at most TC_MAX_LAYERS, else -1 with a
 * ValueError naming the field (checked before the C library loops over the layers). */
int tc_py_config_layers(const char *what, const char *name, int64_t value);

#endif /* TC_BIND_CONFIG_H */
