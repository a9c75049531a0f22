"""Elementary layers, one implementation each:

- ``Dense`` (linear, keys weight/bias, torch.nn.Linear / GPT-2 names) and its coursework
  adapter ``Linear`` (keys weights/bias);
- ``Norm`` (layer norm, keys weight/bias) and its coursework adapter ``LayerNorm``
  (keys weights/bias);
- ``Activation`` (any name of transformer_c.options.ACTIVATIONS) with the coursework
  ``ReLU`` and ``GELU``; ``Softmax``; ``Embedding``; ``PositionalEncoding``.

A coursework adapter differs from its core class only in class-level data (the weight's
key name) and its constructor / create() signature: the forward and backward are the
core's ``forward_cached`` / ``backward_cached``.
"""
import numpy as np

from .. import functional as F
from ..options import check_option
from .module import CachedModule, check_dtype, glorot_uniform, replace_keys

__all__ = ["Dense", "Linear", "Norm", "LayerNorm", "Activation", "ReLU", "GELU", "Softmax",
           "Embedding", "PositionalEncoding"]


class _WeightBias(CachedModule):
    """Parameters ``{WEIGHT: (...), "bias": (...) (when not None)}``; WEIGHT is class data."""

    WEIGHT = "weight"

    def _set(self, weight, bias):
        setattr(self, self.WEIGHT, np.asarray(weight))
        self.bias = None if bias is None else np.asarray(bias)

    @property
    def weight_matrix(self):
        """The weight under its key (``weight`` or ``weights``)."""
        return getattr(self, self.WEIGHT)

    @property
    def parameters(self):
        p = {self.WEIGHT: self.weight_matrix}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def _grads(self, dw, db):
        grads = {self.WEIGHT: dw}
        if self.bias is not None:
            grads["bias"] = db
        return grads


class Dense(_WeightBias):
    """y = x @ weight.T + bias; weight (out, in) as torch.nn.Linear, bias (out,) or None.

    Parameter keys ``weight`` and (when present) ``bias``. forward(x=(..., in)) ->
    (..., out), any leading dims.
    """

    def __init__(self, weight, bias=None):
        self._set(weight, bias)

    @classmethod
    def create(cls, input_size, output_size, random_generator, *, bias=True,
               dtype=np.float64):
        """Glorot-uniform weights (output_size, input_size) and a zero bias (None with
        bias=False)."""
        dt = check_dtype(dtype)
        W = glorot_uniform(random_generator, input_size, output_size, dtype=dt)
        return cls(W, np.zeros(output_size, dt) if bias else None)

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        return type(self)(p[self.WEIGHT], p.get("bias"))

    def forward_cached(self, x):
        """(y (..., out), cache) for x (..., in)."""
        return F.linear(x, self.weight_matrix, self.bias), x

    def backward_cached(self, g, x):
        """(grads, dx (..., in)) for g (..., out)."""
        dx, dw, db = F.linear_backward(g, x, self.weight_matrix, self.bias)
        return self._grads(dw, db), dx


class Linear(Dense):
    """The coursework linear layer: Dense with the key ``weights``.

    Linear(weights (out, in), bias (out,) or None (an extension: no bias, tree
    {"weights"} only)); y = x @ weights.T + bias; forward(x=(..., in)) -> (..., out).
    create(input_size, output_size, random_generator): Glorot-uniform weights, zero bias.
    """

    WEIGHT = "weights"

    def __init__(self, weights, bias):
        self._set(weights, bias)


class Norm(_WeightBias):
    """A norm over the last axis, by ``kind`` (transformer_c.options.NORM_TYPES):
    "layernorm": y = weight * (x - mean) / sqrt(var + eps) + bias;
    "rmsnorm": y = weight * x / sqrt(mean(x^2) + eps) + bias (F.rms_norm).

    Norm(weight (D,), bias (D,) or None, eps=1e-5, *, kind="layernorm"); keys ``weight``
    and (when present) ``bias``. forward(x=(..., D)) -> (..., D).
    """

    def __init__(self, weight, bias=None, eps=1e-5, *, kind="layernorm"):
        self._set(weight, bias)
        self.eps = float(eps)
        self.kind = check_option("norm_type", kind, name="kind")

    @classmethod
    def create(cls, output_size, random_generator=None, *, eps=1e-5, dtype=np.float64,
               **kind):
        """Ones for the weight, zeros for the bias (random_generator is accepted and
        unused); kind= as the constructor."""
        dt = check_dtype(dtype)
        return cls(np.ones(output_size, dt), np.zeros(output_size, dt), eps=eps, **kind)

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        kind = {} if self.kind == "layernorm" else {"kind": self.kind}
        return type(self)(p[self.WEIGHT], p.get("bias"), eps=self.eps, **kind)

    def forward_cached(self, x):
        """(y (..., D), cache (x, mean or None, rstd)) for x (..., D)."""
        if self.kind == "rmsnorm":
            y, rstd = F.rms_norm(x, self.weight_matrix, self.bias, eps=self.eps,
                                 return_stats=True)
            return y, (x, None, rstd)
        y, mean, rstd = F.layer_norm(x, self.weight_matrix, self.bias, eps=self.eps,
                                     return_stats=True)
        return y, (x, mean, rstd)

    def backward_cached(self, g, cache):
        """(grads, dx (..., D)) for g (..., D)."""
        x, mean, rstd = cache
        if self.kind == "rmsnorm":
            dx, dw, db = F.rms_norm_backward(g, x, self.weight_matrix, self.bias, eps=self.eps,
                                             rstd=rstd)
        else:
            dx, dw, db = F.layer_norm_backward(g, x, self.weight_matrix, self.bias,
                                               eps=self.eps, mean=mean, rstd=rstd)
        return self._grads(dw, db), dx


class LayerNorm(Norm):
    """The coursework layer norm: Norm with the key ``weights``.

    LayerNorm(weights (D,), bias (D,), eps=1e-5): normalise over the last axis only;
    create(output_size) -> ones / zeros.
    """

    WEIGHT = "weights"

    def __init__(self, weights, bias, eps=1e-5):
        super().__init__(weights, bias, eps)


class Activation(CachedModule):
    """An element-wise activation by name (transformer_c.options.ACTIVATIONS: "gelu_tanh",
    "gelu", "relu", "silu", "relu2"; ValueError naming ``activation`` otherwise). forward(x=any shape) ->
    x's shape; no parameters."""

    def __init__(self, activation):
        self.activation = check_option("activation", activation)

    def forward_cached(self, x):
        """(act(x), x)."""
        return F.activation(self.activation, x), x

    def backward_cached(self, g, x):
        """({}, dx) for g of x's shape."""
        return {}, F.activation_backward(self.activation, g, x)


class ReLU(Activation):
    """max(0, x), elementwise; the gradient at 0 is 0."""

    def __init__(self):
        super().__init__("relu")


_GELU_NAMES = {"none": "gelu", "tanh": "gelu_tanh"}


class GELU(Activation):
    """GELU, exact (approximate="none") or GPT-2's tanh form (approximate="tanh")."""

    def __init__(self, approximate="none"):
        if approximate not in _GELU_NAMES:
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        super().__init__(_GELU_NAMES[approximate])


class Softmax(CachedModule):
    """Softmax over ``axis`` (the last by default); forward(x=any shape) -> x's shape."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward_cached(self, x):
        """(y, y)."""
        y = F.softmax(x, axis=self.axis)
        return y, y

    def backward_cached(self, g, y):
        """({}, dx) for g of y's shape."""
        return {}, F.softmax_backward(g, y, axis=self.axis)


class Embedding(CachedModule):
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

    def forward_cached(self, x):
        """(weight[x] (..., D), x)."""
        return F.embedding(x, self.weight), x

    def backward_cached(self, g, x):
        """({"weight": dW (V, D)}, zeros of x's shape and dtype) for g (..., D)."""
        dW = F.embedding_backward(g, x, self.weight.shape[0])
        return {"weight": dW}, np.zeros_like(np.asarray(x))


class PositionalEncoding(CachedModule):
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

    def forward_cached(self, x):
        """(x + PE[:T], None) for x (..., T, D)."""
        return F.add_positions(self._check(x), base=self.base), None

    def backward_cached(self, g, cache):
        """({}, g): the table is a constant."""
        return {}, F.add_positions_backward(g)
