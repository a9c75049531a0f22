"""Position-wise feed-forward block: layer2(act(layer1(x)))."""
from .. import functional as F
from ..options import check_option
from .layers import Linear
from .module import Module, replace_keys

__all__ = ["FeedForward"]


class FeedForward(Module):
    """FFN(x) = W2 act(W1 x + b1) + b2 with act = ReLU by default.

    layer1: Linear(in -> hidden), layer2: Linear(hidden -> out); activation is "relu"
    (the coursework form), "gelu" (exact) or "gelu_tanh" (GPT-2).
    """

    def __init__(self, layer1, layer2, activation="relu"):
        check_option("activation", activation)
        self.layer1, self.layer2, self.activation = layer1, layer2, activation

    @staticmethod
    def create(input_size, hidden_size, output_size, random_generator, *, activation="relu",
               dtype="float64"):
        return FeedForward(Linear.create(input_size, hidden_size, random_generator, dtype=dtype),
                           Linear.create(hidden_size, output_size, random_generator, dtype=dtype),
                           activation=activation)

    @property
    def parameters(self):
        return {"layer1": self.layer1.parameters, "layer2": self.layer2.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["layer1", "layer2"])
        return FeedForward(self.layer1.with_parameters(p["layer1"]),
                           self.layer2.with_parameters(p["layer2"]), activation=self.activation)

    def _act(self, h):
        if self.activation == "relu":
            return F.relu(h)
        return F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def _act_backward(self, g, h):
        if self.activation == "relu":
            return F.relu_backward(g, h)
        return F.gelu_backward(g, h, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def forward(self, x):
        return self.layer2.forward(x=self._act(self.layer1.forward(x=x)))

    def backward(self, gradient_outputs, x):
        h = self.layer1.forward(x=x)
        a = self._act(h)
        g2, ga = self.layer2.backward(gradient_outputs, x=a)
        g1, gx = self.layer1.backward(self._act_backward(ga["x"], h), x=x)
        return {"layer1": g1, "layer2": g2}, gx
