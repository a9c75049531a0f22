"""Study "efficient" (transformer_c.studies.efficient): the quick run end to end (every
variant of both tasks, in its own process: the table's columns and sane values), the
active-parameter count by hand, the synthetic NLI fallback's labels, bad variants."""
import math

import numpy as np
import pytest

from transformer_c import studies
from transformer_c.nn import GPT, GPTConfig
from transformer_c.studies import Context
from transformer_c.studies import efficient as E

pytest.importorskip("matplotlib")


def test_efficient_quick_run(tmp_path):
    rep = studies.run("efficient", tmp_path, quick=True, threads=1)
    names = E.variants()
    assert rep.columns == E.COLUMNS
    assert [(r["task"].split()[0], r["variant"]) for r in rep.rows] == \
        [("GPT", v) for v in names] + [("Bert", v) for v in names]
    V = rep.meta["data"]["vocab_size"]
    s = E.settings(True)
    for r, full in zip(rep.rows, rep.meta["results"]):
        assert r["steps"] > 10 and r["train_s"] >= s["seconds"]
        assert r["ms_per_step"] == pytest.approx(1000 * r["train_s"] / r["steps"])
        assert 0 < r["model_rss_mb"] < r["peak_rss_mb"]
        assert (r["active_params"] == r["params"]) == (r["variant"] != "moe")
        assert len(full["curve"]) == s["evals"]
        times = [p["t"] for p in full["curve"]]
        assert times == sorted(times) and times[-1] == pytest.approx(r["train_s"])
        if r["task"].startswith("GPT"):
            assert 1.0 < r["val_loss"] < math.log(V) and r["dev_acc"] is None
            assert full["curve"][-1]["val_loss"] == r["val_loss"]
        else:
            assert r["val_loss"] is None
            assert 0.0 <= r["dev_acc"] <= 1.0 and 0.0 <= r["test_acc"] <= 1.0
    # dense and block-sparse share their parameters (the pattern has none)
    p = {(r["task"], r["variant"]): r["params"] for r in rep.rows}
    for task in {r["task"] for r in rep.rows}:
        assert p[(task, "dense")] == p[(task, "block_sparse")]
    cfgs = {(x["task"], x["variant"]): x["config"] for x in rep.meta["results"]}
    assert cfgs[("gpt", "block_sparse")]["attention"] == "block_sparse"
    assert cfgs[("nli", "block_sparse")]["attention"] == "block_sparse"
    assert cfgs[("gpt", "dense")]["attention"] == "dense"
    for f in ["efficient.json", "efficient.md", "efficient_curves.png",
              "efficient_memory.png"]:
        assert (tmp_path / f).stat().st_size > 0
    assert "python -m transformer_c study efficient --quick --threads 1" in \
        (tmp_path / "efficient.md").read_text()


def test_active_parameters_by_hand():
    base = dict(vocab_size=11, block_size=8, n_layer=3, n_head=2, n_embd=8, n_inner=20)
    m = GPT.create(GPTConfig(**base), np.random.default_rng(0))
    assert E.active_parameters(m) == m.num_parameters
    if not E.moe_available():
        pytest.skip("this build has no ffn='moe'")
    for k, bias in ((1, True), (2, True), (1, False)):
        moe = GPT.create(GPTConfig(**base, bias=bias, ffn="moe", moe_experts=5, moe_top_k=k),
                         np.random.default_rng(0))
        per_expert = 2 * 20 * 8 + (20 + 8 if bias else 0)
        assert E.active_parameters(moe) == moe.num_parameters - 3 * (5 - k) * per_expert
        dense = GPT.create(GPTConfig(**base, bias=bias), np.random.default_rng(0))
        router = 3 * 5 * 8
        assert E.active_parameters(moe) == dense.num_parameters + router + \
            3 * (k - 1) * per_expert


def test_synthetic_nli_fallback(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("a b c\n" * 100)
    ctx = Context(data_dir=tmp_path)                  # a data folder without snli/
    data, source = E.nli_data(ctx, limit=200)
    assert source.startswith("synthetic")
    assert [len(data[s][0]) for s in ("train", "dev", "test")] == [200, 200, 200]
    for pairs, labels in data.values():
        assert set(np.unique(labels)) == {0, 1, 2}
        for (p, h), y in zip(pairs, labels):
            pw, hw = p.split(), h.split()
            assert 3 <= len(hw) <= 8
            if y == 0:
                assert any(pw[i:i + len(hw)] == hw for i in range(len(pw)))
            elif y == 1:
                assert sorted(hw) == sorted(w for w in hw if w in pw)
    again, _ = E.nli_data(ctx, limit=200)
    assert again["dev"][0] == data["dev"][0]              # seeded


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant"):
        E._variant_fields(E.settings(True), "gpt", "sparse")
