"""Attention modules.

Coursework interface: ScaledSelfAttention (one head) and MultiHeadAttention (a list of heads
and W_out); their parameter trees and behaviour are the assignment's, but the heads run as
ONE batched call of the fused multi-head C kernel (transformer_c.functional.
scaled_dot_product_attention), not a Python loop over heads.

Fused modules (GPT-2 / torch.nn.MultiheadAttention layout): MultiHeadSelfAttention (one qkv
projection ``c_attn``, heads split by reshape, output projection ``c_proj``) with a KV cache
for decoding, and MultiHeadCrossAttention (``q_proj`` from x, one ``kv_proj`` from the
memory, ``out_proj``).

MASK CONVENTION (all modules, as transformer_c.functional): boolean masks are True = ATTEND.
torch.nn.MultiheadAttention uses the opposite (True = hide) for both attn_mask and
key_padding_mask: pass ``~mask`` when porting. Masks are constants (zero gradient).
"""
import numpy as np

from .. import functional as F
from .layers import Linear
from .module import Module, check_dtype, glorot_uniform, replace_keys

__all__ = ["ScaledSelfAttention", "MultiHeadAttention", "MultiHeadSelfAttention",
           "MultiHeadCrossAttention", "KVCache"]


def _split_heads(x, nh):
    """(..., T, nh*hs) -> (..., nh, T, hs) (a view)."""
    return np.moveaxis(x.reshape(x.shape[:-1] + (nh, x.shape[-1] // nh)), -2, -3)


def _merge_heads(x):
    """(..., nh, T, hs) -> (..., T, nh*hs)."""
    x = np.moveaxis(x, -3, -2)
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))


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

    def _check(self, q, k, v):
        for name, x in (("q", q), ("k", k), ("v", v)):
            if np.ndim(x) < 2 or np.shape(x)[-1] != self.W_q.shape[0]:
                raise ValueError(f"{name} must have shape (..., T, d_in={self.W_q.shape[0]}), "
                                 f"got {np.shape(x)}")

    def _project(self, q, k, v):
        self._check(q, k, v)
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
    head_0 .. head_{h-1} and W_out. The heads' projections are stacked into one matmul
    each for q, k and v, and all heads run in one call of the fused multi-head kernel
    (heads whose shapes, dtypes or causal flags differ fall back to one call per head).
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

    def _fused(self):
        """True when every head has the first's shapes, dtypes and causal flag."""
        h0 = self.heads[0]
        key = [(W.shape, W.dtype) for W in (h0.W_q, h0.W_k, h0.W_v)] + [h0.causal]
        return all([(W.shape, W.dtype) for W in (h.W_q, h.W_k, h.W_v)] + [h.causal] == key
                   for h in self.heads[1:])

    def _stacked(self):
        """(W_q, W_k, W_v) of all heads side by side: (d_in, h*d_k), (d_in, h*d_k), (d_in, h*d_v)."""
        return tuple(np.concatenate([getattr(h, name) for h in self.heads], axis=1)
                     for name in ("W_q", "W_k", "W_v"))

    def _attend(self, q, k, v):
        """The stacked projections, (Q, K, V) split into heads (..., h, T, d), the heads'
        output (..., h, T, d_v) and its lse."""
        self.heads[0]._check(q, k, v)
        nh = len(self.heads)
        W = self._stacked()
        Q, K, V = (_split_heads(F.matmul(x, Wx), nh) for x, Wx in zip((q, k, v), W))
        out, lse = F.scaled_dot_product_attention(Q, K, V, is_causal=self.heads[0].causal,
                                                  return_lse=True)
        return W, (Q, K, V), out, lse

    def forward(self, q, k, v):
        if not self._fused():
            concat = np.concatenate([h.forward(q=q, k=k, v=v) for h in self.heads], axis=-1)
            return F.matmul(concat, self.W_out)
        _, _, out, _ = self._attend(q, k, v)
        return F.matmul(_merge_heads(out), self.W_out)

    def backward(self, gradient_outputs, q, k, v):
        if not self._fused():
            return self._backward_per_head(gradient_outputs, q, k, v)
        nh = len(self.heads)
        W, (Q, K, V), out, lse = self._attend(q, k, v)
        dconcat, dW_out = F.matmul_backward(gradient_outputs, _merge_heads(out), self.W_out)
        dQ, dK, dV = F.scaled_dot_product_attention_backward(
            _split_heads(dconcat, nh), Q, K, V, is_causal=self.heads[0].causal, out=out, lse=lse)
        grads, inputs = {}, {}
        for name, x, key, Wall, d in zip("qkv", (q, k, v), ("W_q", "W_k", "W_v"), W, (dQ, dK, dV)):
            inputs[name], dW = F.matmul_backward(_merge_heads(d), x, Wall)
            w = Wall.shape[1] // nh
            for i in range(nh):
                grads.setdefault(f"head_{i}", {})[key] = np.ascontiguousarray(dW[:, i * w:(i + 1) * w])
        grads["W_out"] = dW_out
        return grads, inputs

    def _backward_per_head(self, gradient_outputs, q, k, v):
        concat = np.concatenate([h.forward(q=q, k=k, v=v) for h in self.heads], axis=-1)
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


# ------------------------------------------------------------------ fused modules

def _flatten_batch(x, name, E):
    """x (..., T, E) as (N, T, E) and the batch shape."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != E:
        raise ValueError(f"{name} must have shape (..., T, {E}), got {x.shape}")
    batch = x.shape[:-2]
    return x.reshape((int(np.prod(batch, dtype=np.int64)),) + x.shape[-2:]), batch


def _module_masks(attn_mask, key_padding_mask, batch, NH, T, S):
    """The module's masks for the flattened (N, NH, T, S) kernel call: attn_mask
    broadcastable to batch + (NH, T, S); key_padding_mask batch + (S,)."""
    N = int(np.prod(batch, dtype=np.int64))
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        full = batch + (NH, T, S)
        if m.ndim > len(full):
            raise ValueError(f"attn_mask must be broadcastable to {full}, got shape {m.shape}")
        m = m.reshape((1,) * (len(full) - m.ndim) + m.shape)
        if any(d != 1 and d != f for d, f in zip(m.shape, full)):
            raise ValueError(f"attn_mask must be broadcastable to {full}, got shape {m.shape}")
        if any(d != 1 for d in m.shape[:len(batch)]):
            m = np.broadcast_to(m, batch + m.shape[len(batch):])
            attn_mask = m.reshape((N,) + m.shape[len(batch):])
        else:
            attn_mask = m.reshape(m.shape[len(batch):])
    if key_padding_mask is not None:
        m = np.asarray(key_padding_mask)
        if m.shape != batch + (S,):
            raise ValueError(f"key_padding_mask must have shape {batch + (S,)} (the batch, then "
                             f"the keys), got {m.shape}")
        key_padding_mask = m.reshape(N, S)
    return attn_mask, key_padding_mask


def _mask_grads(grads, **optional):
    """Zero gradients for the non-differentiable inputs that were given (masks, seed)."""
    for name, value in optional.items():
        if value is not None:
            grads[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
    return grads


class KVCache:
    """Preallocated keys and values of one attention layer for decoding.

    k: (N, NH, Smax, HS), v: (N, NH, Smax, HS) (N = the flattened batch), of which the
    first ``pos`` positions are valid. MultiHeadSelfAttention.decode appends to it in
    place and advances pos; ``reset()`` starts a new sequence.
    """

    def __init__(self, k, v, pos=0):
        self.k, self.v, self.pos = k, v, int(pos)

    @property
    def max_len(self):
        return self.k.shape[-2]

    def reset(self):
        self.pos = 0


class MultiHeadSelfAttention(Module):
    """Fused multi-head self-attention: y = c_proj(attention(split_heads(c_attn(x)))).

    c_attn: Linear (3E, E) producing [q | k | v]; c_proj: Linear (E, E); num_heads divides
    E. Parameter tree {"c_attn": {"weights", "bias"}, "c_proj": {...}}: c_attn.weights is
    torch.nn.MultiheadAttention's in_proj_weight (GPT-2's attn.c_attn transposed), c_proj is
    its out_proj.
    causal: False, True / "top_left" or "bottom_right" (see functional); dropout_p:
    attention-probability dropout, applied only when a ``seed`` input is given (training);
    the backward given the same seed reuses the same mask.

    forward(x=(..., T, E), attn_mask=None, key_padding_mask=None, seed=None) -> (..., T, E);
    attn_mask is bool (True = attend) or float (added), broadcastable to (..., NH, T, T);
    key_padding_mask is bool (..., T), True = real token.
    """

    def __init__(self, c_attn, c_proj, num_heads, *, causal=False, dropout_p=0.0):
        self.c_attn, self.c_proj = c_attn, c_proj
        self.num_heads = int(num_heads)
        self.causal, self.dropout_p = causal, float(dropout_p)
        E = c_proj.weights.shape[0]
        if self.num_heads < 1 or E % self.num_heads != 0:
            raise ValueError(f"embed_dim ({E}) must be divisible by num_heads ({num_heads})")
        if c_attn.weights.shape != (3 * E, E) or c_proj.weights.shape != (E, E):
            raise ValueError(f"c_attn.weights must be (3E, E) = {(3 * E, E)} and c_proj.weights "
                             f"(E, E), got {c_attn.weights.shape} and {c_proj.weights.shape}")

    @staticmethod
    def create(embed_dim, num_heads, random_generator, *, causal=False, bias=True,
               dropout_p=0.0, dtype=np.float64):
        """Glorot-uniform projections (c_attn as three (E, E) blocks), zero biases."""
        dt = check_dtype(dtype)
        E = embed_dim
        if num_heads < 1 or E % num_heads != 0:
            raise ValueError(f"embed_dim ({E}) must be divisible by num_heads ({num_heads})")
        W = np.concatenate([glorot_uniform(random_generator, E, E, dtype=dt) for _ in range(3)])
        c_attn = Linear(W, np.zeros(3 * E, dt) if bias else None)
        c_proj = Linear.create(E, E, random_generator, bias=bias, dtype=dt)
        return MultiHeadSelfAttention(c_attn, c_proj, num_heads, causal=causal,
                                      dropout_p=dropout_p)

    @property
    def embed_dim(self):
        return self.c_proj.weights.shape[0]

    @property
    def parameters(self):
        return {"c_attn": self.c_attn.parameters, "c_proj": self.c_proj.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["c_attn", "c_proj"])
        return MultiHeadSelfAttention(self.c_attn.with_parameters(p["c_attn"]),
                                      self.c_proj.with_parameters(p["c_proj"]), self.num_heads,
                                      causal=self.causal, dropout_p=self.dropout_p)

    def _heads(self, x3):
        qkv = self.c_attn.forward(x=x3)
        E = self.embed_dim
        return tuple(_split_heads(qkv[..., i * E:(i + 1) * E], self.num_heads) for i in range(3))

    def _sdpa_options(self, x3, batch, attn_mask, key_padding_mask, seed):
        T = x3.shape[-2]
        attn_mask, key_padding_mask = _module_masks(attn_mask, key_padding_mask, batch,
                                                    self.num_heads, T, T)
        p = self.dropout_p if seed is not None else 0.0
        return dict(attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                    is_causal=self.causal, dropout_p=p, seed=seed)

    def forward(self, x, attn_mask=None, key_padding_mask=None, seed=None):
        x3, batch = _flatten_batch(x, "x", self.embed_dim)
        opts = self._sdpa_options(x3, batch, attn_mask, key_padding_mask, seed)
        out = F.scaled_dot_product_attention(*self._heads(x3), **opts)
        return self.c_proj.forward(x=_merge_heads(out)).reshape(np.shape(x))

    def backward(self, gradient_outputs, x, attn_mask=None, key_padding_mask=None, seed=None):
        x3, batch = _flatten_batch(x, "x", self.embed_dim)
        opts = self._sdpa_options(x3, batch, attn_mask, key_padding_mask, seed)
        q, k, v = self._heads(x3)
        out, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True, **opts)
        merged = _merge_heads(out)
        g = np.asarray(gradient_outputs).reshape(merged.shape)
        g_proj, gi = self.c_proj.backward(g, x=merged)
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            _split_heads(gi["x"], self.num_heads), q, k, v, out=out, lse=lse, **opts)
        dqkv = np.concatenate([_merge_heads(d) for d in (dq, dk, dv)], axis=-1)
        g_attn, gx = self.c_attn.backward(dqkv, x=x3)
        grads = _mask_grads({"x": gx["x"].reshape(np.shape(x))}, attn_mask=attn_mask,
                            key_padding_mask=key_padding_mask, seed=seed)
        return {"c_attn": g_attn, "c_proj": g_proj}, grads

    def init_cache(self, max_len, batch_shape=()):
        """An empty KVCache for up to max_len positions of inputs with batch dims batch_shape."""
        N = int(np.prod(batch_shape, dtype=np.int64))
        shape = (N, self.num_heads, int(max_len), self.embed_dim // self.num_heads)
        dt = self.c_proj.weights.dtype
        return KVCache(np.zeros(shape, dt), np.zeros(shape, dt))

    def decode(self, x, cache, key_padding_mask=None):
        """y for TN new positions x (..., TN, E) following the cache.pos already in cache:
        their keys/values are appended to the cache (in place, cache.pos += TN) and their
        queries attend causally to every cached position, the past not recomputed. Token by
        token this gives the causal forward's rows. key_padding_mask: None or bool
        (..., cache.pos + TN) / (..., Smax), True = real position."""
        x3, batch = _flatten_batch(x, "x", self.embed_dim)
        q, k, v = self._heads(x3)
        if key_padding_mask is not None:
            m = np.asarray(key_padding_mask)
            key_padding_mask = m.reshape((x3.shape[0], m.shape[-1]))
        out = F.attention_decode(q, k, v, cache.k, cache.v, cache.pos,
                                 key_padding_mask=key_padding_mask)
        cache.pos += x3.shape[-2]
        return self.c_proj.forward(x=_merge_heads(out)).reshape(np.shape(x))


class MultiHeadCrossAttention(Module):
    """Fused multi-head cross-attention: queries from x, keys and values from a memory
    (e.g. the encoder output): y = out_proj(attention(q_proj(x), split(kv_proj(memory)))).

    q_proj: Linear (E, E); kv_proj: Linear (2E, E_mem) producing [k | v]; out_proj: Linear
    (E, E). Parameter tree {"q_proj", "kv_proj", "out_proj"}: for torch.nn.MultiheadAttention
    q_proj is in_proj_weight[:E], kv_proj in_proj_weight[E:] (or cat(k_proj_weight,
    v_proj_weight) with kdim = vdim = E_mem), out_proj its out_proj.

    forward(x=(..., T, E), memory=(..., S, E_mem), attn_mask=None, key_padding_mask=None,
    seed=None) -> (..., T, E); key_padding_mask (..., S) True = real memory position;
    attn_mask broadcastable to (..., NH, T, S); dropout as in MultiHeadSelfAttention.
    """

    def __init__(self, q_proj, kv_proj, out_proj, num_heads, *, dropout_p=0.0):
        self.q_proj, self.kv_proj, self.out_proj = q_proj, kv_proj, out_proj
        self.num_heads, self.dropout_p = int(num_heads), float(dropout_p)
        E = out_proj.weights.shape[0]
        if self.num_heads < 1 or E % self.num_heads != 0:
            raise ValueError(f"embed_dim ({E}) must be divisible by num_heads ({num_heads})")
        if q_proj.weights.shape != (E, E) or kv_proj.weights.shape[0] != 2 * E or \
                out_proj.weights.shape != (E, E):
            raise ValueError(f"q_proj.weights must be (E, E), kv_proj.weights (2E, E_mem) and "
                             f"out_proj.weights (E, E) with E = {E}, got {q_proj.weights.shape}, "
                             f"{kv_proj.weights.shape}, {out_proj.weights.shape}")

    @staticmethod
    def create(embed_dim, num_heads, random_generator, *, memory_dim=None, bias=True,
               dropout_p=0.0, dtype=np.float64):
        dt = check_dtype(dtype)
        E, M = embed_dim, embed_dim if memory_dim is None else memory_dim
        if num_heads < 1 or E % num_heads != 0:
            raise ValueError(f"embed_dim ({E}) must be divisible by num_heads ({num_heads})")
        q_proj = Linear.create(E, E, random_generator, bias=bias, dtype=dt)
        W = np.concatenate([glorot_uniform(random_generator, M, E, dtype=dt) for _ in range(2)])
        kv_proj = Linear(W, np.zeros(2 * E, dt) if bias else None)
        out_proj = Linear.create(E, E, random_generator, bias=bias, dtype=dt)
        return MultiHeadCrossAttention(q_proj, kv_proj, out_proj, num_heads, dropout_p=dropout_p)

    @property
    def embed_dim(self):
        return self.out_proj.weights.shape[0]

    @property
    def parameters(self):
        return {"q_proj": self.q_proj.parameters, "kv_proj": self.kv_proj.parameters,
                "out_proj": self.out_proj.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["q_proj", "kv_proj", "out_proj"])
        return MultiHeadCrossAttention(self.q_proj.with_parameters(p["q_proj"]),
                                       self.kv_proj.with_parameters(p["kv_proj"]),
                                       self.out_proj.with_parameters(p["out_proj"]),
                                       self.num_heads, dropout_p=self.dropout_p)

    def _prepare(self, x, memory, attn_mask, key_padding_mask, seed):
        E, nh = self.embed_dim, self.num_heads
        x3, batch = _flatten_batch(x, "x", E)
        m3, mbatch = _flatten_batch(memory, "memory", self.kv_proj.weights.shape[1])
        if mbatch != batch:
            raise ValueError(f"memory must have the batch dims of x {batch}, got shape "
                             f"{np.shape(memory)}")
        T, S = x3.shape[-2], m3.shape[-2]
        attn_mask, key_padding_mask = _module_masks(attn_mask, key_padding_mask, batch, nh, T, S)
        kv = self.kv_proj.forward(x=m3)
        q = _split_heads(self.q_proj.forward(x=x3), nh)
        k, v = _split_heads(kv[..., :E], nh), _split_heads(kv[..., E:], nh)
        opts = dict(attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                    dropout_p=self.dropout_p if seed is not None else 0.0, seed=seed)
        return x3, m3, (q, k, v), opts

    def forward(self, x, memory, attn_mask=None, key_padding_mask=None, seed=None):
        _, _, qkv, opts = self._prepare(x, memory, attn_mask, key_padding_mask, seed)
        out = F.scaled_dot_product_attention(*qkv, **opts)
        return self.out_proj.forward(x=_merge_heads(out)).reshape(np.shape(x))

    def backward(self, gradient_outputs, x, memory, attn_mask=None, key_padding_mask=None,
                 seed=None):
        x3, m3, (q, k, v), opts = self._prepare(x, memory, attn_mask, key_padding_mask, seed)
        out, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True, **opts)
        merged = _merge_heads(out)
        g = np.asarray(gradient_outputs).reshape(merged.shape)
        g_out, gi = self.out_proj.backward(g, x=merged)
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            _split_heads(gi["x"], self.num_heads), q, k, v, out=out, lse=lse, **opts)
        g_q, gx = self.q_proj.backward(_merge_heads(dq), x=x3)
        dkv = np.concatenate([_merge_heads(dk), _merge_heads(dv)], axis=-1)
        g_kv, gm = self.kv_proj.backward(dkv, x=m3)
        grads = _mask_grads({"x": gx["x"].reshape(np.shape(x)),
                             "memory": gm["x"].reshape(np.shape(memory))},
                            attn_mask=attn_mask, key_padding_mask=key_padding_mask, seed=seed)
        return {"q_proj": g_q, "kv_proj": g_kv, "out_proj": g_out}, grads
