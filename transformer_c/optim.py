"""Immutable optimizers over parameter trees: ``step(parameters, gradients) ->
(new_parameters, new_optimizer)``. Inputs are never modified; the updates run in the C
kernels (transformer_c.functional.sgd_update_ / adam_update_ / adamw_update_) on fresh
copies. Semantics match torch.optim.SGD, Adam and AdamW.

Flat trees: when the leaves of the parameters, the gradients and the optimizer state each
tile one buffer back to back in tree order (a FlatModel's ``parameters``, the grads of its
``loss_and_grads``, the state of a previous step over them), the step is ONE out-of-place
kernel call (``out=``: new buffers from the old ones, which are only read) over the whole
buffers, and the results (new parameters, moments) are trees of views of fresh flat
buffers (reused from earlier steps once nothing references them: see
nn._flat.recycled_empty). The new parameters are read-only views, and the first
``FlatModel.with_parameters`` given them adopts their buffer instead of copying it (later
calls copy), so ``opt.step(model.parameters, grads)`` + ``model.with_parameters(new)``
moves the memory the in-place flat update moves. Any other trees are updated leaf by leaf
(out of place into new arrays, writeable results); the numbers are bitwise the same either way
(the updates are element-wise). Cost: ``python -m benchmarks.optim`` (README, "Optimizers").
"""
import numpy as np

from . import _C
from . import functional as F
from .nn._flat import (flat_span, is_hidden_matrix, matrix_table, read_only_handoff,
                       recycled_empty)
from .tree import tree_map

__all__ = ["SGD", "Adam", "AdamW", "Muon"]


def _empty_like(leaf):
    """A new writeable C-contiguous array of the leaf's shape and dtype (a kernel's out=)."""
    leaf = np.asarray(leaf)
    return np.empty(leaf.shape, leaf.dtype)


def _views_like(tree, flats):
    """Trees of tree's structure, one per 1-D array of ``flats``, whose leaves are views of
    that array back to back (leaf shapes from ``tree``). Built in C (_C.tree_views) for
    trees of exact dicts (str keys), lists and tuples; _build_views, the reference, for any
    other."""
    built = _C.tree_views(tree, list(flats))
    return _build_views(tree, flats, [0]) if built is None else built


def _build_views(node, flats, offset):
    # a module-level function, not a closure calling itself: such a closure is a reference
    # cycle that would keep ``flats`` alive until the garbage collector runs, and the
    # buffers could not be recycled
    if isinstance(node, dict):
        built = [(k, _build_views(v, flats, offset)) for k, v in node.items()]
        return [{k: b[i] for k, b in built} for i in range(len(flats))]
    if isinstance(node, (list, tuple)):
        built = [_build_views(v, flats, offset) for v in node]
        return [type(node)(b[i] for b in built) for i in range(len(flats))]
    start = offset[0]
    offset[0] += node.size
    return [f[start:offset[0]].reshape(node.shape) for f in flats]


def _flat_columns(trees):
    """The 1-D spans the trees' leaves tile (one per tree) when every tree tiles one
    buffer in the first tree's leaf order with the first tree's shapes and dtype, else
    None. trees: parameter-like trees of one structure (ValueError otherwise)."""
    for tree in trees:  # cheap early exit for trees of separate arrays
        while isinstance(tree, (dict, list, tuple)) and tree:
            tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
        base = getattr(tree, "base", None)
        if type(base) is not np.ndarray or base.ndim != 1:
            return None
    columns = _C.tree_columns(list(trees))  # the leaves per tree, walked in C
    if columns is None:  # another structure (tree_map raises) or subclasses of dict / list
        rows = []
        tree_map(lambda *leaves: rows.append(leaves), *trees)
        columns = [list(column) for column in zip(*rows)]
    if not columns or not columns[0]:
        return None
    spans = [flat_span(column) for column in columns]
    if any(s is None or s.dtype != spans[0].dtype for s in spans):
        return None  # flat_span checked that every leaf is an ndarray
    shapes = [leaf.shape for leaf in columns[0]]
    if any([leaf.shape for leaf in column] != shapes for column in columns[1:]):
        return None
    return spans


def _apply(update, parameters, gradients, states):
    """``update(p, g, *s, out=None)`` (a kernel call: in place, or into ``out``, the new
    arrays) over the parameters and states: ``(new_parameters, new_states)``. states: a
    list of trees, or of None for zero-initialised ones. One out-of-place call over whole
    flat buffers when the trees tile buffers alike (module doc), else one out-of-place call
    per leaf into new arrays (zero-initialised states: updated in place, new zeros)."""
    given = [s for s in states if s is not None]
    spans = _flat_columns([parameters, gradients, *given])
    if spans is None:
        params = tree_map(_empty_like, parameters)
        new = [tree_map(np.zeros_like, params) if s is None else tree_map(_empty_like, s)
               for s in states]
        sources = [n if s is None else s for s, n in zip(states, new)]
        k = len(states)
        tree_map(lambda p, g, *rest: update(p, g, *rest[:k], out=rest[k:]),
                 parameters, gradients, *sources, params, *new)
        return params, new
    n, dtype = spans[0].size, spans[0].dtype
    flat_p = recycled_empty(n, dtype)
    it, sources, flat_states = iter(spans[2:]), [], []
    for s in states:
        flat = recycled_empty(n, dtype)
        if s is None:  # zeros, updated in place
            flat.fill(0)
            sources.append(flat)
        else:
            sources.append(next(it))
        flat_states.append(flat)
    update(spans[0], spans[1], *sources, out=(flat_p, *flat_states))
    params, *new = _views_like(parameters, [read_only_handoff(flat_p), *flat_states])
    return params, new


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
        count live in the returned optimizer. Trees that tile one buffer (a FlatModel's
        ``parameters`` and grads) take one kernel call over the whole buffer and give trees
        of views of one fresh buffer (module doc); bitwise the per-leaf result.
        """
        def update(p, g, *buf, out=None):
            F.sgd_update_(p, g, buf[0] if buf else None, lr=self.learning_rate,
                          momentum=self.momentum, dampening=self.dampening,
                          weight_decay=self.weight_decay, nesterov=self.nesterov,
                          first_step=self.step_count == 0,
                          out=None if out is None else (out + (None,))[:2])

        params, bufs = _apply(update, parameters, gradients,
                              [self.state] if self.momentum != 0 else [])
        bufs = bufs[0] if bufs else None
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
        count (for the bias corrections) live in the returned optimizer. Trees that tile one
        buffer (a FlatModel's ``parameters`` and grads) take one kernel call over the whole
        buffer and give trees of views of one fresh buffer each (module doc); bitwise the
        per-leaf result.
        """
        t = self.step_count + 1

        def update(p, g, mi, vi, out=None):
            self._update(p, g, mi, vi, step=t, lr=self.learning_rate,
                         betas=(self.beta1, self.beta2), eps=self.eps,
                         weight_decay=self.weight_decay, out=out)

        state = [None, None] if self.state is None else [self.state["m"], self.state["v"]]
        params, (m, v) = _apply(update, parameters, gradients, state)
        return params, self._with_state({"m": m, "v": v}, t)


class AdamW(Adam):
    """Adam with decoupled weight decay (param *= 1 - lr * weight_decay), as torch.optim.AdamW."""

    _update = staticmethod(F.adamw_update_)

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
                 *, state=None, step_count=0):
        super().__init__(learning_rate, beta1, beta2, eps, weight_decay, state=state,
                         step_count=step_count)


def _layout_of(tree, path=()):
    """[(path, leaf)] of a tree's leaves in tree order (the order of tree_map and of the
    flat buffers)."""
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in _layout_of(v, path + (k,))]
    if isinstance(tree, (list, tuple)):
        return [item for i, v in enumerate(tree) for item in _layout_of(v, path + (i,))]
    return [(path, tree)]


def _flat_copy(leaves, n, dtype, span):
    """A fresh writeable flat buffer (n,) holding ``leaves`` back to back (one copy of
    ``span`` when the leaves tile it)."""
    flat = recycled_empty(n, dtype)
    if span is not None:
        np.copyto(flat, span)
        return flat
    offset = 0
    for leaf in leaves:
        flat[offset:offset + leaf.size] = np.asarray(leaf).reshape(-1)
        offset += leaf.size
    return flat


class Muon:
    """Muon (Keller Jordan's "MomentUm Orthogonalized by Newton-Schulz") for the hidden
    weight matrices of a parameter tree, AdamW for every other leaf, as the reference's
    SingleDeviceMuonWithAuxAdam: the update of each matrix (SGD momentum with Nesterov) is
    orthogonalised by 5 quintic Newton-Schulz steps in C on the project's GEMM
    (functional.muon_update_ gives the formulas and how the products are cut down: the
    symmetric ones by their lower triangle, matrices spread over threads) and scaled by sqrt(max(1, rows / cols)),
    the published scale, in which ``learning_rate`` (default 0.02) is a spectral norm per
    update (the "match AdamW's RMS" variant, 0.2 sqrt(max(rows, cols)), is not used: it
    would tie the matrices' learning rate to AdamW's, and the tests hold the published
    algorithm). The AdamW part: ``adamw_learning_rate``, betas, eps, ``adamw_weight_decay``
    (the reference's defaults: 3e-4, (0.9, 0.95), 1e-10, 0).

    Which leaves are matrices: ``is_matrix(path, shape)``, by default
    nn._flat.is_hidden_matrix (a 2-D ``weight`` inside a list of layers: a GPT's, Encoder's
    or EncoderDecoder's attention and MLP projections; not embeddings, heads, gains,
    biases). Trees of other names (e.g. the coursework classes' ``weights``) pass their own.

    Immutable like the other optimizers: ``step`` returns (new_parameters, new_optimizer)
    and modifies no input. The state holds trees of the parameters' structure: "momentum"
    (zero outside the matrices) and AdamW's "m" and "v" (zero inside them), views of flat
    buffers. The new parameters of a tree that tiles a flat buffer (a FlatModel's) are
    read-only views that ``with_parameters`` adopts without a copy, as AdamW's.
    """

    def __init__(self, learning_rate=0.02, momentum=0.95, weight_decay=0.0, nesterov=True,
                 ns_steps=5, adamw_learning_rate=3e-4, beta1=0.9, beta2=0.95, eps=1e-10,
                 adamw_weight_decay=0.0, *, is_matrix=None, state=None, step_count=0):
        self.learning_rate, self.momentum, self.weight_decay = learning_rate, momentum, weight_decay
        self.nesterov, self.ns_steps = nesterov, ns_steps
        self.adamw_learning_rate, self.beta1, self.beta2 = adamw_learning_rate, beta1, beta2
        self.eps, self.adamw_weight_decay = eps, adamw_weight_decay
        self.is_matrix = is_hidden_matrix if is_matrix is None else is_matrix
        self.state, self.step_count = state, step_count

    def _settings(self):
        return dict(learning_rate=self.learning_rate, momentum=self.momentum,
                    weight_decay=self.weight_decay, nesterov=self.nesterov,
                    ns_steps=self.ns_steps, adamw_learning_rate=self.adamw_learning_rate,
                    beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    adamw_weight_decay=self.adamw_weight_decay, is_matrix=self.is_matrix)

    def step(self, parameters, gradients):
        """One Muon + AdamW update: ``(new_parameters, new_optimizer)``.

        parameters, gradients: trees of one structure (nested dicts / lists of float32 or
        float64 arrays of matching shapes, one dtype). The leaves are laid out back to back
        in tree order in flat buffers (one copy each, or the buffers they already tile);
        functional.muon_update_ updates the matrices (is_matrix) and functional.adamw_update_
        each run of other leaves. Bitwise the same for flat and separate trees.
        """
        tree_map(lambda p, g: None, parameters, gradients)  # same structure, or ValueError
        items = _layout_of(parameters)
        layout = [(path, np.shape(leaf)) for path, leaf in items]
        leaves = [np.asarray(leaf) for _, leaf in items]
        grads = [np.asarray(g) for _, g in _layout_of(gradients)]
        if not leaves:
            return parameters, self._next(self.state)
        dtype = leaves[0].dtype
        for (path, shape), leaf, g in zip(layout, leaves, grads):
            if leaf.dtype != dtype or g.dtype != dtype:
                raise TypeError(f"every parameter and gradient must have dtype {dtype}; "
                                f"{path} has {leaf.dtype} and its gradient {g.dtype}")
            if g.shape != shape:
                raise ValueError(f"the gradient of {path} has shape {g.shape}, expected {shape}")
        n = sum(leaf.size for leaf in leaves)
        table = matrix_table(layout, self.is_matrix)
        state = self.state or {}
        names = ("momentum", "m", "v")
        trees = [state.get(k) for k in names]
        spans = _flat_columns([parameters, gradients, *[t for t in trees if t is not None]])
        p = _flat_copy(leaves, n, dtype, None if spans is None else spans[0])
        g = spans[1] if spans is not None else np.concatenate([a.reshape(-1) for a in grads])
        it = iter(spans[2:] if spans is not None else ())
        flats = []
        for tree in trees:
            if tree is None:
                buf = recycled_empty(n, dtype)
                buf.fill(0)
            else:
                span = next(it) if spans is not None else None
                buf = _flat_copy([np.asarray(a) for _, a in _layout_of(tree)], n, dtype, span)
            flats.append(buf)
        mom, m, v = flats
        F.muon_update_(p, g, mom, table, lr=self.learning_rate, momentum=self.momentum,
                       weight_decay=self.weight_decay, nesterov=self.nesterov,
                       ns_steps=self.ns_steps)
        t = self.step_count + 1
        for a, b in _complement_runs(table, n):
            F.adamw_update_(p[a:b], g[a:b], m[a:b], v[a:b], step=t, lr=self.adamw_learning_rate,
                            betas=(self.beta1, self.beta2), eps=self.eps,
                            weight_decay=self.adamw_weight_decay)
        params, *new = _views_like(parameters, [read_only_handoff(p), mom, m, v])
        return params, self._next(dict(zip(names, new)))

    def _next(self, state):
        return Muon(**self._settings(), state=state, step_count=self.step_count + 1)


def _complement_runs(table, n):
    """[(start, stop)]: the runs of [0, n) outside the matrices of ``table``."""
    runs, start = [], 0
    for off, rows, cols in table.tolist():
        if off > start:
            runs.append((start, off))
        start = off + rows * cols
    if start < n:
        runs.append((start, n))
    return runs
