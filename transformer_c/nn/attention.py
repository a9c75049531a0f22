"""Attention modules of the coursework interface: ScaledSelfAttention, MultiHeadAttention."""
import numpy as np

from .. import functional as F
from .module import Module, check_dtype, glorot_uniform, replace_keys

__all__ = ["ScaledSelfAttention", "MultiHeadAttention"]


class ScaledSelfAttention(Module):
    """One attention head: softmax(Q K^T / sqrt(d_k)) V with Q = q W_q, K = k W_k, V = v W_v.

    W_q, W_k: (d_in, d_k); W_v: (d_in, d_v). forward(q=(..., T, d_in), k=(..., S, d_in),
    v=(..., S, d_in)) -> (..., T, d_v); unbatched (T, d_in) or batched (B, T, d_in).
    causal=True masks keys after each query (the coursework adds -1e9 above the diagonal
    before the softmax; the C kernel uses -inf, which gives the same probabilities, exactly
    zero, and exactly zero score gradients there).
    """

    def __init__(self, W_q, W_k, W_v, *, causal=False):
        self.W_q, self.W_k, self.W_v = np.asarray(W_q), np.asarray(W_k), np.asarray(W_v)
        self.causal = bool(causal)

    @staticmethod
    def create(input_size, output_size, random_generator, *, causal=True, dtype=np.float64):
        """Glorot-uniform (input_size, output_size) projections; d_k = d_v = output_size."""
        dt = check_dtype(dtype)
        W = [glorot_uniform(random_generator, input_size, output_size,
                            shape=(input_size, output_size), dtype=dt) for _ in range(3)]
        return ScaledSelfAttention(*W, causal=causal)

    @property
    def parameters(self):
        return {"W_q": self.W_q, "W_k": self.W_k, "W_v": self.W_v}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["W_q", "W_k", "W_v"])
        return ScaledSelfAttention(p["W_q"], p["W_k"], p["W_v"], causal=self.causal)

    def _project(self, q, k, v):
        for name, x in (("q", q), ("k", k), ("v", v)):
            if np.ndim(x) < 2 or np.shape(x)[-1] != self.W_q.shape[0]:
                raise ValueError(f"{name} must have shape (..., T, d_in={self.W_q.shape[0]}), "
                                 f"got {np.shape(x)}")
        return F.matmul(q, self.W_q), F.matmul(k, self.W_k), F.matmul(v, self.W_v)

    def forward(self, q, k, v):
        Q, K, V = self._project(q, k, v)
        return F.scaled_dot_product_attention(Q, K, V, is_causal=self.causal)

    def backward(self, gradient_outputs, q, k, v):
        Q, K, V = self._project(q, k, v)
        dQ, dK, dV = F.scaled_dot_product_attention_backward(gradient_outputs, Q, K, V,
                                                             is_causal=self.causal)
        dq, dWq = F.matmul_backward(dQ, q, self.W_q)
        dk, dWk = F.matmul_backward(dK, k, self.W_k)
        dv, dWv = F.matmul_backward(dV, v, self.W_v)
        return {"W_q": dWq, "W_k": dWk, "W_v": dWv}, {"q": dq, "k": dk, "v": dv}


class MultiHeadAttention(Module):
    """concat(head_0(q,k,v), ..., head_{h-1}(q,k,v)) @ W_out.

    heads: list of ScaledSelfAttention; W_out: (h * d_v, d_model). Parameter keys
    head_0 .. head_{h-1} and W_out.
    """

    def __init__(self, heads, W_out):
        self.heads = list(heads)
        self.W_out = np.asarray(W_out)
        if not self.heads:
            raise ValueError("heads must hold at least one ScaledSelfAttention")

    @staticmethod
    def create(input_size, embed_dim, num_heads, random_generator, *, causal=False,
               dtype=np.float64):
        """num_heads heads of width embed_dim // num_heads and a (embed_dim, embed_dim) W_out.

        embed_dim must be divisible by num_heads (ValueError otherwise).
        """
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        d = embed_dim // num_heads
        heads = [ScaledSelfAttention.create(input_size, d, random_generator, causal=causal, dtype=dtype)
                 for _ in range(num_heads)]
        W_out = glorot_uniform(random_generator, embed_dim, embed_dim,
                               shape=(embed_dim, embed_dim), dtype=check_dtype(dtype))
        return MultiHeadAttention(heads, W_out)

    @property
    def parameters(self):
        p = {f"head_{i}": h.parameters for i, h in enumerate(self.heads)}
        p["W_out"] = self.W_out
        return p

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        heads = [h.with_parameters(p[f"head_{i}"]) for i, h in enumerate(self.heads)]
        return MultiHeadAttention(heads, p["W_out"])

    def _concat_heads(self, q, k, v):
        return np.concatenate([h.forward(q=q, k=k, v=v) for h in self.heads], axis=-1)

    def forward(self, q, k, v):
        return F.matmul(self._concat_heads(q, k, v), self.W_out)

    def backward(self, gradient_outputs, q, k, v):
        concat = self._concat_heads(q, k, v)
        dconcat, dW_out = F.matmul_backward(gradient_outputs, concat, self.W_out)
        grads, dq, dk, dv = {}, 0, 0, 0
        start = 0
        for i, h in enumerate(self.heads):
            width = h.W_v.shape[1]
            g, gi = h.backward(dconcat[..., start:start + width], q=q, k=k, v=v)
            start += width
            grads[f"head_{i}"] = g
            dq, dk, dv = dq + gi["q"], dk + gi["k"], dv + gi["v"]
        grads["W_out"] = dW_out
        return grads, {"q": dq, "k": dk, "v": dv}
