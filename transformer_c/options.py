"""The option vocabulary: one spelling for every choice a layer, model, config, CLI flag or
checkpoint makes, read from the C tables (tc.h, "options"; ``transformer_c._C.OPTIONS``).

    ACTIVATIONS   ("gelu_tanh", "gelu", "relu", "silu", "relu2")  the feed-forward activation
    NORMS         ("pre", "post")                        where a block's layer norms sit
    POSITIONS     ("learned", "sinusoidal", "rope", "none")  how a model encodes positions
    CAUSAL_MODES  ("none", "top_left", "bottom_right")   causal masking of attention
    POOLINGS      ("cls", "mean")                        how nn.Bert pools for its classifier
    ATTENTIONS    ("dense", "block_sparse")              a model's self-attention pattern
    FFNS          ("mlp", "moe")                         a block's feed-forward sublayer
    NORM_TYPES    ("layernorm", "rmsnorm")               the kernel of a model's norms

The index of a name in its tuple is the C enum value (TC_ACT_*, TC_NORM_*, TC_POS_*,
TC_CAUSAL_*, TC_POOL_*, TC_ATTN_*, TC_FFN_*, TC_NORM_TYPE_*). Masks have one polarity in the public API:
True = attend (a real key);
the coursework convention (True = masked) lives only in helpers that say so in their names
(transformer_c.data.masks).
"""
from . import _C

__all__ = ["ACTIVATIONS", "NORMS", "POSITIONS", "CAUSAL_MODES", "POOLINGS", "ATTENTIONS",
           "FFNS", "NORM_TYPES", "check_option", "option_index"]

ACTIVATIONS = _C.OPTIONS["activation"]
NORMS = _C.OPTIONS["norm"]
POSITIONS = _C.OPTIONS["position"]
CAUSAL_MODES = _C.OPTIONS["causal"]
POOLINGS = _C.OPTIONS["pooling"]
ATTENTIONS = _C.OPTIONS["attention"]
FFNS = _C.OPTIONS["ffn"]
NORM_TYPES = _C.OPTIONS["norm_type"]

_KINDS = {"activation": ACTIVATIONS, "norm": NORMS, "position": POSITIONS,
          "causal": CAUSAL_MODES, "pooling": POOLINGS, "attention": ATTENTIONS, "ffn": FFNS,
          "norm_type": NORM_TYPES}


def check_option(kind, value, *, name=None, allowed=None):
    """``value`` if it is one of option ``kind``'s names (restricted to ``allowed`` when
    given), else a ValueError naming the argument (``name``, default ``kind``) and the
    choices. kind: "activation", "norm", "position", "causal", "pooling", "attention",
    "ffn" or "norm_type"."""
    names = _KINDS[kind] if allowed is None else tuple(allowed)
    if not isinstance(value, str) or value not in names:
        raise ValueError(f"{name or kind} must be one of {names}, got {value!r}")
    return value


def option_index(kind, value, *, name=None):
    """The C enum value of ``value`` (its index in the option's table); ValueError as
    check_option for an unknown name."""
    return _KINDS[kind].index(check_option(kind, value, name=name))
