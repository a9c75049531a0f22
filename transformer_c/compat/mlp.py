"""Opt-in alias of the POSTECH "mlp" framework's module paths onto transformer_c.

Course tests import the framework's tree helpers as ``from mlp.tree.functions import
are_equal``. transformer_c does not ship a top-level ``mlp`` package: that generic name
belongs to the course's own framework (students and instructors have it on their path), and
an installed library claiming it would shadow or be shadowed by it depending on sys.path
order. Instead one line, e.g. in the course's conftest.py, maps the paths explicitly:

    import transformer_c.compat.mlp as _m; _m.install()

after which ``import mlp.tree.functions`` resolves to :mod:`transformer_c.tree` (whose
``tree_map(f, *trees)``, ``zeros_like(tree)`` and ``are_equal(a, b, using=None)`` have the
framework's signatures). ``install`` refuses when a different ``mlp`` is already imported
unless ``force=True``.
"""
import sys
import types

from .. import tree as _tree

__all__ = ["ALIASES", "install", "uninstall"]

#: framework module path -> the transformer_c module it maps onto
ALIASES = {"mlp.tree.functions": _tree}


def _package(name, children):
    mod = types.ModuleType(name, f"transformer_c alias of the 'mlp' framework's {name}")
    mod.__path__ = []  # a package, so that submodule imports resolve through sys.modules
    mod.__transformer_c_alias__ = True
    for attr, child in children.items():
        setattr(mod, attr, child)
    return mod


def install(force=False):
    """Register ``mlp``, ``mlp.tree`` and ``mlp.tree.functions`` in sys.modules as aliases
    of transformer_c. Returns the ``mlp`` alias module. Idempotent.

    force: replace an ``mlp`` that is already imported and is not this alias (otherwise
    RuntimeError naming it)."""
    existing = sys.modules.get("mlp")
    if existing is not None and not getattr(existing, "__transformer_c_alias__", False):
        if not force:
            raise RuntimeError(f"a different 'mlp' package is already imported "
                               f"({getattr(existing, '__file__', existing)!r}); pass force=True "
                               f"to replace it with transformer_c's alias")
    tree_pkg = _package("mlp.tree", {"functions": _tree})
    root = _package("mlp", {"tree": tree_pkg})
    sys.modules["mlp"] = root
    sys.modules["mlp.tree"] = tree_pkg
    for path, module in ALIASES.items():
        sys.modules[path] = module
    return root


def uninstall():
    """Remove the aliases installed by :func:`install` (a real ``mlp`` is left alone)."""
    if getattr(sys.modules.get("mlp"), "__transformer_c_alias__", False):
        for name in ["mlp", "mlp.tree", *ALIASES]:
            sys.modules.pop(name, None)
