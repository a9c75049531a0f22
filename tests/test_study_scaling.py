"""Study "scaling" (transformer_c.studies.scaling): the quick run end to end (columns, the
FLOP budget each size gets, both fits against the rows), the power-law fit on exact power
laws and noisy ones (against numpy.polyfit done here), the frontier selection on
hand-written sweeps, the parameter counts by hand."""
import numpy as np
import pytest

from transformer_c import studies
from transformer_c.nn import GPT, GPTConfig
from transformer_c.studies import scaling as S

pytest.importorskip("matplotlib")


def test_scaling_quick_run(tmp_path):
    rep = studies.run("scaling", tmp_path, quick=True, threads=1)
    s = S.settings(True)
    assert rep.columns == ["n_layer", "n_head", "n_embd", "params", "non_embedding_params",
                           "lr", "steps", "tokens", "train_loss", "val_loss", "frontier",
                           "fit_all_val_loss", "fit_frontier_val_loss", "wall_s"]
    assert len(rep.rows) == len(s["sizes"]) >= 4
    V = rep.meta["data"]["vocab_size"]
    per_step = s["batch_size"] * s["block_size"]
    for r, (L, H, C) in zip(rep.rows, s["sizes"]):
        assert (r["n_layer"], r["n_head"], r["n_embd"]) == (L, H, C)
        # the budget: 6 N D <= budget < 6 N (D + one step)
        assert 6 * r["params"] * r["tokens"] <= s["budget"] < \
            6 * r["params"] * (r["tokens"] + per_step)
        assert r["tokens"] == r["steps"] * per_step
        assert 1.0 < r["val_loss"] < np.log(V)           # learned, and a loss per char
        assert r["wall_s"] > 0
    params = np.array(rep.column("params"), float)
    assert np.all(np.diff(params) > 0)
    fit = rep.meta["fit"]
    # the fit, redone here with numpy.polyfit on the table's columns
    slope, icpt = np.polyfit(np.log(params), np.log(rep.column("val_loss")), 1)
    assert fit["alpha"] == pytest.approx(-slope, rel=1e-9)
    np.testing.assert_allclose(rep.column("fit_all_val_loss"), np.exp(icpt) * params ** slope,
                               rtol=1e-9)
    assert -1.0 <= fit["r2"] <= 1.0
    # the frontier: the sizes up to the lowest validation loss (params increase row by row)
    loss = np.array(rep.column("val_loss"))
    k = int(np.argmin(loss)) + 1
    assert rep.column("frontier") == [True] * k + [False] * (len(loss) - k)
    assert rep.meta["frontier"] == list(range(k))
    ff = rep.meta["fit_frontier"]
    if k == 1:
        assert ff is None and rep.column("fit_frontier_val_loss") == [None] * len(loss)
    else:
        slope, icpt = np.polyfit(np.log(params[:k]), np.log(loss[:k]), 1)
        assert ff["alpha"] == pytest.approx(-slope, rel=1e-9) and ff["sizes"] == list(range(k))
        np.testing.assert_allclose(rep.column("fit_frontier_val_loss"),
                                   np.exp(icpt) * params ** slope, rtol=1e-9)
    md = (tmp_path / "scaling.md").read_text()
    assert "Fit over all" in md and "compute-efficient frontier" in md
    for f in ["scaling.json", "scaling.md", "scaling_fit.png", "scaling_curves.png"]:
        assert (tmp_path / f).stat().st_size > 0


def test_fit_power_law_recovers_exact_and_noisy_laws():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    fit = S.fit_power_law(n, 7.0 * n ** -0.3)
    assert fit["alpha"] == pytest.approx(0.3, rel=1e-12)
    assert fit["a"] == pytest.approx(7.0, rel=1e-12)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    noisy = 3.0 * n ** -0.1 * np.array([1.01, 0.99, 1.02, 0.98])
    fit = S.fit_power_law(n, noisy)
    assert 0.05 < fit["alpha"] < 0.15 and fit["r2"] < 1.0
    with pytest.raises(ValueError, match="n and loss"):
        S.fit_power_law([1.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        S.fit_power_law([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="n and loss"):
        S.fit_power_law([1.0, 2.0], [1.0, 2.0, 3.0])


def test_frontier_sizes_by_hand():
    # the README's full run: the loss falls to 29,600 parameters, then rises at 62,832
    n = [5376, 10368, 16896, 29600, 62832]
    assert S.frontier_sizes(n, [2.059, 1.972, 1.913, 1.885, 1.940]).tolist() == [0, 1, 2, 3]
    # monotone: every size is on the frontier; the smallest is best: only it
    assert S.frontier_sizes(n, [2.0, 1.9, 1.8, 1.7, 1.6]).tolist() == [0, 1, 2, 3, 4]
    assert S.frontier_sizes(n, [1.5, 1.9, 1.8, 1.7, 1.6]).tolist() == [0]
    # rows in any order: indices of the sizes up to the best, in increasing size
    assert S.frontier_sizes([300, 100, 200, 400], [1.2, 2.0, 1.5, 1.3]).tolist() == [1, 2, 0]
    # a tie: up to the smallest of the best sizes; a dip past a rise is not skipped to
    assert S.frontier_sizes([1, 2, 3, 4], [2.0, 1.5, 1.5, 1.4]).tolist() == [0, 1, 2, 3]
    assert S.frontier_sizes([1, 2, 3, 4], [2.0, 1.5, 1.5, 1.6]).tolist() == [0, 1]
    assert S.frontier_sizes([7], [1.0]).tolist() == [0]
    with pytest.raises(ValueError, match="params and val_loss"):
        S.frontier_sizes([1, 2], [1.0])
    with pytest.raises(ValueError, match="params and val_loss"):
        S.frontier_sizes([], [])
    with pytest.raises(ValueError, match="distinct"):
        S.frontier_sizes([1, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        S.frontier_sizes([1, 2], [1.0, np.nan])
    with pytest.raises(ValueError, match="positive"):
        S.frontier_sizes([0, 2], [1.0, 1.0])


def test_parameter_counts_by_hand():
    L, C, V, T = 2, 16, 11, 8
    m = GPT.create(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=2, n_embd=C),
                   np.random.default_rng(0))
    block = (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C) + 4 * C
    assert S.non_embedding_parameters(m) == L * block + 2 * C        # + ln_f
    assert m.num_parameters == L * block + 2 * C + V * C + T * C


def test_learning_rate_rule():
    assert S.learning_rate(64) == pytest.approx(2e-3)
    assert S.learning_rate(16) == pytest.approx(4e-3)
    assert S.learning_rate(1024) == pytest.approx(1e-3)
