"""Immutable optimizers over parameter trees: ``step(parameters, gradients) ->
(new_parameters, new_optimizer)``. Inputs are never modified; the updates run in the C
kernels (transformer_c.functional.sgd_update_ / adam_update_ / adamw_update_) on fresh
copies. Semantics match torch.optim.SGD, Adam and AdamW.
"""
import numpy as np

from . import functional as F
from .tree import tree_map

__all__ = ["SGD", "Adam", "AdamW"]


def _fresh(tree):
    """A tree of writeable C-contiguous copies (the arrays the kernels update in place)."""
    return tree_map(lambda a: np.array(a, copy=True, order="C"), tree)


class SGD:
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
    (L2) weight decay, as torch.optim.SGD."""

    def __init__(self, learning_rate=1e-2, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, state=None, step_count=0):
        self.learning_rate, self.momentum, self.dampening = learning_rate, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.state, self.step_count = state, step_count

    def step(self, parameters, gradients):
        """One SGD update: ``(new_parameters, new_optimizer)``.

        parameters, gradients: trees of the same structure (nested dicts / lists of float32
        or float64 arrays of matching shapes and dtypes). Neither input nor ``self`` is
        modified: the new parameters are fresh arrays, and the momentum buffers and step
        count live in the returned optimizer.
        """
        params = _fresh(parameters)
        bufs = (tree_map(np.zeros_like, params) if self.state is None else _fresh(self.state)) \
            if self.momentum != 0 else None

        def update(p, g, *buf):
            F.sgd_update_(p, g, buf[0] if buf else None, lr=self.learning_rate,
                          momentum=self.momentum, dampening=self.dampening,
                          weight_decay=self.weight_decay, nesterov=self.nesterov,
                          first_step=self.step_count == 0)
            return p

        if bufs is None:
            tree_map(update, params, gradients)
        else:
            tree_map(update, params, gradients, bufs)
        return params, SGD(self.learning_rate, self.momentum, self.dampening, self.weight_decay,
                           self.nesterov, state=bufs, step_count=self.step_count + 1)


class Adam:
    """Adam with bias correction, as torch.optim.Adam (weight_decay is L2, added to the
    gradient). ``decoupled=True`` is AdamW."""

    _update = staticmethod(F.adam_update_)

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 *, state=None, step_count=0):
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.state, self.step_count = state, step_count

    def _with_state(self, state, step_count):
        return type(self)(self.learning_rate, self.beta1, self.beta2, self.eps, self.weight_decay,
                          state=state, step_count=step_count)

    def step(self, parameters, gradients):
        """One Adam (AdamW in the subclass) update: ``(new_parameters, new_optimizer)``.

        parameters, gradients: trees of the same structure (nested dicts / lists of float32
        or float64 arrays of matching shapes and dtypes). Neither input nor ``self`` is
        modified: the new parameters are fresh arrays; the moments ``m``, ``v`` and the step
        count (for the bias corrections) live in the returned optimizer.
        """
        params = _fresh(parameters)
        if self.state is None:
            m, v = tree_map(np.zeros_like, params), tree_map(np.zeros_like, params)
        else:
            m, v = _fresh(self.state["m"]), _fresh(self.state["v"])
        t = self.step_count + 1

        def update(p, g, mi, vi):
            self._update(p, g, mi, vi, step=t, lr=self.learning_rate,
                         betas=(self.beta1, self.beta2), eps=self.eps,
                         weight_decay=self.weight_decay)
            return p

        tree_map(update, params, gradients, m, v)
        return params, self._with_state({"m": m, "v": v}, t)


class AdamW(Adam):
    """Adam with decoupled weight decay (param *= 1 - lr * weight_decay), as torch.optim.AdamW."""

    _update = staticmethod(F.adamw_update_)

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
                 *, state=None, step_count=0):
        super().__init__(learning_rate, beta1, beta2, eps, weight_decay, state=state,
                         step_count=step_count)
