"""Encoder: a bidirectional transformer stack over a padded batch of token ids.

    x = drop(wte[src] + wpe[s])                  (learned positions; or sinusoidal)
    x = Block_l(x, key_padding_mask) for l < n_layer
                                                 (blocks.Block with bidirectional attention:
                                                  pre-LN by default, post-LN by option)
    h = ln_f(x)                                  (pre-LN only; post-LN layers end in a norm)

Padding: ``src_lengths`` (B,) (row b is real up to src_lengths[b]) or
``src_key_padding_mask`` bool (B, S), **True = a real token** (transformer_c.functional's
convention, as transformer_c.data.key_padding_mask builds it; the coursework's
transformer_c.data.pad_mask is its negation, True = padding).
Padded positions are never attended to, so they cannot change the outputs at real
positions, and no gradient flows into them from there (their own output rows are computed
but meaningless).

The parameter tree (GPT-2 names, as transformer_c.nn.GPT)::

    {"wte": {"weight": (V, C)}, "wpe": {"weight": (block_size, C)},
     "h": [{"ln_1", "attn": {"c_attn", "c_proj"}, "ln_2", "mlp": {"c_fc", "c_proj"}}, ...],
     "ln_f": {"weight", "bias"}}

(no ``wpe`` with sinusoidal positions, no biases with bias=False, no ``ln_f`` with
norm="post"). The same subtree (under "encoder") is the encoder of
transformer_c.nn.EncoderDecoder. All parameters live in one contiguous buffer
(``flat_parameters``); the tree holds views of it.
"""
import dataclasses
import math

import numpy as np

from ..functional._util import as_bool_mask, as_ids, same_dtype
from ._config import ConfigMixin, check_attention, check_common, check_positive, \
    with_block_options
from ._flat import FlatModel
from .feedforward import MoE
from .stack import Inspection, check_ids, stack_attentions, stack_backward, stack_blocks, \
    stack_forward, stack_layout, stack_routing

__all__ = ["EncoderConfig", "Encoder"]

POSITIONS = ("learned", "sinusoidal")  # of options.POSITIONS: no RoPE in the encoder
@dataclasses.dataclass(frozen=True)
@with_block_options
class EncoderConfig(ConfigMixin):
    """Hyper-parameters of an Encoder (defaults: the base Transformer's encoder, pre-LN).

    vocab_size, block_size (the longest source; rows of wpe), n_layer, n_head, n_embd
    (divisible by n_head); dropout: probability on the embeddings, the attention
    probabilities and both residual branches of every layer (only in training mode); bias:
    biases in every linear layer and LayerNorm; position: "learned" (wpe) or "sinusoidal"
    (a fixed table added to the embeddings); norm: "pre" (with a final ln_f) or "post" (the
    original Transformer; no ln_f); activation: "gelu_tanh", "gelu" or "relu"; n_inner: the
    MLP width (None: 4 * n_embd); layer_norm_epsilon; position_base: the sinusoidal base.
    attention, sparse_block, sparse_window, sparse_stride, sparse_global, ffn, moe_experts,
    moe_top_k, moe_capacity, moe_aux_weight: the block options (BlockOptions;
    attention is bidirectional).
    """

    vocab_size: int = 32000
    block_size: int = 512
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.1
    bias: bool = True
    position: str = "sinusoidal"
    norm: str = "pre"
    activation: str = "relu"
    n_inner: int = None
    layer_norm_epsilon: float = 1e-5
    position_base: float = 10000.0

    def __post_init__(self):
        check_positive(self, ("vocab_size", "n_layer"))
        check_common(self, POSITIONS)
        check_attention(self)


# ---------------------------------------------------------------------- input checks

def source_mask(src_lengths, src_key_padding_mask, B, S, squeeze):
    """The source key-padding mask as bool (B, S) (True = real token), or None when every
    position is real."""
    if src_lengths is not None and src_key_padding_mask is not None:
        raise ValueError("give src_lengths or src_key_padding_mask, not both")
    if src_lengths is not None:
        n = as_ids(src_lengths, "src_lengths")
        want = () if squeeze else (B,)
        if n.shape != want and not (squeeze and n.shape == (1,)):
            raise ValueError(f"src_lengths must have shape {want} (one length per source), "
                             f"got {n.shape}")
        n = n.reshape(B)
        if n.size and (n.min() < 0 or n.max() > S):
            raise ValueError(f"src_lengths must lie in [0, S] = [0, {S}], got min {n.min()} "
                             f"and max {n.max()}")
        mask = np.arange(S)[None, :] < n.astype(np.int64)[:, None]
    elif src_key_padding_mask is not None:
        mask = as_bool_mask(src_key_padding_mask, "src_key_padding_mask",
                            "True = real token, False = padding")
        want = (S,) if squeeze else (B, S)
        if mask.shape != want:
            raise ValueError(f"src_key_padding_mask must have the shape of src {want}, "
                             f"got {mask.shape}")
        mask = np.ascontiguousarray(mask.reshape(B, S))
    else:
        return None
    return None if mask.all() else mask


# ---------------------------------------------------------------------- the module path

def encoder_forward(cfg, tree, wte, ids, mask, seed, dropping, site0=0, hidden=None,
                    aux=False):
    """The encoder stack (module by module): (hidden (B, S, C), cache). tree holds wpe (if
    learned), h and ln_f (pre-LN); wte is the token embedding (the tree's or a shared one);
    mask: the key-padding mask (B, S), True = real token, or None; hidden: None or a list
    (stack_forward's); aux: MoE layers' backward adds their load-balancing loss's gradient
    (stack_blocks)."""
    blocks = stack_blocks(cfg, tree, seed, dropping, site0, causal=False, aux=aux)
    return stack_forward(cfg, tree, wte, ids, seed, dropping, site0, blocks=blocks,
                         key_padding_mask=mask, hidden=hidden)


def encoder_backward(cfg, tree, vocab_size, dx, cache, seed, dropping, site0=0):
    """(grads of the tree's wpe / h / ln_f, dwte) from d hidden (B, S, C)."""
    return stack_backward(cfg, tree, vocab_size, dx, cache, seed, dropping, site0)[:2]


class Encoder(FlatModel):
    """A bidirectional transformer encoder with the tree interface (see the module doc).

    Encoder(config, parameters, *, training=True, seed=0): parameters laid out as
    ``Encoder.create(config, rng).parameters`` (copied into one contiguous buffer; one
    dtype, float32 or float64). ``training`` turns dropout on (when config.dropout > 0) with
    masks from ``seed``.

    forward(src=(B, S) or (S,) ids, src_lengths=None, src_key_padding_mask=None)
      -> hidden states (B, S, n_embd) (or (S, n_embd)); rows at padded positions are
      computed but meaningless.
    backward(gradient_outputs, src=..., src_lengths=None, src_key_padding_mask=None)
      -> (grads tree, {"src": zeros, ...: zeros for the padding input given}).
    """

    _config_class = EncoderConfig
    _meta_key = "encoder_config"
    _repr_fields = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")

    @staticmethod
    def _layout(config):
        return stack_layout(config, (), config.n_layer, config.vocab_size, wte=True,
                            cross=False)

    @staticmethod
    def _init_std(config, path):
        residual = path[-2] == "c_proj" or path[-1] == "w2"  # w2: a MoE's expert c_proj
        return 0.02 / math.sqrt(2 * config.n_layer) if residual else 0.02

    @staticmethod
    def create(config, random_generator, *, dtype=np.float32, training=True, seed=0):
        """GPT-2 initialisation: linear weights and embeddings ~ N(0, 0.02^2), the residual
        projections (attn.c_proj, mlp.c_proj) ~ N(0, (0.02 / sqrt(2 n_layer))^2), biases 0,
        LayerNorm weights 1; draws from ``random_generator`` in tree order."""
        return Encoder._create(config, random_generator, dtype, training, seed)

    @staticmethod
    def load(path, *, dtype=None, training=True, seed=0):
        """The Encoder saved by ``save(path)`` (dtype: keep the stored one, or convert)."""
        return Encoder._load(path, dtype, training, seed)

    def _inputs(self, src, src_lengths, src_key_padding_mask):
        ids, squeeze = check_ids(src, "src", self.config.vocab_size, self.config.block_size)
        mask = source_mask(src_lengths, src_key_padding_mask, *ids.shape, squeeze)
        return ids, squeeze, mask

    def forward(self, src, src_lengths=None, src_key_padding_mask=None):
        ids, squeeze, mask = self._inputs(src, src_lengths, src_key_padding_mask)
        h, _ = encoder_forward(self.config, self._params, self._params["wte"]["weight"], ids,
                               mask, self._seed(None), self._dropping())
        return h[0] if squeeze else h

    def inspect(self, src, src_lengths=None, src_key_padding_mask=None, *, attentions=True,
                hidden_states=True):
        """The forward of src (B, S) (or (S,)) with what it computed inside, as an
        ``Inspection`` (logits None): attentions, per layer the attention probabilities
        (B, NH, S, S) (pre-dropout, padded keys exactly 0; computed in C from the forward's
        q, k and row logsumexp); hidden_states, the input of every block then the last
        block's output (before ln_f): n_layer + 1 arrays (B, S, C)."""
        ids, squeeze, mask = self._inputs(src, src_lengths, src_key_padding_mask)
        hid = [] if hidden_states else None
        _, cache = encoder_forward(self.config, self._params, self._params["wte"]["weight"],
                                   ids, mask, self._seed(None), self._dropping(), hidden=hid)
        att = stack_attentions(cache) if attentions else None
        if squeeze:
            att, hid = ([a[0] for a in v] if v is not None else None for v in (att, hid))
        return Inspection(attentions=att, hidden_states=hid)

    def routing_stats(self, src, src_lengths=None, src_key_padding_mask=None):
        """The mixture-of-experts routing of a forward of src (B, S) (or (S,)), per layer a
        dict (GPT.routing_stats: tokens_per_expert, dropped_per_expert, dropped, capacity,
        aux); [] for ffn="mlp". Padded positions are routed too (they are rows)."""
        ids, _, mask = self._inputs(src, src_lengths, src_key_padding_mask)
        if self.config.ffn != "moe":
            return []
        _, cache = encoder_forward(self.config, self._params, self._params["wte"]["weight"],
                                   ids, mask, self._seed(None), self._dropping())
        return [MoE.routing_stats((None, r)) for r in stack_routing(cache)]

    def aux_loss(self, src, src_lengths=None, src_key_padding_mask=None):
        """moe_aux_weight times the sum of the layers' load-balancing losses of a forward of
        src (0.0 for ffn="mlp"): what ``backward(..., with_aux=True)`` differentiates too."""
        stats = self.routing_stats(src, src_lengths, src_key_padding_mask)
        return self.config.moe_aux_weight * sum(s["aux"] for s in stats)

    def backward(self, gradient_outputs, src, src_lengths=None, src_key_padding_mask=None, *,
                 with_aux=False):
        """(grads tree, input zeros) for the upstream gradient of the output (B, S, C);
        with_aux=True (ffn="moe") adds the gradient of ``aux_loss``."""
        ids, squeeze, mask = self._inputs(src, src_lengths, src_key_padding_mask)
        g = same_dtype(self._flat, "the parameters", gradient_outputs, "gradient_outputs")
        want = ids.shape + (self.config.n_embd,)
        if g.shape != (want[1:] if squeeze else want):
            raise ValueError(f"gradient_outputs must have the output's shape "
                             f"{want[1:] if squeeze else want}, got {g.shape}")
        seed, dropping = self._seed(None), self._dropping()
        _, cache = encoder_forward(self.config, self._params, self._params["wte"]["weight"],
                                   ids, mask, seed, dropping, aux=bool(with_aux))
        grads, dwte = encoder_backward(self.config, self._params, self.config.vocab_size,
                                       g[None] if squeeze else g, cache, seed, dropping)
        grads = {"wte": {"weight": dwte}, **grads}
        inputs = {"src": np.zeros(np.shape(src), dtype=np.asarray(src).dtype)}
        for name, value in (("src_lengths", src_lengths),
                            ("src_key_padding_mask", src_key_padding_mask)):
            if value is not None:
                inputs[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
        return grads, inputs
