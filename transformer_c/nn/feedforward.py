"""The position-wise feed-forward block, one implementation: ``MLP`` (GPT-2 keys c_fc /
c_proj, Dense layers) and its coursework adapter ``FeedForward`` (keys layer1 / layer2,
Linear layers, ReLU by default)."""
import numpy as np

from .. import functional as F
from ..options import check_option
from .layers import Dense, Linear
from .module import CachedModule, replace_keys

__all__ = ["MLP", "FeedForward"]


class MLP(CachedModule):
    """y = proj(act(fc(x))), act one of transformer_c.options.ACTIVATIONS ("gelu_tanh"
    (GPT-2, the default), "gelu" (exact), "relu").

    MLP(c_fc: Dense (H, C), c_proj: Dense (C, H), activation); parameter keys ``c_fc``
    and ``c_proj``. forward(x=(..., C)) -> (..., C_out).
    """

    KEYS = ("c_fc", "c_proj")   # the two layers' attribute and parameter names
    LAYER = Dense               # the class create() builds them with

    def __init__(self, c_fc, c_proj, activation="gelu_tanh"):
        self._init(c_fc, c_proj, activation)

    def _init(self, fc, proj, activation):
        self.activation = check_option("activation", activation)
        setattr(self, self.KEYS[0], fc)
        setattr(self, self.KEYS[1], proj)

    @classmethod
    def create(cls, input_size, hidden_size, output_size, random_generator, *,
               activation=None, bias=True, dtype=np.float64):
        """Glorot-uniform layers (input_size -> hidden_size -> output_size), zero biases;
        activation None: the class default."""
        fc = cls.LAYER.create(input_size, hidden_size, random_generator, bias=bias, dtype=dtype)
        proj = cls.LAYER.create(hidden_size, output_size, random_generator, bias=bias,
                                dtype=dtype)
        return cls(fc, proj) if activation is None else cls(fc, proj, activation=activation)

    def _layers(self):
        return getattr(self, self.KEYS[0]), getattr(self, self.KEYS[1])

    @property
    def parameters(self):
        return {k: layer.parameters for k, layer in zip(self.KEYS, self._layers())}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.KEYS)
        fc, proj = (layer.with_parameters(p[k]) for k, layer in zip(self.KEYS, self._layers()))
        return type(self)(fc, proj, activation=self.activation)

    def forward_cached(self, x):
        """(y (..., C_out), cache) for x (..., C)."""
        fc, proj = self._layers()
        h, c1 = fc.forward_cached(x)
        y, c2 = proj.forward_cached(F.activation(self.activation, h))
        return y, (c1, h, c2)

    def backward_cached(self, g, cache):
        """(grads, dx (..., C)) for g (..., C_out)."""
        c1, h, c2 = cache
        fc, proj = self._layers()
        g2, da = proj.backward_cached(g, c2)
        g1, dx = fc.backward_cached(F.activation_backward(self.activation, da, h), c1)
        return dict(zip(self.KEYS, (g1, g2))), dx


class FeedForward(MLP):
    """The coursework FFN(x) = W2 act(W1 x + b1) + b2 with act = ReLU by default.

    FeedForward(layer1: Linear (in -> hidden), layer2: Linear (hidden -> out),
    activation="relu"); keys layer1, layer2. create(input_size, hidden_size, output_size,
    random_generator).
    """

    KEYS = ("layer1", "layer2")
    LAYER = Linear

    def __init__(self, layer1, layer2, activation="relu"):
        self._init(layer1, layer2, activation)
