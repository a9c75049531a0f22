"""Transformer blocks: ONE residual-block implementation (``Residual``: a list of
(norm, sublayer) pairs, pre- or post-norm, seeded dropout on each branch) and its
configurations:

- ``Block``: self-attention + MLP, GPT-2 keys ln_1 / attn / ln_2 / mlp. Causal it is a GPT
  block; bidirectional with a key-padding mask, an encoder block;
- ``DecoderBlock``: self-attention + cross-attention to a memory + MLP (a layer of an
  encoder-decoder's decoder; Hugging Face GPT-2's names with add_cross_attention);
- the coursework ``DecoderLayer`` (transformer_c.nn.decoder) is a Block with the keys
  MHA / Norm1 / FFN / Norm2, post-norm by default.

norm (transformer_c.options.NORMS):
    "pre":  x = x + drop(sublayer(norm(x)))        (GPT-2)
    "post": x = norm(x + drop(sublayer(x)))        (GPT-1, the original Transformer)

Each block has the tree interface (``parameters``, ``with_parameters``, ``forward(x=)``,
``backward(g, x=)``) and the pair the models chain without recomputation:
``forward_cached(x, ...) -> (y, cache)``, ``backward_cached(g, cache) -> (grads, dx)``
(DecoderBlock also returns the memory's gradient). Masks are True = attend / True = real
key (transformer_c.functional's polarity).
"""

from .. import functional as F
from ..options import check_option
from .attention import CrossAttention, SelfAttention
from .feedforward import MLP
from .layers import Dense, Norm
from .module import CachedModule, replace_keys, with_zero_grads

__all__ = ["Residual", "Block", "DecoderBlock", "site_seed",
           # re-exported from their modules (their historical home)
           "Dense", "Norm", "MLP", "SelfAttention", "CrossAttention"]

_GOLDEN = 0x9E3779B97F4A7C15


def site_seed(seed, site):
    """The dropout seed of dropout site ``site`` (an int >= 0) for the model seed ``seed``:
    (seed + (site + 1) * 0x9E3779B97F4A7C15) mod 2**64. Philox keys that differ give
    independent streams, so every site has its own mask. The C fast path uses the same rule.
    """
    return (int(seed) + (int(site) + 1) * _GOLDEN) % (1 << 64)


class Residual(CachedModule):
    """The residual block all blocks share. Class data: FIELDS, the (attribute, parameter
    key) of every sub-module in tree order (= the constructor's positional order);
    SUBLAYERS, the (norm attribute, sublayer attribute) pairs in computation order;
    NORM, the default placement. Options: norm ("pre" / "post"), dropout (inverted, on
    each branch, only when ``training``) with one seed per sublayer in ``seeds``.
    """

    NORM = "pre"

    def __init__(self, *modules, norm=None, dropout=0.0, training=False, seeds=None):
        for (attr, _), m in zip(self.FIELDS, modules, strict=True):
            setattr(self, attr, m)
        self.norm = check_option("norm", self.NORM if norm is None else norm)
        self.dropout, self.training = float(dropout), bool(training)
        self.seeds = tuple((0,) * len(self.SUBLAYERS) if seeds is None else seeds)

    def _options_kw(self):
        return dict(norm=self.norm, dropout=self.dropout, training=self.training,
                    seeds=self.seeds)

    @property
    def parameters(self):
        return {key: getattr(self, attr).parameters for attr, key in self.FIELDS}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, [key for _, key in self.FIELDS])
        return type(self)(*(getattr(self, attr).with_parameters(p[key])
                            for attr, key in self.FIELDS), **self._options_kw())

    def _drop(self, t, i):
        if not self.training or self.dropout == 0.0:
            return t
        return F.dropout(t, self.dropout, seed=self.seeds[i])

    def _drop_backward(self, g, i):
        if not self.training or self.dropout == 0.0:
            return g
        return F.dropout_backward(g, self.dropout, seed=self.seeds[i])

    def _run(self, x, inputs):
        """(y, caches): the sublayers in order, sublayer i called with inputs[i] (a dict of
        extra keyword inputs: memory, masks)."""
        caches = []
        for i, (ln_name, f_name) in enumerate(self.SUBLAYERS):
            ln, f = getattr(self, ln_name), getattr(self, f_name)
            if self.norm == "pre":
                n, cn = ln.forward_cached(x)
                y, cf = f.forward_cached(n, **inputs[i])
                x = x + self._drop(y, i)
            else:
                y, cf = f.forward_cached(x, **inputs[i])
                x, cn = ln.forward_cached(x + self._drop(y, i))
            caches.append((cn, cf))
        return x, caches

    def _run_backward(self, g, caches):
        """(grads, dx, extras): extras[i] the further input gradients sublayer i returned
        (the memory's for a cross-attention)."""
        grads, extras = {}, [()] * len(self.SUBLAYERS)
        names = dict(self.FIELDS)
        for i in reversed(range(len(self.SUBLAYERS))):
            ln_name, f_name = self.SUBLAYERS[i]
            ln, f = getattr(self, ln_name), getattr(self, f_name)
            cn, cf = caches[i]
            if self.norm == "pre":
                out = f.backward_cached(self._drop_backward(g, i), cf)
                gln, dn = ln.backward_cached(out[1], cn)
                g = g + dn
            else:
                gln, dr = ln.backward_cached(g, cn)
                out = f.backward_cached(self._drop_backward(dr, i), cf)
                g = dr + out[1]
            grads[names[ln_name]], grads[names[f_name]] = gln, out[0]
            extras[i] = tuple(out[2:])
        return {key: grads[key] for _, key in self.FIELDS}, g, extras


class Block(Residual):
    """A transformer block with GPT-2 keys ``ln_1``, ``attn``, ``ln_2``, ``mlp``.

    Block(ln_1, attn, ln_2, mlp, *, norm="pre", dropout=0.0, training=False, seeds=(0, 0)):
    norm="pre" (GPT-2):  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
    norm="post":         x = ln_1(x + drop(attn(x)));  x = ln_2(x + drop(mlp(x)))
    seeds = (attention branch seed, MLP branch seed) (see site_seed).
    forward(x=(B, T, C), key_padding_mask=None) -> (B, T, C): the mask (bool (B, T), True =
    real token) goes to the attention (an encoder block).
    """

    FIELDS = (("ln_1", "ln_1"), ("attn", "attn"), ("ln_2", "ln_2"), ("mlp", "mlp"))
    SUBLAYERS = (("ln_1", "attn"), ("ln_2", "mlp"))

    def forward_cached(self, x, key_padding_mask=None):
        """(y, cache) for x (B, T, C)."""
        kpm = {} if key_padding_mask is None else {"key_padding_mask": key_padding_mask}
        return self._run(x, (kpm, {}))

    def backward_cached(self, g, cache):
        """(grads, dx) for g (B, T, C)."""
        grads, dx, _ = self._run_backward(g, cache)
        return grads, dx


class DecoderBlock(Residual):
    """A decoder layer of an encoder-decoder: keys ``ln_1``, ``attn`` (causal
    SelfAttention), ``ln_cross_attn``, ``crossattention`` (CrossAttention to the memory),
    ``ln_2``, ``mlp``; seeds = (self-attention, cross-attention, MLP branch seeds).

    forward(x=(B, T, C), memory=(B, S, C_mem), memory_key_padding_mask=None) -> (B, T, C);
    backward also returns the memory's gradient (the encoder's output feeds every layer).
    """

    FIELDS = tuple((k, k) for k in ("ln_1", "attn", "ln_cross_attn", "crossattention",
                                    "ln_2", "mlp"))
    KEYS = tuple(k for k, _ in FIELDS)
    SUBLAYERS = (("ln_1", "attn"), ("ln_cross_attn", "crossattention"), ("ln_2", "mlp"))

    def forward(self, x, memory, memory_key_padding_mask=None):
        """y (B, T, C)."""
        return self.forward_cached(x, memory, memory_key_padding_mask)[0]

    def backward(self, gradient_outputs, x, memory, memory_key_padding_mask=None):
        """(grads, {"x", "memory", and zeros for the mask given})."""
        grads, dx, dmem = self.backward_cached(
            gradient_outputs, self.forward_cached(x, memory, memory_key_padding_mask)[1])
        return grads, with_zero_grads({"x": dx, "memory": dmem},
                                      {"memory_key_padding_mask": memory_key_padding_mask})

    def forward_cached(self, x, memory, memory_key_padding_mask=None):
        """(y, cache) for x (B, T, C) and memory (B, S, C_mem)."""
        cross = {"memory": memory, "key_padding_mask": memory_key_padding_mask}
        return self._run(x, ({}, cross, {}))

    def backward_cached(self, g, cache):
        """(grads, dx, dmemory)."""
        grads, dx, extras = self._run_backward(g, cache)
        return grads, dx, extras[1][0]


def __getattr__(name):
    """``ACTIVATIONS`` (deprecated here: transformer_c.options.ACTIVATIONS), with a
    DeprecationWarning."""
    if name == "ACTIVATIONS":
        import warnings

        from ..options import ACTIVATIONS
        warnings.warn("transformer_c.nn.blocks.ACTIVATIONS is deprecated: use "
                      "transformer_c.options.ACTIVATIONS", DeprecationWarning, stacklevel=2)
        return ACTIVATIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
