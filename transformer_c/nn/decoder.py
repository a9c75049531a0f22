"""Decoder-only transformer of the coursework interface: DecoderLayer and Decoder."""
import numpy as np

from .attention import MultiHeadAttention
from .feedforward import FeedForward
from .layers import Embedding, LayerNorm, Linear, PositionalEncoding
from .module import Module, replace_keys

__all__ = ["DecoderLayer", "Decoder"]


class DecoderLayer(Module):
    """One decoder block, post-norm by default (the coursework form):

        x = Norm1(x + MHA(x, x, x));  x = Norm2(x + FFN(x))

    With pre_norm=True (an extension): x = x + MHA(Norm1(x)); x = x + FFN(Norm2(x)).
    Parameter keys MHA, Norm1, FFN, Norm2. forward(x=(..., T, D)) -> (..., T, D).
    """

    def __init__(self, mha, norm1, ffn, norm2, *, pre_norm=False):
        self.mha, self.norm1, self.ffn, self.norm2 = mha, norm1, ffn, norm2
        self.pre_norm = bool(pre_norm)

    @staticmethod
    def create(embed_dim, num_heads, hidden_size, random_generator, *, causal=True,
               pre_norm=False, activation="relu", dtype=np.float64):
        mha = MultiHeadAttention.create(embed_dim, embed_dim, num_heads, random_generator,
                                        causal=causal, dtype=dtype)
        ffn = FeedForward.create(embed_dim, hidden_size, embed_dim, random_generator,
                                 activation=activation, dtype=dtype)
        return DecoderLayer(mha, LayerNorm.create(embed_dim, dtype=dtype), ffn,
                            LayerNorm.create(embed_dim, dtype=dtype), pre_norm=pre_norm)

    @property
    def parameters(self):
        return {"MHA": self.mha.parameters, "Norm1": self.norm1.parameters,
                "FFN": self.ffn.parameters, "Norm2": self.norm2.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["MHA", "Norm1", "FFN", "Norm2"])
        return DecoderLayer(self.mha.with_parameters(p["MHA"]), self.norm1.with_parameters(p["Norm1"]),
                            self.ffn.with_parameters(p["FFN"]), self.norm2.with_parameters(p["Norm2"]),
                            pre_norm=self.pre_norm)

    def _self_attention(self, x):
        return self.mha.forward(q=x, k=x, v=x)

    def _self_attention_backward(self, g, x):
        grads, gi = self.mha.backward(g, q=x, k=x, v=x)
        return grads, gi["q"] + gi["k"] + gi["v"]

    def forward(self, x):
        if self.pre_norm:
            x = x + self._self_attention(self.norm1.forward(x=x))
            return x + self.ffn.forward(x=self.norm2.forward(x=x))
        x = self.norm1.forward(x=x + self._self_attention(x))
        return self.norm2.forward(x=x + self.ffn.forward(x=x))

    def backward(self, gradient_outputs, x):
        g = gradient_outputs
        if self.pre_norm:
            n1 = self.norm1.forward(x=x)
            x1 = x + self._self_attention(n1)
            n2 = self.norm2.forward(x=x1)
            g_ffn, gi = self.ffn.backward(g, x=n2)
            g_n2, gi2 = self.norm2.backward(gi["x"], x=x1)
            d_x1 = g + gi2["x"]
            g_mha, d_n1 = self._self_attention_backward(d_x1, n1)
            g_n1, gi1 = self.norm1.backward(d_n1, x=x)
            dx = d_x1 + gi1["x"]
        else:
            r1 = x + self._self_attention(x)
            x1 = self.norm1.forward(x=r1)
            r2 = x1 + self.ffn.forward(x=x1)
            g_n2, gi2 = self.norm2.backward(g, x=r2)
            d_r2 = gi2["x"]
            g_ffn, gi = self.ffn.backward(d_r2, x=x1)
            g_n1, gi1 = self.norm1.backward(d_r2 + gi["x"], x=r1)
            d_r1 = gi1["x"]
            g_mha, d_att = self._self_attention_backward(d_r1, x)
            dx = d_r1 + d_att
        grads = {"MHA": g_mha, "Norm1": g_n1, "FFN": g_ffn, "Norm2": g_n2}
        return grads, {"x": dx}


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
               *, causal=True, num_layers=2, pre_norm=False, activation="relu", dtype=np.float64):
        """input_size = vocabulary V, output_size = model width D, hidden_size = FFN width."""
        V, D = input_size, output_size
        token = Embedding.create(V, D, random_generator, dtype=dtype)
        layers = [DecoderLayer.create(D, num_heads, hidden_size, random_generator, causal=causal,
                                      pre_norm=pre_norm, activation=activation, dtype=dtype)
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
