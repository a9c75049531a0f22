"""A correct POSTECH "Autoregressive" submission (the graded classes) in plain NumPy."""
import numpy as np


class LayerNorm:
    def __init__(self, weights, bias, eps=1e-5):
        self.weights, self.bias, self.eps = weights, bias, eps

    @property
    def parameters(self):
        return {"weights": self.weights, "bias": self.bias}

    def with_parameters(self, p):
        return LayerNorm(p["weights"], p["bias"], self.eps)

    def _stats(self, x):
        mu = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps), var

    def forward(self, x):
        xhat, _ = self._stats(x)
        return self.weights * xhat + self.bias

    def backward(self, gradient_outputs, x):
        xhat, var = self._stats(x)
        g = gradient_outputs
        axes = tuple(range(x.ndim - 1))
        grads = {"weights": (g * xhat).sum(axis=axes), "bias": g.sum(axis=axes)}
        gx = g * self.weights
        dx = (gx - gx.mean(-1, keepdims=True)
              - xhat * (gx * xhat).mean(-1, keepdims=True)) / np.sqrt(var + self.eps)
        return grads, {"x": dx}


class PositionalEncoding:
    def __init__(self, seq_len, d_model, base=10000.0):
        n = np.arange(seq_len)[:, None]
        k = np.arange(0, d_model, 2)
        self.pe = np.zeros((seq_len, d_model))
        self.pe[:, 0::2] = np.sin(n / base ** (k / d_model))
        self.pe[:, 1::2] = np.cos(n / base ** (k / d_model))[:, :d_model // 2]

    parameters = property(lambda self: {})

    def with_parameters(self, p):
        return self

    def forward(self, x):
        return x + self.pe[:x.shape[-2]]

    def backward(self, gradient_outputs, x):
        return {}, {"x": gradient_outputs}


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class ScaledSelfAttention:
    def __init__(self, W_q, W_k, W_v, causal=False):
        self.W_q, self.W_k, self.W_v, self.causal = W_q, W_k, W_v, causal

    @property
    def parameters(self):
        return {"W_q": self.W_q, "W_k": self.W_k, "W_v": self.W_v}

    def with_parameters(self, p):
        return ScaledSelfAttention(p["W_q"], p["W_k"], p["W_v"], causal=self.causal)

    def _attn(self, q, k, v):
        Q, K, V = q @ self.W_q, k @ self.W_k, v @ self.W_v
        s = Q @ K.T / np.sqrt(K.shape[-1])
        if self.causal:
            s = s + np.triu(np.full(s.shape, -1e9), 1)
        return Q, K, V, _softmax(s)

    def forward(self, q, k, v):
        return self._attn(q, k, v)[3] @ (v @ self.W_v)

    def backward(self, gradient_outputs, q, k, v):
        Q, K, V, A = self._attn(q, k, v)
        g = gradient_outputs
        dV = A.T @ g
        dA = g @ V.T
        dS = A * (dA - (dA * A).sum(-1, keepdims=True)) / np.sqrt(K.shape[-1])
        if self.causal:
            dS = np.where(np.triu(np.ones(dS.shape, bool), 1), 0.0, dS)
        dQ, dK = dS @ K, dS.T @ Q
        grads = {"W_q": q.T @ dQ, "W_k": k.T @ dK, "W_v": v.T @ dV}
        return grads, {"q": dQ @ self.W_q.T, "k": dK @ self.W_k.T, "v": dV @ self.W_v.T}


class MultiHeadAttention:
    def __init__(self, heads, W_out):
        self.heads, self.W_out = list(heads), W_out

    @property
    def parameters(self):
        p = {f"head_{i}": h.parameters for i, h in enumerate(self.heads)}
        p["W_out"] = self.W_out
        return p

    def with_parameters(self, p):
        return MultiHeadAttention([h.with_parameters(p[f"head_{i}"])
                                   for i, h in enumerate(self.heads)], p["W_out"])

    def forward(self, q, k, v):
        return np.concatenate([h.forward(q, k, v) for h in self.heads], -1) @ self.W_out

    def backward(self, gradient_outputs, q, k, v):
        concat = np.concatenate([h.forward(q, k, v) for h in self.heads], -1)
        grads = {"W_out": concat.T @ gradient_outputs}
        gc = gradient_outputs @ self.W_out.T
        dx = {"q": 0.0, "k": 0.0, "v": 0.0}
        start = 0
        for i, h in enumerate(self.heads):
            d = h.W_v.shape[1]
            gh, di = h.backward(gc[:, start:start + d], q, k, v)
            grads[f"head_{i}"] = gh
            dx = {n: dx[n] + di[n] for n in dx}
            start += d
        return grads, dx


class Linear:
    """The framework's Linear (y = x @ weights.T + bias), as the course provides it."""

    def __init__(self, weights, bias):
        self.weights, self.bias = weights, bias

    @property
    def parameters(self):
        return {"weights": self.weights, "bias": self.bias}

    def with_parameters(self, p):
        return Linear(p["weights"], p["bias"])

    def forward(self, x):
        return x @ self.weights.T + self.bias

    def backward(self, gradient_outputs, x):
        g = gradient_outputs.reshape(-1, gradient_outputs.shape[-1])
        return ({"weights": g.T @ x.reshape(-1, x.shape[-1]), "bias": g.sum(0)},
                {"x": gradient_outputs @ self.weights})


class FeedForward:
    def __init__(self, layer1, layer2):
        self.layer1, self.layer2 = layer1, layer2

    @property
    def parameters(self):
        return {"layer1": self.layer1.parameters, "layer2": self.layer2.parameters}

    def with_parameters(self, p):
        return FeedForward(self.layer1.with_parameters(p["layer1"]),
                           self.layer2.with_parameters(p["layer2"]))

    def forward(self, x):
        return self.layer2.forward(np.maximum(self.layer1.forward(x), 0.0))

    def backward(self, gradient_outputs, x):
        h = self.layer1.forward(x)
        g2, ga = self.layer2.backward(gradient_outputs, np.maximum(h, 0.0))
        g1, gx = self.layer1.backward(ga["x"] * (h > 0), x)
        return {"layer1": g1, "layer2": g2}, gx


class DecoderLayer:
    def __init__(self, mha, norm1, ffn, norm2):
        self.mha, self.norm1, self.ffn, self.norm2 = mha, norm1, ffn, norm2

    @property
    def parameters(self):
        return {"MHA": self.mha.parameters, "Norm1": self.norm1.parameters,
                "FFN": self.ffn.parameters, "Norm2": self.norm2.parameters}

    def with_parameters(self, p):
        return DecoderLayer(self.mha.with_parameters(p["MHA"]),
                            self.norm1.with_parameters(p["Norm1"]),
                            self.ffn.with_parameters(p["FFN"]),
                            self.norm2.with_parameters(p["Norm2"]))

    def forward(self, x):
        x1 = self.norm1.forward(x + self.mha.forward(x, x, x))
        return self.norm2.forward(x1 + self.ffn.forward(x1))

    def backward(self, gradient_outputs, x):
        r1 = x + self.mha.forward(x, x, x)
        x1 = self.norm1.forward(r1)
        gn2, d = self.norm2.backward(gradient_outputs, x1 + self.ffn.forward(x1))
        gf, df = self.ffn.backward(d["x"], x1)
        gn1, d1 = self.norm1.backward(d["x"] + df["x"], r1)
        gm, dm = self.mha.backward(d1["x"], x, x, x)
        dx = d1["x"] + dm["q"] + dm["k"] + dm["v"]
        return {"MHA": gm, "Norm1": gn1, "FFN": gf, "Norm2": gn2}, {"x": dx}


class Embedding:
    """The framework's Embedding, as the course provides it."""

    def __init__(self, weight):
        self.weight = weight

    @property
    def parameters(self):
        return {"weight": self.weight}

    def with_parameters(self, p):
        return Embedding(p["weight"])

    def forward(self, x):
        return self.weight[x]

    def backward(self, gradient_outputs, x):
        dW = np.zeros_like(self.weight)
        np.add.at(dW, x, gradient_outputs)
        return {"weight": dW}, {"x": np.zeros_like(x)}


class Decoder:
    def __init__(self, token_embedding, pos_encoding, layers, lm_head):
        self.token, self.pe, self.layers, self.lm_head = (token_embedding, pos_encoding,
                                                           list(layers), lm_head)

    @property
    def parameters(self):
        p = {"token": self.token.parameters, "pe": self.pe.parameters}
        p.update({f"layer_{i}": layer.parameters for i, layer in enumerate(self.layers)})
        p["lm_head"] = self.lm_head.parameters
        return p

    def with_parameters(self, p):
        return Decoder(self.token.with_parameters(p["token"]), self.pe,
                       [layer.with_parameters(p[f"layer_{i}"])
                        for i, layer in enumerate(self.layers)],
                       self.lm_head.with_parameters(p["lm_head"]))

    def _hidden(self, x):
        hs = [self.pe.forward(self.token.forward(x))]
        for layer in self.layers:
            hs.append(layer.forward(hs[-1]))
        return hs

    def forward(self, x):
        return self.lm_head.forward(self._hidden(x)[-1])

    def backward(self, gradient_outputs, x):
        hs = self._hidden(x)
        grads = {"pe": {}}
        grads["lm_head"], d = self.lm_head.backward(gradient_outputs, hs[-1])
        g = d["x"]
        for i in reversed(range(len(self.layers))):
            grads[f"layer_{i}"], d = self.layers[i].backward(g, hs[i])
            g = d["x"]
        grads["token"], dx = self.token.backward(g, x)
        return grads, dx
