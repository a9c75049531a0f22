/* options.c: the names of every option's values (tc.h, "options"), the one table the
 * Python package reads them from (transformer_c._C.OPTIONS). Index = enum value. */
#include "tc.h"

static const char *const act_names[TC_ACT_COUNT] = {
#define ACT_NAME_(E, name, formula) [TC_ACT_##E] = #name,
    TC_ACTIVATIONS(ACT_NAME_)
#undef ACT_NAME_
};
static const char *const act_formulas[TC_ACT_COUNT] = {
#define ACT_FORMULA_(E, name, formula) [TC_ACT_##E] = formula,
    TC_ACTIVATIONS(ACT_FORMULA_)
#undef ACT_FORMULA_
};

const char *tc_activation_formula(int act)
{
    return act >= 0 && act < TC_ACT_COUNT ? act_formulas[act] : 0;
}
static const char *const norm_names[TC_NORM_COUNT] = {[TC_NORM_PRE] = "pre",
                                                      [TC_NORM_POST] = "post"};
static const char *const pos_names[TC_POS_COUNT] = {
    [TC_POS_LEARNED] = "learned", [TC_POS_SINUSOIDAL] = "sinusoidal", [TC_POS_ROPE] = "rope",
    [TC_POS_NONE] = "none"};
static const char *const causal_names[TC_CAUSAL_COUNT] = {
    [TC_CAUSAL_NONE] = "none", [TC_CAUSAL_TOP_LEFT] = "top_left",
    [TC_CAUSAL_BOTTOM_RIGHT] = "bottom_right"};
static const char *const pool_names[TC_POOL_COUNT] = {[TC_POOL_CLS] = "cls",
                                                      [TC_POOL_MEAN] = "mean"};

static const char *const attn_names[TC_ATTN_COUNT] = {
#define ATTN_NAME_(E, name, what) [TC_ATTN_##E] = #name,
    TC_ATTENTIONS(ATTN_NAME_)
#undef ATTN_NAME_
};
static const char *const ffn_names[TC_FFN_COUNT] = {[TC_FFN_MLP] = "mlp",
                                                   [TC_FFN_MOE] = "moe"};

static const char *const norm_type_names[TC_NORM_TYPE_COUNT] = {
    [TC_NORM_TYPE_LAYERNORM] = "layernorm", [TC_NORM_TYPE_RMSNORM] = "rmsnorm"};

static const struct {
    const char *kind;
    const char *const *names;
    int count;
} option_tables[TC_OPT_COUNT] = {
    [TC_OPT_ACTIVATION] = {"activation", act_names, TC_ACT_COUNT},
    [TC_OPT_NORM] = {"norm", norm_names, TC_NORM_COUNT},
    [TC_OPT_POSITION] = {"position", pos_names, TC_POS_COUNT},
    [TC_OPT_CAUSAL] = {"causal", causal_names, TC_CAUSAL_COUNT},
    [TC_OPT_POOLING] = {"pooling", pool_names, TC_POOL_COUNT},
    [TC_OPT_ATTENTION] = {"attention", attn_names, TC_ATTN_COUNT},
    [TC_OPT_FFN] = {"ffn", ffn_names, TC_FFN_COUNT},
    [TC_OPT_NORM_TYPE] = {"norm_type", norm_type_names, TC_NORM_TYPE_COUNT},
};

const char *tc_option_kind_name(int kind)
{
    return kind >= 0 && kind < TC_OPT_COUNT ? option_tables[kind].kind : 0;
}

int tc_option_count(int kind)
{
    return kind >= 0 && kind < TC_OPT_COUNT ? option_tables[kind].count : 0;
}

const char *tc_option_name(int kind, int v)
{
    if (kind < 0 || kind >= TC_OPT_COUNT || v < 0 || v >= option_tables[kind].count) return 0;
    return option_tables[kind].names[v];
}
