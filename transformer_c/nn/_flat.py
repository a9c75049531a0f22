"""Models whose parameters live in one contiguous buffer with a tree of views over it.

The base class of GPT, Encoder and EncoderDecoder: a subclass gives its config class, ``_layout(config) -> [(path, shape)]`` (the
parameter leaves in tree order, which is the order of the flat buffer; a path is a tuple of
dict keys and list indices) and ``_init_std(config, path)`` (the init rule), and gets
construction from a tree, ``create``, ``parameters`` / ``with_parameters``, the flat
parameter and gradient buffers, ``state_dict``, safetensors ``save`` / ``load`` with the
config as JSON in the metadata, train / eval and seed checking.
"""
import abc
import functools
import json
import math
import os
import sys
import threading
import weakref

import numpy as np

from .. import _C
from ..functional._util import as_seed
from .module import Module, check_dtype

__all__ = []


@functools.lru_cache(maxsize=64)
def _memo_layout(cls, config):
    return tuple(cls._layout(config))


def layout_of(cls, config):
    """cls._layout(config) as a tuple, computed once per (class, config) (configs are
    frozen dataclasses; an unhashable one is recomputed every time)."""
    try:
        return _memo_layout(cls, config)
    except TypeError:
        return tuple(cls._layout(config))


def count_leaves(tree):
    """The number of leaves of a tree (nested dicts / lists / tuples)."""
    if isinstance(tree, dict):
        return sum(count_leaves(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(count_leaves(v) for v in tree)
    return 1


def get_path(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def dotted(path):
    return ".".join(str(k) for k in path)


def tree_from_layout(layout, flat):
    """The tree whose leaves are views of the 1-D array ``flat`` laid out as ``layout``
    (an int key after a name makes that name a list, filled in index order)."""
    tree = {}
    offset = 0
    for path, shape in layout:
        size = math.prod(shape)
        node = tree
        for i, key in enumerate(path[:-1]):
            fresh = [] if isinstance(path[i + 1], int) else {}
            if isinstance(key, int):
                if key == len(node):
                    node.append(fresh)
                node = node[key]
            else:
                node = node.setdefault(key, fresh)
        node[path[-1]] = flat[offset:offset + size].reshape(shape)
        offset += size
    return tree


def is_hidden_matrix(path, shape):
    """Whether the parameter leaf at ``path`` (a tuple of keys) with ``shape`` is a hidden
    weight matrix, the leaves Muon updates (transformer_c.optim.Muon): a 2-D ``weight``
    inside a list of layers (the path holds a list index), i.e. the attention projections
    (c_attn, c_proj, a cross-attention's q_attn / c_attn / c_proj) and the MLP's c_fc /
    c_proj of every block. Not: embeddings (wte, wpe, wtt), an untied lm_head, a
    classifier or MLM head, norm gains, biases, and a mixture of experts' 3-D expert
    weights and its router (AdamW updates those)."""
    return (len(shape) == 2 and bool(path) and path[-1] == "weight"
            and any(isinstance(k, int) for k in path))


def matrix_table(layout, is_matrix=is_hidden_matrix):
    """The (count, 3) int64 table (offset, rows, cols) of the matrices (``is_matrix(path,
    shape)``, by default the hidden weight matrices) of a parameter layout [(path, shape)],
    offsets into the flat buffer laid out in that order (functional.muon_update_'s
    ``matrices``). ValueError when is_matrix picks a leaf that is not 2-D."""
    rows, offset = [], 0
    for path, shape in layout:
        if is_matrix(path, shape):
            if len(shape) != 2:
                raise ValueError(f"{dotted(path)} of shape {shape} was chosen as a matrix: "
                                 f"Muon updates 2-D matrices only")
            rows.append((offset, shape[0], shape[1]))
        offset += math.prod(shape)
    return np.array(rows, np.int64).reshape(-1, 3)


def flat_span(leaves):
    """The 1-D C-contiguous array that ``leaves`` tile back to back, in order (each leaf a
    C-contiguous ndarray view of one base buffer, of its dtype, leaf i+1 starting where
    leaf i ends), or None when they do not (any other arrays: separate ones, gaps, another
    order).

    leaves: a sequence of arrays. Returns a 1-D view of the base of
    ``sum(leaf.size)`` elements (the leaves' memory, not a copy), or None. The check runs
    in C (_C.tiled_span: the optimizers make it on every tree of every step);
    _flat_span_ref is its plain Python reference.
    """
    found = _C.tiled_span(leaves)
    return None if found is None else found[0][found[1]:found[2]]


def _flat_span_ref(leaves):
    """flat_span, one Python check per leaf (the reference of _C.tiled_span)."""
    if not leaves:
        return None
    base = leaves[0].base if type(leaves[0]) is np.ndarray else None
    if (base is None or type(base) is not np.ndarray or base.ndim != 1
            or not base.flags.c_contiguous):
        return None
    item, origin = base.itemsize, base.__array_interface__["data"][0]
    offset = leaves[0].__array_interface__["data"][0] - origin
    if offset % item:
        return None
    start = end = offset // item
    for leaf in leaves:
        if type(leaf) is not np.ndarray or leaf.base is not base or leaf.dtype != base.dtype:
            return None
        face = leaf.__array_interface__  # strides None: C-contiguous
        if face["strides"] is not None or face["data"][0] != origin + end * item:
            return None
        end += leaf.size
    return base[start:end]


_POOL = {}             # (size, dtype) -> [1-D arrays handed out by recycled_empty]
_POOL_LOCK = threading.Lock()
_POOL_FREE_KEPT = 4    # unreferenced buffers kept per (size, dtype) for the next requests
_POOL_KEYS = 4         # (size, dtype) pairs remembered


def recycled_empty(size, dtype):
    """An uninitialised 1-D array of ``size`` elements of ``dtype``: one handed out earlier
    that nothing references any more (no array, view or model holds it) when there is one,
    else a new one. A training loop that builds fresh parameter and moment buffers every
    step then reuses warm memory instead of page-faulting new memory in (most of the
    step's cost on the 6x384 GPT). At most _POOL_FREE_KEPT unreferenced buffers are kept
    per (size, dtype), for at most _POOL_KEYS such pairs; they stay allocated after the
    loop ends. "Unreferenced" is CPython's reference count of the buffer (every view holds
    one), read under a lock.
    """
    key = (int(size), np.dtype(dtype))
    with _POOL_LOCK:
        bufs = _POOL.pop(key, [])
        _POOL[key] = bufs  # most recently used last
        while len(_POOL) > _POOL_KEYS:
            del _POOL[next(iter(_POOL))]
        # 3 references: the list, the loop variable, getrefcount's argument
        free = [b for b in bufs if sys.getrefcount(b) == 3]
        if len(free) > _POOL_FREE_KEPT:
            dropped = {id(b) for b in free[_POOL_FREE_KEPT:]}
            bufs[:] = [b for b in bufs if id(b) not in dropped]
        if free:
            _HANDED_OFF.pop(id(free[0]), None)  # a new use: no longer an unclaimed hand-off
            return free[0]
        buf = np.empty(key[0], key[1])
        bufs.append(buf)
        return buf


_HANDED_OFF = {}  # id(buffer) -> weakref of the buffer: handed off, not yet adopted


def read_only_handoff(buf):
    """A read-only view of the 1-D array ``buf`` (writeable, owning its memory, e.g. from
    recycled_empty), and ``buf`` marked as handed off: the first FlatModel.with_parameters
    given a tree that tiles all of it adopts it as its parameter buffer instead of copying
    it (adopt_handoff). The optimizers return their new parameters this way: nobody can
    write the returned tree, so the model it is adopted by stays the only writer."""
    key = id(buf)
    with _POOL_LOCK:
        _HANDED_OFF[key] = weakref.ref(buf, lambda _ref: _HANDED_OFF.pop(key, None))
    view = buf.view()
    view.flags.writeable = False
    return view


def adopt_handoff(span):
    """The buffer behind ``span`` (a 1-D view, as flat_span returns) when span is all of a
    buffer marked by read_only_handoff and not adopted yet (it is then unmarked: adopted
    once), else None."""
    base = span.base
    if (type(base) is not np.ndarray or span.size != base.size
            or span.__array_interface__["data"][0] != base.__array_interface__["data"][0]):
        return None
    with _POOL_LOCK:
        ref = _HANDED_OFF.get(id(base))
        if ref is None or ref() is not base:
            return None
        del _HANDED_OFF[id(base)]
    return base


class FlatModel(Module):
    """Parameters in one flat buffer, the tree as views (see the module doc)."""

    _config_class = None
    _meta_key = None  # the safetensors metadata key of the config
    _load_hint = ""   # appended to load's error for a file without that key

    @staticmethod
    @abc.abstractmethod
    def _layout(config):
        """The parameter layout of a config (each subclass defines it)."""

    @staticmethod
    @abc.abstractmethod
    def _init_std(config, path):
        """The init of a weight leaf: a standard deviation (normal, mean 0)."""

    def __init__(self, config, parameters, *, training=True, seed=0):
        name = type(self).__name__
        if not isinstance(config, self._config_class):
            raise TypeError(f"config must be a {self._config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        leaves = layout_of(type(self), config)
        try:
            first = np.asarray(get_path(parameters, leaves[0][0]))
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"parameters must be a {name} parameter tree with a "
                             f"'{dotted(leaves[0][0])}' entry") from None
        dtype = check_dtype(first.dtype)
        self._init_from_flat(np.empty(self._count(config), dtype), training, seed)
        self._check_structure(parameters)
        for path, shape in leaves:
            leaf = np.asarray(get_path(parameters, path))
            if leaf.dtype != dtype:
                raise TypeError(f"parameter {dotted(path)} has dtype {leaf.dtype} but "
                                f"{dotted(leaves[0][0])} has {dtype}: all parameters must "
                                f"share one dtype")
            if leaf.shape != shape:
                raise ValueError(f"parameter {dotted(path)} must have shape {shape}, "
                                 f"got {leaf.shape}")
            get_path(self._params, path)[...] = leaf

    @classmethod
    def _count(cls, config):
        return sum(math.prod(s) for _, s in layout_of(cls, config))

    def _init_from_flat(self, flat, training, seed):
        self._flat = flat
        self._params = tree_from_layout(layout_of(type(self), self.config), flat)
        self._grads = None
        self._grads_views = None
        self._ctx = None
        self.training = bool(training)
        self.seed = seed

    @classmethod
    def _from_flat(cls, config, flat, training=True, seed=0):
        self = cls.__new__(cls)
        self.config = config
        self._init_from_flat(flat, training, seed)
        return self

    def _check_structure(self, parameters):
        want = {dotted(p) for p, _ in layout_of(type(self), self.config)}
        got = set()

        def walk(node, prefix):
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, prefix + (k,))
            elif isinstance(node, (list, tuple)):
                for i, v in enumerate(node):
                    walk(v, prefix + (i,))
            else:
                got.add(dotted(prefix))

        walk(parameters, ())
        if got != want:
            missing, extra = sorted(want - got), sorted(got - want)
            raise ValueError(f"{type(self).__name__} parameters do not match the config: "
                             f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def _create(cls, config, random_generator, dtype, training, seed):
        dt = check_dtype(dtype)
        if not isinstance(config, cls._config_class):
            raise TypeError(f"config must be a {cls._config_class.__name__}, "
                            f"got {type(config).__name__}")
        if not isinstance(random_generator, np.random.Generator):
            raise TypeError(f"random_generator must be a numpy.random.Generator, got "
                            f"{type(random_generator).__name__}")
        model = cls._from_flat(config, np.empty(cls._count(config), dt), training, seed)
        for path, shape in layout_of(cls, config):
            leaf = get_path(model._params, path)
            if path[-1] in ("bias", "b1", "b2"):  # b1, b2: a MoE's expert biases
                leaf[...] = 0
            elif str(path[-2]).startswith("ln_") or path[-2] in ("q_norm", "k_norm"):
                leaf[...] = 1
            else:
                leaf[...] = random_generator.normal(0.0, cls._init_std(config, path),
                                                    size=shape)
        return model

    @property
    def parameters(self):
        return self._params

    def with_parameters(self, parameters):
        """A new model of this config, mode and seed with a copy of ``parameters`` (a tree
        of this model's structure and shapes, one dtype). When the tree's leaves tile one
        buffer in layout order (another model's ``parameters``) that is one copy of the
        buffer, else one copy per leaf. An optimizer's result over such a tree (read-only
        views of a fresh buffer, transformer_c.optim) is not copied: the first model built
        from it adopts its buffer (later ones copy), so a tree training step costs what the
        in-place flat update costs; the returned tree then shows that model's parameters."""
        layout = layout_of(type(self), self.config)
        try:
            leaves = [get_path(parameters, path) for path, _ in layout]
        except (KeyError, IndexError, TypeError):
            leaves = None
        span = None if leaves is None else flat_span(leaves)
        if (span is None or span.size != self._flat.size
                or any(leaf.shape != shape for leaf, (_, shape) in zip(leaves, layout))):
            return type(self)(self.config, parameters, training=self.training, seed=self.seed)
        check_dtype(span.dtype)
        if count_leaves(parameters) != len(layout):  # every layout path exists: extras?
            self._check_structure(parameters)
        flat = adopt_handoff(span)
        if flat is None:
            flat = recycled_empty(span.size, span.dtype)
            np.copyto(flat, span)
        return self._from_flat(self.config, flat, self.training, self.seed)

    @property
    def dtype(self):
        """The parameters' dtype (float32 or float64)."""
        return self._flat.dtype

    @property
    def flat_parameters(self):
        """Every parameter in one contiguous 1-D array (the tree's leaves are views of it:
        updating it in place, e.g. with functional.adamw_update_, updates the model)."""
        return self._flat

    @property
    def flat_grads(self):
        """The contiguous 1-D gradient buffer loss_and_grads fills (same layout as
        flat_parameters); the grads tree it returns holds views of it."""
        if self._grads is None:
            self._grads = np.zeros_like(self._flat)
        return self._grads

    def _grads_tree(self):
        views = self._grads_views
        if views is None or views[0] is not self.flat_grads:
            self._grads_views = (self.flat_grads,
                                 tree_from_layout(layout_of(type(self), self.config), self.flat_grads))
        return self._grads_views[1]

    def _store_grads(self, grads):
        """Copy a grads tree into flat_grads; returns the tree of views."""
        tree = self._grads_tree()
        for path, _ in layout_of(type(self), self.config):
            get_path(tree, path)[...] = get_path(grads, path)
        return tree

    def muon_matrices(self):
        """(count, 3) int64 (offset, rows, cols): the hidden weight matrices of the flat
        parameter buffer (nn._flat.is_hidden_matrix: every block's attention and MLP
        projection weights), which Muon updates; AdamW takes the rest."""
        return matrix_table(layout_of(type(self), self.config))

    @property
    def num_parameters(self):
        """The number of scalar parameters (flat_parameters.size)."""
        return self._flat.size

    def __copy__(self):
        """An independent model: its own parameter (and gradient) buffers and its own C
        context. (A copy sharing the buffers but not the context's busy guard would let
        two threads train the same buffers at once and corrupt them silently.)"""
        return self.__deepcopy__({})

    def __deepcopy__(self, memo):
        new = type(self)._from_flat(self.config, self._flat.copy(), self.training, self.seed)
        if self._grads is not None:
            new._grads = self._grads.copy()
        memo[id(self)] = new
        return new

    def __getstate__(self):
        return {"config": self.config, "flat": self._flat, "grads": self._grads,
                "training": self.training, "seed": self.seed}

    def __setstate__(self, state):
        self.config = state["config"]
        self._init_from_flat(state["flat"], state["training"], state["seed"])
        self._grads = state["grads"]

    def train(self, mode=True):
        """Training mode (dropout on when config.dropout > 0); returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    _repr_fields = ()  # the config fields __repr__ shows

    def __repr__(self):
        c = self.config
        fields = ", ".join(f"{name}={getattr(c, name)}" for name in self._repr_fields)
        return (f"{type(self).__name__}({fields}, parameters={self.num_parameters}, "
                f"dtype={self.dtype})")

    def _dropping(self):
        return self.training and self.config.dropout > 0

    def _seed(self, seed):
        return as_seed(self.seed if seed is None else seed)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self):
        """{"encoder.h.0.ln_1.weight": array, ...}: dotted names of the tree's leaves, arrays
        are views of the parameters."""
        return {dotted(path): get_path(self._params, path)
                for path, _ in layout_of(type(self), self.config)}

    def save(self, path):
        """Write the parameters and config to ``path`` in the safetensors format (tensor
        names from state_dict(); the config as JSON in the metadata)."""
        from ..safetensors_io import save_file

        tensors = {k: np.ascontiguousarray(v) for k, v in self.state_dict().items()}
        save_file(tensors, os.fspath(path),
                  metadata={"format": f"transformer_c.{type(self).__name__}",
                            self._meta_key: json.dumps(self.config.to_dict())})

    @classmethod
    def _load(cls, path, dtype, training, seed):
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(os.fspath(path), framework="np") as f:
            meta = f.metadata() or {}
            sizes = {name: math.prod(f.get_slice(name).get_shape()) for name in f.keys()}
        if cls._meta_key not in meta:
            raise ValueError(f"{path} has no '{cls._meta_key}' metadata: not written by "
                             f"{cls.__name__}.save{cls._load_hint}")
        try:
            config = cls._config_class.from_dict(json.loads(meta[cls._meta_key]))
        except (TypeError, RecursionError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: its '{cls._meta_key}' metadata is not a "
                             f"{cls._config_class.__name__}: {e}") from None
        cls._check_against_file(config, sizes, path)
        return cls._from_state_dict(config, load_file(os.fspath(path)), dtype, training, seed)

    @classmethod
    def _check_against_file(cls, config, sizes, path):
        """Before any work the size of a config implies (layers, parameters): the counts in
        the config must be those of the tensors in the file. A ValueError naming the field
        otherwise (a damaged or forged config could ask for a million layers)."""
        for name in ("n_layer", "n_encoder_layer", "n_decoder_layer"):
            n = getattr(config, name, None)
            if n is None:
                continue
            prefix = {"n_layer": "h.", "n_encoder_layer": "encoder.h.",
                      "n_decoder_layer": "decoder.h."}[name]
            layers = {k[len(prefix):].split(".")[0] for k in sizes if k.startswith(prefix)}
            if n != len(layers):
                raise ValueError(f"{path}: the config's {name} is {n} but the file holds "
                                 f"{len(layers)} such layers")
        want, have = cls._count(config), sum(sizes.values())
        if want != have:
            raise ValueError(f"{path}: the config implies {want} parameters but the file's "
                             f"tensors hold {have}")

    @classmethod
    def _from_state_dict(cls, config, tensors, dtype, training, seed, transpose=()):
        """A model from {dotted name: array} (the names in ``transpose`` are 2-D arrays
        stored transposed); dtype None keeps the first tensor's."""
        layout = layout_of(cls, config)
        names = {dotted(p) for p, _ in layout}
        missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
        if missing:
            raise ValueError(f"checkpoint is missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}")
        if extra:
            raise ValueError(f"checkpoint has unexpected tensors {extra[:5]}"
                             f"{'...' if len(extra) > 5 else ''}")
        first = tensors[dotted(layout[0][0])]
        for p, _ in layout:  # weights are float32 or float64, one dtype: never cast ints
            t = tensors[dotted(p)]
            if t.dtype not in (np.float32, np.float64) or t.dtype != first.dtype:
                raise ValueError(f"checkpoint tensor {dotted(p)} has dtype {t.dtype}; every "
                                 f"tensor must be float32 or float64, all of one dtype "
                                 f"({dotted(layout[0][0])} is {first.dtype})")
        dt = check_dtype(first.dtype if dtype is None else dtype)
        model = cls._from_flat(config, np.empty(cls._count(config), dt), training, seed)
        for p, shape in layout:
            name = dotted(p)
            t = tensors[name]
            if name in transpose and t.ndim == 2:
                t = t.T
            if t.shape != shape:
                raise ValueError(f"checkpoint tensor {name} has shape {t.shape}, "
                                 f"expected {shape}")
            get_path(model._params, p)[...] = t
        return model
