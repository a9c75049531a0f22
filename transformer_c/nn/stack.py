"""The module path of a transformer stack, shared by GPT, Encoder and EncoderDecoder:
parameter layouts, id checks, embeddings + positions, the blocks of a stack (built from
its parameter tree) and the stack's forward / backward chained through the blocks'
forward_cached / backward_cached.

A stack's tree: {"wte" (optional here: the token embedding is passed in), "wpe" (learned
positions only), "h": [layer trees], "ln_f" (pre-LN only)}. Dropout sites of a stack
starting at ``site0``: site0 (embeddings), then per layer l of a self-attention stack
site0 + 1 + 3l (attention probabilities), site0 + 2 + 3l and site0 + 3 + 3l (the two
branches); see blocks.site_seed. The C fast paths use the same rules.
"""
import dataclasses

import numpy as np

from .. import functional as F
from ..functional._util import as_ids
from .attention import CrossAttention, SelfAttention
from .blocks import Block, DecoderBlock, site_seed
from .feedforward import MLP, GatedMLP, MoE
from ._config import sparse_pattern
from .layers import Dense, Norm

__all__ = ["Inspection", "stack_attentions", "stack_layout", "check_ids", "check_targets", "embed_forward", "embed_backward", "stack_blocks",
           "decoder_blocks", "stack_routing", "stack_forward", "stack_backward"]


# ---------------------------------------------------------------------- layouts

def _add(out, prefix, shape, bias):
    out.append((prefix + ("weight",), shape))
    if bias:
        out.append((prefix + ("bias",), shape[:1]))


def stack_layout(cfg, prefix, n_layer, vocab_size, *, wte, cross):
    """[(path, shape)] of one stack under ``prefix`` in tree order (the flat buffer's):
    a self-attention stack (cross=False: GPT, an encoder) or a decoder with
    cross-attention (cross=True)."""
    C, H, b = cfg.n_embd, cfg.hidden_size, cfg.bias
    out = []
    if wte:
        out.append((prefix + ("wte", "weight"), (vocab_size, C)))
    if cfg.position == "learned":
        out.append((prefix + ("wpe", "weight"), (cfg.block_size, C)))
    for layer in range(n_layer):
        p = prefix + ("h", layer)
        _add(out, p + ("ln_1",), (C,), b)
        KC = getattr(cfg, "kv_heads", cfg.n_head) * (C // cfg.n_head)  # grouped k, v width
        _add(out, p + ("attn", "c_attn"), (C + 2 * KC, C), b)
        _add(out, p + ("attn", "c_proj"), (C, C), b)
        if getattr(cfg, "qk_norm", False):
            out.append((p + ("attn", "q_norm", "weight"), (cfg.head_size,)))
            out.append((p + ("attn", "k_norm", "weight"), (cfg.head_size,)))
        if cross:
            _add(out, p + ("ln_cross_attn",), (C,), b)
            _add(out, p + ("crossattention", "q_attn"), (C, C), b)
            _add(out, p + ("crossattention", "c_attn"), (2 * C, C), b)
            _add(out, p + ("crossattention", "c_proj"), (C, C), b)
        _add(out, p + ("ln_2",), (C,), b)
        if getattr(cfg, "ffn", "mlp") == "moe":
            E, m = cfg.moe_experts, p + ("mlp",)
            out.append((m + ("router",), (E, C)))
            out.append((m + ("w1",), (E, H, C)))
            if b:
                out.append((m + ("b1",), (E, H)))
            out.append((m + ("w2",), (E, C, H)))
            if b:
                out.append((m + ("b2",), (E, C)))
        else:
            _add(out, p + ("mlp", "c_fc"), (H, C), b)
            if getattr(cfg, "gated", False):  # the gated MLP's activated projection
                _add(out, p + ("mlp", "c_gate"), (H, C), b)
            _add(out, p + ("mlp", "c_proj"), (C, H), b)
    if cfg.norm == "pre":
        _add(out, prefix + ("ln_f",), (C,), b)
    return out


# ---------------------------------------------------------------------- input checks

def check_ids(ids, name, vocab_size, block_size, squeeze=None):
    """ids as C-contiguous int64 (B, L) and whether the input was 1-D. squeeze: None
    (either), or the rank the other input had (both must agree). ValueError / IndexError
    naming ``name``."""
    a = as_ids(ids, name)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (B, L) or (L,), got {a.shape}")
    if squeeze is not None and (a.ndim == 1) != squeeze:
        raise ValueError(f"{name} must be {'1-D' if squeeze else '2-D'} like the source, "
                         f"got shape {a.shape}")
    sq = a.ndim == 1
    a2 = a[None] if sq else a
    if a2.shape[1] > block_size:
        raise ValueError(f"{name} has {a2.shape[1]} positions but block_size is {block_size}")
    if a2.size and (a2.min() < 0 or a2.max() >= vocab_size):
        bad = a2.min() if a2.min() < 0 else a2.max()
        raise IndexError(f"{name} holds id {bad}, outside [0, {vocab_size})")
    return np.ascontiguousarray(a2, dtype=np.int64), sq


def check_targets(targets, name, ids, ids_name, squeeze, ignore_index, vocab_size):
    """Per-position target ids ``targets`` as C-contiguous int64 of the shape of ``ids``
    (B, L) (check_ids' result; squeeze: the input was 1-D), each in [0, vocab_size) or
    ignore_index. ValueError / IndexError naming ``name`` (and ``ids_name``)."""
    t = as_ids(targets, name)
    t = t[None] if squeeze and t.ndim == 1 else t
    if t.shape != ids.shape:
        want = ids.shape[1:] if squeeze else ids.shape
        raise ValueError(f"{name} must have the shape of {ids_name} {want}, got "
                         f"{np.shape(targets)}")
    t = np.ascontiguousarray(t, dtype=np.int64)
    bad = (t != ignore_index) & ((t < 0) | (t >= vocab_size))
    if bad.any():
        raise IndexError(f"{name} holds id {t[bad][0]}, outside [0, {vocab_size}) and not "
                         f"ignore_index ({ignore_index})")
    return t


# ---------------------------------------------------------------------- embeddings

def embed_forward(cfg, ids, wte, wpe, drop_seed, token_types=None, wtt=None):
    """drop(wte[ids] + positions [+ wtt[token_types]]) (B, L, C) for ids (B, L): learned
    (wpe rows), sinusoidal (the fixed table) or none added (RoPE acts in the attention;
    "none" has no positions); token_types (B, L) ints with wtt (type_vocab_size, C): BERT's segment embeddings, added
    last (None: none); drop_seed None: no dropout."""
    x = F.embedding(ids, wte)
    if cfg.position == "learned":
        x = x + wpe[:ids.shape[1]]
    elif cfg.position == "sinusoidal":
        x = F.add_positions(x, base=cfg.position_base)
    if token_types is not None:
        x = x + F.embedding(token_types, wtt)
    if drop_seed is not None:
        x = F.dropout(x, cfg.dropout, seed=drop_seed)
    return x


def embed_backward(cfg, dx, ids, vocab_size, drop_seed, token_types=None):
    """(dwte (V, C), dwpe (block_size, C) or None, dwtt (type_vocab_size, C) or None) from
    the gradient (B, L, C) of embed_forward's output (dwtt when token_types were given)."""
    if drop_seed is not None:
        dx = F.dropout_backward(dx, cfg.dropout, seed=drop_seed)
    dwte = F.embedding_backward(dx, ids, vocab_size)
    dwpe = dwtt = None
    if cfg.position == "learned":
        B, L = ids.shape
        pos = np.broadcast_to(np.arange(L, dtype=np.int64), (B, L))
        dwpe = F.embedding_backward(dx, pos, cfg.block_size)
    if token_types is not None:
        dwtt = F.embedding_backward(dx, token_types, cfg.type_vocab_size)
    return dwte, dwpe, dwtt


# ---------------------------------------------------------------------- blocks

def _rope(cfg):
    if cfg.position != "rope":
        return None
    return dict(base=cfg.position_base, interleaved=cfg.rope_interleaved)


def _norm(cfg, tree):
    """The Norm of a norm's tree {"weight", "bias" (optional)}: the config's norm_type
    ("layernorm" for configs without the field) and epsilon."""
    return Norm(**tree, eps=cfg.layer_norm_epsilon,
                kind=getattr(cfg, "norm_type", "layernorm"))


def _self_attention(cfg, h, causal, p_attn, seed, head_mask=None):
    a, qk = h["attn"], {}
    if getattr(cfg, "qk_norm", False):
        qk = {k: Norm(**a[k], eps=cfg.layer_norm_epsilon, kind="rmsnorm")
              for k in ("q_norm", "k_norm")}
    return SelfAttention(Dense(**a["c_attn"]), Dense(**a["c_proj"]),
                         cfg.n_head, causal=causal, rope=_rope(cfg), dropout=p_attn, seed=seed,
                         head_mask=head_mask, sparse=sparse_pattern(cfg),
                         n_kv_head=getattr(cfg, "n_kv_head", None), **qk)


def _mlp(cfg, h, aux=True):
    """The feed-forward sublayer of layer tree h: the dense MLP, or (cfg.ffn == "moe") the
    MoE whose backward adds the gradient of moe_aux_weight * aux (aux=False: none, the
    backward of the outputs alone)."""
    if getattr(cfg, "ffn", "mlp") == "moe":
        m = h["mlp"]
        return MoE(m["router"], m["w1"], m.get("b1"), m["w2"], m.get("b2"),
                   top_k=cfg.moe_top_k, capacity_factor=cfg.moe_capacity,
                   activation=cfg.activation, aux_weight=cfg.moe_aux_weight if aux else 0.0)
    if getattr(cfg, "gated", False):
        m = h["mlp"]
        return GatedMLP(Dense(**m["c_fc"]), Dense(**m["c_gate"]), Dense(**m["c_proj"]),
                        cfg.activation)
    return MLP(Dense(**h["mlp"]["c_fc"]), Dense(**h["mlp"]["c_proj"]), cfg.activation)


def stack_routing(cache):
    """Per layer the MoERouting of a MoE stack's forward (stack_forward's cache); [] for a
    dense stack. Each has tokens_per_expert, dropped_per_expert, dropped, capacity, aux."""
    _, blocks, caches, _ = cache
    out = []
    for b, c in zip(blocks, caches):
        i = [f for _, f in b.SUBLAYERS].index("mlp")
        if isinstance(b.mlp, MoE):
            out.append(c[i][1][1])
    return out


def stack_blocks(cfg, tree, seed, dropping, site0=0, *, causal, head_mask=None, aux=True):
    """The Blocks of a self-attention stack (tree: {"h": [...], ...}): causal (GPT) or
    bidirectional (an encoder); dropout sites as the module doc says. head_mask: None or
    (n_layer, n_head), row l the SelfAttention head_mask of layer l. aux: whether the
    backward of MoE layers adds their load-balancing loss's gradient (_mlp)."""
    p_attn = cfg.dropout if dropping else 0.0
    blocks = []
    for layer, h in enumerate(tree["h"]):
        s = site0 + 3 * layer
        hm = None if head_mask is None else head_mask[layer]
        blocks.append(Block(_norm(cfg, h["ln_1"]),
                            _self_attention(cfg, h, causal, p_attn, site_seed(seed, s + 1),
                                            hm),
                            _norm(cfg, h["ln_2"]), _mlp(cfg, h, aux), norm=cfg.norm,
                            dropout=cfg.dropout, training=dropping,
                            seeds=(site_seed(seed, s + 2), site_seed(seed, s + 3))))
    return blocks


def decoder_blocks(cfg, tree, seed, dropping, site0, aux=True):
    """The DecoderBlocks of an encoder-decoder's decoder (tree: {"h": [...], ...}); the
    dropout sites of layer l are site0 + 1 + 5l .. site0 + 5 + 5l (self-attention
    probabilities, its branch, cross-attention probabilities, its branch, the MLP's). aux:
    whether the backward of MoE layers adds their load-balancing loss's gradient (_mlp)."""
    p_attn = cfg.dropout if dropping else 0.0
    blocks = []
    for layer, h in enumerate(tree["h"]):
        s = site0 + 5 * layer
        x = h["crossattention"]
        cross = CrossAttention(Dense(**x["q_attn"]), Dense(**x["c_attn"]), Dense(**x["c_proj"]),
                               cfg.n_head, dropout=p_attn, seed=site_seed(seed, s + 3))
        blocks.append(DecoderBlock(
            _norm(cfg, h["ln_1"]), _self_attention(cfg, h, True, p_attn,
                                                        site_seed(seed, s + 1)),
            _norm(cfg, h["ln_cross_attn"]), cross, _norm(cfg, h["ln_2"]),
            _mlp(cfg, h, aux), norm=cfg.norm, dropout=cfg.dropout, training=dropping,
            seeds=tuple(site_seed(seed, s + i) for i in (2, 4, 5))))
    return blocks


# ---------------------------------------------------------------------- the stack

def stack_forward(cfg, tree, wte, ids, seed, dropping, site0=0, *, blocks, hidden=None,
                  token_types=None, **inputs):
    """(hidden (B, L, C), cache): embeddings, the ``blocks`` (each called with ``inputs``:
    a key-padding mask, or the memory and its mask), ln_f (pre-LN). tree holds wpe (if
    learned), ln_f and, with token_types (B, L) ints (BERT's segments), wtt; wte is the
    token embedding (the tree's or a shared one). hidden: None or a list, appended the input
    of every block and the last block's output (before ln_f), each (B, L, C)."""
    wtt = None if token_types is None else tree["wtt"]["weight"]
    x = embed_forward(cfg, ids, wte, tree.get("wpe", {}).get("weight"),
                      site_seed(seed, site0) if dropping else None, token_types, wtt)
    caches = []
    for block in blocks:
        if hidden is not None:
            hidden.append(x)
        x, c = block.forward_cached(x, **inputs)
        caches.append(c)
    if hidden is not None:
        hidden.append(x)
    cf = None
    if cfg.norm == "pre":
        x, cf = _norm(cfg, tree["ln_f"]).forward_cached(x)
    return x, ((ids, token_types), blocks, caches, cf)


@dataclasses.dataclass
class Inspection:
    """What a model's ``inspect`` returns for a batch: logits (B, T, V) (None for an
    Encoder: its output hidden state is the last of hidden_states); attentions: per layer
    the self-attention probabilities (B, NH, T, T) (pre-dropout, masked keys exactly 0);
    cross_attentions: per decoder layer (B, NH, T, S) (encoder-decoder only); hidden_states:
    the input of every block then the last block's output (before ln_f), L + 1 arrays
    (B, T, C). For an encoder-decoder, encoder_attentions / encoder_hidden_states are the
    encoder's. Fields not asked for are None; an unbatched (T,) input drops the B axis."""
    logits: object = None
    attentions: list = None
    hidden_states: list = None
    cross_attentions: list = None
    encoder_attentions: list = None
    encoder_hidden_states: list = None


def stack_attentions(cache, sublayer=0):
    """The per-layer probabilities (B, NH, T, S) of the attention sublayer ``sublayer`` (0:
    self-attention; 1: a decoder block's cross-attention) from stack_forward's cache."""
    _, blocks, caches, _ = cache
    name = blocks[0].SUBLAYERS[sublayer][1] if blocks else None
    return [getattr(b, name).cached_weights(c[sublayer][1]) for b, c in zip(blocks, caches)]


def stack_backward(cfg, tree, vocab_size, dx, cache, seed, dropping, site0=0):
    """(grads of the tree's wpe / h / ln_f, dwte, extras): extras the sum over the blocks
    of their further input gradients (the memory's, for decoder blocks), or None."""
    (ids, token_types), blocks, caches, cf = cache
    grads = {}
    if cfg.norm == "pre":
        g_lnf, dx = _norm(cfg, tree["ln_f"]).backward_cached(dx, cf)
    hgrads, extra = [None] * len(blocks), None
    for layer in reversed(range(len(blocks))):
        hgrads[layer], dx, *more = blocks[layer].backward_cached(dx, caches[layer])
        if more:
            extra = more[0] if extra is None else extra + more[0]
    dwte, dwpe, dwtt = embed_backward(cfg, dx, ids, vocab_size,
                                      site_seed(seed, site0) if dropping else None, token_types)
    if dwpe is not None:
        grads["wpe"] = {"weight": dwpe}
    if dwtt is not None:
        grads["wtt"] = {"weight": dwtt}
    grads["h"] = hgrads
    if cfg.norm == "pre":
        grads["ln_f"] = g_lnf
    return grads, dwte, extra
