"""Attention layers: ONE multi-head attention implementation (``MultiHead``: split heads,
optional RoPE, the fused C kernel transformer_c.functional.scaled_dot_product_attention,
merge heads; and its backward) under every attention layer:

- ``SelfAttention``: one fused projection c_attn -> [q | k | v], c_proj (GPT-2's layout),
  with a KV cache for decoding (``init_cache`` / ``decode``, ``KVCache``);
- ``CrossAttention``: q_attn from x, one fused c_attn -> [k | v] from a memory, c_proj
  (Hugging Face GPT-2's ``crossattention``);
- the coursework ``ScaledSelfAttention`` (one head, W_q / W_k / W_v) and
  ``MultiHeadAttention`` (heads + W_out): their heads' matrices are stacked into one
  projection each and all heads run as one call of the same implementation.

Options, one vocabulary for every layer: ``causal`` is False / True or a name of
transformer_c.options.CAUSAL_MODES (False = "none", True = "top_left"). MASKS are
True = ATTEND (attn_mask) / True = a real key (key_padding_mask), as
transformer_c.functional; torch.nn.MultiheadAttention and transformer_c.data's coursework
masks use the opposite: pass ``~mask``. Masks are constants (zero gradient).
"""
import numpy as np

from .. import functional as F
from ..options import check_option
from .layers import Dense, Norm
from .module import CachedModule, check_dtype, glorot_uniform, replace_keys, \
    with_zero_grads

__all__ = ["causal_mode", "MultiHead", "SelfAttention", "CrossAttention", "KVCache",
           "ScaledSelfAttention", "MultiHeadAttention"]


def causal_mode(causal, name="causal"):
    """The options.CAUSAL_MODES name of a layer's ``causal`` option: False -> "none",
    True -> "top_left", a CAUSAL_MODES name -> itself; ValueError naming ``name``
    otherwise."""
    if isinstance(causal, (bool, np.bool_)):
        return "top_left" if causal else "none"
    return check_option("causal", causal, name=name)


def _checked_causal(causal):
    """The value a layer keeps as its ``causal`` attribute: a bool stays a bool, a mode
    name is validated."""
    return bool(causal) if isinstance(causal, (bool, np.bool_)) else causal_mode(causal)


def check_kv_heads(n_kv_head, n_head):
    """n_kv_head (None: one kv head per query head) as an int dividing n_head, else a
    ValueError naming it."""
    if n_kv_head is None:
        return None
    if (isinstance(n_kv_head, (bool, np.bool_)) or not isinstance(n_kv_head, (int, np.integer))
            or n_kv_head < 1 or n_head % n_kv_head):
        raise ValueError(f"n_kv_head must be None or a positive divisor of n_head ({n_head}), "
                         f"got {n_kv_head!r}")
    return int(n_kv_head)


def split_heads(x, nh):
    """(..., T, nh*hs) -> (..., nh, T, hs), contiguous."""
    h = x.reshape(x.shape[:-1] + (nh, x.shape[-1] // nh))
    return np.ascontiguousarray(np.moveaxis(h, -2, -3))


def merge_heads(x):
    """(..., nh, T, hs) -> (..., T, nh*hs), contiguous."""
    x = np.ascontiguousarray(np.moveaxis(x, -3, -2))
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))


def check_head_mask(head_mask, shape, name="head_mask"):
    """None, or head_mask as a float64 array of ``shape`` with finite entries (a
    ValueError / TypeError naming ``name`` otherwise). A head mask multiplies each head's
    attention output (before the output projection): 1 keeps a head, 0 ablates it."""
    if head_mask is None:
        return None
    m = np.asarray(head_mask)
    if m.dtype == object or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (one entry per "
                         f"{'(layer, head)' if len(shape) == 2 else 'head'}), got {m.shape}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} must be finite")
    return m


def flatten_batch(x, name, E):
    """x (..., T, E) as (N, T, E) and the batch shape (ValueError naming ``name``)."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != E:
        raise ValueError(f"{name} must have shape (..., T, {E}), got {x.shape}")
    batch = x.shape[:-2]
    return x.reshape((int(np.prod(batch, dtype=np.int64)),) + x.shape[-2:]), batch


def _module_masks(attn_mask, key_padding_mask, batch, NH, T, S):
    """The layer's masks for the flattened (N, NH, T, S) kernel call: attn_mask
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


class MultiHead(CachedModule):
    """The attention all layers share. Attributes: n_head, causal (see causal_mode), rope
    (None or dict(base=, interleaved=) for F.rope on q and k), dropout (probability on the
    attention probabilities; 0 turns it off), seed (its masks) and sparse (None, or a
    functional.SparseLayout: block-sparse attention).

    _attend(q (N, T, NH*HD), k (N, S, NH*HD), v (N, S, NH*HV), opts) -> (y (N, T, NH*HV),
    cache); _attend_backward(dy, cache, norm_grads=None) -> (dq, dk, dv) of the same
    shapes. A layer with QK-norm (attributes q_norm, k_norm: RMS Norms over the head size,
    else None) normalises every head's q and k before RoPE; its backward puts their grads
    into the dict norm_grads (keys q_norm, k_norm).
    """

    q_norm = k_norm = None

    def _init_attention(self, n_head, width, causal, rope=None, dropout=0.0, seed=0,
                        head_mask=None, sparse=None):
        self.n_head, self.causal, self.rope = int(n_head), _checked_causal(causal), rope
        self.dropout, self.seed = float(dropout), seed
        if sparse is not None and not isinstance(sparse, F.SparseLayout):
            raise TypeError(f"sparse must be None or a SparseLayout (functional.sparse_layout), "
                            f"got {type(sparse).__name__}")
        self.sparse = sparse
        if self.n_head < 1 or width % self.n_head:
            raise ValueError(f"n_embd ({width}) must be divisible by n_head ({n_head})")
        self.head_mask = check_head_mask(head_mask, (self.n_head,))

    def _options(self, batch, T, S, attn_mask=None, key_padding_mask=None):
        """The kernel's keyword options for a flattened batch of T queries and S keys."""
        attn_mask, key_padding_mask = _module_masks(attn_mask, key_padding_mask, batch,
                                                    self.n_head, T, S)
        mode = causal_mode(self.causal)
        opts = dict(is_causal=False if mode == "none" else mode)
        if self.dropout > 0:
            opts.update(dropout_p=self.dropout, seed=self.seed)
        if key_padding_mask is not None:
            opts["key_padding_mask"] = key_padding_mask
        if attn_mask is not None:
            opts["attn_mask"] = attn_mask
        if self.sparse is not None:
            opts["sparse"] = self.sparse
        return opts

    def _head_scale(self, y):
        """y (..., NH, T, HV) with head h multiplied by head_mask[h] (y itself without a
        mask)."""
        if self.head_mask is None:
            return y
        return y * self.head_mask.astype(y.dtype)[:, None, None]

    def _attend(self, q, k, v, opts):
        nkv = getattr(self, "n_kv_head", None) or self.n_head  # grouped k, v (SelfAttention)
        q, k, v = split_heads(q, self.n_head), split_heads(k, nkv), split_heads(v, nkv)
        qkc = None
        if self.q_norm is not None:
            (q, cq), (k, ck) = self.q_norm.forward_cached(q), self.k_norm.forward_cached(k)
            qkc = (cq, ck)
        if self.rope is not None:
            q, k = F.rope(q, **self.rope), F.rope(k, **self.rope)
        y, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True, **opts)
        return merge_heads(self._head_scale(y)), (q, k, v, y, lse, opts, qkc)

    @staticmethod
    def _weights(cache, batch, average=False):
        """The probabilities of the _attend call that made ``cache``, batch + (NH, T, S)
        (pre-dropout; masked keys exactly 0), in C from its q, k and logsumexp; averaged
        over heads, batch + (T, S), when ``average``."""
        q, k, _, _, lse, opts, _ = cache
        keys = ("attn_mask", "key_padding_mask", "is_causal", "sparse")
        w = F.attention_weights(q, k, lse, **{key: opts[key] for key in keys if key in opts})
        w = w.reshape(batch + w.shape[1:])
        return w.mean(axis=-3) if average else w

    def _attend_backward(self, dy, cache, norm_grads=None):
        q, k, v, y, lse, opts, qkc = cache
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            self._head_scale(split_heads(dy, self.n_head)), q, k, v, out=y, lse=lse, **opts)
        if self.rope is not None:
            dq, dk = F.rope_backward(dq, **self.rope), F.rope_backward(dk, **self.rope)
        if qkc is not None:
            gq, dq = self.q_norm.backward_cached(dq, qkc[0])
            gk, dk = self.k_norm.backward_cached(dk, qkc[1])
            if norm_grads is not None:
                norm_grads.update(q_norm=gq, k_norm=gk)
        return merge_heads(dq), merge_heads(dk), merge_heads(dv)


class _Projected(MultiHead):
    """Attention between Dense projections named by the class data KEYS (attribute and
    parameter names, in tree order); LAYER is the projections' class."""

    LAYER = Dense

    def _keys(self):
        """KEYS, then q_norm and k_norm with QK-norm (the parameter tree's order)."""
        return self.KEYS + (() if self.q_norm is None else ("q_norm", "k_norm"))

    def _layers(self):
        return [getattr(self, k) for k in self._keys()]

    @property
    def parameters(self):
        return {k: layer.parameters for k, layer in zip(self._keys(), self._layers())}

    def _options_kw(self):
        return dict(causal=self.causal, dropout=self.dropout, seed=self.seed)

    def with_parameters(self, parameters):
        keys = self._keys()
        p = replace_keys(self, parameters, keys)
        layers = [layer.with_parameters(p[k]) for k, layer in zip(keys, self._layers())]
        n = len(self.KEYS)
        return type(self)(*layers[:n], self.n_head, **self._options_kw(),
                          **dict(zip(keys[n:], layers[n:])))

    @property
    def embed_dim(self):
        """The model width C (rows of the output projection)."""
        return getattr(self, self.KEYS[-1]).weight_matrix.shape[0]


class KVCache:
    """Preallocated keys and values of one attention layer for decoding.

    k: (N, NKV, Smax, HS), v: (N, NKV, Smax, HS) (N = the flattened batch; NKV the kv heads,
    NH without grouped-query attention), of which the
    first ``pos`` positions are valid. SelfAttention.decode appends to it in place and
    advances pos; ``reset()`` starts a new sequence.
    """

    def __init__(self, k, v, pos=0):
        self.k, self.v, self.pos = k, v, int(pos)

    @property
    def max_len(self):
        """Smax, the positions the cache holds."""
        return self.k.shape[-2]

    def reset(self):
        """Forget the cached positions (pos = 0)."""
        self.pos = 0


class SelfAttention(_Projected):
    """Multi-head self-attention with one fused input projection (GPT-2's layout).

    SelfAttention(c_attn: Dense (3C, C) giving [q | k | v], c_proj: Dense (C, C), n_head,
    *, causal=True, rope=None, dropout=0.0, seed=0, head_mask=None, n_kv_head=None); heads
    split by reshape (head h owns channels h*HS .. (h+1)*HS of each). n_kv_head: None
    (= n_head), or a divisor of n_head: grouped-query attention (1: multi-query), c_attn
    then (C + 2 KC, C) giving [q (C) | k (KC) | v (KC)], KC = n_kv_head * HS, query head h
    attending with kv head h // (n_head // n_kv_head); the KV cache holds n_kv_head heads. head_mask: None or (NH,) numbers, head
    h's output (its HS channels entering c_proj) multiplied by head_mask[h] (0 ablates the
    head; the backward applies the same factor). forward(x=(..., T, C), key_padding_mask=None,
    attn_mask=None) -> (..., T, C). key_padding_mask: bool (..., T), True = a real token;
    attn_mask: bool (True = attend) or float (added), broadcastable to (..., NH, T, T).
    rope: None, or dict(base=..., interleaved=...) to rotate q and k by position.
    dropout: probability of dropping an attention probability, masks from ``seed`` (0
    turns it off: set it to 0 in eval mode). sparse: None (dense) or a
    functional.SparseLayout: block-sparse attention (also in ``decode``). q_norm, k_norm:
    None (default) or both Norms over the head size C / n_head (kind "rmsnorm" for OLMo 2 /
    Gemma 3 QK-norm): every head's q and k normalised after c_attn, before RoPE (with
    n_kv_head, k_norm acts on the n_kv_head key heads before they are shared, and the KV
    cache holds the normalised keys); parameter keys q_norm and k_norm follow c_proj.
    """

    KEYS = ("c_attn", "c_proj")

    def __init__(self, c_attn, c_proj, n_head, *, causal=True, rope=None, dropout=0.0, seed=0,
                 head_mask=None, sparse=None, q_norm=None, k_norm=None, n_kv_head=None):
        self.c_attn, self.c_proj = c_attn, c_proj
        E = c_proj.weight_matrix.shape[0]
        self._init_attention(n_head, E, causal, rope, dropout, seed, head_mask,
                             sparse=sparse)
        if (q_norm is None) != (k_norm is None):
            raise ValueError("q_norm and k_norm: give both (QK-norm) or neither")
        for name, nm in (("q_norm", q_norm), ("k_norm", k_norm)):
            if nm is not None and (not isinstance(nm, Norm) or
                                   nm.weight_matrix.shape != (E // self.n_head,)):
                raise ValueError(f"{name} must be a Norm over the head size "
                                 f"({E // self.n_head},), got {nm!r}")
        self.q_norm, self.k_norm = q_norm, k_norm
        self.n_kv_head = check_kv_heads(n_kv_head, self.n_head)
        W = E + 2 * self.kv_width
        if c_attn.weight_matrix.shape != (W, E) or c_proj.weight_matrix.shape != (E, E):
            raise ValueError(f"c_attn's weight must be (C + 2 KC, C) = {(W, E)} and c_proj's "
                             f"(C, C), got {c_attn.weight_matrix.shape} and "
                             f"{c_proj.weight_matrix.shape}")

    @property
    def kv_heads(self):
        """The heads of k and v (n_kv_head, or n_head without grouping)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def kv_width(self):
        """KC = kv_heads * head size: the width of k (and of v) in c_attn's output."""
        return self.kv_heads * (self.c_proj.weight_matrix.shape[0] // self.n_head)

    def _split_qkv(self, qkv):
        """q (..., C), k (..., KC), v (..., KC) of c_attn's output (..., C + 2 KC)."""
        C, KC = self.embed_dim, self.kv_width
        return qkv[..., :C], qkv[..., C:C + KC], qkv[..., C + KC:]

    def _options_kw(self):
        return dict(super()._options_kw(), rope=self.rope, head_mask=self.head_mask,
                    sparse=self.sparse, n_kv_head=self.n_kv_head)

    @classmethod
    def create(cls, embed_dim, n_head, random_generator, *, bias=True, dtype=np.float64,
               **options):
        """Glorot-uniform projections (c_attn as three blocks, (C, C), (KC, C), (KC, C)),
        zero biases; options: causal, rope, dropout, seed, sparse, n_kv_head."""
        dt, E = check_dtype(dtype), embed_dim
        if n_head < 1 or E % n_head:
            raise ValueError(f"n_embd ({E}) must be divisible by n_head ({n_head})")
        nkv = check_kv_heads(options.get("n_kv_head"), n_head)
        KC = E if nkv is None else nkv * (E // n_head)
        W = np.concatenate([glorot_uniform(random_generator, E, n, dtype=dt)
                            for n in (E, KC, KC)])
        c_attn = cls.LAYER(W, np.zeros(E + 2 * KC, dt) if bias else None)
        c_proj = cls.LAYER.create(E, E, random_generator, bias=bias, dtype=dt)
        return cls(c_attn, c_proj, n_head, **options)

    def forward(self, x, key_padding_mask=None, attn_mask=None, *, return_weights=False,
                average_weights=False):
        """y (..., T, C) for x (..., T, C); with return_weights (y, weights): the attention
        probabilities per head (..., NH, T, T), or averaged over heads (..., T, T) with
        average_weights (pre-dropout, masked keys exactly 0; computed in C from the
        forward's q, k and logsumexp, y unchanged)."""
        y, cache = self.forward_cached(x, key_padding_mask, attn_mask)
        if not return_weights:
            return y
        return y, self._weights(cache[1], np.shape(x)[:-2], average_weights)

    def attention_maps(self, x, key_padding_mask=None, attn_mask=None):
        """The per-head attention probabilities (..., NH, T, T) of forward(x, ...)."""
        return self.forward(x, key_padding_mask, attn_mask, return_weights=True)[1]

    def cached_weights(self, cache):
        """The per-head probabilities (N, NH, T, T) of the forward_cached call that made
        ``cache`` (x flattened to N = prod(batch) rows), in C."""
        return self._weights(cache[1], cache[3][:-2])

    def forward_cached(self, x, key_padding_mask=None, attn_mask=None):
        """(y (..., T, C), cache) for x (..., T, C)."""
        x3, batch = flatten_batch(x, "x", self.embed_dim)
        qkv, c1 = self.c_attn.forward_cached(x3)
        T = x3.shape[-2]
        opts = self._options(batch, T, T, attn_mask, key_padding_mask)
        y, ca = self._attend(*self._split_qkv(qkv), opts)
        out, c2 = self.c_proj.forward_cached(y)
        return out.reshape(np.shape(x)), (c1, ca, c2, out.shape)

    def backward_cached(self, g, cache):
        """(grads, dx (..., T, C)) for g (..., T, C)."""
        c1, ca, c2, shape = cache
        g2, dy = self.c_proj.backward_cached(np.asarray(g).reshape(shape), c2)
        ng = {}
        dqkv = np.concatenate(self._attend_backward(dy, ca, ng), axis=-1)
        g1, dx = self.c_attn.backward_cached(dqkv, c1)
        return {self.KEYS[0]: g1, self.KEYS[1]: g2, **ng}, dx.reshape(np.shape(g))

    def init_cache(self, max_len, batch_shape=()):
        """An empty KVCache for up to max_len positions of inputs with batch dims
        batch_shape."""
        N = int(np.prod(batch_shape, dtype=np.int64))
        shape = (N, self.kv_heads, int(max_len), self.embed_dim // self.n_head)
        dt = self.c_proj.weight_matrix.dtype
        return KVCache(np.zeros(shape, dt), np.zeros(shape, dt))

    def decode(self, x, cache, key_padding_mask=None):
        """y for TN new positions x (..., TN, C) following the cache.pos already in cache:
        their keys/values are appended to the cache (in place, cache.pos += TN) and their
        queries attend causally to every cached position, the past not recomputed. Token by
        token this gives the causal forward's rows. key_padding_mask: None or bool
        (..., cache.pos + TN) / (..., Smax), True = real position."""
        x3, batch = flatten_batch(x, "x", self.embed_dim)
        qkv = self.c_attn.forward_cached(x3)[0]
        q, k, v = self._split_qkv(qkv)
        q, k, v = split_heads(q, self.n_head), split_heads(k, self.kv_heads), split_heads(
            v, self.kv_heads)
        if self.q_norm is not None:
            q, k = self.q_norm.forward_cached(q)[0], self.k_norm.forward_cached(k)[0]
        if key_padding_mask is not None:
            m = np.asarray(key_padding_mask)
            key_padding_mask = m.reshape((x3.shape[0], m.shape[-1]))
        out = F.attention_decode(q, k, v, cache.k, cache.v, cache.pos,
                                 key_padding_mask=key_padding_mask, sparse=self.sparse)
        cache.pos += x3.shape[-2]
        out = merge_heads(self._head_scale(out))
        return self.c_proj.forward_cached(out)[0].reshape(np.shape(x))


class CrossAttention(_Projected):
    """Multi-head attention from x to a memory (an encoder's output), Hugging Face GPT-2's
    ``crossattention`` layout: q_attn: Dense (C, C) gives the queries from x; c_attn:
    Dense (2C, C_mem) gives [k | v] from the memory; c_proj: Dense (C, C).

    CrossAttention(q_attn, c_attn, c_proj, n_head, *, causal=False, dropout=0.0, seed=0).
    forward(x=(..., T, C), memory=(..., S, C_mem), key_padding_mask=None, attn_mask=None)
    -> (..., T, C); key_padding_mask: bool (..., S), True = a real memory position (a
    query whose memory is all padding gets 0); attn_mask broadcastable to (..., NH, T, S).
    backward also returns the memory's gradient.
    """

    KEYS = ("q_attn", "c_attn", "c_proj")

    def __init__(self, q_attn, c_attn, c_proj, n_head, *, causal=False, dropout=0.0, seed=0):
        self.q_attn, self.c_attn, self.c_proj = q_attn, c_attn, c_proj
        E = c_proj.weight_matrix.shape[0]
        self._init_attention(n_head, E, causal, None, dropout, seed)
        if q_attn.weight_matrix.shape != (E, E) or c_attn.weight_matrix.shape[0] != 2 * E or \
                c_proj.weight_matrix.shape != (E, E):
            raise ValueError(f"the query projection must be (C, C), the key/value one "
                             f"(2C, C_mem) and the output one (C, C) with C = {E}, got "
                             f"{[m.weight_matrix.shape for m in self._layers()]}")

    @classmethod
    def create(cls, embed_dim, n_head, random_generator, *, memory_dim=None, bias=True,
               dtype=np.float64, **options):
        """Glorot-uniform projections (the key/value one as two (C, C_mem) blocks), zero
        biases; options: causal, dropout, seed."""
        dt = check_dtype(dtype)
        E, M = embed_dim, embed_dim if memory_dim is None else memory_dim
        if n_head < 1 or E % n_head:
            raise ValueError(f"n_embd ({E}) must be divisible by n_head ({n_head})")
        q = cls.LAYER.create(E, E, random_generator, bias=bias, dtype=dt)
        W = np.concatenate([glorot_uniform(random_generator, M, E, dtype=dt) for _ in range(2)])
        kv = cls.LAYER(W, np.zeros(2 * E, dt) if bias else None)
        out = cls.LAYER.create(E, E, random_generator, bias=bias, dtype=dt)
        return cls(q, kv, out, n_head, **options)

    def forward(self, x, memory, key_padding_mask=None, attn_mask=None, *,
                return_weights=False, average_weights=False):
        """y (..., T, C) for x (..., T, C) attending to memory (..., S, C_mem); with
        return_weights (y, weights): the probabilities per head (..., NH, T, S), or averaged
        over heads (..., T, S) with average_weights (pre-dropout, masked keys exactly 0)."""
        y, cache = self.forward_cached(x, memory, key_padding_mask, attn_mask)
        if not return_weights:
            return y
        return y, self._weights(cache[2], np.shape(x)[:-2], average_weights)

    def attention_maps(self, x, memory, key_padding_mask=None, attn_mask=None):
        """The per-head attention probabilities (..., NH, T, S) of forward(x, memory, ...)."""
        return self.forward(x, memory, key_padding_mask, attn_mask, return_weights=True)[1]

    def backward(self, gradient_outputs, x, memory, key_padding_mask=None, attn_mask=None):
        """(grads, {"x", "memory", and zeros for the masks given})."""
        grads, dx, dmem = self.backward_cached(
            gradient_outputs, self.forward_cached(x, memory, key_padding_mask, attn_mask)[1])
        return grads, with_zero_grads({"x": dx, "memory": dmem},
                                      {"key_padding_mask": key_padding_mask,
                                       "attn_mask": attn_mask})

    def cached_weights(self, cache):
        """The per-head probabilities (N, NH, T, S) of the forward_cached call that made
        ``cache`` (x flattened to N = prod(batch) rows), in C."""
        return self._weights(cache[2], cache[4][:-2])

    def forward_cached(self, x, memory, key_padding_mask=None, attn_mask=None):
        """(y (..., T, C), cache)."""
        q_attn, c_attn, c_proj = self._layers()
        E = self.embed_dim
        x3, batch = flatten_batch(x, "x", E)
        m3, mbatch = flatten_batch(memory, "memory", c_attn.weight_matrix.shape[1])
        if mbatch != batch:
            raise ValueError(f"memory must have the batch dims of x {batch}, got shape "
                             f"{np.shape(memory)}")
        qx, c0 = q_attn.forward_cached(x3)
        kv, c1 = c_attn.forward_cached(m3)
        opts = self._options(batch, x3.shape[-2], m3.shape[-2], attn_mask, key_padding_mask)
        y, ca = self._attend(qx, kv[..., :E], kv[..., E:], opts)
        out, c2 = c_proj.forward_cached(y)
        return out.reshape(np.shape(x)), (c0, c1, ca, c2, out.shape, np.shape(memory))

    def backward_cached(self, g, cache):
        """(grads, dx (..., T, C), dmemory (..., S, C_mem))."""
        c0, c1, ca, c2, shape, mshape = cache
        q_attn, c_attn, c_proj = self._layers()
        g2, dy = c_proj.backward_cached(np.asarray(g).reshape(shape), c2)
        dq, dk, dv = self._attend_backward(dy, ca)
        g0, dx = q_attn.backward_cached(dq, c0)
        g1, dmem = c_attn.backward_cached(np.concatenate([dk, dv], axis=-1), c1)
        return (dict(zip(self.KEYS, (g0, g1, g2))), dx.reshape(np.shape(g)),
                dmem.reshape(mshape))


# ------------------------------------------------------------------ coursework adapters

class ScaledSelfAttention(MultiHead):
    """One attention head: softmax(Q K^T / sqrt(d_k)) V with Q = q W_q, K = k W_k, V = v W_v.

    W_q, W_k: (d_in, d_k); W_v: (d_in, d_v). forward(q=(..., T, d_in), k=(..., S, d_in),
    v=(..., S, d_in)) -> (..., T, d_v); unbatched (T, d_in) or batched (B, T, d_in).
    causal=True masks keys after each query (the coursework adds -1e9 above the diagonal
    before the softmax; the C kernel uses -inf, which gives the same probabilities, exactly
    zero, and exactly zero score gradients there). A one-head MultiHeadAttention without
    an output projection: the same implementation.
    """

    def __init__(self, W_q, W_k, W_v, *, causal=False):
        self.W_q, self.W_k, self.W_v = np.asarray(W_q), np.asarray(W_k), np.asarray(W_v)
        self._init_attention(1, 1, causal)

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

    def _mha(self):
        return MultiHeadAttention([self], None)

    def forward(self, q, k, v, *, return_weights=False):
        """(..., T, d_v); with return_weights (y, weights (..., T, S)): the head's attention
        probabilities (pre-dropout, masked keys exactly 0), computed in C."""
        out = self._mha().forward(q=q, k=k, v=v, return_weights=return_weights)
        return (out[0], out[1][..., 0, :, :]) if return_weights else out

    def backward(self, gradient_outputs, q, k, v):
        grads, inputs = self._mha().backward(gradient_outputs, q=q, k=k, v=v)
        return grads["head_0"], inputs

    def forward_cached(self, x):
        """Self-attention as a block's sublayer: (y (..., T, d_v), cache), q = k = v = x."""
        return self._mha().forward_cached(x)

    def backward_cached(self, g, cache):
        """(grads, dx (..., T, d_in))."""
        grads, dx = self._mha().backward_cached(g, cache)
        return grads["head_0"], dx


class MultiHeadAttention(MultiHead):
    """concat(head_0(q,k,v), ..., head_{h-1}(q,k,v)) @ W_out.

    heads: list of ScaledSelfAttention; W_out: (h * d_v, d_model). Parameter keys
    head_0 .. head_{h-1} and W_out. The heads' projections are stacked into one matmul
    each for q, k and v, and all heads run as one call of the shared attention (heads
    whose shapes, dtypes or causal flags differ run one call per head). As a block's
    sublayer (forward_cached(x)) it is self-attention: q = k = v = x.
    """

    def __init__(self, heads, W_out):
        self.heads = list(heads)
        self.W_out = None if W_out is None else np.asarray(W_out)
        if not self.heads:
            raise ValueError("heads must hold at least one ScaledSelfAttention")
        self._init_attention(len(self.heads), len(self.heads), self.heads[0].causal)

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

    def _out(self, concat):
        return concat if self.W_out is None else F.matmul(concat, self.W_out)

    def _forward_qkv(self, q, k, v):
        """(output (..., T, d_model), cache) for q (..., T, d_in), k, v (..., S, d_in)."""
        if not self._fused():
            concat = np.concatenate([h.forward(q=q, k=k, v=v) for h in self.heads], axis=-1)
            return self._out(concat), (q, k, v, concat)
        self.heads[0]._check(q, k, v)
        W = self._stacked()
        P = [F.matmul(x, Wx) for x, Wx in zip((q, k, v), W)]
        batch, T, S = P[0].shape[:-2], P[0].shape[-2], P[1].shape[-2]
        y, ca = self._attend(*(p.reshape((-1,) + p.shape[-2:]) for p in P),
                             self._options(batch, T, S))
        concat = y.reshape(batch + y.shape[-2:])
        return self._out(concat), (q, k, v, concat, W, ca)

    def _backward_qkv(self, g, cache):
        """(grads, {"q", "k", "v"}) for g (..., T, d_model)."""
        q, k, v, concat = cache[:4]
        if not self._fused():
            return self._backward_per_head(g, q, k, v, concat)
        dconcat, grads = self._out_backward(g, concat)
        W, ca = cache[4:]
        d = self._attend_backward(np.asarray(dconcat).reshape((-1,) + concat.shape[-2:]), ca)
        nh, heads, inputs = len(self.heads), {}, {}
        for name, x, key, Wall, dP in zip("qkv", (q, k, v), ("W_q", "W_k", "W_v"), W, d):
            inputs[name], dW = F.matmul_backward(dP.reshape(x.shape[:-1] + dP.shape[-1:]), x,
                                                 Wall)
            w = Wall.shape[1] // nh
            for i in range(nh):
                heads.setdefault(f"head_{i}", {})[key] = np.ascontiguousarray(dW[:, i * w:(i + 1) * w])
        return {**heads, **grads}, inputs

    def _out_backward(self, g, concat):
        """(dconcat, {"W_out": dW_out} or {} without an output projection)."""
        if self.W_out is None:
            return g, {}
        dconcat, dW_out = F.matmul_backward(g, concat, self.W_out)
        return dconcat, {"W_out": dW_out}

    def _backward_per_head(self, g, q, k, v, concat=None):
        """backward with one call per head (heads of different shapes or options)."""
        if concat is None:
            concat = np.concatenate([h.forward(q=q, k=k, v=v) for h in self.heads], axis=-1)
        dconcat, grads = self._out_backward(g, concat)
        heads, dq, dk, dv = {}, 0, 0, 0
        start = 0
        for i, h in enumerate(self.heads):
            width = h.W_v.shape[1]
            heads[f"head_{i}"], gi = h.backward(dconcat[..., start:start + width], q=q, k=k, v=v)
            start += width
            dq, dk, dv = dq + gi["q"], dk + gi["k"], dv + gi["v"]
        return {**heads, **grads}, {"q": dq, "k": dk, "v": dv}

    def forward(self, q, k, v, *, return_weights=False, average_weights=False):
        """(..., T, d_model) for q (..., T, d_in), k, v (..., S, d_in); with return_weights
        (y, weights): the attention probabilities per head (..., h, T, S), or averaged over
        the heads (..., T, S) with average_weights (torch.nn.MultiheadAttention's
        average_attn_weights), computed in C from the forward's q, k and logsumexp."""
        y, cache = self._forward_qkv(q, k, v)
        if not return_weights:
            return y
        if len(cache) > 4:
            w = self._weights(cache[5], np.shape(cache[3])[:-2])
        else:  # heads of different shapes: one call per head
            w = np.concatenate([h._mha().attention_maps(q, k, v) for h in self.heads], axis=-3)
        return y, w.mean(axis=-3) if average_weights else w

    def attention_maps(self, q, k, v):
        """The per-head attention probabilities (..., h, T, S) of forward(q, k, v)."""
        return self.forward(q, k, v, return_weights=True)[1]

    def backward(self, gradient_outputs, q, k, v):
        return self._backward_qkv(gradient_outputs, self._forward_qkv(q, k, v)[1])

    def forward_cached(self, x):
        """Self-attention as a block's sublayer: (y, cache) with q = k = v = x."""
        return self._forward_qkv(x, x, x)

    def backward_cached(self, g, cache):
        """(grads, dq + dk + dv)."""
        grads, gi = self._backward_qkv(g, cache)
        return grads, gi["q"] + gi["k"] + gi["v"]


def __getattr__(name):
    """Deprecated names (see nn._deprecated), with a DeprecationWarning."""
    if name not in ("MultiHeadSelfAttention", "MultiHeadCrossAttention"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._deprecated import deprecated_attribute
    return deprecated_attribute(__name__, name)
