"""Parameter-tree utilities."""
import numpy as np
import pytest

from transformer_c import tree


def sample():
    return {"a": np.arange(3.0), "b": {"c": np.ones((2, 2)), "d": [np.zeros(1), np.full(2, 5.0)]}}


def test_tree_map_over_several_trees():
    t = sample()
    s = tree.tree_map(lambda x, y: x + 2 * y, t, t)
    np.testing.assert_array_equal(s["b"]["d"][1], [15.0, 15.0])
    assert isinstance(s["b"]["d"], list)


def test_tree_map_rejects_different_structures():
    with pytest.raises(ValueError):
        tree.tree_map(lambda x, y: x, {"a": 1}, {"b": 1})
    with pytest.raises(ValueError):
        tree.tree_map(lambda x, y: x, [1, 2], [1])


def test_flatten_unflatten_roundtrip_and_order():
    t = sample()
    flat = tree.flatten(t)
    assert list(flat) == ["a", "b/c", "b/d/0", "b/d/1"]
    back = tree.unflatten(flat)
    assert tree.are_equal(back, t) and isinstance(back["b"]["d"], list)


def test_zeros_like_and_equality():
    z = tree.zeros_like(sample())
    assert tree.num_parameters(z) == 3 + 4 + 1 + 2
    assert all(np.all(x == 0) for x in tree.leaves(z))
    assert not tree.are_equal(z, sample())
    assert not tree.are_equal({"a": np.zeros(2)}, {"a": np.zeros(3)})
    assert tree.are_equal({"a": np.zeros(2)}, {"a": np.full(2, 1e-9)}, atol=1e-8)


def test_save_load(tmp_path):
    t = sample()
    tree.save(tmp_path / "p.npz", t)
    assert tree.are_equal(tree.load(tmp_path / "p.npz"), t)


def test_flatten_rejects_slash_in_keys():
    with pytest.raises(ValueError):
        tree.flatten({"a/b": np.zeros(1)})


def test_unflatten_like_keeps_empty_subtrees():
    t = {"pe": {}, "w": np.ones(2), "l": [np.zeros(1)]}
    flat = tree.flatten(t)
    assert "pe" not in tree.unflatten(flat)
    back = tree.unflatten({k: v + 1 for k, v in flat.items()}, like=t)
    assert back["pe"] == {} and isinstance(back["l"], list)
    np.testing.assert_array_equal(back["w"], [2.0, 2.0])


# ---- the "mlp" framework's signatures (POSTECH seed; DESIGN.md section 4) ----

def test_are_equal_takes_a_comparison_function_third():
    p = {"w": np.arange(4.0), "l": [np.ones(2)]}
    q = {"w": np.arange(4.0), "l": [np.ones(2)]}
    assert tree.are_equal(p, q, np.array_equal)
    q["l"][0][1] = 1 + 1e-12
    assert not tree.are_equal(p, q, np.array_equal)
    assert tree.are_equal(p, q, np.allclose)
    assert tree.are_equal(p, q, using=np.isclose)  # element-wise results are reduced with all
    calls = []
    tree.are_equal(p, q, lambda x, y: calls.append((x.shape, y.shape)) or True)
    assert sorted(calls) == [((2,), (2,)), ((4,), (4,))]


def test_are_equal_tolerances_are_keyword_only():
    a, b = {"x": np.zeros(2)}, {"x": np.full(2, 1e-9)}
    assert not tree.are_equal(a, b)
    assert tree.are_equal(a, b, atol=1e-8) and tree.are_equal(a, b, rtol=0.0, atol=1e-8)
    with pytest.raises(TypeError, match="comparison function"):
        tree.are_equal(a, b, "allclose")
    with pytest.warns(DeprecationWarning, match="rtol= by keyword"):  # the old positional rtol
        assert tree.are_equal({"x": np.ones(2)}, {"x": np.full(2, 1 + 1e-9)}, 1e-8)
    with pytest.raises(ValueError, match="partial"):
        tree.are_equal(a, b, np.allclose, atol=1e-3)


def test_are_equal_structure_mismatch_is_false_with_using():
    assert not tree.are_equal({"a": np.zeros(1)}, {"b": np.zeros(1)}, np.array_equal)
    assert not tree.are_equal([np.zeros(1)], [np.zeros(1), np.zeros(1)], np.array_equal)


def test_tree_map_star_trees_and_zeros_like():
    assert tree.tree_map(lambda *xs: sum(xs), [1, 2], [10, 20], [100, 200]) == [111, 222]
    with pytest.raises(TypeError):
        tree.tree_map(lambda x: x)
    z = tree.zeros_like({"a": np.ones((2, 3), np.float32), "b": [np.ones(1)]})
    assert z["a"].dtype == np.float32 and z["a"].shape == (2, 3) and not z["a"].any()


def test_mlp_alias_resolves_course_imports():
    import sys

    from transformer_c.compat import mlp as alias

    assert "mlp" not in sys.modules or getattr(sys.modules["mlp"], "__transformer_c_alias__")
    alias.install()
    try:
        from mlp.tree.functions import are_equal, tree_map, zeros_like  # noqa: F401
        import mlp.tree.functions as fns

        assert are_equal is tree.are_equal and fns is tree
        assert are_equal({"w": np.ones(2)}, {"w": np.ones(2)}, np.array_equal)
        assert alias.install() is sys.modules["mlp"]  # idempotent
    finally:
        alias.uninstall()
    assert "mlp" not in sys.modules


def test_mlp_alias_refuses_to_replace_a_real_package(monkeypatch):
    import sys
    import types

    from transformer_c.compat import mlp as alias

    monkeypatch.setitem(sys.modules, "mlp", types.ModuleType("mlp"))
    with pytest.raises(RuntimeError, match="already imported"):
        alias.install()
    alias.uninstall()  # leaves the real one alone
    assert not hasattr(sys.modules["mlp"], "__transformer_c_alias__")
