"""What the model configs (GPTConfig, EncoderConfig, EncoderDecoderConfig) share: field
validation and the derived sizes / dict round trip of a frozen dataclass."""
import dataclasses
import math

import numpy as np

from ..options import check_option


class ConfigMixin:
    """head_size, hidden_size, to_dict and from_dict for a frozen config dataclass with
    n_embd, n_head and n_inner fields."""

    @property
    def head_size(self):
        """n_embd // n_head."""
        return self.n_embd // self.n_head

    @property
    def kv_heads(self):
        """The heads of k and v: n_kv_head, or n_head (no grouped-query attention)."""
        nkv = getattr(self, "n_kv_head", None)
        return self.n_head if nkv is None else int(nkv)

    @property
    def hidden_size(self):
        """The MLP width (n_inner, or 4 * n_embd)."""
        return 4 * self.n_embd if self.n_inner is None else int(self.n_inner)

    def to_dict(self):
        """The config as a dict of its fields (from_dict reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from a dict such as to_dict() gives (unknown keys are a ValueError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}")
        return cls(**d)


class BlockOptions:
    """The options of a transformer block that every self-attention model config shares
    (GPTConfig, EncoderConfig, BertConfig), declared once here and appended to each
    config's own fields by the with_block_options class decorator.

    attention: "dense" (default) or "block_sparse" (transformer_c.options.ATTENTIONS): every
    layer's attention restricted to the pattern sparse_block (tokens per block),
    sparse_window (blocks seen on each side, own included), sparse_stride (every
    sparse_stride-th key block seen by all; 0: none), sparse_global (leading blocks that
    see and are seen by all): functional.sparse_layout. Causal models see the window to
    the left (the same key set in training and in KV-cached generation); bidirectional
    ones see window - 1 blocks on each side, padded keys staying masked. The sparse_*
    fields are ignored by dense attention.
    ffn: the feed-forward sublayer (transformer_c.options.FFNS), "mlp" (dense) or "moe" (a
    mixture of moe_experts MLPs of width n_inner, top-moe_top_k routing with capacity
    factor moe_capacity, and the load-balancing loss times moe_aux_weight added to the
    training loss and its gradient; nn.MoE; padded positions are routed too).
    norm_type: the kernel of every norm (ln_1, ln_2, ln_f; transformer_c.options.NORM_TYPES):
    "layernorm" (default) or "rmsnorm" (x / sqrt(mean(x^2) + eps) * weight, + bias when the
    config has biases: bias=False gives torch.nn.RMSNorm / Llama's norm); same parameters.
    qk_norm: RMS-normalise every head's query and key (learned gains attn.q_norm.weight and
    attn.k_norm.weight of head_size, initialised to 1, shared by the heads) after c_attn
    and before RoPE, as OLMo 2, Gemma 3 and Qwen 3 do; with n_kv_head the k-norm acts on
    the n_kv_head key heads (before they are shared by their query heads) and a KV cache
    holds the normalised (and rotated) keys.
    logit_softcap: 0 (off) or the cap c > 0 of Gemma 2's final-logit soft-capping,
    logits = c * tanh(logits / c) (GPT only: the other configs refuse a nonzero value).
    n_kv_head: None (every query head its own keys and values) or a divisor of n_head:
    grouped-query attention (1: multi-query), k and v projected to n_kv_head heads, each
    shared by n_head // n_kv_head query heads; c_attn is then (C + 2 KC, C), KC =
    n_kv_head * head_size, its rows [q | k | v] (nn.SelfAttention), and a KV cache holds
    n_kv_head heads. Old checkpoints (no such field) load with None.
    gated: False (the MLP), or True: the gated MLP (nn.GatedMLP) with the config's
    activation, c_proj(act(c_gate(x)) * c_fc(x)): activation="silu" gives SwiGLU (LLaMA),
    "gelu" GeGLU; mlp.c_gate (n_inner, C) is a new weight beside c_fc and c_proj (3 matrices
    for 2: LLaMA's width n_inner = 8 n_embd / 3 keeps the parameter count of 4 n_embd).
    ffn="mlp" only. Old checkpoints load with False.
    """

    attention: str = "dense"
    sparse_block: int = 64
    sparse_window: int = 2
    sparse_stride: int = 0
    sparse_global: int = 0
    ffn: str = "mlp"
    moe_experts: int = 4
    moe_top_k: int = 1
    moe_capacity: float = 1.25
    moe_aux_weight: float = 0.01
    norm_type: str = "layernorm"
    qk_norm: bool = False
    logit_softcap: float = 0.0
    n_kv_head: "int | None" = None
    gated: bool = False


def with_block_options(cls):
    """Class decorator (applied before dataclasses.dataclass): appends BlockOptions' fields,
    with their types and defaults, after the fields cls declares (so they follow them in
    the constructor, the repr and to_dict, and cls may not declare them itself)."""
    own = cls.__dict__.get("__annotations__", {})
    for name, typ in BlockOptions.__annotations__.items():
        if name in own:
            raise TypeError(f"{cls.__name__} declares the block option {name!r} itself")
        own[name] = typ
        setattr(cls, name, getattr(BlockOptions, name))
    cls.__annotations__ = own
    return cls


def check_positive(cfg, names):
    """ValueError unless every field in names is an int >= 1 (bools rejected)."""
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def check_attention(cfg):
    """Validation of the attention fields (attention: transformer_c.options.ATTENTIONS;
    sparse_block >= 1, sparse_window >= 1, sparse_stride >= 0, sparse_global >= 0, checked
    whatever attention is, so a config never holds a pattern it could not run)."""
    check_option("attention", cfg.attention)
    from .attention import check_kv_heads
    check_kv_heads(getattr(cfg, "n_kv_head", None), cfg.n_head)
    for name, lo in (("sparse_block", 1), ("sparse_window", 1), ("sparse_stride", 0),
                     ("sparse_global", 0)):
        v = getattr(cfg, name)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def sparse_pattern(cfg):
    """The config's block-sparse pattern (functional.SparseLayout), or None when
    cfg.attention is "dense" (or the config has no attention field)."""
    if getattr(cfg, "attention", "dense") != "block_sparse":
        return None
    from ..functional import sparse_layout
    return sparse_layout(cfg.sparse_block, cfg.sparse_window, cfg.sparse_stride,
                         cfg.sparse_global)


def attention_c_fields(cfg):
    """The attention fields of a C model config (tc_gpt_config): attention as its enum
    value, the pattern's four sizes."""
    from ..options import option_index
    return dict(attention=option_index("attention", cfg.attention),
                sparse_block=int(cfg.sparse_block), sparse_window=int(cfg.sparse_window),
                sparse_stride=int(cfg.sparse_stride), sparse_global=int(cfg.sparse_global))


def ffn_c_fields(cfg):
    """The feed-forward fields of a C model config (tc_gpt_config): ffn as its enum value,
    the mixture of experts' moe_experts, moe_top_k, moe_capacity, moe_aux_weight (read by the
    C drivers only when ffn is "moe")."""
    from ..options import option_index
    return dict(ffn=option_index("ffn", cfg.ffn), moe_experts=int(cfg.moe_experts),
                moe_top_k=int(cfg.moe_top_k), moe_capacity=float(cfg.moe_capacity),
                moe_aux_weight=float(cfg.moe_aux_weight))


def check_common(cfg, positions):
    """Validation of the fields every model config has (position must be in positions)."""
    check_positive(cfg, ("block_size", "n_head", "n_embd"))
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
    if cfg.n_inner is not None and (isinstance(cfg.n_inner, (bool, np.bool_)) or
                                    not isinstance(cfg.n_inner, (int, np.integer)) or
                                    cfg.n_inner < 1):
        raise ValueError(f"n_inner must be a positive integer or None, got {cfg.n_inner!r}")
    if not (isinstance(cfg.dropout, (int, float)) and not isinstance(cfg.dropout, bool) and
            0.0 <= cfg.dropout < 1.0):
        raise ValueError(f"dropout must be a probability in [0, 1), got {cfg.dropout!r}")
    check_option("position", cfg.position, allowed=positions)
    check_option("norm", cfg.norm)
    check_option("activation", cfg.activation)
    if not (cfg.layer_norm_epsilon >= 0 and math.isfinite(cfg.layer_norm_epsilon)):
        raise ValueError(f"layer_norm_epsilon must be finite and >= 0, got "
                         f"{cfg.layer_norm_epsilon!r}")
    if hasattr(cfg, "ffn"):
        check_ffn(cfg)
    if hasattr(cfg, "norm_type"):
        check_norm_options(cfg, logits=getattr(cfg, "_softcap_logits", False))
    if not (cfg.position_base > 0 and math.isfinite(cfg.position_base)):
        raise ValueError(f"position_base must be finite and > 0, got {cfg.position_base!r}")


def _real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)) and math.isfinite(v)


def check_norm_options(cfg, *, logits=True):
    """Validation of norm_type (options.NORM_TYPES), qk_norm (a bool) and logit_softcap
    (finite >= 0; must be 0 unless ``logits``: a config without LM logits). ValueError
    naming the field."""
    check_option("norm_type", cfg.norm_type)
    if not isinstance(cfg.qk_norm, (bool, np.bool_)):
        raise ValueError(f"qk_norm must be a bool, got {cfg.qk_norm!r}")
    cap = cfg.logit_softcap
    if not (_real(cap) and cap >= 0):
        raise ValueError(f"logit_softcap must be a finite number >= 0 (0: off), got {cap!r}")
    if cap and not logits:
        raise ValueError(f"logit_softcap must be 0: only GPT soft-caps its logits, got "
                         f"{cap!r}")


def norm_c_fields(cfg):
    """The norm fields of a C model config (tc_gpt_config): norm_type as its enum value,
    qk_norm, logit_softcap."""
    from ..options import option_index
    return dict(norm_type=option_index("norm_type", cfg.norm_type), qk_norm=bool(cfg.qk_norm),
                logit_softcap=float(cfg.logit_softcap))


def check_ffn(cfg):
    """Validation of the feed-forward fields (GPTConfig, EncoderConfig): ffn one of
    options.FFNS; with ffn="moe" moe_experts (int >= moe_top_k), moe_top_k (1 or 2),
    moe_capacity (capacity factor, finite > 0), moe_aux_weight (finite >= 0). ValueError
    naming the field."""
    check_option("ffn", cfg.ffn)
    gated = getattr(cfg, "gated", False)
    if not isinstance(gated, (bool, np.bool_)):
        raise ValueError(f"gated must be True or False, got {gated!r}")
    if gated and cfg.ffn != "mlp":
        raise ValueError(f"gated=True is the gated MLP: it needs ffn='mlp', got {cfg.ffn!r}")
    k = cfg.moe_top_k
    if isinstance(k, (bool, np.bool_)) or k not in (1, 2):
        raise ValueError(f"moe_top_k must be 1 or 2, got {k!r}")
    check_positive(cfg, ("moe_experts",))
    if cfg.moe_experts < k:
        raise ValueError(f"moe_experts ({cfg.moe_experts}) must be >= moe_top_k ({k})")
    if not (_real(cfg.moe_capacity) and cfg.moe_capacity > 0):
        raise ValueError(f"moe_capacity must be a finite number > 0, got {cfg.moe_capacity!r}")
    if not (_real(cfg.moe_aux_weight) and cfg.moe_aux_weight >= 0):
        raise ValueError(f"moe_aux_weight must be a finite number >= 0, got "
                         f"{cfg.moe_aux_weight!r}")
