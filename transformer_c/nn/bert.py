"""Bert: an encoder-only (BERT-style) model for sentence-pair classification and masked
language modelling, over the Encoder's stack (nn.stack, the same blocks and kernels).

    x = drop(wte[src] + wpe[s] + wtt[token_types])       (token + position + segment)
    h = Encoder stack(x, key-padding mask)               (bidirectional, pre- or post-LN)
    pooled = h[:, 0]              (pooling="cls": the [CLS] token's state)
           | mean of h over the real tokens              (pooling="mean")
    logits = classifier(drop(pooled))                    (B, num_labels)
    mlm_logits = ln_1(act(c_fc(h))) @ W.T + mlm.bias     (B, L, vocab_size); W = wte when
                                                          tie_mlm (default, as BERT), else
                                                          mlm.decoder

Inputs: ``src`` (B, L) token ids (e.g. from transformer_c.data.encode_pair: [CLS] a [SEP]
b [SEP]), ``token_types`` (B, L) segment ids in [0, type_vocab_size) (None: all 0),
padding by ``src_lengths`` (B,) or ``src_key_padding_mask`` bool (B, L), True = a real
token (as nn.Encoder). Padded positions are never attended to and never pooled, so a
padded batch gives the unpadded rows' outputs (to rounding).

The parameter tree: the Encoder's ({"wte", "wpe", "h": [...], "ln_f"}) plus
``wtt`` {"weight": (type_vocab_size, C)}, ``mlm`` {"c_fc": (C, C) + bias, "ln_1",
"bias": (V,), "decoder": (V, C) only without tie_mlm} and ``classifier`` {"weight":
(num_labels, C), "bias": (num_labels,)} (no biases with bias=False). One contiguous buffer
(``flat_parameters``); ``loss_and_grads`` / ``mlm_loss_and_grads`` fill ``flat_grads``.

Dropout sites (seeded as the Encoder's): 0 the embeddings, 1 + 3l .. 3 + 3l layer l,
1 + 3 n_layer the pooled vector before the classifier.
"""
import dataclasses
import math

import numpy as np

from .. import functional as F
from ..functional._util import as_ids, as_int, same_dtype
from ..options import check_option
from ._config import ConfigMixin, check_attention, check_common, check_positive, \
    with_block_options
from ._flat import FlatModel
from .blocks import site_seed
from .encoder import POSITIONS, source_mask
from .layers import Activation, Dense, Norm
from .stack import _add, check_ids, check_targets, stack_backward, stack_blocks, \
    stack_forward, stack_layout, stack_routing

__all__ = ["BertConfig", "Bert"]


@dataclasses.dataclass(frozen=True)
@with_block_options
class BertConfig(ConfigMixin):
    """Hyper-parameters of a Bert (defaults: a small BERT for a CPU).

    vocab_size, block_size (the longest input; rows of wpe), n_layer, n_head, n_embd,
    dropout (embeddings, attention probabilities, residual branches, the pooled vector;
    training mode only), bias, position ("learned" or "sinusoidal"), norm ("pre" or
    "post"), activation (transformer_c.options.ACTIVATIONS; also the MLM head's), n_inner,
    layer_norm_epsilon, position_base: as EncoderConfig. type_vocab_size: segment ids
    (2: sentence a and b); num_labels: classes of the classifier; pooling: "cls" or "mean"
    (transformer_c.options.POOLINGS); tie_mlm: the MLM output layer is the token embedding
    (else its own mlm.decoder). attention, sparse_block, sparse_window, sparse_stride,
    sparse_global, ffn, moe_experts, moe_top_k, moe_capacity, moe_aux_weight: the block
    options (BlockOptions; attention is bidirectional, padded keys stay
    masked; loss_and_grads / mlm_loss_and_grads add moe_aux_weight times the layers'
    load-balancing losses to the loss and its gradient).
    """

    vocab_size: int = 8192
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1
    bias: bool = True
    position: str = "learned"
    norm: str = "pre"
    activation: str = "gelu"
    n_inner: int = None
    layer_norm_epsilon: float = 1e-5
    position_base: float = 10000.0
    type_vocab_size: int = 2
    num_labels: int = 3
    pooling: str = "cls"
    tie_mlm: bool = True

    def __post_init__(self):
        check_positive(self, ("vocab_size", "n_layer", "type_vocab_size", "num_labels"))
        check_common(self, POSITIONS)
        check_attention(self)
        check_option("pooling", self.pooling)
        if not isinstance(self.tie_mlm, (bool, np.bool_)):
            raise ValueError(f"tie_mlm must be a bool, got {self.tie_mlm!r}")


class Bert(FlatModel):
    """An encoder-only classifier with a masked-language-model head (see the module doc).

    Bert(config, parameters, *, training=True, seed=0): parameters laid out as
    ``Bert.create(config, rng).parameters`` (one dtype, float32 or float64); ``training``
    turns dropout on (config.dropout > 0) with masks from ``seed``.

    forward(src=(B, L) or (L,) ids, token_types=None, src_lengths=None,
      src_key_padding_mask=None) -> classifier logits (B, num_labels) (or (num_labels,)).
    backward(gradient_outputs (B, num_labels), src=..., ...) -> (grads tree (MLM head
      zeros), {"src": zeros, and zeros for each other input given}).
    encode(...) -> hidden states (B, L, n_embd); pool(...) -> (B, n_embd);
    mlm_logits(...) -> (B, L, vocab_size); predict(...) -> (B,) class ids; loss(src,
      labels, ...), mlm_loss(src, targets, ...) -> floats.
    loss_and_grads(src, labels, ...) / mlm_loss_and_grads(src, targets, ...): the mean
      cross-entropy and its gradient in flat_grads (a grads tree of views).
    """

    _config_class = BertConfig
    _meta_key = "bert_config"
    _repr_fields = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size", "pooling")

    @staticmethod
    def _layout(config):
        c, b = config, config.bias
        out = stack_layout(c, (), c.n_layer, c.vocab_size, wte=True, cross=False)
        out.append((("wtt", "weight"), (c.type_vocab_size, c.n_embd)))
        _add(out, ("mlm", "c_fc"), (c.n_embd, c.n_embd), b)
        _add(out, ("mlm", "ln_1"), (c.n_embd,), b)
        if b:
            out.append((("mlm", "bias"), (c.vocab_size,)))
        if not c.tie_mlm:
            out.append((("mlm", "decoder", "weight"), (c.vocab_size, c.n_embd)))
        _add(out, ("classifier",), (c.num_labels, c.n_embd), b)
        return out

    @staticmethod
    def _init_std(config, path):
        residual = path[-2] == "c_proj" or path[-1] == "w2"  # w2: a MoE's expert c_proj
        return 0.02 / math.sqrt(2 * config.n_layer) if residual else 0.02

    @staticmethod
    def create(config, random_generator, *, dtype=np.float32, training=True, seed=0):
        """GPT-2 / BERT initialisation: weights and embeddings ~ N(0, 0.02^2), the residual
        projections ~ N(0, (0.02 / sqrt(2 n_layer))^2), biases 0, LayerNorm weights 1;
        draws from ``random_generator`` in tree order. dtype float32 (default) or float64."""
        return Bert._create(config, random_generator, dtype, training, seed)

    @staticmethod
    def load(path, *, dtype=None, training=True, seed=0):
        """The Bert saved by ``save(path)`` (dtype: keep the stored one, or convert)."""
        return Bert._load(path, dtype, training, seed)

    # ------------------------------------------------------------------ inputs

    def _inputs(self, src, token_types, src_lengths, src_key_padding_mask):
        """(ids (B, L) int64, types (B, L) int64, mask (B, L) bool or None, squeeze)."""
        c = self.config
        ids, squeeze = check_ids(src, "src", c.vocab_size, c.block_size)
        if token_types is None:
            types = np.zeros_like(ids)
        else:
            types, _ = check_ids(token_types, "token_types", c.type_vocab_size, c.block_size,
                                 squeeze=squeeze)
            if types.shape != ids.shape:
                raise ValueError(f"token_types must have the shape of src {np.shape(src)}, "
                                 f"got {np.shape(token_types)}")
        mask = source_mask(src_lengths, src_key_padding_mask, *ids.shape, squeeze)
        if ids.shape[1] == 0:
            raise ValueError("src must hold at least one position (the [CLS] token)")
        if mask is not None and not mask.any(axis=1).all():
            raise ValueError("every row of src needs at least one real token (a length >= 1)")
        return ids, types, mask, squeeze

    def _input_zeros(self, src, **others):
        out = {"src": np.zeros(np.shape(src), dtype=np.asarray(src).dtype)}
        for name, value in others.items():
            if value is not None:
                out[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
        return out

    # ------------------------------------------------------------------ module path pieces

    def _encode(self, ids, types, mask, seed, aux=False):
        """(h (B, L, C), cache) of the encoder stack with segment embeddings; aux: the
        backward of MoE layers adds their load-balancing loss's gradient."""
        cfg, p = self.config, self._params
        dropping = self._dropping()
        blocks = stack_blocks(cfg, p, seed, dropping, 0, causal=False, aux=aux)
        return stack_forward(cfg, p, p["wte"]["weight"], ids, seed, dropping, 0,
                             blocks=blocks, token_types=types, key_padding_mask=mask)

    def _encode_backward(self, dh, cache, seed):
        """The grads tree of the encoder part (wte, wpe, wtt, h, ln_f) from dh (B, L, C)."""
        cfg = self.config
        grads, dwte, _ = stack_backward(cfg, self._params, cfg.vocab_size, dh, cache, seed,
                                        self._dropping(), 0)
        return {"wte": {"weight": dwte}, **grads}

    def _pool(self, h, mask):
        """pooled (B, C) from h (B, L, C) by config.pooling (mask: real tokens or None)."""
        if self.config.pooling == "cls":
            return np.ascontiguousarray(h[:, 0])
        if mask is None:
            return h.mean(axis=1)
        m = mask.astype(h.dtype)
        return np.einsum("blc,bl->bc", h, m) / m.sum(axis=1, keepdims=True)

    def _pool_backward(self, dpooled, shape, mask):
        """dh (B, L, C) from d pooled (B, C)."""
        dh = np.zeros(shape, dpooled.dtype)
        if self.config.pooling == "cls":
            dh[:, 0] = dpooled
        elif mask is None:
            dh[...] = dpooled[:, None, :] / shape[1]
        else:
            m = mask.astype(dpooled.dtype)
            dh[...] = (dpooled / m.sum(axis=1, keepdims=True))[:, None, :] * m[:, :, None]
        return dh

    def _classifier(self):
        return Dense(**self._params["classifier"])

    def _pool_seed(self, seed):
        return site_seed(seed, 1 + 3 * self.config.n_layer)

    def _aux_loss(self, enc):
        """moe_aux_weight times the layers' load-balancing losses of the encoder cache
        (0.0 for ffn="mlp")."""
        if self.config.ffn != "moe":
            return 0.0
        return self.config.moe_aux_weight * sum(r.aux for r in stack_routing(enc))

    def _classify_cached(self, ids, types, mask, seed, aux=False):
        """(logits (B, K), cache)."""
        h, enc = self._encode(ids, types, mask, seed, aux)
        pooled = self._pool(h, mask)
        x = pooled
        if self._dropping():
            x = F.dropout(pooled, self.config.dropout, seed=self._pool_seed(seed))
        logits, xc = self._classifier().forward_cached(x)
        return logits, (enc, h.shape, mask, xc)

    def _classify_backward(self, dlogits, cache, seed):
        """The full grads tree (MLM head zeros) from dlogits (B, K)."""
        enc, hshape, mask, xc = cache
        gcls, dx = self._classifier().backward_cached(dlogits, xc)
        if self._dropping():
            dx = F.dropout_backward(dx, self.config.dropout, seed=self._pool_seed(seed))
        grads = self._encode_backward(self._pool_backward(dx, hshape, mask), enc, seed)
        grads["classifier"] = gcls
        grads["mlm"] = {k: np.zeros_like(v) if not isinstance(v, dict) else
                        {kk: np.zeros_like(vv) for kk, vv in v.items()}
                        for k, v in self._params["mlm"].items()}
        return self._ordered(grads)

    def _ordered(self, grads):
        """grads with its top-level keys in the parameter tree's order."""
        return {k: grads[k] for k in self._params}

    def _mlm_layers(self):
        cfg, m = self.config, self._params["mlm"]
        return (Dense(**m["c_fc"]), Activation(cfg.activation),
                Norm(**m["ln_1"], eps=cfg.layer_norm_epsilon))

    def _mlm_weight(self):
        p = self._params
        return p["wte"]["weight"] if self.config.tie_mlm else p["mlm"]["decoder"]["weight"]

    def _mlm_head(self, rows):
        """(logits (N, V), cache) of the MLM head on hidden rows (N, C)."""
        caches, x = [], rows
        for layer in self._mlm_layers():
            x, c = layer.forward_cached(x)
            caches.append(c)
        return F.linear(x, self._mlm_weight(), self._params["mlm"].get("bias")), (caches, x)

    def _mlm_head_backward(self, dlogits, cache):
        """(grads of mlm (tree), d wte-or-decoder (V, C), d rows (N, C))."""
        caches, x = cache
        dx, dw, db = F.linear_backward(dlogits, x, self._mlm_weight(),
                                       self._params["mlm"].get("bias"))
        grads = {}
        names = ("c_fc", None, "ln_1")
        for layer, c, name in reversed(list(zip(self._mlm_layers(), caches, names))):
            g, dx = layer.backward_cached(dx, c)
            if name is not None:
                grads[name] = g
        grads = {"c_fc": grads["c_fc"], "ln_1": grads["ln_1"]}
        if db is not None:
            grads["bias"] = db
        return grads, dw, dx

    # ------------------------------------------------------------------ public API

    def encode(self, src, token_types=None, src_lengths=None, src_key_padding_mask=None):
        """Hidden states (B, L, n_embd) (or (L, n_embd)) of src (B, L) (or (L,)) with
        segments token_types (B, L) (None: all 0); rows at padded positions are computed
        but meaningless."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        h, _ = self._encode(ids, types, mask, self._seed(None))
        return h[0] if squeeze else h

    def pool(self, src, token_types=None, src_lengths=None, src_key_padding_mask=None):
        """The pooled representation (B, n_embd) (or (n_embd,)) the classifier reads
        (config.pooling: the [CLS] state or the mean over real tokens), before dropout."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        h, _ = self._encode(ids, types, mask, self._seed(None))
        pooled = self._pool(h, mask)
        return pooled[0] if squeeze else pooled

    def forward(self, src, token_types=None, src_lengths=None, src_key_padding_mask=None):
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        logits, _ = self._classify_cached(ids, types, mask, self._seed(None))
        return logits[0] if squeeze else logits

    def backward(self, gradient_outputs, src, token_types=None, src_lengths=None,
                 src_key_padding_mask=None):
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        g = same_dtype(self._flat, "the parameters", gradient_outputs, "gradient_outputs")
        K = self.config.num_labels
        want = (K,) if squeeze else (ids.shape[0], K)
        if g.shape != want:
            raise ValueError(f"gradient_outputs must have the logits' shape {want}, "
                             f"got {g.shape}")
        seed = self._seed(None)
        _, cache = self._classify_cached(ids, types, mask, seed)
        grads = self._classify_backward(g[None] if squeeze else g, cache, seed)
        return grads, self._input_zeros(src, token_types=token_types, src_lengths=src_lengths,
                                        src_key_padding_mask=src_key_padding_mask)

    def predict(self, src, token_types=None, src_lengths=None, src_key_padding_mask=None):
        """The most likely class (B,) (or a 0-d array) of each row, in eval mode."""
        was = self.training
        self.eval()
        try:
            return np.argmax(self.forward(src, token_types, src_lengths,
                                          src_key_padding_mask), axis=-1)
        finally:
            self.train(was)

    def _labels(self, labels, B, squeeze, name="labels"):
        y = as_ids(labels, name)
        want = () if squeeze else (B,)
        if y.shape != want and not (squeeze and y.shape == (1,)):
            raise ValueError(f"{name} must have shape {want} (one class per row), "
                             f"got {y.shape}")
        y = np.ascontiguousarray(y.reshape(B), dtype=np.int64)
        K = self.config.num_labels
        if y.size and (y.min() < 0 or y.max() >= K):
            bad = y.min() if y.min() < 0 else y.max()
            raise IndexError(f"{name} holds class {bad}, outside [0, {K})")
        return y

    def _check_row_offset(self, row_offset):
        r = as_int(row_offset, "row_offset")
        if r < 0:
            raise ValueError(f"row_offset must be >= 0, got {r}")
        if r and self._dropping():
            raise ValueError("row_offset > 0 with dropout is not supported by Bert (its "
                             "module path draws masks from row 0)")
        return r

    def loss(self, src, labels, *, token_types=None, src_lengths=None,
             src_key_padding_mask=None, seed=None):
        """The mean classification cross-entropy (a float) of src (B, L) against labels (B,)
        (no gradient)."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        y = self._labels(labels, ids.shape[0], squeeze)
        logits, _ = self._classify_cached(ids, types, mask, self._seed(seed))
        return F.cross_entropy(logits, y)

    def loss_and_grads(self, src, labels, *, token_types=None, src_lengths=None,
                       src_key_padding_mask=None, seed=None, row_offset=0):
        """(loss, grads): the mean classification cross-entropy of src (B, L) (segments
        token_types (B, L), padding by src_lengths (B,) or src_key_padding_mask (B, L))
        against labels (B,) in [0, num_labels), and its gradient with respect to every
        parameter (the MLM head's are 0). seed: the dropout seed (default self.seed);
        row_offset must be 0 when dropping. The grads tree holds views of ``flat_grads``,
        which the next call overwrites."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        y = self._labels(labels, ids.shape[0], squeeze)
        self._check_row_offset(row_offset)
        seed = self._seed(seed)
        logits, cache = self._classify_cached(ids, types, mask, seed, aux=True)
        loss = F.cross_entropy(logits, y) + self._aux_loss(cache[0])
        dlogits = F.cross_entropy_backward(logits, y)
        self._store_grads(self._classify_backward(dlogits, cache, seed))
        return loss, self._grads_tree()

    def _mlm_targets(self, targets, ids, squeeze, ignore_index):
        return check_targets(targets, "targets", ids, "src", squeeze, ignore_index,
                             self.config.vocab_size)

    def mlm_logits(self, src, token_types=None, src_lengths=None, src_key_padding_mask=None):
        """The MLM head's logits (B, L, vocab_size) (or (L, V)) at every position."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        h, _ = self._encode(ids, types, mask, self._seed(None))
        B, L, C = h.shape
        logits, _ = self._mlm_head(h.reshape(B * L, C))
        logits = logits.reshape(B, L, -1)
        return logits[0] if squeeze else logits

    def mlm_loss(self, src, targets, *, token_types=None, src_lengths=None,
                 src_key_padding_mask=None, ignore_index=-100, seed=None):
        """The masked-LM cross-entropy (a float; nan when no target is kept) of src (B, L)
        against targets (B, L) (ignore_index skipped), no gradient."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        ignore_index = as_int(ignore_index, "ignore_index")
        t = self._mlm_targets(targets, ids, squeeze, ignore_index)
        h, _ = self._encode(ids, types, mask, self._seed(seed))
        B, L, C = h.shape
        where = np.flatnonzero(t.reshape(-1) != ignore_index)
        if where.size == 0:
            return math.nan
        logits, _ = self._mlm_head(h.reshape(B * L, C)[where])
        return F.cross_entropy(logits, t.reshape(-1)[where])

    def mlm_loss_and_grads(self, src, targets, *, token_types=None, src_lengths=None,
                           src_key_padding_mask=None, ignore_index=-100, seed=None,
                           row_offset=0):
        """(loss, grads): the masked-language-model cross-entropy, the mean over the
        positions of targets (B, L) that are not ignore_index (transformer_c.data.mlm_mask
        makes src and targets), and its gradient (the classifier's is 0). The head runs on
        the predicted positions only. Other arguments as loss_and_grads."""
        ids, types, mask, squeeze = self._inputs(src, token_types, src_lengths,
                                                 src_key_padding_mask)
        ignore_index = as_int(ignore_index, "ignore_index")
        t = self._mlm_targets(targets, ids, squeeze, ignore_index)
        self._check_row_offset(row_offset)
        seed = self._seed(seed)
        h, enc = self._encode(ids, types, mask, seed, aux=True)
        B, L, C = h.shape
        where = np.flatnonzero(t.reshape(-1) != ignore_index)
        rows = h.reshape(B * L, C)[where]
        logits, hc = self._mlm_head(rows)
        y = t.reshape(-1)[where]
        if where.size == 0:
            loss, dlogits = math.nan, np.zeros_like(logits)
        else:
            loss = F.cross_entropy(logits, y) + self._aux_loss(enc)
            dlogits = F.cross_entropy_backward(logits, y)
        gmlm, dw, drows = self._mlm_head_backward(dlogits, hc)
        dh = np.zeros_like(h).reshape(B * L, C)
        dh[where] = drows
        grads = self._encode_backward(dh.reshape(B, L, C), enc, seed)
        if self.config.tie_mlm:
            grads["wte"]["weight"] = grads["wte"]["weight"] + dw
        else:
            gmlm["decoder"] = {"weight": dw}
        grads["mlm"] = gmlm
        grads["classifier"] = {k: np.zeros_like(v) for k, v in
                               self._params["classifier"].items()}
        self._store_grads(self._ordered(grads))
        return loss, self._grads_tree()
