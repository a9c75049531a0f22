"""Study "scaling" (transformer_c.studies.scaling): the quick run end to end (columns, the
FLOP budget each size gets, the fit against the rows), the power-law fit on exact power
laws and noisy ones (against numpy.polyfit done here), the parameter counts by hand."""
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
                           "lr", "steps", "tokens", "train_loss", "val_loss", "fit_val_loss",
                           "wall_s"]
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
    np.testing.assert_allclose(rep.column("fit_val_loss"), np.exp(icpt) * params ** slope,
                               rtol=1e-9)
    assert -1.0 <= fit["r2"] <= 1.0
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
