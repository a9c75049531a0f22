"""Elementary layers: Linear, ReLU, GELU, Softmax, Embedding, LayerNorm, PositionalEncoding."""
import numpy as np

from .. import functional as F
from .module import Module, check_dtype, glorot_uniform, replace_keys

__all__ = ["Linear", "ReLU", "GELU", "Softmax", "Embedding", "LayerNorm", "PositionalEncoding"]


class Linear(Module):
    """y = x @ weights.T + bias.

    weights: (out, in); bias: (out,) or None (an extension: no bias, parameter tree
    {"weights"} only). forward(x=(..., in)) -> (..., out), any leading dims.
    """

    def __init__(self, weights, bias):
        self.weights = np.asarray(weights)
        self.bias = None if bias is None else np.asarray(bias)

    @staticmethod
    def create(input_size, output_size, random_generator, *, bias=True, dtype=np.float64):
        """Glorot-uniform weights (output_size, input_size) and a zero bias."""
        dt = check_dtype(dtype)
        W = glorot_uniform(random_generator, input_size, output_size, dtype=dt)
        return Linear(W, np.zeros(output_size, dt) if bias else None)

    @property
    def parameters(self):
        p = {"weights": self.weights}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        return Linear(p["weights"], p.get("bias"))

    def forward(self, x):
        return F.linear(x, self.weights, self.bias)

    def backward(self, gradient_outputs, x):
        dx, dW, db = F.linear_backward(gradient_outputs, x, self.weights, self.bias)
        grads = {"weights": dW}
        if self.bias is not None:
            grads["bias"] = db
        return grads, {"x": dx}


class ReLU(Module):
    """max(0, x), elementwise; the gradient at 0 is 0."""

    def forward(self, x):
        return F.relu(x)

    def backward(self, gradient_outputs, x):
        return {}, {"x": F.relu_backward(gradient_outputs, x)}


class GELU(Module):
    """GELU, exact (approximate="none") or GPT-2's tanh form (approximate="tanh")."""

    def __init__(self, approximate="none"):
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def backward(self, gradient_outputs, x):
        return {}, {"x": F.gelu_backward(gradient_outputs, x, approximate=self.approximate)}


class Softmax(Module):
    """Softmax over ``axis`` (the last by default)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, axis=self.axis)

    def backward(self, gradient_outputs, x):
        y = F.softmax(x, axis=self.axis)
        return {}, {"x": F.softmax_backward(gradient_outputs, y, axis=self.axis)}


class Embedding(Module):
    """Token embedding: weight (V, D); forward(x=int ids (...)) -> (..., D).

    backward scatter-adds into the weight gradient (repeated ids accumulate); the ids get
    a zero gradient of their own shape and dtype.
    """

    def __init__(self, weight):
        self.weight = np.asarray(weight)

    @staticmethod
    def create(num_embeddings, embedding_dim, random_generator, *, std=1.0, dtype=np.float64):
        """Weights drawn from N(0, std^2)."""
        dt = check_dtype(dtype)
        return Embedding((random_generator.standard_normal((num_embeddings, embedding_dim)) * std).astype(dt))

    @property
    def parameters(self):
        return {"weight": self.weight}

    def with_parameters(self, parameters):
        return Embedding(replace_keys(self, parameters, ["weight"])["weight"])

    def forward(self, x):
        return F.embedding(x, self.weight)

    def backward(self, gradient_outputs, x):
        dW = F.embedding_backward(gradient_outputs, x, self.weight.shape[0])
        return {"weight": dW}, {"x": np.zeros_like(np.asarray(x))}


class LayerNorm(Module):
    """y = weights * (x - mean) / sqrt(var + eps) + bias over the last axis only."""

    def __init__(self, weights, bias, eps=1e-5):
        self.weights = np.asarray(weights)
        self.bias = np.asarray(bias)
        self.eps = float(eps)

    @staticmethod
    def create(output_size, random_generator=None, *, eps=1e-5, dtype=np.float64):
        """Ones for weights, zeros for bias (random_generator is accepted and unused)."""
        dt = check_dtype(dtype)
        return LayerNorm(np.ones(output_size, dt), np.zeros(output_size, dt), eps=eps)

    @property
    def parameters(self):
        return {"weights": self.weights, "bias": self.bias}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["weights", "bias"])
        return LayerNorm(p["weights"], p["bias"], eps=self.eps)

    def forward(self, x):
        return F.layer_norm(x, self.weights, self.bias, eps=self.eps)

    def backward(self, gradient_outputs, x):
        dx, dw, db = F.layer_norm_backward(gradient_outputs, x, self.weights, self.bias, eps=self.eps)
        return {"weights": dw, "bias": db}, {"x": dx}


class PositionalEncoding(Module):
    """Adds the sinusoidal table PE[n, 2k] = sin(n / base^(2k/D)), PE[n, 2k+1] = cos(...).

    forward(x=(..., T, D)) -> x + PE[:T] for T <= seq_len; no parameters; backward passes
    the gradient through unchanged.
    """

    def __init__(self, seq_len, d_model, base=10000.0):
        self.seq_len, self.d_model, self.base = int(seq_len), int(d_model), float(base)

    @staticmethod
    def create(input_size, output_size, random_generator=None, *, base=10000.0):
        """input_size is the maximum length L, output_size the model width D."""
        return PositionalEncoding(input_size, output_size, base=base)

    def _check(self, x):
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (..., T, d_model={self.d_model}), got {x.shape}")
        if x.shape[-2] > self.seq_len:
            raise ValueError(f"x has length T={x.shape[-2]} but this PositionalEncoding was "
                             f"built for seq_len={self.seq_len}")
        return x

    def forward(self, x):
        return F.add_positions(self._check(x), base=self.base)

    def backward(self, gradient_outputs, x):
        self._check(x)
        return {}, {"x": F.add_positions_backward(gradient_outputs)}
