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
