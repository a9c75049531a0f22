"""Mixture-of-experts feed-forward (C: csrc/kernels/moe.c; the maths in csrc/tc.h, "mixture
of experts", and README.md).

E experts, each the dense model's MLP (C -> H -> C, an activation of
``transformer_c.options.ACTIVATIONS``), a softmax router (E, C) without bias, top-k routing
(k = 1: Switch Transformer, k = 2: GShard with the two gates renormalised), a capacity per
expert ``min(N, ceil(capacity_factor * N * k / E))`` over the N rows of a call (first
choices of every row in row order, then second choices; a full expert drops the rest: the
dropped choice contributes 0), and the load-balancing loss ``aux = E * sum_e f_e * P_e``
(f_e: fraction of the N k choices that picked e, before capacity; P_e: mean router
probability of e)."""
import numpy as np

from .. import _C
from ..options import option_index
from ._util import as_float, as_int, as_real, rows, same_dtype

__all__ = ["moe", "moe_backward", "moe_capacity", "MoERouting"]


class MoERouting:
    """The routing of one ``moe`` call (read-only arrays), and the cache its backward reuses.

    Attributes: ``tokens_per_expert`` (E,) int64 choices each expert ran on (after
    capacity), ``dropped_per_expert`` (E,) int64 choices dropped over capacity, ``dropped``
    (int) their total, ``capacity`` (int) rows per expert, ``expert`` (N, k) int64 the chosen
    experts (most probable first), ``gates`` (N, k) their gate weights, ``probs`` (N, E) the
    router's probabilities, ``aux`` (float) the load-balancing loss; N = rows of x (leading
    dims flattened).
    """

    def __init__(self, cache, aux, top_k, activation):
        self._cache = cache
        self.aux = float(aux)
        self.top_k = top_k
        self.activation = activation
        (self.probs, self.gates, self.expert, _slot, _tok, self.tokens_per_expert,
         self.dropped_per_expert) = cache[:7]
        self.capacity = int(cache[11])
        self.dropped = int(self.dropped_per_expert.sum())

    def __repr__(self):
        return (f"MoERouting(tokens_per_expert={self.tokens_per_expert.tolist()}, "
                f"dropped={self.dropped}, capacity={self.capacity}, aux={self.aux:.6g})")


def _args(x, router, w1, b1, w2, b2, top_k, capacity_factor, activation):
    x = as_float(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least 1 dimension (..., C), got a scalar")
    router = same_dtype(x, "x", router, "router")
    w1 = same_dtype(x, "x", w1, "w1")
    w2 = same_dtype(x, "x", w2, "w2")
    b1 = None if b1 is None else same_dtype(x, "x", b1, "b1")
    b2 = None if b2 is None else same_dtype(x, "x", b2, "b2")
    k = as_int(top_k, "top_k")
    cf = as_real(capacity_factor, "capacity_factor", "positive")
    act = option_index("activation", activation)
    return x, router, w1, b1, w2, b2, k, cf, act


def moe(x, router, w1, b1, w2, b2, *, top_k=1, capacity_factor=1.25,
        activation="gelu_tanh", reference=False):
    """The mixture-of-experts feed-forward of x.

    x: (..., C) any leading dims (N rows); router: (E, C); w1: (E, H, C), b1: (E, H) or
    None; w2: (E, C, H), b2: (E, C) or None; top_k: 1 or 2 (<= E); capacity_factor > 0.
    Returns (y (..., C), aux (float, the load-balancing loss), routing: MoERouting).
    ``reference=True`` runs the plain reference kernel (moe_ref.h).
    """
    x, router, w1, b1, w2, b2, k, cf, act = _args(x, router, w1, b1, w2, b2, top_k,
                                                  capacity_factor, activation)
    y, aux, cache = _C.moe_forward(rows(x), router, w1, b1, w2, b2, k, cf, act,
                                   bool(reference))
    return y.reshape(x.shape), aux, MoERouting(cache, aux, k, activation)


def moe_backward(grad_output, x, router, w1, b1, w2, b2, *, aux_grad=0.0, top_k=1,
                 capacity_factor=1.25, activation="gelu_tanh", routing=None,
                 reference=False):
    """Gradients of ``moe``'s y (upstream grad_output) plus aux_grad * aux.

    grad_output: (..., C) like x; the other arguments as ``moe`` (b1 / b2: only whether
    they are given matters). routing: the MoERouting of the forward at these inputs (its
    cache is reused; None: the forward runs again, in the kernel ``reference`` picks).
    Returns (dx (..., C), drouter (E, C), dw1 (E, H, C), db1 (E, H) or None, dw2 (E, C, H),
    db2 (E, C) or None).
    """
    x, router, w1, b1, w2, b2, k, cf, act = _args(x, router, w1, b1, w2, b2, top_k,
                                                  capacity_factor, activation)
    grad_output = same_dtype(x, "x", grad_output, "grad_output")
    if grad_output.shape != x.shape:
        raise ValueError(f"grad_output must have x's shape {x.shape}, got {grad_output.shape}")
    ag = as_real(aux_grad, "aux_grad")
    if routing is None:
        _, _, routing = moe(x, router, w1, b1, w2, b2, top_k=k, capacity_factor=cf,
                            activation=activation, reference=reference)
    elif not isinstance(routing, MoERouting):
        raise TypeError(f"routing must be the MoERouting moe returned, got "
                        f"{type(routing).__name__}")
    elif routing.top_k != k or routing.activation != activation:
        raise ValueError(f"routing was made with top_k={routing.top_k}, "
                         f"activation={routing.activation!r}, not top_k={k}, "
                         f"activation={activation!r}")
    dx, dr, dw1, db1, dw2, db2 = _C.moe_backward(
        rows(grad_output), ag, routing._cache, rows(x), router, w1, w2, b1 is not None,
        b2 is not None, k, act)
    return dx.reshape(x.shape), dr, dw1, db1, dw2, db2


def moe_capacity(n, experts, *, top_k=1, capacity_factor=1.25):
    """Rows per expert for n rows: min(n, ceil(capacity_factor * n * top_k / experts))."""
    return _C.moe_capacity(as_int(n, "n"), as_int(experts, "experts"), as_int(top_k, "top_k"),
                           as_real(capacity_factor, "capacity_factor", "positive"))
