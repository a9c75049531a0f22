"""Study "linear_algebra" (transformer_c.studies.linear_algebra): the quick run end to end
(columns, sane values, bounds the head size and the vocabulary impose), its spectra against
NumPy SVDs of the matrices built by hand."""
import numpy as np
import pytest

from transformer_c import studies
from transformer_c.nn import GPT, GPTConfig
from transformer_c.studies import linear_algebra as LA

pytest.importorskip("matplotlib")


def test_linear_algebra_quick_run(tmp_path):
    rep = studies.run("linear_algebra", tmp_path, quick=True, threads=1)
    s = LA.settings(True)
    hs = s["n_embd"] // s["n_head"]
    V = rep.meta["data"]["vocab_size"]
    assert rep.columns == ["step", "train_loss", "val_loss", "wte_sigma1", "wte_eff_rank",
                           "wte_rank_1pct", "qk_w_sigma1", "qk_w_rank", "qk_w_eff_rank",
                           "qk_w_rank_1pct", "qk_act_eff_rank", "qk_act_rank_1pct"]
    steps = rep.column("step")
    assert steps[0] == 0 and steps[-1] == s["steps"] and steps == sorted(set(steps))
    for r in rep.rows:
        assert 1.0 <= r["wte_eff_rank"] <= min(V, s["n_embd"]) + 1e-9
        assert 1 <= r["wte_rank_1pct"] <= min(V, s["n_embd"])
        assert r["qk_w_rank"] == hs                  # a product of two rank-hs factors
        assert 1.0 <= r["qk_w_eff_rank"] <= hs + 1e-9
        assert 1.0 <= r["qk_act_eff_rank"] <= hs + 1e-9
        assert 1.0 <= r["qk_w_rank_1pct"] <= hs
    first, last = rep.rows[0], rep.rows[-1]
    assert abs(first["val_loss"] - np.log(V)) < 0.5        # the init predicts ~uniformly
    assert last["val_loss"] < first["val_loss"] - 0.5       # training worked
    for f in ["linear_algebra.json", "linear_algebra.md", "la_wte_singular_values.png",
              "la_qk_effective_rank.png", "la_qk_spectra.png"]:
        assert (tmp_path / f).stat().st_size > 0


def test_record_steps():
    assert LA.record_steps(100, 4) == [0, 1, 10, 100]
    got = LA.record_steps(2500, 16)
    assert got[0] == 0 and got[-1] == 2500 and got == sorted(set(got)) and len(got) <= 16


def _model():
    cfg = GPTConfig(vocab_size=9, block_size=5, n_layer=2, n_head=2, n_embd=6)
    m = GPT.create(cfg, np.random.default_rng(0), dtype=np.float64)
    m.flat_parameters[...] += np.random.default_rng(1).normal(0, 0.3, m.num_parameters)
    return m


def test_weight_spectra_by_hand():
    m = _model()
    got = LA.qk_weight_spectra(m)
    assert got.shape == (2, 2, 6)
    for layer in range(2):
        W = m.parameters["h"][layer]["attn"]["c_attn"]["weight"]     # (3C, C): q = W[:C] x
        for h in range(2):
            wq, wk = W[h * 3:(h + 1) * 3], W[6 + h * 3:6 + (h + 1) * 3]   # (HS, C) rows
            want = np.linalg.svd(wq.T @ wk, compute_uv=False)          # x^T Wq^T Wk y
            np.testing.assert_allclose(got[layer, h], want, rtol=1e-10, atol=1e-13)


def test_activation_spectra_by_hand():
    m = _model()
    x = np.random.default_rng(3).integers(0, 9, (2, 5))
    got = LA.qk_activation_spectra(m, x)
    assert got.shape == (2, 2, 2, 5)
    hid = m.inspect(x, fast=False).hidden_states
    P = m.parameters["h"]
    for layer in range(2):
        h = hid[layer]
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        n = (h - mu) / np.sqrt(var + 1e-5) * P[layer]["ln_1"]["weight"] + P[layer]["ln_1"]["bias"]
        qkv = n @ P[layer]["attn"]["c_attn"]["weight"].T + P[layer]["attn"]["c_attn"]["bias"]
        for b in range(2):
            for hd in range(2):
                q = qkv[b, :, hd * 3:(hd + 1) * 3]
                k = qkv[b, :, 6 + hd * 3:6 + (hd + 1) * 3]
                want = np.linalg.svd(q @ k.T, compute_uv=False)
                np.testing.assert_allclose(got[b, layer, hd], want, rtol=1e-8, atol=1e-10)
    bad = GPT.create(GPTConfig(vocab_size=9, block_size=5, n_layer=1, n_head=2, n_embd=8,
                               position="rope"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="RoPE"):
        LA.qk_activation_spectra(bad, x)


def test_rank_at():
    np.testing.assert_array_equal(LA.rank_at(np.array([[1.0, 0.5, 0.005], [2.0, 0.0, 0.0]])),
                                  [2, 1])
    assert LA.rank_at([1.0, 0.5, 0.005], rtol=1e-3) == 3
