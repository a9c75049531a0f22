"""GPT: a decoder-only transformer with GPT-2's parameter layout and a whole-model C fast path.

    x = drop(wte[idx] + wpe[t])                       (learned positions; or sinusoidal / RoPE)
    x = Block_l(x) for l < n_layer                    (pre-LN by default, see blocks.Block)
    logits = ln_f(x) @ wte.T                          (lm_head tied to wte by default)

The parameter tree mirrors a GPT-2 state dict (``transformer.`` prefix dropped)::

    {"wte": {"weight": (V, C)}, "wpe": {"weight": (block_size, C)},
     "h": [{"ln_1": {"weight", "bias"},
            "attn": {"c_attn": {"weight": (3C, C), "bias": (3C,)},
                     "c_proj": {"weight": (C, C), "bias": (C,)}},
            "ln_2": {"weight", "bias"},
            "mlp": {"c_fc": {"weight": (4C, C), "bias"}, "c_proj": {"weight": (C, 4C), "bias"}}},
           ...],
     "ln_f": {"weight", "bias"}}

Linear weights are (out, in) as torch.nn.Linear (Hugging Face's Conv1D stores the
transpose; from_huggingface transposes). Options drop keys: no ``wpe`` unless
position == "learned", no biases with bias=False, no ``ln_f`` with norm == "post" (the last
block already ends in a LayerNorm, as GPT-1), and an ``lm_head`` {"weight": (V, C)} when the
embeddings are not tied; qk_norm adds ``attn.q_norm`` and ``attn.k_norm`` {"weight":
(head_size,)} after ``attn.c_proj`` (with n_kv_head too: k_norm normalises the n_kv_head
key heads); n_kv_head makes ``attn.c_attn`` (C + 2 KC, C), KC = n_kv_head * head_size. norm_type="rmsnorm" makes every ln_* an RMS norm (same
keys); logit_softcap > 0 caps the logits (c * tanh(logits / c)).

All parameters live in one contiguous buffer (``flat_parameters``) and the tree holds views
of it; ``loss_and_grads`` fills one contiguous gradient buffer (``flat_grads``) likewise, so
an optimizer kernel can update the whole model in one call.
"""
import dataclasses
import json
import math
import os

import numpy as np

from .. import _C
from .. import functional as F
from ..functional._util import as_ids, as_int, same_dtype
from ..options import POSITIONS, option_index
from ._config import ConfigMixin, attention_c_fields, check_attention, check_common, \
    check_positive, ffn_c_fields, norm_c_fields, with_block_options
from ._flat import FlatModel
from .attention import check_head_mask
from .feedforward import MoE
from .stack import Inspection, check_ids, stack_attentions, stack_backward, stack_blocks, \
    stack_forward, stack_layout, stack_routing

__all__ = ["GPTConfig", "GPT"]



@dataclasses.dataclass(frozen=True)
@with_block_options
class GPTConfig(ConfigMixin):
    """Hyper-parameters of a GPT (defaults: GPT-2 small, 124M parameters).

    vocab_size, block_size (the longest sequence; rows of wpe), n_layer, n_head, n_embd
    (divisible by n_head); dropout: probability on the embeddings, the attention
    probabilities and both residual branches of every block (nanoGPT's places; active only
    in training mode); bias: biases in every linear
    layer and LayerNorm; position: "learned" (wpe), "sinusoidal" (fixed table added to the
    embeddings), "rope" (rotary, applied to q and k in every attention layer) or "none" (no
    position information: only the causal mask tells positions apart); norm:
    "pre" (GPT-2) or "post" (GPT-1 / the original Transformer; no ln_f); activation:
    "gelu_tanh" (GPT-2), "gelu" (exact erf) or "relu"; tie_embeddings: the output
    projection is wte (else a separate lm_head). n_inner: the MLP width (None: 4 * n_embd).
    layer_norm_epsilon; position_base: the base of the sinusoidal table and of RoPE;
    rope_interleaved: RoPE pairs (2i, 2i+1) instead of (i, i + head_size/2).
    attention, sparse_block, sparse_window, sparse_stride, sparse_global, ffn, moe_experts,
    moe_top_k, moe_capacity, moe_aux_weight, norm_type, qk_norm, logit_softcap, n_kv_head,
    gated: the block options (BlockOptions); any combination the checks accept runs on
    the module path, the C training path and the KV-cached decoder (qk_norm with
    n_kv_head < n_head included: q_norm over the n_head query heads, k_norm over the
    n_kv_head key heads, both gains (head_size,)).
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    position: str = "learned"
    norm: str = "pre"
    activation: str = "gelu_tanh"
    tie_embeddings: bool = True
    n_inner: int = None
    layer_norm_epsilon: float = 1e-5
    position_base: float = 10000.0
    rope_interleaved: bool = False

    _softcap_logits = True  # class data (not a field): logit_softcap caps the LM logits

    def __post_init__(self):
        check_positive(self, ("vocab_size", "n_layer"))
        check_common(self, POSITIONS)
        check_attention(self)
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"position='rope' needs an even head size, got n_embd / n_head = "
                             f"{self.head_size}")

    def c_fields(self):
        """This config as the C library's tc_gpt_config (tc.h): a dict of its field names
        (V, maxT, C, L, NH, H, bias, position, norm, activation, tie, eps, pos_base,
        rope_interleaved, dropout, attention, sparse_block, sparse_window, sparse_stride,
        sparse_global, ffn, moe_experts, moe_top_k, moe_capacity, moe_aux_weight,
        norm_type, qk_norm, logit_softcap, NKV (0: n_kv_head None), gated), option values as
        their C enum values; what the GPT bindings (_C.gpt_create, gpt_arena_bytes,
        gpt_kv_create) take."""
        return dict(V=int(self.vocab_size), maxT=int(self.block_size), C=int(self.n_embd),
                    L=int(self.n_layer), NH=int(self.n_head), H=self.hidden_size,
                    bias=bool(self.bias),
                    position=option_index("position", self.position),
                    norm=option_index("norm", self.norm),
                    activation=option_index("activation", self.activation),
                    tie=bool(self.tie_embeddings), eps=float(self.layer_norm_epsilon),
                    pos_base=float(self.position_base),
                    rope_interleaved=bool(self.rope_interleaved), dropout=float(self.dropout),
                    **attention_c_fields(self), **ffn_c_fields(self),
                    **norm_c_fields(self),
                    NKV=0 if self.n_kv_head is None else int(self.n_kv_head),
                    gated=bool(self.gated))


def _layout(cfg):
    """[(path, shape)] of every parameter in tree order (the order of the flat buffer)."""
    out = stack_layout(cfg, (), cfg.n_layer, cfg.vocab_size, wte=True, cross=False)
    if not cfg.tie_embeddings:
        out.append((("lm_head", "weight"), (cfg.vocab_size, cfg.n_embd)))
    return out


class GPT(FlatModel):
    """A GPT with the tree interface and a whole-model C fast path (see the module doc).

    GPT(config, parameters, *, training=True, seed=0): parameters is a tree laid out as
    ``GPT.create(config, rng).parameters`` (copied into one contiguous buffer; all leaves of
    one dtype, float32 or float64). ``training`` turns dropout on (when config.dropout > 0);
    ``seed`` picks the dropout masks (forward and backward regenerate the same ones); both
    are plain attributes (``model.eval()`` / ``model.train()`` set ``training`` as torch).

    forward(idx=(B, T) or (T,) integer ids) -> logits (B, T, V) or (T, V), T <= block_size.
    backward(gradient_outputs, idx=...) -> (grads tree, {"idx": zeros}).
    loss_and_grads(idx, targets) -> (mean cross-entropy, grads tree): the whole forward and
    backward in C over one preallocated activation arena.
    """

    _config_class = GPTConfig
    _meta_key = "gpt_config"
    _repr_fields = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")
    _load_hint = " (for a Hugging Face GPT-2 directory use GPT.from_huggingface)"
    _layout = staticmethod(_layout)

    @staticmethod
    def _init_std(config, path):
        residual = path[-2] == "c_proj" or path[-1] == "w2"  # w2: a MoE's expert c_proj
        return 0.02 / math.sqrt(2 * config.n_layer) if residual else 0.02

    # ------------------------------------------------------------------ construction

    @staticmethod
    def create(config, random_generator, *, dtype=np.float32, training=True, seed=0):
        """GPT-2 initialisation: every linear weight and both embeddings ~ N(0, 0.02^2), the
        residual projections (attn.c_proj, mlp.c_proj) ~ N(0, (0.02 / sqrt(2 n_layer))^2),
        biases 0, LayerNorm weights 1. Draws come from ``random_generator`` (a
        numpy.random.Generator) in tree order, so a seed reproduces the model.
        dtype: float32 (default) or float64.
        """
        return GPT._create(config, random_generator, dtype, training, seed)

    @staticmethod
    def load(path, *, dtype=None, training=True, seed=0):
        """The GPT saved by ``save(path)`` (dtype: keep the stored one, or convert)."""
        return GPT._load(path, dtype, training, seed)

    # ------------------------------------------------------------------ module path

    def _head_weight(self):
        return self._params["wte" if self.config.tie_embeddings else "lm_head"]["weight"]

    def _check_idx(self, idx, name="idx"):
        return check_ids(idx, name, self.config.vocab_size, self.config.block_size)

    def _forward_cached(self, ids, seed, head_mask=None, aux=False):
        cfg, p, dropping = self.config, self._params, self._dropping()
        blocks = stack_blocks(cfg, p, seed, dropping, causal=True, head_mask=head_mask,
                              aux=aux)
        x, cache = stack_forward(cfg, p, p["wte"]["weight"], ids, seed, dropping,
                                 blocks=blocks)
        logits = self._capped(F.linear(x, self._head_weight()))
        return logits, (cache, x, logits)

    def _capped(self, logits):
        """logits soft-capped by config.logit_softcap (F.softcap; themselves when 0)."""
        cap = self.config.logit_softcap
        return F.softcap(logits, cap) if cap else logits

    def _backward_cached(self, dlogits, cache, seed):
        cfg = self.config
        cache, xf, logits = cache
        if cfg.logit_softcap:
            dlogits = F.softcap_backward(dlogits, logits, cfg.logit_softcap)
        dx, dhead, _ = F.linear_backward(dlogits, xf, self._head_weight())
        grads, dwte, _ = stack_backward(cfg, self._params, cfg.vocab_size, dx, cache, seed,
                                        self._dropping())
        out = {"wte": {"weight": dwte + dhead if cfg.tie_embeddings else dwte}, **grads}
        if not cfg.tie_embeddings:
            out["lm_head"] = {"weight": dhead}
        return out

    def _head_mask(self, head_mask):
        """head_mask checked: None or float64 (n_layer, n_head)."""
        return check_head_mask(head_mask, (self.config.n_layer, self.config.n_head))

    def with_head_mask(self, head_mask):
        """A copy of this model (same config, mode and seed; its own buffers) in which
        head h of layer l is scaled by head_mask[l, h] (0 ablates it, 1 keeps it): the HS
        input columns h*HS .. (h+1)*HS of layer l's attn.c_proj.weight (C, C), the
        columns that read head h's output, are multiplied by head_mask[l, h].

        head_mask: (n_layer, n_head) numbers. The copy's forward (fast or module path)
        equals this model's forward with ``head_mask=``: the module path computes
        (m y_h) W_h^T, the copy y_h (m W_h)^T (equal to rounding; bitwise when every entry
        is 0 or 1). This is how the C fast path applies a head mask."""
        hm = self._head_mask(head_mask)
        if hm is None:
            raise ValueError("head_mask must be an (n_layer, n_head) array, got None")
        new = self._from_flat(self.config, self._flat.copy(), self.training, self.seed)
        hs = self.config.n_embd // self.config.n_head
        for layer, h in enumerate(new._params["h"]):
            w = h["attn"]["c_proj"]["weight"]
            w *= np.repeat(hm[layer], hs).astype(w.dtype)
        return new

    def _row_offset(self, row_offset, fast):
        """row_offset as an int >= 0; ValueError when it would need the module-by-module path
        (fast=False) to draw dropout masks at an offset, which it cannot."""
        row_offset = as_int(row_offset, "row_offset", 0)
        if row_offset and not fast and self._dropping():
            raise ValueError("row_offset with dropout needs fast=True: the module-by-module "
                             "path draws the masks of its batch from row 0")
        return row_offset

    def forward(self, idx, *, fast=True, row_offset=0, head_mask=None):
        """logits (B, T, V) (or (T, V)) of idx (B, T) (or (T,)); fast=True runs the whole
        forward in one C call (over the model's arena), fast=False module by module.
        row_offset (int >= 0, fast path): idx's rows are rows [row_offset, row_offset + B) of
        a global batch, and draw that batch's dropout masks of those rows (as
        :meth:`loss_and_grads`). head_mask: None or (n_layer, n_head), each head's attention
        output multiplied by its entry before attn.c_proj (0 ablates the head; the fast
        path runs :meth:`with_head_mask`'s copy)."""
        ids, squeeze = self._check_idx(idx)
        seed = self._seed(None)
        row_offset = self._row_offset(row_offset, fast)
        hm = self._head_mask(head_mask)
        if fast and ids.size:
            model = self if hm is None else self.with_head_mask(hm)
            logits = _C.gpt_forward(model._context(), ids, seed, self._dropping(), row_offset)
        else:
            logits = self._forward_cached(ids, seed, hm)[0]
        return logits[0] if squeeze else logits

    def inspect(self, idx, *, attentions=True, hidden_states=True, fast=True, head_mask=None):
        """The forward of idx (B, T) (or (T,)) with what it computed inside, as an
        ``Inspection``: logits (B, T, V); attentions, per layer the attention probabilities
        (B, NH, T, T) (pre-dropout; computed in C from the q, k and row logsumexp the
        forward keeps); hidden_states, the input of every block then the last block's
        output (before ln_f): n_layer + 1 arrays (B, T, C). fast=True reads them out of
        the whole-model C forward (logits bitwise those of forward), fast=False out of the
        module path. Training is unaffected: nothing is kept unless asked for here.
        head_mask: None or (n_layer, n_head), as :meth:`forward`."""
        ids, squeeze = self._check_idx(idx)
        seed = self._seed(None)
        hm = self._head_mask(head_mask)
        if fast and ids.size:
            model = self if hm is None else self.with_head_mask(hm)
            logits, att, hid = _C.gpt_inspect(model._context(), ids, seed, self._dropping(),
                                              attentions, hidden_states)
            att = None if att is None else list(att)
            hid = None if hid is None else list(hid)
        else:
            cfg, p, dropping = self.config, self._params, self._dropping()
            hid = [] if hidden_states else None
            x, cache = stack_forward(cfg, p, p["wte"]["weight"], ids, seed, dropping,
                                     blocks=stack_blocks(cfg, p, seed, dropping, causal=True,
                                                         head_mask=hm),
                                     hidden=hid)
            logits = self._capped(F.linear(x, self._head_weight()))
            att = stack_attentions(cache) if attentions else None
        if squeeze:
            logits = logits[0]
            att, hid = ([a[0] for a in v] if v is not None else None for v in (att, hid))
        return Inspection(logits=logits, attentions=att, hidden_states=hid)

    def backward(self, gradient_outputs, idx):
        ids, squeeze = self._check_idx(idx)
        g = same_dtype(self._flat, "the parameters", gradient_outputs, "gradient_outputs")
        want = ids.shape[1:] + (self.config.vocab_size,) if squeeze else \
            ids.shape + (self.config.vocab_size,)
        if g.shape != want:
            raise ValueError(f"gradient_outputs must have the logits' shape {want}, got {g.shape}")
        seed = self._seed(None)
        logits, cache = self._forward_cached(ids, seed)
        grads = self._backward_cached(g[None] if squeeze else g, cache, seed)
        return grads, {"idx": np.zeros_like(np.asarray(idx))}

    def routing_stats(self, idx, *, fast=True):
        """The mixture-of-experts routing of a forward of idx (B, T) (or (T,)), per layer a
        dict: tokens_per_expert (E,) int64 (choices each expert ran on), dropped_per_expert
        (E,) int64, dropped (int), capacity (int), aux (float, the layer's load-balancing
        loss, unweighted). [] for ffn="mlp". fast=True reads it out of the whole-model C
        forward (tc_gpt_moe_routing), fast=False out of the module path's (the same
        routing). transformer_c.viz.plot_routing plots it."""
        ids, _ = self._check_idx(idx)
        if self.config.ffn != "moe":
            return []
        seed = self._seed(None)
        if fast and ids.size:
            _C.gpt_forward(self._context(), ids, seed, self._dropping(), 0)
            tokens, dropped, capacity, aux = _C.gpt_moe_routing(self._context())
            return [{"tokens_per_expert": tokens[l], "dropped_per_expert": dropped[l],
                     "dropped": int(dropped[l].sum()), "capacity": int(capacity[l]),
                     "aux": float(aux[l])} for l in range(self.config.n_layer)]
        _, (cache, _, _) = self._forward_cached(ids, seed)
        return [MoE.routing_stats((None, r)) for r in stack_routing(cache)]

    # ------------------------------------------------------------------ training step

    def _check_targets(self, targets, ids, squeeze, ignore_index):
        t = as_ids(targets, "targets")
        t = t[None] if squeeze and t.ndim == 1 else t
        if t.shape != ids.shape:
            want = ids.shape[1:] if squeeze else ids.shape
            raise ValueError(f"targets must have the shape of idx {want}, "
                             f"got {np.shape(targets)}")
        t = np.ascontiguousarray(t, dtype=np.int64)
        bad = (t != ignore_index) & ((t < 0) | (t >= self.config.vocab_size))
        if bad.any():
            raise IndexError(f"targets holds id {t[bad][0]}, outside [0, {self.config.vocab_size}) "
                             f"and not ignore_index ({ignore_index})")
        return t

    def loss(self, idx, targets, *, ignore_index=-100, seed=None, row_offset=0, head_mask=None):
        """Mean cross-entropy of the next-token predictions (forward only, in C).

        idx, targets: (B, T) or (T,) ids; targets equal to ignore_index are skipped. seed,
        row_offset: as :meth:`loss_and_grads`. head_mask: None or (n_layer, n_head), as
        :meth:`forward`."""
        ids, squeeze = self._check_idx(idx)
        t = self._check_targets(targets, ids, squeeze, as_int(ignore_index, "ignore_index"))
        seed = self._seed(seed)
        row_offset = self._row_offset(row_offset, True)
        hm = self._head_mask(head_mask)
        if ids.size:
            model = self if hm is None else self.with_head_mask(hm)
            logits = _C.gpt_forward(model._context(), ids, seed, self._dropping(), row_offset)
        else:
            logits = self._forward_cached(ids, seed, hm)[0]
        return F.cross_entropy(logits, t, ignore_index=ignore_index)

    def loss_and_grads(self, idx, targets, *, ignore_index=-100, seed=None, fast=True,
                       row_offset=0, head_mask=None):
        """(loss, grads): the mean cross-entropy of next-token predictions and its gradient
        with respect to every parameter.

        idx, targets: (B, T) or (T,) integer ids, T <= block_size; targets equal to
        ignore_index (default -100) are skipped (the mean is over the rest). seed: the
        dropout seed of this step (default: self.seed; pass e.g. the step number so every
        step draws new masks). fast=True runs the whole forward and backward in C over one
        activation arena kept by the model (sized for the largest B*T seen); fast=False runs
        the module-by-module path (the same kernels called from Python). Both agree to
        rounding.

        row_offset (int >= 0, default 0): idx's B rows are rows [row_offset, row_offset + B)
        of a global batch with this seed, and each row draws the dropout masks it has there.
        Calls over consecutive row ranges of a batch, each with its first row's index (the
        ranks of data-parallel training, micro-batches), draw exactly the masks of one call
        over the whole batch: their losses and gradients, weighted by their counted targets
        and summed, are the whole batch's to rounding. Needs fast=True when dropping.

        head_mask: None or (n_layer, n_head), as :meth:`forward` (the loss is the masked
        model's, the gradients its gradients with respect to these parameters).

        With ffn="moe" the loss is the cross-entropy plus moe_aux_weight times the sum of
        the layers' load-balancing losses (``routing_stats`` reports them), and the grads
        are its gradient; both paths route (capacity, dropped tokens, the aux fractions)
        over the call's B*T tokens, so the fast path runs such a batch in one pass (no
        data-parallel split over threads) and its routing does not depend on the thread
        count. Calls over row ranges (row_offset: ranks, micro-batches) then route each
        range on its own: they share the whole batch's dropout masks, not its routing.

        Returns (loss as a float, grads tree). The grads tree holds views of
        ``flat_grads``, which the next call overwrites: copy it to keep it.
        """
        ids, squeeze = self._check_idx(idx)
        ignore_index = as_int(ignore_index, "ignore_index")
        t = self._check_targets(targets, ids, squeeze, ignore_index)
        seed = self._seed(seed)
        row_offset = self._row_offset(row_offset, fast)
        hm = self._head_mask(head_mask)
        if fast and ids.size and hm is not None:
            loss = self._masked_loss_and_grads(ids, t, ignore_index, seed, row_offset, hm)
        elif fast and ids.size:
            loss = self._fast_loss_and_grads(ids, t, ignore_index, seed, row_offset)
        else:
            logits, cache = self._forward_cached(ids, seed, hm, aux=True)
            loss = F.cross_entropy(logits, t, ignore_index=ignore_index)
            loss += self.config.moe_aux_weight * sum(r.aux for r in stack_routing(cache[0]))
            if math.isnan(loss):
                dlogits = np.zeros_like(logits)
            else:
                dlogits = F.cross_entropy_backward(logits, t, ignore_index=ignore_index)
            grads = self._backward_cached(dlogits, cache, seed)
            self._store_grads(grads)
        return loss, self._grads_tree()

    # ------------------------------------------------------------------ the C fast path

    def _context(self):
        if self._ctx is None:
            self._ctx = _C.gpt_create(self._flat, self.flat_grads, self.config.c_fields())
        return self._ctx

    def _fast_loss_and_grads(self, ids, targets, ignore_index, seed, row_offset=0):
        return _C.gpt_loss_and_grads(self._context(), ids, targets, ignore_index, seed,
                                     self._dropping(), row_offset)

    def _masked_loss_and_grads(self, ids, targets, ignore_index, seed, row_offset, hm):
        """The fast path with a head mask, on with_head_mask's copy W' = W m (c_proj's head-h
        columns scaled). Its gradients are the masked model's but for c_proj's weight: the
        copy gets dL/dW' = dout^T y_h, the masked model dL/dW_h = dout^T (m y_h) = m dL/dW',
        so those columns are scaled by m once more; everything upstream sees
        dout W' = m dout W_h, as the masked model."""
        model = self.with_head_mask(hm)
        loss = model._fast_loss_and_grads(ids, targets, ignore_index, seed, row_offset)
        np.copyto(self.flat_grads, model.flat_grads)
        hs = self.config.n_embd // self.config.n_head
        for layer, h in enumerate(self._grads_tree()["h"]):
            g = h["attn"]["c_proj"]["weight"]
            g *= np.repeat(hm[layer], hs).astype(g.dtype)
        return loss

    def activation_bytes(self, batch_size, seq_len):
        """Bytes of the activation arena loss_and_grads uses for (batch_size, seq_len)
        tokens (everything the forward keeps for the backward plus the backward's scratch;
        not the parameters or gradients; with ffn="moe" the routing and every expert's
        rows at the capacity of batch_size * seq_len tokens)."""
        return _C.gpt_arena_bytes(self._flat.dtype == np.float64, self.config.c_fields(),
                                  as_int(batch_size, "batch_size"), as_int(seq_len, "seq_len"))

    # ------------------------------------------------------------------ checkpoints

    @staticmethod
    def from_huggingface(path, *, dtype=np.float32, training=False, seed=0):
        """A GPT from a local Hugging Face GPT-2 directory (config.json + model.safetensors,
        as ``GPT2LMHeadModel.save_pretrained`` writes it). Nothing is downloaded: a hub name
        such as "gpt2" is a FileNotFoundError saying how to get the directory.

        The Conv1D weights (stored (in, out)) are transposed to (out, in). The model starts
        in eval mode (as from_pretrained), with dropout = the checkpoint's resid_pdrop.
        dtype: float32 (default) or float64.
        """
        from safetensors.numpy import load_file

        path = os.fspath(path)
        with open(_hf_file(path, "config.json")) as f:
            hf = json.load(f)
        config = _config_from_hf(hf)
        raw = load_file(_hf_file(path, "model.safetensors"))
        tensors = {}
        for name, t in raw.items():
            key = name[len("transformer."):] if name.startswith("transformer.") else name
            if key.endswith(".attn.bias") or key.endswith(".attn.masked_bias"):
                continue  # the causal-mask buffers of old checkpoints
            if key == "lm_head.weight" and config.tie_embeddings:
                continue
            tensors[key] = t.astype(np.float64) if t.dtype == np.float16 else t
        conv1d = {f"h.{i}.{m}.weight" for i in range(config.n_layer)
                  for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
        return GPT._from_state_dict(config, tensors, dtype, training, seed, transpose=conv1d)


def _hf_file(path, name):
    """path/name; FileNotFoundError saying what to pass when ``path`` is not a directory
    (a hub name such as "gpt2") or lacks the file."""
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"GPT.from_huggingface reads a local directory (config.json + model.safetensors); "
            f"{path!r} is not one. Nothing is downloaded: on a machine with internet get the "
            f"files with `hf download {path} --local-dir DIR` "
            "(huggingface_hub), or save_pretrained() the model and its tokenizer into DIR, "
            "then pass DIR")
    file = os.path.join(path, name)
    if not os.path.isfile(file):
        hint = (" (pytorch_model.bin is not read: save with safe_serialization=True)"
                if name.endswith(".safetensors")
                and os.path.isfile(os.path.join(path, "pytorch_model.bin")) else "")
        raise FileNotFoundError(f"{path} holds no {name}{hint}")
    return file


_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                   "gelu_fast": None, "gelu": "gelu", "relu": "relu"}


def _config_from_hf(hf):
    """GPTConfig from a Hugging Face GPT2Config dict (ValueError for what GPT cannot run)."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"from_huggingface reads GPT-2 checkpoints, got model_type "
                         f"{hf.get('model_type')!r}")
    act = _HF_ACTIVATIONS.get(hf.get("activation_function", "gelu_new"))
    if act is None:
        raise ValueError(f"unsupported activation_function {hf.get('activation_function')!r}")
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("add_cross_attention", False)):
        if hf.get(key, ok) != ok:
            raise ValueError(f"unsupported GPT-2 option {key}={hf[key]!r}")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", 1024),
                     n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                     dropout=float(hf.get("resid_pdrop", 0.0)), bias=True, position="learned",
                     norm="pre", activation=act,
                     tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
                     n_inner=hf.get("n_inner"),
                     layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)))

