"""EncoderDecoder: the Transformer (encoder + decoder with cross-attention), with a
whole-model C fast path.

    memory = Encoder(src, source padding mask)                (see transformer_c.nn.Encoder)
    y = drop(wte_tgt[tgt] + positions)
    y = DecoderBlock_l(y, memory) for l < n_decoder_layer     (causal self-attention,
                                                               cross-attention to memory,
                                                               MLP; blocks.DecoderBlock)
    logits = ln_f(y) @ wte_tgt.T                              (tied head by default)

Pre-LN (default) or post-LN (the original Transformer: no ln_f in either stack). The
encoder's output is fed to the cross-attention of every decoder layer, with the source
padding masked; the decoder's self-attention is causal, so right-padded targets need no
mask: their positions are simply ignored by the loss.

Padding: the source by ``src_lengths`` (B,) or ``src_key_padding_mask`` bool (B, S),
**True = a real token** (transformer_c.data.key_padding_mask; the coursework's
transformer_c.data.pad_mask is its negation); targets by the pad id (config.pad_id, or
``ignore_index``): target positions whose tgt_out is the pad id are skipped and the loss
is the mean over the real target tokens.

The parameter tree (GPT-2 names; the decoder layers are Hugging Face GPT-2's with
add_cross_attention)::

    {"wte": {"weight": (V, C)}                                  (only with share_embeddings)
     "encoder": {"wte", "wpe", "h": [{"ln_1", "attn", "ln_2", "mlp"}, ...], "ln_f"},
     "decoder": {"wte", "wpe",
                 "h": [{"ln_1", "attn": {"c_attn", "c_proj"},
                        "ln_cross_attn",
                        "crossattention": {"q_attn": (C, C), "c_attn": (2C, C), "c_proj"},
                        "ln_2", "mlp": {"c_fc", "c_proj"}}, ...],
                 "ln_f"},
     "lm_head": {"weight": (tgt_vocab_size, C)}}                (only without tie_embeddings)

(no per-stack ``wte`` with shared embeddings, no ``wpe`` with sinusoidal positions, no
biases with bias=False, no ``ln_f`` with norm="post"). All parameters live in one
contiguous buffer (``flat_parameters``); ``loss_and_grads`` fills one contiguous gradient
buffer (``flat_grads``); the trees hold views of them.
"""
import dataclasses
import math

import numpy as np

from .. import _C
from .. import functional as F
from ..functional._util import as_int, same_dtype
from ._flat import FlatModel
from ..options import option_index
from ._config import BlockOptions, ConfigMixin, attention_c_fields, check_attention, \
    check_common, check_positive, ffn_c_fields, with_block_options
from .encoder import POSITIONS, EncoderConfig, encoder_backward, encoder_forward, source_mask
from .stack import Inspection, check_ids, check_targets, decoder_blocks, stack_attentions, stack_backward, \
    stack_forward, stack_layout, stack_routing

__all__ = ["EncoderDecoderConfig", "EncoderDecoder"]


@dataclasses.dataclass(frozen=True)
@with_block_options
class EncoderDecoderConfig(ConfigMixin):
    """Hyper-parameters of an EncoderDecoder (defaults: the base Transformer's sizes,
    pre-LN).

    src_vocab_size, tgt_vocab_size (None: the same as the source); block_size: the longest
    source and the longest target (rows of each wpe); n_encoder_layer, n_decoder_layer,
    n_head, n_embd (divisible by n_head); dropout: probability on the embeddings, the
    attention probabilities (self and cross) and every residual branch (training mode
    only); bias: biases in every linear layer and LayerNorm; position: "learned" or
    "sinusoidal"; norm: "pre" (a final ln_f per stack) or "post"; activation: "gelu_tanh",
    "gelu" or "relu"; share_embeddings: one token embedding ``wte`` for source and target
    (needs equal vocabularies); tie_embeddings: the output head is the target token
    embedding (else a separate lm_head); n_inner: the MLP width (None: 4 * n_embd);
    layer_norm_epsilon; position_base: the sinusoidal base; pad_id: the target id the loss
    ignores by default (transformer_c.data's <PAD> is 0).
    attention, sparse_block, sparse_window, sparse_stride, sparse_global, ffn, moe_experts,
    moe_top_k, moe_capacity, moe_aux_weight: the block options (BlockOptions) of both
    stacks: the encoder's and the decoder's self-attention (the cross-attention stays
    dense) and every layer's feed-forward sublayer, on the module path and the C paths
    alike (a mixture of experts routes each stack's tokens of a call together in training
    and in encode, every target token alone in KV-cached decoding). norm_type (every norm,
    ln_cross_attn included), qk_norm, n_kv_head and gated (the gated MLP with the config's
    activation: SwiGLU with "silu") apply to both stacks' self-attentions and MLPs, on the
    module path and the C paths (training, encode, KV-cached decoding) alike; the
    cross-attention keeps n_head kv heads and no QK-norm (nn.CrossAttention's q_attn (C, C)
    and c_attn (2C, C)). logit_softcap must be 0.
    """

    src_vocab_size: int = 32000
    tgt_vocab_size: int = None
    block_size: int = 512
    n_encoder_layer: int = 6
    n_decoder_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.1
    bias: bool = True
    position: str = "sinusoidal"
    norm: str = "pre"
    activation: str = "relu"
    share_embeddings: bool = False
    tie_embeddings: bool = True
    n_inner: int = None
    layer_norm_epsilon: float = 1e-5
    position_base: float = 10000.0
    pad_id: int = 0

    def __post_init__(self):
        if self.tgt_vocab_size is None:
            object.__setattr__(self, "tgt_vocab_size", self.src_vocab_size)
        check_positive(self, ("src_vocab_size", "tgt_vocab_size", "n_encoder_layer",
                             "n_decoder_layer"))
        check_common(self, POSITIONS)
        check_attention(self)
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"share_embeddings needs src_vocab_size == tgt_vocab_size, got "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        if isinstance(self.pad_id, (bool, np.bool_)) or not isinstance(self.pad_id,
                                                                         (int, np.integer)):
            raise ValueError(f"pad_id must be an integer, got {self.pad_id!r}")

    def c_fields(self):
        """This config as the C library's tc_encdec_config (tc.h): a dict of its field names
        (Vs, Vt, maxT, C, Le, Ld, NH, H, bias, position, norm, activation, share, tie, eps,
        pos_base, dropout, attention, sparse_block, sparse_window, sparse_stride,
        sparse_global, ffn, moe_experts, moe_top_k, moe_capacity, moe_aux_weight, norm_type,
        qk_norm, NKV (0: n_kv_head None), gated), option values as their C enum values; what
        the encoder-decoder bindings (_C.encdec_create, encdec_arena_bytes, encdec_kv_create)
        take."""
        return dict(Vs=int(self.src_vocab_size), Vt=int(self.tgt_vocab_size),
                    maxT=int(self.block_size), C=int(self.n_embd), Le=int(self.n_encoder_layer),
                    Ld=int(self.n_decoder_layer), NH=int(self.n_head), H=self.hidden_size,
                    bias=bool(self.bias),
                    position=option_index("position", self.position),
                    norm=option_index("norm", self.norm),
                    activation=option_index("activation", self.activation),
                    share=bool(self.share_embeddings), tie=bool(self.tie_embeddings),
                    eps=float(self.layer_norm_epsilon), pos_base=float(self.position_base),
                    dropout=float(self.dropout), **attention_c_fields(self),
                    **ffn_c_fields(self),
                    norm_type=option_index("norm_type", self.norm_type),
                    qk_norm=bool(self.qk_norm),
                    NKV=0 if self.n_kv_head is None else int(self.n_kv_head),
                    gated=bool(self.gated))

    def encoder_config(self):
        """The EncoderConfig of the encoder stack (an Encoder with this config has the
        tree of the "encoder" subtree, plus its own wte when embeddings are shared)."""
        return EncoderConfig(vocab_size=self.src_vocab_size, block_size=self.block_size,
                             n_layer=self.n_encoder_layer, n_head=self.n_head,
                             n_embd=self.n_embd, dropout=self.dropout, bias=self.bias,
                             position=self.position, norm=self.norm,
                             activation=self.activation, n_inner=self.n_inner,
                             layer_norm_epsilon=self.layer_norm_epsilon,
                             position_base=self.position_base,
                             **{n: getattr(self, n) for n in BlockOptions.__annotations__})



class EncoderDecoder(FlatModel):
    """An encoder-decoder transformer with the tree interface and a whole-model C fast path
    (see the module doc).

    EncoderDecoder(config, parameters, *, training=True, seed=0): parameters laid out as
    ``EncoderDecoder.create(config, rng).parameters`` (copied into one contiguous buffer;
    one dtype, float32 or float64). ``training`` turns dropout on (when config.dropout > 0)
    with masks from ``seed`` (model.eval() / model.train() as torch).

    forward(src=(B, S), tgt=(B, T), src_lengths=None, src_key_padding_mask=None)
      -> logits (B, T, tgt_vocab_size) (1-D src and tgt: (T, V)); tgt is the decoder input
      (e.g. <SOS> + target), position t predicts target token t.
    backward(gradient_outputs, src=, tgt=, ...) -> (grads tree, {"src", "tgt": zeros, ...}).
    loss_and_grads(src, tgt_in, tgt_out, ...) -> (mean cross-entropy over the real target
      tokens, grads tree): the whole forward and backward in C over one activation arena.
    """

    _config_class = EncoderDecoderConfig
    _meta_key = "encoder_decoder_config"
    _repr_fields = ("n_encoder_layer", "n_decoder_layer", "n_head", "n_embd", "src_vocab_size",
                    "tgt_vocab_size", "block_size")

    @staticmethod
    def _layout(config):
        c, share = config, config.share_embeddings
        out = [(("wte", "weight"), (c.src_vocab_size, c.n_embd))] if share else []
        out += stack_layout(c, ("encoder",), c.n_encoder_layer, c.src_vocab_size,
                            wte=not share, cross=False)
        out += stack_layout(c, ("decoder",), c.n_decoder_layer, c.tgt_vocab_size,
                            wte=not share, cross=True)
        if not c.tie_embeddings:
            out.append((("lm_head", "weight"), (c.tgt_vocab_size, c.n_embd)))
        return out

    @staticmethod
    def _init_std(config, path):
        if path[-2] != "c_proj" and path[-1] != "w2":  # w2: a MoE's expert c_proj
            return 0.02
        n = config.n_encoder_layer if path[0] == "encoder" else config.n_decoder_layer
        return 0.02 / math.sqrt(2 * n)

    @staticmethod
    def create(config, random_generator, *, dtype=np.float32, training=True, seed=0):
        """GPT-2 initialisation: every linear weight and embedding ~ N(0, 0.02^2), the
        residual projections (attn.c_proj, crossattention.c_proj, mlp.c_proj) ~ N(0, (0.02 /
        sqrt(2 n))^2) with n the layer count of their stack, biases 0, LayerNorm weights 1.
        Draws come from ``random_generator`` (a numpy.random.Generator) in tree order.
        dtype: float32 (default) or float64."""
        return EncoderDecoder._create(config, random_generator, dtype, training, seed)

    @staticmethod
    def load(path, *, dtype=None, training=True, seed=0):
        """The EncoderDecoder saved by ``save(path)`` (dtype: keep the stored one, or
        convert)."""
        return EncoderDecoder._load(path, dtype, training, seed)

    # ------------------------------------------------------------------ parameters by role

    def _src_wte(self):
        p = self._params
        return (p["wte"] if self.config.share_embeddings else p["encoder"]["wte"])["weight"]

    def _tgt_wte(self):
        p = self._params
        return (p["wte"] if self.config.share_embeddings else p["decoder"]["wte"])["weight"]

    def _head(self):
        return self._tgt_wte() if self.config.tie_embeddings else self._params["lm_head"]["weight"]

    # ------------------------------------------------------------------ inputs

    def _inputs(self, src, tgt, src_lengths, src_key_padding_mask, tgt_name="tgt"):
        c = self.config
        s, squeeze = check_ids(src, "src", c.src_vocab_size, c.block_size)
        t, _ = check_ids(tgt, tgt_name, c.tgt_vocab_size, c.block_size, squeeze=squeeze)
        if t.shape[0] != s.shape[0]:
            raise ValueError(f"{tgt_name} must have the batch size of src ({s.shape[0]}), got "
                             f"shape {np.shape(tgt)}")
        mask = source_mask(src_lengths, src_key_padding_mask, *s.shape, squeeze)
        return s, t, mask, squeeze

    def _targets(self, tgt_out, tgt_in, squeeze, ignore_index):
        return check_targets(tgt_out, "tgt_out", tgt_in, "tgt_in", squeeze, ignore_index,
                             self.config.tgt_vocab_size)

    def _ignore(self, ignore_index):
        return self.config.pad_id if ignore_index is None else as_int(ignore_index,
                                                                       "ignore_index")

    # ------------------------------------------------------------------ module path

    def _forward_cached(self, src, mask, tgt, seed, enc_hidden=None, dec_hidden=None,
                        aux=False):
        """(logits, cache); aux: the backward of MoE layers adds moe_aux_weight x their
        load-balancing losses' gradient (loss_and_grads; not backward)."""
        cfg, p = self.config, self._params
        dropping = self._dropping()
        memory, enc_cache = encoder_forward(cfg, p["encoder"], self._src_wte(), src, mask, seed,
                                            dropping, hidden=enc_hidden, aux=aux)
        d0 = 1 + 3 * cfg.n_encoder_layer
        blocks = decoder_blocks(cfg, p["decoder"], seed, dropping, d0, aux=aux)
        x, cache = stack_forward(cfg, p["decoder"], self._tgt_wte(), tgt, seed, dropping, d0,
                                 blocks=blocks, memory=memory, memory_key_padding_mask=mask,
                                 hidden=dec_hidden)
        return F.linear(x, self._head()), (enc_cache, cache, x)

    def _backward_cached(self, dlogits, cache, seed):
        cfg, p = self.config, self._params
        enc_cache, dec_cache, xf = cache
        dropping = self._dropping()
        dx, dhead, _ = F.linear_backward(dlogits, xf, self._head())
        dec, dwte_t, dmem = stack_backward(cfg, p["decoder"], cfg.tgt_vocab_size, dx, dec_cache,
                                           seed, dropping, 1 + 3 * cfg.n_encoder_layer)
        enc, dwte_s = encoder_backward(cfg, p["encoder"], cfg.src_vocab_size, dmem, enc_cache,
                                       seed, dropping)
        if cfg.tie_embeddings:
            dwte_t = dwte_t + dhead
        out = {}
        if cfg.share_embeddings:
            out["wte"] = {"weight": dwte_t + dwte_s}
        else:
            enc = {"wte": {"weight": dwte_s}, **enc}
            dec = {"wte": {"weight": dwte_t}, **dec}
        out["encoder"], out["decoder"] = enc, dec
        if not cfg.tie_embeddings:
            out["lm_head"] = {"weight": dhead}
        return out

    def encode(self, src, *, src_lengths=None, src_key_padding_mask=None):
        """The encoder's output (the memory the decoder attends to): (B, S, n_embd) (or
        (S, n_embd)); rows at padded positions are computed but meaningless."""
        c = self.config
        ids, squeeze = check_ids(src, "src", c.src_vocab_size, c.block_size)
        mask = source_mask(src_lengths, src_key_padding_mask, *ids.shape, squeeze)
        h, _ = encoder_forward(c, self._params["encoder"], self._src_wte(), ids, mask,
                               self._seed(None), self._dropping())
        return h[0] if squeeze else h

    def forward(self, src, tgt, src_lengths=None, src_key_padding_mask=None, *, fast=True):
        """logits (B, T, tgt_vocab_size) (or (T, V)) of the decoder input tgt given src;
        fast=True runs the whole forward in one C call, fast=False module by module."""
        s, t, mask, squeeze = self._inputs(src, tgt, src_lengths, src_key_padding_mask)
        seed = self._seed(None)
        if fast and s.size and t.size:
            logits = _C.encdec_forward(self._context(), s, mask, t, seed, self._dropping())
        else:
            logits = self._forward_cached(s, mask, t, seed)[0]
        return logits[0] if squeeze else logits

    def inspect(self, src, tgt, src_lengths=None, src_key_padding_mask=None, *,
                attentions=True, hidden_states=True, fast=True):
        """The forward of tgt (B, T) given src (B, S) (or unbatched) with what it computed
        inside, as an ``Inspection``: logits (B, T, V); attentions / cross_attentions, per
        decoder layer the self-attention (B, NH, T, T) and cross-attention (B, NH, T, S)
        probabilities; encoder_attentions, per encoder layer (B, NH, S, S) (all pre-dropout,
        masked keys exactly 0, computed in C from the forward's q, k and row logsumexp);
        hidden_states / encoder_hidden_states, the input of every block then the last
        block's output (before ln_f): (B, T, C) / (B, S, C). fast=True reads them out of
        the whole-model C forward (logits bitwise those of forward), fast=False out of the
        module path."""
        s, t, mask, squeeze = self._inputs(src, tgt, src_lengths, src_key_padding_mask)
        seed = self._seed(None)
        if fast and s.size and t.size:
            logits, *outs = _C.encdec_inspect(self._context(), s, mask, t, seed,
                                              self._dropping(), attentions, hidden_states)
            ea, sa, ca, eh, dh = (None if o is None else list(o) for o in outs)
        else:
            eh, dh = ([] if hidden_states else None for _ in range(2))
            logits, (enc_cache, cache, _) = self._forward_cached(s, mask, t, seed, eh, dh)
            ea, sa, ca = ((stack_attentions(c, i) if attentions else None)
                          for c, i in ((enc_cache, 0), (cache, 0), (cache, 1)))
        out = Inspection(logits=logits, attentions=sa, hidden_states=dh, cross_attentions=ca,
                         encoder_attentions=ea, encoder_hidden_states=eh)
        if squeeze:
            for f in dataclasses.fields(out):
                v = getattr(out, f.name)
                if v is not None:
                    setattr(out, f.name, v[0] if f.name == "logits" else [a[0] for a in v])
        return out

    def backward(self, gradient_outputs, src, tgt, src_lengths=None, src_key_padding_mask=None):
        s, t, mask, squeeze = self._inputs(src, tgt, src_lengths, src_key_padding_mask)
        g = same_dtype(self._flat, "the parameters", gradient_outputs, "gradient_outputs")
        want = t.shape + (self.config.tgt_vocab_size,)
        if g.shape != (want[1:] if squeeze else want):
            raise ValueError(f"gradient_outputs must have the logits' shape "
                             f"{want[1:] if squeeze else want}, got {g.shape}")
        seed = self._seed(None)
        _, cache = self._forward_cached(s, mask, t, seed)
        grads = self._backward_cached(g[None] if squeeze else g, cache, seed)
        inputs = {"src": np.zeros(np.shape(src), dtype=np.asarray(src).dtype),
                  "tgt": np.zeros(np.shape(tgt), dtype=np.asarray(tgt).dtype)}
        for name, value in (("src_lengths", src_lengths),
                            ("src_key_padding_mask", src_key_padding_mask)):
            if value is not None:
                inputs[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
        return grads, inputs

    # ------------------------------------------------------------------ training step

    def loss(self, src, tgt_in, tgt_out, *, src_lengths=None, src_key_padding_mask=None,
             ignore_index=None, seed=None):
        """Mean cross-entropy over the real target tokens (forward only, in C): tgt_out
        entries equal to ignore_index (default config.pad_id) are skipped."""
        s, t, mask, squeeze = self._inputs(src, tgt_in, src_lengths, src_key_padding_mask,
                                           "tgt_in")
        ignore_index = self._ignore(ignore_index)
        y = self._targets(tgt_out, t, squeeze, ignore_index)
        seed = self._seed(seed)
        if s.size and t.size:
            logits = _C.encdec_forward(self._context(), s, mask, t, seed, self._dropping())
        else:
            logits = self._forward_cached(s, mask, t, seed)[0]
        return F.cross_entropy(logits, y, ignore_index=ignore_index)

    def loss_and_grads(self, src, tgt_in, tgt_out, *, src_lengths=None,
                       src_key_padding_mask=None, ignore_index=None, seed=None, fast=True):
        """(loss, grads): the mean cross-entropy of the decoder's predictions over the real
        target tokens and its gradient with respect to every parameter.

        src (B, S) source ids, padded; src_lengths (B,) or src_key_padding_mask (B, S) bool
        (True = real token) marks the padding (neither: no padding). tgt_in (B, T) the
        decoder input (e.g. <SOS> + target), tgt_out (B, T) the tokens to predict (target +
        <EOS>), padded with ignore_index (default config.pad_id): those positions are
        skipped and the mean is over the rest. 1-D src / tgt_in / tgt_out: one example.
        seed: the dropout seed of this step (default self.seed). fast=True runs the whole
        forward and backward in C over one activation arena kept by the model (sized for
        the largest batch seen); fast=False the module-by-module path. Both agree to
        rounding. With ffn="moe" the loss adds moe_aux_weight times the load-balancing losses of
        every encoder and decoder layer (each routing its own stack's B*S or B*T tokens,
        padded source positions included), and the grads are its gradient.

        Returns (loss as a float, grads tree). The grads tree holds views of
        ``flat_grads``, which the next call overwrites: copy it to keep it.
        """
        s, t, mask, squeeze = self._inputs(src, tgt_in, src_lengths, src_key_padding_mask,
                                           "tgt_in")
        ignore_index = self._ignore(ignore_index)
        y = self._targets(tgt_out, t, squeeze, ignore_index)
        seed = self._seed(seed)
        if fast and s.size and t.size:
            loss = _C.encdec_loss_and_grads(self._context(), s, mask, t, y, ignore_index, seed,
                                            self._dropping())
            return loss, self._grads_tree()
        logits, cache = self._forward_cached(s, mask, t, seed, aux=True)
        loss = F.cross_entropy(logits, y, ignore_index=ignore_index)
        loss += self.config.moe_aux_weight * sum(r.aux for r in stack_routing(cache[0]) +
                                                 stack_routing(cache[1]))
        if math.isnan(loss):
            dlogits = np.zeros_like(logits)
        else:
            dlogits = F.cross_entropy_backward(logits, y, ignore_index=ignore_index)
        return loss, self._store_grads(self._backward_cached(dlogits, cache, seed))

    # ------------------------------------------------------------------ the C fast path

    def _context(self):
        if self._ctx is None:
            self._ctx = _C.encdec_create(self._flat, self.flat_grads, self.config.c_fields())
        return self._ctx

    def activation_bytes(self, batch_size, src_len, tgt_len):
        """Bytes of the activation arena loss_and_grads uses for batch_size sources of
        src_len tokens and targets of tgt_len tokens (what the forward keeps for the backward
        plus the backward's scratch; not the parameters or gradients)."""
        return _C.encdec_arena_bytes(self._flat.dtype == np.float64, self.config.c_fields(),
                                     as_int(batch_size, "batch_size"),
                                     as_int(src_len, "src_len"), as_int(tgt_len, "tgt_len"))
