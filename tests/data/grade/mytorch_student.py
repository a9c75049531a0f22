"""A correct CMU HW4 mytorch submission in plain NumPy (test fixture)."""
import numpy as np


class Linear:
    def __init__(self, in_features, out_features):
        self.W = np.zeros((out_features, in_features))
        self.b = np.zeros(out_features)

    def init_weights(self, W, b):
        self.W, self.b = W, b

    def forward(self, A):
        self.input_shape = A.shape
        self.A = A.reshape(-1, A.shape[-1])
        Z = self.A @ self.W.T + self.b
        return Z.reshape(*A.shape[:-1], -1)

    def backward(self, dLdZ):
        dLdZ = dLdZ.reshape(-1, dLdZ.shape[-1])
        self.dLdW = dLdZ.T @ self.A
        self.dLdb = dLdZ.sum(axis=0)
        return (dLdZ @ self.W).reshape(self.input_shape)


class Softmax:
    def __init__(self, dim=-1):
        self.dim = dim

    def forward(self, Z):
        e = np.exp(Z - Z.max(axis=self.dim, keepdims=True))
        self.A = e / e.sum(axis=self.dim, keepdims=True)
        return self.A

    def backward(self, dLdA):
        return self.A * (dLdA - (dLdA * self.A).sum(axis=self.dim, keepdims=True))


class ScaledDotProductAttention:
    def __init__(self):
        self.eps = 1e10
        self.softmax = Softmax(dim=-1)

    def forward(self, Q, K, V, mask=None):
        self.Q, self.K, self.V = Q, K, V
        scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
        if mask is not None:
            scores = scores - self.eps * mask
        self.attention_scores = self.softmax.forward(scores)
        return self.attention_scores @ V

    def backward(self, d_output):
        A = self.attention_scores
        d_V = np.swapaxes(A, -1, -2) @ d_output
        d_A = d_output @ np.swapaxes(self.V, -1, -2)
        d_S = self.softmax.backward(d_A) / np.sqrt(self.Q.shape[-1])
        return d_S @ self.K, np.swapaxes(d_S, -1, -2) @ self.Q, d_V


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            Linear(embed_dim, embed_dim) for _ in range(4))
        self.attention = ScaledDotProductAttention()

    def init_weights(self, Wq, bq, Wk, bk, Wv, bv, Wo, bo):
        self.q_proj.init_weights(Wq, bq)
        self.k_proj.init_weights(Wk, bk)
        self.v_proj.init_weights(Wv, bv)
        self.out_proj.init_weights(Wo, bo)

    def _split_heads(self, x):
        N, L, E = x.shape
        return x.reshape(N, L, self.num_heads, E // self.num_heads).transpose(0, 2, 1, 3)

    def _concat_heads(self, x):
        N, H, L, D = x.shape
        return x.transpose(0, 2, 1, 3).reshape(N, L, H * D)

    def _merge_masks(self, key_padding_mask, attn_mask):
        N, S, L = self.N, self.S, self.L
        m = np.zeros((N, self.num_heads, L, S), bool)
        if key_padding_mask is not None:
            m |= key_padding_mask[:, None, None, :]
        if attn_mask is not None:
            m |= attn_mask[None, None]
        return m

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        self.N, self.L, self.S = query.shape[0], query.shape[1], key.shape[1]
        q = self._split_heads(self.q_proj.forward(query))
        k = self._split_heads(self.k_proj.forward(key))
        v = self._split_heads(self.v_proj.forward(value))
        out = self.attention.forward(q, k, v, self._merge_masks(key_padding_mask, attn_mask))
        return self.out_proj.forward(self._concat_heads(out))

    def backward(self, d_output):
        d = self._split_heads(self.out_proj.backward(d_output))
        dq, dk, dv = self.attention.backward(d)
        return (self.q_proj.backward(self._concat_heads(dq)),
                self.k_proj.backward(self._concat_heads(dk)),
                self.v_proj.backward(self._concat_heads(dv)))
