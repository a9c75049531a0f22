"""Parameter trees: nested dicts (and lists/tuples) whose leaves are ndarrays.

Modules expose their parameters as such trees, backward returns gradients with the same
structure, and optimizers map over them.
"""
import numpy as np

__all__ = ["tree_map", "zeros_like", "are_equal", "flatten", "unflatten", "leaves",
           "num_parameters", "save", "load"]


def tree_map(fn, tree, *rest):
    """Apply fn leaf-wise over one or more trees of the same structure; returns a new tree.

    Dict keys and list lengths must match across trees (ValueError otherwise).
    """
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or set(other) != set(tree):
                raise ValueError(f"tree structures differ: keys {sorted(tree)} vs "
                                 f"{sorted(other) if isinstance(other, dict) else type(other).__name__}")
        return {k: tree_map(fn, tree[k], *(o[k] for o in rest)) for k in tree}
    if isinstance(tree, (list, tuple)):
        for other in rest:
            if not isinstance(other, (list, tuple)) or len(other) != len(tree):
                raise ValueError("tree structures differ: list lengths do not match")
        return type(tree)(tree_map(fn, *items) for items in zip(tree, *rest))
    return fn(tree, *rest)


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


def are_equal(a, b, rtol=0.0, atol=0.0):
    """True when a and b have the same structure and leaves equal (within rtol/atol)."""
    try:
        results = leaves(tree_map(lambda x, y: np.shape(x) == np.shape(y) and
                                  bool(np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True)),
                                  a, b))
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
