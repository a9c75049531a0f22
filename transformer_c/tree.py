"""Parameter trees: nested dicts (and lists/tuples) whose leaves are ndarrays.

Modules expose their parameters as such trees, backward returns gradients with the same
structure, and optimizers map over them.
"""
import numbers
import warnings

import numpy as np

__all__ = ["tree_map", "zeros_like", "are_equal", "flatten", "unflatten", "leaves",
           "num_parameters", "save", "load"]


def tree_map(f, *trees):
    """Apply ``f`` leaf-wise over one or more trees of the same structure (the "mlp"
    framework's signature); returns a new tree with f(leaf_1, ..., leaf_n) at each leaf.

    trees: one or more trees (nested dicts / lists / tuples of arrays). Dict keys and list
    lengths must match across trees (ValueError otherwise).
    """
    if not trees:
        raise TypeError("tree_map needs at least one tree")
    tree, rest = trees[0], trees[1:]
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or set(other) != set(tree):
                raise ValueError(f"tree structures differ: keys {sorted(tree)} vs "
                                 f"{sorted(other) if isinstance(other, dict) else type(other).__name__}")
        return {k: tree_map(f, tree[k], *(o[k] for o in rest)) for k in tree}
    if isinstance(tree, (list, tuple)):
        for other in rest:
            if not isinstance(other, (list, tuple)) or len(other) != len(tree):
                raise ValueError("tree structures differ: list lengths do not match")
        return type(tree)(tree_map(f, *items) for items in zip(tree, *rest))
    return f(tree, *rest)


def zeros_like(tree):
    """A tree of the same structure with zero arrays (same shapes and dtypes)."""
    return tree_map(np.zeros_like, tree)


def flatten(tree, prefix=""):
    """Flatten to a dict {"a/b/0/c": leaf} in deterministic (insertion) order."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if "/" in str(k):
                raise ValueError(f"tree key {k!r} contains '/', which flatten uses as separator")
            out.update(flatten(v, f"{prefix}{k}/"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}/"))
    else:
        out[prefix[:-1]] = tree
    return out


def unflatten(flat, like=None):
    """Inverse of flatten: rebuild nested dicts from "a/b/c" keys (integer segments become
    list positions when a level's keys are exactly 0..n-1).

    With ``like`` (a tree), the result has exactly like's structure (empty sub-dicts, lists
    and tuples included) with leaves taken from ``flat`` by path.
    """
    if like is not None:
        paths = iter(flatten(like))
        return tree_map(lambda _: flat[next(paths)], like)
    root = {}
    for path, leaf in flat.items():
        node = root
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = leaf
    return _lists_back(root)


def _lists_back(node):
    if not isinstance(node, dict):
        return node
    node = {k: _lists_back(v) for k, v in node.items()}
    keys = list(node)
    if keys and keys == [str(i) for i in range(len(keys))]:
        return [node[k] for k in keys]
    return node


def leaves(tree):
    """The leaves of a tree as a list, in flatten order."""
    return list(flatten(tree).values())


def num_parameters(tree):
    """Total number of scalar entries over all leaves."""
    return int(sum(np.size(x) for x in leaves(tree)))


def are_equal(a, b, using=None, *, rtol=0.0, atol=0.0):
    """True when trees a and b have the same structure and every pair of leaves compares
    equal (the "mlp" framework's signature: ``are_equal(p, q, np.array_equal)``).

    using: None, or a comparison function ``using(leaf_a, leaf_b) -> bool`` applied to each
    pair of leaves, its result reduced with np.all (e.g. ``np.array_equal``, ``np.allclose``, ``functools.partial(np.allclose,
    atol=1e-6)``). None compares shapes and values: exactly by default (NaN equals NaN), or
    within the keyword-only ``rtol`` / ``atol`` (np.allclose's meaning), which cannot be
    combined with ``using``. Different structures (keys, list lengths) give False.
    A number as the third argument (the old positional ``rtol``) still works for one
    release, with a DeprecationWarning.
    """
    if isinstance(using, numbers.Real) and not isinstance(using, bool):
        warnings.warn("are_equal(a, b, rtol) is deprecated: the third argument is now the "
                      "comparison function `using` (the mlp framework's signature); pass "
                      "rtol= by keyword", DeprecationWarning, stacklevel=2)
        using, rtol = None, float(using)
    if using is None:
        def using(x, y):
            return np.shape(x) == np.shape(y) and bool(
                np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True))
    elif not callable(using):
        raise TypeError(f"using must be a comparison function such as np.array_equal, got "
                        f"{type(using).__name__} (tolerances are keyword-only: rtol=, atol=)")
    elif rtol or atol:
        raise ValueError("rtol/atol apply to the default comparison only; with using=, put the "
                         "tolerance in the function (functools.partial(np.allclose, atol=...))")
    try:
        results = leaves(tree_map(lambda x, y: bool(np.all(using(x, y))), a, b))
    except ValueError:
        return False
    return all(results)


def save(path, tree):
    """Save a tree to an .npz file (keys are the flatten paths)."""
    np.savez(path, **flatten(tree))


def load(path):
    """Load a tree saved by :func:`save`."""
    with np.load(path) as data:
        return unflatten({k: data[k] for k in data.files})
