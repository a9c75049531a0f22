"""CMU 11-785 HW4 "mytorch" classes (seed 001, Task 1), as adapters over transformer_c's C
kernels (transformer_c.functional): Linear, Softmax, ScaledDotProductAttention,
MultiHeadAttention.

The course's conventions, kept exactly:

- Stateful layers: ``forward`` stores what ``backward`` needs; ``backward`` takes only the
  gradient of the loss with respect to the output. Linear's backward sets ``dLdW`` /
  ``dLdb`` and returns ``dLdA``; the attention classes return ``(d_q, d_k, d_v)`` and
  MultiHeadAttention leaves the parameter gradients on its four Linear projections.
- Boolean masks mean **True = do not attend** (the course's and torch.nn.MultiheadAttention's
  polarity; transformer_c.functional's is the opposite). A masked score gets ``-eps`` added,
  ``eps = 1e10`` being the course's masking constant, before the softmax; so a row whose
  keys are all masked gives finite output exactly as the course's NumPy code does (torch
  gives NaN; transformer_c.functional gives zeros).

Dtypes (the one thing these classes add to the functional API's strict rule): a layer
computes in the dtype NumPy would give its forward operands (``np.result_type`` of the
input and the weights: float32 only when both are float32; integer inputs count as
float64). The gradient passed to ``backward`` is cast to that dtype, so the float64
gradients course tests feed into a float32 layer are accepted (NumPy would promote them to
float64; this computes in float32, within float32 rounding of NumPy's result). Everything
the layer returns, and its parameter gradients, has the compute dtype.
"""
import numpy as np

from .. import functional as F
from ..functional._util import as_bool_mask

__all__ = ["Linear", "Softmax", "ScaledDotProductAttention", "MultiHeadAttention"]


def _compute_dtype(*arrays):
    """float32 when every array is float32, float64 otherwise (NumPy's promotion restricted
    to the two dtypes the kernels run in)."""
    dt = np.result_type(*[np.asarray(a).dtype for a in arrays])
    return np.dtype(np.float32) if dt == np.float32 else np.dtype(np.float64)


def _cast(x, dtype, name):
    """x as an ndarray of ``dtype`` (a copy only when the dtype differs)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _need_forward(layer):
    if getattr(layer, "_saved", None) is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")


class Linear:
    """Z = A @ W.T + b over any number of batch dims (course Task 1.1).

    W: (out_features, in_features); b: (out_features,) (a (out_features, 1) column, as in
    HW1P1, is accepted too and dLdb then has that shape). Both start as zeros (float64);
    set them with ``init_weights``.
    """

    def __init__(self, in_features, out_features):
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.W = np.zeros((self.out_features, self.in_features))
        self.b = np.zeros(self.out_features)
        self.dLdW = self.dLdb = self.dLdA = None
        self._saved = None

    def init_weights(self, W, b):
        """Set W (out_features, in_features) and b (out_features,) or (out_features, 1)."""
        W, b = np.asarray(W), np.asarray(b)
        if W.shape != (self.out_features, self.in_features):
            raise ValueError(f"W must have shape {(self.out_features, self.in_features)}, "
                             f"got {W.shape}")
        if b.size != self.out_features or b.ndim not in (1, 2):
            raise ValueError(f"b must have shape ({self.out_features},) or "
                             f"({self.out_features}, 1), got {b.shape}")
        self.W, self.b = W, b

    def forward(self, A):
        """A: (*batch_dims, in_features) -> Z: (*batch_dims, out_features). Stores A's shape
        (``input_shape``) and A for backward."""
        dt = _compute_dtype(A, self.W, self.b)
        A = _cast(A, dt, "A")
        self.input_shape = A.shape
        W, b = self.W.astype(dt, copy=False), self.b.astype(dt, copy=False).reshape(-1)
        self._saved = (A, W, b)
        return F.linear(A, W, b)

    def backward(self, dLdZ):
        """dLdZ: (*batch_dims, out_features) -> dLdA: (*batch_dims, in_features); sets
        dLdW (out_features, in_features) and dLdb (b's shape)."""
        _need_forward(self)
        A, W, b = self._saved
        dLdZ = _cast(dLdZ, A.dtype, "dLdZ")
        self.dLdA, self.dLdW, db = F.linear_backward(dLdZ, A, W, b)
        self.dLdb = db.reshape(self.b.shape)
        return self.dLdA

    __call__ = forward


class Softmax:
    """Softmax along ``dim`` of an input of any shape (course Task 1.2)."""

    def __init__(self, dim=-1):
        self.dim = dim
        self.A = None

    def forward(self, Z):
        """Z: any shape -> A: Z's shape, summing to 1 along ``dim``. Stores A."""
        Z = _cast(Z, _compute_dtype(Z), "Z")
        self.A = F.softmax(Z, axis=self.dim)
        return self.A

    def backward(self, dLdA):
        """dLdA: A's shape -> dLdZ: A's shape (the Jacobian-vector product per slice)."""
        if self.A is None:
            raise RuntimeError("Softmax.backward called before forward")
        return F.softmax_backward(_cast(dLdA, self.A.dtype, "dLdA"), self.A, axis=self.dim)

    __call__ = forward


class ScaledDotProductAttention:
    """softmax(Q K^T / sqrt(E) - eps * mask) V (course Task 1.3), in C.

    eps: the course's masking constant (1e10), added with a minus sign to the scores of
    masked positions (mask True).
    """

    def __init__(self):
        self.eps = 1e10
        self._saved = None

    def _bias(self, mask, dtype, shape):
        if mask is None:
            return None
        m = as_bool_mask(mask, "mask", "True = do not attend")
        try:
            np.broadcast_shapes(m.shape, shape)
        except ValueError:
            raise ValueError(f"mask must be broadcastable to {shape} (N, ..., H, L, S), got "
                             f"{m.shape}") from None
        return np.where(m, dtype.type(-self.eps), dtype.type(0))

    def forward(self, Q, K, V, mask=None):
        """Q (N, ..., H, L, E), K (N, ..., H, S, E), V (N, ..., H, S, Ev), mask: None or bool
        broadcastable to (N, ..., H, L, S), True = do not attend. Returns (N, ..., H, L, Ev)."""
        dt = _compute_dtype(Q, K, V)
        Q, K, V = _cast(Q, dt, "Q"), _cast(K, dt, "K"), _cast(V, dt, "V")
        bias = self._bias(mask, dt, Q.shape[:-1] + (K.shape[-2],))
        out, lse = F.scaled_dot_product_attention(Q, K, V, attn_mask=bias, return_lse=True)
        self._saved = (Q, K, V, bias, out, lse)
        return out

    def backward(self, d_output):
        """d_output (N, ..., H, L, Ev) -> (d_Q, d_K, d_V) with the shapes of Q, K, V."""
        _need_forward(self)
        Q, K, V, bias, out, lse = self._saved
        d_output = _cast(d_output, Q.dtype, "d_output")
        return F.scaled_dot_product_attention_backward(d_output, Q, K, V, attn_mask=bias,
                                                       out=out, lse=lse)

    __call__ = forward


class MultiHeadAttention:
    """Multi-head attention with the course's interface (Task 1.4), matching
    torch.nn.MultiheadAttention(embed_dim, num_heads, bias=True, batch_first=True).

    Attributes q_proj, k_proj, v_proj, out_proj (Linear(E, E)) and attention
    (ScaledDotProductAttention); after backward their dLdW / dLdb hold the parameter
    gradients.
    """

    def __init__(self, embed_dim, num_heads):
        embed_dim, num_heads = int(embed_dim), int(num_heads)
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            Linear(embed_dim, embed_dim) for _ in range(4))
        self.attention = ScaledDotProductAttention()
        self.N = self.L = self.S = None

    def init_weights(self, Wq, bq, Wk, bk, Wv, bv, Wo, bo):
        """Each W (E, E) as torch's (out, in); each b (E,)."""
        for lin, W, b in ((self.q_proj, Wq, bq), (self.k_proj, Wk, bk),
                          (self.v_proj, Wv, bv), (self.out_proj, Wo, bo)):
            lin.init_weights(W, b)

    def _split_heads(self, x):
        """(N, L, E) -> (N, H, L, E/H)."""
        N, L, E = x.shape
        return x.reshape(N, L, self.num_heads, E // self.num_heads).transpose(0, 2, 1, 3)

    def _concat_heads(self, x):
        """(N, H, L, E/H) -> (N, L, E)."""
        N, H, L, D = x.shape
        return x.transpose(0, 2, 1, 3).reshape(N, L, H * D)

    def _merge_masks(self, key_padding_mask, attn_mask):
        """key_padding_mask (N, S) and attn_mask (L, S), bool, True = do not attend (either
        may be None) -> their union as (N, H, L, S), or None when both are None."""
        N, H, L, S = self.N, self.num_heads, self.L, self.S
        if key_padding_mask is None and attn_mask is None:
            return None
        merged = np.zeros((N, H, L, S), dtype=bool)
        for m, name, shape, view in ((key_padding_mask, "key_padding_mask", (N, S),
                                      (N, 1, 1, S)),
                                     (attn_mask, "attn_mask", (L, S), (1, 1, L, S))):
            if m is None:
                continue
            m = np.asarray(m)
            if m.dtype != np.bool_:
                raise TypeError(f"{name} must be boolean (True = do not attend), got dtype "
                                f"{m.dtype}")
            if m.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {m.shape}")
            merged |= m.reshape(view)
        return merged

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        """query (N, L, E), key (N, S, E), value (N, S, E); key_padding_mask (N, S) and
        attn_mask (L, S) bool, True = do not attend. Returns (N, L, E)."""
        query, key, value = np.asarray(query), np.asarray(key), np.asarray(value)
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.ndim != 3 or x.shape[-1] != self.embed_dim:
                raise ValueError(f"{name} must have shape (N, *, {self.embed_dim}), got "
                                 f"{x.shape}")
        if key.shape != value.shape or key.shape[0] != query.shape[0]:
            raise ValueError(f"key {key.shape} and value {value.shape} must have shape "
                             f"(N, S, E) with N = query's {query.shape[0]}")
        self.N, self.L, self.S = query.shape[0], query.shape[1], key.shape[1]
        q = self._split_heads(self.q_proj.forward(query))
        k = self._split_heads(self.k_proj.forward(key))
        v = self._split_heads(self.v_proj.forward(value))
        mask = self._merge_masks(key_padding_mask, attn_mask)
        out = self.attention.forward(q, k, v, mask)
        return self.out_proj.forward(self._concat_heads(out))

    def backward(self, d_output):
        """d_output (N, L, E) -> (d_q (N, L, E), d_k (N, S, E), d_v (N, S, E)); the
        projections' dLdW / dLdb are set."""
        d_concat = self.out_proj.backward(d_output)
        dq, dk, dv = self.attention.backward(self._split_heads(d_concat))
        return (self.q_proj.backward(self._concat_heads(dq)),
                self.k_proj.backward(self._concat_heads(dk)),
                self.v_proj.backward(self._concat_heads(dv)))

    __call__ = forward
