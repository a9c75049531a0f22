"""The position-wise feed-forward block, one implementation: ``MLP`` (GPT-2 keys c_fc /
c_proj, Dense layers) and its coursework adapter ``FeedForward`` (keys layer1 / layer2,
Linear layers, ReLU by default); ``GatedMLP`` (SwiGLU / GeGLU: keys c_fc, c_gate, c_proj);
``MoE``, the mixture of experts over that MLP."""
import numpy as np

from .. import functional as F
from ..options import check_option
from .layers import Dense, Linear
from .module import CachedModule, check_dtype, glorot_uniform, replace_keys

__all__ = ["MLP", "FeedForward", "GatedMLP", "MoE"]


class MLP(CachedModule):
    """y = proj(act(fc(x))), act one of transformer_c.options.ACTIVATIONS ("gelu_tanh"
    (GPT-2, the default), "gelu" (exact), "relu", "silu", "relu2" (squared ReLU)).

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


class GatedMLP(CachedModule):
    """The gated MLP (Shazeer 2020, "GLU variants"; LLaMA's feed-forward with "silu":
    SwiGLU): y = c_proj(act(c_gate(x)) * c_fc(x)), act one of
    transformer_c.options.ACTIVATIONS ("silu": SwiGLU, "gelu": GeGLU, "relu": ReGLU), the
    product in C (functional.glu).

    GatedMLP(c_fc: Dense (H, C) (the "up" projection, Hugging Face LLaMA's up_proj), c_gate:
    Dense (H, C) (the activated one, gate_proj), c_proj: Dense (C, H) (down_proj),
    activation="silu"); parameter keys ``c_fc``, ``c_gate``, ``c_proj``. It has 3 H C weights
    where the MLP has 2: the usual width is H = 2/3 of the MLP's (LLaMA: 8C/3 for 4C) for the
    same parameter count. forward(x=(..., C)) -> (..., C_out).
    """

    KEYS = ("c_fc", "c_gate", "c_proj")

    def __init__(self, c_fc, c_gate, c_proj, activation="silu"):
        self.activation = check_option("activation", activation)
        self.c_fc, self.c_gate, self.c_proj = c_fc, c_gate, c_proj
        if c_gate.weight_matrix.shape != c_fc.weight_matrix.shape:
            raise ValueError(f"c_gate's weight must have c_fc's shape "
                             f"{c_fc.weight_matrix.shape}, got {c_gate.weight_matrix.shape}")

    @classmethod
    def create(cls, input_size, hidden_size, output_size, random_generator, *,
               activation="silu", bias=True, dtype=np.float64):
        """Glorot-uniform layers (c_fc, c_gate: input_size -> hidden_size; c_proj:
        hidden_size -> output_size), zero biases."""
        fc, gate = (Dense.create(input_size, hidden_size, random_generator, bias=bias,
                                 dtype=dtype) for _ in range(2))
        proj = Dense.create(hidden_size, output_size, random_generator, bias=bias, dtype=dtype)
        return cls(fc, gate, proj, activation=activation)

    @property
    def parameters(self):
        return {k: getattr(self, k).parameters for k in self.KEYS}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.KEYS)
        return type(self)(*(getattr(self, k).with_parameters(p[k]) for k in self.KEYS),
                          activation=self.activation)

    def forward_cached(self, x):
        """(y (..., C_out), cache) for x (..., C)."""
        u, c1 = self.c_fc.forward_cached(x)
        g, cg = self.c_gate.forward_cached(x)
        y, c2 = self.c_proj.forward_cached(F.glu(self.activation, g, u))
        return y, (c1, cg, g, u, c2)

    def backward_cached(self, grad, cache):
        """(grads, dx (..., C)) for grad (..., C_out)."""
        c1, cg, g, u, c2 = cache
        g2, dh = self.c_proj.backward_cached(grad, c2)
        dg, du = F.glu_backward(self.activation, dh, g, u)
        g1, dx = self.c_fc.backward_cached(du, c1)
        gg, dxg = self.c_gate.backward_cached(dg, cg)
        return {"c_fc": g1, "c_gate": gg, "c_proj": g2}, dx + dxg


class MoE(CachedModule):
    """Mixture-of-experts feed-forward (functional.moe): E expert MLPs (C -> H -> C,
    activation of transformer_c.options.ACTIVATIONS), a softmax router without bias, top-k
    routing (1 or 2) with a capacity per expert, and the Switch load-balancing loss.

    MoE(router (E, C), w1 (E, H, C), b1 (E, H) or None, w2 (E, C, H), b2 (E, C) or None, *,
    top_k=1, capacity_factor=1.25, activation="gelu_tanh", aux_weight=0.01); parameter keys
    ``router``, ``w1``, ``b1``, ``w2``, ``b2`` (biases only when present).
    forward(x=(..., C)) -> (..., C). forward_cached's cache holds the routing
    (``routing_stats(cache)``, ``aux(cache)``); backward_cached adds the gradient of
    aux_weight * aux (the aux loss a model adds to its training loss).
    """

    KEYS = ("router", "w1", "b1", "w2", "b2")

    def __init__(self, router, w1, b1, w2, b2, *, top_k=1, capacity_factor=1.25,
                 activation="gelu_tanh", aux_weight=0.01):
        self.router, self.w1, self.b1, self.w2, self.b2 = router, w1, b1, w2, b2
        self.activation = check_option("activation", activation)
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        self.aux_weight = float(aux_weight)
        E = np.shape(router)[0] if np.ndim(router) == 2 else None
        if top_k not in (1, 2) or isinstance(top_k, bool):
            raise ValueError(f"top_k must be 1 or 2, got {top_k!r}")
        if E is None or top_k > E:
            raise ValueError(f"router must be (E, C) with E >= top_k = {top_k}, "
                             f"got shape {np.shape(router)}")
        if not (isinstance(capacity_factor, (int, float)) and capacity_factor > 0
                and np.isfinite(capacity_factor)):
            raise ValueError(f"capacity_factor must be a finite number > 0, got {capacity_factor!r}")

    @classmethod
    def create(cls, input_size, hidden_size, num_experts, random_generator, *, top_k=1,
               capacity_factor=1.25, activation="gelu_tanh", aux_weight=0.01, bias=True,
               dtype=np.float64):
        """Glorot-uniform router (E, C) and expert layers (each as Dense.create: C -> H ->
        C), zero biases (None with bias=False)."""
        dt = check_dtype(dtype)
        C, H, E = input_size, hidden_size, num_experts
        router = glorot_uniform(random_generator, C, E, dtype=dt)
        w1 = np.stack([glorot_uniform(random_generator, C, H, dtype=dt) for _ in range(E)])
        w2 = np.stack([glorot_uniform(random_generator, H, C, dtype=dt) for _ in range(E)])
        b1 = np.zeros((E, H), dt) if bias else None
        b2 = np.zeros((E, C), dt) if bias else None
        return cls(router, w1, b1, w2, b2, top_k=top_k, capacity_factor=capacity_factor,
                   activation=activation, aux_weight=aux_weight)

    @property
    def num_experts(self):
        """E, the number of experts."""
        return np.shape(self.router)[0]

    def _options(self):
        return dict(top_k=self.top_k, capacity_factor=self.capacity_factor,
                    activation=self.activation)

    @property
    def parameters(self):
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k) is not None}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        return type(self)(*(p.get(k) for k in self.KEYS), aux_weight=self.aux_weight,
                          **self._options())

    def forward_cached(self, x):
        """(y (..., C), cache) for x (..., C); the cache holds x and the MoERouting."""
        y, _, routing = F.moe(x, self.router, self.w1, self.b1, self.w2, self.b2,
                              **self._options())
        return y, (x, routing)

    def backward_cached(self, g, cache, aux_grad=None):
        """(grads, dx (..., C)) for g (..., C), with the gradient of aux_grad * aux added
        (aux_grad None: self.aux_weight)."""
        x, routing = cache
        ag = self.aux_weight if aux_grad is None else aux_grad
        dx, dr, dw1, db1, dw2, db2 = F.moe_backward(
            g, x, self.router, self.w1, self.b1, self.w2, self.b2, aux_grad=ag,
            routing=routing, **self._options())
        grads = dict(zip(self.KEYS, (dr, dw1, db1, dw2, db2)))
        return {k: v for k, v in grads.items() if v is not None}, dx

    @staticmethod
    def aux(cache):
        """The load-balancing loss (float) of a forward_cached cache."""
        return cache[1].aux

    @staticmethod
    def routing_stats(cache):
        """The routing of a forward_cached cache as a dict: tokens_per_expert (E,) int64
        (choices each expert ran on), dropped_per_expert (E,) int64, dropped (int),
        capacity (int), aux (float)."""
        r = cache[1]
        return {"tokens_per_expert": r.tokens_per_expert.copy(),
                "dropped_per_expert": r.dropped_per_expert.copy(), "dropped": r.dropped,
                "capacity": r.capacity, "aux": r.aux}
