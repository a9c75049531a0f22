"""transformer_c.studies: the framework (Report, Context, the registry, run, the `study`
command) and every registered study in quick mode, whose tables must have the promised
columns and sane values."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import studies
from transformer_c.studies import Budget, Context, Report, TrainLog, format_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ Report

def test_report_rows_and_markdown():
    r = Report("demo", "A demo", columns=["name", "ppl", "ok"])
    r.add_row({"name": "a", "ppl": 1.23456, "ok": True})
    r.add_row(["b", None, False])
    r.add_row(name="c", ppl=float("inf"), ok=False)
    assert r.column("name") == ["a", "b", "c"]
    md = r.table_markdown().splitlines()
    assert md[0] == "| name | ppl | ok |"
    assert md[2] == "| a | 1.235 | yes |"
    assert md[3] == "| b | N/A | no |"
    assert md[4] == "| c | inf | no |"
    with pytest.raises(ValueError, match="missing columns \\['ok'\\]"):
        r.add_row({"name": "d", "ppl": 1.0})
    with pytest.raises(ValueError, match="unknown columns \\['zzz'\\]"):
        r.add_row({"name": "d", "ppl": 1.0, "ok": True, "zzz": 1})
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        r.add_row(["d", 1.0])
    with pytest.raises(KeyError, match="no column 'x'"):
        r.column("x")
    with pytest.raises(ValueError, match="distinct"):
        Report("x", "x", columns=["a", "a"])


def test_format_value():
    assert format_value(12345.678) == "1.235e+04"
    assert format_value(0.5) == "0.5"
    assert format_value(1e-5) == "1.000e-05"
    assert format_value(3) == "3"
    assert format_value(float("nan")) == "nan"


def test_report_write(tmp_path):
    pytest.importorskip("matplotlib")
    ctx = Context()
    r = Report("demo", "A demo", command="python -m transformer_c study demo",
               columns=["k", "v"], rows=[{"k": "x", "v": np.float64(2.0)}],
               notes=["A note."], meta={"threads": 1, "wall_time_s": 3.2, "quick": True})
    fig = ctx.figure(4, 3)
    fig.subplots().plot([0, 1], [1, 0])
    r.add_figure(fig, "demo_curve.png")
    with pytest.raises(ValueError, match="filename"):
        r.add_figure(fig, "sub/x.png")
    with pytest.raises(ValueError, match="already added"):
        r.add_figure(fig, "demo_curve.png")
    paths = r.write(tmp_path / "out")
    assert [os.path.basename(p) for p in paths] == ["demo.json", "demo.md", "demo_curve.png"]
    d = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert d["columns"] == ["k", "v"] and d["rows"] == [{"k": "x", "v": 2.0}]
    assert d["figures"] == ["demo_curve.png"] and d["meta"]["threads"] == 1
    md = (tmp_path / "out" / "demo.md").read_text()
    assert md.startswith("# A demo\n")
    assert "`python -m transformer_c study demo`; 1 thread; wall time 3 s; quick mode" in md
    assert "| x | 2 |" in md and "A note." in md and "![demo_curve.png](demo_curve.png)" in md
    png = (tmp_path / "out" / "demo_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


# ------------------------------------------------------------------ Context

def test_context_validation(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        Context(seed=-1)
    with pytest.raises(ValueError, match="threads"):
        Context(threads=0)
    with pytest.raises(ValueError, match="data_dir"):
        Context(data_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="data_dir .* has no tinyshakespeare.txt"):
        Context(data_dir=tmp_path).shakespeare()
    assert Context(quick=True).pick(10, 2) == 2 and Context().pick(10, 2) == 10


def test_budget():
    b = Budget(100)
    assert 0 <= b.elapsed < 5 and not b.expired and 95 < b.remaining <= 100
    assert 95 / 4 < b.share(0, 4) <= 25 and 95 / 2 < b.share(2, 4) <= 50
    with pytest.raises(ValueError, match="seconds"):
        Budget(0)
    with pytest.raises(ValueError, match="k < n"):
        b.share(4, 4)


def test_shakespeare_from_a_data_dir(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
    (tmp_path / "tinyshakespeare.txt").write_text(text)
    ctx = Context(data_dir=tmp_path)
    c = ctx.shakespeare()
    n = int(len(text) * 0.9)
    assert c.name == "tinyshakespeare" and c.train_text == text[:n] and c.val_text == text[n:]
    assert c.vocab_size == len(set(text)) and c.tokenizer.decode(c.train_ids) == text[:n]
    assert c.train_ids.dtype == np.int64 and c.val_ids.size == len(text) - n
    assert ctx.meta["data"]["source"] == "tinyshakespeare"
    assert ctx.shakespeare() is c


def test_shakespeare_falls_back_to_the_embedded_corpus(monkeypatch, tmp_path):
    from transformer_c.studies import _context
    monkeypatch.setattr(_context, "default_data_dirs", lambda: [tmp_path])
    c = Context().shakespeare()
    assert c.name == "python-stdlib"
    assert len(c.train_text) + len(c.val_text) == 1_115_394
    assert len(c.train_text) == int(1_115_394 * 0.9)


def test_train_lm_logs_and_records_gradients():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.train import TrainConfig
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, 3000)
    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT.create(cfg, np.random.default_rng(0))
    seen = []
    def on_grads(step, grads):
        assert grads.shape == model.flat_parameters.shape
        seen.append((step, float(np.linalg.norm(grads.astype(np.float64)))))
    log = Context().train_lm(model, ids, ids, block_size=8, log_every=2, on_grads=on_grads,
                             config=TrainConfig(max_iters=6, batch_size=4, warmup_iters=1,
                                                eval_iters=2))
    assert isinstance(log, TrainLog) and log.step == 6 and log.stopped_by == "steps"
    assert log.steps == [2, 4, 6] and len(log.losses) == 3 and not log.diverged
    assert log.times == sorted(log.times) and log.seconds >= log.times[-1]
    assert [s for s, _ in seen] == list(range(6))
    # the recorded pre-clipping norms are the trainer's grad_norm of the same steps
    assert np.allclose([n for _, n in seen][1::2], log.grad_norms, rtol=1e-4)
    loss, _ = log.trainer.eval_loss(log.trainer.val_data)
    assert 1.0 < loss < 4.0         # near log(11) = 2.40 after 6 steps on random ids
    assert math.isclose(log.final_loss(2), np.mean(log.losses[-2:]))


def test_train_lm_stops_on_divergence():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.train import TrainConfig
    cfg = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8)
    model = GPT.create(cfg, np.random.default_rng(0))
    model.flat_parameters[:] = 1e30  # overflows to inf / nan in the first forward
    log = Context().train_lm(model, np.arange(200) % 7, config=TrainConfig(
        max_iters=5, batch_size=2, warmup_iters=1))
    assert log.diverged and log.stopped_by == "diverged" and log.step == 1
    assert log.final_loss() == math.inf


# ------------------------------------------------------------------ registry, run, CLI

@pytest.fixture
def demo_study():
    @studies.register("_demo", "a test study")
    def _demo(ctx):
        return Report("_demo", "Demo", columns=["quick", "threads"],
                      rows=[{"quick": ctx.quick, "threads": tc.get_num_threads()}])
    yield "_demo"
    del studies.STUDIES["_demo"]


def test_register_and_run(demo_study, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        studies.register(demo_study, "again")(lambda ctx: None)
    before = tc.get_num_threads()
    r = studies.run(demo_study, tmp_path, quick=True, threads=1, seed=3)
    assert tc.get_num_threads() == before
    assert r.rows == [{"quick": True, "threads": 1}]
    assert r.command == "python -m transformer_c study _demo --quick --threads 1 --seed 3"
    m = r.meta
    assert m["quick"] is True and m["seed"] == 3 and m["threads"] == 1
    assert m["wall_time_s"] >= 0 and len(m["loadavg_start"]) == 3
    assert (tmp_path / "_demo.json").exists() and (tmp_path / "_demo.md").exists()
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        studies.run("nope", tmp_path)


def test_cli_study(demo_study, tmp_path, capsys):
    from transformer_c.cli import main
    assert main(["study", "--list"]) == 0
    assert "_demo" in capsys.readouterr().out
    assert main(["study", "_demo", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| quick | threads |" in out and "| yes | 1 |" in out
    assert json.loads((tmp_path / "_demo.json").read_text())["meta"]["quick"] is True
    assert main(["study", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert main(["study"]) == 2
    assert main(["study", "_demo", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_cli_study_list_subprocess():
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "transformer_c", "study", "--list"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[0] for line in r.stdout.splitlines()) == sorted(studies.STUDIES)


# ------------------------------------------------------------------ the studies, quick mode

def run_quick(name, tmp_path):
    """Run study ``name`` in quick mode on 1 thread; check the files; the Report and JSON."""
    r = studies.run(name, tmp_path, quick=True, threads=1)
    d = json.loads((tmp_path / f"{name}.json").read_text())
    assert d["columns"] == r.columns and len(d["rows"]) == len(r.rows)
    assert d["meta"]["quick"] is True and d["meta"]["threads"] == 1
    assert d["meta"]["data"]["source"] in ("tinyshakespeare", "python-stdlib") or \
        d["meta"]["data"]["source"].startswith("synthetic")
    md = (tmp_path / f"{name}.md").read_text()
    assert f"`python -m transformer_c study {name} --quick --threads 1`" in md
    assert r.table_markdown() in md
    for f in d["figures"]:
        png = (tmp_path / f).read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 5000, f
    return r, d


def test_layer_slices_cover_the_blocks():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.studies.gradient_flow import layer_slices
    V, T, C, L = 11, 8, 12, 3
    m = GPT.create(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=2, n_embd=C),
                   np.random.default_rng(0))
    s = layer_slices(m)
    assert len(s) == L and all(b0 == a1 for (_, b0), (a1, _) in zip(s, s[1:]))
    # everything but wte (V, C), wpe (T, C) and ln_f (2C)
    assert sum(b - a for a, b in s) == m.num_parameters - V * C - T * C - 2 * C
    block = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C
    assert s[0] == (V * C + T * C, V * C + T * C + block)


def test_dead_units_of_a_relu_unit_that_never_fires():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.studies.gradient_flow import dead_units, mlp_preactivations
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8,
                    activation="relu")
    m = GPT.create(cfg, np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, 11, (3, 8))
    h = mlp_preactivations(m, idx)
    assert [a.shape for a in h] == [(3, 8, 32)] * 2
    # the MLP input of block 0 is ln_2 of the residual stream after attention; make units
    # 0..3 of block 0 never fire by a large negative bias, units 4.. fire somewhere
    m.parameters["h"][0]["mlp"]["c_fc"]["bias"][:4] = -1e3
    dead, inactive = dead_units(m, idx)
    assert dead[0] == pytest.approx(4 / 32) and inactive[0] >= 4 / 32
    pre = mlp_preactivations(m, idx)[0]
    assert (pre[..., :4] < -900).all()
    assert inactive[0] == pytest.approx(float((pre <= 0).mean()))


def test_positional_quick(tmp_path):
    from transformer_c.studies.positional import ENCODINGS
    r, d = run_quick("positional", tmp_path)
    assert r.columns == ["encoding", "params", "steps", "train s", "final train loss",
                         "val ppl @L", "val ppl @2L", "2L vs L %", "ppl @2L, positions < L",
                         "ppl @2L, positions >= L"]
    assert r.column("encoding") == list(ENCODINGS)
    s = d["meta"]["settings"]
    V = d["meta"]["data"]["vocab_size"]
    params = dict(zip(r.column("encoding"), r.column("params")))
    # only the learned model has a table: 2L rows of width n_embd
    assert params["none"] == params["sinusoidal"] == params["rope"]
    assert params["learned"] - params["none"] == 2 * s["L"] * s["n_embd"]
    assert r.column("steps") == [s["steps"]] * 4
    for row in r.rows:
        # trained: well below uniform guessing over V characters, above 1
        for k in ("val ppl @L", "val ppl @2L"):
            assert 1.0 < row[k] < 0.6 * V, row
        # the 2L perplexity is the geometric mean of its two halves
        assert math.log(row["val ppl @2L"]) == pytest.approx(
            (math.log(row["ppl @2L, positions < L"]) +
             math.log(row["ppl @2L, positions >= L"])) / 2, rel=1e-9)
        assert row["2L vs L %"] == pytest.approx(
            100 * (row["val ppl @2L"] / row["val ppl @L"] - 1))
        curve = d["meta"]["per_position_loss_2L"][row["encoding"]]
        assert len(curve) == 2 * s["L"]


def test_gradient_flow_quick(tmp_path):
    r, d = run_quick("gradient_flow", tmp_path)
    assert r.columns[:4] == ["part", "activation", "norm", "warmup steps"]
    assert [(x["activation"], x["norm"], x["warmup steps"] > 0) for x in r.rows] == [
        ("relu", "pre", True), ("gelu", "pre", True), ("gelu", "pre", True),
        ("gelu", "pre", False), ("gelu", "post", True), ("gelu", "post", False)]
    assert r.column("layers")[2:] == [12] * 4
    for row in r.rows:
        if row["diverged"]:
            assert row["val loss"] is None and row["final train loss"] == math.inf
        else:
            assert 0.5 < row["val loss"] < 4.5          # log(65) = 4.17: from uniform, down
            assert 0 <= row["dead units %"] <= row["inactive %"] <= 100
    relu, gelu = r.rows[0], r.rows[1]
    # GELU's derivative is below 1e-3 in magnitude only for pre-activations < about -4
    assert gelu["dead units %"] <= relu["dead units %"]
    assert relu["inactive %"] > 20 > gelu["inactive %"]
    norms = d["meta"]["grad_norms"]
    assert len(norms) == 6
    for key, g in norms.items():
        g = np.array(g, dtype=float)
        assert g.ndim == 2 and g.shape[1] in (12, d["meta"]["settings"]["act"]["n_layer"])


def test_arithmetic_quick(tmp_path):
    r, d = run_quick("arithmetic", tmp_path)
    assert r.columns == ["operation", "held-out problems", "answer ppl (held-out)",
                         "exact match greedy %", "exact match beam-3 %", "answer ppl (train)"]
    assert r.column("operation") == ["a+b", "a-b", "all"]
    n = r.column("held-out problems")
    # 2 operators x 100 x 100 problems, 10% held out (a+b and b+a held out together)
    assert n[0] + n[1] == n[2] and 1800 < n[2] < 2200 and n[0] > 800 and n[1] > 800
    assert d["meta"]["data"]["heldout_problems"] == n[2]
    assert d["meta"]["data"]["train_problems"] + n[2] == 20000
    # 14 symbols + 4 specials: uniform guessing is ppl 18; 300 steps learn a lot of it
    curve = d["meta"]["curve"]
    assert curve[0]["step"] == 0 and curve[0]["ppl"] > 8 and curve[0]["exact_match"] < 0.02
    for row in r.rows:
        assert 1.0 < row["answer ppl (held-out)"] < 5.0
        assert 0 <= row["exact match greedy %"] <= 100
        assert 0 <= row["exact match beam-3 %"] <= 100
    # "all" is the problem-weighted mean of the two operations
    em = r.column("exact match greedy %")
    assert em[2] == pytest.approx((em[0] * n[0] + em[1] * n[1]) / n[2])
    # the wrong answers are numbers (digits, maybe a sign), not garbage
    for prompt, want, got in d["meta"]["greedy_errors_sample"]:
        assert got is None or got.lstrip("-").isdigit(), (prompt, got)
