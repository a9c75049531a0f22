"""Decoder-only transformer of the coursework interface: DecoderLayer and Decoder."""
import warnings

import numpy as np

from .attention import MultiHeadAttention
from .blocks import Residual
from .feedforward import FeedForward
from .layers import Embedding, LayerNorm, Linear, PositionalEncoding
from .module import Module, replace_keys

__all__ = ["DecoderLayer", "Decoder"]


def norm_placement(norm, pre_norm, owner):
    """The norm placement of ``norm`` ("pre" / "post" / None = the coursework's "post")
    and the deprecated ``pre_norm`` bool (DeprecationWarning; an error if both given)."""
    if pre_norm is None:
        return "post" if norm is None else norm
    warnings.warn(f"{owner}(pre_norm=...) is deprecated: use norm='pre' or norm='post'",
                  DeprecationWarning, stacklevel=3)
    if norm is not None:
        raise ValueError("give norm or the deprecated pre_norm, not both")
    return "pre" if pre_norm else "post"


class DecoderLayer(Residual):
    """One decoder block, post-norm by default (the coursework form):

        x = Norm1(x + MHA(x, x, x));  x = Norm2(x + FFN(x))

    With norm="pre" (an extension): x = x + MHA(Norm1(x)); x = x + FFN(Norm2(x)).
    The shared residual block (transformer_c.nn.blocks) with parameter keys MHA, Norm1,
    FFN, Norm2 and attributes mha, norm1, ffn, norm2. forward(x=(..., T, D)) ->
    (..., T, D). ``pre_norm`` (a bool) is the deprecated spelling of ``norm``.
    """

    FIELDS = (("mha", "MHA"), ("norm1", "Norm1"), ("ffn", "FFN"), ("norm2", "Norm2"))
    SUBLAYERS = (("norm1", "mha"), ("norm2", "ffn"))
    NORM = "post"

    def __init__(self, mha, norm1, ffn, norm2, *, norm=None, pre_norm=None, dropout=0.0,
                 training=False, seeds=None):
        super().__init__(mha, norm1, ffn, norm2, norm=norm_placement(norm, pre_norm,
                                                                     "DecoderLayer"),
                         dropout=dropout, training=training, seeds=seeds)

    @property
    def pre_norm(self):
        """True with norm="pre" (the deprecated spelling, read-only)."""
        return self.norm == "pre"

    @staticmethod
    def create(embed_dim, num_heads, hidden_size, random_generator, *, causal=True,
               norm=None, pre_norm=None, activation="relu", dtype=np.float64):
        """Glorot-uniform MultiHeadAttention and FeedForward, LayerNorms of ones / zeros."""
        norm = norm_placement(norm, pre_norm, "DecoderLayer.create")
        mha = MultiHeadAttention.create(embed_dim, embed_dim, num_heads, random_generator,
                                        causal=causal, dtype=dtype)
        ffn = FeedForward.create(embed_dim, hidden_size, embed_dim, random_generator,
                                 activation=activation, dtype=dtype)
        return DecoderLayer(mha, LayerNorm.create(embed_dim, dtype=dtype), ffn,
                            LayerNorm.create(embed_dim, dtype=dtype), norm=norm)

    def forward_cached(self, x):
        """(y, cache) for x (..., T, D)."""
        return self._run(x, ({}, {}))

    def backward_cached(self, g, cache):
        """(grads, dx) for g (..., T, D)."""
        grads, dx, _ = self._run_backward(g, cache)
        return grads, dx


class Decoder(Module):
    """Token embedding + sinusoidal positions + decoder layers + a linear head (no final norm).

    forward(x=int ids (T,) or (B, T)) -> logits (T, V) or (B, T, V). Parameter keys token,
    pe (empty), layer_0 .. layer_{n-1}, lm_head.
    """

    def __init__(self, token_embedding, pos_encoding, layers, lm_head):
        self.token_embedding, self.pos_encoding = token_embedding, pos_encoding
        self.layers, self.lm_head = list(layers), lm_head

    @staticmethod
    def create(input_size, hidden_size, output_size, random_generator, num_heads, seq_len=512,
               *, causal=True, num_layers=2, norm=None, pre_norm=None, activation="relu",
               dtype=np.float64):
        """input_size = vocabulary V, output_size = model width D, hidden_size = FFN width;
        norm "post" (the coursework's, default) or "pre" (pre_norm: its deprecated bool)."""
        norm = norm_placement(norm, pre_norm, "Decoder.create")
        V, D = input_size, output_size
        token = Embedding.create(V, D, random_generator, dtype=dtype)
        layers = [DecoderLayer.create(D, num_heads, hidden_size, random_generator, causal=causal,
                                      norm=norm, activation=activation, dtype=dtype)
                  for _ in range(num_layers)]
        head = Linear.create(D, V, random_generator, dtype=dtype)
        return Decoder(token, PositionalEncoding(seq_len, D), layers, head)

    @property
    def parameters(self):
        p = {"token": self.token_embedding.parameters, "pe": self.pos_encoding.parameters}
        for i, layer in enumerate(self.layers):
            p[f"layer_{i}"] = layer.parameters
        p["lm_head"] = self.lm_head.parameters
        return p

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        layers = [layer.with_parameters(p[f"layer_{i}"]) for i, layer in enumerate(self.layers)]
        return Decoder(self.token_embedding.with_parameters(p["token"]),
                       self.pos_encoding.with_parameters(p["pe"]), layers,
                       self.lm_head.with_parameters(p["lm_head"]))

    def _hidden_states(self, x):
        """Inputs of every layer and the final hidden state: [h_0, ..., h_n]."""
        hs = [self.pos_encoding.forward(x=self.token_embedding.forward(x=x))]
        for layer in self.layers:
            hs.append(layer.forward(x=hs[-1]))
        return hs

    def forward(self, x):
        return self.lm_head.forward(x=self._hidden_states(x)[-1])

    def backward(self, gradient_outputs, x):
        hs = self._hidden_states(x)
        g_head, gi = self.lm_head.backward(gradient_outputs, x=hs[-1])
        g = gi["x"]
        grads = {}
        for i in reversed(range(len(self.layers))):
            grads[f"layer_{i}"], gi = self.layers[i].backward(g, x=hs[i])
            g = gi["x"]
        g_pe, gi = self.pos_encoding.backward(g, x=hs[0])
        g_tok, gx = self.token_embedding.backward(gi["x"], x=x)
        out = {"token": g_tok, "pe": g_pe}
        out.update({f"layer_{i}": grads[f"layer_{i}"] for i in range(len(self.layers))})
        out["lm_head"] = g_head
        return out, gx
