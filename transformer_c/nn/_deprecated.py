"""Deprecated layers, kept for one release: thin adapters over the one implementation.

MultiHeadSelfAttention is SelfAttention and MultiHeadCrossAttention is CrossAttention with
Linear projections (key ``weights``), their old parameter names, constructor arguments
(num_heads, dropout_p) and forward inputs (attn_mask, key_padding_mask, seed: dropout only
when a seed is given). transformer_c.nn's module ``__getattr__`` emits the
DeprecationWarning when the name is looked up.
"""
import copy

import numpy as np

from .attention import CrossAttention, SelfAttention
from .layers import Linear
from .module import with_zero_grads

__all__ = ["MultiHeadSelfAttention", "MultiHeadCrossAttention", "DEPRECATED"]


class _SeedInput:
    """Dropout drawn only when the ``seed`` input is given (the old modules' rule)."""

    def _init_old(self, num_heads, dropout_p):
        self.num_heads, self.dropout_p = int(num_heads), float(dropout_p)

    def _options_kw(self):
        return dict(causal=self.causal, dropout_p=self.dropout_p) \
            if isinstance(self, SelfAttention) else dict(dropout_p=self.dropout_p)

    def _seeded(self, seed):
        m = copy.copy(self)
        m.dropout, m.seed = (self.dropout_p if seed is not None else 0.0), seed
        return m


class MultiHeadSelfAttention(_SeedInput, SelfAttention):
    """Deprecated: use SelfAttention. Keys c_attn / c_proj (Linear: weights, bias);
    forward(x=(..., T, E), attn_mask=None, key_padding_mask=None, seed=None) -> (..., T, E).
    """

    LAYER = Linear

    def __init__(self, c_attn, c_proj, num_heads, *, causal=False, dropout_p=0.0):
        super().__init__(c_attn, c_proj, num_heads, causal=causal, dropout=0.0, seed=None)
        self._init_old(num_heads, dropout_p)

    @classmethod
    def create(cls, embed_dim, num_heads, random_generator, *, causal=False, bias=True,
               dropout_p=0.0, dtype=np.float64):
        """Glorot-uniform projections (c_attn as three (E, E) blocks), zero biases."""
        return super().create(embed_dim, num_heads, random_generator, bias=bias, dtype=dtype,
                              causal=causal, dropout_p=dropout_p)

    def forward(self, x, attn_mask=None, key_padding_mask=None, seed=None):
        """y (..., T, E)."""
        return self._seeded(seed).forward_cached(x, key_padding_mask, attn_mask)[0]

    def backward(self, gradient_outputs, x, attn_mask=None, key_padding_mask=None, seed=None):
        """(grads, {"x", zeros for the masks and seed given})."""
        m = self._seeded(seed)
        grads, dx = m.backward_cached(gradient_outputs,
                                      m.forward_cached(x, key_padding_mask, attn_mask)[1])
        return grads, with_zero_grads({"x": dx}, dict(attn_mask=attn_mask,
                                                      key_padding_mask=key_padding_mask,
                                                      seed=seed))


class MultiHeadCrossAttention(_SeedInput, CrossAttention):
    """Deprecated: use CrossAttention. Keys q_proj / kv_proj / out_proj (Linear);
    forward(x=(..., T, E), memory=(..., S, E_mem), attn_mask=None, key_padding_mask=None,
    seed=None) -> (..., T, E)."""

    KEYS = ("q_proj", "kv_proj", "out_proj")
    LAYER = Linear

    def __init__(self, q_proj, kv_proj, out_proj, num_heads, *, dropout_p=0.0):
        super().__init__(q_proj, kv_proj, out_proj, num_heads, dropout=0.0, seed=None)
        self.q_proj, self.kv_proj, self.out_proj = q_proj, kv_proj, out_proj
        del self.q_attn, self.c_attn, self.c_proj
        self._init_old(num_heads, dropout_p)

    @classmethod
    def create(cls, embed_dim, num_heads, random_generator, *, memory_dim=None, bias=True,
               dropout_p=0.0, dtype=np.float64):
        """Glorot-uniform projections, zero biases."""
        return super().create(embed_dim, num_heads, random_generator, memory_dim=memory_dim,
                              bias=bias, dtype=dtype, dropout_p=dropout_p)

    def forward(self, x, memory, attn_mask=None, key_padding_mask=None, seed=None):
        """y (..., T, E)."""
        return self._seeded(seed).forward_cached(x, memory, key_padding_mask, attn_mask)[0]

    def backward(self, gradient_outputs, x, memory, attn_mask=None, key_padding_mask=None,
                 seed=None):
        """(grads, {"x", "memory", zeros for the masks and seed given})."""
        m = self._seeded(seed)
        grads, dx, dmem = m.backward_cached(
            gradient_outputs, m.forward_cached(x, memory, key_padding_mask, attn_mask)[1])
        return grads, with_zero_grads({"x": dx, "memory": dmem},
                                      dict(attn_mask=attn_mask,
                                           key_padding_mask=key_padding_mask, seed=seed))


# old name -> (the object, what to use instead)
DEPRECATED = {
    "MultiHeadSelfAttention": (MultiHeadSelfAttention, "SelfAttention"),
    "MultiHeadCrossAttention": (MultiHeadCrossAttention, "CrossAttention"),
}


def deprecated_attribute(module_name, name):
    """The deprecated ``name`` of module ``module_name`` with a DeprecationWarning
    (AttributeError if it is not one)."""
    import warnings
    if name not in DEPRECATED:
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
    obj, instead = DEPRECATED[name]
    warnings.warn(f"{module_name}.{name} is deprecated and will be removed in the next "
                  f"release: use {instead}", DeprecationWarning, stacklevel=3)
    return obj
